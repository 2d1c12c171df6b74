"""Grid mode's shared cell network on the whole demo grid: wall time of `tile_training_shards`,
`cell_network` and `tile_network_history` (an embedded LocalCluster of 2 workers for the tiles),
the number of predictions, and the held-out 2019-2023 RMSE per layer against the cells' monthly
climatology.

The lake must hold grid mode's history mart first, e.g.

    DAGSTER_HOME=<home with dagster.yaml> PERMAFROST_SOURCES=<a file with units: cell> \\
    PERMAFROST_LAKE_ROOT=<lake> .venv/bin/python -m dagster_project.launcher.demo \\
        --select '+key:tile_training_shards'
    .venv/bin/python benchmarks/cell_network.py --lake <lake> [--epochs 3] [--units 32] [--workers 2]

With ``--evaluate`` it materializes nothing: it reads the lake's shards and runs
``ml.cell_evaluation.evaluate_cells`` (a spatial hold-out of tiles, every architecture x seed,
the climatology, persistence and ridge baselines, and on the held-out tiles two climatologies
that read none of their soil; tables of the RMSE ratio per layer, the seeds' mean ± sd
[min-max]), e.g.

    .venv/bin/python benchmarks/cell_network.py --lake <lake> --evaluate --tiles 12 --epochs 3 \\
        --architectures gru,tcn,transformer --seeds 0,1,2 [--held-out-fraction 0.25] [--scores out.csv]
    .venv/bin/python benchmarks/cell_network.py --lake <lake> --from-scores a.csv,b.csv  # tables of runs together
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
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
    parser.add_argument("--evaluate", action="store_true", help="evaluate on the lake's shards (ml.cell_evaluation)")
    parser.add_argument("--architectures", default="gru", help="--evaluate: comma-separated catalog names")
    parser.add_argument("--seeds", default="0,1,2", help="--evaluate: comma-separated training seeds")
    parser.add_argument("--tiles", type=int, default=0, help="--evaluate: N tiles spread over rows (0: all)")
    parser.add_argument("--held-out-fraction", type=float, default=0.25, help="--evaluate: share of tiles held out")
    parser.add_argument("--split-seed", type=int, default=None, help="--evaluate: seed of the tiles' split")
    parser.add_argument("--ridge-lags", type=int, default=12, help="--evaluate: months of inputs the ridge reads")
    parser.add_argument("--neighbours", type=int, default=4, help="--evaluate: cells a borrowed climatology averages")
    parser.add_argument("--scores", default=None, help="--evaluate: write every run's scores to this CSV")
    parser.add_argument("--from-scores", default=None, help="comma-separated --scores CSVs: print their tables only")
    args = parser.parse_args()
    if args.from_scores:
        tables_from_scores(args.from_scores.split(","), args.neighbours)
        return
    root = Path(args.lake).resolve()
    grid = synthetic_grid().grid
    if args.evaluate:
        evaluate(args, root, [tile.key for tile in grid.tiles])
        return
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


def evaluate(args: argparse.Namespace, root: Path, keys: list[str]) -> None:
    """``--evaluate``: ``ml.cell_evaluation.evaluate_cells`` on the lake's shards, its tables printed."""
    import os

    import polars as pl

    from dagster_project.lake.layout import LakeLayout
    from ml import cell_evaluation as ce
    from ml.cell_training import CellTrainingConfig

    layout = LakeLayout(str(root))
    files = {key: layout.tile_training_shards(key) for key in keys}
    files = {key: (f.rows, f.moments) for key, f in files.items() if Path(f.rows).exists() and Path(f.moments).exists()}
    if not files:
        raise SystemExit(f"{root}: no tile_training_shards: materialize them first (see the module docstring)")
    split_seed = ce.SPLIT_SEED if args.split_seed is None else args.split_seed
    if args.tiles:
        chosen = ce.spread_pick(files, min(args.tiles, len(files)), split_seed)
        files = {key: files[key] for key in chosen}
    config = ce.EvaluationConfig(
        architectures=tuple(a.strip() for a in args.architectures.split(",") if a.strip()),
        seeds=tuple(int(s) for s in args.seeds.split(",") if s.strip()),
        training=CellTrainingConfig(epochs=args.epochs),
        units=args.units,
        held_out_fraction=args.held_out_fraction,
        split_seed=split_seed,
        ridge_lags=args.ridge_lags,
        neighbours=args.neighbours,
    )
    print(f"{len(files)} tiles, epochs {args.epochs}, units {args.units}, load average {os.getloadavg()}", flush=True)
    started = time.perf_counter()
    result = ce.evaluate_cells(files, config, log=lambda line: print(line, flush=True))
    seconds = time.perf_counter() - started
    cells = {
        name: sum(pl.read_parquet(files[k][0], columns=["cell"])["cell"].n_unique() for k in keys)
        for name, keys in (("train", result.split.train), ("held_out", result.split.held_out))
    }
    print(f"\n{seconds:.1f} s in all; cells: {cells}; load average {os.getloadavg()}")
    print(f"ridge alpha {result.ridge.alpha}; validation RMSE per alpha {result.ridge.validation_rmse}")
    print(result.runs)
    print_tables(result.summary, config.architectures, args.neighbours)
    if args.scores:
        result.scores.write_csv(args.scores)


def print_tables(summary, architectures: Sequence[str], neighbours: int) -> None:
    """The ratio tables per region (``ml.cell_evaluation.summary_table``)."""
    import polars as pl

    from ml import cell_evaluation as ce

    models = ["climatology", "persistence", "ridge", *architectures]
    for region, text in ce.REGIONS.items():
        windows = summary.filter((pl.col("region") == region) & (pl.col("model") == "climatology"))["windows"][0]
        print(f"\n{region}: {text} ({windows} windows); ratio to the cells' own climatology")
        print(ce.summary_table(summary, region, "own", models))
        if region == "years":
            continue
        for reference, what in (
            ("borrowed", f"borrowed from the {neighbours} nearest training cells"),
            ("regressed", "regressed on the statics and the drivers' climatology over the training cells"),
        ):
            print(f"\n{region}: ratio to a climatology {what}")
            others = [f"{reference}_climatology", "ridge", *architectures]
            print(ce.summary_table(summary, region, reference, others))


def tables_from_scores(paths: Sequence[str], neighbours: int) -> None:
    """``--from-scores``: the tables of the ``--scores`` files of runs on the same split (the
    baselines, identical in each, kept once)."""
    import polars as pl

    from ml import cell_evaluation as ce

    scores = pl.concat([pl.read_csv(p, schema_overrides={"seed": pl.Int64, "architecture": pl.String}) for p in paths])
    scores = scores.unique(["region", "reference", "model", "seed", "layer"], keep="first", maintain_order=True)
    architectures = scores.filter(pl.col("kind") == "network")["model"].unique(maintain_order=True).to_list()
    print_tables(ce.summarise(scores), architectures, neighbours)


if __name__ == "__main__":
    main()
