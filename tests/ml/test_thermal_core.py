"""The conduction core: it follows its forcing, its snowpack behaves, and a fit recovers it."""

import numpy as np
import pytest

from ml.thermal_core import NAMES, PARAMETERS, CoreInputs, ThermalCore, column, simulate, snowpack


def forcing(years=6, bands=2, warm=0.0, seed=0) -> CoreInputs:
    rng = np.random.default_rng(seed)
    n_months = 12 * years
    month = np.arange(n_months) % 12
    seasonal = -8.0 - 14.0 * np.cos(2 * np.pi * month / 12)[:, None] + np.array([0.0, -4.0])[:bands]
    t_surface = seasonal + warm + rng.normal(0, 1.5, (n_months, bands))
    p_snow = np.where(t_surface < 0, 0.03, 0.0) * np.ones((n_months, bands))
    return CoreInputs(t_surface, t_surface - 0.5, p_snow, np.full((n_months, 4, bands), 0.3), np.full(n_months, 30.4))


def initial(bands=2):
    return {n: np.full(bands, PARAMETERS[n][0]) for n in NAMES}


def test_the_column_resolves_every_layer():
    col = column()
    assert np.allclose(col.in_layer.sum(axis=1), 1.0)
    assert col.centre[-1] > 2.89 and (col.in_layer[:, col.centre > 2.89] == 0).all()  # deep cells: boundary only


def test_a_sustained_warming_reaches_every_layer():
    cold = simulate(initial(), forcing(warm=0.0))
    warm = simulate(initial(), forcing(warm=2.0))
    assert cold.shape == (72, 4, 2) and np.isfinite(cold).all()
    change = (warm - cold)[-36:].mean(axis=0)
    assert (change > 0.5).all() and (change < 3.0).all()


def test_amplitude_damps_with_depth():
    annual = simulate(initial(), forcing())[-36:]
    amplitude = annual.max(axis=0) - annual.min(axis=0)  # (4, B)
    assert (np.diff(amplitude, axis=0) < 0).all()


def test_snowpack_accumulates_and_melts():
    inputs = forcing()
    swe = snowpack(inputs.p_snow, inputs.t_air, inputs.days)
    assert (swe >= 0).all() and swe.max() > 50.0
    assert swe[7::12, 0].max() < 1.0  # August is snow-free in the warmer band


def test_more_snow_insulates_a_cold_column():
    inputs = forcing()
    bare = simulate({**initial(), "snow_resistance": np.full(2, 1e-4)}, inputs)
    snowy = simulate({**initial(), "snow_resistance": np.full(2, 0.1)}, inputs)
    assert (snowy[-36:, 3].mean(axis=0) > bare[-36:, 3].mean(axis=0)).all()  # the deep soil is kept warmer


def test_fit_recovers_its_own_output_and_round_trips():
    inputs = forcing(years=5)
    truth = {n: np.array([v[0] * 1.3, v[0] * 0.8]) for n, v in PARAMETERS.items()}
    truth["c_dry"] = np.array([1.2e6, 0.9e6])
    observed = simulate(truth, inputs)
    core = ThermalCore().fit(inputs, observed, np.ones(60, dtype=bool), max_iterations=15)
    assert core.train_rmse < 0.1
    assert np.abs(core.predict(inputs) - observed).mean() < 0.1
    again = ThermalCore.from_dict(core.to_dict())
    assert np.array_equal(again.predict(inputs), core.predict(inputs))
    # tiled inputs: the same bands twice side by side give the same runs twice
    assert np.allclose(core.predict(inputs.tile(2))[..., 2:], core.predict(inputs))
    for name, (_, low, high) in PARAMETERS.items():
        assert ((core.params[name] >= low) & (core.params[name] <= high)).all(), name


def test_from_dict_names_a_missing_parameter():
    with pytest.raises(ValueError, match="c_dry"):
        ThermalCore.from_dict({"params": {n: [1.0] for n in NAMES if n != "c_dry"}, "train_rmse": 0, "iterations": 0})
