"""The model inputs of a pair of sources: drivers both have, snowfall derived where the history
lacks it (against a direct numerical integral), what is missing absent, not invented."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
from scipy import integrate, stats

from ml.model_inputs import (
    DAILY_SPREAD_K,
    SNOW_THRESHOLD_C,
    ModelInputs,
    core_surface_temperature,
    derived_snowfall,
    model_inputs,
    modelling_marts,
    snowfall_share,
    with_derived,
)
from sources import catalog

BASIN_ABSENT = ("t_surface", "p_snow", "r_thermal", "r_solar", "q_latent", "q_sensible")


def frame(absent=(), rows=4) -> pl.DataFrame:
    """A mart-like frame with every driver and soil water, the ``absent`` ones null in every row."""
    rng = np.random.default_rng(0)
    columns = {
        "unit": np.arange(rows),
        "month": [dt.date(2001, 1, 1)] * rows,
        **{name: rng.normal(size=rows) for name in catalog.DYNAMIC_FEATURES + catalog.WATER_CONTENT},
    }
    data = pl.DataFrame(columns).with_columns(pl.col("p_total").abs())
    return data.with_columns(pl.lit(None, dtype=pl.Float64).alias(name) for name in absent)


def test_the_snowfall_share_is_the_integral_of_daily_means_below_the_threshold():
    for t_air in (-20.0, -3.0, 0.0, 0.7, 1.0, 2.5, 8.0, 25.0):
        density = stats.norm(loc=t_air, scale=DAILY_SPREAD_K).pdf
        direct, _ = integrate.quad(density, t_air - 12 * DAILY_SPREAD_K, SNOW_THRESHOLD_C, limit=200)
        assert snowfall_share(np.array([t_air]))[0] == pytest.approx(direct, abs=1e-10)
    assert snowfall_share(np.array([SNOW_THRESHOLD_C]))[0] == pytest.approx(0.5)
    p_total = np.array([0.05, 0.05, 0.0])
    snow = derived_snowfall(p_total, np.array([-30.0, 30.0, -5.0]))
    assert snow[0] == pytest.approx(0.05) and snow[1] == pytest.approx(0.0, abs=1e-10) and snow[2] == 0.0
    assert (snow <= p_total).all()


def test_every_driver_both_sources_have():
    inputs = model_inputs(frame(), frame())
    assert inputs == ModelInputs.every_driver()
    assert inputs.channels == catalog.DYNAMIC_FEATURES + catalog.WATER_CONTENT and inputs.core_surface == "t_surface"


def test_a_basin_table_gets_derived_snowfall_and_the_rest_is_absent():
    inputs = model_inputs(frame(BASIN_ABSENT), frame())
    assert inputs.drivers == ("t_air", "p_total", "p_snow") and list(inputs.derived) == ["p_snow"]
    assert set(inputs.absent) == {"t_surface", "r_thermal", "r_solar", "q_latent", "q_sensible"}
    assert "not derivable" in inputs.absent["t_surface"] and inputs.measured == ("t_air", "p_total")
    assert inputs.core_surface == "t_air"
    # a driver the scenarios lack is absent too, whatever the history has
    scenarios_without = model_inputs(frame(), frame(("r_solar",)))
    assert "scenarios" in scenarios_without.absent["r_solar"] and "r_solar" not in scenarios_without.drivers
    again = ModelInputs.from_dict(inputs.to_dict())
    assert again == inputs


def test_derived_drivers_replace_a_frames_own_by_the_one_definition():
    inputs = model_inputs(frame(BASIN_ABSENT), frame())
    scenario = frame()  # has the climate model's own snowfall
    out = with_derived(scenario, inputs)
    expected = derived_snowfall(scenario["p_total"].to_numpy(), scenario["t_air"].to_numpy())
    np.testing.assert_allclose(out["p_snow"].to_numpy(), expected, rtol=1e-15)
    assert out.drop("p_snow").equals(scenario.drop("p_snow"))
    assert with_derived(scenario, ModelInputs.every_driver()).equals(scenario)


def test_the_core_surface_is_skin_temperature_or_air_temperature():
    values = {"t_surface": np.array([1.0]), "t_air": np.array([2.0])}
    assert core_surface_temperature(values, ModelInputs.every_driver())[0] == 1.0
    assert core_surface_temperature(values, ModelInputs(("t_air", "p_total"))) is None


def test_what_cannot_be_had_is_refused():
    with pytest.raises(ValueError, match="soil water"):
        model_inputs(frame(("w_2",)), frame())
    with pytest.raises(ValueError, match="air temperature"):
        ModelInputs(("p_total",))
    with pytest.raises(ValueError, match="canonical drivers"):
        ModelInputs(("t_air", "swe"))


def test_the_marts_for_modelling_share_one_set_of_inputs():
    units = pl.DataFrame(
        {
            "unit": [0, 1, 2, 3],
            "kind": "basin",
            "name": ["a", "b", "c", "d"],
            "latitude": [60.0, 61.0, 62.0, 63.0],
            "longitude": [-150.0] * 4,
            "area_km2": [1.0] * 4,
            "band": [0, 0, 1, 1],
            "nearest_band": [0, 0, 1, 1],
            "series_group": [0, 1, 2, 3],
        }
    )
    history, parsed, inputs, scenarios = modelling_marts(frame(BASIN_ABSENT), frame(), units)
    assert parsed.ids.tolist() == [0, 1, 2, 3] and parsed.kind == "basin"
    assert history["p_snow"].null_count() == 0 and inputs.derived and scenarios.height == 4
