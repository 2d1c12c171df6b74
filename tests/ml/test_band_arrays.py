"""Band grids from long frames: shape, order, and errors that name the band and month."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from ml.band_arrays import band_grid, calendar_climatology, days_in_month, grid_frame


def frame(months=24, bands=6):
    month = [dt.date(2001 + i // 12, i % 12 + 1, 1) for i in range(months)]
    return pl.DataFrame(
        {
            "band": np.tile(np.arange(bands), months),
            "month": pl.Series(np.repeat(np.array(month, dtype="datetime64[D]"), bands)).cast(pl.Date),
            "t_air": np.arange(months * bands, dtype=float),
        }
    )


def test_grid_is_months_by_bands_and_round_trips():
    source = frame().sample(fraction=1.0, shuffle=True, seed=1)  # any row order
    grid = band_grid(source, ("t_air",), "test")
    assert grid.values.shape == (24, 6, 1)
    assert grid.values[1, 2, 0] == 8.0  # month 1, band 2
    assert grid.calendar_month[:13].tolist() == [*range(12), 0] and grid.year[12] == 2002
    assert grid.rows(np.datetime64("2002-01"), np.datetime64("2002-03")).tolist() == [12, 13, 14]
    back = grid_frame(grid.months, grid.values, ("t_air",), scenario="x")
    assert back.sort("month", "band")["t_air"].to_list() == frame()["t_air"].to_list()
    assert back["scenario"].unique().to_list() == ["x"]


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (frame().filter((pl.col("band") != 3) | (pl.col("month") != dt.date(2001, 5, 1))), "2001-05 has bands"),
        (frame().filter(pl.col("month") != dt.date(2001, 5, 1)), "month 2001-05 is missing"),
        (frame().with_columns(pl.when(pl.col("t_air") == 7).then(None).otherwise("t_air").alias("t_air")), "band 1"),
    ],
)
def test_errors_name_band_and_month(broken, message):
    with pytest.raises(ValueError, match=message):
        band_grid(broken, ("t_air",), "test")


def test_month_lengths_follow_the_calendar():
    months = np.array(["2024-01", "2024-02", "2023-02"], dtype="datetime64[M]")
    assert days_in_month(months).tolist() == [31, 29, 28]
    assert days_in_month(months, "noleap").tolist() == [31, 28, 28]
    assert days_in_month(months, "360_day").tolist() == [30, 30, 30]
    assert days_in_month(months, "all_leap").tolist() == [31, 29, 29]
    with pytest.raises(ValueError, match="julian"):
        days_in_month(months, "julian")


def test_climatology_needs_every_calendar_month():
    values = np.arange(24, dtype=float)
    calendar = np.arange(24) % 12
    assert calendar_climatology(values, calendar, np.ones(24, bool))[0] == 6.0
    with pytest.raises(ValueError, match=r"\[12\]"):
        calendar_climatology(values, calendar, calendar != 11)
