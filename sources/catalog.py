"""The product's fixed vocabulary: latitude bands, months, experiments and raw schemas.

Plain Python (no Dagster import) so sources, assets, ml/ and tests share one definition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# Seed of everything random in the product (demo weather, training, soil-water splits) unless
# configured otherwise: same seed, same result.
DEFAULT_SEED = 20260101

# --- space -------------------------------------------------------------------------------

LON_WEST = -168.0
LON_EAST = -141.0


@dataclass(frozen=True)
class Band:
    index: int
    south: float  # degrees north
    north: float
    area_km2: float  # paper Table 1

    @property
    def mid_latitude(self) -> float:
        return 0.5 * (self.south + self.north)


BANDS: tuple[Band, ...] = (
    Band(0, 59.2632802, 61.275545, 243360.0),
    Band(1, 61.275545, 63.2878288, 264663.0),
    Band(2, 63.2878288, 65.300103, 238854.0),
    Band(3, 65.300103, 67.3123774, 225820.0),
    Band(4, 67.3123774, 69.3246517, 212574.0),
    Band(5, 69.3246517, 71.336926, 67668.0),
)
N_BANDS = len(BANDS)

# --- time --------------------------------------------------------------------------------

HISTORY_START = dt.date(2001, 1, 1)
DEFAULT_LATEST_MONTH = dt.date(2023, 12, 1)
CMIP5_HISTORICAL_END = dt.date(2005, 12, 1)
CMIP5_RCP_START = dt.date(2006, 1, 1)
CMIP5_RCP_END = dt.date(2100, 12, 1)

CMIP5_EXPERIMENTS: tuple[str, ...] = ("historical", "rcp26", "rcp45", "rcp60", "rcp85")
RCP_EXPERIMENTS: tuple[str, ...] = CMIP5_EXPERIMENTS[1:]


def month_start(value: dt.date | str) -> dt.date:
    """First day of the month of `value` ('2001-01', '2001-01-01' or a date)."""
    if isinstance(value, str):
        parts = value.strip().split("-")
        if len(parts) < 2:
            raise ValueError(f"not a month: {value!r} (expected YYYY-MM or YYYY-MM-DD)")
        return dt.date(int(parts[0]), int(parts[1]), 1)
    return dt.date(value.year, value.month, 1)


def month64(value: dt.date | str | np.datetime64) -> np.datetime64:
    """The month of `value` as numpy datetime64[M] (the arrays of ml/ key months this way)."""
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[M]")
    return np.datetime64(month_start(value), "M")


def add_months(month: dt.date, n: int) -> dt.date:
    index = month.year * 12 + (month.month - 1) + n
    return dt.date(index // 12, index % 12 + 1, 1)


def month_range(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every month start from `first` to `last`, both included."""
    first, last = month_start(first), month_start(last)
    count = (last.year - first.year) * 12 + (last.month - first.month) + 1
    return [add_months(first, i) for i in range(max(count, 0))]


def days_in_month(month: dt.date) -> int:
    """Days of `month` in the Gregorian calendar (the reanalysis')."""
    return (add_months(month_start(month), 1) - month_start(month)).days


def require_columns(frame, columns: Iterable[str], what: str, error: type[Exception] = ValueError) -> None:
    """Raise `error` naming `what` and the missing columns when `frame` lacks any of `columns`."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise error(f"{what}: missing column(s) {missing}; found {sorted(frame.columns)}")


# --- raw schemas: each product's own names and units --------------------------------------

# ERA5-Land as Earth Engine's ECMWF/ERA5_LAND/MONTHLY_AGGR names its bands. Accumulations
# (`*_sum`) are monthly totals; ECMWF fluxes are positive downwards.
ERA5_LAND_UNITS: dict[str, str] = {
    "temperature_2m": "K",
    "skin_temperature": "K",
    "total_precipitation_sum": "m",
    "snowfall_sum": "m",
    "surface_thermal_radiation_downwards_sum": "J m-2",
    "surface_solar_radiation_downwards_sum": "J m-2",
    "surface_latent_heat_flux_sum": "J m-2",
    "surface_sensible_heat_flux_sum": "J m-2",
    "volumetric_soil_water_layer_1": "m3 m-3",
    "volumetric_soil_water_layer_2": "m3 m-3",
    "volumetric_soil_water_layer_3": "m3 m-3",
    "volumetric_soil_water_layer_4": "m3 m-3",
    "soil_temperature_level_1": "K",
    "soil_temperature_level_2": "K",
    "soil_temperature_level_3": "K",
    "soil_temperature_level_4": "K",
}
ERA5_LAND_BANDS: tuple[str, ...] = tuple(ERA5_LAND_UNITS)

# The same variables as the Copernicus CDS names them (netCDF/GRIB short names).
ERA5_LAND_CDS_NAMES: dict[str, str] = {
    "t2m": "temperature_2m",
    "skt": "skin_temperature",
    "tp": "total_precipitation_sum",
    "sf": "snowfall_sum",
    "strd": "surface_thermal_radiation_downwards_sum",
    "ssrd": "surface_solar_radiation_downwards_sum",
    "slhf": "surface_latent_heat_flux_sum",
    "sshf": "surface_sensible_heat_flux_sum",
    **{f"swvl{i}": f"volumetric_soil_water_layer_{i}" for i in range(1, 5)},
    **{f"stl{i}": f"soil_temperature_level_{i}" for i in range(1, 5)},
}

# Further ERA5-Land bands (MONTHLY_AGGR names and units) that some sources have beside the
# product's inputs (the real basin tables do): landed and staged where a source has them,
# absent (null) otherwise, so the modelling layer may use them where they exist.
ERA5_LAND_OPTIONAL_UNITS: dict[str, str] = {
    "snow_depth_water_equivalent": "m",  # of water equivalent, monthly mean
    "surface_net_solar_radiation_sum": "J m-2",  # NET, positive downwards
    "surface_net_thermal_radiation_sum": "J m-2",  # NET, positive downwards
    "dewpoint_temperature_2m": "K",
    "surface_pressure": "Pa",
    "u_component_of_wind_10m": "m s-1",
    "v_component_of_wind_10m": "m s-1",
    "surface_runoff_sum": "m",
    "sub_surface_runoff_sum": "m",
}
ERA5_LAND_OPTIONAL_BANDS: tuple[str, ...] = tuple(ERA5_LAND_OPTIONAL_UNITS)

# CMIP5 standard output (Amon/Lmon) names and units. hfls/hfss are positive upwards.
CMIP5_UNITS: dict[str, str] = {
    "tas": "K",
    "ts": "K",
    "pr": "kg m-2 s-1",
    "prsn": "kg m-2 s-1",
    "rlds": "W m-2",
    "rsds": "W m-2",
    "hfls": "W m-2",
    "hfss": "W m-2",
    "mrsos": "kg m-2",
    "mrso": "kg m-2",
}
CMIP5_VARIABLES: tuple[str, ...] = tuple(CMIP5_UNITS)

# USGS Geologic Map of Alaska, generalised lithology classes.
LITHOLOGY_CLASSES: tuple[str, ...] = (
    "water",
    "unconsolidated",
    "glacier",
    "volcanic",
    "melange",
    "plutonic",
    "sedimentary",
    "metamorphic",
    "unknown",
)

# OpenLandMap soil products as stored on Earth Engine: integer-scaled values per depth.
OPENLANDMAP_PRODUCTS: dict[str, dict[str, object]] = {
    "bulk_density": {
        "asset": "OpenLandMap/SOL/SOL_BULKDENS-FINEEARTH_USDA-4A1H_M/v02",
        "stored_unit": "10 kg m-3",
        "scale": 10.0,
        "unit": "kg m-3",
    },
    "organic_carbon": {
        "asset": "OpenLandMap/SOL/SOL_ORGANIC-CARBON_USDA-6A1C_M/v02",
        "stored_unit": "5 g kg-1",
        "scale": 5.0,
        "unit": "g kg-1",
    },
}
OPENLANDMAP_DEPTHS_CM: tuple[int, ...] = (0, 10, 30, 60, 100, 200)
OPENLANDMAP_DEPTH_COLUMNS: tuple[str, ...] = tuple(f"b{d}" for d in OPENLANDMAP_DEPTHS_CM)

# ERA5-Land soil layers (m): top and bottom of each layer.
SOIL_LAYERS_M: tuple[tuple[float, float], ...] = ((0.0, 0.07), (0.07, 0.28), (0.28, 1.0), (1.0, 2.89))

# --- canonical variables (after staging; design brief section 4) --------------------------

# Monthly dynamic drivers, canonical names and units.
DYNAMIC_FEATURES: tuple[str, ...] = (
    "t_air",  # degC
    "t_surface",  # degC
    "p_total",  # m water / month
    "p_snow",  # m water / month
    "r_thermal",  # J m-2 / month
    "r_solar",  # J m-2 / month
    "q_latent",  # J m-2 / month, positive downwards
    "q_sensible",  # J m-2 / month, positive downwards
)
# Canonical names of ERA5_LAND_OPTIONAL_BANDS (history mart only; null where a source lacks them).
OPTIONAL_REANALYSIS_FEATURES: dict[str, str] = {
    "snow_depth_water_equivalent": "swe",  # m water equivalent, monthly mean
    "surface_net_solar_radiation_sum": "r_net_solar",  # J m-2 / month, positive downwards
    "surface_net_thermal_radiation_sum": "r_net_thermal",  # J m-2 / month, positive downwards
    "dewpoint_temperature_2m": "t_dew",  # degC
    "surface_pressure": "surface_pressure",  # Pa
    "u_component_of_wind_10m": "wind_u",  # m s-1, eastward
    "v_component_of_wind_10m": "wind_v",  # m s-1, northward
    "surface_runoff_sum": "runoff_surface",  # m water / month
    "sub_surface_runoff_sum": "runoff_subsurface",  # m water / month
}
OPTIONAL_FEATURES: tuple[str, ...] = tuple(OPTIONAL_REANALYSIS_FEATURES.values())
WATER_CONTENT: tuple[str, ...] = ("w_0", "w_1", "w_2", "w_3")  # m3 m-3 per soil layer
TARGETS: tuple[str, ...] = ("t_soil_0", "t_soil_1", "t_soil_2", "t_soil_3")  # degC per soil layer
LITHOLOGY_FEATURES: tuple[str, ...] = tuple(f"litho_{c}" for c in LITHOLOGY_CLASSES)
SOIL_PROPERTY_FEATURES: tuple[str, ...] = tuple(
    f"{p}_{layer}" for p in ("bulk_density", "organic_carbon") for layer in range(len(SOIL_LAYERS_M))
)
STATIC_FEATURES: tuple[str, ...] = LITHOLOGY_FEATURES + SOIL_PROPERTY_FEATURES
TIME_FEATURES: tuple[str, ...] = ("year", "month_sin", "month_cos")
SOIL_LAYER_THICKNESS_M: tuple[float, ...] = tuple(bottom - top for top, bottom in SOIL_LAYERS_M)

# History split by the month being predicted (design brief section 3).
TRAIN_LAST_TARGET_MONTH = dt.date(2018, 12, 1)
TEST_FIRST_TARGET_MONTH = dt.date(2019, 1, 1)
TEST_LAST_TARGET_MONTH = dt.date(2023, 12, 1)
PROJECTION_FIRST_MONTH = dt.date(2024, 1, 1)
PROJECTION_LAST_MONTH = CMIP5_RCP_END
