"""`make demo`: materialize every asset on the configured source (the offline demo by default).

Runs in-process against the Dagster instance in $DAGSTER_HOME (so the UI shows the runs),
one run per layer and partitioning, each partitioned asset as one single-run backfill that
asks only for published months. Asset checks run with their assets; a failed blocking check
stops the demo with the check's findings.

    python -m dagster_project.demo
"""

from __future__ import annotations

import os
import sys
import time

from dagster import AssetSelection, DagsterInstance, materialize

from dagster_project import catalog, settings
from dagster_project.partitions import architectures
from dagster_project.resources import build_resources

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"
# Step-level DEBUG events go to the instance (and the UI); the terminal gets INFO and up.
CONSOLE_INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def demo_stages(latest_month, epochs: int) -> list[tuple[str, AssetSelection, dict[str, str], dict]]:
    """(label, selection, run tags, run config) in dependency order."""
    history = {RANGE_START: catalog.HISTORY_START.isoformat(), RANGE_END: latest_month.isoformat()}
    experiments = {RANGE_START: catalog.CMIP5_EXPERIMENTS[0], RANGE_END: catalog.CMIP5_EXPERIMENTS[-1]}
    rcps = {RANGE_START: catalog.RCP_EXPERIMENTS[0], RANGE_END: catalog.RCP_EXPERIMENTS[-1]}
    training = {"ops": {"trained_models": {"config": {"epochs": epochs}}}}
    stages = [
        ("raw static extracts", AssetSelection.assets("band_lithology", "band_soil_properties"), {}, {}),
        (f"raw ERA5-Land 2001-01..{latest_month:%Y-%m}", AssetSelection.assets("era5_land_monthly"), history, {}),
        ("raw CMIP5 experiments", AssetSelection.assets("cmip5_monthly"), experiments, {}),
        ("dbt staging, intermediate, scenario mart", AssetSelection.assets("fct_scenario_band_month_features").upstream()
         - AssetSelection.groups("raw"), {}, {}),
        (f"dbt history mart 2001-01..{latest_month:%Y-%m}", AssetSelection.assets("fct_band_month_features"), history, {}),
        ("training windows", AssetSelection.assets("training_windows"), {}, {}),
        ("bias correction and scenario windows", AssetSelection.assets("cmip5_bias_corrected", "scenario_windows"), rcps, {}),
    ]
    for architecture in architectures.get_partition_keys():
        stages.append(
            (f"train {architecture} ({epochs} epochs)", AssetSelection.assets("trained_models"), {PARTITION: architecture}, training)
        )
    stages.append(
        (
            "evaluation, projections, active layer, explanations",
            AssetSelection.assets("model_evaluation", "soil_temperature_projections", "active_layer_thickness", "feature_importance"),
            {},
            {},
        )
    )
    return stages


def run_demo(instance: DagsterInstance | None = None) -> dict[str, float]:
    """Materialize the whole graph; returns seconds per stage."""
    from dagster_project.definitions import defs

    config = settings.from_environment()
    # resources from the environment now, not the ones built when definitions were imported
    resources = build_resources(config)
    latest = resources["sources"].latest_published_month()
    assets = list(defs.assets) + list(defs.asset_checks)
    timings: dict[str, float] = {}
    for label, selection, tags, run_config in demo_stages(latest, config.training_epochs):
        started = time.perf_counter()
        tags = dict(tags)
        materialize(
            assets,
            selection=selection,
            resources=resources,
            instance=instance,
            partition_key=tags.pop(PARTITION, None),
            tags=tags,
            run_config={**CONSOLE_INFO, **run_config},
        )
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
