"""USGS Geologic Map of Alaska (Wilson and others, 2015, SIM 3340): lithology area per band.

The detailed unit polygons (layer `AKStategeol_poly`, EPSG:3338 Alaska Albers equal-area) carry
a class field (NSACLASS) that keys the map's lithology table (`nsalith`: LITH1, LITH2, ..., and
a RANK per lithology of a class). Each class's major lithologies are mapped onto the product's
nine classes by the table `sql/seeds/usgs_lithology_classes.csv` (a dbt seed, so a reader can
audit it in the warehouse); a class with several major lithologies shares its area equally
among them. Areas come from intersecting the polygons with the band polygons in EPSG:3338 (the
bands' parallels densified before projecting). Read with pyogrio/geopandas (heavy: imported
inside the functions).
"""

from __future__ import annotations

import csv
import warnings
from collections import defaultdict
from pathlib import Path

import polars as pl

from sources import catalog
from sources.base import SourceError
from sources.regions import band_polygons

EQUAL_AREA_CRS = "EPSG:3338"
DENSIFY_DEG = 0.05  # vertices along each band edge before projecting: parallels stay curved


def load_lithology_map(path: Path) -> dict[tuple[str, str], str]:
    """(lith1, lith2) -> class; lith2 '' matches any finer term."""
    mapping = {}
    with open(path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            klass = (row.get("lithology") or "").strip()
            if klass not in catalog.LITHOLOGY_CLASSES:
                raise SourceError(f"{path}:{line}: lithology {klass!r} is not one of {catalog.LITHOLOGY_CLASSES}")
            mapping[((row.get("lith1") or "").strip().lower(), (row.get("lith2") or "").strip().lower())] = klass
    return mapping


def classify(lith1: str | None, lith2: str | None, mapping: dict[tuple[str, str], str]) -> str | None:
    first, second = (lith1 or "").strip().lower(), (lith2 or "").strip().lower()
    return mapping.get((first, second)) or mapping.get((first, ""))


def _layers(path: Path) -> list[str]:
    import pyogrio

    return [str(name) for name, _ in pyogrio.list_layers(path)]


def class_shares(config, mapping: dict[tuple[str, str], str]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Per unit class: share of its area in each product class; and the unmapped terms."""
    import pyogrio

    path = Path(config.path)
    if config.lithology_table not in _layers(path):
        raise SourceError(f"{path}: no lithology table {config.lithology_table!r}; layers {_layers(path)}")
    table = pyogrio.read_dataframe(path, layer=config.lithology_table, read_geometry=False)
    first, second = config.lithology_fields
    missing = [c for c in (config.class_field, first, second, config.rank_field) if c not in table.columns]
    if missing:
        raise SourceError(f"{path}: lithology table {config.lithology_table}: missing field(s) {missing}")
    majors = {r.lower() for r in config.major_ranks}
    per_class: dict[str, list[tuple[str, str]]] = defaultdict(list)
    any_rank: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in table[[config.class_field, first, second, config.rank_field]].itertuples(index=False):
        key = str(row[0])
        terms = (row[1], row[2])
        any_rank[key].append(terms)
        if str(row[3] or "").strip().lower() in majors:
            per_class[key].append(terms)
    shares: dict[str, dict[str, float]] = {}
    unmapped: set[str] = set()
    for key, rows in any_rank.items():
        chosen = per_class.get(key) or rows  # no major lithology recorded: every one listed counts
        classes = []
        for lith1, lith2 in chosen:
            klass = classify(lith1, lith2, mapping)
            if klass is None:
                unmapped.add(f"{lith1} / {lith2}")
                klass = "unknown"
            classes.append(klass)
        distinct = sorted(set(classes))
        shares[key] = {klass: 1.0 / len(distinct) for klass in distinct}
    return shares, sorted(unmapped)


def read_lithology(config) -> pl.DataFrame:
    """Rows band, lithology, area_km2 (EPSG:3338) for every band and class (zeros included)."""
    import geopandas as gpd

    path = Path(config.path)
    mapping = load_lithology_map(config.lithology_map)
    if config.layer not in _layers(path):
        raise SourceError(f"{path}: no layer {config.layer!r}; layers {_layers(path)}")
    units = gpd.read_file(path, layer=config.layer, columns=[config.class_field], engine="pyogrio")
    if config.class_field not in units.columns:
        raise SourceError(f"{path}: layer {config.layer} has no field {config.class_field!r}")
    if units.crs is None:
        raise SourceError(f"{path}: layer {config.layer} has no coordinate reference system (expected EPSG:3338)")
    units = units.to_crs(EQUAL_AREA_CRS)
    shares, unmapped = class_shares(config, mapping)
    bands = gpd.GeoDataFrame(
        {"band": [b.index for b in catalog.BANDS]},
        geometry=gpd.GeoSeries(band_polygons(), crs="EPSG:4326").segmentize(DENSIFY_DEG).to_crs(EQUAL_AREA_CRS),
    )
    units = units[units.geometry.notna() & ~units.geometry.is_empty].copy()
    units["geometry"] = units.geometry.make_valid()
    pieces = gpd.overlay(units[[config.class_field, "geometry"]], bands, how="intersection", keep_geom_type=True)
    area = defaultdict(float)
    without_table = 0.0
    for key, band, km2 in zip(
        pieces[config.class_field].astype(str), pieces["band"], pieces.geometry.area / 1.0e6, strict=True
    ):
        share = shares.get(key)
        if share is None:
            without_table += km2
            share = {"unknown": 1.0}
        for klass, fraction in share.items():
            area[(int(band), klass)] += km2 * fraction
    if unmapped:
        warnings.warn(
            f"{path}: lithology terms not in {Path(config.lithology_map).name} counted as unknown: {unmapped}",
            UserWarning,
            stacklevel=2,
        )
    if without_table > 0:
        warnings.warn(
            f"{path}: {without_table:.0f} km2 of units have no row in {config.lithology_table}: counted as unknown",
            UserWarning,
            stacklevel=2,
        )
    rows = [
        {"band": b.index, "lithology": klass, "area_km2": area.get((b.index, klass), 0.0)}
        for b in catalog.BANDS
        for klass in catalog.LITHOLOGY_CLASSES
    ]
    return pl.DataFrame(rows, schema={"band": pl.Int32, "lithology": pl.Utf8, "area_km2": pl.Float64})
