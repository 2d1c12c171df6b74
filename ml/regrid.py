"""Climate-model scenario fields regridded onto the reanalysis cells (grid mode). Plain Python.

What the lake holds of CMIP5: **band means**. Every CMIP5 source (ESGF netCDF, band tables, the
demo twin) lands the raw table `cmip5_monthly` with one row per band and month (`sources.esgf`
reduces a model's grid to the six bands: area-weighted means of its land points), and the
scenario mart `fct_scenario_band_month_features` keeps it per band. So the source points are the
six band centroids (the mid latitudes of the band edges, `catalog.Band.mid_latitude`; a band spans
every longitude of the domain, so its value varies with latitude only), and a cell's value is
interpolated **linearly in latitude between the two band centroids around it**
(`xarray.DataArray.interp`, method "linear"). A cell south of band 0's centroid or north of band
5's takes that band's value: targets are **clamped** into the source points' range, never
extrapolated (a linear trend carried past the last centroid could push a sub-Arctic temperature
gradient onto the coast). A field on model grid points (time, lat, lon), as ESGF publishes it
before the band reduction, is interpolated bilinearly by the same call (`regrid_points`), clamped
the same way; the lake does not hold one today.

Why linear interpolation with xarray, not conservative regridding: the source values are band
means, i.e. one number per 2-degree band, and a cell (0.1 degree) is far smaller than the source
"cell", so conservative remapping would give every cell its band's value again (the nearest-band
scheme this replaces) and interpolation is what adds information: the meridional gradient across
the band. xarray is already a dependency (its `interp` is scipy's `interpn`); conservative
remapping would need xESMF (ESMF, not locked, not installable offline). Amounts (precipitation,
snowfall, radiation, column water: `ml.bias_correction.NON_NEGATIVE`) stay non-negative: linear
weights between two non-negative values cannot make a negative one, and the result is clipped at 0
against rounding; snowfall stays below precipitation (same weights for both).

A missing or non-finite source value would spread into its neighbours' cells: it is an error
naming the variable, the band (or grid point) and the month instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from ml.bias_correction import NON_NEGATIVE
from ml.unit_arrays import unit_grid
from sources import catalog

METHOD = "linear"  # xarray interp: linear in latitude between band centroids (bilinear on a lat/lon grid)
BAND_CENTROID_LATITUDES = np.array([band.mid_latitude for band in catalog.BANDS])


def band_latitudes(bands: Sequence[int]) -> np.ndarray:
    """The centroid latitude (degrees north) of each band index (0-5)."""
    bands = np.asarray(bands, dtype=np.int64)
    unknown = bands[(bands < 0) | (bands >= catalog.N_BANDS)]
    if unknown.size:
        raise ValueError(f"band {int(unknown[0])} is not one of the {catalog.N_BANDS} bands (0..{catalog.N_BANDS - 1})")
    return BAND_CENTROID_LATITUDES[bands]


def _check_source(
    values: np.ndarray, names: Sequence[str], months: np.ndarray, points: Sequence[str], where: str
) -> None:
    """Every source value finite, or an error naming the variable, the source point and the month."""
    bad = ~np.isfinite(values)  # (T, point, V)
    if bad.any():
        t, p, v = np.argwhere(bad)[0]
        raise ValueError(
            f"{where}: {names[v]} is missing or not finite at {points[p]}, month {months[t]} "
            f"({int(bad.sum())} value(s) like it): the interpolation would spread it to the cells around"
        )


def _clamped(target: np.ndarray, source: np.ndarray, axis: str, where: str) -> np.ndarray:
    target = np.asarray(target, dtype=np.float64)
    if not np.isfinite(target).all():
        raise ValueError(f"{where}: a target {axis} is not finite")
    return np.clip(target, source.min(), source.max())


def regrid_points(
    values: np.ndarray,
    names: Sequence[str],
    months: np.ndarray,
    lat: np.ndarray,
    cell_lat: np.ndarray,
    lon: np.ndarray | None = None,
    cell_lon: np.ndarray | None = None,
    where: str = "scenario",
) -> np.ndarray:
    """Source values on points of latitude ``lat`` (values (T, lat, V)) or of a lat/lon grid
    (values (T, lat, lon, V) with ``lon``) interpolated onto cells at ``cell_lat`` (and
    ``cell_lon``): (T, cell, V) float64, linear in latitude (bilinear on a grid), targets clamped
    into the source points' range, amounts (``NON_NEGATIVE``) clipped at 0."""
    import xarray as xr

    names = tuple(names)
    values = np.asarray(values, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    gridded = lon is not None
    expected = (len(months), lat.size, *((np.asarray(lon).size,) if gridded else ()), len(names))
    if values.shape != expected:
        raise ValueError(
            f"{where}: source values {values.shape} are not (months, lat{', lon' if gridded else ''}, variables) "
            f"{expected}"
        )
    if np.unique(lat).size != lat.size:
        raise ValueError(f"{where}: source latitudes repeat: {lat.tolist()}")
    if gridded:
        lon = np.asarray(lon, dtype=np.float64)
        points = [f"grid point ({y:.4f} N, {x:.4f} E)" for y in lat for x in lon]
    else:
        points = [f"latitude {y:.4f}" for y in lat]
    _check_source(values.reshape(len(months), len(points), len(names)), names, months, points, where)
    dims = ("month", "lat", *(("lon",) if gridded else ()), "variable")
    coords = {"lat": lat, **({"lon": lon} if gridded else {})}
    field = xr.DataArray(values, dims=dims, coords=coords).sortby("lat")
    targets = {"lat": xr.DataArray(_clamped(cell_lat, lat, "latitude", where), dims="cell")}
    if gridded:
        if cell_lon is None:
            raise ValueError(f"{where}: a lat/lon source needs the cells' longitudes")
        field = field.sortby("lon")
        targets["lon"] = xr.DataArray(_clamped(cell_lon, lon, "longitude", where), dims="cell")
    if any(field.sizes[axis] == 1 for axis in targets):  # one source row: every cell takes it
        field = field.isel({axis: 0 for axis in targets if field.sizes[axis] == 1}, drop=True)
        targets = {axis: target for axis, target in targets.items() if axis in field.dims}
    out = field.interp(targets, method=METHOD) if targets else field.expand_dims(cell=len(cell_lat), axis=1)
    out = np.array(out.transpose("month", "cell", "variable").values, dtype=np.float64)  # a writable copy
    amounts = [k for k, name in enumerate(names) if name in NON_NEGATIVE]
    out[..., amounts] = np.maximum(out[..., amounts], 0.0)
    return out


def regrid_bands(
    frame: pl.DataFrame,
    variables: Sequence[str],
    cells: np.ndarray,
    cell_lat: np.ndarray,
    where: str = "scenario",
) -> pl.DataFrame:
    """A band-keyed frame (``band``, ``month``, ``variables``: e.g. one scenario's rows of the
    scenario mart) regridded onto ``cells`` at latitudes ``cell_lat``: rows ``unit`` (the cell),
    ``month``, ``variables`` (Float64), by unit then month. Linear in latitude between the centroids
    of the bands the frame holds, clamped at the outermost ones (module docstring). A missing
    variable, band-month or value is an error naming ``where``, the variable, the band and month."""
    variables = tuple(variables)
    catalog.require_columns(frame, ("band", "month", *variables), where)
    series = unit_grid(frame, variables, where, key="band")  # every band once a month, finite
    cells = np.asarray(cells, dtype=np.int64)
    if len(cell_lat) != cells.size:
        raise ValueError(f"{where}: {cells.size} cells but {len(cell_lat)} latitudes")
    regridded = regrid_points(
        series.values, variables, series.months, band_latitudes(series.units), cell_lat, where=where
    )  # (T, cell, V)
    n_months = len(series.months)
    by_cell = np.transpose(regridded, (1, 0, 2))  # (cell, T, V)
    return pl.DataFrame(
        {
            "unit": pl.Series("unit", np.repeat(cells, n_months), dtype=pl.Int64),
            "month": pl.Series("month", np.tile(series.months.astype("datetime64[D]"), cells.size)).cast(pl.Date),
            **{name: pl.Series(name, by_cell[..., k].ravel(), dtype=pl.Float64) for k, name in enumerate(variables)},
        }
    )
