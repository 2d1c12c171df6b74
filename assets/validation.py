"""Validation layer: the perfect-model experiment, judging projections against a known truth.

Only a simulated world knows what its own soil did under a pathway; the demo source does
(`sources.base.PerfectModelSource`), real climate models do not. On a real source the asset says
so in its metadata and writes nothing. The scores are `ml.perfect_model`'s.
"""

import math

import polars as pl
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from dagster_project.lake import HISTORY_MART, UNITS_DIMENSION
from dagster_project.metadata import markdown_table, png_markdown
from dagster_project.resources import WAREHOUSE_POOL, LakeResource, SourcesResource, WarehouseResource
from sources import catalog
from sources.base import PerfectModelSource

VALIDATION = "validation"


@asset(
    group_name=VALIDATION,
    deps=[
        AssetKey("soil_temperature_projections"),
        AssetKey("cmip5_bias_corrected"),
        AssetKey(HISTORY_MART.name),
        AssetKey(UNITS_DIMENSION.name),
    ],
    pool=WAREHOUSE_POOL,
    kinds={"parquet"},
    description="Perfect-model validation on a simulated world (the demo): every projection against the "
    "simulator's own soil under the same pathway and weather without the climate model's bias. RMSE of the "
    "2081-2100 minus 2024-2043 change and of the 2081-2100 level per member, architecture, the ensemble and "
    "the reference models; scenario ordering per band x layer; the jump at 2024; how often the truth lies "
    "inside the ensemble's 5-95% range; and the floor (the simulator itself fed the bias-corrected drivers). "
    "The core shares the simulator's physics class, so real-world skill will be lower. Real sources have no "
    "such truth, nor do units other than the simulator's bands: the asset says so and writes nothing.",
)
def perfect_model_validation(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource, sources: SourcesResource
) -> MaterializeResult:
    from ml import perfect_model
    from ml.figures import perfect_model_figure
    from ml.projections import REFERENCE_MODELS
    from ml.unit_arrays import Units

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
    units = Units.of(warehouse.read_table(UNITS_DIMENSION), str(UNITS_DIMENSION))
    if not units.are_bands:
        reason = (
            f"the projections are per {units.kind} ({units.count} of them); the simulator's truth exists per "
            "latitude band only, so there is nothing to compare them with"
        )
        context.log.info(f"perfect-model validation skipped: {reason}")
        return MaterializeResult(metadata={"status": "skipped", "reason": reason})
    scenarios = list(catalog.RCP_EXPERIMENTS)
    # the simulator's truth is per band; here the units are the bands
    truth_frames = {s: source.perfect_model_truth(s).with_columns(pl.col("band").alias("unit")) for s in scenarios}
    corrected = {s: pl.read_parquet(lake.layout.bias_corrected(s)) for s in scenarios}
    floor_frames = {s: source.perfect_model_floor(s, corrected[s]) for s in scenarios}
    history = warehouse.read_table(HISTORY_MART)
    projections = pl.read_parquet(lake.layout.projections("parquet"))

    result = perfect_model.validate_frames(truth_frames, floor_frames, projections, history, REFERENCE_MODELS)
    # the northernmost band's deepest layer: the slowest, most telling
    band, layer = int(history["band"].max()), len(catalog.TARGETS) - 1
    series = perfect_model.figure_series(projections, truth_frames, history, band, layer)
    water = perfect_model.water_outside_range(history, corrected, truth_frames)
    files = lake.layout.validation()
    with lake.batch() as batch:
        batch.parquet(files.scores, result.scores)
        batch.parquet(files.cells, result.cells)
        figure = batch.file(
            lake.layout.figure("perfect_model_validation"),
            lambda tmp: perfect_model_figure(
                result.cells, series, tmp, f"Perfect-model validation; right: band {band}, layer {layer}"
            ),
        )
    views = warehouse.refresh_output_views(lake.layout, "perfect_model_validation", context.log)
    summary = result.scores.filter(pl.col("kind") != "member").drop("member")
    return MaterializeResult(
        metadata={
            "status": "validated",
            "source": source.name,
            "targets": MetadataValue.md(markdown_table(perfect_model.target_table(result.achieved), float_precision=3)),
            "scores": MetadataValue.md(markdown_table(summary, float_precision=3)),
            "worst_member_per_architecture": MetadataValue.md(
                markdown_table(perfect_model.worst_members(result.scores), float_precision=3)
            ),
            # with the members' error over their spread (inf where the members agree: left out)
            "coverage": MetadataValue.json({k: round(v, 3) for k, v in result.coverage.items() if math.isfinite(v)}),
            "truth_ordered_cells": result.truth_ordered_cells,
            "projected_months": int(
                (perfect_model.validation_months() >= catalog.month64(catalog.PROJECTION_FIRST_MONTH)).sum()
            ),
            "w_3_outside_historical_range_2024_2100": MetadataValue.md(markdown_table(water, float_precision=3)),
            "caveat": "the conduction core belongs to the simulator's own physics class (conduction with freezing "
            "under a snow resistance), which is why it extrapolates so well here; real-world skill will be lower",
            "figure": png_markdown(figure, "perfect-model validation"),
            "path": MetadataValue.path(str(files.scores)),
            **views,
        }
    )
