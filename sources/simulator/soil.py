"""The demo world's soil heat: an implicit 1-D conduction column with latent heat of freezing
under the snowpack, one column per spatial unit, solved for all units at once."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_banded

from sources import catalog
from sources.simulator.climate import SECONDS_PER_DAY
from sources.simulator.units import SpatialUnits

LATENT_FUSION = 3.34e5  # J kg-1
WATER_DENSITY = 1000.0  # kg m-3
CELLS_PER_LAYER = (2, 3, 4, 5)  # cells splitting each ERA5-Land layer (edges stay exact)
DEEP_EDGES = (3.5, 4.2, 5.0)  # m, below the deepest layer, so the bottom boundary is far
SUBSTEPS_PER_MONTH = 6
PICARD_ITERATIONS = 3  # linear solves per step, each with a better heat capacity
FREEZING_RANGE = 1.0  # K, water freezes between -1 degC and 0 degC (apparent heat capacity)
GEOTHERMAL_FLUX = 0.06  # W m-2 entering the bottom of the column
SURFACE_RESISTANCE = 0.05  # m2 K W-1, litter and vegetation between skin and soil
# (dry volumetric heat capacity J m-3 K-1, conductivity thawed, frozen W m-1 K-1)
ORGANIC = (0.6e6, 0.35, 0.9)
MINERAL = (1.2e6, 1.3, 2.0)
HEAT_CAPACITY_WATER = 4.18e6
HEAT_CAPACITY_ICE = 1.9e6


@dataclass(frozen=True)
class Column:
    """The soil column: cells (rows) by unit (columns)."""

    thickness: np.ndarray  # m, (cells, 1)
    layer: np.ndarray  # ERA5-Land layer index of each cell (cells below 2.89 m count as layer 4)
    layer_weights: np.ndarray  # (4, cells): thickness-weighted mean of the cells in each layer
    dry_capacity: np.ndarray  # J m-3 K-1, (cells, units)
    k_thawed: np.ndarray  # W m-1 K-1
    k_frozen: np.ndarray


def _cell_edges() -> tuple[np.ndarray, np.ndarray]:
    """Cell edges (m) that include every ERA5-Land layer edge, and each cell's layer index."""
    edges, layer = [0.0], []
    for index, ((top, bottom), cells) in enumerate(zip(catalog.SOIL_LAYERS_M, CELLS_PER_LAYER, strict=False)):
        edges += list(np.linspace(top, bottom, cells + 1)[1:])
        layer += [index] * cells
    return np.array(edges + list(DEEP_EDGES)), np.array(layer + [len(CELLS_PER_LAYER) - 1] * len(DEEP_EDGES))


def cell_centres_m() -> np.ndarray:
    """Depth (m) of the centre of every cell of the simulated column (to DEEP_EDGES[-1])."""
    edges, _ = _cell_edges()
    return 0.5 * (edges[:-1] + edges[1:])


@functools.lru_cache(maxsize=8)
def column(units: SpatialUnits) -> Column:
    """The units' columns: organic mat above mineral soil."""
    edges, layer = _cell_edges()
    thickness, centre = np.diff(edges), 0.5 * (edges[:-1] + edges[1:])
    in_layer = (layer[None, :] == np.arange(4)[:, None]) & (centre < catalog.SOIL_LAYERS_M[-1][1])
    weights = in_layer * thickness
    organic = centre[:, None] < units.organic_depth[None, :]
    return Column(
        thickness=thickness[:, None],
        layer=layer,
        layer_weights=weights / weights.sum(axis=1, keepdims=True),
        dry_capacity=np.where(organic, ORGANIC[0], MINERAL[0]),
        k_thawed=np.where(organic, ORGANIC[1], MINERAL[1]),
        k_frozen=np.where(organic, ORGANIC[2], MINERAL[2]),
    )


@dataclass(frozen=True)
class _Enthalpy:
    """Volumetric enthalpy (J m-3) of moist soil, piecewise linear in temperature: frozen
    below -FREEZING_RANGE, thawed above 0 degC, and in between the latent heat of the water
    spread over the freezing range (the apparent heat capacity that makes a zero curtain)."""

    frozen: np.ndarray  # heat capacities, J m-3 K-1
    freezing: np.ndarray
    thawed: np.ndarray

    @classmethod
    def of_soil(cls, theta: np.ndarray, soil_column: Column) -> _Enthalpy:
        frozen = soil_column.dry_capacity + theta * HEAT_CAPACITY_ICE
        thawed = soil_column.dry_capacity + theta * HEAT_CAPACITY_WATER
        latent = WATER_DENSITY * LATENT_FUSION * theta
        return cls(frozen, 0.5 * (frozen + thawed) + latent / FREEZING_RANGE, thawed)

    @property
    def at_frozen(self) -> np.ndarray:  # enthalpy at -FREEZING_RANGE
        return -self.frozen * FREEZING_RANGE

    @property
    def at_thawed(self) -> np.ndarray:  # enthalpy at 0 degC, all water liquid
        return self.at_frozen + self.freezing * FREEZING_RANGE

    def capacity(self, t: np.ndarray) -> np.ndarray:
        return np.where(t <= -FREEZING_RANGE, self.frozen, np.where(t <= 0.0, self.freezing, self.thawed))

    def enthalpy(self, t: np.ndarray) -> np.ndarray:
        in_range = self.at_frozen + self.freezing * (t + FREEZING_RANGE)
        thawed = self.at_thawed + self.thawed * t
        return np.where(t <= -FREEZING_RANGE, self.frozen * t, np.where(t <= 0.0, in_range, thawed))

    def temperature(self, h: np.ndarray) -> np.ndarray:
        in_range = (h - self.at_frozen) / self.freezing - FREEZING_RANGE
        thawed = (h - self.at_thawed) / self.thawed
        return np.where(h <= self.at_frozen, h / self.frozen, np.where(h <= self.at_thawed, in_range, thawed))


def _solve_tridiagonal(lower: np.ndarray, diag: np.ndarray, upper: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve a tridiagonal system down the cells (axis 0) of every unit's column (axis 1).

    The columns are stacked end to end as one banded system, so one LAPACK call solves them
    all; ``lower[0]`` and ``upper[-1]`` lie outside a column and are zeroed, which also keeps
    neighbouring columns apart where they meet."""
    n_cells, n_units = diag.shape
    sub, sup = lower.copy(), upper.copy()
    sub[0], sup[-1] = 0.0, 0.0
    # diagonal ordered form ab[1 + i - j, j] = a[i, j], unit after unit
    banded = np.stack([np.roll(sup.T.ravel(), 1), diag.T.ravel(), np.roll(sub.T.ravel(), -1)])
    solution = solve_banded((1, 1), banded, rhs.T.flatten(), overwrite_ab=True, overwrite_b=True)
    return solution.reshape(n_units, n_cells).T


def _heat_step(t, t_top, r_top, soil: _Enthalpy, soil_column: Column, dt_s: float) -> np.ndarray:
    """One backward-Euler step of conduction, (cells, units) degC -> degC.

    The top cell is tied to the skin through snow and litter (`r_top`, m2 K W-1), the bottom
    receives the geothermal flux. The heat capacity is re-estimated as the chord slope of
    enthalpy between old and new temperature (Picard iterations), so a cell cannot jump
    across the freezing range without paying its latent heat; the final update goes through
    enthalpy, so the step conserves energy."""
    liquid = np.clip(t / FREEZING_RANGE + 1.0, 0.0, 1.0)
    k = soil_column.k_frozen + (soil_column.k_thawed - soil_column.k_frozen) * liquid
    half_resistance = soil_column.thickness / (2 * k)
    between = 1.0 / (half_resistance[:-1] + half_resistance[1:])  # conductance of each interface
    top = 1.0 / (r_top + half_resistance[0])
    g_above = np.vstack([top[None, :], between])
    g_below = np.vstack([between, np.zeros_like(top)[None, :]])
    h_old, capacity = soil.enthalpy(t), soil.capacity(t)
    for iteration in range(PICARD_ITERATIONS):
        storage = capacity * soil_column.thickness / dt_s
        rhs = storage * t
        rhs[0] += top * t_top
        rhs[-1] += GEOTHERMAL_FLUX
        t_new = _solve_tridiagonal(-g_above, storage + g_above + g_below, -g_below, rhs)
        if iteration < PICARD_ITERATIONS - 1:
            change = t_new - t
            moved = np.abs(change) > 1e-9
            chord = (soil.enthalpy(t_new) - h_old) / np.where(moved, change, 1.0)
            capacity = np.where(moved, chord, capacity)
    return soil.temperature(h_old + capacity * (t_new - t))


def _snow_conductivity(density: np.ndarray) -> np.ndarray:
    """Effective snow conductivity (W m-1 K-1) from density, Sturm et al. (1997)."""
    rho = density / 1000.0  # g cm-3
    return np.maximum(0.138 - 1.01 * rho + 3.233 * rho**2, 0.04)


def soil_temperatures(
    land: dict[str, np.ndarray],
    days: np.ndarray,
    t_start: np.ndarray,
    units: SpatialUnits,
    cells: np.ndarray | None = None,
) -> np.ndarray:
    """Monthly mean temperature (degC) of each ERA5-Land layer, shape (months, 4, units),
    driven by the skin temperature through the snowpack's thermal resistance. When given,
    ``cells`` (months, cells, units) receives every cell's monthly mean too."""
    soil_column = column(units)
    t = np.repeat(t_start[None, :], soil_column.thickness.shape[0], axis=0)
    snow_conductivity = _snow_conductivity(land["snow_density"])
    result = np.empty((len(days), 4, len(units)))
    for i, n_days in enumerate(days):
        soil = _Enthalpy.of_soil(land["theta"][i][soil_column.layer], soil_column)
        dt_s = n_days * SECONDS_PER_DAY / SUBSTEPS_PER_MONTH
        month_mean = np.zeros_like(t)
        for step in range(SUBSTEPS_PER_MONTH):
            fraction = (step + 0.5) / SUBSTEPS_PER_MONTH  # snow depth changes through the month
            depth = land["snow_depth_start"][i] + (land["snow_depth_end"][i] - land["snow_depth_start"][i]) * fraction
            r_top = SURFACE_RESISTANCE + depth / snow_conductivity[i]
            t = _heat_step(t, land["t_skin"][i], r_top, soil, soil_column, dt_s)
            month_mean += t / SUBSTEPS_PER_MONTH
        result[i] = soil_column.layer_weights @ month_mean
        if cells is not None:
            cells[i] = month_mean
    return result
