"""Validation layer: the perfect-model experiment, judging projections against a known truth.

Only a simulated world knows what its own soil did under a pathway; the demo source does
(`sources.base.PerfectModelSource`), real climate models do not. On a real source the asset says
so in its metadata and writes nothing.
"""

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from dagster_project.lake import HISTORY_MART
from dagster_project.metadata import markdown_table, png_markdown
from dagster_project.resources import WAREHOUSE_POOL, LakeResource, SourcesResource, WarehouseResource
from ml.perfect_model import TARGETS
from sources import catalog
from sources.base import PerfectModelSource

VALIDATION = "validation"
FIRST_YEAR = 2019  # the jump compares 2024-2028 with 2019-2023 of the same run
FIGURE_BAND, FIGURE_LAYER = 5, 3  # the northernmost band's deepest layer: the slowest, most telling


def _grid(frame: pl.DataFrame, months: np.ndarray, what: str) -> np.ndarray:
    """(T, B, 4) soil temperatures of `frame` over exactly `months`."""
    from ml.band_arrays import band_grid

    first, last = (m.astype("datetime64[D]").item() for m in (months[0], months[-1]))
    grid = band_grid(frame.filter(pl.col("month").is_between(first, last)), catalog.TARGETS, what)
    if len(grid.months) != len(months):
        raise ValueError(f"{what} covers {grid.months[0]}..{grid.months[-1]}, expected {months[0]}..{months[-1]}")
    return grid.values


def _runs(projections: pl.DataFrame, scenarios: list[str], months) -> dict[tuple[str, int], np.ndarray]:
    """(model, member) -> (S, T, B, 4) of every member row of the projections."""
    first, last = months[0].astype("datetime64[D]").item(), months[-1].astype("datetime64[D]").item()
    rows = projections.filter(pl.col("model") != "ensemble_mean", pl.col("month").is_between(first, last))
    runs = {}
    for (model, member), frame in rows.partition_by(["model", "member"], as_dict=True).items():
        runs[(model, member)] = np.stack(
            [_grid(frame.filter(pl.col("scenario") == s), months, f"{model} member {member} {s}") for s in scenarios]
        )
    return runs


def _target_table(values: dict[str, float]) -> pl.DataFrame:
    rows = []
    for name, (sense, limit) in TARGETS.items():
        value = values[name]
        met = value <= limit if sense == "<=" else value >= limit
        rows.append({"target": name, "value": float(value), "required": f"{sense} {limit:g}", "met": bool(met)})
    return pl.DataFrame(rows)


@asset(
    group_name=VALIDATION,
    deps=[AssetKey("soil_temperature_projections"), AssetKey("cmip5_bias_corrected"), AssetKey(HISTORY_MART.name)],
    pool=WAREHOUSE_POOL,
    kinds={"parquet"},
    description="Perfect-model validation on a simulated world (the demo): every projection against the "
    "simulator's own soil under the same pathway and weather without the climate model's bias. RMSE of the "
    "2081-2100 minus 2024-2043 change and of the 2081-2100 level per member, architecture, the ensemble and "
    "the reference models; scenario ordering per band x layer; the jump at 2024; how often the truth lies "
    "inside the ensemble's 5-95% range; and the floor (the simulator itself fed the bias-corrected drivers). "
    "The core shares the simulator's physics class, so real-world skill will be lower. Real sources have no "
    "such truth: the asset says so and writes nothing.",
)
def perfect_model_validation(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource, sources: SourcesResource
) -> MaterializeResult:
    from ml.band_arrays import band_grid
    from ml.figures import perfect_model_figure
    from ml.perfect_model import Signals, coverage, ensemble_range, ordered_cells, scores, seam_rmse
    from ml.projections import REFERENCE_MODELS
    from ml.soil_water import water_tails

    source = sources.climate_model()
    if not isinstance(source, PerfectModelSource):
        context.log.info(
            f"climate-model source {source.name!r} has no simulator truth: perfect-model validation skipped"
        )
        return MaterializeResult(
            metadata={
                "status": "skipped",
                "reason": f"the climate-model source {source.name!r} publishes no soil temperature of the world it "
                "simulates, so there is no truth to validate against (only the demo's simulator has one)",
            }
        )
    scenarios = list(catalog.RCP_EXPERIMENTS)
    months = np.arange(np.datetime64(f"{FIRST_YEAR}-01"), catalog.month64(catalog.PROJECTION_LAST_MONTH) + 1)
    years = months.astype("datetime64[Y]").astype(np.int64) + 1970
    truth_frames = {s: source.perfect_model_truth(s) for s in scenarios}
    truth = np.stack([_grid(truth_frames[s], months, f"truth {s}") for s in scenarios])
    floor = np.stack(
        [
            _grid(source.perfect_model_floor(s, pl.read_parquet(lake.layout.bias_corrected(s))), months, f"floor {s}")
            for s in scenarios
        ]
    )
    history = warehouse.read_table(HISTORY_MART)
    observed = band_grid(history, (*catalog.TARGETS, *catalog.WATER_CONTENT), "history mart")
    before_projection = (observed.year >= FIRST_YEAR) & (observed.year < catalog.PROJECTION_FIRST_MONTH.year)
    recent = observed.select(catalog.TARGETS)[before_projection].mean(axis=0)  # the reanalysis 2019-2023
    projections = pl.read_parquet(lake.layout.projections("parquet"))
    runs = _runs(projections, scenarios, months)

    truth_signals = Signals.of(truth, years)

    def row(model, member, kind, values):
        return {
            "model": model,
            "member": member,
            "kind": kind,
            **scores(Signals.of(values, years), truth_signals),
            "seam_rmse": seam_rmse(values, years, recent, truth_signals),
        }

    networks = {key: values for key, values in runs.items() if key[0] not in REFERENCE_MODELS}
    rows = [row(model, member, "member", values) for (model, member), values in sorted(networks.items())]
    for architecture in sorted({model for model, _ in networks}):
        members = [values for (model, _), values in networks.items() if model == architecture]
        rows.append(row(architecture, None, "architecture", np.mean(members, axis=0)))
    ensemble = np.mean(list(networks.values()), axis=0)
    rows.append(row("ensemble", None, "ensemble", ensemble))
    rows += [
        row(model, None, "reference", values)
        for (model, _), values in sorted(runs.items())
        if model in REFERENCE_MODELS
    ]
    rows.append(row("floor", None, "floor", floor))
    member_signals = [Signals.of(values, years) for values in networks.values()]
    spread = coverage(member_signals, truth_signals)
    table = pl.DataFrame(rows).with_columns(
        pl.when(pl.col("kind") == "ensemble").then(pl.lit(spread["coverage_change"])).alias("coverage_change"),
        pl.when(pl.col("kind") == "ensemble").then(pl.lit(spread["coverage_level"])).alias("coverage_level"),
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
    ensemble_signals = Signals.of(ensemble, years)
    floor_signals = Signals.of(floor, years)
    index = np.indices(truth_signals.change.shape).reshape(3, -1)
    cells = pl.DataFrame(
        {
            "scenario": [scenarios[i] for i in index[0]],
            "band": index[1],
            "layer": index[2],
            **{
                f"{prefix}_{signal}": getattr(values, signal).ravel()
                for signal in ("change", "level", "jump")
                for prefix, values in (
                    ("truth", truth_signals),
                    ("ensemble", ensemble_signals),
                    ("floor", floor_signals),
                )
            },
            **{f"{signal}_q05": getattr(low, signal).ravel() for signal in ("change", "level")},
            **{f"{signal}_q95": getattr(high, signal).ravel() for signal in ("change", "level")},
        }
    )
    series = _figure_series(projections, truth_frames, history)
    files = lake.layout.validation()
    with lake.batch() as batch:
        batch.parquet(files.scores, table)
        batch.parquet(files.cells, cells)
        figure = batch.file(
            lake.layout.figure("perfect_model_validation"),
            lambda tmp: perfect_model_figure(
                cells, series, tmp, f"Perfect-model validation; right: band {FIGURE_BAND}, layer {FIGURE_LAYER}"
            ),
        )
    views = warehouse.refresh_output_views(lake.layout, "perfect_model_validation", context.log)
    projected = months >= catalog.month64(catalog.PROJECTION_FIRST_MONTH)
    reference_water = observed.select(catalog.WATER_CONTENT)
    water = []
    for s in scenarios:
        corrected = band_grid(
            pl.read_parquet(lake.layout.bias_corrected(s)).filter(pl.col("month") >= catalog.PROJECTION_FIRST_MONTH),
            catalog.WATER_CONTENT,
            f"corrected {s}",
        )
        true_water = band_grid(truth_frames[s], catalog.WATER_CONTENT, f"truth {s}").values[-len(corrected.months) :]
        water.append(
            {
                "scenario": s,
                "w_3_outside_range_corrected": water_tails(reference_water, corrected.values)["w_3"]["outside_range"],
                "w_3_outside_range_truth": water_tails(reference_water, true_water)["w_3"]["outside_range"],
            }
        )
    summary = table.filter(pl.col("kind") != "member").drop("member")
    worst = (
        table.filter(pl.col("kind") == "member")
        .group_by("model")
        .agg(
            pl.col("change_rmse").max().alias("worst_member_change_rmse"),
            pl.col("ordered").min().alias("fewest_member_ordered"),
        )
    )
    return MaterializeResult(
        metadata={
            "status": "validated",
            "source": source.name,
            "targets": MetadataValue.md(markdown_table(_target_table(achieved), float_precision=3)),
            "scores": MetadataValue.md(markdown_table(summary, float_precision=3)),
            "worst_member_per_architecture": MetadataValue.md(markdown_table(worst.sort("model"), float_precision=3)),
            "coverage": MetadataValue.json({k: round(v, 3) for k, v in spread.items()}),
            "truth_ordered_cells": ordered_cells(truth_signals.level),
            "projected_months": int(projected.sum()),
            "w_3_outside_historical_range_2024_2100": MetadataValue.md(
                markdown_table(pl.DataFrame(water), float_precision=3)
            ),
            "caveat": "the conduction core belongs to the simulator's own physics class (conduction with freezing "
            "under a snow resistance), which is why it extrapolates so well here; real-world skill will be lower",
            "figure": png_markdown(figure, "perfect-model validation"),
            "path": MetadataValue.path(str(files.scores)),
            **views,
        }
    )


def _figure_series(projections: pl.DataFrame, truth_frames: dict[str, pl.DataFrame], history: pl.DataFrame):
    """Annual means of one band and layer: the truth and the ensemble per RCP, the reanalysis."""
    column = catalog.TARGETS[FIGURE_LAYER]

    def annual(frame: pl.DataFrame, **extra) -> pl.DataFrame:
        return (
            frame.filter(pl.col("band") == FIGURE_BAND, pl.col("month").dt.year() >= catalog.HISTORY_START.year)
            .group_by(pl.col("month").dt.year().alias("year"))
            .agg(pl.col(column).mean().alias("value"), *(pl.col(c).mean().alias(n) for n, c in extra.items()))
            .sort("year")
        )

    parts = [annual(history).with_columns(pl.lit("reanalysis").alias("scenario"), pl.lit("reanalysis").alias("source"))]
    ensemble = projections.filter(pl.col("model") == "ensemble_mean")
    for scenario, frame in truth_frames.items():
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
