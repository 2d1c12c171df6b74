"""Per-tile kernel of grid mode's projections: the conduction core fitted on a tile's cells
(``ml.tiles``) run under each RCP's bias-corrected drivers, the active-layer thickness per cell and
year, and what a map shows per cell (late-century warming per layer, active layer, taliks).

Plain functions of one tile's arrays (no Dagster), coarse as ``ml.tiles``'s: every scenario and
every month of the tile in one task. A cell takes its own bias-corrected drivers (``tile_scenarios``,
``ml.tile_scenarios``: the scenario regridded onto the cell and mapped onto the cell's reanalysis);
its soil water is the training climatology of its reanalysis, as for the bands
(``ml.scenario_members``), so scenario soil water does not reach the core.

A **talik** year of a cell: the deepest layer's monthly mean (1.00-2.89 m) stays above 0 degC the
whole year (it no longer refreezes). A cell **becomes a talik** under a scenario when that happens
in fewer than half of the years of ``EARLY_YEARS`` and in at least half of ``LATE_YEARS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ml.active_layer import active_layer_thickness
from ml.scenario_members import core_drivers, core_inputs, water_climatology
from ml.thermal_core import ThermalCore
from ml.tiles import CORE_MODEL_INPUTS, TileSeries
from ml.unit_arrays import UnitGrid, days_in_month
from sources import catalog

EARLY_YEARS = (2024, 2043)  # the maps' reference period, the first 20 projected years
LATE_YEARS = (2081, 2100)
SCENARIO_DRIVERS: tuple[str, ...] = core_drivers(CORE_MODEL_INPUTS)
WARMING = tuple(f"warming_{k}" for k in range(len(catalog.TARGETS)))
PERIOD_MEANS = tuple(f"{name}_{label}" for label in ("early", "late") for name in catalog.TARGETS)
# per scenario and cell: what a map shows (see ``summary_frame``)
SUMMARY_COLUMNS: tuple[str, ...] = (
    *PERIOD_MEANS,
    *WARMING,
    "alt_early_m",
    "alt_late_m",
    "all_thawed_early_share",
    "all_thawed_late_share",
    "talik_early_share",
    "talik_late_share",
    "becomes_talik",
)


@dataclass(frozen=True, eq=False)
class ScenarioDrivers:
    """One scenario's bias-corrected drivers ``values`` (T, cell, SCENARIO_DRIVERS) of a tile's
    cells (the tile's order) for consecutive ``months``, in the climate model's ``calendar``."""

    months: np.ndarray
    values: np.ndarray
    calendar: str


@dataclass(frozen=True, eq=False)
class TileProjectionTask:
    """What one tile's projection needs: its reanalysis (for the soil-water climatology), the
    core's parameters per cell (``ml.tiles.TileCoreFit.params``, the cells of ``history``) and
    every scenario's drivers."""

    history: TileSeries
    params: dict[str, np.ndarray]
    scenarios: dict[str, ScenarioDrivers]

    @property
    def tile(self) -> str:
        return self.history.tile


def _years(months: np.ndarray) -> np.ndarray:
    return months.astype("datetime64[Y]").astype(np.int64) + 1970


def project_tile(task: TileProjectionTask) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per scenario: (months 2024-01..2100-12 datetime64[M], soil temperature (T, cell, layer) degC
    float32), the core with the tile's parameters driven by the scenario from its first month."""
    history = task.history
    grid = history.grid(catalog.WATER_CONTENT)
    train = grid.months <= catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH)
    water = water_climatology(grid, train)  # (12, 4, cell)
    core = ThermalCore(params={name: np.asarray(value, dtype=float) for name, value in task.params.items()})
    n_cells = len(history.cells)
    for name, value in core.params.items():
        if value.shape != (n_cells,):
            raise ValueError(f"tile {task.tile}: parameter {name} holds {value.shape} values for {n_cells} cells")
    first = catalog.month64(catalog.PROJECTION_FIRST_MONTH)
    last = catalog.month64(catalog.PROJECTION_LAST_MONTH)
    out = {}
    for scenario, drivers in task.scenarios.items():
        months = np.asarray(drivers.months, dtype="datetime64[M]")
        if drivers.values.shape != (len(months), n_cells, len(SCENARIO_DRIVERS)):
            raise ValueError(
                f"tile {task.tile}, {scenario}: drivers {drivers.values.shape} are not (months {len(months)}, "
                f"cells {n_cells}, {list(SCENARIO_DRIVERS)})"
            )
        if months[0] > first or months[-1] < last or (np.diff(months).astype(np.int64) != 1).any():
            raise ValueError(
                f"tile {task.tile}, {scenario}: drivers must cover consecutive months through {first}..{last}, "
                f"got {months[0]}..{months[-1]}"
            )
        values = drivers.values.astype(np.float64)
        if not np.isfinite(values).all():
            t, c, v = np.argwhere(~np.isfinite(values))[0]
            raise ValueError(
                f"tile {task.tile}, {scenario}: {SCENARIO_DRIVERS[v]} is not finite in cell "
                f"{int(history.cells[c])}, month {months[t]}"
            )
        scenario_grid = UnitGrid(months, values, SCENARIO_DRIVERS, np.asarray(history.cells))
        inputs = core_inputs(scenario_grid, water, days_in_month(months, drivers.calendar), CORE_MODEL_INPUTS)
        run = np.transpose(core.predict(inputs), (0, 2, 1))  # (T, cell, layer)
        keep = (months >= first) & (months <= last)
        out[scenario] = (months[keep], run[keep].astype(np.float32))
    return out


def soil_frame(tile: TileSeries, projected: dict[str, tuple[np.ndarray, np.ndarray]]) -> pl.DataFrame:
    """Rows scenario, cell, month, t_soil_0..t_soil_3 (float32), by scenario, cell, month."""
    parts = []
    for scenario, (months, soil) in projected.items():
        n_months, n_cells = soil.shape[:2]
        by_cell = np.transpose(soil, (1, 0, 2))  # (cell, T, layer)
        parts.append(
            pl.DataFrame(
                {
                    "scenario": pl.Series("scenario", [scenario] * (n_months * n_cells), dtype=pl.String),
                    "cell": pl.Series("cell", np.repeat(tile.cells, n_months), dtype=pl.Int64),
                    "month": pl.Series("month", np.tile(months.astype("datetime64[D]"), n_cells)).cast(pl.Date),
                    **{
                        name: pl.Series(name, by_cell[..., k].ravel(), dtype=pl.Float32)
                        for k, name in enumerate(catalog.TARGETS)
                    },
                }
            )
        )
    return pl.concat(parts)


def active_layer_frame(soil: pl.DataFrame) -> pl.DataFrame:
    """ALT per scenario, cell and year (``ml.active_layer``, profile method) with its flag, and
    ``talik``: the deepest layer's monthly mean stayed above 0 degC all year."""
    alt = active_layer_thickness(soil, group_columns=("scenario", "cell"))
    deepest = catalog.TARGETS[-1]
    talik = soil.group_by("scenario", "cell", pl.col("month").dt.year().cast(pl.Int32).alias("year")).agg(
        (pl.col(deepest).min() > 0).alias("talik")
    )
    return alt.join(talik, on=["scenario", "cell", "year"], how="left").sort("scenario", "cell", "year")


def summary_frame(soil: pl.DataFrame, active_layer: pl.DataFrame) -> pl.DataFrame:
    """Per scenario and cell, what the maps show: ``t_soil_k_early``/``t_soil_k_late`` (degC), the
    mean of layer k over EARLY_YEARS and LATE_YEARS, and ``warming_k`` (K), late minus early;
    ``alt_early_m``/``alt_late_m``, the mean ALT over each period (years flagged ``all_thawed``
    count at their lower bound, 2.89 m) and the share of such years; the share of talik years per
    period and ``becomes_talik`` (module docstring)."""

    def period(frame: pl.DataFrame, years: tuple[int, int], column: str = "year") -> pl.DataFrame:
        year = pl.col("month").dt.year() if column == "month" else pl.col("year")
        return frame.filter(year.is_between(*years))

    means = {
        label: period(soil, years, "month")
        .group_by("scenario", "cell")
        .agg(pl.col(name).cast(pl.Float64).mean() for name in catalog.TARGETS)
        for label, years in (("early", EARLY_YEARS), ("late", LATE_YEARS))
    }
    warming = (
        means["late"]
        .join(means["early"], on=["scenario", "cell"], suffix="_early")
        .rename({name: f"{name}_late" for name in catalog.TARGETS})
        .with_columns(
            (pl.col(f"{name}_late") - pl.col(f"{name}_early")).alias(WARMING[k])
            for k, name in enumerate(catalog.TARGETS)
        )
    )
    layers = [
        period(active_layer, years)
        .group_by("scenario", "cell")
        .agg(
            pl.col("alt_m").mean().alias(f"alt_{label}_m"),
            (pl.col("flag") == "all_thawed").mean().alias(f"all_thawed_{label}_share"),
            pl.col("talik").cast(pl.Float64).mean().alias(f"talik_{label}_share"),
        )
        for label, years in (("early", EARLY_YEARS), ("late", LATE_YEARS))
    ]
    joined = warming.join(layers[0], on=["scenario", "cell"]).join(layers[1], on=["scenario", "cell"])
    return (
        joined.with_columns(
            ((pl.col("talik_early_share") < 0.5) & (pl.col("talik_late_share") >= 0.5)).alias("becomes_talik")
        )
        .select("scenario", "cell", *SUMMARY_COLUMNS)
        .sort("scenario", "cell")
    )


def tile_projection_frames(task: TileProjectionTask) -> dict[str, pl.DataFrame]:
    """The kernel grid mode maps over tiles: each scenario's soil temperature per cell and month,
    ALT per cell and year, and the maps' summary per cell, as the frames one tile lands."""
    soil = soil_frame(task.history, project_tile(task))
    active_layer = active_layer_frame(soil)
    return {
        "soil_temperature": soil,
        "active_layer": active_layer,
        "summary": summary_frame(soil, active_layer).with_columns(pl.lit(task.tile).alias("tile")),
    }
