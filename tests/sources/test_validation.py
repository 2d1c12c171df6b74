"""Bad input ends in a SourceError that names variable, band and month."""

import datetime as dt

import polars as pl
import pytest

from sources import catalog
from sources.base import SourceError
from sources.validation import (
    CMIP5_RANGES,
    ERA5_LAND_RANGES,
    validate_cmip5,
    validate_lithology,
    validate_reanalysis,
    validate_soil_properties,
)

MONTHS = catalog.month_range(dt.date(2001, 1, 1), dt.date(2001, 3, 1))


def _midrange(ranges):
    return {name: (low + high) / 2 for name, (low, high) in ranges.items()}


def era5_frame(months=MONTHS) -> pl.DataFrame:
    values = _midrange(ERA5_LAND_RANGES)
    rows = [{"band": b, "month": m, **values} for m in months for b in range(catalog.N_BANDS)]
    return pl.DataFrame(rows)


def cmip5_frame(months=MONTHS) -> pl.DataFrame:
    values = _midrange(CMIP5_RANGES)
    rows = [
        {"band": b, "month": m, "calendar": "noleap", "model": "TEST", **values}
        for m in months
        for b in range(catalog.N_BANDS)
    ]
    return pl.DataFrame(rows)


def _set(frame, variable, band, month, value):
    hit = (pl.col("band") == band) & (pl.col("month") == month)
    return frame.with_columns(pl.when(hit).then(pl.lit(value)).otherwise(pl.col(variable)).alias(variable))


def test_a_good_frame_passes_in_canonical_order():
    frame = validate_reanalysis(era5_frame().reverse(), MONTHS, "test")
    assert frame.columns == ["band", "month", "date", *catalog.ERA5_LAND_BANDS]
    assert frame["date"].to_list() == frame["month"].to_list()  # a monthly product is stamped on the 1st
    assert frame["month"].to_list()[0] == MONTHS[0]
    assert frame.height == len(MONTHS) * catalog.N_BANDS


def test_missing_variable_is_named():
    with pytest.raises(SourceError, match="snowfall_sum"):
        validate_reanalysis(era5_frame().drop("snowfall_sum"), MONTHS, "file x.csv")


def test_nan_names_variable_band_and_month():
    frame = _set(era5_frame(), "soil_temperature_level_3", 4, MONTHS[1], float("nan"))
    with pytest.raises(SourceError, match=r"soil_temperature_level_3, band 4, month 2001-02: value is missing"):
        validate_reanalysis(frame, MONTHS, "test")


def test_celsius_where_kelvin_is_expected_is_an_error():
    frame = _set(era5_frame(), "temperature_2m", 2, MONTHS[2], -12.5)
    with pytest.raises(SourceError, match=r"temperature_2m, band 2, month 2001-03: value -12.5 outside .* K"):
        validate_reanalysis(frame, MONTHS, "test")


def test_duplicate_month_is_an_error():
    frame = pl.concat([era5_frame(), era5_frame(MONTHS[:1]).head(1)])
    with pytest.raises(SourceError, match=r"band 0, month 2001-01: duplicate month"):
        validate_reanalysis(frame, MONTHS, "test")


def test_missing_band_is_an_error():
    frame = era5_frame().filter(~((pl.col("band") == 5) & (pl.col("month") == MONTHS[0])))
    with pytest.raises(SourceError, match=r"month 2001-01: 5 bands, expected 6"):
        validate_reanalysis(frame, MONTHS, "test")


def test_gap_in_requested_months_is_an_error():
    frame = era5_frame().filter(pl.col("month") != MONTHS[1])
    with pytest.raises(SourceError, match=r"month 2001-02 is missing"):
        validate_reanalysis(frame, MONTHS, "test")


def _canonical(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame as validate_reanalysis hands it to its checks (date added, columns cast)."""
    if "date" not in frame.columns:
        frame = frame.with_columns(pl.col("month").alias("date"))
    return frame.select(
        pl.col("band").cast(pl.Int32),
        pl.col("month").cast(pl.Date),
        pl.col("date").cast(pl.Date),
        *[pl.col(name).cast(pl.Float64) for name in catalog.ERA5_LAND_BANDS],
    )


BAD_FRAMES = {
    "nan": lambda f: _set(f, "snowfall_sum", 3, MONTHS[1], float("nan")),
    "null": lambda f: _set(f, "snowfall_sum", 3, MONTHS[1], None),
    "infinite": lambda f: _set(f, "surface_sensible_heat_flux_sum", 0, MONTHS[0], float("inf")),
    "below range": lambda f: _set(f, "volumetric_soil_water_layer_2", 5, MONTHS[2], -0.01),
    "above range": lambda f: _set(f, "skin_temperature", 1, MONTHS[0], 341.0),
    "duplicated row, same count": lambda f: pl.concat([f.head(f.height - 1), f.head(1)]),
    "band 6": lambda f: f.with_columns(pl.when(pl.col("band") == 5).then(6).otherwise(pl.col("band")).alias("band")),
    "missing month": lambda f: f.filter(pl.col("month") != MONTHS[1]),
    "extra month": lambda f: pl.concat([f, era5_frame([dt.date(2001, 4, 1)])]),
    "month not asked, same count": lambda f: f.with_columns(
        pl.when(pl.col("month") == MONTHS[2]).then(dt.date(2001, 5, 1)).otherwise(pl.col("month")).alias("month")
    ),
    "mid-month stamp": lambda f: f.with_columns(pl.col("month").dt.offset_by("14d").alias("date")),
}


@pytest.mark.parametrize("fault", BAD_FRAMES)
def test_the_one_pass_check_never_passes_what_the_detailed_checks_refuse(fault):
    """validate_reanalysis skips its checks one by one when one vectorised pass finds the
    monthly frame clean; each fault must fail that pass and be named by the detailed checks."""
    from sources.validation import _clean_monthly

    assert _clean_monthly(_canonical(era5_frame()), MONTHS)
    bad = BAD_FRAMES[fault](era5_frame())
    assert not _clean_monthly(_canonical(bad), MONTHS)
    with pytest.raises(SourceError):
        validate_reanalysis(bad, MONTHS, "test")


def test_cmip_gap_is_found_without_being_told_the_months():
    months = catalog.month_range(dt.date(2006, 1, 1), dt.date(2006, 12, 1))
    frame = cmip5_frame(months).filter(pl.col("month") != dt.date(2006, 7, 1))
    with pytest.raises(SourceError, match=r"month 2006-07 is missing"):
        validate_cmip5(frame, "rcp45", "tas_Amon_X_rcp45.nc")


def test_cmip_unknown_calendar_is_an_error():
    frame = cmip5_frame().with_columns(calendar=pl.lit("martian"))
    with pytest.raises(SourceError, match="calendar"):
        validate_cmip5(frame, "historical", "test")


def test_cmip_precipitation_in_mm_per_day_is_an_error():
    frame = _set(cmip5_frame(), "pr", 1, MONTHS[0], 3.2)  # mm/day, not kg m-2 s-1
    with pytest.raises(
        SourceError, match=r"pr, experiment historical, band 1, month 2001-01: value 3.2 outside .* kg m-2 s-1"
    ):
        validate_cmip5(frame, "historical", "test")


def test_cmip_frame_gets_its_experiment():
    frame = validate_cmip5(cmip5_frame(), "rcp85", "test")
    assert set(frame["experiment"].to_list()) == {"rcp85"}


def test_lithology_unknown_class_and_missing_band():
    good = pl.DataFrame(
        [{"band": b, "lithology": c, "area_km2": 10.0} for b in range(6) for c in catalog.LITHOLOGY_CLASSES]
    )
    assert validate_lithology(good, "test").height == 54
    with pytest.raises(SourceError, match="unknown lithology class 'granite'"):
        validate_lithology(good.with_columns(lithology=pl.lit("granite")), "test")
    with pytest.raises(SourceError, match="bands"):
        validate_lithology(good.filter(pl.col("band") < 5), "test")


def test_soil_property_negative_value_is_named():
    rows = []
    for product, spec in catalog.OPENLANDMAP_PRODUCTS.items():
        for b in range(6):
            rows.append(
                {
                    "band": b,
                    "property": product,
                    "asset": spec["asset"],
                    "stored_unit": spec["stored_unit"],
                    **{c: 100.0 for c in catalog.OPENLANDMAP_DEPTH_COLUMNS},
                }
            )
    good = pl.DataFrame(rows)
    assert validate_soil_properties(good, "test").height == 12
    bad = good.with_columns(b30=pl.when(pl.col("band") == 3).then(-1.0).otherwise(pl.col("b30")))
    with pytest.raises(SourceError, match=r"depth b30, band 3"):
        validate_soil_properties(bad, "test")
