"""Bootstrap draws of the bias correction: draw 0 is the identity, draws are stable and sized."""

import numpy as np
import pytest

from ml.forcing_bootstrap import (
    block_length,
    offset_perturbation,
    overlap_block_years,
    persistence,
    perturb,
    year_picks,
)


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


def ar1(rho: float, years: int, series: int, rng: np.random.Generator) -> np.ndarray:
    """(years, series) unit-variance AR(1) series of lag-1 autocorrelation ``rho``."""
    out = np.empty((years, series))
    out[0] = rng.standard_normal(series)
    for i in range(1, years):
        out[i] = rho * out[i - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(series)
    return out


def test_year_bootstrap_is_unchanged_by_blocks_of_one(overlap):
    """``block_years=1`` draws what the year bootstrap drew before blocks existed."""
    reference, model, calendar = overlap
    rng = np.random.default_rng([1, 3])
    picks_reference, picks_model = rng.integers(0, 24, 24), rng.integers(0, 24, 24)
    ref, mod = reference["t_air"].reshape(24, 12, -1), model["t_air"].reshape(24, 12, -1)
    expected = (ref[picks_reference].mean(0) - mod[picks_model].mean(0)) - (ref.mean(0) - mod.mean(0))
    draw = offset_perturbation(reference, model, calendar, 3, seed=1, block_years=1)
    assert np.array_equal(draw["t_air"], expected)
    assert np.array_equal(draw["t_air"], offset_perturbation(reference, model, calendar, 3, seed=1)["t_air"])


def test_blocks_keep_consecutive_years_together():
    picks = year_picks(23, np.random.default_rng(4), block_years=4)
    assert picks.shape == (23,) and picks.min() >= 0 and picks.max() < 23
    for start in range(0, 23, 4):  # each block runs on by one year, wrapping from the last to the first
        block = picks[start : start + 4]
        assert np.all(np.diff(block) % 23 == 1), block
    # the blocks' starts are random: some pick does not follow its block's predecessor
    assert np.any(np.diff(picks)[3::4] % 23 != 1)
    again = year_picks(23, np.random.default_rng(4), block_years=4)
    assert np.array_equal(picks, again)
    assert not np.array_equal(picks, year_picks(23, np.random.default_rng(5), block_years=4))
    with pytest.raises(ValueError, match="block_years"):
        year_picks(23, np.random.default_rng(4), block_years=0)


def test_block_draws_are_deterministic_per_seed(overlap):
    reference, model, calendar = overlap
    first = offset_perturbation(reference, model, calendar, 2, seed=9, block_years=3)
    again = offset_perturbation(reference, model, calendar, 2, seed=9, block_years=3)
    single = offset_perturbation(reference, model, calendar, 2, seed=9, block_years=1)
    other_seed = offset_perturbation(reference, model, calendar, 2, seed=10, block_years=3)
    assert np.array_equal(first["t_air"], again["t_air"]) and np.array_equal(first["p_snow"], again["p_snow"])
    assert not np.array_equal(first["t_air"], single["t_air"])
    assert not np.array_equal(first["t_air"], other_seed["t_air"])


def test_block_bootstrap_sees_persistence_the_year_bootstrap_misses():
    """On 23 years of AR(1) weather (lag-1 autocorrelation 0.6) the sd of a 23-year mean is about
    0.40: the year bootstrap sees less than half of it (it takes years as independent), a block
    bootstrap of the measured block length more, though still not all: 23 years hold only a few
    independent blocks, and the sample's own spread around its mean is too small (the known
    downward bias of block bootstraps on short series)."""
    rng = np.random.default_rng(11)
    rho, years, series = 0.6, 23, 400
    # the true sampling sd of a 23-year mean, by simulation (not the asymptotic formula)
    true_sd = ar1(rho, years, 20000, rng).mean(axis=0).std()
    sample = ar1(rho, years, series, rng)  # one overlap each: its bootstrap sd against the truth
    block = block_length(persistence(sample), years)
    assert 3 <= block <= 7  # measured persistence, not the true one, sets it

    def bootstrap_sd(block_years: int) -> float:
        means = [sample[year_picks(years, np.random.default_rng([7, k]), block_years)].mean(axis=0) for k in range(300)]
        return float(np.mean(np.std(means, axis=0)))  # mean over the series of each one's bootstrap sd

    iid, blocked = bootstrap_sd(1), bootstrap_sd(block)
    assert iid < 0.55 * true_sd  # the year bootstrap is far too narrow on a persistent series
    assert blocked > 1.2 * iid
    assert abs(blocked - true_sd) < abs(iid - true_sd)  # closer to the true sampling sd
    assert 0.55 < blocked / true_sd < 0.8  # measured 0.62: closer, not there


def test_persistence_and_block_length_on_synthetic_years():
    rng = np.random.default_rng(3)
    for rho in (0.0, 0.5):
        assert abs(persistence(ar1(rho, 23, 3000, rng)) - rho) < 0.05
    trend = np.arange(23.0)[:, None] * np.ones((1, 50)) + 0.1 * rng.standard_normal((23, 50))
    assert abs(persistence(trend)) < 0.1  # a trend is not persistence: detrended first
    assert block_length(0.0, 23) == block_length(-0.3, 23) == 1
    assert block_length(0.2, 23) == 2 and block_length(0.6, 23) == 5
    assert block_length(0.99, 23) == 11  # at most half the years


def test_overlap_block_years_pools_reference_and_model():
    rng = np.random.default_rng(8)
    calendar = np.arange(23 * 12) % 12
    persistent = {"t_air": ar1(0.6, 23, 12 * 40, rng).reshape(23, 12, 40).reshape(276, 40)}
    independent = {"t_air": rng.standard_normal((276, 40))}
    rho, block = overlap_block_years(persistent, persistent, calendar)
    assert rho > 0.45 and block >= 4
    rho, block = overlap_block_years(independent, independent, calendar)
    assert abs(rho) < 0.1 and block == 1
