"""Area-weighted means of gridded fields over the six latitude bands.

Weights per band and grid cell = the cell's fraction inside the band's polygon (regionmask's
fractional 3-D mask: 10 x 10 sub-samples per cell, so a cell cut by a band edge counts by the
part that lies inside) x cos(latitude) (cell area on a regular grid) x the cell's land fraction
where one is given. Cells that are missing (NaN: the ocean of ERA5-Land, the ocean of a CMIP
Lmon variable) carry no weight. The weights depend only on the grid, so they are computed once
per grid and kept (in memory, and in `cache_dir` when one is configured).

regionmask is imported inside the functions that need it: it is a heavy import.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sources import catalog
from sources.base import SourceError

# Grid cells this far (degrees) outside the bands are kept when a grid is cut to Alaska, so
# cells cut by an edge keep their whole extent.
MARGIN_DEG = 3.0
WEIGHTS_VERSION = "1"  # bump when the weighting changes, so cached weights are not reused
_MEMORY: OrderedDict[str, BandWeights] = OrderedDict()
_MEMORY_SIZE = 8


@dataclass(frozen=True)
class BandWeights:
    """Weights (band, lat, lon) for the cut `lat_index` x `lon_index` of a grid."""

    lat_index: slice
    lon_index: np.ndarray  # positions along the grid's longitude axis (may wrap)
    weights: np.ndarray  # (N_BANDS, n_lat, n_lon), float64, >= 0
    method: str  # "fractional" | "cell centre"
    cells: np.ndarray  # flat positions (in the cut grid) of the cells that weigh in some band
    matrix: np.ndarray  # (band, cells) weights of those cells, each band's row contiguous


def _weights(lat_index, lon_index, weights: np.ndarray, method: str) -> BandWeights:
    flat = weights.reshape(catalog.N_BANDS, -1)
    cells = np.flatnonzero(flat.sum(axis=0) > 0)
    return BandWeights(lat_index, lon_index, weights, method, cells, np.ascontiguousarray(flat[:, cells]))


def _per_band(values: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(time, band) = values (time, cells) x each band's weights. einsum's own loop, not BLAS:
    on a machine shared with other jobs, BLAS threads fighting for the cores made this skinny
    product 10-40 times slower than the single-threaded loop."""
    return np.einsum("tc,bc->tb", values, matrix)


def longitude_180(lon: np.ndarray) -> np.ndarray:
    """Longitudes in [-180, 180) whatever the file's convention (0..360 included)."""
    return (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0


def band_polygons():
    """The six bands as shapely rectangles (lon -168..-141, EPSG:4326)."""
    import shapely

    return [shapely.box(catalog.LON_WEST, band.south, catalog.LON_EAST, band.north) for band in catalog.BANDS]


def band_regions():
    import regionmask

    return regionmask.Regions(
        band_polygons(),
        numbers=[band.index for band in catalog.BANDS],
        names=[f"band {band.index}" for band in catalog.BANDS],
        abbrevs=[f"b{band.index}" for band in catalog.BANDS],
        name="permafrost latitude bands",
        overlap=False,
    )


def _cut(lat: np.ndarray, lon: np.ndarray, where: str) -> tuple[slice, np.ndarray]:
    south = catalog.BANDS[0].south - MARGIN_DEG
    north = catalog.BANDS[-1].north + MARGIN_DEG
    rows = np.flatnonzero((lat >= south) & (lat <= north))
    lon180 = longitude_180(lon)
    columns = np.flatnonzero((lon180 >= catalog.LON_WEST - MARGIN_DEG) & (lon180 <= catalog.LON_EAST + MARGIN_DEG))
    if rows.size == 0 or columns.size == 0:
        raise SourceError(
            f"{where}: the grid (lat {lat.min():g}..{lat.max():g}, lon {lon.min():g}..{lon.max():g}) does not "
            f"cover the bands (lat {catalog.BANDS[0].south:g}..{catalog.BANDS[-1].north:g}, "
            f"lon {catalog.LON_WEST:g}..{catalog.LON_EAST:g})"
        )
    if np.any(np.diff(rows) != 1):
        raise SourceError(f"{where}: latitudes are not monotonic")
    # order the kept columns west to east so the cut is a regular grid even across 0/360
    columns = columns[np.argsort(lon180[columns], kind="stable")]
    return slice(int(rows[0]), int(rows[-1]) + 1), columns


def _key(lat: np.ndarray, lon: np.ndarray, land: np.ndarray | None) -> str:
    digest = hashlib.sha256(WEIGHTS_VERSION.encode())
    for array in (lat, lon) + ((land,) if land is not None else ()):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        digest.update(str(np.shape(array)).encode())
    return digest.hexdigest()[:32]


def _regionmask_fractions(lat: np.ndarray, lon180: np.ndarray) -> tuple[np.ndarray, str]:
    """(band, lat, lon) fractions of each cell inside each band; cell-centre membership when
    the grid is not equally spaced (regionmask's fractions need an equally spaced grid)."""
    from regionmask.core.utils import equally_spaced

    regions = band_regions()
    if equally_spaced(lon180, lat):
        mask = regions.mask_3D_frac_approx(lon180, lat, drop=False)
        method = "fractional"
    else:
        warnings.warn(
            "grid is not equally spaced: band weights use cell-centre membership, not fractional coverage",
            UserWarning,
            stacklevel=3,
        )
        mask = regions.mask_3D(lon180, lat, drop=False)
        method = "cell centre"
    fractions = np.zeros((catalog.N_BANDS, lat.size, lon180.size))
    for i, number in enumerate(mask.region.values):
        fractions[int(number)] = mask.isel(region=i).values.astype(float)
    return fractions, method


def band_weights(
    lat: Sequence[float] | np.ndarray,
    lon: Sequence[float] | np.ndarray,
    land_fraction: np.ndarray | None = None,
    where: str = "grid",
    cache_dir: Path | None = None,
) -> BandWeights:
    """Weights for a regular lat/lon grid (1-D coordinates, any longitude convention).

    `land_fraction` (lat, lon) in 0..1 multiplies the weights (CMIP sftlf / 100).
    """
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    if lat.ndim != 1 or lon.ndim != 1:
        raise SourceError(
            f"{where}: needs a regular grid with 1-D latitude and longitude (curvilinear grids are not supported)"
        )
    lat_index, lon_index = _cut(lat, lon, where)
    lat_cut, lon_cut = lat[lat_index], longitude_180(lon)[lon_index]
    land_cut = None if land_fraction is None else np.asarray(land_fraction, dtype=float)[lat_index][:, lon_index]
    # the cache holds weights of the cut grid only: the cut itself (which columns of this
    # file's longitude axis) is recomputed for every grid, as files order longitudes differently
    key = _key(lat_cut, lon_cut, land_cut)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        stored = _MEMORY[key]
        return BandWeights(lat_index, lon_index, stored.weights, stored.method, stored.cells, stored.matrix)
    cached = Path(cache_dir) / f"band_weights_{key}.npz" if cache_dir else None
    if cached is not None and cached.is_file():
        stored = np.load(cached, allow_pickle=False)
        weights, method = stored["weights"], str(stored["method"])
    else:
        fractions, method = _regionmask_fractions(lat_cut, lon_cut)
        weights = fractions * np.cos(np.deg2rad(lat_cut))[None, :, None]
        if land_cut is not None:
            weights = weights * np.nan_to_num(np.clip(land_cut, 0.0, 1.0))[None]
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.tmp.npz")
            np.savez(tmp, weights=weights, method=np.array(method))
            tmp.replace(cached)
    empty = [b for b in range(catalog.N_BANDS) if not weights[b].sum() > 0]
    if empty:
        raise SourceError(f"{where}: band {empty[0]} has no grid cell (land) inside it")
    result = _weights(lat_index, lon_index, weights, method)
    _MEMORY[key] = result
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.popitem(last=False)
    return result


def band_means(
    values: np.ndarray,
    weights: BandWeights,
    where: str,
    variable: str,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """(time, band) area-weighted means of `values` (time, lat, lon) on the full grid.

    Missing cells carry no weight. A band with no valid cell at some time, or with fewer valid
    cells at one time than at others (a hole in the field, not the fixed land mask), is an error
    naming the variable, band and time (`labels`, e.g. months).
    """
    values = np.asarray(values)
    if values.ndim == 2:
        values = values[None]
    rows = np.arange(values.shape[1])[weights.lat_index]
    n_lon_cut = weights.lon_index.size
    # the grid positions of the cells that count, taken in one step (no copy of the cut grid)
    positions = rows[weights.cells // n_lon_cut] * values.shape[2] + weights.lon_index[weights.cells % n_lon_cut]
    flat = values.reshape(values.shape[0], -1).take(positions, axis=1).astype(np.float64, copy=False)
    matrix = weights.matrix
    valid = ~np.isnan(flat)
    numerator = _per_band(np.where(valid, flat, 0.0), matrix)
    if (valid == valid[:1]).all():  # the usual case: the same land cells at every time
        denominator = np.broadcast_to(_per_band(valid[:1].astype(np.float64), matrix), numerator.shape)
    else:
        denominator = _per_band(valid.astype(np.float64), matrix)
    label = (lambda t: labels[t]) if labels is not None else (lambda t: f"time index {t}")
    full = denominator.max(axis=0)
    for band in range(catalog.N_BANDS):
        if full[band] <= 0:
            raise SourceError(
                f"{where}: variable {variable}, band {band}, {label(0)}: no valid cell in the band (all NaN)"
            )
    # the worst hole first: a band that is all NaN at some time before a band missing an edge
    missing = 1.0 - denominator / full
    if (missing > 1e-9).any():
        t, band = np.unravel_index(int(np.argmax(missing)), missing.shape)
        share = missing[t, band]
        what = "all NaN" if share >= 1.0 - 1e-12 else f"{share:.1%} of the band's weight missing (NaN) there"
        raise SourceError(f"{where}: variable {variable}, band {band}, {label(int(t))}: {what}")
    return numerator / denominator
