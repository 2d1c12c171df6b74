"""The per-tile kernel: the conduction core fitted for every cell of a tile, and what it lands."""

import dataclasses

import numpy as np
import polars as pl
import pytest
from synthetic_cells import tile_series

from ml.thermal_core import DEFAULT_STRUCTURE, PARAMETERS
from ml.tiles import CORE_VARIABLES, TileSeries, fit_tile_core, tile_core_frames
from sources import catalog
from sources.grid import Grid, GridSpec

FIRST, LAST = "2015-01", "2020-12"  # four training years (to 2018-12) and two after


@pytest.fixture(scope="module")
def series() -> TileSeries:
    spec = GridSpec(tile_rows=2, tile_cols=3)
    grid = Grid(spec, np.ones(spec.shape, dtype=bool))
    return tile_series(grid.tiles[300], grid, FIRST, LAST)


@pytest.fixture(scope="module")
def fitted(series):
    return fit_tile_core(series, max_iterations=3)


def test_every_cell_of_the_tile_is_fitted_and_run_over_every_month(series, fitted):
    n_months, n_cells = len(series.months), len(series.cells)
    assert n_cells == 6 and fitted.history.shape == (n_months, n_cells, 4) and fitted.history.dtype == np.float32
    assert np.array_equal(fitted.cells, series.cells) and fitted.iterations == 3
    assert set(fitted.params) == set(DEFAULT_STRUCTURE.parameters())
    for name, value in fitted.params.items():
        _, low, high = PARAMETERS[name]
        assert value.shape == (n_cells,)
        # within the bounds (up to the rounding of exp(log(bound)))
        assert ((fitted.params[name] >= low * (1 - 1e-12)) & (fitted.params[name] <= high * (1 + 1e-12))).all(), name
    assert np.isfinite(fitted.history).all()
    # the run follows each cell's own observed soil: its seasonal cycle, not a neighbour's
    observed = series.values[..., [CORE_VARIABLES.index(n) for n in catalog.TARGETS]]
    correlation = [np.corrcoef(fitted.history[:, c, 0], observed[:, c, 0])[0, 1] for c in range(n_cells)]
    assert min(correlation) > 0.9


def test_the_fit_improves_on_the_initial_parameters(series, fitted):
    initial = fit_tile_core(series, max_iterations=0)
    assert all(np.allclose(value, PARAMETERS[n][0]) for n, value in initial.params.items())
    assert (fitted.train_rmse < initial.train_rmse).all()


def test_a_cells_fit_does_not_depend_on_how_the_grid_is_tiled(series, fitted):
    """Each cell is fitted on its own (``ThermalCore.fit_lockstep``): the same cells cut into two tiles
    give the same runs (to 0.01 K), so a map does not show the tile edges. (One joint fit of the
    six cells differs from the halves' by up to 1.8 K: it stops when the joint cost stalls.)"""
    halves = [
        fit_tile_core(
            dataclasses.replace(series, cells=series.cells[i : i + 3], values=series.values[:, i : i + 3]),
            max_iterations=3,
        )
        for i in (0, 3)
    ]
    assert np.abs(np.concatenate([half.history for half in halves], axis=1) - fitted.history).max() < 0.01
    for name, value in fitted.params.items():
        assert np.allclose(np.concatenate([half.params[name] for half in halves]), value, rtol=1e-3)


def test_the_frames_hold_the_fit(series, fitted):
    frames = tile_core_frames(series, max_iterations=3)
    assert set(frames) == {"parameters", "history"}
    parameters, history = frames["parameters"], frames["history"]
    assert parameters.columns == ["tile", "cell", *fitted.params, "train_rmse", "iterations"]
    assert parameters["cell"].to_list() == series.cells.tolist() and set(parameters["tile"]) == {series.tile}
    assert np.array_equal(parameters["k_top"].to_numpy(), fitted.params["k_top"])
    assert history.height == len(series.months) * len(series.cells)
    assert history.schema["month"] == pl.Date and history.schema["t_soil_2"] == pl.Float32
    cell = int(series.cells[4])
    one = history.filter(pl.col("cell") == cell).sort("month")
    assert np.array_equal(one["t_soil_2"].to_numpy(), fitted.history[:, 4, 2])
    assert one["month"][0].isoformat() == "2015-01-01" and one.height == len(series.months)


def test_bad_input_is_refused_naming_tile_variable_cell_and_month(series):
    values = series.values.copy()
    values[7, 2, CORE_VARIABLES.index("p_snow")] = np.nan
    holed = dataclasses.replace(series, values=values)
    with pytest.raises(
        ValueError, match=f"tile {series.tile}: p_snow is not finite in cell {series.cells[2]}, month 2015-08"
    ):
        fit_tile_core(holed)
    with pytest.raises(ValueError, match=r"no variable\(s\) \['t_soil_3'\]"):
        fit_tile_core(dataclasses.replace(series, values=series.values[..., :-1], names=CORE_VARIABLES[:-1]))
    months = series.months.copy()
    months[2:] += 1
    with pytest.raises(ValueError, match="months jump from 2015-02 to 2015-04"):
        TileSeries(series.tile, series.cells, months, series.values, series.names)
    with pytest.raises(ValueError, match=r"values \(72, 6, 11\) are not \(months 72, cells 5"):
        TileSeries(series.tile, series.cells[:5], series.months, series.values, series.names)
    with pytest.raises(ValueError, match="0 training month"):
        fit_tile_core(series, train_last=np.datetime64("2014-12"))
