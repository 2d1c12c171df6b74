"""Small files the connector tests generate, shaped as the real products are (CF metadata).

- CDS ERA5-Land monthly means: netCDF with `valid_time`, `number`, `expver`, per-day
  accumulations, or the ZIP of one file per step type, or GRIB (through cfgrib).
- ESGF CMIP5: one variable per file, `<var>_<table>_<model>_<experiment>_<ensemble>_<range>.nc`,
  cftime calendars, longitudes 0..360, mrsos masked over the ocean.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import cftime
import numpy as np
import xarray as xr

from sources import catalog
from sources.cds import ACCUMULATED, INSTANTANEOUS

# a 0.5 degree grid over Alaska, north to south as the CDS writes it
CDS_LAT = np.arange(72.0, 57.99, -0.5)
CDS_LON = np.arange(-170.0, -138.99, 0.5)

CDS_UNITS = {
    **{name: "K" for name in ("t2m", "skt", "stl1", "stl2", "stl3", "stl4")},
    "tp": "m",
    "sf": "m",
    **{name: "J m**-2" for name in ("strd", "ssrd", "slhf", "sshf")},
    **{f"swvl{i}": "m**3 m**-3" for i in range(1, 5)},
}
# A plausible value per variable (raw units; accumulations per day) to build fields around.
CDS_BASE = {
    "t2m": 265.0,
    "skt": 264.0,
    "stl1": 270.0,
    "stl2": 271.0,
    "stl3": 272.0,
    "stl4": 273.0,
    "tp": 0.0015,
    "sf": 0.0008,
    "strd": 2.2e7,
    "ssrd": 8.0e6,
    "slhf": -2.0e6,
    "sshf": -1.0e6,
    "swvl1": 0.30,
    "swvl2": 0.31,
    "swvl3": 0.32,
    "swvl4": 0.33,
}


def ocean(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A Bering Sea corner and an Arctic strip: NaN in ERA5-Land (land-only product)."""
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    lon180 = (lon2 + 180.0) % 360.0 - 180.0
    return ((lon180 < -164.0) & (lat2 < 62.0)) | (lat2 > 71.0)


def cds_field(name: str, months: list[dt.date], lat=CDS_LAT, lon=CDS_LON, uniform: bool = False) -> np.ndarray:
    """(time, lat, lon) values of one short name in the CDS' units; NaN over the ocean.

    `uniform`: the same value everywhere at a time (band means then equal it exactly).
    """
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    values = np.empty((len(months), lat.size, lon.size))
    for t, month in enumerate(months):
        season = np.cos(2 * np.pi * (month.month - 1) / 12.0)
        temperature = CDS_UNITS[name] == "K"
        base = CDS_BASE[name] + 10 * season if temperature else CDS_BASE[name] * (1.0 + 0.1 * season)
        if uniform:
            values[t] = base
        elif name.startswith("swvl"):
            values[t] = base + 0.004 * (lat2 - 65.0)
        elif name in ACCUMULATED:
            values[t] = base * (1.0 + 0.02 * (lat2 - 65.0)) * (1.0 + 0.003 * (lon2 + 155.0))
        else:
            values[t] = base - 0.8 * (lat2 - 65.0) + 0.05 * (lon2 + 155.0)
    values[:, ocean(lat, lon)] = np.nan
    return values


def cds_dataset(
    months: list[dt.date],
    names=tuple(catalog.ERA5_LAND_CDS_NAMES),
    lat=CDS_LAT,
    lon=CDS_LON,
    uniform=False,
    fields=None,
) -> xr.Dataset:
    """Monthly means as the new CDS writes them: valid_time, number, expver, GRIB_stepType."""
    times = np.array([np.datetime64(m, "ns") for m in months])
    fields = fields or {}
    data_vars = {}
    for name in names:
        values = fields.get(name, cds_field(name, months, lat, lon, uniform))
        data_vars[name] = xr.DataArray(
            values.astype(np.float32),
            dims=("valid_time", "latitude", "longitude"),
            attrs={
                "units": CDS_UNITS[name],
                "long_name": catalog.ERA5_LAND_CDS_NAMES[name].replace("_", " "),
                "GRIB_stepType": "avgad" if name in ACCUMULATED else "avgua",
                "GRIB_shortName": name,
            },
        )
    dataset = xr.Dataset(
        data_vars,
        coords={
            "valid_time": ("valid_time", times, {"standard_name": "time", "long_name": "time"}),
            "latitude": ("latitude", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "longitude": ("longitude", lon, {"standard_name": "longitude", "units": "degrees_east"}),
            "number": ((), 0, {"long_name": "ensemble member numerical id", "units": "1"}),
            "expver": ("valid_time", np.array(["0001"] * len(months)), {"long_name": "experiment version"}),
        },
        attrs={"Conventions": "CF-1.7", "institution": "European Centre for Medium-Range Weather Forecasts"},
    )
    dataset["valid_time"].encoding.update({"units": "seconds since 1970-01-01", "calendar": "proleptic_gregorian"})
    return dataset


def write_cds_netcdf(path: Path, months: list[dt.date], **kwargs) -> Path:
    cds_dataset(months, **kwargs).to_netcdf(path)
    return path


def write_cds_zip(path: Path, months: list[dt.date], step_types=("avgua", "avgad"), **kwargs) -> Path:
    """The ZIP of one netCDF per step type that the CDS sends for a mixed request."""
    names = {"avgua": INSTANTANEOUS, "avgad": ACCUMULATED}
    with zipfile.ZipFile(path, "w") as archive:
        for step in step_types:
            member = path.parent / f"data_stream-moda_stepType-{step}.nc"
            write_cds_netcdf(member, months, names=names[step], **kwargs)
            archive.write(member, member.name)
            member.unlink()
    return path


# --- ESGF CMIP5 ------------------------------------------------------------------------------

# a 2 x 2.5 degree global grid, longitudes 0..360 as CMIP models write them
CMIP_LAT = np.arange(-89.0, 89.01, 2.0)
CMIP_LON = np.arange(0.0, 359.99, 2.5)
CMIP_TABLE = {"mrso": "Lmon", "mrsos": "Lmon"}
CMIP_STANDARD_NAMES = {
    "tas": "air_temperature",
    "ts": "surface_temperature",
    "pr": "precipitation_flux",
    "prsn": "snowfall_flux",
    "rlds": "surface_downwelling_longwave_flux_in_air",
    "rsds": "surface_downwelling_shortwave_flux_in_air",
    "hfls": "surface_upward_latent_heat_flux",
    "hfss": "surface_upward_sensible_heat_flux",
    "mrsos": "moisture_content_of_soil_layer",
    "mrso": "soil_moisture_content",
}
CMIP_BASE = {
    "tas": 263.0,
    "ts": 262.0,
    "pr": 1.5e-5,
    "prsn": 8.0e-6,
    "rlds": 250.0,
    "rsds": 90.0,
    "hfls": 25.0,
    "hfss": 15.0,
    "mrsos": 35.0,
    "mrso": 900.0,
}


def cmip_land(lat=CMIP_LAT, lon=CMIP_LON) -> np.ndarray:
    """Land cells of the synthetic model: Alaska west of 192.5E (167.5W) is sea, as is the Arctic coast."""
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    return (lon2 >= 192.5) & (lon2 <= 230.0) & (lat2 >= 55.0) & (lat2 <= 70.0)


def cmip_values(variable: str, months: list[tuple[int, int]], lat=CMIP_LAT, lon=CMIP_LON) -> np.ndarray:
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    values = np.empty((len(months), lat.size, lon.size))
    for t, (year, month) in enumerate(months):
        season = np.cos(2 * np.pi * (month - 1) / 12.0)
        trend = 0.01 * (year - 2006)
        if variable in ("tas", "ts"):
            values[t] = CMIP_BASE[variable] + 12 * season + trend - 0.7 * (lat2 - 65.0)
        else:
            values[t] = CMIP_BASE[variable] * (1.0 + 0.2 * season) * (1.0 + 0.01 * (lat2 - 65.0))
    if CMIP_TABLE.get(variable) == "Lmon":
        values[:, ~cmip_land(lat, lon)] = np.nan
    return values


def write_cmip5(
    folder: Path,
    variable: str,
    experiment: str,
    first: tuple[int, int],
    last: tuple[int, int],
    calendar: str = "noleap",
    model: str = "TEST-ESM1",
    units: str | None = None,
    lat=CMIP_LAT,
    lon=CMIP_LON,
    values: np.ndarray | None = None,
) -> Path:
    """One ESGF file: mid-month cftime stamps with bounds in `calendar`, CF attributes."""
    months = []
    year, month = first
    while (year, month) <= last:
        months.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    date_type = cftime.datetime
    starts = [date_type(y, m, 1, calendar=calendar) for y, m in months]
    ends = [date_type(y + (m == 12), m % 12 + 1, 1, calendar=calendar) for y, m in months]
    middles = [s + (e - s) / 2 for s, e in zip(starts, ends, strict=True)]
    units_time = "days since 1850-01-01 00:00:00"
    time = cftime.date2num(middles, units_time, calendar=calendar)
    bounds = np.stack([cftime.date2num(starts, units_time, calendar), cftime.date2num(ends, units_time, calendar)], 1)
    table = CMIP_TABLE.get(variable, "Amon")
    data = cmip_values(variable, months, lat, lon) if values is None else values
    unit = units or catalog.CMIP5_UNITS[variable]
    dataset = xr.Dataset(
        {
            variable: xr.DataArray(
                data.astype(np.float32),
                dims=("time", "lat", "lon"),
                attrs={
                    "standard_name": CMIP_STANDARD_NAMES[variable],
                    "units": unit,
                    "cell_methods": "time: mean",
                    **({"positive": "up"} if variable in ("hfls", "hfss") else {}),
                },
            ),
            "time_bnds": (("time", "bnds"), bounds),
        },
        coords={
            "time": ("time", time, {"units": units_time, "calendar": calendar, "bounds": "time_bnds"}),
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
        attrs={
            "Conventions": "CF-1.4",
            "project_id": "CMIP5",
            "model_id": model,
            "experiment_id": experiment,
            "table_id": f"Table {table}",
            "frequency": "mon",
        },
    )
    name = f"{variable}_{table}_{model}_{experiment}_r1i1p1_{first[0]:04d}{first[1]:02d}-{last[0]:04d}{last[1]:02d}.nc"
    path = Path(folder) / name
    dataset.to_netcdf(path, encoding={variable: {"_FillValue": np.float32(1.0e20)}, "time": {"dtype": "float64"}})
    return path


GRIB_SHORT_NAMES = {"t2m": "2t", "skt": "skt", "tp": "tp", "sf": "sf"}  # cfgrib reads 2t back as t2m


def write_cds_grib(path: Path, months: list[dt.date], names=("t2m", "tp"), lat=CDS_LAT, lon=CDS_LON) -> Path:
    """GRIB 1 messages written through ecCodes (cfgrib's own writer is experimental), one per
    variable and month, ocean points missing (bitmap), as the CDS delivers ERA5-Land."""
    import eccodes

    with open(path, "wb") as out:
        for name in names:
            values = cds_field(name, months, lat, lon)
            for t, month in enumerate(months):
                message = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib1")
                try:
                    eccodes.codes_set(message, "centre", "ecmf")
                    eccodes.codes_set(message, "shortName", GRIB_SHORT_NAMES[name])
                    eccodes.codes_set(message, "dataDate", int(month.strftime("%Y%m%d")))
                    eccodes.codes_set(message, "dataTime", 0)
                    eccodes.codes_set(message, "Ni", lon.size)
                    eccodes.codes_set(message, "Nj", lat.size)
                    eccodes.codes_set(message, "latitudeOfFirstGridPointInDegrees", float(lat[0]))
                    eccodes.codes_set(message, "latitudeOfLastGridPointInDegrees", float(lat[-1]))
                    eccodes.codes_set(message, "longitudeOfFirstGridPointInDegrees", float(lon[0]) % 360.0)
                    eccodes.codes_set(message, "longitudeOfLastGridPointInDegrees", float(lon[-1]) % 360.0)
                    eccodes.codes_set(message, "iDirectionIncrementInDegrees", float(abs(lon[1] - lon[0])))
                    eccodes.codes_set(message, "jDirectionIncrementInDegrees", float(abs(lat[1] - lat[0])))
                    eccodes.codes_set(message, "bitmapPresent", 1)
                    eccodes.codes_set(message, "missingValue", 9999.0)
                    eccodes.codes_set_values(message, np.nan_to_num(values[t], nan=9999.0).reshape(-1))
                    eccodes.codes_write(message, out)
                finally:
                    eccodes.codes_release(message)
    return path


# --- USGS geologic map (GeoPackage) and OpenLandMap (GeoTIFF) -------------------------------------


def lonlat_rectangle(west: float, south: float, east: float, north: float):
    """A lon/lat rectangle with its parallels densified, as a map unit outline is."""
    import shapely

    return shapely.segmentize(shapely.box(west, south, east, north), 0.05)


def write_geology(
    path: Path, units: list[tuple[str, tuple[float, float, float, float]]], lithology: list[dict]
) -> Path:
    """A GeoPackage shaped as SIM 3340: unit polygons (layer AKStategeol_poly, EPSG:3338, field
    NSACLASS) and the lithology table `nsalith` (NSACLASS, LITH1, LITH2, RANK)."""
    import geopandas as gpd
    import pandas as pd
    import pyogrio

    polygons = gpd.GeoDataFrame(
        {"NSACLASS": [key for key, _ in units], "STATE_UNIT": [f"u{i}" for i in range(len(units))]},
        geometry=[lonlat_rectangle(*bounds) for _, bounds in units],
        crs="EPSG:4326",
    ).to_crs("EPSG:3338")
    polygons.to_file(path, layer="AKStategeol_poly", engine="pyogrio")
    pyogrio.write_dataframe(pd.DataFrame(lithology), path, layer="nsalith")
    return path


OLM_STEP = 0.05


def write_openlandmap_tif(path: Path, value, depths_cm=catalog.OPENLANDMAP_DEPTHS_CM, nodata_west_of=-167.5) -> Path:
    """A GeoTIFF in EPSG:4326 over Alaska, one band per depth of `value(lat, depth_cm)`, nodata
    (255) west of `nodata_west_of` (outside the bands' box)."""
    import rasterio
    from rasterio.transform import from_origin

    west, north = -170.0, 73.0
    width, height = int(31.0 / OLM_STEP), int(15.0 / OLM_STEP)
    lon = west + OLM_STEP * (np.arange(width) + 0.5)
    lat = north - OLM_STEP * (np.arange(height) + 0.5)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    depths = [value(lat2, d) for d in depths_cm]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=len(depths),
        dtype="float32",
        crs="EPSG:4326",
        transform=from_origin(west, north, OLM_STEP, OLM_STEP),
        nodata=255.0,
    ) as out:
        for i, values in enumerate(depths, start=1):
            out.write(np.where(lon2 < nodata_west_of, 255.0, values).astype("float32"), i)
    return path
