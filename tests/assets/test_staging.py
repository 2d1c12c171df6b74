import datetime as dt

from dagster import TimeWindow

from assets.staging import dbt_build_args, failed_nodes


def test_partition_window_becomes_dbt_vars():
    window = TimeWindow(dt.datetime(2023, 11, 1), dt.datetime(2024, 1, 1))
    assert dbt_build_args(window) == ["build", "--vars", '{"min_month": "2023-11-01", "max_month": "2024-01-01"}']
    assert dbt_build_args(None) == ["build"]


def test_only_errors_fail_the_step_not_failing_tests():
    run_results = {
        "results": [
            {"unique_id": "model.permafrost.fct_band_month_features", "status": "success"},
            {"unique_id": "test.permafrost.not_null_x", "status": "warn", "message": "Got 1 result"},
            {"unique_id": "model.permafrost.stg_cmip5__monthly", "status": "error", "message": "Binder Error: t_air"},
        ]
    }
    assert failed_nodes(run_results) == ["model.permafrost.stg_cmip5__monthly: Binder Error: t_air"]
