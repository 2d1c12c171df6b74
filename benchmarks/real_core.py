"""The conduction core judged on real soil temperatures (96 ERA5-Land basins) and on the demo.

    .venv/bin/python benchmarks/real_core.py [--basins N] [--variants NAME ...] [--demo] [--before COMMIT]

Real basins (``../shared/data/real/era5_land_basins/monthly_by_basin.csv``, read directly with
polars): every core variant is fitted per basin on 2001-2018 and tested on 2019-01..2023-04.
The basins have no skin temperature and no snowfall: the variants run from air temperature
(the old core is fed it as its skin temperature) and from snowfall derived from precipitation
(``ml.model_inputs.derived_snowfall``, the product's one definition; the figures of 2026-12-04
were measured with an earlier copy whose rain/snow threshold was 0.5 degC, not 1 degC). Printed
per layer: test RMSE of the basin x calendar-month
climatology of 2001-2018 and of each variant, with the parameters that hit a bound, fit
seconds, and the mean change of each layer over 2001-2023 when the air is 6 K warmer (snowfall
derived again; the core must stay finite, not blow up). ``--demo`` fits the variants named (all
by default) on the demo's band history (skin temperature and snowfall published) with the same
split, +6 K on air and skin temperature with the published snowfall, and runs each under the
demo's RCP8.5 truth forcing (the simulator's own weather without the climate model's bias): RMSE
of the 2081-2100 minus 2024-2043 change against the simulator's own soil over bands x layers.
``--before COMMIT`` also fits the demo with the core as it was at COMMIT (read with ``git
show``), in the same process, for fit seconds before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml import thermal_core as tc  # noqa: E402
from ml.model_inputs import derived_snowfall  # noqa: E402
from ml.perfect_model import EARLY, LATE, period_mean  # noqa: E402

BASINS_CSV = REPO.parent / "shared" / "data" / "real" / "era5_land_basins" / "monthly_by_basin.csv"
TRAIN_LAST_YEAR = 2018
WARMING = 6.0  # K added to the air (and skin) temperature for the stability run
LAYERS = ("0-7 cm", "7-28 cm", "28-100 cm", "100-289 cm")

DEFAULT = tc.DEFAULT_STRUCTURE


def structure(fit_melt_factor: bool = True, **terms) -> tc.CoreStructure:
    """The default structure with ``terms`` changed, fitting every parameter they use (but
    ``melt_factor`` unless ``fit_melt_factor``)."""
    changed = replace(DEFAULT, fitted=None, **terms)
    return (
        changed if fit_melt_factor else replace(changed, fitted=tuple(n for n in changed.fitted if n != "melt_factor"))
    )


# From the old core to the default one term at a time, then the default with one term changed.
VARIANTS: dict[str, tc.CoreStructure] = {
    "old": tc.LEGACY_STRUCTURE,  # fed t_air as its skin temperature on the basins
    "air": structure(False, freezing="fixed", snow_insulation="linear", bottom="deep"),
    "air_range": structure(False, snow_insulation="linear", bottom="deep"),
    "air_range_coupled": structure(False, snow_insulation="linear"),
    "air_range_coupled_melt": structure(snow_insulation="linear"),
    "default": DEFAULT,  # air_range_coupled_melt with snow_insulation "power"
    "default_delayed_melt": structure(snowmelt="delayed"),
    "default_organic": structure(organic_layer=True),
    "default_power_law": structure(freezing="power_law"),
    "default_deep": structure(bottom="deep"),
    "default_zero_flux": structure(bottom="zero_flux"),
    "default_no_prior": replace(DEFAULT, prior_weight=0.0),
}


def read_basins(path: Path, basins: int | None) -> dict[str, np.ndarray]:
    """(T, B) arrays of the first ``basins`` basins (station order); raises if a basin lacks a
    month the others have."""
    frame = pl.read_csv(path).sort("station_id", "year", "month")
    stations = frame["station_id"].unique(maintain_order=True)[:basins]
    frame = frame.filter(pl.col("station_id").is_in(stations.to_list()))
    n_basins = len(stations)
    counts = frame.group_by("station_id").len()["len"].unique()
    if len(counts) != 1:
        raise ValueError(f"{path}: the basins have different numbers of months ({sorted(counts.to_list())})")

    def grid(name: str) -> np.ndarray:
        return frame[name].to_numpy().astype(float).reshape(n_basins, -1).T

    return {
        "year": grid("year")[:, 0].astype(int),
        "calendar_month": grid("month")[:, 0].astype(int) - 1,
        "days": grid("n_days")[:, 0],
        "t_air": grid("temperature_2m_mean"),
        "p_total_m": grid("total_precipitation_sum") / 1000.0,
        "w": np.stack([grid(f"volumetric_soil_water_layer_{k}_mean") for k in range(1, 5)], axis=1),
        "t_soil": np.stack([grid(f"soil_temperature_level_{k}_mean") for k in range(1, 5)], axis=1),
    }


def training_climatology(values: np.ndarray, calendar_month: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Per calendar month, the training months' mean of (T, ...) values, put back on every month."""
    means = np.stack([values[train & (calendar_month == m)].mean(axis=0) for m in range(12)])
    return means[calendar_month]


def layer_rmse(predicted: np.ndarray, observed: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.sqrt(((predicted - observed)[rows] ** 2).mean(axis=(0, 2)))


def bound_hits(core: tc.ThermalCore) -> str:
    hits = {n: int(v.sum()) for n, v in core.at_bounds.items() if v.any()}
    return ", ".join(f"{n} {k}" for n, k in hits.items()) or "none"


def fit_and_score(name, structure, inputs, observed, train, test, t_start, warm_inputs) -> tc.ThermalCore:
    """Fit on the months ``train``, print the scores of the months ``test`` and the run with
    ``warm_inputs``; the fitted core."""
    started = time.perf_counter()
    core = tc.ThermalCore(structure=structure).fit(inputs, observed, train, t_start=t_start)
    seconds = time.perf_counter() - started
    predicted = core.predict(inputs, t_start)
    warm = core.predict(warm_inputs, t_start)
    change = (warm - predicted).mean(axis=0)  # (4, B)
    print(
        f"{name:<20} {'  '.join(f'{v:5.3f}' for v in layer_rmse(predicted, observed, test))}  "
        f"all {np.sqrt(((predicted - observed)[test] ** 2).mean()):5.3f}  train {core.train_rmse:5.3f}  "
        f"fit {seconds:6.1f} s ({core.iterations} Jacobians)  at bounds: {bound_hits(core)}",
        flush=True,
    )
    print(
        f"{'':<20} +{WARMING:.0f} K air: finite {bool(np.isfinite(warm).all())}, mean change per layer "
        f"{'  '.join(f'{v:4.2f}' for v in change.mean(axis=1))} K (unit range {change.min():.2f}..{change.max():.2f})",
        flush=True,
    )
    return core


def real_basins(basins: int | None, variants: list[str]) -> None:
    data = read_basins(BASINS_CSV, basins)
    train, test = data["year"] <= TRAIN_LAST_YEAR, data["year"] > TRAIN_LAST_YEAR
    n_basins = data["t_air"].shape[1]
    p_snow = derived_snowfall(data["p_total_m"], data["t_air"])
    water = training_climatology(data["w"], data["calendar_month"], train)
    observed = data["t_soil"]
    t_start = observed[:12].mean(axis=(0, 1))
    climatology = training_climatology(observed, data["calendar_month"], train)
    print(
        f"real basins: {n_basins} basins, train {train.sum()} months (2001-{TRAIN_LAST_YEAR}), test {test.sum()} "
        f"months ({data['year'][test][0]}..{data['year'][-1]}-{data['calendar_month'][-1] + 1:02d})"
    )
    print(f"{'test RMSE (K)':<20} {'  '.join(f'{layer:>5}' for layer in LAYERS)}")
    print(
        f"{'climatology':<20} {'  '.join(f'{v:5.3f}' for v in layer_rmse(climatology, observed, test))}  "
        f"all {np.sqrt(((climatology - observed)[test] ** 2).mean()):5.3f}"
    )
    for name in variants:
        structure = VARIANTS[name]
        # the old core reads a skin temperature; the basins have none, so it is fed the air's
        skin = data["t_air"] if structure.upper_boundary == "skin" else None
        inputs = tc.CoreInputs(skin, data["t_air"], p_snow, water, data["days"])
        warm_inputs = tc.CoreInputs(
            None if skin is None else skin + WARMING,
            data["t_air"] + WARMING,
            derived_snowfall(data["p_total_m"], data["t_air"] + WARMING),
            water,
            data["days"],
        )
        fit_and_score(name, structure, inputs, observed, train, test, t_start, warm_inputs)


def old_module(commit: str):
    """ml/thermal_core.py as it was at ``commit``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{commit}:ml/thermal_core.py"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "thermal_core_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("thermal_core_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def demo(variants: list[str], before: str | None) -> None:
    from sources import catalog
    from sources.demo import DemoSettings, cmip_truth, reanalysis_cell_truth

    settings = DemoSettings()
    world = reanalysis_cell_truth(settings)
    n_months = len(world["days"])
    years = catalog.HISTORY_START.year + np.arange(n_months) // 12
    calendar_month = np.arange(n_months) % 12
    train, test = years <= TRAIN_LAST_YEAR, years > TRAIN_LAST_YEAR
    water = training_climatology(world["theta"], calendar_month, train)

    def inputs_of(w: dict[str, np.ndarray], water_of_months: np.ndarray, warming: float = 0.0) -> tc.CoreInputs:
        p_snow = w["snowfall"] * w["days"][:, None] / 1000.0  # mm/day -> m per month
        return tc.CoreInputs(w["t_skin"] + warming, w["t_air"] + warming, p_snow, water_of_months, w["days"])

    inputs, warm = inputs_of(world, water), inputs_of(world, water, WARMING)
    observed = world["t_soil"]
    t_start = observed[:12].mean(axis=(0, 1))
    climatology = training_climatology(observed, calendar_month, train)
    print(f"\ndemo band history: {observed.shape[2]} bands, train 2001-{TRAIN_LAST_YEAR}, test 2019-2023")
    print(f"{'test RMSE (K)':<20} {'  '.join(f'{layer:>5}' for layer in LAYERS)}")
    print(
        f"{'climatology':<20} {'  '.join(f'{v:5.3f}' for v in layer_rmse(climatology, observed, test))}  "
        f"all {np.sqrt(((climatology - observed)[test] ** 2).mean()):5.3f}"
    )
    months, future = cmip_truth(settings, "rcp85")
    future_years = np.array([m.year for m in months])
    future_inputs = inputs_of(future, water[:12][np.array([m.month - 1 for m in months])])
    truth = future["t_soil"][None]
    truth_change = (period_mean(truth, future_years, LATE) - period_mean(truth, future_years, EARLY))[0]
    if before:
        old = old_module(before)
        old_inputs = old.CoreInputs(inputs.t_surface, inputs.t_air, inputs.p_snow, inputs.w, inputs.days)
        started = time.perf_counter()
        core = old.ThermalCore().fit(old_inputs, observed, train, t_start=t_start)
        seconds = time.perf_counter() - started
        predicted = core.predict(old_inputs, t_start)
        print(
            f"{'before ' + before[:8]:<20} {'  '.join(f'{v:5.3f}' for v in layer_rmse(predicted, observed, test))}  "
            f"all {np.sqrt(((predicted - observed)[test] ** 2).mean()):5.3f}  train {core.train_rmse:5.3f}  "
            f"fit {seconds:6.1f} s ({core.iterations} iterations)",
            flush=True,
        )
    for name in variants:
        core = fit_and_score(name, VARIANTS[name], inputs, observed, train, test, t_start, warm)
        projected = core.predict(future_inputs, t_start)[None]
        change = (period_mean(projected, future_years, LATE) - period_mean(projected, future_years, EARLY))[0]
        print(
            f"{'':<20} RCP8.5 {LATE[0]}-{LATE[1]} minus {EARLY[0]}-{EARLY[1]}: truth's mean change "
            f"{truth_change.mean():.2f} K, core's {change.mean():.2f} K, change RMSE "
            f"{np.sqrt(((change - truth_change) ** 2).mean()):.3f} K over bands x layers",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--basins", type=int, default=None, help="only the first N basins (default: all)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--demo",
        nargs="*",
        default=None,
        choices=list(VARIANTS),
        help="also fit the demo band history with these variants (none named: all)",
    )
    parser.add_argument("--before", default=None, help="commit whose core the demo is also fitted with")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, polars {pl.__version__}")
    if args.variants:
        real_basins(args.basins, args.variants)
    if args.demo is not None or args.before:
        demo(args.demo or list(VARIANTS), args.before)


if __name__ == "__main__":
    main()
