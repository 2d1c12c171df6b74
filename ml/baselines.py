"""Honest baselines on the models' own split (design brief section 6, "further than the paper").

A model that cannot beat these is reported as such. All three predict the four soil
temperatures (degC, ``catalog.TARGETS`` order) of target months, and are scored on the same
test months as the networks (2019-01..2023-12); none of them sees the target it predicts.

* ``climatology``: mean of each unit, layer and calendar month over the history months up to
  ``train_last`` (2018-12), i.e. every training-period month of the history frame, including
  the first months that are only ever window inputs. Test-period values never enter it.
* ``persistence_predict``: seasonal persistence, the same unit's observed value 12 months
  before the target (2019-03 is predicted by 2018-03; 2020-03 by the observed 2019-03). Note
  it reads OBSERVED soil temperatures, which the networks' windows never contain (their
  inputs are drivers, soil water and statics), so it is a forecasting reference only and
  has no counterpart in scenario projections.
* ``damped_persistence``: damped lag-1 anomaly persistence, ``clim(t) + phi (observed(t-1) -
  clim(t-1))`` with phi the lag-1 autocorrelation of the training anomalies per unit and layer.
  It too READS OBSERVED SOIL TEMPERATURE (the previous month): a forecasting reference, the
  hardest one to beat a month ahead, never a projection method.
* ``RidgeBaseline``: ridge regression on the flattened, already normalised model window
  (x (n, w, F) -> (n, w * F)) plus a one-hot unit, i.e. the networks' exact inputs; the
  intercept and unit one-hots are unpenalised (see the class).

No Python loop runs over months: look-ups are array indexing, the ridge one SVD.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from sources import catalog

TARGETS: tuple[str, ...] = catalog.TARGETS
# Ridge penalties tried by RidgeBaseline.fit(alpha="auto"); inputs are z-scored, so the
# grid spans "nearly least squares" to "nearly the mean" for ~10^3 windows of ~10^3 columns.
ALPHA_GRID: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
VALIDATION_FRACTION = 0.2


def _months(values: np.ndarray | Sequence) -> np.ndarray:
    return np.asarray(values).astype("datetime64[M]")


def _history_arrays(history: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit int64, month datetime64[M], targets (n, 4) float64) of the rows with every target."""
    catalog.require_columns(history, ("unit", "month", *TARGETS), "history")
    rows = (
        history.select("unit", "month", *TARGETS)
        .drop_nulls()
        .filter(pl.all_horizontal(pl.col(c).is_not_nan() for c in TARGETS))
    )
    unit = rows["unit"].to_numpy().astype(np.int64)
    month = rows["month"].to_numpy().astype("datetime64[M]")
    values = rows.select(TARGETS).to_numpy().astype(np.float64)
    if rows.select("unit", "month").is_duplicated().any():
        raise ValueError("history has more than one row for some unit and month")
    return unit, month, values


def _calendar_month(month: np.ndarray) -> np.ndarray:
    """0..11 for January..December."""
    return month.astype(np.int64) % 12


# --- climatology --------------------------------------------------------------------------


@dataclass
class ClimatologyBaseline:
    """Mean soil temperature per unit, calendar month and layer: ``table[unit][month0]``."""

    units: np.ndarray  # (U,) unit ids, sorted
    table: np.ndarray  # (U, 12, 4) degC, NaN where a unit never had that calendar month
    count: np.ndarray  # (U, 12) training months averaged
    train_last: np.datetime64

    def predict(self, unit: np.ndarray, target_month: np.ndarray) -> np.ndarray:
        """(n, 4) climatological soil temperatures for each (unit, target month)."""
        unit = np.asarray(unit).astype(np.int64).ravel()
        month = _months(target_month).ravel()
        if unit.shape != month.shape:
            raise ValueError(f"unit {unit.shape} and target_month {month.shape} differ in length")
        position = np.searchsorted(self.units, unit)
        known = (position < len(self.units)) & (self.units[np.minimum(position, len(self.units) - 1)] == unit)
        if not known.all():
            raise ValueError(f"no training history for unit {int(unit[~known][0])}")
        calendar = _calendar_month(month)
        missing = self.count[position, calendar] == 0
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise ValueError(
                f"no training history for unit {int(unit[i])} in calendar month {int(calendar[i]) + 1} "
                f"(needed for target {month[i]})"
            )
        return self.table[position, calendar].copy()


def climatology(
    history: pl.DataFrame, train_last: dt.date | str | np.datetime64 = catalog.TRAIN_LAST_TARGET_MONTH
) -> ClimatologyBaseline:
    """Climatology from the history rows whose month is on or before ``train_last``."""
    last = catalog.month64(train_last)
    unit, month, values = _history_arrays(history)
    keep = month <= last
    unit, month, values = unit[keep], month[keep], values[keep]
    if not len(unit):
        raise ValueError(f"no history on or before {last} to build a climatology from")
    units, position = np.unique(unit, return_inverse=True)
    cell = position * 12 + _calendar_month(month)
    count = np.bincount(cell, minlength=len(units) * 12).astype(np.int64)
    sums = np.stack(
        [np.bincount(cell, weights=values[:, k], minlength=len(units) * 12) for k in range(len(TARGETS))], axis=1
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        table = np.where(count[:, None] > 0, sums / count[:, None], np.nan)
    return ClimatologyBaseline(
        units=units,
        table=table.reshape(len(units), 12, len(TARGETS)),
        count=count.reshape(len(units), 12),
        train_last=last,
    )


# --- persistence --------------------------------------------------------------------------


def persistence_predict(
    history: pl.DataFrame, unit: np.ndarray, target_month: np.ndarray, lag_months: int = 12
) -> np.ndarray:
    """(n, 4): each unit's observed soil temperatures ``lag_months`` (12) before the target.

    Raises ValueError naming the unit and month when that month (with all four targets) is
    not in ``history``.
    """
    if lag_months < 1:
        raise ValueError(f"lag_months must be positive, got {lag_months}")
    unit = np.asarray(unit).astype(np.int64).ravel()
    month = _months(target_month).ravel()
    if unit.shape != month.shape:
        raise ValueError(f"unit {unit.shape} and target_month {month.shape} differ in length")
    h_unit, h_month, h_values = _history_arrays(history)
    # One sortable int64 key per (unit, month): months since 1970 fit easily in 32 bits.
    offset = np.int64(2**31)
    h_key = h_unit * np.int64(2**32) + (h_month.astype(np.int64) + offset)
    order = np.argsort(h_key, kind="stable")
    h_key, h_values = h_key[order], h_values[order]
    source = month - np.timedelta64(lag_months, "M")
    key = unit * np.int64(2**32) + (source.astype(np.int64) + offset)
    position = np.minimum(np.searchsorted(h_key, key), max(len(h_key) - 1, 0))
    found = (h_key[position] == key) if len(h_key) else np.zeros(len(key), dtype=bool)
    if not found.all():
        i = int(np.flatnonzero(~found)[0])
        raise ValueError(
            f"persistence for unit {int(unit[i])} target {month[i]} needs unit {int(unit[i])} month "
            f"{source[i]} ({lag_months} months earlier), which is missing from history "
            f"({int((~found).sum())} target(s) affected)"
        )
    return h_values[position].copy()


# --- damped anomaly persistence ----------------------------------------------------------


def damped_persistence(observed: np.ndarray, calendar: np.ndarray, train: np.ndarray) -> np.ndarray:
    """(T, B, L) predictions from observed soil temperatures (T, B, L) of consecutive months.

    ``clim(t) + phi * (observed(t-1) - clim(t-1))``; the first month gets the climatology. The
    climatology (unit x calendar month x layer) and phi (unit x layer: the lag-1 autocorrelation
    of the anomalies over consecutive training months, clipped to [0, 1]) come from the months
    where ``train`` (T,) is True. ``calendar`` (T,) is 0..11.
    """
    observed = np.asarray(observed, dtype=np.float64)
    train = np.asarray(train, dtype=bool)
    if train.sum() < 13:
        raise ValueError(f"damped persistence needs at least 13 training months, got {int(train.sum())}")
    clim = np.stack([observed[train & (calendar == m)].mean(axis=0) for m in range(12)])
    anomaly = observed - clim[calendar]
    pairs = train[1:] & train[:-1]
    before, after = anomaly[:-1][pairs], anomaly[1:][pairs]
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = np.clip(np.nan_to_num((before * after).sum(axis=0) / (before * before).sum(axis=0)), 0.0, 1.0)
    predicted = clim[calendar].copy()
    predicted[1:] += phi * anomaly[:-1]
    return predicted


# --- ridge --------------------------------------------------------------------------------


@dataclass
class RidgeBaseline:
    """Ridge regression of the four targets on the flattened window, with a per-unit intercept.

    The model is ``y = x_flat w + c[unit]``: the flattened window x (n, w, F) -> (n, w * F)
    plus a one-hot unit whose coefficients c are, like an intercept, NOT penalised (a
    penalty on 0/1 unit indicators would depend on their arbitrary coding and, at the large
    alphas a ~1000-column window needs, erase the difference between units). Minimising
    ``|y - X w - D c|^2 + alpha |w|^2`` over c first leaves plain ridge on the data centred
    within each unit (Frisch-Waugh-Lovell), so with ``Xc``, ``yc`` centred per unit this
    solves ``(Xc^T Xc + alpha I) w = Xc^T yc`` and sets ``c_b = mean_b(y) - mean_b(X) w``.
    It is solved through the SVD of Xc (``Xc = U S V^T``, ``w = V diag(s / (s^2 + alpha))
    U^T yc``), the same closed form computed stably when X^T X is singular (constant
    static channels, more columns than windows), and one SVD serves every alpha of a grid.
    x is expected normalised (``WindowSet.x``), so one alpha suits all columns.

    ``fit(..., alpha="auto", target_month=...)`` picks alpha from ``alphas`` by a time-ordered
    split: windows whose target month is among the last 20% of the distinct training target
    months (all units together) validate, the earlier ones train; the alpha with the lowest
    validation RMSE (pooled over the four layers; ties to the smaller alpha) wins, and the
    final model is refitted on every training window. Row order is not trusted to be
    chronological (WindowSet rows go unit by unit), hence ``target_month`` is required.
    """

    units: np.ndarray | None = None  # (U,) unit ids seen in training, sorted
    coef: np.ndarray | None = None  # (w * F, 4)
    intercept: np.ndarray | None = None  # (U, 4), one row per entry of `units`
    alpha: float | None = None
    window_shape: tuple[int, int] | None = None  # (w, F)
    validation_rmse: dict[float, float] = field(default_factory=dict)  # alpha -> RMSE, "auto" only

    def _flat(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"x has shape {x.shape}, expected (n, window, features)")
        if self.window_shape is not None and tuple(x.shape[1:]) != self.window_shape:
            raise ValueError(f"x windows are {x.shape[1:]}, the model was fitted on {self.window_shape}")
        return x.reshape(x.shape[0], -1).astype(np.float64)

    @staticmethod
    def _positions(units: np.ndarray, unit: np.ndarray, n: int) -> np.ndarray:
        unit = np.asarray(unit).astype(np.int64).ravel()
        if unit.shape != (n,):
            raise ValueError(f"unit has shape {unit.shape}, expected ({n},)")
        position = np.minimum(np.searchsorted(units, unit), len(units) - 1)
        unknown = units[position] != unit
        if unknown.any():
            raise ValueError(f"unit {int(unit[unknown][0])} was not in the training windows")
        return position

    @staticmethod
    def _solve_path(design: np.ndarray, y: np.ndarray, position: np.ndarray, n_units: int, alphas: Sequence[float]):
        """(coef, intercept (U, 4)) for each alpha, from one SVD of the per-unit centred design."""
        count = np.bincount(position, minlength=n_units).astype(np.float64)
        if (count == 0).any():
            raise ValueError(f"units {np.flatnonzero(count == 0).tolist()} (by position) have no fitting window")
        onehot = np.zeros((len(position), n_units))
        onehot[np.arange(len(position)), position] = 1.0
        x_mean = (onehot.T @ design) / count[:, None]  # (B, p)
        y_mean = (onehot.T @ y) / count[:, None]  # (U, 4)
        u, s, vt = np.linalg.svd(design - x_mean[position], full_matrices=False)
        uty = u.T @ (y - y_mean[position])
        tol = s.max(initial=0.0) * max(design.shape) * np.finfo(np.float64).eps
        for alpha in alphas:
            if alpha < 0:
                raise ValueError(f"alpha must be >= 0, got {alpha}")
            keep = s > tol
            shrink = np.zeros_like(s)
            shrink[keep] = s[keep] / (s[keep] ** 2 + alpha)
            coef = vt.T @ (shrink[:, None] * uty)
            yield coef, y_mean - x_mean @ coef

    def fit(
        self,
        x: np.ndarray,
        unit: np.ndarray,
        y: np.ndarray,
        alpha: float | str = 1.0,
        target_month: np.ndarray | None = None,
        alphas: Sequence[float] = ALPHA_GRID,
    ) -> RidgeBaseline:
        """Fit on training windows; ``alpha`` a number, or "auto" to choose from ``alphas``."""
        self.window_shape = None
        design = self._flat(x)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape[0] != design.shape[0]:
            raise ValueError(f"y has shape {y.shape}, expected ({design.shape[0]}, targets)")
        if design.shape[0] < 2:
            raise ValueError("ridge needs at least two training windows")
        self.window_shape = tuple(np.asarray(x).shape[1:])
        self.units = np.unique(np.asarray(unit).astype(np.int64))
        position = self._positions(self.units, unit, design.shape[0])
        self.validation_rmse = {}
        if isinstance(alpha, str):
            if alpha != "auto":
                raise ValueError(f"alpha must be a number or 'auto', got {alpha!r}")
            alpha = self._select_alpha(design, y, position, target_month, alphas)
        coef, intercept = next(self._solve_path(design, y, position, len(self.units), [float(alpha)]))
        self.coef, self.intercept, self.alpha = coef, intercept, float(alpha)
        return self

    def _select_alpha(
        self,
        design: np.ndarray,
        y: np.ndarray,
        position: np.ndarray,
        target_month: np.ndarray | None,
        alphas: Sequence[float],
    ) -> float:
        if target_month is None:
            raise ValueError("alpha='auto' needs target_month for its time-ordered validation split")
        month = _months(target_month).ravel()
        if month.shape != (design.shape[0],):
            raise ValueError(f"target_month has shape {month.shape}, expected ({design.shape[0]},)")
        distinct = np.unique(month)
        n_validation = max(1, int(round(VALIDATION_FRACTION * len(distinct))))
        if n_validation >= len(distinct):
            raise ValueError("alpha='auto' needs at least two distinct target months")
        validation = month >= distinct[len(distinct) - n_validation]
        train = ~validation
        path = self._solve_path(design[train], y[train], position[train], len(self.units), alphas)
        for a, (coef, intercept) in zip(alphas, path, strict=False):
            error = design[validation] @ coef + intercept[position[validation]] - y[validation]
            self.validation_rmse[float(a)] = float(np.sqrt(np.mean(error**2)))
        return min(self.validation_rmse, key=self.validation_rmse.get)

    def predict(self, x: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """(n, 4) soil temperatures for windows x (n, w, F) of the given units."""
        if self.coef is None:
            raise ValueError("RidgeBaseline.predict before fit")
        design = self._flat(x)
        position = self._positions(self.units, unit, design.shape[0])
        return design @ self.coef + self.intercept[position]
