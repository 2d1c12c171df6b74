"""Perfect-model signals and scores on constructed runs with known answers."""

import numpy as np
import pytest

from ml.perfect_model import Signals, coverage, ordered_cells, period_mean, scores, seam_rmse

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
