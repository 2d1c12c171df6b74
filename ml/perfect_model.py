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
* ``coverage``: the share of cells whose truth lies inside the members' 5-95% range; beside it
  the members' error over their spread, which says whether the range is too narrow or too wide
  whatever the number of members.

Arrays are (scenario, month, band, layer) with the scenarios in ``catalog.RCP_EXPERIMENTS``
order; ``years`` (month,) gives each month's year. ``validate`` scores every projection run
(``member_runs``), the ensemble, the reference models and the floor against the truth;
``target_table``, ``worst_members``, ``water_outside_range`` and ``figure_series`` are what the
validation reports beside the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from sources import catalog

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


def calibrated_coverage(members: int) -> float:
    """Expected share of truths inside the 5-95% range (numpy's linear quantiles) of ``members``
    members when the truth is one more draw of their distribution: the q-quantile of n draws sits
    at order statistic q (n - 1) + 1, whose expected distribution value is that over n + 1. So a
    calibrated ensemble of 25 reaches 0.83, not 0.90 (13 members: 0.77)."""
    return 0.9 * (members - 1) / (members + 1)


def coverage(members: list[Signals], truth: Signals) -> dict[str, float]:
    """For the change and the level: the share of cells whose truth lies inside the members'
    5-95% range, the range's mean width, and the members' error over their spread (the rms over
    cells of the members' mean minus the truth, over the rms of the members' standard deviation:
    sqrt(1 + 1/n) for n calibrated members, above it too narrow, below too wide; unlike the
    coverage it does not depend on the number of members). ``calibrated_coverage``: what the
    coverage of a calibrated ensemble of these many members is."""
    if len(members) < 2:
        raise ValueError(f"coverage needs at least 2 members, got {len(members)}")
    low, high = ensemble_range(members)
    out = {}
    for name in ("change", "level"):
        lo, hi, t = getattr(low, name), getattr(high, name), getattr(truth, name)
        values = np.stack([getattr(m, name) for m in members])
        out[f"coverage_{name}"] = float(((t >= lo) & (t <= hi)).mean())
        out[f"range_width_{name}"] = float((hi - lo).mean())
        spread = float(np.sqrt(np.mean(values.var(axis=0, ddof=1))))
        error = _rmse(values.mean(axis=0), t)
        out[f"error_over_spread_{name}"] = error / spread if spread > 0 else float("inf")
    out["calibrated_coverage"] = calibrated_coverage(len(members))
    return out


# --- the validation of a set of projections ---------------------------------------------------


def validation_months() -> np.ndarray:
    """The months the validation reads: 2019-01 (the jump's ``BEFORE``) to 2100-12."""
    return np.arange(np.datetime64(f"{BEFORE[0]}-01"), catalog.month64(catalog.PROJECTION_LAST_MONTH) + 1)


def scenario_grid(frames: dict[str, pl.DataFrame], months: np.ndarray, what: str) -> np.ndarray:
    """(S, T, B, 4) soil temperatures of each scenario's band-month frame over exactly ``months``;
    raises naming ``what`` and the scenario when a frame does not cover them. The perfect model
    is the demo's: its truth exists per band, and its units are the bands."""
    from ml.unit_arrays import unit_grid

    first, last = (m.astype("datetime64[D]").item() for m in (months[0], months[-1]))
    grids = []
    for scenario, frame in frames.items():
        name = f"{what} {scenario}"
        grid = unit_grid(
            frame.filter(pl.col("month").is_between(first, last)), catalog.TARGETS, name, range(catalog.N_BANDS), "band"
        )
        if len(grid.months) != len(months):
            raise ValueError(f"{name} covers {grid.months[0]}..{grid.months[-1]}, expected {months[0]}..{months[-1]}")
        grids.append(grid.values)
    return np.stack(grids)


def member_runs(projections: pl.DataFrame, scenarios: list[str], months: np.ndarray) -> dict[tuple, np.ndarray]:
    """(model, member) -> (S, T, B, 4) of every member row (not the ensemble mean) of the projections."""
    from ml.projections import ENSEMBLE_MODEL

    first, last = (m.astype("datetime64[D]").item() for m in (months[0], months[-1]))
    rows = projections.filter(pl.col("model") != ENSEMBLE_MODEL, pl.col("month").is_between(first, last))
    return {
        (model, member): scenario_grid(
            {s: frame.filter(pl.col("scenario") == s) for s in scenarios}, months, f"{model} member {member}"
        )
        for (model, member), frame in rows.partition_by(["model", "member"], as_dict=True).items()
    }


@dataclass
class Validation:
    """``scores``: one row per member, architecture (seed mean), the ensemble, each reference
    model and the floor; ``cells``: per scenario x band x layer, the truth's, the ensemble's and
    the floor's signals with the members' 5-95% range; ``coverage`` of that range; ``achieved``:
    the values ``TARGETS`` judge; ``truth_ordered_cells``."""

    scores: pl.DataFrame
    cells: pl.DataFrame
    coverage: dict[str, float]
    achieved: dict[str, float]
    truth_ordered_cells: int


def validate(
    truth: np.ndarray,
    floor: np.ndarray,
    runs: dict[tuple, np.ndarray],
    years: np.ndarray,
    recent: np.ndarray,
    scenarios: list[str],
    reference_models: tuple[str, ...],
) -> Validation:
    """Score every run (``member_runs``) against ``truth``; ``floor`` is the simulator fed the
    bias-corrected drivers, ``recent`` (B, 4) the reanalysis' 2019-2023 mean (for the seam).
    Runs of ``reference_models`` are scored alone; the others are networks: each member, each
    architecture's seed mean and the ensemble of all of them (and the members' range)."""
    truth_signals = Signals.of(truth, years)

    def row(model, member, kind, values):
        return {
            "model": model,
            "member": member,
            "kind": kind,
            **scores(Signals.of(values, years), truth_signals),
            "seam_rmse": seam_rmse(values, years, recent, truth_signals),
        }

    networks = {key: values for key, values in runs.items() if key[0] not in reference_models}
    rows = [row(model, member, "member", values) for (model, member), values in sorted(networks.items())]
    for architecture in sorted({model for model, _ in networks}):
        members = [values for (model, _), values in networks.items() if model == architecture]
        rows.append(row(architecture, None, "architecture", np.mean(members, axis=0)))
    ensemble = np.mean(list(networks.values()), axis=0)
    rows.append(row("ensemble", None, "ensemble", ensemble))
    rows += [
        row(model, None, "reference", values)
        for (model, _), values in sorted(runs.items())
        if model in reference_models
    ]
    rows.append(row("floor", None, "floor", floor))
    member_signals = [Signals.of(values, years) for values in networks.values()]
    spread = coverage(member_signals, truth_signals)
    table = pl.DataFrame(rows).with_columns(
        pl.when(pl.col("kind") == "ensemble").then(pl.lit(spread[name])).alias(name)
        for name in ("coverage_change", "coverage_level", "error_over_spread_change", "error_over_spread_level")
    )
    ensemble_scores = table.filter(pl.col("kind") == "ensemble").row(0, named=True)
    achieved = {
        "ensemble_change_rmse": ensemble_scores["change_rmse"],
        "ensemble_level_rmse": ensemble_scores["level_rmse"],
        "worst_member_change_rmse": table.filter(pl.col("kind") == "member")["change_rmse"].max(),
        "ensemble_ordered_cells": ensemble_scores["ordered"],
        "coverage_change": spread["coverage_change"],
        "coverage_level": spread["coverage_level"],
    }
    low, high = ensemble_range(member_signals)
    compared = {"truth": truth_signals, "ensemble": Signals.of(ensemble, years), "floor": Signals.of(floor, years)}
    index = np.indices(truth_signals.change.shape).reshape(3, -1)
    cells = pl.DataFrame(
        {
            "scenario": [scenarios[i] for i in index[0]],
            "band": index[1],
            "layer": index[2],
            **{
                f"{prefix}_{signal}": getattr(values, signal).ravel()
                for signal in ("change", "level", "jump")
                for prefix, values in compared.items()
            },
            **{f"{signal}_q05": getattr(low, signal).ravel() for signal in ("change", "level")},
            **{f"{signal}_q95": getattr(high, signal).ravel() for signal in ("change", "level")},
        }
    )
    return Validation(table, cells, spread, achieved, ordered_cells(truth_signals.level))


def validate_frames(
    truth: dict[str, pl.DataFrame],
    floor: dict[str, pl.DataFrame],
    projections: pl.DataFrame,
    history: pl.DataFrame,
    reference_models: tuple[str, ...],
) -> Validation:
    """``validate`` on band-month frames: the simulator's ``truth`` and ``floor`` per scenario
    (in ``catalog.RCP_EXPERIMENTS`` order), the projections' member rows, and the history mart
    (its 2019-2023 soil temperatures for the seam; its soil water must be whole too)."""
    from ml.unit_arrays import unit_grid

    scenarios = list(truth)
    months = validation_months()
    years = months.astype("datetime64[Y]").astype(np.int64) + 1970
    columns = (*catalog.TARGETS, *catalog.WATER_CONTENT)
    observed = unit_grid(history, columns, "history mart", range(catalog.N_BANDS), "band")
    recent = observed.select(catalog.TARGETS)[(observed.year >= BEFORE[0]) & (observed.year <= BEFORE[1])]
    return validate(
        scenario_grid(truth, months, "truth"),
        scenario_grid(floor, months, "floor"),
        member_runs(projections, scenarios, months),
        years,
        recent.mean(axis=0),
        scenarios,
        reference_models,
    )


def target_table(achieved: dict[str, float]) -> pl.DataFrame:
    """Each of ``TARGETS`` with the value achieved, what it requires and whether it is met."""
    rows = []
    for name, (sense, limit) in TARGETS.items():
        value = achieved[name]
        met = value <= limit if sense == "<=" else value >= limit
        rows.append({"target": name, "value": float(value), "required": f"{sense} {limit:g}", "met": bool(met)})
    return pl.DataFrame(rows)


def worst_members(scores: pl.DataFrame) -> pl.DataFrame:
    """Per architecture: its worst member's change RMSE and fewest ordered cells."""
    return (
        scores.filter(pl.col("kind") == "member")
        .group_by("model")
        .agg(
            pl.col("change_rmse").max().alias("worst_member_change_rmse"),
            pl.col("ordered").min().alias("fewest_member_ordered"),
        )
        .sort("model")
    )


def water_outside_range(
    history: pl.DataFrame, corrected: dict[str, pl.DataFrame], truth: dict[str, pl.DataFrame]
) -> pl.DataFrame:
    """Per scenario: the share of 2024-2100 deepest-layer water (w_3) outside the reanalysis'
    range, in the bias-corrected drivers and in the simulator's truth."""
    from ml.soil_water import projected_water_tails

    deepest = catalog.WATER_CONTENT[-1]
    return pl.DataFrame(
        [
            {
                "scenario": s,
                f"{deepest}_outside_range_corrected": projected_water_tails(history, corrected[s], f"corrected {s}")[
                    deepest
                ]["outside_range"],
                f"{deepest}_outside_range_truth": projected_water_tails(history, truth[s], f"truth {s}")[deepest][
                    "outside_range"
                ],
            }
            for s in corrected
        ]
    )


def figure_series(
    projections: pl.DataFrame, truth: dict[str, pl.DataFrame], history: pl.DataFrame, band: int, layer: int
) -> pl.DataFrame:
    """Annual means of one band and layer, long: the reanalysis, and per scenario the truth and
    the ensemble with its 5-95% range (columns scenario, source, year, value, q05, q95)."""
    from ml.projections import ENSEMBLE_MODEL

    column = catalog.TARGETS[layer]

    def annual(frame: pl.DataFrame, **extra) -> pl.DataFrame:
        return (
            frame.filter(pl.col("band") == band, pl.col("month").dt.year() >= catalog.HISTORY_START.year)
            .group_by(pl.col("month").dt.year().alias("year"))
            .agg(pl.col(column).mean().alias("value"), *(pl.col(c).mean().alias(n) for n, c in extra.items()))
            .sort("year")
        )

    parts = [annual(history).with_columns(pl.lit("reanalysis").alias("scenario"), pl.lit("reanalysis").alias("source"))]
    ensemble = projections.filter(pl.col("model") == ENSEMBLE_MODEL)
    for scenario, frame in truth.items():
        parts.append(annual(frame).with_columns(pl.lit(scenario).alias("scenario"), pl.lit("truth").alias("source")))
        rows = ensemble.filter(pl.col("scenario") == scenario)
        parts.append(
            annual(rows, q05=f"{column}_q05", q95=f"{column}_q95").with_columns(
                pl.lit(scenario).alias("scenario"), pl.lit("ensemble").alias("source")
            )
        )
    return pl.concat(
        [
            p.select(
                "scenario",
                "source",
                "year",
                "value",
                *(pl.col(q) if q in p.columns else pl.lit(None, dtype=pl.Float64).alias(q) for q in ("q05", "q95")),
            )
            for p in parts
        ]
    )
