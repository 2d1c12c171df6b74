"""Earth Engine connectors through their real code path, with only the network replaced by the
fake `ee` module (tests/sources/fake_ee.py) that answers in the API's shapes and records."""

import datetime as dt
import json
import logging
import random

import fake_ee
import numpy as np
import pandas as pd
import polars as pl
import pytest
from fake_ee import LAND, LAT2, MONTHS, era5_fields, make_server
from generated_files import cds_dataset

from sources import catalog
from sources.base import NotPublishedError, SourceError
from sources.cds import ACCUMULATED, CdsReanalysisSource
from sources.config import (
    ERA5_LAND_DAILY,
    ERA5_LAND_MONTHLY,
    MISSING_CREDENTIALS,
    CdsReanalysisConfig,
    EarthEngineAuth,
    EarthEngineReanalysisConfig,
    EarthEngineRequests,
    SourcesConfigError,
    parse_sources,
)
from sources.earth_engine import EarthEngineClient, EarthEngineReanalysisSource, read_openlandmap_earth_engine


@pytest.fixture
def server(monkeypatch):
    server = make_server()
    fake_ee.install(monkeypatch, server)
    return server


def source(collection=ERA5_LAND_MONTHLY, sleeps=None, requests=None, auth=None):
    config = EarthEngineReanalysisConfig(
        kind="earth_engine", collection=collection, requests=requests or EarthEngineRequests()
    )
    auth = auth or EarthEngineAuth(project="permafrost-test")
    client = EarthEngineClient(
        auth, config.requests, sleep=(sleeps.append if sleeps is not None else lambda s: None), seed=1
    )
    return EarthEngineReanalysisSource(config, auth, client)


def expected_means(fields: dict[str, np.ndarray], server: fake_ee.Server, weighting: str) -> dict[str, np.ndarray]:
    """Band means computed here, independently of the connector: 'area' (the right answer),
    'pixel' (coverage only, what a plain mean reducer gives) or 'first' (one pixel)."""
    area = server.pixel_area()
    out = {name: np.empty(catalog.N_BANDS) for name in fields}
    for band in catalog.BANDS:
        cover = server.coverage(catalog.LON_WEST, band.south, catalog.LON_EAST, band.north) * LAND
        weight = cover * area if weighting == "area" else cover
        for name, values in fields.items():
            if weighting == "first":
                out[name][band.index] = values[tuple(np.argwhere(cover > 0)[0])]
            else:
                out[name][band.index] = (values * weight).sum() / weight.sum()
    return out


def test_band_means_are_area_weighted_over_land(server):
    frame = source().read_months([dt.date(2020, 7, 1)])
    fields = era5_fields(dt.date(2020, 7, 1))
    right = expected_means(fields, server, "area")
    plain = expected_means(fields, server, "pixel")
    first = expected_means(fields, server, "first")
    got = frame.sort("band")
    for name in catalog.ERA5_LAND_BANDS:
        np.testing.assert_allclose(got[name].to_numpy(), right[name], rtol=1e-10)
    # the weighting is visible: neither a plain mean nor the first pixel gives these values
    t2m = got["temperature_2m"].to_numpy()
    assert np.abs(t2m - plain["temperature_2m"]).max() > 1e-3
    assert np.abs(t2m - first["temperature_2m"]).min() > 0.1
    assert server.pixel_area_used >= 1
    assert set(server.reducers) == {"sum"}
    assert set(server.scales) == {11132.0}
    assert frame["date"].to_list() == frame["month"].to_list()


def test_newest_month_is_read_from_the_collection_at_run_time(server):
    assert source().latest_month() == dt.date(2021, 6, 1)
    # the daily collection ends 2021-03-15: its newest complete month is February
    assert source(ERA5_LAND_DAILY).latest_month() == dt.date(2021, 2, 1)
    server.collections[ERA5_LAND_MONTHLY].append(
        fake_ee.image_from(era5_fields(dt.date(2021, 7, 1)), LAND, fake_ee.ms(dt.date(2021, 7, 1)))
    )
    assert source().latest_month() == dt.date(2021, 7, 1)
    with pytest.raises(NotPublishedError, match="2021-08 is not published yet"):
        source().read_months([dt.date(2021, 8, 1)])


def test_daily_rows_carry_their_day_and_daily_totals(server):
    frame = source(ERA5_LAND_DAILY).read_months([dt.date(2021, 2, 1)])
    assert frame.height == 28 * catalog.N_BANDS
    assert frame["date"].n_unique() == 28 and frame["month"].unique().to_list() == [dt.date(2021, 2, 1)]
    day = frame.filter(pl.col("date") == dt.date(2021, 2, 10)).sort("band")
    right = expected_means(era5_fields(dt.date(2021, 2, 10), daily=True), server, "area")
    np.testing.assert_allclose(day["total_precipitation_sum"].to_numpy(), right["total_precipitation_sum"], rtol=1e-10)


def test_requests_stay_under_the_limits_and_shrink_when_too_large(server):
    whole = source().read_months(MONTHS)
    assert [r["outcome"] for r in server.requests] == ["ok"]
    assert server.requests[0]["rows"] == len(MONTHS) * 6 <= fake_ee.MAX_ELEMENTS

    server.requests.clear()
    server.max_rows = 30  # the server refuses more than 5 months at once
    chunked = source().read_months(MONTHS)
    outcomes = [r["outcome"] for r in server.requests]
    assert "too large" in outcomes
    assert all(r["rows"] <= 30 for r in server.requests if r["outcome"] == "ok")
    assert sum(r["rows"] for r in server.requests if r["outcome"] == "ok") == len(MONTHS) * 6
    assert chunked.equals(whole)

    # a configured element limit splits before asking: no request over it
    server.requests.clear()
    server.max_rows = None
    small = source(ERA5_LAND_DAILY, requests=EarthEngineRequests(max_elements=200)).read_months(
        [dt.date(2021, 1, 1), dt.date(2021, 2, 1)]
    )
    assert small.height == (31 + 28) * 6
    assert len(server.requests) == 2 and all(r["rows"] <= 200 and r["outcome"] == "ok" for r in server.requests)


def test_chunks_respect_the_documented_limits_by_default(server):
    client = source().client
    values = 2 * len(catalog.ERA5_LAND_BANDS) + 2
    monthly, daily = client.chunk_size(6, values), client.chunk_size(6 * 31, values)
    assert monthly * 6 <= 5000 and daily * 6 * 31 <= 5000
    # the payload estimate binds for daily rows: 186 rows x 34 values per month
    assert daily * 6 * 31 * values * 96 <= 10 * 1024 * 1024
    server.requests.clear()
    source(ERA5_LAND_DAILY).read_months([dt.date(2021, 1, 1), dt.date(2021, 2, 1)])
    assert all(r["bytes"] <= fake_ee.MAX_PAYLOAD_BYTES and r["rows"] <= 5000 for r in server.requests)


@pytest.mark.parametrize(
    "refusal",
    ["Too many concurrent aggregations.", "Quota exceeded: too many requests", "Earth Engine rate limit exceeded."],
)
def test_transient_refusals_are_retried_with_backoff(server, refusal):
    sleeps = []
    server.failures = [refusal, refusal, refusal]
    frame = source(sleeps=sleeps).read_months([dt.date(2020, 3, 1)])
    assert frame.height == 6
    # the newest-month query absorbed the three refusals: 2, 4, 8 s (+ up to 25 % jitter)
    assert len(sleeps) == 3
    for delay, base in zip(sleeps, (2.0, 4.0, 8.0), strict=True):
        assert base <= delay <= base * 1.25


def test_retries_give_up_after_the_configured_attempts(server):
    sleeps = []
    server.failures = ["Too many concurrent aggregations."] * 10
    with pytest.raises(SourceError, match="still refuses after 3 attempts: Too many concurrent aggregations"):
        source(sleeps=sleeps, requests=EarthEngineRequests(max_attempts=3)).latest_month()
    assert len(sleeps) == 2


def test_the_backoff_sequence_log_and_final_error(server, caplog):
    sleeps = []
    server.failures = ["Too many concurrent aggregations."] * 10
    requests = EarthEngineRequests(max_attempts=5, backoff_seconds=50.0, max_backoff_seconds=120.0)
    caplog.set_level(logging.WARNING, logger="sources.earth_engine")
    reanalysis = source(sleeps=sleeps, requests=requests)
    with pytest.raises(SourceError) as error:
        reanalysis.latest_month()
    what = f"{ERA5_LAND_MONTHLY} newest image"
    assert str(error.value) == f"{what}: Earth Engine still refuses after 5 attempts: Too many concurrent aggregations."
    assert error.value.__cause__ is None and error.value.__suppress_context__
    # doubling from 50 s, capped at 120 s, each stretched by up to 25 % from the client's seeded draws
    draws = random.Random(1)
    expected = [base * (1.0 + 0.25 * draws.random()) for base in (50.0, 100.0, 120.0, 120.0)]
    assert sleeps == expected
    assert [record.getMessage() for record in caplog.records] == [
        f"{what}: Too many concurrent aggregations.; retrying in {delay:.1f} s (attempt {attempt} of 5)"
        for attempt, delay in enumerate(expected, start=2)
    ]
    assert len(server.failures) == 5  # five requests, no sixth
    # giving up drew nothing: the client's next wait continues the same seeded sequence
    server.failures = ["Quota exceeded."]
    assert reanalysis.latest_month() == dt.date(2021, 6, 1)
    assert sleeps[4:] == [50.0 * (1.0 + 0.25 * draws.random())]


def test_other_errors_fail_at_once_with_the_servers_text(server):
    sleeps = []
    s = source(sleeps=sleeps)
    s.latest_month()
    server.failures = ["Image.reduceRegions: Geometry is not valid."]
    with pytest.raises(SourceError, match=r"Earth Engine failed: Image.reduceRegions: Geometry is not valid"):
        s.read_months([dt.date(2020, 3, 1)])
    assert sleeps == []


def test_missing_credentials_give_one_message_saying_what_to_set(server):
    with pytest.raises(SourceError) as nothing_set:
        source(auth=EarthEngineAuth())
    assert str(nothing_set.value) == MISSING_CREDENTIALS
    assert "PERMAFROST_EE_PROJECT" in str(nothing_set.value) and "earthengine authenticate" in str(nothing_set.value)
    server.has_stored_credentials = False  # a project, but `earthengine authenticate` never ran
    with pytest.raises(SourceError, match="could not authenticate .*earthengine authenticate") as no_token:
        source()
    assert MISSING_CREDENTIALS in str(no_token.value)
    # the same mistake in the sources file is refused when it is loaded, naming the key
    with pytest.raises(SourcesConfigError, match="earth_engine: Earth Engine credentials are not set"):
        parse_sources({"reanalysis": {"kind": "earth_engine"}}, "sources.yaml")


def test_a_service_account_key_never_shows_in_errors(server, tmp_path):
    key = tmp_path / "secret-service-key.json"
    key.write_text(json.dumps({"private_key": "-----BEGIN PRIVATE KEY-----MIIEtopsecret"}))
    server.service_accounts["lake@permafrost.iam.gserviceaccount.com"] = key.read_text()
    auth = EarthEngineAuth(service_account="lake@permafrost.iam.gserviceaccount.com", key_file=key)
    assert source(auth=auth).latest_month() == dt.date(2021, 6, 1)
    assert server.initialized[-1] == {"project": None, "service_account": True}
    assert "secret-service-key" not in repr(auth) and "secret-service-key" not in str(auth)
    server.service_accounts["lake@permafrost.iam.gserviceaccount.com"] = "another key"
    with pytest.raises(SourceError) as refused:
        source(auth=auth)
    text = str(refused.value)
    assert "Invalid JWT Signature" in text
    assert str(key) not in text and key.name not in text and "topsecret" not in text
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_openlandmap_is_an_area_weighted_mean_in_stored_units(server):
    client = source().client
    frame = read_openlandmap_earth_engine(client, scale_m=1000.0)
    assert frame.height == 12
    assert set(server.scales) == {1000.0}
    for product, spec in catalog.OPENLANDMAP_PRODUCTS.items():
        rows = frame.filter(pl.col("property") == product).sort("band")
        assert rows["asset"].unique().to_list() == [spec["asset"]]
        assert rows["stored_unit"].unique().to_list() == [spec["stored_unit"]]
        image = server.assets[str(spec["asset"])]
        fields = {name: np.nan_to_num(values) for name, (values, _) in image.bands.items()}  # ocean: no weight
        right = expected_means(fields, server, "area")
        for depth in catalog.OPENLANDMAP_DEPTH_COLUMNS:
            np.testing.assert_allclose(rows[depth].to_numpy(), right[depth], rtol=1e-10)


def test_cds_monthly_means_times_days_equal_earth_engine_monthly_totals(server, tmp_path):
    """CDS accumulations are means of daily totals (per day); MONTHLY_AGGR `_sum` bands are
    monthly totals. From the same daily truth, both connectors land the same monthly totals."""
    months = [dt.date(2020, 2, 1), dt.date(2021, 2, 1), dt.date(2021, 3, 1)]  # 29, 28, 31 days
    rng = np.random.default_rng(3)
    daily = {m: {name: rng.uniform(0.5, 1.5, catalog.days_in_month(m)) for name in ACCUMULATED} for m in months}
    scale = {"tp": 0.002, "sf": 0.001, "strd": 2.0e7, "ssrd": 9.0e6, "slhf": -2.0e6, "sshf": -1.0e6}
    # Earth Engine: monthly totals (sum of the daily totals), uniform over the grid
    images = []
    for m in months:
        fields = era5_fields(m)
        for short, band_name in catalog.ERA5_LAND_CDS_NAMES.items():
            if short in ACCUMULATED:
                fields[band_name] = np.full(LAT2.shape, scale[short] * daily[m][short].sum())
        images.append(fake_ee.image_from(fields, LAND, fake_ee.ms(m)))
    server.collections[ERA5_LAND_MONTHLY] = images
    earth_engine = source().read_months(months).sort("month", "band")
    # CDS: the mean of the daily totals (per day), on a 0.1-degree-like grid of its own
    cds_fields = {
        short: np.stack([np.full((29, 63), scale[short] * daily[m][short].mean()) for m in months])
        for short in ACCUMULATED
    }
    cds_dataset(months, fields=cds_fields).to_netcdf(tmp_path / "monthly_means.nc")
    cds = CdsReanalysisSource(CdsReanalysisConfig(kind="cds", paths=[str(tmp_path / "monthly_means.nc")]))
    from_cds = cds.read_months(months).sort("month", "band")
    for short in ACCUMULATED:
        name = catalog.ERA5_LAND_CDS_NAMES[short]
        np.testing.assert_allclose(from_cds[name].to_numpy(), earth_engine[name].to_numpy(), rtol=2e-6)
    # and the factor is the days of each month: February 2020 has 29
    feb = from_cds.filter(pl.col("month") == dt.date(2020, 2, 1))["total_precipitation_sum"][0]
    assert feb == pytest.approx(29 * scale["tp"] * daily[months[0]]["tp"].mean(), rel=2e-6)


def test_table_format_is_pandas(server):
    client = source().client
    ee = client.ee
    table = client.compute_table(
        "probe", [1], lambda chunk: ee.FeatureCollection([ee.Feature(None, {"band": 0, "x": 1.0})]), 1, 2
    )
    assert isinstance(table, pd.DataFrame) and list(table.columns) == ["geo", "band", "x"]
