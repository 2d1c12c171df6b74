"""Grid mode's cell network under the scenarios, measured on the demo grid: the kernel of
`tile_network_projections` (`ml.cell_projection`) run per tile in this process, its wall time
(scenario inputs: regridding and bias correction; the network), and the credibility figures
against the conduction core's projections of the same cells (`tile_projections`' summaries):
mean warming per layer of both and their correlation over cells, whether the RCPs are ordered,
and the share of cells whose late-century inputs leave their training range.

The lake must hold grid mode's history mart, scenario mart, `cell_network` and `tile_projections`
(`make grid`); it is only read. Each tile's summary is written to `--out` as it lands, so a run
that is stopped keeps what it did (`--resume` skips those tiles).

    .venv/bin/python benchmarks/cell_network_projections.py --lake data/grid_demo --out /tmp/np [--tiles 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from assets.grid import read_band_scenarios
from assets.grid_networks import read_cell_tiles
from dagster_project.lake import LakeLayout
from dagster_project.resources import WarehouseResource
from ml import cell_projection
from ml.cell_training import load_cell_network
from sources.simulator.grid import synthetic_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiles", type=int, default=0, help="the first N tiles only (0: every tile)")
    parser.add_argument("--resume", action="store_true", help="skip the tiles whose summary is in --out")
    args = parser.parse_args()
    layout = LakeLayout(args.lake)
    grid = synthetic_grid().grid
    keys = [tile.key for tile in grid.tiles][: args.tiles or None]
    warehouse = WarehouseResource(path=str(args.lake / "warehouse.duckdb"))
    bands = read_band_scenarios(warehouse, cell_projection.BAND_VARIABLES)
    network = load_cell_network(layout.cell_network())
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = {"inputs": 0.0, "network": 0.0}
    for key in keys:
        target = args.out / f"{key}.parquet"
        if args.resume and target.exists():
            continue
        tile = read_cell_tiles(warehouse, grid, [key])[key]
        started = time.perf_counter()
        inputs = cell_projection.scenario_inputs(cell_projection.CellProjectionTask(tile, bands, ""))
        middle = time.perf_counter()
        frames = cell_projection.network_frames(tile, inputs, network)
        done = time.perf_counter()
        seconds["inputs"] += middle - started
        seconds["network"] += done - middle
        frames["summary"].write_parquet(target)
        print(f"{key}: {tile.series.cells.size} cells, inputs {middle - started:.1f} s, network {done - middle:.1f} s")
    summary = pl.concat(pl.read_parquet(args.out / f"{key}.parquet") for key in keys)
    core = pl.concat(pl.read_parquet(layout.tile_projections(key).summary) for key in keys)
    print(f"{len(keys)} tiles, {summary['cell'].n_unique()} cells; this run: {seconds}")
    with pl.Config(tbl_cols=-1, tbl_width_chars=400, float_precision=3):
        print(cell_projection.credibility(summary, core))
    print("RCPs ordered by 2081-2100 level:", cell_projection.rcps_ordered(summary))
    print("core RCPs ordered by 2081-2100 level:", cell_projection.rcps_ordered(core))


if __name__ == "__main__":
    main()
