"""Models layer: the conduction core, the five architectures (several seeds each), evaluation
against every baseline, projections with the ensemble's range, active-layer thickness and SHAP.

Thin wrappers over `ml/`: models are `.keras` files the assets write themselves (never pickled
through an IO manager); tensorflow/keras and shap are imported inside asset bodies.
"""

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    MaterializeResult,
    MetadataValue,
    asset,
)

from dagster_project.config import TrainingRunConfig, to_source
from dagster_project.lake import HISTORY_MART
from dagster_project.metadata import markdown_table, png_markdown
from dagster_project.partitions import architectures
from dagster_project.resources import WAREHOUSE_POOL, LakeResource, WarehouseResource
from ml.training_config import TrainingConfig
from sources import catalog

MODELS = "models"
TRAINED_MODELS = AssetKey("trained_models")
THERMAL_CORE = AssetKey("thermal_core")
BEAT_BASELINE_CHECK = "models_beat_best_baseline"


def _paper_windows(lake: LakeResource):
    from ml.windows import NormalizationStats, WindowSet

    files = lake.layout.training_windows()
    stats = NormalizationStats.from_dict(json.loads(files.stats.read_text()))
    return WindowSet.load(files.train), WindowSet.load(files.test), stats


def _residual_windows(lake: LakeResource):
    from ml.residual import ResidualScaler, ResidualWindows

    files = lake.layout.training_windows()
    scaler = ResidualScaler.from_dict(json.loads(files.residual_scaler.read_text()))
    return ResidualWindows.load(files.residual_train), ResidualWindows.load(files.residual_test), scaler


def trained_model_folders(context: AssetExecutionContext) -> dict[str, Path]:
    """The model folder of every architecture, as `trained_models` recorded it.

    Read from the latest materialization of each partition (its `path` metadata and run id),
    never from which folders happen to exist: a folder left by an earlier lake or run, or one
    rewritten outside Dagster since, is refused rather than used silently.
    """
    from ml.ensemble import read_record

    instance = context.instance
    folders = {}
    for architecture in architectures.get_partition_keys():
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=TRAINED_MODELS, asset_partitions=[architecture]), limit=1
        ).records
        if not records:
            continue
        record = records[0]
        folder = Path(record.asset_materialization.metadata["path"].value)
        written = read_record(folder).get("provenance", {}).get("run_id")
        if written != record.run_id:
            raise RuntimeError(
                f"{folder} was written by run {written}, but the latest trained_models materialization of "
                f"{architecture} is run {record.run_id}: re-materialize trained_models[{architecture}]"
            )
        folders[architecture] = folder
    if not folders:
        raise FileNotFoundError("no trained_models partition has been materialized: materialize trained_models first")
    return folders


# --- the conduction core -------------------------------------------------------------------


@asset(
    group_name=MODELS,
    deps=[AssetKey(HISTORY_MART.name)],
    pool=WAREHOUSE_POOL,
    kinds={"numpy", "parquet"},
    description="The calibrated 1-D heat-conduction core (ml.thermal_core): five parameters per band fitted by "
    "least squares to the 2001-2018 layer temperatures, driven by skin temperature through a degree-day "
    "snowpack; its run over the whole history. It carries the response to the forcing that projections need.",
)
def thermal_core(context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource) -> MaterializeResult:
    from ml.band_arrays import days_in_month, history_grid
    from ml.metrics import rmse
    from ml.scenario_members import fit_history_core, history_run_frame

    grid = history_grid(warehouse.read_table(HISTORY_MART))
    train = grid.months <= catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH)
    started = time.perf_counter()
    core, history = fit_history_core(grid, train, days_in_month(grid.months, "standard"))
    seconds = time.perf_counter() - started
    files = lake.layout.thermal_core()
    record = {**core.to_dict(), "train_last_month": str(catalog.TRAIN_LAST_TARGET_MONTH), "fit_seconds": seconds}
    with lake.batch() as batch:
        batch.file(files.parameters, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
        batch.parquet(files.history, history_run_frame(grid.months, history))
    observed = grid.select(catalog.TARGETS)
    test = grid.rows(catalog.month64(catalog.TEST_FIRST_TARGET_MONTH), catalog.month64(catalog.TEST_LAST_TARGET_MONTH))
    parameters = pl.DataFrame({"band": np.arange(grid.values.shape[1]), **core.params})
    return MaterializeResult(
        metadata={
            "parameters": MetadataValue.md(markdown_table(parameters, float_precision=4)),
            "train_rmse": round(core.train_rmse, 4),
            "test_rmse": round(rmse(observed[test], history[test]), 4) if len(test) else float("nan"),
            "iterations": core.iterations,
            "fit_seconds": round(seconds, 1),
            "path": MetadataValue.path(str(files.folder)),
        }
    )


# --- the networks ------------------------------------------------------------------------


@asset(
    group_name=MODELS,
    partitions_def=architectures,
    deps=[AssetKey("training_windows")],
    kinds={"keras"},
    description="One architecture's networks, one per seed (config `seeds`, default 5), trained in one step on "
    "the 2001-2018 windows: bounded residuals on the conduction core by default (config `design: paper` "
    "trains the paper's networks); early stopping on the latest training months; saved as .keras with "
    "what each needs to predict.",
)
def trained_models(context: AssetExecutionContext, config: TrainingRunConfig, lake: LakeResource) -> MaterializeResult:
    from ml.ensemble import save_architecture, train_architecture

    settings = to_source(config, TrainingConfig)
    architecture = context.partition_key
    if settings.design == "residual":
        train, _, scaler = _residual_windows(lake)
        trained = train_architecture(architecture, settings, residual_train=train, residual_scaler=scaler)
    else:
        train, _, stats = _paper_windows(lake)
        trained = train_architecture(architecture, settings, paper_train=train, paper_stats=stats)
    trained = dataclasses.replace(trained, provenance={"run_id": context.run.run_id, "asset": "trained_models"})
    with lake.batch() as batch:
        folder = batch.folder(lake.layout.model_folder(architecture), lambda tmp: save_architecture(trained, tmp))
    best = [float(np.nanmin(m.history.get("val_loss") or m.history.get("loss") or [np.nan])) for m in trained.members]
    return MaterializeResult(
        metadata={
            "architecture": architecture,
            "design": settings.design,
            "seeds": settings.seeds,
            "epochs_run": MetadataValue.json(trained.epochs_run),
            "best_val_loss": MetadataValue.json([round(v, 5) for v in best]),
            "seconds_per_network": MetadataValue.json([round(s, 1) for s in trained.seconds]),
            "seconds": round(sum(trained.seconds), 1),
            "parameters": int(trained.members[0].model.count_params()),
            "path": MetadataValue.path(str(folder)),
        }
    )


# --- evaluation ---------------------------------------------------------------------------


@asset(
    group_name=MODELS,
    deps=[TRAINED_MODELS, AssetKey("training_windows"), THERMAL_CORE, AssetKey(HISTORY_MART.name)],
    pool=WAREHOUSE_POOL,
    kinds={"duckdb", "parquet"},
    check_specs=[
        AssetCheckSpec(
            BEAT_BASELINE_CHECK,
            asset="model_evaluation",
            blocking=False,
            description="Which models (seed means and the ensemble) beat the best baseline that does not read "
            "observed soil temperature; a warning, not a stop.",
        )
    ],
    description="Test scores (2019-2023) of every network (each seed, and the seed mean with its spread), the "
    "ensemble and every baseline (climatology, 12-month and damped persistence, the status-quo ridge, the "
    "distributed-lag ridge, the core alone): RMSE, MAE, R2 and skill against climatology, overall, per band, "
    "per layer and per band x layer, with year-block bootstrap intervals; beside the paper's Table 2.",
)
def model_evaluation(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml import evaluation
    from ml.ensemble import load_architecture
    from ml.figures import observed_vs_predicted_figure

    history = warehouse.read_table(HISTORY_MART)
    paper_train, paper_test, _ = _paper_windows(lake)
    _, residual_test, _ = _residual_windows(lake)
    trained = {a: load_architecture(folder) for a, folder in trained_model_folders(context).items()}
    test = evaluation.predict_test_years(
        history, paper_train, paper_test, residual_test, lake.layout.thermal_core().history, trained
    )
    table = evaluation.score(test)
    path = lake.layout.model_evaluation()
    last_year = catalog.TEST_LAST_TARGET_MONTH.year
    with lake.batch() as batch:
        batch.parquet(path, table)
        figure = batch.file(
            lake.layout.figure("observed_vs_predicted"),
            lambda tmp: observed_vs_predicted_figure(
                test.target_month, test.band, test.observed, test.shown(), last_year, tmp
            ),
        )
    views = warehouse.refresh_output_views(lake.layout, "model_evaluation", context.log)
    overall = evaluation.overall_table(table)
    verdict = evaluation.baseline_verdict(overall)
    return MaterializeResult(
        metadata={
            # seed means for networks (rmse_sd: across seeds); 5-95% intervals over resampled test years
            "evaluation": MetadataValue.md(markdown_table(overall, float_precision=3)),
            "targets": MetadataValue.json(evaluation.targets(overall)),
            "skill_per_band": MetadataValue.md(
                markdown_table(evaluation.skill_pivot(table, "band"), float_precision=2)
            ),
            "skill_per_layer": MetadataValue.md(
                markdown_table(evaluation.skill_pivot(table, "layer"), float_precision=2)
            ),
            "designs": MetadataValue.json({name: design for name, (design, _) in test.networks.items()}),
            "baselines": MetadataValue.json(evaluation.BASELINES),
            "rows": table.height,
            "figure": png_markdown(figure, f"observed vs predicted, {last_year}"),
            **views,
            "path": MetadataValue.path(str(path)),
        },
        check_results=[
            AssetCheckResult(
                check_name=BEAT_BASELINE_CHECK,
                passed=verdict.pop("passed"),
                severity=AssetCheckSeverity.WARN,
                metadata={k: MetadataValue.json(v) if isinstance(v, list) else v for k, v in verdict.items()},
            )
        ],
    )


# --- projections --------------------------------------------------------------------------


@asset(
    group_name=MODELS,
    deps=[TRAINED_MODELS, AssetKey("scenario_windows"), THERMAL_CORE, AssetKey(HISTORY_MART.name)],
    pool=WAREHOUSE_POOL,
    kinds={"parquet", "netcdf"},
    description="Monthly soil temperature per RCP, band and layer for every network member (each on its own "
    "bias-correction draw), the core alone and the distributed-lag ridge, with the ensemble mean and its 5-95% "
    "range: the hindcast on each scenario's own forcing from 2001, then the projection 2024-2100. Parquet and "
    "CF-1.8 netCDF; one figure per RCP with the 2001-2023 history.",
)
def soil_temperature_projections(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml.band_arrays import history_grid
    from ml.distributed_lag import fit_on_history
    from ml.ensemble import load_architecture
    from ml.figures import projection_figure
    from ml.projections import late_century_difference, scenario_projections, to_cf_netcdf, with_ensemble
    from ml.scenario_members import ScenarioMembers
    from ml.windows import WindowSet

    history_frame = warehouse.read_table(HISTORY_MART)
    ridge = fit_on_history(history_grid(history_frame))
    trained = {a: load_architecture(folder) for a, folder in trained_model_folders(context).items()}
    paper_design = any(networks.design == "paper" for networks in trained.values())
    frames = []
    for scenario in catalog.RCP_EXPERIMENTS:
        members = ScenarioMembers.load(lake.layout.scenario_members(scenario))
        paper_windows = WindowSet.load(lake.layout.scenario_windows(scenario)) if paper_design else None
        frames.append(scenario_projections(scenario, members, trained, ridge, paper_windows))
    projections = with_ensemble(pl.concat(frames))
    parquet, netcdf = lake.layout.projections("parquet"), lake.layout.projections("nc")
    observed = history_frame.select("band", "month", *catalog.TARGETS)
    with lake.batch() as batch:
        batch.parquet(parquet, projections)
        batch.file(netcdf, lambda tmp: to_cf_netcdf(projections, tmp))
        figures = {
            s: batch.file(
                lake.layout.figure(f"projections_{s}"),
                lambda tmp, s=s: projection_figure(projections, s, tmp, history=observed),
            )
            for s in catalog.RCP_EXPERIMENTS
        }
    views = warehouse.refresh_output_views(lake.layout, "soil_temperature_projections", context.log)
    difference = late_century_difference(projections.filter(pl.col("model") == "ensemble_mean"))
    members = projections.filter(pl.col("model") != "ensemble_mean").select("model", "member").unique()
    return MaterializeResult(
        metadata={
            "rows": projections.height,
            # members per model, e.g. "gru 5, thermal_core 1" (a JSON list of member numbers was
            # taller than the rest of the page)
            "members": ", ".join(
                f"{m} {members.filter(pl.col('model') == m).height}" for m in sorted(set(members["model"]))
            ),
            "months": f"{projections['month'].min():%Y-%m}..{projections['month'].max():%Y-%m} "
            f"(hindcast before {catalog.PROJECTION_FIRST_MONTH:%Y-%m})",
            "rcp85_minus_rcp26_t_soil_0_2081_2100": MetadataValue.md(
                markdown_table(difference.select("band", "warmer_mean", "cooler_mean", "difference"), float_precision=2)
            ),
            # one figure per pathway, each with the 2001-2023 history before it
            **{f"figure_{s}": png_markdown(figures[s], f"{s} projections") for s in catalog.RCP_EXPERIMENTS},
            "netcdf": MetadataValue.path(str(netcdf)),
            "path": MetadataValue.path(str(parquet)),
            **views,
        }
    )


# --- active layer -------------------------------------------------------------------------


@asset(
    group_name=MODELS,
    deps=[AssetKey("soil_temperature_projections"), AssetKey(HISTORY_MART.name)],
    pool=WAREHOUSE_POOL,
    kinds={"parquet"},
    description="Active-layer thickness per band and year from a conduction-profile fit to the four layers "
    "(damping-depth solution, 1 cm grid to 2.89 m) for the reanalysis, every projection member and the "
    "ensemble mean; flagged where the ground thaws below 2.89 m (a talik or a deeper ALT: a lower bound), "
    "where nothing thaws, or the year is incomplete.",
)
def active_layer_thickness(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml.active_layer import censored_share, reanalysis_and_ensemble, thickness_table
    from ml.figures import active_layer_figure

    projections = pl.read_parquet(lake.layout.projections("parquet"))
    table = thickness_table(projections, warehouse.read_table(HISTORY_MART))
    path = lake.layout.active_layer()
    with lake.batch() as batch:
        batch.parquet(path, table)
        figure = batch.file(
            lake.layout.figure("active_layer_thickness"),
            lambda tmp: active_layer_figure(reanalysis_and_ensemble(table), tmp),
        )
    views = warehouse.refresh_output_views(lake.layout, "active_layer_thickness", context.log)
    reanalysis = censored_share(table.filter(pl.col("scenario") == "reanalysis"))
    projected_years = table.filter(pl.col("year") >= catalog.PROJECTION_FIRST_MONTH.year)
    return MaterializeResult(
        metadata={
            "rows": table.height,
            "method": "conduction-profile fit to the four layers (ml.active_layer, method='profile')",
            # target: censored in at most half of the reanalysis years in bands 2-5
            "reanalysis_censored_bands_2_5": round(float(reanalysis["censored_share"][0]), 3)
            if reanalysis.height
            else None,
            "censored_share_bands_2_5": MetadataValue.md(
                markdown_table(censored_share(projected_years), float_precision=3)
            ),
            "figure": png_markdown(figure, "active-layer thickness by scenario"),
            "path": MetadataValue.path(str(path)),
            **views,
        }
    )


# --- explanations -------------------------------------------------------------------------


@asset(
    group_name=MODELS,
    deps=[TRAINED_MODELS, AssetKey("training_windows")],
    kinds={"shap"},
    description="Mean |SHAP| per input channel of the first network (seed 0) of each architecture "
    "(GradientExplainer, 100 background and 10 explained test windows), summed over a window's months, "
    "averaged over windows and layers, in K (each layer's output scaled to kelvin).",
)
def feature_importance(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml.ensemble import load_architecture
    from ml.explain import network_importance
    from ml.figures import feature_importance_figure

    _, residual_test, scaler = _residual_windows(lake)
    _, paper_test, _ = _paper_windows(lake)
    tables, figures = [], {}
    path = lake.layout.feature_importance()
    with lake.batch() as batch:
        for architecture, folder in trained_model_folders(context).items():
            trained = load_architecture(folder, members=1)
            importance = network_importance(trained, residual_test, scaler, paper_test)
            tables.append(importance.with_columns(pl.lit(architecture).alias("model"), pl.lit("K").alias("unit")))
            # a residual network explains its correction to the core, not the whole prediction
            label = f"{architecture}, correction to the core" if trained.design == "residual" else architecture
            figures[architecture] = batch.file(
                lake.layout.figure(f"feature_importance_{architecture}"),
                lambda tmp, importance=importance, name=label: feature_importance_figure(importance, name, tmp),
            )
        table = pl.concat(tables)
        batch.parquet(path, table)
    views = warehouse.refresh_output_views(lake.layout, "feature_importance", context.log)
    top = table.sort("mean_abs_shap", descending=True).group_by("model", maintain_order=True).head(5)
    return MaterializeResult(
        metadata={
            "top_5_per_model": MetadataValue.md(markdown_table(top, float_precision=4)),
            "unit": "K: soil temperature moved by the feature over a window, mean over windows and layers",
            # one figure per architecture
            **{f"figure_{name}": png_markdown(figure, f"SHAP top 15, {name}") for name, figure in figures.items()},
            "path": MetadataValue.path(str(path)),
            **views,
        }
    )
