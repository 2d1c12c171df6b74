"""How long the demo simulator takes over the synthetic grid's cells: the reanalysis 2001-2023
(land surface and soil column), one RCP of the CMIP twin 2006-2100 (land surface only) and that
RCP's perfect-model truth (1950-2100, with soil), each timed once per repeat, best of N.

The first call pays the weather's spatial correlation (a Cholesky factor of cells x cells), so
it is timed separately.

    .venv/bin/python benchmarks/demo_grid_benchmark.py [--cells 2000] [--world default] [--repeats 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sources import catalog
from sources.simulator import climate, runs
from sources.simulator.grid import synthetic_grid
from sources.simulator.worlds import WORLDS


def best_of(repeats: int, work) -> str:
    """Best wall time of `repeats` calls, with that call's CPU time (the machine may be shared)."""
    times = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    wall, cpu = min(times)
    return f"{wall:7.1f} s wall, {cpu:7.1f} s CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000, help="first N cells of the grid (all 50 x 40 = 2000)")
    parser.add_argument("--world", default="default", choices=tuple(WORLDS))
    parser.add_argument("--pathway", default="rcp85", choices=catalog.RCP_EXPERIMENTS)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    grid = synthetic_grid()
    cells = grid.cells.select(slice(0, args.cells))
    world, seed = WORLDS[args.world], catalog.DEFAULT_SEED
    print(f"{len(cells)} cells ({int(grid.land.reshape(-1)[: args.cells].sum())} land), world {world.name}")
    print(f"  weather correlation (Cholesky, once): {best_of(1, lambda: climate.weather(seed, 0, 1, cells))}")
    history = best_of(args.repeats, lambda: runs.reanalysis(seed, catalog.DEFAULT_LATEST_MONTH, cells, world))
    print(f"  reanalysis 2001-2023 with soil:       {history}")
    scenario = best_of(args.repeats, lambda: runs.twin(seed, args.pathway, dt.date(1950, 1, 1), cells))
    print(f"  twin {args.pathway} 2006-2100, land only:   {scenario}")
    truth = best_of(args.repeats, lambda: runs.truth(seed, args.pathway, dt.date(1950, 1, 1), cells, world))
    print(f"  truth {args.pathway} 1950-2100 with soil:   {truth}")


if __name__ == "__main__":
    main()
