"""Training, prediction in degC, save/load, the time-ordered validation split and a leakage check."""

import json

import keras
import numpy as np
import pytest
import synthetic
from synthetic import LAYER_AMPLITUDE, LAYER_MEAN, statistics_of

from ml import training
from ml.architectures import InputSpec
from ml.metrics import r2
from ml.training_config import TrainingConfig
from ml.windows import WindowSet

# Keras' TensorFlow backend calls np.array(tensor, copy=False) internally; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

FEATURES = ("r_thermal", "driver", "noise_a", "noise_b", "noise_c", "z")
SMALL_GRU = {"units": 8, "layers": 1, "dropout": 0.0}


def synthetic_windows(n_months: int, first: str = "2000-01", n_bands: int = 2, seed: int = 0) -> WindowSet:
    return synthetic.synthetic_windows(FEATURES, n_months, first, seed=seed, n_bands=n_bands)


def per_layer_r2(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over layers: pooled R2 would reward merely knowing that the layer means differ."""
    return float(np.mean([r2(truth[:, k], predicted[:, k]) for k in range(truth.shape[1])]))


@pytest.fixture(scope="module")
def data():
    train = synthetic_windows(100)
    test = synthetic_windows(30, first="2008-05", seed=1)  # target months after every training one
    return train, test, statistics_of(train)


@pytest.fixture(scope="module")
def trained(data):
    train, _, stats = data
    config = TrainingConfig(epochs=3, batch_size=32, learning_rate=1e-2)
    return training.train_model("gru", train, stats, config, SMALL_GRU)


def test_trains_a_few_epochs_with_finite_plain_float_history(trained):
    assert trained.architecture == "gru"
    assert set(trained.history) == {"loss", "mae", "val_loss", "val_mae"}
    for name, values in trained.history.items():
        assert len(values) == 3, name
        assert all(type(v) is float and np.isfinite(v) for v in values), name
    assert trained.seconds > 0
    assert 1 <= trained.best_epoch <= 3
    assert trained.hyperparameters == SMALL_GRU


def test_device_and_precision_on_this_machine(trained):
    assert trained.device == training.accelerator() == "cpu"
    assert trained.precision == "float32"
    assert all(layer.dtype_policy.name == "float32" for layer in trained.model.layers)
    assert keras.backend.standardize_dtype(trained.model.outputs[0].dtype) == "float32"


def test_precision_policy_mixed_only_on_gpu():
    assert training.precision_policy("cpu") == "float32"
    assert training.precision_policy("gpu") == "mixed_float16"
    with pytest.raises(ValueError, match="device"):
        training.precision_policy("tpu")


def test_mixed_precision_model_still_outputs_float32():
    previous = keras.config.dtype_policy().name
    model = training.build_for_precision("gru", InputSpec(n_features=len(FEATURES)), SMALL_GRU, "mixed_float16")
    assert keras.config.dtype_policy().name == previous  # only set while building
    assert model.get_layer("gru1").compute_dtype == "float16"
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32"
    x = np.zeros((2, 24, len(FEATURES)), dtype=np.float32)
    out = model({"x": x, "unit": np.array([0, 1], dtype=np.int32)})
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_gpu_training_returns_a_float32_model(data, monkeypatch, tmp_path):
    """Pretend to be on a GPU: train in mixed_float16, hand back (and save) a float32 network."""
    train, test, stats = data
    monkeypatch.setattr(training, "accelerator", lambda: "gpu")
    trained = training.train_model("gru", train, stats, TrainingConfig(epochs=1), SMALL_GRU)
    assert (trained.device, trained.precision) == ("gpu", "mixed_float16")
    assert {layer.dtype_policy.name for layer in trained.model.layers} == {"float32"}
    training.save_trained(trained, tmp_path / "gru")
    loaded = training.load_trained(tmp_path / "gru")
    assert loaded.precision == "mixed_float16"
    np.testing.assert_array_equal(training.predict(loaded, test), training.predict(trained, test))


def test_predict_denormalises_to_degc(trained, data):
    _, test, stats = data
    predicted = training.predict(trained, test)
    raw = trained.model.predict({"x": test.x, "unit": test.unit}, verbose=0)
    assert predicted.shape == (len(test), 4)
    np.testing.assert_allclose(predicted, raw * stats.target_std + stats.target_mean, rtol=1e-6)
    # degC around each layer's mean, not z-scores around 0.
    assert np.all(np.abs(predicted.mean(axis=0) - LAYER_MEAN) < 0.5 * LAYER_AMPLITUDE), predicted.mean(axis=0)


def test_predict_rejects_other_features(trained, data):
    _, test, _ = data
    renamed = WindowSet(test.x, test.unit, test.y, test.target_month, ("t_air",) + FEATURES[1:])
    with pytest.raises(ValueError, match="t_air"):
        training.predict(trained, renamed)


def test_save_and_load_round_trip(trained, data, tmp_path):
    _, test, stats = data
    folder = tmp_path / "gru"
    training.save_trained(trained, folder)
    files = {"model.keras", "normalization.json", "history.json", "training.json"}
    assert {p.name for p in folder.iterdir()} == files
    metadata = json.loads((folder / "training.json").read_text())
    assert metadata["architecture"] == "gru" and metadata["device"] == "cpu"
    assert metadata["config"]["epochs"] == 3

    loaded = training.load_trained(folder)
    np.testing.assert_array_equal(training.predict(loaded, test), training.predict(trained, test))
    assert loaded.architecture == trained.architecture
    assert loaded.config == trained.config
    assert loaded.history == trained.history
    assert loaded.seconds == trained.seconds
    assert loaded.stats.to_dict() == stats.to_dict()


def test_load_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.keras"):
        training.load_trained(tmp_path)


def test_validation_split_takes_the_latest_target_months():
    # Two bands whose rows interleave months out of order: the split must sort by month.
    windows = synthetic_windows(40, n_bands=2)
    order = np.random.default_rng(3).permutation(len(windows))
    shuffled = WindowSet(windows.x[order], windows.unit[order], windows.y[order], windows.target_month[order], FEATURES)
    fit, validation = training.validation_split(shuffled, 0.1)
    months = shuffled.target_month
    assert len(validation) == 4 * 2  # 4 of 40 months, both bands
    assert months[fit].max() < months[validation].min()
    assert set(months[validation]) == set(np.unique(months)[-4:])
    assert sorted(np.r_[fit, validation]) == list(range(len(shuffled)))
    fit_all, none = training.validation_split(shuffled, 0.0)
    assert len(fit_all) == len(shuffled) and len(none) == 0


def test_training_validates_on_the_latest_months(trained, data):
    """restore_best_weights: the model's loss on the latest months is the best val_loss."""
    train, _, stats = data
    _, validation = training.validation_split(train, trained.config.validation_fraction)
    assert train.target_month[validation].min() == np.unique(train.target_month)[-10]  # 10 % of 100 months
    loss = trained.model.evaluate(
        {"x": train.x[validation], "unit": train.unit[validation]},
        stats.normalize_targets(train.y[validation]),
        verbose=0,
        return_dict=True,
    )["loss"]
    assert loss == pytest.approx(min(trained.history["val_loss"]), rel=1e-4)


@pytest.mark.parametrize(
    "kwargs", [{"epochs": 0}, {"batch_size": 0}, {"learning_rate": 0.0}, {"validation_fraction": 1.0}]
)
def test_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        TrainingConfig(**kwargs)


def test_no_leakage_shuffled_targets_cannot_predict_later_months():
    """A model that saw only shuffled training targets must not score on later months.

    If test months leaked into training (statistics, validation, early stopping), the shuffled
    model could still score; if the model could not learn at all, the true one would not. Both
    halves are asserted, so the test can fail either way.
    """
    train = synthetic_windows(150)
    test = synthetic_windows(40, first="2012-07", seed=1)
    assert train.target_month.max() < test.target_month.min()
    config = TrainingConfig(epochs=10, batch_size=32, learning_rate=1e-2)
    stats = statistics_of(train)
    permutation = np.random.default_rng(5).permutation(len(train))
    shuffled = WindowSet(train.x, train.unit, train.y[permutation], train.target_month, FEATURES)

    honest = training.train_model("gru", train, stats, config, SMALL_GRU)
    blind = training.train_model("gru", shuffled, stats, config, SMALL_GRU)

    honest_r2 = per_layer_r2(test.y, training.predict(honest, test))
    blind_r2 = per_layer_r2(test.y, training.predict(blind, test))
    assert honest_r2 > 0.5, f"the model did not learn the signal: R2 {honest_r2:.3f}"
    assert blind_r2 < 0.15, f"a model trained on shuffled targets scores R2 {blind_r2:.3f} on later months"


def test_a_diverged_fit_is_refused_naming_the_network_and_the_loss():
    from types import SimpleNamespace

    from ml.training import finite_history

    fine = SimpleNamespace(history={"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]})
    assert finite_history(fine, "gru network 3") == {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}
    diverged = SimpleNamespace(history={"loss": [1.0, float("nan")], "val_loss": [1.1, 0.6]})
    with pytest.raises(FloatingPointError, match="gru network 3: loss is not finite"):
        finite_history(diverged, "gru network 3")
