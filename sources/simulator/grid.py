"""A synthetic grid of cells over the six bands' latitudes and longitudes -168..-141, with the
spatial structure of the band world (latitude, continentality, organic mat, snow), for grid mode.

The coastline is schematic (a few knots per coast, not a real land mask). Cells are coarser than
ERA5-Land's 0.1 degree: 50 x 40 cells of 0.54 x 0.30 degrees (about 25 x 34 km) cover the domain.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sources import catalog
from sources.grid import Grid, GridSpec
from sources.simulator.unit_climates import DOMAIN_MID_LATITUDE, KM_PER_DEGREE, UnitClimates, band_climates

GRID_COLUMNS = 50  # west to east
GRID_ROWS = 40  # south to north
TILE_CELLS = 10  # tiles of 10 x 10 cells: 4 x 5 tiles, enough to exercise tiling on a small grid
GEOGRAPHY_SEED = 17  # the organic mat's patchiness: fixed, the weather's seed does not move land
CONTINENTALITY_KM = 250.0  # distance from the sea over which the maritime climate fades
ORGANIC_PATCH_CELLS = 3.0  # smoothing (cells) of the organic mat's patchiness
ORGANIC_PATCH_SPREAD = 0.3  # log-standard deviation of the organic mat's thickness
# Change per unit of continentality above the band's mean (0 at the coast, 1 far inland):
# inland winters are colder and summers warmer, the interior is drier and its snow lighter
# (taiga depth hoar) while the coasts' is wind-packed.
INLAND = {"t_air_jan": -8.0, "t_air_jul": 3.0, "t_air_annual": -2.0, "snow_density_fresh": -40.0}
INLAND_DRYING = 0.8  # precipitation falls by exp(-0.8) per unit of continentality

# Schematic coasts: (longitude, latitude) knots of the north and south coasts, (latitude,
# longitude) knots of the west coast (Norton Sound, the Seward Peninsula, Kotzebue Sound).
_NORTH_COAST = (
    (-168.0, 68.2), (-166.5, 68.6), (-163.0, 69.8), (-158.0, 70.9), (-156.8, 71.3), (-152.0, 70.8), (-148.5, 70.3),
    (-141.0, 69.65),
)  # fmt: skip
_SOUTH_COAST = (
    (-168.0, 59.0), (-162.0, 59.6), (-161.0, 58.8), (-154.0, 59.0), (-152.5, 60.5), (-151.5, 61.2), (-150.0, 60.9),
    (-149.0, 59.8), (-147.5, 60.9), (-146.0, 60.6), (-144.0, 60.1), (-141.0, 60.0),
)  # fmt: skip
_WEST_COAST = (
    (59.0, -162.0), (60.5, -165.0), (61.5, -165.5), (62.5, -164.8), (63.5, -161.0), (64.5, -163.5), (65.5, -168.0),
    (66.5, -163.0), (67.5, -164.5), (68.5, -166.5), (72.0, -166.5),
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class SyntheticGrid:
    """Cells on a regular latitude-longitude grid: every cell as a spatial unit (row-major, id =
    row * columns + column), the land mask and continentality as (rows, columns) maps."""

    latitudes: np.ndarray  # (rows,) cell centres, degrees north, south first
    longitudes: np.ndarray  # (columns,) degrees east, west first
    land: np.ndarray  # (rows, columns) bool
    continentality: np.ndarray  # (rows, columns), 0 at the coast .. 1 far inland
    cells: UnitClimates  # every cell, land or sea
    spec: GridSpec  # the same cells as a grid spec: ids, tiles and band weights as for ERA5-Land

    def land_cells(self) -> UnitClimates:
        return self.cells.select(self.land.reshape(-1))

    @functools.cached_property
    def grid(self) -> Grid:
        """The land cells as a `sources.grid.Grid` (cell ids = `cells.ids` of the land cells)."""
        return Grid(self.spec, self.land)


def _knots(pairs: tuple[tuple[float, float], ...]) -> tuple[np.ndarray, np.ndarray]:
    x, y = zip(*pairs, strict=True)
    return np.array(x), np.array(y)


def _land_mask(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Land between the schematic coasts, (rows, columns) from 2-D latitude and longitude."""
    north = np.interp(lon, *_knots(_NORTH_COAST))
    south = np.interp(lon, *_knots(_SOUTH_COAST))
    west = np.interp(lat, *_knots(_WEST_COAST))
    return (lat < north) & (lat > south) & (lon > west)


def _patchiness(shape: tuple[int, int]) -> np.ndarray:
    """A smooth random field of unit standard deviation, the same for every run."""
    noise = np.random.default_rng(GEOGRAPHY_SEED).standard_normal(shape)
    smooth = ndimage.gaussian_filter(noise, ORGANIC_PATCH_CELLS, mode="nearest")
    return (smooth - smooth.mean()) / smooth.std()


@functools.cache
def synthetic_grid(columns: int = GRID_COLUMNS, rows: int = GRID_ROWS) -> SyntheticGrid:
    """The grid's cells with their fields, deterministically: the band climate interpolated to
    each cell's latitude, shifted by its continentality against its band's mean (so a band's
    land cells keep the band's climate on average), and a patchy organic mat."""
    south, north = catalog.BANDS[0].south, catalog.BANDS[-1].north
    lat_step, lon_step = (north - south) / rows, (catalog.LON_EAST - catalog.LON_WEST) / columns
    spec = GridSpec(
        south, north, catalog.LON_WEST, catalog.LON_EAST, lat_step=lat_step, lon_step=lon_step, centred=True,
        tile_rows=TILE_CELLS, tile_cols=TILE_CELLS,
    )  # fmt: skip
    latitudes, longitudes = spec.lat, spec.lon
    lat, lon = np.meshgrid(latitudes, longitudes, indexing="ij")
    land = _land_mask(lat, lon)
    y_km = (lat - south) * KM_PER_DEGREE
    x_km = (lon - catalog.LON_WEST) * KM_PER_DEGREE * np.cos(np.radians(DOMAIN_MID_LATITUDE))
    cell_km = (lat_step * KM_PER_DEGREE, lon_step * KM_PER_DEGREE * np.cos(np.radians(DOMAIN_MID_LATITUDE)))
    sea_km = ndimage.distance_transform_edt(land, sampling=cell_km)
    continentality = np.where(land, 1.0 - np.exp(-sea_km / CONTINENTALITY_KM), 0.0)

    bands = band_climates()
    band = np.searchsorted([b.north for b in catalog.BANDS[:-1]], lat)  # each cell's band index
    band_mean = np.array([continentality[land & (band == b)].mean() for b in range(len(bands))])
    inland = continentality - band_mean[band]
    fields = {
        name: np.interp(lat, bands.latitude, getattr(bands, name))
        for name in ("t_air_jan", "t_air_jul", "t_air_annual", "precip_annual", "snow_density_fresh")
        + ("snow_albedo", "organic_depth", "amplification")
    }
    for name, change in INLAND.items():
        fields[name] = fields[name] + change * inland
    fields["precip_annual"] = fields["precip_annual"] * np.exp(-INLAND_DRYING * inland)
    fields["organic_depth"] = fields["organic_depth"] * np.exp(ORGANIC_PATCH_SPREAD * _patchiness(lat.shape))
    cells = UnitClimates(
        ids=np.arange(lat.size),
        latitude=lat.reshape(-1),
        longitude=lon.reshape(-1),
        y_km=y_km.reshape(-1),
        x_km=x_km.reshape(-1),
        **{name: values.reshape(-1) for name, values in fields.items()},
    )
    return SyntheticGrid(latitudes, longitudes, land, continentality, cells, spec)
