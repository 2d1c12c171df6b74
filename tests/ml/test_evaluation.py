"""The test-year evaluation's tables and verdicts on constructed predictions whose errors are known."""

import numpy as np
import polars as pl
import pytest

from ml import evaluation
from ml.evaluation import TestYearPredictions

MONTHS = np.arange(np.datetime64("2019-01"), np.datetime64("2024-01"))  # the five test years
N_BANDS = 3


def predictions(gru_error=0.2, tcn_error=1.5):
    """Observed temperatures and predictions off by a known error: climatology by 2 K,
    persistence (reads the soil) by 0.1 K, the core by 1 K, the networks by their errors."""
    rng = np.random.default_rng(5)
    month = np.tile(MONTHS, N_BANDS)
    band = np.repeat(np.arange(N_BANDS), len(MONTHS))
    observed = rng.normal(0.0, 5.0, (len(month), 4))
    sign = np.where(rng.random(observed.shape) < 0.5, -1.0, 1.0)  # |error| exactly as given

    def off(error):
        return observed + error * sign

    baselines = {name: off(3.0) for name in evaluation.BASELINES}
    baselines.update(climatology=off(2.0), persistence=off(0.1), thermal_core=off(1.0))
    networks = {
        "gru": ("residual", np.stack([off(gru_error), off(gru_error)])),
        "tcn": ("paper", off(tcn_error)[None]),
    }
    return TestYearPredictions(month, band, observed, baselines, networks)


def test_every_model_is_scored_with_skill_against_climatology():
    test = predictions()
    table = evaluation.score(test)
    assert set(table["model"]) == {"gru", "tcn", "ensemble", *evaluation.BASELINES}
    assert table.filter(pl.col("uses_observed_soil_temperature"))["model"].unique().sort().to_list() == [
        "damped_persistence",
        "persistence",
    ]
    overall = evaluation.overall_table(table)
    rmse = dict(zip(overall["model"], overall["rmse"], strict=True))
    assert rmse["climatology"] == pytest.approx(2.0) and rmse["gru"] == pytest.approx(0.2)
    skill = dict(zip(overall["model"], overall["skill"], strict=True))
    assert skill["climatology"] == 0.0 and skill["thermal_core"] == pytest.approx(1 - 1 / 4)
    pct = dict(zip(overall["model"], overall["vs_climatology_pct"], strict=True))
    assert pct["thermal_core"] == pytest.approx(-50.0)
    # the paper's Table 2 beside the architectures it reports, nothing beside the rest
    paper = dict(zip(overall["model"], overall["paper_rmse"], strict=True))
    assert paper["gru"] == 1.027 and paper["tcn"] == 1.118 and paper["ensemble"] is None
    assert overall["rmse"].is_sorted()
    # the ensemble is the mean of every network: its errors partly cancel
    assert test.ensemble == pytest.approx((2 * test.networks["gru"][1][0] + test.networks["tcn"][1][0]) / 3)
    assert set(test.shown()) == {"gru", "tcn", "ensemble", "thermal_core"}


def test_skill_per_band_and_per_layer():
    table = evaluation.score(predictions())
    per_band = evaluation.skill_pivot(table, "band")
    assert per_band.columns == ["model", *(f"band {b}" for b in range(N_BANDS))]
    per_layer = evaluation.skill_pivot(table, "layer")
    assert per_layer.columns == ["model", "layer 0", "layer 1", "layer 2", "layer 3"]
    gru = per_layer.filter(pl.col("model") == "gru").row(0)[1:]
    assert gru == pytest.approx([1 - 0.04 / 4] * 4)


def test_targets_per_layer_and_the_baseline_verdict():
    table = evaluation.score(predictions())
    overall = evaluation.overall_table(table)
    targets = evaluation.layer_targets(table)
    # in every layer tcn (1.5 K) is 25% below climatology (2 K), gru 90%: both beyond 15%; the
    # ensemble (2 x 0.2 K and 1.5 K, averaged) more than 25% below
    assert targets["every_architecture_15pct_below_climatology_every_layer"] is True
    assert targets["ensemble_25pct_below_climatology_every_layer"] is True
    assert [row["worst_architecture"] for row in targets["per_layer"]] == ["tcn -25.0%"] * 4
    assert [row["climatology_rmse"] for row in targets["per_layer"]] == [2.0] * 4
    # a stricter target: tcn misses it in every layer
    strict = evaluation.layer_targets(table, architecture_target=0.3)
    assert strict["every_architecture_30pct_below_climatology_every_layer"] is False
    assert not any(row["architectures_met"] for row in strict["per_layer"])
    layers = evaluation.layer_table(table)
    assert layers.filter(pl.col("model") == "tcn")["vs_climatology_pct"].to_list() == pytest.approx([-25.0] * 4)
    verdict = evaluation.baseline_verdict(overall)
    # the best baseline that projects is the core (1 K): tcn does not beat it
    assert verdict["passed"] is False
    assert verdict["best_baseline"].startswith("thermal_core (RMSE 1.000 K")
    assert verdict["models_not_beating_it"] == ["tcn"]
    assert sorted(verdict["models_beating_it"]) == ["ensemble", "gru"]
    # persistence reads the observed soil: nothing beats its 0.1 K
    assert verdict["best_observed_soil_baseline"].startswith("persistence (RMSE 0.100 K")
    assert verdict["models_beating_the_observed_soil_baseline"] == []
    better = evaluation.overall_table(evaluation.score(predictions(tcn_error=0.5)))
    assert evaluation.baseline_verdict(better)["passed"] is True


def test_the_paper_table_lists_the_architectures_the_paper_has():
    table = evaluation.paper_table()
    assert table["model"].to_list() == ["tcn", "transformer", "conv1d_lstm", "gru", "bilstm"]
    assert table.filter(pl.col("model") == "gru").row(0, named=True) == {
        "model": "gru",
        "paper_rmse": 1.027,
        "paper_mae": 0.747,
        "paper_r2": 0.943,
    }
