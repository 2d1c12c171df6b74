"""The demo's simulator on its own: numerics against hand-written references."""

from __future__ import annotations

import numpy as np
import pytest

from sources.simulator import climate, soil, worlds


def thomas_column(lower: list[float], diag: list[float], upper: list[float], rhs: list[float]) -> list[float]:
    """The Thomas algorithm the simulator used before scipy, written out for one column."""
    n = len(diag)
    sweep, value = [upper[0] / diag[0]], [rhs[0] / diag[0]]
    for i in range(1, n):
        pivot = diag[i] - lower[i] * sweep[i - 1]
        sweep.append(upper[i] / pivot)
        value.append((rhs[i] - lower[i] * value[i - 1]) / pivot)
    solution = [0.0] * n
    solution[-1] = value[-1]
    for i in reversed(range(n - 1)):
        solution[i] = value[i] - sweep[i] * solution[i + 1]
    return solution


@pytest.mark.parametrize("n_units", [1, 6, 2000])
def test_banded_solve_matches_the_thomas_algorithm(n_units):
    """A heat step's system: conductances between cells, storage on the diagonal (17 cells)."""
    rng = np.random.default_rng(n_units)
    n_cells = 17
    g_above = rng.uniform(1.0, 60.0, (n_cells, n_units))  # W m-2 K-1, the top one to the skin
    g_below = np.vstack([g_above[1:], np.zeros((1, n_units))])
    storage = rng.uniform(0.05, 5.0, (n_cells, n_units))
    lower, upper, diag = -g_above, -g_below, storage + g_above + g_below
    rhs = rng.uniform(-30.0, 20.0, (n_cells, n_units))
    kept = rhs.copy()
    expected = np.array(
        [thomas_column(*(a[:, u].tolist() for a in (lower, diag, upper, rhs))) for u in range(n_units)]
    ).T
    solved = soil._solve_tridiagonal(lower, diag, upper, rhs)
    assert solved.shape == (n_cells, n_units)
    assert np.abs(solved - expected).max() < 1e-10
    matrix = np.diag(diag[:, 0]) + np.diag(lower[1:, 0], -1) + np.diag(upper[:-1, 0], 1)
    assert np.allclose(matrix @ solved[:, 0], rhs[:, 0], rtol=0, atol=1e-10)  # it solves the system
    assert np.array_equal(rhs, kept)  # the caller's arrays are left alone


def test_banded_solve_keeps_columns_apart():
    """Each column is its own system: changing one column's data leaves the others' solutions."""
    rng = np.random.default_rng(0)
    lower, upper = -rng.uniform(1, 5, (5, 3)), -rng.uniform(1, 5, (5, 3))
    diag, rhs = rng.uniform(12, 15, (5, 3)), rng.uniform(-1, 1, (5, 3))
    before = soil._solve_tridiagonal(lower, diag, upper, rhs)
    lower[:, 1] *= 3.0
    rhs[:, 1] += 7.0
    after = soil._solve_tridiagonal(lower, diag, upper, rhs)
    assert np.array_equal(before[:, [0, 2]], after[:, [0, 2]])
    assert not np.allclose(before[:, 1], after[:, 1])


def test_positive_degree_days_are_the_expected_positive_part_of_daily_means():
    """E[max(T, 0)] for daily means T ~ N(monthly mean, DAILY_T_SPREAD): exact with scipy's
    normal CDF (the logistic approximation it replaced was off by up to 2e-4 in the CDF)."""
    monthly = np.linspace(-25.0, 15.0, 81)
    spread = climate.DAILY_T_SPREAD
    daily = np.linspace(-60.0, 60.0, 240_001)  # degC, fine enough for 1e-8
    weights = np.exp(-0.5 * ((daily[None, :] - monthly[:, None]) / spread) ** 2) / (spread * np.sqrt(2 * np.pi))
    expected = np.trapezoid(weights * np.maximum(daily, 0.0)[None, :], daily, axis=1)
    assert np.abs(climate.positive_degree_days(monthly) - expected).max() < 1e-8


@pytest.mark.parametrize("curve", [worlds.FreezingCurve(), worlds.WORLDS["wide_freezing"].freezing])
def test_enthalpy_round_trips_and_its_capacity_is_its_slope(curve):
    theta = np.array([[0.1, 0.3, 0.45]])
    dry = np.array([[0.6e6, 1.2e6, 1.2e6]])
    soil_enthalpy = soil._Enthalpy.of_soil(theta, dry, curve)
    t = np.linspace(-30.0, 10.0, 4001)[:, None] + np.zeros((1, 3))
    h = soil_enthalpy.enthalpy(t)
    assert (np.diff(h, axis=0) > 0).all()  # invertible
    assert np.abs(soil_enthalpy.temperature(h) - t).max() < 1e-9
    slope = np.diff(h, axis=0) / np.diff(t, axis=0)
    knots = np.array(curve.knots_c)
    within = ~((t[:-1, :1] < knots) & (knots < t[1:, :1])).any(axis=1)  # steps that cross no knot
    assert np.allclose(slope[within], soil_enthalpy.capacity(t[1:])[within], rtol=1e-6)
    # the latent heat of all water that freezes between -30 and 0 degC, on top of sensible heat
    frozen_share = 1.0 - curve.liquid_share(np.array(-30.0))
    latent = soil.WATER_DENSITY * soil.LATENT_FUSION * theta[0] * frozen_share
    assert np.all(h[-1] - h[0] > latent)


def test_a_freezing_curve_must_rise_to_all_liquid_at_zero():
    wide = worlds.WORLDS["wide_freezing"].freezing
    assert wide.knots_c[-1] == 0.0 and wide.liquid[-1] == 1.0 and wide.liquid[0] < 0.1
    assert wide.liquid_share(np.array(-2.0)) > 0.2  # unfrozen water several kelvin below zero
    with pytest.raises(ValueError, match="rise to 0 degC"):
        worlds.FreezingCurve((-1.0, -0.5), (0.0, 1.0))
    with pytest.raises(ValueError, match="liquid shares"):
        worlds.FreezingCurve((-1.0, 0.0), (0.5, 0.2))
