"""The demo worlds: each deterministic and prefix stable, each different where its soil physics
differs, each with a perfect-model truth and floor. (Their realism: test_demo.py, per world.)"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from sources import catalog, demo
from sources.simulator import runs, soil, worlds
from sources.simulator.unit_climates import band_climates

SEED = catalog.DEFAULT_SEED
TRUTH_START = dt.date(1990, 1, 1)  # shorter than 1950: enough for the spin-ups to be forgotten
DEFAULT = demo.DEFAULT_WORLD
OTHERS = [name for name in demo.WORLDS if name != DEFAULT]


def history(world: str) -> dict[str, np.ndarray]:
    """The reanalysis world 2001-2023 (cached by the demo), arrays (months, ..., bands)."""
    return demo.reanalysis_cell_truth(demo.DemoSettings(seed=SEED, world=world))


def calendar_month(run: dict[str, np.ndarray]) -> np.ndarray:
    return np.arange(len(run["days"])) % 12  # 0 = January: runs start in a January


@pytest.fixture(scope="module")
def truths() -> dict[str, pl.DataFrame]:
    """Every world's rcp85 truth from 1990, one run each."""
    return {
        name: demo.DemoClimateModelSource(
            demo.DemoSettings(seed=SEED, world=name, cmip_historical_start=TRUTH_START)
        ).perfect_model_truth("rcp85")
        for name in demo.WORLDS
    }


def test_worlds_are_named_and_described():
    assert DEFAULT == "default" and len(OTHERS) >= 3
    for name, world in demo.WORLDS.items():
        assert world.name == name and world.description and "\n" not in world.description
    assert demo.DemoSettings(world="peat").world == "peat"
    with pytest.raises(ValueError, match="wide_freezing"):  # names the worlds there are
        demo.DemoSettings(world="swamp")


@pytest.mark.parametrize("world", list(demo.WORLDS))
def test_each_world_is_deterministic_and_prefix_stable(world):
    latest = dt.date(2003, 12, 1)
    months = catalog.month_range("2001-01", "2003-12")
    first = demo.DemoReanalysisSource(demo.DemoSettings(seed=SEED, world=world, latest_month=latest)).read_months(
        months
    )
    again = runs.reanalysis(SEED, latest, band_climates(), demo.WORLDS[world])  # simulated anew, not cached
    cached = demo._reanalysis_world(demo.DemoSettings(seed=SEED, world=world, latest_month=latest))
    assert all(np.array_equal(again[name], cached[name]) for name in again)
    full = demo.DemoReanalysisSource(demo.DemoSettings(seed=SEED, world=world)).read_months(months)
    assert full.equals(first)  # publishing 2004-2023 changes nothing before


def test_the_worlds_differ_only_in_the_soil():
    default = history(DEFAULT)
    for name in OTHERS:
        other = history(name)
        for shared in ("t_air", "precip", "snowfall", "sw_down", "lw_down", "t_skin", "snow_depth_end"):
            assert np.array_equal(other[shared], default[shared]), (name, shared)
        # a longer spin-up (deep_ground) leaves the soil-water bucket a touch different at first
        assert np.abs(other["theta"] - default["theta"]).max() < 1e-4, name
        assert np.abs(other["t_soil"] - default["t_soil"]).mean() > 0.05, name


def test_wide_freezing_lengthens_the_zero_curtain():
    """The phase change spreads over kelvins: the soil near 0.5 m spends more months a year
    partly frozen (10-90 % of its water liquid, by each world's own freezing curve)."""
    cell = int(np.argmin(np.abs(demo.cell_centres_m() - 0.5)))
    months_partly_frozen = {}
    for name in (DEFAULT, "wide_freezing"):
        liquid = demo.WORLDS[name].freezing.liquid_share(history(name)["t_soil_cells"][:, cell])
        months_partly_frozen[name] = ((liquid > 0.1) & (liquid < 0.9)).sum(axis=0) / 23
    wide, narrow = months_partly_frozen["wide_freezing"], months_partly_frozen[DEFAULT]
    assert (wide >= narrow).all() and (wide[1:] > narrow[1:] + 1.0).all(), months_partly_frozen  # band 0 barely freezes
    assert (wide - narrow).mean() > 3.0, months_partly_frozen


def test_hoar_rich_drifting_snow_keeps_the_winter_soil_warmer():
    """Depth hoar under steep gradients insulates the interior's packs better than the uniform
    layer: January-March 0-7 cm soil is warmer in bands 1-4."""
    winter = {
        name: history(name)["t_soil"][np.isin(calendar_month(history(name)), [0, 1, 2]), 0].mean(axis=0)
        for name in (DEFAULT, "drifting_snow")
    }
    warmer = winter["drifting_snow"][1:5] - winter[DEFAULT][1:5]
    assert (warmer > 0.5).all() and warmer.mean() > 1.5, winter


def test_a_patchy_snow_cover_insulates_less_than_a_uniform_one():
    depth, conductivity, t_skin = np.array([0.1, 0.4, 0.8]), np.full(3, 0.15), np.full(3, -20.0)
    uniform = soil._top_resistance(depth, conductivity, t_skin, worlds.SnowLaw())
    patchy = soil._top_resistance(depth, conductivity, t_skin, worlds.SnowLaw(depth_cv=0.6))
    hoar = soil._top_resistance(depth, conductivity, t_skin, worlds.SnowLaw(hoar_max=0.5))
    assert np.allclose(uniform, soil.SURFACE_RESISTANCE + depth / conductivity)
    assert (patchy < uniform).all() and (hoar > uniform).all()


def test_peat_widens_the_thermal_offset():
    """Peat conducts better frozen than thawed and holds more water: the 1-2.89 m soil sits
    further below the 0-7 cm soil's mean than under the thin default mat."""
    offset = {
        name: (history(name)["t_soil"][:, 3] - history(name)["t_soil"][:, 0]).mean(axis=0) for name in (DEFAULT, "peat")
    }
    assert (offset["peat"] < offset[DEFAULT]).all(), offset
    assert (offset[DEFAULT] - offset["peat"]).mean() > 0.25, offset


def test_deep_ground_slows_the_warming_at_depth(truths):
    """A 30 m column stores heat: by 2081-2100 the 1-2.89 m soil has warmed less, for the same
    warming of the 0-7 cm soil, than over the default world's 5 m column (bands 2-5)."""
    ratio = {}
    for name in (DEFAULT, "deep_ground"):
        frame = truths[name].with_columns(pl.col("month").dt.year().alias("year"))
        early, late = (
            frame.filter(pl.col("year").is_between(*years))
            .group_by("band")
            .agg(pl.col("^t_soil_[03]$").mean())
            .sort("band")
            for years in ((2006, 2025), (2081, 2100))
        )
        ratio[name] = ((late["t_soil_3"] - early["t_soil_3"]) / (late["t_soil_0"] - early["t_soil_0"])).to_numpy()
    assert (ratio["deep_ground"][2:] < ratio[DEFAULT][2:] - 0.05).all(), ratio


@pytest.mark.parametrize("world", list(demo.WORLDS))
def test_truth_and_floor_run_in_every_world(world, truths):
    truth = truths[world]
    assert truth.height == len(catalog.month_range(TRUTH_START, catalog.CMIP5_RCP_END)) * catalog.N_BANDS
    assert (
        truth.select(catalog.TARGETS).to_numpy().std() > 1.0
        and np.isfinite(truth.select(catalog.TARGETS).to_numpy()).all()
    )
    if world != DEFAULT:
        assert not truth.select(catalog.TARGETS).equals(truths[DEFAULT].select(catalog.TARGETS))
    source = demo.DemoClimateModelSource(demo.DemoSettings(seed=SEED, world=world, cmip_historical_start=TRUTH_START))
    floor = source.perfect_model_floor("rcp85", truth.filter(pl.col("month") >= dt.date(2030, 1, 1)))
    # the floor on the truth's own drivers gives the truth back once its spin-up is forgotten;
    # single months may still differ where a talik survives in one run and not in the other
    late = pl.col("month") >= dt.date(2050, 1, 1)
    difference = (
        floor.filter(late).select(catalog.TARGETS).to_numpy() - truth.filter(late).select(catalog.TARGETS).to_numpy()
    )
    assert np.abs(difference).mean(axis=0).max() < 0.2, np.abs(difference).mean(axis=0)
