"""`make demo`: materialize every asset on the configured source (the offline demo by default).

Runs in-process against the Dagster instance in $DAGSTER_HOME (so the UI shows the runs),
one single-run backfill per partitioned asset, asking only for published months.

    python -m dagster_project.demo
"""

from __future__ import annotations

import os
import sys
import time

from dagster import DagsterInstance, materialize

from assets import raw
from dagster_project import catalog, settings
from dagster_project.resources import build_resources

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# Step-level DEBUG events go to the instance (and the UI); the terminal gets INFO and up.
CONSOLE_INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def run_demo(instance: DagsterInstance | None = None) -> dict[str, float]:
    """Materialize the whole graph; returns seconds per stage."""
    config = settings.from_environment()
    resources = build_resources(config)
    latest = resources["sources"].latest_published_month()
    stages = [
        ("static extracts", [raw.band_lithology, raw.band_soil_properties], {}),
        (
            f"ERA5-Land 2001-01..{latest:%Y-%m}",
            [raw.era5_land_monthly],
            {RANGE_START: catalog.HISTORY_START.isoformat(), RANGE_END: latest.isoformat()},
        ),
        (
            "CMIP5 experiments",
            [raw.cmip5_monthly],
            {RANGE_START: catalog.CMIP5_EXPERIMENTS[0], RANGE_END: catalog.CMIP5_EXPERIMENTS[-1]},
        ),
    ]
    timings: dict[str, float] = {}
    for label, assets, tags in stages:
        started = time.perf_counter()
        materialize(assets, resources=resources, instance=instance, tags=tags, run_config=CONSOLE_INFO)
        timings[label] = time.perf_counter() - started
        print(f"[demo] {label}: {timings[label]:.1f} s", flush=True)
    print(f"[demo] lake: {config.lake_root}  warehouse: {config.warehouse_path}", flush=True)
    return timings


def main() -> int:
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    started = time.perf_counter()
    run_demo(instance)
    print(f"[demo] done in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
