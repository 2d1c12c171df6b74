"""What a new month's refresh costs at today's history and at a 10x longer one (band demo, or
grid mode's 1513 demo cells with `--grid`).

For each history length, in a temporary lake: the demo reanalysis 2001-01..N-1 (the longer
history: the same months replicated backwards, month keys shifted by whole copies of the span),
the static extracts landed by their raw assets, a full `dbt build` of the monthly models (not
timed); then the new month N landed and the monthly partition run's dbt step timed: `dbt build
--select tag:monthly` with the run's window in PERMAFROST_RUN_MIN_MONTH/MAX_MONTH, as the
partitioned dbt asset runs it when the sensor's month arrives (staging, history mart, cell mart
and band rollup, and their tests). Median of the repeats (the partition run is idempotent).

The figure is the ratio long / today (target at most 1.2) and the seconds (target: within 10 s
of the sensor tick). With `--grid` the reanalysis delivers the demo grid's cells (a sources file
`reanalysis: {kind: demo, units: cell}`, the `spatial_units` asset landed with the static extracts),
so the run also writes the cell mart (Parquet by tile and year: a monthly run rewrites only its
year's folders) and the band rollup; the script counts the cell mart's files the run rewrote.

    .venv/bin/python benchmarks/refresh_history.py [--latest 2023-12] [--factor 10] [--repeats 3] [--grid]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _shift(month: dt.date, months: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _config(root: Path, latest: str, grid: bool):
    from dagster_project import settings

    env = {settings.ENV_LAKE_ROOT: str(root), settings.ENV_DEMO_LATEST_MONTH: latest}
    if grid:
        sources = root.parent / "sources.yaml"
        sources.write_text("reanalysis:\n  kind: demo\n  units: cell\n")
        env[settings.ENV_SOURCES_FILE] = str(sources)
    return settings.from_environment(env)


def _reanalysis(root: Path, latest: str, grid: bool):
    """The configured demo reanalysis (bands, or the demo grid's cells) publishing through `latest`."""
    from dagster_project.resources import build_resources

    return build_resources(_config(root, latest, grid))["sources"].reanalysis()


def land_history(root: Path, latest: str, factor: int, grid: bool = False) -> int:
    """Raw months before `latest` (`factor` copies of 2001-01..latest-1) and the static extracts
    (and the spatial units in grid mode); returns the number of months landed."""
    import polars as pl
    from dagster import AssetSelection, materialize

    from dagster_project import lake
    from dagster_project.definitions import defs
    from dagster_project.resources import build_resources
    from sources import catalog
    from sources.base import units_of
    from sources.validation import validate_reanalysis

    newest = catalog.month_start(latest)
    source = _reanalysis(root, latest, grid)
    months = catalog.month_range(catalog.HISTORY_START, _shift(newest, -1))
    frame = validate_reanalysis(source.read_months(months), months, "demo ERA5-Land", units=units_of(source))
    layout = lake.LakeLayout(root)
    parts = {}
    for copy in range(factor):
        offset = -copy * len(months)
        for (month,), part in frame.group_by("month", maintain_order=True):
            shifted = _shift(month, offset)
            parts[layout.era5_land_month(shifted)] = part.with_columns(month=pl.lit(shifted, dtype=part["month"].dtype))
    lake.write_partitions_atomic(parts)
    static = AssetSelection.assets("band_lithology", "band_soil_properties", "spatial_units")
    assert materialize(
        list(defs.assets), selection=static, resources=build_resources(_config(root, latest, grid))
    ).success
    return len(parts)


def land_month(root: Path, latest: str, grid: bool = False) -> None:
    from dagster_project import lake
    from sources import catalog
    from sources.base import units_of
    from sources.validation import validate_reanalysis

    month = catalog.month_start(latest)
    source = _reanalysis(root, latest, grid)
    frame = validate_reanalysis(source.read_months([month]), [month], "demo ERA5-Land", units=units_of(source))
    lake.write_partitions_atomic({lake.LakeLayout(root).era5_land_month(month): frame})


def dbt(args: list[str], root: Path, work: Path, window: tuple[str, str] = ("", "")) -> float:
    from dagster_project.dbt import SQL_DIR, dbt_executable

    env = {
        **os.environ,
        "PERMAFROST_LAKE_ROOT": str(root),
        "PERMAFROST_WAREHOUSE": str(root / "warehouse.duckdb"),
        "PERMAFROST_RUN_MIN_MONTH": window[0],
        "PERMAFROST_RUN_MAX_MONTH": window[1],
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
    }
    started = time.perf_counter()
    result = subprocess.run(
        [dbt_executable(), *args, "--profiles-dir", str(SQL_DIR)], cwd=SQL_DIR, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0 or (args[0] == "build" and "ERROR=0" not in result.stdout):
        raise RuntimeError(f"dbt {args} failed:\n{result.stdout[-3000:]}")
    return seconds


def _cell_mart_files(root: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in (root / "marts" / "fct_cell_month_features").rglob("*.parquet")}


def measure(folder: Path, latest: str, factor: int, repeats: int, grid: bool = False):
    """Months landed, the full build's seconds, each monthly run's seconds, and (grid mode) the
    cell mart's files: how many there are and how many the last monthly run rewrote."""
    root, work = folder / "data", folder / "work"
    months = land_history(root, latest, factor, grid)
    dbt(["parse"], root, work)  # the partial parse each run reuses, as a code location's
    full = dbt(["build", "--select", "+tag:monthly"], root, work)
    land_month(root, latest, grid)
    start = f"{latest}-01"
    end = _shift(dt.date.fromisoformat(start), 1).isoformat()
    runs, files = [], (0, 0)
    for _ in range(repeats):
        before = _cell_mart_files(root)
        runs.append(dbt(["build", "--select", "tag:monthly"], root, work, (start, end)))
        after = _cell_mart_files(root)
        files = (len(after), sum(after[p] != before.get(p) for p in after))
    return months, full, runs, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latest", default="2023-12", help="the new month (YYYY-MM)")
    parser.add_argument("--factor", type=int, default=10, help="how many times today's history the long one is")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grid", action="store_true", help="grid mode: the demo grid's cells instead of the bands")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    medians = {}
    for factor in (1, args.factor):
        with tempfile.TemporaryDirectory(prefix="refresh_history_") as folder:
            months, full, runs, (files, rewritten) = measure(Path(folder), args.latest, factor, args.repeats, args.grid)
        medians[factor] = statistics.median(runs)
        print(
            f"history {months} months: full build {full:.1f} s (not the figure); new month {args.latest} "
            f"monthly dbt run: median {medians[factor]:.2f} s of {', '.join(f'{r:.2f}' for r in runs)}"
            + (f"; cell mart: {rewritten} of {files} files rewritten by a monthly run" if args.grid else "")
        )
    ratio = medians[args.factor] / medians[1]
    print(f"ratio {args.factor}x history / today: {ratio:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
