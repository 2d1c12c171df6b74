"""Band x month frames as (months, bands, variables) arrays, the shape the physical core, the
residual networks and the perfect-model scores work on.

A ``BandGrid`` holds consecutive months (datetime64[M]) with every band of ``catalog.BANDS``
and finite values; ``band_grid`` builds one from a long frame and says which band, month and
variable is wrong when it cannot. ``days_in_month`` gives month lengths in a model's own
calendar (CMIP5 models use noleap or 360-day years).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from sources import catalog

NOLEAP_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=float)
GREGORIAN_CALENDARS = ("standard", "gregorian", "proleptic_gregorian")
CALENDARS = (*GREGORIAN_CALENDARS, "noleap", "365_day", "all_leap", "366_day", "360_day")


@dataclass(frozen=True)
class BandGrid:
    """``values`` (T, B, V) of variables ``names`` for consecutive ``months`` (T,) datetime64[M]."""

    months: np.ndarray
    values: np.ndarray
    names: tuple[str, ...]

    @property
    def calendar_month(self) -> np.ndarray:
        """0 (January) .. 11 per month."""
        return self.months.astype(np.int64) % 12

    @property
    def year(self) -> np.ndarray:
        return self.months.astype("datetime64[Y]").astype(np.int64) + 1970

    def select(self, names: Sequence[str]) -> np.ndarray:
        """(T, B, len(names)) in the order asked for."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise KeyError(f"band grid has no {missing}; it holds {list(self.names)}")
        return self.values[..., [self.names.index(n) for n in names]]

    def until(self, last: np.datetime64) -> BandGrid:
        """The months up to ``last`` (included)."""
        keep = self.months <= last
        return BandGrid(self.months[keep], self.values[keep], self.names)

    def rows(self, first: np.datetime64, last: np.datetime64) -> np.ndarray:
        """Indices of the months first..last (both included)."""
        return np.flatnonzero((self.months >= first) & (self.months <= last))


def band_grid(frame: pl.DataFrame, columns: Sequence[str], what: str) -> BandGrid:
    """The columns of a long ``band``/``month`` frame as a ``BandGrid``.

    Raises ValueError naming ``what``, the band and the month when a band is missing for a
    month, a month is missing or repeated, or a value is null, NaN or infinite.
    """
    columns = tuple(columns)
    catalog.require_columns(frame, ("band", "month", *columns), what)
    if frame.is_empty():
        raise ValueError(f"{what}: no rows")
    rows = frame.select(
        pl.col("band").cast(pl.Int64), pl.col("month").cast(pl.Date), *(pl.col(c).cast(pl.Float64) for c in columns)
    ).sort("month", "band")
    months = np.unique(rows["month"].to_numpy().astype("datetime64[M]"))
    step = np.diff(months).astype(np.int64)
    if (step != 1).any():
        i = int(np.argmax(step != 1))
        raise ValueError(
            f"{what}: month {months[i] + 1} is missing (the series jumps from {months[i]} to {months[i + 1]})"
        )
    n_bands = catalog.N_BANDS
    counts = rows.group_by("month").agg(pl.col("band").n_unique().alias("n"), pl.len().alias("rows"))
    wrong = counts.filter((pl.col("n") != n_bands) | (pl.col("rows") != n_bands)).sort("month")
    if wrong.height:
        row = wrong.row(0, named=True)
        present = sorted(rows.filter(pl.col("month") == row["month"])["band"].to_list())
        raise ValueError(
            f"{what}: month {row['month']:%Y-%m} has bands {present}; expected one row per band 0..{n_bands - 1}"
        )
    values = rows.select(columns).to_numpy().reshape(len(months), n_bands, len(columns))
    bad = ~np.isfinite(values)
    if bad.any():
        t, b, v = np.argwhere(bad)[0]
        raise ValueError(f"{what}: {columns[v]} is missing or not finite in band {b}, month {months[t]}")
    return BandGrid(months=months, values=values, names=columns)


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


HISTORY_COLUMNS: tuple[str, ...] = catalog.DYNAMIC_FEATURES + catalog.WATER_CONTENT + catalog.TARGETS


def history_grid(history: pl.DataFrame) -> BandGrid:
    """The history mart's drivers, soil water and soil temperatures as a band grid."""
    return band_grid(history, HISTORY_COLUMNS, "history mart")


def grid_frame(months: np.ndarray, values: np.ndarray, names: Sequence[str], **constants) -> pl.DataFrame:
    """A long frame (constants..., band, month, names...) of (T, B, V) ``values``: the inverse of
    ``band_grid``, rows by month then band."""
    n_months, n_bands = values.shape[:2]
    month = np.repeat(months.astype("datetime64[D]"), n_bands)
    return pl.DataFrame(
        {
            **{key: pl.Series(key, [value] * (n_months * n_bands)) for key, value in constants.items()},
            "band": pl.Series("band", np.tile(np.arange(n_bands), n_months), dtype=pl.Int64),
            "month": pl.Series("month", month).cast(pl.Date),
            **{name: pl.Series(name, values[..., k].ravel(), dtype=pl.Float64) for k, name in enumerate(names)},
        }
    )
