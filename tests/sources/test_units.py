"""Spatial units: the six bands by default, basins with their band and nearest band, and raw
reanalysis frames validated against the units a source declares."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from sources import catalog
from sources.base import SourceError, units_of
from sources.demo import DemoReanalysisSource
from sources.units import UNIT_COLUMNS, SpatialUnits, SpatialUnitsError, band_units, bands_holding, nearest_bands
from sources.validation import ERA5_LAND_OPTIONAL_RANGES, ERA5_LAND_RANGES, validate_reanalysis

MONTHS = catalog.month_range(dt.date(2001, 1, 1), dt.date(2001, 3, 1))


def _basins(**columns) -> pl.DataFrame:
    frame = {
        "unit": [308, 3, 15],
        "name": ["Falls Creek", "Little Meadow Creek", "Goldstream Creek"],
        "latitude": [56.827, 61.569, 64.2],
        "longitude": [-134.693, -149.759, -147.0],
        "area_km2": [16.5, 115.5, 40.0],
    }
    return pl.DataFrame({**frame, **columns})


BASINS = SpatialUnits.of("basin", _basins())


def test_the_six_bands_are_the_default_units():
    units = band_units()
    assert units.kind == "band" and units.key_column == "band" and units.count == catalog.N_BANDS
    frame = units.frame
    assert tuple(frame.columns) == UNIT_COLUMNS
    assert UNIT_COLUMNS == ("unit", "name", "latitude", "longitude", "area_km2", "band", "nearest_band", "series_group")
    assert frame["unit"].to_list() == frame["band"].to_list() == frame["nearest_band"].to_list() == list(range(6))
    assert frame["latitude"].to_list() == [b.mid_latitude for b in catalog.BANDS]
    assert frame["area_km2"].to_list() == [b.area_km2 for b in catalog.BANDS]
    assert units_of(DemoReanalysisSource()) == units  # a source without units() stands for the bands


def test_bands_and_nearest_bands_of_points():
    edge = catalog.BANDS[2].south
    # inside, on a south edge, north of all, south of all, east of the box
    assert bands_holding([60.0, edge, 71.336926, 72.0, 57.0, 61.0], [-150.0] * 5 + [-134.7]) == [
        0,
        2,
        5,
        None,
        None,
        None,
    ]
    assert nearest_bands([60.0, edge, 72.0, 57.0]) == [0, 2, 5, 0]


def test_basins_get_their_band_nearest_band_and_own_series_group_sorted_by_id():
    frame = BASINS.frame
    assert frame["unit"].to_list() == [3, 15, 308]  # sorted
    assert frame["band"].to_list() == [1, 2, None]
    assert frame["nearest_band"].to_list() == [1, 2, 0]
    assert frame["series_group"].to_list() == [3, 15, 308]
    assert BASINS.key_column == "unit"
    assert BASINS.describe(308) == "basin 308 (outside the bands)"
    assert BASINS.describe(15) == "basin 15 (band 2)"


def test_positions_of_ids():
    assert BASINS.positions([308, 3]).tolist() == [2, 0]
    with pytest.raises(KeyError, match=r"basin id\(s\) \[7\] are not among the 3 units"):
        BASINS.positions([3, 7])


def test_the_landed_table_reads_back_as_the_same_units():
    table = BASINS.to_table()
    assert table.columns[:2] == ["unit", "kind"] and set(table["kind"]) == {"basin"}
    assert SpatialUnits.from_table(table) == BASINS
    assert SpatialUnits.from_table(band_units().to_table()) == band_units()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_basins(unit=[3, 3, 15]), "unit 3: unit 3 occurs more than once"),
        (_basins(latitude=[56.8, None, 64.2]), "unit 3: latitude None is not a degree"),
        (_basins(area_km2=[16.5, 0.0, 40.0]), "unit 3: area_km2 0.0 is not a positive area"),
        (_basins(nearest_band=[0, 3, 2]), "unit 3: nearest_band 3 differs from the band holding the unit"),
        (_basins(series_group=[308, 3, 16]), "unit 15: series_group 16 is no unit of the table"),
        (_basins(band=[None, 1, 7]), "unit 15: band 7 is no band"),
    ],
)
def test_a_units_table_that_breaks_the_contract_is_refused(frame, message):
    with pytest.raises(SpatialUnitsError, match=message):
        SpatialUnits.of("basin", frame, "basins.csv")


def test_an_unknown_kind_is_refused():
    with pytest.raises(SpatialUnitsError, match=r"kind 'site'; expected one of \('band', 'basin', 'cell'\)"):
        SpatialUnits.of("site", _basins())


# --- raw frames of basins -----------------------------------------------------------------


def _basin_frame(months=MONTHS, absent=("skin_temperature", "snowfall_sum")) -> pl.DataFrame:
    values = {name: (low + high) / 2 for name, (low, high) in ERA5_LAND_RANGES.items()}
    values.update({name: (low + high) / 2 for name, (low, high) in ERA5_LAND_OPTIONAL_RANGES.items()})
    rows = [{"unit": u, "month": m, **values} for m in months for u in BASINS.ids.tolist()]
    return pl.DataFrame(rows).with_columns(pl.lit(None, dtype=pl.Float64).alias(v) for v in absent)


ABSENT = ("skin_temperature", "snowfall_sum")


def _validate(frame):
    return validate_reanalysis(frame, MONTHS, "basins.csv", units=BASINS, absent=ABSENT)


def test_a_good_basin_frame_keeps_unit_absent_and_optional_bands():
    frame = _validate(_basin_frame().reverse())
    assert frame.columns == ["unit", "month", "date", *catalog.ERA5_LAND_BANDS, *catalog.ERA5_LAND_OPTIONAL_BANDS]
    assert frame["unit"].dtype == pl.Int64
    assert frame.select("month", "unit").rows()[:3] == [(MONTHS[0], 3), (MONTHS[0], 15), (MONTHS[0], 308)]
    assert frame["skin_temperature"].null_count() == frame.height
    # an absent variable left out of the frame is added as a null column
    added = _validate(_basin_frame().drop("snowfall_sum"))
    assert added["snowfall_sum"].null_count() == added.height


def _set(frame, variable, unit, month, value):
    hit = (pl.col("unit") == unit) & (pl.col("month") == month)
    return frame.with_columns(pl.when(hit).then(pl.lit(value)).otherwise(pl.col(variable)).alias(variable))


BAD_BASIN_FRAMES = {
    "a basin missing in a month": (
        lambda f: f.filter(~((pl.col("unit") == 15) & (pl.col("month") == MONTHS[1]))),
        r"month 2001-02: 2 basins, expected 3; basin 15 \(band 2\) is missing",
    ),
    "an unknown basin": (
        lambda f: f.with_columns(pl.when(pl.col("unit") == 308).then(309).otherwise(pl.col("unit")).alias("unit")),
        r"unit 309, month 2001-01: not one of the source's 3 basins",
    ),
    "a duplicate month": (
        lambda f: pl.concat([f, f.head(1)]),
        r"basin 3 \(band 1\), month 2001-01: duplicate month for this basin",
    ),
    "a hole in a variable": (
        lambda f: _set(f, "temperature_2m", 308, MONTHS[2], None),
        r"variable temperature_2m, basin 308 \(outside the bands\), month 2001-03: value is missing",
    ),
    "an optional band out of range": (
        lambda f: _set(f, "surface_pressure", 15, MONTHS[0], 95.0),
        r"variable surface_pressure, basin 15 \(band 2\), month 2001-01: value 95.0 outside .* Pa",
    ),
    "a value where the source declares none": (
        lambda f: _set(f, "snowfall_sum", 3, MONTHS[1], 0.01),
        r"variable snowfall_sum, basin 3 \(band 1\), month 2001-02: declared absent but has values",
    ),
}


@pytest.mark.parametrize("fault", BAD_BASIN_FRAMES)
def test_bad_basin_frames_are_named_by_basin_and_month(fault):
    from sources.validation import _clean_monthly

    spoil, message = BAD_BASIN_FRAMES[fault]
    with pytest.raises(SourceError, match=message):
        _validate(spoil(_basin_frame()))
    canonical = _validate(_basin_frame())
    assert _clean_monthly(canonical, MONTHS, BASINS, {v: r for v, r in ERA5_LAND_RANGES.items() if v not in ABSENT})


def test_a_band_frame_is_keyed_band_as_before():
    values = {name: (low + high) / 2 for name, (low, high) in ERA5_LAND_RANGES.items()}
    frame = pl.DataFrame([{"band": b, "month": m, **values} for m in MONTHS for b in range(6)])
    checked = validate_reanalysis(frame, MONTHS, "bands")
    assert checked.columns[0] == "band" and checked["band"].dtype == pl.Int32
    assert np.array_equal(checked["band"].unique().sort().to_numpy(), np.arange(6))


def test_the_demo_lands_the_six_bands_as_its_units(resources, lake_settings):
    from dagster import materialize

    from assets import raw

    assert materialize([raw.spatial_units], resources=resources).success
    landed = pl.read_parquet(lake_settings.lake_root / "raw" / "spatial_units.parquet")
    assert SpatialUnits.from_table(landed) == band_units()
    assert landed["kind"].to_list() == ["band"] * catalog.N_BANDS
