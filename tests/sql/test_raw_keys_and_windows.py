"""Staging refuses duplicated raw rows; a monthly run of the history mart replaces every row of
its window; the raw views follow the lake without writes; dbt waits for a reader of the
warehouse and names one that does not let go."""

import datetime as dt
import shutil
import subprocess
import sys
import textwrap

import duckdb
import polars as pl
import pytest
from dagster import AssetKey, AssetSelection, asset, materialize
from dbt_helpers import run_dbt
from instances import instance_knowing_months

from dagster_project import settings
from dagster_project.definitions import defs
from dagster_project.launcher.findings import step_failures
from dagster_project.resources import build_resources

LATEST = "2001-06"
HISTORY = ["+fct_band_month_features"]  # the reanalysis side only: no CMIP5 needed


@asset(deps=[AssetKey("fct_band_month_features")], group_name="test")
def trained_on_history() -> None:
    """Stands in for the training step the history mart's checks guard."""


EVERYTHING = [*defs.assets, *defs.asset_checks, trained_on_history]
MONTHS = instance_knowing_months()  # every reanalysis month a test asks for is a partition


def _config(root, latest=LATEST, **extra):
    env = {settings.ENV_LAKE_ROOT: str(root / "data"), settings.ENV_DEMO_LATEST_MONTH: latest, **extra}
    return settings.from_environment(env)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Raw static extracts and six months of ERA5-Land, the history mart built by `dbt build`."""
    root = tmp_path_factory.mktemp("history")
    config = _config(root)
    resources = build_resources(config)
    tags = {"dagster/asset_partition_range_start": "2001-01-01", "dagster/asset_partition_range_end": f"{LATEST}-01"}
    for selection, run_tags in (
        (AssetSelection.assets("band_lithology", "band_soil_properties"), {}),
        (AssetSelection.assets("era5_land_monthly"), tags),
    ):
        assert materialize(EVERYTHING, selection=selection, resources=resources, instance=MONTHS, tags=run_tags).success
    result = run_dbt(["build", "--select", *HISTORY], config.lake_root, config.warehouse_path, root)
    assert result.returncode == 0, result.stdout[-3000:]
    shutil.copytree(root / "data", root / "pristine")
    return root


@pytest.fixture
def lake(built):
    """The built lake and warehouse, as built: restored in place (the warehouse's views name
    the lake's absolute path, so a copy elsewhere would still read the original)."""
    shutil.rmtree(built / "data")
    shutil.copytree(built / "pristine", built / "data")
    return built


def _mart(config) -> pl.DataFrame:
    with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
        return pl.from_arrow(con.sql("select * from marts.fct_band_month_features order by all").to_arrow_table())


def _run_month(config, selection, month: str, resources=None):
    """One monthly partition of `selection`, as Dagster runs it; failures are returned, not raised."""
    return materialize(
        EVERYTHING,
        instance=MONTHS,
        selection=selection,
        resources=resources or build_resources(config),
        partition_key=month,
        raise_on_error=False,
    )


def _error_text(result) -> str:
    return "\n".join(step_failures(result).values())


def test_a_duplicated_raw_row_is_refused_not_summed(lake):
    config = _config(lake)
    folder = config.lake_root / "raw" / "era5_land_monthly"
    shutil.copy(folder / "2001-03.parquet", folder / "2001-03 (again).parquet")  # a month delivered twice
    before = _mart(config)

    # dbt from the command line: the raw-key test fails and everything downstream is skipped
    cli = run_dbt(["build", "--select", *HISTORY], config.lake_root, config.warehouse_path, lake)
    assert cli.returncode != 0
    assert "Failure in test stg_era5_land__monthly__no_raw_row_delivered_twice" in cli.stdout
    assert "SKIP relation marts.fct_band_month_features" in cli.stdout

    # a monthly partition run in Dagster (whose dbt selection holds only the mart) is refused too,
    # naming band, month and both files
    run = _run_month(config, AssetSelection.assets("fct_band_month_features", "trained_on_history"), "2001-03-01")
    assert not run.success
    error = _error_text(run)
    assert "stg_era5_land__monthly refuses duplicated raw rows (6 key(s) of (band, month, date)" in error
    assert "band 0, month 2001-03-01, date 2001-03-01, 2 rows in" in error
    assert f"{folder / '2001-03 (again).parquet'}, {folder / '2001-03.parquet'}" in error
    materialized = {e.asset_key.to_user_string() for e in run.get_asset_materialization_events()}
    assert materialized == set()

    # the mart was neither doubled nor touched
    assert _mart(config).equals(before)


def test_a_monthly_run_replaces_every_row_of_its_window(lake):
    config = _config(lake)
    path = config.lake_root / "raw" / "era5_land_monthly" / "2001-04.parquet"
    pl.read_parquet(path).filter(pl.col("band") != 3).write_parquet(path)  # band 3 vanished from the source
    before = _mart(config)
    assert before.filter(pl.col("month") == dt.date(2001, 4, 1)).height == 6

    run = _run_month(config, AssetSelection.assets("fct_band_month_features", "trained_on_history"), "2001-04-01")
    after = _mart(config)
    april = after.filter(pl.col("month") == dt.date(2001, 4, 1))
    assert sorted(april["band"].to_list()) == [0, 1, 2, 4, 5]  # the vanished row is gone from the mart
    others = pl.col("month") != dt.date(2001, 4, 1)
    assert after.filter(others).equals(before.filter(others))  # outside the window nothing changed

    checks = {e.check_name: e for e in run.get_asset_check_evaluations()}
    six_bands = checks["gx_six_bands_per_month"]  # blocking
    assert not six_bands.passed
    rows = six_bands.metadata["failures"].value[0]["rows"]
    assert rows == [{"month": "2001-04", "n_bands": 5}]
    assert not checks["six_bands_in_every_month_of_the_run_window"].passed  # the dbt test saw it too
    materialized = {e.asset_key.to_user_string() for e in run.get_asset_materialization_events()}
    assert "fct_band_month_features" in materialized and "trained_on_history" not in materialized


HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1], read_only=True)
    con.execute("select count(*) from raw.era5_land_monthly").fetchone()
    print("reading", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def _reader(warehouse, seconds):
    """Another process with the warehouse open read-only, as the README's query or a notebook."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(warehouse), str(seconds)], stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"reading"
    return process


def test_a_landed_month_shows_in_the_raw_view_and_dbt_waits_for_a_reader(lake):
    config = _config(lake, latest="2001-07")
    warehouse_bytes = config.warehouse_path.read_bytes()
    resources = build_resources(config)
    reader = _reader(config.warehouse_path, seconds=120)  # raw assets do not care: they never open it
    try:
        assert _run_month(config, ["era5_land_monthly"], "2001-07-01", resources).success
    finally:
        reader.kill()
        reader.wait()
    assert config.warehouse_path.read_bytes() == warehouse_bytes  # landing wrote nothing to the warehouse
    with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
        # the view is a glob defined by dbt: the new month is visible without being defined again
        months = con.execute("select count(distinct month) from raw.era5_land_monthly").fetchone()[0]
    assert months == 7

    reader = _reader(config.warehouse_path, seconds=2)  # lets go within the wait
    try:
        run = _run_month(config, ["fct_band_month_features"], "2001-07-01", resources)
    finally:
        reader.kill()
        reader.wait()
    assert run.success
    assert _mart(config).filter(pl.col("month") == dt.date(2001, 7, 1)).height == 6


def test_dbt_gives_up_on_a_reader_that_holds_on_and_names_it(lake):
    config = _config(lake, **{settings.ENV_WAREHOUSE_LOCK_WAIT: "1"})
    reader = _reader(config.warehouse_path, seconds=120)
    try:
        run = _run_month(config, ["fct_band_month_features"], "2001-06-01")
    finally:
        reader.kill()
        reader.wait()
    assert not run.success
    error = _error_text(run)
    assert f"is locked by PID {reader.pid} (" in error and "import sys, time, duckdb" in error
    assert "PERMAFROST_WAREHOUSE_LOCK_WAIT_SECONDS" in error
