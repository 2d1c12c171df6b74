"""The ERA5-Land grid of Alaska as cells and tiles: ids, land mask, band weights per cell and the
area-weighted rollup of cell values to the six bands. Plain Python (no Dagster).

A cell is one grid point of a regular lat/lon grid (ERA5-Land: 0.1 degree); its id is its flat
position ``row * n_lon + column`` in the grid (rows south to north, columns west to east), so an
id does not depend on the land mask. A tile is a block of ``tile_rows x tile_cols`` grid points;
its land cells are what one task of grid mode works on. Every array of cell values is
(..., cell) in ascending cell id (``Grid.cells``), a tile's in its own ascending ids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from sources import catalog, regions
from sources.base import SourceError

ERA5_LAND_STEP_DEG = 0.1
DEFAULT_TILE_CELLS = 20


@dataclass(frozen=True)
class GridSpec:
    """A regular grid: the points at whole multiples of ``step`` inside the box (degrees), cut
    into tiles of ``tile_rows x tile_cols`` points. The default is ERA5-Land over the bands:
    121 latitudes (59.3..71.3 N) x 271 longitudes (-168..-141), 7 x 14 tiles of 20 x 20.

    ``lat_step``/``lon_step`` override ``step`` along one axis; ``centred`` puts the points at the
    centres of the steps from the box's south and west edges instead (the demo's synthetic grid
    of 0.30 x 0.54 degree cells filling the bands' box)."""

    south: float = catalog.BANDS[0].south
    north: float = catalog.BANDS[-1].north
    west: float = catalog.LON_WEST
    east: float = catalog.LON_EAST
    step: float = ERA5_LAND_STEP_DEG
    tile_rows: int = DEFAULT_TILE_CELLS
    tile_cols: int = DEFAULT_TILE_CELLS
    lat_step: float | None = None  # None: ``step``
    lon_step: float | None = None
    centred: bool = False

    def __post_init__(self) -> None:
        for name, value in (("step", self.step), ("lat_step", self.lat_step), ("lon_step", self.lon_step)):
            if value is not None and not value > 0:
                raise ValueError(f"grid {name} must be > 0 degrees, got {value}")
        if not (self.south < self.north and self.west < self.east):
            raise ValueError(
                f"grid box must have south < north and west < east, got lat {self.south}..{self.north}, "
                f"lon {self.west}..{self.east}"
            )
        if self.tile_rows < 1 or self.tile_cols < 1:
            raise ValueError(f"tiles must be at least 1 x 1 cells, got {self.tile_rows} x {self.tile_cols}")
        if self.lat.size == 0 or self.lon.size == 0:
            raise ValueError(f"no grid point at a multiple of {self.step} degrees inside the box")

    def _points(self, low: float, high: float, step: float) -> np.ndarray:
        if self.centred:
            count = math.floor((high - low) / step + 1e-9)
            return np.round(low + step * (np.arange(count) + 0.5), 10)
        # whole multiples of the step, so the points are ERA5-Land's own whatever the box edges
        first = math.ceil(low / step - 1e-9)
        last = math.floor(high / step + 1e-9)
        return np.round(np.arange(first, last + 1) * step, 10)

    @cached_property
    def lat(self) -> np.ndarray:
        """Latitudes of the grid rows, south to north."""
        return self._points(self.south, self.north, self.lat_step or self.step)

    @cached_property
    def lon(self) -> np.ndarray:
        """Longitudes of the grid columns, west to east."""
        return self._points(self.west, self.east, self.lon_step or self.step)

    @property
    def shape(self) -> tuple[int, int]:
        return self.lat.size, self.lon.size

    @property
    def tile_grid(self) -> tuple[int, int]:
        """Tiles along latitude and longitude (the last of each may be partial)."""
        return math.ceil(self.lat.size / self.tile_rows), math.ceil(self.lon.size / self.tile_cols)


@dataclass(frozen=True, eq=False)
class Tile:
    """Tile (``row``, ``col``) of the tile grid: grid rows and columns it spans and its land cells."""

    row: int
    col: int
    rows: slice
    cols: slice
    cells: np.ndarray  # ids of its land cells, ascending

    @property
    def key(self) -> str:
        """The tile's name (a partition key later): ``r<row>c<col>``, zero-padded."""
        return f"r{self.row:02d}c{self.col:02d}"


def land_mask(field: np.ndarray, where: str, variable: str, labels: Sequence[str] | None = None) -> np.ndarray:
    """(lat, lon) land mask of a field (time, lat, lon) or (lat, lon) that is NaN off land (ERA5-Land
    masks the ocean): land where every time is finite. A point finite at some times and NaN at
    others is a hole, not the coast: an error naming the variable, the point and the time."""
    field = np.asarray(field, dtype=float)
    if field.ndim == 2:
        field = field[None]
    if field.ndim != 3:
        raise SourceError(f"{where}: variable {variable} must be (time, lat, lon) or (lat, lon), got {field.shape}")
    finite = np.isfinite(field)
    land = finite.all(axis=0)
    holes = finite.any(axis=0) & ~land
    if holes.any():
        row, col = np.argwhere(holes)[0]
        t = int(np.argmin(finite[:, row, col]))
        label = labels[t] if labels is not None else f"time index {t}"
        raise SourceError(
            f"{where}: variable {variable}, grid point (row {row}, column {col}), {label}: NaN there but finite at "
            f"other times (a hole in the field, not the land mask); {int(holes.sum())} point(s) like it"
        )
    if not land.any():
        raise SourceError(f"{where}: variable {variable} has no land point (all NaN)")
    return land


@dataclass(frozen=True, eq=False)
class Grid:
    """A grid spec with its land mask (lat, lon) bool: the cells, their tiles and band weights."""

    spec: GridSpec
    land: np.ndarray

    def __post_init__(self) -> None:
        land = np.asarray(self.land)
        if land.shape != self.spec.shape or land.dtype != bool:
            raise ValueError(f"land mask must be bool {self.spec.shape} (lat, lon), got {land.dtype} {land.shape}")
        if not land.any():
            raise ValueError("land mask has no land cell")

    @cached_property
    def cells(self) -> np.ndarray:
        """Ids of the land cells, ascending: the order of every (..., cell) array of the grid."""
        return np.flatnonzero(self.land.ravel())

    @property
    def cell_lat(self) -> np.ndarray:
        return self.spec.lat[self.cells // self.spec.shape[1]]

    @property
    def cell_lon(self) -> np.ndarray:
        return self.spec.lon[self.cells % self.spec.shape[1]]

    @cached_property
    def tiles(self) -> tuple[Tile, ...]:
        """The tiles that hold land, row by row of the tile grid (the same for the same grid)."""
        found = []
        n_lon = self.spec.shape[1]
        for row in range(self.spec.tile_grid[0]):
            for col in range(self.spec.tile_grid[1]):
                rows = slice(row * self.spec.tile_rows, (row + 1) * self.spec.tile_rows)
                cols = slice(col * self.spec.tile_cols, (col + 1) * self.spec.tile_cols)
                grid_rows, grid_cols = np.nonzero(self.land[rows, cols])
                if grid_rows.size:
                    cells = (grid_rows + rows.start) * n_lon + grid_cols + cols.start
                    found.append(Tile(row, col, rows, cols, np.sort(cells)))
        return tuple(found)

    def tile(self, key: str) -> Tile:
        for tile in self.tiles:
            if tile.key == key:
                return tile
        raise KeyError(f"no tile {key!r} with land in the grid (tiles: {self.tiles[0].key}..{self.tiles[-1].key})")

    def positions(self, cells: np.ndarray) -> np.ndarray:
        """Where ``cells`` (land cell ids) sit in ``Grid.cells``; an error naming a cell not on land."""
        cells = np.asarray(cells)
        index = np.searchsorted(self.cells, cells)
        bad = (index >= self.cells.size) | (self.cells[np.minimum(index, self.cells.size - 1)] != cells)
        if bad.any():
            raise KeyError(f"cell {int(cells[bad][0])} is not a land cell of the grid")
        return index

    def cell_values(self, field: np.ndarray) -> np.ndarray:
        """(..., cell) values of the land cells of a field (..., lat, lon)."""
        field = np.asarray(field)
        if field.shape[-2:] != self.spec.shape:
            raise ValueError(f"field must end with the grid's (lat, lon) {self.spec.shape}, got {field.shape}")
        return field.reshape(*field.shape[:-2], -1)[..., self.cells]

    def field(self, values: np.ndarray) -> np.ndarray:
        """(..., lat, lon) field of (..., cell) land values, NaN off land (the inverse of ``cell_values``)."""
        values = np.asarray(values)
        if values.shape[-1] != self.cells.size:
            raise ValueError(f"values must end with the grid's {self.cells.size} land cells, got {values.shape}")
        dtype = values.dtype if values.dtype.kind == "f" else np.float64
        out = np.full((*values.shape[:-1], self.land.size), np.nan, dtype=dtype)
        out[..., self.cells] = values
        return out.reshape(*values.shape[:-1], *self.spec.shape)

    def mosaic(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """(..., cell) values of the whole grid from every tile's (..., tile cells) values, keyed
        by tile key; a tile missing, unknown or of the wrong size is an error naming it."""
        expected = {tile.key: tile for tile in self.tiles}
        missing = sorted(set(expected) - set(parts))
        unknown = sorted(set(parts) - set(expected))
        if missing or unknown:
            raise ValueError(f"mosaic needs every tile once: missing {missing[:5]}, unknown {unknown[:5]}")
        first = np.asarray(parts[self.tiles[0].key])
        out = np.empty((*first.shape[:-1], self.cells.size), dtype=first.dtype)
        for key, tile in expected.items():
            part = np.asarray(parts[key])
            if part.shape != (*first.shape[:-1], tile.cells.size):
                raise ValueError(
                    f"tile {key}: values {part.shape} do not fit its {tile.cells.size} cells (..., cell) "
                    f"with leading shape {first.shape[:-1]}"
                )
            out[..., self.positions(tile.cells)] = part
        return out

    def band_weights(self, cache_dir: Path | None = None) -> regions.BandWeights:
        """``sources.regions`` weights of the grid (fractional band cover x cos latitude x land)."""
        return regions.band_weights(
            self.spec.lat, self.spec.lon, self.land.astype(float), where="cell grid", cache_dir=cache_dir
        )

    def cell_band_weights(self, cache_dir: Path | None = None) -> np.ndarray:
        """(band, cell) area weight of every land cell in every band (a cell cut by a band edge
        weighs in both bands by the part inside each)."""
        weights = self.band_weights(cache_dir)
        out = np.zeros((catalog.N_BANDS, self.cells.size))
        out[:, self.positions(weights.positions)] = weights.matrix
        return out

    def band_rollup(
        self,
        values: np.ndarray,
        variable: str,
        labels: Sequence[str] | None = None,
        cache_dir: Path | None = None,
    ) -> np.ndarray:
        """(time, band) area-weighted means of cell values (time, cell): the band values of grid mode,
        by the same weights and checks as band means of a gridded file (``regions.band_means``)."""
        return regions.band_means(self.field(values), self.band_weights(cache_dir), "cell grid", variable, labels)
