"""The dbt project on a lake of basins (a basin table as the reanalysis, demo static and CMIP5):
staging and the history mart keyed by unit with absent variables null and the optional ones
staged, static features of the nearest band, dim_spatial_units, the scenario mart on the bands
the basins stand for, the expectation suites on the landed units, and a duplicated raw month
refused naming the basin."""

import datetime as dt
import shutil
import warnings
from pathlib import Path

import duckdb
import polars as pl
import pytest
from basin_tables import BASINS, basin_rows, write_basin_attributes, write_basin_table
from dagster import AssetSelection, materialize
from dbt_helpers import run_dbt
from instances import instance_knowing_months

from dagster_project import settings
from dagster_project.dbt import canonical_ranges
from dagster_project.definitions import defs
from dagster_project.resources import build_resources
from data_quality.checks import landed_units
from data_quality.suites import history_suite, run_checks, scenario_suite
from sources import catalog

LATEST = "2005-03"  # the table's April 2005 is partial: not published
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "era5_land_basins"
MONTHS = catalog.month_range(dt.date(2001, 1, 1), dt.date(2005, 3, 1))
ABSENT = ("t_surface", "p_snow", "r_thermal", "r_solar", "q_latent", "q_sensible")


def build_basin_lake(root: Path, table: Path, attributes: Path, latest: str):
    """Raw assets (the basin table as the reanalysis, demo static and CMIP5) up to `latest`, then
    `dbt build`: the settings, resources and dbt's result."""
    sources = root / "sources.yaml"
    sources.write_text(f"reanalysis:\n  kind: basin_table\n  path: {table}\n  attributes: {attributes}\n")
    config = settings.from_environment(
        {
            settings.ENV_LAKE_ROOT: str(root / "data"),
            settings.ENV_SOURCES_FILE: str(sources),
            settings.ENV_DEMO_LATEST_MONTH: latest,
        }
    )
    resources = build_resources(config)
    everything = list(defs.assets)
    instance = instance_knowing_months(latest)
    months = {"dagster/asset_partition_range_start": "2001-01-01", "dagster/asset_partition_range_end": f"{latest}-01"}
    experiments = {"dagster/asset_partition_range_start": "historical", "dagster/asset_partition_range_end": "rcp85"}
    for tags, selection in (
        ({}, AssetSelection.assets("band_lithology", "band_soil_properties", "spatial_units")),
        (months, AssetSelection.assets("era5_land_monthly")),
        (experiments, AssetSelection.assets("cmip5_monthly")),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the absent variables (tested in tests/sources)
            result = materialize(everything, selection=selection, resources=resources, instance=instance, tags=tags)
        assert result.success
    return config, resources, run_dbt(["build"], config.lake_root, config.warehouse_path, root)


@pytest.fixture(scope="module")
def basin_warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("basin_dbt")
    table = write_basin_table(root / "monthly_by_basin.csv")
    attributes = write_basin_attributes(root / "basin_attributes.csv")
    config, resources, build = build_basin_lake(root, table, attributes, LATEST)
    return config, resources, build, root


def _read(config, table: str) -> pl.DataFrame:
    with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
        return pl.from_arrow(con.sql(f"select * from {table}").to_arrow_table())


def test_dbt_build_passes_on_basins(basin_warehouse):
    _, _, build, _ = basin_warehouse
    assert build.returncode == 0, build.stdout[-3000:]
    done = [line for line in build.stdout.splitlines() if "Done. PASS=" in line][-1]
    assert "WARN=0 ERROR=0" in done, done


def test_the_history_mart_is_keyed_by_basin_with_its_bands(basin_warehouse):
    config, *_ = basin_warehouse
    history = _read(config, "marts.fct_band_month_features")
    assert history.height == len(BASINS) * len(MONTHS)
    assert history.columns[:4] == ["unit", "band", "nearest_band", "month"]
    assert history.select("unit", "month").is_unique().all()
    bands = dict(history.select("unit", "band").unique().iter_rows())
    nearest = dict(history.select("unit", "nearest_band").unique().iter_rows())
    assert bands == {3: 1, 5: 1, 15: 2, 308: None}
    assert nearest == {3: 1, 5: 1, 15: 2, 308: 0}
    assert history["month"].min() == MONTHS[0] and history["month"].max() == MONTHS[-1]


def test_values_are_converted_absent_ones_stay_null(basin_warehouse):
    config, *_ = basin_warehouse
    history = _read(config, "marts.fct_band_month_features")
    assert all(history[name].null_count() == history.height for name in ABSENT)
    assert all(history[name].null_count() == 0 for name in catalog.OPTIONAL_FEATURES)
    published = basin_rows().filter((pl.col("station_id") == 15) & (pl.col("year") == 2004) & (pl.col("month") == 2))
    row = history.filter((pl.col("unit") == 15) & (pl.col("month") == dt.date(2004, 2, 1))).row(0, named=True)
    seconds = 29 * 86400.0
    expected = {
        "t_air": published["temperature_2m_mean"][0],
        "t_dew": published["dewpoint_temperature_2m_mean"][0],
        "t_soil_3": published["soil_temperature_level_4_mean"][0],
        "p_total": published["total_precipitation_sum"][0] / 1000.0,
        "swe": published["snow_depth_water_equivalent_mean"][0] / 1000.0,
        "r_net_solar": published["surface_net_solar_radiation_mean"][0] * seconds,
        "r_net_thermal": published["surface_net_thermal_radiation_mean"][0] * seconds,
        "surface_pressure": published["surface_pressure_mean"][0] * 1000.0,
        "wind_u": -0.5,
        "wind_v": 0.25,
        "runoff_surface": 0.005,
        "runoff_subsurface": 0.03,
        "w_0": 0.31,
    }
    assert {name: row[name] for name in expected} == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_a_basin_takes_the_static_features_of_its_nearest_band(basin_warehouse):
    config, *_ = basin_warehouse
    history = _read(config, "marts.fct_band_month_features")
    static = _read(config, "intermediate.int_band_static_features_pivoted")
    for unit, band in ((308, 0), (15, 2), (3, 1)):
        mart_row = history.filter(pl.col("unit") == unit).select(catalog.STATIC_FEATURES).unique()
        assert mart_row.height == 1
        assert mart_row.equals(static.filter(pl.col("band") == band).select(catalog.STATIC_FEATURES)), unit


def test_dim_spatial_units_holds_the_landed_basins(basin_warehouse):
    config, resources, *_ = basin_warehouse
    units = _read(config, "marts.dim_spatial_units").sort("unit")
    landed = landed_units(resources["lake"])
    assert landed.kind == "basin"
    assert units.drop("kind").equals(landed.frame.with_columns(pl.col("band", "nearest_band").cast(pl.Int32)))
    assert set(units["kind"]) == {"basin"}


def test_the_scenario_mart_holds_the_bands_the_basins_stand_for(basin_warehouse):
    config, *_ = basin_warehouse
    scenarios = _read(config, "marts.fct_scenario_band_month_features")
    assert sorted(scenarios["band"].unique().to_list()) == [0, 1, 2]
    shares = _read(config, "intermediate.int_era5_land_soil_water_shares").sort("band", "calendar_month")
    assert set(shares["band"].to_list()) == {0, 1, 2}
    # band 1 pools its two basins: still years, not basin-years (2001-2004, and 2005 up to March)
    assert shares.filter(pl.col("band") == 1)["n_years"].to_list() == [5, 5, 5] + [4] * 9


def test_every_expectation_suite_passes_on_the_landed_units(basin_warehouse):
    config, resources, *_ = basin_warehouse
    units = landed_units(resources["lake"])
    ranges = canonical_ranges()
    for table, suite, absent in (
        ("marts.fct_band_month_features", history_suite(ranges, units), set(ABSENT)),
        ("marts.fct_scenario_band_month_features", scenario_suite(ranges, units), set()),  # the climate model has them
    ):
        reports = {r.name: r for r in run_checks(_read(config, table), suite, table.replace(".", "_"))}
        assert [r.summary() for r in reports.values() if not r.passed] == []
        assert set(reports["physical_ranges"].absent) == absent


def test_a_duplicated_raw_month_is_refused_naming_the_basin(basin_warehouse):
    config, _, _, root = basin_warehouse
    folder = config.lake_root / "raw" / "era5_land_monthly"
    again = folder / "2002-03 (again).parquet"
    shutil.copy(folder / "2002-03.parquet", again)
    try:
        build = run_dbt(["build", "--select", "stg_era5_land__monthly"], config.lake_root, config.warehouse_path, root)
        with duckdb.connect(str(config.warehouse_path), read_only=True) as con, pytest.raises(duckdb.Error) as error:
            con.sql("select * from staging.stg_era5_land__monthly").fetchall()
    finally:
        again.unlink()
    assert build.returncode != 0
    assert "Failure in test stg_era5_land__monthly__no_raw_row_delivered_twice" in build.stdout
    refused = str(error.value)
    assert "refuses duplicated raw rows (4 key(s) of (unit, month, date)" in refused
    assert "unit 3, month 2002-03-01, date 2002-03-01, 2 rows in" in refused


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "monthly_by_basin.csv").is_file(), reason="no real basin tables beside the repo")
def test_the_real_basin_tables_pass_dbt_and_every_expectation(tmp_path):
    """The 96 real basins, 2001-01..2023-03, through raw, dbt and the suites (about a minute)."""
    config, resources, build = build_basin_lake(
        tmp_path, REAL / "monthly_by_basin.csv", REAL / "basin_attributes.csv", "2023-03"
    )
    assert build.returncode == 0, build.stdout[-3000:]
    assert "WARN=0 ERROR=0" in [line for line in build.stdout.splitlines() if "Done. PASS=" in line][-1]
    history = _read(config, "marts.fct_band_month_features")
    assert history.height == 96 * 267 and history["unit"].n_unique() == 96
    scenarios = _read(config, "marts.fct_scenario_band_month_features")
    assert sorted(scenarios["band"].unique().to_list()) == [0, 1, 2, 3, 4]  # no basin is near the North Slope
    units = landed_units(resources["lake"])
    reports = run_checks(history, history_suite(canonical_ranges(), units), "real_basins")
    assert [r.summary() for r in reports if not r.passed] == []  # amplitude damps with depth in every basin too
    reports += run_checks(scenarios, scenario_suite(canonical_ranges(), units), "real_scenarios")
    assert [r.summary() for r in reports if not r.passed] == []


def test_a_hole_in_a_present_variable_fails_the_range_test_an_absent_one_does_not(basin_warehouse):
    config, _, _, root = basin_warehouse
    path = config.lake_root / "raw" / "era5_land_monthly" / "2002-07.parquet"
    original = pl.read_parquet(path)
    hole = original.with_columns(
        temperature_2m=pl.when(pl.col("unit") == 15).then(None).otherwise(pl.col("temperature_2m"))
    )
    hole.write_parquet(path)
    try:
        test = run_dbt(
            ["test", "--select", "stg_era5_land__monthly__values_in_physical_range", "--store-failures"],
            config.lake_root,
            config.warehouse_path,
            root,
        )
        with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
            failures = con.sql(
                "select unit, band, month, variable, value "
                "from dbt_test__audit.stg_era5_land__monthly__values_in_physical_range"
            ).fetchall()
    finally:
        original.write_parquet(path)
    assert "WARN 1 stg_era5_land__monthly__values_in_physical_range" in test.stdout
    # the hole, named by unit, band and month; not the six variables null in every row
    assert failures == [(15, 2, dt.date(2002, 7, 1), "t_air", None)]
