import datetime as dt
import subprocess
import sys
import time

import pytest
from instances import instance_in

from assets.staging import dbt_window_environment, failed_nodes, failing_rows
from dagster_project import processes
from dagster_project.partitions import month_window
from dagster_project.resources import WarehouseResource

MART = "fct_band_month_features"


def test_partition_window_becomes_the_dbt_run_window():
    window = month_window("2023-11-01", "2023-12-01")
    assert window == (dt.date(2023, 11, 1), dt.date(2024, 1, 1))
    assert dbt_window_environment(window) == {
        "PERMAFROST_RUN_MIN_MONTH": "2023-11-01",
        "PERMAFROST_RUN_MAX_MONTH": "2024-01-01",
    }
    assert dbt_window_environment(None) == {"PERMAFROST_RUN_MIN_MONTH": "", "PERMAFROST_RUN_MAX_MONTH": ""}
    with pytest.raises(ValueError, match="backwards"):
        month_window("2023-12-01", "2023-11-01")


def test_errors_and_failed_error_severity_tests_stop_the_step_warnings_do_not():
    run_results = {
        "results": [
            {"unique_id": "model.permafrost.fct_band_month_features", "status": "success"},
            {"unique_id": "test.permafrost.not_null_x", "status": "warn", "message": "Got 1 result"},
            {"unique_id": "model.permafrost.stg_cmip5__monthly", "status": "error", "message": "Binder Error: t_air"},
            {"unique_id": "test.permafrost.unique_raw_key_x", "status": "fail", "message": "Got 6 results"},
        ]
    }
    assert failed_nodes(run_results) == [
        "model.permafrost.stg_cmip5__monthly: Binder Error: t_air",
        "test.permafrost.unique_raw_key_x: Got 6 results",
    ]


def test_a_lock_error_names_the_process_holding_the_warehouse():
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    deadline = time.monotonic() + 10
    while not processes.command_line(holder.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # the interpreter may re-exec itself: its command line appears a moment later
    try:
        message = (
            'IO Error: Could not set lock on file "/lake/warehouse.duckdb": '
            f"Conflicting lock is held in /usr/bin/python3 (PID {holder.pid})."
        )
        [failed] = failed_nodes({"results": [{"unique_id": "model.m", "status": "error", "message": message}]})
    finally:
        holder.kill()
        holder.wait()
    assert failed.endswith(f"[lock held by PID {holder.pid} ({sys.executable} -c import time; time.sleep(60))]")


def test_the_rows_a_failed_test_found_are_read_again_with_band_month_and_file(tmp_path):
    warehouse = WarehouseResource(path=str(tmp_path / "wh.duckdb"))
    with warehouse.connect():
        pass  # the warehouse exists
    found = "select 3 as band, date '2002-05-01' as month, 2 as n_rows, 'a.parquet, b.parquet' as files"
    results = {
        "results": [
            {"unique_id": "test.permafrost.unique_raw_key_x", "status": "fail", "compiled_code": found},
            {"unique_id": "test.permafrost.warned", "status": "warn", "compiled_code": "select 1 as x"},
        ]
    }
    assert failing_rows(results, warehouse) == [
        "test.permafrost.unique_raw_key_x: band 3, month 2002-05-01, n_rows 2, files a.parquet, b.parquet"
    ]


def test_dbt_descriptions_never_show_sql():
    from dagster_project.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.group_name in ("staging", "intermediate", "marts"):
            description = node.description or ""
            assert description and "select" not in description.lower(), key.to_user_string()


def test_dbt_checks_have_readable_names_and_descriptions():
    from dagster_project.definitions import defs

    graph = defs.resolve_asset_graph()
    mart_checks = {
        key.name: graph.get_check_spec(key) for key in graph.asset_check_keys if key.asset_key.path == [MART]
    }
    assert f"{MART}__values_in_physical_range" in mart_checks
    assert f"{MART}__one_row_per_band_month" in mart_checks
    for name, spec in mart_checks.items():
        assert len(name) < 64 and spec.description, name  # no truncated dbt name, always described


def test_marts_report_their_row_counts_and_column_types(tmp_path, monkeypatch):
    import dagster as dg

    from dagster_project import settings
    from dagster_project.launcher.demo import run_demo

    monkeypatch.setenv(settings.ENV_LAKE_ROOT, str(tmp_path / "data"))
    monkeypatch.setenv(settings.ENV_DEMO_LATEST_MONTH, "2001-03")
    monkeypatch.delenv(settings.ENV_WAREHOUSE, raising=False)
    instance = instance_in(tmp_path / "dagster_home")
    run_demo(instance, out=lambda line: None, select=f"+key:{MART}")
    metadata = instance.get_latest_materialization_event(dg.AssetKey(MART)).asset_materialization.metadata
    assert metadata["dagster/row_count"].value == 3 * 6
    columns = {column.name: column for column in metadata["dagster/column_schema"].schema.columns}
    assert columns["t_air"].type == "double" and columns["t_air"].description == "2 m air temperature, degC"
    assert columns["month"].type == "date"
    static = instance.get_latest_materialization_event(dg.AssetKey("int_band_static_features_pivoted"))
    assert static.asset_materialization.metadata["dagster/row_count"].value == 6
