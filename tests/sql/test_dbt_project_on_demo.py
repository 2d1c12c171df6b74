"""The dbt project on the demo lake: `dbt build` passes from the command line, the marts
have the promised shape, and every great-expectations suite passes on them."""

import datetime as dt

import duckdb
import polars as pl
import pytest
from dagster import AssetSelection, materialize
from dbt_helpers import run_dbt
from instances import instance_knowing_months

from dagster_project import settings
from dagster_project.dbt import canonical_ranges
from dagster_project.definitions import defs
from dagster_project.resources import build_resources
from data_quality.suites import history_suite, run_checks, scenario_suite
from sources.catalog import OPTIONAL_FEATURES
from sources.units import band_units

LATEST = "2003-12"


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_dbt")
    config = settings.from_environment(
        {settings.ENV_LAKE_ROOT: str(root / "data"), settings.ENV_DEMO_LATEST_MONTH: LATEST}
    )
    resources = build_resources(config)
    everything = list(defs.assets)
    ranges = [
        ({}, AssetSelection.assets("band_lithology", "band_soil_properties")),
        (
            {"dagster/asset_partition_range_start": "2001-01-01", "dagster/asset_partition_range_end": f"{LATEST}-01"},
            AssetSelection.assets("era5_land_monthly"),
        ),
        (
            {"dagster/asset_partition_range_start": "historical", "dagster/asset_partition_range_end": "rcp85"},
            AssetSelection.assets("cmip5_monthly"),
        ),
    ]
    instance = instance_knowing_months(LATEST)
    for tags, selection in ranges:
        assert materialize(everything, selection=selection, resources=resources, instance=instance, tags=tags).success
    result = run_dbt(["build"], config.lake_root, config.warehouse_path, root)
    return config, result


def test_dbt_build_passes_from_the_command_line(demo_warehouse):
    _, result = demo_warehouse
    assert result.returncode == 0, result.stdout[-3000:]
    done = [line for line in result.stdout.splitlines() if "Done. PASS=" in line][-1]
    assert "WARN=0 ERROR=0" in done, done


def _read(config, table):
    with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
        return pl.from_arrow(con.sql(f"select * from marts.{table}").to_arrow_table())


def test_marts_have_one_row_per_key_and_the_same_features(demo_warehouse):
    config, _ = demo_warehouse
    history = _read(config, "fct_band_month_features")
    scenarios = _read(config, "fct_scenario_band_month_features")
    assert history.height == 36 * 6
    assert history["month"].min() == dt.date(2001, 1, 1) and history["month"].max() == dt.date(2003, 12, 1)
    assert sorted(scenarios["scenario"].unique().to_list()) == ["rcp26", "rcp45", "rcp60", "rcp85"]
    assert scenarios.height == 4 * 6 * (2100 - 1950 + 1) * 12
    targets = {f"t_soil_{i}" for i in range(4)}
    # the reanalysis-only optional variables (swe, net radiation, ...) have no scenario counterpart
    features = set(history.columns) - targets - {"unit", "band", "nearest_band", "month"} - set(OPTIONAL_FEATURES)
    assert features <= set(scenarios.columns)
    assert not targets & set(scenarios.columns)


def test_bands_are_the_units_of_the_demo_and_its_optional_variables_absent(demo_warehouse):
    config, _ = demo_warehouse
    history = _read(config, "fct_band_month_features")
    assert history.select(pl.col("unit") == pl.col("band")).to_series().all()
    assert history.select(pl.col("nearest_band") == pl.col("band")).to_series().all()
    assert all(history[name].null_count() == history.height for name in OPTIONAL_FEATURES)
    # no spatial_units table landed in this lake: dbt falls back to the six bands, as band_units() has them
    units = _read(config, "dim_spatial_units").sort("unit")
    expected = band_units().to_table()
    assert units.select("unit", "kind", "name", "band", "nearest_band", "series_group").equals(
        expected.select("unit", "kind", "name", "band", "nearest_band", "series_group")
    )
    for column in ("latitude", "longitude", "area_km2"):
        assert units[column].to_list() == pytest.approx(expected[column].to_list(), abs=1e-9), column


def test_scenarios_splice_the_historical_run_before_2006(demo_warehouse):
    config, _ = demo_warehouse
    scenarios = _read(config, "fct_scenario_band_month_features")
    sources = scenarios.group_by("source_experiment").agg(
        pl.col("month").min().alias("first"), pl.col("month").max().alias("last")
    )
    spans = {row["source_experiment"]: (row["first"], row["last"]) for row in sources.iter_rows(named=True)}
    assert spans["historical"] == (dt.date(1950, 1, 1), dt.date(2005, 12, 1))
    assert spans["rcp85"] == (dt.date(2006, 1, 1), dt.date(2100, 12, 1))
    # every scenario holds the same historical rows
    hist = scenarios.filter(pl.col("source_experiment") == "historical")
    assert hist.group_by("band", "month").agg(pl.col("t_air").n_unique().alias("n")).get_column("n").max() == 1


def test_every_expectation_suite_passes_on_the_demo(demo_warehouse):
    config, _ = demo_warehouse
    ranges = canonical_ranges()
    for table, suite in (
        ("fct_band_month_features", history_suite(ranges)),
        ("fct_scenario_band_month_features", scenario_suite(ranges)),
    ):
        reports = run_checks(_read(config, table), suite, table)
        assert [r.summary() for r in reports if not r.passed] == []
        assert len(reports) == len(suite)
