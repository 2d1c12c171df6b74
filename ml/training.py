"""Train one soil-temperature network on training windows, predict in degC, save and reload it.

Keras is imported at module top level (as in ``ml.architectures``, which this module builds
on): import this module only inside asset bodies and training code, never at Dagster
definition load.

Choices made here, so every architecture is trained the same way:

* A fixed seed (``keras.utils.set_random_seed``) before the model is built: results are
  reproducible from ``TrainingConfig`` and the hyperparameters alone (on one device).
* The network learns the training-statistics z-scores of the four soil temperatures; only
  ``predict`` turns them back into degC.
* Validation is the last ``validation_fraction`` of the training TARGET MONTHS (every unit
  of those months), never a random subset: a random subset would hold months sandwiched
  between training months, and early stopping would pick an over-optimistic epoch.
* ``EarlyStopping(restore_best_weights=True)`` on the validation loss (on the training loss
  when ``validation_fraction`` is 0).
* On a GPU the layers train in ``mixed_float16``; the output is always float32 (the Dense
  head of ``ml.architectures`` follows the global policy, so a float32 ``Activation`` is
  appended to it when the policy is mixed). After training the weights move into the same
  network built in float32, so the returned and saved model is float32 wherever it was
  trained. On a CPU everything is float32 throughout.
* A trained model is a folder: ``model.keras``, ``normalization.json`` (the statistics that
  travel with the model), ``history.json`` and ``training.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ml.architectures import OUTPUT_LAYER, InputSpec, build_model, compile_model, load_model
from ml.training_config import TrainingConfig
from ml.windows import NormalizationStats, WindowSet

MODEL_FILE = "model.keras"
NORMALIZATION_FILE = "normalization.json"
HISTORY_FILE = "history.json"
TRAINING_FILE = "training.json"
MIXED_PRECISION = "mixed_float16"
FULL_PRECISION = "float32"
PREDICT_BATCH_SIZE = 1024


@dataclass
class TrainedModel:
    """A fitted network with everything needed to use it again.

    ``model`` outputs normalised targets; ``stats`` turns them into degC. ``history`` holds
    Keras' per-epoch metrics as plain floats (``loss``, ``mae``, ``val_loss``, ``val_mae``),
    ``seconds`` the wall time of ``fit``, ``device`` "gpu" or "cpu", ``precision`` the dtype
    policy it was trained under (``model`` itself is always float32), ``hyperparameters`` the
    overrides given to the builder.
    """

    architecture: str
    model: keras.Model
    stats: NormalizationStats
    history: dict[str, list[float]]
    seconds: float
    device: str
    config: TrainingConfig
    precision: str = FULL_PRECISION
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    # who wrote the saved folder (e.g. the orchestrator's run id), so a reader can tell a
    # folder it was told about from a stale one
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def best_epoch(self) -> int:
        """1-based epoch whose weights the model holds (EarlyStopping restores the best)."""
        monitored = self.history.get("val_loss") or self.history.get("loss") or []
        return int(np.argmin(monitored)) + 1 if monitored else 0


# --- device and precision -----------------------------------------------------------------


def accelerator() -> str:
    """Return "gpu" when the Keras backend sees a GPU, else "cpu"."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if backend == "jax":
        import jax

        return "gpu" if any(device.platform == "gpu" for device in jax.devices()) else "cpu"
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu"


def precision_policy(device: str) -> str:
    """``mixed_float16`` on a GPU (float16 compute, float32 weights; Keras wraps the optimizer
    in a loss-scale optimizer at compile time), ``float32`` on a CPU, where float16 is slower."""
    if device not in ("gpu", "cpu"):
        raise ValueError(f"device must be 'gpu' or 'cpu', got {device!r}")
    return MIXED_PRECISION if device == "gpu" else FULL_PRECISION


def build_for_precision(architecture: str, spec: InputSpec, hyperparameters: dict | None, policy: str) -> keras.Model:
    """Build ``architecture`` under dtype ``policy`` with a float32 output whatever the policy.

    The global policy is restored afterwards: it only matters while layers are created.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = build_model(architecture, spec, hyperparameters)
        if keras.backend.standardize_dtype(model.outputs[0].dtype) != "float32":
            # The loss and the saved predictions must be float32: float16 has ~3 significant
            # digits. A built-in layer with a float32 policy casts without a Lambda.
            output = keras.layers.Activation("linear", dtype="float32", name=f"{OUTPUT_LAYER}_float32")(
                model.outputs[0]
            )
            model = keras.Model(model.inputs, output, name=model.name)
    finally:
        keras.config.set_dtype_policy(previous)
    return model


# --- training -----------------------------------------------------------------------------


def validation_split(windows: WindowSet, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the fitting and the validation windows: validation = the latest target months.

    ``round(fraction * months)`` distinct target months (at least one when ``fraction`` > 0)
    go to validation, with every unit's window for those months; at least one month stays
    for fitting. Both index arrays are ascending.
    """
    months = np.unique(windows.target_month.astype("datetime64[M]"))
    if fraction <= 0:
        return np.arange(len(windows)), np.arange(0)
    if len(months) < 2:
        raise ValueError(f"a time-ordered validation split needs >= 2 target months, got {len(months)}")
    n_validation = min(max(1, round(fraction * len(months))), len(months) - 1)
    first_validation = months[-n_validation]
    is_validation = windows.target_month.astype("datetime64[M]") >= first_validation
    return np.flatnonzero(~is_validation), np.flatnonzero(is_validation)


def train_model(
    architecture: str,
    train: WindowSet,
    stats: NormalizationStats,
    config: TrainingConfig | None = None,
    hyperparameters: dict | None = None,
    n_units: int | None = None,
) -> TrainedModel:
    """Fit ``architecture`` (a key of ``ml.architectures.ARCHITECTURES``) on ``train``.

    ``train`` holds normalised inputs and degC targets built with ``stats``; the targets are
    normalised here with ``stats``. The unit embedding has ``n_units`` rows (default: the
    largest unit position of the windows plus one).
    """
    config = config or TrainingConfig()
    if train.y is None:
        raise ValueError("training windows need targets (y is None)")
    _check_features(train, stats, "training windows")
    device = accelerator()
    policy = precision_policy(device)
    keras.utils.set_random_seed(config.seed)
    spec = InputSpec(n_features=train.x.shape[2], window=train.window, n_units=n_units or int(train.unit.max()) + 1)
    model = compile_model(build_for_precision(architecture, spec, hyperparameters, policy), config.learning_rate)

    fit_index, validation_index = validation_split(train, config.validation_fraction)
    inputs = _model_inputs(train)
    targets = stats.normalize_targets(train.y)
    validation_data = None
    if len(validation_index):
        validation_data = ({k: v[validation_index] for k, v in inputs.items()}, targets[validation_index])
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss" if validation_data is not None else "loss",
        patience=config.patience,
        restore_best_weights=True,
    )
    started = time.perf_counter()
    fitted = model.fit(
        {k: v[fit_index] for k, v in inputs.items()},
        targets[fit_index],
        validation_data=validation_data,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,  # within the fitting months only; validation stays the latest months
        callbacks=[stopper],
        verbose=0,
    )
    seconds = time.perf_counter() - started
    history = finite_history(fitted, architecture)
    if policy != FULL_PRECISION:
        model = _float32_copy(model, architecture, spec, hyperparameters, config.learning_rate)
    return TrainedModel(
        architecture=architecture,
        model=model,
        stats=stats,
        history=history,
        seconds=seconds,
        device=device,
        config=config,
        precision=policy,
        hyperparameters=dict(hyperparameters or {}),
    )


def predict(trained: TrainedModel, windows: WindowSet) -> np.ndarray:
    """Soil temperatures (n, 4) in degC (float64) for ``windows``."""
    _check_features(windows, trained.stats, "windows")
    expected = next((tuple(t.shape[1:]) for t in trained.model.inputs if t.name == "x"), None)
    if expected is not None and tuple(windows.x.shape[1:]) != expected:
        raise ValueError(f"windows have shape {windows.x.shape[1:]}, the model expects {expected}")
    if len(windows) == 0:
        return np.empty((0, len(trained.stats.target_names)), dtype=np.float64)
    normalised = trained.model.predict(_model_inputs(windows), batch_size=PREDICT_BATCH_SIZE, verbose=0)
    return trained.stats.denormalize_targets(normalised)


# --- files --------------------------------------------------------------------------------


def save_trained(trained: TrainedModel, folder: Path) -> None:
    """Write the model and its metadata into ``folder`` (created if needed).

    The caller makes the write atomic (temporary folder, then rename).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    trained.model.save(folder / MODEL_FILE)
    _write_json(folder / NORMALIZATION_FILE, trained.stats.to_dict())
    _write_json(folder / HISTORY_FILE, trained.history)
    _write_json(
        folder / TRAINING_FILE,
        {
            "architecture": trained.architecture,
            "seconds": trained.seconds,
            "device": trained.device,
            "precision": trained.precision,
            "config": dataclasses.asdict(trained.config),
            "hyperparameters": trained.hyperparameters,
            "epochs_run": len(next(iter(trained.history.values()), [])),
            "best_epoch": trained.best_epoch,
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
            "provenance": trained.provenance,
        },
    )


def load_trained(folder: Path) -> TrainedModel:
    """Read a folder written by ``save_trained``."""
    folder = Path(folder)
    files = (MODEL_FILE, NORMALIZATION_FILE, HISTORY_FILE, TRAINING_FILE)
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"trained-model folder {folder} lacks {missing}")
    training = _read_json(folder / TRAINING_FILE)
    return TrainedModel(
        architecture=training["architecture"],
        model=load_model(folder / MODEL_FILE),
        stats=NormalizationStats.from_dict(_read_json(folder / NORMALIZATION_FILE)),
        history={name: [float(v) for v in values] for name, values in _read_json(folder / HISTORY_FILE).items()},
        seconds=float(training["seconds"]),
        device=training["device"],
        config=TrainingConfig(**training["config"]),
        precision=training.get("precision", FULL_PRECISION),
        hyperparameters=training.get("hyperparameters", {}),
        provenance=training.get("provenance", {}),
    )


# --- internals ----------------------------------------------------------------------------


def _float32_copy(
    model: keras.Model, architecture: str, spec: InputSpec, hyperparameters: dict | None, learning_rate: float
) -> keras.Model:
    """The same network built in float32 with ``model``'s weights.

    Mixed precision only speeds up training on a GPU: its weights are float32 already, and a
    float32 model predicts at full precision, runs fast on a CPU (where projections may run)
    and saves without the loss-scale optimizer that a reload could not restore.
    """
    copy = compile_model(build_for_precision(architecture, spec, hyperparameters, FULL_PRECISION), learning_rate)
    weights = model.get_weights()
    shapes = [w.shape for w in weights], [tuple(v.shape) for v in copy.weights]
    if shapes[0] != shapes[1]:
        raise RuntimeError(f"{architecture}: float32 rebuild has weight shapes {shapes[1]}, trained {shapes[0]}")
    copy.set_weights(weights)
    # A built (fresh) optimizer saves the variable layout a reload expects, without warnings.
    copy.optimizer.build(copy.trainable_variables)
    return copy


def _model_inputs(windows: WindowSet) -> dict[str, np.ndarray]:
    return {"x": np.asarray(windows.x, dtype=np.float32), "unit": np.asarray(windows.unit, dtype=np.int32)}


def _check_features(windows: WindowSet, stats: NormalizationStats, what: str) -> None:
    if tuple(windows.feature_names) != tuple(stats.feature_names):
        raise ValueError(
            f"{what} have features {list(windows.feature_names)}, the statistics expect {list(stats.feature_names)}"
        )


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def _jsonable(value: Any) -> Any:
    """Tuples are lists already; numpy scalars and arrays are the other usual suspects."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def finite_history(fitted, label: str) -> dict[str, list[float]]:
    """The Keras fit history (`model.fit`'s return) as floats; raises naming `label` and the
    loss or metric that stopped being finite, rather than keeping a diverged network."""
    history = {name: [float(v) for v in values] for name, values in fitted.history.items()}
    for name, values in history.items():
        if not np.all(np.isfinite(values)):
            raise FloatingPointError(f"{label}: {name} is not finite during training: {values}")
    return history
