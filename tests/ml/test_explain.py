"""Mean |SHAP| per feature: every feature once, non-negative, the driver first, deterministic, lazy shap."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml import training
from ml.explain import _draw, feature_importance
from ml.training_config import TrainingConfig
from ml.windows import NormalizationStats, WindowSet

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

REPO = Path(__file__).resolve().parents[2]
FEATURES = ("r_thermal", "driver", "noise_a", "noise_b", "z")
TARGETS = ("t_soil_0", "t_soil_1", "t_soil_2", "t_soil_3")
SAMPLES = 50  # shap samples per explained window: enough to rank a driver above noise


def synthetic_windows(n_months: int, first: str, seed: int, n_bands: int = 2) -> WindowSet:
    """Every layer follows the driver's last two months; the other features are noise."""
    rng = np.random.default_rng(seed)
    n = n_months * n_bands
    x = rng.standard_normal((n, 24, len(FEATURES))).astype(np.float32)
    driver = x[:, -1, 1] + 0.5 * x[:, -2, 1]
    y = np.array([10.0, 5.0, 2.0, 1.0]) + np.array([5.0, 3.0, 2.0, 1.0]) * driver[:, None]
    return WindowSet(
        x=x,
        band=np.repeat(np.arange(n_bands), n_months).astype(np.int32),
        y=y.astype(np.float32),
        target_month=np.tile(np.datetime64(first, "M") + np.arange(n_months), n_bands),
        feature_names=FEATURES,
    )


@pytest.fixture(scope="module")
def setup():
    train = synthetic_windows(120, "2000-01", seed=0)
    test = synthetic_windows(30, "2010-01", seed=1)
    stats = NormalizationStats(
        feature_names=FEATURES,
        mean=np.zeros(len(FEATURES)),
        std=np.ones(len(FEATURES)),
        target_names=TARGETS,
        target_mean=train.y.mean(axis=0),
        target_std=train.y.std(axis=0),
        r_thermal_mean=0.0,
        r_thermal_std=1.0,
    )
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
    values = dict(zip(ranked, importance["mean_abs_shap"].to_list()))
    assert ranked[0] == "driver"
    assert values["driver"] > 3 * max(values[f] for f in ("noise_a", "noise_b"))


def test_same_seed_same_answer(setup, importance):
    """The explained windows span both bands, so this also covers the per-band loop."""
    trained, test = setup
    rng = np.random.default_rng(1)
    _draw(rng, len(test), 20)  # the background draw comes first
    assert len(set(test.band[_draw(rng, len(test), 4)])) == 2
    again = feature_importance(trained, test, test, max_background=20, max_explained=4, seed=1, samples=SAMPLES)
    assert again.equals(importance)


def test_rejects_windows_with_other_features(setup):
    trained, test = setup
    other = WindowSet(test.x, test.band, test.y, test.target_month, ("t_air",) + FEATURES[1:])
    with pytest.raises(ValueError, match="t_air"):
        feature_importance(trained, other, test)


def test_import_does_not_load_shap_or_keras():
    code = "import sys, ml.explain; print(sorted(m for m in ('shap', 'keras', 'tensorflow') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
