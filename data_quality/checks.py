"""Blocking Dagster asset checks that run the great-expectations suites on the feature marts.

A failed check's metadata lists, per failed expectation, the band, month (and scenario) and
value of the first failing rows; downstream assets are not materialized in that run.
"""

from collections.abc import Iterator

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    multi_asset_check,
)

from dagster_project import lake
from dagster_project.dbt import canonical_ranges
from dagster_project.resources import WAREHOUSE_POOL, WarehouseResource
from data_quality.suites import Check, history_suite, run_checks, scenario_suite


def _specs(asset: AssetKey, checks: list[Check]) -> list[AssetCheckSpec]:
    return [AssetCheckSpec(name=f"gx_{c.name}", asset=asset, blocking=True, description=c.description) for c in checks]


def _results(asset: AssetKey, frame: pl.DataFrame, checks: list[Check]) -> Iterator[AssetCheckResult]:
    for report in run_checks(frame, checks, asset.to_python_identifier()):
        metadata = {"rows_checked": frame.height, "summary": report.summary()}
        if report.failures:
            metadata["failures"] = MetadataValue.json(report.failures)
        yield AssetCheckResult(check_name=f"gx_{report.name}", asset_key=asset, passed=report.passed, metadata=metadata)


HISTORY_MART = AssetKey(lake.HISTORY_MART.name)
SCENARIO_MART = AssetKey(lake.SCENARIO_MART.name)
HISTORY_CHECKS = history_suite(canonical_ranges())
SCENARIO_CHECKS = scenario_suite(canonical_ranges())


@multi_asset_check(
    specs=_specs(HISTORY_MART, HISTORY_CHECKS), name="fct_band_month_features_expectations", pool=WAREHOUSE_POOL
)
def fct_band_month_features_expectations(context: AssetCheckExecutionContext, warehouse: WarehouseResource):
    yield from _results(HISTORY_MART, warehouse.read_table(lake.HISTORY_MART), HISTORY_CHECKS)


@multi_asset_check(
    specs=_specs(SCENARIO_MART, SCENARIO_CHECKS),
    name="fct_scenario_band_month_features_expectations",
    pool=WAREHOUSE_POOL,
)
def fct_scenario_band_month_features_expectations(context: AssetCheckExecutionContext, warehouse: WarehouseResource):
    yield from _results(SCENARIO_MART, warehouse.read_table(lake.SCENARIO_MART), SCENARIO_CHECKS)


asset_checks = [fct_band_month_features_expectations, fct_scenario_band_month_features_expectations]
