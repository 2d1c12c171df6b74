import datetime as dt

import dagster as dg

from dagster_project.resources import SourcesResource
from dagster_project.sensors import era5_land_new_month_sensor, months_to_request


def test_months_after_the_cursor_up_to_the_newest():
    assert months_to_request("2023-10", dt.date(2024, 1, 1)) == [
        dt.date(2023, 11, 1),
        dt.date(2023, 12, 1),
        dt.date(2024, 1, 1),
    ]
    assert months_to_request("2024-01", dt.date(2024, 1, 1)) == []
    assert months_to_request(None, dt.date(2024, 1, 1)) == [dt.date(2024, 1, 1)]


def _tick(cursor, latest):
    context = dg.build_sensor_context(cursor=cursor, resources={"sources": SourcesResource(demo_latest_month=latest)})
    return era5_land_new_month_sensor(context), context.cursor


def test_sensor_requests_each_new_month_once():
    result, cursor = _tick("2023-12", "2024-02")
    assert [r.partition_key for r in result] == ["2024-01-01", "2024-02-01"]
    assert cursor == "2024-02"
    again, cursor_again = _tick(cursor, "2024-02")
    assert isinstance(again, dg.SkipReason)
    assert cursor_again == "2024-02"
