"""ERA5-Land averaged over river basins (`monthly_by_basin.csv`, CSV or Parquet) as a reanalysis
source whose spatial units are basins.

One row per basin and month: `station_id`, the basin's centroid and area, `year`, `month`,
`n_days` (days the month's values cover), then calendar-month means of daily means (`*_mean`)
and monthly totals of daily sums (`*_sum`) under Earth Engine's band names, in degC, mm per
month, W m-2 and kPa. Converted here to the raw schema (Earth Engine MONTHLY_AGGR names and
units: K, m, J m-2 per month, Pa). What the format does not have (skin temperature, snowfall,
downward radiation, turbulent fluxes) lands as null columns and is declared absent; snowfall
is not derived here (that is the modelling layer's choice, stated there). Potential
evaporation is left out: the table's sign convention for it is not Earth Engine's and is not
documented. A partial month (`n_days` below the month's length, e.g. the newest month of the
published table) is not published: `latest_month()` is the last complete month. Bad input
fails before anything is written, naming file, variable, basin and month.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sources import catalog
from sources.band_table import KELVIN, SECONDS_PER_DAY, read_table
from sources.base import SourceError, published_months
from sources.units import SpatialUnits
from sources.validation import validate_reanalysis

Converter = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (values, seconds of the month) -> raw unit


@dataclass(frozen=True)
class BasinColumn:
    """A column of the basin table: the Earth Engine band it holds, in which unit, and how to
    convert it to the band's raw unit."""

    band: str
    unit: str
    to_raw: Converter


def _kelvin(values, seconds):
    return values + KELVIN


def _metres(values, seconds):
    return values / 1000.0


def _as_is(values, seconds):
    return values


def _monthly_total(values, seconds):
    return values * seconds  # a mean flux (W m-2) over the month -> J m-2 per month


def _pascal(values, seconds):
    return values * 1000.0


BASIN_COLUMNS: dict[str, BasinColumn] = {
    "temperature_2m_mean": BasinColumn("temperature_2m", "degC", _kelvin),
    "total_precipitation_sum": BasinColumn("total_precipitation_sum", "mm", _metres),
    **{
        f"volumetric_soil_water_layer_{i}_mean": BasinColumn(f"volumetric_soil_water_layer_{i}", "m3 m-3", _as_is)
        for i in range(1, 5)
    },
    **{
        f"soil_temperature_level_{i}_mean": BasinColumn(f"soil_temperature_level_{i}", "degC", _kelvin)
        for i in range(1, 5)
    },
    # optional bands (catalog.ERA5_LAND_OPTIONAL_BANDS)
    "snow_depth_water_equivalent_mean": BasinColumn("snow_depth_water_equivalent", "mm", _metres),
    "surface_net_solar_radiation_mean": BasinColumn("surface_net_solar_radiation_sum", "W m-2", _monthly_total),
    "surface_net_thermal_radiation_mean": BasinColumn("surface_net_thermal_radiation_sum", "W m-2", _monthly_total),
    "dewpoint_temperature_2m_mean": BasinColumn("dewpoint_temperature_2m", "degC", _kelvin),
    "surface_pressure_mean": BasinColumn("surface_pressure", "kPa", _pascal),
    "u_component_of_wind_10m_mean": BasinColumn("u_component_of_wind_10m", "m s-1", _as_is),
    "v_component_of_wind_10m_mean": BasinColumn("v_component_of_wind_10m", "m s-1", _as_is),
    "surface_runoff_sum": BasinColumn("surface_runoff_sum", "mm", _metres),
    "sub_surface_runoff_sum": BasinColumn("sub_surface_runoff_sum", "mm", _metres),
}
# Columns of the published table that are read on purpose as nothing (see the module docstring).
LEFT_OUT_COLUMNS = ("potential_evaporation_sum",)
BASIN_KEYS = ("station_id", "latitude", "longitude", "area_km2", "year", "month", "n_days")
# Bands of the product's inputs the format never has: landed null, declared absent.
FORMAT_ABSENT: tuple[str, ...] = tuple(
    band for band in catalog.ERA5_LAND_BANDS if band not in {c.band for c in BASIN_COLUMNS.values()}
)
assert {c.band for c in BASIN_COLUMNS.values()} <= {*catalog.ERA5_LAND_BANDS, *catalog.ERA5_LAND_OPTIONAL_BANDS}
# A basin's mean monthly precipitation below this (mm) means the column is not in mm (m, most
# likely): the driest Alaskan basins get tens of mm a month.
MIN_MEAN_PRECIPITATION_MM = 1.0


@dataclass(frozen=True)
class BasinTable:
    """The table read, checked and converted: raw rows of every month and the basins."""

    frame: pl.DataFrame  # `unit` (station id), `month`, then raw bands (absent ones null)
    units: SpatialUnits
    latest_complete_month: dt.date


def _parse_numbers(table: pl.DataFrame, columns: list[str], where: str, what: Callable[[int], str]) -> pl.DataFrame:
    """`columns` of a text table as Float64; a value that is no number, or none, is an error
    naming the column and the row (`what(row)`: its basin and month)."""
    parsed = table.select(pl.col(c).str.strip_chars().cast(pl.Float64, strict=False) for c in columns)
    for column in columns:
        text = table[column].str.strip_chars()
        not_number = (parsed[column].is_null() & text.is_not_null() & (text != "")).arg_true()
        if not_number.len():
            row = int(not_number[0])
            raise SourceError(f"{where}: column {column}, {what(row)}: {table[column][row]!r} is not a number")
        missing = (parsed[column].is_null() | parsed[column].is_nan()).arg_true()
        if missing.len():
            row = int(missing[0])
            truncated = " (the last row: is the file truncated?)" if row == table.height - 1 else ""
            raise SourceError(f"{where}: column {column}, {what(row)}: value is missing{truncated}")
    return parsed


def _series_groups(frame: pl.DataFrame, bands: list[str]) -> dict[int, int]:
    """Each basin's series group: basins whose every series is identical (small basins inside
    the same ERA5-Land cells) share the smallest id among them."""
    first_of: dict[bytes, int] = {}
    groups = {}
    for (unit,), part in frame.sort("unit", "month").group_by("unit", maintain_order=True):
        signature = part.select(bands).to_numpy().tobytes()
        groups[unit] = first_of.setdefault(signature, unit)
    return groups


def _names(path: Path, basins: list[int]) -> dict[int, str]:
    """Basin names (`waterbody_name`) from the attributes file, by station id."""
    attributes = read_table(path)
    catalog.require_columns(attributes, ("station_id", "waterbody_name"), str(path), SourceError)
    ids = attributes["station_id"].str.strip_chars().cast(pl.Int64, strict=False)
    names = dict(zip(ids.to_list(), attributes["waterbody_name"].to_list(), strict=True))
    missing = [basin for basin in basins if basin not in names]
    if missing:
        raise SourceError(f"{path}: basin {missing[0]} is not in the attributes file ({len(missing)} missing)")
    return {basin: (names[basin] or "").strip() or f"basin {basin}" for basin in basins}  # a blank name: its id


def read_basin_table(
    path: Path, attributes: Path | None = None, basins: list[int] | tuple[int, ...] = (), absent: tuple[str, ...] = ()
) -> BasinTable:
    """Read, check and convert the table at `path` (every basin, or those of `basins`)."""
    where = str(path)
    table = read_table(path)
    wanted_columns = {column: spec for column, spec in BASIN_COLUMNS.items() if spec.band not in absent}
    missing = [c for c in (*BASIN_KEYS, *wanted_columns) if c not in table.columns]
    if missing:
        bands = [BASIN_COLUMNS[c].band for c in missing if c in BASIN_COLUMNS]
        hint = f" (variables {bands}: list those the table lacks under `absent:`)" if bands else ""
        raise SourceError(f"{where}: column(s) {missing} missing{hint}; found {table.columns}")
    ignored = [c for c in table.columns if c not in (*BASIN_KEYS, *BASIN_COLUMNS, *LEFT_OUT_COLUMNS)]
    if ignored:
        warnings.warn(f"{where}: ignoring column(s) {ignored}: not part of the basin table", UserWarning, stacklevel=2)
    if table.is_empty():
        raise SourceError(f"{where}: the table has no rows")

    def row_label(row: int) -> str:
        station, year, month = (table[c][row] for c in ("station_id", "year", "month"))
        return f"basin {station}, month {year}-{str(month).strip().zfill(2)}"

    keys = _parse_numbers(table, list(BASIN_KEYS), where, lambda row: f"row {row + 2}")
    integral = keys.select("station_id", "year", "month", "n_days")
    whole = pl.exclude("index") == pl.exclude("index").round(0)
    fractional = integral.with_row_index().filter(~pl.all_horizontal(whole))
    if fractional.height:
        raise SourceError(
            f"{where}: row {int(fractional['index'][0]) + 2}: station_id, year, month and n_days must be whole numbers"
        )
    keys = keys.with_columns(pl.col("station_id", "year", "month", "n_days").cast(pl.Int64))
    bad_month = keys.with_row_index().filter(~pl.col("month").is_between(1, 12))
    if bad_month.height:
        raise SourceError(f"{where}: {row_label(int(bad_month['index'][0]))}: month is not 1..12")
    values = _parse_numbers(table, list(wanted_columns), where, row_label)
    frame = pl.concat([keys, values], how="horizontal").with_columns(
        unit=pl.col("station_id"), month=pl.date(pl.col("year"), pl.col("month"), 1)
    )
    if basins:
        unknown = sorted(set(basins) - set(frame["unit"].to_list()))
        if unknown:
            raise SourceError(f"{where}: basin(s) {unknown} asked for are not in the table")
        frame = frame.filter(pl.col("unit").is_in(list(basins)))
    _check_coverage(frame, where)
    latest = _latest_complete_month(frame, where)
    _check_precipitation_unit(frame, where)

    seconds = frame["month"].dt.month_end().dt.day().cast(pl.Float64).to_numpy() * SECONDS_PER_DAY
    raw = {spec.band: spec.to_raw(frame[c].to_numpy(), seconds) for c, spec in wanted_columns.items()}
    raw_frame = frame.select(
        "unit",
        "month",
        *(
            pl.Series(band, raw[band]) if band in raw else pl.lit(None, dtype=pl.Float64).alias(band)
            for band in catalog.ERA5_LAND_BANDS
        ),
        *(pl.Series(band, raw[band]) for band in catalog.ERA5_LAND_OPTIONAL_BANDS if band in raw),
    ).sort("month", "unit")

    stations = frame.group_by("unit").agg(pl.col("latitude", "longitude", "area_km2").first()).sort("unit")
    ids = stations["unit"].to_list()
    names = _names(attributes, ids) if attributes else {}
    groups = _series_groups(raw_frame, list(raw))
    units_frame = stations.with_columns(
        name=pl.Series([names.get(basin, f"basin {basin}") for basin in ids], dtype=pl.Utf8),
        series_group=pl.Series([groups[basin] for basin in ids], dtype=pl.Int64),
    )
    units = SpatialUnits.of("basin", units_frame, f"{where} basins")
    return BasinTable(raw_frame, units, latest)


def _refuse_first(rows: pl.DataFrame, where: str, what: Callable[[dict], str]) -> None:
    """A SourceError naming the basin and month of the first of `rows`, if there is one."""
    if rows.height:
        row = rows.row(0, named=True)
        raise SourceError(f"{where}: basin {row['unit']}, month {row['month']:%Y-%m}: {what(row)}")


def _check_coverage(frame: pl.DataFrame, where: str) -> None:
    """One row per basin and month, every basin in every month from the first to the last, each
    basin's centroid and area the same in every row."""
    duplicated = frame.filter(pl.struct("unit", "month").is_duplicated())
    _refuse_first(duplicated, where, lambda row: "duplicate month for this basin")
    ordered = frame.sort("unit", "month")
    for column in ("latitude", "longitude", "area_km2"):
        varying = ordered.filter(pl.col(column) != pl.col(column).first().over("unit"))
        _refuse_first(
            varying,
            where,
            lambda row, column=column: (
                f"{column} {row[column]!r} differs from the basin's first month (a basin has one centroid and area)"
            ),
        )
    months = catalog.month_range(frame["month"].min(), frame["month"].max())
    present = frame.group_by("month").agg(pl.col("unit"))
    gaps = sorted(set(months) - set(present["month"].to_list()))
    if gaps:
        raise SourceError(f"{where}: month {gaps[0]:%Y-%m} is missing for every basin ({len(gaps)} month(s) missing)")
    ids = set(frame["unit"].to_list())
    for month, units in sorted(present.iter_rows()):
        if len(units) != len(ids):
            absent = sorted(ids - set(units))
            raise SourceError(
                f"{where}: basin {absent[0]}, month {month:%Y-%m}: missing ({len(units)} of {len(ids)} basins there)"
            )


def _latest_complete_month(frame: pl.DataFrame, where: str) -> dt.date:
    """The newest month every basin covers in full (`n_days` = the month's days). Only the newest
    month of the table may be partial (not published yet); a partial month before it is an error."""
    checked = frame.with_columns(days_in_month=pl.col("month").dt.month_end().dt.day().cast(pl.Int64))
    wrong = checked.filter((pl.col("n_days") < 1) | (pl.col("n_days") > pl.col("days_in_month")))
    _refuse_first(wrong, where, lambda row: f"n_days {row['n_days']} is not 1..{row['days_in_month']}")
    newest = frame["month"].max()
    partial = checked.filter(pl.col("n_days") < pl.col("days_in_month")).sort("month", "unit")
    inside = partial.filter(pl.col("month") < newest)
    _refuse_first(
        inside,
        where,
        lambda row: f"n_days {row['n_days']} of {row['days_in_month']}: a partial month inside the series",
    )
    latest = catalog.add_months(newest, -1) if partial.height else newest
    if latest < frame["month"].min():
        raise SourceError(f"{where}: no complete month (the only month, {newest:%Y-%m}, is partial)")
    return latest


def _check_precipitation_unit(frame: pl.DataFrame, where: str) -> None:
    if "total_precipitation_sum" not in frame.columns:
        return
    means = frame.group_by("unit").agg(pl.col("total_precipitation_sum").mean()).sort("unit")
    dry = means.filter(pl.col("total_precipitation_sum") < MIN_MEAN_PRECIPITATION_MM)
    if dry.height:
        row = dry.row(0, named=True)
        raise SourceError(
            f"{where}: variable total_precipitation_sum, basin {row['unit']}: mean "
            f"{row['total_precipitation_sum']:.4g} mm per month, implausibly little for mm (is the column in m?)"
        )


class BasinTableReanalysisSource:
    """ERA5-Land basin table (`BasinTableReanalysisConfig`): monthly, Gregorian, basins as units."""

    time_step = "month"

    def __init__(self, config):
        self.config = config
        self.path = Path(config.path)
        self.name = f"basin_table {self.path.name}"
        # the product's inputs it lacks (null in raw); optional bands it lacks are simply not landed
        self.absent_variables: tuple[str, ...] = tuple(
            band for band in catalog.ERA5_LAND_BANDS if band in FORMAT_ABSENT or band in config.absent
        )
        self._table: BasinTable | None = None

    def _read(self) -> BasinTable:
        if self._table is None:
            self._table = read_basin_table(
                self.path, self.config.attributes, tuple(self.config.basins), tuple(self.config.absent)
            )
            warnings.warn(
                f"{self.name}: no {', '.join(self.absent_variables)} in the table: landed as null columns (absent)",
                UserWarning,
                stacklevel=2,
            )
        return self._table

    def units(self) -> SpatialUnits:
        return self._read().units

    def latest_month(self) -> dt.date:
        """The newest month every basin covers in full (a partial newest month is not published)."""
        return self._read().latest_complete_month

    def read_months(self, months: list[dt.date]) -> pl.DataFrame:
        table = self._read()
        wanted = published_months(self.name, months, table.latest_complete_month)
        chosen = table.frame.filter(pl.col("month").is_in(wanted))
        return validate_reanalysis(
            chosen, wanted, f"{self.name} ({self.path})", units=table.units, absent=self.absent_variables
        )
