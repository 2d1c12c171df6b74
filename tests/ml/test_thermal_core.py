"""The conduction core: it follows its forcing, its snowpack behaves, a fit recovers it, its
numerics equal the exact answers, and each structure says what it assumes."""

import datetime as dt
from dataclasses import replace

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from ml.thermal_core import (
    DEFAULT_STRUCTURE,
    LEGACY_STRUCTURE,
    NAMES,
    PARAMETERS,
    SOIL_LAYERS_M,
    CoreInputs,
    CoreStructure,
    ThermalCore,
    _PowerLawFreezing,
    _RampFreezing,
    column,
    positive_degree_days,
    simulate,
    snowpack,
    solve_columns,
)


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


def levenberg_marquardt(inputs, observed, rows, t_start, max_iterations=25):
    """The core's former fit (per-band Levenberg-Marquardt in log space, clipped to the bounds),
    kept as the reference the scipy fit must not lose to: per-band mean squared errors."""
    n_bands, n_params = observed.shape[2], len(NAMES)
    lower = np.log([PARAMETERS[n][1] for n in NAMES])[:, None]
    upper = np.log([PARAMETERS[n][2] for n in NAMES])[:, None]
    theta = np.log(np.array([[PARAMETERS[n][0]] * n_bands for n in NAMES]))
    tiled, tiled_start = inputs.tile(n_params + 1), np.tile(t_start, n_params + 1)
    tiled_observed = np.tile(observed, (1, 1, n_params + 1))
    damping, step = np.full(n_bands, 1e-2), 1e-3

    def run(th, how, start):
        return simulate({n: np.exp(th[i]) for i, n in enumerate(NAMES)}, how, start, structure=LEGACY_STRUCTURE)

    def residuals(th):
        stacked = np.concatenate([th] + [th + step * (np.arange(n_params)[:, None] == p) for p in range(n_params)], 1)
        r = (run(stacked, tiled, tiled_start) - tiled_observed)[rows]
        r = r.reshape(r.shape[0] * r.shape[1], n_params + 1, n_bands)
        return r[:, 0, :], (r[:, 1:, :] - r[:, :1, :]) / step

    def loss_of(th):
        return ((run(th, inputs, t_start) - observed)[rows] ** 2).reshape(-1, n_bands).mean(axis=0)

    r, jacobian = residuals(theta)
    loss = (r**2).mean(axis=0)
    for _ in range(max_iterations):
        jt = np.transpose(jacobian, (2, 1, 0))
        normal = jt @ np.transpose(jacobian, (2, 0, 1))
        gradient = np.einsum("bpn,nb->bp", jt, r)
        diagonal = np.einsum("bpp->bp", normal)
        system = normal + (damping[:, None] * (diagonal + 1e-9))[:, :, None] * np.eye(n_params)
        candidate = np.clip(theta - np.linalg.solve(system, gradient[:, :, None])[..., 0].T, lower, upper)
        new_loss = loss_of(candidate)
        better = new_loss < loss
        theta = np.where(better[None, :], candidate, theta)
        damping = np.where(better, damping / 3, damping * 4)
        converged = np.all(np.abs(new_loss - loss) / np.maximum(loss, 1e-12) < 1e-4) or np.all(damping > 1e6)
        loss = np.where(better, new_loss, loss)
        if converged:
            break
        if better.any():
            r, jacobian = residuals(theta)
    return loss


def test_the_column_resolves_every_layer():
    col = column()
    assert np.allclose(col.in_layer.sum(axis=1), 1.0)
    assert col.centre[-1] > 2.89 and (col.in_layer[:, col.centre > 2.89] == 0).all()  # deep cells: boundary only
    shallow = column("zero_flux")  # ERA5-Land's own column: it ends at the deepest layer's bottom
    assert np.isclose(shallow.thickness.sum(), SOIL_LAYERS_M[-1][1]) and np.allclose(shallow.in_layer.sum(axis=1), 1)


def test_a_thick_column_reaches_30_m_and_slows_the_deepest_layers_warming():
    thick, deep = column("thick"), column("deep")
    assert np.isclose(thick.thickness.sum(), 30.0) and np.allclose(
        thick.in_layer, np.pad(deep.in_layer, ((0, 0), (0, 6)))
    )
    structures = {bottom: replace(DEFAULT_STRUCTURE, bottom=bottom, fitted=None) for bottom in ("deep", "thick")}
    params = {**initial(), "n_thaw": np.ones(2)}
    # ten years at one climate, then ten years 3 K warmer: the deep ground's heat capacity slows layer 3
    inputs = forcing(years=20)
    inputs.t_air[120:] += 3.0
    warming = {}
    for bottom, structure in structures.items():
        layers = simulate(params, inputs, structure=structure)
        warming[bottom] = layers[120:, 3].mean(axis=0) - layers[:120, 3].mean(axis=0)
    assert (warming["thick"] > 0).all() and (warming["thick"] < warming["deep"] - 0.1).all()


def test_the_banded_solver_equals_a_dense_solve_column_by_column():
    rng = np.random.default_rng(3)
    n_cells, n_columns = 14, 9
    lower, upper = -rng.uniform(0.1, 2.0, (2, n_cells, n_columns))
    # lower[0] and upper[-1] would couple neighbouring columns end to end: the solver ignores them
    diag = -lower - upper + rng.uniform(0.01, 1.0, (n_cells, n_columns))
    rhs = rng.normal(size=(n_cells, n_columns))
    x = solve_columns(lower, diag, upper, rhs)
    for j in range(n_columns):  # each column alone, as a dense matrix
        dense = np.diag(diag[:, j]) + np.diag(lower[1:, j], -1) + np.diag(upper[:-1, j], 1)
        assert np.abs(x[:, j] - np.linalg.solve(dense, rhs[:, j])).max() < 1e-10


@pytest.mark.parametrize("mean", [-25.0, -6.0, -1.0, 0.0, 0.7, 4.5, 20.0])
def test_positive_degree_days_are_the_exact_expected_positive_part(mean):
    spread = 4.5
    exact, _ = integrate.quad(lambda t: t * norm.pdf(t, mean, spread), 0.0, np.inf, epsabs=1e-13, epsrel=1e-13)
    assert abs(positive_degree_days(np.array(mean), spread) - exact) < 1e-10


def test_the_former_logistic_degree_days_missed_the_expectation():
    # the logistic normal CDF the core used before scipy: what the exact test above would catch
    t = np.linspace(-20.0, 20.0, 801)
    z = t / 4.5
    logistic = 4.5 * norm.pdf(z) + t / (1.0 + np.exp(-1.5976 * z * (1.0 + 0.04417 * z * z)))
    assert 1e-3 < np.abs(logistic - positive_degree_days(t)).max() < 1e-2


# The default's delayed melt and weakly coupled deep cells respond more to 2 K than the legacy
# core (3.1-3.5 K against 2.5-3.0 K in the warmer band): bare ground comes earlier in spring.
@pytest.mark.parametrize(
    ("structure", "most"), [(LEGACY_STRUCTURE, 3.0), (DEFAULT_STRUCTURE, 4.0)], ids=["legacy", "default"]
)
def test_a_sustained_warming_reaches_every_layer(structure, most):
    cold = simulate(initial(), forcing(warm=0.0), structure=structure)
    warm = simulate(initial(), forcing(warm=2.0), structure=structure)
    assert cold.shape == (72, 4, 2) and np.isfinite(cold).all()
    change = (warm - cold)[-36:].mean(axis=0)
    assert (change > 0.5).all() and (change < most).all()


@pytest.mark.parametrize("structure", [LEGACY_STRUCTURE, DEFAULT_STRUCTURE], ids=["legacy", "default"])
def test_six_kelvin_of_warming_stays_finite_and_bounded(structure):
    cold = simulate(initial(), forcing(warm=0.0), structure=structure)
    warm = simulate(initial(), forcing(warm=6.0), structure=structure)
    change = (warm - cold)[-36:].mean(axis=0)
    assert np.isfinite(warm).all() and (change > 2.0).all() and (change < 9.0).all()


def test_amplitude_damps_with_depth():
    annual = simulate(initial(), forcing())[-36:]
    amplitude = annual.max(axis=0) - annual.min(axis=0)  # (4, B)
    assert (np.diff(amplitude, axis=0) < 0).all()


def test_snowpack_accumulates_and_melts():
    inputs = forcing()
    swe = snowpack(inputs.p_snow, inputs.t_air, inputs.days)
    assert (swe >= 0).all() and swe.max() > 50.0
    assert swe[7::12, 0].max() < 1.0  # August is snow-free in the warmer band
    delayed = snowpack(inputs.p_snow, inputs.t_air, inputs.days, melt_threshold=2.0)
    assert (delayed >= swe - 1e-9).all() and delayed.sum() > swe.sum()  # a cold pack melts later


def test_more_snow_insulates_a_cold_column():
    inputs = forcing()
    bare = simulate({**initial(), "snow_resistance": np.full(2, 1e-4)}, inputs)
    snowy = simulate({**initial(), "snow_resistance": np.full(2, 0.1)}, inputs)
    assert (snowy[-36:, 3].mean(axis=0) > bare[-36:, 3].mean(axis=0)).all()  # the deep soil is kept warmer


@pytest.mark.parametrize("freezing", ["range", "power_law"])
def test_freezing_curves_invert_their_enthalpy(freezing):
    t = np.linspace(-25.0, 8.0, 661)[:, None] * np.ones((1, 3))
    theta = np.array([[0.05, 0.3, 0.45]])
    c_frozen, c_thawed, latent = 1e6 + theta * 1.9e6, 1e6 + theta * 4.18e6, 3.34e8 * theta
    soil = (
        _RampFreezing(c_frozen, c_thawed, latent, np.array([[0.5, 2.0, 6.0]]))
        if freezing == "range"
        else _PowerLawFreezing(c_frozen, c_thawed, latent, np.array([[0.2, 0.6, 1.5]]))
    )
    h = soil.enthalpy(t)
    assert (np.diff(h, axis=0) > 0).all()
    assert np.abs(soil.temperature(h, guess=t + 3.0) - t).max() < 1e-8
    assert np.abs(soil.temperature(h, guess=t - 3.0) - t).max() < 1e-8
    liquid = soil.liquid(t)
    assert (liquid[t > 0] == 1).all() and (np.diff(liquid, axis=0) >= 0).all()
    if freezing == "power_law":  # liquid water over several kelvin: at -5 degC, (5 / 0.05)^-b of it
        assert np.allclose(soil.liquid(np.full((1, 3), -5.0))[0], 100.0 ** -np.array([0.2, 0.6, 1.5]))


@pytest.mark.parametrize("structure", [LEGACY_STRUCTURE, DEFAULT_STRUCTURE], ids=["legacy", "default"])
def test_fit_recovers_its_own_output_and_round_trips(structure):
    inputs = forcing(years=5)
    truth = {n: np.array([v[0] * 1.3, v[0] * 0.8]) for n, v in PARAMETERS.items() if n in structure.fitted}
    truth["c_dry"] = np.array([1.2e6, 0.9e6])
    observed = simulate(truth, inputs, structure=structure)
    core = ThermalCore(structure=structure).fit(inputs, observed, np.ones(60, dtype=bool), max_iterations=15)
    assert core.train_rmse < 0.1
    assert np.abs(core.predict(inputs) - observed).mean() < 0.1
    again = ThermalCore.from_dict(core.to_dict())
    assert again.structure == structure and again.at_bounds.keys() == core.at_bounds.keys()
    assert np.array_equal(again.predict(inputs), core.predict(inputs))
    # tiled inputs: the same bands twice side by side give the same runs twice
    assert np.allclose(core.predict(inputs.tile(2))[..., 2:], core.predict(inputs))
    for name in structure.fitted:
        _, low, high = PARAMETERS[name]
        assert ((core.params[name] >= low) & (core.params[name] <= high)).all(), name
        assert not core.at_bounds[name].any(), name
    if structure == LEGACY_STRUCTURE:  # no prior: the exact parameters come back
        for name in structure.fitted:
            assert np.allclose(core.params[name], truth[name], rtol=1e-3), name


def test_a_parameter_pushed_past_its_bound_is_reported():
    inputs = forcing(years=3)
    truth = {**initial(), "c_dry": np.array([6e6, 1.0e6])}  # band 0 beyond the upper bound (3e6)
    observed = simulate(truth, inputs, structure=LEGACY_STRUCTURE)
    core = ThermalCore(structure=LEGACY_STRUCTURE).fit(inputs, observed, np.ones(36, dtype=bool))
    assert core.at_bounds["c_dry"].tolist() == [True, False]
    assert np.isclose(core.params["c_dry"][0], PARAMETERS["c_dry"][2], rtol=0.01)


def test_each_unit_fitted_on_its_own_ignores_its_companions():
    """``fit_each``: a unit's fit is the same whoever it is fitted with; zero iterations keep the
    initial parameters."""
    inputs = forcing(years=3)
    truth = {**initial(), "c_dry": np.array([2.0e6, 0.7e6]), "k_mineral": np.array([1.2, 2.6])}
    observed = simulate(truth, inputs, structure=LEGACY_STRUCTURE)
    rows = np.ones(36, dtype=bool)
    both = ThermalCore(structure=LEGACY_STRUCTURE).fit_each(inputs, observed, rows, max_iterations=6)
    alone = ThermalCore(structure=LEGACY_STRUCTURE).fit(
        inputs.columns(np.array([1])), observed[..., [1]], rows, max_iterations=6
    )
    for name, value in alone.params.items():
        assert both.params[name][1] == value[0], name
    assert both.params["c_dry"][0] != both.params["c_dry"][1]
    start = ThermalCore(structure=LEGACY_STRUCTURE).fit_each(inputs, observed, rows, max_iterations=0)
    assert start.iterations == 0 and all(np.allclose(v, PARAMETERS[n][0]) for n, v in start.params.items())


def test_the_prior_holds_parameters_towards_their_initial_values():
    inputs = forcing(years=3)
    factors = {"k_top": 2.0, "k_mineral": 0.5, "frozen_ratio": 2.0, "c_dry": 2.0, "snow_resistance": 0.5}
    truth = {n: np.full(2, PARAMETERS[n][0] * factor) for n, factor in factors.items()}
    observed = simulate(truth, inputs, structure=LEGACY_STRUCTURE)
    observed = observed + np.random.default_rng(1).normal(0, 0.3, observed.shape)  # what the data cannot explain
    rows = np.ones(36, dtype=bool)

    def distance(weight):
        core = ThermalCore(structure=replace(LEGACY_STRUCTURE, prior_weight=weight)).fit(inputs, observed, rows)
        return sum(np.abs(np.log(core.params[n] / PARAMETERS[n][0])).sum() for n in NAMES), core.train_rmse

    free, free_rmse = distance(0.0)
    held, held_rmse = distance(2.0)
    assert held < 0.8 * free and held_rmse >= free_rmse


def test_the_scipy_fit_loses_nothing_to_the_former_levenberg_marquardt_on_demo_soil():
    from sources.demo import DemoSettings, reanalysis_cell_truth

    world = reanalysis_cell_truth(DemoSettings(latest_month=dt.date(2004, 12, 1)))
    bands = [0, 5]
    days = world["days"]
    water = np.tile(world["theta"][:12][..., bands], (len(days) // 12, 1, 1))
    inputs = CoreInputs(
        world["t_skin"][:, bands],
        world["t_air"][:, bands],
        world["snowfall"][:, bands] * days[:, None] / 1e3,
        water,
        days,
    )
    observed = world["t_soil"][:, :, bands]
    rows, t_start = np.arange(len(days)) < 36, observed[:12].mean(axis=(0, 1))
    former = levenberg_marquardt(inputs, observed, rows, t_start)
    core = ThermalCore(structure=LEGACY_STRUCTURE).fit(inputs, observed, rows, t_start=t_start)
    assert core.train_rmse**2 <= former.mean() * (1 + 1e-6)


def test_a_source_without_skin_temperature_needs_the_air_boundary():
    inputs = forcing()
    inputs.t_surface = None
    with pytest.raises(ValueError, match='upper_boundary="air"'):
        simulate(initial(), inputs, structure=LEGACY_STRUCTURE)
    assert np.isfinite(simulate(initial(), inputs, structure=DEFAULT_STRUCTURE)).all()
    # the air boundary never reads a skin temperature: one that is there changes nothing
    assert np.array_equal(simulate(initial(), forcing()), simulate(initial(), inputs))


def test_bad_inputs_are_named_with_their_month():
    inputs = forcing()
    inputs.t_air[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"t_air: 1 non-finite value\(s\), the first at month row 5, column 1"):
        simulate(initial(), inputs)
    observed = simulate(initial(), forcing())
    observed[3, 2, 0] = np.inf
    with pytest.raises(ValueError, match="fitted month 3, layer 2, unit 0"):
        ThermalCore().fit(forcing(), observed, np.ones(72, dtype=bool))


def test_structures_refuse_what_they_do_not_have():
    with pytest.raises(ValueError, match="freezing must be one of"):
        CoreStructure(freezing="linear")
    with pytest.raises(ValueError, match=r"fits \['organic_resistance'\]"):
        CoreStructure(fitted=("k_top", "organic_resistance"))
    with pytest.raises(ValueError, match="unknown thermal core parameters"):
        simulate({"k_tpo": np.ones(2)}, forcing())
    assert CoreStructure() == DEFAULT_STRUCTURE and "n_thaw" in DEFAULT_STRUCTURE.fitted


def test_a_core_saved_before_structures_loads_as_the_legacy_core():
    saved = {"params": {n: v.tolist() for n, v in initial().items()}, "train_rmse": 0.5, "iterations": 7}
    core = ThermalCore.from_dict(saved)
    assert core.structure == LEGACY_STRUCTURE and core.at_bounds == {}
    assert np.array_equal(core.predict(forcing()), simulate(initial(), forcing(), structure=LEGACY_STRUCTURE))


def test_from_dict_names_a_missing_parameter():
    with pytest.raises(ValueError, match="c_dry"):
        ThermalCore.from_dict({"params": {n: [1.0] for n in NAMES if n != "c_dry"}, "train_rmse": 0, "iterations": 0})


def lockstep_case(structure=DEFAULT_STRUCTURE, noise=0.0):
    """Four units (two forcings, each with two parameter sets) whose observed soil is the core's
    own output at known parameters, plus noise."""
    inputs = forcing(years=3).tile(2)
    factors = {"k_top": [1.3, 0.8, 1.6, 0.7], "c_dry": [1.2, 0.9, 0.6, 1.8], "snow_resistance": [0.7, 1.4, 1.0, 0.5]}
    truth = {n: PARAMETERS[n][0] * np.array(f) for n, f in factors.items()}
    observed = simulate(truth, inputs, structure=structure)
    observed = observed + np.random.default_rng(2).normal(0, noise, observed.shape)
    return inputs, observed, np.ones(36, dtype=bool)


def test_a_lockstep_unit_ignores_its_companions_and_their_order():
    """``fit_lockstep``: every decision is per unit and the core's columns do not interact, so a
    unit's parameters are the same alone, among others and in another order."""
    inputs, observed, rows = lockstep_case()
    t_start = observed[:12].mean(axis=(0, 1))

    def fit(units):
        units = np.array(units)
        core = ThermalCore().fit_lockstep(
            inputs.columns(units), observed[..., units], rows, t_start=t_start[units], max_iterations=8
        )
        return {n: dict(zip(units.tolist(), v, strict=True)) for n, v in core.params.items()}

    every, alone, reversed_ = fit([0, 1, 2, 3]), fit([1]), fit([3, 2, 1])
    for name in DEFAULT_STRUCTURE.fitted:
        assert np.isclose(alone[name][1], every[name][1], rtol=1e-12, atol=0), name
        for unit in (1, 2, 3):
            assert np.isclose(reversed_[name][unit], every[name][unit], rtol=1e-12, atol=0), name
    assert len({every["c_dry"][unit] for unit in range(4)}) == 4  # each unit has its own fit
    start = ThermalCore().fit_lockstep(inputs, observed, rows, max_iterations=0)
    assert start.iterations == 0 and all(np.allclose(v, PARAMETERS[n][0]) for n, v in start.params.items())


def test_lockstep_fits_as_well_as_scipy_per_unit():
    """On the core's own output plus 0.05 K of noise, each unit's training RMSE after
    ``fit_lockstep`` is within 5% (or 0.01 K) of ``fit_each``'s, and both remove nearly all of
    the initial parameters' error."""
    inputs, observed, rows = lockstep_case(noise=0.05)
    t_start = observed[:12].mean(axis=(0, 1))

    def unit_rmse(core):
        return np.sqrt(((core.predict(inputs, t_start=t_start) - observed)[rows] ** 2).mean(axis=(0, 1)))

    start = unit_rmse(ThermalCore().fit_lockstep(inputs, observed, rows, t_start=t_start, max_iterations=0))
    each = unit_rmse(ThermalCore().fit_each(inputs, observed, rows, t_start=t_start))
    lockstep_core = ThermalCore().fit_lockstep(inputs, observed, rows, t_start=t_start)
    lockstep = unit_rmse(lockstep_core)
    assert (lockstep <= np.maximum(each * 1.05, each + 0.01)).all(), (lockstep, each)
    assert (start - lockstep >= 0.95 * (start - each)).all() and (lockstep < 0.2 * start).all()
    assert np.isclose(lockstep_core.train_rmse, np.sqrt((lockstep**2).mean()), rtol=1e-6)
    assert 1 < lockstep_core.iterations <= 25


def test_lockstep_keeps_to_the_bounds_and_reports_a_parameter_pushed_past_one():
    inputs = forcing(years=3)
    truth = {**initial(), "c_dry": np.array([6e6, 1.0e6])}  # unit 0 beyond the upper bound (3e6)
    observed = simulate(truth, inputs, structure=LEGACY_STRUCTURE)
    core = ThermalCore(structure=LEGACY_STRUCTURE).fit_lockstep(inputs, observed, np.ones(36, dtype=bool))
    assert core.at_bounds["c_dry"].tolist() == [True, False]
    assert np.isclose(core.params["c_dry"][0], PARAMETERS["c_dry"][2], rtol=0.01)
    assert np.isclose(core.params["c_dry"][1], 1.0e6, rtol=0.01)
    for name in NAMES:
        _, low, high = PARAMETERS[name]
        assert ((core.params[name] >= low * (1 - 1e-12)) & (core.params[name] <= high * (1 + 1e-12))).all(), name
