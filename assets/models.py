"""Models layer: train the five architectures, judge them against baselines, project to 2100,
derive active-layer thickness and explain the models.

Thin wrappers over `ml/`: models are `.keras` files the assets write themselves (never
pickled through an IO manager); tensorflow/keras and shap are imported inside asset bodies.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    MaterializeResult,
    MetadataValue,
    asset,
)

from dagster_project.config import config_class, to_source
from dagster_project.lake import HISTORY_MART, MODEL_EVALUATION_VIEW
from dagster_project.metadata import markdown_table, png_markdown
from dagster_project.partitions import architectures
from dagster_project.resources import WAREHOUSE_POOL, LakeResource, WarehouseResource
from ml.training_config import TrainingConfig
from sources import catalog

MODELS = "models"
TRAINED_MODELS = AssetKey("trained_models")

# Paper Table 2: test-period (2019-2023) scores, all bands and layers pooled.
PAPER_TABLE_2 = pl.DataFrame(
    {
        "model": ["tcn", "transformer", "conv1d_lstm", "gru", "bilstm"],
        "paper_rmse": [1.118, 1.158, 1.092, 1.027, 1.234],
        "paper_mae": [0.872, 0.912, 0.833, 0.747, 0.907],
        "paper_r2": [0.937, 0.939, 0.938, 0.943, 0.919],
    }
)


TrainingRunConfig = config_class(
    TrainingConfig, "TrainingRunConfig", "How each architecture is trained (ml.training_config.TrainingConfig)."
)


def _load_windows(lake: LakeResource):
    from ml.windows import NormalizationStats, WindowSet

    files = lake.layout.training_windows()
    stats = NormalizationStats.from_dict(json.loads(files.stats.read_text()))
    return WindowSet.load(files.train), WindowSet.load(files.test), stats


def trained_model_folders(context: AssetExecutionContext) -> dict[str, Path]:
    """The model folder of every architecture, as `trained_models` recorded it.

    Read from the latest materialization of each partition (its `path` metadata and run id),
    never from which folders happen to exist: a folder left by an earlier lake or run, or one
    rewritten outside Dagster since, is refused rather than used silently.
    """
    from ml.training import TRAINING_FILE

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
        written = json.loads((folder / TRAINING_FILE).read_text()).get("provenance", {}).get("run_id")
        if written != record.run_id:
            raise RuntimeError(
                f"{folder} was written by run {written}, but the latest trained_models materialization of "
                f"{architecture} is run {record.run_id}: re-materialize trained_models[{architecture}]"
            )
        folders[architecture] = folder
    if not folders:
        raise FileNotFoundError("no trained_models partition has been materialized: materialize trained_models first")
    return folders


@asset(
    group_name=MODELS,
    partitions_def=architectures,
    deps=[AssetKey("training_windows")],
    kinds={"keras"},
    description="One Keras model per architecture trained on the 2001-2018 windows (fixed seed, early stopping "
    "on the latest training months), saved as .keras with its normalisation statistics and history.",
)
def trained_models(context: AssetExecutionContext, config: TrainingRunConfig, lake: LakeResource) -> MaterializeResult:
    from ml.training import save_trained, train_model

    train, _, stats = _load_windows(lake)
    architecture = context.partition_key
    trained = train_model(architecture, train, stats, to_source(config, TrainingConfig))
    trained = dataclasses.replace(trained, provenance={"run_id": context.run_id, "asset": "trained_models"})
    with lake.batch() as batch:
        folder = batch.folder(lake.layout.model_folder(architecture), lambda tmp: save_trained(trained, tmp))
    losses = trained.history.get("val_loss") or trained.history.get("loss") or [float("nan")]
    return MaterializeResult(
        metadata={
            "architecture": architecture,
            "device": trained.device,
            "epochs_run": len(trained.history.get("loss", [])),
            "best_val_loss": float(np.nanmin(losses)),
            "seconds": round(trained.seconds, 1),
            "parameters": int(trained.model.count_params()),
            "path": MetadataValue.path(str(folder)),
        }
    )


def _baseline_predictions(history: pl.DataFrame, train, test) -> dict[str, np.ndarray]:
    from ml.baselines import RidgeBaseline, climatology, persistence_predict

    ridge = RidgeBaseline().fit(train.x, train.band, train.y, alpha="auto", target_month=train.target_month)
    return {
        "climatology": climatology(history).predict(test.band, test.target_month),
        "persistence": persistence_predict(history, test.band, test.target_month),
        "ridge": ridge.predict(test.x, test.band),
    }


@asset(
    group_name=MODELS,
    deps=[TRAINED_MODELS, AssetKey("training_windows"), AssetKey(HISTORY_MART.name)],
    pool=WAREHOUSE_POOL,
    kinds={"duckdb", "parquet"},
    description="RMSE, MAE and R2 on the 2019-2023 targets, overall, per band, per layer and per band x layer, "
    "for every model and baseline, beside the paper's Table 2.",
)
def model_evaluation(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml.figures import observed_vs_predicted_figure
    from ml.metrics import evaluation_table
    from ml.training import load_trained, predict

    train, test, _ = _load_windows(lake)
    history = warehouse.read_table(HISTORY_MART)
    predictions = {a: predict(load_trained(folder), test) for a, folder in trained_model_folders(context).items()}
    baselines = _baseline_predictions(history, train, test)
    table = pl.concat(
        [evaluation_table(test.y, pred, test.band, name) for name, pred in {**predictions, **baselines}.items()]
    )
    path = lake.layout.model_evaluation()
    year = catalog.TEST_LAST_TARGET_MONTH.year
    with lake.batch() as batch:
        batch.parquet(path, table)
        figure = batch.file(
            lake.layout.figure("observed_vs_predicted"),
            lambda tmp: observed_vs_predicted_figure(test.target_month, test.band, test.y, predictions, year, tmp),
        )
    warehouse.refresh_parquet_view(MODEL_EVALUATION_VIEW, path)
    overall = (
        table.filter(pl.col("scope") == "overall")
        .select("model", "rmse", "mae", "r2")
        .join(PAPER_TABLE_2, on="model", how="left")
        .sort("rmse")
    )
    best_baseline = overall.filter(pl.col("model").is_in(list(baselines))).sort("rmse").row(0, named=True)
    beaten = [
        row["model"]
        for row in overall.iter_rows(named=True)
        if row["model"] in predictions and row["rmse"] < best_baseline["rmse"]
    ]
    return MaterializeResult(
        metadata={
            "evaluation": MetadataValue.md(markdown_table(overall, float_precision=3)),
            "best_baseline": f"{best_baseline['model']} (RMSE {best_baseline['rmse']:.3f} degC)",
            "models_beating_best_baseline": MetadataValue.json(beaten),
            "rows": table.height,
            "figure": png_markdown(figure, f"observed vs predicted, {year}"),
            "path": MetadataValue.path(str(path)),
        }
    )


@asset(
    group_name=MODELS,
    deps=[TRAINED_MODELS, AssetKey("scenario_windows")],
    kinds={"parquet", "netcdf"},
    description="Monthly soil temperature 2024-01..2100-12 per RCP, band, layer and model, with the ensemble mean "
    "and spread across models; Parquet and CF-1.8 netCDF.",
)
def soil_temperature_projections(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    from ml.figures import projection_figure
    from ml.projections import late_century_difference, projection_frame, to_cf_netcdf, with_ensemble
    from ml.training import load_trained, predict
    from ml.windows import WindowSet

    models = {a: load_trained(folder) for a, folder in trained_model_folders(context).items()}
    frames = []
    for scenario in catalog.RCP_EXPERIMENTS:
        windows = WindowSet.load(lake.layout.scenario_windows(scenario))
        for name, trained in models.items():
            frames.append(
                projection_frame(scenario, name, windows.band, windows.target_month, predict(trained, windows))
            )
    projections = with_ensemble(pl.concat(frames))
    parquet, netcdf = lake.layout.projections("parquet"), lake.layout.projections("nc")
    with lake.batch() as batch:
        batch.parquet(parquet, projections)
        batch.file(netcdf, lambda tmp: to_cf_netcdf(projections, tmp))
        figures = {
            s: batch.file(
                lake.layout.figure(f"projections_{s}"), lambda tmp, s=s: projection_figure(projections, s, tmp)
            )
            for s in catalog.RCP_EXPERIMENTS
        }
    difference = late_century_difference(projections).filter(pl.col("model") == "ensemble_mean")
    return MaterializeResult(
        metadata={
            "rows": projections.height,
            "models": MetadataValue.json(sorted(models)),
            "rcp85_minus_rcp26_t_soil_0_2081_2100": MetadataValue.md(
                markdown_table(difference.select("band", "warmer_mean", "cooler_mean", "difference"), float_precision=2)
            ),
            "figure": png_markdown(figures["rcp85"], "RCP8.5 projections"),
            "netcdf": MetadataValue.path(str(netcdf)),
            "path": MetadataValue.path(str(parquet)),
        }
    )


@asset(
    group_name=MODELS,
    deps=[AssetKey("soil_temperature_projections"), AssetKey(HISTORY_MART.name)],
    pool=WAREHOUSE_POOL,
    kinds={"parquet"},
    description="Active-layer thickness per band, year and scenario from the annual maximum temperature profile "
    "(0 degC crossing between layer mid-depths), flagged where the whole column thaws or none of it does.",
)
def active_layer_thickness(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml.active_layer import active_layer_thickness as alt_from_profiles
    from ml.figures import active_layer_figure

    projections = pl.read_parquet(lake.layout.projections("parquet"))
    projected = alt_from_profiles(projections, group_columns=("scenario", "model", "band"))
    history = warehouse.read_table(HISTORY_MART)
    observed = (
        alt_from_profiles(history)
        .with_columns(pl.lit("reanalysis").alias("scenario"), pl.lit("era5_land").alias("model"))
        .select(projected.columns)
    )
    table = pl.concat([observed, projected], how="vertical_relaxed")
    path = lake.layout.active_layer()
    with lake.batch() as batch:
        batch.parquet(path, table)
        figure = batch.file(
            lake.layout.figure("active_layer_thickness"), lambda tmp: active_layer_figure(projected, tmp)
        )
    flags = table.group_by("scenario", "flag").len().sort("scenario", "flag")
    return MaterializeResult(
        metadata={
            "rows": table.height,
            "flags": MetadataValue.md(markdown_table(flags)),
            "figure": png_markdown(figure, "active-layer thickness by scenario"),
            "path": MetadataValue.path(str(path)),
        }
    )


@asset(
    group_name=MODELS,
    deps=[TRAINED_MODELS, AssetKey("training_windows")],
    kinds={"shap"},
    description="Mean |SHAP| per feature per model (GradientExplainer, 100 background and 10 explained test "
    "windows), aggregated over time steps, bands and layers.",
)
def feature_importance(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    from ml.explain import feature_importance as shap_importance
    from ml.figures import feature_importance_figure
    from ml.training import load_trained

    _, test, _ = _load_windows(lake)
    tables, figures = [], {}
    path = lake.layout.feature_importance()
    with lake.batch() as batch:
        for architecture, folder in trained_model_folders(context).items():
            importance = shap_importance(load_trained(folder), background=test, explained=test)
            tables.append(importance.with_columns(pl.lit(architecture).alias("model")))
            figures[architecture] = batch.file(
                lake.layout.figure(f"feature_importance_{architecture}"),
                lambda tmp, importance=importance, name=architecture: feature_importance_figure(importance, name, tmp),
            )
        table = pl.concat(tables)
        batch.parquet(path, table)
    top = table.sort("mean_abs_shap", descending=True).group_by("model", maintain_order=True).head(5)
    first = next(iter(figures))
    return MaterializeResult(
        metadata={
            "top_5_per_model": MetadataValue.md(markdown_table(top, float_precision=4)),
            "figure": png_markdown(figures[first], f"SHAP top 15, {first}"),
            "path": MetadataValue.path(str(path)),
        }
    )
