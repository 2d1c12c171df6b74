"""Per-tile kernels of grid mode: the conduction core fitted for every land cell of one tile.

A kernel is a plain function of one tile's arrays (time, cell, variable), coarse on purpose: all
variables of the tile and its whole time axis in one task (fine-grained dask graphs were slower
than numpy here). Each cell of a tile is fitted as its own least-squares problem, all the tile's
cells iterated side by side in one simulation per iteration (``ThermalCore.fit_lockstep``), so a
cell's parameters do not depend on the tile it was cut into, at a fraction of the cost of fitting
the cells one after another (``ThermalCore.fit_each``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ml.model_inputs import ModelInputs
from ml.scenario_members import core_drivers, core_inputs, water_climatology
from ml.thermal_core import FIT_ITERATIONS, ThermalCore
from ml.unit_arrays import UnitGrid, days_in_month
from sources import catalog

CORE_MODEL_INPUTS = ModelInputs.every_driver()  # ERA5-Land cells have every driver
CORE_VARIABLES: tuple[str, ...] = core_drivers(CORE_MODEL_INPUTS) + catalog.WATER_CONTENT + catalog.TARGETS


@dataclass(frozen=True, eq=False)
class TileSeries:
    """One tile's monthly ``values`` (T, cell, V) of the variables ``names``, for consecutive
    ``months`` (T,) datetime64[M] and the tile's land ``cells`` (ids, ascending)."""

    tile: str
    cells: np.ndarray
    months: np.ndarray
    values: np.ndarray
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        n_months, n_cells = len(self.months), len(self.cells)
        if self.values.shape != (n_months, n_cells, len(self.names)):
            raise ValueError(
                f"tile {self.tile}: values {self.values.shape} are not (months {n_months}, cells {n_cells}, "
                f"variables {len(self.names)})"
            )
        step = np.diff(np.asarray(self.months, dtype="datetime64[M]")).astype(np.int64)
        if (step != 1).any():
            i = int(np.argmax(step != 1))
            raise ValueError(f"tile {self.tile}: months jump from {self.months[i]} to {self.months[i + 1]}")

    def grid(self, names: tuple[str, ...]) -> UnitGrid:
        """The variables ``names`` as a (T, cell, V) grid, each cell one column of the core; an
        error names the tile, variable, cell and month of a missing or non-finite value."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ValueError(f"tile {self.tile}: no variable(s) {missing}; it holds {list(self.names)}")
        values = self.values[..., [self.names.index(n) for n in names]].astype(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            t, c, v = np.argwhere(bad)[0]
            raise ValueError(
                f"tile {self.tile}: {names[v]} is not finite in cell {int(self.cells[c])}, month {self.months[t]} "
                f"({int(bad.sum())} value(s) like it)"
            )
        return UnitGrid(np.asarray(self.months, dtype="datetime64[M]"), values, tuple(names), np.asarray(self.cells))


@dataclass(frozen=True, eq=False)
class TileCoreFit:
    """The core fitted on one tile: its parameters per cell (those of ``ml.thermal_core``'s default
    structure), each cell's training RMSE (K, all
    layers) and its run over every month, ``history`` (T, cell, layer) degC."""

    tile: str
    cells: np.ndarray
    months: np.ndarray
    params: dict[str, np.ndarray]
    train_rmse: np.ndarray
    history: np.ndarray
    iterations: int

    def parameters_frame(self) -> pl.DataFrame:
        """One row per cell: tile, cell, the core's parameters, train_rmse, iterations."""
        n_cells = len(self.cells)
        return pl.DataFrame(
            {
                "tile": pl.Series("tile", [self.tile] * n_cells, dtype=pl.String),
                "cell": pl.Series("cell", self.cells, dtype=pl.Int64),
                **{name: pl.Series(name, value, dtype=pl.Float64) for name, value in self.params.items()},
                "train_rmse": pl.Series("train_rmse", self.train_rmse, dtype=pl.Float64),
                "iterations": pl.Series("iterations", [self.iterations] * n_cells, dtype=pl.Int32),
            }
        )

    def history_frame(self) -> pl.DataFrame:
        """The history run as rows cell, month, t_soil_0..t_soil_3 (float32), by cell then month."""
        n_months, n_cells = self.history.shape[:2]
        by_cell = np.transpose(self.history, (1, 0, 2))  # (cell, T, layer)
        return pl.DataFrame(
            {
                "cell": pl.Series("cell", np.repeat(self.cells, n_months), dtype=pl.Int64),
                "month": pl.Series("month", np.tile(self.months.astype("datetime64[D]"), n_cells)).cast(pl.Date),
                **{
                    name: pl.Series(name, by_cell[..., k].ravel(), dtype=pl.Float32)
                    for k, name in enumerate(catalog.TARGETS)
                },
            }
        )

    def frames(self) -> dict[str, pl.DataFrame]:
        """What one tile's fit lands in the lake: its parameters and its history run."""
        return {"parameters": self.parameters_frame(), "history": self.history_frame()}


def fit_tile_core(
    series: TileSeries,
    train_last: np.datetime64 | None = None,
    max_iterations: int = FIT_ITERATIONS,
) -> TileCoreFit:
    """Fit the core for every cell of a tile on the months up to ``train_last`` (default: the
    product's last training month) and run it over every month of ``series``.

    As for the bands (``ml.scenario_members.fit_history_core``): skin and air temperature and
    snowfall drive it, each layer's water is the training climatology, the column starts at the
    first year's mean observed soil temperature of the cell. Each cell is its own fit
    (``ThermalCore.fit_lockstep``): its parameters do not depend on the other cells of the tile.
    ``iterations``: the most any cell of the tile took.
    """
    grid = series.grid(CORE_VARIABLES)
    last = catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH) if train_last is None else catalog.month64(train_last)
    train = grid.months <= last
    if train.sum() < 12:
        raise ValueError(f"tile {series.tile}: {int(train.sum())} training month(s) up to {last}; the fit needs 12+")
    observed = np.transpose(grid.select(catalog.TARGETS), (0, 2, 1))  # (T, layer, cell)
    inputs = core_inputs(
        grid, water_climatology(grid, train), days_in_month(grid.months, "standard"), CORE_MODEL_INPUTS
    )
    t_start = observed[:12].mean(axis=(0, 1))
    core = ThermalCore().fit_lockstep(inputs, observed, train, t_start=t_start, max_iterations=max_iterations)
    run = core.predict(inputs, t_start=t_start)  # (T, layer, cell)
    train_rmse = np.sqrt(((run - observed)[train] ** 2).mean(axis=(0, 1)))
    return TileCoreFit(
        tile=series.tile,
        cells=np.asarray(series.cells, dtype=np.int64),
        months=grid.months,
        params={name: np.asarray(value, dtype=float) for name, value in core.params.items()},
        train_rmse=train_rmse,
        history=np.transpose(run, (0, 2, 1)).astype(np.float32),
        iterations=core.iterations,
    )


def tile_core_frames(series: TileSeries, max_iterations: int = FIT_ITERATIONS) -> dict[str, pl.DataFrame]:
    """The kernel grid mode maps over tiles: ``fit_tile_core`` as the frames it lands."""
    return fit_tile_core(series, max_iterations=max_iterations).frames()
