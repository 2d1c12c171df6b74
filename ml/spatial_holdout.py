"""Spatial generalisation: models trained on some spatial units, scored on whole units they never saw.

Beside the hold-out of years (``ml.evaluation``), a hold-out of whole units (basins): a
deterministic share of the units' ``series_group``s (units whose reanalysis series are identical
share one, so identical series are never on both sides) is held out (``holdout_split``); every
model is trained on the other units' training years (2001-2018) and scored on the held-out
units' test months, against those units' own monthly climatology. That reference reads the
held-out units' observed soil temperature (2001-2018), which none of the models may: it is a
strong reference, the best a model without local observations could hope to approach.

What a model may know of an unseen unit is its inputs: its drivers, soil water, latitude and
longitude. So:

* the networks take per-unit features instead of the learned unit embedding (``unit_features``:
  latitude, longitude and the unit's training-period climatology of its drivers: the annual mean
  and amplitude of air temperature, precipitation and column soil water), standardised over
  the training units;
* the conduction core runs with POOLED parameters for every unit (``pooled_core``: the median in
  log space of the training units' fitted parameters), and the residual networks learn to correct
  that pooled core; the core channel is the core's anomaly from its own climatology (its target
  climatology would read the unit's observations);
* the ridge is pooled (``PooledLagRidge``): absolute lagged drivers plus the unit features, one
  intercept, no per-unit term.

Plain numpy and polars; Keras only through ``ml.ensemble`` when networks train.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import polars as pl

from ml.baselines import RidgeBaseline
from ml.distributed_lag import LAGS, lag_stack, seasonal_interactions
from ml.training_config import HELD_OUT_SHARE
from ml.unit_arrays import UnitGrid, Units
from sources import catalog

SPLIT_SEED = catalog.DEFAULT_SEED
UNIT_FEATURES: tuple[str, ...] = (
    "latitude",
    "longitude",
    "t_air_mean",
    "t_air_amplitude",
    "p_total_mean",
    "p_total_amplitude",
    "soil_water_mean",
    "soil_water_amplitude",
)
# the reference models the hold-out scores beside the networks
BASELINES: dict[str, str] = {
    "climatology": "the held-out units' OWN monthly climatology 2001-2018: reads their observed soil temperature",
    "persistence": "the same calendar month a year before: READS OBSERVED soil temperature",
    "thermal_core": "the conduction core with the training units' median parameters (projects)",
    "pooled_ridge": "ridge on absolute lagged drivers (lags 0-23) and unit features, one intercept (projects)",
}
OBSERVED_SOIL = ("persistence",)


# the split as it lands: each unit, its band (null outside the bands), its series group, held out or not
SPLIT_SCHEMA: dict[str, pl.DataType] = {
    "unit": pl.Int64,
    "band": pl.Int64,
    "series_group": pl.Int64,
    "held_out": pl.Boolean,
}


def holdout_split(units: Units, share: float = HELD_OUT_SHARE, seed: int = SPLIT_SEED) -> np.ndarray:
    """(U,) bool: the units held out, whole ``series_group``s, ``round(share * groups)`` of them
    (at least one, at least one left), drawn by a seeded permutation of the sorted groups."""
    groups = np.unique(units.series_group)
    if len(groups) < 2:
        raise ValueError(f"a spatial hold-out needs at least 2 series groups; the units have {len(groups)}")
    held = min(max(1, round(share * len(groups))), len(groups) - 1)
    chosen = np.random.default_rng(seed).permutation(groups)[:held]
    return np.isin(units.series_group, chosen)


def unit_features(units: Units, grid: UnitGrid, train: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """(U, K) the ``UNIT_FEATURES`` of every unit, from its coordinates and its drivers over the
    training months ``train`` (T,) of ``grid`` (which holds t_air, p_total and w_0..w_3),
    standardised with the mean and sd over the ``fitted`` (U,) units."""
    from ml.soil_water import WATER_DENSITY_KG_M3
    from ml.unit_arrays import calendar_climatology

    column = (grid.select(catalog.WATER_CONTENT) * np.asarray(catalog.SOIL_LAYER_THICKNESS_M)).sum(axis=-1)
    series = np.stack(
        [grid.select(("t_air",))[..., 0], grid.select(("p_total",))[..., 0], column * WATER_DENSITY_KG_M3], axis=-1
    )
    clim = calendar_climatology(series, grid.calendar_month, train)  # (12, U, 3)
    mean, amplitude = clim.mean(axis=0), 0.5 * (clim.max(axis=0) - clim.min(axis=0))
    lat, lon = units.frame["latitude"].to_numpy(), units.frame["longitude"].to_numpy()
    raw = np.column_stack([lat, lon, *(column for k in range(3) for column in (mean[:, k], amplitude[:, k]))])
    centre, scale = raw[fitted].mean(axis=0), raw[fitted].std(axis=0)
    return (raw - centre) / np.where(scale > 0, scale, 1.0)


def pooled_core(core, fitted: np.ndarray):
    """A core (``ml.thermal_core.ThermalCore``) whose every unit has the training units' pooled
    parameters: the median in log space of the ``fitted`` (U,) units' fitted values (the plain
    median for a parameter that is not positive)."""
    from ml.thermal_core import ThermalCore

    record = core.to_dict()
    pooled = {}
    for name, values in record["params"].items():
        values = np.asarray(values, dtype=np.float64)
        chosen = values[fitted]
        centre = float(np.exp(np.median(np.log(chosen)))) if (chosen > 0).all() else float(np.median(chosen))
        pooled[name] = np.full(values.shape, centre).tolist()
    return ThermalCore.from_dict({**record, "params": pooled})


@dataclass
class PooledLagRidge:
    """Ridge of the four absolute soil temperatures on the standardised absolute drivers of the
    target month and the 23 before (times the seasonal harmonics of ``ml.distributed_lag``) and
    the unit features, with one intercept for every unit: it needs no unit's own history."""

    lags: int = LAGS
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    ridge: RidgeBaseline | None = None

    def _design(self, drivers: np.ndarray, calendar: np.ndarray, features: np.ndarray) -> np.ndarray:
        lagged = seasonal_interactions(lag_stack((drivers - self.mean) / self.scale, self.lags), calendar)
        n_months, n_units = drivers.shape[:2]
        flat = lagged.reshape(n_months, n_units, -1)
        static = np.broadcast_to(features[None], (n_months, n_units, features.shape[1]))
        return np.concatenate([flat, static], axis=-1)

    def fit(
        self,
        drivers: np.ndarray,
        targets: np.ndarray,
        calendar: np.ndarray,
        train: np.ndarray,
        fitted: np.ndarray,
        features: np.ndarray,
    ) -> PooledLagRidge:
        """drivers (T, U, V), targets (T, U, 4) degC, calendar (T,), train (T,) and fitted (U,)
        bool: the months and units it learns from; features (U, K)."""
        flat = drivers[train][:, fitted].reshape(-1, drivers.shape[-1])
        self.mean = flat.mean(axis=0)
        self.scale = np.where(flat.std(axis=0) > 0, flat.std(axis=0), 1.0)
        design = self._design(drivers, calendar, features)
        usable = ~np.isnan(design).any(axis=-1) & train[:, None] & fitted[None, :]
        month = np.broadcast_to(np.arange(len(calendar))[:, None], usable.shape).astype("datetime64[M]")
        self.ridge = RidgeBaseline().fit(
            design[usable][:, None, :],
            np.zeros(int(usable.sum()), dtype=np.int64),
            targets[usable],
            alpha="auto",
            target_month=month[usable],
        )
        return self

    def predict(self, drivers: np.ndarray, calendar: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(T, U, 4) degC; months whose lags reach before the series are NaN."""
        if self.ridge is None:
            raise ValueError("PooledLagRidge.predict before fit")
        design = self._design(drivers, calendar, features)
        missing = np.isnan(design).any(axis=-1)
        n_months, n_units = drivers.shape[:2]
        flat = np.nan_to_num(design).reshape(n_months * n_units, 1, -1)
        predicted = self.ridge.predict(flat, np.zeros(len(flat), dtype=np.int64)).reshape(n_months, n_units, -1)
        predicted[missing] = np.nan
        return predicted


@dataclass
class HoldoutResult:
    """The scores (``ml.evaluation.score``'s table) of every model on the held-out units, the
    predictions they came from (``ml.evaluation.TestYearPredictions``), and the split (one row
    per unit: unit, band, series_group, held_out)."""

    table: pl.DataFrame
    predictions: object
    split: pl.DataFrame


def holdout_evaluation(
    grid: UnitGrid,
    units: Units,
    drivers: tuple[str, ...],
    core,
    inputs,
    architectures: dict[str, tuple],
    share: float = HELD_OUT_SHARE,
    seed: int = SPLIT_SEED,
) -> HoldoutResult:
    """Train on the units ``holdout_split`` keeps and score on the ones it holds out.

    ``grid`` holds the history's ``drivers`` (the model inputs' channels), the core's drivers
    (``ml.scenario_members.core_drivers``) and the soil temperatures of every unit, through the
    last test month; ``core`` the fitted ``ml.thermal_core.ThermalCore`` (one parameter set per
    unit: only the training units' are read), ``inputs`` the ``ml.model_inputs.ModelInputs``;
    ``architectures`` maps an architecture to (``TrainingConfig``, hyperparameters) as its
    networks were trained (residual design, ``config.seeds`` networks each)."""
    from ml.baselines import climatology, persistence_predict
    from ml.ensemble import predict_members, train_architecture
    from ml.evaluation import TestYearPredictions, score
    from ml.residual import ResidualScaler, residual_windows
    from ml.scenario_members import core_inputs, water_climatology
    from ml.unit_arrays import days_in_month, grid_frame

    held = holdout_split(units, share, seed)
    fitted = ~held
    train = grid.months <= catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH)
    test_rows = grid.rows(catalog.month64(catalog.TEST_FIRST_TARGET_MONTH), grid.months[-1])
    if not len(test_rows):
        raise ValueError("no test month: the history must reach into 2019 to score a spatial hold-out")
    calendar = grid.calendar_month
    observed = grid.select(catalog.TARGETS)
    values = grid.select(drivers)

    pooled = pooled_core(core, fitted)
    forcing = core_inputs(grid, water_climatology(grid, train), days_in_month(grid.months), inputs)
    core_run = np.transpose(pooled.predict(forcing), (0, 2, 1))  # (T, U, 4): inputs only, no observations
    features = unit_features(units, grid, train, fitted)
    scaler = ResidualScaler.fit(
        values, core_run, observed, calendar, train, drivers, fitted, "core", features, UNIT_FEATURES
    )
    train_windows = residual_windows(scaler, values, core_run, grid.months, np.flatnonzero(train), observed)
    train_windows = train_windows.select(fitted[train_windows.unit])
    test_windows = residual_windows(scaler, values, core_run, grid.months, test_rows, observed)
    test_windows = test_windows.select(held[test_windows.unit])

    networks = {}
    for architecture, (config, hyperparameters) in architectures.items():
        settings = dataclasses.replace(config, design="residual")
        trained = train_architecture(
            architecture,
            settings,
            residual_train=train_windows,
            residual_scaler=scaler,
            hyperparameters=hyperparameters,
        )
        networks[architecture] = ("residual", predict_members(trained, test_windows))

    ridge = PooledLagRidge().fit(values, observed, calendar, train, fitted, features)
    row = np.searchsorted(grid.months, test_windows.target_month)
    ids = units.ids[test_windows.unit]
    history = grid_frame(grid.months, observed, catalog.TARGETS, units)
    baselines = {
        "climatology": climatology(history).predict(ids, test_windows.target_month),
        "persistence": persistence_predict(history, ids, test_windows.target_month),
        "thermal_core": test_windows.core,
        "pooled_ridge": ridge.predict(values, calendar, features)[row, test_windows.unit],
    }
    predictions = TestYearPredictions(
        test_windows.target_month, test_windows.unit, test_windows.observed, baselines, networks, units
    )
    split = (
        units.frame.select("unit", "band", "series_group").with_columns(pl.Series("held_out", held)).cast(SPLIT_SCHEMA)
    )
    return HoldoutResult(score(predictions, OBSERVED_SOIL), predictions, split)
