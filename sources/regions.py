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
from dataclasses import dataclass, replace
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
    # band b's non-zero weights all lie in matrix[b, start:stop] (a band is a run of grid rows,
    # so of `cells`): a band's sum touches its own cells only, not the other five bands'
    spans: np.ndarray  # (N_BANDS, 2) start, stop
    grid_shape: tuple[int, int] | None = None  # (n_lat, n_lon) of the whole grid `positions` index
    positions: np.ndarray | None = None  # flat positions of `cells` in that whole grid


def _spans(matrix: np.ndarray) -> np.ndarray:
    spans = np.zeros((catalog.N_BANDS, 2), dtype=np.intp)
    for band, row in enumerate(matrix > 0):
        nonzero = np.flatnonzero(row)
        if nonzero.size:
            spans[band] = nonzero[0], nonzero[-1] + 1
    return spans


def _weights(lat_index, lon_index, weights: np.ndarray, method: str) -> BandWeights:
    flat = weights.reshape(catalog.N_BANDS, -1)
    cells = np.flatnonzero(flat.sum(axis=0) > 0)
    matrix = np.ascontiguousarray(flat[:, cells])
    return BandWeights(lat_index, lon_index, weights, method, cells, matrix, _spans(matrix))


def _on_grid(weights: BandWeights, grid_shape: tuple[int, int]) -> BandWeights:
    """The same weights with the whole grid's flat position of every weighted cell."""
    rows = np.arange(grid_shape[0])[weights.lat_index]
    n_lon_cut = weights.lon_index.size
    positions = rows[weights.cells // n_lon_cut] * grid_shape[1] + weights.lon_index[weights.cells % n_lon_cut]
    return replace(weights, grid_shape=tuple(grid_shape), positions=positions)


def _grid_positions(weights: BandWeights, grid_shape: tuple[int, int]) -> np.ndarray:
    if weights.positions is not None and weights.grid_shape == tuple(grid_shape):
        return weights.positions
    return _on_grid(weights, grid_shape).positions


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
        return _on_grid(replace(stored, lat_index=lat_index, lon_index=lon_index), (lat.size, lon.size))
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
    return _on_grid(result, (lat.size, lon.size))


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

    Float32 fields stay float32 until the weighted sums, which are float64.
    """
    values = np.asarray(values)
    if values.ndim == 2:
        values = values[None]
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    label = (lambda t: labels[t]) if labels is not None else (lambda t: f"time index {t}")
    positions = _grid_positions(weights, values.shape[1:])
    flat = values.reshape(values.shape[0], -1)
    missing = np.isnan(flat)
    if flat.shape[0] and (missing == missing[:1]).all():
        # the usual case: the same cells (the ocean) missing at every time, so a band's valid
        # weight is the same at every time and there can be no hole
        return _fixed_mask_means(flat, missing[0], positions, weights, where, variable, label)
    return _changing_mask_means(flat, positions, weights, where, variable, label)


def _no_valid_cell(where: str, variable: str, band: int, label) -> SourceError:
    return SourceError(f"{where}: variable {variable}, band {band}, {label(0)}: no valid cell in the band (all NaN)")


def _fixed_mask_means(
    flat: np.ndarray, missing: np.ndarray, positions: np.ndarray, weights: BandWeights, where: str, variable: str, label
) -> np.ndarray:
    """Means when `missing` (grid cells) is the missing set at every time: only the valid
    weighted cells are read, and each band's sum runs over its own span of them."""
    valid = ~missing[positions]  # (cells,)
    data = flat.take(positions[valid], axis=1)  # (time, valid cells), no NaN by construction
    kept_before = np.zeros(valid.size + 1, dtype=np.intp)
    np.cumsum(valid, out=kept_before[1:])
    means = np.empty((flat.shape[0], catalog.N_BANDS))
    for band, (start, stop) in enumerate(weights.spans):
        band_weights_ = weights.matrix[band, start:stop][valid[start:stop]]
        total = band_weights_.sum()
        if not total > 0:
            raise _no_valid_cell(where, variable, band, label)
        # einsum's own loop, not BLAS (see `_per_band`); float32 values x float64 weights
        # are summed in float64
        part = data[:, kept_before[start] : kept_before[stop]]
        means[:, band] = np.einsum("tc,c->t", part, band_weights_) / total
    return means


def _changing_mask_means(
    flat: np.ndarray, positions: np.ndarray, weights: BandWeights, where: str, variable: str, label
) -> np.ndarray:
    """Means when the missing cells differ between times: each time with its own valid weight;
    a band missing part of its weight at some time (a hole) is an error."""
    data = flat.take(positions, axis=1).astype(np.float64, copy=False)
    matrix = weights.matrix
    valid = ~np.isnan(data)
    numerator = _per_band(np.where(valid, data, 0.0), matrix)
    denominator = _per_band(valid.astype(np.float64), matrix)
    full = denominator.max(axis=0)
    for band in range(catalog.N_BANDS):
        if full[band] <= 0:
            raise _no_valid_cell(where, variable, band, label)
    # the worst hole first: a band that is all NaN at some time before a band missing an edge
    missing = 1.0 - denominator / full
    if (missing > 1e-9).any():
        t, band = np.unravel_index(int(np.argmax(missing)), missing.shape)
        share = missing[t, band]
        what = "all NaN" if share >= 1.0 - 1e-12 else f"{share:.1%} of the band's weight missing (NaN) there"
        raise SourceError(f"{where}: variable {variable}, band {band}, {label(int(t))}: {what}")
    return numerator / denominator
