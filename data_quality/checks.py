"""Blocking Dagster asset checks that run the great-expectations suites on the feature marts.

A failed check's metadata lists, per failed expectation, the band, month (and scenario) and
value of the first failing rows; downstream assets are not materialized in that run.
"""

from collections.abc import Iterator

import polars as pl
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSpec, AssetKey, MetadataValue, multi_asset_check

from dagster_project.resources import WAREHOUSE_POOL, WarehouseResource
from data_quality.suites import Check, history_suite, run_checks, scenario_suite

MARTS_SCHEMA = "marts"


def _specs(asset: AssetKey, checks: list[Check]) -> list[AssetCheckSpec]:
    return [AssetCheckSpec(name=f"gx_{c.name}", asset=asset, blocking=True, description=c.description) for c in checks]


def _results(asset: AssetKey, frame: pl.DataFrame, checks: list[Check]) -> Iterator[AssetCheckResult]:
    for report in run_checks(frame, checks, asset.to_python_identifier()):
        metadata = {"rows_checked": frame.height, "summary": report.summary()}
        if report.failures:
            metadata["failures"] = MetadataValue.json(report.failures)
        yield AssetCheckResult(check_name=f"gx_{report.name}", asset_key=asset, passed=report.passed, metadata=metadata)


HISTORY_MART = AssetKey("fct_band_month_features")
SCENARIO_MART = AssetKey("fct_scenario_band_month_features")
HISTORY_CHECKS = history_suite()
SCENARIO_CHECKS = scenario_suite()


@multi_asset_check(specs=_specs(HISTORY_MART, HISTORY_CHECKS), name="fct_band_month_features_expectations", pool=WAREHOUSE_POOL)
def fct_band_month_features_expectations(context: AssetCheckExecutionContext, warehouse: WarehouseResource):
    yield from _results(HISTORY_MART, warehouse.read_table(MARTS_SCHEMA, HISTORY_MART.path[-1]), HISTORY_CHECKS)


@multi_asset_check(
    specs=_specs(SCENARIO_MART, SCENARIO_CHECKS), name="fct_scenario_band_month_features_expectations", pool=WAREHOUSE_POOL
)
def fct_scenario_band_month_features_expectations(context: AssetCheckExecutionContext, warehouse: WarehouseResource):
    yield from _results(SCENARIO_MART, warehouse.read_table(MARTS_SCHEMA, SCENARIO_MART.path[-1]), SCENARIO_CHECKS)


asset_checks = [fct_band_month_features_expectations, fct_scenario_band_month_features_expectations]
