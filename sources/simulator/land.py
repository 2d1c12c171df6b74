"""The demo world's land surface: snowpack, linearised surface energy balance and a soil-water
bucket, stepped month by month for every spatial unit at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sources.simulator.climate import KELVIN, SECONDS_PER_DAY, SIGMA
from sources.simulator.unit_climates import UnitClimates

LATENT_VAPORISATION = 2.5e6  # J kg-1
DEGREE_DAY_FACTOR = 3.5  # mm of melt per positive degree-day
SNOW_DENSITY_GAIN = 100.0  # kg m-3 of settling a snowpack can gain over its fresh density
SNOW_SETTLING_MONTHS = 3.0
SNOW_COVER_SWE = 10.0  # mm of SWE that covers half the ground (albedo)
BARE_ALBEDO = 0.15
TURBULENT_EXCHANGE = 20.0  # W m-2 K-1, sensible heat per kelvin of skin-air difference
WINTER_SUBLIMATION = 2.0  # W m-2 of latent heat even in the dark (sublimation)
BUCKET_CAPACITY = 150.0  # mm of water the soil can hold above its driest state
BASEFLOW_PER_MONTH = 0.08  # fraction of stored water that drains each month
LAYER_MEMORY_MONTHS = (0.5, 1.5, 4.0, 12.0)  # deeper layers follow the bucket more slowly
THETA_DRY = np.array([0.17, 0.20, 0.22, 0.25])  # m3 m-3 per ERA5-Land layer
THETA_WET = np.array([0.43, 0.40, 0.38, 0.36])


@dataclass
class _LandState:
    """What the land carries from one month to the next, per unit."""

    swe: np.ndarray  # snow water equivalent, mm
    snow_density: np.ndarray  # kg m-3
    storage: np.ndarray  # water in the bucket above its driest state, mm
    layer_wetness: np.ndarray  # (4, units), 0 = THETA_DRY .. 1 = THETA_WET

    @classmethod
    def initial(cls, units: UnitClimates) -> _LandState:
        n = len(units)
        return cls(
            swe=np.zeros(n),
            snow_density=units.snow_density_fresh.copy(),
            storage=np.full(n, 0.5 * BUCKET_CAPACITY),
            layer_wetness=np.full((4, n), 0.5),
        )

    @property
    def snow_depth(self) -> np.ndarray:
        return self.swe / self.snow_density  # mm of water / (kg m-3) = m of snow


def _surface_fluxes(t_air, sw_down, lw_down, snow_cover, wetness, snow_albedo):
    """Latent and sensible heat (W m-2, upwards) and skin temperature (degC) from a
    linearised surface energy balance: radiation in, evaporation by soil wetness, and the
    rest warms (or, when negative, cools) the skin until turbulence carries it away."""
    albedo = BARE_ALBEDO + (snow_albedo - BARE_ALBEDO) * snow_cover
    t_kelvin = t_air + KELVIN
    available = sw_down * (1 - albedo) + lw_down - 0.98 * SIGMA * t_kelvin**4
    evaporative_fraction = (0.1 + 0.4 * wetness) * (1 - snow_cover) + 0.1 * snow_cover
    latent = evaporative_fraction * np.maximum(available, 0.0) + WINTER_SUBLIMATION
    skin_excess = (available - latent) / (TURBULENT_EXCHANGE + 4 * 0.98 * SIGMA * t_kelvin**3)
    return latent, TURBULENT_EXCHANGE * skin_excess, t_air + skin_excess


def _snowpack_step(state: _LandState, snowfall, melt_potential, sublimation_potential, fresh) -> np.ndarray:
    """Add the month's snow (light, `fresh` density), let the pack settle, melt and sublimate
    it. Returns the melt (mm)."""
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


def land_surface(forcing: dict[str, np.ndarray], days: np.ndarray, units: UnitClimates) -> dict[str, np.ndarray]:
    """Step snow, surface energy and soil water month by month (each needs the others).

    Returns per month and unit: snow depth at the start and end of the month (m), snow
    density (kg m-3), latent and sensible heat upwards (W m-2), skin temperature (degC) and
    volumetric water per ERA5-Land layer (months, 4, units)."""
    n_months, n_units = len(days), len(units)
    state = _LandState.initial(units)
    names = ("snow_depth_start", "snow_depth_end", "snow_density", "latent", "sensible", "t_skin")
    out = {name: np.empty((n_months, n_units)) for name in names}
    out["theta"] = np.empty((n_months, 4, n_units))
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
            snow_albedo=units.snow_albedo,
        )
        evaporation = latent * seconds / LATENT_VAPORISATION  # mm; from the snow where it covers
        melt = _snowpack_step(
            state,
            snowfall,
            DEGREE_DAY_FACTOR * forcing["degree_days"][i] * days[i],
            evaporation * snow_cover,
            fresh=units.snow_density_fresh,
        )
        _bucket_step(state, precip - snowfall + melt, evaporation * (1 - snow_cover))
        out["snow_depth_end"][i], out["snow_density"][i] = state.snow_depth, state.snow_density
        out["latent"][i], out["sensible"][i], out["t_skin"][i] = latent, sensible, t_skin
        out["theta"][i] = THETA_DRY[:, None] + (THETA_WET - THETA_DRY)[:, None] * state.layer_wetness
    return out
