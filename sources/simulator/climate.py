"""The demo world's atmosphere: month lengths, normals, insolation, warming pathways, AR(1)
weather, a climate model's biases and the monthly forcing of every spatial unit."""

from __future__ import annotations

import calendar as gregorian
import datetime as dt
import functools
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from sources import catalog
from sources.simulator.unit_climates import UnitClimates

CMIP_CALENDAR = "noleap"

# --- physical constants ------------------------------------------------------------------

KELVIN = 273.15
SIGMA = 5.670374419e-8  # Stefan-Boltzmann, W m-2 K-4
SOLAR_CONSTANT = 1361.0  # W m-2
SECONDS_PER_DAY = 86400.0
NOLEAP_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])

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
NORMALS_PERIOD = (catalog.HISTORY_START, dt.date(2023, 12, 1))  # the units' normals describe it

# --- precipitation phase and radiation ---------------------------------------------------

DAILY_T_SPREAD = 4.5  # K, spread of daily means within a month: snow/rain split, melt
SNOW_THRESHOLD = 0.5  # degC, daily mean below which precipitation falls as snow
CLEAR_SKY_TRANSMISSIVITY = 0.75
CLOUD_SHADING = 0.65  # fraction of sunlight an overcast sky removes
RELATIVE_HUMIDITY = 0.8

# --- time --------------------------------------------------------------------------------


def month_number(month: dt.date) -> int:
    """Months since year 0: consecutive months differ by one."""
    return month.year * 12 + month.month - 1


def days_in_month(months: list[dt.date], calendar: str) -> np.ndarray:
    if calendar == CMIP_CALENDAR:
        return NOLEAP_DAYS[[m.month - 1 for m in months]].astype(float)
    return np.array([gregorian.monthrange(m.year, m.month)[1] for m in months], dtype=float)


def _decimal_years(months: list[dt.date]) -> np.ndarray:
    return np.array([m.year + (m.month - 0.5) / 12.0 for m in months])


# --- normals, warming, weather -------------------------------------------------------------


def _normal_cycle(calendar_month: np.ndarray, peak_month: float, swing: float) -> np.ndarray:
    """1 + swing * cos, peaking at `peak_month` (0 = January); averages to one over a year."""
    return 1.0 + swing * np.cos(2 * np.pi * (calendar_month - peak_month) / 12.0)[:, None]


def _t_air_normal(calendar_month: np.ndarray, units: UnitClimates) -> np.ndarray:
    """Monthly air temperature normal (degC) from each unit's January, July and annual means."""
    phase = 2 * np.pi * calendar_month[:, None] / 12.0
    jan, jul, annual = units.t_air_jan, units.t_air_jul, units.t_air_annual
    # second harmonic: a long cold winter sits the annual mean below the Jan-Jul midpoint
    return annual - 0.5 * (jul - jan) * np.cos(phase) + (0.5 * (jan + jul) - annual) * np.cos(2 * phase)


@functools.lru_cache(maxsize=8)
def _toa_insolation(units: UnitClimates) -> np.ndarray:
    """Monthly mean top-of-atmosphere insolation (W m-2), shape (12, units)."""
    day = np.arange(1, 366)
    declination = np.radians(-23.44) * np.cos(2 * np.pi * (day + 10) / 365.0)
    distance = 1.0 + 0.033 * np.cos(2 * np.pi * day / 365.0)
    lat = np.radians(units.latitude)[None, :]
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


def _local_warming(years: np.ndarray, calendar_month: np.ndarray, pathway: str, units: UnitClimates) -> np.ndarray:
    """Local warming (K): Arctic amplified, more in the north and in winter."""
    winter_boost = _normal_cycle(calendar_month, peak_month=0.0, swing=0.35)
    return _global_warming(years, pathway)[:, None] * units.amplification * winter_boost


@functools.lru_cache(maxsize=8)
def _normals_warming(units: UnitClimates) -> np.ndarray:
    """Mean observed local warming over the normals period, per calendar month and unit."""
    months = catalog.month_range(*NORMALS_PERIOD)
    calendar_month = np.array([m.month - 1 for m in months])
    warming = _local_warming(_decimal_years(months), calendar_month, "observed", units)
    return np.stack([warming[calendar_month == m].mean(axis=0) for m in range(12)])


@functools.lru_cache(maxsize=8)
def _weather_mixing(units: UnitClimates) -> np.ndarray:
    """Cholesky factor of the units' weather correlation, transposed: noise @ it correlates."""
    return np.linalg.cholesky(units.weather_correlation()).T


def weather(seed: int, stream: int, count: int, units: UnitClimates) -> dict[str, np.ndarray]:
    """Internal variability: AR(1) air temperature (unit variance), precipitation and cloud
    noise, correlated between units. One seeded stream per world, drawn for `count` months."""
    rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, stream])
    draws = rng.standard_normal((count, 3, len(units)))
    # one matrix product for all months (a product per month is 40 times slower at 2000 units)
    noise = (draws.reshape(-1, len(units)) @ _weather_mixing(units)).reshape(draws.shape)
    persistence = WEATHER_PERSISTENCE
    t_anomaly = noise[:, 0].copy()
    for i in range(1, count):
        t_anomaly[i] = persistence * t_anomaly[i - 1] + np.sqrt(1 - persistence**2) * noise[i, 0]
    return {"t_air": t_anomaly, "precip": noise[:, 1], "cloud": noise[:, 2]}


@dataclass(frozen=True)
class Bias:
    """A climate model's systematic errors; zero for the reanalysis."""

    t_air_annual: float = 0.0  # K
    t_air_winter_extra: float = 0.0  # K added in January, subtracted in July
    precip_factor: float = 1.0
    cloud_offset: float = 0.0
    lw_offset: float = 0.0  # W m-2


CMIP_BIAS = Bias(t_air_annual=-1.5, t_air_winter_extra=-0.6, precip_factor=1.2, cloud_offset=-0.05, lw_offset=-6.0)


def forcing(
    months: list[dt.date], pathway: str, anomalies: dict[str, np.ndarray], bias: Bias, units: UnitClimates
) -> dict[str, np.ndarray]:
    """Monthly atmospheric forcing per unit: t_air (degC), precip and snowfall (mm/day),
    positive degree-days per day, sw_down and lw_down (W m-2). Arrays (months, units);
    `anomalies` is `weather(...)` for these months."""
    calendar_month = np.array([m.month - 1 for m in months])
    warming = (
        _local_warming(_decimal_years(months), calendar_month, pathway, units) - _normals_warming(units)[calendar_month]
    )
    seasonal_spread = 2.0 + 1.0 * np.cos(2 * np.pi * calendar_month / 12.0)[:, None]  # winters vary more
    model_bias = bias.t_air_annual + bias.t_air_winter_extra * np.cos(2 * np.pi * calendar_month / 12.0)[:, None]
    t_air = _t_air_normal(calendar_month, units) + warming + seasonal_spread * anomalies["t_air"] + model_bias

    precip_normal = units.precip_annual / 365.25 * _normal_cycle(calendar_month, peak_month=7.5, swing=0.55)
    wetter = np.clip(1.0 + 0.05 * warming, 0.5, None)  # ~5 % more precipitation per kelvin
    precip = precip_normal * wetter * np.exp(0.35 * anomalies["precip"] - 0.35**2 / 2) * bias.precip_factor
    snowfall = precip * ndtr((SNOW_THRESHOLD - t_air) / DAILY_T_SPREAD)

    cloud_normal = 0.68 + 0.10 * np.cos(2 * np.pi * (calendar_month - 8.5) / 12.0)[:, None]  # cloudy autumns
    cloud_anomaly = 0.06 * (0.6 * anomalies["precip"] + 0.8 * anomalies["cloud"])  # wet months are cloudy
    cloud = np.clip(cloud_normal + cloud_anomaly + bias.cloud_offset, 0.05, 0.98)
    sw_down = _toa_insolation(units)[calendar_month] * CLEAR_SKY_TRANSMISSIVITY * (1 - CLOUD_SHADING * cloud)
    lw_down = _longwave_down(t_air, cloud) + bias.lw_offset
    return {
        "t_air": t_air,
        "precip": precip,
        "snowfall": snowfall,
        "degree_days": positive_degree_days(t_air),
        "sw_down": sw_down,
        "lw_down": lw_down,
    }


def spun_up(
    months: list[dt.date],
    pathway: str,
    anomalies: dict[str, np.ndarray],
    bias: Bias,
    calendar: str,
    years: int,
    units: UnitClimates,
) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """Forcing and month lengths with `years` of spin-up in front: the first year's climate
    without weather, repeated, so snow, soil water and soil heat start near equilibrium and
    the first simulated year is not a cold-start artefact. Returns (forcing, days, skip)."""
    first_year = catalog.month_range(months[0], catalog.add_months(months[0], 11))
    calm = {name: np.zeros((12, len(units))) for name in anomalies}
    spinup = forcing(first_year, pathway, calm, bias, units)
    run = forcing(months, pathway, anomalies, bias, units)
    joined = {name: np.concatenate([np.tile(spinup[name], (years, 1)), run[name]]) for name in run}
    days = np.concatenate([np.tile(days_in_month(first_year, calendar), years), days_in_month(months, calendar)])
    return joined, days, 12 * years


def positive_degree_days(t_air: np.ndarray) -> np.ndarray:
    """Expected max(T, 0) of daily means around the monthly mean (K per day): melt starts
    in months whose mean is still below zero, as it does."""
    z = t_air / DAILY_T_SPREAD
    density = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return DAILY_T_SPREAD * density + t_air * ndtr(z)


def _longwave_down(t_air: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    """Brutsaert clear-sky emissivity from humidity, clouds radiate close to black bodies."""
    vapour_hpa = RELATIVE_HUMIDITY * 6.112 * np.exp(17.62 * t_air / (243.12 + t_air))
    t_kelvin = t_air + KELVIN
    clear = 1.24 * (vapour_hpa / t_kelvin) ** (1.0 / 7.0)
    emissivity = clear + cloud * (0.98 - clear)
    return emissivity * SIGMA * t_kelvin**4
