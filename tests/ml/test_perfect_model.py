"""Perfect-model signals and scores on constructed runs with known answers."""

import numpy as np
import polars as pl
import pytest

from ml.perfect_model import (
    TARGETS,
    Signals,
    coverage,
    figure_series,
    member_runs,
    ordered_cells,
    period_mean,
    scenario_grid,
    scores,
    seam_rmse,
    target_table,
    validate,
    validation_months,
    water_outside_range,
    worst_members,
)
from ml.projections import ENSEMBLE_MODEL
from ml.unit_arrays import Units, grid_frame
from sources import catalog

YEARS = np.repeat(np.arange(2019, 2101), 12)


def run(offsets, trend=0.0):
    """(S, T, 1, 1): scenario s at offsets[s] + trend per year after 2024."""
    ramp = np.clip(YEARS - 2024, 0, None) * trend
    return np.stack([o + ramp for o in offsets])[:, :, None, None]


def test_signals_of_a_linear_warming():
    signals = Signals.of(run([0.0, 1.0], trend=0.1), YEARS)
    # 2081-2100 mean of the ramp: 0.1 * (57 + 76) / 2; 2024-2043: 0.1 * 9.5
    assert signals.change[:, 0, 0] == pytest.approx([5.7, 5.7])
    assert signals.level[:, 0, 0] == pytest.approx([6.65, 7.65])
    assert signals.jump[:, 0, 0] == pytest.approx([0.2, 0.2])  # 2024-2028 mean of the ramp
    assert period_mean(run([1.0]), YEARS, (2030, 2031))[0, 0, 0] == 1.0


def test_scores_and_ordering():
    truth = Signals.of(run([0.0, 1.0, 2.0], trend=0.1), YEARS)
    model = Signals.of(run([0.5, 1.5, 2.5], trend=0.1), YEARS)
    result = scores(model, truth)
    assert result["change_rmse"] == pytest.approx(0.0, abs=1e-12)
    assert result["level_rmse"] == pytest.approx(0.5) and result["level_bias"] == pytest.approx(0.5)
    assert result["ordered"] == 1
    assert ordered_cells(np.array([[[0.0]], [[0.0]]])) == 0  # ties are not ordered


def test_seam_compares_the_projection_with_the_reanalysis():
    truth = Signals.of(run([0.0], trend=0.0), YEARS)
    assert seam_rmse(run([1.0]), YEARS, np.zeros((1, 1)), truth) == pytest.approx(1.0)


def test_coverage_counts_cells_inside_the_members_range():
    truth = Signals.of(run([0.0, 0.0], trend=0.1), YEARS)
    members = [Signals.of(run([o, o + 10.0], trend=0.1 + o / 50), YEARS) for o in np.linspace(-1, 1, 21)]
    result = coverage(members, truth)
    assert result["coverage_level"] == 0.5  # the second scenario's members are all 10 K too warm
    assert result["coverage_change"] == 1.0
    with pytest.raises(ValueError, match="2 members"):
        coverage(members[:1], truth)


def test_error_over_spread_is_one_when_the_truth_is_one_more_member():
    """The members' error over their spread does not depend on how many there are: the truth
    drawn as one more member gives sqrt(1 + 1/n); a biased or over-wide ensemble moves it."""
    rng = np.random.default_rng(3)
    n, cells = 25, (40, 6, 4)
    draws = rng.normal(size=(n + 1, *cells))
    truth = Signals(draws[0], draws[0], draws[0])
    members = [Signals(d, d, d) for d in draws[1:]]
    result = coverage(members, truth)
    assert result["error_over_spread_level"] == pytest.approx(np.sqrt(1 + 1 / n), rel=0.06)
    assert result["calibrated_coverage"] == pytest.approx(0.9 * 24 / 26)
    assert result["coverage_level"] == pytest.approx(result["calibrated_coverage"], abs=0.03)
    biased = coverage([Signals(d, d + 1.0, d) for d in draws[1:]], truth)
    assert biased["error_over_spread_level"] == pytest.approx(np.sqrt(2 + 1 / n), rel=0.06)  # bias 1 sd
    assert biased["error_over_spread_change"] == pytest.approx(result["error_over_spread_change"])
    wide = coverage([Signals(d, 3.0 * d, d) for d in draws[1:]], truth)
    assert wide["error_over_spread_level"] < 0.5 and wide["coverage_level"] > 0.99
    same = Signals(draws[1], draws[1], draws[1])
    assert coverage([same, same], truth)["error_over_spread_level"] == float("inf")


# --- the validation of a set of projections ---------------------------------------------------

SCENARIOS = ["rcp26", "rcp85"]


def validated(member_offsets=(-0.2, 0.2), floor_offset=0.05):
    """Truth: scenario s warms 0.1 K a year (rcp85 twice that); two gru members and the core
    around it; the floor just above it."""
    truth = np.concatenate([run([0.0], trend=0.1), run([1.0], trend=0.2)])
    runs = {("gru", m): truth + offset for m, offset in enumerate(member_offsets)}
    runs[("thermal_core", 0)] = truth + 1.0
    recent = np.zeros((1, 1))
    return validate(truth, truth + floor_offset, runs, YEARS, recent, SCENARIOS, ("thermal_core",)), truth


def test_validation_scores_members_architectures_ensemble_references_and_floor():
    result, _ = validated()
    scores = result.scores
    assert scores["kind"].to_list() == ["member", "member", "architecture", "ensemble", "reference", "floor"]
    names = scores["model"] + "/" + scores["member"].cast(str).fill_null("-")
    level = dict(zip(names, scores["level_rmse"], strict=True))
    assert level["gru/0"] == pytest.approx(0.2) and level["gru/-"] == pytest.approx(0.0, abs=1e-12)
    assert level["thermal_core/-"] == pytest.approx(1.0) and level["floor/-"] == pytest.approx(0.05)
    assert result.achieved["worst_member_change_rmse"] == pytest.approx(0.0, abs=1e-12)
    # the members straddle the truth: every cell is covered, and the coverage sits on the ensemble row
    assert result.coverage["coverage_level"] == 1.0
    assert scores.filter(pl.col("kind") == "ensemble")["coverage_level"].to_list() == [1.0]
    assert scores.filter(pl.col("kind") == "member")["coverage_level"].null_count() == 2
    # two members at -0.2 and +0.2 K: their mean is the truth, so the error over the spread is 0
    assert scores.filter(pl.col("kind") == "ensemble")["error_over_spread_level"].to_list() == [pytest.approx(0.0)]
    assert result.truth_ordered_cells == 1 and result.achieved["ensemble_ordered_cells"] == 1
    cells = result.cells
    assert cells.height == 2 and cells["scenario"].to_list() == SCENARIOS
    assert (cells["level_q05"] < cells["truth_level"]).all() and (cells["truth_level"] < cells["level_q95"]).all()
    assert cells["floor_level"].to_numpy() == pytest.approx(cells["truth_level"].to_numpy() + 0.05)


def test_targets_are_judged_and_the_worst_member_named():
    result, _ = validated(member_offsets=(-0.2, 0.9))
    targets = target_table(result.achieved)
    assert targets["target"].to_list() == list(TARGETS)
    level = targets.filter(pl.col("target") == "ensemble_level_rmse").row(0, named=True)
    assert level["value"] == pytest.approx(0.35) and level["required"] == "<= 0.6" and level["met"]
    ordered = targets.filter(pl.col("target") == "ensemble_ordered_cells").row(0, named=True)
    assert not ordered["met"]  # one band x layer cell here, 24 wanted
    worst = worst_members(result.scores)
    assert worst.columns == ["model", "worst_member_change_rmse", "fewest_member_ordered"]
    assert worst["model"].to_list() == ["gru"]


def band_frame(values: np.ndarray, first: str = "2019-01") -> pl.DataFrame:
    """(T, B, 4) soil temperatures as a band-month frame from ``first`` (the bands as units)."""
    months = np.datetime64(first) + np.arange(len(values))
    return grid_frame(months, values, catalog.TARGETS, Units.bands())


def test_frames_become_runs_over_the_validation_months():
    months = validation_months()
    assert months[0] == np.datetime64("2019-01") and months[-1] == np.datetime64("2100-12")
    values = np.random.default_rng(1).normal(size=(len(months) + 24, catalog.N_BANDS, 4))
    frames = {"rcp26": band_frame(values, "2017-01"), "rcp85": band_frame(values + 1.0, "2017-01")}
    grid = scenario_grid(frames, months, "truth")
    assert grid.shape == (2, len(months), catalog.N_BANDS, 4) and np.array_equal(grid[1], values[24:] + 1.0)
    with pytest.raises(ValueError, match=r"truth rcp85 covers 2019-01..2099-12"):
        scenario_grid({"rcp85": band_frame(values[:-12], "2017-01")}, months, "truth")
    projections = pl.concat(
        f.with_columns(pl.lit(s).alias("scenario"), pl.lit(m).alias("model"), pl.lit(0).cast(pl.Int64).alias("member"))
        for s, f in frames.items()
        for m in ("gru", ENSEMBLE_MODEL)
    )
    runs = member_runs(projections, SCENARIOS, months)
    assert list(runs) == [("gru", 0)] and np.array_equal(runs[("gru", 0)], grid)


def test_figure_series_and_water_tails_of_the_validation():
    from ml.projections import with_ensemble

    months = np.arange(np.datetime64("2001-01"), np.datetime64("2031-01"))
    values = np.random.default_rng(2).normal(size=(len(months), catalog.N_BANDS, 4))
    history = band_frame(values[:276], "2001-01")
    history = history.with_columns(
        pl.Series(w, np.random.default_rng(k).uniform(0.2, 0.4, history.height))
        for k, w in enumerate(catalog.WATER_CONTENT)
    )
    truth = band_frame(values, "2001-01").with_columns(pl.lit(0.3).alias(w) for w in catalog.WATER_CONTENT)
    wet = truth.with_columns(pl.lit(0.9).alias("w_3"))
    projections = with_ensemble(
        pl.concat(
            band_frame(values + offset, "2001-01").with_columns(
                pl.lit("rcp26").alias("scenario"),
                pl.lit("gru").alias("model"),
                pl.lit(m).cast(pl.Int64).alias("member"),
            )
            for m, offset in enumerate((-1.0, 1.0))
        ).select("scenario", "model", "member", "unit", "band", "month", *catalog.TARGETS)
    )
    series = figure_series(projections, {"rcp26": truth}, history, band=1, layer=3)
    assert series.columns == ["scenario", "source", "year", "value", "q05", "q95"]
    assert series.group_by("source").len().sort("source").rows() == [
        ("ensemble", 30),
        ("reanalysis", 23),
        ("truth", 30),
    ]
    ensemble = series.filter(pl.col("source") == "ensemble", pl.col("year") == 2030).row(0, named=True)
    expected = values[-12:, 1, 3].mean()
    assert ensemble["value"] == pytest.approx(expected) and ensemble["q05"] == pytest.approx(expected - 0.9)
    tails = water_outside_range(history, {"rcp26": wet}, {"rcp26": truth})
    assert tails.row(0, named=True) == {
        "scenario": "rcp26",
        "w_3_outside_range_corrected": 1.0,
        "w_3_outside_range_truth": 0.0,
    }
