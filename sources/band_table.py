"""Tables already reduced to the six bands (CSV or Parquet), as published with papers or
exported from Earth Engine: one row per band and month.

Columns may carry the product's own names, ERA5-style names or CDS short names, in any order;
bands are 0-5 or band_1..band_6; time stamps may fall anywhere in the month. Each variable's
unit is declared in the configuration or detected from the column's magnitude (its 90th
percentile of |value| must fall in exactly one unit's typical window) and converted to the raw
schema; a column no unit explains is an error, not a guess. Columns that are not part of the
raw schema are ignored with a warning. Errors name the file, variable, band and month.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sources import catalog
from sources.base import SourceError, published_months
from sources.validation import validate_cmip5, validate_reanalysis

SECONDS_PER_DAY = 86400.0
KELVIN = 273.15

TIME_COLUMNS = ("time", "month", "date", "valid_time", "system:time_start")
BAND_COLUMNS = ("band", "band_index", "region")

# CDS short names and ERA5-style long names of the reanalysis.
ERA5_ALIASES: dict[str, str] = {**catalog.ERA5_LAND_CDS_NAMES, **{name: name for name in catalog.ERA5_LAND_BANDS}}
# ERA5-style names used for climate-model columns (as in the published GFDL tables).
CMIP_ALIASES: dict[str, str] = {
    "temperature_2m": "tas",
    "skin_temperature": "ts",
    "total_precipitation_sum": "pr",
    "snowfall_sum": "prsn",
    "surface_thermal_radiation_downwards_sum": "rlds",
    "surface_solar_radiation_downwards_sum": "rsds",
    "surface_latent_heat_flux_sum": "hfls",
    "surface_sensible_heat_flux_sum": "hfss",
    **{name: name for name in catalog.CMIP5_VARIABLES},
}


# --- units ---------------------------------------------------------------------------------

Converter = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (values, seconds in month) -> raw unit


@dataclass(frozen=True)
class Unit:
    name: str
    typical: tuple[float, float]  # window of the column's 90th percentile of |value|
    to_raw: Converter


def _same(x, s):
    return x


TEMPERATURE = (Unit("K", (180.0, 345.0), _same), Unit("degC", (0.5, 70.0), lambda x, s: x + KELVIN))
# CMIP raw schema: per-second fluxes, W m-2, turbulent fluxes positive upwards.
CMIP_UNITS: dict[str, tuple[Unit, ...]] = {
    "tas": TEMPERATURE,
    "ts": TEMPERATURE,
    **dict.fromkeys(
        ("pr", "prsn"),
        (
            Unit("kg m-2 s-1", (1e-9, 2e-3), _same),
            Unit("m", (2e-4, 0.4), lambda x, s: x * 1000.0 / s),  # m of water per month
            Unit("mm", (2.0, 1000.0), lambda x, s: x / s),  # mm of water per month
        ),
    ),
    **dict.fromkeys(
        ("rlds", "rsds"),
        (Unit("W m-2", (1.0, 700.0), _same), Unit("J m-2", (1e5, 3e9), lambda x, s: x / s)),
    ),
    # ECMWF accumulations (J m-2 per month) are positive downwards: flip to CMIP's upwards
    **dict.fromkeys(
        ("hfls", "hfss"),
        (Unit("W m-2", (0.5, 700.0), _same), Unit("J m-2", (1e5, 3e9), lambda x, s: -x / s)),
    ),
    "mrsos": (Unit("kg m-2", (1.0, 300.0), _same), Unit("m3 m-3", (0.005, 1.0), lambda x, s: x * 100.0)),
    "mrso": (Unit("kg m-2", (10.0, 1.0e4), _same),),
}
# ERA5-Land raw schema (Earth Engine MONTHLY_AGGR): monthly totals, positive downwards.
_ERA5_ACCUMULATED_WATER = (
    Unit("m", (2e-4, 0.4), _same),
    Unit("mm", (2.0, 1000.0), lambda x, s: x / 1000.0),
    Unit("kg m-2 s-1", (1e-9, 2e-3), lambda x, s: x * s / 1000.0),
)
_ERA5_ACCUMULATED_ENERGY = (Unit("J m-2", (1e5, 3e9), _same), Unit("W m-2", (0.5, 700.0), lambda x, s: x * s))
ERA5_UNITS: dict[str, tuple[Unit, ...]] = {
    **{name: TEMPERATURE for name in catalog.ERA5_LAND_BANDS if "temperature" in name},
    "total_precipitation_sum": _ERA5_ACCUMULATED_WATER,
    "snowfall_sum": _ERA5_ACCUMULATED_WATER,
    **{name: _ERA5_ACCUMULATED_ENERGY for name in catalog.ERA5_LAND_BANDS if name.endswith("_flux_sum")},
    **{name: _ERA5_ACCUMULATED_ENERGY for name in catalog.ERA5_LAND_BANDS if "radiation" in name},
    **{f"volumetric_soil_water_layer_{i}": (Unit("m3 m-3", (0.005, 1.0), _same),) for i in range(1, 5)},
}
assert set(ERA5_UNITS) == set(catalog.ERA5_LAND_BANDS) and set(CMIP_UNITS) == set(catalog.CMIP5_VARIABLES)


def _normalise_unit(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("**", "").replace("^", "").strip())


def choose_unit(
    variable: str, values: np.ndarray, candidates: tuple[Unit, ...], declared: str | None, where: str
) -> Unit:
    """The declared unit, or the one candidate whose typical window holds the column's p90 |value|."""
    names = [u.name for u in candidates]
    if declared is not None:
        for unit in candidates:
            if _normalise_unit(declared) == _normalise_unit(unit.name):
                return unit
        raise SourceError(f"{where}: variable {variable}: declared unit {declared!r} is not one of {names}")
    finite = np.abs(values[np.isfinite(values)])
    if finite.size == 0 or not np.percentile(finite, 90) > 0:
        return candidates[0]  # nothing to tell units apart (all zero): every unit reads it alike
    p90 = float(np.percentile(finite, 90))
    fitting = [u for u in candidates if u.typical[0] <= p90 <= u.typical[1]]
    if len(fitting) == 1:
        return fitting[0]
    which = "no unit" if not fitting else f"several units ({[u.name for u in fitting]})"
    raise SourceError(
        f"{where}: variable {variable}: values up to {p90:.4g} (90th percentile of |value|) fit {which} "
        f"of {names}; declare it under `units: {{{variable}: ...}}` in the sources file"
    )


# --- reading -------------------------------------------------------------------------------


_BAND_LABEL = re.compile(r"^\s*(?:band[_\s-]?)?(\d+)\s*$", re.IGNORECASE)
_TIME = re.compile(r"^\s*(\d{4})-(\d{1,2})(?:-(\d{1,2}))?(?:[T\s](\d{1,2}):(\d{2})(?::(\d{2}))?)?")


def read_table(path: Path) -> pl.DataFrame:
    """Every column as text (so a stray word in a number column can be named, not coerced)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pl.read_parquet(path)
            return frame.select(pl.col(c).cast(pl.Utf8) for c in frame.columns)
        return pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise SourceError(f"{path}: cannot read the table: {error}") from None


def _band_indices(labels: pl.Series, months: list[dt.date | None], where: str) -> list[int]:
    """band_1..band_6 (1-based) or 0..5 / band_0..band_5 (0-based) -> 0..5."""
    numbers: list[int] = []
    for i, label in enumerate(labels.to_list()):
        match = _BAND_LABEL.match(str(label)) if label is not None else None
        if not match:
            month = f", month {months[i]:%Y-%m}" if months[i] else ""
            raise SourceError(f"{where}: unknown band name {label!r}{month}; expected 0..5 or band_1..band_6")
        numbers.append(int(match.group(1)))
    named = [str(v).strip().lower().startswith("band") for v in labels.to_list()]
    one_based = any(named) and min(numbers) >= 1
    indices = [n - 1 for n in numbers] if one_based else numbers
    for i, index in enumerate(indices):
        if not 0 <= index < catalog.N_BANDS:
            month = f", month {months[i]:%Y-%m}" if months[i] else ""
            expected = "band_1..band_6" if one_based else "0..5"
            raise SourceError(f"{where}: unknown band name {labels[i]!r}{month}; expected {expected}")
    return indices


def _times(column: pl.Series, where: str) -> tuple[list[dt.date], list[tuple[int, int, float]]]:
    """Month start of each stamp, and (month length guess inputs) day and hour of the stamp.

    Parsed as text so stamps of a 360-day calendar (2021-02-30) are read too.
    """
    months, stamps = [], []
    for value in column.to_list():
        match = _TIME.match(str(value)) if value is not None else None
        if not match:
            raise SourceError(f"{where}: time stamp {value!r} is not a date (expected YYYY-MM[-DD[ hh:mm]])")
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12:
            raise SourceError(f"{where}: time stamp {value!r} has month {month}")
        day = int(match.group(3) or 1)
        hours = int(match.group(4) or 0) + int(match.group(5) or 0) / 60.0
        months.append(dt.date(year, month, 1))
        stamps.append((year, month, (day - 1) + hours / 24.0))  # days since the month's start
    return months, stamps


def _month_lengths(year: int, month: int) -> dict[str, int]:
    gregorian = catalog.days_in_month(dt.date(year, month, 1))
    noleap = 28 if month == 2 else gregorian
    return {"noleap": noleap, "standard": gregorian, "360_day": 30}


def detect_calendar(stamps: list[tuple[int, int, float]], where: str) -> str:
    """The CF calendar whose mid-month points the stamps are (CMIP files stamp mid-month).

    noleap and standard differ only in leap-year Februaries; a table without one, or stamped
    elsewhere in the month, cannot tell them apart: declare `calendar` then.
    """
    candidates = []
    for calendar in ("noleap", "standard", "360_day"):
        if all(abs(offset - _month_lengths(y, m)[calendar] / 2.0) < 1e-6 for y, m, offset in stamps):
            candidates.append(calendar)
    if len(candidates) == 1:
        return candidates[0]
    why = "they are not mid-month" if not candidates else f"they fit {candidates} alike"
    raise SourceError(f"{where}: cannot tell the calendar from the time stamps ({why}); declare `calendar`")


def seconds_in_months(months: list[dt.date], calendar: str) -> np.ndarray:
    days = []
    for month in months:
        lengths = _month_lengths(month.year, month.month)
        if calendar in ("noleap", "365_day"):
            days.append(lengths["noleap"])
        elif calendar == "360_day":
            days.append(30)
        else:
            days.append(lengths["standard"])
    return np.asarray(days, dtype=float) * SECONDS_PER_DAY


def _numbers(text: pl.Series, column: str, variable: str, bands: list[int], months: list[dt.date], where: str):
    stripped = text.cast(pl.Utf8).str.strip_chars()
    values = stripped.cast(pl.Float64, strict=False)
    bad = (values.is_null() & stripped.is_not_null() & (stripped != "")).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SourceError(
            f"{where}: variable {variable} (column {column!r}), band {bands[i]}, month {months[i]:%Y-%m}: "
            f"{text[i]!r} is not a number"
        )
    return values.fill_null(float("nan")).to_numpy().astype(float)


@dataclass
class BandTable:
    """One table read into raw-schema columns (before the product's checks)."""

    months: list[dt.date]
    stamps: list[tuple[int, int, float]]
    bands: list[int]
    columns: dict[str, np.ndarray]  # raw variable -> values in the raw unit
    units: dict[str, str]  # raw variable -> unit the table's column was read in


def read_band_table(
    path: Path,
    aliases: Mapping[str, str],
    units: Mapping[str, tuple[Unit, ...]],
    declared_units: Mapping[str, str],
    extra_columns: Mapping[str, str],
    absent: tuple[str, ...] = (),
    calendar: str | Callable[[list[tuple[int, int, float]]], str] = "standard",
) -> tuple[BandTable, str]:
    """Read `path` into the variables of `units` (raw names); returns the table and its calendar."""
    where = str(path)
    table = read_table(path)
    columns = list(table.columns)
    time_column = next((c for c in columns if c.lower() in TIME_COLUMNS), None)
    band_column = next((c for c in columns if c.lower() in BAND_COLUMNS), None)
    if time_column is None or band_column is None:
        missing = [n for n, c in (("time", time_column), ("band", band_column)) if c is None]
        raise SourceError(f"{where}: no {' or '.join(missing)} column; found {columns}")
    mapping = {**aliases, **extra_columns}
    found: dict[str, str] = {}  # raw variable -> table column
    ignored = []
    for column in columns:
        if column in (time_column, band_column) or column.strip() == "" or column.startswith("Unnamed"):
            continue  # key columns; an unnamed leading column is a written-out row index
        variable = mapping.get(column)
        if variable is None or variable not in units:
            ignored.append(column)
            continue
        if variable in found:
            raise SourceError(f"{where}: columns {found[variable]!r} and {column!r} are both variable {variable}")
        found[variable] = column
    if ignored:
        warnings.warn(f"{where}: ignoring column(s) {ignored}: not part of the raw schema", UserWarning, stacklevel=2)
    missing = [v for v in units if v not in found and v not in absent]
    if missing:
        raise SourceError(
            f"{where}: variable {missing[0]} is missing (no column for {missing}); found columns {columns}"
        )
    if table.is_empty():
        raise SourceError(f"{where}: the table has no rows")
    months, stamps = _times(table[time_column], where)
    bands = _band_indices(table[band_column], months, where)
    chosen_calendar = calendar(stamps) if callable(calendar) else calendar
    seconds = seconds_in_months(months, chosen_calendar)
    values, read_units = {}, {}
    for variable, column in found.items():
        raw = _numbers(table[column], column, variable, bands, months, where)
        unit = choose_unit(variable, raw, units[variable], declared_units.get(variable), where)
        values[variable] = unit.to_raw(raw, seconds)
        read_units[variable] = unit.name
    return BandTable(months, stamps, bands, values, read_units), chosen_calendar


# --- the sources ---------------------------------------------------------------------------


class BandTableClimateModelSource:
    """CMIP5 band tables, one per experiment (`BandTableClimateModelConfig`)."""

    def __init__(self, config):
        self.config = config
        self.name = f"band_table {config.model}"
        self.absent_variables: tuple[str, ...] = tuple(config.absent)
        self.read_units: dict[str, dict[str, str]] = {}

    def experiments(self) -> tuple[str, ...]:
        return tuple(e for e in catalog.CMIP5_EXPERIMENTS if e in self.config.files)

    def read_experiment(self, experiment: str) -> pl.DataFrame:
        if experiment not in self.config.files:
            raise SourceError(
                f"{self.name}: experiment {experiment} is not among the tables ({', '.join(self.experiments())})"
            )
        path = Path(self.config.files[experiment])
        where = f"{self.name} {path}"
        declared = self.config.calendar
        table, calendar = read_band_table(
            path,
            CMIP_ALIASES,
            CMIP_UNITS,
            self.config.units,
            self.config.columns,
            absent=self.absent_variables,
            calendar=declared if declared else (lambda stamps: detect_calendar(stamps, where)),
        )
        self.read_units[experiment] = table.units
        n = len(table.months)
        frame = pl.DataFrame(
            {
                "band": pl.Series(table.bands, dtype=pl.Int32),
                "month": pl.Series(table.months, dtype=pl.Date),
                "calendar": [calendar] * n,
                "model": [self.config.model] * n,
                **{v: pl.Series(v, table.columns[v], dtype=pl.Float64) for v in table.columns},
            }
        )
        # the file is named in every error; the raw asset checks the frame again
        return validate_cmip5(frame, experiment, where, absent=self.absent_variables).drop("experiment")


class BandTableReanalysisSource:
    """ERA5-Land band table (`BandTableReanalysisConfig`): monthly, Gregorian calendar."""

    time_step = "month"

    def __init__(self, config):
        self.config = config
        self.path = Path(config.path)
        self.name = f"band_table {self.path.name}"
        self._frame: pl.DataFrame | None = None

    def _read(self) -> pl.DataFrame:
        if self._frame is None:
            table, _ = read_band_table(
                self.path, ERA5_ALIASES, ERA5_UNITS, self.config.units, self.config.columns, calendar="standard"
            )
            self._frame = pl.DataFrame(
                {
                    "band": pl.Series(table.bands, dtype=pl.Int32),
                    "month": pl.Series(table.months, dtype=pl.Date),
                    **{v: pl.Series(v, table.columns[v], dtype=pl.Float64) for v in catalog.ERA5_LAND_BANDS},
                }
            )
        return self._frame

    def latest_month(self) -> dt.date:
        return self._read()["month"].max()

    def read_months(self, months: list[dt.date]) -> pl.DataFrame:
        frame = self._read()
        wanted = published_months(self.name, months, frame["month"].max())
        chosen = frame.filter(pl.col("month").is_in(wanted))
        return validate_reanalysis(chosen, wanted, f"{self.name} ({self.path})")
