"""The distributed-lag ridge recovers a lagged response; lags line up with their months."""

import numpy as np
import pytest

from ml.distributed_lag import DistributedLagRidge, lag_stack, seasonal_interactions


def test_lag_stack_lines_up_months():
    x = np.arange(10, dtype=float).reshape(10, 1, 1)
    current = lag_stack(x, 3)
    assert current[5, 0, :, 0].tolist() == [5.0, 4.0, 3.0]
    assert np.isnan(current[1, 0, 2, 0])
    paper = lag_stack(x, 3, current=False)  # t-1 .. t-3
    assert paper[5, 0, :, 0].tolist() == [4.0, 3.0, 2.0]


def test_seasonal_interactions_triple_the_lags():
    features = np.ones((12, 1, 2, 1))
    out = seasonal_interactions(features, np.arange(12), harmonics=1)
    assert out.shape == (12, 1, 6, 1)
    assert np.allclose(out[:, 0, 2, 0], np.cos(2 * np.pi * np.arange(12) / 12))


def test_recovers_a_lagged_response_out_of_sample():
    rng = np.random.default_rng(1)
    n_months, n_bands = 240, 3
    calendar = np.arange(n_months) % 12
    x = rng.normal(size=(n_months, n_bands, 1))
    y = np.zeros((n_months, n_bands, 4))
    y[2:] = 0.8 * x[:-2] + 0.3 * x[2:]  # lags 2 and 0
    y += rng.normal(0, 0.01, y.shape)
    model = DistributedLagRidge(lags=6, harmonics=0, drivers=("t_air",)).fit(x, y, calendar, np.arange(n_months) < 180)
    predicted = model.predict(x, calendar)
    assert np.sqrt(((predicted - y)[190:] ** 2).mean()) < 0.05
    assert np.allclose(predicted[:5], model.target_clim[calendar[:5]])  # lags before the series: climatology


def test_predict_before_fit_raises():
    with pytest.raises(ValueError, match="before fit"):
        DistributedLagRidge().predict(np.zeros((30, 1, 1)), np.arange(30) % 12)


def test_fitted_on_the_history_it_learns_from_the_training_months_only():
    from ml.distributed_lag import fit_on_history
    from ml.unit_arrays import UnitGrid
    from sources import catalog

    rng = np.random.default_rng(2)
    months = np.arange(np.datetime64("2001-01"), np.datetime64("2024-01"))
    names = ("t_air", "p_total", "p_snow", "w_0", "w_1", "w_2", "w_3")  # a source without skin temperature
    drivers = rng.normal(size=(len(months), 2, len(names)))
    targets = 0.5 * drivers[..., :4] + rng.normal(0, 0.1, (len(months), 2, 4))
    units = np.array([3, 15])
    history = UnitGrid(months, np.concatenate([drivers, targets], axis=-1), names + catalog.TARGETS, units)
    model = fit_on_history(history, names)
    assert model.drivers == names
    # the test years' soil temperatures changed: the fit does not move
    test_years = months > np.datetime64("2018-12")
    changed = targets.copy()
    changed[test_years] += 5.0
    other = fit_on_history(UnitGrid(months, np.concatenate([drivers, changed], axis=-1), history.names, units), names)
    calendar = history.calendar_month
    assert np.array_equal(model.predict(drivers, calendar), other.predict(drivers, calendar))
    train = ~test_years
    by_hand = DistributedLagRidge(drivers=names).fit(drivers, targets, calendar, train)
    assert np.allclose(model.predict(drivers, calendar), by_hand.predict(drivers, calendar))
