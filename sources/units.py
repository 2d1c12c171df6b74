"""Spatial units: what a reanalysis row stands for (a latitude band, a river basin, a grid cell).

`SpatialUnits` is one kind of unit and a frame with one row per unit; bands (`band_units()`)
are the default. Plain polars (no Dagster): sources declare their units with it, the raw
`spatial_units` asset lands its table, and dbt and the checks read that table back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from sources import catalog

UNIT_KINDS: tuple[str, ...] = ("band", "basin", "cell")

# The columns every units frame has, in this order (static attributes may follow).
UNIT_SCHEMA: dict[str, pl.DataType] = {
    "unit": pl.Int64,  # the unit's id: band index, basin station id, cell id; unique, sorted
    "name": pl.Utf8,
    "latitude": pl.Float64,  # centroid, degrees north
    "longitude": pl.Float64,  # centroid, degrees east (negative west)
    "area_km2": pl.Float64,
    "band": pl.Int64,  # the band of catalog.BANDS holding the centroid; null outside every band
    "nearest_band": pl.Int64,  # the band whose latitudes are nearest: never null
    "series_group": pl.Int64,  # units with identical reanalysis series share it (smallest id of them)
}
UNIT_COLUMNS: tuple[str, ...] = tuple(UNIT_SCHEMA)


class SpatialUnitsError(ValueError):
    """A units table that breaks the contract above; the message names the unit and column."""


def _band_of_latitude(latitude: float) -> int | None:
    """The band whose latitudes hold `latitude` (south edge included, the last band's north edge too)."""
    for band in catalog.BANDS:
        if band.south <= latitude < band.north or (band.index == catalog.N_BANDS - 1 and latitude == band.north):
            return band.index
    return None


def bands_holding(latitude: Iterable[float], longitude: Iterable[float]) -> list[int | None]:
    """The band of `catalog.BANDS` holding each point, or None where the point lies outside every
    band's box (its latitudes, or the longitudes LON_WEST..LON_EAST)."""
    return [
        _band_of_latitude(lat) if catalog.LON_WEST <= lon <= catalog.LON_EAST else None
        for lat, lon in zip(latitude, longitude, strict=True)
    ]


def nearest_bands(latitude: Iterable[float]) -> list[int]:
    """The band whose latitudes are nearest to each latitude (the one holding it where one does);
    for what exists only per band (the climate model's scenarios, the static extracts)."""
    south = np.array([b.south for b in catalog.BANDS])
    north = np.array([b.north for b in catalog.BANDS])
    nearest = []
    for lat in latitude:
        holding = _band_of_latitude(lat)
        distance = np.maximum(south - lat, 0.0) + np.maximum(lat - north, 0.0)
        nearest.append(holding if holding is not None else int(np.argmin(distance)))
    return nearest


def unit_positions(known: np.ndarray, ids: Iterable[int], kind: str) -> np.ndarray:
    """Position of each of `ids` among the sorted unit ids `known` (the order of `ids`); KeyError
    naming the ids that are no unit of that `kind`."""
    wanted = np.asarray(list(ids), dtype=np.int64)
    index = np.searchsorted(known, wanted)
    found = (index < known.size) & (known[np.minimum(index, known.size - 1)] == wanted)
    if not found.all():
        unknown = sorted(set(wanted[~found].tolist()))
        raise KeyError(f"{kind} id(s) {unknown[:10]} are not among the {known.size} units")
    return index


def describe_unit(kind: str, unit: int, band: int | None) -> str:
    """`band 3`, or `basin 15 (band 1)` / `basin 15 (outside the bands)`, for messages."""
    if kind == "band":
        return f"band {unit}"
    return f"{kind} {unit} ({'outside the bands' if band is None else f'band {band}'})"


class UnitFrame:
    """What a table of units answers from its ``frame`` (sorted by ``unit``, with ``band``) and its
    ``kind``: shared by `SpatialUnits` and the modelling layer's `ml.unit_arrays.Units`."""

    frame: pl.DataFrame
    kind: str

    @property
    def count(self) -> int:
        return self.frame.height

    @property
    def ids(self) -> np.ndarray:
        """Unit ids, sorted (int64)."""
        return self.frame["unit"].to_numpy()

    def positions(self, ids: Iterable[int]) -> np.ndarray:
        """Row of each id in `frame` (the order of `ids`); KeyError naming ids that are no unit."""
        return unit_positions(self.ids, ids, self.kind)

    def describe(self, unit: int) -> str:
        """`band 3`, or `basin 15 (band 1)` / `basin 15 (outside the bands)`, for messages."""
        band = None if self.kind == "band" else self.frame["band"][int(self.positions([unit])[0])]
        return describe_unit(self.kind, unit, band)


@dataclass(frozen=True, eq=False)
class SpatialUnits(UnitFrame):
    """One kind of spatial unit and its table (`UNIT_COLUMNS`, then optional static attributes).

    Build it with `SpatialUnits.of(kind, frame)`, which checks and orders the frame.
    """

    kind: str
    frame: pl.DataFrame

    @classmethod
    def of(cls, kind: str, frame: pl.DataFrame, where: str = "spatial units") -> SpatialUnits:
        """The units of `frame`: `band` and `nearest_band` are computed from the centroid when the
        frame leaves them out, `series_group` is each unit's own id when it is left out."""
        if kind not in UNIT_KINDS:
            raise SpatialUnitsError(f"{where}: kind {kind!r}; expected one of {UNIT_KINDS}")
        catalog.require_columns(frame, ("unit", "name", "latitude", "longitude", "area_km2"), where, SpatialUnitsError)
        if frame.is_empty():
            raise SpatialUnitsError(f"{where}: no units")
        _check_coordinates(frame, where)
        if "band" not in frame.columns:
            frame = frame.with_columns(
                band=pl.Series(bands_holding(frame["latitude"], frame["longitude"]), dtype=pl.Int64)
            )
        if "nearest_band" not in frame.columns:
            frame = frame.with_columns(nearest_band=pl.Series(nearest_bands(frame["latitude"]), dtype=pl.Int64))
        if "series_group" not in frame.columns:
            frame = frame.with_columns(series_group=pl.col("unit"))
        attributes = [c for c in frame.columns if c not in UNIT_SCHEMA and c != "kind"]
        frame = frame.select(*(pl.col(c).cast(t) for c, t in UNIT_SCHEMA.items()), *attributes).sort("unit")
        _check(frame, where)
        return cls(kind, frame)

    @classmethod
    def from_table(cls, table: pl.DataFrame, where: str = "spatial units") -> SpatialUnits:
        """The units of a landed table (`to_table()`: a `kind` column beside the frame's)."""
        catalog.require_columns(table, ("kind",), where, SpatialUnitsError)
        kinds = table["kind"].unique().to_list()
        if len(kinds) != 1:
            raise SpatialUnitsError(f"{where}: kinds {sorted(map(str, kinds))}; expected one")
        return cls.of(kinds[0], table.drop("kind"), where)

    def to_table(self) -> pl.DataFrame:
        """The frame with the kind on every row, as the raw `spatial_units` asset lands it."""
        return self.frame.select("unit", pl.lit(self.kind).alias("kind"), pl.exclude("unit"))

    @property
    def key_column(self) -> str:
        """The raw reanalysis' key column: bands keep `band` (as every lake so far); others `unit`."""
        return "band" if self.kind == "band" else "unit"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpatialUnits) and self.kind == other.kind and self.frame.equals(other.frame)

    __hash__ = None  # a frame is mutable-looking and unhashable


def _first(bad: pl.DataFrame, column: str, what: str, where: str) -> None:
    if bad.height:
        row = bad.row(0, named=True)
        raise SpatialUnitsError(f"{where}: unit {row['unit']}: {column} {row[column]!r} {what}")


def _check_coordinates(frame: pl.DataFrame, where: str) -> None:
    for column, low, high in (("latitude", -90.0, 90.0), ("longitude", -180.0, 180.0)):
        value = pl.col(column).cast(pl.Float64)
        outside = frame.filter(value.is_null() | value.is_nan() | (value < low) | (value > high))
        _first(outside, column, "is not a degree", where)


def _check(frame: pl.DataFrame, where: str) -> None:
    def first(bad: pl.DataFrame, column: str, what: str) -> None:
        _first(bad, column, what, where)

    missing_id = frame.filter(pl.col("unit").is_null())
    if missing_id.height:
        raise SpatialUnitsError(f"{where}: {missing_id.height} unit(s) without an id")
    duplicated = frame.filter(pl.col("unit").is_duplicated())
    first(duplicated, "unit", "occurs more than once")
    first(frame.filter(pl.col("area_km2").is_null() | ~(pl.col("area_km2") > 0)), "area_km2", "is not a positive area")
    bands = list(range(catalog.N_BANDS))
    first(frame.filter(pl.col("band").is_not_null() & ~pl.col("band").is_in(bands)), "band", "is no band")
    nearest = pl.col("nearest_band")
    first(frame.filter(nearest.is_null() | ~nearest.is_in(bands)), "nearest_band", "is no band")
    first(
        frame.filter(pl.col("band").is_not_null() & (pl.col("band") != pl.col("nearest_band"))),
        "nearest_band",
        "differs from the band holding the unit",
    )
    ids = set(frame["unit"].to_list())
    first(frame.filter(~pl.col("series_group").is_in(list(ids))), "series_group", "is no unit of the table")


def band_units() -> SpatialUnits:
    """The six latitude bands as units (unit = band index): the default of every source."""
    middle_longitude = 0.5 * (catalog.LON_WEST + catalog.LON_EAST)
    frame = pl.DataFrame(
        {
            "unit": [b.index for b in catalog.BANDS],
            "name": [f"band {b.index}" for b in catalog.BANDS],
            "latitude": [b.mid_latitude for b in catalog.BANDS],
            "longitude": [middle_longitude] * catalog.N_BANDS,
            "area_km2": [b.area_km2 for b in catalog.BANDS],
            "band": [b.index for b in catalog.BANDS],
            "nearest_band": [b.index for b in catalog.BANDS],
        }
    )
    return SpatialUnits.of("band", frame, "band units")
