"""Baselines on constructed series whose right answers are known in closed form."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from ml import baselines
from sources import catalog

MONTHS = np.arange(np.datetime64("2001-01"), np.datetime64("2024-01"), dtype="datetime64[M]")  # 276
TEST_MONTHS = np.arange(np.datetime64("2019-01"), np.datetime64("2024-01"), dtype="datetime64[M]")  # 60
AMPLITUDE = np.array([10.0, 6.0, 3.0, 1.0])  # seasonal amplitude per layer, degC


def seasonal(band: int, months: np.ndarray) -> np.ndarray:
    """(n, 4): the same every year; band shifts the mean."""
    calendar = months.astype(int) % 12
    return -2.0 * band + AMPLITUDE[None, :] * np.sin(2 * np.pi * calendar / 12)[:, None]


def history(bands=(0, 3), slope=0.0) -> pl.DataFrame:
    """Monthly history 2001-01..2023-12; `slope` degC per month added from 2001-01 (index 0)."""
    frames = []
    index = np.arange(len(MONTHS), dtype=float)
    for b in bands:
        values = seasonal(b, MONTHS) + slope * index[:, None]
        frames.append(
            pl.DataFrame(
                {"unit": np.full(len(MONTHS), b, dtype=np.int32), "month": MONTHS.astype("datetime64[D]")}
                | {name: values[:, k] for k, name in enumerate(catalog.TARGETS)}
            ).with_columns(pl.col("month").cast(pl.Date))
        )
    return pl.concat(frames)


def test_seasonal_series_climatology_and_persistence_exact_on_test_years():
    frame = history()
    band = np.repeat([0, 3], len(TEST_MONTHS))
    months = np.tile(TEST_MONTHS, 2)
    truth = np.concatenate([seasonal(0, TEST_MONTHS), seasonal(3, TEST_MONTHS)])
    np.testing.assert_allclose(baselines.climatology(frame).predict(band, months), truth, atol=1e-12)
    np.testing.assert_allclose(baselines.persistence_predict(frame, band, months), truth, atol=1e-12)


def test_trend_persistence_lags_by_twelve_months_of_trend_and_climatology_by_training_mean():
    slope = 0.01  # degC per month
    frame = history(slope=slope)
    band = np.repeat([0, 3], len(TEST_MONTHS))
    months = np.tile(TEST_MONTHS, 2)
    index = (months - np.datetime64("2001-01")).astype(int).astype(float)
    truth = np.concatenate([seasonal(0, TEST_MONTHS), seasonal(3, TEST_MONTHS)]) + slope * index[:, None]

    error = baselines.persistence_predict(frame, band, months) - truth
    np.testing.assert_allclose(error, -12 * slope, atol=1e-12)

    # climatology of calendar month m over 2001..2018: month index (year - 2001) * 12 + m - 1,
    # whose mean over the 18 training years is 8.5 * 12 + m - 1
    calendar = months.astype(int) % 12
    expected = truth - slope * index[:, None] + slope * (8.5 * 12 + calendar)[:, None]
    np.testing.assert_allclose(baselines.climatology(frame).predict(band, months), expected, atol=1e-9)


def test_climatology_ignores_test_years():
    frame = history(slope=0.02)
    changed = frame.with_columns(
        [
            pl.when(pl.col("month") >= dt.date(2019, 1, 1)).then(pl.col(c) + 50.0).otherwise(pl.col(c)).alias(c)
            for c in catalog.TARGETS
        ]
    )
    band, months = np.repeat([0, 3], len(TEST_MONTHS)), np.tile(TEST_MONTHS, 2)
    before = baselines.climatology(frame).predict(band, months)
    after = baselines.climatology(changed).predict(band, months)
    np.testing.assert_array_equal(before, after)
    # ... whereas a later train_last does see the change
    moved = baselines.climatology(changed, train_last=dt.date(2023, 12, 1)).predict(band, months)
    assert np.all(moved > before + 10.0)


def test_climatology_unknown_band_raises():
    model = baselines.climatology(history(bands=(0,)))
    with pytest.raises(ValueError, match="unit 5"):
        model.predict(np.array([5]), np.array(["2020-01"], dtype="datetime64[M]"))


def test_persistence_missing_month_names_band_and_month():
    frame = history().filter(~((pl.col("unit") == 3) & (pl.col("month") == dt.date(2018, 3, 1))))
    with pytest.raises(ValueError, match=r"unit 3 month 2018-03"):
        baselines.persistence_predict(frame, np.array([0, 3]), np.array(["2019-03", "2019-03"], dtype="datetime64[M]"))
    # band 0 still has 2018-03
    out = baselines.persistence_predict(frame, np.array([0]), np.array(["2019-03"], dtype="datetime64[M]"))
    np.testing.assert_allclose(out, seasonal(0, np.array(["2018-03"], dtype="datetime64[M]")))


def linear_windows(n=240, window=3, features=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, window, features)).astype(np.float32)
    band = rng.integers(0, 3, size=n)
    a = rng.normal(size=(features, 4))
    b = np.array([1.5, -0.5, 0.25, 3.0])
    offset = np.array([0.0, -4.0, 2.5])  # per band, same for every layer
    y = x[:, -1, :].astype(np.float64) @ a + b + offset[band][:, None]
    return x, band, y, a, b + offset[:, None]


def test_ridge_recovers_linear_relation_with_small_alpha():
    x, band, y, a, b = linear_windows()
    model = baselines.RidgeBaseline().fit(x[:200], band[:200], y[:200], alpha=1e-9)
    # held-out windows predicted exactly
    np.testing.assert_allclose(model.predict(x[200:], band[200:]), y[200:], atol=1e-6)
    # coefficients: only the last step carries weight; one intercept row per unit 0, 1, 2
    assert model.units.tolist() == [0, 1, 2]
    coef = model.coef.reshape(3, 2, 4)
    np.testing.assert_allclose(coef[-1], a, atol=1e-6)
    np.testing.assert_allclose(coef[:-1], 0.0, atol=1e-6)
    np.testing.assert_allclose(model.intercept, b, atol=1e-6)
    # a large penalty shrinks towards the mean and no longer predicts exactly
    shrunk = baselines.RidgeBaseline().fit(x[:200], band[:200], y[:200], alpha=1e4)
    assert np.abs(shrunk.predict(x[200:], band[200:]) - y[200:]).max() > 0.1


def test_ridge_auto_alpha_time_ordered_and_row_order_free():
    rng = np.random.default_rng(1)
    n_months, n_bands = 60, 3
    month = np.tile(np.arange(np.datetime64("2005-01"), np.datetime64("2005-01") + n_months), n_bands)
    band = np.repeat(np.arange(n_bands), n_months)  # band-major rows, like WindowSet
    x = rng.normal(size=(len(band), 4, 20))
    # pure noise target with a band offset: heavy shrinkage of the 80 window columns wins
    y = band[:, None] * np.array([1.0, 2.0, 3.0, 4.0]) + rng.normal(size=(len(band), 4))
    model = baselines.RidgeBaseline().fit(x, band, y, alpha="auto", target_month=month)
    assert set(model.validation_rmse) == set(baselines.ALPHA_GRID)
    assert model.alpha >= 100.0
    assert model.alpha == min(model.validation_rmse, key=model.validation_rmse.get)

    permutation = rng.permutation(len(band))
    shuffled = baselines.RidgeBaseline().fit(
        x[permutation], band[permutation], y[permutation], alpha="auto", target_month=month[permutation]
    )
    assert shuffled.alpha == model.alpha
    assert shuffled.validation_rmse == pytest.approx(model.validation_rmse)

    # noise-free linear data: the smallest penalty validates best
    lx, lband, ly, _, _ = linear_windows(n=120)
    lmonth = np.arange(np.datetime64("2001-01"), np.datetime64("2001-01") + 120)
    linear = baselines.RidgeBaseline().fit(lx, lband, ly, alpha="auto", target_month=lmonth)
    assert linear.alpha == min(baselines.ALPHA_GRID)

    with pytest.raises(ValueError, match="target_month"):
        baselines.RidgeBaseline().fit(x, band, y, alpha="auto")


def test_damped_persistence_uses_the_previous_month_with_the_fitted_damping():
    rng = np.random.default_rng(2)
    n_months = 240
    calendar = np.arange(n_months) % 12
    anomaly = np.zeros((n_months, 1, 1))
    for t in range(1, n_months):
        anomaly[t] = 0.7 * anomaly[t - 1] + rng.normal()
    observed = anomaly + 5 * np.cos(2 * np.pi * calendar / 12)[:, None, None]
    predicted = baselines.damped_persistence(observed, calendar, np.ones(n_months, dtype=bool))
    clim = np.stack([observed[calendar == m].mean(axis=0) for m in range(12)])
    phi = (predicted[1:] - clim[calendar][1:]) / (observed[:-1] - clim[calendar][:-1])
    assert np.allclose(phi, phi[0]) and 0.45 < phi[0, 0, 0] < 0.85  # AR(1) 0.7, minus the climatology's share
    assert np.allclose(predicted[0], clim[0])
    # a month-ahead forecast: far better than climatology on this persistent series
    assert np.mean((predicted - observed) ** 2) < 0.7 * np.mean((clim[calendar] - observed) ** 2)
    with pytest.raises(ValueError, match="13 training months"):
        baselines.damped_persistence(observed[:12], calendar[:12], np.ones(12, dtype=bool))
