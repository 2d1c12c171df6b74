"""New reanalysis months: the sensor that registers and requests each one, and the monthly
schedule that does the same where sensors are off.

A month becomes a partition (`reanalysis_months`, dynamic) once the source has published it;
registering always covers the whole run 2001-01..newest, so partitions stay in calendar order.
"""

from __future__ import annotations

import datetime as dt

from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from dagster_project import settings
from dagster_project.partitions import REANALYSIS_MONTHS, months_to_register, reanalysis_months
from dagster_project.resources import SourcesResource
from sources import catalog

ERA5_LAND = AssetKey("era5_land_monthly")
MONTHLY_REFRESH_JOB = "monthly_refresh"
NEW_MONTH_TAG = "permafrost/new_month"


def months_to_request(cursor: str | None, latest: dt.date, materialized: set[str]) -> list[dt.date]:
    """Months after the cursor up to `latest`; with no cursor yet, only `latest`. Months already
    materialized are not asked for again.

    History before the first tick is a backfill (`make demo` or the UI), not the sensor's job.
    """
    if cursor is None:
        months = [latest]
    else:
        months = catalog.month_range(catalog.add_months(catalog.month_start(cursor), 1), latest)
    return [month for month in months if month.isoformat() not in materialized]


def _materialized_months(instance: DagsterInstance) -> set[str]:
    return set(instance.get_materialized_partitions(ERA5_LAND))


def new_month_sensor(poll_seconds: int):
    """The sensor, polling the source every `poll_seconds` (settings.new_month_poll_seconds)."""

    @sensor(
        name="era5_land_new_month_sensor",
        asset_selection=[ERA5_LAND],
        minimum_interval_seconds=poll_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Asks the reanalysis source for its newest published month every {poll_seconds} s "
        f"({settings.ENV_NEW_MONTH_POLL}), registers every published month as a partition and requests each new "
        "one once; the history mart follows by automation.",
    )
    def era5_land_new_month_sensor(context: SensorEvaluationContext, sources: SourcesResource):
        latest = sources.latest_published_month()
        new_keys = months_to_register(context.instance.get_dynamic_partitions(REANALYSIS_MONTHS), latest)
        months = months_to_request(context.cursor, latest, _materialized_months(context.instance))
        requests = [
            RunRequest(
                run_key=f"era5_land_monthly:{month:%Y-%m}",
                partition_key=month.isoformat(),
                asset_selection=[ERA5_LAND],
                tags={NEW_MONTH_TAG: f"{month:%Y-%m}"},
            )
            for month in months
        ]
        partitions = [reanalysis_months.build_add_request(new_keys)] if new_keys else []
        if not requests and not partitions:
            return SensorResult(
                skip_reason=SkipReason(f"no month after {context.cursor} published (newest: {latest:%Y-%m})")
            )
        return SensorResult(run_requests=requests, dynamic_partitions_requests=partitions, cursor=f"{latest:%Y-%m}")

    return era5_land_new_month_sensor


@schedule(
    name="monthly_refresh_schedule",
    job_name=MONTHLY_REFRESH_JOB,
    cron_schedule="0 6 * * *",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Fallback where sensors are off: every morning, registers newly published months and runs the "
    "whole monthly refresh (raw month and history mart) for each one not yet landed. Stopped by default: the "
    "new-month sensor and automation do this when the daemon runs sensors.",
)
def monthly_refresh_schedule(context: ScheduleEvaluationContext, sources: SourcesResource):
    latest = sources.latest_published_month()
    new_keys = months_to_register(context.instance.get_dynamic_partitions(REANALYSIS_MONTHS), latest)
    if new_keys:
        context.instance.add_dynamic_partitions(REANALYSIS_MONTHS, new_keys)
    materialized = _materialized_months(context.instance)
    # the newest month, and any published month after the newest landed one
    newest_landed = max(materialized) if materialized else None
    cursor = newest_landed[:7] if newest_landed else None
    months = months_to_request(cursor, latest, materialized)
    if not months:
        return SkipReason(f"every published month up to {latest:%Y-%m} is landed")
    return [
        RunRequest(
            run_key=f"monthly_refresh:{month:%Y-%m}",
            partition_key=month.isoformat(),
            tags={NEW_MONTH_TAG: f"{month:%Y-%m}"},
        )
        for month in months
    ]
