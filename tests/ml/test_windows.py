"""Sliding windows: alignment against a naive loop, the split, leakage-free statistics,
the scenario signal z, scenario windows, input validation and persistence."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from ml import windows as W
from ml.unit_arrays import Units
from sources import catalog

RNG_SEED = 20240101
UNITS = Units.bands()  # the frames' units are the bands (ids = positions)


def months_between(first: str, last: str) -> np.ndarray:
    return np.arange(np.datetime64(first, "M"), np.datetime64(last, "M") + 1)


def ordinal(months: np.ndarray) -> np.ndarray:
    """Months since 1970-01 as float: a feature value that says which month a row is."""
    return months.astype("datetime64[M]").astype(np.int64).astype(np.float64)


def make_frame(spans: dict[int, tuple[str, str]], seed: int = 0, targets: bool = True) -> pl.DataFrame:
    """Random band x month table. t_air and t_soil_0 hold the month ordinal so alignment
    can be read back; every other column is noise on its own scale."""
    rng = np.random.default_rng(seed)
    parts = []
    for band, (first, last) in spans.items():
        months = months_between(first, last)
        n = len(months)
        columns: dict[str, object] = {
            "unit": np.full(n, band, dtype=np.int32),
            "month": months.astype("datetime64[D]"),
        }
        for i, name in enumerate(W.MONTHLY_FEATURES):
            columns[name] = rng.normal(10.0 * i, 1.0 + i, n)
        columns["t_air"] = ordinal(months) + 1000.0 * band
        columns["r_thermal"] = rng.normal(6e8, 1.5e8, n)
        if targets:
            for name in catalog.TARGETS:
                columns[name] = rng.normal(0.0, 5.0, n)
            columns["t_soil_0"] = ordinal(months) + 1000.0 * band
        parts.append(pl.DataFrame(columns))
    return pl.concat(parts)


HISTORY_SPANS = {0: ("2014-01", "2023-12"), 2: ("2015-07", "2023-12"), 5: ("2014-01", "2023-12")}


@pytest.fixture(scope="module")
def history() -> pl.DataFrame:
    # Shuffled rows: the builder must sort by band and month itself.
    return make_frame(HISTORY_SPANS, seed=RNG_SEED).sample(fraction=1.0, shuffle=True, seed=1)


@pytest.fixture(scope="module")
def built(history):
    return W.build_training_windows(history, UNITS)


# --- naive reference: Python loops over every window ---------------------------------------


def naive_windows(frame: pl.DataFrame, window: int, first_target: str, last_target: str):
    """Every window whose target month is in [first_target, last_target], one at a time."""
    lo, hi = np.datetime64(first_target, "M"), np.datetime64(last_target, "M")
    out = {"x": [], "band": [], "y": [], "month": [], "r_mean": [], "rows": []}
    for band in sorted(frame["unit"].unique().to_list()):
        rows = frame.filter(pl.col("unit") == band).sort("month")
        months = rows["month"].to_numpy().astype("datetime64[M]")
        raw = rows.select(W.MONTHLY_FEATURES).to_numpy()
        targets = rows.select(catalog.TARGETS).to_numpy()
        for t in range(len(months) - window):
            if not lo <= months[t + window] <= hi:
                continue
            out["x"].append(raw[t : t + window])
            out["y"].append(targets[t + window])
            out["band"].append(band)
            out["month"].append(months[t + window])
            out["r_mean"].append(np.mean(raw[t : t + window, W.MONTHLY_FEATURES.index("r_thermal")]))
            out["rows"].append([(band, months[i]) for i in range(t, t + window)])
    return out


def naive_stats(frame: pl.DataFrame, window: int):
    """Feature, target and r_thermal statistics over the training windows, by hand."""
    train = naive_windows(frame, window, "1900-01", "2018-12")
    seen, input_rows = set(), []
    for x, keys in zip(train["x"], train["rows"], strict=False):
        for row, key in zip(x, keys, strict=False):
            if key not in seen:  # each band-month once
                seen.add(key)
                input_rows.append(row)
    input_rows = np.array(input_rows)
    r = input_rows[:, W.MONTHLY_FEATURES.index("r_thermal")]
    mu, sigma = r.mean(), r.std()
    z = []
    for m in train["r_mean"]:
        z_tilde = (m - mu) / sigma
        z.append(abs(z_tilde) * z_tilde)
    return {
        "mean": np.r_[input_rows.mean(axis=0), np.mean(z)],
        "std": np.r_[input_rows.std(axis=0), np.std(z)],
        "target_mean": np.array(train["y"]).mean(axis=0),
        "target_std": np.array(train["y"]).std(axis=0),
        "mu": mu,
        "sigma": sigma,
    }


def test_features_follow_the_catalog():
    assert W.FEATURES[-1] == "z"
    assert W.FEATURES[:-1] == (
        catalog.DYNAMIC_FEATURES + catalog.WATER_CONTENT + catalog.STATIC_FEATURES + catalog.TIME_FEATURES
    )


def test_statistics_match_a_hand_loop(history, built):
    _, _, stats = built
    expected = naive_stats(history, 24)
    np.testing.assert_allclose(stats.r_thermal_mean, expected["mu"], rtol=1e-12)
    np.testing.assert_allclose(stats.r_thermal_std, expected["sigma"], rtol=1e-12)
    np.testing.assert_allclose(stats.mean, expected["mean"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.std, expected["std"], rtol=1e-10)
    np.testing.assert_allclose(stats.target_mean, expected["target_mean"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.target_std, expected["target_std"], rtol=1e-10)


@pytest.mark.parametrize(("split", "first", "last"), [(0, "1900-01", "2018-12"), (1, "2019-01", "2023-12")])
def test_windows_equal_a_naive_loop(history, built, split, first, last):
    windows, stats = built[split], built[2]
    naive = naive_windows(history, 24, first, last)
    n = len(naive["x"])
    assert n > 0
    assert windows.x.shape == (n, 24, len(W.FEATURES)) and windows.x.dtype == np.float32
    assert windows.y.shape == (n, 4) and windows.y.dtype == np.float32
    np.testing.assert_array_equal(windows.unit, np.array(naive["band"], dtype=np.int32))
    np.testing.assert_array_equal(windows.target_month, np.array(naive["month"], dtype="datetime64[M]"))
    np.testing.assert_array_equal(windows.y, np.array(naive["y"]).astype(np.float32))
    # Monthly channels: the same element-wise z-score of the same raw values -> bit-identical.
    raw = np.stack(naive["x"])
    expected = ((raw - stats.mean[:-1]) / stats.std[:-1]).astype(np.float32)
    np.testing.assert_array_equal(windows.x[:, :, :-1], expected)
    # z: one value per window, repeated at every step, normalised with the training stats.
    hand = naive_stats(history, 24)
    z_tilde = (np.array(naive["r_mean"]) - hand["mu"]) / hand["sigma"]
    z = np.abs(z_tilde) * z_tilde
    assert (windows.x[:, :, -1] == windows.x[:, :1, -1]).all()
    np.testing.assert_allclose(windows.x[:, 0, -1], (z - hand["mean"][-1]) / hand["std"][-1], rtol=1e-5, atol=1e-5)


def denormalised(windows: W.WindowSet, stats: W.NormalizationStats, feature: str) -> np.ndarray:
    i = stats.feature_names.index(feature)
    return windows.x[..., i].astype(np.float64) * stats.std[i] + stats.mean[i]


def test_target_is_the_month_after_the_last_input(built):
    for windows in built[:2]:
        stats = built[2]
        t_air = np.rint(denormalised(windows, stats, "t_air"))  # month ordinal + 1000 * band
        month_of_step = t_air - 1000.0 * windows.unit[:, None]
        target = ordinal(windows.target_month)
        np.testing.assert_array_equal(month_of_step[:, -1], target - 1)
        np.testing.assert_array_equal(month_of_step, target[:, None] - 24 + np.arange(24))
        np.testing.assert_array_equal(windows.y[:, 0], target + 1000.0 * windows.unit)


def test_split_by_target_month(built):
    train, test, stats = built
    assert train.target_month.max() == np.datetime64("2018-12")
    assert test.target_month.min() == np.datetime64("2019-01")
    assert test.target_month.max() == np.datetime64("2023-12")
    for band, (first, _) in HISTORY_SPANS.items():
        expected_first = np.datetime64(first, "M") + 24
        assert train.target_month[train.unit == band].min() == expected_first
        assert (test.unit == band).sum() == 60  # 2019-01..2023-12
        assert (train.unit == band).sum() == (np.datetime64("2018-12") - expected_first).astype(int) + 1
    # The first test window of a band reads 2017-01..2018-12: inputs may precede the split.
    input_months = np.rint(denormalised(test, stats, "t_air")) - 1000.0 * test.unit[:, None]
    first_window = input_months[test.target_month == np.datetime64("2019-01")][0]
    np.testing.assert_array_equal(first_window, ordinal(months_between("2017-01", "2018-12")))


def test_months_after_the_test_period_are_ignored(history, built):
    later = make_frame({0: ("2024-01", "2024-06"), 2: ("2024-01", "2024-03")}, seed=3)
    train, test, stats = W.build_training_windows(pl.concat([history, later]), UNITS)
    assert test.target_month.max() == np.datetime64("2023-12")
    np.testing.assert_array_equal(test.x, built[1].x)
    assert stats.to_dict() == built[2].to_dict()


def perturb(frame: pl.DataFrame, where: pl.Expr, columns) -> pl.DataFrame:
    return frame.with_columns(
        [pl.when(where).then(pl.col(c) * 3.0 + 17.0).otherwise(pl.col(c)).alias(c) for c in columns]
    )


def test_test_period_rows_do_not_touch_the_statistics(history, built):
    test_period = pl.col("month") >= dt.date(2019, 1, 1)
    changed = perturb(history, test_period, W.MONTHLY_FEATURES + catalog.TARGETS)
    train, test, stats = W.build_training_windows(changed, UNITS)
    assert stats.to_dict() == built[2].to_dict()
    np.testing.assert_array_equal(train.x, built[0].x)
    assert not np.array_equal(test.x, built[1].x)  # the perturbation did reach the test windows


def test_input_statistics_use_only_inputs_of_training_windows(history, built):
    # 2018-12 is a training TARGET but the input of no training window (those end 2018-11).
    december = pl.col("month") == dt.date(2018, 12, 1)
    stats = W.build_training_windows(perturb(history, december, W.MONTHLY_FEATURES), UNITS)[2]
    assert stats.to_dict() == built[2].to_dict()
    # ... while its target is a training target.
    stats = W.build_training_windows(perturb(history, december, ["t_soil_2"]), UNITS)[2]
    assert stats.target_mean[2] != built[2].target_mean[2]


def test_a_training_period_value_changes_the_statistics(history, built):
    one_row = (pl.col("month") == dt.date(2017, 6, 1)) & (pl.col("unit") == 2)
    stats = W.build_training_windows(perturb(history, one_row, ["r_thermal"]), UNITS)[2]
    assert stats.r_thermal_mean != built[2].r_thermal_mean
    i = W.FEATURES.index("r_thermal")
    assert stats.mean[i] != built[2].mean[i]
    assert stats.mean[-1] != built[2].mean[-1]  # z moves with r_thermal


def test_constant_feature_gets_unit_std_and_normalises_to_zero(history):
    flat = history.with_columns(pl.lit(0.3).alias("litho_glacier"))
    train, _, stats = W.build_training_windows(flat, UNITS)
    i = W.FEATURES.index("litho_glacier")
    assert stats.std[i] == 1.0
    assert np.isfinite(train.x).all()
    assert (train.x[..., i] == 0).all()


def test_scenario_signal_hand_computed():
    # r = 1..5, w = 2, mu = 2, sigma = 2: means 1.5, 2.5, 3.5, 4.5 -> z~ = -.25, .25, .75, 1.25
    z = W.scenario_signal(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 2, mu=2.0, sigma=2.0)
    np.testing.assert_allclose(z, [-0.0625, 0.0625, 0.5625, 1.5625])


def test_z_in_built_windows_hand_computed():
    # One band, 2018-07..2019-02, w = 2. Training windows (targets 2018-09..2018-12) read
    # 2018-07..2018-11 where r = 1..5: mu = 3, sigma = sqrt(2) (population).
    frame = make_frame({1: ("2018-07", "2019-02")}, seed=5).with_columns(
        pl.Series("r_thermal", [1.0, 2.0, 3.0, 4.0, 5.0, 100.0, 200.0, 300.0])
    )
    train, test, stats = W.build_training_windows(frame, UNITS, window=2)
    assert stats.r_thermal_mean == pytest.approx(3.0)
    assert stats.r_thermal_std == pytest.approx(np.sqrt(2.0))
    # z = sign * ((mean - 3) / sqrt 2)^2
    np.testing.assert_allclose(denormalised(train, stats, "z")[:, 0], [-1.125, -0.125, 0.125, 1.125])
    np.testing.assert_allclose(denormalised(test, stats, "z")[:, 0], [49.5**2 / 2, 147.0**2 / 2], rtol=1e-5)
    assert stats.mean[-1] == pytest.approx(0.0, abs=1e-12)
    assert stats.std[-1] == pytest.approx(np.sqrt((2 * 1.125**2 + 2 * 0.125**2) / 4))


def test_a_source_without_some_drivers_has_no_such_channel_and_no_z_without_r_thermal(history):
    from ml.model_inputs import ModelInputs

    inputs = ModelInputs(("t_air", "p_total", "p_snow"), {"p_snow": "derived"}, {"r_thermal": "absent"})
    train, test, stats = W.build_training_windows(history, UNITS, inputs)
    expected = inputs.channels + catalog.STATIC_FEATURES + catalog.TIME_FEATURES
    assert stats.feature_names == expected == W.window_features(inputs) and not stats.has_signal
    assert train.x.shape[2] == len(expected) and test.feature_names == expected
    assert np.isnan(stats.r_thermal_mean)
    # the same channels, normalised the same way as with every driver (z aside)
    full = W.build_training_windows(history, UNITS)
    for name in expected:
        i, j = expected.index(name), full[2].feature_names.index(name)
        np.testing.assert_array_equal(train.x[..., i], full[0].x[..., j])
    again = W.NormalizationStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert again.feature_names == expected and not again.has_signal


# --- scenarios ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario_frame() -> pl.DataFrame:
    frame = make_frame({0: ("2020-01", "2100-12"), 5: ("2020-01", "2100-12")}, seed=9, targets=False)
    return frame.with_columns(pl.lit("rcp45").alias("scenario"))


def test_scenario_windows_span_the_projection(built, scenario_frame):
    stats = built[2]
    windows = W.build_scenario_windows(scenario_frame, stats, UNITS)
    assert windows.y is None
    per_band = (np.datetime64("2100-12") - np.datetime64("2024-01")).astype(int) + 1
    assert len(windows) == 2 * per_band
    for band in (0, 5):
        months = windows.target_month[windows.unit == band]
        assert months[0] == np.datetime64("2024-01") and months[-1] == np.datetime64("2100-12")
    input_months = np.rint(denormalised(windows, stats, "t_air")) - 1000.0 * windows.unit[:, None]
    np.testing.assert_array_equal(input_months[0], ordinal(months_between("2022-01", "2023-12")))
    np.testing.assert_array_equal(input_months[:, -1], ordinal(windows.target_month) - 1)


def test_scenario_windows_use_the_historical_statistics(built, scenario_frame):
    stats = built[2]
    windows = W.build_scenario_windows(scenario_frame, stats, UNITS)
    naive = naive_windows(
        scenario_frame.with_columns([pl.lit(0.0).alias(t) for t in catalog.TARGETS]), 24, "2024-01", "2100-12"
    )
    raw = np.stack(naive["x"])
    expected = ((raw - stats.mean[:-1]) / stats.std[:-1]).astype(np.float32)
    np.testing.assert_array_equal(windows.x[:, :, :-1], expected)
    z_tilde = (np.array(naive["r_mean"]) - stats.r_thermal_mean) / stats.r_thermal_std
    z = np.abs(z_tilde) * z_tilde
    np.testing.assert_allclose(windows.x[:, 0, -1], (z - stats.mean[-1]) / stats.std[-1], rtol=1e-5, atol=1e-5)


def test_scenario_months_before_the_inputs_are_ignored(built, scenario_frame):
    early_nan = scenario_frame.with_columns(
        pl.when(pl.col("month") < dt.date(2022, 1, 1)).then(None).otherwise(pl.col("t_surface")).alias("t_surface")
    )
    a = W.build_scenario_windows(scenario_frame, built[2], UNITS)
    b = W.build_scenario_windows(early_nan, built[2], UNITS)
    np.testing.assert_array_equal(a.x, b.x)


def test_several_scenarios_need_a_name(built, scenario_frame):
    both = pl.concat([scenario_frame, scenario_frame.with_columns(pl.lit("rcp85").alias("scenario"))])
    with pytest.raises(ValueError, match=r"rcp45.*rcp85"):
        W.build_scenario_windows(both, built[2], UNITS)
    picked = W.build_scenario_windows(both, built[2], UNITS, name="rcp85")
    assert len(picked) == len(W.build_scenario_windows(scenario_frame, built[2], UNITS))


def test_scenario_too_short_is_an_error(built, scenario_frame):
    short = scenario_frame.filter(pl.col("month") <= dt.date(2100, 6, 1))
    with pytest.raises(ValueError, match=r"band 0.*2100-11"):
        W.build_scenario_windows(short, built[2], UNITS)
    late = scenario_frame.filter(pl.col("month") >= dt.date(2022, 2, 1))
    with pytest.raises(ValueError, match=r"band 0.*2022-01"):
        W.build_scenario_windows(late, built[2], UNITS)


def test_hindcast_windows_start_where_the_run_allows_and_the_summary_describes_them(built, scenario_frame):
    stats = built[2]
    # the run starts 2020-01: the first month with a whole window of inputs is 2022-01
    windows = W.scenario_hindcast_windows(scenario_frame, stats, UNITS)
    assert windows.target_month.min() == np.datetime64("2022-01")
    assert windows.target_month.max() == np.datetime64("2100-12")
    assert W.target_span(windows) == "2022-01..2100-12"
    # a run reaching back before 1999: the hindcast starts with the history, 2001-01
    longer = make_frame({0: ("1990-01", "2100-12")}, seed=9, targets=False)
    assert W.scenario_hindcast_windows(longer, stats, UNITS).target_month.min() == np.datetime64("2001-01")
    train, test, _ = built
    summary = W.windows_summary("training", {("train", "paper"): train, ("test", "paper"): test}, members=3)
    assert summary["split"].to_list() == ["train", "test"] and summary["members"].to_list() == [3, 3]
    row = summary.row(1, named=True)
    assert row["n_windows"] == len(test) and row["window_months"] == 24 and row["channels"] == test.x.shape[2]
    assert row["first_target"] == str(test.target_month.min()) == "2019-01"
    empty = W.WindowSet(test.x[:0], test.unit[:0], test.y[:0], test.target_month[:0], test.feature_names)
    assert W.target_span(empty) == "none"
    assert W.windows_summary("short", {("test", "paper"): empty})["first_target"].to_list() == [None]


# --- validation ---------------------------------------------------------------------------


def test_gap_is_named(history):
    gap = history.filter(~((pl.col("unit") == 2) & (pl.col("month") == dt.date(2016, 5, 1))))
    with pytest.raises(ValueError, match=r"band 2 is missing month 2016-05"):
        W.build_training_windows(gap, UNITS)


def test_duplicate_month_is_named(history):
    row = history.filter((pl.col("unit") == 5) & (pl.col("month") == dt.date(2020, 3, 1)))
    with pytest.raises(ValueError, match=r"band 5 has duplicate month 2020-03"):
        W.build_training_windows(pl.concat([history, row]), UNITS)


@pytest.mark.parametrize("bad", [float("nan"), None, float("inf")])
def test_missing_value_is_named(history, bad):
    where = (pl.col("unit") == 0) & (pl.col("month") == dt.date(2015, 2, 1))
    broken = history.with_columns(
        pl.when(where).then(pl.lit(bad, dtype=pl.Float64)).otherwise(pl.col("q_latent")).alias("q_latent")
    )
    with pytest.raises(ValueError, match=r"band 0 month 2015-02: q_latent"):
        W.build_training_windows(broken, UNITS)


def test_missing_column_is_named(history, built, scenario_frame):
    with pytest.raises(ValueError, match=r"w_2"):
        W.build_training_windows(history.drop("w_2"), UNITS)
    with pytest.raises(ValueError, match=r"t_soil_3"):
        W.build_training_windows(history.drop("t_soil_3"), UNITS)
    with pytest.raises(ValueError, match=r"month_cos"):
        W.build_scenario_windows(scenario_frame.drop("month_cos"), built[2], UNITS)


def test_too_few_months_for_a_window(history):
    short = pl.concat([history, make_frame({3: ("2010-01", "2011-12")}, seed=2)])
    with pytest.raises(ValueError, match=r"band 3 has 24 month\(s\)"):
        W.build_training_windows(short, UNITS)


def test_no_training_window_is_an_error():
    with pytest.raises(ValueError, match="no training window"):
        W.build_training_windows(make_frame({0: ("2019-01", "2023-12")}), UNITS)


def test_band_outside_the_catalog_is_an_error(history):
    with pytest.raises(ValueError, match=r"\[6\] are not among the 6 units"):
        W.build_training_windows(history.with_columns(pl.col("unit").replace(5, 6)), UNITS)


# --- persistence --------------------------------------------------------------------------


def test_window_set_round_trip(tmp_path, built, scenario_frame):
    train = built[0]
    path = tmp_path / "train.npz"
    train.save(path)
    loaded = W.WindowSet.load(path)
    assert len(loaded) == len(train) and loaded.feature_names == W.FEATURES
    for field in ("x", "unit", "y", "target_month"):
        original, back = getattr(train, field), getattr(loaded, field)
        assert back.dtype == original.dtype
        np.testing.assert_array_equal(back, original)
    np.load(path, allow_pickle=False).close()  # plain arrays only

    scenario = W.build_scenario_windows(scenario_frame, built[2], UNITS)
    scenario.save(tmp_path / "rcp45.npz")
    assert W.WindowSet.load(tmp_path / "rcp45.npz").y is None


def test_statistics_round_trip_through_json(built):
    stats = built[2]
    again = W.NormalizationStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert again.to_dict() == stats.to_dict()
    y = np.array([[-3.0, 0.5, 2.0, 7.0]])
    # float32 z-scores: exact to float32 resolution of the (large, synthetic) target scale.
    back = again.denormalize_targets(again.normalize_targets(y))
    np.testing.assert_allclose(back, y, atol=1e-5 * stats.target_std.max())
    assert again.normalize_targets(y).dtype == np.float32
