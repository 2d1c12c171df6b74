"""What a new month costs: ingest it and propagate it to the history mart, against a full rebuild.

In one process, on the demo source, in a temporary lake and Dagster instance:

(a) full rebuild: every published month 2001-01..N-1 of the raw reanalysis landed as one run,
    then staging and the history mart rebuilt over all of them as one run (the monthly_refresh
    job as a range backfill), after the static inputs were built (not timed);
(b) one new month N: the new-month sensor's tick, its raw run, Dagster's automation evaluation
    and the run it requests for staging and the history mart.

The ratio (b)/(a) is the figure; the issue's target is at most 10%.

    .venv/bin/python benchmarks/new_month_benchmark.py [--latest 2023-12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _month_before(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{year - (number == 1)}-{12 if number == 1 else number - 1:02d}"


def measure(root: Path, latest: str) -> tuple[float, float, int, dict[str, float], dict[str, float]]:
    import dagster as dg

    from dagster_project import settings
    from dagster_project.dbt import ensure_manifest, run_environment
    from dagster_project.definitions import defs
    from dagster_project.partitions import REANALYSIS_MONTHS, register_published_months
    from dagster_project.resources import SourcesResource, build_resources
    from sources import catalog

    previous = _month_before(latest)
    os.environ[settings.ENV_LAKE_ROOT] = str(root / "data")
    os.environ[settings.ENV_DEMO_LATEST_MONTH] = previous
    # What a code location serving this lake does when it loads (the definitions were imported
    # for another lake): parse for the lake dbt will see, so each dbt run reuses the parse.
    lake = settings.from_environment()
    ensure_manifest(run_environment(lake.lake_root, lake.warehouse_path))
    instance = dg.DagsterInstance.ephemeral()
    # the static inputs and the spatial units (not timed), in this process and instance like the runs timed below
    static = dg.AssetSelection.from_string("+key:int_band_static_features_pivoted or key:spatial_units")
    everything = [*defs.assets, *defs.asset_checks]
    assert dg.materialize(everything, selection=static, resources=build_resources(lake), instance=instance).success

    def code_location(month: str):
        config = settings.from_environment({**os.environ, settings.ENV_DEMO_LATEST_MONTH: month})
        return dg.Definitions(
            assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs, resources=build_resources(config)
        )

    old = code_location(previous)
    register_published_months(instance, catalog.month_start(previous))
    months = instance.get_dynamic_partitions(REANALYSIS_MONTHS)
    started = time.perf_counter()
    whole = {RANGE_START: months[0], RANGE_END: months[-1]}
    job = old.resolve_job_def("monthly_refresh")
    assert job.execute_in_process(instance=instance, tags=whole, asset_selection=[dg.AssetKey("era5_land_monthly")])
    raw_landed = time.perf_counter()
    assert job.execute_in_process(
        instance=instance,
        tags=whole,
        asset_selection=[dg.AssetKey("stg_era5_land__monthly"), dg.AssetKey("fct_band_month_features")],
    ).success
    rebuild = time.perf_counter() - started
    rebuild_steps = {"raw run": raw_landed - started, "staging and history mart run": started + rebuild - raw_landed}

    new = code_location(latest)
    baseline = dg.evaluate_automation_conditions(defs=new, instance=instance)
    started = time.perf_counter()
    wall_start = time.time()
    marks = {}
    sensor = next(s for s in defs.sensors if s.name == "era5_land_new_month_sensor")
    tick = sensor(
        dg.build_sensor_context(
            instance=instance, cursor=previous, resources={"sources": SourcesResource(demo_latest_month=latest)}
        )
    )
    for request in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions(REANALYSIS_MONTHS, list(request.partition_keys))
    job = new.resolve_job_def("monthly_refresh")
    marks["sensor tick"] = time.perf_counter()
    for request in tick.run_requests:
        job.execute_in_process(
            instance=instance, partition_key=request.partition_key, asset_selection=list(request.asset_selection)
        )
    marks["raw run"] = time.perf_counter()
    evaluation = dg.evaluate_automation_conditions(defs=new, instance=instance, cursor=baseline.cursor)
    marks["automation evaluation"] = time.perf_counter()
    monthly = [
        dg.AssetKey(name)
        for name in (
            "stg_era5_land__monthly",
            "fct_band_month_features",
            "fct_cell_month_features",
            "fct_band_rollup_month_features",
        )
    ]
    keys = [key for key in monthly if evaluation.get_requested_partitions(key)]
    assert evaluation.total_requested == sum(evaluation.get_num_requested(key) for key in keys)
    for partition in {p for key in keys for p in evaluation.get_requested_partitions(key)}:
        result = job.execute_in_process(instance=instance, partition_key=partition, asset_selection=keys)
        assert result.success
        if os.environ.get("BENCH_STEPS"):
            for event in instance.all_logs(result.run_id):
                if os.environ.get("BENCH_STEPS") == "all" or (
                    event.dagster_event and event.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")
                ):
                    kind = event.dagster_event.event_type_value if event.dagster_event else event.user_message[:90]
                    print(f"      {event.timestamp - wall_start:6.2f} {kind} {event.step_key}")
    one_month = time.perf_counter() - started
    marks["staging and history mart run"] = time.perf_counter()
    steps, last = {}, started
    for name, when in marks.items():
        steps[name], last = when - last, when
    return rebuild, one_month, len(months), steps, rebuild_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latest", default="2023-12", help="the new month (YYYY-MM)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="new_month_bench_") as folder:
            rebuild, one_month, months, steps, rebuild_steps = measure(Path(folder), args.latest)
        print(
            f"run {repeat + 1}: (a) full rebuild of {months} months: {rebuild:.1f} s; "
            f"(b) new month {args.latest} ingested and propagated: {one_month:.1f} s; "
            f"ratio (b)/(a) = {one_month / rebuild:.1%}"
        )
        print("    (a) by step: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in rebuild_steps.items()))
        print("    (b) by step: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in steps.items()))
        # The dbt step costs about the same for one month as for all of them, so no one-month
        # path that goes through it can cost less than this share of the rebuild.
        floor = steps["staging and history mart run"] / rebuild
        print(f"    the one-month dbt step alone is {floor:.0%} of (a)")


if __name__ == "__main__":
    main()
