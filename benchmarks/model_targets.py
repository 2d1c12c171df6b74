"""The modelling targets, read from a lake that `make demo` filled.

    uv run python benchmarks/model_targets.py [LAKE_ROOT]   # default: data

Prints, from the Parquet the assets wrote (never from a figure): each network architecture's
seed-mean test RMSE and the ensemble's against monthly climatology; the perfect-model
validation (change and level RMSE, scenario ordering, 5-95% coverage); and the share of
reanalysis years whose active layer is censored ("all layers thaw") in bands 2-5. Run it on
several demo seeds (`PERMAFROST_DEMO_SEED`), one lake each, so nothing is tuned to one world.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.metrics import TARGET_ARCHITECTURE as ARCHITECTURE_BELOW_CLIMATOLOGY
from ml.metrics import TARGET_ENSEMBLE as ENSEMBLE_BELOW_CLIMATOLOGY
from ml.perfect_model import TARGETS

ENSEMBLE_CHANGE_RMSE = TARGETS["ensemble_change_rmse"][1]
ENSEMBLE_LEVEL_RMSE = TARGETS["ensemble_level_rmse"][1]
MODEL_CHANGE_RMSE = TARGETS["worst_member_change_rmse"][1]
CELLS = TARGETS["ensemble_ordered_cells"][1]
COVERAGE = TARGETS["coverage_change"][1]
CENSORED_SHARE = 0.5  # active layer censored in at most half of the reanalysis years, bands 2-5


def main(lake: Path) -> int:
    evaluation = pl.read_parquet(lake / "evaluation" / "model_evaluation.parquet")
    overall = evaluation.filter(pl.col("scope") == "overall", pl.col("member").is_null())
    clim = overall.filter(pl.col("model") == "climatology")["rmse"][0]
    lines: list[tuple[str, bool]] = []
    for row in overall.filter(pl.col("kind").is_in(["network", "ensemble"])).iter_rows(named=True):
        limit = ENSEMBLE_BELOW_CLIMATOLOGY if row["kind"] == "ensemble" else ARCHITECTURE_BELOW_CLIMATOLOGY
        below = 1 - row["rmse"] / clim
        spread = f" +- {row['rmse_sd']:.3f} over {row['members']} seeds" if row["rmse_sd"] is not None else ""
        lines.append(
            (
                f"test RMSE {row['model']:<12} {row['rmse']:.3f}{spread}: {below:.0%} below clim {clim:.3f}",
                below >= limit,
            )
        )
    validation = pl.read_parquet(lake / "validation" / "perfect_model_validation.parquet")
    ensemble = validation.filter(pl.col("kind") == "ensemble").row(0, named=True)
    lines.append(
        (
            f"perfect model: ensemble change RMSE {ensemble['change_rmse']:.3f} K",
            ensemble["change_rmse"] <= ENSEMBLE_CHANGE_RMSE,
        )
    )
    lines.append(
        (
            f"perfect model: ensemble level RMSE {ensemble['level_rmse']:.3f} K",
            ensemble["level_rmse"] <= ENSEMBLE_LEVEL_RMSE,
        )
    )
    models = validation.filter(pl.col("kind") == "architecture")
    worst = models.sort("change_rmse", descending=True).row(0, named=True)
    lines.append(
        (
            f"perfect model: worst architecture change RMSE {worst['model']} {worst['change_rmse']:.3f} K",
            worst["change_rmse"] <= MODEL_CHANGE_RMSE,
        )
    )
    members = validation.filter(pl.col("kind") == "member")
    if members.height:  # stricter than the target: every single network too, not only each seed mean
        worst_member = members.sort("change_rmse", descending=True).row(0, named=True)
        lines.append(
            (
                f"perfect model: worst single network {worst_member['model']}#{worst_member['member']} "
                f"change RMSE {worst_member['change_rmse']:.3f} K",
                worst_member["change_rmse"] <= MODEL_CHANGE_RMSE,
            )
        )
    ordered = validation.filter(pl.col("kind").is_in(["architecture", "ensemble"]))["ordered"].min()
    lines.append(
        (f"perfect model: scenario ordering kept in at least {ordered}/{CELLS} cells by every model", ordered == CELLS)
    )
    coverage = min(ensemble["coverage_change"], ensemble["coverage_level"])
    lines.append(
        (
            f"perfect model: truth inside the 5-95% range: change {ensemble['coverage_change']:.0%}, "
            f"level {ensemble['coverage_level']:.0%}",
            coverage >= COVERAGE,
        )
    )
    alt = pl.read_parquet(lake / "projections" / "active_layer_thickness.parquet")
    censored = alt.filter(pl.col("scenario") == "reanalysis", pl.col("band").is_in([2, 3, 4, 5]))
    share = censored.group_by("band").agg((pl.col("flag") == "all_thawed").mean().alias("share"))["share"].max()
    lines.append(
        (f"ALT censored in at most {share:.0%} of reanalysis years in any of bands 2-5", share <= CENSORED_SHARE)
    )
    for text, ok in lines:
        print(f"{'ok  ' if ok else 'MISS'} {text}")
    return 0 if all(ok for _, ok in lines) else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "data")))
