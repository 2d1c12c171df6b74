"""The demo's synthetic grid of cells and the simulator run over any spatial units."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from sources import catalog, demo
from sources.simulator import runs
from sources.simulator.grid import GRID_COLUMNS, GRID_ROWS, synthetic_grid
from sources.simulator.unit_climates import BAND_CLIMATE, band_climates
from sources.simulator.worlds import WORLDS

SEED = catalog.DEFAULT_SEED
BAND_NORTH_EDGES = [band.north for band in catalog.BANDS[:-1]]


def band_of(latitude: np.ndarray) -> np.ndarray:
    return np.searchsorted(BAND_NORTH_EDGES, latitude)


@pytest.fixture(scope="module")
def grid():
    return synthetic_grid()


def test_the_grid_is_deterministic_and_covers_the_domain(grid):
    again = synthetic_grid.__wrapped__()  # built anew, not cached
    assert np.array_equal(again.land, grid.land) and np.array_equal(again.cells.organic_depth, grid.cells.organic_depth)
    assert grid.land.shape == (GRID_ROWS, GRID_COLUMNS) and len(grid.cells) == GRID_ROWS * GRID_COLUMNS == 2000
    assert np.array_equal(grid.cells.ids, np.arange(2000))
    cells = grid.cells
    assert catalog.BANDS[0].south < cells.latitude.min() and cells.latitude.max() < catalog.BANDS[-1].north
    assert cells.longitude.min() > catalog.LON_WEST and cells.longitude.max() < catalog.LON_EAST
    land = grid.land.reshape(-1)
    assert 0.5 < land.mean() < 0.9
    per_band = np.bincount(band_of(cells.latitude[land]), minlength=catalog.N_BANDS)
    assert (per_band > 100).all(), per_band
    assert len(grid.land_cells()) == land.sum()


def test_land_cells_keep_their_bands_climate_on_average(grid):
    cells = grid.land_cells()
    band = band_of(cells.latitude)
    for name in ("t_air_jan", "t_air_jul", "t_air_annual"):
        means = np.array([getattr(cells, name)[band == b].mean() for b in range(catalog.N_BANDS)])
        assert np.abs(means - np.array(BAND_CLIMATE[name])).max() < 1.5, (name, means)
    precip = np.array([cells.precip_annual[band == b].mean() for b in range(catalog.N_BANDS)])
    assert np.abs(precip / np.array(BAND_CLIMATE["precip_annual"]) - 1).max() < 0.15, precip


def test_the_interior_is_continental_and_the_mat_patchy(grid):
    cells, continentality = grid.land_cells(), grid.continentality.reshape(-1)[grid.land.reshape(-1)]
    assert (grid.continentality[~grid.land] == 0).all() and continentality.max() > 0.6
    band = band_of(cells.latitude)
    for b in range(catalog.N_BANDS):
        inside = band == b
        inland = inside & (continentality >= np.quantile(continentality[inside], 0.75))
        coastal = inside & (continentality <= np.quantile(continentality[inside], 0.25))
        assert cells.t_air_jan[inland].mean() < cells.t_air_jan[coastal].mean() - 1.0, b
        assert cells.t_air_jul[inland].mean() > cells.t_air_jul[coastal].mean(), b
        assert cells.precip_annual[inland].mean() < cells.precip_annual[coastal].mean(), b
        spread = cells.organic_depth[inside].std() / cells.organic_depth[inside].mean()
        assert 0.1 < spread < 0.5, (b, spread)
    assert (cells.organic_depth > 0).all()


def test_the_band_units_run_is_the_band_world():
    latest = dt.date(2003, 12, 1)
    result = runs.simulate_units(band_climates(), SEED, WORLDS["default"], latest, experiments=("rcp45",))
    reanalysis, rcp45 = result["reanalysis"], result["rcp45"]
    assert reanalysis.values.shape == (36, catalog.N_BANDS, len(reanalysis.variables))
    assert np.array_equal(reanalysis.unit_ids, np.arange(catalog.N_BANDS))
    band_world = demo._reanalysis_world(demo.DemoSettings(seed=SEED, latest_month=latest))
    assert np.array_equal(reanalysis.variable("t_soil_0"), band_world["t_soil"][:, 0])
    assert np.array_equal(reanalysis.variable("w_3"), band_world["theta"][:, 3])
    _, twin = demo._cmip_world(demo.DemoSettings(seed=SEED), "rcp45")
    assert np.array_equal(rcp45.variable("t_air"), twin["t_air"]) and "t_soil_0" not in rcp45.variables
    assert rcp45.months[0] == catalog.CMIP5_RCP_START and len(rcp45.months) == rcp45.values.shape[0]
    with pytest.raises(ValueError, match="2000-12"):
        runs.simulate_units(band_climates(), SEED, WORLDS["default"], dt.date(2000, 12, 1))


def test_grid_cells_run_with_the_band_worlds_gradient(grid):
    """A sample of land cells over 2001-2023: their 0-7 cm soil falls northward like the bands'
    (about +3 degC in band 0 to -2.3 degC in band 5), inland Januaries are colder."""
    land = grid.land_cells()
    sample = land.select(np.arange(0, len(land), 8))
    run = runs.simulate_units(sample, SEED, WORLDS["default"], experiments=())["reanalysis"]
    assert run.values.shape == (276, len(sample), len(run.variables)) and np.isfinite(run.values).all()
    band = band_of(sample.latitude)
    t_soil_0 = np.array([run.variable("t_soil_0")[:, band == b].mean() for b in range(catalog.N_BANDS)])
    assert (np.diff(t_soil_0) < 0).all() and np.abs(t_soil_0 - np.linspace(3.0, -2.3, 6)).max() < 2.0, t_soil_0
    january = run.variable("t_air")[0::12].mean(axis=0)
    assert np.abs(january - sample.t_air_jan).mean() < 1.0  # the normals the cells were given
    inland = grid.continentality.reshape(-1)[sample.ids]
    for b in range(catalog.N_BANDS):
        inside = band == b
        assert np.corrcoef(inland[inside], january[inside])[0, 1] < -0.3, b  # inland is colder
