"""The demo source: raw schemas and units, the physics it promises, determinism and prefix stability."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from sources import base, catalog, demo, validation

KELVIN = 273.15
HISTORY = catalog.month_range(catalog.HISTORY_START, dt.date(2023, 12, 1))
SOIL_LEVELS = [f"soil_temperature_level_{i}" for i in range(1, 5)]
SOIL_WATER = [f"volumetric_soil_water_layer_{i}" for i in range(1, 5)]
INTERIOR_AND_NORTH = [2, 3, 4, 5]


def with_calendar(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col("month").dt.year().alias("year"), pl.col("month").dt.month().alias("calendar_month")
    )


@pytest.fixture(scope="module")
def era5() -> pl.DataFrame:
    """2001-2023 with the default settings, plus calendar columns for grouping."""
    return with_calendar(demo.DemoReanalysisSource().read_months(HISTORY))


@pytest.fixture(scope="module", params=list(demo.WORLDS))
def world_era5(request) -> pl.DataFrame:
    """2001-2023 of every demo world (the default one first), with calendar columns."""
    return with_calendar(demo.DemoReanalysisSource(demo.DemoSettings(world=request.param)).read_months(HISTORY))


@pytest.fixture(scope="module")
def cmip() -> dict[str, pl.DataFrame]:
    source = demo.DemoClimateModelSource()
    return {experiment: with_calendar(source.read_experiment(experiment)) for experiment in source.experiments()}


def per_band(frame: pl.DataFrame, expression: pl.Expr) -> np.ndarray:
    """One value per band 0..5."""
    return frame.group_by("band").agg(expression.alias("value")).sort("band")["value"].to_numpy()


def mean_annual_cycle(era5: pl.DataFrame, column: str) -> np.ndarray:
    """2001-2023 mean of each calendar month, shape (12, bands)."""
    cycle = era5.group_by("calendar_month", "band").agg(pl.col(column).mean()).sort("calendar_month", "band")
    return cycle[column].to_numpy().reshape(12, catalog.N_BANDS)


def window_mean(frame: pl.DataFrame, column: str, first_year: int, last_year: int) -> np.ndarray:
    return per_band(frame.filter(pl.col("year").is_between(first_year, last_year)), pl.col(column).mean())


# --- interfaces and schemas ---------------------------------------------------------------


def test_sources_implement_the_interfaces():
    assert isinstance(demo.DemoReanalysisSource(), base.ReanalysisSource)
    assert isinstance(demo.DemoClimateModelSource(), base.ClimateModelSource)
    assert isinstance(demo.DemoStaticSource(), base.StaticSource)
    assert demo.DemoReanalysisSource().latest_month() == catalog.DEFAULT_LATEST_MONTH
    assert demo.DemoClimateModelSource().experiments() == catalog.CMIP5_EXPERIMENTS


def test_reanalysis_schema_rows_and_order(era5):
    frame = era5.drop("year", "calendar_month")
    assert frame.columns == ["band", "month", *catalog.ERA5_LAND_BANDS]
    assert frame.schema["band"] == pl.Int32 and frame.schema["month"] == pl.Date
    assert all(frame.schema[name] == pl.Float64 for name in catalog.ERA5_LAND_BANDS)
    assert frame.height == len(HISTORY) * catalog.N_BANDS
    assert frame.equals(frame.sort("month", "band"))
    assert frame["month"].dt.day().unique().to_list() == [1]
    assert (
        frame.group_by("month")
        .agg(pl.col("band").sort())
        .filter(pl.col("band") != list(range(catalog.N_BANDS)))
        .is_empty()
    )
    # the lake's own checks (ranges, completeness) accept it
    validation.validate_reanalysis(frame, HISTORY, "demo")


def test_reanalysis_values_are_in_era5_land_units(era5):
    seconds = era5["month"].dt.month_end().dt.day().cast(pl.Float64) * 86400.0  # Gregorian month
    longwave = era5["surface_thermal_radiation_downwards_sum"] / seconds
    solar = era5["surface_solar_radiation_downwards_sum"] / seconds
    assert longwave.min() > 120 and longwave.max() < 420  # W m-2 once divided by the month: J m-2 sums
    assert solar.min() >= 0 and solar.max() < 350
    assert era5["temperature_2m"].min() > 215 and era5["temperature_2m"].max() < 300  # K, not degC
    assert all(era5[name].min() > 230 and era5[name].max() < 300 for name in SOIL_LEVELS)
    assert era5["total_precipitation_sum"].max() < 0.5  # m per month, not mm
    annual_mm = per_band(era5, pl.col("total_precipitation_sum").sum()) * 1000 / 23
    assert ((annual_mm > 150) & (annual_mm < 1500)).all()
    for name in SOIL_WATER:
        assert era5[name].min() >= 0.15 and era5[name].max() <= 0.45


def test_cmip_schema_calendar_and_periods(cmip):
    for experiment, frame in cmip.items():
        frame = frame.drop("year", "calendar_month")
        assert frame.columns == ["band", "month", "calendar", "model", *catalog.CMIP5_VARIABLES]
        assert frame.schema["band"] == pl.Int32 and frame.schema["month"] == pl.Date
        assert frame.schema["calendar"] == pl.Utf8 and frame.schema["model"] == pl.Utf8
        assert all(frame.schema[name] == pl.Float64 for name in catalog.CMIP5_VARIABLES)
        assert frame["calendar"].unique().to_list() == ["noleap"]
        assert frame["model"].unique().to_list() == ["DEMO-ESM1"]
        first, last = (
            (dt.date(1950, 1, 1), dt.date(2005, 12, 1))
            if experiment == "historical"
            else (
                dt.date(2006, 1, 1),
                dt.date(2100, 12, 1),
            )
        )
        assert frame["month"].min() == first and frame["month"].max() == last
        assert frame.height == len(catalog.month_range(first, last)) * catalog.N_BANDS
        validation.validate_cmip5(frame, experiment, "demo")


def test_cmip_values_are_in_cmip_units(cmip):
    frame = cmip["rcp45"]
    assert frame["tas"].min() > 215 and frame["tas"].max() < 310  # K
    assert frame["pr"].max() < 2e-4  # kg m-2 s-1: a flux, not a monthly total
    assert frame["rlds"].min() > 120 and frame["rlds"].max() < 450  # W m-2
    mrsos, mrso = frame["mrsos"], frame["mrso"]
    assert mrsos.min() > 0.10 * 1000 * 0.15 and mrsos.max() < 0.10 * 1000 * 0.45  # top 10 cm
    assert (mrso > 10 * mrsos).all()  # the whole column holds far more than its top


def test_unknown_experiment_is_a_source_error():
    with pytest.raises(base.SourceError, match="rcp99"):
        demo.DemoClimateModelSource().read_experiment("rcp99")


# --- published months ---------------------------------------------------------------------


def test_month_after_latest_is_not_published():
    source = demo.DemoReanalysisSource(demo.DemoSettings(latest_month=dt.date(2005, 6, 1)))
    assert source.latest_month() == dt.date(2005, 6, 1)
    assert source.read_months([dt.date(2005, 6, 1)]).height == catalog.N_BANDS
    with pytest.raises(base.NotPublishedError) as raised:
        source.read_months([dt.date(2005, 5, 1), dt.date(2005, 7, 1)])
    assert raised.value.month == dt.date(2005, 7, 1) and raised.value.latest == dt.date(2005, 6, 1)


def test_month_before_history_is_a_source_error():
    with pytest.raises(base.SourceError, match="2000-12"):
        demo.DemoReanalysisSource().read_months([dt.date(2000, 12, 1)])


def test_single_months_match_the_full_read(era5):
    source = demo.DemoReanalysisSource()
    for month in (dt.date(2001, 1, 1), dt.date(2012, 2, 1), dt.date(2023, 12, 1)):
        single = source.read_months([month])
        assert single.equals(era5.filter(pl.col("month") == month).drop("year", "calendar_month"))


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_identical_frames_and_another_seed_differs():
    settings = demo.DemoSettings(seed=7, latest_month=dt.date(2003, 12, 1))
    months = catalog.month_range("2001-01", "2003-12")
    first = demo.DemoReanalysisSource(settings).read_months(months)
    first_cmip = demo.DemoClimateModelSource(settings).read_experiment("rcp85")
    demo._reanalysis_world.cache_clear()  # simulate again rather than reuse the cached world
    demo._cmip_world.cache_clear()
    assert demo.DemoReanalysisSource(settings).read_months(months).equals(first)
    assert demo.DemoClimateModelSource(settings).read_experiment("rcp85").equals(first_cmip)
    other = demo.DemoReanalysisSource(demo.DemoSettings(seed=8, latest_month=dt.date(2003, 12, 1)))
    assert not other.read_months(months).equals(first)


def test_publishing_new_months_does_not_change_old_ones(era5):
    early = demo.DemoReanalysisSource(demo.DemoSettings(latest_month=dt.date(2010, 12, 1)))
    months = catalog.month_range("2001-01", "2010-12")
    expected = era5.filter(pl.col("month") <= dt.date(2010, 12, 1)).drop("year", "calendar_month")
    assert early.read_months(months).equals(expected)


# --- realism targets -----------------------------------------------------------------------


def test_surface_soil_temperature_falls_northward_as_in_era5_land(world_era5):
    t_soil_0 = per_band(world_era5, pl.col("soil_temperature_level_1").mean()) - KELVIN
    target = np.linspace(3.0, -2.3, catalog.N_BANDS)  # the paper: +3 degC in band 0 .. -2.3 degC in band 5
    assert np.abs(t_soil_0 - target).max() < 1.5, t_soil_0
    assert (np.diff(t_soil_0) < 0).all(), t_soil_0


def test_january_and_july_air_temperature(world_era5):
    cycle = mean_annual_cycle(world_era5, "temperature_2m") - KELVIN
    january, july = cycle[0], cycle[6]
    assert ((january[INTERIOR_AND_NORTH] > -27) & (january[INTERIOR_AND_NORTH] < -20)).all(), january
    assert ((july[INTERIOR_AND_NORTH] > 10) & (july[INTERIOR_AND_NORTH] < 16)).all(), july
    assert january[0] > january[INTERIOR_AND_NORTH].max() + 5  # the south is milder


def test_every_world_passes_the_lakes_checks(world_era5):
    validation.validate_reanalysis(world_era5.drop("year", "calendar_month"), HISTORY, "demo")


def test_air_temperature_warms_2001_2023_in_every_band(era5):
    annual = era5.group_by("band", "year").agg(pl.col("temperature_2m").mean()).sort("band", "year")
    for band in range(catalog.N_BANDS):
        rows = annual.filter(pl.col("band") == band)
        slope = np.polyfit(rows["year"].to_numpy(), rows["temperature_2m"].to_numpy(), 1)[0]
        assert slope > 0, f"band {band}: trend {slope * 10:.2f} K/decade"


def test_soil_amplitude_damps_and_maximum_lags_with_depth(era5):
    cycles = np.stack([mean_annual_cycle(era5, level) for level in SOIL_LEVELS])  # (level, month, band)
    amplitude = cycles.max(axis=1) - cycles.min(axis=1)
    assert (np.diff(amplitude, axis=0) < 0).all(), amplitude
    warmest_month = cycles.argmax(axis=1)
    assert (warmest_month[3] > warmest_month[0]).all(), warmest_month


def test_freezing_stalls_near_zero_in_autumn(era5):
    """Zero curtain: while 0.28-1.0 m soil refreezes, latent heat holds it near 0 degC."""
    autumn = era5.filter(pl.col("calendar_month").is_in([9, 10, 11, 12]))
    near_zero = pl.col("soil_temperature_level_3").is_between(KELVIN - 1.0, KELVIN + 0.5)
    months_per_autumn = per_band(autumn, near_zero.sum()) / 23
    assert (months_per_autumn[INTERIOR_AND_NORTH] >= 1.5).all(), months_per_autumn


def test_precipitation_and_snowfall_are_physical(era5):
    total, snow = era5["total_precipitation_sum"], era5["snowfall_sum"]
    assert total.min() >= 0 and snow.min() >= 0
    assert (snow <= total).all()
    snow_share = pl.col("snowfall_sum").sum() / pl.col("total_precipitation_sum").sum()
    share = era5.group_by("calendar_month").agg(snow_share.alias("share"))
    share = dict(zip(share["calendar_month"], share["share"], strict=False))
    assert share[1] > 0.9 and share[7] < 0.1  # snow in winter, rain in summer
    wettest = mean_annual_cycle(era5, "total_precipitation_sum").argmax(axis=0) + 1
    assert np.isin(wettest, [7, 8, 9, 10]).all(), wettest  # summer-autumn maximum


def test_soil_is_wetter_in_summer_than_in_late_winter(era5):
    cycle = mean_annual_cycle(era5, "volumetric_soil_water_layer_1")
    summer, late_winter = cycle[5:9].mean(axis=0), cycle[1:4].mean(axis=0)
    assert (summer > late_winter).all(), (summer, late_winter)


def test_flux_sign_conventions(era5, cmip):
    july = era5.filter(pl.col("calendar_month") == 7)
    assert (july["surface_latent_heat_flux_sum"] < 0).all()  # ECMWF: positive downwards, evaporation < 0
    assert (july["surface_sensible_heat_flux_sum"] < 0).all()
    assert (era5["surface_latent_heat_flux_sum"] < 0).mean() > 0.9
    cmip_july = cmip["historical"].filter(pl.col("calendar_month") == 7)
    assert (cmip_july["hfls"] > 0).all() and (cmip_july["hfss"] > 0).all()  # CMIP: positive upwards


def test_february_precipitation_uses_the_noleap_month(era5, cmip):
    """CMIP pr (kg m-2 s-1) x 28 days is a monthly total close to ERA5-Land's, wet-biased."""
    cmip_february = cmip["rcp45"].filter((pl.col("calendar_month") == 2) & (pl.col("year") <= 2023))
    monthly_m = per_band(cmip_february, (pl.col("pr") * 28 * 86400 / 1000).mean())
    era5_m = per_band(era5.filter(pl.col("calendar_month") == 2), pl.col("total_precipitation_sum").mean())
    assert ((monthly_m > 0.002) & (monthly_m < 0.15)).all(), monthly_m
    assert ((monthly_m / era5_m > 0.9) & (monthly_m / era5_m < 1.8)).all(), monthly_m / era5_m


def test_cmip_twin_has_model_biases(era5, cmip):
    overlap = (2001, 2005)
    cold_bias = window_mean(cmip["historical"], "tas", *overlap) - window_mean(era5, "temperature_2m", *overlap)
    assert ((cold_bias > -3.0) & (cold_bias < -0.3)).all(), cold_bias
    wet_bias = (
        window_mean(cmip["historical"], "pr", *overlap)
        * 86400
        / (
            per_band(era5.filter(pl.col("year") <= 2005), (pl.col("total_precipitation_sum") * 1000).sum())
            / (5 * 365.25)
        )
    )
    assert ((wet_bias > 1.0) & (wet_bias < 1.5)).all(), wet_bias


# --- scenarios -----------------------------------------------------------------------------


def test_rcps_diverge_in_order_and_arctic_amplified(cmip):
    baseline = window_mean(cmip["historical"], "tas", 1986, 2005)
    warming = {rcp: window_mean(cmip[rcp], "tas", 2081, 2100) - baseline for rcp in catalog.RCP_EXPERIMENTS}
    ordered = np.stack([warming[rcp] for rcp in ("rcp26", "rcp45", "rcp60", "rcp85")])
    assert (np.diff(ordered, axis=0) > 0).all(), ordered
    assert 1.0 < warming["rcp26"].mean() < 3.0 and 5.0 < warming["rcp85"].mean() < 9.5
    assert warming["rcp85"][5] > warming["rcp85"][0]  # more warming in the north


def test_rcp85_warms_winter_more_than_summer(cmip):
    def season_change(months: list[int]) -> float:
        late = cmip["rcp85"].filter(pl.col("year") >= 2081, pl.col("calendar_month").is_in(months))["tas"].mean()
        early = cmip["historical"].filter(pl.col("year") >= 1986, pl.col("calendar_month").is_in(months))["tas"].mean()
        return late - early

    assert season_change([12, 1, 2]) > season_change([6, 7, 8]) + 1.0


def test_downward_longwave_rises_with_warming(cmip):
    baseline = window_mean(cmip["historical"], "rlds", 1986, 2005)
    rise = {rcp: window_mean(cmip[rcp], "rlds", 2081, 2100) - baseline for rcp in catalog.RCP_EXPERIMENTS}
    assert all((rise[rcp] > 0).all() for rcp in catalog.RCP_EXPERIMENTS), rise
    assert (rise["rcp85"] > rise["rcp26"]).all()


# --- static tables -------------------------------------------------------------------------


def test_lithology_areas_sum_to_band_areas():
    frame = demo.DemoStaticSource().read_lithology()
    assert frame.columns == ["band", "lithology", "area_km2"]
    assert frame.schema["band"] == pl.Int32 and frame.schema["area_km2"] == pl.Float64
    assert frame.height == catalog.N_BANDS * len(catalog.LITHOLOGY_CLASSES)
    for band in catalog.BANDS:
        rows = frame.filter(pl.col("band") == band.index)
        assert sorted(rows["lithology"].to_list()) == sorted(catalog.LITHOLOGY_CLASSES)
        assert rows["area_km2"].min() >= 0
        assert rows["area_km2"].sum() == pytest.approx(band.area_km2, rel=1e-9)
    share = frame.with_columns(pl.col("area_km2") / pl.col("area_km2").sum().over("band"))
    glacier = per_band(share.filter(pl.col("lithology") == "glacier"), pl.col("area_km2").first())
    unconsolidated = per_band(share.filter(pl.col("lithology") == "unconsolidated"), pl.col("area_km2").first())
    assert glacier[0] > glacier[5] and unconsolidated.argmax() == 5
    validation.validate_lithology(frame, "demo")


def test_soil_properties_in_stored_units():
    frame = demo.DemoStaticSource().read_soil_properties()
    depths = list(catalog.OPENLANDMAP_DEPTH_COLUMNS)
    assert frame.columns == ["band", "property", "asset", "stored_unit", *depths]
    for name, product in catalog.OPENLANDMAP_PRODUCTS.items():
        rows = frame.filter(pl.col("property") == name).sort("band")
        assert rows["band"].to_list() == list(range(catalog.N_BANDS))
        assert set(rows["asset"]) == {product["asset"]} and set(rows["stored_unit"]) == {product["stored_unit"]}
    bulk, carbon = (
        frame.filter(pl.col("property") == name).sort("band").select(depths).to_numpy()
        for name in ("bulk_density", "organic_carbon")
    )
    assert bulk.min() >= 95 and bulk.max() <= 165  # 10 kg m-3: about 1000-1600 kg m-3
    assert (np.diff(bulk, axis=1) > 0).all()  # compacts with depth
    assert (np.diff(carbon, axis=1) < 0).all() and (np.diff(carbon[:, 0]) > 0).all()  # surface, and north, richer
    validation.validate_soil_properties(frame, "demo")


# --- the perfect-model truth --------------------------------------------------------------


def test_reanalysis_cells_reproduce_the_published_soil():
    settings = demo.DemoSettings(seed=3)
    cells = demo.reanalysis_cell_truth(settings)
    published = demo._reanalysis_world(settings)["t_soil"]
    assert cells["t_soil_cells"].shape == (276, len(demo.cell_centres_m()), catalog.N_BANDS)
    assert np.array_equal(cells["t_soil"], published)
    assert demo.cell_centres_m()[-1] > catalog.SOIL_LAYERS_M[-1][1]


def test_truth_follows_the_pathway_and_shares_the_historical_run():
    settings = demo.DemoSettings(seed=3)
    months, low = demo.cmip_truth(settings, "rcp26")
    _, high = demo.cmip_truth(settings, "rcp85")
    assert months[0] == settings.cmip_historical_start and months[-1] == catalog.CMIP5_RCP_END
    assert low["t_soil"].shape == (len(months), 4, catalog.N_BANDS)
    years = np.array([m.year for m in months])
    late = years >= 2081
    assert np.isfinite(high["t_soil"]).all()
    assert (high["t_soil"][late].mean(axis=0) > low["t_soil"][late].mean(axis=0) + 1.0).all()
    early = years < 2006  # the historical experiment: identical weather and forcing
    assert np.array_equal(low["t_soil"][early], high["t_soil"][early])


def test_truth_is_the_twin_without_its_bias():
    settings = demo.DemoSettings(seed=3)
    _, truth = demo.cmip_truth(settings, "rcp45")
    months, biased = demo._cmip_world(settings, "rcp45")
    offset = biased["t_air"] - truth["t_air"][-len(months) :]
    assert abs(offset.mean() - demo.CMIP_BIAS.t_air_annual) < 0.05  # only the bias differs


def test_the_climate_model_source_offers_truth_and_floor_in_canonical_units():
    source = demo.DemoClimateModelSource(demo.DemoSettings(seed=3))
    assert isinstance(source, base.PerfectModelSource)
    truth = source.perfect_model_truth("rcp85")
    assert {"band", "month", *catalog.DYNAMIC_FEATURES, *catalog.WATER_CONTENT, *catalog.TARGETS} <= set(truth.columns)
    assert truth.height == len(catalog.month_range(dt.date(1950, 1, 1), catalog.CMIP5_RCP_END)) * catalog.N_BANDS
    assert truth["t_air"].mean() < 10 and truth["r_thermal"].mean() > 1e8  # degC and J m-2 per month
    assert base.perfect_model_truth(source, "rcp85").equals(truth)
    # the simulator driven by the truth's own drivers gives the truth back
    floor = source.perfect_model_floor("rcp85", truth)
    late = pl.col("month") >= dt.date(2010, 1, 1)  # after the spin-ups differ
    assert np.allclose(floor.filter(late)["t_soil_3"].to_numpy(), truth.filter(late)["t_soil_3"].to_numpy(), atol=0.05)
    with pytest.raises(base.SourceError, match="historical"):
        source.perfect_model_truth("historical")


def test_a_source_without_a_simulator_has_no_truth():
    class Published:
        name = "band_table"

    assert base.perfect_model_truth(Published(), "rcp85") is None
