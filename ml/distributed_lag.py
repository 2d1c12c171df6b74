"""Linear distributed-lag anomaly model: the ridge successor, a transparent model that projects.

``DistributedLagRidge`` predicts the soil-temperature ANOMALY from the training climatology
(unit x calendar month x layer) from the driver and soil-water anomalies of the target month
and the 23 before it (lags 0..23; ``current=False`` shifts to the paper's t-24..t-1). Each lag
column is also multiplied by the cos and sin of the target's calendar month (``harmonics``), so
the response to a winter anomaly (under snow) may differ from a summer one. Inputs are anomalies
in units of their pooled training standard deviation; the ridge has unpenalised per-unit
intercepts and alpha chosen on the latest 20% of training months (``ml.baselines.RidgeBaseline``).
Its drivers are the model inputs of the sources (``ml.model_inputs``), named in ``drivers``.
No calendar channel and no squared scenario signal.

On the demo it is 20-30% below climatology on the test years but misses the late-century change
by 0.5-0.8 K even with the true forcing: the soil's response to several kelvin of warming depends
on its state (snow season, freezing), which a linear anomaly model cannot represent. Hence the
conduction core (``ml.thermal_core``) as the extrapolator and this model as a reference users can
compare with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.baselines import RidgeBaseline
from ml.model_inputs import ModelInputs
from ml.unit_arrays import UnitGrid, calendar_climatology
from sources import catalog

LAGS = 24


def lag_stack(anomalies: np.ndarray, lags: int = LAGS, current: bool = True) -> np.ndarray:
    """(T, U, lags, V): lag column j holds month t - j (t - 1 - j unless ``current``); NaN where
    the lag reaches before the series."""
    n_months = len(anomalies)
    shift = 0 if current else 1
    out = np.full((n_months, anomalies.shape[1], lags, anomalies.shape[2]), np.nan)
    for j in range(lags):
        lag = j + shift
        out[lag:, :, j] = anomalies[: n_months - lag]
    return out


def seasonal_interactions(features: np.ndarray, calendar: np.ndarray, harmonics: int = 1) -> np.ndarray:
    """Append every lag column times cos/sin(2 pi h month / 12), h = 1..harmonics, along axis 2."""
    parts = [features]
    for h in range(1, harmonics + 1):
        angle = 2 * np.pi * h * calendar / 12.0
        parts += [features * np.cos(angle)[:, None, None, None], features * np.sin(angle)[:, None, None, None]]
    return np.concatenate(parts, axis=2)


@dataclass
class DistributedLagRidge:
    """Ridge on lagged driver anomalies -> soil-temperature anomalies (see the module docstring)."""

    lags: int = LAGS
    current: bool = True
    harmonics: int = 1
    drivers: tuple[str, ...] = ModelInputs.every_driver().channels  # the V input channels, in order
    driver_clim: np.ndarray | None = None  # (12, U, V)
    target_clim: np.ndarray | None = None  # (12, U, 4)
    scale: np.ndarray | None = None  # (V,)
    ridge: RidgeBaseline | None = None

    def _design(self, drivers: np.ndarray, calendar: np.ndarray) -> np.ndarray:
        anomalies = (drivers - self.driver_clim[calendar]) / self.scale
        return seasonal_interactions(lag_stack(anomalies, self.lags, self.current), calendar, self.harmonics)

    def fit(
        self, drivers: np.ndarray, targets: np.ndarray, calendar: np.ndarray, train: np.ndarray
    ) -> DistributedLagRidge:
        """drivers (T, U, V) in ``self.drivers`` order, targets (T, U, 4) degC, calendar (T,) 0..11,
        train (T,) bool."""
        if drivers.shape[-1] != len(self.drivers):
            raise ValueError(f"drivers have {drivers.shape[-1]} channels, the ridge {list(self.drivers)}")
        self.driver_clim = calendar_climatology(drivers, calendar, train)
        self.target_clim = calendar_climatology(targets, calendar, train)
        scale = (drivers - self.driver_clim[calendar])[train].reshape(-1, drivers.shape[2]).std(axis=0)
        self.scale = np.where(scale > 0, scale, 1.0)
        design = self._design(drivers, calendar)
        rows = train & ~np.isnan(design).any(axis=(1, 2, 3))
        n_months, n_units = targets.shape[:2]
        unit = np.broadcast_to(np.arange(n_units), (n_months, n_units))
        month = np.broadcast_to(np.arange(n_months)[:, None], (n_months, n_units)).astype("datetime64[M]")
        self.ridge = RidgeBaseline().fit(
            design[rows].reshape(-1, *design.shape[2:]),
            unit[rows].ravel(),
            (targets - self.target_clim[calendar])[rows].reshape(-1, targets.shape[2]),
            alpha="auto",
            target_month=month[rows].ravel(),
        )
        return self

    def predict(self, drivers: np.ndarray, calendar: np.ndarray) -> np.ndarray:
        """(T, U, 4) degC from drivers (T, U, V) in ``self.drivers`` order; months whose lags reach
        before the series get the climatology."""
        if self.ridge is None:
            raise ValueError("DistributedLagRidge.predict before fit")
        design = self._design(drivers, calendar)
        missing = np.isnan(design).any(axis=(2, 3))
        n_months, n_units = drivers.shape[:2]
        flat = np.nan_to_num(design).reshape(n_months * n_units, *design.shape[2:])
        anomaly = self.ridge.predict(flat, np.tile(np.arange(n_units), n_months)).reshape(n_months, n_units, -1)
        anomaly[missing] = 0.0
        return anomaly + self.target_clim[calendar]


def fit_on_history(history: UnitGrid, drivers: tuple[str, ...]) -> DistributedLagRidge:
    """The ridge fitted on the training months (targets to 2018-12) of the history's ``drivers``
    (the model inputs' channels: drivers and soil water) and soil temperatures: the reference
    that projects."""
    train = history.months <= catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH)
    return DistributedLagRidge(drivers=tuple(drivers)).fit(
        history.select(drivers), history.select(catalog.TARGETS), history.calendar_month, train
    )
