"""Area-weighted band means of gridded fields (regionmask fractional masks x cos latitude)."""

import subprocess
import sys

import numpy as np
import pytest
import shapely

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
