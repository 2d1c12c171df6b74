"""Spatial units and unit x month frames as (months, units, variables) arrays, the shape the
physical core, the residual networks, the baselines and the perfect-model scores work on.

``Units`` is the units table of the history (the warehouse's ``dim_spatial_units``: bands by
default, basins or cells for other sources). A ``UnitGrid`` holds consecutive months
(datetime64[M]) with every unit of a units table and finite values; ``unit_grid`` builds one
from a long frame and says which unit, month and variable is wrong when it cannot.
``days_in_month`` gives month lengths in a model's own calendar (CMIP5 models use noleap or
360-day years).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from sources import catalog
from sources.units import UnitFrame

NOLEAP_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=float)
GREGORIAN_CALENDARS = ("standard", "gregorian", "proleptic_gregorian")
CALENDARS = (*GREGORIAN_CALENDARS, "noleap", "365_day", "all_leap", "366_day", "360_day")
# The band of a unit outside every band's box, where an integer is needed (figures, groups).
OUTSIDE_BANDS = -1

UNIT_COLUMNS: dict[str, pl.DataType] = {
    "unit": pl.Int64,
    "kind": pl.Utf8,
    "name": pl.Utf8,
    "latitude": pl.Float64,
    "longitude": pl.Float64,
    "area_km2": pl.Float64,
    "band": pl.Int64,  # null outside every band
    "nearest_band": pl.Int64,
    "series_group": pl.Int64,
}


@dataclass(frozen=True, eq=False)
class Units(UnitFrame):
    """The spatial units of a history, one row per unit sorted by id (``UNIT_COLUMNS``).

    A unit's POSITION (0 .. count-1, its row here) indexes the unit axis of every array and is
    what a network's unit embedding sees; its id (``unit``) is what outputs carry."""

    frame: pl.DataFrame

    @classmethod
    def of(cls, frame: pl.DataFrame, where: str = "spatial units") -> Units:
        """The units of ``frame`` (e.g. ``marts.dim_spatial_units``), checked and sorted."""
        catalog.require_columns(frame, UNIT_COLUMNS, where)
        frame = frame.select(pl.col(c).cast(t) for c, t in UNIT_COLUMNS.items()).sort("unit")
        if frame.is_empty():
            raise ValueError(f"{where}: no units")
        for column in ("unit", "nearest_band", "series_group", "kind"):
            if frame[column].null_count():
                raise ValueError(f"{where}: {column} is null for {frame[column].null_count()} unit(s)")
        if frame["unit"].is_duplicated().any():
            raise ValueError(f"{where}: unit {frame.filter(pl.col('unit').is_duplicated())['unit'][0]} occurs twice")
        if frame["kind"].n_unique() != 1:
            raise ValueError(f"{where}: kinds {sorted(frame['kind'].unique().to_list())}; expected one")
        return cls(frame)

    @classmethod
    def bands(cls, bands: Iterable[int] | None = None) -> Units:
        """The latitude bands as units (unit = band index): all six, or ``bands``."""
        chosen = [catalog.BANDS[b] for b in (range(catalog.N_BANDS) if bands is None else bands)]
        index = [b.index for b in chosen]
        return cls.of(
            pl.DataFrame(
                {
                    "unit": index,
                    "kind": "band",
                    "name": [f"band {b}" for b in index],
                    "latitude": [b.mid_latitude for b in chosen],
                    "longitude": 0.5 * (catalog.LON_WEST + catalog.LON_EAST),
                    "area_km2": [b.area_km2 for b in chosen],
                    "band": index,
                    "nearest_band": index,
                    "series_group": index,
                }
            ),
            "band units",
        )

    @property
    def kind(self) -> str:
        return self.frame["kind"][0]

    @property
    def are_bands(self) -> bool:
        return self.kind == "band"

    @property
    def band(self) -> np.ndarray:
        """(U,) int64: the band holding each unit, ``OUTSIDE_BANDS`` outside every band."""
        return self.frame["band"].fill_null(OUTSIDE_BANDS).to_numpy()

    @property
    def nearest_band(self) -> np.ndarray:
        return self.frame["nearest_band"].to_numpy()

    @property
    def area_km2(self) -> np.ndarray:
        return self.frame["area_km2"].to_numpy()

    @property
    def series_group(self) -> np.ndarray:
        return self.frame["series_group"].to_numpy()

    def subset(self, keep: np.ndarray) -> Units:
        """The units where ``keep`` (bool (U,)) holds, in order."""
        return Units(self.frame.filter(pl.Series(np.asarray(keep, dtype=bool))))

    def keys(self, positions: np.ndarray) -> dict[str, pl.Series]:
        """The output key columns ``unit`` and ``band`` (null outside the bands) of unit positions."""
        positions = np.asarray(positions, dtype=np.int64)
        return {
            "unit": pl.Series("unit", self.ids[positions], dtype=pl.Int64),
            "band": self.frame["band"].gather(positions).cast(pl.Int64).alias("band"),
        }


@dataclass(frozen=True)
class UnitGrid:
    """``values`` (T, U, V) of variables ``names`` for consecutive ``months`` (T,) datetime64[M]
    and the units ``units`` (U,) ids, in that order."""

    months: np.ndarray
    values: np.ndarray
    names: tuple[str, ...]
    units: np.ndarray

    @property
    def calendar_month(self) -> np.ndarray:
        """0 (January) .. 11 per month."""
        return self.months.astype(np.int64) % 12

    @property
    def year(self) -> np.ndarray:
        return self.months.astype("datetime64[Y]").astype(np.int64) + 1970

    def select(self, names: Sequence[str]) -> np.ndarray:
        """(T, U, len(names)) in the order asked for."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise KeyError(f"unit grid has no {missing}; it holds {list(self.names)}")
        return self.values[..., [self.names.index(n) for n in names]]

    def until(self, last: np.datetime64) -> UnitGrid:
        """The months up to ``last`` (included)."""
        keep = self.months <= last
        return UnitGrid(self.months[keep], self.values[keep], self.names, self.units)

    def rows(self, first: np.datetime64, last: np.datetime64) -> np.ndarray:
        """Indices of the months first..last (both included)."""
        return np.flatnonzero((self.months >= first) & (self.months <= last))

    def take_units(self, positions: np.ndarray) -> UnitGrid:
        """The units at ``positions`` (indices into the unit axis), in that order."""
        return UnitGrid(self.months, self.values[:, positions], self.names, self.units[positions])


def _unit_ids(units: Units | Iterable[int] | None, frame_ids: np.ndarray) -> np.ndarray:
    if units is None:
        return np.unique(frame_ids)
    return units.ids if isinstance(units, Units) else np.asarray(list(units), dtype=np.int64)


def unit_grid(
    frame: pl.DataFrame,
    columns: Sequence[str],
    what: str,
    units: Units | Iterable[int] | None = None,
    key: str = "unit",
) -> UnitGrid:
    """The columns of a long ``key``/``month`` frame as a ``UnitGrid`` over ``units`` (every unit
    of a ``Units`` table or of a list of ids; default: the ids the frame holds), in their order.

    Raises ValueError naming ``what``, the unit and the month when a unit is missing or repeated
    in a month, a unit is not one of ``units``, a month is missing, or a value is null, NaN or
    infinite."""
    columns = tuple(columns)
    catalog.require_columns(frame, (key, "month", *columns), what)
    if frame.is_empty():
        raise ValueError(f"{what}: no rows")
    rows = frame.select(
        pl.col(key).cast(pl.Int64), pl.col("month").cast(pl.Date), *(pl.col(c).cast(pl.Float64) for c in columns)
    )
    if rows[key].null_count():
        raise ValueError(f"{what}: {rows[key].null_count()} row(s) have no {key}")
    frame_ids = rows[key].to_numpy()
    ids = _unit_ids(units, frame_ids)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]

    def named(unit: int) -> str:
        if isinstance(units, Units):
            return units.describe(unit)
        return f"{key} {unit}"

    position = np.minimum(np.searchsorted(sorted_ids, frame_ids), len(ids) - 1)
    unknown = sorted_ids[position] != frame_ids
    if unknown.any():
        raise ValueError(f"{what}: {_unknown(key, frame_ids[unknown])} is not one of the {len(ids)} units")
    position = order[position]  # the unit's index in `ids`
    months_of_rows = rows["month"].to_numpy().astype("datetime64[M]")
    months = np.unique(months_of_rows)
    step = np.diff(months).astype(np.int64)
    if (step != 1).any():
        i = int(np.argmax(step != 1))
        raise ValueError(
            f"{what}: month {months[i] + 1} is missing (the series jumps from {months[i]} to {months[i + 1]})"
        )
    t = (months_of_rows - months[0]).astype(np.int64)
    count = np.zeros((len(months), len(ids)), dtype=np.int64)
    np.add.at(count, (t, position), 1)
    if (count != 1).any():
        ti, ui = np.argwhere(count != 1)[0]
        problem = "is missing" if count[ti, ui] == 0 else f"occurs {count[ti, ui]} times"
        raise ValueError(
            f"{what}: {named(int(ids[ui]))} {problem} in month {months[ti]} "
            f"({int((count == 0).sum())} unit-month(s) missing, {int((count > 1).sum())} repeated); "
            f"expected one row per unit of the {len(ids)} units in every month"
        )
    values = np.empty((len(months), len(ids), len(columns)))
    values[t, position] = rows.select(columns).to_numpy()
    bad = ~np.isfinite(values)
    if bad.any():
        ti, ui, v = np.argwhere(bad)[0]
        raise ValueError(f"{what}: {columns[v]} is missing or not finite in {named(int(ids[ui]))}, month {months[ti]}")
    return UnitGrid(months=months, values=values, names=columns, units=ids)


def _unknown(key: str, ids: np.ndarray) -> str:
    unknown = sorted(set(np.asarray(ids).tolist()))
    return f"{key} {unknown[0]}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")


def days_in_month(months: np.ndarray, calendar: str = "standard") -> np.ndarray:
    """Length (days, float) of each month (datetime64[M]) in a CF ``calendar``."""
    months = np.asarray(months).astype("datetime64[M]")
    if calendar not in CALENDARS:
        raise ValueError(f"unknown calendar {calendar!r}; expected one of {CALENDARS}")
    if calendar == "360_day":
        return np.full(months.shape, 30.0)
    fixed = NOLEAP_DAYS[months.astype(np.int64) % 12]
    if calendar in ("noleap", "365_day"):
        return fixed
    if calendar in ("all_leap", "366_day"):
        return np.where(months.astype(np.int64) % 12 == 1, 29.0, fixed)
    return ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(np.int64).astype(float)


def calendar_climatology(values: np.ndarray, calendar_month: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(12, ...) mean per calendar month (0 = January) over the months selected by ``rows``."""
    rows = np.asarray(rows)
    if rows.dtype != bool:
        rows = np.isin(np.arange(len(values)), rows)
    missing = [m + 1 for m in range(12) if not (rows & (calendar_month == m)).any()]
    if missing:
        raise ValueError(f"no month to average for calendar month(s) {missing}")
    return np.stack([values[rows & (calendar_month == m)].mean(axis=0) for m in range(12)])


def history_grid(history: pl.DataFrame, units: Units, names: Sequence[str]) -> UnitGrid:
    """The history mart's ``names`` (drivers, soil water, soil temperatures) over every unit."""
    return unit_grid(history, names, "history mart", units)


def grid_frame(months: np.ndarray, values: np.ndarray, names: Sequence[str], units: Units, **constants) -> pl.DataFrame:
    """A long frame (constants..., unit, band, month, names...) of (T, U, V) ``values`` over
    ``units``: the inverse of ``unit_grid``, rows by month then unit."""
    n_months, n_units = values.shape[:2]
    if n_units != units.count:
        raise ValueError(f"values hold {n_units} units, the units table {units.count}")
    month = np.repeat(months.astype("datetime64[D]"), n_units)
    keys = units.keys(np.tile(np.arange(n_units), n_months))
    return pl.DataFrame(
        {
            **{key: pl.Series(key, [value] * (n_months * n_units)) for key, value in constants.items()},
            **keys,
            "month": pl.Series("month", month).cast(pl.Date),
            **{name: pl.Series(name, values[..., k].ravel(), dtype=pl.Float64) for k, name in enumerate(names)},
        }
    )


def unit_scenarios(scenarios: pl.DataFrame, units: Units) -> pl.DataFrame:
    """A band-keyed scenario frame (the scenario mart: climate models are coarse) as one row per
    unit of ``units`` and month: each unit takes its nearest band's series. Columns ``unit``,
    ``band`` (the unit's: null outside every band), ``nearest_band``, then the frame's others.
    Raises naming a unit whose nearest band the frame lacks."""
    catalog.require_columns(scenarios, ("band", "month"), "scenario frame")
    present = set(scenarios["band"].unique().to_list())
    lacking = units.frame.filter(~pl.col("nearest_band").is_in(list(present)))
    if lacking.height:
        row = lacking.row(0, named=True)
        raise ValueError(
            f"the scenarios have no band {row['nearest_band']}, the nearest band of "
            f"{units.describe(row['unit'])} ({lacking.height} unit(s) lack theirs); they hold bands {sorted(present)}"
        )
    mapping = units.frame.select("unit", pl.col("band").alias("_unit_band"), "nearest_band")
    others = [c for c in scenarios.columns if c != "band"]
    joined = mapping.join(
        scenarios.with_columns(pl.col("band").cast(pl.Int64).alias("nearest_band")).drop("band"),
        on="nearest_band",
        how="inner",
    )
    return joined.select("unit", pl.col("_unit_band").alias("band"), "nearest_band", *others)
