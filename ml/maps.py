"""Grid mode's maps: the per-cell summaries of every tile (``ml.tile_projection.summary_frame``),
laid on the grid, as a CF-1.8 netCDF (lat, lon, time) and PNG figures. Plain Python (no Dagster);
the caller mosaics the tiles onto the grid (``sources.grid.Grid.mosaic`` and ``.field``) and hands
(..., lat, lon) fields here, NaN off land.

The netCDF (``to_cf_netcdf``): one ``time`` step per period (EARLY_YEARS, LATE_YEARS of
``ml.tile_projection``, a mean over each: ``time_bnds``), 1-D ``lat``/``lon`` coordinates of the
grid with cell bounds, ``depth`` of the four soil layers, ``scenario``; sea cells hold the
``_FillValue`` (1e20, -1 for the integer variables), and ``cell`` says which cell id of the lake's
tables (and the warehouse view) each grid point is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ml.tile_projection import EARLY_YEARS, LATE_YEARS
from sources import catalog

FILL_FLOAT = np.float32(1.0e20)
FILL_INT = -1
TIME_UNITS = "days since 2001-01-01"
PERIODS = (EARLY_YEARS, LATE_YEARS)
_TALIK = "the 1.00-2.89 m layer's monthly mean stays above 0 degC all year (it no longer refreezes)"

# name -> (dims, attributes); the fields the caller gives (see ``maps_dataset``)
VARIABLES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "soil_temperature": (
        ("scenario", "time", "depth", "lat", "lon"),
        {
            "standard_name": "soil_temperature",
            "long_name": "mean soil temperature of the soil layer over the period (conduction core)",
            "units": "degC",
            "cell_methods": "time: mean",
        },
    ),
    "soil_warming": (
        ("scenario", "depth", "lat", "lon"),
        {
            "long_name": "soil warming: mean soil temperature of {late} minus that of {early}",
            "units": "K",
            "cell_methods": "time: mean",
            "comment": "a difference of two period means (CF has no standard name for it): "
            "soil_temperature at the second time step minus the first",
        },
    ),
    "active_layer_thickness": (
        ("scenario", "time", "lat", "lon"),
        {
            "standard_name": "permafrost_active_layer_thickness",
            "long_name": "mean active-layer thickness over the period (where the annual maximum crosses 0 degC)",
            "units": "m",
            "cell_methods": "time: mean",
            "comment": "years thawed to the bottom of the deepest layer count at 2.89 m, a lower bound "
            "(their share: all_thawed_share)",
        },
    ),
    "all_thawed_share": (
        ("scenario", "time", "lat", "lon"),
        {"long_name": "share of the period's years thawed below 2.89 m (ALT censored)", "units": "1"},
    ),
    "talik_share": (
        ("scenario", "time", "lat", "lon"),
        {"long_name": f"share of the period's years in which {_TALIK}", "units": "1"},
    ),
    "becomes_talik": (
        ("scenario", "lat", "lon"),
        {
            "long_name": "the cell becomes a talik: no longer refreezes at 1.00-2.89 m",
            "flag_values": "0 1",
            "flag_meanings": "refreezes becomes_talik",
            "comment": f"1 where {_TALIK} in fewer than half of the years of {{early}} and in at least half "
            "of those of {late}",
        },
    ),
}


def _bounds(centres: np.ndarray) -> np.ndarray:
    """(n, 2) edges of regularly spaced grid points (half a step each side)."""
    centres = np.asarray(centres, dtype=float)
    half = (centres[1] - centres[0]) / 2 if len(centres) > 1 else 0.05
    return np.stack([centres - half, centres + half], axis=1)


def _days(year: int) -> int:
    return (dt.date(year, 1, 1) - dt.date(2001, 1, 1)).days


def maps_dataset(
    lat: np.ndarray,
    lon: np.ndarray,
    scenarios: Sequence[str],
    fields: Mapping[str, np.ndarray],
    cell: np.ndarray,
):
    """The maps as an xarray Dataset: ``fields`` name -> values with the dims of ``VARIABLES``
    (NaN off land; ``becomes_talik`` as 0/1 floats with NaN off land), ``cell`` (lat, lon) the
    cell id of each grid point (-1 off land)."""
    import xarray as xr

    unknown = sorted(set(fields) ^ set(VARIABLES))
    if unknown:
        raise ValueError(f"maps need exactly the fields {sorted(VARIABLES)}; differ: {unknown}")
    sizes = {"scenario": len(scenarios), "time": len(PERIODS), "depth": len(catalog.SOIL_LAYERS_M)}
    sizes |= {"lat": len(lat), "lon": len(lon)}
    texts = {"early": f"{EARLY_YEARS[0]}-{EARLY_YEARS[1]}", "late": f"{LATE_YEARS[0]}-{LATE_YEARS[1]}"}
    data_vars = {}
    for name, (dims, attrs) in VARIABLES.items():
        values = np.asarray(fields[name])
        if values.shape != tuple(sizes[d] for d in dims):
            raise ValueError(f"map {name}: values {values.shape} are not {dims} {tuple(sizes[d] for d in dims)}")
        if name == "becomes_talik":
            values = np.where(np.isfinite(values), values, FILL_INT).astype(np.int8)
        else:
            values = values.astype(np.float32)
        filled = {key: value.format(**texts) for key, value in attrs.items()}
        if name == "becomes_talik":
            filled["flag_values"] = np.array([0, 1], dtype=np.int8)
        data_vars[name] = (dims, values, {**filled, "grid_mapping": "crs"})
    cell = np.asarray(cell)
    if cell.shape != (len(lat), len(lon)):
        raise ValueError(f"cell ids {cell.shape} are not (lat, lon) {(len(lat), len(lon))}")
    data_vars["cell"] = (
        ("lat", "lon"),
        cell.astype(np.int32),
        {"long_name": "cell id in the lake's grid tables and the warehouse view maps.cell_maps"},
    )
    data_vars["crs"] = ((), np.int32(0), {"grid_mapping_name": "latitude_longitude", "epsg_code": "EPSG:4326"})
    layers = np.asarray(catalog.SOIL_LAYERS_M)
    time_bounds = np.array([[_days(first), _days(last + 1)] for first, last in PERIODS], dtype=np.int64)
    coords = {
        "scenario": ("scenario", np.asarray(list(scenarios)), {"long_name": "CMIP5 RCP experiment"}),
        "time": (
            "time",
            time_bounds.mean(axis=1).astype(np.int64),
            {
                "standard_name": "time",
                "long_name": "middle of the period",
                "units": TIME_UNITS,
                "calendar": "standard",
                "axis": "T",
                "bounds": "time_bnds",
            },
        ),
        "time_bnds": (("time", "bnds"), time_bounds, {}),
        "depth": (
            "depth",
            layers.mean(axis=1),
            {
                "standard_name": "depth",
                "long_name": "mid-depth of the soil layer below the surface",
                "units": "m",
                "positive": "down",
                "axis": "Z",
                "bounds": "depth_bnds",
            },
        ),
        "depth_bnds": (("depth", "bnds"), layers, {}),
        "lat": (
            "lat",
            np.asarray(lat, dtype=float),
            {
                "standard_name": "latitude",
                "long_name": "latitude",
                "units": "degrees_north",
                "axis": "Y",
                "bounds": "lat_bnds",
            },
        ),
        "lat_bnds": (("lat", "bnds"), _bounds(lat), {}),
        "lon": (
            "lon",
            np.asarray(lon, dtype=float),
            {
                "standard_name": "longitude",
                "long_name": "longitude",
                "units": "degrees_east",
                "axis": "X",
                "bounds": "lon_bnds",
            },
        ),
        "lon_bnds": (("lon", "bnds"), _bounds(lon), {}),
    }
    return xr.Dataset(
        data_vars=data_vars,
        coords=coords,
        attrs={
            "Conventions": "CF-1.8",
            "title": "Maps of projected soil warming and active-layer thickness per grid cell of Alaska",
            "institution": "permafrost lakehouse",
            "source": "the conduction core fitted per grid cell on the reanalysis (2001-2018), driven by each "
            "RCP's bias-corrected CMIP5 drivers (each cell its nearest band's scenario)",
            "history": f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ} written by ml.maps.to_cf_netcdf",
            "references": "ERA5-Land (ECMWF); CMIP5 (WCRP)",
            "geospatial_lat_min": float(_bounds(lat).min()),
            "geospatial_lat_max": float(_bounds(lat).max()),
            "geospatial_lon_min": float(_bounds(lon).min()),
            "geospatial_lon_max": float(_bounds(lon).max()),
        },
    )


def to_cf_netcdf(dataset, path: Path | str) -> Path:
    """Write ``maps_dataset``'s Dataset as netCDF-4 at ``path``: float32 fields with _FillValue
    1e20, the integer ones -1, coordinates and bounds without one. The caller makes it atomic."""
    encoding = {}
    for name, variable in dataset.variables.items():
        if name in VARIABLES or name == "cell":
            integer = variable.dtype.kind == "i"
            fill = FILL_INT if integer else FILL_FLOAT
            encoding[name] = {"_FillValue": fill, "zlib": True, "complevel": 4}
            if integer:
                encoding[name]["dtype"] = variable.dtype
        else:
            encoding[name] = {"_FillValue": None}
    encoding["scenario"] = {}
    for name in ("time_bnds", "depth_bnds", "lat_bnds", "lon_bnds"):
        dataset[name].encoding["coordinates"] = None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_netcdf(path, mode="w", format="NETCDF4", engine="netcdf4", encoding=encoding)
    return path


def map_figure(dataset, scenario: str, path: Path | str) -> Path:
    """One RCP's maps as PNG: soil warming of each layer (one colour scale), the late period's
    active-layer thickness, and its change with the cells that become taliks marked."""
    from matplotlib.figure import Figure

    from ml.figures import save_png

    data = dataset.sel(scenario=scenario)
    lon_edges = np.append(dataset["lon_bnds"].values[:, 0], dataset["lon_bnds"].values[-1, 1])
    lat_edges = np.append(dataset["lat_bnds"].values[:, 0], dataset["lat_bnds"].values[-1, 1])
    figure = Figure(figsize=(13.0, 7.0), layout="constrained")
    axes = figure.subplots(2, 3, sharex=True, sharey=True)
    warming = data["soil_warming"].values
    top = float(np.nanmax(np.abs(warming))) if np.isfinite(warming).any() else 1.0
    for k, (upper, lower) in enumerate(catalog.SOIL_LAYERS_M):
        axis = axes.flat[k]
        mesh = axis.pcolormesh(lon_edges, lat_edges, warming[k], cmap="RdBu_r", vmin=-top, vmax=top)
        axis.set_title(f"warming {upper:.2f}-{lower:.2f} m (K)", fontsize=9)
        figure.colorbar(mesh, ax=axis, shrink=0.8)
    alt = data["active_layer_thickness"].values
    late = axes.flat[4].pcolormesh(lon_edges, lat_edges, alt[1], cmap="viridis", vmin=0.0, vmax=2.89)
    axes.flat[4].set_title(f"active layer {LATE_YEARS[0]}-{LATE_YEARS[1]} (m)", fontsize=9)
    figure.colorbar(late, ax=axes.flat[4], shrink=0.8)
    change = alt[1] - alt[0]
    span = float(np.nanmax(np.abs(change))) if np.isfinite(change).any() and np.nanmax(np.abs(change)) > 0 else 1.0
    mesh = axes.flat[5].pcolormesh(lon_edges, lat_edges, change, cmap="PuOr_r", vmin=-span, vmax=span)
    talik = data["becomes_talik"].values == 1
    rows, cols = np.nonzero(talik)
    axes.flat[5].scatter(dataset["lon"].values[cols], dataset["lat"].values[rows], marker="x", s=10, c="k", lw=0.7)
    axes.flat[5].set_title("active-layer change (m); x: becomes a talik", fontsize=9)
    figure.colorbar(mesh, ax=axes.flat[5], shrink=0.8)
    for axis in axes.flat:
        axis.set_aspect(1 / np.cos(np.radians(float(np.mean(dataset["lat"].values)))))
    figure.suptitle(
        f"{scenario}: {LATE_YEARS[0]}-{LATE_YEARS[1]} minus {EARLY_YEARS[0]}-{EARLY_YEARS[1]}, per grid cell"
    )
    return save_png(figure, path)
