"""Unit grids from long frames: shape, order, every unit in every month, and errors that name the
unit and month; units tables, the per-unit scenarios of a band-keyed frame."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from ml.unit_arrays import (
    OUTSIDE_BANDS,
    Units,
    calendar_climatology,
    days_in_month,
    grid_frame,
    unit_grid,
    unit_scenarios,
)

BASINS = pl.DataFrame(
    {
        "unit": [15, 3, 308],
        "kind": "basin",
        "name": ["Goldstream Creek", "Little Meadow Creek", "Falls Creek"],
        "latitude": [64.2, 61.57, 56.83],
        "longitude": [-147.0, -149.76, -134.69],
        "area_km2": [40.0, 115.5, 16.5],
        "band": [2, 1, None],
        "nearest_band": [2, 1, 0],
        "series_group": [15, 3, 308],
    }
)


def frame(months=24, units=(3, 15, 308)):
    month = [dt.date(2001 + i // 12, i % 12 + 1, 1) for i in range(months)]
    return pl.DataFrame(
        {
            "unit": np.tile(np.asarray(units), months),
            "month": pl.Series(np.repeat(np.array(month, dtype="datetime64[D]"), len(units))).cast(pl.Date),
            "t_air": np.arange(months * len(units), dtype=float),
        }
    )


def test_units_are_sorted_with_bands_and_outside():
    units = Units.of(BASINS)
    assert units.ids.tolist() == [3, 15, 308] and units.kind == "basin" and not units.are_bands
    assert units.band.tolist() == [1, 2, OUTSIDE_BANDS] and units.nearest_band.tolist() == [1, 2, 0]
    assert units.positions([308, 3]).tolist() == [2, 0]
    assert units.describe(308) == "basin 308 (outside the bands)" and units.describe(15) == "basin 15 (band 2)"
    with pytest.raises(KeyError, match=r"\[7\]"):
        units.positions([7])
    keys = units.keys(np.array([2, 0]))
    assert keys["unit"].to_list() == [308, 3] and keys["band"].to_list() == [None, 1]
    bands = Units.bands()
    assert bands.are_bands and bands.ids.tolist() == list(range(6)) and bands.describe(4) == "band 4"
    with pytest.raises(ValueError, match="occurs twice"):
        Units.of(pl.concat([BASINS, BASINS.head(1)]))


def test_grid_is_months_by_units_and_round_trips():
    units = Units.of(BASINS)
    source = frame().sample(fraction=1.0, shuffle=True, seed=1)  # any row order
    grid = unit_grid(source, ("t_air",), "test", units)
    assert grid.values.shape == (24, 3, 1) and grid.units.tolist() == [3, 15, 308]
    assert grid.values[1, 1, 0] == 4.0  # month 1, unit 15 (the second in the frame's order too)
    assert grid.calendar_month[:13].tolist() == [*range(12), 0] and grid.year[12] == 2002
    assert grid.rows(np.datetime64("2002-01"), np.datetime64("2002-03")).tolist() == [12, 13, 14]
    back = grid_frame(grid.months, grid.values, ("t_air",), units, scenario="x")
    assert back.columns == ["scenario", "unit", "band", "month", "t_air"]
    expected = frame().sort("month", "unit")["t_air"].to_list()
    assert back.sort("month", "unit")["t_air"].to_list() == expected
    assert back.filter(pl.col("unit") == 308)["band"].null_count() == 24
    # the units of a plain id list, in its order, and band-keyed frames
    assert unit_grid(source, ("t_air",), "test", [308, 3, 15]).values[0, :, 0].tolist() == [2.0, 0.0, 1.0]
    banded = frame(units=(0, 1)).rename({"unit": "band"})
    assert unit_grid(banded, ("t_air",), "test", key="band").units.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (
            frame().filter((pl.col("unit") != 308) | (pl.col("month") != dt.date(2001, 5, 1))),
            r"basin 308 \(outside the bands\) is missing in month 2001-05",
        ),
        (pl.concat([frame(), frame().head(1)]), r"basin 3 \(band 1\) occurs 2 times in month 2001-01"),
        (frame(units=(3, 15, 308, 99)), "unit 99 is not one of the 3 units"),
        (frame().filter(pl.col("month") != dt.date(2001, 5, 1)), "month 2001-05 is missing"),
        (
            frame().with_columns(pl.when(pl.col("t_air") == 4).then(None).otherwise("t_air").alias("t_air")),
            r"t_air is missing or not finite in basin 15 \(band 2\), month 2001-02",
        ),
    ],
)
def test_errors_name_unit_and_month(broken, message):
    with pytest.raises(ValueError, match=message):
        unit_grid(broken, ("t_air",), "test", Units.of(BASINS))


def test_every_unit_of_the_table_is_expected_in_every_month():
    with pytest.raises(ValueError, match=r"basin 308 \(outside the bands\) is missing in month 2001-01"):
        unit_grid(frame(units=(3, 15)), ("t_air",), "test", Units.of(BASINS))


def test_a_unit_takes_its_nearest_bands_scenario():
    months = [dt.date(2006, 1, 1), dt.date(2006, 2, 1)]
    bands = pl.DataFrame(
        {
            "band": [0, 1, 2] * 2,
            "month": [months[0]] * 3 + [months[1]] * 3,
            "t_air": [10.0, 11.0, 12.0, 20.0, 21.0, 22.0],
        }
    )
    scenarios = unit_scenarios(bands, Units.of(BASINS)).sort("month", "unit")
    assert scenarios.columns == ["unit", "band", "nearest_band", "month", "t_air"]
    assert scenarios.filter(pl.col("month") == months[0])["t_air"].to_list() == [11.0, 12.0, 10.0]
    assert scenarios.filter(pl.col("unit") == 308)["band"].null_count() == 2
    with pytest.raises(ValueError, match=r"no band 2, the nearest band of basin 15 \(band 2\)"):
        unit_scenarios(bands.filter(pl.col("band") != 2), Units.of(BASINS))


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
