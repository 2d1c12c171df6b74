"""Grid mode's engine: the conduction core fitted per tile of cells on dask.distributed.

Measures, in one run, on synthetic cells (tests/ml/synthetic_cells.py: a seasonal cycle by
latitude with noise, 2001-01..2023-12, fitted on 2001-2018 as the product does):
  1. cells per second on the same cells with 1 and with 2 workers, and the parallel efficiency
     T1 / (n Tn);
  2. the run's wall time at 4 sizes (numbers of tiles) on 2 workers, fitted as a + b cells (least
     squares, with R2), and that line extrapolated to 20,000 cells.
Every timed run is `tile_engine.map_tiles` with the real kernel (`ml.tiles.tile_core_frames`) on
a LocalCluster reached through a client, writing and committing every tile's Parquet outputs into
a fresh temporary lake; the clusters are started (and their workers warmed up) before timing.
The kernels' own CPU seconds are reported beside the wall time: on a machine shared with other
jobs, wall time says what a user waits, CPU time what the work costs.

    .venv/bin/python benchmarks/grid_engine.py [--tile 8] [--sizes 2 4 6 8] [--same 4]
    .venv/bin/python benchmarks/grid_engine.py --tile-sizes 6 8 12 20   # CPU per cell by tile size
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "ml"))

from synthetic_cells import tile_series  # noqa: E402

from dagster_project import tile_engine  # noqa: E402
from ml.thermal_core import FIT_ITERATIONS  # noqa: E402
from ml.tiles import tile_core_frames  # noqa: E402
from sources.grid import Grid, GridSpec  # noqa: E402

EXTRAPOLATE_TO_CELLS = 20_000


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def benchmark_tiles(tile: int, count: int):
    """`count` all-land tiles of `tile` x `tile` cells from the middle of the Alaska grid."""
    spec = GridSpec(tile_rows=tile, tile_cols=tile)
    grid = Grid(spec, np.ones(spec.shape, dtype=bool))
    middle = [t for t in grid.tiles if t.cells.size == tile * tile and 64.0 <= spec.lat[t.rows][0] < 67.0]
    if len(middle) < count:
        raise SystemExit(f"only {len(middle)} full tiles of {tile} x {tile} between 64 and 67 N; ask for fewer")
    return {t.key: tile_series(t, grid) for t in middle[:count]}


def timed_kernel(series, max_iterations: int) -> dict:
    """`tile_core_frames` plus a `timing` output: the kernel's CPU and wall seconds in its worker."""
    cpu, wall = time.process_time(), time.perf_counter()
    frames = dict(tile_core_frames(series, max_iterations=max_iterations))
    frames["timing"] = pl.DataFrame(
        {"tile": [series.tile], "cpu_s": [time.process_time() - cpu], "wall_s": [time.perf_counter() - wall]}
    )
    return frames


def timed_run(client, kernel, tasks: dict) -> tuple[float, float]:
    """Wall seconds of one `map_tiles` run, and the CPU seconds its kernels spent in the workers."""
    with tempfile.TemporaryDirectory(prefix="grid_engine_") as lake_root:
        targets = {
            key: {name: Path(lake_root) / name / f"{key}.parquet" for name in ("parameters", "history", "timing")}
            for key in tasks
        }
        start = time.perf_counter()
        tile_engine.map_tiles(kernel, tasks, targets, client=client)
        elapsed = time.perf_counter() - start
        return elapsed, float(pl.read_parquet(Path(lake_root) / "timing" / "*.parquet")["cpu_s"].sum())


def warm_up(client) -> None:
    """Import the kernel's modules in every worker before timing."""
    client.run(lambda: bool(__import__("ml.tiles")))


def cpu_per_cell_by_tile_size(edges: list[int], iterations: int) -> None:
    """The kernel's CPU per cell for one tile of each edge: the core vectorises over a tile's
    cells, so a bigger tile costs less per cell."""
    print(f"kernel alone, one tile per size, this process, at most {iterations} iterations ({load()})")
    for edge in edges:
        series = next(iter(benchmark_tiles(edge, 1).values()))
        frames = timed_kernel(series, iterations)
        cpu = frames["timing"]["cpu_s"][0]
        cells = len(series.cells)
        print(
            f"  {edge:2d} x {edge:2d} = {cells:3d} cells: {cpu:6.1f} s CPU, "
            f"{1000 * cpu / cells:4.0f} ms per cell ({load()})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tile", type=int, default=8, help="tile edge in cells (tiles of tile x tile land cells)")
    parser.add_argument("--same", type=int, default=4, help="tiles of the 1- vs 2-worker comparison")
    parser.add_argument("--sizes", type=int, nargs=4, default=[2, 4, 6, 8], help="tiles per run on 2 workers")
    parser.add_argument("--iterations", type=int, default=FIT_ITERATIONS, help="the fit's iterations (a quick check)")
    parser.add_argument(
        "--tile-sizes",
        type=int,
        nargs="*",
        default=[],
        help="only measure the kernel's CPU per cell for one tile of each edge, here, without a cluster",
    )
    args = parser.parse_args()
    if args.tile_sizes:
        cpu_per_cell_by_tile_size(args.tile_sizes, args.iterations)
        return
    from distributed import Client

    kernel = functools.partial(timed_kernel, max_iterations=args.iterations)
    tasks = benchmark_tiles(args.tile, max(args.sizes + [args.same]))
    keys = list(tasks)
    cells_per_tile = args.tile * args.tile
    months = len(next(iter(tasks.values())).months)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, {platform.machine()}")
    print(
        f"tiles of {args.tile} x {args.tile} = {cells_per_tile} land cells, {months} months, core fit on 2001-2018 "
        f"(at most {args.iterations} iterations)"
    )
    print(f"start: {load()}")

    seconds: dict[tuple[int, int], float] = {}
    for workers in (1, 2):
        started = time.perf_counter()
        with tile_engine.local_cluster(n_workers=workers) as cluster, Client(cluster) as client:
            warm_up(client)
            print(f"{workers} worker(s): cluster up and warm in {time.perf_counter() - started:.1f} s ({load()})")
            sizes = [args.same] if workers == 1 else sorted(set(args.sizes + [args.same]))
            for n_tiles in sizes:
                elapsed, cpu = timed_run(client, kernel, {key: tasks[key] for key in keys[:n_tiles]})
                seconds[(workers, n_tiles)] = elapsed
                cells = n_tiles * cells_per_tile
                print(
                    f"  {n_tiles} tiles = {cells:5d} cells: {elapsed:7.1f} s, {cells / elapsed:6.2f} cells/s, "
                    f"{1000 * elapsed * workers / cells:5.0f} ms per cell and worker; kernels' CPU "
                    f"{1000 * cpu / cells:4.0f} ms per cell ({load()})"
                )

    same_cells = args.same * cells_per_tile
    t1, t2 = seconds[(1, args.same)], seconds[(2, args.same)]
    print(f"\nsame {same_cells} cells: 1 worker {same_cells / t1:.2f} cells/s, 2 workers {same_cells / t2:.2f} cells/s")
    print(f"speed-up T1/T2 = {t1 / t2:.2f}, efficiency T1/(2 T2) = {t1 / (2 * t2):.2f}")

    cells = np.array([n * cells_per_tile for n in args.sizes], dtype=float)
    wall = np.array([seconds[(2, n)] for n in args.sizes])
    b, a = np.polyfit(cells, wall, 1)
    fitted = a + b * cells
    r2 = 1.0 - ((wall - fitted) ** 2).sum() / ((wall - wall.mean()) ** 2).sum()
    print(
        f"\n2 workers: wall = {a:.1f} s + {1000 * b:.1f} ms x cells (R2 = {r2:.4f}, sizes {cells.astype(int).tolist()})"
    )
    total = a + b * EXTRAPOLATE_TO_CELLS
    print(
        f"extrapolated to {EXTRAPOLATE_TO_CELLS} cells on 2 workers: {total:.0f} s = {total / 3600:.2f} h "
        f"({EXTRAPOLATE_TO_CELLS / total:.2f} cells/s)"
    )
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
