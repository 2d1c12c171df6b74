"""Projection frames, ensemble statistics, CF-netCDF export and the late-century check.

Expected values are worked out by hand on constructed frames.
"""

import dataclasses
import datetime as dt
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import xarray as xr

from ml import projections as P
from ml.unit_arrays import Units
from sources import catalog

UNITS = Units.bands()  # unit positions are band ids
MONTHS = np.arange(np.datetime64("2024-01"), np.datetime64("2025-01"))  # 12 months


def constant_frame(scenario, model, value, bands=(0, 1), months=MONTHS, layer_step=0.0, member=0):
    """Every band and month at `value` (+ k * layer_step for layer k)."""
    band = np.repeat(np.asarray(bands), len(months))
    month = np.tile(months, len(bands))
    values = np.full((len(band), 4), float(value)) + layer_step * np.arange(4)
    return P.projection_frame(scenario, model, UNITS, band, month, values, member)


# --- projection_frame -------------------------------------------------------------------


def test_projection_frame_shape_columns_and_types():
    band = np.array([1, 0, 1])
    month = np.array(["2024-02", "2024-01", "2024-01"], dtype="datetime64[M]")
    values = np.arange(12, dtype=float).reshape(3, 4)
    frame = P.projection_frame("rcp45", "gru", UNITS, band, month, values, member=3)
    assert frame.columns == ["scenario", "model", "member", "unit", "band", "month", *catalog.TARGETS]
    assert frame.shape == (3, 10) and frame["member"].to_list() == [3, 3, 3]
    assert frame.schema["band"] == pl.Int64 and frame.schema["month"] == pl.Date
    # sorted by band then month; the values travel with their rows
    assert frame["band"].to_list() == [0, 1, 1]
    assert frame["month"].to_list() == [dt.date(2024, 1, 1), dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
    assert frame.row(0, named=True)["t_soil_0"] == 4.0  # input row 1
    assert frame.row(2, named=True)["t_soil_3"] == 3.0  # input row 0
    assert set(frame["scenario"]) == {"rcp45"} and set(frame["model"]) == {"gru"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scenario": "rcp99"}, "unknown scenario"),
        ({"model": "ensemble_mean"}, "reserved"),
        ({"unit": np.array([0, 7])}, "outside the 6 units"),
        ({"predictions": np.ones((2, 3))}, "must be"),
        ({"predictions": np.array([[1.0, np.nan, 1.0, 1.0], [1.0] * 4])}, "non-finite"),
        (
            {"target_month": np.array(["2024-01", "2024-01"], dtype="datetime64[M]"), "unit": np.array([3, 3])},
            "more than one row",
        ),
    ],
)
def test_projection_frame_rejects(kwargs, message):
    arguments = {
        "scenario": "rcp26",
        "model": "tcn",
        "units": UNITS,
        "unit": np.array([0, 1]),
        "target_month": np.array(["2024-01", "2024-01"], dtype="datetime64[M]"),
        "predictions": np.ones((2, 4)),
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        P.projection_frame(**arguments)


# --- with_ensemble ----------------------------------------------------------------------


def test_ensemble_mean_and_quantiles_of_the_members():
    frame = pl.concat(
        [constant_frame("rcp26", "gru", v, member=m, layer_step=1.0) for m, v in enumerate((0.0, 1.0, 2.0, 3.0, 4.0))]
    )
    out = P.with_ensemble(frame)
    assert out.columns == [*frame.columns, *P.QUANTILE_COLUMNS]
    assert out.height == frame.height + 2 * 12  # one ensemble row per band and month
    members = out.filter(pl.col("model") != "ensemble_mean")
    assert members.select(P.QUANTILE_COLUMNS).null_count().row(0) == (frame.height,) * 8
    ensemble = out.filter(pl.col("model") == "ensemble_mean")
    assert ensemble["member"].null_count() == 24
    # layer k: members k .. 4 + k -> mean 2 + k, linear 5% quantile k + 0.2, 95% k + 3.8
    for k in range(4):
        assert ensemble[f"t_soil_{k}"].to_list() == pytest.approx([2.0 + k] * 24)
        assert ensemble[f"t_soil_{k}_q05"].to_list() == pytest.approx([k + 0.2] * 24)
        assert ensemble[f"t_soil_{k}_q95"].to_list() == pytest.approx([k + 3.8] * 24)


def test_reference_models_stay_out_of_the_ensemble_and_it_is_idempotent():
    frame = pl.concat(
        [
            constant_frame("rcp26", "gru", 1.0),
            constant_frame("rcp26", "tcn", 3.0),
            constant_frame("rcp26", "thermal_core", 100.0),
            constant_frame("rcp85", "gru", 5.0),
            constant_frame("rcp85", "tcn", 9.0),
            constant_frame("rcp85", "bilstm", 10.0),
        ]
    )
    out = P.with_ensemble(frame)
    ensemble = out.filter(pl.col("model") == "ensemble_mean")
    by_scenario = dict(ensemble.group_by("scenario").agg(pl.col("t_soil_0").mean()).iter_rows())
    assert by_scenario["rcp26"] == pytest.approx(2.0)  # the core's 100 is not averaged in
    assert by_scenario["rcp85"] == pytest.approx(8.0)  # (5 + 9 + 10) / 3
    assert P.with_ensemble(out).equals(out)


def test_ensemble_needs_a_network_and_rejects_duplicates():
    with pytest.raises(ValueError, match="no network member"):
        P.with_ensemble(constant_frame("rcp45", "thermal_core", 2.0))
    doubled = pl.concat([constant_frame("rcp45", "gru", 2.0), constant_frame("rcp45", "gru", 3.0)])
    with pytest.raises(ValueError, match="more than one row"):
        P.with_ensemble(doubled)
    two_members = pl.concat([constant_frame("rcp45", "gru", 2.0), constant_frame("rcp45", "gru", 3.0, member=1)])
    assert P.with_ensemble(two_members).filter(pl.col("model") == "ensemble_mean")["t_soil_0"][0] == 2.5


# --- CF netCDF --------------------------------------------------------------------------


@pytest.fixture
def cf_frame():
    """rcp26 with gru (members 0, 1), tcn and the core, rcp85 with gru member 0 only, bands 0 and 2."""
    rng = np.random.default_rng(7)
    frames = []
    runs = (
        ("rcp26", "gru", 0),
        ("rcp26", "gru", 1),
        ("rcp26", "tcn", 0),
        ("rcp26", "thermal_core", 0),
        ("rcp85", "gru", 0),
    )
    for scenario, model, member in runs:
        band = np.repeat([0, 2], len(MONTHS))
        month = np.tile(MONTHS, 2)
        frames.append(P.projection_frame(scenario, model, UNITS, band, month, rng.normal(size=(len(band), 4)), member))
    return pl.concat(frames)


def test_cf_netcdf_round_trip(cf_frame, tmp_path):
    target = tmp_path / "out" / "projections.nc"
    assert P.to_cf_netcdf(cf_frame, target) == target
    assert sorted(os.listdir(target.parent)) == ["projections.nc"]
    with xr.open_dataset(target) as ds:
        ds.load()
    variable = ds["soil_temperature"]
    assert variable.dims == ("scenario", "model", "member", "band", "depth", "time")
    sizes = {"scenario": 2, "model": 3, "member": 2, "band": 2, "depth": 4, "time": 12, "bnds": 2}
    assert dict(ds.sizes) == sizes
    assert variable.dtype == np.float32
    assert variable.attrs["units"] == "degC" and variable.attrs["standard_name"] == "soil_temperature"
    assert "time: mean" in variable.attrs["cell_methods"]
    assert np.isnan(variable.encoding["_FillValue"])
    for name in ("soil_temperature_ensemble_mean", "soil_temperature_q05", "soil_temperature_q95"):
        assert ds[name].dims == ("scenario", "band", "depth", "time") and ds[name].attrs["units"] == "degC"
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert ds.attrs["institution"] == "permafrost lakehouse"

    # coordinates: networks first, then the reference models; members are seed indices
    assert ds["scenario"].values.tolist() == ["rcp26", "rcp85"]
    assert ds["model"].values.tolist() == ["gru", "tcn", "thermal_core"]
    assert ds["member"].values.tolist() == [0, 1]
    assert ds["band"].values.tolist() == [0, 2]
    assert ds["lat_south"].values.tolist() == [catalog.BANDS[0].south, catalog.BANDS[2].south]
    assert ds["lat_north"].attrs["units"] == "degrees_north"
    assert ds["depth"].values == pytest.approx([0.035, 0.175, 0.64, 1.945])
    assert ds["depth"].attrs["positive"] == "down" and ds["depth"].attrs["axis"] == "Z"
    assert ds["depth_bnds"].values.tolist() == [[0.0, 0.07], [0.07, 0.28], [0.28, 1.0], [1.0, 2.89]]
    assert np.issubdtype(ds["time"].dtype, np.datetime64)  # decoded
    assert ds["time"].values[0] == np.datetime64("2024-01-01")
    assert ds["time"].values[-1] == np.datetime64("2024-12-01")
    assert ds["time"].encoding["units"] == "days since 2001-01-01"
    assert ds["time"].encoding["calendar"] == "standard"
    np.testing.assert_array_equal(
        ds["time_bnds"].values[1], np.array(["2024-02-01", "2024-03-01"], dtype="datetime64[ns]")
    )
    assert ds["time_bnds"].values[-1, 1] == np.datetime64("2025-01-01")

    # every value of every member matches the frame
    for scenario, model, member in (("rcp26", "gru", 1), ("rcp26", "tcn", 0), ("rcp85", "gru", 0)):
        rows = cf_frame.filter(
            pl.col("scenario") == scenario, pl.col("model") == model, pl.col("member") == member, pl.col("band") == 2
        ).sort("month")
        block = variable.sel(scenario=scenario, model=model, member=member, band=2).values.T  # (time, depth)
        np.testing.assert_array_equal(block, rows.select(catalog.TARGETS).to_numpy().astype(np.float32))
    # absent runs are NaN: tcn has no member 1, nothing but gru runs under rcp85
    assert np.isnan(variable.sel(scenario="rcp26", model="tcn", member=1).values).all()
    assert np.isnan(variable.sel(scenario="rcp85", model="tcn").values).all()
    # the ensemble is over the networks' members, not the core
    rcp26 = variable.sel(scenario="rcp26")
    networks = np.stack(
        [rcp26.sel(model="gru", member=0), rcp26.sel(model="gru", member=1), rcp26.sel(model="tcn", member=0)]
    )
    mean = ds["soil_temperature_ensemble_mean"].sel(scenario="rcp26").values
    np.testing.assert_allclose(mean, networks.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        ds["soil_temperature_q95"].sel(scenario="rcp26").values, np.quantile(networks, 0.95, axis=0), rtol=1e-5
    )
    np.testing.assert_array_equal(
        ds["soil_temperature_ensemble_mean"].sel(scenario="rcp85").values,
        variable.sel(scenario="rcp85", model="gru", member=0).values,
    )


# A file written by the code before its CF attributes became data (projections_cf.yaml), from
# `cf_frame`: the layout moved, the file must not change.
CF_REFERENCE = Path(__file__).with_name("reference") / "projections_cf.nc"


@pytest.mark.parametrize("decode", [True, False])
def test_cf_netcdf_is_the_file_written_before_the_attributes_became_data(cf_frame, tmp_path, decode):
    written = P.to_cf_netcdf(cf_frame, tmp_path / "projections.nc")
    # decode_cf=False compares the stored attributes too: _FillValue, units, calendar, coordinates
    with xr.open_dataset(written, decode_cf=decode) as new, xr.open_dataset(CF_REFERENCE, decode_cf=decode) as old:
        new.load(), old.load()
    assert old.attrs.pop("history").endswith(" written by ml.projections.to_cf_netcdf")
    assert new.attrs.pop("history").endswith(" written by ml.projections.to_cf_netcdf")
    assert new.identical(old)
    assert list(new.variables) == list(old.variables) and list(new.attrs) == list(old.attrs)
    for name in old.variables:
        assert list(new[name].attrs) == list(old[name].attrs), name
        # how each is stored: dtype, compression, chunks (not where the file lies; _FillValue,
        # NaN, is an attribute when not decoded)
        stored = {key: value for key, value in old[name].encoding.items() if key not in ("source", "_FillValue")}
        assert {key: new[name].encoding.get(key) for key in stored} == stored, name


def test_cf_attributes_fill_their_fields():
    filled = P._filled(
        {"lon": "{west}", "comment": "over {networks}", "units": "degC"}, {"west": -168.0, "networks": "gru"}
    )
    assert filled == {"lon": -168.0, "comment": "over gru", "units": "degC"}
    with pytest.raises(KeyError, match="networks"):
        P._filled({"comment": "over {networks}"}, {})


# --- late-century difference ------------------------------------------------------------


def century_frame(scenario, model, early, late, band=0):
    """2079-2100 monthly: `early` through 2080, `late` from 2081."""
    months = np.arange(np.datetime64("2079-01"), np.datetime64("2101-01"))
    values = np.where((months.astype("datetime64[Y]").astype(int) + 1970) >= 2081, late, early)
    return P.projection_frame(
        scenario, model, UNITS, np.full(len(months), band), months, np.repeat(values[:, None], 4, axis=1).astype(float)
    )


def test_late_century_difference_sign_and_period():
    frame = pl.concat(
        [
            # gru: rcp85 warmer late (4 vs 1) though colder before 2081 (-10 vs 0): only 2081-2100 counts
            century_frame("rcp85", "gru", -10.0, 4.0),
            century_frame("rcp26", "gru", 0.0, 1.0),
            # tcn: rcp85 cooler than rcp26 late, a failed check
            century_frame("rcp85", "tcn", 0.0, 0.5),
            century_frame("rcp26", "tcn", 0.0, 2.0),
            # bilstm has no rcp26: left out
            century_frame("rcp85", "bilstm", 0.0, 3.0),
        ]
    )
    out = P.late_century_difference(frame)
    assert out.columns == ["model", "member", "unit", "band", "warmer_mean", "cooler_mean", "difference", "n_months"]
    assert out["model"].to_list() == ["gru", "tcn"]
    assert out["difference"].to_list() == pytest.approx([3.0, -1.5])
    assert out["warmer_mean"].to_list() == pytest.approx([4.0, 0.5])
    assert out["n_months"].to_list() == [240, 240]
    # an earlier window sees the gru sign flip
    early = P.late_century_difference(frame, first_year=2079, last_year=2080)
    assert early.filter(pl.col("model") == "gru")["difference"][0] == pytest.approx(-10.0)
    # the ensemble is one more model: (4 + 0.5) / 2 - (1 + 2) / 2 = 0.75
    with_mean = P.late_century_difference(P.with_ensemble(frame.filter(pl.col("model") != "bilstm")))
    assert with_mean.filter(pl.col("model") == "ensemble_mean")["difference"][0] == pytest.approx(0.75)


def test_late_century_difference_without_data_raises():
    frame = century_frame("rcp85", "gru", 0.0, 1.0)
    with pytest.raises(ValueError, match="no month"):
        P.late_century_difference(frame)


# --- a scenario's projections ----------------------------------------------------------------


class CoreAsIs:
    """A residual network whose correction is zero: it predicts the core of the draw it was given."""

    def __init__(self, member, scaler):
        self.member, self.scaler = member, scaler

    def predict(self, windows):
        return windows.core


class Ridge:
    """A fitted ridge's interface: predicts the first four drivers."""

    from ml.residual import DRIVERS as drivers

    def predict(self, drivers, calendar):
        return drivers[..., :4]


UNITS_01 = Units.bands([0, 1])


def scenario_members(draws):
    from ml.residual import DRIVERS
    from ml.scenario_members import ScenarioMembers

    rng = np.random.default_rng(4)
    months = np.arange(np.datetime64("1998-01"), np.datetime64("2031-01"))
    drivers = rng.normal(size=(draws, len(months), 2, len(DRIVERS))).astype(np.float32)
    core = (rng.normal(size=(draws, len(months), 2, 4)) + np.arange(draws)[:, None, None, None]).astype(np.float32)
    return ScenarioMembers(months, drivers, core, ("qdm",) * draws, DRIVERS, np.arange(2))


def test_a_scenarios_projections_put_each_network_on_its_own_draw():
    from ml.ensemble import TrainedArchitecture
    from ml.residual import ResidualScaler

    members = scenario_members(draws=9)
    calendar = members.months.astype(np.int64) % 12
    scaler = ResidualScaler.fit(members.drivers[0], members.core[0], members.core[0], calendar, calendar >= 0)
    gru = TrainedArchitecture("gru", "residual", [CoreAsIs(0, scaler), CoreAsIs(1, scaler)])
    frame = P.scenario_projections("rcp45", members, {"gru": gru}, Ridge(), UNITS_01)
    assert frame["model"].unique(maintain_order=True).to_list() == ["thermal_core", "dl_ridge", "gru"]
    assert frame["month"].min() == dt.date(2001, 1, 1) and frame["month"].max() == dt.date(2030, 12, 1)
    assert set(frame["scenario"]) == {"rcp45"}

    def values(model, member, band=1):
        rows = frame.filter(pl.col("model") == model, pl.col("member") == member, pl.col("band") == band)
        return rows.sort("month").select(catalog.TARGETS).to_numpy()

    projected = members.months >= np.datetime64("2001-01")
    # the references on the unperturbed draw 0; gru's networks 0 and 1 on draws 3 and 8
    assert np.allclose(values("thermal_core", 0), members.core[0][projected, 1])
    assert np.allclose(values("dl_ridge", 0), members.drivers[0][projected, 1, :4])
    assert np.allclose(values("gru", 0), members.core[3][projected, 1])
    assert np.allclose(values("gru", 1), members.core[8][projected, 1])
    # a draw of another core structure moves its network by that structure's offset, not the references
    shifted = dataclasses.replace(members, offsets=np.ones_like(members.core) * np.arange(9)[:, None, None, None])
    moved = P.scenario_projections("rcp45", shifted, {"gru": gru}, Ridge(), UNITS_01)
    rows = moved.filter(pl.col("model") == "gru", pl.col("member") == 1, pl.col("band") == 1).sort("month")
    assert np.allclose(rows.select(catalog.TARGETS).to_numpy(), members.core[8][projected, 1] + 8.0)
    core_rows = moved.filter(pl.col("model") == "thermal_core", pl.col("band") == 1).sort("month")
    assert np.allclose(core_rows.select(catalog.TARGETS).to_numpy(), members.core[0][projected, 1])
    with pytest.raises(ValueError, match="gru network 1 needs bias-correction draw 8.*prepared 5"):
        P.scenario_projections("rcp45", scenario_members(draws=5), {"gru": gru}, Ridge(), UNITS_01)
    paper = TrainedArchitecture("tcn", "paper", [object()])
    with pytest.raises(ValueError, match="tcn is the paper design"):
        P.scenario_projections("rcp45", members, {"tcn": paper}, Ridge(), UNITS_01)
    with pytest.raises(ValueError, match="units differ"):
        P.scenario_projections("rcp45", members, {"gru": gru}, Ridge(), UNITS)


def test_cf_netcdf_of_units_that_are_not_bands_is_a_discrete_sampling_geometry(tmp_path):
    basins = Units.of(
        pl.DataFrame(
            {
                "unit": [3, 15, 308],
                "kind": "basin",
                "name": ["Little Meadow Creek", "Goldstream Creek", "Falls Creek"],
                "latitude": [61.57, 64.2, 56.83],
                "longitude": [-149.76, -147.0, -134.69],
                "area_km2": [115.5, 40.0, 16.5],
                "band": [1, 2, None],
                "nearest_band": [1, 2, 0],
                "series_group": [3, 15, 308],
            }
        )
    )
    rng = np.random.default_rng(2)
    unit = np.repeat(np.arange(3), len(MONTHS))
    month = np.tile(MONTHS, 3)
    frame = pl.concat(
        P.projection_frame("rcp85", model, basins, unit, month, rng.normal(size=(len(unit), 4)), member)
        for model, member in (("gru", 0), ("gru", 1), ("thermal_core", 0))
    )
    assert frame.filter(pl.col("unit") == 308)["band"].null_count() == 3 * 12  # outside every band
    written = P.to_cf_netcdf(frame, tmp_path / "basins.nc", basins)
    with xr.open_dataset(written) as ds:
        ds.load()
    assert ds.attrs["featureType"] == "timeSeries" and ds.attrs["Conventions"] == "CF-1.8"
    assert ds["soil_temperature"].dims == ("scenario", "model", "member", "unit", "depth", "time")
    assert ds["soil_temperature_ensemble_mean"].dims == ("scenario", "unit", "depth", "time")
    assert ds["unit"].values.tolist() == [3, 15, 308] and ds["unit"].attrs["cf_role"] == "timeseries_id"
    assert ds["lat"].dims == ("unit",) and ds["lat"].values.tolist() == pytest.approx([61.57, 64.2, 56.83])
    assert ds["lon"].attrs["standard_name"] == "longitude" and ds["unit_band"].values.tolist() == [1, 2, -1]
    assert ds["unit_name"].values.tolist()[2] == "Falls Creek" and "band" not in ds.variables
    # the values are the rows of the frame: gru member 1 of basin 15
    rows = frame.filter(pl.col("model") == "gru", pl.col("member") == 1, pl.col("unit") == 15).sort("month")
    block = ds["soil_temperature"].sel(scenario="rcp85", model="gru", member=1, unit=15).values.T
    np.testing.assert_allclose(block, rows.select(catalog.TARGETS).to_numpy(), rtol=1e-6)
