"""Dagster asset checks: the great-expectations suites on the feature marts (blocking), the
history mart holding every landed month (blocking), and the raw reanalysis' freshness against
the source (a warning).

A failed check's metadata lists, per failed expectation, the unit (or band), month (and
scenario) and value of the first failing rows; downstream assets are not materialized in that
run. The suites expect the spatial units the raw asset `spatial_units` landed (the six bands
where none has), as dbt does.
"""

import datetime as dt
from collections.abc import Iterator

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AutomationCondition,
    MetadataValue,
    asset_check,
    multi_asset_check,
)

from dagster_project import lake as lake_module
from dagster_project.dbt import canonical_ranges
from dagster_project.resources import WAREHOUSE_POOL, LakeResource, SourcesResource, WarehouseResource
from data_quality.suites import Check, history_suite, run_checks, scenario_suite
from sources import catalog
from sources.units import SpatialUnits, band_units

ERA5_LAND = AssetKey(lake_module.ERA5_LAND)
# the freshness check also runs on its own once a day, through the automation sensor
FRESHNESS_CRON = "0 7 * * *"


def _specs(asset: AssetKey, checks: list[Check]) -> list[AssetCheckSpec]:
    return [AssetCheckSpec(name=f"gx_{c.name}", asset=asset, blocking=True, description=c.description) for c in checks]


def _results(asset: AssetKey, frame: pl.DataFrame, checks: list[Check]) -> Iterator[AssetCheckResult]:
    for report in run_checks(frame, checks, asset.to_python_identifier()):
        metadata = {"rows_checked": frame.height, "summary": report.summary()}
        if report.failures:
            metadata["failures"] = MetadataValue.json(report.failures)
        if report.absent:
            metadata["absent_columns"] = ", ".join(report.absent)
        yield AssetCheckResult(check_name=f"gx_{report.name}", asset_key=asset, passed=report.passed, metadata=metadata)


HISTORY_MART = AssetKey(lake_module.HISTORY_MART.name)
SCENARIO_MART = AssetKey(lake_module.SCENARIO_MART.name)
# The check names do not depend on the units: the specs are built once, the suites per run.
HISTORY_CHECKS = history_suite(canonical_ranges())
SCENARIO_CHECKS = scenario_suite(canonical_ranges())


def landed_units(lake: LakeResource) -> SpatialUnits:
    """The spatial units the raw asset `spatial_units` landed, or the six bands where none has."""
    path = lake.layout.raw_table(lake_module.SPATIAL_UNITS)
    return SpatialUnits.from_table(lake_module.read_parquet(path), str(path)) if path.exists() else band_units()


@multi_asset_check(
    specs=_specs(HISTORY_MART, HISTORY_CHECKS), name="fct_band_month_features_expectations", pool=WAREHOUSE_POOL
)
def fct_band_month_features_expectations(
    context: AssetCheckExecutionContext, lake: LakeResource, warehouse: WarehouseResource
):
    checks = history_suite(canonical_ranges(), landed_units(lake))
    yield from _results(HISTORY_MART, warehouse.read_table(lake_module.HISTORY_MART), checks)


@multi_asset_check(
    specs=_specs(SCENARIO_MART, SCENARIO_CHECKS),
    name="fct_scenario_band_month_features_expectations",
    pool=WAREHOUSE_POOL,
)
def fct_scenario_band_month_features_expectations(
    context: AssetCheckExecutionContext, lake: LakeResource, warehouse: WarehouseResource
):
    checks = scenario_suite(canonical_ranges(), landed_units(lake))
    yield from _results(SCENARIO_MART, warehouse.read_table(lake_module.SCENARIO_MART), checks)


def months_not_in_mart(landed: set[dt.date], in_mart: set[dt.date]) -> list[dt.date]:
    return sorted(landed - in_mart)


@asset_check(
    asset=HISTORY_MART,
    name="holds_every_landed_month",
    blocking=True,
    pool=WAREHOUSE_POOL,
    description="Every month landed in the raw reanalysis is in the history mart (catches a month gone from the "
    "end of the series, which the per-band gap check cannot see).",
)
def holds_every_landed_month(lake: LakeResource, warehouse: WarehouseResource) -> AssetCheckResult:
    glob = lake.layout.raw_glob(lake_module.ERA5_LAND)
    # the warehouse's connection: it reads a lake on an object store through the lake's file system
    with warehouse.read_only() as con:
        landed = {row[0] for row in con.execute(f"select distinct month from read_parquet('{glob}')").fetchall()}
        in_mart = {row[0] for row in con.execute(f"select distinct month from {lake_module.HISTORY_MART}").fetchall()}
    missing = months_not_in_mart(landed, in_mart)
    return AssetCheckResult(
        passed=not missing,
        metadata={
            "months_landed": len(landed),
            "months_in_mart": len(in_mart),
            "missing_months": MetadataValue.json([f"{month:%Y-%m}" for month in missing]),
        },
    )


def months_behind(newest_landed: dt.date | None, newest_published: dt.date) -> int:
    """Published months not landed yet (all of them from the history start when none is)."""
    if newest_landed is None:
        return len(catalog.month_range(catalog.HISTORY_START, newest_published))
    return max(0, len(catalog.month_range(newest_landed, newest_published)) - 1)


def reanalysis_freshness_check(max_lag_months: int):
    """The raw reanalysis is fresh while at most `max_lag_months` published months are not landed."""

    @asset_check(
        asset=ERA5_LAND,
        name="fresh_against_the_source",
        blocking=False,
        automation_condition=AutomationCondition.cron_tick_passed(FRESHNESS_CRON),
        description=f"The newest landed month is at most {max_lag_months} month(s) behind the newest month the "
        "source has published (PERMAFROST_FRESHNESS_MAX_LAG_MONTHS); checked with every monthly run and daily.",
    )
    def fresh_against_the_source(context: AssetCheckExecutionContext, sources: SourcesResource) -> AssetCheckResult:
        published = sources.latest_published_month()
        landed = context.instance.get_materialized_partitions(ERA5_LAND)
        newest = dt.date.fromisoformat(max(landed)) if landed else None
        lag = months_behind(newest, published)
        return AssetCheckResult(
            passed=lag <= max_lag_months,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "newest_published_month": f"{published:%Y-%m}",
                "newest_landed_month": f"{newest:%Y-%m}" if newest else "none",
                "months_behind": lag,
                "allowed_months_behind": max_lag_months,
            },
        )

    return fresh_against_the_source


def build_asset_checks(freshness_max_lag_months: int) -> list:
    return [
        fct_band_month_features_expectations,
        fct_scenario_band_month_features_expectations,
        holds_every_landed_month,
        reanalysis_freshness_check(freshness_max_lag_months),
    ]
