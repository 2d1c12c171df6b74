"""A stand-in for the `earthengine-api` network boundary: the `ee` module's surface that the
connectors use, answering in the real API's shapes and recording what was asked.

The "server" holds images on a small lat/lon pixel grid. Reducers are honest about what the
real ones do: `ee.Reducer.sum()` and `ee.Reducer.mean()` weight a pixel by the fraction of it
inside the region (not by its area: `ee.Image.pixelArea()` is what brings the area in),
`ee.Reducer.first()` takes one pixel. `ee.data.computeFeatures` enforces the documented limits
(5000 elements, 10 MB) and can be scripted to fail ("Too many concurrent aggregations.",
"Computed value is too large.", ...). Install it with `install(monkeypatch, server)`.
"""

from __future__ import annotations

import datetime as dt
import json
import types
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sources import catalog
from sources.config import ERA5_LAND_DAILY, ERA5_LAND_MONTHLY

EARTH_RADIUS_M = 6371008.8
MAX_ELEMENTS = 5000
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024


class EEException(Exception):
    pass


@dataclass
class Server:
    """What the fake Earth Engine knows and what it was asked."""

    lat_edges: np.ndarray  # north to south or south to north, pixel edges (n+1)
    lon_edges: np.ndarray
    collections: dict[str, list[Image]] = field(default_factory=dict)
    assets: dict[str, Image] = field(default_factory=dict)
    has_stored_credentials: bool = True
    service_accounts: dict[str, str] = field(default_factory=dict)  # email -> key file content
    max_rows: int | None = None  # "Computed value is too large." above this many rows
    failures: list[str] = field(default_factory=list)  # scripted errors, one per network call
    # records
    requests: list[dict] = field(default_factory=list)  # computeFeatures: rows, bytes, outcome
    reducers: list[str] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    pixel_area_used: int = 0
    initialized: list[dict] = field(default_factory=list)
    network_calls: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.lat_edges.size - 1, self.lon_edges.size - 1

    def pixel_area(self) -> np.ndarray:
        """m2 per pixel on the sphere: R^2 dlon (sin lat2 - sin lat1)."""
        lat = np.deg2rad(self.lat_edges)
        lon = np.deg2rad(self.lon_edges)
        band = np.abs(np.sin(lat[1:]) - np.sin(lat[:-1]))
        return EARTH_RADIUS_M**2 * np.outer(band, np.abs(np.diff(lon)))

    def coverage(self, west: float, south: float, east: float, north: float) -> np.ndarray:
        """Fraction of each pixel inside the rectangle (planar lon/lat)."""
        lat_lo = np.minimum(self.lat_edges[:-1], self.lat_edges[1:])
        lat_hi = np.maximum(self.lat_edges[:-1], self.lat_edges[1:])
        lon_lo = np.minimum(self.lon_edges[:-1], self.lon_edges[1:])
        lon_hi = np.maximum(self.lon_edges[:-1], self.lon_edges[1:])
        lat_part = np.clip(np.minimum(lat_hi, north) - np.maximum(lat_lo, south), 0, None) / (lat_hi - lat_lo)
        lon_part = np.clip(np.minimum(lon_hi, east) - np.maximum(lon_lo, west), 0, None) / (lon_hi - lon_lo)
        return np.outer(lat_part, lon_part)

    def network(self) -> None:
        """Every call that would reach the server: scripted failures come out here."""
        self.network_calls += 1
        if self.failures:
            raise EEException(self.failures.pop(0))


SERVER: Server | None = None


def _server() -> Server:
    if SERVER is None:
        raise AssertionError("fake ee used without a server")
    return SERVER


# --- images ----------------------------------------------------------------------------------


class Image:
    def __init__(self, asset_or_bands=None, properties: dict | None = None):
        if isinstance(asset_or_bands, str):
            found = _server().assets.get(asset_or_bands)
            if found is None:
                raise EEException(f"Image.load: Image asset '{asset_or_bands}' not found.")
            self.bands, self.properties = dict(found.bands), dict(found.properties)
        else:
            # name -> (values, mask in 0..1)
            self.bands = dict(asset_or_bands or {})
            self.properties = dict(properties or {})

    @staticmethod
    def pixelArea():
        server = _server()
        server.pixel_area_used += 1
        area = server.pixel_area()
        return Image({"area": (area, np.ones_like(area))})

    def select(self, names):
        names = [names] if isinstance(names, str) else list(names)
        missing = [n for n in names if n not in self.bands]
        if missing:
            raise EEException(f"Image.select: Band pattern '{missing[0]}' did not match any bands.")
        return Image({n: self.bands[n] for n in names}, self.properties)

    def _binary(self, other, op):
        if not isinstance(other, Image):
            return Image({n: (op(v, other), m) for n, (v, m) in self.bands.items()}, self.properties)
        if len(other.bands) == 1:
            ((ov, om),) = other.bands.values()
            return Image({n: (op(v, ov), np.minimum(m, om)) for n, (v, m) in self.bands.items()}, self.properties)
        if len(other.bands) != len(self.bands):
            raise EEException("Image.multiply: images must have the same number of bands or one band")
        pairs = zip(self.bands.items(), other.bands.values(), strict=True)
        return Image({n: (op(v, ov), np.minimum(m, om)) for (n, (v, m)), (ov, om) in pairs}, self.properties)

    def multiply(self, other):
        return self._binary(other, lambda a, b: np.where(np.isfinite(a), a, 0.0) * b)

    def mask(self):
        return Image({n: (m.astype(float), np.ones_like(m, dtype=float)) for n, (v, m) in self.bands.items()})

    def updateMask(self, mask):
        ((mv, mm),) = mask.bands.values()
        return Image({n: (v, np.minimum(m, mv * mm)) for n, (v, m) in self.bands.items()}, self.properties)

    def rename(self, names):
        names = [names] if isinstance(names, str) else list(names)
        return Image(dict(zip(names, self.bands.values(), strict=True)), self.properties)

    def addBands(self, other):
        return Image({**self.bands, **other.bands}, self.properties)

    def get(self, name):
        return self.properties.get(name)

    def reduceRegions(self, collection, reducer, scale=None, crs=None, **kwargs):
        server = _server()
        server.reducers.append(reducer.name)
        server.scales.append(scale)
        features = []
        for feature in collection.features:
            west, south, east, north = feature.geometry.bounds
            cover = server.coverage(west, south, east, north)
            results = dict(feature.properties)
            for name, (values, mask) in self.bands.items():
                weight = cover * (mask > 0)
                if reducer.name == "sum":
                    results[name] = float(np.sum(np.where(weight > 0, values, 0.0) * weight))
                elif reducer.name == "mean":
                    total = weight.sum()
                    results[name] = float(np.sum(np.where(weight > 0, values, 0.0) * weight) / total) if total else None
                elif reducer.name == "first":
                    hit = np.argwhere(weight > 0)
                    results[name] = float(values[tuple(hit[0])]) if len(hit) else None
            features.append(Feature(feature.geometry, results))
        return FeatureCollection(features)


class ImageCollection:
    def __init__(self, collection_id, images=None):
        self.id = collection_id
        if images is None:
            if collection_id not in _server().collections:
                raise EEException(f"ImageCollection.load: ImageCollection asset '{collection_id}' not found.")
            images = _server().collections[collection_id]
        self.images = list(images)

    def filterDate(self, start, end):
        lo = pd.Timestamp(start, tz="UTC").value // 10**6
        hi = pd.Timestamp(end, tz="UTC").value // 10**6
        return ImageCollection(self.id, [i for i in self.images if lo <= i.properties["system:time_start"] < hi])

    def select(self, names):
        return ImageCollection(self.id, [i.select(names) for i in self.images])

    def map(self, function):
        return _Mapped([function(image) for image in self.images])

    def aggregate_max(self, name):
        values = [i.properties[name] for i in self.images]
        return _Computed(lambda: max(values) if values else None)


class _Computed:
    def __init__(self, compute):
        self.compute = compute

    def getInfo(self):
        _server().network()
        return self.compute()


class _Mapped:
    """An ImageCollection mapped to FeatureCollections: flatten() gives the features."""

    def __init__(self, items):
        self.items = items

    def flatten(self):
        return FeatureCollection([f for item in self.items for f in item.features])


# --- features --------------------------------------------------------------------------------


class _Rectangle:
    def __init__(self, coords, proj=None, geodesic=None):
        west, south, east, north = coords
        self.bounds = (west, south, east, north)
        self.geodesic = geodesic

    def to_geojson(self):
        w, s, e, n = self.bounds
        return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


class Geometry:
    Rectangle = _Rectangle


class Feature:
    def __init__(self, geometry, properties=None):
        self.geometry = geometry
        self.properties = dict(properties or {})

    def set(self, key, value=None):
        extra = key if isinstance(key, dict) else {key: value}
        return Feature(self.geometry, {**self.properties, **extra})


class FeatureCollection:
    def __init__(self, features):
        if features and isinstance(features[0], FeatureCollection):
            self.nested = list(features)
            self.features = []
        else:
            self.nested = None
            self.features = list(features)

    def flatten(self):
        if self.nested is None:
            return self
        return FeatureCollection([f for c in self.nested for f in c.features])

    def map(self, function):
        return FeatureCollection([function(f) for f in self.features])

    def select(self, properties, new_properties=None, retain_geometry=True):
        kept = [
            Feature(f.geometry if retain_geometry else None, {k: v for k, v in f.properties.items() if k in properties})
            for f in self.features
        ]
        return FeatureCollection(kept)


class Reducer:
    def __init__(self, name):
        self.name = name

    @staticmethod
    def sum():
        return Reducer("sum")

    @staticmethod
    def mean():
        return Reducer("mean")

    @staticmethod
    def first():
        return Reducer("first")


# --- session and data ------------------------------------------------------------------------

NO_CREDENTIALS = (
    "Please authorize access to your Earth Engine account by running\n\nearthengine authenticate\n\n"
    "in your command line, or ee.Authenticate() in Python, and then retry."
)


class _Credentials:
    def __init__(self, email, key_file):
        self.email = email
        self.key_file = key_file


def ServiceAccountCredentials(email, key_file=None, key_data=None):
    with open(key_file) as handle:
        content = handle.read()
    if _server().service_accounts.get(email) != content:
        raise EEException(f"invalid_grant: Invalid JWT Signature for {email} ({key_file})")
    return _Credentials(email, key_file)


def Initialize(credentials="persistent", url=None, cloud_api_key=None, http_transport=None, project=None):
    server = _server()
    if credentials in (None, "persistent") and not server.has_stored_credentials:
        raise EEException(NO_CREDENTIALS)
    server.initialized.append({"project": project, "service_account": isinstance(credentials, _Credentials)})


def _compute_features(params):
    server = _server()
    expression = params["expression"]
    if params.get("fileFormat") != "PANDAS_DATAFRAME":
        raise AssertionError("the connectors ask for PANDAS_DATAFRAME tables")
    rows = [{"geo": f.geometry.to_geojson() if f.geometry else None, **f.properties} for f in expression.features]
    size = len(json.dumps(rows))
    record = {"rows": len(rows), "bytes": size, "outcome": "ok"}
    server.requests.append(record)
    try:
        server.network()
    except EEException as error:
        record["outcome"] = str(error)
        raise
    if len(rows) > MAX_ELEMENTS:
        record["outcome"] = "too many elements"
        raise EEException(f"Collection query aborted after accumulating over {MAX_ELEMENTS} elements.")
    if size > MAX_PAYLOAD_BYTES:
        record["outcome"] = "payload too large"
        raise EEException(f"Request payload size exceeds the limit: {MAX_PAYLOAD_BYTES} bytes.")
    if server.max_rows is not None and len(rows) > server.max_rows:
        record["outcome"] = "too large"
        raise EEException("Computed value is too large.")
    return pd.DataFrame.from_records(rows)


def module(server: Server) -> types.ModuleType:
    global SERVER
    SERVER = server
    ee = types.ModuleType("ee")
    ee.EEException = EEException
    ee.Image = Image
    ee.ImageCollection = ImageCollection
    ee.Feature = Feature
    ee.FeatureCollection = FeatureCollection
    ee.Geometry = Geometry
    ee.Reducer = Reducer
    ee.Initialize = Initialize
    ee.ServiceAccountCredentials = ServiceAccountCredentials
    ee.data = types.SimpleNamespace(computeFeatures=_compute_features)
    ee.__fake__ = True
    return ee


def install(monkeypatch, server: Server) -> types.ModuleType:
    """Put the fake in sys.modules as `ee` for the test."""
    ee = module(server)
    monkeypatch.setitem(__import__("sys").modules, "ee", ee)
    return ee


# --- building a server with ERA5-Land and OpenLandMap ---------------------------------------------


def grid(step: float = 0.5, south: float = 58.0, north: float = 72.5, west: float = -170.0, east: float = -139.0):
    return np.arange(north, south - 1e-9, -step), np.arange(west, east + 1e-9, step)


def centres(edges: np.ndarray) -> np.ndarray:
    return 0.5 * (edges[:-1] + edges[1:])


def ms(day) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 10**6)


def image_from(fields: dict[str, np.ndarray], land: np.ndarray, time_start: int | None = None) -> Image:
    """`fields` name -> (lat, lon) values; masked (no data) where not `land`."""
    bands = {name: (np.where(land, values, np.nan), land.astype(float)) for name, values in fields.items()}
    properties = {"system:time_start": time_start} if time_start is not None else {}
    return Image(bands, properties)


# --- a server holding ERA5-Land (monthly and daily) and OpenLandMap -----------------------------

LAT_EDGES, LON_EDGES = grid(step=0.5)
LAT, LON = centres(LAT_EDGES), centres(LON_EDGES)
LAT2, LON2 = np.meshgrid(LAT, LON, indexing="ij")
LAND = ~(((LON2 < -164.0) & (LAT2 < 62.0)) | (LAT2 > 71.0))  # Bering Sea corner, Arctic Ocean
MONTHS = catalog.month_range(dt.date(2020, 1, 1), dt.date(2021, 6, 1))


def era5_fields(day: dt.date, daily: bool = False) -> dict[str, np.ndarray]:
    """Every MONTHLY_AGGR band on the grid; values change with latitude (so weighting matters)."""
    season = np.cos(2 * np.pi * (day.month - 1) / 12.0)
    days = 1 if daily else catalog.days_in_month(day)
    fields = {}
    for name, unit in catalog.ERA5_LAND_UNITS.items():
        if unit == "K":
            fields[name] = 268.0 + 12.0 * season - 1.1 * (LAT2 - 65.0) + 0.02 * (LON2 + 155.0)
        elif unit == "m3 m-3":
            fields[name] = 0.30 + 0.01 * (LAT2 - 65.0)
        elif unit == "m":
            fields[name] = days * 0.0015 * (1.0 + 0.03 * (LAT2 - 65.0))
        else:  # J m-2 totals; turbulent fluxes mostly upward (negative, ECMWF convention)
            sign = -1.0 if "heat_flux" in name else 1.0
            fields[name] = sign * days * 8.0e6 * (1.0 + 0.04 * (LAT2 - 65.0)) * (1.2 + season)
    return fields


def make_server(**kwargs) -> Server:
    server = Server(LAT_EDGES, LON_EDGES, **kwargs)
    server.collections[ERA5_LAND_MONTHLY] = [image_from(era5_fields(m), LAND, ms(m)) for m in MONTHS]
    days = [dt.date(2021, 1, 1) + dt.timedelta(days=i) for i in range(31 + 28 + 15)]  # through 2021-03-15
    server.collections[ERA5_LAND_DAILY] = [image_from(era5_fields(d, daily=True), LAND, ms(d)) for d in days]
    depths = np.array(catalog.OPENLANDMAP_DEPTHS_CM, dtype=float)
    for product, spec in catalog.OPENLANDMAP_PRODUCTS.items():
        base = 120.0 if product == "bulk_density" else 20.0
        server.assets[str(spec["asset"])] = image_from(
            {f"b{int(d)}": base + d / 10.0 + 2.0 * (LAT2 - 65.0) for d in depths}, LAND
        )
    return server
