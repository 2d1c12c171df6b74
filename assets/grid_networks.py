"""Grid mode's networks: one shared model over every cell, trained from per-tile shards.

Built per grid (`grid_network_assets(grid)`) and registered by the definitions only in grid mode,
beside `assets.grid`. The kernels are plain functions of `ml.cell_training` and
`ml.cell_projection`; the three per-tile assets map them over their tiles on the dask cluster (`dask` resource,
`dagster_project.tile_engine.map_tiles`: one task per tile, every tile of the run lands or none).

* `tile_training_shards` (tiles): each tile's cells (`dagster_project.lake.cells.tile_rows`: the
  cell mart's partitions of the tile, else the history mart) turned on the workers into a shard of
  monthly rows (drivers, their anomalies, month features, the cell's static features, target
  anomalies from the cell's training-years climatology and that climatology) and the moments of
  its training months.
* `cell_network`: one network (config `architecture`, default the GRU) trained on every shard's
  training windows through a tf.data pipeline (GPU when Keras sees one), the cells' static
  features as its unit input (no band embedding); held-out 2019-2023 RMSE per layer beside the
  cells' monthly climatology in its metadata.
* `tile_network_history` (tiles): the network's predictions per cell and month of the history,
  the windows built per tile on the workers (view `maps.cell_network_history`).
* `tile_network_projections` (tiles): the network under each RCP, 2024-2100 per cell and month
  (`ml.cell_projection`: every driver it reads regridded from the scenario mart and quantile-mapped
  onto the cell's reanalysis, the column water split over the layers, as the band path does), and
  per cell the maps' summary; metadata sets its warming beside the core's (`tile_projections`) for
  the same cells (views `maps.cell_network_projections`, `maps.cell_network_soil_temperature`).
"""

import contextlib
import time

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

from dagster_project.config import CellNetworkConfig, TileScenariosConfig
from dagster_project.dask_engine import DaskResource
from dagster_project.lake import SCENARIO_MART, local_copy, read_parquet
from dagster_project.lake.cells import CELL_MART, read_band_scenarios, tile_rows
from dagster_project.metadata import markdown_table
from dagster_project.partitions import tile_partitions
from dagster_project.resources import WAREHOUSE_POOL, LakeResource, WarehouseResource
from sources.grid import Grid

GRID = "grid"
TILE_TRAINING_SHARDS = "tile_training_shards"
CELL_NETWORK = "cell_network"
TILE_NETWORK_HISTORY = "tile_network_history"
TILE_PROJECTIONS = "tile_projections"  # assets.grid's (an asset module imports no other)
TILE_NETWORK_PROJECTIONS = "tile_network_projections"


def read_cell_tiles(warehouse: WarehouseResource, grid: Grid, keys) -> dict:
    """Each tile's cells as an `ml.cell_training.CellTile` (their rows and coordinates)."""
    from ml.cell_training import CELL_VARIABLES, cell_tile

    tiles = {}
    for key, rows in tile_rows(warehouse, grid, keys, CELL_VARIABLES).items():
        cells = grid.tile(key).cells
        positions = grid.positions(cells)
        tiles[key] = cell_tile(
            key, cells, rows, grid.cell_lat[positions], grid.cell_lon[positions], f"cells of tile {key}"
        )
    return tiles


def _engine(dask: DaskResource) -> str:
    if dask.serial:
        return "serial (in the step's process)"
    return dask.address or "embedded LocalCluster"


def _tiles_text(keys) -> str:
    return ", ".join(keys) if len(keys) <= 12 else f"{keys[0]}..{keys[-1]}"


def _hyperparameters(config: CellNetworkConfig) -> dict:
    """The architecture's small hyperparameters with the config's `units` and `layers` where it has them."""
    from ml import architecture_catalog

    hyperparameters = dict(architecture_catalog.architecture(config.architecture).small_hyperparameters)
    for name in ("units", "layers"):
        if name in hyperparameters:
            hyperparameters[name] = getattr(config, name)
    return hyperparameters


def grid_network_assets(grid: Grid) -> list:
    """The shards, the shared network, its inference and its projections per tile over ``grid``
    (module docstring)."""
    tiles = tile_partitions(tile.key for tile in grid.tiles)

    @asset(
        name=TILE_TRAINING_SHARDS,
        group_name=GRID,
        partitions_def=tiles,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[AssetDep(CELL_MART.name, partition_mapping=AllPartitionMapping())],
        pool=WAREHOUSE_POOL,
        kinds={"parquet", "dask"},
        description="Per tile: the shared cell network's training shard (rows per cell and month: drivers, their "
        "anomalies, statics, target anomalies from the cell's 2001-2018 climatology) and its training moments; one "
        "dask task per tile, every tile of the run lands or none.",
    )
    def tile_training_shards(
        context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource, dask: DaskResource
    ) -> MaterializeResult:
        from ml.cell_training import tile_shard_frames

        keys = list(context.partition_keys)
        tasks = read_cell_tiles(warehouse, grid, keys)
        targets = {key: lake.layout.tile_training_shards(key).targets() for key in keys}
        started = time.perf_counter()
        dask.map_tiles(tile_shard_frames, tasks, targets, root=lake.layout.root)
        seconds = time.perf_counter() - started
        months = tasks[keys[0]].series.months
        cells = sum(len(task.series.cells) for task in tasks.values())
        return MaterializeResult(
            metadata={
                "tiles": len(keys),
                "tiles_in_this_run": _tiles_text(keys),
                "cells": cells,
                "months": f"{months[0]}..{months[-1]}",
                "seconds": round(seconds, 2),
                "engine": _engine(dask),
                "path": MetadataValue.path(str(lake.layout.tile_training_shards("*").rows.parent)),
            }
        )

    @asset(
        name=CELL_NETWORK,
        group_name=GRID,
        deps=[AssetDep(TILE_TRAINING_SHARDS, partition_mapping=AllPartitionMapping())],
        kinds={"keras", "tensorflow"},
        description="One network over every cell (default the GRU), fed by tf.data from the tiles' shards, the "
        "cells' static features instead of a band embedding, targets as anomalies from each cell's climatology; "
        "held-out 2019-2023 RMSE per layer beside the monthly climatology.",
    )
    def cell_network(context: AssetExecutionContext, config: CellNetworkConfig, lake: LakeResource):
        from ml.cell_training import (
            CellTrainingConfig,
            held_out_scores,
            pooled_stats,
            save_cell_network,
            train_cell_network,
        )

        files = {tile.key: lake.layout.tile_training_shards(tile.key) for tile in grid.tiles}
        missing = [key for key, f in files.items() if not (f.rows.exists() and f.moments.exists())]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(files)} tile(s) have no training shard yet ({', '.join(missing[:6])}): "
                "materialize tile_training_shards for every tile first"
            )
        stats = pooled_stats(pl.concat(read_parquet(f.moments) for f in files.values()))
        training = CellTrainingConfig(
            architecture=config.architecture,
            epochs=config.epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            patience=config.patience,
            shuffle_buffer=config.shuffle_buffer,
            validation_months=config.validation_months,
            seed=config.seed,
            hyperparameters=_hyperparameters(config),
        )
        started = time.perf_counter()
        # tf.data reads local files: on an object-store lake, the shards are downloaded for the step
        with contextlib.ExitStack() as shards:
            paths = [shards.enter_context(local_copy(f.rows)) for f in files.values()]
            network = train_cell_network(paths, stats, training)
            scores = held_out_scores(network, paths)
        seconds = time.perf_counter() - started
        with lake.batch() as batch:
            folder = batch.folder(lake.layout.cell_network(), lambda tmp: save_cell_network(network, tmp))
        ratio = dict(zip(scores["layer"], scores["ratio"], strict=True))
        return MaterializeResult(
            metadata={
                "architecture": config.architecture,
                "hyperparameters": MetadataValue.json(training.hyperparameters),
                "tiles": len(paths),
                "cells": grid.cells.size,
                "fit_windows": network.windows["fit"],
                "validation_windows": network.windows["validation"],
                "test_windows": int(scores["windows"][0]),
                "epochs_run": len(network.history.get("loss", [])),
                "best_epoch": network.best_epoch,
                "device": network.device,
                "precision": network.precision,
                "training_seconds": round(network.seconds, 2),
                "seconds": round(seconds, 2),
                "held_out_2019_2023": MetadataValue.md(markdown_table(scores.drop("windows"), float_precision=3)),
                **{f"rmse_ratio_{layer}": round(float(value), 3) for layer, value in ratio.items()},
                "path": MetadataValue.path(str(folder)),
            }
        )

    @asset(
        name=TILE_NETWORK_HISTORY,
        group_name=GRID,
        partitions_def=tiles,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[AssetDep(CELL_NETWORK), AssetDep(CELL_MART.name, partition_mapping=AllPartitionMapping())],
        pool=WAREHOUSE_POOL,
        kinds={"parquet", "dask"},
        description="Per tile: the shared cell network's soil temperature for every cell and month of the history "
        "(windows built per tile on the workers), with the observed values; view maps.cell_network_history.",
    )
    def tile_network_history(
        context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource, dask: DaskResource
    ) -> MaterializeResult:
        from ml.cell_training import CellInferenceTask, tile_network_frames

        keys = list(context.partition_keys)
        folder = lake.layout.cell_network()
        if not folder.exists():
            raise FileNotFoundError(f"{folder}: no cell network yet: materialize cell_network first")
        cell_tiles = read_cell_tiles(warehouse, grid, keys)
        tasks = {key: CellInferenceTask(tile, str(folder)) for key, tile in cell_tiles.items()}
        targets = {key: {"predictions": lake.layout.tile_network_history(key)} for key in keys}
        started = time.perf_counter()
        dask.map_tiles(tile_network_frames, tasks, targets, root=lake.layout.root)
        seconds = time.perf_counter() - started
        predictions = pl.concat(read_parquet(targets[key]["predictions"]) for key in keys)
        layers = [c for c in predictions.columns if c.startswith("t_soil_")]
        errors = (
            predictions.group_by("split")
            .agg(
                pl.len().alias("cell_months"),
                *(((pl.col(c) - pl.col(f"observed_{c}")) ** 2).mean().sqrt().alias(f"rmse_{c}_K") for c in layers),
            )
            .sort("split")
        )
        views = warehouse.refresh_output_views(lake.layout, TILE_NETWORK_HISTORY, context.log)
        return MaterializeResult(
            metadata={
                "tiles": len(keys),
                "tiles_in_this_run": _tiles_text(keys),
                "cells": predictions["cell"].n_unique(),
                "predictions": predictions.height,
                "months": f"{predictions['month'].min()}..{predictions['month'].max()}",
                "seconds": round(seconds, 2),
                "engine": _engine(dask),
                "rmse_by_split": MetadataValue.md(markdown_table(errors, float_precision=3)),
                "path": MetadataValue.path(str(lake.layout.tile_network_history("*").parent)),
                **views,
            }
        )

    @asset(
        name=TILE_NETWORK_PROJECTIONS,
        group_name=GRID,
        partitions_def=tiles,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[
            AssetDep(CELL_NETWORK),
            AssetDep(TILE_PROJECTIONS),  # the core's summary of the same cells, set beside the network's
            AssetDep(CELL_MART.name, partition_mapping=AllPartitionMapping()),
            AssetKey(SCENARIO_MART.name),
        ],
        pool=WAREHOUSE_POOL,
        kinds={"parquet", "dask", "xsdba"},
        description="Per tile: the shared cell network under every RCP, 2024-2100 per cell and month, its inputs the "
        "scenario mart's drivers and column water regridded onto the cells and quantile-mapped onto each cell's "
        "reanalysis (as tile_scenarios does for the core), soil water split over the layers; the maps' summary per "
        "cell beside the core's warming; one dask task per tile, every tile of the run lands or none.",
    )
    def tile_network_projections(
        context: AssetExecutionContext,
        config: TileScenariosConfig,
        lake: LakeResource,
        warehouse: WarehouseResource,
        dask: DaskResource,
    ) -> MaterializeResult:
        from ml.cell_projection import (
            BAND_VARIABLES,
            FIRST,
            LAST,
            CellProjectionTask,
            credibility,
            rcps_ordered,
            tile_network_projection_frames,
        )
        from ml.tile_projection import WARMING

        keys = list(context.partition_keys)
        folder = lake.layout.cell_network()
        if not folder.exists():
            raise FileNotFoundError(f"{folder}: no cell network yet: materialize cell_network first")
        bands = read_band_scenarios(warehouse, BAND_VARIABLES)
        if bands.is_empty():
            raise ValueError(f"{SCENARIO_MART} holds no RCP rows: build the scenario mart (dbt) first")
        cell_tiles = read_cell_tiles(warehouse, grid, keys)
        tasks = {
            key: CellProjectionTask(tile, bands, str(folder), config.method, config.n_quantiles)
            for key, tile in cell_tiles.items()
        }
        targets = {key: lake.layout.tile_network_projections(key).targets() for key in keys}
        started = time.perf_counter()
        dask.map_tiles(tile_network_projection_frames, tasks, targets, root=lake.layout.root)
        seconds = time.perf_counter() - started
        summary = pl.concat(read_parquet(targets[key]["summary"]) for key in keys)
        core_files = {key: lake.layout.tile_projections(key).summary for key in keys}
        without_core = [key for key, path in core_files.items() if not path.exists()]
        core_frames = [
            read_parquet(path, columns=["scenario", "cell", *WARMING])
            for key, path in core_files.items()
            if key not in without_core
        ]
        core = pl.concat(core_frames) if core_frames else summary.select("scenario", "cell", *WARMING).clear()
        views = warehouse.refresh_output_views(lake.layout, TILE_NETWORK_PROJECTIONS, context.log)
        return MaterializeResult(
            metadata={
                "tiles": len(keys),
                "tiles_in_this_run": _tiles_text(keys),
                "cells": summary["cell"].n_unique(),
                "scenarios": ", ".join(sorted(set(summary["scenario"]))),
                "months": f"{FIRST}..{LAST}",
                "seconds": round(seconds, 2),
                "engine": _engine(dask),
                "method": config.method,
                "inputs_under_scenarios": "every driver and the column water of the scenario mart, regridded onto "
                "the cells and quantile-mapped onto each cell's reanalysis (2001-2023), the column water split over "
                "the layers by the lagged split; anomalies from the cell's 2001-2018 climatology",
                # per RCP: mean 2081-2100 minus 2024-2043 warming per layer of the network and of the core over the
                # same cells, their correlation over the cells, and how often the inputs left the training range
                "network_beside_core": MetadataValue.md(markdown_table(credibility(summary, core), float_precision=3)),
                "rcps_ordered_2081_2100": MetadataValue.json(rcps_ordered(summary)),
                "tiles_without_core_projections": MetadataValue.json(without_core),
                "path": MetadataValue.path(str(lake.layout.tile_network_projections("*").summary.parent.parent)),
                **views,
            }
        )

    return [tile_training_shards, cell_network, tile_network_history, tile_network_projections]
