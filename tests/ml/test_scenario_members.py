"""The core's runs per ensemble member: overlap years, bootstrap draws, side-by-side runs."""

import numpy as np
import pytest

from ml.model_inputs import ModelInputs
from ml.residual import DRIVERS
from ml.scenario_members import (
    bootstrap_block,
    member_cores,
    member_drivers,
    outside_training_range,
    overlap,
    water_climatology,
)
from ml.thermal_core import NAMES, PARAMETERS, ThermalCore
from ml.unit_arrays import UnitGrid, Units
from sources import catalog

INPUTS = ModelInputs.every_driver()
MEASURED = INPUTS.measured
UNITS = np.arange(6)


def six_bands(months, values, names) -> UnitGrid:
    """A grid over the six bands as units."""
    return UnitGrid(months, values, tuple(names), UNITS)


def grid(first: str, months: int, seed: int, offset: float = 0.0, names=DRIVERS + catalog.TARGETS) -> UnitGrid:
    rng = np.random.default_rng(seed)
    month = np.arange(np.datetime64(first), np.datetime64(first) + months)
    calendar = month.astype(int) % 12
    values = rng.normal(size=(months, 6, len(names))) + offset
    seasonal = -10 * np.cos(2 * np.pi * calendar / 12)[:, None]
    for name in ("t_air", "t_surface"):
        values[..., names.index(name)] += seasonal
    values[..., names.index("p_snow")] = np.abs(values[..., names.index("p_snow")]) * 0.01
    for name in catalog.WATER_CONTENT:
        values[..., names.index(name)] = 0.3
    return six_bands(month, values, tuple(names))


def test_overlap_takes_whole_common_years():
    history = grid("2001-01", 50, 1)  # 2001-01 .. 2005-02
    scenario = grid("2002-03", 120, 2, names=DRIVERS)  # 2002-03 .. 2012-02
    reference, model, calendar = overlap(history, scenario, MEASURED)
    assert len(calendar) == 24 and calendar[0] == 0  # 2003-01 .. 2004-12
    assert np.array_equal(reference["t_air"], history.select(("t_air",))[24:48, :, 0])
    assert np.array_equal(model["t_air"], scenario.select(("t_air",))[10:34, :, 0])
    with pytest.raises(ValueError, match="no whole year"):
        overlap(history, grid("2004-06", 24, 3, names=DRIVERS), MEASURED)


def test_draw_zero_is_the_corrected_scenario_and_others_differ():
    history = grid("2001-01", 120, 1)
    raw = grid("2001-01", 240, 2, offset=-1.0, names=DRIVERS)
    corrected = grid("2001-01", 240, 3, names=DRIVERS)
    drivers = member_drivers(corrected, history, raw, draws=3, seed=7, inputs=INPUTS)
    assert drivers.shape == (3, 240, 6, len(DRIVERS))
    assert np.allclose(drivers[0], corrected.values)
    assert not np.allclose(drivers[1], drivers[0]) and not np.allclose(drivers[1], drivers[2])
    again = member_drivers(corrected, history, raw, draws=2, seed=7, inputs=INPUTS)
    assert np.array_equal(again[1], drivers[1])  # a smaller ensemble draws the same


def test_block_bootstrap_of_members_keeps_draw_zero_and_the_year_bootstrap_by_default():
    history = grid("2001-01", 120, 1)
    raw = grid("2001-01", 240, 2, offset=-1.0, names=DRIVERS)
    corrected = grid("2001-01", 240, 3, names=DRIVERS)
    single = member_drivers(corrected, history, raw, draws=3, seed=7, inputs=INPUTS)
    assert np.array_equal(single, member_drivers(corrected, history, raw, 3, 7, INPUTS, block_years=1))
    blocks = member_drivers(corrected, history, raw, draws=3, seed=7, inputs=INPUTS, block_years=3)
    assert np.array_equal(blocks[0], single[0])  # draw 0 stays the unperturbed correction
    assert not np.allclose(blocks[1], single[1])
    # independent weather: no persistence measured, so the automatic block is a single year
    rho, block = bootstrap_block(history, raw, INPUTS, 0)
    assert abs(rho) < 0.2 and block == 1
    assert bootstrap_block(history, raw, INPUTS, 4) == (None, 4)
    with pytest.raises(ValueError, match="block_years must be >= 0"):
        bootstrap_block(history, raw, INPUTS, -1)


def test_members_run_side_by_side_as_they_would_alone():
    history = grid("2001-01", 48, 1)
    drivers = member_drivers(grid("2001-01", 48, 3, names=DRIVERS), history, history, draws=2, seed=1, inputs=INPUTS)
    core = ThermalCore({n: np.full(6, PARAMETERS[n][0]) for n in NAMES})
    water = water_climatology(history, np.ones(48, dtype=bool))
    assert water.shape == (12, 4, 6)
    days = np.full(48, 30.0)
    together = member_cores(core, drivers, DRIVERS, history.calendar_month, water, days, INPUTS)
    alone = member_cores(core, drivers[1:], DRIVERS, history.calendar_month, water, days, INPUTS)
    assert together.shape == (2, 48, 6, 4)
    assert np.allclose(together[1], alone[0])


def test_outside_training_range_counts_warmer_months():
    history = grid("2001-01", 240, 1)
    train = np.arange(240) < 216
    warm = six_bands(history.months, history.values + 100.0, history.names)
    shares = outside_training_range(history, train, warm, np.arange(240), ("t_air", "p_total"))
    assert shares == {"t_air": 1.0, "p_total": 1.0}
    same = outside_training_range(history, train, history, np.flatnonzero(train), ("t_air",))
    assert same["t_air"] == 0.0


def test_the_history_run_is_read_for_the_months_asked_and_refuses_missing_ones(tmp_path):
    from ml.scenario_members import history_run_frame, read_history_run

    months = np.arange(np.datetime64("2001-01"), np.datetime64("2004-01"))
    run = six_bands(months, np.random.default_rng(1).normal(size=(36, 6, 4)), catalog.TARGETS)
    path = tmp_path / "history.parquet"
    history_run_frame(run.months, run.values, Units.bands()).write_parquet(path)
    asked = run.until(np.datetime64("2002-06")).months[5:]
    assert np.array_equal(read_history_run(path, asked, Units.bands()), run.values[5:18])
    later = np.arange(np.datetime64("2003-06"), np.datetime64("2004-02"))
    with pytest.raises(ValueError, match="lacks 1 month.*from 2004-01"):
        read_history_run(path, later, Units.bands())


def test_mean_delta_keeps_the_model_change_and_matches_the_reference_mean():
    from ml.scenario_members import mean_delta_correction

    history = grid("2001-01", 120, 1)
    raw = grid("2001-01", 240, 2, offset=-2.0, names=DRIVERS)
    trend = np.linspace(0, 3, 240)[:, None]
    raw.values[..., DRIVERS.index("t_air")] += trend
    corrected = mean_delta_correction(raw, history, raw, INPUTS)
    t_air = DRIVERS.index("t_air")
    on_overlap = corrected.values[:120, :, t_air].reshape(10, 12, 6).mean(axis=0)
    reference = history.select(("t_air",))[..., 0].reshape(10, 12, 6).mean(axis=0)
    assert np.allclose(on_overlap, reference)
    shift = (corrected.values - raw.values)[..., t_air].reshape(20, 12, 6)
    assert np.allclose(shift, shift[0])  # one offset per band and calendar month: the trend is kept
    snow = DRIVERS.index("p_snow")
    assert (corrected.values[..., snow] >= 0).all()
    # pooled over two runs, both get the same offsets: their difference is the model's own
    other = grid("2001-01", 240, 3, offset=-1.0, names=DRIVERS)
    first = mean_delta_correction(raw, history, raw, INPUTS, [raw, other])
    second = mean_delta_correction(other, history, other, INPUTS, [raw, other])
    assert np.allclose((first.values - second.values)[..., t_air], (raw.values - other.values)[..., t_air])


def test_members_take_the_methods_in_turn():
    history = grid("2001-01", 120, 1)
    raw = grid("2001-01", 240, 2, offset=-1.0, names=DRIVERS)
    a = grid("2001-01", 240, 3, names=DRIVERS)
    b = six_bands(a.months, a.values + 5.0, a.names)
    drivers = member_drivers([a, b], history, raw, draws=4, seed=1, inputs=INPUTS)
    assert np.allclose(drivers[0], a.values)
    t_air = DRIVERS.index("t_air")
    assert abs((drivers[1] - a.values)[..., t_air].mean() - 5.0) < 1.0  # draw 1: method b, perturbed
    assert abs((drivers[2] - a.values)[..., t_air].mean()) < 1.0  # draw 2: method a again


def scenario_run(seed: int = 4):
    """A history, two raw runs of a climate model and the first one's corrected drivers, 2001-2020."""
    history = grid("2001-01", 120, 1)
    runs = {
        "rcp26": grid("2001-01", 240, 2, offset=-1.0, names=DRIVERS),
        "rcp85": grid("2001-01", 240, 5, -2.0, DRIVERS),
    }
    corrected = grid("2001-01", 240, seed, names=DRIVERS)
    return history, runs, corrected


def test_members_of_a_scenario_in_its_own_calendar_save_and_load(tmp_path):
    from ml.scenario_members import ScenarioMembers, build_members, mean_delta_correction

    history, runs, corrected = scenario_run()
    train = np.arange(120) < 96
    core = ThermalCore({n: np.full(6, PARAMETERS[n][0]) for n in NAMES})
    members = build_members(
        corrected, runs, "rcp26", history, train, core, "noleap", INPUTS, ["qdm", "mean_delta"], 3, 7
    )
    assert members.drivers.shape == (3, 240, 6, len(DRIVERS)) and members.core.shape == (3, 240, 6, 4)
    assert members.bias_method == ("qdm", "mean_delta", "qdm") and members.driver_names == DRIVERS
    # draw 0 is the quantile-mapped scenario itself, draw 1 starts from the mean delta over both runs
    assert np.allclose(members.drivers[0], corrected.values)
    mean_delta = mean_delta_correction(runs["rcp26"], history, corrected, INPUTS, list(runs.values()))
    t_air = DRIVERS.index("t_air")
    assert abs((members.drivers[1] - mean_delta.values)[..., t_air].mean()) < 1.0
    assert not np.allclose(members.drivers[1], mean_delta.values)  # its own bootstrap draw
    # the core of draw 0 is the core run alone on those drivers, in the 365-day calendar
    water = water_climatology(history, train)
    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] * 20, dtype=float)
    alone = member_cores(core, members.drivers[:1], DRIVERS, corrected.calendar_month, water, days, INPUTS)
    assert np.allclose(members.core[0], alone[0])
    members.save(tmp_path / "rcp26_members.npz")
    again = ScenarioMembers.load(tmp_path / "rcp26_members.npz")
    assert np.array_equal(again.drivers, members.drivers) and np.array_equal(again.core, members.core)
    assert np.array_equal(again.months, members.months)
    assert again.bias_method == members.bias_method and again.driver_names == DRIVERS
    with pytest.raises(ValueError, match="'eqm'"):
        build_members(corrected, runs, "rcp26", history, train, core, "noleap", INPUTS, ["qdm", "eqm"], 3, 7)


def test_range_shares_of_the_projection_months():
    from ml.residual import ResidualScaler
    from ml.scenario_members import ScenarioMembers, training_range_shares

    history = grid("2001-01", 288, 1)  # 2001-2024
    train = history.months <= np.datetime64("2018-12")
    corrected = six_bands(history.months, history.select(DRIVERS), DRIVERS)
    observed = history.select(catalog.TARGETS)
    scaler = ResidualScaler.fit(corrected.values, observed, observed + 1.0, corrected.calendar_month, train)
    # 2024 far warmer than anything in training, earlier years as they were
    warm = corrected.values.copy()
    warm[-12:, :, DRIVERS.index("t_air")] += 100.0
    warm_grid = six_bands(corrected.months, warm, DRIVERS)
    members = ScenarioMembers(corrected.months, warm[None], observed[None], ("qdm",), DRIVERS, UNITS)
    physical, clipped = training_range_shares(history, train, warm_grid, members, scaler)
    assert physical["t_air"] == 1.0 and set(physical) == set(DRIVERS)
    assert clipped["t_air"] == 1.0 and clipped["month_sin"] == 0.0


def test_members_take_the_core_structures_in_turn_across_architectures():
    from ml.ensemble import bias_draw
    from ml.scenario_members import ENSEMBLE_STRUCTURES, member_structure

    names = list(ENSEMBLE_STRUCTURES)
    assert names[0] == "default" and len(names) == 3
    for architecture in ("tcn", "gru", "bilstm"):  # every architecture has members of every structure
        taken = {member_structure(bias_draw(architecture, seed), names) for seed in range(5)}
        assert taken == set(names)
    assert member_structure(0, names) == "default"  # draw 0, the references' own, is the default


def test_structural_offsets_are_a_structures_change_against_the_default(tmp_path):
    from ml.scenario_members import ScenarioMembers, build_members
    from ml.thermal_core import CoreStructure

    # 2001-2018 training years, then 2019-2030 3 K warmer
    history = grid("2001-01", 30 * 12, 1)
    history.values[18 * 12 :, :, DRIVERS.index("t_air")] += 3.0
    train = history.months <= np.datetime64("2018-12")
    corrected = six_bands(history.months, history.select(DRIVERS), DRIVERS)
    runs = {"rcp85": corrected}
    core = ThermalCore({n: np.full(6, PARAMETERS[n][0]) for n in NAMES})
    thick = ThermalCore({n: np.full(6, PARAMETERS[n][0]) for n in NAMES}, structure=CoreStructure(bottom="thick"))
    structures = ["default", "thick_column"]
    members = build_members(
        corrected,
        runs,
        "rcp85",
        history,
        train,
        core,
        "standard",
        INPUTS,
        ["qdm"],
        4,
        7,
        {"thick_column": thick},
        structures,
    )
    assert members.structure == ("default", "thick_column", "default", "thick_column")
    assert (members.offsets[[0, 2]] == 0).all() and np.abs(members.offsets[1]).max() > 0.1
    # debiased: over the training years the offset averages to zero per unit, calendar month and layer
    in_train = members.months <= np.datetime64("2018-12")
    for month in (0, 6):
        rows = in_train & (members.months.astype(np.int64) % 12 == month)
        assert np.abs(members.offsets[1][rows].mean(axis=0)).max() < 1e-4
    # after the warming the thick column's deepest layer warms less than the default's
    late = members.months >= np.datetime64("2025-01")
    assert members.offsets[1][late, :, 3].mean() < -0.05
    members.save(tmp_path / "m.npz")
    again = ScenarioMembers.load(tmp_path / "m.npz")
    assert again.structure == members.structure and np.array_equal(again.offsets, members.offsets)
    unit, month = np.array([0, 5]), np.array(["2030-12", "2001-01"], dtype="datetime64[M]")
    assert np.allclose(again.offset_at(1, unit, month), members.offsets[1][[-1, 0], [0, 5]])
    with pytest.raises(ValueError, match="no fitted core of structure"):
        build_members(corrected, runs, "rcp85", history, train, core, "standard", INPUTS, ["qdm"], 2, 7, {}, structures)
    with pytest.raises(ValueError, match="first structure must be 'default'"):
        build_members(
            corrected, runs, "rcp85", history, train, core, "standard", INPUTS, ["qdm"], 2, 7, {}, ["thick_column"]
        )


def test_members_saved_before_structures_load_as_the_default(tmp_path):
    from ml.scenario_members import ScenarioMembers

    months = np.arange(np.datetime64("2001-01"), np.datetime64("2003-01"))
    core = np.zeros((2, 24, 6, 4), dtype=np.float32)
    np.savez(
        tmp_path / "old.npz",
        months=months,
        drivers=np.zeros((2, 24, 6, len(DRIVERS)), dtype=np.float32),
        core=core,
        driver_names=np.asarray(DRIVERS, dtype=np.str_),
        bias_method=np.asarray(("qdm", "qdm"), dtype=np.str_),
        units=UNITS,
    )
    old = ScenarioMembers.load(tmp_path / "old.npz")
    assert old.structure == ("default", "default") and old.offsets.shape == core.shape and not old.offsets.any()


def test_offsets_of_members_from_2021_are_debiased_beside_the_reanalysis():
    from ml.scenario_members import structure_offsets
    from ml.thermal_core import CoreStructure

    # a climate-model table from 2021 (the real GFDL tables): no training year among the members
    scenario = grid("2021-01", 10 * 12, 4, names=DRIVERS)
    core = ThermalCore({n: np.full(6, PARAMETERS[n][0]) for n in NAMES})
    thick = ThermalCore({n: np.full(6, PARAMETERS[n][0]) for n in NAMES}, structure=CoreStructure(bottom="thick"))
    drivers = scenario.values[None, None].repeat(2, axis=0)[:, 0].astype(np.float32)
    water = np.full((12, 4, 6), 0.3)
    days = np.full(len(scenario.months), 30.4)
    base = member_cores(core, drivers, DRIVERS, scenario.calendar_month, water, days, INPUTS)
    cores, names = {"default": core, "thick_column": thick}, ["default", "thick_column"]
    args = (cores, names, drivers, base, DRIVERS, scenario.months, water, days, INPUTS)
    with pytest.raises(ValueError, match="no whole year of the history"):
        structure_offsets(*args)
    offsets = structure_offsets(*args, history_last=np.datetime64("2023-03"))
    beside = scenario.months <= np.datetime64("2023-03")
    january = beside & (scenario.calendar_month == 0)
    assert np.abs(offsets[1][january].mean(axis=0)).max() < 1e-5 and np.abs(offsets[1][~beside]).max() > 0.0
