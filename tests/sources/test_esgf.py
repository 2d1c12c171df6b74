"""ESGF CMIP5 netCDF: runs split over files, cftime calendars, 0..360 longitudes, land weights."""

import datetime as dt

import numpy as np
import pytest
import xarray as xr
from generated_files import CMIP_LAT, CMIP_LON, cmip_land, write_cmip5

from sources import catalog
from sources.base import SourceError
from sources.config import EsgfClimateModelConfig
from sources.esgf import EsgfClimateModelSource, parse_name


def run(folder, experiment="rcp45", spans=(((2006, 1), (2010, 12)), ((2011, 1), (2012, 12))), **kwargs):
    folder.mkdir(exist_ok=True)
    for variable in catalog.CMIP5_VARIABLES:
        for first, last in spans:
            write_cmip5(folder, variable, experiment, first, last, **kwargs)
    return folder


def source(folder, **config):
    return EsgfClimateModelSource(EsgfClimateModelConfig(kind="esgf", paths=[str(folder / "*.nc")], **config))


def test_file_names_are_parsed_as_esgf_publishes_them(tmp_path):
    item = parse_name(tmp_path / "tas_Amon_GFDL-ESM2M_rcp85_r1i1p1_200601-201012.nc")
    assert (item.variable, item.table, item.model, item.experiment, item.ensemble) == (
        "tas",
        "Amon",
        "GFDL-ESM2M",
        "rcp85",
        "r1i1p1",
    )
    with pytest.raises(SourceError, match="not an ESGF CMIP5 file name"):
        parse_name(tmp_path / "tas_2006.nc")


def test_a_noleap_run_split_over_two_files_reads_as_one(tmp_path):
    split = source(run(tmp_path / "split")).read_experiment("rcp45")
    whole = source(run(tmp_path / "whole", spans=(((2006, 1), (2012, 12)),))).read_experiment("rcp45")
    assert split.equals(whole)
    assert split.height == 7 * 12 * 6 and split["calendar"].unique().to_list() == ["noleap"]
    assert split["month"].min() == dt.date(2006, 1, 1) and split["month"].max() == dt.date(2012, 12, 1)


def test_a_360_day_run_keys_its_months_by_the_models_own_calendar(tmp_path):
    frame = source(run(tmp_path / "hadley", spans=(((2001, 1), (2005, 12)),), calendar="360_day")).read_experiment(
        "rcp45"
    )
    assert frame["calendar"].unique().to_list() == ["360_day"]
    assert frame["month"].n_unique() == 60  # February 30 is just part of February


def test_longitudes_0_to_360_and_minus_180_to_180_agree(tmp_path):
    east = source(run(tmp_path / "east", spans=(((2006, 1), (2006, 12)),))).read_experiment("rcp45")
    shifted = (CMIP_LON + 180.0) % 360.0 - 180.0
    order = np.argsort(shifted)
    folder = tmp_path / "west"
    folder.mkdir()
    for variable in catalog.CMIP5_VARIABLES:
        path = write_cmip5(tmp_path / "east", variable, "rcp45", (2006, 1), (2006, 12))
        with xr.open_dataset(path, decode_times=False) as data:
            moved = data.load().isel(lon=order).assign_coords(lon=shifted[order])
        moved.to_netcdf(folder / path.name)
    west = source(folder).read_experiment("rcp45")
    for variable in catalog.CMIP5_VARIABLES:
        np.testing.assert_allclose(west[variable].to_numpy(), east[variable].to_numpy(), rtol=1e-9)


def test_atmosphere_variables_are_averaged_over_land_only(tmp_path):
    """Amon fields have values over the sea too; only land cells (where the model's Lmon soil
    moisture exists) may count: a 320 K sea must not move the band means."""
    normal = source(run(tmp_path / "normal", spans=(((2006, 1), (2006, 12)),))).read_experiment("rcp45")
    folder = run(tmp_path / "hot_sea", spans=(((2006, 1), (2006, 12)),))
    path = next(folder.glob("tas_*.nc"))
    with xr.open_dataset(path, decode_times=False) as data:
        data = data.load()
    data["tas"] = data["tas"].where(cmip_land(), 320.0)
    path.unlink()
    data.to_netcdf(path)
    hot_sea = source(folder).read_experiment("rcp45")
    np.testing.assert_allclose(hot_sea["tas"].to_numpy(), normal["tas"].to_numpy(), rtol=1e-9)
    # with a land fraction file that calls every cell land, the hot sea shows
    sftlf = xr.Dataset(
        {"sftlf": (("lat", "lon"), np.full((CMIP_LAT.size, CMIP_LON.size), 100.0))},
        coords={"lat": CMIP_LAT, "lon": CMIP_LON},
    )
    sftlf.to_netcdf(tmp_path / "sftlf_fx_TEST-ESM1_rcp45_r0i0p0.nc")
    all_land = source(folder, land_fraction=tmp_path / "sftlf_fx_TEST-ESM1_rcp45_r0i0p0.nc").read_experiment("rcp45")
    assert (all_land["tas"].to_numpy() > normal["tas"].to_numpy() + 1.0).any()


def test_an_upward_flux_written_positive_down_is_flipped_back(tmp_path):
    up = source(run(tmp_path / "up", spans=(((2006, 1), (2006, 12)),))).read_experiment("rcp45")
    folder = tmp_path / "down"
    folder.mkdir()
    for variable in catalog.CMIP5_VARIABLES:
        path = write_cmip5(folder, variable, "rcp45", (2006, 1), (2006, 12))
        if variable == "hfls":
            with xr.open_dataset(path, decode_times=False) as data:
                data = data.load()
            data["hfls"] = -data["hfls"]
            data["hfls"].attrs.update({"positive": "down", "units": "W m-2"})
            path.unlink()
            data.to_netcdf(path)
    down = source(folder).read_experiment("rcp45")
    np.testing.assert_allclose(down["hfls"].to_numpy(), up["hfls"].to_numpy(), rtol=1e-6)


def test_two_models_need_a_choice(tmp_path):
    folder = run(tmp_path / "two", spans=(((2006, 1), (2006, 12)),))
    write_cmip5(folder, "tas", "rcp45", (2006, 1), (2006, 12), model="OTHER-ESM")
    with pytest.raises(
        SourceError, match=r"the files hold models \['OTHER-ESM', 'TEST-ESM1'\]; choose one with `model:`"
    ):
        source(folder)
    assert source(folder, model="TEST-ESM1").experiments() == ("rcp45",)
