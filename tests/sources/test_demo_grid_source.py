"""The demo reanalysis per cell of the synthetic grid: grid mode one key away in the sources
file, its cells the grid spec's land cells, its frames passing the lake's checks as cells."""

import datetime as dt

import numpy as np
import pytest

from sources.base import units_of
from sources.config import parse_sources
from sources.demo import DemoReanalysisSource, DemoSettings
from sources.demo_grid import DemoCellReanalysisSource
from sources.registry import climate_model_source, reanalysis_source
from sources.simulator.grid import synthetic_grid
from sources.validation import validate_reanalysis

SETTINGS = DemoSettings(latest_month=dt.date(2001, 3, 1))  # a short history: the world is cheap


@pytest.fixture(scope="module")
def source() -> DemoCellReanalysisSource:
    return reanalysis_source(parse_sources({"reanalysis": {"kind": "demo", "units": "cell"}}, "test"), SETTINGS)


def test_the_band_demo_stays_the_default_and_the_twin_stays_per_band():
    config = parse_sources(None, "test")
    assert config.reanalysis.units == "band"
    assert type(reanalysis_source(config, SETTINGS)) is DemoReanalysisSource
    assert units_of(reanalysis_source(config, SETTINGS)).kind == "band"
    cells = parse_sources({"reanalysis": {"kind": "demo", "units": "cell"}}, "test")
    assert "band" in climate_model_source(cells, SETTINGS).read_experiment("rcp45").columns


def test_an_unknown_units_key_names_it():
    with pytest.raises(Exception, match="units"):
        parse_sources({"reanalysis": {"kind": "demo", "units": "site"}}, "test")


def test_cells_are_the_grid_specs_land_cells_with_their_tiles(source):
    units = units_of(source)
    grid = synthetic_grid().grid
    assert units.kind == "cell" and units.key_column == "unit"
    np.testing.assert_array_equal(units.ids, grid.cells)
    np.testing.assert_allclose(units.frame["latitude"].to_numpy(), grid.cell_lat)
    for tile in grid.tiles[:3]:
        in_tile = units.frame.filter(units.frame["tile"] == tile.key)["unit"].to_numpy()
        np.testing.assert_array_equal(in_tile, tile.cells)
    # a cell's area shrinks northward with cos(latitude)
    areas = units.frame.sort("latitude")["area_km2"].to_numpy()
    assert areas[0] > areas[-1] > 0


def test_frames_are_keyed_by_cell_and_pass_the_lakes_checks(source):
    months = [dt.date(2001, 1, 1), dt.date(2001, 2, 1)]
    frame = source.read_months(months)
    checked = validate_reanalysis(frame, months, "demo cells", units=units_of(source))
    assert checked.height == 2 * units_of(source).count
    january = checked.filter(checked["month"] == months[0])
    # continentality: within a band, inland January air is colder than the coast's
    world = synthetic_grid()
    inland = world.continentality.reshape(-1)[world.grid.cells]
    band = units_of(source).frame["band"].to_numpy()
    for b in np.unique(band):
        t_jan = january["temperature_2m"].to_numpy()[band == b]
        assert np.corrcoef(inland[band == b], t_jan)[0, 1] < -0.3, f"band {b}"
    assert source.read_months([]).schema["unit"] == frame.schema["unit"]
