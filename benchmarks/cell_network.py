"""Grid mode's shared cell network on the whole demo grid: wall time of `tile_training_shards`,
`cell_network` and `tile_network_history` (an embedded LocalCluster of 2 workers for the tiles),
the number of predictions, and the held-out 2019-2023 RMSE per layer against the cells' monthly
climatology.

The lake must hold grid mode's history mart first, e.g.

    DAGSTER_HOME=<home with dagster.yaml> PERMAFROST_SOURCES=<a file with units: cell> \\
    PERMAFROST_LAKE_ROOT=<lake> .venv/bin/python -m dagster_project.launcher.demo \\
        --select '+key:tile_training_shards'
    .venv/bin/python benchmarks/cell_network.py --lake <lake> [--epochs 3] [--units 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagster import DagsterInstance, materialize

from assets.grid_networks import grid_network_assets
from dagster_project.dask_engine import DaskResource
from dagster_project.resources import LakeResource, WarehouseResource
from sources.simulator.grid import synthetic_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True, help="the lake root (its warehouse.duckdb holds the history mart)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    root = Path(args.lake).resolve()
    grid = synthetic_grid().grid
    keys = [tile.key for tile in grid.tiles]
    tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
    resources = {
        "lake": LakeResource(root=str(root)),
        "warehouse": WarehouseResource(path=str(root / "warehouse.duckdb")),
        "dask": DaskResource(n_workers=args.workers),
    }
    config = {"ops": {"cell_network": {"config": {"epochs": args.epochs, "units": args.units}}}}
    assets = grid_network_assets(grid)
    instance = DagsterInstance.ephemeral()
    print(f"{grid.cells.size} cells, {len(keys)} tiles, {args.workers} workers", end=", ")
    print(f"epochs {args.epochs}, units {args.units}")
    for name, options in (
        ("tile_training_shards", {"tags": tags}),
        ("cell_network", {"run_config": config}),
        ("tile_network_history", {"tags": tags}),
    ):
        started = time.perf_counter()
        result = materialize(assets, selection=[name], resources=resources, instance=instance, **options)
        seconds = time.perf_counter() - started
        metadata = result.asset_materializations_for_node(name)[0].metadata
        print(f"\n{name}: {seconds:.1f} s wall (the run, Dagster's overhead included)")
        for key, value in metadata.items():
            if key != "path":
                print(f"  {key}: {value.value}")


if __name__ == "__main__":
    main()
