"""Features layer: bias-corrected scenarios, scenario soil water, and the 24-month windows.

Thin wrappers: each asset reads the marts or the lake, calls a plain function in `ml/`, writes
atomically to the lake and records metadata (shapes, features, statistics, diagnostics, a
figure). Heavy imports (xsdba, matplotlib) happen inside the ml functions.
"""

import json
import warnings
from pathlib import Path
from typing import Literal

import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from dagster_project.lake import HISTORY_MART, SCENARIO_MART, SOIL_WATER_SHARES
from dagster_project.metadata import markdown_table, png_markdown
from dagster_project.partitions import rcp_scenarios
from dagster_project.resources import WAREHOUSE_POOL, LakeResource, WarehouseResource
from sources import catalog

FEATURES = "features"


class BiasCorrectionConfig(Config):
    """How CMIP5 is mapped onto the reanalysis."""

    # "qdm": quantile delta mapping (keeps the change signal) | "eqm": empirical, as the paper
    method: Literal["qdm", "eqm"] = "qdm"
    n_quantiles: int = 50
    soil_water_seed: int = catalog.DEFAULT_SEED  # Dirichlet split of column water over the four layers


@asset(
    group_name=FEATURES,
    partitions_def=rcp_scenarios,
    backfill_policy=BackfillPolicy.single_run(),
    # every scenario is mapped with the whole history: all monthly partitions of the mart
    deps=[
        AssetDep(HISTORY_MART.name, partition_mapping=AllPartitionMapping()),
        AssetKey(SCENARIO_MART.name),
        AssetKey(SOIL_WATER_SHARES.name),
    ],
    pool=WAREHOUSE_POOL,
    kinds={"parquet", "xsdba"},
    description="Each RCP's CMIP5 features quantile-mapped onto ERA5-Land per band, variable and calendar month "
    "(2001-2023 overlap), with column soil water split over the four layers by fitted Dirichlet shares.",
)
def cmip5_bias_corrected(
    context: AssetExecutionContext, config: BiasCorrectionConfig, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml.bias_correction import bias_correct
    from ml.figures import bias_correction_figure
    from ml.soil_water import fit_layer_shares, split_soil_water

    history = warehouse.read_table(HISTORY_MART)
    scenarios = warehouse.read_table(SCENARIO_MART)
    shares = fit_layer_shares(warehouse.read_table(SOIL_WATER_SHARES))
    diagnostics, figures, overlap, notes = [], {}, {}, []
    # every scenario of the run lands together, or none does
    with lake.batch() as batch:
        for scenario in context.partition_keys:
            raw = scenarios.filter(pl.col("scenario") == scenario)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = bias_correct(history, raw, method=config.method, n_quantiles=config.n_quantiles)
            for warning in caught:
                context.log.warning(str(warning.message))
            corrected = split_soil_water(result.corrected, shares, seed=config.soil_water_seed)
            batch.parquet(lake.layout.bias_corrected(scenario), corrected)
            figures[scenario] = batch.file(
                lake.layout.figure(f"bias_correction_{scenario}"),
                lambda tmp, raw=raw, corrected=corrected: bias_correction_figure(history, raw, corrected, 3, path=tmp),
            )
            overlap[scenario] = (
                f"{result.overlap_first:%Y-%m}..{result.overlap_last:%Y-%m} ({result.overlap_months} months)"
            )
            notes += result.warnings
            diagnostics.append(result.diagnostics.with_columns(pl.lit(scenario).alias("scenario")))
    # mean absolute difference between model and reanalysis quantiles over the overlap,
    # before and after correction, averaged over bands and calendar months
    summary = (
        pl.concat(diagnostics)
        .group_by("scenario", "variable", "unit")
        .agg(pl.col("mad_before", "mad_after", "reference_iqr").mean())
        .sort("scenario", "variable")
    )
    first = context.partition_keys[0]
    return MaterializeResult(
        metadata={
            "method": config.method,
            "scenarios": ", ".join(context.partition_keys),
            "overlap": MetadataValue.json(overlap),
            "warnings": MetadataValue.json(notes),
            "quantile_mapping_diagnostics": MetadataValue.md(markdown_table(summary)),
            "figure": png_markdown(figures[first], f"reanalysis, raw and corrected {first}, band 3"),
            "figure_paths": MetadataValue.json({k: str(v) for k, v in figures.items()}),
            "path": MetadataValue.path(str(lake.layout.bias_corrected(first).parent)),
        }
    )


def target_span(windows) -> str:
    """First..last month predicted, or 'none' for an empty set (a history that ends before 2019)."""
    if len(windows) == 0:
        return "none"
    return f"{windows.target_month.min()}..{windows.target_month.max()}"


def _stats_table(stats) -> str:
    frame = pl.DataFrame({"feature": list(stats.feature_names), "mean": stats.mean, "std": stats.std})
    return markdown_table(frame, float_precision=4)


@asset(
    group_name=FEATURES,
    deps=[AssetKey(HISTORY_MART.name)],
    pool=WAREHOUSE_POOL,
    kinds={"numpy"},
    description="24-month input windows -> next month's four soil temperatures per band; train targets up to "
    "2018-12, test 2019-01..2023-12; z-score statistics from training windows only, stored beside them.",
)
def training_windows(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml.windows import build_training_windows

    history = warehouse.read_table(HISTORY_MART)
    train, test, stats = build_training_windows(history)
    files = lake.layout.training_windows()
    with lake.batch() as batch:
        batch.file(files.train, train.save)
        batch.file(files.test, test.save)
        batch.file(files.stats, lambda tmp: Path(tmp).write_text(json.dumps(stats.to_dict(), indent=2)))
    return MaterializeResult(
        metadata={
            "train_shape": MetadataValue.json(list(train.x.shape)),
            "test_shape": MetadataValue.json(list(test.x.shape)),
            "train_targets": target_span(train),
            "test_targets": target_span(test),
            "features": MetadataValue.json(list(stats.feature_names)),
            "normalization": MetadataValue.md(_stats_table(stats)),
            "path": MetadataValue.path(str(files.folder)),
        }
    )


@asset(
    group_name=FEATURES,
    partitions_def=rcp_scenarios,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[AssetKey("cmip5_bias_corrected"), AssetKey("training_windows")],
    kinds={"numpy"},
    description="Windows predicting 2024-01..2100-12 for each RCP from its bias-corrected series, normalised "
    "with the training statistics.",
)
def scenario_windows(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    from ml.windows import NormalizationStats, build_scenario_windows

    stats = NormalizationStats.from_dict(json.loads(lake.layout.training_windows().stats.read_text()))
    shapes = {}
    with lake.batch() as batch:
        for scenario in context.partition_keys:
            corrected = pl.read_parquet(lake.layout.bias_corrected(scenario))
            windows = build_scenario_windows(corrected, stats)
            batch.file(lake.layout.scenario_windows(scenario), windows.save)
            shapes[scenario] = {"shape": list(windows.x.shape), "targets": target_span(windows)}
    return MaterializeResult(
        metadata={
            "windows": MetadataValue.json(shapes),
            "features": MetadataValue.json(list(stats.feature_names)),
            "path": MetadataValue.path(str(lake.layout.scenario_windows(context.partition_keys[0]).parent)),
        }
    )
