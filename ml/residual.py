"""The paper's five networks as BOUNDED RESIDUALS on top of the conduction core.

The core (``ml.thermal_core``) carries the response to the forcing, which is what must
extrapolate; a network only corrects what the core misses month by month, and can never move a
prediction by more than ``bound`` residual standard deviations:

    t_soil = core + sigma_res * bound * tanh(network(window))

Inputs of a network, per month of the window t-23..t (the target month's own forcing included,
as it is in projections: it comes from the climate model like every other input):

* the driver and soil-water anomalies from the training climatology (band x calendar month),
  each in units of its pooled training standard deviation;
* the core's own prediction as an anomaly from the target climatology, same units;
* sin and cos of the calendar month; the band goes through the architectures' embedding.

No calendar year and no squared scenario signal. Every channel is CLIPPED to its training range
(``ResidualScaler.transform``), in training and in projection alike, so a network never sees a
value it was not trained on; ``out_of_range_share`` counts what was clipped. Keras 3 through
``keras`` / ``keras.ops`` only (``build_bounded`` adds two built-in layers to an
``ml.architectures`` network), in float32: these networks are small enough that mixed precision
brings nothing. Keras is imported inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ml import architecture_catalog
from ml.training_config import TrainingConfig
from sources import catalog

if TYPE_CHECKING:
    import keras

WINDOW = 24
DRIVERS: tuple[str, ...] = catalog.DYNAMIC_FEATURES + catalog.WATER_CONTENT
CORE_CHANNELS: tuple[str, ...] = tuple(f"core_{t}" for t in catalog.TARGETS)
TIME_CHANNELS: tuple[str, ...] = ("month_sin", "month_cos")
CHANNELS: tuple[str, ...] = DRIVERS + CORE_CHANNELS + TIME_CHANNELS
MODEL_FILE = "model.keras"
TRAINING_FILE = "training.json"
HISTORY_FILE = "history.json"
SCALER_FILE = "scaler.json"
PREDICT_BATCH_SIZE = 2048


@dataclass
class ResidualScaler:
    """Training climatologies, scales and ranges of the network channels (``CHANNELS`` order).

    ``driver_clim`` (12, B, V) and ``target_clim`` (12, B, 4): means per calendar month and band
    over the training months; ``scale`` (V + 4,) the pooled standard deviation of each anomaly
    channel; ``low``/``high`` (V + 6,) the training range of every channel after scaling;
    ``sigma_res`` (4,) the standard deviation per layer of observed minus core over the
    training months (the networks' target unit).
    """

    driver_clim: np.ndarray
    target_clim: np.ndarray
    scale: np.ndarray
    low: np.ndarray
    high: np.ndarray
    sigma_res: np.ndarray

    @classmethod
    def fit(
        cls, drivers: np.ndarray, core: np.ndarray, observed: np.ndarray, calendar: np.ndarray, train: np.ndarray
    ) -> ResidualScaler:
        """drivers (T, B, V) in ``DRIVERS`` order, core and observed (T, B, 4) degC, calendar (T,)
        0..11, train (T,) bool: the months whose statistics are used."""
        driver_clim = np.stack([drivers[train & (calendar == m)].mean(axis=0) for m in range(12)])
        target_clim = np.stack([observed[train & (calendar == m)].mean(axis=0) for m in range(12)])
        anomalies = np.concatenate([drivers - driver_clim[calendar], core - target_clim[calendar]], axis=-1)
        scale = anomalies[train].reshape(-1, anomalies.shape[-1]).std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        channels = _with_time(anomalies / scale, calendar)[train].reshape(-1, len(scale) + len(TIME_CHANNELS))
        sigma_res = (observed - core)[train].reshape(-1, observed.shape[-1]).std(axis=0)
        return cls(driver_clim, target_clim, scale, channels.min(axis=0), channels.max(axis=0), sigma_res)

    def transform(self, drivers: np.ndarray, core: np.ndarray, calendar: np.ndarray, clip: bool = True) -> np.ndarray:
        """(T, B, C) float32 network channels, clipped to the training range unless ``clip`` is False."""
        anomalies = np.concatenate([drivers - self.driver_clim[calendar], core - self.target_clim[calendar]], axis=-1)
        channels = _with_time(anomalies / self.scale, calendar)
        if clip:
            channels = np.clip(channels, self.low, self.high)
        return channels.astype(np.float32)

    def out_of_range_share(
        self, drivers: np.ndarray, core: np.ndarray, calendar: np.ndarray, rows: np.ndarray | None = None
    ) -> dict[str, float]:
        """Share of the (month, band) values of each channel outside its training range: the
        share that clipping changes. ``rows`` selects months (default: all)."""
        channels = self.transform(drivers, core, calendar, clip=False)
        if rows is not None:
            channels = channels[rows]
        flat = channels.reshape(-1, channels.shape[-1])
        outside = ((flat < self.low - 1e-6) | (flat > self.high + 1e-6)).mean(axis=0)
        return {name: float(share) for name, share in zip(CHANNELS, outside, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {"channels": list(CHANNELS), **{k: getattr(self, k).tolist() for k in self.__dataclass_fields__}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResidualScaler:
        if tuple(data.get("channels", ())) != CHANNELS:
            raise ValueError(f"scaler channels {data.get('channels')} differ from this code's {list(CHANNELS)}")
        return cls(**{k: np.asarray(data[k], dtype=np.float64) for k in cls.__dataclass_fields__})


def _with_time(scaled: np.ndarray, calendar: np.ndarray) -> np.ndarray:
    angle = 2 * np.pi * calendar / 12.0
    time_channels = np.stack([np.sin(angle), np.cos(angle)], axis=-1)[:, None, :]
    return np.concatenate([scaled, np.broadcast_to(time_channels, (*scaled.shape[:2], 2))], axis=-1)


# --- windows ---------------------------------------------------------------------------------


@dataclass
class ResidualWindows:
    """Windows of network channels for the residual networks, rows band by band, by month.

    ``x`` (n, window, C) float32, ``band`` (n,) int32, ``target_month`` (n,) datetime64[M],
    ``core`` (n, 4) the core at the target month (degC), ``observed`` (n, 4) degC or None,
    ``residual`` (n, 4) (observed - core) / sigma_res or None.
    """

    x: np.ndarray
    band: np.ndarray
    target_month: np.ndarray
    core: np.ndarray
    observed: np.ndarray | None = None
    residual: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    def save(self, path: str | os.PathLike) -> None:
        arrays = {k: getattr(self, k) for k in ("x", "band", "target_month", "core", "observed", "residual")}
        arrays = {k: v for k, v in arrays.items() if v is not None}
        with open(path, "wb") as handle:  # a file object stops np.savez from appending '.npz'
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ResidualWindows:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{k: data[k] for k in data.files})


def window_view(
    channels: np.ndarray, rows: np.ndarray, window: int = WINDOW, current: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of ``channels`` (T, B, C) for target months ``rows`` (indices into T) of every band.

    Returns x (n, window, C), band (n,), row (n,), rows band-major. The window ends at the
    target month (``current``, t-23..t) or the month before (the paper's t-24..t-1); target
    months without a full window are left out.
    """
    n_bands, n_channels = channels.shape[1:]
    first = window - 1 + (0 if current else 1)
    rows = np.asarray(rows)
    rows = rows[rows >= first]
    view = sliding_window_view(channels, window, axis=0)  # (T - window + 1, B, C, window)
    x = np.transpose(view[rows - first], (1, 0, 3, 2)).reshape(-1, window, n_channels)
    band = np.repeat(np.arange(n_bands), len(rows)).astype(np.int32)
    return np.ascontiguousarray(x, dtype=np.float32), band, np.tile(rows, n_bands)


def residual_windows(
    scaler: ResidualScaler,
    drivers: np.ndarray,
    core: np.ndarray,
    months: np.ndarray,
    rows: np.ndarray,
    observed: np.ndarray | None = None,
    window: int = WINDOW,
) -> ResidualWindows:
    """Windows predicting the months ``rows`` of a (T, B, ...) series: drivers, core (and the
    observed soil temperatures, for training and test)."""
    calendar = months.astype(np.int64) % 12
    x, band, row = window_view(scaler.transform(drivers, core, calendar), rows, window)
    core_at = core[row, band]
    observed_at = None if observed is None else observed[row, band]
    residual = None if observed is None else ((observed_at - core_at) / scaler.sigma_res).astype(np.float32)
    return ResidualWindows(x, band, months[row], core_at, observed_at, residual)


def training_and_test_windows(history, core: np.ndarray) -> tuple[ResidualWindows, ResidualWindows, ResidualScaler]:
    """The residual design's training windows (targets to 2018-12), test windows (2019-01..
    2023-12) and the scaler fitted on the training months, from a history ``ml.band_arrays.
    BandGrid`` (drivers, soil water, soil temperatures) and the core's run (T, B, 4) over its months."""
    drivers, observed = history.select(DRIVERS), history.select(catalog.TARGETS)
    in_train = history.months <= catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH)
    scaler = ResidualScaler.fit(drivers, core, observed, history.calendar_month, in_train)
    test_rows = history.rows(
        catalog.month64(catalog.TEST_FIRST_TARGET_MONTH), catalog.month64(catalog.TEST_LAST_TARGET_MONTH)
    )
    train = residual_windows(scaler, drivers, core, history.months, np.flatnonzero(in_train), observed)
    test = residual_windows(scaler, drivers, core, history.months, test_rows, observed)
    return train, test, scaler


# --- networks ----------------------------------------------------------------------------


def build_bounded(
    architecture: str,
    n_features: int,
    bound: float = 2.0,
    window: int = WINDOW,
    hyperparameters: dict[str, Any] | None = None,
) -> keras.Model:
    """An ``ml.architectures`` network (its small hyperparameters in ``ml.architecture_catalog``
    unless overridden) whose four outputs pass through ``bound * tanh``: built-in layers only, so
    it saves and reloads."""
    import keras

    from ml.architectures import InputSpec, build_model

    hp = {**architecture_catalog.architecture(architecture).small_hyperparameters, **(hyperparameters or {})}
    base = build_model(architecture, InputSpec(n_features=n_features, window=window), hp)
    squashed = keras.layers.Activation("tanh", name="residual_tanh")(base.outputs[0])
    bounded = keras.layers.Rescaling(bound, name="residual_bound")(squashed)
    return keras.Model(base.inputs, bounded, name=f"{architecture}_residual")


@dataclass
class ResidualModel:
    """One trained residual network and what it needs to predict: its ``scaler`` (which
    carries sigma_res) and the core at the target months (in the windows)."""

    architecture: str
    member: int  # index of this network among the architecture's seeds
    model: keras.Model
    scaler: ResidualScaler
    history: dict[str, list[float]]
    seconds: float
    config: TrainingConfig
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def correction(self, windows: ResidualWindows) -> np.ndarray:
        """(n, 4) degC the network adds to the core."""
        if len(windows) == 0:
            return np.empty((0, len(catalog.TARGETS)))
        scaled = self.model.predict({"x": windows.x, "band": windows.band}, batch_size=PREDICT_BATCH_SIZE, verbose=0)
        return np.asarray(scaled, dtype=np.float64) * self.scaler.sigma_res

    def predict(self, windows: ResidualWindows) -> np.ndarray:
        """(n, 4) soil temperatures in degC: the core plus the bounded correction."""
        return windows.core + self.correction(windows)


def validation_months(target_month: np.ndarray, fraction: float) -> np.ndarray:
    """Bool (n,): the windows of the latest ``round(fraction * months)`` distinct target months
    (at least one, and at least one month left for fitting); all False when ``fraction`` is 0."""
    months = np.unique(target_month)
    if fraction <= 0 or len(months) < 2:
        return np.zeros(len(target_month), dtype=bool)
    n_validation = min(max(1, round(fraction * len(months))), len(months) - 1)
    return target_month >= months[-n_validation]


def train_residual(
    architecture: str,
    train: ResidualWindows,
    scaler: ResidualScaler,
    config: TrainingConfig,
    member: int = 0,
    hyperparameters: dict[str, Any] | None = None,
) -> ResidualModel:
    """Fit network ``member`` of ``architecture`` on the training windows' scaled residuals.

    Seeded with ``config.member_seed(member)``; early stopping on the latest training target
    months (every band), best weights restored."""
    import keras

    from ml.training import finite_history

    if train.residual is None:
        raise ValueError("training windows need residual targets")
    keras.utils.set_random_seed(config.member_seed(member))
    model = build_bounded(architecture, train.x.shape[2], config.bound, train.x.shape[1], hyperparameters)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    validation = validation_months(train.target_month, config.validation_fraction)
    fit = ~validation
    validation_data = None
    if validation.any():
        validation_data = ({"x": train.x[validation], "band": train.band[validation]}, train.residual[validation])
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss" if validation_data else "loss", patience=config.patience, restore_best_weights=True
    )
    started = time.perf_counter()
    fitted = model.fit(
        {"x": train.x[fit], "band": train.band[fit]},
        train.residual[fit],
        validation_data=validation_data,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        callbacks=[stopper],
        verbose=0,
    )
    seconds = time.perf_counter() - started
    history = finite_history(fitted, f"{architecture} network {member}")
    return ResidualModel(architecture, member, model, scaler, history, seconds, config, dict(hyperparameters or {}))


def save_residual(trained: ResidualModel, folder: Path) -> None:
    """Model, scaler, history and training record in ``folder`` (the caller makes it atomic)."""
    import keras

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    trained.model.save(folder / MODEL_FILE)
    (folder / SCALER_FILE).write_text(json.dumps(trained.scaler.to_dict()))
    (folder / HISTORY_FILE).write_text(json.dumps(trained.history))
    monitored = trained.history.get("val_loss") or trained.history.get("loss") or []
    record = {
        "architecture": trained.architecture,
        "member": trained.member,
        "seconds": trained.seconds,
        "config": trained.config.to_dict(),
        "hyperparameters": {
            **architecture_catalog.architecture(trained.architecture).small_hyperparameters,
            **trained.hyperparameters,
        },
        "epochs_run": len(trained.history.get("loss", [])),
        "best_epoch": int(np.argmin(monitored)) + 1 if monitored else 0,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "provenance": trained.provenance,
    }
    (folder / TRAINING_FILE).write_text(json.dumps(record, indent=2))


def load_residual(folder: Path) -> ResidualModel:
    from ml.architectures import load_model

    folder = Path(folder)
    missing = [n for n in (MODEL_FILE, SCALER_FILE, HISTORY_FILE, TRAINING_FILE) if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"residual-model folder {folder} lacks {missing}")
    record = json.loads((folder / TRAINING_FILE).read_text())
    return ResidualModel(
        architecture=record["architecture"],
        member=int(record["member"]),
        model=load_model(folder / MODEL_FILE),
        scaler=ResidualScaler.from_dict(json.loads((folder / SCALER_FILE).read_text())),
        history=json.loads((folder / HISTORY_FILE).read_text()),
        seconds=float(record["seconds"]),
        config=TrainingConfig(**record["config"]),
        hyperparameters=record.get("hyperparameters", {}),
        provenance=record.get("provenance", {}),
    )
