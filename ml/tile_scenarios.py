"""Per-tile kernel of grid mode's scenarios: each RCP's climate-model drivers regridded onto the
tile's cells (``ml.regrid``: linear in latitude between band centroids, clamped) and quantile-mapped
onto each cell's own reanalysis by the band path's correction (``ml.bias_correction.bias_correct``,
the function ``cmip5_bias_corrected`` runs: per cell, variable and calendar month, trained on the
2001-2023 overlap; quantile delta mapping by default).

Plain functions of one tile's arrays (no Dagster), coarse as ``ml.tiles``'s: every scenario, every
corrected variable and every month of the tile in one task. Corrected are the drivers the
conduction core reads (``ml.tile_projection.SCENARIO_DRIVERS``) and precipitation, which bounds
snowfall after the correction as on the band path (``SCENARIO_VARIABLES``); the soil water of a
projection is the cell's reanalysis climatology (``ml.tile_projection``), so scenario soil water is
neither regridded nor corrected here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from ml.bias_correction import CORRECTED, bias_correct, diagnostics_summary, recorded_warnings
from ml.regrid import regrid_bands
from ml.tile_projection import SCENARIO_DRIVERS, ScenarioDrivers
from ml.tiles import TileSeries
from ml.unit_arrays import unit_grid
from sources import catalog

# What is regridded and corrected: the core's drivers, and precipitation (snowfall <= it).
SCENARIO_VARIABLES: tuple[str, ...] = tuple(v for v in CORRECTED if v in {*SCENARIO_DRIVERS, "p_total"})
# What the kernel needs of the tile's reanalysis: the reference of the correction.
REFERENCE_VARIABLES: tuple[str, ...] = SCENARIO_VARIABLES + catalog.WATER_CONTENT
OUTPUTS = ("drivers", "diagnostics")


@dataclass(frozen=True, eq=False)
class TileScenarioTask:
    """What one tile's scenarios need: its reanalysis (``REFERENCE_VARIABLES`` of its cells), its
    cells' latitudes (the tile's cell order), and the band scenarios, rows ``scenario``, ``band``,
    ``month``, ``SCENARIO_VARIABLES`` (the scenario mart's, historical run spliced before each RCP),
    with the correction's ``method`` and ``n_quantiles``."""

    history: TileSeries
    cell_lat: np.ndarray
    bands: pl.DataFrame
    method: str = "qdm"
    n_quantiles: int = 50

    @property
    def tile(self) -> str:
        return self.history.tile


def reference_frame(history: TileSeries) -> pl.DataFrame:
    """The tile's reanalysis as the correction's reference: rows unit, month, REFERENCE_VARIABLES;
    a missing or non-finite value is an error naming the tile, variable, cell and month."""
    grid = history.grid(REFERENCE_VARIABLES)
    n_months, n_cells = grid.values.shape[:2]
    return pl.DataFrame(
        {
            "unit": pl.Series("unit", np.tile(grid.units, n_months), dtype=pl.Int64),
            "month": pl.Series("month", np.repeat(grid.months.astype("datetime64[D]"), n_cells)).cast(pl.Date),
            **{name: grid.values[..., k].ravel() for k, name in enumerate(REFERENCE_VARIABLES)},
        }
    )


def tile_scenario_frames(task: TileScenarioTask) -> dict[str, pl.DataFrame]:
    """The kernel grid mode maps over tiles. ``drivers``: rows scenario, cell, month,
    SCENARIO_DRIVERS (float32), every month of each scenario, by scenario, cell, month;
    ``diagnostics``: per scenario and variable, the correction's quantile distance to the
    reanalysis before and after (mean over the tile's cells), its overlap and any warning."""
    history = task.history
    if len(task.cell_lat) != len(history.cells):
        raise ValueError(f"tile {task.tile}: {len(history.cells)} cells but {len(task.cell_lat)} latitudes")
    catalog.require_columns(task.bands, ("scenario", "band", "month", *SCENARIO_VARIABLES), f"tile {task.tile} bands")
    reference = reference_frame(history)
    present = set(task.bands["scenario"].unique().to_list())
    scenarios = [s for s in catalog.RCP_EXPERIMENTS if s in present] + sorted(present - set(catalog.RCP_EXPERIMENTS))
    if not scenarios:
        raise ValueError(f"tile {task.tile}: the band scenarios hold no scenario")
    drivers, diagnostics = [], []
    for scenario in scenarios:
        where = f"tile {task.tile}, {scenario} band scenario"
        bands = task.bands.filter(pl.col("scenario") == scenario)
        regridded = regrid_bands(bands, SCENARIO_VARIABLES, history.cells, task.cell_lat, where)
        with recorded_warnings() as caught:
            result = bias_correct(
                reference,
                regridded.with_columns(pl.lit(scenario).alias("scenario")),
                method=task.method,
                n_quantiles=task.n_quantiles,
                variables=SCENARIO_VARIABLES,
            )
        notes = "; ".join(dict.fromkeys(caught)) or None
        corrected = result.corrected.sort("unit", "month")
        drivers.append(
            corrected.select(
                pl.lit(scenario).alias("scenario"),
                pl.col("unit").alias("cell"),
                "month",
                *(pl.col(name).cast(pl.Float32) for name in SCENARIO_DRIVERS),
            )
        )
        summary = diagnostics_summary(result.diagnostics.with_columns(pl.lit(scenario).alias("scenario")))
        diagnostics.append(
            summary.with_columns(
                pl.lit(task.tile).alias("tile"),
                pl.lit(f"{result.overlap_first:%Y-%m}..{result.overlap_last:%Y-%m}").alias("overlap"),
                pl.lit(result.method).alias("method"),
                pl.lit(notes, dtype=pl.String).alias("warnings"),
            )
        )
    return {"drivers": pl.concat(drivers), "diagnostics": pl.concat(diagnostics)}


def scenario_drivers(
    frame: pl.DataFrame, cells: np.ndarray, calendars: Mapping[str, str], where: str
) -> dict[str, ScenarioDrivers]:
    """The ``drivers`` frame of a tile as the projection's input: per scenario of ``calendars`` its
    ``ScenarioDrivers`` over ``cells`` (the tile's order) in that scenario's calendar; a scenario,
    cell or month missing, or a value not finite, is an error naming ``where`` and it."""
    catalog.require_columns(frame, ("scenario", "cell", "month", *SCENARIO_DRIVERS), where)
    out = {}
    for scenario, calendar in calendars.items():
        rows = frame.filter(pl.col("scenario") == scenario)
        if rows.is_empty():
            held = sorted(frame["scenario"].unique().to_list())
            raise ValueError(f"{where}: no drivers of scenario {scenario}; it holds {held}")
        series = unit_grid(rows, SCENARIO_DRIVERS, f"{where}, {scenario}", cells, key="cell")
        out[scenario] = ScenarioDrivers(series.months, series.values.astype(np.float32), calendar)
    return out
