"""New months: the sensor registers and requests them, automation carries them to the history
mart, the monthly schedule is the fallback, and ranges of months backfill in one run."""

import datetime as dt

import dagster as dg
import duckdb
import pytest
from instances import instance_in, instance_knowing_months

from dagster_project import settings
from dagster_project.assembly.sensors import months_to_request
from dagster_project.definitions import defs
from dagster_project.launcher.demo import run_demo
from dagster_project.partitions import REANALYSIS_MONTHS, months_to_register
from dagster_project.resources import SourcesResource, build_resources
from data_quality.checks import holds_every_landed_month

ERA5 = dg.AssetKey("era5_land_monthly")
STAGING = dg.AssetKey("stg_era5_land__monthly")
MART = dg.AssetKey("fct_band_month_features")
# grid mode's cell mart and band rollup follow every month too (no row on the band demo)
CELL_MARTS = (dg.AssetKey("fct_cell_month_features"), dg.AssetKey("fct_band_rollup_month_features"))


def test_months_after_the_cursor_up_to_the_newest():
    assert months_to_request("2023-10", dt.date(2024, 1, 1), set()) == [
        dt.date(2023, 11, 1),
        dt.date(2023, 12, 1),
        dt.date(2024, 1, 1),
    ]
    assert months_to_request("2024-01", dt.date(2024, 1, 1), set()) == []
    assert months_to_request(None, dt.date(2024, 1, 1), set()) == [dt.date(2024, 1, 1)]
    assert months_to_request(None, dt.date(2024, 1, 1), {"2024-01-01"}) == []  # landed already


def test_registering_keeps_the_months_in_calendar_order():
    assert months_to_register([], dt.date(2001, 3, 1)) == ["2001-01-01", "2001-02-01", "2001-03-01"]
    assert months_to_register(["2001-01-01", "2001-02-01"], dt.date(2001, 3, 1)) == ["2001-03-01"]
    assert months_to_register(["2001-01-01"], dt.date(2001, 1, 1)) == []


def _sensor():
    return next(s for s in defs.sensors if s.name == "era5_land_new_month_sensor")


def _tick(instance, cursor, latest):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"sources": SourcesResource(demo_latest_month=latest)}
    )
    return _sensor()(context)


def test_sensor_registers_every_published_month_and_requests_each_new_one_once():
    instance = dg.DagsterInstance.ephemeral()
    first = _tick(instance, None, "2001-03")
    [added] = first.dynamic_partitions_requests
    assert list(added.partition_keys) == ["2001-01-01", "2001-02-01", "2001-03-01"]
    assert [r.partition_key for r in first.run_requests] == ["2001-03-01"]  # history is a backfill
    assert first.run_requests[0].asset_selection == [ERA5]
    instance.add_dynamic_partitions(REANALYSIS_MONTHS, list(added.partition_keys))  # as the daemon does

    later = _tick(instance, first.cursor, "2001-05")
    assert [r.partition_key for r in later.run_requests] == ["2001-04-01", "2001-05-01"]
    assert list(later.dynamic_partitions_requests[0].partition_keys) == ["2001-04-01", "2001-05-01"]
    instance.add_dynamic_partitions(REANALYSIS_MONTHS, ["2001-04-01", "2001-05-01"])
    again = _tick(instance, later.cursor, "2001-05")
    assert not again.run_requests and not again.dynamic_partitions_requests
    assert "2001-05" in again.skip_reason.skip_message


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A lake whose history mart holds 2001-01..2001-06, built by `make demo`'s runner."""
    root = tmp_path_factory.mktemp("new_month")
    patch = pytest.MonkeyPatch()
    patch.setenv(settings.ENV_LAKE_ROOT, str(root / "data"))
    patch.setenv(settings.ENV_DEMO_LATEST_MONTH, "2001-06")
    patch.delenv(settings.ENV_WAREHOUSE, raising=False)
    instance = instance_in(root / "dagster_home")
    run_demo(instance, out=lambda line: None, select="+key:fct_band_month_features")
    yield root, instance
    patch.undo()


def _mart_months(root) -> list[str]:
    with duckdb.connect(str(root / "data" / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select strftime(month, '%Y-%m'), count(*) from marts.fct_band_month_features group by 1 order by 1"
        ).fetchall()
    assert all(count == 6 for _, count in rows)
    return [month for month, _ in rows]


def _launch(code_location, instance, requests_by_key):
    """Launch what Dagster's automation requested, one run per partition (as its daemon does)."""
    runs = []
    for partition, keys in sorted(requests_by_key.items()):
        result = code_location.resolve_job_def("monthly_refresh").execute_in_process(
            instance=instance, partition_key=partition, asset_selection=sorted(keys)
        )
        assert result.success
        runs.append(result.run_id)
    return runs


@pytest.mark.slow
def test_a_new_month_flows_from_the_sensor_through_automation_to_the_history_mart(history):
    root, instance = history
    assert _mart_months(root) == [f"2001-{m:02d}" for m in range(1, 7)]
    config = settings.from_environment(
        {settings.ENV_LAKE_ROOT: str(root / "data"), settings.ENV_DEMO_LATEST_MONTH: "2001-07"}
    )
    code_location = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs, resources=build_resources(config)
    )
    baseline = dg.evaluate_automation_conditions(defs=code_location, instance=instance)
    assert baseline.total_requested == 0  # nothing to do before the month is published
    runs_before = {run.run_id for run in instance.get_runs()}

    # the source publishes 2001-07: the sensor registers it and requests the raw month, once
    tick = _tick(instance, "2001-06", "2001-07")
    assert [r.partition_key for r in tick.run_requests] == ["2001-07-01"]
    instance.add_dynamic_partitions(REANALYSIS_MONTHS, list(tick.dynamic_partitions_requests[0].partition_keys))
    raw_run = code_location.resolve_job_def("monthly_refresh").execute_in_process(
        instance=instance,
        partition_key="2001-07-01",
        asset_selection=list(tick.run_requests[0].asset_selection),
        tags=tick.run_requests[0].tags,
    )
    assert raw_run.success
    assert _mart_months(root)[-1] == "2001-06"  # the sensor's run lands the raw month only
    resources = build_resources(config)
    gap = holds_every_landed_month(lake=resources["lake"], warehouse=resources["warehouse"])
    assert not gap.passed and gap.metadata["missing_months"].value == ["2001-07"]  # the blocking check sees it

    # automation, evaluated by Dagster, carries the month to staging and the history mart
    evaluation = dg.evaluate_automation_conditions(defs=code_location, instance=instance, cursor=baseline.cursor)
    requested = {}
    for key in (STAGING, MART, *CELL_MARTS):
        for partition in evaluation.get_requested_partitions(key):
            requested.setdefault(partition, set()).add(key)
    assert requested == {"2001-07-01": {STAGING, MART, *CELL_MARTS}}
    assert evaluation.total_requested == 4  # nothing else: retraining waits for its cadence
    _launch(code_location, instance, requested)
    assert _mart_months(root) == [f"2001-{m:02d}" for m in range(1, 8)]
    assert holds_every_landed_month(lake=resources["lake"], warehouse=resources["warehouse"]).passed

    # a second tick and a second evaluation request nothing
    assert not _tick(instance, tick.cursor, "2001-07").run_requests
    again = dg.evaluate_automation_conditions(defs=code_location, instance=instance, cursor=evaluation.cursor)
    assert again.total_requested == 0
    new_runs = [run for run in instance.get_runs() if run.run_id not in runs_before]
    assert len(new_runs) == 2 and all(run.tags.get("dagster/partition") == "2001-07-01" for run in new_runs)
    assert instance.get_dynamic_partitions(REANALYSIS_MONTHS)[-1] == "2001-07-01"  # nothing unpublished


def test_the_monthly_schedule_registers_months_and_runs_the_whole_refresh():
    schedule = next(s for s in defs.schedules if s.name == "monthly_refresh_schedule")
    assert schedule.job_name == "monthly_refresh"  # raw month and history mart: no automation needed
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            resources={"sources": SourcesResource(demo_latest_month="2001-03")},
            repository_def=defs.get_repository_def(),
        )
        first = list(schedule.evaluate_tick(context).run_requests)
        assert [r.partition_key for r in first] == ["2001-03-01"]  # history is a backfill
        assert instance.get_dynamic_partitions(REANALYSIS_MONTHS) == ["2001-01-01", "2001-02-01", "2001-03-01"]


@pytest.mark.slow
def test_a_range_of_months_backfills_in_one_run(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.ENV_LAKE_ROOT, str(tmp_path / "data"))
    monkeypatch.setenv(settings.ENV_DEMO_LATEST_MONTH, "2001-04")
    config = settings.from_environment()
    instance = instance_knowing_months("2001-04", home=tmp_path / "dagster_home")
    code_location = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs, resources=build_resources(config)
    )
    run_demo(instance, out=lambda line: None, select="+key:int_band_static_features_pivoted")
    backfill = code_location.resolve_job_def("monthly_refresh").execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": "2001-02-01", "dagster/asset_partition_range_end": "2001-04-01"},
    )
    assert backfill.success
    assert _mart_months(tmp_path) == ["2001-02", "2001-03", "2001-04"]
    assert instance.get_materialized_partitions(MART) == {"2001-02-01", "2001-03-01", "2001-04-01"}
