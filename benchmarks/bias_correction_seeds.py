"""Is the bias correction's sampling spread honest? The floor over several weather seeds.

The perfect-model validation judges coverage in ONE weather realisation (the demo's seed), which
every demo world shares. Its floor (the simulator's own soil fed the bias-corrected drivers) is
what no model of those drivers can beat, and its late-century level error is the correction's
sampling error: 23 years of reanalysis against 23 years of climate-model weather. The members
carry that error as bootstrap draws (`ml.forcing_bootstrap`). For each seed this script builds the
band demo up to `cmip5_bias_corrected` in a lake of its own (the launcher, as `make demo`), draws
the members' drivers as `scenario_windows` does (`ml.scenario_members.member_drivers`: the
pipeline's quantile delta mapping and mean delta in turn, bootstrap draw k on member k) once per
bootstrap given by `--block-years` (1: the year bootstrap, the default of `scenario_windows`;
n >= 2: blocks of n consecutive years; 0: the block length of the overlap's measured
persistence), feeds each member's drivers to the simulator (`sources.simulator.runs.soil_response`,
all draws side by side as units of one run) and reports per RCP and bootstrap: the unperturbed
draw's 2081-2100 level error against the truth (mean over bands and layers), the draws' spread of
that error, and the share of band x layer cells whose truth lies inside the draws' 5-95% range
(nominal 0.90; what a calibrated ensemble of n draws reaches in expectation is 0.9 (n - 1) / (n + 1),
`calibrated_coverage`, because n draws' 5% and 95% quantiles lie inside the distribution's).

    .venv/bin/python benchmarks/bias_correction_seeds.py --seeds 13 14 15 --block-years 1 0 3 --out /tmp/bcs
"""

from __future__ import annotations

import argparse
import dataclasses
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

from ml.perfect_model import calibrated_coverage  # noqa: E402
from sources import catalog  # noqa: E402
from sources.demo import DemoClimateModelSource, DemoSettings  # noqa: E402

DRIVERS = ("t_air", "p_total", "p_snow", "r_thermal", "r_solar")
LATE = (2081, 2100)


def build(seed: int, folder: Path, reuse: bool = False) -> float:
    """The band demo of weather `seed` up to `cmip5_bias_corrected` in `folder`; seconds (0 when
    `reuse` finds it built)."""
    corrected = folder / "data" / "features" / "cmip5_bias_corrected"
    if reuse and all((corrected / f"{s}.parquet").exists() for s in catalog.RCP_EXPERIMENTS):
        return 0.0
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
    command = [sys.executable, "-m", "dagster_project.launcher.demo", "--select", "+key:cmip5_bias_corrected"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"seed {seed}: the demo failed (rc {result.returncode}):\n{result.stdout[-3000:]}")
    return time.perf_counter() - started


def late_level(t_soil: np.ndarray, months: np.ndarray) -> np.ndarray:
    """(months, ..., layer) soil temperatures -> (..., layer) 2081-2100 mean."""
    years = months.astype("datetime64[Y]").astype(int) + 1970
    return t_soil[(years >= LATE[0]) & (years <= LATE[1])].mean(axis=0)


def truth_level(source: DemoClimateModelSource, scenario: str) -> np.ndarray:
    """(band, layer) 2081-2100 mean of the perfect-model truth."""
    frame = source.perfect_model_truth(scenario).filter(pl.col("month").dt.year().is_between(*LATE)).sort("band")
    means = frame.group_by("band", maintain_order=True).agg(pl.col(t).mean() for t in catalog.TARGETS)
    return means.select(catalog.TARGETS).to_numpy()


def floor_levels(drivers: np.ndarray, names: list[str], months: np.ndarray, world: str) -> np.ndarray:
    """(D, band, layer) 2081-2100 level of the simulator's soil fed each draw's (T, B, V) drivers
    (2001 on, the band order of `band_climates`), all draws side by side in one run (each draw's
    bands repeated as units: the soil of a unit depends on its own drivers and climate alone)."""
    from sources.demo import CMIP_CALENDAR, SECONDS_PER_DAY, days_in_month, world_named
    from sources.simulator import runs
    from sources.simulator.unit_climates import band_climates

    n_draws, n_months, n_bands, _ = drivers.shape
    bands = band_climates()
    tiled = dataclasses.replace(
        bands, **{f.name: np.tile(getattr(bands, f.name), n_draws) for f in dataclasses.fields(bands)}
    )

    def side_by_side(name: str) -> np.ndarray:  # (T, D * B), draw-major
        return np.concatenate(list(drivers[..., names.index(name)].astype(np.float64)), axis=1)

    dates = [d.item() for d in months.astype("datetime64[D]")]
    days = days_in_month(dates, CMIP_CALENDAR)
    per_day = days[:, None]
    forcing = {
        "t_air": side_by_side("t_air"),
        "precip": side_by_side("p_total") * 1000.0 / per_day,
        "snowfall": side_by_side("p_snow") * 1000.0 / per_day,
        "sw_down": side_by_side("r_solar") / (per_day * SECONDS_PER_DAY),
        "lw_down": side_by_side("r_thermal") / (per_day * SECONDS_PER_DAY),
    }
    t_soil = runs.soil_response(forcing, days, tiled, world_named(world))["t_soil"]  # (T, 4, D * B)
    level = late_level(t_soil, months)  # (4, D * B)
    return level.T.reshape(n_draws, n_bands, len(catalog.TARGETS))


def scenario_inputs(lake: Path):
    """What `scenario_windows` draws its members from: (history grid, raw runs, corrected
    scenarios by name, model inputs), read from the lake's warehouse and files."""
    from assets.features import _marts, raw_scenario_runs
    from dagster_project.resources import WarehouseResource
    from ml.unit_arrays import history_grid, unit_grid

    warehouse = WarehouseResource(path=str(lake / "warehouse.duckdb"))
    history_frame, units, inputs, raw_marts = _marts(warehouse)
    channels = inputs.channels
    history = history_grid(history_frame, units, (*channels, *catalog.TARGETS))
    raw_runs = raw_scenario_runs(raw_marts, units, inputs)
    corrected = {
        s: unit_grid(
            pl.read_parquet(lake / "features" / "cmip5_bias_corrected" / f"{s}.parquet"),
            channels,
            f"bias-corrected {s}",
            units,
        )
        for s in catalog.RCP_EXPERIMENTS
    }
    return history, raw_runs, corrected, inputs


def floors(
    lake: Path,
    seed: int,
    world: str,
    draws: int,
    blocks: list[int],
    bootstrap_seed: int,
    method_sets: tuple[str, ...] = ("qdm+mean_delta",),
) -> list[dict]:
    """Rows per RCP, bias-correction methods (members take the methods of a set joined by `+`
    in turn, as `scenario_windows`' config `bias_methods`) and block length."""
    from ml.scenario_members import bootstrap_block, mean_delta_correction, member_drivers

    source = DemoClimateModelSource(DemoSettings(seed=seed, world=world))
    history, raw_runs, corrected, inputs = scenario_inputs(lake)
    rows = []
    for scenario in catalog.RCP_EXPERIMENTS:
        truth = truth_level(source, scenario)  # (band, layer)
        qdm, raw = corrected[scenario], raw_runs[scenario]
        grids = {"qdm": qdm, "mean_delta": mean_delta_correction(raw, history, qdm, inputs, list(raw_runs.values()))}
        keep = qdm.months >= np.datetime64("2001-01")
        rho, auto_block = bootstrap_block(history, raw, inputs, 0)
        for method_set, requested in ((m, b) for m in method_sets for b in blocks):
            methods = [grids[name] for name in method_set.split("+")]
            block = auto_block if requested == 0 else requested
            started = time.perf_counter()
            values = member_drivers(methods, history, raw, draws, bootstrap_seed, inputs, block)[:, keep]
            levels = floor_levels(values, list(qdm.names), qdm.months[keep], world)  # (D, band, layer)
            low, high = np.quantile(levels, [0.05, 0.95], axis=0)
            errors = (levels - truth).mean(axis=(1, 2))
            centre_error = levels.mean(axis=0) - truth  # (band, layer)
            rows.append(
                {
                    "seed": seed,
                    "scenario": scenario,
                    "methods": method_set,
                    "block_years": requested,
                    "block_used": block,
                    "persistence": rho,
                    "draws": len(levels),
                    "floor_error_unperturbed": float(errors[0]),
                    "floor_error_draws_mean": float(errors.mean()),
                    "draws_sd": float(errors.std()),
                    "coverage": float(((truth >= low) & (truth <= high)).mean()),
                    "calibrated_coverage": calibrated_coverage(len(levels)),
                    "range_width": float((high - low).mean()),
                    # per cell: the squared error of the draws' mean and the draws' variance,
                    # averaged over cells (their ratio over many cases: 1 when calibrated, + 1/n)
                    "cell_error_ms": float((centre_error**2).mean()),
                    "cell_draws_var": float(levels.var(axis=0, ddof=1).mean()),
                    "seconds": time.perf_counter() - started,
                }
            )
            print(
                " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()),
                flush=True,
            )
    return rows


def summary(table: pl.DataFrame) -> list[str]:
    """One line per bootstrap over every seed x RCP case."""
    lines = []
    if "methods" not in table.columns:  # written before method sets were compared
        table = table.with_columns(pl.lit("qdm+mean_delta").alias("methods"))
    for (method_set, requested), part in table.group_by(["methods", "block_years"], maintain_order=True):
        spread_ratio = np.sqrt(part["cell_error_ms"].mean() / part["cell_draws_var"].mean())
        per_seed = part.group_by("seed", maintain_order=True).agg(pl.col("coverage").mean())
        lines.append(
            f"methods {method_set}, block_years {requested} (used {sorted(set(part['block_used'].to_list()))}): "
            f"{part.height} seed x RCP "
            f"cases: unperturbed floor error mean {part['floor_error_unperturbed'].mean():+.3f} K, "
            f"sd {part['floor_error_unperturbed'].std():.3f} K; draws' sd {part['draws_sd'].mean():.3f} K; "
            f"coverage of the draws' 5-95% range {part['coverage'].mean():.3f} "
            f"(calibrated {part['calibrated_coverage'].mean():.3f} for {part['draws'].max()} draws; "
            f"per seed {', '.join(f'{c:.2f}' for c in per_seed['coverage'])}); "
            f"cells' rms error of the draws' mean / rms sd of the draws {spread_ratio:.2f}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[catalog.DEFAULT_SEED, 13, 14, 15, 16, 17, 18])
    parser.add_argument("--draws", type=int, default=25, help="members' drivers per RCP fed to the simulator")
    parser.add_argument(
        "--block-years",
        type=int,
        nargs="+",
        default=[1, 0],
        help="bootstraps to compare: 1 the year bootstrap, n >= 2 blocks of n years, 0 from the measured persistence",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["qdm+mean_delta"],
        help="bias-correction method sets, each the members' methods in turn joined by + (qdm, mean_delta)",
    )
    parser.add_argument("--bootstrap-seed", type=int, default=catalog.DEFAULT_SEED, help="as scenario_windows'")
    parser.add_argument("--world", default="default")
    parser.add_argument("--reuse", action="store_true", help="keep a seed's lake already built under --out")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        folder = args.out / f"seed{seed}"
        print(f"seed {seed}: built up to cmip5_bias_corrected in {build(seed, folder, args.reuse):.0f} s", flush=True)
        rows += floors(
            folder / "data", seed, args.world, args.draws, args.block_years, args.bootstrap_seed, tuple(args.methods)
        )
        pl.DataFrame(rows).write_csv(args.out / "bias_correction_seeds.csv")  # after every seed: a partial run counts
    for line in summary(pl.DataFrame(rows)):
        print(line)


if __name__ == "__main__":
    main()
