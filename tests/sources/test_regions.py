"""Area-weighted band means of gridded fields (regionmask fractional masks x cos latitude)."""

import subprocess
import sys

import numpy as np
import pytest
import shapely
import xarray as xr
from generated_files import ocean

from sources import catalog
from sources.base import SourceError
from sources.regions import band_means, band_weights

LAT = np.arange(72.0, 57.99, -0.5)
LON = np.arange(-170.0, -138.99, 0.5)
LAT2, LON2 = np.meshgrid(LAT, LON, indexing="ij")
FIELD = 260.0 - 1.5 * (LAT2 - 65.0) + 0.1 * (LON2 + 155.0)


def exact_means(values: np.ndarray) -> np.ndarray:
    """Each cell weighted by the exact area of its overlap with the band (shapely), x cos(lat)."""
    means = []
    for band in catalog.BANDS:
        region = shapely.box(catalog.LON_WEST, band.south, catalog.LON_EAST, band.north)
        total = weight_sum = 0.0
        for i, lat in enumerate(LAT):
            for j, lon in enumerate(LON):
                cell = shapely.box(lon - 0.25, lat - 0.25, lon + 0.25, lat + 0.25)
                weight = cell.intersection(region).area / cell.area * np.cos(np.deg2rad(lat))
                total += weight * values[i, j]
                weight_sum += weight
        means.append(total / weight_sum)
    return np.array(means)


def test_fractional_weights_match_the_exact_overlap():
    weights = band_weights(LAT, LON)
    assert weights.method == "fractional"
    got = band_means(FIELD[None], weights, "test", "t2m")[0]
    exact = exact_means(FIELD)
    # regionmask samples each cell 10 x 10 times: within a few hundredths of a kelvin
    np.testing.assert_allclose(got, exact, atol=0.03)
    centre_only = np.array(
        [FIELD[(b.south <= LAT) & (b.north > LAT)][:, (LON >= -168) & (LON <= -141)].mean() for b in catalog.BANDS]
    )
    assert np.abs(centre_only - exact).max() > 0.05  # an unweighted cell-centre mean is visibly off


def test_longitudes_0_to_360_give_the_same_means():
    shifted = (LON + 360.0) % 360.0
    a = band_means(FIELD[None], band_weights(LAT, LON), "a", "v")
    b = band_means(FIELD[None], band_weights(LAT, shifted), "b", "v")
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_weights_are_kept_on_disk_and_reused(tmp_path):
    lat = np.arange(59.0, 72.0, 0.25)  # a grid no other test uses
    first = band_weights(lat, LON, cache_dir=tmp_path)
    stored = list(tmp_path.glob("band_weights_*.npz"))
    assert len(stored) == 1
    np.testing.assert_array_equal(np.load(stored[0])["weights"], first.weights)


def test_a_grid_outside_alaska_is_refused():
    with pytest.raises(SourceError, match="does not cover the bands"):
        band_weights(np.arange(-10.0, 10.0, 1.0), np.arange(0.0, 20.0, 1.0), where="tropics.nc")


def test_netcdf_then_geopandas_exits_cleanly(tmp_path):
    """xarray opens any file through its engines, cfgrib (ecCodes) included; a later pyproj
    import (geopandas, regionmask) must not crash the interpreter at exit (eccodes < 2.39)."""
    probe = (
        "import numpy as np, xarray as xr\n"
        f"path = {str(tmp_path / 'probe.nc')!r}\n"
        "xr.Dataset({'a': ('x', np.arange(3.0))}).to_netcdf(path)\n"
        "xr.open_dataset(path).load()\n"
        "import geopandas, regionmask\n"
        "print('clean')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "clean"


# --- the fast path against a plain weighted mean --------------------------------------------


def plain_means(values: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(time, band) written the obvious way: xarray's weighted mean of each band's weights over
    the cells that are not NaN at that time (float64 throughout)."""
    weights = band_weights(lat, lon)
    cut = np.asarray(values, dtype=np.float64)[:, weights.lat_index][:, :, weights.lon_index]
    field = xr.DataArray(cut, dims=("time", "lat", "lon"))
    means = np.empty((cut.shape[0], catalog.N_BANDS))
    for band in range(catalog.N_BANDS):
        band_weight = xr.DataArray(weights.weights[band], dims=("lat", "lon"))
        means[:, band] = field.weighted(band_weight).mean(("lat", "lon")).values
    return means


def inside(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.logical_and(values > low, values < high)


def field_with_gaps(n_times: int = 4) -> np.ndarray:
    """float32 (time, lat, lon) as the CDS writes it: ocean NaN, and a land gap (NaN at every
    time) inside band 2, so the valid weight of a band is not its polygon's weight."""
    values = np.stack([FIELD + 3.0 * t + 0.01 * (LON2 + 155.0) ** 2 for t in range(n_times)]).astype(np.float32)
    values[:, ocean(LAT, LON)] = np.nan
    band = catalog.BANDS[2]
    gap = inside(LAT2, band.south + 0.6, band.north - 0.6) & inside(LON2, -156.0, -150.0)
    assert gap.any()
    values[:, gap] = np.nan
    return values


def test_means_with_a_fixed_land_mask_and_a_land_gap_match_a_plain_weighted_mean():
    values = field_with_gaps()
    labels = [f"month 2020-0{t + 1}" for t in range(values.shape[0])]
    got = band_means(values, band_weights(LAT, LON), "gaps.nc", "t2m", labels)
    np.testing.assert_allclose(got, plain_means(values, LAT, LON), rtol=1e-12)
    # the gap counts: filled in, band 2 changes and the others do not
    filled = values.copy()
    filled[:, ~ocean(LAT, LON)] = np.float32(FIELD)[~ocean(LAT, LON)] + 3.0 * np.arange(values.shape[0])[:, None]
    filled_means = band_means(
        np.where(np.isnan(values) & ~ocean(LAT, LON), filled, values), band_weights(LAT, LON), "", ""
    )
    assert np.abs(filled_means[:, 2] - got[:, 2]).max() > 1e-3


def test_a_missing_set_that_changes_only_outside_the_bands_gives_the_plain_mean():
    values = field_with_gaps()
    outside = (LAT2 == 65.0) & (LON2 == -170.0)  # west of the bands (-168): no weight in any band
    values[2, outside] = np.nan
    got = band_means(values, band_weights(LAT, LON), "gaps.nc", "t2m")
    np.testing.assert_allclose(got, plain_means(values, LAT, LON), rtol=1e-12)


def test_a_hole_in_one_month_is_named():
    values = field_with_gaps()
    band = catalog.BANDS[4]
    hole = inside(LAT2, band.south + 0.5, band.south + 1.0) & (LON2 == -150.0)
    assert hole.sum() == 1
    values[1, hole] = np.nan  # one land cell, February only
    labels = [f"month 2020-0{t + 1}" for t in range(values.shape[0])]
    with pytest.raises(SourceError, match=r"gaps.nc: variable t2m, band 4, month 2020-02: \d.*% of the band's weight"):
        band_means(values, band_weights(LAT, LON), "gaps.nc", "t2m", labels)


def test_a_weighted_cell_present_in_one_month_only_is_a_hole_in_the_others():
    values = field_with_gaps()
    sea = ocean(LAT, LON) & (LAT2 < 62.0) & (LON2 > -168.0)  # Bering corner, inside band 0's polygon
    values[2, sea] = 270.0  # the ocean has values in March only
    labels = [f"month 2020-0{t + 1}" for t in range(values.shape[0])]
    with pytest.raises(SourceError, match=r"variable t2m, band 0, month 2020-01: .*% of the band's weight missing"):
        band_means(values, band_weights(LAT, LON), "gaps.nc", "t2m", labels)
