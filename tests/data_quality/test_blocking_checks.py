"""A corrupted raw lake makes the right great-expectations check fail, naming band and month,
and nothing downstream of the failed check is materialized in that run."""

import polars as pl
import pytest
from dagster import AssetKey, AssetSelection, asset, materialize

from dagster_project.definitions import defs

RANGE = {"dagster/asset_partition_range_start": "2001-01-01", "dagster/asset_partition_range_end": "2003-12-01"}
EXPERIMENTS = {"dagster/asset_partition_range_start": "historical", "dagster/asset_partition_range_end": "rcp85"}


@asset(deps=[AssetKey("fct_band_month_features")], group_name="test")
def trained_on_history() -> None:
    """Stands in for the training step that the history checks guard."""


@asset(deps=[AssetKey("fct_scenario_band_month_features")], group_name="test")
def projected_from_scenarios() -> None:
    """Stands in for the projection step that the scenario checks guard."""


def _corrupt(lake_root):
    folder = lake_root / "raw" / "era5_land_monthly"
    # a NaN target
    path = folder / "2002-02.parquet"
    frame = pl.read_parquet(path)
    frame.with_columns(
        soil_temperature_level_2=pl.when(pl.col("band") == 3)
        .then(float("nan"))
        .otherwise(pl.col("soil_temperature_level_2"))
    ).write_parquet(path)
    # an impossible air temperature (400 K)
    path = folder / "2002-06.parquet"
    frame = pl.read_parquet(path)
    frame.with_columns(
        temperature_2m=pl.when(pl.col("band") == 1).then(400.0).otherwise(pl.col("temperature_2m"))
    ).write_parquet(path)
    # a missing month
    (folder / "2003-03.parquet").unlink()


@pytest.fixture
def corrupted_run(resources, lake_settings, instance):
    everything = list(defs.assets) + list(defs.asset_checks) + [trained_on_history, projected_from_scenarios]
    materialize(
        everything,
        selection=AssetSelection.groups("raw") - AssetSelection.assets("era5_land_monthly", "cmip5_monthly"),
        resources=resources,
        instance=instance,
    )
    for asset_name, tags in (("era5_land_monthly", RANGE), ("cmip5_monthly", EXPERIMENTS)):
        materialize(
            everything, selection=AssetSelection.assets(asset_name), resources=resources, instance=instance, tags=tags
        )
    _corrupt(lake_settings.lake_root)
    raw = AssetSelection.groups("raw")
    static = AssetSelection.assets("int_band_static_features_pivoted").upstream() - raw
    assert materialize(everything, selection=static, resources=resources, instance=instance).success
    # the reanalysis side runs per month: staging and the history mart, for the whole range
    history = materialize(
        everything,
        selection=AssetSelection.assets("stg_era5_land__monthly", "fct_band_month_features", "trained_on_history"),
        resources=resources,
        instance=instance,
        tags=RANGE,
        raise_on_error=False,
    )
    monthly = AssetSelection.assets("stg_era5_land__monthly")
    upstream = AssetSelection.assets("fct_scenario_band_month_features").upstream() - raw - static - monthly
    first = materialize(
        everything,
        selection=upstream | AssetSelection.assets("projected_from_scenarios"),
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    return first, history


def _evaluations(result):
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_corrupted_raw_partitions_fail_the_right_checks_and_block_downstream(corrupted_run):
    scenario_run, history_run = corrupted_run
    # the scenario side is clean: its checks pass and its downstream asset runs
    scenario_checks = {k: v for k, v in _evaluations(scenario_run).items() if k.startswith("gx_")}
    assert scenario_checks and all(e.passed for e in scenario_checks.values())
    assert "projected_from_scenarios" in {
        e.asset_key.to_user_string() for e in scenario_run.get_asset_materialization_events()
    }

    checks = _evaluations(history_run)
    ranges = checks["gx_physical_ranges"]
    assert not ranges.passed
    failures = {f["column"]: f for f in ranges.metadata["failures"].value}
    assert failures["t_air"]["rows"][0] == {"band": 1, "month": "2002-06", "t_air": pytest.approx(400 - 273.15)}
    # soil_temperature_level_2 is the second layer, t_soil_1
    assert failures["t_soil_1"]["expectation"] == "expect_column_values_to_not_be_null"
    assert failures["t_soil_1"]["rows"][0] == {"band": 3, "month": "2002-02", "t_soil_1": "NaN"}
    # the dbt tests saw the same rows, as non-blocking warnings
    dbt_range = checks["fct_band_month_features__values_in_physical_range"]
    assert not dbt_range.passed  # the dbt test saw the same rows, readable by name, as a non-blocking warning

    missing = checks["gx_no_missing_month"]
    assert not missing.passed
    rows = missing.metadata["failures"].value[0]["rows"]
    assert {(r["band"], r["month"], r["months_since_previous"]) for r in rows} == {(b, "2003-04", 2) for b in range(6)}

    for passing in ("gx_water_content_fraction", "gx_lithology_fractions_sum_to_one", "gx_six_bands_per_month"):
        assert checks[passing].passed, passing

    materialized = {e.asset_key.to_user_string() for e in history_run.get_asset_materialization_events()}
    assert "fct_band_month_features" in materialized
    assert "trained_on_history" not in materialized
