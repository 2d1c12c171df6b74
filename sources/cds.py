"""ERA5-Land monthly means as the Copernicus CDS delivers them (`reanalysis-era5-land-monthly-means`).

netCDF from the new CDS (time coordinate `valid_time`, extra `number` and `expver`
coordinates), GRIB read through cfgrib, or the ZIP the CDS sends when a request mixes step
types (one file per step type: `...stepType-avgua.nc` for averaged analyses, `...stepType-avgad.nc`
for averaged accumulations). Short names t2m, skt, tp, sf, strd, ssrd, slhf, sshf, swvl1-4, stl1-4.

In these monthly means an accumulated variable is the mean of the month's daily totals (per
day): the monthly total that Earth Engine's MONTHLY_AGGR `_sum` bands hold is that value times
the days in the month. Band means are area-weighted (`sources.regions`). Errors name the file,
variable, band and month.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sources import catalog
from sources.base import SourceError, published_months
from sources.regions import band_means, band_weights
from sources.validation import validate_reanalysis

SOURCE_NAME = "cds"
ACCUMULATED = ("tp", "sf", "strd", "ssrd", "slhf", "sshf")
INSTANTANEOUS = tuple(name for name in catalog.ERA5_LAND_CDS_NAMES if name not in ACCUMULATED)
# the CDS splits a mixed request by GRIB step type: averaged analyses vs averaged accumulations
STEP_TYPES = {"avgua": INSTANTANEOUS, "avgad": ACCUMULATED}

# Units the files may carry per short name -> factor and offset to the raw unit (per day for
# the accumulations, converted to monthly totals afterwards).
_TEMPERATURE = {"K": (1.0, 0.0), "kelvin": (1.0, 0.0), "degC": (1.0, 273.15), "C": (1.0, 273.15)}
_WATER = {"m": (1.0, 0.0), "m of water equivalent": (1.0, 0.0), "mm": (0.001, 0.0)}
_ENERGY = {"J m-2": (1.0, 0.0)}
_VOLUMETRIC = {"m3 m-3": (1.0, 0.0), "1": (1.0, 0.0)}
UNITS: dict[str, dict[str, tuple[float, float]]] = {
    "t2m": _TEMPERATURE,
    "skt": _TEMPERATURE,
    **{f"stl{i}": _TEMPERATURE for i in range(1, 5)},
    "tp": _WATER,
    "sf": _WATER,
    **{name: _ENERGY for name in ("strd", "ssrd", "slhf", "sshf")},
    **{f"swvl{i}": _VOLUMETRIC for i in range(1, 5)},
}


def _unit_key(text: str) -> str:
    text = text.replace("**", "").replace("^", "").strip()
    return re.sub(r"\s+", " ", text)


def to_raw_units(short: str, values: np.ndarray, unit: str | None, where: str) -> np.ndarray:
    known = UNITS[short]
    if unit is None:
        raise SourceError(f"{where}: variable {short} has no units attribute; expected one of {sorted(known)}")
    factor_offset = known.get(_unit_key(unit))
    if factor_offset is None:
        raise SourceError(
            f"{where}: variable {short} is in {unit!r}, which cannot be right for it; expected one of {sorted(known)}"
        )
    factor, offset = factor_offset
    return values * factor + offset


@dataclass
class _Field:
    """One variable in one file: lazily indexed values and the months its time steps are."""

    path: str
    data: object  # xarray.DataArray (valid_time, latitude, longitude)
    months: list[dt.date]


def _month_of(stamp: np.datetime64) -> dt.date:
    day = np.datetime64(stamp, "D").astype(dt.date)
    return dt.date(day.year, day.month, 1)


class CdsReanalysisSource:
    """ERA5-Land monthly means from CDS files (`CdsReanalysisConfig`)."""

    name = SOURCE_NAME
    time_step = "month"

    def __init__(self, config, weights_cache: Path | None = None):
        import glob

        self.config = config
        self.weights_cache = weights_cache
        self.paths = sorted({p for pattern in config.paths for p in glob.glob(str(pattern))})
        self._fields: dict[str, list[_Field]] | None = None
        self._unpacked: list[tempfile.TemporaryDirectory] = []

    # --- opening ---------------------------------------------------------------------------

    def _open_netcdf(self, path: Path, label: str):
        import xarray as xr

        try:
            return [xr.open_dataset(path, engine="netcdf4" if path.suffix != ".h5" else "h5netcdf")]
        except Exception as error:  # netCDF4/HDF5 raise OSError, RuntimeError or ValueError
            raise SourceError(f"{label}: cannot read this netCDF file (truncated or not netCDF?): {error}") from None

    def _open_grib(self, path: Path, label: str):
        import cfgrib

        try:
            # one dataset per GRIB step type / level type; no index file beside the data
            return cfgrib.open_datasets(str(path), backend_kwargs={"indexpath": ""})
        except Exception as error:
            raise SourceError(f"{label}: cannot read this GRIB file: {error}") from None

    def _open(self, path: Path, label: str):
        suffix = path.suffix.lower()
        if suffix in (".grib", ".grb", ".grib2", ".grb2"):
            return self._open_grib(path, label)
        return self._open_netcdf(path, label)

    def _unzip(self, path: Path) -> list[tuple[Path, str]]:
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as error:
            raise SourceError(f"{path}: not a readable ZIP file: {error}") from None
        folder = tempfile.TemporaryDirectory(prefix="cds_zip_")
        self._unpacked.append(folder)
        members = []
        with archive:
            for member in archive.namelist():
                if member.endswith("/"):
                    continue
                target = Path(folder.name) / Path(member).name
                target.write_bytes(archive.read(member))
                members.append((target, f"{path}!{member}"))
        step_types = {m.group(1) for _, label in members if (m := re.search(r"stepType-([a-z]+)", label))}
        if step_types:
            missing = sorted(set(STEP_TYPES) - step_types)
            if missing:
                step = missing[0]
                raise SourceError(
                    f"{path}: ZIP has no member for step type {step} (variables {', '.join(STEP_TYPES[step])}); "
                    f"members: {[label.split('!')[1] for _, label in members]}"
                )
        return members

    def _normalise(self, dataset, label: str):
        """valid_time as the time dimension; one ensemble member; expver versions combined."""
        if "valid_time" not in dataset.dims:
            if "time" in dataset.dims and "valid_time" in dataset.coords and dataset["valid_time"].dims == ("time",):
                dataset = dataset.swap_dims({"time": "valid_time"})
            elif "time" in dataset.dims:
                dataset = dataset.rename({"time": "valid_time"})
            else:
                raise SourceError(f"{label}: no time coordinate (valid_time or time)")
        if "number" in dataset.dims:
            if dataset.sizes["number"] != 1:
                raise SourceError(f"{label}: {dataset.sizes['number']} ensemble members (number); expected one")
            dataset = dataset.isel(number=0)
        if "expver" in dataset.dims:
            # the old CDS format: final (0001) and preliminary ERA5T (0005) data side by side, NaN elsewhere
            combined = dataset.isel(expver=0)
            for i in range(1, dataset.sizes["expver"]):
                combined = combined.combine_first(dataset.isel(expver=i))
            dataset = combined
        renames = {old: new for old, new in (("lat", "latitude"), ("lon", "longitude")) if old in dataset.dims}
        return dataset.rename(renames) if renames else dataset

    def _scan(self) -> dict[str, list[_Field]]:
        if self._fields is not None:
            return self._fields
        if not self.paths:
            raise SourceError(f"{self.name}: no file matches {self.config.paths}")
        fields: dict[str, list[_Field]] = {name: [] for name in catalog.ERA5_LAND_CDS_NAMES}
        for path_text in self.paths:
            path = Path(path_text)
            members = self._unzip(path) if path.suffix.lower() == ".zip" else [(path, str(path))]
            for member, label in members:
                for dataset in self._open(member, label):
                    dataset = self._normalise(dataset, label)
                    months = [_month_of(t) for t in dataset["valid_time"].values]
                    seen: set[dt.date] = set()
                    for month in months:
                        if month in seen:
                            raise SourceError(f"{label}: month {month:%Y-%m} appears twice (a monthly-means file?)")
                        seen.add(month)
                    for name in dataset.data_vars:
                        if name in fields:
                            fields[name].append(_Field(label, dataset[name], months))
        self._fields = fields
        return fields

    def _files_label(self) -> str:
        return ", ".join(self.paths) if len(self.paths) <= 3 else f"{self.paths[0]} and {len(self.paths) - 1} more"

    # --- the protocol ----------------------------------------------------------------------

    def latest_month(self) -> dt.date:
        fields = self._scan()
        missing = [name for name, found in fields.items() if not found]
        if missing:
            raise SourceError(f"{self._files_label()}: variable {missing[0]} is missing (no file has {missing})")
        # the newest month every variable has
        return min(max(m for field in found for m in field.months) for found in fields.values())

    def _locate(self, short: str, month: dt.date) -> tuple[_Field, int]:
        hits = [(field, field.months.index(month)) for field in self._scan()[short] if month in field.months]
        if not hits:
            raise SourceError(f"{self._files_label()}: variable {short}, month {month:%Y-%m} is missing")
        if len(hits) > 1:
            files = sorted({field.path for field, _ in hits})
            raise SourceError(f"variable {short}, month {month:%Y-%m} is duplicated in {files}")
        return hits[0]

    def read_months(self, months: list[dt.date]) -> pl.DataFrame:
        wanted = published_months(self.name, months, self.latest_month())
        fields = self._scan()
        days = np.array([catalog.days_in_month(m) for m in wanted], dtype=float)
        columns: dict[str, np.ndarray] = {}
        labels = [f"month {m:%Y-%m}" for m in wanted]
        for short, band_name in catalog.ERA5_LAND_CDS_NAMES.items():
            if not fields[short]:
                raise SourceError(f"{self._files_label()}: variable {short} ({band_name}) is missing")
            located = [self._locate(short, month) for month in wanted]
            first = located[0][0].data
            lat = first["latitude"].values
            lon = first["longitude"].values
            weights = band_weights(lat, lon, where=located[0][0].path, cache_dir=self.weights_cache)
            stack = np.empty((len(wanted), lat.size, lon.size))
            by_field: dict[int, tuple[_Field, list[int], list[int]]] = {}
            for position, (field, index) in enumerate(located):
                by_field.setdefault(id(field), (field, [], []))
                by_field[id(field)][1].append(index)
                by_field[id(field)][2].append(position)
            for field, indices, positions in by_field.values():  # one read per file and variable
                data = field.data
                if not (np.array_equal(data["latitude"].values, lat) and np.array_equal(data["longitude"].values, lon)):
                    raise SourceError(f"{field.path}: variable {short} is on another grid than in {located[0][0].path}")
                try:
                    values = np.asarray(data.isel(valid_time=indices).values, dtype=np.float64)
                except Exception as error:
                    raise SourceError(f"{field.path}: cannot read variable {short}: {error}") from None
                stack[positions] = to_raw_units(short, values, data.attrs.get("units"), field.path)
            means = band_means(stack, weights, self._files_label(), short, labels)
            if short in ACCUMULATED:
                means = means * days[:, None]  # mean of daily totals -> monthly total
            columns[band_name] = means.reshape(-1)
        frame = pl.DataFrame(
            {
                "band": pl.Series(np.tile(np.arange(catalog.N_BANDS), len(wanted)), dtype=pl.Int32),
                "month": pl.Series(np.repeat(np.array(wanted, dtype="datetime64[D]"), catalog.N_BANDS)).cast(pl.Date),
                **{name: pl.Series(name, columns[name], dtype=pl.Float64) for name in catalog.ERA5_LAND_BANDS},
            }
        )
        return validate_reanalysis(frame, wanted, f"{self.name} {self._files_label()}")
