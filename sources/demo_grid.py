"""The demo reanalysis per cell of the synthetic grid (`sources.simulator.grid`): grid mode's
offline source, chosen by `reanalysis: {kind: demo, units: cell}` in the sources file."""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import polars as pl

from sources.demo import DemoReanalysisSource, DemoSettings, _empty_reanalysis_frame, _readonly, _reanalysis_frame
from sources.simulator import runs
from sources.simulator.grid import synthetic_grid
from sources.simulator.unit_climates import KM_PER_DEGREE
from sources.simulator.worlds import world_named
from sources.units import SpatialUnits


@functools.lru_cache(maxsize=2)
def _cell_reanalysis_world(settings: DemoSettings) -> dict[str, np.ndarray]:
    """The reanalysis over the grid's land cells (`runs.reanalysis`), without the soil cells'
    monthly means the band demo keeps for its active-layer truth (too large per grid cell)."""
    cells = synthetic_grid().land_cells()
    return _readonly(runs.reanalysis(settings.seed, settings.latest_month, cells, world_named(settings.world)))


def cell_units() -> SpatialUnits:
    """The synthetic grid's land cells as spatial units of kind `cell`, with their `tile` key and
    their area weight in each band (`band_weight_0` .. `band_weight_5`)."""
    world = synthetic_grid()
    grid, spec = world.grid, world.spec
    tile_of = np.empty(grid.cells.size, dtype=object)
    for tile in grid.tiles:
        tile_of[grid.positions(tile.cells)] = tile.key
    lat, lon = grid.cell_lat, grid.cell_lon
    area = (spec.lat_step * KM_PER_DEGREE) * (spec.lon_step * KM_PER_DEGREE * np.cos(np.radians(lat)))
    frame = pl.DataFrame(
        {
            "unit": grid.cells.astype(np.int64),
            "name": [f"cell {cell}" for cell in grid.cells],
            "latitude": lat,
            "longitude": lon,
            "area_km2": area,
            "tile": pl.Series(tile_of.tolist(), dtype=pl.Utf8),
            # the cell's area weight in each band (`Grid.cell_band_weights`): dbt rolls the cell
            # mart up to the bands with them, the same weights as `Grid.band_rollup`
            **{f"band_weight_{band}": weights for band, weights in enumerate(grid.cell_band_weights())},
        }
    )
    return SpatialUnits.of("cell", frame, "demo cells")


class DemoCellReanalysisSource(DemoReanalysisSource):
    """ERA5-Land monthly means per land cell of the synthetic grid (names and units as the band
    demo's), simulated; rows keyed by `unit` (the cell id)."""

    def units(self) -> SpatialUnits:
        return cell_units()

    def _frame(self, rows: np.ndarray, months: list[dt.date]) -> pl.DataFrame:
        if not months:
            return _empty_reanalysis_frame().rename({"band": "unit"}).cast({"unit": pl.Int64})
        return _reanalysis_frame(_cell_reanalysis_world(self.settings), rows, months, synthetic_grid().grid.cells)
