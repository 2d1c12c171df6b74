"""Models layer: the conduction core, the five architectures (several seeds each) and their
hyperparameter search, evaluation against every baseline on held-out years and on held-out whole
units, projections with the ensemble's range, active-layer thickness and SHAP.

Thin wrappers over `ml/`: models are `.keras` files the assets write themselves (never pickled
through an IO manager); tensorflow/keras, optuna and shap are imported inside asset bodies.
Everything is per spatial unit of the history (`marts.dim_spatial_units`: bands on the demo,
basins on the real tables), with the inputs both the history and the scenarios have
(`ml.model_inputs`).
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

from dagster_project.config import HyperparameterSearchConfig, SpatialHoldoutConfig, TrainingRunConfig, to_source
from dagster_project.lake import HISTORY_MART, SCENARIO_MART, UNITS_DIMENSION
from dagster_project.metadata import markdown_table, png_markdown
from dagster_project.partitions import architectures
from dagster_project.resources import WAREHOUSE_POOL, LakeResource, WarehouseResource
from ml.training_config import TrainingConfig
from sources import catalog

MODELS = "models"
TRAINED_MODELS = AssetKey("trained_models")
THERMAL_CORE = AssetKey("thermal_core")
BEAT_BASELINE_CHECK = "models_beat_best_baseline"
MARTS = [AssetKey(HISTORY_MART.name), AssetKey(SCENARIO_MART.name), AssetKey(UNITS_DIMENSION.name)]
# Units this many or fewer get a parameter table row each in the metadata; more get quantiles.
UNITS_LISTED = 12


def _marts(warehouse: WarehouseResource):
    """The history mart with its derived drivers, its units, the model inputs and the scenario mart."""
    from ml.model_inputs import modelling_marts

    return modelling_marts(*(warehouse.read_table(table) for table in (HISTORY_MART, SCENARIO_MART, UNITS_DIMENSION)))


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
    deps=MARTS,
    pool=WAREHOUSE_POOL,
    kinds={"numpy", "parquet"},
    description="The calibrated 1-D heat-conduction core (ml.thermal_core): air temperature with a thawing "
    "n-factor through a degree-day snowpack into a soil column with latent heat (its terms a CoreStructure), ten "
    "parameters per spatial unit fitted by least squares to the 2001-2018 layer temperatures; its run over the "
    "whole history. It carries the response to the forcing that projections need. The ensemble's other core "
    "structures (a 30 m thick column, power-law freezing) are fitted alike for the structural members.",
)
def thermal_core(context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource) -> MaterializeResult:
    from ml.metrics import rmse
    from ml.scenario_members import (
        DEFAULT_STRUCTURE_NAME,
        ENSEMBLE_STRUCTURES,
        core_drivers,
        fit_history_core,
        history_run_frame,
    )
    from ml.unit_arrays import days_in_month, history_grid

    history_frame, units, inputs, _ = _marts(warehouse)
    grid = history_grid(history_frame, units, (*core_drivers(inputs), *catalog.WATER_CONTENT, *catalog.TARGETS))
    train = grid.months <= catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH)
    started = time.perf_counter()
    days = days_in_month(grid.months, "standard")
    core, history = fit_history_core(grid, train, days, inputs)
    seconds = time.perf_counter() - started
    # the ensemble's other structures (ml.scenario_members.ENSEMBLE_STRUCTURES), fitted alike
    variants, variant_rows = {}, []
    for name, structure in ENSEMBLE_STRUCTURES.items():
        if name == DEFAULT_STRUCTURE_NAME:
            variant_rows.append({"structure": name, "train_rmse": core.train_rmse, "fit_seconds": seconds})
            continue
        variant_started = time.perf_counter()
        variants[name] = fit_history_core(grid, train, days, inputs, structure)[0]
        variant_rows.append(
            {
                "structure": name,
                "train_rmse": variants[name].train_rmse,
                "fit_seconds": time.perf_counter() - variant_started,
            }
        )
    files = lake.layout.thermal_core()
    record = {
        **core.to_dict(),
        "structures": {name: variant.to_dict() for name, variant in variants.items()},
        "units": units.ids.tolist(),
        "surface": inputs.core_surface,
        "train_last_month": str(catalog.TRAIN_LAST_TARGET_MONTH),
        "fit_seconds": seconds,
    }
    with lake.batch() as batch:
        batch.file(files.parameters, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
        batch.parquet(files.history, history_run_frame(grid.months, history, units))
    observed = grid.select(catalog.TARGETS)
    test = grid.rows(catalog.month64(catalog.TEST_FIRST_TARGET_MONTH), catalog.month64(catalog.TEST_LAST_TARGET_MONTH))
    parameters = pl.DataFrame({"unit": units.ids, **core.params})
    if units.count > UNITS_LISTED:  # 96 basins: the spread of each parameter, not 96 rows
        parameters = (
            parameters.drop("unit").describe().filter(pl.col("statistic").is_in(["min", "25%", "50%", "75%", "max"]))
        )
    return MaterializeResult(
        metadata={
            "units": f"{units.count} {units.kind}s",
            "structure": MetadataValue.json(core.structure.to_dict()),
            # the ensemble's structures: the default (above) and the variants members take in turn
            "ensemble_structures": MetadataValue.md(markdown_table(pl.DataFrame(variant_rows), float_precision=3)),
            "skin_temperature": "in the sources" if inputs.core_surface == "t_surface" else "absent from the sources",
            "parameters_at_bounds": MetadataValue.json(
                {name: int(np.sum(near)) for name, near in core.at_bounds.items() if np.any(near)}
            ),
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
    kinds={"optuna"},
    description="Hyperparameter search of one architecture's residual networks within a budget (optuna TPE), on "
    "the training years only: each trial trains a network and is scored on the latest training months; trial 0 "
    "is the default. Off by default (config `trials: 0` records 'not searched' and costs nothing); "
    "trained_models uses the best hyperparameters where a search ran.",
)
def hyperparameter_search(
    context: AssetExecutionContext, config: HyperparameterSearchConfig, lake: LakeResource
) -> MaterializeResult:
    from ml.search import search

    architecture = context.partition_key
    settings = TrainingConfig(epochs=config.epochs, seed=config.seed)
    if config.trials:
        train, _, scaler = _residual_windows(lake)
        result = search(architecture, train, scaler, settings, config.trials, config.timeout_seconds, config.seed)
    else:
        result = search(architecture, None, None, settings, 0, config.timeout_seconds)
    trials = result.trials_frame()
    with lake.batch() as batch:
        batch.file(
            lake.layout.hyperparameter_search(architecture),
            lambda tmp: Path(tmp).write_text(json.dumps(result.to_dict(), indent=2)),
        )
        batch.parquet(lake.layout.search_trials(architecture), trials)
    return MaterializeResult(
        metadata={
            "searched": result.searched,
            "reason": result.reason,
            "budget": MetadataValue.json(result.budget),
            "trials": MetadataValue.md(markdown_table(trials.drop("model", "searched", "reason"), float_precision=5))
            if result.searched
            else "none",
            "default": MetadataValue.json(result.default),
            "best": MetadataValue.json(result.best),
            "validation_loss_default": result.default_validation_loss,
            "validation_loss_best": result.best_validation_loss,
            "path": MetadataValue.path(str(lake.layout.hyperparameter_search(architecture))),
            # the view evaluation.hyperparameter_search is (re)defined by model_evaluation
        }
    )


def _searched(lake: LakeResource, architecture: str):
    """The architecture's search record (``ml.search.SearchResult``), or None where none landed."""
    from ml.search import SearchResult

    path = lake.layout.hyperparameter_search(architecture)
    return SearchResult.from_dict(json.loads(path.read_text())) if path.is_file() else None


@asset(
    group_name=MODELS,
    partitions_def=architectures,
    deps=[AssetKey("training_windows"), AssetKey("hyperparameter_search")],
    kinds={"keras"},
    description="One architecture's networks, one per seed (config `seeds`, default 5), trained in one step on "
    "the 2001-2018 windows of every spatial unit (a unit embedding as large as the units): bounded residuals on "
    "the conduction core by default (config `design: paper` trains the paper's networks), with the searched "
    "hyperparameters where hyperparameter_search ran (config `use_search`); early stopping on the latest "
    "training months; saved as .keras with what each needs to predict.",
)
def trained_models(context: AssetExecutionContext, config: TrainingRunConfig, lake: LakeResource) -> MaterializeResult:
    from ml.ensemble import save_architecture, train_architecture

    settings = to_source(config, TrainingConfig)
    architecture = context.partition_key
    found = _searched(lake, architecture) if settings.design == "residual" and settings.use_search else None
    hyperparameters = None
    if found is not None and found.searched:
        hyperparameters = found.best_hyperparameters
        settings = dataclasses.replace(settings, learning_rate=found.best_learning_rate)
    if settings.design == "residual":
        train, _, scaler = _residual_windows(lake)
        trained = train_architecture(
            architecture, settings, residual_train=train, residual_scaler=scaler, hyperparameters=hyperparameters
        )
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
            "hyperparameters": "searched: " + json.dumps({**hyperparameters, "learning_rate": settings.learning_rate})
            if hyperparameters
            else "defaults (no search ran, or use_search is off)",
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
    deps=[TRAINED_MODELS, AssetKey("training_windows"), THERMAL_CORE, *MARTS],
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
    description="Test scores (2019-01 to the history's last month, 2023-12 at most) of every network (each seed, "
    "and the seed mean with its spread), the ensemble and every baseline (climatology, 12-month and damped "
    "persistence, the status-quo ridge, the distributed-lag ridge, the core alone): RMSE, MAE, R2 and skill against "
    "climatology, overall, per latitude band of the units (and outside the bands), per layer, per band x layer and "
    "per unit, with year-block bootstrap intervals; the issue's targets per layer beside the paper's Table 2; the "
    "hyperparameters each architecture trained with and its search.",
)
def model_evaluation(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml import evaluation
    from ml.ensemble import load_architecture
    from ml.figures import observed_vs_predicted_figure

    history, units, inputs, _ = _marts(warehouse)
    paper_train, paper_test, _ = _paper_windows(lake)
    _, residual_test, _ = _residual_windows(lake)
    trained = {a: load_architecture(folder) for a, folder in trained_model_folders(context).items()}
    test = evaluation.predict_test_years(
        history,
        units,
        inputs.channels,
        paper_train,
        paper_test,
        residual_test,
        lake.layout.thermal_core().history,
        trained,
    )
    searches = {a: _searched(lake, a) for a in trained}
    table = evaluation.score(test).join(_hyperparameters(trained, searches), on="model", how="left")
    path = lake.layout.model_evaluation()
    years = test.target_month.astype("datetime64[Y]").astype(np.int64) + 1970
    shown_year = int(max(y for y in np.unique(years) if (years == y).sum() >= (years == years.min()).sum()))
    with lake.batch() as batch:
        batch.parquet(path, table)
        figure = batch.file(
            lake.layout.figure("observed_vs_predicted"),
            lambda tmp: observed_vs_predicted_figure(
                test.target_month, test.band, test.observed, test.shown(), shown_year, tmp, units.area_km2[test.unit]
            ),
        )
    views = warehouse.refresh_output_views(lake.layout, "model_evaluation", context.log)
    overall = evaluation.overall_table(table)
    verdict = evaluation.baseline_verdict(overall)
    span = f"{test.target_month.min()}..{test.target_month.max()}"
    return MaterializeResult(
        metadata={
            "test_months": f"{span} (the reanalysis publishes complete months only)",
            "units": f"{units.count} {units.kind}s",
            "model_inputs": MetadataValue.json(inputs.describe()),
            # seed means for networks (rmse_sd: across seeds); 5-95% intervals over resampled test years
            "evaluation": MetadataValue.md(markdown_table(overall, float_precision=3)),
            "targets": MetadataValue.json(evaluation.layer_targets(table)),
            "per_layer": MetadataValue.md(markdown_table(evaluation.layer_table(table), float_precision=3)),
            "paper_table_2": MetadataValue.json(evaluation.paper_comparison(overall, units, test.target_month, inputs)),
            "skill_per_band": MetadataValue.md(
                markdown_table(evaluation.skill_pivot(table, "band"), float_precision=2)
            ),
            "skill_per_layer": MetadataValue.md(
                markdown_table(evaluation.skill_pivot(table, "layer"), float_precision=2)
            ),
            "hyperparameter_search": MetadataValue.md(markdown_table(_search_summary(searches), float_precision=5)),
            "designs": MetadataValue.json({name: design for name, (design, _) in test.networks.items()}),
            "baselines": MetadataValue.json(evaluation.BASELINES),
            "rows": table.height,
            "figure": png_markdown(figure, f"observed vs predicted, {shown_year}"),
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


@asset(
    group_name=MODELS,
    deps=[TRAINED_MODELS, THERMAL_CORE, *MARTS],
    # no warehouse slot: it reads the marts once and trains for long; its views wait their turn
    kinds={"keras", "parquet"},
    description="Spatial generalisation beside the hold-out of years: a deterministic share of the spatial units' "
    "series groups (identical series never on both sides) is held out; every architecture's networks (as "
    "trained_models trains them, unit features instead of the unit embedding), the core with the training units' "
    "pooled parameters and a pooled lagged ridge are trained on the other units (2001-2018) and scored on the "
    "held-out units' test months against those units' own climatology (a strong reference: it reads their "
    "observations). Skipped on the band demo (six bands: nothing to generalise to).",
)
def spatial_holdout_evaluation(
    context: AssetExecutionContext, config: SpatialHoldoutConfig, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml import evaluation
    from ml.ensemble import load_architecture
    from ml.metrics import SKILL_SCHEMA, TARGET_HELD_OUT_UNITS
    from ml.scenario_members import core_drivers
    from ml.spatial_holdout import BASELINES, SPLIT_SCHEMA, UNIT_FEATURES, holdout_evaluation
    from ml.thermal_core import ThermalCore
    from ml.unit_arrays import history_grid

    history, units, inputs, _ = _marts(warehouse)
    if units.are_bands:
        reason = (
            f"the units are the {units.count} latitude bands: holding out one of six bands leaves a network "
            "nothing like it to learn from, so the spatial hold-out runs on units such as basins only"
        )
        context.log.info(f"spatial hold-out skipped: {reason}")
        # empty tables, so the view exists and a query of it answers (no rows) on every lake
        files = lake.layout.spatial_holdout()
        with lake.batch() as batch:
            batch.parquet(files.scores, pl.DataFrame(schema=SKILL_SCHEMA))
            batch.parquet(files.split, pl.DataFrame(schema=SPLIT_SCHEMA))
        views = warehouse.refresh_output_views(lake.layout, "spatial_holdout_evaluation", context.log)
        return MaterializeResult(metadata={"status": "skipped", "reason": reason, **views})
    names = tuple(dict.fromkeys((*inputs.channels, *core_drivers(inputs), *catalog.TARGETS)))
    grid = history_grid(history, units, names).until(catalog.month64(catalog.TEST_LAST_TARGET_MONTH))
    core = ThermalCore.from_dict(json.loads(lake.layout.thermal_core().parameters.read_text()))
    architectures = {}
    for architecture, folder in trained_model_folders(context).items():
        member = load_architecture(folder, members=1).members[0]
        residual = member.config.design == "residual"
        architectures[architecture] = (member.config, member.hyperparameters if residual else None)
    result = holdout_evaluation(grid, units, inputs.channels, core, inputs, architectures, config.share, config.seed)
    files = lake.layout.spatial_holdout()
    with lake.batch() as batch:
        batch.parquet(files.scores, result.table)
        batch.parquet(files.split, result.split)
    views = warehouse.refresh_output_views(lake.layout, "spatial_holdout_evaluation", context.log)
    overall = evaluation.overall_table(result.table)
    held = result.split.filter(pl.col("held_out"))
    return MaterializeResult(
        metadata={
            "status": "evaluated",
            "held_out": f"{held.height} of {units.count} {units.kind}s ({held['series_group'].n_unique()} of "
            f"{result.split['series_group'].n_unique()} series groups; share {config.share:g}, seed {config.seed})",
            "held_out_units": MetadataValue.json(held["unit"].to_list()),
            "reference": "the held-out units' own monthly climatology 2001-2018: it reads their observed soil "
            "temperature, which no model here may, so it is a strong reference",
            "unit_features": MetadataValue.json(list(UNIT_FEATURES)),
            "evaluation": MetadataValue.md(markdown_table(overall, float_precision=3)),
            "per_layer": MetadataValue.md(markdown_table(evaluation.layer_table(result.table), float_precision=3)),
            "targets": MetadataValue.json(evaluation.layer_targets(result.table, TARGET_HELD_OUT_UNITS, None)),
            "skill_per_band": MetadataValue.md(
                markdown_table(evaluation.skill_pivot(result.table, "band"), float_precision=2)
            ),
            "baselines": MetadataValue.json(BASELINES),
            "path": MetadataValue.path(str(files.scores)),
            **views,
        }
    )


def _hyperparameters(trained: dict, searches: dict) -> pl.DataFrame:
    """Per architecture: the hyperparameters and learning rate its networks trained with (JSON),
    and whether they came from a search."""
    rows = []
    for architecture, networks in trained.items():
        member = networks.members[0]
        used = {**member.hyperparameters, "learning_rate": member.config.learning_rate}
        found = searches.get(architecture)
        searched = bool(found and found.searched and member.config.use_search and networks.design == "residual")
        rows.append({"model": architecture, "hyperparameters": json.dumps(used, sort_keys=True), "searched": searched})
    return pl.DataFrame(rows, schema={"model": pl.Utf8, "hyperparameters": pl.Utf8, "searched": pl.Boolean})


def _search_summary(searches: dict) -> pl.DataFrame:
    """One row per architecture: searched or not, trials, validation loss of the default and the best."""
    rows = [
        {
            "model": architecture,
            "searched": bool(found and found.searched),
            "trials": len(found.trials) if found else 0,
            "validation_loss_default": found.default_validation_loss if found else None,
            "validation_loss_best": found.best_validation_loss if found else None,
            "best": json.dumps(found.best, sort_keys=True) if found and found.searched else None,
            "note": (found.reason if found else "no hyperparameter_search materialization"),
        }
        for architecture, found in searches.items()
    ]
    schema = {
        "model": pl.Utf8,
        "searched": pl.Boolean,
        "trials": pl.Int64,
        "validation_loss_default": pl.Float64,
        "validation_loss_best": pl.Float64,
        "best": pl.Utf8,
        "note": pl.Utf8,
    }
    return pl.DataFrame(rows, schema=schema)


# --- projections --------------------------------------------------------------------------


@asset(
    group_name=MODELS,
    deps=[TRAINED_MODELS, AssetKey("scenario_windows"), THERMAL_CORE, *MARTS],
    pool=WAREHOUSE_POOL,
    kinds={"parquet", "netcdf"},
    description="Monthly soil temperature per RCP, spatial unit (with its band) and layer for every network member "
    "(each on its own bias-correction draw), the core alone and the distributed-lag ridge, with the ensemble mean "
    "and its 5-95% range: the hindcast on each scenario's own forcing from 2001 (or the climate model's first "
    "months), then the projection 2024-2100. Parquet and CF-1.8 netCDF (a `unit` dimension, CF discrete sampling "
    "geometry, for units that are not bands); one figure per RCP with the history, per band (units: area-weighted).",
)
def soil_temperature_projections(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml.distributed_lag import fit_on_history
    from ml.ensemble import load_architecture
    from ml.figures import projection_figure
    from ml.projections import late_century_difference, scenario_projections, to_cf_netcdf, with_ensemble
    from ml.scenario_members import ScenarioMembers
    from ml.unit_arrays import history_grid
    from ml.windows import WindowSet

    history_frame, units, inputs, _ = _marts(warehouse)
    grid = history_grid(history_frame, units, (*inputs.channels, *catalog.TARGETS))
    ridge = fit_on_history(grid, inputs.channels)
    trained = {a: load_architecture(folder) for a, folder in trained_model_folders(context).items()}
    paper_design = any(networks.design == "paper" for networks in trained.values())
    frames = []
    for scenario in catalog.RCP_EXPERIMENTS:
        members = ScenarioMembers.load(lake.layout.scenario_members(scenario))
        paper_windows = WindowSet.load(lake.layout.scenario_windows(scenario)) if paper_design else None
        frames.append(scenario_projections(scenario, members, trained, ridge, units, paper_windows))
    projections = with_ensemble(pl.concat(frames))
    parquet, netcdf = lake.layout.projections("parquet"), lake.layout.projections("nc")
    observed = history_frame.select("unit", "band", "month", *catalog.TARGETS)
    with lake.batch() as batch:
        batch.parquet(parquet, projections)
        batch.file(netcdf, lambda tmp: to_cf_netcdf(projections, tmp, units))
        figures = {
            s: batch.file(
                lake.layout.figure(f"projections_{s}"),
                lambda tmp, s=s: projection_figure(projections, s, tmp, history=observed, units=units),
            )
            for s in catalog.RCP_EXPERIMENTS
        }
    views = warehouse.refresh_output_views(lake.layout, "soil_temperature_projections", context.log)
    difference = late_century_difference(projections.filter(pl.col("model") == "ensemble_mean"))
    difference = difference.select("unit", "band", "warmer_mean", "cooler_mean", "difference")
    if units.count > UNITS_LISTED:  # per band: the mean over its units (null: outside every band)
        difference = (
            difference.group_by("band")
            .agg(pl.len().alias("units"), pl.col("warmer_mean", "cooler_mean", "difference").mean())
            .sort("band", nulls_last=True)
        )
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
            "rcp85_minus_rcp26_t_soil_0_2081_2100": MetadataValue.md(markdown_table(difference, float_precision=2)),
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
    deps=[AssetKey("soil_temperature_projections"), AssetKey(HISTORY_MART.name), AssetKey(UNITS_DIMENSION.name)],
    pool=WAREHOUSE_POOL,
    kinds={"parquet"},
    description="Active-layer thickness per spatial unit and year from a conduction-profile fit to the four layers "
    "(damping-depth solution, 1 cm grid to 2.89 m) for the reanalysis, every projection member and the "
    "ensemble mean; flagged where the ground thaws below 2.89 m (a talik or a deeper ALT: a lower bound), "
    "where nothing thaws, or the year is incomplete.",
)
def active_layer_thickness(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml.active_layer import censored_share, reanalysis_and_ensemble, thickness_table
    from ml.figures import active_layer_figure
    from ml.unit_arrays import Units

    units = Units.of(warehouse.read_table(UNITS_DIMENSION), str(UNITS_DIMENSION))
    projections = pl.read_parquet(lake.layout.projections("parquet"))
    table = thickness_table(projections, warehouse.read_table(HISTORY_MART))
    path = lake.layout.active_layer()
    with lake.batch() as batch:
        batch.parquet(path, table)
        figure = batch.file(
            lake.layout.figure("active_layer_thickness"),
            lambda tmp: active_layer_figure(reanalysis_and_ensemble(table), tmp, units=units),
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
    "(GradientExplainer, 100 background and 10 explained test windows of any unit), summed over a window's months, "
    "averaged over windows and layers, in K (each layer's output scaled to kelvin); pooled over the units "
    "(unit and band null).",
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
            tables.append(
                importance.with_columns(
                    pl.lit(architecture).alias("model"),
                    # pooled over the explained windows of every unit
                    pl.lit(None, dtype=pl.Int64).alias("unit"),
                    pl.lit(None, dtype=pl.Int64).alias("band"),
                    pl.lit("K").alias("physical_unit"),
                )
            )
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
