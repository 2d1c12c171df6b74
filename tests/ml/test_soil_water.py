"""Splits of the model's column water over the four ERA5-Land layers: the lagged split (default)
and the Dirichlet split (the paper's)."""

from datetime import date

import numpy as np
import polars as pl
import pytest

from ml.soil_water import (
    MAX_PRECISION,
    DirichletShares,
    LaggedLayerSplit,
    exponential_filter,
    fit_layer_shares,
    split_soil_water,
    split_soil_water_lagged,
    water_tails,
)
from sources.catalog import N_BANDS, SOIL_LAYER_THICKNESS_M, WATER_CONTENT, month_range

THICKNESS = np.asarray(SOIL_LAYER_THICKNESS_M)
TRUE_PRECISION = 200.0


def _true_mean_shares() -> np.ndarray:
    """(band, calendar month, layer): deeper layers hold more water; the top is wetter in summer."""
    band = np.arange(N_BANDS)[:, None, None]
    month = np.arange(12)[None, :, None]
    base = np.array([0.03, 0.08, 0.27, 0.62])[None, None, :]
    top_boost = np.array([1.0, 0.5, 0.0, 0.0])[None, None, :] * 0.01 * np.sin(np.pi * month / 11) * (1 + band / 5)
    shares = base + top_boost
    return shares / shares.sum(axis=-1, keepdims=True)


def _reference(months: list[date], seed: int, precision: float | None) -> pl.DataFrame:
    """Reanalysis-like w_0..w_3 whose layer shares are Dirichlet(precision * true mean);
    precision None means the shares never vary."""
    rng = np.random.default_rng(seed)
    means = _true_mean_shares()
    rows = []
    for band in range(N_BANDS):
        for month in months:
            mean = means[band, month.month - 1]
            shares = mean if precision is None else rng.dirichlet(precision * mean)
            total = 600.0 + 50.0 * rng.normal()  # kg m-2
            water = shares * total / (1000 * THICKNESS)
            row = {"unit": band, "band": band, "month": month}  # the bands as spatial units
            rows.append({**row, **dict(zip(WATER_CONTENT, water, strict=True))})
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def reference() -> pl.DataFrame:
    return _reference(month_range(date(2001, 1, 1), date(2023, 12, 1)), seed=5, precision=TRUE_PRECISION)


def _moments(reference: pl.DataFrame) -> pl.DataFrame:
    """What the dbt model int_era5_land_soil_water_shares computes: per band and calendar
    month, the mean and sample variance over the years of each layer's share of column water."""
    mass = [pl.col(w) * t * 1000 for w, t in zip(WATER_CONTENT, THICKNESS, strict=True)]
    shares = reference.select(
        "band",
        pl.col("month").dt.month().alias("calendar_month"),
        *[(m / pl.sum_horizontal(mass)).alias(f"share_{k}") for k, m in enumerate(mass)],
    )
    return shares.group_by("band", "calendar_month").agg(
        *[pl.col(f"share_{k}").mean().alias(f"share_{k}_mean") for k in range(4)],
        *[pl.col(f"share_{k}").var(ddof=1).alias(f"share_{k}_variance") for k in range(4)],
    )


@pytest.fixture(scope="module")
def shares(reference) -> DirichletShares:
    return fit_layer_shares(_moments(reference))


@pytest.fixture(scope="module")
def scenario() -> pl.DataFrame:
    months = month_range(date(2024, 1, 1), date(2100, 12, 1))
    rng = np.random.default_rng(8)
    frame = pl.DataFrame(
        {
            "scenario": "rcp45",
            "unit": np.repeat(np.arange(N_BANDS), len(months)),
            "band": np.repeat(np.arange(N_BANDS), len(months)).astype(np.int32),
            "nearest_band": np.repeat(np.arange(N_BANDS), len(months)),
            "month": months * N_BANDS,
            "soil_water_total_kg_m2": rng.normal(620.0, 60.0, N_BANDS * len(months)),
            **{w: np.full(N_BANDS * len(months), 0.2) for w in WATER_CONTENT},
        }
    )
    # a few implausibly wet months force the deepest layer past saturation: they get clipped
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 500 == 0)
        .then(pl.lit(4000.0))
        .otherwise(pl.col("soil_water_total_kg_m2"))
        .alias("soil_water_total_kg_m2")
    )


def _empirical_mean_shares(reference: pl.DataFrame) -> np.ndarray:
    mass = reference.select(pl.col(w) * t * 1000 for w, t in zip(WATER_CONTENT, THICKNESS, strict=True)).to_numpy()
    share = mass / mass.sum(axis=1, keepdims=True)
    band = reference["band"].to_numpy()
    month = reference["month"].dt.month().to_numpy() - 1
    out = np.zeros((N_BANDS, 12, 4))
    for b in range(N_BANDS):
        for m in range(12):
            out[b, m] = share[(band == b) & (month == m)].mean(axis=0)
    return out


def _fractions(frame: pl.DataFrame) -> np.ndarray:
    mass = frame.select(pl.col(w) * t * 1000 for w, t in zip(WATER_CONTENT, THICKNESS, strict=True)).to_numpy()
    return mass / frame["soil_water_total_kg_m2"].to_numpy()[:, None]


def test_fitted_mean_shares_match_the_reanalysis_shares(reference, shares):
    assert shares.alpha.shape == (N_BANDS, 12, 4)
    assert (shares.alpha > 0).all()
    np.testing.assert_allclose(shares.mean, _empirical_mean_shares(reference), atol=1e-12)
    # and the generating shares within sampling error: a share's sd is at most 0.035 at
    # precision 200, so a 23-year mean is within 0.03 (over 4 standard errors)
    np.testing.assert_allclose(shares.mean, _true_mean_shares(), atol=0.03)


def test_fitted_precision_is_near_the_generating_one(shares):
    # 23 years per cell: a moment estimate of alpha_0 is good to tens of percent, not better.
    precision = shares.alpha.sum(axis=-1)
    assert 0.5 * TRUE_PRECISION < np.median(precision) < 1.5 * TRUE_PRECISION


def test_constant_shares_give_a_finite_tight_fit():
    steady = _reference(month_range(date(2001, 1, 1), date(2005, 12, 1)), seed=1, precision=None)
    fitted = fit_layer_shares(_moments(steady))
    assert np.isfinite(fitted.alpha).all()
    assert fitted.alpha.sum(axis=-1).max() <= MAX_PRECISION * (1 + 1e-9)
    np.testing.assert_allclose(fitted.mean, _true_mean_shares(), atol=1e-9)


def test_missing_band_month_cell_raises(reference):
    with pytest.raises(ValueError, match="band 3 month 2"):
        fit_layer_shares(_moments(reference).filter(~((pl.col("band") == 3) & (pl.col("calendar_month") == 2))))


def test_split_fractions_sum_to_one_and_water_is_bounded(scenario, shares):
    split = split_soil_water(scenario, shares, seed=3)
    water = split.select(WATER_CONTENT).to_numpy()
    assert ((water >= 0) & (water <= 1)).all()
    clipped = (water >= 1).any(axis=1)
    assert clipped.sum() >= 1  # the implausibly wet months hit saturation
    # layer water times thickness sums back to the total wherever nothing was clipped
    np.testing.assert_allclose(_fractions(split)[~clipped].sum(axis=1), 1.0, rtol=1e-12)
    assert split.drop(WATER_CONTENT).equals(scenario.drop(WATER_CONTENT))
    assert split.columns == scenario.columns


def test_sampled_fractions_follow_the_fitted_shares(scenario, shares):
    split = split_soil_water(scenario, shares, seed=3)
    fractions = _fractions(split)
    keep = ~(split.select(WATER_CONTENT).to_numpy() >= 1).any(axis=1)
    band = split["band"].to_numpy()[keep]
    month = split["month"].dt.month().to_numpy()[keep] - 1
    np.testing.assert_allclose(fractions[keep].mean(axis=0), shares.mean[band, month].mean(axis=0), atol=2e-3)
    assert fractions[keep].std(axis=0).min() > 0  # sampled, not the mean copied


def test_split_is_deterministic_for_a_seed(scenario, shares):
    first = split_soil_water(scenario, shares, seed=42)
    again = split_soil_water(scenario, shares, seed=42)
    other = split_soil_water(scenario, shares, seed=43)
    assert first.equals(again)
    assert not first.select(WATER_CONTENT).equals(other.select(WATER_CONTENT))


def test_split_refuses_missing_totals(scenario, shares):
    broken = scenario.with_columns(pl.lit(None, dtype=pl.Float64).alias("soil_water_total_kg_m2"))
    with pytest.raises(ValueError, match="soil_water_total_kg_m2"):
        split_soil_water(broken, shares, seed=0)


# --- the lagged split ------------------------------------------------------------------------


def _layered(n_months=240, seed=4):
    """Layer water that follows a slow column anomaly: the top layers at once, the deep one late."""
    rng = np.random.default_rng(seed)
    calendar = np.arange(n_months) % 12
    anomaly = np.convolve(rng.normal(size=n_months + 24), np.ones(6) / 6, "valid")[:n_months] * 40.0  # kg m-2
    deep = exponential_filter(anomaly, 6.0)
    base = np.array([0.30, 0.30, 0.30, 0.30]) + 0.01 * np.sin(2 * np.pi * calendar / 12)[:, None]
    mass_anomaly = np.stack([0.05 * anomaly, 0.10 * anomaly, 0.25 * anomaly, 0.60 * deep], axis=1)
    water = base[:, None, :] + mass_anomaly[:, None, :] / (1000 * THICKNESS) * np.ones((1, N_BANDS, 1))
    return water, calendar


def test_exponential_filter_is_a_first_order_lag():
    step = np.r_[np.zeros(3), np.ones(60)]
    filtered = exponential_filter(step, 4.0)
    assert filtered[:3].tolist() == [0.0, 0.0, 0.0]
    assert filtered[3 + 4] == pytest.approx(1 - np.exp(-5 / 4))  # five months after the step
    assert filtered[-1] == pytest.approx(1.0, abs=1e-3)


def test_lagged_split_keeps_the_climatology_and_finds_the_deep_lag():
    water, calendar = _layered()
    split = LaggedLayerSplit.fit(water, calendar)
    assert split.tau[0, 3] >= 3.0 > split.tau[0, 0]  # the deep layer answers slowly, the top at once
    total = (water * THICKNESS * 1000).sum(axis=-1)
    back = split.split(total, calendar)
    assert np.abs(back - water)[24:].mean() < 0.005
    # the climatological total gives back each layer's climatology exactly
    assert np.allclose(split.split(split.clim_total[calendar], calendar), split.clim_w[calendar], atol=1e-12)


def test_lagged_split_adds_no_month_to_month_noise():
    water, calendar = _layered()
    split = LaggedLayerSplit.fit(water, calendar)
    total = (water * THICKNESS * 1000).sum(axis=-1)
    tails = water_tails(water, split.split(total, calendar))
    assert tails["w_3"]["noise_ratio"] < 1.2  # no sampled shares: the reanalysis' own variability
    assert 0.0 <= tails["w_0"]["outside_range"] < 0.05


def test_lagged_split_of_frames(reference):
    scenario = reference.with_columns(
        (pl.sum_horizontal(pl.col(w) * t * 1000 for w, t in zip(WATER_CONTENT, THICKNESS, strict=True))).alias(
            "soil_water_total_kg_m2"
        ),
        *(pl.lit(0.0).alias(w) for w in WATER_CONTENT),
    )
    out = split_soil_water_lagged(scenario, reference)
    assert out.columns == scenario.columns and out.height == scenario.height
    total = sum(out[w] * t * 1000 for w, t in zip(WATER_CONTENT, THICKNESS, strict=True))
    assert (out.select(WATER_CONTENT).to_numpy() > 0).all()
    assert np.corrcoef(total.to_numpy(), scenario["soil_water_total_kg_m2"].to_numpy())[0, 1] > 0.5


def test_tails_of_the_projection_months_only(reference):
    from ml.soil_water import projected_water_tails

    # a scenario whose 2024 on is the reanalysis moved a year on, and whose earlier years are far off
    later = reference.with_columns(pl.col("month").dt.offset_by("3y"))
    wet_past = later.with_columns(
        pl.when(pl.col("month") < date(2024, 1, 1)).then(pl.col(w) + 1.0).otherwise(pl.col(w)).alias(w)
        for w in WATER_CONTENT
    )
    tails = projected_water_tails(reference, wet_past, "rcp45 soil water")
    # the wet years before 2024 are no part of it: 2024 on lies inside the reanalysis' range
    assert tails["w_3"]["outside_range"] == 0.0 and tails["w_3"]["noise_ratio"] == pytest.approx(1.0, rel=0.3)
    with pytest.raises(ValueError, match="rcp45 soil water"):
        projected_water_tails(reference, wet_past.drop("w_2"), "rcp45 soil water")
