"""Bootstrap draws of the bias correction: draw 0 is the identity, draws are stable and sized."""

import numpy as np
import pytest

from ml.forcing_bootstrap import offset_perturbation, perturb


@pytest.fixture
def overlap():
    rng = np.random.default_rng(5)
    calendar = np.arange(24 * 12) % 12
    reference = {"t_air": rng.normal(size=(288, 2)), "p_snow": rng.gamma(2, 0.01, size=(288, 2))}
    model = {"t_air": rng.normal(size=(288, 2)) - 1.5, "p_snow": rng.gamma(2, 0.012, size=(288, 2))}
    return reference, model, calendar


def test_draw_zero_is_the_correction_itself(overlap):
    reference, model, calendar = overlap
    draw = offset_perturbation(reference, model, calendar, 0, seed=1)
    assert np.all(draw["t_air"] == 0) and np.all(draw["p_snow"] == 1)
    assert np.array_equal(perturb(reference["p_snow"], draw["p_snow"], calendar, "p_snow"), reference["p_snow"])


def test_draws_depend_on_seed_and_index_only(overlap):
    reference, model, calendar = overlap
    first = offset_perturbation(reference, model, calendar, 3, seed=1)
    again = offset_perturbation(reference, model, calendar, 3, seed=1)
    other = offset_perturbation(reference, model, calendar, 4, seed=1)
    assert first["t_air"].shape == (12, 2) and np.abs(first["t_air"]).max() > 0
    assert np.array_equal(first["t_air"], again["t_air"])
    assert not np.array_equal(first["t_air"], other["t_air"])
    # the sampling error of a 24-year mean of unit-variance weather: a few tenths of a kelvin
    spread = np.std([offset_perturbation(reference, model, calendar, k, seed=1)["t_air"] for k in range(1, 60)])
    assert 0.15 < spread < 0.5
    assert (first["p_snow"] > 0).all()  # a factor, never a negative precipitation


def test_perturb_is_additive_or_multiplicative():
    calendar = np.array([0, 1, 0])
    shift = np.zeros((12, 1))
    shift[0] = 2.0
    series = np.ones((3, 1))
    assert perturb(series, shift, calendar, "t_air")[:, 0].tolist() == [3.0, 1.0, 3.0]
    assert perturb(series, shift, calendar, "p_total")[:, 0].tolist() == [2.0, 0.0, 2.0]


def test_refuses_partial_years(overlap):
    reference, model, _ = overlap
    with pytest.raises(ValueError, match="whole years"):
        offset_perturbation(reference, model, np.arange(30) % 12, 1, seed=1)
