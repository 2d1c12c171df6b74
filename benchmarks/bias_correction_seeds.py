"""Is the bias correction's sampling spread honest? The floor over several weather seeds.

The perfect-model validation judges coverage in ONE weather realisation (the demo's seed), which
every demo world shares. Its floor (the simulator's own soil fed the bias-corrected drivers) is
what no model of those drivers can beat, and its late-century level error is the correction's
sampling error: 23 years of reanalysis against 23 years of climate-model weather. The members
carry that error as bootstrap draws (`ml.forcing_bootstrap`). For each seed this script builds the
band demo up to `scenario_windows` in a lake of its own (the launcher, as `make demo`), feeds each
member's drivers (`<rcp>_members.npz`) to the simulator (`sources.demo.soil_response`), and
reports per RCP: the unperturbed draw's 2081-2100 level error against the truth (mean over bands
and layers), the draws' spread of that error, and the share of band x layer cells whose truth lies
inside the draws' 5-95% range (nominal 0.90).

    .venv/bin/python benchmarks/bias_correction_seeds.py --seeds 13 14 15 --draws 13 --out /tmp/bcs
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sources import catalog  # noqa: E402
from sources.demo import DemoClimateModelSource, DemoSettings, soil_response  # noqa: E402

DRIVERS = ("t_air", "p_total", "p_snow", "r_thermal", "r_solar")
LATE = (2081, 2100)


def build(seed: int, folder: Path) -> float:
    """The band demo of weather `seed` up to `scenario_windows` in `folder`; seconds."""
    shutil.rmtree(folder, ignore_errors=True)
    home = folder / "home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster_project" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PERMAFROST_LAKE_ROOT": str(folder / "data"),
        "PERMAFROST_DEMO_SEED": str(seed),
    }
    env.pop("PERMAFROST_WAREHOUSE", None)
    started = time.perf_counter()
    command = [sys.executable, "-m", "dagster_project.launcher.demo", "--select", "+key:scenario_windows"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"seed {seed}: the demo failed (rc {result.returncode}):\n{result.stdout[-3000:]}")
    return time.perf_counter() - started


def late_level(frame: pl.DataFrame) -> np.ndarray:
    """(band, layer) 2081-2100 mean soil temperature."""
    late = frame.filter(pl.col("month").dt.year().is_between(*LATE)).sort("band")
    means = late.group_by("band", maintain_order=True).agg(pl.col(t).mean() for t in catalog.TARGETS)
    return means.select(catalog.TARGETS).to_numpy()


def floors(lake: Path, seed: int, world: str, draws: int) -> list[dict]:
    source = DemoClimateModelSource(DemoSettings(seed=seed, world=world))
    rows = []
    for scenario in catalog.RCP_EXPERIMENTS:
        truth = late_level(source.perfect_model_truth(scenario))
        members = np.load(lake / "features" / "scenario_windows" / f"{scenario}_members.npz")
        names, months = list(members["driver_names"]), members["months"]
        keep = months >= np.datetime64("2001-01")
        dates = months[keep].astype("datetime64[D]")
        units = members["units"]
        levels = []
        for draw in range(min(draws, len(members["drivers"]))):
            values = members["drivers"][draw][keep]  # (T, U, V)
            frame = pl.DataFrame(
                {
                    "band": np.tile(units, len(dates)).astype(np.int64),
                    "month": np.repeat(dates, len(units)),
                    **{v: values[:, :, names.index(v)].astype(float).ravel() for v in DRIVERS},
                }
            ).with_columns(pl.col("month").cast(pl.Date))
            levels.append(late_level(soil_response(frame, world=world)))
        levels = np.array(levels)  # (D, band, layer)
        low, high = np.quantile(levels, [0.05, 0.95], axis=0)
        errors = (levels - truth).mean(axis=(1, 2))
        rows.append(
            {
                "seed": seed,
                "scenario": scenario,
                "draws": len(levels),
                "floor_error_unperturbed": float(errors[0]),
                "floor_error_draws_mean": float(errors.mean()),
                "draws_sd": float(errors.std()),
                "coverage": float(((truth >= low) & (truth <= high)).mean()),
                "range_width": float((high - low).mean()),
            }
        )
        print(" ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[catalog.DEFAULT_SEED, 13, 14, 15, 16, 17, 18])
    parser.add_argument("--draws", type=int, default=13, help="members' drivers per RCP fed to the simulator")
    parser.add_argument("--world", default="default")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        folder = args.out / f"seed{seed}"
        print(f"seed {seed}: built up to scenario_windows in {build(seed, folder):.0f} s", flush=True)
        rows += floors(folder / "data", seed, args.world, args.draws)
    table = pl.DataFrame(rows)
    table.write_csv(args.out / "bias_correction_seeds.csv")
    print(
        f"{table.height} seed x RCP cases: unperturbed floor error mean "
        f"{table['floor_error_unperturbed'].mean():+.3f} K, "
        f"sd {table['floor_error_unperturbed'].std():.3f} K; draws' sd {table['draws_sd'].mean():.3f} K; "
        f"coverage of the draws' 5-95% range {table['coverage'].mean():.3f} (nominal 0.90)"
    )


if __name__ == "__main__":
    main()
