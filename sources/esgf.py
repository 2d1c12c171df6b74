"""CMIP5 monthly output as published on ESGF, reduced to the six bands.

Files `<var>_<table>_<model>_<experiment>_<ensemble>_<YYYYMM-YYYYMM>.nc`, one variable per
file, a run split over several time ranges (GFDL-ESM2M writes 5-year files), Amon (tas, ts,
pr, prsn, rlds, rsds, hfls, hfss) and Lmon (mrso, mrsos). Times are decoded with cftime in the
model's own calendar (noleap/365_day, 360_day, gregorian/standard, proleptic_gregorian), so a
360-day February 30 is a date like any other; longitudes may run 0..360. Values stay in CMIP
units and conventions (hfls/hfss positive upwards). Band means over land cells: cos-latitude x
fractional band coverage (`sources.regions`) x the land fraction (sftlf, or the cells where the
model's Lmon soil moisture exists).
"""

from __future__ import annotations

import datetime as dt
import glob
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sources import catalog
from sources.base import SourceError
from sources.regions import band_means, band_weights
from sources.validation import validate_cmip5

SOURCE_NAME = "esgf"
FILE_NAME = re.compile(
    r"^(?P<variable>[a-zA-Z0-9]+)_(?P<table>[A-Za-z0-9]+)_(?P<model>[^_]+)_(?P<experiment>[^_]+)_"
    r"(?P<ensemble>r\d+i\d+p\d+)_(?P<start>\d{6})-(?P<end>\d{6})\.nc$"
)
TABLES = {
    **dict.fromkeys(("tas", "ts", "pr", "prsn", "rlds", "rsds", "hfls", "hfss"), "Amon"),
    "mrso": "Lmon",
    "mrsos": "Lmon",
}
SUPPORTED_CALENDARS = ("standard", "gregorian", "proleptic_gregorian", "noleap", "365_day", "360_day")
CALENDAR_NAMES = {"gregorian": "standard", "365_day": "noleap"}  # one spelling each in the raw table
UPWARD = ("hfls", "hfss")
# unit spellings seen in CMIP5 files for the raw units (scale 1)
UNIT_SPELLINGS = {
    "K": {"K", "k", "kelvin"},
    "kg m-2 s-1": {"kg m-2 s-1", "kg m-2 s**-1", "kg/m2/s", "kg m^-2 s^-1"},
    "W m-2": {"W m-2", "W m**-2", "W/m2", "W m^-2"},
    "kg m-2": {"kg m-2", "kg m**-2", "kg/m2", "kg m^-2"},
}


@dataclass(frozen=True)
class EsgfFile:
    path: Path
    variable: str
    table: str
    model: str
    experiment: str
    ensemble: str
    start: str
    end: str


def parse_name(path: Path) -> EsgfFile:
    match = FILE_NAME.match(path.name)
    if not match:
        raise SourceError(
            f"{path}: not an ESGF CMIP5 file name (<var>_<table>_<model>_<experiment>_<ensemble>_<YYYYMM-YYYYMM>.nc)"
        )
    return EsgfFile(path=path, **match.groupdict())


def _month(value) -> dt.date:
    return dt.date(int(value.year), int(value.month), 1)


def _next(month: dt.date) -> dt.date:
    return catalog.add_months(month, 1)


class EsgfClimateModelSource:
    """CMIP5 from ESGF netCDF files (`EsgfClimateModelConfig`)."""

    def __init__(self, config, weights_cache: Path | None = None):
        self.config = config
        self.weights_cache = weights_cache
        paths = sorted({Path(p) for pattern in config.paths for p in glob.glob(str(pattern))})
        self.files = [parse_name(p) for p in paths]
        models = sorted({f.model for f in self.files})
        ensembles = sorted({f.ensemble for f in self.files})
        self.model = self._choose(config.model, models, "model")
        self.ensemble = self._choose(config.ensemble, ensembles, "ensemble")
        self.files = [f for f in self.files if f.model == self.model and f.ensemble == self.ensemble]
        self.name = f"esgf {self.model} {self.ensemble}"

    @staticmethod
    def _choose(wanted: str | None, found: list[str], key: str) -> str:
        if wanted is not None:
            if wanted not in found:
                raise SourceError(f"esgf: {key} {wanted!r} is in no file name; found {found}")
            return wanted
        if len(found) != 1:
            raise SourceError(f"esgf: the files hold {key}s {found}; choose one with `{key}:` in the sources file")
        return found[0]

    def experiments(self) -> tuple[str, ...]:
        present = {f.experiment for f in self.files}
        return tuple(e for e in catalog.CMIP5_EXPERIMENTS if e in present)

    # --- reading one variable --------------------------------------------------------------

    def _open(self, path: Path):
        import xarray as xr

        try:
            return xr.open_dataset(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))
        except ValueError as error:
            text = str(error)
            if "calendar" in text.lower() or "unable to decode time" in text.lower():
                calendar = self._calendar_attribute(path)
                raise SourceError(
                    f"{path}: unsupported calendar {calendar!r}; expected one of {SUPPORTED_CALENDARS}"
                ) from None
            raise SourceError(f"{path}: cannot read this netCDF file: {error}") from None
        except Exception as error:
            raise SourceError(f"{path}: cannot read this netCDF file (truncated or not netCDF?): {error}") from None

    @staticmethod
    def _calendar_attribute(path: Path) -> str:
        import xarray as xr

        with xr.open_dataset(path, decode_times=False) as raw:
            return str(raw["time"].attrs.get("calendar", "standard"))

    def _read_file(self, item: EsgfFile):
        """(months, values (time, lat, lon), lat, lon, calendar) of one file, in raw units."""
        dataset = self._open(item.path)
        with dataset:
            if item.variable not in dataset.data_vars:
                raise SourceError(f"{item.path}: variable {item.variable} is not in the file")
            data = dataset[item.variable]
            calendar = str(dataset["time"].encoding.get("calendar", data["time"].attrs.get("calendar", "standard")))
            if calendar not in SUPPORTED_CALENDARS:
                raise SourceError(
                    f"{item.path}: variable {item.variable}: unsupported calendar {calendar!r}; "
                    f"expected one of {SUPPORTED_CALENDARS}"
                )
            unit = str(data.attrs.get("units", ""))
            expected = catalog.CMIP5_UNITS[item.variable]
            if unit not in UNIT_SPELLINGS[expected]:
                raise SourceError(
                    f"{item.path}: variable {item.variable} is in {unit!r}, which cannot be right for it; "
                    f"expected {expected}"
                )
            lat_name = next((n for n in ("lat", "latitude") if n in data.dims), None)
            lon_name = next((n for n in ("lon", "longitude") if n in data.dims), None)
            if lat_name is None or lon_name is None:
                raise SourceError(
                    f"{item.path}: variable {item.variable} has dims {data.dims}; expected time, lat, lon"
                )
            try:
                values = data.transpose("time", lat_name, lon_name).values.astype(np.float64)
            except Exception as error:
                raise SourceError(f"{item.path}: cannot read variable {item.variable}: {error}") from None
            if item.variable in UPWARD and str(data.attrs.get("positive", "up")).lower() == "down":
                values = -values  # keep CMIP's upward convention in the raw table
            months = [_month(t) for t in data["time"].values]
            return months, values, data[lat_name].values, data[lon_name].values, CALENDAR_NAMES.get(calendar, calendar)

    def _read_variable(self, experiment: str, variable: str):
        files = sorted(
            (f for f in self.files if f.experiment == experiment and f.variable == variable), key=lambda f: f.start
        )
        if not files:
            raise SourceError(
                f"{self.name}: variable {variable} is missing for experiment {experiment} "
                f"(no {variable}_{TABLES[variable]}_{self.model}_{experiment}_{self.ensemble}_*.nc)"
            )
        months: list[dt.date] = []
        origin: dict[dt.date, Path] = {}
        chunks, grid, calendars = [], None, set()
        for item in files:
            file_months, values, lat, lon, calendar = self._read_file(item)
            calendars.add(calendar)
            if grid is None:
                grid = (lat, lon)
            elif not (np.array_equal(grid[0], lat) and np.array_equal(grid[1], lon)):
                raise SourceError(f"{item.path}: variable {variable} is on another grid than in {files[0].path}")
            for month in file_months:
                if month in origin:
                    raise SourceError(
                        f"{item.path}: variable {variable}, month {month:%Y-%m} is duplicated (also in {origin[month]})"
                    )
                if months and month != _next(months[-1]):
                    gap = _next(months[-1])
                    raise SourceError(
                        f"{item.path}: variable {variable}, month {gap:%Y-%m} is missing "
                        f"(the run jumps from {months[-1]:%Y-%m} to {month:%Y-%m})"
                    )
                origin[month] = item.path
                months.append(month)
            chunks.append(values)
        if len(calendars) != 1:
            raise SourceError(f"{self.name}: variable {variable} of {experiment} mixes calendars {sorted(calendars)}")
        return months, np.concatenate(chunks), grid[0], grid[1], calendars.pop(), files

    # --- land ------------------------------------------------------------------------------

    def _land_fraction(self, experiment: str, lat: np.ndarray, lon: np.ndarray, lmon: dict) -> np.ndarray:
        if self.config.land_fraction is not None:
            import xarray as xr

            with xr.open_dataset(self.config.land_fraction) as fx:
                if "sftlf" not in fx:
                    raise SourceError(f"{self.config.land_fraction}: variable sftlf is not in the file")
                fraction = fx["sftlf"].values.astype(float)
                if fraction.shape != (lat.size, lon.size):
                    raise SourceError(f"{self.config.land_fraction}: sftlf is on another grid than the model's files")
                return fraction / 100.0 if np.nanmax(fraction) > 1.0 else fraction
        for variable in ("mrsos", "mrso"):
            if variable in lmon:
                months, values, lat_l, lon_l, _, _ = lmon[variable]
                if np.array_equal(lat_l, lat) and np.array_equal(lon_l, lon):
                    return np.isfinite(values[0]).astype(float)
        raise SourceError(
            f"{self.name}: no land mask for experiment {experiment}: give `land_fraction` (sftlf_fx file) "
            "or the Lmon files (mrsos/mrso) on the same grid"
        )

    # --- the protocol ----------------------------------------------------------------------

    def read_experiment(self, experiment: str) -> pl.DataFrame:
        if experiment not in self.experiments():
            raise SourceError(f"{self.name}: no file for experiment {experiment}; found {self.experiments()}")
        series = {variable: self._read_variable(experiment, variable) for variable in catalog.CMIP5_VARIABLES}
        spans = {v: (s[0][0], s[0][-1]) for v, s in series.items()}
        reference = series["tas"][0]
        for variable, (first, last) in spans.items():
            if (first, last) != (reference[0], reference[-1]):
                raise SourceError(
                    f"{self.name}: experiment {experiment}: variable {variable} covers {first:%Y-%m}..{last:%Y-%m}, "
                    f"tas {reference[0]:%Y-%m}..{reference[-1]:%Y-%m}"
                )
        calendars = {s[4] for s in series.values()}
        if len(calendars) != 1:
            raise SourceError(f"{self.name}: experiment {experiment} mixes calendars {sorted(calendars)}")
        calendar = calendars.pop()
        lmon = {v: s for v, s in series.items() if TABLES[v] == "Lmon"}
        labels = [f"month {m:%Y-%m}" for m in reference]
        columns = {}
        for variable, (_, values, lat, lon, _, files) in series.items():
            where = str(files[0].path) if len(files) == 1 else f"{files[0].path} (+{len(files) - 1} more)"
            land = None if TABLES[variable] == "Lmon" else self._land_fraction(experiment, lat, lon, lmon)
            weights = band_weights(lat, lon, land_fraction=land, where=where, cache_dir=self.weights_cache)
            columns[variable] = band_means(values, weights, where, variable, labels).reshape(-1)
        n = len(reference) * catalog.N_BANDS
        frame = pl.DataFrame(
            {
                "band": pl.Series(np.tile(np.arange(catalog.N_BANDS), len(reference)), dtype=pl.Int32),
                "month": pl.Series(np.repeat(np.array(reference, dtype="datetime64[D]"), catalog.N_BANDS)).cast(
                    pl.Date
                ),
                "calendar": [calendar] * n,
                "model": [self.model] * n,
                **{v: pl.Series(v, columns[v], dtype=pl.Float64) for v in catalog.CMIP5_VARIABLES},
            }
        )
        return validate_cmip5(frame, experiment, f"{self.name} {experiment}").drop("experiment")
