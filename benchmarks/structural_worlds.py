"""The perfect-model validation in demo worlds whose soil physics differs from the core's.

    uv run python benchmarks/structural_worlds.py [--worlds default wide_freezing ...] [--seeds 20260101 13 ...]
        [--out DIR]

For each world (`sources.simulator.worlds.WORLDS`, chosen with PERMAFROST_DEMO_WORLD) the demo
graph up to `perfect_model_validation` runs in a lake and a Dagster instance of its own (the
launcher, as `make demo` runs it), then the validation's Parquet is read (never a figure) and
judged against `ml.perfect_model.TARGETS`: the ensemble's change and level RMSE, the ordered
cells, and how often the truth lies inside the ensemble's 5-95% range. The same weather in every
world; only the soil differs, so what changes between the rows is how well a core of one physical
class, with its networks, projects a soil of another.

With ``--seeds`` each world runs once per weather seed (PERMAFROST_DEMO_SEED) and is judged on the
mean over the seeds as well: one weather realisation decides the coverage by one draw of the bias
correction's sampling error (`benchmarks/bias_correction_seeds.py`: with the perfect physics the
truth lies inside the draws' range in 22% to 100% of cells, seed by seed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.perfect_model import TARGETS  # noqa: E402
from sources.simulator.worlds import WORLDS  # noqa: E402

SELECTION = "+key:perfect_model_validation"


def run_world(world: str, folder: Path, seed: int | None = None) -> float:
    """The demo graph up to the validation in `folder` (weather `seed`, default the demo's);
    its wall time in seconds."""
    if folder.exists():
        shutil.rmtree(folder)
    home = folder / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster_project" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PERMAFROST_LAKE_ROOT": str(folder / "data"),
        "PERMAFROST_DEMO_WORLD": world,
    }
    if seed is not None:
        env["PERMAFROST_DEMO_SEED"] = str(seed)
    env.pop("PERMAFROST_WAREHOUSE", None)
    started = time.perf_counter()
    command = [sys.executable, "-m", "dagster_project.launcher.demo", "--select", SELECTION]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"world {world}: the demo failed (rc {result.returncode}):\n{result.stdout[-3000:]}")
    return time.perf_counter() - started


def verdicts(row: dict[str, object], label: str) -> bool:
    """Print `row` judged against `TARGETS`; whether every target is met."""
    lines = []
    for name, (sign, limit) in TARGETS.items():
        value = row[name]
        met = value <= limit if sign == "<=" else value >= limit
        lines.append(f"{name} {value:.3f} {sign} {limit}: {'met' if met else 'NOT met'}")
    print(f"[{label}] " + "; ".join(lines), flush=True)
    return all(line.endswith(": met") for line in lines)


def over_seeds(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per world run with several seeds: the mean of every figure over its seeds, judged."""
    means = []
    for world in dict.fromkeys(row["world"] for row in rows):
        own = [row for row in rows if row["world"] == world]
        if len(own) < 2:
            continue
        mean = {"world": world, "seed": f"mean of {len(own)}"}
        for name in own[0]:
            values = [row[name] for row in own]
            pooled = name.startswith("error_over_spread_")  # pooled below, not averaged
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            if name != "seed" and not pooled and numeric:
                mean[name] = sum(map(float, values)) / len(own)
        for signal in ("change", "level"):  # pooled: rms error over rms spread over every seed's cells
            errors = [row[f"ensemble_{signal}_rmse"] for row in own]
            ratios = [row.get(f"error_over_spread_{signal}") for row in own]
            if all(isinstance(r, float) and r > 0 for r in ratios):
                spread = sum((e / r) ** 2 for e, r in zip(errors, ratios, strict=True)) / len(own)
                mean[f"error_over_spread_{signal}"] = (sum(e**2 for e in errors) / len(own) / spread) ** 0.5
        mean["all_targets_met"] = verdicts(mean, f"{world} mean of {len(own)} seeds")
        means.append(mean)
    return means


def judge(world: str, lake: Path, seconds: float, seed: int | None = None) -> dict[str, object]:
    validation = pl.read_parquet(lake / "validation" / "perfect_model_validation.parquet")
    ensemble = validation.filter(pl.col("kind") == "ensemble").row(0, named=True)
    core = validation.filter(pl.col("model") == "thermal_core").row(0, named=True)
    floor = validation.filter(pl.col("kind") == "floor").row(0, named=True)
    members = validation.filter(pl.col("kind") == "member")
    row = {
        "world": world,
        "seed": "demo" if seed is None else str(seed),
        "ensemble_change_rmse": ensemble["change_rmse"],
        "ensemble_level_rmse": ensemble["level_rmse"],
        "ensemble_ordered_cells": ensemble["ordered"],
        "coverage_change": ensemble["coverage_change"],
        "coverage_level": ensemble["coverage_level"],
        # not judged: rms error of the members' mean over their rms spread (calibrated: 1.02 for 25)
        "error_over_spread_change": ensemble.get("error_over_spread_change"),
        "error_over_spread_level": ensemble.get("error_over_spread_level"),
        "worst_member_change_rmse": members["change_rmse"].max(),
        "core_change_rmse": core["change_rmse"],
        "core_level_rmse": core["level_rmse"],
        "floor_change_rmse": floor["change_rmse"],
        "seconds": round(seconds),
    }
    row["all_targets_met"] = verdicts(row, world if seed is None else f"{world} seed {seed}")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=sorted(WORLDS))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "structural_worlds")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="weather seeds (PERMAFROST_DEMO_SEED) to run each world with, judged on their mean too "
        "(default: the demo's seed alone)",
    )
    parser.add_argument("--keep", action="store_true", help="keep each world's lake and instance")
    args = parser.parse_args(argv)
    rows = []
    for world in args.worlds:
        for seed in args.seeds or [None]:
            folder = args.out / (world if seed is None else f"{world}_seed{seed}")
            seconds = run_world(world, folder, seed)
            rows.append(judge(world, folder / "data", seconds, seed))
            pl.DataFrame(rows).write_csv(args.out / "summary.csv")
            if not args.keep:
                shutil.rmtree(folder / "data" / "models", ignore_errors=True)  # the large part
    means = over_seeds(rows)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, float_precision=3, tbl_width_chars=200):
        print(pl.DataFrame(rows + means, strict=False))
    if means:
        pl.DataFrame(means).write_csv(args.out / "summary_over_seeds.csv")
    judged = means or rows  # several seeds: the mean over them decides
    return 0 if all(row["all_targets_met"] for row in judged) else 1


if __name__ == "__main__":
    sys.exit(main())
