"""Earth Engine connectors: ERA5-Land (MONTHLY_AGGR or DAILY_AGGR) and OpenLandMap soil.

Reductions run server-side: each image is multiplied by `ee.Image.pixelArea()` and summed over
each band's rectangle with `ee.Reducer.sum()` (which weights a pixel by the fraction of it the
rectangle covers), beside the summed area of the pixels that hold data (`image.mask()` x pixel
area, so the ocean that ERA5-Land masks carries no weight). Band mean = sum(value x area) /
sum(area): an area-weighted mean over land, never the first pixel. Results come back as tables
(`ee.data.computeFeatures` with the PANDAS_DATAFRAME format) in chunks under the documented
limits (5000 elements, 10 MB); a "too large" or memory error halves the chunk; "Too many
concurrent aggregations", quota and rate-limit errors are retried with exponential backoff (tenacity);
any other error stops with the server's text. `ee` is imported inside the functions (heavy).

No credential (key, token, key-file path or content) is logged or put in an error.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import tenacity

from sources import catalog
from sources.base import SourceError, published_months
from sources.config import ERA5_LAND_DAILY, MISSING_CREDENTIALS, EarthEngineAuth, EarthEngineRequests
from sources.validation import validate_reanalysis

LOG = logging.getLogger(__name__)

TRANSIENT = ("too many concurrent aggregations", "quota", "rate limit", "too many requests", "resource exhausted")
TOO_LARGE = ("computed value is too large", "too large", "memory limit", "out of memory", "payload size exceeds")
AREA_SUFFIX = "__area"
TIME_PROPERTY = "time_start"
# Bytes of one returned row per value (a property name, a float printed by the server, JSON).
BYTES_PER_VALUE = 96


def _text(error: BaseException) -> str:
    """The error's text on one line (the server's messages come with blank lines)."""
    return " ".join(str(error).split()) or type(error).__name__


def is_transient(text: str) -> bool:
    lower = text.lower()
    return any(marker in lower for marker in TRANSIENT)


def is_too_large(text: str) -> bool:
    lower = text.lower()
    return any(marker in lower for marker in TOO_LARGE)


class EarthEngineClient:
    """One authenticated session: retries, backoff and chunked table requests."""

    def __init__(
        self,
        auth: EarthEngineAuth,
        requests: EarthEngineRequests,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ):
        self.auth = auth
        self.requests = requests
        self.sleep = sleep
        self._jitter = random.Random(seed)
        self.ee = self._initialize()

    def _scrub(self, text: str) -> str:
        """The server's or library's text without anything that names a credential."""
        for secret in (self.auth.key_file, self.auth.service_account):
            if secret:
                text = text.replace(str(secret), "<redacted>")
                text = text.replace(Path(str(secret)).name, "<redacted>")
        return text

    def _initialize(self):
        if not self.auth.configured:
            raise SourceError(MISSING_CREDENTIALS)
        import ee

        try:
            if self.auth.service_account:
                if not Path(self.auth.key_file).is_file():
                    raise SourceError(
                        "Earth Engine: the service account's key file (earth_engine.key_file) does not exist or "
                        f"is not a file. {MISSING_CREDENTIALS}"
                    )
                credentials = ee.ServiceAccountCredentials(self.auth.service_account, str(self.auth.key_file))
                ee.Initialize(credentials=credentials, project=self.auth.project)
            else:
                ee.Initialize(project=self.auth.project)
        except SourceError:
            raise
        except Exception as error:  # ee.EEException, google.auth errors, a malformed key file
            raise SourceError(
                f"Earth Engine could not authenticate ({self._scrub(_text(error))}). {MISSING_CREDENTIALS}"
            ) from None
        return ee

    def call(self, what: str, request: Callable[[], object]):
        """`request()` with retries on transient refusals; other errors propagate."""
        attempts = self.requests.max_attempts

        def refusal(error: BaseException) -> str:
            return self._scrub(_text(error))

        def log_retry(state: tenacity.RetryCallState) -> None:
            text = refusal(state.outcome.exception())
            delay = state.next_action.sleep
            LOG.warning(
                "%s: %s; retrying in %.1f s (attempt %d of %d)", what, text, delay, state.attempt_number + 1, attempts
            )

        def give_up(state: tenacity.RetryCallState):
            text = refusal(state.outcome.exception())
            raise SourceError(f"{what}: Earth Engine still refuses after {attempts} attempts: {text}") from None

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda error: isinstance(error, self.ee.EEException) and is_transient(refusal(error))
            ),
            stop=tenacity.stop_after_attempt(attempts),
            wait=self._backoff,
            sleep=self.sleep,
            before_sleep=log_retry,
            retry_error_callback=give_up,
        )
        return retrying(request)

    def _backoff(self, state: tenacity.RetryCallState) -> float:
        """Seconds before the next attempt: backoff x 2^(attempt - 1), capped, stretched by up to 25 %."""
        if state.attempt_number >= self.requests.max_attempts:
            # tenacity asks before it decides to stop: giving up draws no jitter, so the
            # client's seeded sequence of delays goes on unchanged
            return 0.0
        doubling = tenacity.wait_exponential(
            multiplier=self.requests.backoff_seconds, max=self.requests.max_backoff_seconds
        )
        return doubling(state) * (1.0 + 0.25 * self._jitter.random())

    def get_info(self, what: str, computed):
        try:
            return self.call(what, computed.getInfo)
        except self.ee.EEException as error:
            raise SourceError(f"{what}: Earth Engine failed: {self._scrub(_text(error))}") from None

    def chunk_size(self, rows_per_item: int, values_per_row: int) -> int:
        """Items per request so that rows stay under max_elements and bytes under max_payload_bytes."""
        by_rows = self.requests.max_elements // rows_per_item
        by_bytes = self.requests.max_payload_bytes // (rows_per_item * values_per_row * BYTES_PER_VALUE)
        size = min(by_rows, by_bytes)
        if size < 1:
            raise SourceError(
                f"Earth Engine: one item ({rows_per_item} rows of {values_per_row} values) exceeds the request limits"
            )
        return size

    def compute_table(
        self, what: str, items: list, expression: Callable[[list], object], rows_per_item: int, values_per_row: int
    ):
        """Concatenated pandas tables of `expression(chunk)` over chunks of `items`."""
        import pandas as pd

        size = self.chunk_size(rows_per_item, values_per_row)
        pending = [items[i : i + size] for i in range(0, len(items), size)]
        tables = []
        while pending:
            chunk = pending.pop(0)
            label = f"{what} [{chunk[0]}..{chunk[-1]}]" if len(chunk) > 1 else f"{what} [{chunk[0]}]"
            params = {"expression": expression(chunk), "fileFormat": "PANDAS_DATAFRAME"}
            try:
                tables.append(self.call(label, lambda params=params: self.ee.data.computeFeatures(params)))
            except self.ee.EEException as error:
                text = self._scrub(_text(error))
                if is_too_large(text) and len(chunk) > 1:
                    half = len(chunk) // 2
                    LOG.warning("%s: %s; splitting into requests of %d and %d", label, text, half, len(chunk) - half)
                    pending[:0] = [chunk[:half], chunk[half:]]
                    continue
                raise SourceError(f"{label}: Earth Engine failed: {text}") from None
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


# --- shared server-side pieces ----------------------------------------------------------------


def band_regions(ee):
    """The six bands as planar lat/lon rectangles (edges along parallels and meridians)."""
    return ee.FeatureCollection(
        [
            ee.Feature(
                ee.Geometry.Rectangle([catalog.LON_WEST, band.south, catalog.LON_EAST, band.north], None, False),
                {"band": band.index},
            )
            for band in catalog.BANDS
        ]
    )


def area_weighted_sums(ee, image, names: list[str], regions, scale: float):
    """Per band region: sum(value x pixel area) of each band, and sum(pixel area) where it has data."""
    image = image.select(names)
    area = ee.Image.pixelArea()
    weighted = image.multiply(area)
    areas = image.mask().multiply(area).rename([name + AREA_SUFFIX for name in names])
    return weighted.addBands(areas).reduceRegions(collection=regions, reducer=ee.Reducer.sum(), scale=scale)


def band_means_from_sums(table, names: list[str], where: str) -> dict[str, np.ndarray]:
    """mean = sum(value x area) / sum(area) per returned row; a band without data is named."""
    means = {}
    for name in names:
        if name not in table.columns or name + AREA_SUFFIX not in table.columns:
            raise SourceError(f"{where}: variable {name} is missing from Earth Engine's answer")
        area = table[name + AREA_SUFFIX].to_numpy(dtype=float)
        total = table[name].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            means[name] = np.where(area > 0, total / area, np.nan)
    return means


def _utc_date(milliseconds: float) -> dt.date:
    return dt.datetime.fromtimestamp(float(milliseconds) / 1000.0, tz=dt.UTC).date()


def _runs(months: list[dt.date]) -> list[list[dt.date]]:
    """Consecutive months grouped, so each request filters one date range."""
    runs: list[list[dt.date]] = []
    for month in months:
        if runs and catalog.add_months(runs[-1][-1], 1) == month:
            runs[-1].append(month)
        else:
            runs.append([month])
    return runs


# --- ERA5-Land ---------------------------------------------------------------------------------


class EarthEngineReanalysisSource:
    """ERA5-Land band means from `ECMWF/ERA5_LAND/MONTHLY_AGGR` (or `DAILY_AGGR`: one row per day,
    summed to months in staging). `_sum` bands are totals (monthly, or daily), fluxes positive
    downwards, as in the raw schema."""

    def __init__(self, config, auth: EarthEngineAuth, client: EarthEngineClient | None = None):
        self.config = config
        self.auth = auth
        self.collection = config.collection
        self.daily = config.collection == ERA5_LAND_DAILY
        self.time_step = "day" if self.daily else "month"
        self.name = f"earth_engine {config.collection}"
        self._client = client

    @property
    def client(self) -> EarthEngineClient:
        if self._client is None:
            self._client = EarthEngineClient(self.auth, self.config.requests)
        return self._client

    def latest_month(self) -> dt.date:
        """The newest month the collection holds (for DAILY_AGGR: the newest complete month)."""
        ee = self.client.ee
        newest = self.client.get_info(
            f"{self.collection} newest image", ee.ImageCollection(self.collection).aggregate_max("system:time_start")
        )
        if newest is None:
            raise SourceError(f"{self.name}: the collection has no image")
        last = _utc_date(newest)
        month = catalog.month_start(last)
        if self.daily and last.day != catalog.days_in_month(month):
            month = catalog.add_months(month, -1)
        return month

    def _expression(self, chunk: list[dt.date]):
        ee = self.client.ee
        regions = band_regions(ee)
        names = list(catalog.ERA5_LAND_BANDS)
        start, end = chunk[0], catalog.add_months(chunk[-1], 1)

        def reduce(image):
            sums = area_weighted_sums(ee, image, names, regions, self.config.scale_m)
            return sums.map(lambda feature: feature.set(TIME_PROPERTY, image.get("system:time_start")))

        properties = ["band", TIME_PROPERTY, *names, *[n + AREA_SUFFIX for n in names]]
        collection = ee.ImageCollection(self.collection).filterDate(start.isoformat(), end.isoformat())
        return collection.map(reduce).flatten().select(properties, None, False)

    def read_months(self, months: list[dt.date]) -> pl.DataFrame:
        wanted = published_months(self.name, months, self.latest_month())
        names = list(catalog.ERA5_LAND_BANDS)
        rows_per_month = catalog.N_BANDS * (31 if self.daily else 1)
        tables = []
        for run in _runs(wanted):
            tables.append(
                self.client.compute_table(self.name, run, self._expression, rows_per_month, 2 * len(names) + 2)
            )
        import pandas as pd

        table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
        where = f"{self.name} {wanted[0]:%Y-%m}..{wanted[-1]:%Y-%m}" if wanted else self.name
        if table.empty:
            raise SourceError(f"{where}: Earth Engine returned no rows (month {wanted[0]:%Y-%m} is missing)")
        for column in ("band", TIME_PROPERTY):
            if column not in table.columns:
                raise SourceError(f"{where}: Earth Engine's answer has no {column!r} column")
        dates = [_utc_date(ms) for ms in table[TIME_PROPERTY]]
        means = band_means_from_sums(table, names, where)
        frame = pl.DataFrame(
            {
                "band": pl.Series(table["band"].to_numpy(), dtype=pl.Int32),
                "month": pl.Series([catalog.month_start(d) for d in dates], dtype=pl.Date),
                "date": pl.Series(dates, dtype=pl.Date),
                **{name: pl.Series(name, means[name], dtype=pl.Float64) for name in names},
            }
        )
        return validate_reanalysis(frame, wanted, where, self.time_step)


# --- OpenLandMap -------------------------------------------------------------------------------


def read_openlandmap_earth_engine(client: EarthEngineClient, scale_m: float) -> pl.DataFrame:
    """Bulk density and organic carbon per band and depth (b0..b200), stored units, area-weighted."""
    ee = client.ee
    names = list(catalog.OPENLANDMAP_DEPTH_COLUMNS)
    products = list(catalog.OPENLANDMAP_PRODUCTS)

    def expression(chunk: list[str]):
        regions = band_regions(ee)
        collections = [
            area_weighted_sums(ee, ee.Image(catalog.OPENLANDMAP_PRODUCTS[p]["asset"]), names, regions, scale_m).map(
                lambda feature, p=p: feature.set("property", p)
            )
            for p in chunk
        ]
        properties = ["band", "property", *names, *[n + AREA_SUFFIX for n in names]]
        return ee.FeatureCollection(collections).flatten().select(properties, None, False)

    table = client.compute_table("OpenLandMap", products, expression, catalog.N_BANDS, 2 * len(names) + 2)
    where = "earth_engine OpenLandMap"
    means = band_means_from_sums(table, names, where)
    rows = pl.DataFrame(
        {
            "band": pl.Series(table["band"].to_numpy(), dtype=pl.Int32),
            "property": pl.Series(table["property"].astype(str).to_list(), dtype=pl.Utf8),
            **{name: pl.Series(name, means[name], dtype=pl.Float64) for name in names},
        }
    )
    return rows.with_columns(
        pl.col("property")
        .replace_strict({p: str(v["asset"]) for p, v in catalog.OPENLANDMAP_PRODUCTS.items()})
        .alias("asset"),
        pl.col("property")
        .replace_strict({p: str(v["stored_unit"]) for p, v in catalog.OPENLANDMAP_PRODUCTS.items()})
        .alias("stored_unit"),
    ).select("band", "property", "asset", "stored_unit", *names)
