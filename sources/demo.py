"""Offline demo sources: the demo world's simulator (`sources.simulator`) read as ERA5-Land-like
reanalysis, its CMIP5 twin (model biases, noleap calendar, four RCPs) and static geology and
soil tables, in each product's raw names and units. Everything the pipeline needs runs without
a network; being a simulator, the twin also knows the perfect-model truth.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import numpy as np
import polars as pl

from sources import catalog
from sources.base import NotPublishedError, SourceError
from sources.simulator import geology, runs
from sources.simulator.climate import CMIP_BIAS, CMIP_CALENDAR, KELVIN, SECONDS_PER_DAY, days_in_month, month_number
from sources.simulator.soil import WATER_DENSITY, cell_centres_m
from sources.simulator.unit_climates import band_climates
from sources.simulator.worlds import DEFAULT_WORLD, WORLDS, world_named

__all__ = [
    "CMIP_BIAS",
    "CMIP_CALENDAR",
    "CMIP_MODEL",
    "DEFAULT_WORLD",
    "SOURCE_NAME",
    "WORLDS",
    "DemoClimateModelSource",
    "DemoReanalysisSource",
    "DemoSettings",
    "DemoStaticSource",
    "cell_centres_m",
    "cmip_truth",
    "reanalysis_cell_truth",
    "soil_response",
]

SOURCE_NAME = "demo"
CMIP_MODEL = "DEMO-ESM1"
MRSOS_DEPTH = 0.10  # m, CMIP's "surface" soil moisture is the top 10 cm
HORIZON_END = runs.HORIZON_END

# --- settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSettings:
    """What makes one demo world: the seed, its soil physics (a name in `WORLDS`) and how far
    the reanalysis is 'published'."""

    seed: int = catalog.DEFAULT_SEED
    latest_month: dt.date = catalog.DEFAULT_LATEST_MONTH  # newest "published" reanalysis month
    cmip_historical_start: dt.date = dt.date(1950, 1, 1)
    world: str = DEFAULT_WORLD

    def __post_init__(self) -> None:
        # month starts, so equal settings hash alike and share one cached world
        object.__setattr__(self, "latest_month", catalog.month_start(self.latest_month))
        object.__setattr__(self, "cmip_historical_start", catalog.month_start(self.cmip_historical_start))
        if self.latest_month > HORIZON_END:
            raise ValueError(f"demo latest_month {self.latest_month:%Y-%m} is after the horizon {HORIZON_END:%Y-%m}")
        if not dt.date(1850, 1, 1) <= self.cmip_historical_start <= catalog.CMIP5_HISTORICAL_END:
            raise ValueError(
                f"demo cmip_historical_start {self.cmip_historical_start:%Y-%m} must lie in 1850-01..2005-12"
            )
        world_named(self.world)  # fails early, naming the worlds there are


# --- the simulator's runs for a settings, cached ----------------------------------------------


def _readonly(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for array in arrays.values():
        array.flags.writeable = False  # cached: nobody may change them in place
    return arrays


@functools.lru_cache(maxsize=8)
def _reanalysis_world(settings: DemoSettings) -> dict[str, np.ndarray]:
    """The reanalysis from 2001-01 through the latest published month (`runs.reanalysis`),
    every soil cell's monthly mean kept (the active layer's truth)."""
    world = world_named(settings.world)
    return _readonly(runs.reanalysis(settings.seed, settings.latest_month, band_climates(), world, keep_cells=True))


@functools.lru_cache(maxsize=16)
def _cmip_world(settings: DemoSettings, experiment: str) -> tuple[list[dt.date], dict[str, np.ndarray]]:
    """One CMIP5 experiment of the twin model (`runs.twin`)."""
    months, world = runs.twin(settings.seed, experiment, settings.cmip_historical_start, band_climates())
    return months, _readonly(world)


# --- frames ----------------------------------------------------------------------------------


def _band_month_columns(months: list[dt.date], units: np.ndarray | None = None) -> dict[str, pl.Series]:
    """`band` and `month` of rows ordered by month then band; with `units` (ids), `unit` instead."""
    key, ids, dtype = ("band", np.arange(catalog.N_BANDS), pl.Int32) if units is None else ("unit", units, pl.Int64)
    return {
        key: pl.Series(key, np.tile(ids, len(months)), dtype=dtype),
        "month": pl.Series("month", np.repeat(np.array(months, dtype="datetime64[D]"), len(ids))).cast(pl.Date),
    }


def _flat(values: np.ndarray) -> np.ndarray:
    """(months, bands) -> rows ordered by month then band."""
    return np.ascontiguousarray(values, dtype=float).reshape(-1)


def _reanalysis_frame(
    world: dict[str, np.ndarray], rows: np.ndarray, months: list[dt.date], units: np.ndarray | None = None
) -> pl.DataFrame:
    """ERA5-Land names and units: K, monthly totals in m of water and J m-2 (Gregorian month
    lengths), fluxes positive downwards (ECMWF), so evaporation is negative. Keyed by `band`, or
    by `unit` when the world's columns are the units of ids `units`."""
    days = world["days"][rows][:, None]
    seconds = days * SECONDS_PER_DAY
    pick = {name: world[name][rows] for name in ("t_air", "t_skin", "precip", "snowfall", "lw_down", "sw_down")}
    columns = {
        "temperature_2m": pick["t_air"] + KELVIN,
        "skin_temperature": pick["t_skin"] + KELVIN,
        "total_precipitation_sum": pick["precip"] * days / 1000.0,  # mm/day -> m per month
        "snowfall_sum": pick["snowfall"] * days / 1000.0,
        "surface_thermal_radiation_downwards_sum": pick["lw_down"] * seconds,
        "surface_solar_radiation_downwards_sum": pick["sw_down"] * seconds,
        "surface_latent_heat_flux_sum": -world["latent"][rows] * seconds,
        "surface_sensible_heat_flux_sum": -world["sensible"][rows] * seconds,
    }
    for layer in range(4):
        columns[f"volumetric_soil_water_layer_{layer + 1}"] = world["theta"][rows, layer]
        columns[f"soil_temperature_level_{layer + 1}"] = world["t_soil"][rows, layer] + KELVIN
    data = _band_month_columns(months, units)
    data.update({name: pl.Series(name, _flat(columns[name]), dtype=pl.Float64) for name in catalog.ERA5_LAND_BANDS})
    return pl.DataFrame(data)


def _empty_reanalysis_frame() -> pl.DataFrame:
    schema = {"band": pl.Int32, "month": pl.Date, **{name: pl.Float64 for name in catalog.ERA5_LAND_BANDS}}
    return pl.DataFrame(schema=schema)


def _cmip_frame(months: list[dt.date], world: dict[str, np.ndarray]) -> pl.DataFrame:
    """CMIP5 names and units: K, fluxes in kg m-2 s-1 and W m-2 (turbulent fluxes positive
    upwards), soil moisture in kg m-2."""
    theta = world["theta"]
    layer_thickness = np.array([bottom - top for top, bottom in catalog.SOIL_LAYERS_M])
    top_10cm = np.clip(MRSOS_DEPTH - np.array([top for top, _ in catalog.SOIL_LAYERS_M]), 0.0, layer_thickness)
    columns = {
        "tas": world["t_air"] + KELVIN,
        "ts": world["t_skin"] + KELVIN,
        "pr": world["precip"] / SECONDS_PER_DAY,  # mm/day = kg m-2 per day -> kg m-2 s-1
        "prsn": world["snowfall"] / SECONDS_PER_DAY,
        "rlds": world["lw_down"],
        "rsds": world["sw_down"],
        "hfls": world["latent"],
        "hfss": world["sensible"],
        "mrsos": np.einsum("mlb,l->mb", theta, top_10cm) * WATER_DENSITY,
        "mrso": np.einsum("mlb,l->mb", theta, layer_thickness) * WATER_DENSITY,
    }
    data = _band_month_columns(months)
    n_rows = len(months) * catalog.N_BANDS
    data["calendar"] = pl.Series("calendar", [CMIP_CALENDAR] * n_rows, dtype=pl.Utf8)
    data["model"] = pl.Series("model", [CMIP_MODEL] * n_rows, dtype=pl.Utf8)
    data.update({name: pl.Series(name, _flat(columns[name]), dtype=pl.Float64) for name in catalog.CMIP5_VARIABLES})
    return pl.DataFrame(data)


# --- static tables -------------------------------------------------------------------------


def _lithology_frame() -> pl.DataFrame:
    shares = geology.LITHOLOGY_SHARES / geology.LITHOLOGY_SHARES.sum(axis=0, keepdims=True)
    areas = shares * np.array([band.area_km2 for band in catalog.BANDS])
    n_classes = len(catalog.LITHOLOGY_CLASSES)
    return pl.DataFrame(
        {
            "band": pl.Series(np.repeat(np.arange(catalog.N_BANDS), n_classes), dtype=pl.Int32),
            "lithology": pl.Series(list(catalog.LITHOLOGY_CLASSES) * catalog.N_BANDS, dtype=pl.Utf8),
            "area_km2": pl.Series(areas.T.reshape(-1), dtype=pl.Float64),
        }
    )


def _soil_properties_frame() -> pl.DataFrame:
    profiles = {"bulk_density": geology.bulk_density_stored, "organic_carbon": geology.organic_carbon_stored}
    rows = []
    for name, profile in profiles.items():
        product = catalog.OPENLANDMAP_PRODUCTS[name]
        for band in range(catalog.N_BANDS):
            values = dict(zip(catalog.OPENLANDMAP_DEPTH_COLUMNS, np.round(profile(band), 1).tolist(), strict=False))
            keys = {"band": band, "property": name, "asset": product["asset"], "stored_unit": product["stored_unit"]}
            rows.append({**keys, **values})
    schema = {"band": pl.Int32, "property": pl.Utf8, "asset": pl.Utf8, "stored_unit": pl.Utf8}
    schema.update({column: pl.Float64 for column in catalog.OPENLANDMAP_DEPTH_COLUMNS})
    return pl.DataFrame(rows, schema=schema)


# --- sources ---------------------------------------------------------------------------------


class DemoReanalysisSource:
    """ERA5-Land monthly band means (Earth Engine MONTHLY_AGGR names and units), simulated."""

    name = SOURCE_NAME

    def __init__(self, settings: DemoSettings = DemoSettings()):
        self.settings = settings

    def latest_month(self) -> dt.date:
        return self.settings.latest_month

    def read_months(self, months: list[dt.date]) -> pl.DataFrame:
        wanted = sorted({catalog.month_start(m) for m in months})
        latest = self.latest_month()
        for month in wanted:
            if month < catalog.HISTORY_START:
                raise SourceError(
                    f"{self.name}: month {month:%Y-%m} is before the reanalysis history starts "
                    f"({catalog.HISTORY_START:%Y-%m})"
                )
            if month > latest:
                raise NotPublishedError(self.name, month, latest)
        rows = np.array([month_number(m) - month_number(catalog.HISTORY_START) for m in wanted], dtype=int)
        return self._frame(rows, wanted)

    def _frame(self, rows: np.ndarray, months: list[dt.date]) -> pl.DataFrame:
        """The rows (month positions from HISTORY_START) of the published `months`."""
        if not months:
            return _empty_reanalysis_frame()
        return _reanalysis_frame(_reanalysis_world(self.settings), rows, months)


class DemoClimateModelSource:
    """CMIP5 monthly band means of the twin model DEMO-ESM1 (CMIP names, units, noleap)."""

    name = SOURCE_NAME

    def __init__(self, settings: DemoSettings = DemoSettings()):
        self.settings = settings

    def experiments(self) -> tuple[str, ...]:
        return catalog.CMIP5_EXPERIMENTS

    def read_experiment(self, experiment: str) -> pl.DataFrame:
        if experiment not in catalog.CMIP5_EXPERIMENTS:
            raise SourceError(
                f"{self.name}: unknown CMIP5 experiment {experiment!r}; expected one of {catalog.CMIP5_EXPERIMENTS}"
            )
        months, world = _cmip_world(self.settings, experiment)
        return _cmip_frame(months, world)

    def perfect_model_truth(self, pathway: str) -> pl.DataFrame:
        """The simulator's own soil under `pathway` on this twin's weather without its bias
        (`cmip_truth`): canonical drivers, w_0..w_3 and t_soil_0..t_soil_3, 1950-01..2100-12."""
        if pathway not in catalog.RCP_EXPERIMENTS:
            raise SourceError(
                f"{self.name}: no perfect-model truth for {pathway!r}; expected one of {catalog.RCP_EXPERIMENTS}"
            )
        months, world = cmip_truth(self.settings, pathway)
        return _canonical_frame(months, world)

    def perfect_model_floor(self, pathway: str, drivers: pl.DataFrame) -> pl.DataFrame:
        """The simulator's soil driven by `drivers` (canonical names and units, this twin's
        calendar; the bias-corrected scenario): what no model of those drivers can beat."""
        return soil_response(drivers, world=self.settings.world)


class DemoStaticSource:
    """Per-band lithology areas and OpenLandMap soil profiles (stored units), fixed tables."""

    name = SOURCE_NAME

    def __init__(self, settings: DemoSettings = DemoSettings()):
        self.settings = settings

    def read_lithology(self) -> pl.DataFrame:
        return _lithology_frame()

    def read_soil_properties(self) -> pl.DataFrame:
        return _soil_properties_frame()


# --- perfect-model truth ---------------------------------------------------------------------
# What the simulator's own soil does under a CMIP5 pathway: the twin's weather WITHOUT the
# climate model's bias, through the same land surface and soil column as the reanalysis
# (`runs.truth`). A model trained on the reanalysis and driven by the bias-corrected twin
# should reproduce these soil temperatures. Nothing in the published frames depends on them.


def reanalysis_cell_truth(settings: DemoSettings) -> dict[str, np.ndarray]:
    """The reanalysis world with every cell's monthly mean, ``t_soil_cells`` (months, cells,
    bands; depths in ``cell_centres_m()``) from 2001-01 through ``settings.latest_month``:
    the active layer's truth. Its ``t_soil`` is the published soil temperature."""
    return _reanalysis_world(settings)


@functools.lru_cache(maxsize=8)
def cmip_truth(settings: DemoSettings, pathway: str) -> tuple[list[dt.date], dict[str, np.ndarray]]:
    """The simulator's soil under one RCP on the CMIP twin's weather with its bias removed
    (`runs.truth`), 1950-01 (``settings.cmip_historical_start``) to 2100-12, noleap: forcing
    and land arrays (months, bands), ``theta`` and ``t_soil`` (months, 4, bands) and
    ``t_soil_cells`` (months, cells, bands)."""
    months, world = runs.truth(
        settings.seed, pathway, settings.cmip_historical_start, band_climates(), world_named(settings.world), True
    )
    return months, _readonly(world)


def _canonical_frame(months: list[dt.date], world: dict[str, np.ndarray]) -> pl.DataFrame:
    """A world in the canonical names and units of the marts (degC, m and J m-2 per month,
    turbulent fluxes positive downwards), with w_0..w_3 and t_soil_0..t_soil_3."""
    days = world["days"][:, None]
    seconds = days * SECONDS_PER_DAY
    columns = {
        "t_air": world["t_air"],
        "t_surface": world["t_skin"],
        "p_total": world["precip"] * days / 1000.0,
        "p_snow": world["snowfall"] * days / 1000.0,
        "r_thermal": world["lw_down"] * seconds,
        "r_solar": world["sw_down"] * seconds,
        "q_latent": -world["latent"] * seconds,
        "q_sensible": -world["sensible"] * seconds,
        **{name: world["theta"][:, k] for k, name in enumerate(catalog.WATER_CONTENT)},
        **{name: world["t_soil"][:, k] for k, name in enumerate(catalog.TARGETS)},
    }
    data = _band_month_columns(months)
    data.update({name: pl.Series(name, _flat(values), dtype=pl.Float64) for name, values in columns.items()})
    return pl.DataFrame(data)


def soil_response(drivers: pl.DataFrame, calendar: str = CMIP_CALENDAR, world: str = DEFAULT_WORLD) -> pl.DataFrame:
    """The simulator's land surface and soil driven by canonical ``drivers`` (band, month,
    t_air, p_total, p_snow, r_thermal, r_solar of consecutive months in ``calendar``), spun up
    like the truth in the demo world named `world`: rows band, month, t_soil_0..t_soil_3 (degC)."""
    needed = ("t_air", "p_total", "p_snow", "r_thermal", "r_solar")
    catalog.require_columns(drivers, ("band", "month", *needed), "drivers for the soil response", SourceError)
    rows = drivers.select("band", "month", *needed).sort("month", "band")
    months = sorted(set(rows["month"].to_list()))
    units = band_climates()
    if rows.height != len(months) * len(units):
        raise SourceError(
            f"drivers for the soil response: expected {len(units)} bands for each of {len(months)} months"
        )
    days = days_in_month(months, calendar)
    values = {name: rows[name].to_numpy().reshape(len(months), len(units)) for name in needed}
    per_day = days[:, None]
    drivers_per_band = {
        "t_air": values["t_air"],
        "precip": values["p_total"] * 1000.0 / per_day,
        "snowfall": values["p_snow"] * 1000.0 / per_day,
        "sw_down": values["r_solar"] / (per_day * SECONDS_PER_DAY),
        "lw_down": values["r_thermal"] / (per_day * SECONDS_PER_DAY),
    }
    response = runs.soil_response(drivers_per_band, days, units, world_named(world))
    data = _band_month_columns(months)
    data.update(
        {
            name: pl.Series(name, _flat(response["t_soil"][:, k]), dtype=pl.Float64)
            for k, name in enumerate(catalog.TARGETS)
        }
    )
    return pl.DataFrame(data)
