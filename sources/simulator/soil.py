"""The demo world's soil heat: an implicit 1-D conduction column with latent heat of freezing
under the snowpack, one column per spatial unit, solved for all units at once."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_banded
from scipy.special import gammaincinv

from sources import catalog
from sources.simulator.climate import SECONDS_PER_DAY
from sources.simulator.unit_climates import UnitClimates
from sources.simulator.worlds import DEFAULT_WORLD, WORLDS, FreezingCurve, SnowLaw, World

LATENT_FUSION = 3.34e5  # J kg-1
WATER_DENSITY = 1000.0  # kg m-3
CELLS_PER_LAYER = (2, 3, 4, 5)  # cells splitting each ERA5-Land layer (edges stay exact)
SUBSTEPS_PER_MONTH = 6
PICARD_ITERATIONS = 3  # linear solves per step, each with a better heat capacity
SURFACE_RESISTANCE = 0.05  # m2 K W-1, litter and vegetation between skin and soil
# (dry volumetric heat capacity J m-3 K-1, conductivity thawed, frozen W m-1 K-1)
MINERAL = (1.2e6, 1.3, 2.0)
HEAT_CAPACITY_WATER = 4.18e6
HEAT_CAPACITY_ICE = 1.9e6
HOAR_CONDUCTIVITY = 0.05  # W m-1 K-1, depth hoar (Sturm et al. 1997)
HOAR_HALF_GRADIENT = 25.0  # K m-1 across the pack at which half of it turns to depth hoar
SNOW_PATCHES = 8  # equal-probability depths that stand for a snow cover varying within a unit


@dataclass(frozen=True)
class Column:
    """The soil column: cells (rows) by unit (columns)."""

    thickness: np.ndarray  # m, (cells, 1)
    layer: np.ndarray  # ERA5-Land layer index of each cell (cells below 2.89 m count as layer 4)
    layer_weights: np.ndarray  # (4, cells): thickness-weighted mean of the cells in each layer
    dry_capacity: np.ndarray  # J m-3 K-1, (cells, units)
    k_thawed: np.ndarray  # W m-1 K-1
    k_frozen: np.ndarray
    water_factor: np.ndarray  # water a cell holds per unit of its layer's water, (cells, units)
    water_max: np.ndarray  # m3 m-3


def _cell_edges(world: World) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges (m) that include every ERA5-Land layer edge, then the world's deep edges, and
    each cell's layer index."""
    edges, layer = [0.0], []
    for index, ((top, bottom), cells) in enumerate(zip(catalog.SOIL_LAYERS_M, CELLS_PER_LAYER, strict=False)):
        edges += list(np.linspace(top, bottom, cells + 1)[1:])
        layer += [index] * cells
    deep = world.deep_edges
    return np.array(edges + list(deep)), np.array(layer + [len(CELLS_PER_LAYER) - 1] * len(deep))


def cell_centres_m(world: World = WORLDS[DEFAULT_WORLD]) -> np.ndarray:
    """Depth (m) of the centre of every cell of the world's column (to its deepest edge)."""
    edges, _ = _cell_edges(world)
    return 0.5 * (edges[:-1] + edges[1:])


@functools.lru_cache(maxsize=16)
def column(units: UnitClimates, world: World) -> Column:
    """The units' columns in `world`: its organic mat above mineral soil."""
    edges, layer = _cell_edges(world)
    thickness, centre = np.diff(edges), 0.5 * (edges[:-1] + edges[1:])
    in_layer = (layer[None, :] == np.arange(4)[:, None]) & (centre < catalog.SOIL_LAYERS_M[-1][1])
    weights = in_layer * thickness
    mat = world.organic
    organic = centre[:, None] < units.organic_depth[None, :] * mat.depth_factor
    return Column(
        thickness=thickness[:, None],
        layer=layer,
        layer_weights=weights / weights.sum(axis=1, keepdims=True),
        dry_capacity=np.where(organic, mat.dry_capacity, MINERAL[0]),
        k_thawed=np.where(organic, mat.k_thawed, MINERAL[1]),
        k_frozen=np.where(organic, mat.k_frozen, MINERAL[2]),
        water_factor=np.where(organic, mat.water_factor, 1.0),
        water_max=np.where(organic, mat.water_max, 1.0),
    )


@dataclass(frozen=True)
class _Enthalpy:
    """Volumetric enthalpy (J m-3) of moist soil, piecewise linear in temperature between the
    freezing curve's knots: the frozen soil's heat capacity (with its unfrozen residual) below
    the first knot, the thawed soil's above 0 degC, and between knots the latent heat of the
    water that freezes there spread over the interval (the apparent heat capacity that makes a
    zero curtain). Enthalpy is 0 at 0 degC on the frozen soil's line."""

    knots: tuple[float, ...]  # degC
    capacities: tuple[np.ndarray, ...]  # J m-3 K-1: below the first knot, each interval, above 0
    at_knots: tuple[np.ndarray, ...]  # J m-3, enthalpy at each knot

    @classmethod
    def of_soil(cls, theta: np.ndarray, dry_capacity: np.ndarray, curve: FreezingCurve) -> _Enthalpy:
        """`theta` and `dry_capacity` (cells, units): each cell's water (m3 m-3) and dry soil."""
        latent = WATER_DENSITY * LATENT_FUSION * theta

        def sensible(liquid: float) -> np.ndarray:
            return dry_capacity + theta * (liquid * HEAT_CAPACITY_WATER + (1 - liquid) * HEAT_CAPACITY_ICE)

        knots, liquid = curve.knots_c, curve.liquid
        capacities = [sensible(liquid[0])]
        at_knots = [capacities[0] * knots[0]]
        for k in range(1, len(knots)):
            released = latent * (liquid[k] - liquid[k - 1]) / (knots[k] - knots[k - 1])
            capacities.append(0.5 * (sensible(liquid[k - 1]) + sensible(liquid[k])) + released)
            at_knots.append(at_knots[-1] + capacities[-1] * (knots[k] - knots[k - 1]))
        capacities.append(sensible(liquid[-1]))
        return cls(tuple(knots), tuple(capacities), tuple(at_knots))

    def capacity(self, t: np.ndarray) -> np.ndarray:
        result = self.capacities[-1]
        for k in reversed(range(len(self.knots))):
            result = np.where(t <= self.knots[k], self.capacities[k], result)
        return result

    def enthalpy(self, t: np.ndarray) -> np.ndarray:
        result = self.at_knots[-1] + self.capacities[-1] * (t - self.knots[-1])
        for k in reversed(range(1, len(self.knots))):
            in_interval = self.at_knots[k - 1] + self.capacities[k] * (t - self.knots[k - 1])
            result = np.where(t <= self.knots[k], in_interval, result)
        return np.where(t <= self.knots[0], self.capacities[0] * t, result)

    def temperature(self, h: np.ndarray) -> np.ndarray:
        result = self.knots[-1] + (h - self.at_knots[-1]) / self.capacities[-1]
        for k in reversed(range(1, len(self.knots))):
            in_interval = self.knots[k - 1] + (h - self.at_knots[k - 1]) / self.capacities[k]
            result = np.where(h <= self.at_knots[k], in_interval, result)
        return np.where(h <= self.at_knots[0], h / self.capacities[0], result)


def _solve_tridiagonal(lower: np.ndarray, diag: np.ndarray, upper: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve a tridiagonal system down the cells (axis 0) of every unit's column (axis 1).

    The columns are stacked end to end as one banded system, so one LAPACK call solves them
    all; ``lower[0]`` and ``upper[-1]`` lie outside a column and stay zero in the band, which
    also keeps neighbouring columns apart where they meet."""
    n_cells, n_units = diag.shape
    # diagonal ordered form ab[1 + i - j, j] = a[i, j], unit after unit
    banded = np.zeros((3, n_units, n_cells))
    banded[0, :, 1:] = upper[:-1].T
    banded[1] = diag.T
    banded[2, :, :-1] = lower[1:].T
    solution = solve_banded((1, 1), banded.reshape(3, -1), rhs.T.flatten(), overwrite_ab=True, overwrite_b=True)
    return solution.reshape(n_units, n_cells).T


def _heat_step(t, t_top, r_top, soil: _Enthalpy, soil_column: Column, world: World, dt_s: float) -> np.ndarray:
    """One backward-Euler step of conduction, (cells, units) degC -> degC.

    The top cell is tied to the skin through snow and litter (`r_top`, m2 K W-1), the bottom
    receives the geothermal flux. The heat capacity is re-estimated as the chord slope of
    enthalpy between old and new temperature (Picard iterations), so a cell cannot jump
    across the freezing range without paying its latent heat; the final update goes through
    enthalpy, so the step conserves energy."""
    liquid = world.freezing.liquid_share(t)
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
        rhs[-1] += world.geothermal_flux
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


@functools.lru_cache(maxsize=8)
def _patch_depths(depth_cv: float) -> np.ndarray:
    """Depths relative to the mean (mean 1) of SNOW_PATCHES equally likely patches of a gamma
    distribution with coefficient of variation `depth_cv`, shape (patches, 1)."""
    shape = 1.0 / depth_cv**2
    quantiles = (np.arange(SNOW_PATCHES) + 0.5) / SNOW_PATCHES
    depths = gammaincinv(shape, quantiles) / shape
    return (depths / depths.mean())[:, None]


def _top_resistance(depth: np.ndarray, conductivity: np.ndarray, t_skin: np.ndarray, snow: SnowLaw) -> np.ndarray:
    """Thermal resistance (m2 K W-1) between skin and soil: litter, then the snowpack of mean
    `depth` (m) whose settled snow conducts `conductivity` (W m-1 K-1, times the law's packing).
    Depth hoar grows where the gradient across the pack is steep (thin packs under cold skins);
    a cover that varies within the unit passes heat through its patches in parallel."""
    gradient = np.maximum(-t_skin, 0.0) / np.maximum(depth, 0.01)  # K m-1 across the pack
    hoar = snow.hoar_max * gradient / (gradient + HOAR_HALF_GRADIENT)
    pack = depth * (1 - hoar) / (conductivity * snow.packing) + depth * hoar / HOAR_CONDUCTIVITY
    if snow.depth_cv == 0.0:
        return SURFACE_RESISTANCE + pack
    patches = SURFACE_RESISTANCE + _patch_depths(snow.depth_cv) * pack[None, :]
    return 1.0 / np.mean(1.0 / patches, axis=0)


def soil_temperatures(
    land: dict[str, np.ndarray],
    days: np.ndarray,
    t_start: np.ndarray,
    units: UnitClimates,
    world: World,
    cells: np.ndarray | None = None,
) -> np.ndarray:
    """Monthly mean temperature (degC) of each ERA5-Land layer, shape (months, 4, units),
    driven by the skin temperature through the snowpack's thermal resistance. When given,
    ``cells`` (months, cells, units) receives every cell's monthly mean too."""
    soil_column = column(units, world)
    t = np.repeat(t_start[None, :], soil_column.thickness.shape[0], axis=0)
    snow_conductivity = _snow_conductivity(land["snow_density"])
    result = np.empty((len(days), 4, len(units)))
    for i, n_days in enumerate(days):
        theta = np.minimum(land["theta"][i][soil_column.layer] * soil_column.water_factor, soil_column.water_max)
        soil = _Enthalpy.of_soil(theta, soil_column.dry_capacity, world.freezing)
        dt_s = n_days * SECONDS_PER_DAY / SUBSTEPS_PER_MONTH
        month_mean = np.zeros_like(t)
        for step in range(SUBSTEPS_PER_MONTH):
            fraction = (step + 0.5) / SUBSTEPS_PER_MONTH  # snow depth changes through the month
            depth = land["snow_depth_start"][i] + (land["snow_depth_end"][i] - land["snow_depth_start"][i]) * fraction
            r_top = _top_resistance(depth, snow_conductivity[i], land["t_skin"][i], world.snow)
            t = _heat_step(t, land["t_skin"][i], r_top, soil, soil_column, world, dt_s)
            month_mean += t / SUBSTEPS_PER_MONTH
        result[i] = soil_column.layer_weights @ month_mean
        if cells is not None:
            cells[i] = month_mean
    return result
