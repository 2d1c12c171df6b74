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


def raw_unit_conversion(short: str, unit: str | None, where: str) -> tuple[float, float]:
    """(factor, offset) from the file's `unit` to the raw unit of `short`; an error naming the
    file and variable when the unit is absent or cannot be right for it."""
    known = UNITS[short]
    if unit is None:
        raise SourceError(f"{where}: variable {short} has no units attribute; expected one of {sorted(known)}")
    factor_offset = known.get(_unit_key(unit))
    if factor_offset is None:
        raise SourceError(
            f"{where}: variable {short} is in {unit!r}, which cannot be right for it; expected one of {sorted(known)}"
        )
    return factor_offset


@dataclass
class _Grid:
    """The latitude and longitude of one dataset, shared by its variables."""

    lat: np.ndarray
    lon: np.ndarray


@dataclass
class _Field:
    """One variable in one file: lazily indexed values and the months its time steps are."""

    path: str
    data: object  # xarray.DataArray (valid_time, latitude, longitude)
    months: list[dt.date]
    grid: _Grid

    def read(self, short: str, indices: list[int]) -> np.ndarray:
        """The time steps `indices` (time, lat, lon) in the file's own float type (float32 stays
        float32: the band sums are float64, a float64 copy of the field would only cost time)."""
        data = self.data
        if indices == list(range(indices[0], indices[-1] + 1)):
            # a run of months: a slice, which the backends read in one piece
            whole = indices[0] == 0 and len(indices) == data.shape[0]
            selection = data if whole else data.isel(valid_time=slice(indices[0], indices[-1] + 1))
        else:
            selection = data.isel(valid_time=indices)
        try:
            values = np.asarray(selection.values)
        except Exception as error:
            raise SourceError(f"{self.path}: cannot read variable {short}: {error}") from None
        return values if values.dtype.kind == "f" else values.astype(np.float64)


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
            # cache=False: a read is not kept in the dataset (this source may live long and be
            # asked for many months); each read_months reads the file afresh
            engine = "netcdf4" if path.suffix != ".h5" else "h5netcdf"
            return [xr.open_dataset(path, engine=engine, cache=False)]
        except Exception as error:  # netCDF4/HDF5 raise OSError, RuntimeError or ValueError
            raise SourceError(f"{label}: cannot read this netCDF file (truncated or not netCDF?): {error}") from None

    def _open_grib(self, path: Path, label: str):
        import cfgrib

        try:
            # one dataset per GRIB step type / level type; no index file beside the data
            return cfgrib.open_datasets(str(path), backend_kwargs={"indexpath": ""}, cache=False)
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
                    grid = None  # the variables of one dataset share its coordinates
                    for name in dataset.data_vars:
                        if name in fields:
                            data = dataset[name]
                            if grid is None:
                                grid = _Grid(data["latitude"].values, data["longitude"].values)
                            fields[name].append(_Field(label, data, months, grid))
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
        files_label = self._files_label()
        grid_weights: dict[int, object] = {}  # per grid of this read: the band weights
        for short, band_name in catalog.ERA5_LAND_CDS_NAMES.items():
            if not fields[short]:
                raise SourceError(f"{files_label}: variable {short} ({band_name}) is missing")
            located = [self._locate(short, month) for month in wanted]
            first = located[0][0]
            grid = first.grid
            if id(grid) not in grid_weights:
                grid_weights[id(grid)] = band_weights(
                    grid.lat, grid.lon, where=first.path, cache_dir=self.weights_cache
                )
            weights = grid_weights[id(grid)]
            by_field: dict[int, tuple[_Field, list[int], list[int]]] = {}
            for position, (field, index) in enumerate(located):
                by_field.setdefault(id(field), (field, [], []))
                by_field[id(field)][1].append(index)
                by_field[id(field)][2].append(position)
            # units checked before anything is read; converted on the band means (a mean of
            # factor x value + offset is factor x mean + offset), not on every grid cell
            factor = np.ones(len(wanted))
            offset = np.zeros(len(wanted))
            parts = []
            for field, indices, positions in by_field.values():  # one read per file and variable
                if field.grid is not grid and not (
                    np.array_equal(field.grid.lat, grid.lat) and np.array_equal(field.grid.lon, grid.lon)
                ):
                    raise SourceError(f"{field.path}: variable {short} is on another grid than in {first.path}")
                factor[positions], offset[positions] = raw_unit_conversion(
                    short, field.data.attrs.get("units"), field.path
                )
                parts.append((field.read(short, indices), positions))
            if len(parts) == 1 and parts[0][1] == list(range(len(wanted))):
                stack = parts[0][0]
            else:
                stack = np.empty(
                    (len(wanted), grid.lat.size, grid.lon.size), dtype=np.result_type(*(v for v, _ in parts))
                )
                for values, positions in parts:
                    stack[positions] = values
            means = band_means(stack, weights, files_label, short, labels)
            if (factor != 1.0).any() or (offset != 0.0).any():
                means = means * factor[:, None] + offset[:, None]
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
        return validate_reanalysis(frame, wanted, f"{self.name} {files_label}")
