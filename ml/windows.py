"""Sliding windows for the soil-temperature models (paper sections 2.2.2-2.2.3).

A window is ``w`` (24) consecutive months of one spatial unit's inputs (eq. 2.3); its target is
the four soil temperatures of the month right after the last input month (eq. 2.5). The unit's
position in the units table (``ml.unit_arrays.Units``: a band on the demo, a basin on the real
tables) travels beside each window (eq. 2.4) for the model's unit embedding.

Choices this module makes, so every consumer shares them:

* History is split by the month being predicted: training windows target months up to
  ``catalog.TRAIN_LAST_TARGET_MONTH`` (2018-12), test windows target 2019-01..2023-12. A test
  window's inputs may reach back before 2019; that is not leakage, the target month is.
* The monthly inputs are the model inputs of the sources (``monthly_features``: the drivers
  of ``ml.model_inputs.ModelInputs``, soil water, static and time features), so a driver the
  sources lack is no channel; the list travels with the statistics.
* Normalisation statistics come from training windows only: the feature statistics from
  the unit-months that are an input of at least one training window (each unit-month
  counted once, however many windows contain it), the target statistics from training
  targets. Standard deviations are population (ddof=0); a feature that is constant over
  those rows (static features with one band, for instance) gets std 1, so it normalises to
  0 instead of blowing up.
* Scenario signal z (eq. 2.1-2.2): one mu and one sigma of ``r_thermal`` pooled over every
  unit, taken over the same training input unit-months. The paper computes a single
  historical mu_THERMAL/sigma_THERMAL; pooling keeps the latitudinal radiation gradient in
  z instead of erasing it unit by unit. z is one value per window, repeated at every step
  as the last input channel, and normalised like any other feature. Where the sources lack
  ``r_thermal`` there is no z (and no such channel): it is not invented from another variable.
* Scenario windows reuse the HISTORICAL statistics, so a scenario's warming shows up as a
  shift in its normalised inputs and in z rather than being normalised away.
* Rows are ordered unit by unit (units-table order), and by target month within a unit.

No Python loop runs over time: windows are strided views copied in one numpy call per unit.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from ml.model_inputs import ModelInputs
from ml.unit_arrays import Units
from sources import catalog

DEFAULT_WINDOW = 24
SIGNAL = "z"
SIGNAL_SOURCE = "r_thermal"
# Inputs in channel order; z is last because it is derived per window, not read per month.
MONTHLY_FEATURES: tuple[str, ...] = (
    catalog.DYNAMIC_FEATURES + catalog.WATER_CONTENT + catalog.STATIC_FEATURES + catalog.TIME_FEATURES
)
FEATURES: tuple[str, ...] = MONTHLY_FEATURES + (SIGNAL,)
TARGETS: tuple[str, ...] = catalog.TARGETS


def monthly_features(inputs: ModelInputs) -> tuple[str, ...]:
    """The per-month inputs for ``inputs`` (``MONTHLY_FEATURES`` on a source with every driver)."""
    return inputs.channels + catalog.STATIC_FEATURES + catalog.TIME_FEATURES


def window_features(inputs: ModelInputs) -> tuple[str, ...]:
    """Every input channel for ``inputs``: the monthly ones, then z where r_thermal is a driver."""
    return monthly_features(inputs) + ((SIGNAL,) if SIGNAL_SOURCE in inputs.drivers else ())


# --- statistics ---------------------------------------------------------------------------


@dataclass
class NormalizationStats:
    """Training-window statistics, saved beside a model so inference normalises identically."""

    feature_names: tuple[str, ...]
    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,), never 0
    target_names: tuple[str, ...]
    target_mean: np.ndarray  # (4,)
    target_std: np.ndarray  # (4,), never 0
    r_thermal_mean: float  # mu_THERMAL of eq. 2.1 (NaN without z)
    r_thermal_std: float  # sigma_THERMAL of eq. 2.1 (NaN without z)
    window: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        self.feature_names = tuple(self.feature_names)
        self.target_names = tuple(self.target_names)
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.std = np.asarray(self.std, dtype=np.float64)
        self.target_mean = np.asarray(self.target_mean, dtype=np.float64)
        self.target_std = np.asarray(self.target_std, dtype=np.float64)
        self.r_thermal_mean = float(self.r_thermal_mean)
        self.r_thermal_std = float(self.r_thermal_std)
        self.window = int(self.window)
        if SIGNAL in self.feature_names[:-1]:
            raise ValueError(f"the scenario signal {SIGNAL!r} must be the last feature")
        if self.has_signal and SIGNAL_SOURCE not in self.feature_names:
            raise ValueError(f"feature_names lacks {SIGNAL_SOURCE!r}, needed for {SIGNAL!r}")
        _check_shape("mean", self.mean, len(self.feature_names))
        _check_shape("std", self.std, len(self.feature_names))
        _check_shape("target_mean", self.target_mean, len(self.target_names))
        _check_shape("target_std", self.target_std, len(self.target_names))
        if (self.std <= 0).any() or (self.target_std <= 0).any() or (self.has_signal and not self.r_thermal_std > 0):
            raise ValueError("standard deviations must be positive")
        _check_window(self.window)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers, for json.dump beside a model file."""
        return {
            "feature_names": list(self.feature_names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "target_names": list(self.target_names),
            "target_mean": self.target_mean.tolist(),
            "target_std": self.target_std.tolist(),
            "r_thermal_mean": self.r_thermal_mean,
            "r_thermal_std": self.r_thermal_std,
            "window": self.window,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormalizationStats:
        return cls(**{field: data[field] for field in cls.__dataclass_fields__})

    def normalize_targets(self, y: np.ndarray) -> np.ndarray:
        """Soil temperatures (..., 4) in degC -> float32 z-scores."""
        return _zscore(y, self.target_mean, self.target_std)

    def denormalize_targets(self, y: np.ndarray) -> np.ndarray:
        """Model outputs (..., 4) in z-score units -> degC (float64, for metrics and exports)."""
        return np.asarray(y, dtype=np.float64) * self.target_std + self.target_mean

    @property
    def has_signal(self) -> bool:
        """Whether z is an input (the sources have r_thermal)."""
        return self.feature_names[-1:] == (SIGNAL,)

    @property
    def monthly_feature_names(self) -> tuple[str, ...]:
        """Features read per month from a table: every feature but z."""
        return self.feature_names[:-1] if self.has_signal else self.feature_names

    @property
    def monthly_mean(self) -> np.ndarray:
        return self.mean[: len(self.monthly_feature_names)]

    @property
    def monthly_std(self) -> np.ndarray:
        return self.std[: len(self.monthly_feature_names)]


def _check_shape(name: str, values: np.ndarray, length: int) -> None:
    if values.shape != (length,):
        raise ValueError(f"{name} has shape {values.shape}, expected ({length},)")


def _check_window(window: int) -> None:
    if int(window) != window or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")


def _zscore(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    # float64 arithmetic (r_thermal is ~1e9 J m-2), float32 storage: the models train in float32.
    # One float64 temporary, updated in place: at grid scale the temporaries cost more than the math.
    scores = np.subtract(values, mean, dtype=np.float64)
    scores /= std
    return scores.astype(np.float32)


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and population std. An exactly-constant column gets its own value as mean
    and std 1, so it normalises to exactly 0 (a rounding-level std would amplify noise)."""
    constant = np.ptp(values, axis=0) == 0
    mean = np.where(constant, values[0], values.mean(axis=0))
    std = np.where(constant, 1.0, values.std(axis=0))
    return mean, std


# --- the scenario signal and the window core ----------------------------------------------


def scenario_signal(r_thermal: np.ndarray, window: int, mu: float, sigma: float) -> np.ndarray:
    """z of every window start (eq. 2.1-2.2): z~ = (rolling mean - mu) / sigma, z = |z~| z~.

    ``r_thermal`` is (..., T) monthly values; returns (..., T - window + 1), element s being
    the window of months s .. s + window - 1.
    """
    rolling_mean = sliding_window_view(np.asarray(r_thermal, dtype=np.float64), window, axis=-1).mean(axis=-1)
    anomaly = (rolling_mean - mu) / sigma
    return np.abs(anomaly) * anomaly


def stack_windows(
    series: np.ndarray,
    signal: np.ndarray | None,
    window: int,
    first: int = 0,
    out: np.ndarray | None = None,
    count: int | None = None,
) -> np.ndarray:
    """Copy windows series[..., s : s + window, :] for s = first .. first + n - 1, z appended.

    ``series`` (..., T, C) holds per-month inputs, already normalised; ``signal`` (..., n) is
    the normalised z of each window, repeated at every step as channel C (None: no z, and
    ``count`` windows). Returns (..., n, window, C + 1) float32 (C without z), written into
    ``out`` when given (so callers can fill one preallocated array unit by unit instead of
    concatenating).
    """
    series = np.asarray(series)
    *lead, months, channels = series.shape
    if signal is not None:
        signal = np.asarray(signal)
        count = signal.shape[-1]
    if count is None:
        raise ValueError("stack_windows needs the scenario signal or a count of windows")
    if first < 0 or first + count + window - 1 > months:
        raise ValueError(f"windows {first}..{first + count - 1} of {window} months overrun a {months}-month series")
    shape = (*lead, count, window, channels + (signal is not None))
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    # A (window, C) view per start: each window is one contiguous block of the series.
    views = sliding_window_view(series, (window, channels), axis=(-2, -1))[..., first : first + count, 0, :, :]
    out[..., :channels] = views
    if signal is not None:
        out[..., channels] = signal[..., :, None]
    return out


def window_inputs(
    inputs: np.ndarray, stats: NormalizationStats, first: int, count: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Normalised model inputs for ``count`` windows starting at month index ``first``.

    ``inputs`` is (..., T, M) raw monthly values in ``stats.monthly_feature_names`` order
    (one unit, or a stack of series). This is the whole per-unit path: normalise the monthly
    table once (24 times less work than normalising windows), derive z, copy the windows.
    """
    window = stats.window
    monthly = stats.monthly_feature_names
    table = _zscore(inputs, stats.monthly_mean, stats.monthly_std)
    if not stats.has_signal:
        return stack_windows(table, None, window, first, out, count=count)
    r_thermal = np.asarray(inputs)[..., first : first + count + window - 1, monthly.index(SIGNAL_SOURCE)]
    z = scenario_signal(r_thermal, window, stats.r_thermal_mean, stats.r_thermal_std)
    z_normalised = _zscore(z, stats.mean[-1], stats.std[-1])
    return stack_windows(table, z_normalised, window, first, out)


# --- window sets --------------------------------------------------------------------------


@dataclass
class WindowSet:
    """Windows ready for a model: x (n, w, F) normalised float32, unit (n,) int32 the unit's
    position in the units table, y (n, 4) soil temperatures in degC (None for scenarios),
    target_month (n,) datetime64[M]."""

    x: np.ndarray
    unit: np.ndarray
    y: np.ndarray | None
    target_month: np.ndarray
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        self.feature_names = tuple(str(name) for name in self.feature_names)
        n = len(self.x)
        if self.x.ndim != 3 or self.x.shape[2] != len(self.feature_names):
            raise ValueError(f"x has shape {self.x.shape}, expected (n, window, {len(self.feature_names)})")
        if self.unit.shape != (n,) or self.target_month.shape != (n,):
            raise ValueError("unit and target_month need one entry per window")
        if self.y is not None and self.y.shape != (n, len(TARGETS)):
            raise ValueError(f"y has shape {self.y.shape}, expected ({n}, {len(TARGETS)})")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def window(self) -> int:
        return self.x.shape[1]

    def save(self, path: str | os.PathLike) -> None:
        """One .npz at exactly ``path``; plain arrays only, so loading needs no pickle."""
        arrays = {
            "x": self.x,
            "unit": self.unit,
            "target_month": self.target_month.astype("datetime64[M]"),
            "feature_names": np.asarray(self.feature_names, dtype=np.str_),
        }
        if self.y is not None:
            arrays["y"] = self.y
        with open(path, "wb") as handle:  # a file object stops np.savez from appending '.npz'
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> WindowSet:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                x=data["x"],
                unit=data["unit"],
                y=data["y"] if "y" in data.files else None,
                target_month=data["target_month"],
                feature_names=tuple(data["feature_names"].tolist()),
            )


@dataclass
class _Series:
    """One unit's validated monthly series."""

    unit: int  # position in the units table
    months: np.ndarray  # (T,) datetime64[M], consecutive
    inputs: np.ndarray  # (T, M) float64, monthly feature order
    targets: np.ndarray | None  # (T, 4) float64


def build_training_windows(
    history: pl.DataFrame, units: Units, inputs: ModelInputs | None = None, window: int = DEFAULT_WINDOW
) -> tuple[WindowSet, WindowSet, NormalizationStats]:
    """Train and test windows from the historical feature mart, and the training statistics.

    ``history`` has one row per unit and month (columns unit, month, the monthly features of
    ``inputs`` (default: every driver) and TARGETS); ``units`` its units table, whose positions
    the windows carry. Train: target month <= TRAIN_LAST_TARGET_MONTH; test: target month in
    TEST_FIRST_TARGET_MONTH..TEST_LAST_TARGET_MONTH. Rows after the test period are unused.
    """
    _check_window(window)
    inputs = inputs or ModelInputs.every_driver()
    last_used = catalog.month64(catalog.TEST_LAST_TARGET_MONTH)
    monthly = monthly_features(inputs)
    series = _read_units(history, units, monthly, TARGETS, "history", last_month=last_used)
    train_last = catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH)
    test_first = catalog.month64(catalog.TEST_FIRST_TARGET_MONTH)

    train_ranges, test_ranges = {}, {}
    for s in series:
        _require_months(s, units, window + 1, f"a window needs {window + 1} months ({window} inputs + 1 target)")
        target_months = s.months[window:]  # the target of the window starting at i is i + window
        n_train = int(np.searchsorted(target_months, train_last, side="right"))
        test_start = int(np.searchsorted(target_months, test_first, side="left"))
        train_ranges[s.unit] = (0, n_train)
        test_ranges[s.unit] = (test_start, len(target_months) - test_start)
    if not any(count for _, count in train_ranges.values()):
        raise ValueError(f"no training window: no unit has {window + 1} consecutive months ending by {train_last}")

    stats = _training_stats(series, train_ranges, window, window_features(inputs))
    return (
        _assemble(series, train_ranges, stats, with_targets=True),
        _assemble(series, test_ranges, stats, with_targets=True),
        stats,
    )


def build_scenario_windows(
    scenario: pl.DataFrame,
    stats: NormalizationStats,
    units: Units,
    first_target: dt.date = catalog.PROJECTION_FIRST_MONTH,
    last_target: dt.date = catalog.PROJECTION_LAST_MONTH,
    window: int = DEFAULT_WINDOW,
    *,
    name: str | None = None,
) -> WindowSet:
    """Windows predicting first_target..last_target for ONE scenario (one row per unit of
    ``units`` and month), with historical stats.

    Inputs start ``window`` months before ``first_target`` (2022-01 for 2024-01); months
    outside that span are ignored. A frame holding several scenarios needs ``name`` to pick
    one. y is None: scenarios have no soil-temperature truth.
    """
    _check_window(window)
    if window != stats.window:
        raise ValueError(f"window {window} differs from the {stats.window} the statistics were built for")
    scenario = _one_scenario(scenario, name)
    first, last = catalog.month64(first_target), catalog.month64(last_target)
    if last < first:
        raise ValueError(f"last_target {last} is before first_target {first}")
    needed_first, needed_last = first - window, last - 1
    series = _read_units(
        scenario, units, stats.monthly_feature_names, None, "scenario", first_month=needed_first, last_month=needed_last
    )
    count = int((last - first).astype(int)) + 1
    for s in series:
        if s.months[0] != needed_first or s.months[-1] != needed_last:
            raise ValueError(
                f"scenario {units.describe(int(units.ids[s.unit]))} covers {s.months[0]}..{s.months[-1]}; windows "
                f"predicting {first}..{last} need inputs {needed_first}..{needed_last}"
            )
    return _assemble(series, {s.unit: (0, count) for s in series}, stats, with_targets=False)


def scenario_hindcast_windows(scenario: pl.DataFrame, stats: NormalizationStats, units: Units) -> WindowSet:
    """The paper's windows of ONE scenario through 2100-12, from the hindcast's start: 2001-01,
    or the first month the run has a whole window of inputs for."""
    first_input = scenario["month"].min()
    first_target = max(catalog.HISTORY_START, catalog.add_months(first_input, stats.window))
    return build_scenario_windows(scenario, stats, units, first_target=first_target)


def target_span(windows) -> str:
    """First..last month predicted, or 'none' for an empty set (a history that ends before 2019)."""
    if len(windows) == 0:
        return "none"
    return f"{windows.target_month.min()}..{windows.target_month.max()}"


def windows_summary(name: str, sets: dict[tuple[str, str], Any], **extra: object) -> pl.DataFrame:
    """One row per set of windows (``WindowSet`` or ``ml.residual.ResidualWindows``), keyed by
    (split, design): what the view `features.windows` shows, with the set's channel list.
    ``extra`` columns (members, shares outside the training range, the model inputs) repeat on
    every row."""
    rows = []
    for (split, design), windows in sets.items():
        empty = len(windows) == 0
        rows.append(
            {
                "windows": name,
                "split": split,
                "design": design,
                "n_windows": len(windows),
                "units": int(len(np.unique(windows.unit))),
                "window_months": int(windows.x.shape[1]),
                "channels": int(windows.x.shape[2]),
                "channel_names": ", ".join(_channel_names(windows)),
                "first_target": None if empty else str(windows.target_month.min()),
                "last_target": None if empty else str(windows.target_month.max()),
                **extra,
            }
        )
    return pl.DataFrame(rows)


def _channel_names(windows) -> tuple[str, ...]:
    return tuple(getattr(windows, "feature_names", None) or getattr(windows, "channels", ()))


# --- internals ----------------------------------------------------------------------------


def _one_scenario(frame: pl.DataFrame, name: str | None) -> pl.DataFrame:
    if "scenario" not in frame.columns:
        if name is not None:
            raise ValueError(f"scenario {name!r} requested but the frame has no 'scenario' column")
        return frame
    present = sorted(frame.get_column("scenario").unique().drop_nulls().to_list())
    if name is None:
        if len(present) > 1:
            raise ValueError(f"the frame holds several scenarios {present}; pass name= to pick one")
        return frame
    if name not in present:
        raise ValueError(f"scenario {name!r} not in the frame (it holds {present})")
    return frame.filter(pl.col("scenario") == name)


def _read_units(
    frame: pl.DataFrame,
    units: Units,
    features: tuple[str, ...],
    targets: tuple[str, ...] | None,
    what: str,
    first_month: np.datetime64 | None = None,
    last_month: np.datetime64 | None = None,
) -> list[_Series]:
    """Validate and split a unit x month table into consecutive per-unit arrays (units-table
    order). A unit may start or end on its own month, but may not skip one."""
    value_columns = list(features) + list(targets or ())
    catalog.require_columns(frame, ("unit", "month", *value_columns), f"{what} frame")
    if frame.is_empty():
        raise ValueError(f"{what} frame has no rows")
    for key in ("unit", "month"):
        if frame.get_column(key).null_count():
            raise ValueError(f"{what} frame has null {key!r} values")
    month_type = frame.schema["month"]
    if not (month_type == pl.Date or month_type == pl.Datetime):
        raise ValueError(f"{what} column 'month' must be a Date, got {month_type}")

    ids = frame.get_column("unit").cast(pl.Int64).to_numpy()
    try:
        position = units.positions(ids)
    except KeyError as error:
        raise ValueError(f"{what} frame: {error.args[0]}") from None
    frame = frame.select(pl.Series("position", position), "month", *value_columns).sort("position", "month")
    days = frame.get_column("month").cast(pl.Date).to_numpy()
    months = days.astype("datetime64[M]")
    positions = frame.get_column("position").to_numpy()
    if (months.astype("datetime64[D]") != days).any():
        row = int(np.argmax(months.astype("datetime64[D]") != days))
        unit = units.describe(int(units.ids[positions[row]]))
        raise ValueError(f"{what} {unit}: month {days[row]} is not the first day of a month")
    keep = np.ones(len(months), dtype=bool)
    if first_month is not None:
        keep &= months >= first_month
    if last_month is not None:
        keep &= months <= last_month
    positions = positions[keep]
    months = months[keep]
    values = frame.select(pl.col(value_columns).cast(pl.Float64)).to_numpy()[keep]  # nulls -> NaN
    if len(months) == 0:
        raise ValueError(f"{what} frame has no rows between {first_month} and {last_month}")
    _check_finite(values, value_columns, units, positions, months, what)

    starts = np.flatnonzero(np.r_[True, positions[1:] != positions[:-1]])
    bounds = np.r_[starts, len(positions)]
    n_features = len(features)
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        unit = int(positions[lo])
        _check_consecutive(months[lo:hi], units.describe(int(units.ids[unit])), what)
        block = values[lo:hi]
        out.append(
            _Series(
                unit=unit,
                months=months[lo:hi],
                inputs=np.ascontiguousarray(block[:, :n_features]),
                targets=np.ascontiguousarray(block[:, n_features:]) if targets else None,
            )
        )
    return out


def _check_finite(
    values: np.ndarray, columns: list[str], units: Units, positions: np.ndarray, months: np.ndarray, what: str
) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        kind = "missing (NaN/null)" if np.isnan(values[row, col]) else "infinite"
        raise ValueError(
            f"{what} {units.describe(int(units.ids[positions[row]]))} month {months[row]}: {columns[col]} is {kind} "
            f"({int(bad.sum())} bad value(s) in all)"
        )


def _check_consecutive(months: np.ndarray, unit: str, what: str) -> None:
    step = np.diff(months).astype(np.int64)
    if (step == 0).any():
        i = int(np.argmax(step == 0))
        raise ValueError(f"{what} {unit} has duplicate month {months[i]}")
    if (step != 1).any():
        i = int(np.argmax(step != 1))
        raise ValueError(
            f"{what} {unit} is missing month {months[i] + 1} (the series jumps from {months[i]} to {months[i + 1]})"
        )


def _require_months(series: _Series, units: Units, needed: int, why: str) -> None:
    if len(series.months) < needed:
        raise ValueError(
            f"{units.describe(int(units.ids[series.unit]))} has {len(series.months)} month(s) "
            f"({series.months[0]}..{series.months[-1]}); {why}"
        )


def _training_stats(
    series: list[_Series], train: dict[int, tuple[int, int]], window: int, feature_names: tuple[str, ...]
) -> NormalizationStats:
    """Statistics over training windows only: their input unit-months and their targets."""
    inputs, targets = [], []
    for s in series:
        first, count = train[s.unit]
        if count:
            inputs.append(s.inputs[first : first + count + window - 1])
            targets.append(s.targets[first + window : first + count + window])
    inputs_all = np.concatenate(inputs)
    input_mean, input_std = _moments(inputs_all)
    target_mean, target_std = _moments(np.concatenate(targets))
    mu = sigma = float("nan")
    if feature_names[-1] == SIGNAL:
        r_column = feature_names.index(SIGNAL_SOURCE)
        mu, sigma = float(input_mean[r_column]), float(input_std[r_column])
        # z's own statistics: one value per training window (every step of a window repeats it).
        z = np.concatenate(
            [
                scenario_signal(s.inputs[first : first + count + window - 1, r_column], window, mu, sigma)
                for s in series
                for first, count in [train[s.unit]]
                if count
            ]
        )
        z_mean, z_std = _moments(z)
        input_mean, input_std = np.r_[input_mean, z_mean], np.r_[input_std, z_std]
    return NormalizationStats(
        feature_names=feature_names,
        mean=input_mean,
        std=input_std,
        target_names=TARGETS,
        target_mean=target_mean,
        target_std=target_std,
        r_thermal_mean=mu,
        r_thermal_std=sigma,
        window=window,
    )


def _assemble(
    series: list[_Series], ranges: dict[int, tuple[int, int]], stats: NormalizationStats, with_targets: bool
) -> WindowSet:
    """Fill one preallocated array unit by unit (no concatenation copy of the big x)."""
    window = stats.window
    total = sum(count for _, count in ranges.values())
    x = np.empty((total, window, len(stats.feature_names)), dtype=np.float32)
    unit_positions = np.empty(total, dtype=np.int32)
    target_month = np.empty(total, dtype="datetime64[M]")
    y = np.empty((total, len(TARGETS)), dtype=np.float32) if with_targets else None
    row = 0
    for s in series:
        first, count = ranges[s.unit]
        if not count:
            continue
        rows = slice(row, row + count)
        window_inputs(s.inputs, stats, first, count, out=x[rows])
        unit_positions[rows] = s.unit
        targets = slice(first + window, first + window + count)
        if with_targets:
            y[rows] = s.targets[targets]
            target_month[rows] = s.months[targets]
        else:
            # Scenario frames stop at the month before the last target: derive the months.
            target_month[rows] = s.months[first] + window + np.arange(count)
        row += count
    return WindowSet(x=x, unit=unit_positions, y=y, target_month=target_month, feature_names=stats.feature_names)
