"""Grid mode's assets: tile-partitioned core fits and projections, and the maps that mosaic them.

Built per grid (`grid_assets(grid)`) and registered by the definitions only in grid mode (the
configured reanalysis delivers the cells of a grid: `sources.registry.reanalysis_grid`); the band
demo has none of them. Partitions are the grid's tiles with land; `BackfillPolicy.single_run()`
puts a range of tiles in one run, which maps its tiles onto the dask cluster (`dask` resource,
`dagster_project.tile_engine.map_tiles`: one task per tile, every tile lands or none).

* `tile_core`: the conduction core fitted per cell of each tile on its reanalysis (`ml.tiles`),
  its parameters and its run over the history.
* `tile_scenarios`: each RCP's band scenarios (the scenario mart) regridded onto the tile's cells
  (`ml.regrid`: linear in latitude between band centroids, clamped at the edges) and quantile-mapped
  onto each cell's own reanalysis by the band path's correction (`ml.tile_scenarios`).
* `tile_projections`: the fitted core under each RCP's regridded, bias-corrected drivers
  (`tile_scenarios`), the active-layer thickness per cell and year, and the maps' per-cell summary
  (`ml.tile_projection`).
* `grid_maps`: every tile's summary mosaicked onto the grid (`sources.grid.Grid.mosaic`): a CF-1.8
  netCDF (lat, lon, time), a Parquet table per scenario and cell (warehouse view
  `maps.cell_maps`, with `maps.cell_active_layer` and `maps.cell_soil_temperature` over the tiles'
  files) and one PNG of maps per RCP.

The tiles' reanalysis is read from the cell mart's partitions of the run's tiles
(`read_tile_reanalysis` over `dagster_project.lake.cells.tile_rows`; the history mart where no cell
mart is built) on the step's side and shipped to the workers.
"""

import functools
import time
from collections.abc import Sequence

import numpy as np
import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from dagster_project.config import TileCoreConfig, TileScenariosConfig
from dagster_project.dask_engine import DaskResource
from dagster_project.lake import CMIP5, RAW_SCHEMA, SCENARIO_MART, Table, read_parquet
from dagster_project.lake.cells import CELL_MART, read_band_scenarios, tile_rows
from dagster_project.metadata import markdown_table, png_markdown
from dagster_project.partitions import tile_partitions
from dagster_project.resources import WAREHOUSE_POOL, LakeResource, WarehouseResource
from sources import catalog
from sources.grid import Grid

GRID = "grid"
TILE_CORE = "tile_core"
TILE_SCENARIOS = "tile_scenarios"
TILE_PROJECTIONS = "tile_projections"
GRID_MAPS = "grid_maps"


def read_tile_reanalysis(warehouse: WarehouseResource, grid: Grid, tiles: Sequence[str], names: Sequence[str]):
    """Each tile's monthly reanalysis ``names`` (canonical names and units) as an
    ``ml.tiles.TileSeries``, from the tiles' rows (``dagster_project.lake.cells.tile_rows``: the cell
    mart's partitions of the tiles, else the history mart)."""
    from ml.tiles import TileSeries
    from ml.unit_arrays import unit_grid

    by_tile = {}
    for key, rows in tile_rows(warehouse, grid, tiles, names).items():
        ids = grid.tile(key).cells
        series = unit_grid(rows, names, f"cells of tile {key}", ids)
        by_tile[key] = TileSeries(key, ids, series.months, series.values.astype(np.float32), tuple(names))
    return by_tile


def read_tile_parameters(lake: LakeResource, tile) -> dict[str, np.ndarray]:
    """The core's parameters of a tile's cells (``tile_core``), in the tile's cell order."""
    path = lake.layout.tile_core(tile.key).parameters
    frame = read_parquet(path).sort("cell")
    if not np.array_equal(frame["cell"].to_numpy(), tile.cells):
        raise ValueError(f"{path}: its cells are not tile {tile.key}'s {tile.cells.size}: re-materialize tile_core")
    fitted = [c for c in frame.columns if c not in ("tile", "cell", "train_rmse", "iterations")]
    return {name: frame[name].to_numpy() for name in fitted}


def scenario_calendars(warehouse: WarehouseResource, scenarios: Sequence[str]) -> dict[str, str]:
    """Each scenario's calendar, as its raw CMIP5 rows state it (exactly one each)."""
    table = Table(RAW_SCHEMA, CMIP5)
    with warehouse.read_only() as con:
        rows = con.execute(
            f'select distinct experiment, calendar from "{table.schema}"."{table.name}" '
            "where experiment in (select unnest(?))",
            [list(scenarios)],
        ).fetchall()
    calendars = {s: sorted({c for e, c in rows if e == s and c}) for s in scenarios}
    wrong = {s: c for s, c in calendars.items() if len(c) != 1}
    if wrong:
        raise ValueError(f"raw CMIP5 rows state calendars {wrong}; expected exactly one per scenario")
    return {s: c[0] for s, c in calendars.items()}


def read_tile_scenarios(lake: LakeResource, grid: Grid, tiles: Sequence[str], calendars: dict[str, str]):
    """Per tile and scenario, the regridded, bias-corrected drivers of the tile's cells
    (``ml.tile_projection.ScenarioDrivers``) from the tile's ``tile_scenarios`` file."""
    from ml.tile_projection import SCENARIO_DRIVERS
    from ml.tile_scenarios import scenario_drivers

    out = {}
    for key in tiles:
        path = lake.layout.tile_scenarios(key).drivers
        if not path.exists():
            raise FileNotFoundError(f"{path}: tile {key} has no scenarios yet: materialize tile_scenarios for it first")
        frame = read_parquet(path, columns=["scenario", "cell", "month", *SCENARIO_DRIVERS])
        out[key] = scenario_drivers(frame, grid.tile(key).cells, calendars, str(path))
    return out


def _engine(dask: DaskResource) -> str:
    if dask.serial:
        return "serial (in the step's process)"
    return dask.address or "embedded LocalCluster"


def _timing(keys: Sequence[str], cells: int, seconds: float, dask: DaskResource) -> dict[str, object]:
    return {
        "tiles": len(keys),
        "tiles_in_this_run": ", ".join(keys) if len(keys) <= 12 else f"{keys[0]}..{keys[-1]}",
        "cells": cells,
        "seconds": round(seconds, 2),
        "seconds_per_tile": round(seconds / len(keys), 2),
        "engine": _engine(dask),
    }


def _field_arrays(frame: pl.DataFrame, grid: Grid, scenarios: Sequence[str], columns: Sequence[str]) -> np.ndarray:
    """(scenario, column, lat, lon) of per-tile summaries: each tile's (scenario, column, tile
    cells) mosaicked onto the grid, NaN off land."""
    parts = {}
    for tile in grid.tiles:
        rows = frame.filter(pl.col("tile") == tile.key)
        values = np.full((len(scenarios), len(columns), tile.cells.size), np.nan)
        for s, scenario in enumerate(scenarios):
            one = rows.filter(pl.col("scenario") == scenario).sort("cell")
            if not np.array_equal(one["cell"].to_numpy(), tile.cells):
                raise ValueError(
                    f"tile {tile.key}, {scenario}: its summary does not hold the tile's {tile.cells.size} cells"
                )
            values[s] = one.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy().T
        parts[tile.key] = values
    return grid.field(grid.mosaic(parts))


def grid_assets(grid: Grid) -> list:
    """The tile-partitioned assets and the maps of ``grid`` (see the module docstring)."""
    tiles = tile_partitions(tile.key for tile in grid.tiles)

    @asset(
        name=TILE_CORE,
        group_name=GRID,
        partitions_def=tiles,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[AssetDep(CELL_MART.name, partition_mapping=AllPartitionMapping())],
        pool=WAREHOUSE_POOL,
        kinds={"parquet", "dask"},
        description="Per tile: the conduction core fitted for every land cell on its own (2001-2018) and run over "
        "the history; one dask task per tile, every tile of the run lands or none.",
    )
    def tile_core(
        context: AssetExecutionContext,
        config: TileCoreConfig,
        lake: LakeResource,
        warehouse: WarehouseResource,
        dask: DaskResource,
    ) -> MaterializeResult:
        from ml.tiles import CORE_VARIABLES, tile_core_frames

        keys = list(context.partition_keys)
        tasks = read_tile_reanalysis(warehouse, grid, keys, CORE_VARIABLES)
        targets = {
            key: {"parameters": lake.layout.tile_core(key).parameters, "history": lake.layout.tile_core(key).history}
            for key in keys
        }
        started = time.perf_counter()
        dask.map_tiles(
            functools.partial(tile_core_frames, max_iterations=config.max_iterations),
            tasks,
            targets,
            root=lake.layout.root,
        )
        seconds = time.perf_counter() - started
        fits = pl.concat(read_parquet(targets[key]["parameters"]) for key in keys)
        per_tile = fits.group_by("tile", maintain_order=True).agg(
            pl.len().alias("cells"),
            pl.col("train_rmse").median().alias("median_train_rmse_K"),
            pl.col("train_rmse").max().alias("max_train_rmse_K"),
        )
        return MaterializeResult(
            metadata={
                **_timing(keys, fits.height, seconds, dask),
                "months": f"{tasks[keys[0]].months[0]}..{tasks[keys[0]].months[-1]}",
                "max_iterations": config.max_iterations,
                "fit_per_tile": MetadataValue.md(markdown_table(per_tile, float_precision=3)),
                "path": MetadataValue.path(str(lake.layout.tile_core("*").parameters.parent)),
            }
        )

    @asset(
        name=TILE_SCENARIOS,
        group_name=GRID,
        partitions_def=tiles,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[
            AssetDep(CELL_MART.name, partition_mapping=AllPartitionMapping()),
            AssetKey(SCENARIO_MART.name),
        ],
        pool=WAREHOUSE_POOL,
        kinds={"parquet", "dask", "xsdba"},
        description="Per tile: every RCP's band scenarios regridded onto the cells (linear in latitude between band "
        "centroids, xarray interp, clamped at the edges) and quantile-mapped onto each cell's own reanalysis (the "
        "band path's correction, 2001-2023 overlap); one dask task per tile, every tile of the run lands or none.",
    )
    def tile_scenarios(
        context: AssetExecutionContext,
        config: TileScenariosConfig,
        lake: LakeResource,
        warehouse: WarehouseResource,
        dask: DaskResource,
    ) -> MaterializeResult:
        from ml.regrid import METHOD
        from ml.tile_scenarios import REFERENCE_VARIABLES, SCENARIO_VARIABLES, TileScenarioTask, tile_scenario_frames

        keys = list(context.partition_keys)
        history = read_tile_reanalysis(warehouse, grid, keys, REFERENCE_VARIABLES)
        bands = read_band_scenarios(warehouse, SCENARIO_VARIABLES)
        if bands.is_empty():
            raise ValueError(f"{SCENARIO_MART} holds no RCP rows: build the scenario mart (dbt) first")
        tasks = {
            key: TileScenarioTask(
                history[key],
                grid.cell_lat[grid.positions(grid.tile(key).cells)],
                bands,
                config.method,
                config.n_quantiles,
            )
            for key in keys
        }
        targets = {key: lake.layout.tile_scenarios(key).targets() for key in keys}
        started = time.perf_counter()
        dask.map_tiles(tile_scenario_frames, tasks, targets, root=lake.layout.root)
        seconds = time.perf_counter() - started
        diagnostics = pl.concat(read_parquet(targets[key]["diagnostics"]) for key in keys)
        overview = (
            diagnostics.group_by("scenario", "variable", "physical_unit")
            .agg(pl.col("mad_before", "mad_after", "reference_iqr").mean())
            .sort("scenario", "variable")
        )
        notes = sorted({n for n in diagnostics["warnings"].drop_nulls().to_list()})
        return MaterializeResult(
            metadata={
                **_timing(keys, sum(tasks[key].history.cells.size for key in keys), seconds, dask),
                "regridding": f"{METHOD} in latitude between the centroids of bands {sorted(set(bands['band']))} "
                "(xarray interp), clamped at the outermost (no extrapolation)",
                "method": config.method,
                "corrected_variables": MetadataValue.json(list(SCENARIO_VARIABLES)),
                "overlap": ", ".join(sorted(set(diagnostics["overlap"]))),
                # mean |model - reanalysis| quantile over the overlap before and after, over the cells
                "quantile_mapping_diagnostics": MetadataValue.md(markdown_table(overview, float_precision=4)),
                "warnings": MetadataValue.json(notes[:10]),
                "path": MetadataValue.path(str(lake.layout.tile_scenarios("*").drivers.parent.parent)),
            }
        )

    @asset(
        name=TILE_PROJECTIONS,
        group_name=GRID,
        partitions_def=tiles,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[
            AssetDep(TILE_CORE),
            AssetDep(TILE_SCENARIOS),
            AssetDep(CELL_MART.name, partition_mapping=AllPartitionMapping()),
            AssetDep(CMIP5, partition_mapping=AllPartitionMapping()),  # the scenarios' calendars
        ],
        pool=WAREHOUSE_POOL,
        kinds={"parquet", "dask"},
        description="Per tile: each cell's fitted core under every RCP's drivers (tile_scenarios: the scenario "
        "regridded onto the cell and mapped onto its reanalysis), 2024-2100; active-layer "
        "thickness per cell and year with talik years; the maps' summary per cell (2081-2100 minus 2024-2043).",
    )
    def tile_projections(
        context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource, dask: DaskResource
    ) -> MaterializeResult:
        from ml.tile_projection import TileProjectionTask, tile_projection_frames
        from ml.tiles import CORE_VARIABLES

        keys = list(context.partition_keys)
        history = read_tile_reanalysis(warehouse, grid, keys, CORE_VARIABLES)
        calendars = scenario_calendars(warehouse, catalog.RCP_EXPERIMENTS)
        scenarios = read_tile_scenarios(lake, grid, keys, calendars)
        tasks = {
            key: TileProjectionTask(history[key], read_tile_parameters(lake, grid.tile(key)), scenarios[key])
            for key in keys
        }
        targets = {key: lake.layout.tile_projections(key).targets() for key in keys}
        started = time.perf_counter()
        dask.map_tiles(tile_projection_frames, tasks, targets, root=lake.layout.root)
        seconds = time.perf_counter() - started
        summary = pl.concat(read_parquet(targets[key]["summary"]) for key in keys)
        overview = (
            summary.group_by("scenario")
            .agg(
                *(pl.col(f"warming_{k}").mean().alias(f"mean_warming_{k}_K") for k in range(len(catalog.TARGETS))),
                pl.col("alt_late_m").mean().alias("mean_alt_2081_2100_m"),
                pl.col("becomes_talik").sum().alias("cells_becoming_taliks"),
            )
            .sort("scenario")
        )
        return MaterializeResult(
            metadata={
                **_timing(keys, summary.filter(pl.col("scenario") == summary["scenario"][0]).height, seconds, dask),
                "calendars": MetadataValue.json(calendars),
                "scenarios_of_these_tiles": MetadataValue.md(markdown_table(overview, float_precision=3)),
                "path": MetadataValue.path(str(lake.layout.tile_projections("*").summary.parent.parent)),
            }
        )

    @asset(
        name=GRID_MAPS,
        group_name=GRID,
        deps=[AssetDep(TILE_PROJECTIONS, partition_mapping=AllPartitionMapping())],
        pool=WAREHOUSE_POOL,
        kinds={"netcdf", "parquet"},
        description="Every tile's projections mosaicked onto the grid: per RCP, soil warming per layer "
        "(2081-2100 minus 2024-2043), active-layer thickness per period and the cells that become taliks, as "
        "CF-1.8 netCDF (lat, lon, time), a table per cell (view maps.cell_maps) and PNG maps.",
    )
    def grid_maps(context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource):
        from ml.maps import map_figure, maps_dataset, to_cf_netcdf
        from ml.tile_projection import PERIOD_MEANS, WARMING

        missing = [t.key for t in grid.tiles if not lake.layout.tile_projections(t.key).summary.exists()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(grid.tiles)} tile(s) have no projections yet ({', '.join(missing[:6])}): "
                "materialize tile_projections for every tile first"
            )
        summary = pl.concat(read_parquet(lake.layout.tile_projections(t.key).summary) for t in grid.tiles)
        scenarios = [s for s in catalog.RCP_EXPERIMENTS if s in set(summary["scenario"])]
        n_layers = len(catalog.TARGETS)

        def fields(columns: Sequence[str]) -> np.ndarray:
            return _field_arrays(summary, grid, scenarios, columns)

        period_means = fields(PERIOD_MEANS)  # (scenario, period x layer, lat, lon)
        fields_by_name = {
            "soil_temperature": period_means.reshape(len(scenarios), 2, n_layers, *grid.spec.shape),
            "soil_warming": fields(WARMING),
            "active_layer_thickness": fields(("alt_early_m", "alt_late_m")),
            "all_thawed_share": fields(("all_thawed_early_share", "all_thawed_late_share")),
            "talik_share": fields(("talik_early_share", "talik_late_share")),
            "becomes_talik": fields(("becomes_talik",))[:, 0],
        }
        cell_ids = grid.field(grid.cells.astype(float))
        dataset = maps_dataset(
            grid.spec.lat, grid.spec.lon, scenarios, fields_by_name, np.where(np.isfinite(cell_ids), cell_ids, -1)
        )
        positions = grid.positions(summary["cell"].to_numpy())
        cells = summary.with_columns(
            pl.Series("lat", grid.cell_lat[positions]), pl.Series("lon", grid.cell_lon[positions])
        )
        keys = ("scenario", "cell", "tile", "lat", "lon")
        cells = cells.select(*keys, *(c for c in summary.columns if c not in keys))
        files = lake.layout.grid_maps()
        with lake.batch() as batch:
            batch.file(files.netcdf, lambda tmp: to_cf_netcdf(dataset, tmp))
            batch.parquet(files.cells, cells.sort("scenario", "cell"))
            figures = {
                s: batch.file(lake.layout.figure(f"grid_map_{s}"), lambda tmp, s=s: map_figure(dataset, s, tmp))
                for s in scenarios
            }
        views = warehouse.refresh_output_views(lake.layout, GRID_MAPS, context.log)
        overview = (
            cells.group_by("scenario")
            .agg(
                *(pl.col(f"warming_{k}").median().alias(f"median_warming_{k}_K") for k in range(n_layers)),
                pl.col("alt_early_m").median().alias("median_alt_2024_2043_m"),
                pl.col("alt_late_m").median().alias("median_alt_2081_2100_m"),
                pl.col("becomes_talik").sum().alias("cells_becoming_taliks"),
            )
            .sort("scenario")
        )
        return MaterializeResult(
            metadata={
                "cells": grid.cells.size,
                "tiles": len(grid.tiles),
                "grid": f"{grid.spec.shape[0]} x {grid.spec.shape[1]} (lat x lon)",
                "per_scenario": MetadataValue.md(markdown_table(overview, float_precision=3)),
                **{f"figure_{s}": png_markdown(figures[s], f"{s} maps") for s in scenarios},
                "netcdf": MetadataValue.path(str(files.netcdf)),
                "path": MetadataValue.path(str(files.cells)),
                **views,
            }
        )

    return [tile_core, tile_scenarios, tile_projections, grid_maps]
