"""The model assets on a small lake built straight from the demo's simulator (no raw layer, no dbt,
no quantile mapping): the marts are the demo's worlds in canonical units, and each scenario's
"bias-corrected" drivers are the simulator's own unbiased weather. The core, the windows, two
small networks of one architecture, evaluation, projections, the active layer, SHAP and the
perfect-model validation then run through Dagster as in the graph; on forcing without bias the
projections must land near the truth."""

import datetime as dt
import json

import duckdb
import numpy as np
import polars as pl
import pytest
from dagster import build_asset_context
from materializer import materializer

from assets import validation
from dagster_project import settings
from dagster_project.lake import LakeLayout
from dagster_project.resources import SourcesResource, build_resources
from ml.unit_arrays import Units
from sources import catalog, demo

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

SEED = 11
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
SEEDS = 2
BIAS_DRAWS = 9  # gru's members 0 and 1 use bias-correction draws 3 and 8


def _with_features(frame: pl.DataFrame) -> pl.DataFrame:
    """The mart's static and time features (constant statics: the demo's do not matter here)."""
    static = {name: 1.0 / len(catalog.LITHOLOGY_FEATURES) for name in catalog.LITHOLOGY_FEATURES}
    static.update({name: 1300.0 if name.startswith("bulk") else 10.0 for name in catalog.SOIL_PROPERTY_FEATURES})
    month = pl.col("month").dt.month()
    return frame.with_columns(
        pl.col("band").cast(pl.Int64).alias("unit"),  # the bands are the spatial units
        pl.col("band").cast(pl.Int64).alias("nearest_band"),
        pl.col("band").cast(pl.Int32),
        pl.col("month").dt.year().alias("year"),
        (2 * np.pi * month / 12.0).sin().alias("month_sin"),
        (2 * np.pi * month / 12.0).cos().alias("month_cos"),
        *(pl.lit(value).alias(name) for name, value in static.items()),
        pl.sum_horizontal(
            pl.col(w) * t * 1000 for w, t in zip(catalog.WATER_CONTENT, catalog.SOIL_LAYER_THICKNESS_M, strict=True)
        ).alias("soil_water_total_kg_m2"),
    )


def _write_marts(config: settings.Settings) -> None:
    """History mart from the demo's reanalysis world, scenario marts and corrected scenarios from
    its unbiased CMIP twin, the raw CMIP5 calendar: what the assets read upstream."""
    world_settings = demo.DemoSettings(seed=SEED)
    months = catalog.month_range(catalog.HISTORY_START, catalog.DEFAULT_LATEST_MONTH)
    history = _with_features(demo._canonical_frame(months, demo._reanalysis_world(world_settings)))
    source = demo.DemoClimateModelSource(world_settings)
    scenarios = {
        s: _with_features(source.perfect_model_truth(s)).drop(catalog.TARGETS) for s in catalog.RCP_EXPERIMENTS
    }
    layout = LakeLayout(config.lake_root)
    for scenario, frame in scenarios.items():
        path = layout.bias_corrected(scenario)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.with_columns(pl.lit(scenario).alias("scenario")).write_parquet(path)
    scenario_mart = pl.concat([f.with_columns(pl.lit(s).alias("scenario")) for s, f in scenarios.items()])
    calendars = pl.DataFrame({"experiment": list(catalog.RCP_EXPERIMENTS), "calendar": demo.CMIP_CALENDAR})
    units = Units.bands().frame
    config.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(config.warehouse_path)) as con:
        for schema in ("marts", "raw"):
            con.execute(f"create schema {schema}")
        for name, frame in (
            ("marts.fct_band_month_features", history),
            ("marts.fct_scenario_band_month_features", scenario_mart.drop("unit", "nearest_band")),
            ("marts.dim_spatial_units", units),
            ("raw.cmip5_monthly", calendars),
        ):
            con.register("frame", frame.to_arrow())
            con.execute(f"create table {name} as select * from frame")
            con.unregister("frame")


@pytest.fixture(scope="module")
def model_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_lake")
    config = settings.from_environment(
        {
            settings.ENV_LAKE_ROOT: str(root / "data"),
            settings.ENV_DEMO_SEED: str(SEED),
            settings.ENV_DEMO_LATEST_MONTH: "2023-12",
        }
    )
    _write_marts(config)
    resources = build_resources(config)
    run = materializer(resources)

    metadata = {}
    metadata.update(run(["thermal_core", "training_windows"])[0])
    config_draws = {"ops": {"scenario_windows": {"config": {"bias_draws": BIAS_DRAWS}}}}
    metadata.update(
        run(["scenario_windows"], tags={RANGE_START: "rcp26", RANGE_END: "rcp85"}, run_config=config_draws)[0]
    )
    metadata.update(run(["hyperparameter_search"], partition_key="gru")[0])  # off by default
    training = {"ops": {"trained_models": {"config": {"seeds": SEEDS, "epochs": 2}}}}
    metadata.update(run(["trained_models"], partition_key="gru", run_config=training)[0])
    paper = {"ops": {"trained_models": {"config": {"design": "paper", "seeds": 1, "epochs": 1}}}}
    metadata["trained_models_paper"] = run(["trained_models"], partition_key="tcn", run_config=paper)[0][
        "trained_models"
    ]
    rest, result = run(
        [
            "model_evaluation",
            "spatial_holdout_evaluation",
            "soil_temperature_projections",
            "active_layer_thickness",
            "feature_importance",
            "perfect_model_validation",
        ]
    )
    metadata.update(rest)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    return LakeLayout(config.lake_root), metadata, checks


@pytest.mark.slow
def test_the_core_fits_the_history(model_lake):
    layout, metadata, _ = model_lake
    meta = metadata["thermal_core"]
    assert meta["test_rmse"].value < 1.5  # degC; climatology is about 1.3-2 K on the demo
    history = pl.read_parquet(layout.thermal_core().history)
    assert history.height == 276 * 6 and history.select(catalog.TARGETS).null_count().row(0) == (0, 0, 0, 0)
    # the ensemble's other core structures are fitted beside the default and saved with it
    structures = meta["ensemble_structures"].value
    assert all(name in structures for name in ("default", "thick_column", "power_law_freezing"))
    saved = json.loads(layout.thermal_core().parameters.read_text())["structures"]
    assert saved["thick_column"]["structure"]["bottom"] == "thick"
    assert saved["power_law_freezing"]["structure"]["freezing"] == "power_law"


@pytest.mark.slow
def test_windows_and_members_land_in_both_designs(model_lake):
    layout, metadata, _ = model_lake
    files = layout.training_windows()
    assert all(path.is_file() for path in files.files)
    assert metadata["training_windows"]["residual_train_shape"].value[1:] == [24, 18]
    with np.load(layout.scenario_members("rcp85")) as members:
        assert members["drivers"].shape[0] == BIAS_DRAWS and members["core"].shape[-1] == 4
        assert members["bias_method"].tolist()[:3] == ["qdm", "mean_delta", "qdm"]
        # draws take the core structures in turn; gru's draws 3 and 8 are the default and power-law freezing
        assert members["structure"].tolist()[:4] == ["default", "thick_column", "power_law_freezing", "default"]
        offsets = members["offsets"]
        assert not offsets[0].any() and np.abs(offsets[1]).max() > 0.0 and np.abs(offsets[8]).max() > 0.0
        assert np.array_equal(members["months"][[0, -1]], np.array(["1950-01", "2100-12"], dtype="datetime64[M]"))
    assert metadata["scenario_windows"]["windows"].value["structures"] == {
        "default": 3,
        "thick_column": 3,
        "power_law_freezing": 3,
    }
    assert "t_air" in metadata["scenario_windows"]["outside_training_range"].value


@pytest.mark.slow
def test_an_architecture_trains_its_seeds_in_one_step(model_lake):
    layout, metadata, _ = model_lake
    meta = metadata["trained_models"]
    assert meta["seeds"].value == SEEDS and meta["design"].value == "residual"
    assert meta["epochs_run"].value == [2, 2]
    folder = layout.model_folder("gru")
    assert sorted(p.name for p in folder.iterdir()) == ["ensemble.json", "member_0", "member_1"]
    assert (folder / "member_1" / "scaler.json").is_file()
    paper = metadata["trained_models_paper"]
    assert paper["design"].value == "paper" and paper["seeds"].value == 1
    assert (layout.model_folder("tcn") / "member_0" / "normalization.json").is_file()


@pytest.mark.slow
def test_evaluation_scores_every_model_and_baseline_and_checks_them(model_lake):
    layout, metadata, checks = model_lake
    table = pl.read_parquet(layout.model_evaluation())
    assert set(table["model"]) == {
        "gru",
        "tcn",
        "ensemble",
        "climatology",
        "persistence",
        "damped_persistence",
        "ridge",
        "dl_ridge",
        "thermal_core",
    }
    gru = table.filter(pl.col("model") == "gru", pl.col("scope") == "overall")
    assert gru["member"].to_list() == [0, 1, None] and gru["rmse_sd"][2] is not None
    observed = table.filter(pl.col("uses_observed_soil_temperature"))["model"].unique().sort().to_list()
    assert observed == ["damped_persistence", "persistence"]
    climatology = table.filter(pl.col("model") == "climatology")
    assert (climatology["skill"] == 0.0).all()
    targets = metadata["model_evaluation"]["targets"].value
    assert "every_architecture_15pct_below_climatology_every_layer" in targets and len(targets["per_layer"]) == 4
    assert "gru" in metadata["model_evaluation"]["paper_table_2"].value["table_2"]
    assert metadata["model_evaluation"]["designs"].value == {"gru": "residual", "tcn": "paper"}
    # on the band demo every unit is a band: the unit scope repeats the band scope
    units = table.filter(pl.col("scope") == "unit", pl.col("member").is_null(), pl.col("model") == "gru")
    bands = table.filter(pl.col("scope") == "band", pl.col("member").is_null(), pl.col("model") == "gru")
    assert units["unit"].to_list() == bands["band"].to_list() == list(range(6))
    assert units["rmse"].to_list() == pytest.approx(bands["rmse"].to_list())
    # the hyperparameters each trained with, no search having run
    gru_rows = table.filter(pl.col("model") == "gru")
    assert gru_rows["searched"].unique().to_list() == [False] and '"units": 16' in gru_rows["hyperparameters"][0]
    check = checks["models_beat_best_baseline"]
    assert "best_baseline" in check.metadata and check.severity.value == "WARN"


@pytest.mark.slow
def test_projections_keep_members_hindcast_and_the_ensemble_range(model_lake):
    layout, metadata, _ = model_lake
    projections = pl.read_parquet(layout.projections("parquet"))
    assert metadata["soil_temperature_projections"]["members"].value == "dl_ridge 1, gru 2, tcn 1, thermal_core 1"
    members = projections.filter(pl.col("model") == "gru").select("member").unique()["member"].sort().to_list()
    assert members == [0, 1]
    assert projections["month"].min() == dt.date(2001, 1, 1) and projections["month"].max() == dt.date(2100, 12, 1)
    ensemble = projections.filter(pl.col("model") == "ensemble_mean")
    assert (ensemble["t_soil_0_q05"] <= ensemble["t_soil_0"]).all()
    assert (ensemble["t_soil_0"] <= ensemble["t_soil_0_q95"]).all()
    # the two members carry different bias-correction draws: they differ
    late = projections.filter(pl.col("model") == "gru", pl.col("scenario") == "rcp85", pl.col("month").dt.year() > 2090)
    by_member = late.group_by("member").agg(pl.col("t_soil_3").mean()).sort("member")["t_soil_3"]
    assert abs(by_member[0] - by_member[1]) > 1e-3
    assert layout.projections("nc").stat().st_size > 100_000


@pytest.mark.slow
def test_active_layer_from_the_profile_and_importance_in_kelvin(model_lake):
    layout, metadata, _ = model_lake
    alt = pl.read_parquet(layout.active_layer())
    assert {"reanalysis", "rcp26", "rcp85"} <= set(alt["scenario"])
    assert alt.filter(pl.col("flag") == "all_thawed")["alt_m"].max() == pytest.approx(2.89)
    assert 0.0 <= metadata["active_layer_thickness"]["reanalysis_censored_bands_2_5"].value <= 1.0
    importance = pl.read_parquet(layout.feature_importance())
    assert importance["physical_unit"].unique().to_list() == ["K"]
    assert importance["unit"].null_count() == importance.height  # pooled over every unit
    counts = dict(importance.group_by("model").len().iter_rows())
    assert counts == {"gru": 18, "tcn": 33}  # residual channels; the paper's 33 features with year and z


@pytest.mark.slow
def test_perfect_model_validation_on_unbiased_forcing_lands_near_the_truth(model_lake):
    layout, metadata, _ = model_lake
    meta = metadata["perfect_model_validation"]
    assert meta["status"].value == "validated"
    scores = pl.read_parquet(layout.validation().scores)
    assert set(scores["kind"]) == {"member", "architecture", "ensemble", "reference", "floor"}
    floor = scores.filter(pl.col("kind") == "floor").row(0, named=True)
    # the simulator fed its own unbiased weather gives the truth back (spin-up aside)
    assert floor["change_rmse"] < 0.05 and floor["level_rmse"] < 0.05
    core = scores.filter(pl.col("model") == "thermal_core").row(0, named=True)
    assert core["change_rmse"] < 0.4 and core["ordered"] >= 20
    cells = pl.read_parquet(layout.validation().cells)
    assert cells.height == 4 * 6 * 4 and (cells["change_q05"] <= cells["change_q95"]).all()
    assert "coverage_change" in meta["targets"].value
    spread = meta["coverage"].value  # beside the coverage, what it needs to be read by
    assert spread["error_over_spread_level"] > 0 and 0 < spread["calibrated_coverage"] < 0.9
    ensemble = scores.filter(pl.col("kind") == "ensemble").row(0, named=True)
    assert ensemble["error_over_spread_level"] == pytest.approx(spread["error_over_spread_level"], abs=5e-4)


def test_validation_says_so_and_writes_nothing_on_a_source_without_truth(tmp_path, monkeypatch):
    class Published:
        name = "band_table"

    monkeypatch.setattr(SourcesResource, "climate_model", lambda self: Published())
    resources = build_resources(settings.from_environment({settings.ENV_LAKE_ROOT: str(tmp_path / "data")}))
    context = build_asset_context()
    result = validation.perfect_model_validation(
        context, lake=resources["lake"], warehouse=resources["warehouse"], sources=resources["sources"]
    )
    assert result.metadata["status"] == "skipped"
    assert "band_table" in result.metadata["reason"] and "no truth" in result.metadata["reason"]
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_a_search_that_is_off_records_so_and_the_spatial_hold_out_skips_the_bands(model_lake):
    layout, metadata, _ = model_lake
    search = metadata["hyperparameter_search"]
    assert search["searched"].value is False and "not searched" in search["reason"].value
    trials = pl.read_parquet(layout.search_trials("gru"))
    assert trials.height == 1 and trials["searched"].to_list() == [False]
    holdout = metadata["spatial_holdout_evaluation"]
    assert holdout["status"].value == "skipped" and "latitude bands" in holdout["reason"].value
    # empty tables behind the view, so a query of it answers on every lake
    files = layout.spatial_holdout()
    scores, split = pl.read_parquet(files.scores), pl.read_parquet(files.split)
    assert scores.height == 0 and "skill" in scores.columns and split.height == 0 and "held_out" in split.columns
