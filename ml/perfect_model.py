"""Perfect-model scores: projections against the simulator's own soil under the same pathway.

On the demo the truth of a projection is known: the simulator's soil temperatures driven by the
climate model's weather without its bias. Train on the simulated history, project under each
pathway with the bias-corrected climate model, and compare, per scenario x band x layer cell
(each a 20-year or 5-year mean):

* ``change``: 2081-2100 mean minus 2024-2043 mean;
* ``level``: the 2081-2100 mean;
* ``jump``: 2024-2028 minus 2019-2023 of the SAME run (the projection on its own scenario
  forcing), which a model without a seam at 2024 reproduces;
* ``ordered``: cells (band x layer) whose late-century levels rise strictly through the RCPs in
  ``catalog.RCP_EXPERIMENTS`` order;
* ``coverage``: the share of cells whose truth lies inside the members' 5-95% range.

Arrays are (scenario, month, band, layer) with the scenarios in ``catalog.RCP_EXPERIMENTS``
order; ``years`` (month,) gives each month's year. Plain numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EARLY = (2024, 2043)
LATE = (2081, 2100)
BEFORE = (2019, 2023)
AFTER = (2024, 2028)
QUANTILES = (0.05, 0.95)
# What the demo's perfect-model validation must show (issue 12): value name -> (sense, limit).
# The worst member is a single network; its architecture's seed mean can only do better.
TARGETS: dict[str, tuple[str, float]] = {
    "ensemble_change_rmse": ("<=", 0.4),
    "ensemble_level_rmse": ("<=", 0.6),
    "worst_member_change_rmse": ("<=", 0.8),
    "ensemble_ordered_cells": (">=", 24),
    "coverage_change": (">=", 0.8),
    "coverage_level": (">=", 0.8),
}


def period_mean(values: np.ndarray, years: np.ndarray, period: tuple[int, int]) -> np.ndarray:
    """Mean over the months of ``period`` (first, last year) along axis 1 of (S, T, ...)."""
    rows = (years >= period[0]) & (years <= period[1])
    if not rows.any():
        raise ValueError(f"no month in {period[0]}-{period[1]}")
    return values[:, rows].mean(axis=1)


@dataclass(frozen=True)
class Signals:
    """Per scenario x band x layer (S, B, L): ``change``, ``level`` and ``jump`` (K or degC)."""

    change: np.ndarray
    level: np.ndarray
    jump: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, years: np.ndarray) -> Signals:
        late = period_mean(values, years, LATE)
        return cls(
            change=late - period_mean(values, years, EARLY),
            level=late,
            jump=period_mean(values, years, AFTER) - period_mean(values, years, BEFORE),
        )


def ordered_cells(level: np.ndarray) -> int:
    """Band x layer cells whose levels (S, B, L) rise strictly with the scenario index."""
    return int((np.diff(level, axis=0) > 0).all(axis=0).sum())


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def scores(model: Signals, truth: Signals) -> dict[str, float]:
    """RMSE and bias of change and level, RMSE of the jump, ordered cells, over every cell."""
    return {
        "change_rmse": _rmse(model.change, truth.change),
        "change_bias": float(np.mean(model.change - truth.change)),
        "level_rmse": _rmse(model.level, truth.level),
        "level_bias": float(np.mean(model.level - truth.level)),
        "jump_rmse": _rmse(model.jump, truth.jump),
        "ordered": ordered_cells(model.level),
    }


def seam_rmse(projection: np.ndarray, years: np.ndarray, reanalysis_recent: np.ndarray, truth: Signals) -> float:
    """RMSE of the projection's 2024-2028 mean minus the REANALYSIS' 2019-2023 mean (B, L)
    against the truth's jump: the step a user sees where history meets projection. Two weather
    realisations meet there, so it is larger than the jump error."""
    seam = period_mean(projection, years, AFTER) - reanalysis_recent[None]
    return _rmse(seam, truth.jump)


def ensemble_range(members: list[Signals]) -> tuple[Signals, Signals]:
    """The members' 5% and 95% quantiles of each signal."""
    low, high = (
        Signals(
            *(np.quantile(np.stack([getattr(m, f) for m in members]), q, axis=0) for f in ("change", "level", "jump"))
        )
        for q in QUANTILES
    )
    return low, high


def coverage(members: list[Signals], truth: Signals) -> dict[str, float]:
    """Share of cells whose truth lies inside the members' 5-95% range, and the range's mean
    width, for the change and the level."""
    if len(members) < 2:
        raise ValueError(f"coverage needs at least 2 members, got {len(members)}")
    low, high = ensemble_range(members)
    out = {}
    for name in ("change", "level"):
        lo, hi, t = getattr(low, name), getattr(high, name), getattr(truth, name)
        out[f"coverage_{name}"] = float(((t >= lo) & (t <= hi)).mean())
        out[f"range_width_{name}"] = float((hi - lo).mean())
    return out
