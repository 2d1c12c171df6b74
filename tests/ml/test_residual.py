"""Residual networks: channels, clipping, windows, the bounded output, training and reloading."""

import json

import numpy as np
import pytest

from ml.residual import (
    CHANNELS,
    DRIVERS,
    ResidualScaler,
    ResidualWindows,
    build_bounded,
    load_residual,
    residual_windows,
    save_residual,
    train_residual,
    validation_months,
    window_view,
)
from ml.training_config import TrainingConfig

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def history(n_months=96, n_bands=2, seed=3):
    """Drivers, a core and observed soil temperatures whose residual depends on one driver."""
    rng = np.random.default_rng(seed)
    calendar = np.arange(n_months) % 12
    drivers = rng.normal(size=(n_months, n_bands, len(DRIVERS))) + np.cos(2 * np.pi * calendar / 12)[:, None, None]
    core = 5 * np.cos(2 * np.pi * calendar / 12)[:, None, None] + rng.normal(size=(n_months, n_bands, 4))
    observed = core + 0.8 * drivers[..., :1] + 0.1 * rng.normal(size=(n_months, n_bands, 4))
    months = np.arange(np.datetime64("2001-01"), np.datetime64("2001-01") + n_months)
    return drivers, core, observed, calendar, months


def test_scaler_channels_are_anomalies_in_training_units():
    drivers, core, observed, calendar, _ = history()
    train = np.arange(len(calendar)) < 72
    scaler = ResidualScaler.fit(drivers, core, observed, calendar, train)
    channels = scaler.transform(drivers, core, calendar, clip=False)
    assert channels.shape == (96, 2, len(CHANNELS)) and channels.dtype == np.float32
    flat = channels[train].reshape(-1, len(CHANNELS))
    assert np.allclose(flat[:, :16].std(axis=0), 1.0, atol=1e-5)  # pooled training sd
    assert np.allclose(flat[:, -2:].max(axis=0), 1.0, atol=1e-6)  # sin, cos of the month
    assert np.allclose(scaler.sigma_res, (observed - core)[train].reshape(-1, 4).std(axis=0))
    again = ResidualScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert np.array_equal(again.transform(drivers, core, calendar), scaler.transform(drivers, core, calendar))


def test_channels_are_clipped_to_their_training_range_and_counted():
    drivers, core, observed, calendar, _ = history()
    scaler = ResidualScaler.fit(drivers, core, observed, calendar, np.ones(96, dtype=bool))
    hot = scaler.transform(drivers + 50.0, core + 50.0, calendar)
    assert (hot <= scaler.high + 1e-6).all() and (hot >= scaler.low - 1e-6).all()
    share = scaler.out_of_range_share(drivers + 50.0, core + 50.0, calendar)
    assert share["t_air"] == 1.0 and share["core_t_soil_3"] == 1.0 and share["month_sin"] == 0.0
    assert max(scaler.out_of_range_share(drivers, core, calendar).values()) == 0.0


def test_windows_end_at_the_target_month_or_before():
    n_months, n_bands, n_channels = 40, 2, 3
    channels = np.arange(n_months * n_bands * n_channels, dtype=float).reshape(n_months, n_bands, n_channels)
    x, band, row = window_view(channels, np.array([30, 31]), window=24)
    assert x.shape == (4, 24, 3) and band.tolist() == [0, 0, 1, 1] and row.tolist() == [30, 31, 30, 31]
    assert (x[0, -1] == channels[30, 0]).all() and (x[2, -1] == channels[30, 1]).all()
    assert (x[0, 0] == channels[7, 0]).all()  # t-23
    paper, *_ = window_view(channels, np.array([30, 31]), window=24, current=False)
    assert (paper[0, -1] == channels[29, 0]).all()  # the paper's t-1
    short, _, kept = window_view(channels, np.array([5, 30]), window=24)
    assert kept.tolist() == [30, 30]  # a target without a full window is left out


def test_residual_windows_carry_core_and_scaled_residual(tmp_path):
    drivers, core, observed, calendar, months = history()
    scaler = ResidualScaler.fit(drivers, core, observed, calendar, np.arange(96) < 72)
    windows = residual_windows(scaler, drivers, core, months, np.arange(72, 96), observed)
    assert len(windows) == 48 and windows.target_month[0] == np.datetime64("2007-01")
    assert np.allclose(windows.core[0], core[72, 0]) and np.allclose(windows.observed[-1], observed[95, 1])
    assert np.allclose(windows.residual * scaler.sigma_res, windows.observed - windows.core, atol=1e-5)
    windows.save(tmp_path / "w.npz")
    loaded = ResidualWindows.load(tmp_path / "w.npz")
    assert np.array_equal(loaded.x, windows.x) and loaded.residual is not None
    scenario = residual_windows(scaler, drivers, core, months, np.arange(72, 96))
    assert scenario.observed is None and scenario.residual is None


def test_validation_is_the_latest_target_months():
    months = np.repeat(np.arange(np.datetime64("2001-01"), np.datetime64("2002-01")), 2)
    held = validation_months(months, 0.25)
    assert held.sum() == 6 and months[held].min() == np.datetime64("2001-10")
    assert not validation_months(months, 0.0).any()


def test_the_bounded_network_cannot_exceed_its_bound():
    model = build_bounded("gru", n_features=5, bound=1.5, window=6)
    out = model.predict({"x": np.full((3, 6, 5), 1e3, np.float32), "unit": np.zeros(3, np.int32)}, verbose=0)
    assert out.shape == (3, 4) and np.abs(out).max() <= 1.5 + 1e-6


def test_trains_learns_the_residual_and_reloads(tmp_path):
    drivers, core, observed, calendar, months = history(n_months=120)
    train = np.arange(120) < 96
    scaler = ResidualScaler.fit(drivers, core, observed, calendar, train)
    windows = residual_windows(scaler, drivers, core, months, np.flatnonzero(train), observed)
    test = residual_windows(scaler, drivers, core, months, np.arange(96, 120), observed)
    config = TrainingConfig(epochs=25, seeds=1, batch_size=32, learning_rate=1e-2, patience=25)
    trained = train_residual("gru", windows, scaler, config, member=1, hyperparameters={"units": 8})
    assert trained.member == 1 and len(trained.history["loss"]) == 25
    error_core = np.abs(test.observed - test.core).mean()
    error_model = np.abs(test.observed - trained.predict(test)).mean()
    assert error_model < 0.6 * error_core  # the network learned the driver's part of the residual
    save_residual(trained, tmp_path / "gru")
    loaded = load_residual(tmp_path / "gru")
    assert loaded.member == 1 and loaded.config == config
    assert np.allclose(loaded.predict(test), trained.predict(test), atol=1e-5)
    record = json.loads((tmp_path / "gru" / "training.json").read_text())
    assert record["hyperparameters"]["units"] == 8 and record["epochs_run"] == 25


def test_training_and_test_windows_split_the_history_by_target_month():
    from ml.residual import training_and_test_windows
    from ml.unit_arrays import UnitGrid
    from sources import catalog

    drivers, core, observed, calendar, _ = history(n_months=276, n_bands=catalog.N_BANDS)  # 2001-2023
    months = np.arange(np.datetime64("2001-01"), np.datetime64("2024-01"))
    names = DRIVERS + catalog.TARGETS
    grid = UnitGrid(months, np.concatenate([drivers, observed], axis=-1), names, np.arange(catalog.N_BANDS))
    train, test, scaler = training_and_test_windows(grid, core)
    assert train.target_month.max() == np.datetime64("2018-12") and train.target_month.min() == np.datetime64("2002-12")
    assert test.target_month.min() == np.datetime64("2019-01") and test.target_month.max() == np.datetime64("2023-12")
    assert len(test) == 60 * catalog.N_BANDS
    in_train = months <= np.datetime64("2018-12")
    by_hand = ResidualScaler.fit(drivers, core, observed, calendar, in_train)
    assert np.array_equal(scaler.sigma_res, by_hand.sigma_res) and np.array_equal(scaler.low, by_hand.low)
    expected = residual_windows(by_hand, drivers, core, months, np.arange(216, 276), observed)
    assert np.array_equal(test.x, expected.x) and np.array_equal(test.residual, expected.residual)


def test_a_scaler_carries_the_channels_of_its_sources():
    drivers, core, observed, calendar, months = history()
    names = ("t_air", "p_total", "p_snow")  # a source without skin temperature, radiation or fluxes
    scaler = ResidualScaler.fit(drivers[..., :3], core, observed, calendar, np.arange(96) < 72, names)
    assert scaler.channels == (*names, *CHANNELS[-6:])
    windows = residual_windows(scaler, drivers[..., :3], core, months, np.arange(72, 96), observed)
    assert windows.x.shape[2] == len(scaler.channels) and windows.channels == scaler.channels
    again = ResidualScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert again.channels == scaler.channels and again.unit_features is None
    with pytest.raises(ValueError, match="names 3"):
        ResidualScaler.fit(drivers, core, observed, calendar, np.arange(96) < 72, names)


def test_units_without_observations_scale_from_the_others_and_reference_the_core():
    drivers, core, observed, calendar, _ = history(n_bands=3)
    train = np.arange(96) < 72
    fitted = np.array([True, True, False])
    wild = observed.copy()
    wild[:, 2] += 40.0  # the held-out unit's observations: must not reach the scaler
    features = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    scaler = ResidualScaler.fit(drivers, core, wild, calendar, train, DRIVERS, fitted, "core", features, ("a", "b"))
    clean = ResidualScaler.fit(drivers, core, observed, calendar, train, DRIVERS, fitted, "core", features, ("a", "b"))
    assert np.array_equal(scaler.sigma_res, clean.sigma_res) and np.array_equal(scaler.low, clean.low)
    core_clim = np.stack([core[train & (calendar == m)].mean(axis=0) for m in range(12)])
    assert np.allclose(scaler.target_clim, core_clim)  # the core channel is the core's own anomaly
    windows = residual_windows(
        scaler, drivers, core, np.arange(np.datetime64("2001-01"), np.datetime64("2009-01")), [80]
    )
    inputs = scaler.network_inputs(windows)
    assert set(inputs) == {"x", "unit_features"} and np.array_equal(
        inputs["unit_features"], features.astype(np.float32)
    )
    model = build_bounded("gru", len(scaler.channels), unit_features=2, window=24)
    assert model.predict(inputs, verbose=0).shape == (3, 4)
    with pytest.raises(ValueError, match="core_reference"):
        ResidualScaler.fit(drivers, core, observed, calendar, train, DRIVERS, fitted, "mean")
