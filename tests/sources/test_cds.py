"""CDS ERA5-Land monthly means: netCDF as the new CDS writes it, the ZIP of step types, GRIB."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
import xarray as xr
from generated_files import (
    CDS_BASE,
    CDS_LAT,
    CDS_LON,
    cds_dataset,
    cds_field,
    write_cds_grib,
    write_cds_netcdf,
    write_cds_zip,
)

from sources import catalog
from sources.base import NotPublishedError, SourceError
from sources.cds import ACCUMULATED, CdsReanalysisSource
from sources.config import CdsReanalysisConfig
from sources.regions import band_weights

MONTHS = [dt.date(2020, m, 1) for m in (1, 2, 3)]


def read(*paths, months=MONTHS):
    source = CdsReanalysisSource(CdsReanalysisConfig(kind="cds", paths=[str(p) for p in paths]))
    return source, source.read_months(months)


def test_accumulations_are_daily_means_times_the_days_of_the_month(tmp_path):
    source, frame = read(write_cds_netcdf(tmp_path / "uniform.nc", MONTHS, uniform=True))
    assert source.latest_month() == dt.date(2020, 3, 1)
    feb = frame.filter(pl.col("month") == dt.date(2020, 2, 1))
    season = np.cos(2 * np.pi / 12.0)
    for short in ACCUMULATED:
        name = catalog.ERA5_LAND_CDS_NAMES[short]
        per_day = np.float32(CDS_BASE[short] * (1.0 + 0.1 * season))
        np.testing.assert_allclose(feb[name].to_numpy(), 29 * float(per_day), rtol=1e-6)  # leap February
    np.testing.assert_allclose(feb["temperature_2m"].to_numpy(), np.float32(CDS_BASE["t2m"] + 10 * season), rtol=1e-6)
    assert frame["date"].to_list() == frame["month"].to_list()


def test_the_zip_of_step_types_reads_as_the_single_file(tmp_path):
    _, single = read(write_cds_netcdf(tmp_path / "single.nc", MONTHS))
    (tmp_path / "zip").mkdir()
    _, zipped = read(write_cds_zip(tmp_path / "zip" / "download.zip", MONTHS))
    assert zipped.equals(single)


def test_grib_read_through_cfgrib_agrees_with_netcdf(tmp_path):
    _, single = read(write_cds_netcdf(tmp_path / "all.nc", MONTHS))
    (tmp_path / "mixed").mkdir()
    grib = write_cds_grib(tmp_path / "mixed" / "t2m_tp.grib", MONTHS, names=("t2m", "tp"))
    rest = write_cds_netcdf(
        tmp_path / "mixed" / "rest.nc", MONTHS, names=[n for n in catalog.ERA5_LAND_CDS_NAMES if n not in ("t2m", "tp")]
    )
    _, mixed = read(grib, rest)
    for name in ("temperature_2m", "total_precipitation_sum"):
        np.testing.assert_allclose(mixed[name].to_numpy(), single[name].to_numpy(), rtol=1e-5)


def test_old_format_expver_dimension_is_combined(tmp_path):
    """Before 2024 the CDS put final (1) and preliminary ERA5T (5) data on an expver axis."""
    new = cds_dataset(MONTHS)
    final = new.drop_vars("expver").expand_dims(expver=[1, 5]).copy(deep=True)
    for name in final.data_vars:
        final[name][0, 2] = np.nan  # March only in ERA5T
        final[name][1, :2] = np.nan
    final = final.rename({"valid_time": "time"})
    final.to_netcdf(tmp_path / "old.nc")
    _, old = read(tmp_path / "old.nc")
    _, reference = read(write_cds_netcdf(tmp_path / "new.nc", MONTHS))
    assert old.equals(reference)


def test_months_after_the_newest_in_the_files_are_not_published(tmp_path):
    source, _ = read(write_cds_netcdf(tmp_path / "a.nc", MONTHS))
    with pytest.raises(NotPublishedError, match="2020-04 is not published yet .newest published month: 2020-03"):
        source.read_months([dt.date(2020, 4, 1)])


def test_a_month_in_two_files_is_refused(tmp_path):
    a = write_cds_netcdf(tmp_path / "a.nc", MONTHS)
    b = write_cds_netcdf(tmp_path / "b.nc", MONTHS[1:2])
    source = CdsReanalysisSource(CdsReanalysisConfig(kind="cds", paths=[str(a), str(b)]))
    with pytest.raises(Exception, match=r"variable t2m, month 2020-02 is duplicated in .*a.nc.*b.nc"):
        source.read_months(MONTHS)


def test_units_are_checked_and_converted(tmp_path):
    dataset = cds_dataset(MONTHS)
    dataset["t2m"] = dataset["t2m"] - 273.15
    dataset["t2m"].attrs["units"] = "degC"
    dataset.to_netcdf(tmp_path / "celsius.nc")
    _, frame = read(tmp_path / "celsius.nc")
    _, kelvin = read(write_cds_netcdf(tmp_path / "kelvin.nc", MONTHS))
    np.testing.assert_allclose(frame["temperature_2m"].to_numpy(), kelvin["temperature_2m"].to_numpy(), rtol=1e-6)
    assert isinstance(dataset, xr.Dataset)


def plain_band_means(values: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(time, band): xarray's weighted mean of each band's weights over the cells not NaN at
    that time, in float64, written the obvious way (no fast path)."""
    weights = band_weights(lat, lon)
    cut = np.asarray(values, dtype=np.float64)[:, weights.lat_index][:, :, weights.lon_index]
    field = xr.DataArray(cut, dims=("time", "lat", "lon"))
    return np.stack(
        [
            field.weighted(xr.DataArray(weights.weights[band], dims=("lat", "lon"))).mean(("lat", "lon")).values
            for band in range(catalog.N_BANDS)
        ],
        axis=1,
    )


def test_band_means_over_a_land_gap_and_two_files_in_two_units_match_a_plain_computation(tmp_path):
    """The reader's fast path (float32 read, valid cells only, units converted on the means)
    against the plain weighted mean of the values as stored, converted cell by cell."""
    lat2, lon2 = np.meshgrid(CDS_LAT, CDS_LON, indexing="ij")
    gap = np.logical_and(lat2 == 64.0, np.abs(lon2 + 153.0) <= 2.0)  # land, inside band 2, NaN at every time
    fields = {name: cds_field(name, MONTHS) for name in catalog.ERA5_LAND_CDS_NAMES}
    for values in fields.values():
        values[:, gap] = np.nan
    first = cds_dataset(MONTHS[:2], fields={name: values[:2] for name, values in fields.items()})
    second = cds_dataset(MONTHS[2:], fields={name: values[2:] for name, values in fields.items()})
    second["t2m"] = second["t2m"] - 273.15  # March in degC, January and February in K
    second["t2m"].attrs["units"] = "degC"
    second["tp"] = second["tp"] * 1000.0  # March in mm
    second["tp"].attrs["units"] = "mm"
    first.to_netcdf(tmp_path / "jan_feb.nc")
    second.to_netcdf(tmp_path / "mar.nc")
    _, frame = read(tmp_path / "jan_feb.nc", tmp_path / "mar.nc")

    with xr.open_dataset(tmp_path / "jan_feb.nc") as a, xr.open_dataset(tmp_path / "mar.nc") as b:
        stored = {name: (a[name].values, b[name].values) for name in catalog.ERA5_LAND_CDS_NAMES}
    days = np.array([catalog.days_in_month(m) for m in MONTHS], dtype=float)[:, None]
    for short, name in catalog.ERA5_LAND_CDS_NAMES.items():
        january_february, march = (part.astype(np.float64) for part in stored[short])
        if short == "t2m":
            march = march + 273.15
        if short == "tp":
            march = march * 0.001
        expected = plain_band_means(np.concatenate([january_february, march]), CDS_LAT, CDS_LON)
        if short in ACCUMULATED:
            expected = expected * days
        np.testing.assert_allclose(frame[name].to_numpy().reshape(len(MONTHS), -1), expected, rtol=1e-12, err_msg=name)
    # the gap is excluded, not read as zero: band 2 of t2m stays a plausible temperature
    assert frame["temperature_2m"].min() > 240.0


def test_a_nan_in_one_month_of_one_variable_is_named(tmp_path):
    values = cds_field("stl3", MONTHS)
    lat2, lon2 = np.meshgrid(CDS_LAT, CDS_LON, indexing="ij")
    values[2, (lat2 == 68.0) & (lon2 == -150.0)] = np.nan  # one land cell of band 4, March only
    path = write_cds_netcdf(tmp_path / "hole.nc", MONTHS, fields={"stl3": values})
    with pytest.raises(SourceError, match=r"hole.nc: variable stl3, band 4, month 2020-03: .*% of the band's weight"):
        read(path)
