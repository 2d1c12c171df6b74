"""The hyperparameter search: off costs nothing and says so; on, a tiny budget of two trials on the
training windows, the default first, the best recorded and reloadable."""

import json

import numpy as np
import pytest

from ml.residual import ResidualScaler, residual_windows
from ml.search import SEARCH_SPACES, SearchResult, default_trial, search
from ml.training_config import TrainingConfig

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def training_windows(n_months=96, seed=3):
    """Windows whose residual depends on one driver (as tests/ml/test_residual.py's)."""
    rng = np.random.default_rng(seed)
    calendar = np.arange(n_months) % 12
    names = ("t_air", "p_total")
    drivers = rng.normal(size=(n_months, 2, 2)) + np.cos(2 * np.pi * calendar / 12)[:, None, None]
    core = 5 * np.cos(2 * np.pi * calendar / 12)[:, None, None] + rng.normal(size=(n_months, 2, 4))
    observed = core + 0.8 * drivers[..., :1] + 0.1 * rng.normal(size=(n_months, 2, 4))
    months = np.arange(np.datetime64("2001-01"), np.datetime64("2001-01") + n_months)
    train = np.ones(n_months, dtype=bool)
    scaler = ResidualScaler.fit(drivers, core, observed, calendar, train, names)
    return residual_windows(scaler, drivers, core, months, np.flatnonzero(train), observed), scaler


def test_off_searches_nothing_and_says_so():
    result = search("gru", None, None, TrainingConfig(), trials=0, timeout_seconds=60)
    assert result.searched is False and "not searched" in result.reason and result.trials == []
    frame = result.trials_frame()
    assert frame.height == 1 and frame["searched"].to_list() == [False] and frame["model"].to_list() == ["gru"]
    with pytest.raises(ValueError, match="validation_fraction"):
        search("gru", None, None, TrainingConfig(validation_fraction=0.0), trials=2, timeout_seconds=60)


def test_every_default_lies_in_its_search_space():
    for architecture, space in SEARCH_SPACES.items():
        default = default_trial(architecture, TrainingConfig())
        for name, (kind, *bounds) in space.items():
            value = default[name]
            if kind == "categorical":
                assert value in bounds[0], (architecture, name)
            else:
                assert bounds[0] <= value <= bounds[1], (architecture, name)


def test_two_trials_the_default_first_and_the_best_recorded():
    train, scaler = training_windows()
    config = TrainingConfig(epochs=3, batch_size=32, patience=3, seed=5)
    result = search("gru", train, scaler, config, trials=2, timeout_seconds=300, seed=5)
    assert result.searched and len(result.trials) == 2
    assert result.trials[0]["params"] == default_trial("gru", config)  # trial 0 is the default
    assert result.default_validation_loss == pytest.approx(result.trials[0]["value"])
    values = [t["value"] for t in result.trials]
    assert result.best_validation_loss == pytest.approx(min(values))
    assert result.best_validation_loss <= result.default_validation_loss
    best = next(t for t in result.trials if t["value"] == min(values))
    assert result.best == best["params"] and set(result.best_hyperparameters) == set(SEARCH_SPACES["gru"])
    assert result.best_learning_rate == best["params"]["learning_rate"]
    frame = result.trials_frame()
    assert frame["trial"].to_list() == [0, 1] and frame["is_default"].to_list() == [True, False]
    assert frame["is_best"].sum() == 1 and json.loads(frame["hyperparameters"][0])["units"] == 16
    again = SearchResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
