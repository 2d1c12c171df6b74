import datetime as dt
import subprocess
import sys

import pytest

from assets.staging import dbt_build_args, failed_nodes, failing_rows
from dagster_project.partitions import month_window
from dagster_project.resources import WarehouseResource


def test_partition_window_becomes_dbt_vars():
    window = month_window("2023-11-01", "2023-12-01")
    assert window == (dt.date(2023, 11, 1), dt.date(2024, 1, 1))
    assert dbt_build_args(window) == ["build", "--vars", '{"min_month": "2023-11-01", "max_month": "2024-01-01"}']
    with pytest.raises(ValueError, match="backwards"):
        month_window("2023-12-01", "2023-11-01")
    assert dbt_build_args(None) == ["build"]


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
