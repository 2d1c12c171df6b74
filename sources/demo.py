"""Offline demo source: a small, deterministic, physically grounded climate for the six bands.

Three sources share one climate: ERA5-Land-like reanalysis (seasonal air temperature by band,
a warming trend, AR(1) weather, insolation and clouds, a snowpack that insulates, a soil-water
bucket and a 1-D heat-conduction model with freezing), its CMIP5 twin (the same physics with
model biases, its own weather, a noleap calendar and four RCP pathways) and static geology and
soil tables. Everything the pipeline needs runs without a network.
"""

from __future__ import annotations

import calendar as gregorian
import datetime as dt
import functools
from dataclasses import dataclass

import numpy as np
import polars as pl

from sources import catalog
from sources.base import NotPublishedError, SourceError

SOURCE_NAME = "demo"
CMIP_MODEL = "DEMO-ESM1"
CMIP_CALENDAR = "noleap"

# Random numbers are drawn through this month whatever is published, so a month's values
# never depend on how many months exist after it (prefix stability).
HORIZON_END = catalog.CMIP5_RCP_END

# --- physical constants ------------------------------------------------------------------

KELVIN = 273.15
SIGMA = 5.670374419e-8  # Stefan-Boltzmann, W m-2 K-4
SOLAR_CONSTANT = 1361.0  # W m-2
LATENT_FUSION = 3.34e5  # J kg-1
LATENT_VAPORISATION = 2.5e6  # J kg-1
WATER_DENSITY = 1000.0  # kg m-3
SECONDS_PER_DAY = 86400.0
NOLEAP_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])

# --- band climate ------------------------------------------------------------------------
# 2001-2023 normals per band (0 = south .. 5 = North Slope), loosely after ERA5-Land. The
# fresh-snow density is effective: it sets how well each band's snowpack insulates and is
# tuned so the 0-7 cm soil matches ERA5-Land's band means (about +3 degC in band 0 to
# -2.3 degC in band 5); the North Slope's depth-hoar-rich pack insulates best. Boreal forest
# masks snow (lower albedo); the organic mat thickens and warming is amplified northward.
_BAND = {
    name: np.array(values, dtype=float)
    for name, values in {
        "t_air_jan": (-12.0, -17.0, -21.5, -23.0, -24.0, -25.0),  # degC
        "t_air_jul": (12.5, 13.5, 14.0, 13.5, 12.5, 11.0),  # degC
        "t_air_annual": (-1.0, -3.0, -5.0, -6.5, -8.0, -10.0),  # degC
        "precip_annual": (900.0, 550.0, 420.0, 380.0, 380.0, 300.0),  # mm
        "snow_density_fresh": (275.0, 290.0, 284.0, 270.0, 252.0, 183.0),  # kg m-3
        "snow_albedo": (0.50, 0.50, 0.55, 0.60, 0.75, 0.80),
        "organic_depth": (0.10, 0.12, 0.15, 0.18, 0.20, 0.22),  # m
        "amplification": (1.6, 1.75, 1.9, 2.05, 2.2, 2.4),  # local / global warming
    }.items()
}
MID_LATITUDES = np.array([band.mid_latitude for band in catalog.BANDS])
BAND_CORRELATION = 0.85  # weather of neighbouring bands is alike: corr = 0.85 ** |i - j|
WEATHER_PERSISTENCE = 0.35  # lag-1 autocorrelation of monthly air temperature anomalies

# Global-mean warming (K, relative to 1986-2005) at knot years, linear in between. The RCP
# shapes follow AR5: rcp26 peaks mid-century, rcp45 stabilises, rcp60 and rcp85 keep rising.
_HISTORICAL_KNOTS = ((1850.0, -0.75), (1950.0, -0.45), (1975.0, -0.38), (2005.0, 0.17))
_PATHWAY_KNOTS = {
    "historical": _HISTORICAL_KNOTS,
    "rcp26": ((2020.0, 0.50), (2035.0, 0.80), (2050.0, 0.95), (2070.0, 1.00), (2100.0, 0.95)),
    "rcp45": ((2020.0, 0.50), (2035.0, 0.85), (2050.0, 1.20), (2070.0, 1.55), (2085.0, 1.70), (2100.0, 1.75)),
    "rcp60": ((2020.0, 0.45), (2035.0, 0.75), (2050.0, 1.10), (2070.0, 1.70), (2085.0, 2.25), (2100.0, 2.60)),
    "rcp85": ((2020.0, 0.55), (2035.0, 1.00), (2050.0, 1.60), (2070.0, 2.55), (2085.0, 3.30), (2100.0, 4.10)),
    # what the reanalysis "observes": history, the recent past, then rcp45
    "observed": ((2015.0, 0.40), (2023.0, 0.62), (2035.0, 0.85), (2050.0, 1.20), (2070.0, 1.55), (2100.0, 1.75)),
}
NORMALS_PERIOD = (catalog.HISTORY_START, dt.date(2023, 12, 1))  # the normals above describe it

# --- snow, water and surface energy ------------------------------------------------------

DAILY_T_SPREAD = 4.5  # K, spread of daily means within a month: snow/rain split, melt
SNOW_THRESHOLD = 0.5  # degC, daily mean below which precipitation falls as snow
DEGREE_DAY_FACTOR = 3.5  # mm of melt per positive degree-day
SNOW_DENSITY_GAIN = 100.0  # kg m-3 of settling a snowpack can gain over its fresh density
SNOW_SETTLING_MONTHS = 3.0
SNOW_COVER_SWE = 10.0  # mm of SWE that covers half the ground (albedo)
BARE_ALBEDO = 0.15
CLEAR_SKY_TRANSMISSIVITY = 0.75
CLOUD_SHADING = 0.65  # fraction of sunlight an overcast sky removes
RELATIVE_HUMIDITY = 0.8
TURBULENT_EXCHANGE = 20.0  # W m-2 K-1, sensible heat per kelvin of skin-air difference
WINTER_SUBLIMATION = 2.0  # W m-2 of latent heat even in the dark (sublimation)
BUCKET_CAPACITY = 150.0  # mm of water the soil can hold above its driest state
BASEFLOW_PER_MONTH = 0.08  # fraction of stored water that drains each month
LAYER_MEMORY_MONTHS = (0.5, 1.5, 4.0, 12.0)  # deeper layers follow the bucket more slowly
THETA_DRY = np.array([0.17, 0.20, 0.22, 0.25])  # m3 m-3 per ERA5-Land layer
THETA_WET = np.array([0.43, 0.40, 0.38, 0.36])
MRSOS_DEPTH = 0.10  # m, CMIP's "surface" soil moisture is the top 10 cm

# --- soil heat ---------------------------------------------------------------------------

CELLS_PER_LAYER = (2, 3, 4, 5)  # cells splitting each ERA5-Land layer (edges stay exact)
DEEP_EDGES = (3.5, 4.2, 5.0)  # m, below the deepest layer, so the bottom boundary is far
SUBSTEPS_PER_MONTH = 6
PICARD_ITERATIONS = 3  # linear solves per step, each with a better heat capacity
SPINUP_YEARS = 8  # years of the first year's climate (without weather) run before the first month
FREEZING_RANGE = 1.0  # K, water freezes between -1 degC and 0 degC (apparent heat capacity)
GEOTHERMAL_FLUX = 0.06  # W m-2 entering the bottom of the column
SURFACE_RESISTANCE = 0.05  # m2 K W-1, litter and vegetation between skin and soil
# (dry volumetric heat capacity J m-3 K-1, conductivity thawed, frozen W m-1 K-1)
ORGANIC = (0.6e6, 0.35, 0.9)
MINERAL = (1.2e6, 1.3, 2.0)
HEAT_CAPACITY_WATER = 4.18e6
HEAT_CAPACITY_ICE = 1.9e6

# --- settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSettings:
    """What makes one demo world: the seed and how far the reanalysis is 'published'."""

    seed: int = catalog.DEFAULT_SEED
    latest_month: dt.date = catalog.DEFAULT_LATEST_MONTH  # newest "published" reanalysis month
    cmip_historical_start: dt.date = dt.date(1950, 1, 1)

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


# --- time --------------------------------------------------------------------------------


def _month_number(month: dt.date) -> int:
    """Months since year 0: consecutive months differ by one."""
    return month.year * 12 + month.month - 1


def _days_in_month(months: list[dt.date], calendar: str) -> np.ndarray:
    if calendar == CMIP_CALENDAR:
        return NOLEAP_DAYS[[m.month - 1 for m in months]].astype(float)
    return np.array([gregorian.monthrange(m.year, m.month)[1] for m in months], dtype=float)


def _decimal_years(months: list[dt.date]) -> np.ndarray:
    return np.array([m.year + (m.month - 0.5) / 12.0 for m in months])


# --- climate: normals, warming, weather ----------------------------------------------------


def _normal_cycle(calendar_month: np.ndarray, peak_month: float, swing: float) -> np.ndarray:
    """1 + swing * cos, peaking at `peak_month` (0 = January); averages to one over a year."""
    return 1.0 + swing * np.cos(2 * np.pi * (calendar_month - peak_month) / 12.0)[:, None]


def _t_air_normal(calendar_month: np.ndarray) -> np.ndarray:
    """Monthly air temperature normal (degC) from January, July and annual means per band."""
    phase = 2 * np.pi * calendar_month[:, None] / 12.0
    jan, jul, annual = _BAND["t_air_jan"], _BAND["t_air_jul"], _BAND["t_air_annual"]
    # second harmonic: a long cold winter sits the annual mean below the Jan-Jul midpoint
    return annual - 0.5 * (jul - jan) * np.cos(phase) + (0.5 * (jan + jul) - annual) * np.cos(2 * phase)


@functools.cache
def _toa_insolation() -> np.ndarray:
    """Monthly mean top-of-atmosphere insolation (W m-2), shape (12, bands)."""
    day = np.arange(1, 366)
    declination = np.radians(-23.44) * np.cos(2 * np.pi * (day + 10) / 365.0)
    distance = 1.0 + 0.033 * np.cos(2 * np.pi * day / 365.0)
    lat = np.radians(MID_LATITUDES)[None, :]
    decl = declination[:, None]
    hour_angle = np.arccos(np.clip(-np.tan(lat) * np.tan(decl), -1.0, 1.0))  # polar day/night
    daily = (
        (SOLAR_CONSTANT / np.pi)
        * distance[:, None]
        * (hour_angle * np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.sin(hour_angle))
    )
    starts = np.concatenate([[0], np.cumsum(NOLEAP_DAYS)[:-1]])
    return np.add.reduceat(daily, starts, axis=0) / NOLEAP_DAYS[:, None]


def _global_warming(years: np.ndarray, pathway: str) -> np.ndarray:
    knots = _PATHWAY_KNOTS[pathway] if pathway == "historical" else _HISTORICAL_KNOTS + _PATHWAY_KNOTS[pathway]
    knot_years, knot_values = zip(*knots, strict=False)
    return np.interp(years, knot_years, knot_values)


def _local_warming(years: np.ndarray, calendar_month: np.ndarray, pathway: str) -> np.ndarray:
    """Band warming (K): Arctic amplified, more in the north and in winter."""
    winter_boost = _normal_cycle(calendar_month, peak_month=0.0, swing=0.35)
    return _global_warming(years, pathway)[:, None] * _BAND["amplification"] * winter_boost


@functools.cache
def _normals_warming() -> np.ndarray:
    """Mean observed local warming over the normals period, per calendar month and band."""
    months = catalog.month_range(*NORMALS_PERIOD)
    calendar_month = np.array([m.month - 1 for m in months])
    warming = _local_warming(_decimal_years(months), calendar_month, "observed")
    return np.stack([warming[calendar_month == m].mean(axis=0) for m in range(12)])


def _weather(seed: int, stream: int, count: int) -> dict[str, np.ndarray]:
    """Internal variability: AR(1) air temperature (unit variance), precipitation and cloud
    noise, correlated between bands. One seeded stream per world, drawn for `count` months."""
    rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, stream])
    bands = np.arange(catalog.N_BANDS)
    correlation = BAND_CORRELATION ** np.abs(bands[:, None] - bands[None, :])
    noise = rng.standard_normal((count, 3, catalog.N_BANDS)) @ np.linalg.cholesky(correlation).T
    persistence = WEATHER_PERSISTENCE
    t_anomaly = noise[:, 0].copy()
    for i in range(1, count):
        t_anomaly[i] = persistence * t_anomaly[i - 1] + np.sqrt(1 - persistence**2) * noise[i, 0]
    return {"t_air": t_anomaly, "precip": noise[:, 1], "cloud": noise[:, 2]}


@dataclass(frozen=True)
class _Bias:
    """A climate model's systematic errors; zero for the reanalysis."""

    t_air_annual: float = 0.0  # K
    t_air_winter_extra: float = 0.0  # K added in January, subtracted in July
    precip_factor: float = 1.0
    cloud_offset: float = 0.0
    lw_offset: float = 0.0  # W m-2


CMIP_BIAS = _Bias(t_air_annual=-1.5, t_air_winter_extra=-0.6, precip_factor=1.2, cloud_offset=-0.05, lw_offset=-6.0)


def _forcing(months: list[dt.date], pathway: str, weather: dict[str, np.ndarray], bias: _Bias) -> dict[str, np.ndarray]:
    """Monthly atmospheric forcing per band: t_air (degC), precip and snowfall (mm/day),
    positive degree-days per day, sw_down and lw_down (W m-2). Arrays (months, bands)."""
    calendar_month = np.array([m.month - 1 for m in months])
    warming = _local_warming(_decimal_years(months), calendar_month, pathway) - _normals_warming()[calendar_month]
    seasonal_spread = 2.0 + 1.0 * np.cos(2 * np.pi * calendar_month / 12.0)[:, None]  # winters vary more
    model_bias = bias.t_air_annual + bias.t_air_winter_extra * np.cos(2 * np.pi * calendar_month / 12.0)[:, None]
    t_air = _t_air_normal(calendar_month) + warming + seasonal_spread * weather["t_air"] + model_bias

    precip_normal = _BAND["precip_annual"] / 365.25 * _normal_cycle(calendar_month, peak_month=7.5, swing=0.55)
    wetter = np.clip(1.0 + 0.05 * warming, 0.5, None)  # ~5 % more precipitation per kelvin
    precip = precip_normal * wetter * np.exp(0.35 * weather["precip"] - 0.35**2 / 2) * bias.precip_factor
    snowfall = precip * _normal_cdf((SNOW_THRESHOLD - t_air) / DAILY_T_SPREAD)

    cloud_normal = 0.68 + 0.10 * np.cos(2 * np.pi * (calendar_month - 8.5) / 12.0)[:, None]  # cloudy autumns
    cloud_anomaly = 0.06 * (0.6 * weather["precip"] + 0.8 * weather["cloud"])  # wet months are cloudy
    cloud = np.clip(cloud_normal + cloud_anomaly + bias.cloud_offset, 0.05, 0.98)
    sw_down = _toa_insolation()[calendar_month] * CLEAR_SKY_TRANSMISSIVITY * (1 - CLOUD_SHADING * cloud)
    lw_down = _longwave_down(t_air, cloud) + bias.lw_offset
    return {
        "t_air": t_air,
        "precip": precip,
        "snowfall": snowfall,
        "degree_days": _positive_degree_days(t_air),
        "sw_down": sw_down,
        "lw_down": lw_down,
    }


def _spun_up(
    months: list[dt.date], pathway: str, weather: dict[str, np.ndarray], bias: _Bias, calendar: str, years: int
) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """Forcing and month lengths with `years` of spin-up in front: the first year's climate
    without weather, repeated, so snow, soil water and soil heat start near equilibrium and
    the first simulated year is not a cold-start artefact. Returns (forcing, days, skip)."""
    first_year = catalog.month_range(months[0], catalog.add_months(months[0], 11))
    calm = {name: np.zeros((12, catalog.N_BANDS)) for name in weather}
    spinup = _forcing(first_year, pathway, calm, bias)
    forcing = _forcing(months, pathway, weather, bias)
    forcing = {name: np.concatenate([np.tile(spinup[name], (years, 1)), forcing[name]]) for name in forcing}
    days = np.concatenate([np.tile(_days_in_month(first_year, calendar), years), _days_in_month(months, calendar)])
    return forcing, days, 12 * years


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF (logistic approximation, error < 2e-4; no scipy needed)."""
    return 1.0 / (1.0 + np.exp(-1.5976 * x * (1.0 + 0.04417 * x * x)))


def _positive_degree_days(t_air: np.ndarray) -> np.ndarray:
    """Expected max(T, 0) of daily means around the monthly mean (K per day): melt starts
    in months whose mean is still below zero, as it does."""
    z = t_air / DAILY_T_SPREAD
    density = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return DAILY_T_SPREAD * density + t_air * _normal_cdf(z)


def _longwave_down(t_air: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    """Brutsaert clear-sky emissivity from humidity, clouds radiate close to black bodies."""
    vapour_hpa = RELATIVE_HUMIDITY * 6.112 * np.exp(17.62 * t_air / (243.12 + t_air))
    t_kelvin = t_air + KELVIN
    clear = 1.24 * (vapour_hpa / t_kelvin) ** (1.0 / 7.0)
    emissivity = clear + cloud * (0.98 - clear)
    return emissivity * SIGMA * t_kelvin**4


# --- land surface: snowpack, energy balance, soil-water bucket -----------------------------


@dataclass
class _LandState:
    """What the land carries from one month to the next, per band."""

    swe: np.ndarray  # snow water equivalent, mm
    snow_density: np.ndarray  # kg m-3
    storage: np.ndarray  # water in the bucket above its driest state, mm
    layer_wetness: np.ndarray  # (4, bands), 0 = THETA_DRY .. 1 = THETA_WET

    @classmethod
    def initial(cls) -> _LandState:
        n = catalog.N_BANDS
        return cls(
            swe=np.zeros(n),
            snow_density=_BAND["snow_density_fresh"].copy(),
            storage=np.full(n, 0.5 * BUCKET_CAPACITY),
            layer_wetness=np.full((4, n), 0.5),
        )

    @property
    def snow_depth(self) -> np.ndarray:
        return self.swe / self.snow_density  # mm of water / (kg m-3) = m of snow


def _surface_fluxes(t_air, sw_down, lw_down, snow_cover, wetness):
    """Latent and sensible heat (W m-2, upwards) and skin temperature (degC) from a
    linearised surface energy balance: radiation in, evaporation by soil wetness, and the
    rest warms (or, when negative, cools) the skin until turbulence carries it away."""
    albedo = BARE_ALBEDO + (_BAND["snow_albedo"] - BARE_ALBEDO) * snow_cover
    t_kelvin = t_air + KELVIN
    available = sw_down * (1 - albedo) + lw_down - 0.98 * SIGMA * t_kelvin**4
    evaporative_fraction = (0.1 + 0.4 * wetness) * (1 - snow_cover) + 0.1 * snow_cover
    latent = evaporative_fraction * np.maximum(available, 0.0) + WINTER_SUBLIMATION
    skin_excess = (available - latent) / (TURBULENT_EXCHANGE + 4 * 0.98 * SIGMA * t_kelvin**3)
    return latent, TURBULENT_EXCHANGE * skin_excess, t_air + skin_excess


def _snowpack_step(state: _LandState, snowfall, melt_potential, sublimation_potential) -> np.ndarray:
    """Add the month's snow (light, fresh), let the pack settle, melt and sublimate it.
    Returns the melt (mm)."""
    fresh = _BAND["snow_density_fresh"]
    total = state.swe + snowfall
    mixed = np.where(total > 0, (state.snow_density * state.swe + fresh * snowfall) / np.maximum(total, 1e-9), fresh)
    settle = 1.0 - np.exp(-1.0 / SNOW_SETTLING_MONTHS)
    state.snow_density = mixed + (fresh + SNOW_DENSITY_GAIN - mixed) * settle
    melt = np.minimum(melt_potential, total)
    sublimated = np.minimum(sublimation_potential, total - melt)
    state.swe = total - melt - sublimated
    state.snow_density = np.where(state.swe > 0, state.snow_density, fresh)
    return melt


def _bucket_step(state: _LandState, infiltration, evaporation) -> None:
    """Rain and melt in, evaporation and baseflow out, the excess runs off; deeper layers
    follow the bucket's wetness more slowly."""
    storage = state.storage + infiltration - np.minimum(evaporation, state.storage + infiltration)
    state.storage = np.clip(storage * (1 - BASEFLOW_PER_MONTH), 0.0, BUCKET_CAPACITY)
    pull = 1.0 - np.exp(-1.0 / np.array(LAYER_MEMORY_MONTHS))[:, None]
    state.layer_wetness = state.layer_wetness + (state.storage / BUCKET_CAPACITY - state.layer_wetness) * pull


def _land_surface(forcing: dict[str, np.ndarray], days: np.ndarray) -> dict[str, np.ndarray]:
    """Step snow, surface energy and soil water month by month (each needs the others).

    Returns per month and band: snow depth at the start and end of the month (m), snow
    density (kg m-3), latent and sensible heat upwards (W m-2), skin temperature (degC) and
    volumetric water per ERA5-Land layer (months, 4, bands)."""
    n_months = len(days)
    state = _LandState.initial()
    names = ("snow_depth_start", "snow_depth_end", "snow_density", "latent", "sensible", "t_skin")
    out = {name: np.empty((n_months, catalog.N_BANDS)) for name in names}
    out["theta"] = np.empty((n_months, 4, catalog.N_BANDS))
    for i in range(n_months):
        seconds = days[i] * SECONDS_PER_DAY
        precip, snowfall = forcing["precip"][i] * days[i], forcing["snowfall"][i] * days[i]  # mm
        out["snow_depth_start"][i] = state.snow_depth
        mean_swe = state.swe + 0.5 * snowfall
        snow_cover = mean_swe / (mean_swe + SNOW_COVER_SWE)
        latent, sensible, t_skin = _surface_fluxes(
            forcing["t_air"][i],
            forcing["sw_down"][i],
            forcing["lw_down"][i],
            snow_cover,
            wetness=state.storage / BUCKET_CAPACITY,
        )
        evaporation = latent * seconds / LATENT_VAPORISATION  # mm; from the snow where it covers
        melt = _snowpack_step(
            state, snowfall, DEGREE_DAY_FACTOR * forcing["degree_days"][i] * days[i], evaporation * snow_cover
        )
        _bucket_step(state, precip - snowfall + melt, evaporation * (1 - snow_cover))
        out["snow_depth_end"][i], out["snow_density"][i] = state.snow_depth, state.snow_density
        out["latent"][i], out["sensible"][i], out["t_skin"][i] = latent, sensible, t_skin
        out["theta"][i] = THETA_DRY[:, None] + (THETA_WET - THETA_DRY)[:, None] * state.layer_wetness
    return out


# --- soil heat: implicit conduction with freezing ----------------------------------------


@dataclass(frozen=True)
class _Column:
    """The soil column: cells (rows) by band (columns)."""

    thickness: np.ndarray  # m, (cells, 1)
    layer: np.ndarray  # ERA5-Land layer index of each cell (cells below 2.89 m count as layer 4)
    layer_weights: np.ndarray  # (4, cells): thickness-weighted mean of the cells in each layer
    dry_capacity: np.ndarray  # J m-3 K-1, (cells, bands)
    k_thawed: np.ndarray  # W m-1 K-1
    k_frozen: np.ndarray


@functools.cache
def _column() -> _Column:
    """Cells whose edges include every ERA5-Land layer edge; organic above mineral soil."""
    edges, layer = [0.0], []
    for index, ((top, bottom), cells) in enumerate(zip(catalog.SOIL_LAYERS_M, CELLS_PER_LAYER, strict=False)):
        edges += list(np.linspace(top, bottom, cells + 1)[1:])
        layer += [index] * cells
    edges, layer = np.array(edges + list(DEEP_EDGES)), np.array(layer + [len(CELLS_PER_LAYER) - 1] * len(DEEP_EDGES))
    thickness, centre = np.diff(edges), 0.5 * (edges[:-1] + edges[1:])
    in_layer = (layer[None, :] == np.arange(4)[:, None]) & (centre < catalog.SOIL_LAYERS_M[-1][1])
    weights = in_layer * thickness
    organic = centre[:, None] < _BAND["organic_depth"][None, :]
    return _Column(
        thickness=thickness[:, None],
        layer=layer,
        layer_weights=weights / weights.sum(axis=1, keepdims=True),
        dry_capacity=np.where(organic, ORGANIC[0], MINERAL[0]),
        k_thawed=np.where(organic, ORGANIC[1], MINERAL[1]),
        k_frozen=np.where(organic, ORGANIC[2], MINERAL[2]),
    )


@dataclass(frozen=True)
class _Enthalpy:
    """Volumetric enthalpy (J m-3) of moist soil, piecewise linear in temperature: frozen
    below -FREEZING_RANGE, thawed above 0 degC, and in between the latent heat of the water
    spread over the freezing range (the apparent heat capacity that makes a zero curtain)."""

    frozen: np.ndarray  # heat capacities, J m-3 K-1
    freezing: np.ndarray
    thawed: np.ndarray

    @classmethod
    def of_soil(cls, theta: np.ndarray, column: _Column) -> _Enthalpy:
        frozen = column.dry_capacity + theta * HEAT_CAPACITY_ICE
        thawed = column.dry_capacity + theta * HEAT_CAPACITY_WATER
        latent = WATER_DENSITY * LATENT_FUSION * theta
        return cls(frozen, 0.5 * (frozen + thawed) + latent / FREEZING_RANGE, thawed)

    @property
    def at_frozen(self) -> np.ndarray:  # enthalpy at -FREEZING_RANGE
        return -self.frozen * FREEZING_RANGE

    @property
    def at_thawed(self) -> np.ndarray:  # enthalpy at 0 degC, all water liquid
        return self.at_frozen + self.freezing * FREEZING_RANGE

    def capacity(self, t: np.ndarray) -> np.ndarray:
        return np.where(t <= -FREEZING_RANGE, self.frozen, np.where(t <= 0.0, self.freezing, self.thawed))

    def enthalpy(self, t: np.ndarray) -> np.ndarray:
        in_range = self.at_frozen + self.freezing * (t + FREEZING_RANGE)
        thawed = self.at_thawed + self.thawed * t
        return np.where(t <= -FREEZING_RANGE, self.frozen * t, np.where(t <= 0.0, in_range, thawed))

    def temperature(self, h: np.ndarray) -> np.ndarray:
        in_range = (h - self.at_frozen) / self.freezing - FREEZING_RANGE
        thawed = (h - self.at_thawed) / self.thawed
        return np.where(h <= self.at_frozen, h / self.frozen, np.where(h <= self.at_thawed, in_range, thawed))


def _solve_tridiagonal(lower: np.ndarray, diag: np.ndarray, upper: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Thomas algorithm down the cells (axis 0), for all bands (axis 1) at once."""
    n = diag.shape[0]
    c, d = np.empty_like(diag), np.empty_like(diag)
    c[0], d[0] = upper[0] / diag[0], rhs[0] / diag[0]
    for i in range(1, n):
        denom = diag[i] - lower[i] * c[i - 1]
        c[i] = upper[i] / denom
        d[i] = (rhs[i] - lower[i] * d[i - 1]) / denom
    x = np.empty_like(d)
    x[-1] = d[-1]
    for i in range(n - 2, -1, -1):
        x[i] = d[i] - c[i] * x[i + 1]
    return x


def _heat_step(t, t_top, r_top, soil: _Enthalpy, column: _Column, dt_s: float) -> np.ndarray:
    """One backward-Euler step of conduction, (cells, bands) degC -> degC.

    The top cell is tied to the skin through snow and litter (`r_top`, m2 K W-1), the bottom
    receives the geothermal flux. The heat capacity is re-estimated as the chord slope of
    enthalpy between old and new temperature (Picard iterations), so a cell cannot jump
    across the freezing range without paying its latent heat; the final update goes through
    enthalpy, so the step conserves energy."""
    liquid = np.clip(t / FREEZING_RANGE + 1.0, 0.0, 1.0)
    k = column.k_frozen + (column.k_thawed - column.k_frozen) * liquid
    half_resistance = column.thickness / (2 * k)
    between = 1.0 / (half_resistance[:-1] + half_resistance[1:])  # conductance of each interface
    top = 1.0 / (r_top + half_resistance[0])
    g_above = np.vstack([top[None, :], between])
    g_below = np.vstack([between, np.zeros_like(top)[None, :]])
    h_old, capacity = soil.enthalpy(t), soil.capacity(t)
    for iteration in range(PICARD_ITERATIONS):
        storage = capacity * column.thickness / dt_s
        rhs = storage * t
        rhs[0] += top * t_top
        rhs[-1] += GEOTHERMAL_FLUX
        t_new = _solve_tridiagonal(-g_above, storage + g_above + g_below, -g_below, rhs)
        if iteration < PICARD_ITERATIONS - 1:
            change = t_new - t
            moved = np.abs(change) > 1e-9
            chord = (soil.enthalpy(t_new) - h_old) / np.where(moved, change, 1.0)
            capacity = np.where(moved, chord, capacity)
    return soil.temperature(h_old + capacity * (t_new - t))


def _snow_conductivity(density: np.ndarray) -> np.ndarray:
    """Effective snow conductivity (W m-1 K-1) from density, Sturm et al. (1997)."""
    rho = density / 1000.0  # g cm-3
    return np.maximum(0.138 - 1.01 * rho + 3.233 * rho**2, 0.04)


def _soil_temperatures(
    land: dict[str, np.ndarray], days: np.ndarray, t_start: np.ndarray, cells: np.ndarray | None = None
) -> np.ndarray:
    """Monthly mean temperature (degC) of each ERA5-Land layer, shape (months, 4, bands),
    driven by the skin temperature through the snowpack's thermal resistance. When given,
    ``cells`` (months, cells, bands) receives every cell's monthly mean too."""
    column = _column()
    t = np.repeat(t_start[None, :], column.thickness.shape[0], axis=0)
    snow_conductivity = _snow_conductivity(land["snow_density"])
    result = np.empty((len(days), 4, catalog.N_BANDS))
    for i, n_days in enumerate(days):
        soil = _Enthalpy.of_soil(land["theta"][i][column.layer], column)
        dt_s = n_days * SECONDS_PER_DAY / SUBSTEPS_PER_MONTH
        month_mean = np.zeros_like(t)
        for step in range(SUBSTEPS_PER_MONTH):
            fraction = (step + 0.5) / SUBSTEPS_PER_MONTH  # snow depth changes through the month
            depth = land["snow_depth_start"][i] + (land["snow_depth_end"][i] - land["snow_depth_start"][i]) * fraction
            r_top = SURFACE_RESISTANCE + depth / snow_conductivity[i]
            t = _heat_step(t, land["t_skin"][i], r_top, soil, column, dt_s)
            month_mean += t / SUBSTEPS_PER_MONTH
        result[i] = column.layer_weights @ month_mean
        if cells is not None:
            cells[i] = month_mean
    return result


# --- worlds --------------------------------------------------------------------------------


def _readonly(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for array in arrays.values():
        array.flags.writeable = False  # cached: nobody may change them in place
    return arrays


@functools.lru_cache(maxsize=8)
def _reanalysis_world(settings: DemoSettings) -> dict[str, np.ndarray]:
    """Simulate the reanalysis from 2001-01 through the latest published month.

    Weather is drawn through the horizon whatever is published; the simulation is causal,
    so publishing a new month never changes the months before it."""
    horizon = catalog.month_range(catalog.HISTORY_START, HORIZON_END)
    published = max(_month_number(settings.latest_month) - _month_number(catalog.HISTORY_START) + 1, 0)
    if not published:
        return {}
    weather = {name: values[:published] for name, values in _weather(settings.seed, 0, len(horizon)).items()}
    forcing, days, skip = _spun_up(horizon[:published], "observed", weather, _Bias(), "gregorian", SPINUP_YEARS)
    land = _land_surface(forcing, days)
    t_start = forcing["t_air"][:12].mean(axis=0) + 4.0  # snow keeps soil warmer than air
    t_soil = _soil_temperatures(land, days, t_start)
    world = {name: values[skip:] for name, values in {**forcing, **land}.items()}
    world["t_soil"] = t_soil[skip:]
    world["days"] = days[skip:]
    return _readonly(world)


@functools.lru_cache(maxsize=16)
def _cmip_world(settings: DemoSettings, experiment: str) -> tuple[list[dt.date], dict[str, np.ndarray]]:
    """Simulate one CMIP5 experiment of the twin model (noleap calendar, own weather)."""
    if experiment == "historical":
        first, last = settings.cmip_historical_start, catalog.CMIP5_HISTORICAL_END
    else:
        first, last = catalog.CMIP5_RCP_START, catalog.CMIP5_RCP_END
    months = catalog.month_range(first, last)
    stream = 1 + catalog.CMIP5_EXPERIMENTS.index(experiment)  # every run has its own weather
    weather = _weather(settings.seed, stream, len(months))
    # two years spin up snow and the bucket; the twin carries no soil heat model
    forcing, days, skip = _spun_up(months, experiment, weather, CMIP_BIAS, CMIP_CALENDAR, 2)
    land = _land_surface(forcing, days)
    world = {name: values[skip:] for name, values in {**forcing, **land}.items()}
    return months, _readonly(world)


# --- frames ----------------------------------------------------------------------------------


def _band_month_columns(months: list[dt.date]) -> dict[str, pl.Series]:
    return {
        "band": pl.Series("band", np.tile(np.arange(catalog.N_BANDS), len(months)), dtype=pl.Int32),
        "month": pl.Series("month", np.repeat(np.array(months, dtype="datetime64[D]"), catalog.N_BANDS)).cast(pl.Date),
    }


def _flat(values: np.ndarray) -> np.ndarray:
    """(months, bands) -> rows ordered by month then band."""
    return np.ascontiguousarray(values, dtype=float).reshape(-1)


def _reanalysis_frame(world: dict[str, np.ndarray], rows: np.ndarray, months: list[dt.date]) -> pl.DataFrame:
    """ERA5-Land names and units: K, monthly totals in m of water and J m-2 (Gregorian month
    lengths), fluxes positive downwards (ECMWF), so evaporation is negative."""
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
    data = _band_month_columns(months)
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

# Share of each lithology class per band (rows follow catalog.LITHOLOGY_CLASSES): glaciers,
# volcanics and plutons of the southern ranges; metamorphic Yukon-Tanana uplands inland;
# sedimentary Brooks Range; unconsolidated deposits and thaw lakes on the North Slope.
_LITHOLOGY_SHARES = np.array(
    [
        # band: 0      1      2      3      4      5
        [0.050, 0.040, 0.030, 0.030, 0.040, 0.080],  # water
        [0.220, 0.280, 0.300, 0.300, 0.280, 0.550],  # unconsolidated
        [0.120, 0.040, 0.010, 0.000, 0.005, 0.000],  # glacier
        [0.100, 0.060, 0.050, 0.040, 0.020, 0.005],  # volcanic
        [0.060, 0.030, 0.010, 0.010, 0.005, 0.000],  # melange
        [0.120, 0.100, 0.080, 0.070, 0.040, 0.005],  # plutonic
        [0.180, 0.220, 0.220, 0.250, 0.400, 0.330],  # sedimentary
        [0.130, 0.210, 0.280, 0.280, 0.190, 0.020],  # metamorphic
        [0.020, 0.020, 0.020, 0.020, 0.020, 0.010],  # unknown
    ]
)
_DEPTHS_CM = np.array(catalog.OPENLANDMAP_DEPTHS_CM, dtype=float)


def _bulk_density_stored(band: int) -> np.ndarray:
    """Fine-earth bulk density (10 kg m-3): light organic surface, compacting with depth;
    northern surfaces are more organic, hence lighter."""
    return 155.0 - (40.0 + 2.5 * band) * np.exp(-_DEPTHS_CM / 40.0)


def _organic_carbon_stored(band: int) -> np.ndarray:
    """Organic carbon (5 g kg-1): rich near the surface and in the cold north, where
    cryoturbation carries carbon deeper."""
    surface = 16.0 + 6.0 * band
    decay_cm = 25.0 + 6.0 * band
    return surface * np.exp(-_DEPTHS_CM / decay_cm) + 1.0


def _lithology_frame() -> pl.DataFrame:
    shares = _LITHOLOGY_SHARES / _LITHOLOGY_SHARES.sum(axis=0, keepdims=True)
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
    profiles = {"bulk_density": _bulk_density_stored, "organic_carbon": _organic_carbon_stored}
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
        if not wanted:
            return _empty_reanalysis_frame()
        rows = np.array([_month_number(m) - _month_number(catalog.HISTORY_START) for m in wanted])
        return _reanalysis_frame(_reanalysis_world(self.settings), rows, wanted)


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
        return soil_response(drivers)


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
# What the simulator's own soil does under a CMIP5 pathway: the twin's weather (the historical
# stream through 2005, then the RCP's own stream) WITHOUT the climate model's bias, through the
# same land surface and soil column as the reanalysis. A model trained on the reanalysis and
# driven by the bias-corrected twin should reproduce these soil temperatures. Nothing in the
# published frames depends on this block.


def cell_centres_m() -> np.ndarray:
    """Depth (m) of the centre of every cell of the simulated column (to DEEP_EDGES[-1])."""
    thickness = _column().thickness[:, 0]
    edges = np.concatenate([[0.0], np.cumsum(thickness)])
    return 0.5 * (edges[:-1] + edges[1:])


def _run_soil(forcing: dict[str, np.ndarray], days: np.ndarray, skip: int) -> dict[str, np.ndarray]:
    """Land surface and soil column on spun-up forcing; every array without the spin-up."""
    land = _land_surface(forcing, days)
    t_start = forcing["t_air"][:12].mean(axis=0) + 4.0  # as the reanalysis world starts
    cells = np.empty((len(days), _column().thickness.shape[0], catalog.N_BANDS))
    t_soil = _soil_temperatures(land, days, t_start, cells)
    world = {name: values[skip:] for name, values in {**forcing, **land}.items()}
    world["t_soil"] = t_soil[skip:]
    world["t_soil_cells"] = cells[skip:]
    world["days"] = days[skip:]
    return world


@functools.lru_cache(maxsize=8)
def reanalysis_cell_truth(settings: DemoSettings) -> dict[str, np.ndarray]:
    """The reanalysis world re-run keeping every cell's monthly mean, ``t_soil_cells`` (months,
    cells, bands; depths in ``cell_centres_m()``) from 2001-01 through ``settings.latest_month``:
    the active layer's truth. Its ``t_soil`` is the published soil temperature."""
    horizon = catalog.month_range(catalog.HISTORY_START, HORIZON_END)
    published = _month_number(settings.latest_month) - _month_number(catalog.HISTORY_START) + 1
    weather = {name: values[:published] for name, values in _weather(settings.seed, 0, len(horizon)).items()}
    forcing, days, skip = _spun_up(horizon[:published], "observed", weather, _Bias(), "gregorian", SPINUP_YEARS)
    return _readonly(_run_soil(forcing, days, skip))


@functools.lru_cache(maxsize=8)
def cmip_truth(settings: DemoSettings, pathway: str) -> tuple[list[dt.date], dict[str, np.ndarray]]:
    """The simulator's soil under one RCP on the CMIP twin's weather with its bias removed.

    Months run from ``settings.cmip_historical_start`` (1950-01) to 2100-12 on the twin's noleap
    calendar: the historical experiment's weather and forcing through 2005-12, then the
    pathway's own (the same weather the twin's published runs carry), with ``_Bias()`` instead
    of ``CMIP_BIAS`` and SPINUP_YEARS of spin-up, as the reanalysis. Returns (months, world):
    forcing and land arrays (months, bands), ``theta`` (months, 4, bands), ``t_soil`` (months,
    4, bands; degC, ERA5-Land layers) and ``t_soil_cells`` (months, cells, bands).
    """
    if pathway not in catalog.RCP_EXPERIMENTS:
        raise ValueError(f"pathway must be one of {catalog.RCP_EXPERIMENTS}, got {pathway!r}")
    historical = catalog.month_range(settings.cmip_historical_start, catalog.CMIP5_HISTORICAL_END)
    future = catalog.month_range(catalog.CMIP5_RCP_START, catalog.CMIP5_RCP_END)
    streams = [
        _weather(settings.seed, 1 + catalog.CMIP5_EXPERIMENTS.index(experiment), count)
        for experiment, count in (("historical", len(historical)), (pathway, len(future)))
    ]
    forcing, days, skip = _spun_up(historical, "historical", streams[0], _Bias(), CMIP_CALENDAR, SPINUP_YEARS)
    scenario = _forcing(future, pathway, streams[1], _Bias())
    forcing = {name: np.concatenate([forcing[name], scenario[name]]) for name in forcing}
    days = np.concatenate([days, _days_in_month(future, CMIP_CALENDAR)])
    return historical + future, _readonly(_run_soil(forcing, days, skip))


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


def soil_response(drivers: pl.DataFrame, calendar: str = CMIP_CALENDAR) -> pl.DataFrame:
    """The simulator's land surface and soil driven by canonical ``drivers`` (band, month,
    t_air, p_total, p_snow, r_thermal, r_solar of consecutive months in ``calendar``), spun up
    like the truth: rows band, month, t_soil_0..t_soil_3 (degC)."""
    needed = ("t_air", "p_total", "p_snow", "r_thermal", "r_solar")
    catalog.require_columns(drivers, ("band", "month", *needed), "drivers for the soil response", SourceError)
    rows = drivers.select("band", "month", *needed).sort("month", "band")
    months = sorted(set(rows["month"].to_list()))
    if rows.height != len(months) * catalog.N_BANDS:
        raise SourceError(
            f"drivers for the soil response: expected {catalog.N_BANDS} bands for each of {len(months)} months"
        )
    days = _days_in_month(months, calendar)
    values = {name: rows[name].to_numpy().reshape(len(months), catalog.N_BANDS) for name in needed}
    per_day = days[:, None]
    forcing = {
        "t_air": values["t_air"],
        "precip": values["p_total"] * 1000.0 / per_day,
        "snowfall": values["p_snow"] * 1000.0 / per_day,
        "degree_days": _positive_degree_days(values["t_air"]),
        "sw_down": values["r_solar"] / (per_day * SECONDS_PER_DAY),
        "lw_down": values["r_thermal"] / (per_day * SECONDS_PER_DAY),
    }
    skip = 12 * SPINUP_YEARS
    forcing = {name: np.concatenate([np.tile(v[:12], (SPINUP_YEARS, 1)), v]) for name, v in forcing.items()}
    world = _run_soil(forcing, np.concatenate([np.tile(days[:12], SPINUP_YEARS), days]), skip)
    data = _band_month_columns(months)
    data.update(
        {
            name: pl.Series(name, _flat(world["t_soil"][:, k]), dtype=pl.Float64)
            for k, name in enumerate(catalog.TARGETS)
        }
    )
    return pl.DataFrame(data)
