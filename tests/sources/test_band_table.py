"""Published band tables: names, bands, stamps, units declared or detected, calendars."""

import datetime as dt
import warnings

import numpy as np
import polars as pl
import pytest

from sources import catalog
from sources.band_table import CMIP_UNITS, BandTableReanalysisSource, choose_unit, detect_calendar
from sources.base import NotPublishedError, SourceError
from sources.config import BandTableReanalysisConfig

MONTHS = catalog.month_range(dt.date(2019, 11, 1), dt.date(2020, 3, 1))


def era5_table(path, celsius=False, millimetres=False, bands="band_{n}"):
    """A reanalysis table with CDS short names, 0-based or band_1.. labels, stamps mid-month."""
    rows = []
    for month in MONTHS:
        for band in range(6):
            row = {"valid_time": f"{month:%Y-%m}-15 00:00", "band": bands.format(n=band + 1, i=band)}
            for short, name in catalog.ERA5_LAND_CDS_NAMES.items():
                unit = catalog.ERA5_LAND_UNITS[name]
                if unit == "K":
                    value = 265.0 - band + (-273.15 if celsius else 0.0)
                elif unit == "m":
                    value = 0.05 * (1000.0 if millimetres else 1.0)
                elif unit == "m3 m-3":
                    value = 0.3
                else:
                    value = (-1.0 if "heat_flux" in name else 1.0) * 2.0e8
                row[short] = value
            row["snow_depth"] = 0.2
            rows.append(row)
    pl.DataFrame(rows).write_csv(path)
    return path


def test_short_names_labels_and_units_are_read_into_the_raw_schema(tmp_path):
    path = era5_table(tmp_path / "era5.csv", celsius=True, millimetres=True)
    source = BandTableReanalysisSource(BandTableReanalysisConfig(kind="band_table", path=path))
    with pytest.warns(UserWarning, match=r"ignoring column\(s\) \['snow_depth'\]"):
        assert source.latest_month() == dt.date(2020, 3, 1)
    frame = source.read_months(MONTHS[:2])
    assert frame.height == 12
    assert frame.filter(pl.col("band") == 2)["temperature_2m"][0] == pytest.approx(263.0)  # degC detected
    assert frame["total_precipitation_sum"].to_list() == pytest.approx([0.05] * 12)  # mm detected
    with pytest.raises(NotPublishedError):
        source.read_months([dt.date(2020, 4, 1)])


def test_zero_based_band_numbers_are_read_as_is(tmp_path):
    path = era5_table(tmp_path / "era5.csv", bands="{i}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        frame = BandTableReanalysisSource(BandTableReanalysisConfig(kind="band_table", path=path)).read_months(MONTHS)
    assert frame.filter(pl.col("band") == 0)["temperature_2m"][0] == pytest.approx(265.0)


def test_a_declared_unit_converts_and_an_unknown_one_is_refused(tmp_path):
    path = era5_table(tmp_path / "era5.csv", millimetres=True)
    config = BandTableReanalysisConfig(kind="band_table", path=path, units={"total_precipitation_sum": "mm"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        frame = BandTableReanalysisSource(config).read_months(MONTHS)
        assert frame["total_precipitation_sum"][0] == pytest.approx(0.05)
        wrong = config.model_copy(update={"units": {"total_precipitation_sum": "furlongs"}})
        with pytest.raises(SourceError, match="declared unit 'furlongs' is not one of"):
            BandTableReanalysisSource(wrong).read_months(MONTHS)


def test_detection_refuses_magnitudes_no_unit_explains():
    precipitation = CMIP_UNITS["pr"]
    assert choose_unit("pr", np.array([2e-5, 4e-5]), precipitation, None, "t").name == "kg m-2 s-1"
    assert choose_unit("pr", np.array([0.03, 0.08]), precipitation, None, "t").name == "m"
    assert choose_unit("pr", np.array([30.0, 80.0]), precipitation, None, "t").name == "mm"
    with pytest.raises(SourceError, match=r"variable pr: values up to .* fit no unit of"):
        choose_unit("pr", np.array([1.0, 1.2]), precipitation, None, "table.csv")


def test_the_calendar_is_read_from_mid_month_stamps():
    def stamps(calendar):
        lengths = {"noleap": 28, "standard": 29, "360_day": 30}
        out = []
        for month in range(1, 13):
            days = (
                lengths[calendar]
                if month == 2
                else (30 if calendar == "360_day" else catalog.days_in_month(dt.date(2024, month, 1)))
            )
            out.append((2024, month, days / 2.0))
        return out

    for calendar in ("noleap", "standard", "360_day"):
        assert detect_calendar(stamps(calendar), "t") == calendar
    first_of_month = [(2024, m, 0.0) for m in range(1, 13)]
    with pytest.raises(SourceError, match="cannot tell the calendar .*not mid-month.*declare `calendar`"):
        detect_calendar(first_of_month, "t")
