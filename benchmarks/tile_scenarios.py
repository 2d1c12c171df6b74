"""Grid mode's regridded scenarios (`tile_scenarios`) against the nearest-band path
(`cmip5_bias_corrected`) on the demo grid lake: wall time and how far the two drive the cells apart.

On a lake whose warehouse holds grid mode's history mart (one row per demo cell and month) and the
scenario mart, for a reduced set of tiles spread over the grid's latitudes (`--tiles`, default 4 of
the 20; the whole grid takes minutes per path on 2 cores), in this one process, xsdba imported and
warmed up before either clock starts:

* band path: what `cmip5_bias_corrected` computes for these cells, `ml.bias_correction.correct_scenario`
  on each cell's nearest band's series (`ml.unit_arrays.unit_scenarios`) with the asset's defaults
  (quantile delta mapping, 50 quantiles, every measured driver and the column water, lagged soil-water
  split), every RCP; and the same correction restricted to the variables `tile_scenarios` maps
  (`bias_correct` of `ml.tile_scenarios.SCENARIO_VARIABLES`), to separate the cost of regridding
  from that of correcting fewer variables;
* tile path: `ml.tile_scenarios.tile_scenario_frames` per tile (what each dask task of
  `tile_scenarios` runs; here serially), every RCP.

Then per RCP, over the cells and the months 2081-2100: the mean absolute difference of the
corrected t_air, regridded minus nearest band (monthly values, and each cell's 2081-2100 mean, what a
map shows), and the same for the raw (uncorrected) scenario t_air.

    DAGSTER_HOME=... PERMAFROST_SOURCES=<units: cell> PERMAFROST_LAKE_ROOT=<lake> \\
        .venv/bin/python -m dagster_project.launcher.demo \\
        --select '+key:fct_scenario_band_month_features or +key:fct_band_month_features'
    .venv/bin/python benchmarks/tile_scenarios.py --lake <lake> [--tiles 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import polars as pl


def _warm_up() -> None:
    """Import xsdba and compile its numba kernels on a tiny problem, so neither path pays for it."""
    import datetime as dt

    from ml.bias_correction import bias_correct

    months = pl.date_range(dt.date(2001, 1, 1), dt.date(2030, 12, 1), "1mo", eager=True)
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"unit": 0, "month": months, "t_air": rng.normal(size=len(months))})
    water = {f"w_{k}": 0.3 for k in range(4)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bias_correct(frame.with_columns(**water), frame, variables=("t_air",), min_overlap_years=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", required=True, help="the demo grid lake's root (its warehouse.duckdb inside)")
    parser.add_argument("--warehouse", help="the warehouse file (default: <lake>/warehouse.duckdb)")
    parser.add_argument("--tiles", type=int, default=4, help="tiles, spread over the grid's rows (default 4)")
    args = parser.parse_args(argv)

    from assets.grid import read_band_scenarios, read_tile_reanalysis
    from dagster_project.lake import HISTORY_MART, SCENARIO_MART, UNITS_DIMENSION
    from dagster_project.resources import WarehouseResource
    from ml.bias_correction import bias_correct, correct_scenario
    from ml.model_inputs import modelling_marts
    from ml.regrid import regrid_bands
    from ml.tile_scenarios import REFERENCE_VARIABLES, SCENARIO_VARIABLES, TileScenarioTask, tile_scenario_frames
    from ml.unit_arrays import Units, unit_scenarios
    from sources import catalog
    from sources.simulator.grid import synthetic_grid

    warehouse = WarehouseResource(path=args.warehouse or str(Path(args.lake) / "warehouse.duckdb"))
    grid = synthetic_grid().grid
    order = sorted(grid.tiles, key=lambda t: (t.row, t.col))
    picks = np.unique(np.linspace(0, len(order) - 1, args.tiles).round().astype(int))
    tiles = [order[i] for i in picks]
    cells = np.concatenate([t.cells for t in tiles])
    print(f"{len(tiles)} of {len(grid.tiles)} tiles ({', '.join(t.key for t in tiles)}), {cells.size} cells")

    with warehouse.read_only() as con:

        def table(t, where=""):
            return pl.from_arrow(con.sql(f'select * from "{t.schema}"."{t.name}" {where}').to_arrow_table())

        wanted = ", ".join(str(int(c)) for c in cells)
        history = table(HISTORY_MART, f"where unit in ({wanted})")
        units_frame = table(UNITS_DIMENSION, f"where unit in ({wanted})")
        scenario_mart = table(SCENARIO_MART, "where scenario like 'rcp%'")
    history, _, inputs, scenario_mart = modelling_marts(history, scenario_mart, units_frame)
    units = Units.of(units_frame)
    rcps = [s for s in catalog.RCP_EXPERIMENTS if s in set(scenario_mart["scenario"])]
    tile_history = read_tile_reanalysis(warehouse, grid, [t.key for t in tiles], REFERENCE_VARIABLES)
    bands = read_band_scenarios(warehouse, SCENARIO_VARIABLES)

    _warm_up()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        nearest = {}
        for scenario in rcps:
            raw = unit_scenarios(scenario_mart.filter(pl.col("scenario") == scenario), units)
            nearest[scenario] = (raw, correct_scenario(history, raw, "qdm", 50, "lagged", None, 0, inputs).frame)
        band_seconds = time.perf_counter() - started

        started = time.perf_counter()
        for scenario in rcps:
            raw = nearest[scenario][0]
            bias_correct(history, raw.select("unit", "month", *SCENARIO_VARIABLES), variables=SCENARIO_VARIABLES)
        band_same_seconds = time.perf_counter() - started

        started = time.perf_counter()
        regridded = {}
        for tile in tiles:
            task = TileScenarioTask(tile_history[tile.key], grid.cell_lat[grid.positions(tile.cells)], bands)
            regridded[tile.key] = tile_scenario_frames(task)["drivers"]
        tile_seconds = time.perf_counter() - started
    drivers = pl.concat(regridded.values())

    print(
        f"\nwall time, {cells.size} cells x {len(rcps)} RCPs, one process "
        f"({platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}):"
    )
    rows = (
        (f"cmip5_bias_corrected path (nearest band, {len(inputs.measured)} drivers + column water)", band_seconds),
        (f"nearest band, the same {len(SCENARIO_VARIABLES)} variables as tile_scenarios", band_same_seconds),
        (f"tile_scenarios (regridded, {len(SCENARIO_VARIABLES)} variables)", tile_seconds),
    )
    for label, seconds in rows:
        print(f"  {label:72} {seconds:7.1f} s")
    print(f"  ratio tile_scenarios / cmip5_bias_corrected path: {tile_seconds / band_seconds:.2f}")
    print(f"  ratio tile_scenarios / nearest band, same variables: {tile_seconds / band_same_seconds:.2f}")

    late = pl.col("month").dt.year() >= 2081
    lat = {int(c): float(y) for c, y in zip(grid.cells, grid.cell_lat, strict=True)}
    print("\n2081-2100 t_air, regridded minus nearest band, mean |difference| over the cells (K):")
    print("  rcp    | corrected monthly | corrected period mean | raw period mean | max |period mean|")
    for scenario in rcps:
        raw, corrected = nearest[scenario]
        near = corrected.filter(late).select(pl.col("unit").alias("cell"), "month", pl.col("t_air").alias("near"))
        new = drivers.filter((pl.col("scenario") == scenario) & late).select("cell", "month", "t_air")
        both = new.join(near, on=["cell", "month"], how="inner")
        assert both.height == new.height == near.height, scenario
        monthly = (both["t_air"].cast(pl.Float64) - both["near"]).abs().mean()
        means = both.group_by("cell").agg((pl.col("t_air").cast(pl.Float64) - pl.col("near")).mean().alias("d"))
        raw_new = regrid_bands(
            bands.filter(pl.col("scenario") == scenario).drop("scenario"),
            ("t_air",),
            cells,
            np.array([lat[int(c)] for c in cells]),
        )
        raw_both = (
            raw_new.filter(late)
            .join(raw.filter(late).select("unit", "month", pl.col("t_air").alias("near")), on=["unit", "month"])
            .group_by("unit")
            .agg((pl.col("t_air") - pl.col("near")).mean().alias("d"))
        )
        print(
            f"  {scenario:6} | {monthly:17.3f} | {means['d'].abs().mean():21.3f} | "
            f"{raw_both['d'].abs().mean():15.3f} | {means['d'].abs().max():.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
