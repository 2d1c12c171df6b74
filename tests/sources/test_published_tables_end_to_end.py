"""The four real published GFDL band tables (shared/data/real) as the climate model, beside the
demo reanalysis and demo static: raw -> dbt -> bias correction on the 2021-2023 overlap ->
scenario windows -> projections, through Dagster's `materialize` on one instance. The perfect-model
validation has nothing to validate on published tables: it says so."""

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from dagster import AssetSelection, materialize
from dbt_helpers import run_dbt
from instances import instance_knowing_months

from dagster_project import settings
from dagster_project.definitions import defs
from dagster_project.resources import build_resources

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"

SOURCES_YAML = """
climate_model:
  kind: band_table
  model: GFDL-ESM2M
  files:
    rcp26: {real}/RCP26_df.csv
    rcp45: {real}/RCP45_df.csv
    rcp60: {real}/RCP60_df.csv
    rcp85: {real}/RCP85_df.csv
  columns:
    avg_volumetric_water_content: mrsos   # CMIP mrsos (top 10 cm, kg m-2) under another name
  absent: [mrso]                          # no total column water in these tables
"""


def _real_tables_present() -> bool:
    return all((REAL / f"RCP{r}_df.csv").is_file() for r in (26, 45, 60, 85))


@pytest.fixture(scope="module")
def published_run(tmp_path_factory):
    if not _real_tables_present():
        pytest.skip(f"the real published tables are not in {REAL}")
    root = tmp_path_factory.mktemp("published_tables")
    sources_file = root / "sources.yaml"
    sources_file.write_text(SOURCES_YAML.format(real=REAL))
    config = settings.from_environment(
        {settings.ENV_LAKE_ROOT: str(root / "data"), settings.ENV_SOURCES_FILE: str(sources_file)}
    )
    resources = build_resources(config)
    instance = instance_knowing_months("2023-12")
    everything = list(defs.assets)

    def run(selection, tags=None, run_config=None):
        result = materialize(
            everything,
            selection=AssetSelection.assets(*selection),
            resources=resources,
            instance=instance,
            tags=tags or {},
            run_config=run_config,
        )
        assert result.success
        return result

    results = {
        "static": run(["band_lithology", "band_soil_properties"]),
        "reanalysis": run(["era5_land_monthly"], {RANGE_START: "2001-01-01", RANGE_END: "2023-12-01"}),
        "cmip5": run(["cmip5_monthly"], {RANGE_START: "historical", RANGE_END: "rcp85"}),
    }
    dbt = run_dbt(["build"], config.lake_root, config.warehouse_path, root)
    assert dbt.returncode == 0, dbt.stdout[-3000:]
    results["bias"] = run(["cmip5_bias_corrected"], {RANGE_START: "rcp26", RANGE_END: "rcp85"})
    results["windows"] = run(["thermal_core", "training_windows"])
    results["scenario_windows"] = run(
        ["scenario_windows"],
        {RANGE_START: "rcp26", RANGE_END: "rcp85"},
        {"ops": {"scenario_windows": {"config": {"bias_draws": 4}}}},  # gru's first network uses draw 3
    )
    # one architecture, one epoch: the point is the path, not the skill
    results["model"] = materialize(
        everything,
        selection=AssetSelection.assets("trained_models"),
        resources=resources,
        instance=instance,
        partition_key="gru",
        run_config={"ops": {"trained_models": {"config": {"epochs": 1, "seeds": 1}}}},
    )
    assert results["model"].success
    results["projections"] = run(["soil_temperature_projections"])
    results["validation"] = run(["perfect_model_validation"])
    return config, results


def _metadata(result, key: str, partition: str | None = None):
    """`key` of the run's materialization (of `partition`, where each partition has its own)."""
    events = [e.materialization for e in result.get_asset_materialization_events()]
    [materialization] = [m for m in events if partition is None or m.partition == partition][:1]
    return materialization.metadata[key].value


@pytest.mark.slow
def test_tables_land_as_rcps_and_the_historical_run_is_reported_absent(published_run):
    config, results = published_run
    cmip5 = results["cmip5"]
    assert _metadata(cmip5, "absent_experiments") == "historical"
    assert _metadata(cmip5, "absent_variables") == "mrso"
    assert _metadata(cmip5, "months_covered")["historical"] == "absent"
    assert _metadata(cmip5, "months_covered")["rcp45"] == "2021-01..2100-12"
    folder = config.lake_root / "raw" / "cmip5_monthly"
    assert pl.read_parquet(folder / "historical.parquet").height == 0
    rcp85 = pl.read_parquet(folder / "rcp85.parquet")
    assert rcp85.height == 80 * 12 * 6
    assert rcp85["model"].unique().to_list() == ["GFDL-ESM2M"]
    # the mid-month stamps of leap-year Februaries (15th 00:00) say noleap, as GFDL's calendar is
    assert rcp85["calendar"].unique().to_list() == ["noleap"]
    assert rcp85["mrso"].null_count() == rcp85.height


@pytest.mark.slow
def test_staging_converts_the_cmip_units_and_estimates_column_water(published_run):
    config, _ = published_run
    with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
        staged = pl.from_arrow(
            con.sql(
                "select * from intermediate.int_cmip5_column_water_completed where experiment = 'rcp26'"
            ).to_arrow_table()
        )
        spliced = pl.from_arrow(con.sql("select * from intermediate.int_cmip5_scenarios_spliced").to_arrow_table())
    raw = pl.read_parquet(config.lake_root / "raw" / "cmip5_monthly" / "rcp26.parquet")
    row = staged.filter((pl.col("band") == 0) & (pl.col("month") == dt.date(2024, 2, 1))).row(0, named=True)
    raw_row = raw.filter((pl.col("band") == 0) & (pl.col("month") == dt.date(2024, 2, 1))).row(0, named=True)
    # noleap February: 28 days, even in 2024
    assert row["days_in_month"] == 28
    assert row["p_total"] == pytest.approx(raw_row["pr"] * 28 * 86400 / 1000)
    assert row["q_latent"] == pytest.approx(-raw_row["hfls"] * 28 * 86400)
    assert row["t_air"] == pytest.approx(raw_row["tas"] - 273.15)
    assert staged["soil_water_total_origin"].unique().to_list() == ["mrsos x reanalysis column/top-10cm ratio"]
    ratio = staged["soil_water_total_kg_m2"] / staged["soil_water_top_kg_m2"]
    # the reanalysis' column (2.89 m) holds many times its top 10 cm: the ratio is > 10, finite
    assert ratio.min() > 10 and np.isfinite(ratio.to_numpy()).all()
    assert set(spliced["source_experiment"].unique().to_list()) == {"rcp26", "rcp45", "rcp60", "rcp85"}
    assert spliced["month"].min() == dt.date(2021, 1, 1)


@pytest.mark.slow
def test_bias_correction_runs_on_the_short_overlap_and_says_so(published_run):
    config, results = published_run
    assert _metadata(results["bias"], "overlap", "rcp45") == "2021-01..2023-12 (36 months)"
    warnings = _metadata(results["bias"], "warnings")
    assert any("2021-01..2023-12" in w and "shorter than 20 years" in w for w in warnings)
    corrected = pl.read_parquet(config.lake_root / "features" / "cmip5_bias_corrected" / "rcp85.parquet")
    assert corrected["month"].min() == dt.date(2021, 1, 1) and corrected["month"].max() == dt.date(2100, 12, 1)
    assert corrected.select(pl.col("t_air", "w_0", "w_3").is_nan().any()).row(0) == (False, False, False)


@pytest.mark.slow
def test_projections_cover_2024_to_2100_for_every_rcp(published_run):
    config, results = published_run
    shapes = _metadata(results["scenario_windows"], "windows", "rcp26")
    # the runs start in 2021: the paper's windows reach back 24 months, so the hindcast starts in 2023
    assert shapes["paper_targets"] == "2023-01..2100-12"
    assert shapes["member_months"] == "2021-01..2100-12"
    projections = pl.read_parquet(config.lake_root / "projections" / "soil_temperature_projections.parquet")
    assert sorted(projections["scenario"].unique().to_list()) == ["rcp26", "rcp45", "rcp60", "rcp85"]
    assert set(projections["model"].unique().to_list()) == {"gru", "thermal_core", "dl_ridge", "ensemble_mean"}
    gru = projections.filter(pl.col("model") == "gru")
    assert gru["month"].min() == dt.date(2022, 12, 1) and gru["month"].max() == dt.date(2100, 12, 1)
    assert gru.filter(pl.col("month") >= dt.date(2024, 1, 1)).height == 4 * 6 * 77 * 12
    soil = gru.select("t_soil_0", "t_soil_1", "t_soil_2", "t_soil_3").to_numpy()
    assert np.isfinite(soil).all() and (np.abs(soil) < 60).all()


@pytest.mark.slow
def test_perfect_model_validation_is_skipped_without_a_simulator(published_run):
    config, results = published_run
    assert _metadata(results["validation"], "status") == "skipped"
    assert "no truth" in _metadata(results["validation"], "reason")
    assert not (config.lake_root / "validation").exists()
