"""The core's runs per ensemble member: overlap years, bootstrap draws, side-by-side runs."""

import numpy as np
import pytest

from ml.band_arrays import BandGrid
from ml.residual import DRIVERS
from ml.scenario_members import member_cores, member_drivers, outside_training_range, overlap, water_climatology
from ml.thermal_core import NAMES, PARAMETERS, ThermalCore
from sources import catalog


def grid(first: str, months: int, seed: int, offset: float = 0.0, names=DRIVERS + catalog.TARGETS) -> BandGrid:
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
    return BandGrid(month, values, tuple(names))


def test_overlap_takes_whole_common_years():
    history = grid("2001-01", 50, 1)  # 2001-01 .. 2005-02
    scenario = grid("2002-03", 120, 2, names=DRIVERS)  # 2002-03 .. 2012-02
    reference, model, calendar = overlap(history, scenario)
    assert len(calendar) == 24 and calendar[0] == 0  # 2003-01 .. 2004-12
    assert np.array_equal(reference["t_air"], history.select(("t_air",))[24:48, :, 0])
    assert np.array_equal(model["t_air"], scenario.select(("t_air",))[10:34, :, 0])
    with pytest.raises(ValueError, match="no whole year"):
        overlap(history, grid("2004-06", 24, 3, names=DRIVERS))


def test_draw_zero_is_the_corrected_scenario_and_others_differ():
    history = grid("2001-01", 120, 1)
    raw = grid("2001-01", 240, 2, offset=-1.0, names=DRIVERS)
    corrected = grid("2001-01", 240, 3, names=DRIVERS)
    drivers = member_drivers(corrected, history, raw, draws=3, seed=7)
    assert drivers.shape == (3, 240, 6, len(DRIVERS))
    assert np.allclose(drivers[0], corrected.values)
    assert not np.allclose(drivers[1], drivers[0]) and not np.allclose(drivers[1], drivers[2])
    again = member_drivers(corrected, history, raw, draws=2, seed=7)
    assert np.array_equal(again[1], drivers[1])  # a smaller ensemble draws the same


def test_members_run_side_by_side_as_they_would_alone():
    history = grid("2001-01", 48, 1)
    drivers = member_drivers(grid("2001-01", 48, 3, names=DRIVERS), history, history, draws=2, seed=1)
    core = ThermalCore({n: np.full(6, PARAMETERS[n][0]) for n in NAMES})
    water = water_climatology(history, np.ones(48, dtype=bool))
    assert water.shape == (12, 4, 6)
    days = np.full(48, 30.0)
    together = member_cores(core, drivers, DRIVERS, history.calendar_month, water, days)
    alone = member_cores(core, drivers[1:], DRIVERS, history.calendar_month, water, days)
    assert together.shape == (2, 48, 6, 4)
    assert np.allclose(together[1], alone[0])


def test_outside_training_range_counts_warmer_months():
    history = grid("2001-01", 240, 1)
    train = np.arange(240) < 216
    warm = BandGrid(history.months, history.values + 100.0, history.names)
    shares = outside_training_range(history, train, warm, np.arange(240), ("t_air", "p_total"))
    assert shares == {"t_air": 1.0, "p_total": 1.0}
    same = outside_training_range(history, train, history, np.flatnonzero(train), ("t_air",))
    assert same["t_air"] == 0.0
