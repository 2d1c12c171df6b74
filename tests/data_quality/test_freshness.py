"""The raw reanalysis' freshness against the source, and the history mart's landed months."""

import datetime as dt

import dagster as dg
from instances import instance_knowing_months

from assets import raw
from data_quality.checks import months_behind, months_not_in_mart, reanalysis_freshness_check


def test_months_behind_counts_published_months_not_landed():
    assert months_behind(dt.date(2023, 12, 1), dt.date(2023, 12, 1)) == 0
    assert months_behind(dt.date(2023, 10, 1), dt.date(2023, 12, 1)) == 2
    assert months_behind(None, dt.date(2001, 3, 1)) == 3
    assert months_behind(dt.date(2024, 1, 1), dt.date(2023, 12, 1)) == 0  # a source that withdrew a month


def test_months_missing_from_the_mart_are_named():
    landed = {dt.date(2001, m, 1) for m in (1, 2, 3)}
    assert months_not_in_mart(landed, {dt.date(2001, 1, 1), dt.date(2001, 2, 1)}) == [dt.date(2001, 3, 1)]
    assert months_not_in_mart(landed, landed) == []


def test_the_freshness_check_warns_when_the_source_is_ahead(resources):
    instance = instance_knowing_months("2003-12")
    check = reanalysis_freshness_check(max_lag_months=1)
    landed = dg.materialize(
        [raw.era5_land_monthly, check],
        resources=resources,
        instance=instance,
        tags={"dagster/asset_partition_range_start": "2003-01-01", "dagster/asset_partition_range_end": "2003-10-01"},
    )
    [evaluation] = landed.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["months_behind"].value == 2  # the demo source has published 2003-12
    assert evaluation.metadata["newest_landed_month"].value == "2003-10"

    caught_up = dg.materialize(
        [raw.era5_land_monthly, check], resources=resources, instance=instance, partition_key="2003-12-01"
    )
    assert caught_up.get_asset_check_evaluations()[0].passed
    # the check also runs alone, as the automation sensor launches it every day
    alone = dg.materialize(
        [raw.era5_land_monthly, check],
        selection=dg.AssetSelection.checks_for_assets(raw.era5_land_monthly),
        resources=resources,
        instance=instance,
    )
    assert alone.get_asset_check_evaluations()[0].passed
