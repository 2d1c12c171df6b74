"""The connectors inside Dagster: no credential in logs, metadata or run config; DAILY_AGGR rows
aggregated to months by dbt staging; the sensor's newest month asked of every reanalysis source."""

import datetime as dt
import json
import logging

import duckdb
import fake_ee
import polars as pl
import pytest
from dagster import materialize
from dbt_helpers import run_dbt
from generated_files import write_cds_netcdf
from instances import instance_knowing_months

from assets import raw
from dagster_project import settings
from dagster_project.resources import SourcesResource, build_resources
from sources import catalog

SERVICE_ACCOUNT = "lake-writer@permafrost-test.iam.gserviceaccount.com"
KEY_CONTENT = json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkq"})
RANGE = {"dagster/asset_partition_range_start": "2021-01-01", "dagster/asset_partition_range_end": "2021-02-01"}


@pytest.fixture
def earth_engine_lake(tmp_path, monkeypatch):
    server = fake_ee.make_server()
    fake_ee.install(monkeypatch, server)
    key = tmp_path / "credentials" / "ee-service-account-key.json"
    key.parent.mkdir()
    key.write_text(KEY_CONTENT)
    server.service_accounts[SERVICE_ACCOUNT] = KEY_CONTENT
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text("reanalysis:\n  kind: earth_engine\n  collection: ECMWF/ERA5_LAND/DAILY_AGGR\n")
    env = {
        settings.ENV_LAKE_ROOT: str(tmp_path / "data"),
        settings.ENV_SOURCES_FILE: str(sources_file),
        "PERMAFROST_EE_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
        "PERMAFROST_EE_KEY_FILE": str(key),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # EnvVar resolves from the process environment at run time
    return settings.from_environment(env), server, key, tmp_path


def test_no_credential_in_logs_metadata_or_run_config(earth_engine_lake, caplog):
    config, server, key, _ = earth_engine_lake
    instance = instance_knowing_months()
    caplog.set_level(logging.DEBUG)
    result = materialize([raw.era5_land_monthly], resources=build_resources(config), instance=instance, tags=RANGE)
    assert result.success
    assert server.initialized[-1]["service_account"] is True
    recorded = [
        entry.to_json() if hasattr(entry, "to_json") else str(entry) for entry in instance.all_logs(result.run_id)
    ]
    recorded.append(json.dumps(instance.get_run_by_id(result.run_id).run_config, default=str))
    recorded.append(caplog.text)
    for event in result.get_asset_materialization_events():
        recorded.append(str(event.materialization.metadata))
    everything = "\n".join(recorded)
    assert "earth_engine ECMWF/ERA5_LAND/DAILY_AGGR" in everything  # the logs are there, and say what ran
    for secret in (str(key), key.name, "MIIEvQIBADANBgkq", "BEGIN PRIVATE KEY", SERVICE_ACCOUNT):
        assert secret not in everything, secret


def test_daily_rows_are_summed_to_months_in_staging(earth_engine_lake):
    config, _, _, tmp_path = earth_engine_lake
    instance = instance_knowing_months()
    assert materialize(
        [raw.era5_land_monthly], resources=build_resources(config), instance=instance, tags=RANGE
    ).success
    daily = pl.read_parquet(config.lake_root / "raw" / "era5_land_monthly" / "2021-02.parquet")
    assert daily.height == 28 * 6 and daily["date"].n_unique() == 28
    done = run_dbt(["run", "--select", "stg_era5_land__monthly"], config.lake_root, config.warehouse_path, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
        staged = pl.from_arrow(
            con.sql(
                "select * from staging.stg_era5_land__monthly where month = date '2021-02-01' order by band"
            ).to_arrow_table()
        )
    expected = (
        daily.group_by("band")
        .agg(
            pl.col("total_precipitation_sum").sum(),
            pl.col("surface_latent_heat_flux_sum").sum(),
            (pl.col("temperature_2m").mean() - 273.15).alias("t_air"),
        )
        .sort("band")
    )
    assert staged["n_source_rows"].to_list() == [28] * 6
    assert staged["p_total"].to_list() == pytest.approx(expected["total_precipitation_sum"].to_list(), rel=1e-12)
    assert staged["q_latent"].to_list() == pytest.approx(expected["surface_latent_heat_flux_sum"].to_list(), rel=1e-12)
    assert staged["t_air"].to_list() == pytest.approx(expected["t_air"].to_list(), rel=1e-12)


def test_the_sensor_asks_every_reanalysis_source_for_its_newest_month(earth_engine_lake, monkeypatch):
    config, _, key, tmp_path = earth_engine_lake
    earth_engine = SourcesResource(
        config_file=str(config.sources_file), ee_service_account=SERVICE_ACCOUNT, ee_key_file=str(key)
    )
    assert earth_engine.latest_published_month() == dt.date(2021, 2, 1)  # daily data end 2021-03-15
    cds_file = write_cds_netcdf(
        tmp_path / "era5_land.nc", catalog.month_range(dt.date(2022, 1, 1), dt.date(2022, 5, 1))
    )
    (tmp_path / "cds.yaml").write_text(f"reanalysis:\n  kind: cds\n  paths: [{cds_file}]\n")
    assert SourcesResource(config_file=str(tmp_path / "cds.yaml")).latest_published_month() == dt.date(2022, 5, 1)
    table = tmp_path / "era5_land_bands.csv"
    demo = (
        SourcesResource(demo_latest_month="2003-04")
        .reanalysis()
        .read_months(catalog.month_range(dt.date(2003, 1, 1), dt.date(2003, 4, 1)))
    )
    demo.write_csv(table)
    (tmp_path / "table.yaml").write_text(f"reanalysis:\n  kind: band_table\n  path: {table}\n")
    assert SourcesResource(config_file=str(tmp_path / "table.yaml")).latest_published_month() == dt.date(2003, 4, 1)
    assert SourcesResource(demo_latest_month="2010-06").latest_published_month() == dt.date(2010, 6, 1)
