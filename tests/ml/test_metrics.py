"""Metrics against their textbook definitions, computed by hand."""

import math

import numpy as np
import polars as pl
import pytest

from ml import metrics


def test_hand_computed_case():
    y, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0])
    # errors 0, -1, 1, 0: SS_res = 2, mean(y) = 2.5, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert metrics.rmse(y, p) == pytest.approx(math.sqrt(0.5))
    assert metrics.mae(y, p) == pytest.approx(0.5)
    assert metrics.r2(y, p) == pytest.approx(0.6)


def test_perfect_and_mean_predictions():
    y = np.array([[0.5, -2.0], [3.0, 1.0], [-1.0, 4.0]])
    assert metrics.rmse(y, y) == 0.0
    assert metrics.mae(y, y) == 0.0
    assert metrics.r2(y, y) == 1.0
    mean = np.full_like(y, y.mean())  # the pooled mean of every value
    assert metrics.r2(y, mean) == pytest.approx(0.0, abs=1e-12)
    # worse than the mean goes negative: predicting the mirror image of y about its mean
    assert metrics.r2(y, 2 * y.mean() - y) == pytest.approx(-3.0)


def test_constant_truth_r2_is_nan_and_shapes_checked():
    assert math.isnan(metrics.r2([2.0, 2.0], [1.0, 3.0]))
    with pytest.raises(ValueError, match="shape"):
        metrics.rmse([1.0, 2.0], [1.0, 2.0, 3.0])


def test_evaluation_table_scopes_and_counts():
    # 3 windows of band 0, 2 of band 4; errors: layer l of window i is off by l (layer 0 exact)
    band = np.array([0, 0, 0, 4, 4])
    y = np.arange(20, dtype=float).reshape(5, 4)
    p = y + np.arange(4)[None, :]
    table = metrics.evaluation_table(y, p, band, model="toy")
    assert table.columns == ["model", "scope", "band", "unit", "layer", "rmse", "mae", "r2", "n"]
    assert table["model"].unique().to_list() == ["toy"]
    counts = dict(zip(*table.group_by("scope").len().sort("scope").to_dict(as_series=False).values(), strict=False))
    assert counts == {"overall": 1, "band": 2, "layer": 4, "band_layer": 8}

    overall = table.filter(pl.col("scope") == "overall").row(0, named=True)
    assert overall["band"] is None and overall["layer"] is None
    assert overall["n"] == 20
    # pooled errors: five each of 0, 1, 2, 3 -> mean square (0 + 1 + 4 + 9) / 4 = 3.5
    assert overall["rmse"] == pytest.approx(math.sqrt(3.5))
    assert overall["mae"] == pytest.approx(1.5)
    # pooled y = 0..19: SS_tot = 20 * (20^2 - 1) / 12 = 665; SS_res = 5 * 14 = 70
    assert overall["r2"] == pytest.approx(1 - 70 / 665)

    bands = table.filter(pl.col("scope") == "band").sort("band")
    assert bands["band"].to_list() == [0, 4]
    assert bands["layer"].null_count() == 2
    assert bands["n"].to_list() == [12, 8]

    layers = table.filter(pl.col("scope") == "layer").sort("layer")
    assert layers["n"].to_list() == [5, 5, 5, 5]
    assert layers["rmse"].to_list() == pytest.approx([0.0, 1.0, 2.0, 3.0])
    # layer 0 exact -> r2 1; layer 3: y = 3, 7, 11, 15, 19 -> SS_tot = 160, SS_res = 5 * 9 = 45
    assert layers["r2"][0] == pytest.approx(1.0)
    assert layers["r2"][3] == pytest.approx(1 - 45 / 160)

    cell = table.filter((pl.col("scope") == "band_layer") & (pl.col("band") == 4) & (pl.col("layer") == 2))
    assert cell["n"].to_list() == [2]
    assert cell["mae"].to_list() == pytest.approx([2.0])
    # band 4 layer 2: y = 14, 18 -> SS_tot = 8, SS_res = 2 * 4 = 8 -> r2 = 0
    assert cell["r2"].to_list() == pytest.approx([0.0])


def test_units_get_a_scope_of_their_own_and_units_outside_the_bands_one_group():
    # basins 3 and 5 in band 1, basin 308 outside every band (-1): a band group of its own
    band = np.array([1, 1, -1, -1])
    unit = np.array([3, 5, 308, 308])
    y = np.zeros((4, 4))
    p = y + np.array([1.0, 3.0, 2.0, 2.0])[:, None]
    table = metrics.evaluation_table(y, p, band, model="toy", unit=unit)
    bands = table.filter(pl.col("scope") == "band").sort("band", nulls_last=True)
    assert bands["band"].to_list() == [1, None] and bands["unit"].null_count() == 2
    assert bands["rmse"].to_list() == pytest.approx([math.sqrt(5.0), 2.0])
    units = table.filter(pl.col("scope") == "unit").sort("unit")
    assert units["unit"].to_list() == [3, 5, 308] and units["band"].null_count() == 3
    assert units["rmse"].to_list() == pytest.approx([1.0, 3.0, 2.0]) and units["n"].to_list() == [4, 4, 8]
    # without ids there is no unit scope
    assert "unit" not in metrics.evaluation_table(y, p, band, model="toy")["scope"].to_list()


def test_evaluation_table_rejects_mismatched_band():
    with pytest.raises(ValueError, match="band"):
        metrics.evaluation_table(np.zeros((3, 4)), np.zeros((3, 4)), np.array([0, 1]), model="m")


def test_skill_table_members_seed_mean_and_intervals():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(60, 4))
    band = np.repeat([0, 1], 30)
    year = np.tile(np.repeat([2019, 2020, 2021], 10), 2)
    climatology = np.zeros_like(y)
    members = np.stack([y + 0.1 * (m + 1) for m in range(3)])  # errors 0.1, 0.2, 0.3 everywhere
    table = metrics.skill_table(y, members, climatology, band, year, "gru", "network")
    assert table.columns == list(metrics.SKILL_SCHEMA)
    overall = table.filter(pl.col("scope") == "overall").sort("member", nulls_last=True)
    assert overall["member"].to_list() == [0, 1, 2, None]
    assert overall["rmse"].to_list() == pytest.approx([0.1, 0.2, 0.3, 0.2])
    assert overall["rmse_sd"][3] == pytest.approx(0.1)
    mse_clim = float(np.mean(y**2))
    assert overall["skill"][0] == pytest.approx(1 - 0.01 / mse_clim)
    # constant errors: every resampled year gives the same RMSE
    assert overall["rmse_low"][1] == pytest.approx(0.2) and overall["rmse_high"][1] == pytest.approx(0.2)
    assert table.filter(pl.col("scope") == "band_layer").height == 4 * 2 * 4


def test_skill_of_climatology_is_zero_and_intervals_bracket_the_rmse():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(120, 4))
    band = np.zeros(120, dtype=int)
    year = np.repeat(np.arange(2010, 2020), 12)
    prediction = y + rng.normal(scale=np.repeat(np.linspace(0.1, 1.0, 10), 12)[:, None], size=(120, 4))
    table = metrics.skill_table(y, prediction, np.zeros_like(y), band, year, "x", "baseline")
    row = table.filter(pl.col("scope") == "overall").row(0, named=True)
    assert row["member"] is None and row["members"] == 1 and row["rmse_sd"] is None
    assert row["rmse_low"] < row["rmse"] < row["rmse_high"]
    clim = metrics.skill_table(y, np.zeros_like(y), np.zeros_like(y), band, year, "climatology", "baseline")
    assert (clim["skill"] == 0.0).all()
