"""Raw assets on the demo source: atomic, idempotent, only published months, clear errors."""

import datetime as dt
import subprocess
import sys

import duckdb
import polars as pl
import pytest
from dagster import materialize
from error_chain import error_text

from assets import raw
from sources.demo import DemoReanalysisSource

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _month_rows(lake_root, month: str) -> int:
    """Rows of `month` as every reader of the lake sees them (DuckDB's glob, hidden files included)."""
    glob = lake_root / "raw" / "era5_land_monthly" / "*.parquet"
    return duckdb.execute(
        f"select count(*) from read_parquet('{glob}') where month = cast(? as date)", [month]
    ).fetchone()[0]


def test_partition_materialized_twice_holds_its_rows_once(resources, lake_settings, instance):
    for _ in range(2):
        result = materialize(
            [raw.era5_land_monthly], resources=resources, instance=instance, partition_key="2002-05-01"
        )
        assert result.success
    files = sorted((lake_settings.lake_root / "raw" / "era5_land_monthly").glob("*"))
    assert [f.name for f in files] == ["2002-05.parquet"]
    frame = pl.read_parquet(files[0])
    assert frame.height == 6
    assert sorted(frame["band"].to_list()) == list(range(6))
    assert _month_rows(lake_settings.lake_root, "2002-05-01") == 6
    assert not lake_settings.warehouse_path.exists()  # landing never opens the warehouse


def test_a_range_lands_one_file_per_month_in_one_run(resources, lake_settings, instance):
    result = materialize(
        [raw.era5_land_monthly],
        resources=resources,
        instance=instance,
        tags={RANGE_START: "2001-01-01", RANGE_END: "2001-12-01"},
    )
    assert result.success
    files = sorted((lake_settings.lake_root / "raw" / "era5_land_monthly").glob("*.parquet"))
    assert len(files) == 12
    events = result.get_asset_materialization_events()
    assert len(events) == 12  # one materialization per month partition
    materialization = events[0].materialization
    assert materialization.metadata["rows"].value == 72
    assert materialization.metadata["months_covered"].value == "2001-01..2001-12"
    schema = materialization.metadata["dagster/column_schema"].schema
    units = {c.name: c.description for c in schema.columns}
    assert units["temperature_2m"] == "K" and units["total_precipitation_sum"] == "m"


def test_unpublished_month_is_refused_and_never_written(resources, lake_settings, months_instance):
    # registered (say, by a source that later withdrew it) but not published by this source
    instance = months_instance("2004-01")
    with pytest.raises(Exception) as error:
        materialize([raw.era5_land_monthly], resources=resources, instance=instance, partition_key="2004-01-01")
    assert "2004-01 is not published yet (newest published month: 2003-12)" in error_text(error.value)
    assert not (lake_settings.lake_root / "raw" / "era5_land_monthly").exists()


def test_bad_month_leaves_the_lake_as_it_was(resources, lake_settings, monkeypatch, instance):
    tags = {RANGE_START: "2001-01-01", RANGE_END: "2001-03-01"}
    assert materialize([raw.era5_land_monthly], resources=resources, instance=instance, tags=tags).success
    folder = lake_settings.lake_root / "raw" / "era5_land_monthly"
    before = {f.name: f.read_bytes() for f in folder.iterdir()}

    original = DemoReanalysisSource.read_months

    def corrupted(self, months):
        frame = original(self, months)
        hit = (pl.col("band") == 3) & (pl.col("month") == dt.date(2001, 2, 1))
        return frame.with_columns(
            pl.when(hit)
            .then(float("nan"))
            .otherwise(pl.col("soil_temperature_level_2"))
            .alias("soil_temperature_level_2")
        )

    monkeypatch.setattr(DemoReanalysisSource, "read_months", corrupted)
    with pytest.raises(Exception) as error:
        materialize([raw.era5_land_monthly], resources=resources, instance=instance, tags=tags)
    assert "soil_temperature_level_2, band 3, month 2001-02: value is missing" in error_text(error.value)
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before


def test_cmip5_experiment_partition(resources, lake_settings):
    result = materialize([raw.cmip5_monthly], resources=resources, partition_key="rcp45")
    assert result.success
    frame = pl.read_parquet(lake_settings.lake_root / "raw" / "cmip5_monthly" / "rcp45.parquet")
    assert frame["experiment"].unique().to_list() == ["rcp45"]
    assert frame["calendar"].unique().to_list() == ["noleap"]
    assert frame["month"].min() == dt.date(2006, 1, 1) and frame["month"].max() == dt.date(2100, 12, 1)
    assert frame.height == 95 * 12 * 6
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["calendar"].value == "noleap"


def test_static_extracts_land_with_previews(resources, lake_settings):
    result = materialize([raw.band_lithology, raw.band_soil_properties], resources=resources)
    assert result.success
    lithology = pl.read_parquet(lake_settings.lake_root / "raw" / "band_lithology.parquet")
    assert lithology.height == 6 * 9
    soil = pl.read_parquet(lake_settings.lake_root / "raw" / "band_soil_properties.parquet")
    assert soil["band"].n_unique() == 6
    for event in result.get_asset_materialization_events():
        assert event.materialization.metadata["preview"].value.startswith("|")


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(120)
"""


def test_months_land_while_another_process_holds_the_warehouse(resources, lake_settings, instance):
    """A writer (or a notebook) holding the warehouse does not stop the raw layer, and what a
    raw run reports as materialized is exactly what it landed."""
    lake_settings.warehouse_path.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lake_settings.warehouse_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        result = materialize(
            [raw.era5_land_monthly],
            resources=resources,
            instance=instance,
            tags={RANGE_START: "2001-01-01", RANGE_END: "2001-03-01"},
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.success
    landed = sorted(p.name for p in (lake_settings.lake_root / "raw" / "era5_land_monthly").iterdir())
    recorded = sorted(e.partition for e in result.get_asset_materialization_events())
    assert landed == ["2001-01.parquet", "2001-02.parquet", "2001-03.parquet"]
    assert recorded == ["2001-01-01", "2001-02-01", "2001-03-01"]


def test_raw_assets_need_no_warehouse_slot():
    """Landing a month needs neither the warehouse lock nor a slot of its pool, so a raw backfill
    never queues behind a dbt build, a check or a dead run's slot."""
    for definition in (raw.era5_land_monthly, raw.cmip5_monthly, raw.band_lithology, raw.band_soil_properties):
        assert "warehouse" not in definition.required_resource_keys
        assert definition.op.pool is None, definition.key
