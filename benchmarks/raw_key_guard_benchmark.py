"""What refusing duplicated raw rows costs: `stg_era5_land__monthly` read with its guard (the
model as built, which first looks for a raw key delivered twice) against the same SQL with the
guard cut off, on the demo reanalysis from 2001-01 to the latest month.

Lands the months through the raw asset's own path (demo source, validation, atomic batch) under
/tmp, builds the staging view with dbt, then times `select count(*), sum(p_total)` over each,
median of N, after one warm-up.

    .venv/bin/python benchmarks/raw_key_guard_benchmark.py [--latest 2023-12] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagster_project import lake
from dagster_project.dbt import SQL_DIR, dbt_executable
from sources import catalog
from sources.demo import DemoReanalysisSource, DemoSettings
from sources.validation import validate_reanalysis


def land(root: Path, latest: str) -> int:
    source = DemoReanalysisSource(DemoSettings(seed=catalog.DEFAULT_SEED, latest_month=catalog.month_start(latest)))
    months = catalog.month_range(catalog.HISTORY_START, catalog.month_start(latest))
    frame = validate_reanalysis(source.read_months(months), months, "demo ERA5-Land")
    layout = lake.LakeLayout(root)
    lake.write_partitions_atomic(
        {layout.era5_land_month(month): part for (month,), part in frame.group_by("month", maintain_order=True)}
    )
    return len(months)


def median_seconds(con, sql: str, repeats: int) -> float:
    con.execute(f"select count(*), sum(p_total) from ({sql})").fetchone()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        con.execute(f"select count(*), sum(p_total) from ({sql})").fetchone()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latest", default="2023-12")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        n_months = land(root, args.latest)
        warehouse = root / "warehouse.duckdb"
        env = {
            **os.environ,
            "PERMAFROST_LAKE_ROOT": str(root),
            "PERMAFROST_WAREHOUSE": str(warehouse),
            "DBT_TARGET_PATH": str(Path(tmp) / "target"),
            "DBT_LOG_PATH": str(Path(tmp) / "logs"),
        }
        subprocess.run(
            [dbt_executable(), "run", "--select", "stg_era5_land__monthly", "--profiles-dir", str(SQL_DIR)],
            cwd=SQL_DIR,
            env=env,
            check=True,
            capture_output=True,
        )
        with duckdb.connect(str(warehouse), read_only=True) as con:
            view = con.execute("select sql from duckdb_views() where view_name = 'stg_era5_land__monthly'").fetchone()
            guarded = view[0][view[0].lower().index(" as ") + 4 :].rstrip(";")
            unguarded = guarded[: guarded.lower().rindex("where case")]
            with_guard = median_seconds(con, guarded, args.repeats)
            without = median_seconds(con, unguarded, args.repeats)
    print(f"{n_months} months ({n_months} files, {6 * n_months} rows), median of {args.repeats}")
    print(f"staging without guard: {without * 1000:.1f} ms")
    print(f"staging with guard:    {with_guard * 1000:.1f} ms   ratio {with_guard / without:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
