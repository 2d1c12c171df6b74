"""The paper's five networks as BOUNDED RESIDUALS on top of the conduction core.

The core (``ml.thermal_core``) carries the response to the forcing, which is what must
extrapolate; a network only corrects what the core misses month by month, and can never move a
prediction by more than ``bound`` residual standard deviations:

    t_soil = core + sigma_res * bound * tanh(network(window))

Inputs of a network, per month of the window t-23..t (the target month's own forcing included,
as it is in projections: it comes from the climate model like every other input):

* the driver and soil-water anomalies from the training climatology (unit x calendar month),
  each in units of its pooled training standard deviation;
* the core's own prediction as an anomaly from the target climatology, same units;
* sin and cos of the calendar month; the unit goes through the architectures' embedding (or,
  for units the networks never saw, its per-unit features: ``ResidualScaler.unit_features``).

The drivers are the model inputs of the sources (``ml.model_inputs``): a driver the sources lack
is no channel, and the scaler carries its channel list.

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
from ml.model_inputs import ModelInputs
from ml.training_config import TrainingConfig
from sources import catalog

if TYPE_CHECKING:
    import keras

WINDOW = 24
# The driver channels on a source with every canonical driver (the demo); a scaler carries its own.
DRIVERS: tuple[str, ...] = ModelInputs.every_driver().channels
CORE_CHANNELS: tuple[str, ...] = tuple(f"core_{t}" for t in catalog.TARGETS)
TIME_CHANNELS: tuple[str, ...] = ("month_sin", "month_cos")
CHANNELS: tuple[str, ...] = DRIVERS + CORE_CHANNELS + TIME_CHANNELS
MODEL_FILE = "model.keras"
TRAINING_FILE = "training.json"
HISTORY_FILE = "history.json"
SCALER_FILE = "scaler.json"
PREDICT_BATCH_SIZE = 2048
CORE_REFERENCES = ("observed", "core")


@dataclass
class ResidualScaler:
    """Training climatologies, scales and ranges of the network channels (``channels`` order).

    ``drivers`` names the V driver and soil-water channels (the model inputs of the sources);
    ``driver_clim`` (12, U, V) and ``target_clim`` (12, U, 4): means per calendar month and unit
    over the training months (``target_clim``, the core channel's reference, is the observed
    climatology, or the core's own where observations of a unit may not be read: the spatial
    hold-out); ``scale`` (V + 4,) the pooled standard deviation of each anomaly channel;
    ``low``/``high`` (V + 6,) the training range of every channel after scaling; ``sigma_res``
    (4,) the standard deviation per layer of observed minus core over the training months (the
    networks' target unit). ``unit_features`` (U, K), where given, are standardised per-unit
    inputs (``unit_feature_names``) that replace the learned unit embedding.
    """

    drivers: tuple[str, ...]
    driver_clim: np.ndarray
    target_clim: np.ndarray
    scale: np.ndarray
    low: np.ndarray
    high: np.ndarray
    sigma_res: np.ndarray
    unit_features: np.ndarray | None = None
    unit_feature_names: tuple[str, ...] = ()

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.drivers) + CORE_CHANNELS + TIME_CHANNELS

    @property
    def n_units(self) -> int:
        return self.driver_clim.shape[1]

    @classmethod
    def fit(
        cls,
        drivers: np.ndarray,
        core: np.ndarray,
        observed: np.ndarray,
        calendar: np.ndarray,
        train: np.ndarray,
        names: tuple[str, ...] = DRIVERS,
        fitted_units: np.ndarray | None = None,
        core_reference: str = "observed",
        unit_features: np.ndarray | None = None,
        unit_feature_names: tuple[str, ...] = (),
    ) -> ResidualScaler:
        """drivers (T, U, V) named ``names``, core and observed (T, U, 4) degC, calendar (T,)
        0..11, train (T,) bool: the months whose statistics are used. ``fitted_units`` (U,) bool
        (default all): the units whose observations set the scales, ranges and sigma_res; the
        climatologies of the others come from their inputs alone when ``core_reference`` is
        "core" (the core channel then is the core's anomaly from its own climatology)."""
        if core_reference not in CORE_REFERENCES:
            raise ValueError(f"core_reference must be one of {CORE_REFERENCES}, got {core_reference!r}")
        if drivers.shape[-1] != len(names):
            raise ValueError(f"drivers have {drivers.shape[-1]} channels, names {len(names)}: {list(names)}")
        units = np.ones(drivers.shape[1], dtype=bool) if fitted_units is None else np.asarray(fitted_units, bool)
        driver_clim = np.stack([drivers[train & (calendar == m)].mean(axis=0) for m in range(12)])
        reference = observed if core_reference == "observed" else core
        target_clim = np.stack([reference[train & (calendar == m)].mean(axis=0) for m in range(12)])
        anomalies = np.concatenate([drivers - driver_clim[calendar], core - target_clim[calendar]], axis=-1)
        fitted = anomalies[train][:, units]
        scale = fitted.reshape(-1, anomalies.shape[-1]).std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        channels = _with_time(anomalies / scale, calendar)[train][:, units].reshape(-1, len(scale) + len(TIME_CHANNELS))
        sigma_res = (observed - core)[train][:, units].reshape(-1, observed.shape[-1]).std(axis=0)
        return cls(
            tuple(names),
            driver_clim,
            target_clim,
            scale,
            channels.min(axis=0),
            channels.max(axis=0),
            sigma_res,
            None if unit_features is None else np.asarray(unit_features, dtype=np.float64),
            tuple(unit_feature_names),
        )

    def transform(self, drivers: np.ndarray, core: np.ndarray, calendar: np.ndarray, clip: bool = True) -> np.ndarray:
        """(T, U, C) float32 network channels, clipped to the training range unless ``clip`` is False."""
        anomalies = np.concatenate([drivers - self.driver_clim[calendar], core - self.target_clim[calendar]], axis=-1)
        channels = _with_time(anomalies / self.scale, calendar)
        if clip:
            channels = np.clip(channels, self.low, self.high)
        return channels.astype(np.float32)

    def out_of_range_share(
        self, drivers: np.ndarray, core: np.ndarray, calendar: np.ndarray, rows: np.ndarray | None = None
    ) -> dict[str, float]:
        """Share of the (month, unit) values of each channel outside its training range: the
        share that clipping changes. ``rows`` selects months (default: all)."""
        channels = self.transform(drivers, core, calendar, clip=False)
        if rows is not None:
            channels = channels[rows]
        flat = channels.reshape(-1, channels.shape[-1])
        outside = ((flat < self.low - 1e-6) | (flat > self.high + 1e-6)).mean(axis=0)
        return {name: float(share) for name, share in zip(self.channels, outside, strict=True)}

    def network_inputs(self, windows: ResidualWindows) -> dict[str, np.ndarray]:
        """What a network takes for ``windows``: the channels and the unit's position (for the
        embedding) or its features."""
        if self.unit_features is None:
            return {"x": windows.x, "unit": windows.unit}
        return {"x": windows.x, "unit_features": self.unit_features[windows.unit].astype(np.float32)}

    def to_dict(self) -> dict[str, Any]:
        arrays = ("driver_clim", "target_clim", "scale", "low", "high", "sigma_res")
        return {
            "channels": list(self.channels),
            "drivers": list(self.drivers),
            **{k: getattr(self, k).tolist() for k in arrays},
            "unit_features": None if self.unit_features is None else self.unit_features.tolist(),
            "unit_feature_names": list(self.unit_feature_names),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResidualScaler:
        arrays = ("driver_clim", "target_clim", "scale", "low", "high", "sigma_res")
        scaler = cls(
            tuple(data["drivers"]),
            *(np.asarray(data[k], dtype=np.float64) for k in arrays),
            None if data.get("unit_features") is None else np.asarray(data["unit_features"], dtype=np.float64),
            tuple(data.get("unit_feature_names", ())),
        )
        if tuple(data.get("channels", ())) != scaler.channels:
            raise ValueError(f"scaler channels {data.get('channels')} differ from its drivers' {list(scaler.channels)}")
        return scaler


def _with_time(scaled: np.ndarray, calendar: np.ndarray) -> np.ndarray:
    angle = 2 * np.pi * calendar / 12.0
    time_channels = np.stack([np.sin(angle), np.cos(angle)], axis=-1)[:, None, :]
    return np.concatenate([scaled, np.broadcast_to(time_channels, (*scaled.shape[:2], 2))], axis=-1)


# --- windows ---------------------------------------------------------------------------------


@dataclass
class ResidualWindows:
    """Windows of network channels for the residual networks, rows unit by unit, by month.

    ``x`` (n, window, C) float32, ``unit`` (n,) int32 the unit's position in the units table,
    ``target_month`` (n,) datetime64[M], ``core`` (n, 4) the core at the target month (degC),
    ``observed`` (n, 4) degC or None, ``residual`` (n, 4) (observed - core) / sigma_res or None,
    ``channels`` the names of x's channels.
    """

    x: np.ndarray
    unit: np.ndarray
    target_month: np.ndarray
    core: np.ndarray
    observed: np.ndarray | None = None
    residual: np.ndarray | None = None
    channels: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.x)

    def select(self, keep: np.ndarray) -> ResidualWindows:
        """The windows where ``keep`` (bool or indices) holds."""
        pick = {k: getattr(self, k) for k in ("x", "unit", "target_month", "core", "observed", "residual")}
        return ResidualWindows(
            **{k: None if v is None else v[keep] for k, v in pick.items()}, channels=tuple(self.channels)
        )

    def save(self, path: str | os.PathLike) -> None:
        arrays = {k: getattr(self, k) for k in ("x", "unit", "target_month", "core", "observed", "residual")}
        arrays = {k: v for k, v in arrays.items() if v is not None}
        arrays["channels"] = np.asarray(self.channels, dtype=np.str_)
        with open(path, "wb") as handle:  # a file object stops np.savez from appending '.npz'
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ResidualWindows:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "channels"}
            return cls(**arrays, channels=tuple(data["channels"].tolist()) if "channels" in data.files else ())


def window_view(
    channels: np.ndarray, rows: np.ndarray, window: int = WINDOW, current: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of ``channels`` (T, U, C) for target months ``rows`` (indices into T) of every unit.

    Returns x (n, window, C), unit (n,) positions, row (n,), rows unit-major. The window ends at
    the target month (``current``, t-23..t) or the month before (the paper's t-24..t-1); target
    months without a full window are left out.
    """
    n_units, n_channels = channels.shape[1:]
    first = window - 1 + (0 if current else 1)
    rows = np.asarray(rows)
    rows = rows[rows >= first]
    view = sliding_window_view(channels, window, axis=0)  # (T - window + 1, U, C, window)
    x = np.transpose(view[rows - first], (1, 0, 3, 2)).reshape(-1, window, n_channels)
    unit = np.repeat(np.arange(n_units), len(rows)).astype(np.int32)
    return np.ascontiguousarray(x, dtype=np.float32), unit, np.tile(rows, n_units)


def residual_windows(
    scaler: ResidualScaler,
    drivers: np.ndarray,
    core: np.ndarray,
    months: np.ndarray,
    rows: np.ndarray,
    observed: np.ndarray | None = None,
    window: int = WINDOW,
) -> ResidualWindows:
    """Windows predicting the months ``rows`` of a (T, U, ...) series: drivers, core (and the
    observed soil temperatures, for training and test)."""
    calendar = months.astype(np.int64) % 12
    x, unit, row = window_view(scaler.transform(drivers, core, calendar), rows, window)
    core_at = core[row, unit]
    observed_at = None if observed is None else observed[row, unit]
    residual = None if observed is None else ((observed_at - core_at) / scaler.sigma_res).astype(np.float32)
    return ResidualWindows(x, unit, months[row], core_at, observed_at, residual, scaler.channels)


def training_and_test_windows(
    history, core: np.ndarray, drivers: tuple[str, ...] = DRIVERS
) -> tuple[ResidualWindows, ResidualWindows, ResidualScaler]:
    """The residual design's training windows (targets to 2018-12), test windows (2019-01..
    2023-12) and the scaler fitted on the training months, from a history ``ml.unit_arrays.
    UnitGrid`` (the ``drivers`` channels, soil temperatures) and the core's run (T, U, 4) over its
    months."""
    values, observed = history.select(drivers), history.select(catalog.TARGETS)
    in_train = history.months <= catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH)
    scaler = ResidualScaler.fit(values, core, observed, history.calendar_month, in_train, drivers)
    test_rows = history.rows(
        catalog.month64(catalog.TEST_FIRST_TARGET_MONTH), catalog.month64(catalog.TEST_LAST_TARGET_MONTH)
    )
    train = residual_windows(scaler, values, core, history.months, np.flatnonzero(in_train), observed)
    test = residual_windows(scaler, values, core, history.months, test_rows, observed)
    return train, test, scaler


# --- networks ----------------------------------------------------------------------------


def build_bounded(
    architecture: str,
    n_features: int,
    bound: float = 2.0,
    window: int = WINDOW,
    hyperparameters: dict[str, Any] | None = None,
    n_units: int = catalog.N_BANDS,
    unit_features: int = 0,
) -> keras.Model:
    """An ``ml.architectures`` network (its small hyperparameters in ``ml.architecture_catalog``
    unless overridden) for ``n_units`` units (their embedding), or taking ``unit_features`` per-unit
    features instead, whose four outputs pass through ``bound * tanh``: built-in layers only, so
    it saves and reloads."""
    import keras

    from ml.architectures import InputSpec, build_model

    hp = {**architecture_catalog.architecture(architecture).small_hyperparameters, **(hyperparameters or {})}
    spec = InputSpec(n_features=n_features, window=window, n_units=n_units, unit_features=unit_features)
    base = build_model(architecture, spec, hp)
    squashed = keras.layers.Activation("tanh", name="residual_tanh")(base.outputs[0])
    bounded = keras.layers.Rescaling(bound, name="residual_bound")(squashed)
    return keras.Model(base.inputs, bounded, name=f"{architecture}_residual")


def build_for_scaler(
    architecture: str, scaler: ResidualScaler, config: TrainingConfig, hyperparameters: dict[str, Any] | None = None
) -> keras.Model:
    """The bounded network for the channels, units and unit features of ``scaler``."""
    return build_bounded(
        architecture,
        len(scaler.channels),
        config.bound,
        WINDOW,
        hyperparameters,
        n_units=scaler.n_units,
        unit_features=0 if scaler.unit_features is None else scaler.unit_features.shape[1],
    )


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
        scaled = self.model.predict(self.scaler.network_inputs(windows), batch_size=PREDICT_BATCH_SIZE, verbose=0)
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
    months (every unit), best weights restored."""
    import keras

    from ml.training import finite_history

    if train.residual is None:
        raise ValueError("training windows need residual targets")
    keras.utils.set_random_seed(config.member_seed(member))
    if train.x.shape[1:] != (WINDOW, len(scaler.channels)):
        raise ValueError(f"training windows are {train.x.shape[1:]}, the scaler's channels {list(scaler.channels)}")
    model = build_for_scaler(architecture, scaler, config, hyperparameters)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    validation = validation_months(train.target_month, config.validation_fraction)
    fit = ~validation
    validation_data = None
    if validation.any():
        validation_data = (scaler.network_inputs(train.select(validation)), train.residual[validation])
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss" if validation_data else "loss", patience=config.patience, restore_best_weights=True
    )
    started = time.perf_counter()
    fitted = model.fit(
        scaler.network_inputs(train.select(fit)),
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
