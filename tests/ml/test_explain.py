"""Mean |SHAP| per feature: every feature once, non-negative, the driver first, deterministic, in
kelvin, lazy shap."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic import statistics_of, synthetic_windows

from ml import training
from ml.explain import _draw, feature_importance, shap_importance
from ml.training_config import TrainingConfig
from ml.windows import WindowSet

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

REPO = Path(__file__).resolve().parents[2]
FEATURES = ("r_thermal", "driver", "noise_a", "noise_b", "z")
SAMPLES = 50  # shap samples per explained window: enough to rank a driver above noise


@pytest.fixture(scope="module")
def setup():
    train = synthetic_windows(FEATURES, 120, "2000-01", seed=0, noise=0.0)
    test = synthetic_windows(FEATURES, 30, "2010-01", seed=1, noise=0.0)
    stats = statistics_of(train)
    config = TrainingConfig(epochs=8, learning_rate=1e-2)
    trained = training.train_model("gru", train, stats, config, {"units": 8, "layers": 1, "dropout": 0.0})
    return trained, test


@pytest.fixture(scope="module")
def importance(setup):
    trained, test = setup
    return feature_importance(trained, test, test, max_background=20, max_explained=4, seed=1, samples=SAMPLES)


def test_every_feature_once_non_negative_sorted(importance):
    assert importance.columns == ["feature", "mean_abs_shap"]
    assert sorted(importance["feature"].to_list()) == sorted(FEATURES)
    values = importance["mean_abs_shap"].to_numpy()
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert np.all(np.diff(values) <= 0)


def test_the_driver_ranks_above_noise(importance):
    ranked = importance["feature"].to_list()
    values = dict(zip(ranked, importance["mean_abs_shap"].to_list(), strict=False))
    assert ranked[0] == "driver"
    assert values["driver"] > 3 * max(values[f] for f in ("noise_a", "noise_b"))


def test_same_seed_same_answer(setup, importance):
    """The explained windows span both bands, so this also covers the per-unit loop."""
    trained, test = setup
    rng = np.random.default_rng(1)
    _draw(rng, len(test), 20)  # the background draw comes first
    assert len(set(test.unit[_draw(rng, len(test), 4)])) == 2
    again = feature_importance(trained, test, test, max_background=20, max_explained=4, seed=1, samples=SAMPLES)
    assert again.equals(importance)


def test_rejects_windows_with_other_features(setup):
    trained, test = setup
    other = WindowSet(test.x, test.unit, test.y, test.target_month, ("t_air",) + FEATURES[1:])
    with pytest.raises(ValueError, match="t_air"):
        feature_importance(trained, other, test)


def test_import_does_not_load_shap_or_keras():
    code = "import sys, ml.explain; print(sorted(m for m in ('shap', 'keras', 'tensorflow') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_importance_is_in_the_units_of_the_output_scale(setup, importance):
    trained, test = setup

    def scaled(scale):
        return shap_importance(
            trained.model,
            FEATURES,
            test.x,
            test.x,
            test.unit,
            scale,
            max_background=20,
            max_explained=4,
            seed=1,
            samples=SAMPLES,
        )

    unit = scaled(np.ones(4))
    doubled = scaled(np.full(4, 2.0))
    assert np.allclose(doubled["mean_abs_shap"], 2 * unit["mean_abs_shap"])
    # the paper design's importance is in degC: the output scaled by each layer's target sd
    assert importance.equals(scaled(trained.stats.target_std))
    with pytest.raises(ValueError, match="output_scale"):
        scaled(np.ones(3))


def test_an_architecture_is_explained_in_its_own_design(setup):
    from ml.ensemble import TrainedArchitecture
    from ml.explain import network_importance

    trained, test = setup
    paper = TrainedArchitecture("gru", "paper", [trained])
    # the paper design: its first network on the test windows, background and explained alike
    assert network_importance(paper, paper_test=test).equals(feature_importance(trained, test, test))
    with pytest.raises(ValueError, match="gru is the paper design"):
        network_importance(paper)
    with pytest.raises(ValueError, match="tcn is a residual design"):
        network_importance(TrainedArchitecture("tcn", "residual", [trained]), paper_test=test)
