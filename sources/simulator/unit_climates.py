"""The climate of each spatial unit the simulator runs over (the six bands by default): where it
lies and the climate fields that make it what it is, one value per unit, so every step is vectorised."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace

import numpy as np

from sources import catalog

KM_PER_DEGREE = 111.195  # km per degree of latitude (mean Earth radius)
# Bands are idealised as equal strips one BAND_SPACING_KM apart (weather correlation per spacing).
BAND_SPACING_KM = (catalog.BANDS[-1].north - catalog.BANDS[0].south) / catalog.N_BANDS * KM_PER_DEGREE
DOMAIN_MID_LATITUDE = 0.5 * (catalog.BANDS[0].south + catalog.BANDS[-1].north)
DOMAIN_MID_LONGITUDE = 0.5 * (catalog.LON_WEST + catalog.LON_EAST)
BAND_CORRELATION = 0.85  # weather of units one band spacing apart is alike: corr = 0.85 ** (distance / spacing)

# 2001-2023 normals per band (0 = south .. 5 = North Slope), loosely after ERA5-Land. The
# fresh-snow density is effective: it sets how well each band's snowpack insulates and is
# tuned so the 0-7 cm soil matches ERA5-Land's band means (about +3 degC in band 0 to
# -2.3 degC in band 5); the North Slope's depth-hoar-rich pack insulates best. Boreal forest
# masks snow (lower albedo); the organic mat thickens and warming is amplified northward.
BAND_CLIMATE: dict[str, tuple[float, ...]] = {
    "t_air_jan": (-12.0, -17.0, -21.5, -23.0, -24.0, -25.0),  # degC
    "t_air_jul": (12.5, 13.5, 14.0, 13.5, 12.5, 11.0),  # degC
    "t_air_annual": (-1.0, -3.0, -5.0, -6.5, -8.0, -10.0),  # degC
    "precip_annual": (900.0, 550.0, 420.0, 380.0, 380.0, 300.0),  # mm
    "snow_density_fresh": (275.0, 290.0, 284.0, 270.0, 252.0, 183.0),  # kg m-3
    "snow_albedo": (0.50, 0.50, 0.55, 0.60, 0.75, 0.80),
    "organic_depth": (0.10, 0.12, 0.15, 0.18, 0.20, 0.22),  # m
    "amplification": (1.6, 1.75, 1.9, 2.05, 2.2, 2.4),  # local / global warming
}


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one cache entry per set
class UnitClimates:
    """The simulated climate of a set of spatial units (bands, cells): position and climate fields,
    arrays (units,). Which units exist is `sources.units.SpatialUnits`; this is what the simulator
    needs to know of them."""

    ids: np.ndarray  # int: band index or cell id
    latitude: np.ndarray  # degrees north, for insolation
    longitude: np.ndarray  # degrees east
    y_km: np.ndarray  # position on a local plane (km north, km east): how alike the weather is
    x_km: np.ndarray
    t_air_jan: np.ndarray  # degC, 2001-2023 normals
    t_air_jul: np.ndarray
    t_air_annual: np.ndarray
    precip_annual: np.ndarray  # mm
    snow_density_fresh: np.ndarray  # kg m-3, effective: sets how well the snowpack insulates
    snow_albedo: np.ndarray  # albedo of full snow cover (forest masks snow)
    organic_depth: np.ndarray  # m, organic mat above the mineral soil
    amplification: np.ndarray  # local warming / global warming

    def __post_init__(self) -> None:
        count = len(self.ids)
        for field in fields(self):
            values = np.asarray(getattr(self, field.name))
            if values.shape != (count,):
                raise ValueError(f"spatial units: {field.name} has shape {values.shape}, expected ({count},)")
            values.flags.writeable = False
            object.__setattr__(self, field.name, values)

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, keep: np.ndarray) -> UnitClimates:
        """The units where `keep` (a boolean mask or indices) holds, in order."""
        return replace(self, **{field.name: getattr(self, field.name)[keep] for field in fields(self)})

    def weather_correlation(self) -> np.ndarray:
        """Correlation of the units' weather anomalies, decaying with distance (units, units)."""
        distance = np.hypot(self.y_km[:, None] - self.y_km[None, :], self.x_km[:, None] - self.x_km[None, :])
        return BAND_CORRELATION ** (distance / BAND_SPACING_KM)


@functools.cache
def band_climates() -> UnitClimates:
    """The six latitude bands of `catalog.BANDS`, the simulator's default units."""
    index = np.array([band.index for band in catalog.BANDS])
    return UnitClimates(
        ids=index,
        latitude=np.array([band.mid_latitude for band in catalog.BANDS]),
        longitude=np.full(len(index), DOMAIN_MID_LONGITUDE),
        y_km=(index + 0.5) * BAND_SPACING_KM,
        x_km=np.zeros(len(index)),
        **{name: np.array(values, dtype=float) for name, values in BAND_CLIMATE.items()},
    )
