"""Grid mode's dbt marts on a small lake of the demo's cells (3 months): the cell mart as Parquet
partitioned by tile and year whose tiles mosaic back to the grid, (cell, month) unique, and the
band rollup equal to `Grid.band_rollup` of the same cells; a partition run's tests see its window,
and it rewrites only its window's years of the cell mart."""

import datetime as dt
import shutil
import uuid
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from dbt_helpers import run_dbt

LATEST = "2001-03"
ROLLED = ("t_air", "p_total", "r_solar", "q_latent", "w_1", "t_soil_0", "t_soil_3")


@pytest.fixture(scope="module")
def grid_lake(tmp_path_factory):
    """Raw cells, units and static extracts landed by the raw assets (grid mode), then
    `dbt build` of the marts over them (no CMIP5: not needed by these marts)."""
    from dagster import AssetSelection, materialize
    from instances import instance_knowing_months

    from dagster_project import settings
    from dagster_project.definitions import defs
    from dagster_project.resources import build_resources

    root = tmp_path_factory.mktemp("grid_dbt")
    sources = root / "sources.yaml"
    sources.write_text("reanalysis:\n  kind: demo\n  units: cell\n")
    config = settings.from_environment(
        {
            settings.ENV_LAKE_ROOT: str(root / "data"),
            settings.ENV_SOURCES_FILE: str(sources),
            settings.ENV_DEMO_LATEST_MONTH: LATEST,
        }
    )
    resources = build_resources(config)
    instance = instance_knowing_months(LATEST)
    months = {"dagster/asset_partition_range_start": "2001-01-01", "dagster/asset_partition_range_end": f"{LATEST}-01"}
    for tags, selection in (
        ({}, AssetSelection.assets("band_lithology", "band_soil_properties", "spatial_units")),
        (months, AssetSelection.assets("era5_land_monthly")),
    ):
        assert materialize(list(defs.assets), selection=selection, resources=resources, instance=instance, tags=tags)
    build = run_dbt(
        ["build", "--select", "+fct_band_rollup_month_features"], config.lake_root, config.warehouse_path, root
    )
    return config, build, root


def _read(config, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
        return pl.from_arrow(con.sql(sql).to_arrow_table())


def test_the_cell_mart_is_parquet_by_tile_and_its_tiles_mosaic_to_the_grid(grid_lake):
    from sources.simulator.grid import synthetic_grid

    config, build, _ = grid_lake
    assert build.returncode == 0, build.stdout[-3000:]
    assert "WARN=0 ERROR=0" in build.stdout
    grid = synthetic_grid().grid
    folder = Path(config.lake_root) / "marts" / "fct_cell_month_features"
    tiles = sorted(path.name for path in folder.iterdir())
    assert tiles == sorted(f"tile={tile.key}" for tile in grid.tiles)
    assert not [path for path in folder.parent.iterdir() if path.name.endswith(".tmp")]  # no temporary left
    parts = {}
    for tile in grid.tiles:
        assert [p.name for p in (folder / f"tile={tile.key}").iterdir()] == ["year=2001"]
        rows = pl.read_parquet(folder / f"tile={tile.key}" / "year=2001" / "*.parquet", hive_partitioning=False)
        assert "tile" not in rows.columns and "year" not in rows.columns  # the partitions name them
        parts[tile.key] = rows.filter(pl.col("month") == dt.date(2001, 2, 1))["unit"].sort().to_numpy()
    np.testing.assert_array_equal(grid.mosaic(parts), grid.cells)

    mart = _read(config, "select * from marts.fct_cell_month_features")
    history = _read(config, "select * from marts.fct_band_month_features")
    assert mart.columns == [*history.columns, "tile"]
    assert mart.height == history.height == 3 * grid.cells.size
    assert mart.select("unit", "month").is_unique().all()


def test_the_band_rollup_is_grid_band_rollup_of_the_same_cells(grid_lake):
    from sources.simulator.grid import synthetic_grid

    config, build, _ = grid_lake
    assert build.returncode == 0, build.stdout[-3000:]
    grid = synthetic_grid().grid
    cells = _read(config, "select * from marts.fct_cell_month_features order by month, unit")
    rollup = _read(config, "select * from marts.fct_band_rollup_month_features order by month, band")
    months = cells["month"].unique().sort().to_list()
    assert rollup.height == 6 * len(months) and rollup["band"].to_list() == list(range(6)) * len(months)
    assert (rollup["unit"] == rollup["band"]).all() and (rollup["nearest_band"] == rollup["band"]).all()
    for variable in ROLLED:
        values = cells[variable].to_numpy().reshape(len(months), grid.cells.size)
        expected = grid.band_rollup(values, variable)
        # to 1e-9, relative to fluxes of 1e8 J m-2 (the sums run in another order)
        got = rollup[variable].to_numpy().reshape(len(months), 6)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)
    assert rollup["swe"].is_null().all()  # absent in every cell: absent in every band
    static = _read(config, "select band, litho_water from intermediate.int_band_static_features_pivoted order by band")
    assert rollup.filter(pl.col("month") == months[0])["litho_water"].to_list() == static["litho_water"].to_list()


def test_a_partition_runs_tests_see_its_months_only(grid_lake):
    config, _, root = grid_lake
    with duckdb.connect(str(config.warehouse_path)) as con:  # a duplicated cell-month in January only
        con.execute(
            "create or replace table marts.fct_band_month_features as select * from marts.fct_band_month_features "
            "union all select * from marts.fct_band_month_features where month = '2001-01-01' and unit = "
            "(select min(unit) from marts.fct_band_month_features)"
        )
    select = ["--select", "fct_cell_month_features", "fct_band_rollup_month_features"]
    window = {"min_month": "2001-03-01", "max_month": "2001-04-01"}
    run = run_dbt(["build", *select, "--vars", str(window)], config.lake_root, config.warehouse_path, root)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "fct_cell_month_features__one_row_per_cell_month" in run.stdout
    assert "Done. PASS=" in run.stdout and "WARN=0" in run.stdout  # March's tests do not see January
    whole = run_dbt(["build", *select], config.lake_root, config.warehouse_path, root)
    assert "WARN 1 fct_cell_month_features__one_row_per_cell_month" in " ".join(whole.stdout.split())


def test_a_partition_run_rewrites_only_its_years_of_the_cell_mart(grid_lake, tmp_path):
    """On a copy of the lake, with a year 2000 added to the cell mart's files (2001's rows a year
    earlier): a run of March 2001 rewrites every tile's 2001 folder and leaves 2000's as they were;
    the view then holds both years."""
    config, build, root = grid_lake
    assert build.returncode == 0, build.stdout[-3000:]
    lake = tmp_path / "data"
    shutil.copytree(config.lake_root, lake)
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(config.warehouse_path, warehouse)
    folder = lake / "marts" / "fct_cell_month_features"
    tiles = sorted(folder.iterdir())
    for tile in tiles:
        # (unique: another test of this module may have duplicated a January row)
        rows = pl.read_parquet(tile / "year=2001" / "*.parquet", hive_partitioning=False).unique()
        earlier = rows.with_columns(pl.col("month").dt.offset_by("-1y"))
        (tile / "year=2000").mkdir()
        earlier.write_parquet(tile / "year=2000" / "data_0.parquet")
    before = {path: path.stat().st_mtime_ns for path in folder.rglob("*.parquet")}
    # the history mart's March changes, so the rewritten 2001 folders must show it
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "create or replace table marts.fct_band_month_features as "
            "select distinct * from marts.fct_band_month_features"
        )
        con.execute("update marts.fct_band_month_features set t_air = t_air + 100 where month = '2001-03-01'")
    window = {"min_month": "2001-03-01", "max_month": "2001-04-01"}
    run = run_dbt(
        ["run", "--select", "fct_cell_month_features", "--vars", str(window)], lake, warehouse, tmp_path / "dbt"
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert f"{len(tiles)} partition folder(s) of the run window rewritten" in run.stdout
    after = {path: path.stat().st_mtime_ns for path in folder.rglob("*.parquet")}
    kept = {p for p in before if p.parent.name == "year=2000"}
    assert kept and all(after.get(p) == before[p] for p in kept)  # 2000's files untouched
    assert all("year=2001" not in str(p) or p not in before or after[p] != before[p] for p in after)
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".tmp")]  # no temporary left
    with duckdb.connect(str(warehouse), read_only=True) as con:
        mart = pl.from_arrow(con.sql("select unit, month, year, t_air from marts.fct_cell_month_features").arrow())
        history = pl.from_arrow(con.sql("select unit, month, t_air from marts.fct_band_month_features").arrow())
    assert mart.select("unit", "month").is_unique().all()
    assert mart["year"].unique().sort().to_list() == [2000, 2001]
    march = mart.filter(pl.col("month") == dt.date(2001, 3, 1)).sort("unit")
    expected = history.filter(pl.col("month") == dt.date(2001, 3, 1)).sort("unit")
    np.testing.assert_allclose(march["t_air"].to_numpy(), expected["t_air"].to_numpy())
    assert march["t_air"].min() > 50  # the rewritten March carries the change


def test_the_cell_mart_on_an_object_store(grid_lake, s3_endpoint, tmp_path, monkeypatch):
    """The lake's raw files in a bucket of a real local S3 (moto's server on loopback) and
    `PERMAFROST_LAKE_ROOT=s3://...`: dbt reads the sources through the file system the plugin
    registers, the cell mart's tile/year folders land as objects through one batch (no staging
    left behind), its view reads them, and a window run replaces only its year's objects."""
    from upath import UPath

    config, build, _ = grid_lake
    assert build.returncode == 0, build.stdout[-3000:]
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # for s3fs here and in dbt's process
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    root = UPath(f"s3://{bucket}/lake")
    fs = root.fs
    fs.mkdir(bucket)
    fs.put(str(Path(config.lake_root) / "raw"), f"{bucket}/lake/raw", recursive=True)
    warehouse = tmp_path / "warehouse.duckdb"
    run = run_dbt(["build", "--select", "+fct_cell_month_features"], str(root), warehouse, tmp_path / "dbt")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "ERROR=0" in run.stdout
    mart = f"{bucket}/lake/marts/fct_cell_month_features"
    objects = sorted(key[len(mart) + 1 :] for key in fs.find(mart))
    local = Path(config.lake_root) / "marts" / "fct_cell_month_features"
    assert objects == sorted(p.relative_to(local).as_posix() for p in local.rglob("*.parquet"))
    assert not fs.exists(f"{bucket}/lake/.batches") or not fs.find(f"{bucket}/lake/.batches")
    history = _read(config, "select * from marts.fct_band_month_features")

    def view(sql: str) -> pl.DataFrame:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            con.register_filesystem(fs)  # a connection outside dbt needs the lake's file system
            return pl.from_arrow(con.sql(sql).arrow())

    cells = view("select * from marts.fct_cell_month_features")
    assert cells.height == history.unique(["unit", "month"]).height
    assert cells.select("unit", "month").is_unique().all()

    before = fs.find(mart)
    window = {"min_month": "2001-03-01", "max_month": "2001-04-01"}
    again = run_dbt(
        ["run", "--select", "fct_cell_month_features", "--vars", str(window)], str(root), warehouse, tmp_path / "dbt"
    )
    assert again.returncode == 0, again.stdout[-3000:]
    assert "partition folder(s) of the run window rewritten" in again.stdout
    fs.invalidate_cache()
    assert sorted(fs.find(mart)) == sorted(before)  # the same objects: 2001's replaced, no other
    assert view("select count(*) as n from marts.fct_cell_month_features")["n"][0] == cells.height
