"""Sensor that requests each newly published reanalysis month exactly once."""

import datetime as dt

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SkipReason, define_asset_job, sensor

from dagster_project.partitions import reanalysis_months
from dagster_project.resources import SourcesResource
from sources import catalog

era5_land_monthly_job = define_asset_job(
    "era5_land_monthly_job", selection=["era5_land_monthly"], partitions_def=reanalysis_months
)


def months_to_request(cursor: str | None, latest: dt.date) -> list[dt.date]:
    """Months after the cursor up to `latest`; with no cursor yet, only `latest`.

    History before the first tick is a backfill (`make demo` or the UI), not the sensor's job.
    """
    if cursor is None:
        return [latest]
    return catalog.month_range(catalog.add_months(catalog.month_start(cursor), 1), latest)


@sensor(
    job=era5_land_monthly_job,
    minimum_interval_seconds=6 * 3600,
    default_status=DefaultSensorStatus.STOPPED,
    description="Polls the reanalysis source for newly published months and requests exactly those partitions.",
)
def era5_land_new_month_sensor(context: SensorEvaluationContext, sources: SourcesResource):
    latest = sources.latest_published_month()
    months = months_to_request(context.cursor, latest)
    if not months:
        return SkipReason(f"no month after {context.cursor} published yet (newest: {latest:%Y-%m})")
    requests = [RunRequest(run_key=f"era5_land_monthly:{m:%Y-%m}", partition_key=m.isoformat()) for m in months]
    context.update_cursor(latest.strftime("%Y-%m"))
    return requests
