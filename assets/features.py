"""Features layer: bias-corrected scenarios, scenario soil water, and the 24-month windows.

Thin wrappers: each asset reads the marts or the lake, calls a plain function in `ml/`, writes
atomically to the lake and records metadata (shapes, features, statistics, diagnostics, a
figure). Heavy imports (xsdba, matplotlib) happen inside the ml functions.

Windows come in two designs (``ml.training_config``): the residual design's (anomaly channels
and the conduction core, window t-23..t; the default) and the paper's (normalised inputs with the
calendar year and the scenario signal z, window t-24..t-1), so either can be trained. Everything
is per spatial unit of the history (``marts.dim_spatial_units``: bands on the demo, basins on the
real tables); a unit's scenario is its nearest band's, bias-corrected onto the unit's own
reanalysis. The inputs are the drivers both the history and the scenarios have, plus the derived
ones (``ml.model_inputs``).
"""

import json
from pathlib import Path

import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from dagster_project.config import BiasCorrectionConfig, ScenarioWindowsConfig
from dagster_project.lake import (
    CMIP5,
    HISTORY_MART,
    RAW_SCHEMA,
    SCENARIO_MART,
    SOIL_WATER_SHARES,
    UNITS_DIMENSION,
    Table,
)
from dagster_project.metadata import markdown_table, png_markdown
from dagster_project.partitions import rcp_scenarios
from dagster_project.resources import WAREHOUSE_POOL, LakeResource, WarehouseResource
from sources import catalog

FEATURES = "features"


def _marts(warehouse: WarehouseResource):
    """The history mart with its derived drivers, its units, the model inputs and the scenario mart."""
    from ml.model_inputs import modelling_marts

    return modelling_marts(*(warehouse.read_table(table) for table in (HISTORY_MART, SCENARIO_MART, UNITS_DIMENSION)))


def raw_scenario_runs(raw_marts: pl.DataFrame, units, inputs) -> dict:
    """Every run of the climate model in the scenario mart (``raw_marts``), uncorrected, as a unit
    grid of the model inputs' channels (derived ones included), by scenario name."""
    from ml.model_inputs import with_derived
    from ml.unit_arrays import unit_grid, unit_scenarios

    return {
        s: unit_grid(
            with_derived(unit_scenarios(raw_marts.filter(pl.col("scenario") == s), units), inputs),
            inputs.channels,
            f"scenario mart {s}",
            units,
        )
        for s in sorted(set(raw_marts["scenario"].to_list()))
    }


def _figure_unit(units) -> int:
    """The unit a bias-correction figure shows: band 3 on bands, else the largest unit."""
    return 3 if units.are_bands else int(units.frame.sort("area_km2", descending=True)["unit"][0])


@asset(
    group_name=FEATURES,
    partitions_def=rcp_scenarios,
    backfill_policy=BackfillPolicy.single_run(),
    # every scenario is mapped with the whole history: all monthly partitions of the mart
    deps=[
        AssetDep(HISTORY_MART.name, partition_mapping=AllPartitionMapping()),
        AssetKey(SCENARIO_MART.name),
        AssetKey(SOIL_WATER_SHARES.name),
        AssetKey(UNITS_DIMENSION.name),
    ],
    pool=WAREHOUSE_POOL,
    kinds={"parquet", "xsdba"},
    description="Each RCP's CMIP5 drivers quantile-mapped onto ERA5-Land per spatial unit (a unit takes its "
    "nearest band's series), variable and calendar month (2001-2023 overlap), with column soil water split over "
    "the four layers: each layer's reanalysis climatology plus its lagged response to the corrected column's "
    "anomaly (or Dirichlet shares, as the paper); derived drivers derived again from the corrected ones.",
)
def cmip5_bias_corrected(
    context: AssetExecutionContext, config: BiasCorrectionConfig, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml.bias_correction import correct_scenario, diagnostics_summary
    from ml.figures import bias_correction_figure
    from ml.soil_water import fit_layer_shares, projected_water_tails
    from ml.unit_arrays import unit_scenarios

    history, units, inputs, scenarios = _marts(warehouse)
    shares = None
    if config.soil_water_split == "dirichlet":
        shares = fit_layer_shares(warehouse.read_table(SOIL_WATER_SHARES))
    shown = _figure_unit(units)
    variables = tuple(v for v in ("t_air", "q_latent", "p_total", "w_1") if v in inputs.channels)
    corrected, figures = {}, {}
    # every scenario of the run lands together, or none does
    with lake.batch() as batch:
        for scenario in context.partition_keys:
            raw = unit_scenarios(scenarios.filter(pl.col("scenario") == scenario), units)
            corrected[scenario] = correct_scenario(
                history,
                raw,
                config.method,
                config.n_quantiles,
                config.soil_water_split,
                shares,
                config.soil_water_seed,
                inputs,
            )
            for message in corrected[scenario].messages:
                context.log.warning(message)
            frame = corrected[scenario].frame
            batch.parquet(lake.layout.bias_corrected(scenario), frame)
            figures[scenario] = batch.file(
                lake.layout.figure(f"bias_correction_{scenario}"),
                lambda tmp, raw=raw, frame=frame: bias_correction_figure(
                    history, raw, frame, shown, variables, path=tmp
                ),
            )
    # mean absolute difference between model and reanalysis quantiles over the overlap,
    # before and after correction, averaged over units and calendar months
    summary = diagnostics_summary(
        pl.concat(c.correction.diagnostics.with_columns(pl.lit(s).alias("scenario")) for s, c in corrected.items())
    )
    # each partition (RCP) its own page: its figure, overlap, diagnostics and tails
    for scenario, result in corrected.items():
        tails = projected_water_tails(history, result.frame, f"{scenario} soil water")
        correction = result.correction
        context.add_asset_metadata(
            {
                "overlap": f"{correction.overlap_first:%Y-%m}..{correction.overlap_last:%Y-%m} "
                f"({correction.overlap_months} months)",
                "quantile_mapping_diagnostics": MetadataValue.md(
                    markdown_table(summary.filter(pl.col("scenario") == scenario).drop("scenario"))
                ),
                # share of 2024-2100 months outside the reanalysis' 2001-2023 range of the unit and
                # layer, and month-to-month variability relative to the reanalysis'
                "soil_water_tails": MetadataValue.md(
                    markdown_table(
                        pl.DataFrame([{"layer": layer, **values} for layer, values in tails.items()]),
                        float_precision=3,
                    )
                ),
                "figure": png_markdown(figures[scenario], f"reanalysis, raw and corrected {scenario}, unit {shown}"),
                "path": MetadataValue.path(str(lake.layout.bias_corrected(scenario))),
            },
            partition_key=scenario,
        )
    return MaterializeResult(
        metadata={
            "method": config.method,
            "soil_water_split": config.soil_water_split,
            "units": f"{units.count} {units.kind}s (a unit's scenario is its nearest band's)",
            "corrected_variables": MetadataValue.json(list(inputs.measured)),
            "derived_again": MetadataValue.json(inputs.derived),
            "scenarios_in_this_run": ", ".join(context.partition_keys),
            "warnings": MetadataValue.json([note for c in corrected.values() for note in c.correction.warnings]),
        }
    )


def _inputs_columns(inputs) -> dict[str, str]:
    """The model inputs as columns of `features.windows`: drivers used, derived (how), absent."""
    return {
        "drivers": ", ".join(inputs.drivers),
        "derived": "; ".join(f"{name}: {how}" for name, how in inputs.derived.items()) or None,
        "absent": ", ".join(inputs.absent) or None,
    }


def _stats_table(stats) -> str:
    frame = pl.DataFrame({"feature": list(stats.feature_names), "mean": stats.mean, "std": stats.std})
    return markdown_table(frame, float_precision=4)


@asset(
    group_name=FEATURES,
    deps=[
        AssetKey(HISTORY_MART.name),
        AssetKey("thermal_core"),
        AssetKey(SCENARIO_MART.name),
        AssetKey(UNITS_DIMENSION.name),
    ],
    pool=WAREHOUSE_POOL,
    kinds={"numpy"},
    description="Training (targets up to 2018-12) and test (2019-01 to the history's last month, 2023-12 at most) "
    "windows of every spatial unit in both designs: the residual design's anomaly channels with the conduction "
    "core, window t-23..t, target = (soil temperature - core) / sigma_res, every channel's training range kept for "
    "clipping; and the paper's normalised windows t-24..t-1 with year (and z where r_thermal exists), absolute "
    "targets. The channels are the drivers the history and the scenarios both have, plus the derived ones. "
    "Statistics from training months only, stored beside them.",
)
def training_windows(
    context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml.residual import training_and_test_windows
    from ml.scenario_members import read_history_run
    from ml.unit_arrays import history_grid
    from ml.windows import build_training_windows, target_span, windows_summary

    history, units, inputs, _ = _marts(warehouse)
    train, test, stats = build_training_windows(history, units, inputs)
    # the months the windows use: training and test targets (the mart may run on past 2023)
    grid = history_grid(history, units, (*inputs.channels, *catalog.TARGETS))
    grid = grid.until(catalog.month64(catalog.TEST_LAST_TARGET_MONTH))
    core = read_history_run(lake.layout.thermal_core().history, grid.months, units)
    residual_train, residual_test, scaler = training_and_test_windows(grid, core, inputs.channels)
    files = lake.layout.training_windows()
    with lake.batch() as batch:
        batch.file(files.train, train.save)
        batch.file(files.test, test.save)
        batch.file(files.stats, lambda tmp: Path(tmp).write_text(json.dumps(stats.to_dict(), indent=2)))
        batch.file(files.residual_train, residual_train.save)
        batch.file(files.residual_test, residual_test.save)
        batch.file(files.residual_scaler, lambda tmp: Path(tmp).write_text(json.dumps(scaler.to_dict(), indent=2)))
        summary = windows_summary(
            "training",
            {
                ("train", "residual"): residual_train,
                ("test", "residual"): residual_test,
                ("train", "paper"): train,
                ("test", "paper"): test,
            },
            **_inputs_columns(inputs),
        )
        batch.parquet(lake.layout.windows_summary("training"), summary)
    views = warehouse.refresh_output_views(lake.layout, "training_windows", context.log)
    ranges = pl.DataFrame(
        {"channel": list(scaler.channels), "scale": [*scaler.scale, 1.0, 1.0], "low": scaler.low, "high": scaler.high}
    )
    return MaterializeResult(
        metadata={
            "residual_train_shape": MetadataValue.json(list(residual_train.x.shape)),
            "residual_test_shape": MetadataValue.json(list(residual_test.x.shape)),
            "units": f"{units.count} {units.kind}s",
            "model_inputs": MetadataValue.json(inputs.describe()),
            "residual_channels": MetadataValue.md(markdown_table(ranges, float_precision=4)),
            "sigma_res": MetadataValue.json(
                dict(zip(catalog.TARGETS, scaler.sigma_res.round(4).tolist(), strict=True))
            ),
            "paper_train_shape": MetadataValue.json(list(train.x.shape)),
            "paper_test_shape": MetadataValue.json(list(test.x.shape)),
            "train_targets": target_span(train),
            "test_targets": target_span(test),
            "paper_features": MetadataValue.json(list(stats.feature_names)),
            "paper_normalization": MetadataValue.md(_stats_table(stats)),
            "path": MetadataValue.path(str(files.folder)),
            **views,
        }
    )


def _scenario_calendar(warehouse: WarehouseResource, scenario: str) -> str:
    """The climate model's own calendar, as the raw CMIP5 rows of `scenario` state it."""
    table = Table(RAW_SCHEMA, CMIP5)
    with warehouse.read_only() as con:
        rows = con.execute(
            f'select distinct calendar from "{table.schema}"."{table.name}" where experiment = ?', [scenario]
        ).fetchall()
    calendars = sorted({row[0] for row in rows if row[0]})
    if len(calendars) != 1:
        raise ValueError(f"raw CMIP5 rows of {scenario} state calendars {calendars}; expected exactly one")
    return calendars[0]


@asset(
    group_name=FEATURES,
    partitions_def=rcp_scenarios,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[
        AssetKey("cmip5_bias_corrected"),
        AssetKey("training_windows"),
        AssetKey("thermal_core"),
        AssetKey(SCENARIO_MART.name),
        AssetKey(UNITS_DIMENSION.name),
        AssetDep(HISTORY_MART.name, partition_mapping=AllPartitionMapping()),
    ],
    pool=WAREHOUSE_POOL,
    kinds={"numpy"},
    description="Per RCP and ensemble member: the scenario drivers of every spatial unit bias-corrected by the "
    "member's method (quantile delta mapping or mean delta, in turn) with its own bootstrap draw of the correction "
    "(draw 0 unperturbed), and the conduction core run on them, 1950-2100 (or the climate model's span); the paper's "
    "windows predicting 2001-01..2100-12 (hindcast, then projection) with the training statistics. Metadata: "
    "how often the scenario leaves the training range, per variable and network channel.",
)
def scenario_windows(
    context: AssetExecutionContext, config: ScenarioWindowsConfig, lake: LakeResource, warehouse: WarehouseResource
) -> MaterializeResult:
    from ml.residual import ResidualScaler
    from ml.scenario_members import bootstrap_block, build_members, training_range_shares
    from ml.thermal_core import ThermalCore
    from ml.unit_arrays import history_grid, unit_grid
    from ml.windows import NormalizationStats, scenario_hindcast_windows, target_span, windows_summary

    files = lake.layout.training_windows()
    stats = NormalizationStats.from_dict(json.loads(files.stats.read_text()))
    scaler = ResidualScaler.from_dict(json.loads(files.residual_scaler.read_text()))
    record = json.loads(lake.layout.thermal_core().parameters.read_text())
    core = ThermalCore.from_dict(record)
    variants = {name: ThermalCore.from_dict(saved) for name, saved in record.get("structures", {}).items()}
    history_frame, units, inputs, raw_marts = _marts(warehouse)
    if tuple(scaler.drivers) != inputs.channels:
        raise ValueError(
            f"the training windows' channels {list(scaler.drivers)} differ from the marts' inputs "
            f"{list(inputs.channels)}: re-materialize training_windows"
        )
    channels = inputs.channels
    history = history_grid(history_frame, units, (*channels, *catalog.TARGETS))
    in_train = history.months <= catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH)
    # every run of the climate model: the mean-delta correction pools their overlap means
    raw_runs = raw_scenario_runs(raw_marts, units, inputs)
    shapes, physical, clipped = {}, {}, {}
    with lake.batch() as batch:
        for scenario in context.partition_keys:
            corrected_frame = pl.read_parquet(lake.layout.bias_corrected(scenario))
            windows = scenario_hindcast_windows(corrected_frame, stats, units)
            batch.file(lake.layout.scenario_windows(scenario), windows.save)
            corrected = unit_grid(corrected_frame, channels, f"bias-corrected {scenario}", units)
            members = build_members(
                corrected,
                raw_runs,
                scenario,
                history,
                in_train,
                core,
                _scenario_calendar(warehouse, scenario),
                inputs,
                config.bias_methods,
                config.bias_draws,
                config.bootstrap_seed,
                variants,
                config.core_structures,
                config.bias_block_years,
            )
            batch.file(lake.layout.scenario_members(scenario), members.save)
            physical[scenario], clipped[scenario] = training_range_shares(history, in_train, corrected, members, scaler)
            span = f"{members.months[0]}..{members.months[-1]}"
            shapes[scenario] = {
                "paper_windows": list(windows.x.shape),
                "paper_targets": target_span(windows),
                "members": len(members.drivers),
                "member_months": span,
                "structures": {name: members.structure.count(name) for name in dict.fromkeys(members.structure)},
                "bootstrap_block_years": bootstrap_block(history, raw_runs[scenario], inputs, config.bias_block_years)[
                    1
                ],
            }
            batch.parquet(
                lake.layout.windows_summary(scenario),
                windows_summary(
                    scenario,
                    {("scenario", "paper"): windows},
                    members=len(members.drivers),
                    member_first_month=str(members.months[0]),
                    member_last_month=str(members.months[-1]),
                    **{f"outside_training_range_{k}": v for k, v in physical[scenario].items()},
                    **{f"clipped_{k}": v for k, v in clipped[scenario].items()},
                ),
            )
    views = warehouse.refresh_output_views(lake.layout, "scenario_windows", context.log)
    # each partition (RCP) its own page
    for scenario in context.partition_keys:
        context.add_asset_metadata(
            {
                "windows": MetadataValue.json(shapes[scenario]),
                # physical: 2024-2100 (month, unit) values outside the 2001-2018 range of the same
                # unit and calendar month (about 10% even without climate change: 18 values per cell)
                "outside_training_range": MetadataValue.md(
                    markdown_table(pl.DataFrame([{"scenario": scenario, **physical[scenario]}]), float_precision=3)
                ),
                # network: share of each residual-network channel clipped to its training range (draw 0)
                "channels_clipped": MetadataValue.md(
                    markdown_table(
                        pl.DataFrame([{"scenario": scenario, **clipped[scenario]}]).select(
                            "scenario", *scaler.channels[:-2]
                        ),
                        float_precision=3,
                    )
                ),
                "path": MetadataValue.path(str(lake.layout.scenario_windows(scenario))),
            },
            partition_key=scenario,
        )
    return MaterializeResult(
        metadata={
            "bias_methods": MetadataValue.json(
                {
                    "methods": list(config.bias_methods),
                    "draws": config.bias_draws,
                    "draw_0": "unperturbed",
                    "core_structures": list(config.core_structures),
                }
            ),
            "scenarios_in_this_run": ", ".join(context.partition_keys),
            **views,
        }
    )
