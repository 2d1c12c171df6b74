"""Checks every source's raw frames pass before anything is written to the lake.

A bad frame raises `SourceError` naming the source, variable, band (or the source's spatial
unit) and month, and what was expected; callers validate everything first and write
afterwards, so the lake is unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import numpy as np
import polars as pl

from sources import catalog
from sources.base import SourceError
from sources.units import SpatialUnits, band_units

# Plausible physical ranges in each product's own units. A value outside is a unit or
# sign mistake far more often than weather, so it is an error, not a warning.
ERA5_LAND_RANGES: dict[str, tuple[float, float]] = {
    "temperature_2m": (190.0, 330.0),
    "skin_temperature": (190.0, 340.0),
    "total_precipitation_sum": (0.0, 2.0),
    "snowfall_sum": (0.0, 2.0),
    "surface_thermal_radiation_downwards_sum": (0.0, 1.5e9),
    "surface_solar_radiation_downwards_sum": (0.0, 1.5e9),
    "surface_latent_heat_flux_sum": (-1.0e9, 5.0e8),
    "surface_sensible_heat_flux_sum": (-1.0e9, 1.0e9),
    **{f"volumetric_soil_water_layer_{i}": (0.0, 1.0) for i in range(1, 5)},
    **{f"soil_temperature_level_{i}": (200.0, 320.0) for i in range(1, 5)},
}
# The optional bands (catalog.ERA5_LAND_OPTIONAL_BANDS), checked where a source has them.
ERA5_LAND_OPTIONAL_RANGES: dict[str, tuple[float, float]] = {
    "snow_depth_water_equivalent": (0.0, 20.0),
    "surface_net_solar_radiation_sum": (0.0, 1.5e9),
    "surface_net_thermal_radiation_sum": (-1.0e9, 5.0e8),
    "dewpoint_temperature_2m": (190.0, 320.0),
    "surface_pressure": (4.0e4, 1.1e5),
    "u_component_of_wind_10m": (-40.0, 40.0),
    "v_component_of_wind_10m": (-40.0, 40.0),
    "surface_runoff_sum": (0.0, 2.0),
    "sub_surface_runoff_sum": (0.0, 2.0),
}

CMIP5_RANGES: dict[str, tuple[float, float]] = {
    "tas": (190.0, 330.0),
    "ts": (190.0, 340.0),
    "pr": (0.0, 5.0e-3),
    "prsn": (0.0, 5.0e-3),
    "rlds": (0.0, 600.0),
    "rsds": (0.0, 600.0),
    "hfls": (-300.0, 600.0),
    "hfss": (-400.0, 600.0),
    "mrsos": (0.0, 200.0),
    "mrso": (0.0, 1.0e4),
}

CF_CALENDARS = {
    "standard",
    "gregorian",
    "proleptic_gregorian",
    "noleap",
    "365_day",
    "all_leap",
    "366_day",
    "360_day",
    "julian",
}


def _require_columns(frame: pl.DataFrame, columns: Iterable[str], where: str) -> None:
    catalog.require_columns(frame, columns, where, SourceError)


def _first_row(frame: pl.DataFrame) -> dict:
    return frame.row(0, named=True)


def _describe(row: Mapping[str, object], units: SpatialUnits | None = None) -> str:
    parts = []
    if "experiment" in row:
        parts.append(f"experiment {row['experiment']}")
    if "band" in row:
        parts.append(f"band {row['band']}")
    if "unit" in row:
        parts.append(_unit_label(units, row["unit"]))
    if "month" in row and isinstance(row["month"], dt.date):
        parts.append(f"month {row['month']:%Y-%m}")
    if "date" in row and isinstance(row["date"], dt.date) and row["date"] != row.get("month"):
        parts.append(f"day {row['date']:%Y-%m-%d}")
    return ", ".join(parts)


def _unit_label(units: SpatialUnits | None, unit: object) -> str:
    if units is None:
        return f"unit {unit}"
    try:
        return units.describe(int(unit))
    except (KeyError, TypeError, ValueError):
        return f"{units.kind} {unit}"


def _check_unit_ids(frame: pl.DataFrame, where: str, units: SpatialUnits) -> None:
    bad_unit = frame.filter(~pl.col(units.key_column).is_in(units.ids.tolist()))
    if bad_unit.height:
        row = _first_row(bad_unit)
        if units.kind == "band":
            raise SourceError(f"{where}: {_describe(row)}: band index outside 0..{catalog.N_BANDS - 1}")
        raise SourceError(f"{where}: {_describe(row)}: not one of the source's {units.count} {units.kind}s")


def _check_units_and_months(
    frame: pl.DataFrame, where: str, expected_months: list[dt.date] | None, units: SpatialUnits | None = None
) -> None:
    """Every unit of `units` (the six bands by default) exactly once in every expected month."""
    units = units or band_units()
    key, kind = units.key_column, units.kind
    ids = units.ids.tolist()
    _check_unit_ids(frame, where, units)
    duplicated = frame.filter(pl.struct(key, "month").is_duplicated())
    if duplicated.height:
        raise SourceError(f"{where}: {_describe(_first_row(duplicated), units)}: duplicate month for this {kind}")
    per_month = frame.group_by("month").agg(pl.col(key).n_unique().alias("n_units")).sort("month")
    wrong = per_month.filter(pl.col("n_units") != units.count)
    if wrong.height:
        row = _first_row(wrong)
        counted = f"month {row['month']:%Y-%m}: {row['n_units']} {kind}s, expected {units.count}"
        if kind != "band":
            present = set(frame.filter(pl.col("month") == row["month"])[key].to_list())
            absent = [unit for unit in ids if unit not in present]
            counted += f"; {_unit_label(units, absent[0])} is missing" if absent else ""
        raise SourceError(f"{where}: {counted}")
    months = per_month["month"].to_list()
    if expected_months is None and months:
        expected_months = catalog.month_range(months[0], months[-1])
    missing = sorted(set(expected_months or []) - set(months))
    if missing:
        raise SourceError(f"{where}: month {missing[0]:%Y-%m} is missing ({len(missing)} month(s) missing in all)")
    extra = sorted(set(months) - set(expected_months or []))
    if extra:
        raise SourceError(f"{where}: month {extra[0]:%Y-%m} was not asked for")


def _check_values(
    frame: pl.DataFrame,
    ranges: Mapping[str, tuple[float, float]],
    units: Mapping[str, str],
    where: str,
    spatial_units: SpatialUnits | None = None,
) -> None:
    for variable, (low, high) in ranges.items():
        column = pl.col(variable)
        missing = frame.filter(column.is_null() | column.is_nan())
        if missing.height:
            raise SourceError(
                f"{where}: variable {variable}, {_describe(_first_row(missing), spatial_units)}: "
                "value is missing (NaN/null)"
            )
        outside = frame.filter((column < low) | (column > high))
        if outside.height:
            row = _first_row(outside)
            raise SourceError(
                f"{where}: variable {variable}, {_describe(row, spatial_units)}: value {row[variable]!r} outside the "
                f"plausible range [{low:g}, {high:g}] {units[variable]} (wrong units or sign?)"
            )


def _check_absent(frame: pl.DataFrame, absent: Iterable[str], where: str, units: SpatialUnits | None = None) -> None:
    """A variable the source declares absent is null on every row: a value there is an error."""
    for variable in sorted(absent):
        present = frame.filter(pl.col(variable).is_not_null())
        if present.height:
            raise SourceError(
                f"{where}: variable {variable}, {_describe(_first_row(present), units)}: declared absent but has values"
            )


TIME_STEPS = ("month", "day")


def _check_days(frame: pl.DataFrame, where: str, time_step: str, units: SpatialUnits) -> None:
    """`date` (the product's own time stamp) lies in its `month`; one row per unit and date;
    a daily product has every day of each month."""
    key = units.key_column
    outside = frame.filter(pl.col("date").dt.truncate("1mo") != pl.col("month"))
    if outside.height:
        row = _first_row(outside)
        raise SourceError(
            f"{where}: {_describe(row, units)}: time stamp {row['date']} is not in month {row['month']:%Y-%m}"
        )
    duplicated = frame.filter(pl.struct(key, "date").is_duplicated())
    if duplicated.height:
        raise SourceError(
            f"{where}: {_describe(_first_row(duplicated), units)}: duplicate {time_step} for this {units.kind}"
        )
    if time_step == "month":
        daily = frame.filter(pl.col("date") != pl.col("month"))
        if daily.height:
            raise SourceError(
                f"{where}: {_describe(_first_row(daily), units)}: a monthly product is stamped on the 1st"
            )
        return
    for (unit, month), part in frame.group_by(key, "month"):
        days = catalog.days_in_month(month)
        if part.height != days:
            have = set(part["date"].to_list())
            missing = [month + dt.timedelta(days=d) for d in range(days) if month + dt.timedelta(days=d) not in have]
            raise SourceError(
                f"{where}: {_describe({key: unit}, units)}, month {month:%Y-%m}: day {missing[0]:%Y-%m-%d} is missing "
                f"({len(missing)} of {days} days missing)"
            )


def validate_reanalysis(
    frame: pl.DataFrame,
    months: list[dt.date],
    where: str,
    time_step: str = "month",
    units: SpatialUnits | None = None,
    absent: Iterable[str] = (),
) -> pl.DataFrame:
    """Check an ERA5-Land raw frame for exactly `months`; returns it in canonical column order.

    `time_step` "month": one row per unit and month (`date` = the month's first day, added when
    the source leaves it out); "day": one row per unit and day of each month (`date` = the day).
    `units` are the source's spatial units (the six bands by default): bands are keyed `band`,
    other units `unit` (`SpatialUnits.key_column`), and every unit must be in every month.
    `absent` names variables of `catalog.ERA5_LAND_BANDS` the source does not have: their column
    is all null (added when left out). The optional bands (`catalog.ERA5_LAND_OPTIONAL_BANDS`)
    the frame has are kept after the others and checked like them.
    """
    if time_step not in TIME_STEPS:
        raise ValueError(f"time_step {time_step!r}; expected one of {TIME_STEPS}")
    units = units or band_units()
    key = units.key_column
    absent = set(absent)
    unknown_absent = absent - set(catalog.ERA5_LAND_BANDS)
    if unknown_absent:
        raise SourceError(f"{where}: unknown absent variable(s) {sorted(unknown_absent)}")
    frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(v) for v in absent if v not in frame.columns)
    if "date" not in frame.columns and time_step == "month" and "month" in frame.columns:
        frame = frame.with_columns(pl.col("month").alias("date"))
    _require_columns(frame, [key, "month", "date", *catalog.ERA5_LAND_BANDS], where)
    optional = [name for name in catalog.ERA5_LAND_OPTIONAL_BANDS if name in frame.columns]
    frame = frame.select(
        pl.col(key).cast(pl.Int32 if key == "band" else pl.Int64),
        pl.col("month").cast(pl.Date),
        pl.col("date").cast(pl.Date),
        *[pl.col(name).cast(pl.Float64) for name in (*catalog.ERA5_LAND_BANDS, *optional)],
    )
    ranges = {name: bounds for name, bounds in ERA5_LAND_RANGES.items() if name not in absent}
    ranges.update({name: ERA5_LAND_OPTIONAL_RANGES[name] for name in optional})
    expected = [catalog.month_start(m) for m in months]
    if not (time_step == "month" and _clean_monthly(frame, expected, units, ranges)):
        # something is wrong (or a daily frame): the checks one by one, to name the first fault
        _check_unit_ids(frame, where, units)
        _check_days(frame, where, time_step, units)
        per_month = frame.select(key, "month").unique()
        _check_units_and_months(per_month, where, expected, units)
        _check_values(frame, ranges, {**catalog.ERA5_LAND_UNITS, **catalog.ERA5_LAND_OPTIONAL_UNITS}, where, units)
    _check_absent(frame, absent, where, units)
    return frame.sort("date", key)


def _clean_monthly(
    frame: pl.DataFrame,
    expected: list[dt.date],
    units: SpatialUnits | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> bool:
    """True when a monthly ERA5-Land frame (canonical columns and types) passes every check of
    `validate_reanalysis` at once, in a few vectorised steps: no null, every unit known, `date`
    equal to `month`, every (unit, month) of `expected` exactly once and no other, every value of
    `ranges` (default: every ERA5-Land band) finite and in its plausible range. False says only
    that the detailed checks must find the fault."""
    units = units or band_units()
    ranges = ERA5_LAND_RANGES if ranges is None else ranges
    key = units.key_column
    checked = frame.select(key, "month", "date", *ranges)
    if frame.height != units.count * len(expected) or any(checked.null_count().row(0)):
        return False
    ids = units.ids
    unit = frame[key].to_numpy().astype(np.int64)
    month = frame["month"].to_numpy()
    position = np.minimum(np.searchsorted(ids, unit), ids.size - 1)
    if not (ids[position] == unit).all() or not (frame["date"].to_numpy() == month).all():
        return False
    wanted = np.array(expected, dtype="datetime64[D]")
    index = np.searchsorted(wanted, month) if (np.diff(wanted) > np.timedelta64(0)).all() else None
    if index is None or not (wanted[np.minimum(index, wanted.size - 1)] == month).all():
        return False
    # rows = units x months, every month expected and every unit known: all pairs present iff unique
    pairs = index * units.count + position
    if np.unique(pairs).size != frame.height:
        return False
    low = np.array([bounds[0] for bounds in ranges.values()])
    high = np.array([bounds[1] for bounds in ranges.values()])
    values = frame.select(list(ranges)).to_numpy()
    return bool((np.isfinite(values) & (values >= low) & (values <= high)).all())


def validate_cmip5(frame: pl.DataFrame, experiment: str, where: str, absent: Iterable[str] = ()) -> pl.DataFrame:
    """Check a CMIP5 raw frame of one experiment: calendar, continuity, bands, values.

    `absent` names variables the source declares it does not have: their column is all null
    (kept, so the raw schema stays the same), and a value there is an error.
    """
    absent = set(absent)
    unknown_absent = absent - set(catalog.CMIP5_VARIABLES)
    if unknown_absent:
        raise SourceError(f"{where}: unknown absent variable(s) {sorted(unknown_absent)}")
    frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(v) for v in absent if v not in frame.columns)
    _require_columns(frame, ["band", "month", "calendar", "model", *catalog.CMIP5_VARIABLES], where)
    frame = frame.select(
        pl.col("band").cast(pl.Int32),
        pl.col("month").cast(pl.Date),
        pl.col("calendar").cast(pl.Utf8),
        pl.col("model").cast(pl.Utf8),
        *[pl.col(name).cast(pl.Float64) for name in catalog.CMIP5_VARIABLES],
    )
    if frame.is_empty():
        raise SourceError(f"{where}: experiment {experiment} has no rows")
    calendars = set(frame["calendar"].unique().to_list())
    unknown = calendars - CF_CALENDARS
    if unknown or len(calendars) != 1:
        raise SourceError(
            f"{where}: experiment {experiment}: calendar {sorted(map(str, calendars))} is not one CF calendar"
        )
    frame = frame.with_columns(pl.lit(experiment).alias("experiment"))
    _check_units_and_months(frame, where, None)
    _check_absent(frame, absent, where)
    ranges = {name: bounds for name, bounds in CMIP5_RANGES.items() if name not in absent}
    _check_values(frame, ranges, catalog.CMIP5_UNITS, where)
    return frame.sort("month", "band")


def empty_cmip5(experiment: str) -> pl.DataFrame:
    """The raw CMIP5 schema with no rows: what lands for an experiment the source does not have."""
    schema = {"experiment": pl.Utf8, "band": pl.Int32, "month": pl.Date, "calendar": pl.Utf8, "model": pl.Utf8}
    schema.update({name: pl.Float64 for name in catalog.CMIP5_VARIABLES})
    return pl.DataFrame(schema=schema)


def validate_lithology(frame: pl.DataFrame, where: str) -> pl.DataFrame:
    _require_columns(frame, ["band", "lithology", "area_km2"], where)
    frame = frame.select(
        pl.col("band").cast(pl.Int32), pl.col("lithology").cast(pl.Utf8), pl.col("area_km2").cast(pl.Float64)
    )
    unknown = frame.filter(~pl.col("lithology").is_in(list(catalog.LITHOLOGY_CLASSES)))
    if unknown.height:
        row = _first_row(unknown)
        raise SourceError(f"{where}: band {row['band']}: unknown lithology class {row['lithology']!r}")
    bands = set(frame["band"].unique().to_list())
    if bands != set(range(catalog.N_BANDS)):
        raise SourceError(f"{where}: bands {sorted(bands)} present, expected 0..{catalog.N_BANDS - 1}")
    bad = frame.filter(pl.col("area_km2").is_null() | pl.col("area_km2").is_nan() | (pl.col("area_km2") < 0))
    if bad.height:
        row = _first_row(bad)
        raise SourceError(
            f"{where}: variable area_km2, band {row['band']}, class {row['lithology']}: "
            f"value {row['area_km2']!r} is missing or negative"
        )
    totals = frame.group_by("band").agg(pl.col("area_km2").sum()).filter(pl.col("area_km2") <= 0)
    if totals.height:
        raise SourceError(f"{where}: band {totals['band'][0]}: total lithology area is zero")
    return frame.sort("band", "lithology")


def validate_soil_properties(frame: pl.DataFrame, where: str) -> pl.DataFrame:
    depth_columns = list(catalog.OPENLANDMAP_DEPTH_COLUMNS)
    _require_columns(frame, ["band", "property", "asset", "stored_unit", *depth_columns], where)
    frame = frame.select(
        pl.col("band").cast(pl.Int32),
        pl.col("property").cast(pl.Utf8),
        pl.col("asset").cast(pl.Utf8),
        pl.col("stored_unit").cast(pl.Utf8),
        *[pl.col(c).cast(pl.Float64) for c in depth_columns],
    )
    for product in catalog.OPENLANDMAP_PRODUCTS:
        bands = set(frame.filter(pl.col("property") == product)["band"].to_list())
        if bands != set(range(catalog.N_BANDS)):
            raise SourceError(
                f"{where}: variable {product}: bands {sorted(bands)} present, expected 0..{catalog.N_BANDS - 1}"
            )
    for column in depth_columns:
        bad = frame.filter(pl.col(column).is_null() | pl.col(column).is_nan() | (pl.col(column) < 0))
        if bad.height:
            row = _first_row(bad)
            raise SourceError(
                f"{where}: variable {row['property']} depth {column}, band {row['band']}: "
                f"value {row[column]!r} is missing or negative"
            )
    return frame.sort("property", "band")
