"""The cell grid: ERA5-Land's points, deterministic tiles that mosaic back to the grid, the land
mask from a field, and band values as area-weighted rollups of cells."""

import numpy as np
import pytest

from sources import catalog
from sources.base import SourceError
from sources.grid import Grid, GridSpec, land_mask


def alaska_like_land(spec: GridSpec) -> np.ndarray:
    """Ocean west of a wavy coast and in a south-eastern gulf, so some tiles hold no land."""
    lat, lon = np.meshgrid(spec.lat, spec.lon, indexing="ij")
    west_coast = lon >= -166.0 + 1.5 * np.sin(lat)
    gulf = (lat < 61.25) & (lon > -152.0)
    return west_coast & ~gulf


@pytest.fixture(scope="module")
def grid() -> Grid:
    spec = GridSpec()
    return Grid(spec, alaska_like_land(spec))


def test_the_default_spec_is_era5_land_over_the_bands():
    spec = GridSpec()
    assert spec.shape == (121, 271)
    assert spec.lat[0] == 59.3 and spec.lat[-1] == 71.3 and spec.lon[0] == -168.0 and spec.lon[-1] == -141.0
    assert np.allclose(np.diff(spec.lat), 0.1) and np.allclose(np.diff(spec.lon), 0.1)
    assert spec.tile_grid == (7, 14)  # 20 x 20 points, the last row and column of tiles partial


def test_a_bad_spec_is_refused_naming_what():
    with pytest.raises(ValueError, match="step must be > 0"):
        GridSpec(step=0.0)
    with pytest.raises(ValueError, match="south < north"):
        GridSpec(south=70.0, north=60.0)
    with pytest.raises(ValueError, match="at least 1 x 1"):
        GridSpec(tile_rows=0)


def test_tiling_is_deterministic_and_covers_every_land_cell_once(grid):
    again = Grid(GridSpec(), alaska_like_land(GridSpec()))
    assert [t.key for t in grid.tiles] == [t.key for t in again.tiles]
    assert all(np.array_equal(a.cells, b.cells) for a, b in zip(grid.tiles, again.tiles, strict=True))
    every = np.concatenate([tile.cells for tile in grid.tiles])
    assert np.array_equal(np.sort(every), grid.cells) and len(every) == len(np.unique(every))
    n_lon = grid.spec.shape[1]
    for tile in grid.tiles:
        rows, cols = tile.cells // n_lon, tile.cells % n_lon
        assert ((rows >= tile.rows.start) & (rows < tile.rows.stop)).all()
        assert ((cols >= tile.cols.start) & (cols < tile.cols.stop)).all()
        assert np.array_equal(tile.cells, np.sort(tile.cells)) and grid.land.ravel()[tile.cells].all()
    # the gulf and the western ocean leave whole tiles without land: they are not tiles
    assert 0 < len(grid.tiles) < 7 * 14
    assert "r00c13" not in {t.key for t in grid.tiles}
    with pytest.raises(KeyError, match="r00c13"):
        grid.tile("r00c13")


def test_tiles_mosaic_back_to_the_grid(grid):
    rng = np.random.default_rng(0)
    field = rng.normal(size=(3, *grid.spec.shape))
    cells = grid.cell_values(field)
    parts = {tile.key: cells[:, grid.positions(tile.cells)] for tile in grid.tiles}
    assert np.array_equal(grid.mosaic(parts), cells)
    back = grid.field(grid.mosaic(parts))
    assert np.array_equal(back[:, grid.land], field[:, grid.land]) and np.isnan(back[:, ~grid.land]).all()
    # a tile's block of the field is exactly its cells
    tile = grid.tiles[len(grid.tiles) // 2]
    block = field[:, tile.rows, tile.cols][:, grid.land[tile.rows, tile.cols]]
    assert np.array_equal(parts[tile.key], block)


def test_a_mosaic_missing_a_tile_or_of_the_wrong_size_is_an_error(grid):
    parts = {tile.key: np.zeros(tile.cells.size) for tile in grid.tiles}
    first = grid.tiles[0].key
    with pytest.raises(ValueError, match=f"missing \\['{first}'\\]"):
        grid.mosaic({k: v for k, v in parts.items() if k != first})
    with pytest.raises(ValueError, match=f"tile {first}: values"):
        grid.mosaic({**parts, first: np.zeros(grid.tiles[0].cells.size + 1)})


def test_cell_ids_are_grid_positions(grid):
    n_lon = grid.spec.shape[1]
    assert np.array_equal(grid.cell_lat, grid.spec.lat[grid.cells // n_lon])
    assert np.array_equal(grid.cell_lon, grid.spec.lon[grid.cells % n_lon])
    with pytest.raises(KeyError, match="cell 0 is not a land cell"):
        grid.positions(np.array([0]))  # the south-western corner is ocean


def test_the_land_mask_comes_from_a_field_and_a_hole_is_an_error():
    spec = GridSpec()
    land = alaska_like_land(spec)
    field = np.where(land, 270.0, np.nan)[None].repeat(4, axis=0)
    assert np.array_equal(land_mask(field, "era5.nc", "temperature_2m"), land)
    row, col = np.argwhere(land)[100]
    field[2, row, col] = np.nan
    with pytest.raises(
        SourceError, match=f"era5.nc: variable temperature_2m, grid point \\(row {row}, column {col}\\), 2001-03"
    ):
        land_mask(field, "era5.nc", "temperature_2m", labels=["2001-01", "2001-02", "2001-03", "2001-04"])
    with pytest.raises(SourceError, match="no land point"):
        land_mask(np.full(spec.shape, np.nan), "era5.nc", "temperature_2m")
    with pytest.raises(ValueError, match=r"land mask must be bool \(121, 271\)"):
        Grid(spec, land[:-1])


def test_cell_band_weights_are_the_cells_area_split_at_band_edges(grid):
    weights = grid.cell_band_weights()
    assert weights.shape == (catalog.N_BANDS, grid.cells.size) and (weights >= 0).all()
    cos_lat = np.cos(np.deg2rad(grid.cell_lat))
    inner = (grid.cell_lon > catalog.LON_WEST) & (grid.cell_lon < catalog.LON_EAST)
    inner &= (grid.cell_lat > grid.spec.lat[0]) & (grid.cell_lat < grid.spec.lat[-1])
    # a cell inside the box weighs its whole area (cos latitude), split between bands at an edge
    assert np.allclose(weights.sum(axis=0)[inner], cos_lat[inner])
    edge = catalog.BANDS[1].south  # 61.2755: cuts the cells centred at 61.3 (61.25..61.35)
    cut = np.isclose(grid.cell_lat, 61.3) & inner
    assert cut.any() and (weights[0, cut] > 0).all() and (weights[1, cut] > 0).all()
    assert np.allclose(weights[0, cut] / cos_lat[cut], np.round((edge - 61.25) / 0.1, 1))  # 10 x 10 sub-samples
    inside = np.isclose(grid.cell_lat, 62.0) & inner
    assert np.allclose(weights[1, inside], cos_lat[inside]) and (np.delete(weights, 1, 0)[:, inside] == 0).all()
    # a cell on the box's east edge (-141): half of it lies inside the bands
    east = np.isclose(grid.cell_lon, catalog.LON_EAST) & np.isclose(grid.cell_lat, 65.0)
    assert east.sum() == 1 and np.allclose(weights.sum(axis=0)[east], 0.5 * cos_lat[east])


def test_band_values_are_area_weighted_rollups_of_the_cells(grid):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(5, grid.cells.size))
    weights = grid.cell_band_weights()
    rolled = grid.band_rollup(values, "t_air")
    assert rolled.shape == (5, catalog.N_BANDS)
    assert np.allclose(rolled, values @ weights.T / weights.sum(axis=1), atol=1e-12)
    # a constant field rolls up to the constant; one cell moves only its own band, by its weight
    assert np.allclose(grid.band_rollup(np.full((1, grid.cells.size), -4.0), "t_air"), -4.0)
    cell = int(np.flatnonzero(np.isclose(grid.cell_lat, 66.0))[0])
    bumped = values.copy()
    bumped[:, cell] += 1.0
    change = grid.band_rollup(bumped, "t_air") - rolled
    expected = np.zeros(catalog.N_BANDS)
    expected[3] = weights[3, cell] / weights[3].sum()
    assert np.allclose(change, expected[None], atol=1e-12) and expected[3] > 0


def test_a_hole_in_cell_values_is_an_error_naming_band_and_month(grid):
    values = np.zeros((3, grid.cells.size))
    values[1, np.argmax(grid.cell_lat > 70.0)] = np.nan
    with pytest.raises(SourceError, match="variable t_soil_0, band 5, 2001-02"):
        grid.band_rollup(values, "t_soil_0", labels=["2001-01", "2001-02", "2001-03"])


def test_centred_spec_with_own_steps_fills_the_box_with_cell_centres():
    spec = GridSpec(60.0, 61.2, -150.0, -147.3, lat_step=0.3, lon_step=0.54, centred=True, tile_rows=2, tile_cols=3)
    np.testing.assert_allclose(spec.lat, [60.15, 60.45, 60.75, 61.05])
    np.testing.assert_allclose(spec.lon, [-149.73, -149.19, -148.65, -148.11, -147.57])
    assert spec.tile_grid == (2, 2)
    with pytest.raises(ValueError, match="lon_step"):
        GridSpec(lon_step=-0.5)


def test_synthetic_grid_is_a_grid_spec_with_the_same_cell_ids():
    from sources.simulator.grid import synthetic_grid

    world = synthetic_grid()
    np.testing.assert_array_equal(world.grid.cells, world.land_cells().ids)
    np.testing.assert_allclose(world.grid.cell_lat, world.land_cells().latitude)
    np.testing.assert_allclose(world.grid.cell_lon, world.land_cells().longitude)
    tiles = world.grid.tiles
    assert sorted(np.concatenate([t.cells for t in tiles]).tolist()) == world.grid.cells.tolist()
    # every land cell lies inside the bands' box, so every one weighs in some band's rollup
    assert (world.grid.cell_band_weights().sum(axis=0) > 0).all()
