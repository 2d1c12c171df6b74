"""Per-tile kernel of grid mode's network projections: the shared cell network
(``ml.cell_training``) run under each RCP, monthly soil temperature per cell and layer to 2100,
and the same per-cell summary the core's maps show (``ml.tile_projection.summary_frame``).

Plain functions of one tile's arrays (no Dagster); Keras is imported only where the network runs.

Where the network's inputs come from under a scenario (the choice, so nothing is made up):

* Every driver the network reads (``ml.cell_training.DRIVERS``: the eight
  ``catalog.DYNAMIC_FEATURES`` and soil water ``w_0..w_3``) comes from the scenario mart, as on
  the band path (``cmip5_bias_corrected``): each RCP's band series of the eight drivers and the
  column water ``soil_water_total_kg_m2`` are regridded onto the tile's cells (``ml.regrid``, the
  same interpolation ``tile_scenarios`` runs), quantile-mapped onto each cell's own reanalysis
  (``ml.bias_correction.correct_scenario``: per cell, variable and calendar month, 2001-2023
  overlap, quantile delta mapping by default) and the corrected column water split over the four
  layers by the lagged split fitted on the cell's reanalysis water (the band path's default). The
  air and skin temperature, precipitation and snowfall so corrected are the ones ``tile_scenarios``
  gives the conduction core (same regridding, same correction, same reference); the network
  additionally gets the radiation and turbulent fluxes and a scenario soil water, where the core
  holds soil water at the cell's reanalysis climatology.
* The anomalies are taken from the cell's 2001-2018 reanalysis climatology of each driver, the
  month's sine and cosine from the calendar, the statics from the cell (as in training); the
  predicted anomalies get the cell's 2001-2018 soil-temperature climatology added back, as
  ``tile_network_history`` does.
* A window is months t-23..t (``WINDOW``), so the first target month (2024-01) reads the
  corrected scenario from 2022-02 on: the historical run spliced before each RCP in the mart.

Beside the soil temperature: per cell and scenario, the share of its 2081-2100 months in which at
least one of the network's driver anomalies lies outside the range the same anomaly took in the
cell's 2001-2018 training months (``outside_training_range_share``), and the same for air
temperature alone; a network extrapolates there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from ml.cell_training import (
    DRIVERS,
    DYNAMIC_INPUTS,
    MART_STATICS,
    PREDICT_BATCH_SIZE,
    STATICS,
    TRAIN_LAST,
    WINDOW,
    CellNetwork,
    CellTile,
    _climatology,
    network_at,
    to_degc,
)
from ml.soil_water import SOIL_WATER_TOTAL
from ml.tile_projection import LATE_YEARS, SUMMARY_COLUMNS, WARMING, active_layer_frame, soil_frame, summary_frame
from ml.unit_arrays import UnitGrid, unit_grid
from sources import catalog

# What the kernel reads of the scenario mart per band: every driver, the layer water the split
# replaces, and the column water it is split from.
BAND_VARIABLES: tuple[str, ...] = catalog.DYNAMIC_FEATURES + catalog.WATER_CONTENT + (SOIL_WATER_TOTAL,)
FIRST = catalog.month64(catalog.PROJECTION_FIRST_MONTH)
LAST = catalog.month64(catalog.PROJECTION_LAST_MONTH)
INPUT_FIRST = FIRST - np.timedelta64(WINDOW - 1, "M")  # the first month a 2024-01 window reads
RANGE_COLUMNS: tuple[str, ...] = ("outside_training_range_share", "t_air_outside_training_range_share")
NETWORK_SUMMARY_COLUMNS: tuple[str, ...] = (*SUMMARY_COLUMNS, *RANGE_COLUMNS)
OUTPUTS = ("soil_temperature", "summary")
CELLS_PER_BATCH = 16  # cells whose windows are cut and predicted together (about 9 MB of inputs a cell)


@dataclass(frozen=True, eq=False)
class CellProjectionTask:
    """What one tile's network projections need: its cells (reanalysis of ``CELL_VARIABLES``,
    coordinates), every RCP's band scenarios (rows ``scenario``, ``band``, ``month``,
    ``BAND_VARIABLES``: the scenario mart's, historical run spliced before each RCP), the folder
    of the shared network (read on the worker), and the correction's ``method`` and
    ``n_quantiles``."""

    tile: CellTile
    bands: pl.DataFrame
    network: str
    method: str = "qdm"
    n_quantiles: int = 50

    @property
    def key(self) -> str:
        return self.tile.key


def reference_frame(tile: CellTile) -> pl.DataFrame:
    """The tile's reanalysis of ``DRIVERS`` as the correction's reference (rows unit, month); a
    missing or non-finite value is an error naming the tile, variable, cell and month."""
    grid = tile.series.grid(DRIVERS)
    n_months, n_cells = grid.values.shape[:2]
    return pl.DataFrame(
        {
            "unit": pl.Series("unit", np.tile(grid.units, n_months), dtype=pl.Int64),
            "month": pl.Series("month", np.repeat(grid.months.astype("datetime64[D]"), n_cells)).cast(pl.Date),
            **{name: grid.values[..., k].ravel() for k, name in enumerate(DRIVERS)},
        }
    )


def scenario_inputs(task: CellProjectionTask) -> dict[str, UnitGrid]:
    """Per RCP the tile has in ``task.bands`` (``catalog.RCP_EXPERIMENTS`` order): ``DRIVERS`` of
    its cells (tile order) for the months ``INPUT_FIRST``..``LAST``, regridded, bias-corrected and
    the column water split (module docstring)."""
    from ml.bias_correction import correct_scenario
    from ml.regrid import regrid_bands

    tile = task.tile
    catalog.require_columns(task.bands, ("scenario", "band", "month", *BAND_VARIABLES), f"tile {task.key} bands")
    reference = reference_frame(tile)
    present = set(task.bands["scenario"].unique().to_list())
    scenarios = [s for s in catalog.RCP_EXPERIMENTS if s in present]
    if not scenarios:
        raise ValueError(f"tile {task.key}: the band scenarios hold no RCP of {list(catalog.RCP_EXPERIMENTS)}")
    out = {}
    for scenario in scenarios:
        where = f"tile {task.key}, {scenario} band scenario"
        bands = task.bands.filter(pl.col("scenario") == scenario)
        regridded = regrid_bands(bands, BAND_VARIABLES, tile.series.cells, tile.latitude, where)
        corrected = correct_scenario(
            reference, regridded.with_columns(pl.lit(scenario).alias("scenario")), task.method, task.n_quantiles
        ).frame
        span = corrected.filter(pl.col("month").is_between(INPUT_FIRST.item(), LAST.item()))
        out[scenario] = unit_grid(span, DRIVERS, f"tile {task.key}, {scenario} network drivers", tile.series.cells)
    return out


@dataclass(frozen=True)
class CellClimate:
    """What a tile's cells keep from their history: the 2001-2018 climatology (12, cell, V) of
    ``DRIVERS`` then ``catalog.TARGETS``, each driver anomaly's training range (cell, driver), the
    statics (cell, ``STATICS``)."""

    climatology: np.ndarray
    anomaly_low: np.ndarray
    anomaly_high: np.ndarray
    statics: np.ndarray


def cell_climate(tile: CellTile) -> CellClimate:
    """A tile's ``CellClimate``, computed as ``ml.cell_training.shard_frame`` does for training."""
    series = tile.series
    names = DRIVERS + catalog.TARGETS
    values = series.grid(names).values
    months = np.asarray(series.months, dtype="datetime64[M]")
    train = months <= TRAIN_LAST
    climatology = _climatology(values, months, train, series.tile, series.cells, DRIVERS)
    anomalies = (values - climatology[months.astype(np.int64) % 12])[train][..., : len(DRIVERS)]
    statics = series.grid(MART_STATICS).values[train].mean(axis=0)
    statics = np.concatenate([tile.latitude[:, None], tile.longitude[:, None], statics], axis=1)
    return CellClimate(climatology, anomalies.min(axis=0), anomalies.max(axis=0), statics)


def project_cells(
    tile: CellTile,
    inputs: Mapping[str, UnitGrid],
    network: CellNetwork,
    climate: CellClimate | None = None,
    first: np.datetime64 = FIRST,
    last: np.datetime64 = LAST,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], pl.DataFrame]:
    """Per scenario of ``inputs`` (``DRIVERS`` of the tile's cells, the ``WINDOW - 1`` months
    before ``first`` through ``last`` at least): (months ``first``..``last``, soil temperature
    (T, cell, layer) degC float32), the network's anomaly plus the cell's climatology; and per
    scenario and cell the shares of 2081-2100 months outside the training range
    (``RANGE_COLUMNS``; NaN where ``first``..``last`` holds none of them)."""
    climate = climate or cell_climate(tile)
    input_first = first - np.timedelta64(WINDOW - 1, "M")
    cells = np.asarray(tile.series.cells)
    x_mean, x_std = network.stats.of(DYNAMIC_INPUTS)
    s_mean, s_std = network.stats.of(STATICS)
    statics = ((climate.statics - s_mean) / s_std).astype(np.float32)  # (cell, K)
    n_drivers = len(DRIVERS)
    projected, ranges = {}, []
    for scenario, grid in inputs.items():
        where = f"tile {tile.key}, {scenario} network drivers"
        if list(grid.names) != list(DRIVERS) or not np.array_equal(grid.units, cells):
            raise ValueError(f"{where}: expected {list(DRIVERS)} of cells {cells.tolist()}")
        months = np.asarray(grid.months, dtype="datetime64[M]")
        keep = (months >= input_first) & (months <= last)
        months = months[keep]
        if len(months) == 0 or months[0] != input_first or months[-1] != last:
            span = f"{grid.months[0]}..{grid.months[-1]}" if len(grid.months) else "no month"
            raise ValueError(f"{where}: cover {span}; windows predicting {first}..{last} need {input_first}..{last}")
        values = np.asarray(grid.values[keep], dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            t, c, v = np.argwhere(bad)[0]
            raise ValueError(f"{where}: {DRIVERS[v]} is not finite in cell {int(cells[c])}, month {months[t]}")
        calendar = months.astype(np.int64) % 12
        anomalies = values - climate.climatology[calendar][..., :n_drivers]
        angle = 2 * np.pi * calendar / 12
        season = np.broadcast_to(np.stack([np.sin(angle), np.cos(angle)], -1)[:, None, :], (len(months), len(cells), 2))
        dynamic = np.concatenate([values, anomalies, season], axis=-1)  # DYNAMIC_INPUTS order
        x = ((dynamic - x_mean) / x_std).astype(np.float32)
        windows = sliding_window_view(x, WINDOW, axis=0)  # (T-23, cell, F, window), a view
        n_targets = windows.shape[0]
        normalised = np.concatenate(
            [
                _predict(network, windows[:, c : c + CELLS_PER_BATCH], statics[c : c + CELLS_PER_BATCH])
                for c in range(0, len(cells), CELLS_PER_BATCH)
            ]
        ).reshape(len(cells), n_targets, -1)
        target_calendar = calendar[WINDOW - 1 :]
        climatology = np.transpose(climate.climatology[target_calendar][..., n_drivers:], (1, 0, 2))  # (cell, T, 4)
        soil = to_degc(normalised, network.stats, climatology)
        projected[scenario] = (months[WINDOW - 1 :], np.transpose(soil, (1, 0, 2)).astype(np.float32))
        late = (months.astype("datetime64[Y]").astype(np.int64) + 1970 >= LATE_YEARS[0]) & (
            months.astype("datetime64[Y]").astype(np.int64) + 1970 <= LATE_YEARS[1]
        )
        outside = (anomalies[late] < climate.anomaly_low) | (anomalies[late] > climate.anomaly_high)  # (T, cell, V)
        nothing = np.full(len(cells), np.nan)
        ranges.append(
            pl.DataFrame(
                {
                    "scenario": [scenario] * len(cells),
                    "cell": pl.Series("cell", cells, dtype=pl.Int64),
                    RANGE_COLUMNS[0]: outside.any(axis=-1).mean(axis=0) if late.any() else nothing,
                    RANGE_COLUMNS[1]: outside[..., DRIVERS.index("t_air")].mean(axis=0) if late.any() else nothing,
                }
            )
        )
    return projected, pl.concat(ranges)


def _predict(network: CellNetwork, windows: np.ndarray, statics: np.ndarray) -> np.ndarray:
    """Standardised anomalies (cell x target, 4) of windows (T, cell, F, window) of some cells."""
    n_targets, n_cells = windows.shape[:2]
    x = np.ascontiguousarray(np.transpose(windows, (1, 0, 3, 2))).reshape(-1, WINDOW, windows.shape[2])
    units = np.repeat(statics, n_targets, axis=0)
    predicted = network.model.predict({"x": x, "unit_features": units}, batch_size=PREDICT_BATCH_SIZE, verbose=0)
    return np.asarray(predicted, dtype=np.float64)


def network_frames(tile: CellTile, inputs: Mapping[str, UnitGrid], network: CellNetwork) -> dict[str, pl.DataFrame]:
    """The frames one tile lands: ``soil_temperature`` (scenario, cell, month, t_soil_0..3) and
    ``summary`` (per scenario and cell: ``NETWORK_SUMMARY_COLUMNS``, tile)."""
    projected, ranges = project_cells(tile, inputs, network)
    soil = soil_frame(tile.series, projected)
    summary = summary_frame(soil, active_layer_frame(soil)).join(ranges, on=["scenario", "cell"], how="left")
    return {
        "soil_temperature": soil,
        "summary": summary.select("scenario", "cell", *NETWORK_SUMMARY_COLUMNS).with_columns(
            pl.lit(tile.key).alias("tile")
        ),
    }


def tile_network_projection_frames(task: CellProjectionTask) -> dict[str, pl.DataFrame]:
    """The kernel grid mode maps over tiles: the tile's scenario inputs built and the network
    (``task.network``, loaded once per worker and folder version) run under each RCP."""
    return network_frames(task.tile, scenario_inputs(task), network_at(task.network))


# --- credibility against the core ------------------------------------------------------------


def credibility(network: pl.DataFrame, core: pl.DataFrame) -> pl.DataFrame:
    """Per scenario: for each layer k the mean over cells of the network's and the core's
    ``warming_k`` (2081-2100 minus 2024-2043, K) and their correlation over the cells both hold,
    and the share of cells whose 2081-2100 months leave the training range more often than not
    (``outside_training_range_share`` > 0.5). ``network``: the summary rows of
    ``network_frames``; ``core``: ``ml.tile_projection``'s summary rows (scenario, cell, warming)."""
    layers = range(len(catalog.TARGETS))
    joined = network.select("scenario", "cell", *WARMING, RANGE_COLUMNS[0]).join(
        core.select("scenario", "cell", *WARMING), on=["scenario", "cell"], how="left", suffix="_core"
    )
    return (
        joined.group_by("scenario")
        .agg(
            pl.len().alias("cells"),
            *(pl.col(f"warming_{k}").mean().alias(f"network_warming_{k}_K") for k in layers),
            *(pl.col(f"warming_{k}_core").mean().alias(f"core_warming_{k}_K") for k in layers),
            *(pl.corr(f"warming_{k}", f"warming_{k}_core").alias(f"correlation_{k}") for k in layers),
            (pl.col(RANGE_COLUMNS[0]) > 0.5).mean().alias("cells_outside_training_range_share"),
            pl.col(RANGE_COLUMNS[0]).mean().alias("mean_outside_training_range_share"),
        )
        .sort("scenario")
    )


def rcps_ordered(network: pl.DataFrame) -> dict[str, bool]:
    """Per layer: whether the mean 2081-2100 soil temperature over the cells rises with the
    forcing, rcp26 < rcp45 < rcp60 < rcp85 (``catalog.RCP_EXPERIMENTS`` order; those ``network``
    holds)."""
    levels = network.group_by("scenario").agg(pl.col(f"{name}_late").mean() for name in catalog.TARGETS)
    order = [s for s in catalog.RCP_EXPERIMENTS if s in set(levels["scenario"])]
    levels = {row["scenario"]: row for row in levels.to_dicts()}
    return {
        name: bool(
            all(
                levels[a][f"{name}_late"] < levels[b][f"{name}_late"]
                for a, b in zip(order[:-1], order[1:], strict=True)
            )
        )
        for name in catalog.TARGETS
    }
