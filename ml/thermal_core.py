"""A calibrated 1-D heat-conduction core for band soil temperature: the part of the model that
extrapolates.

Why a physical core: statistical models fitted to 2001-2018 learn how soil temperature responds
to weather ANOMALIES around today's climate; several kelvin of warming move the soil across the
freezing point and shorten the snow season, a state-dependent response that no linear anomaly
model reproduces (a linear distributed-lag model stays at a 0.5-0.8 K error of the late-century
change even when driven by the true forcing). Permafrost scientists extrapolate with physics
calibrated on the record (GIPL-like models, the TTOP/n-factor family); this is the smallest such
model that uses only canonical inputs every source provides:

* the upper boundary is the monthly skin temperature ``t_surface`` behind a thermal resistance
  ``snow_resistance * SWE`` (the snowpack);
* the snowpack is a degree-day bucket, ``SWE += p_snow - DEGREE_DAY_FACTOR * PDD(t_air) * days``
  (PDD: the expected positive part of daily means spread DAILY_SPREAD around the monthly mean);
* the soil is a column of cells down to ``COLUMN_BOTTOM_M`` whose edges include every
  ERA5-Land layer edge; conduction is solved implicitly with an apparent heat capacity (frozen
  below -FREEZING_RANGE, thawed above 0 degC, the latent heat of the layer's water content
  ``w_k`` spread over the freezing range) and a geothermal flux enters at the bottom;
* five parameters per band (``PARAMETERS``) are fitted by least squares (Levenberg-Marquardt in
  log space, within bounds) to the training months' four layer temperatures: the thawed
  conductivity of the top 0.28 m and of the soil below, one frozen/thawed conductivity ratio,
  the dry volumetric heat capacity and the snow's resistance per mm of SWE.

The other constants are textbook values, not fitted and not tuned to the demo. Soil water enters
as each layer's volumetric content; callers pass the reanalysis' training climatology, so
scenario soil water cannot put noise into the core. Plain numpy, no Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sources import catalog

SOIL_LAYERS_M = catalog.SOIL_LAYERS_M
CELLS_PER_LAYER = (2, 2, 3, 4)
DEEP_EDGES_M = (3.5, 4.3, 5.3)  # cells below the deepest layer keep the bottom boundary away
COLUMN_BOTTOM_M = DEEP_EDGES_M[-1]
TOP_SOIL_M = 0.28  # cells above this depth get the top (organic-rich) conductivity
SUBSTEPS = 4  # implicit steps per month
PICARD = 2  # linear solves per step, the second with the heat capacity of the first
SPINUP_YEARS = 10  # repeats of the first 12 months before the first month
FREEZING_RANGE = 1.0  # K: water freezes between -1 degC and 0 degC
LATENT_FUSION = 3.34e5  # J kg-1
WATER_DENSITY = 1000.0  # kg m-3
C_WATER, C_ICE = 4.18e6, 1.9e6  # J m-3 K-1
GEOTHERMAL_FLUX = 0.06  # W m-2
DAILY_SPREAD = 4.5  # K, spread of daily means around the monthly mean
DEGREE_DAY_FACTOR = 3.5  # mm of melt per positive degree-day
SECONDS_PER_DAY = 86400.0
FIT_ITERATIONS = 25

# name: (initial value, lower bound, upper bound); fitted in log space
PARAMETERS: dict[str, tuple[float, float, float]] = {
    "k_top": (0.8, 0.1, 4.0),  # W m-1 K-1, thawed conductivity of 0-0.28 m
    "k_mineral": (1.5, 0.3, 5.0),  # W m-1 K-1, thawed conductivity below
    "frozen_ratio": (1.5, 0.7, 4.0),  # frozen / thawed conductivity (ice conducts better)
    "c_dry": (1.0e6, 3e5, 3e6),  # J m-3 K-1, dry volumetric heat capacity
    "snow_resistance": (0.02, 1e-4, 0.3),  # m2 K W-1 per mm of SWE
}
NAMES = tuple(PARAMETERS)


@dataclass(frozen=True)
class Column:
    """The cells of the soil column: thickness (m), ERA5-Land layer index (deep cells: the
    last layer), thickness weights of each layer's mean (4, cells; deep cells excluded),
    whether a cell is top soil, and cell centres (m)."""

    thickness: np.ndarray
    layer: np.ndarray
    in_layer: np.ndarray
    top: np.ndarray
    centre: np.ndarray


def column() -> Column:
    edges, layer = [0.0], []
    for index, ((top, bottom), cells) in enumerate(zip(SOIL_LAYERS_M, CELLS_PER_LAYER, strict=True)):
        edges += list(np.linspace(top, bottom, cells + 1)[1:])
        layer += [index] * cells
    edges = np.array(edges + list(DEEP_EDGES_M))
    layer = np.array(layer + [len(SOIL_LAYERS_M) - 1] * len(DEEP_EDGES_M))
    thickness = np.diff(edges)
    centre = 0.5 * (edges[:-1] + edges[1:])
    inside = centre < SOIL_LAYERS_M[-1][1]
    weights = ((layer[None, :] == np.arange(len(SOIL_LAYERS_M))[:, None]) & inside[None, :]) * thickness
    return Column(thickness, layer, weights / weights.sum(axis=1, keepdims=True), centre < TOP_SOIL_M, centre)


def positive_degree_days(t: np.ndarray, spread: float = DAILY_SPREAD) -> np.ndarray:
    """Expected max(T, 0) (K) of daily means spread ``spread`` around the monthly mean ``t``
    (a logistic approximation of the normal CDF)."""
    z = np.asarray(t) / spread
    cdf = 1.0 / (1.0 + np.exp(-1.5976 * z * (1.0 + 0.04417 * z * z)))
    return spread * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) + t * cdf


def snowpack(p_snow_m: np.ndarray, t_air: np.ndarray, days: np.ndarray, spinup_years: int = 2) -> np.ndarray:
    """Mean SWE (mm) within each month, (T, B), from a degree-day bucket; ``spinup_years`` repeats
    of the first year come first, so the first winter does not start bare."""
    snow = p_snow_m * 1000.0
    melt = DEGREE_DAY_FACTOR * positive_degree_days(t_air) * days[:, None]
    swe = np.zeros(snow.shape[1])
    for i in list(range(min(12, len(snow)))) * spinup_years:
        swe = np.maximum(swe + snow[i] - melt[i], 0.0)
    out = np.empty_like(snow)
    for i in range(len(snow)):
        start = swe
        swe = np.maximum(swe + snow[i] - melt[i], 0.0)
        out[i] = 0.5 * (start + swe)
    return out


@dataclass
class CoreInputs:
    """Monthly inputs: ``t_surface``, ``t_air`` (degC), ``p_snow`` (m water per month), each
    (T, B); ``w`` (T, 4, B) volumetric water per ERA5-Land layer; ``days`` (T,) month lengths."""

    t_surface: np.ndarray
    t_air: np.ndarray
    p_snow: np.ndarray
    w: np.ndarray
    days: np.ndarray

    def tile(self, copies: int) -> CoreInputs:
        """The same inputs for ``copies`` parameter sets side by side (column b + B * copy)."""
        return CoreInputs(
            np.tile(self.t_surface, (1, copies)),
            np.tile(self.t_air, (1, copies)),
            np.tile(self.p_snow, (1, copies)),
            np.tile(self.w, (1, 1, copies)),
            self.days,
        )


def _tridiagonal(lower: np.ndarray, diag: np.ndarray, upper: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Thomas algorithm along axis 0, vectorised over the columns."""
    n = diag.shape[0]
    c, d = np.empty_like(diag), np.empty_like(diag)
    c[0], d[0] = upper[0] / diag[0], rhs[0] / diag[0]
    for i in range(1, n):
        denom = diag[i] - lower[i] * c[i - 1]
        c[i] = upper[i] / denom
        d[i] = (rhs[i] - lower[i] * d[i - 1]) / denom
    x = np.empty_like(d)
    x[-1] = d[-1]
    for i in range(n - 2, -1, -1):
        x[i] = d[i] - c[i] * x[i + 1]
    return x


def simulate(
    params: dict[str, np.ndarray],
    inputs: CoreInputs,
    t_start: np.ndarray | None = None,
    spinup_years: int = SPINUP_YEARS,
    return_cells: bool = False,
) -> np.ndarray:
    """Monthly layer-mean soil temperatures (T, 4, B) in degC; every cell's (T, cells, B) if
    ``return_cells``.

    ``params``: name -> (B,) arrays, one value per column (a band, or a band and parameter set).
    The column starts at ``t_start`` (B,) everywhere (default: the first year's mean skin
    temperature) and first runs ``spinup_years`` repeats of the first 12 months.
    """
    col = column()
    n_cells = len(col.thickness)
    n_columns = inputs.t_surface.shape[1]
    k_thawed = np.where(col.top[:, None], params["k_top"][None, :], params["k_mineral"][None, :])
    k_frozen = k_thawed * params["frozen_ratio"][None, :]
    swe = snowpack(inputs.p_snow, inputs.t_air, inputs.days)
    r_top = params["snow_resistance"][None, :] * swe  # (T, B) m2 K W-1
    thick = col.thickness[:, None]
    spin = list(range(min(12, len(inputs.days)))) * spinup_years
    order = spin + list(range(len(inputs.days)))
    start = inputs.t_surface[:12].mean(axis=0) if t_start is None else np.asarray(t_start, dtype=float)
    t = np.repeat(start[None, :], n_cells, axis=0).astype(float)
    out = np.empty((len(inputs.days), n_cells if return_cells else len(SOIL_LAYERS_M), n_columns))
    c_dry = params["c_dry"][None, :]
    for step_index, i in enumerate(order):
        theta = inputs.w[i][col.layer]  # (cells, B)
        c_frozen = c_dry + theta * C_ICE
        c_thawed = c_dry + theta * C_WATER
        c_range = 0.5 * (c_frozen + c_thawed) + LATENT_FUSION * WATER_DENSITY * theta / FREEZING_RANGE
        h_frozen_edge = -c_frozen * FREEZING_RANGE
        h_thawed_edge = h_frozen_edge + c_range * FREEZING_RANGE

        def enthalpy(temp, c_frozen=c_frozen, c_range=c_range, c_thawed=c_thawed, h0=h_frozen_edge, h1=h_thawed_edge):
            frozen = temp <= -FREEZING_RANGE
            thawing = temp <= 0.0
            return np.where(
                frozen, c_frozen * temp, np.where(thawing, h0 + c_range * (temp + FREEZING_RANGE), h1 + c_thawed * temp)
            )

        def temperature(h, c_frozen=c_frozen, c_range=c_range, c_thawed=c_thawed, h0=h_frozen_edge, h1=h_thawed_edge):
            return np.where(
                h <= h0, h / c_frozen, np.where(h <= h1, (h - h0) / c_range - FREEZING_RANGE, (h - h1) / c_thawed)
            )

        dt_s = inputs.days[i] * SECONDS_PER_DAY / SUBSTEPS
        month_mean = np.zeros_like(t)
        for _ in range(SUBSTEPS):
            liquid = np.clip(t / FREEZING_RANGE + 1.0, 0.0, 1.0)
            k = k_frozen + (k_thawed - k_frozen) * liquid
            half = thick / (2 * k)
            between = 1.0 / (half[:-1] + half[1:])
            top = 1.0 / (r_top[i] + half[0])
            g_above = np.vstack([top[None, :], between])
            g_below = np.vstack([between, np.zeros((1, n_columns))])
            h_old = enthalpy(t)
            cap = np.where(t <= -FREEZING_RANGE, c_frozen, np.where(t <= 0.0, c_range, c_thawed))
            for iteration in range(PICARD):
                storage = cap * thick / dt_s
                rhs = storage * t
                rhs[0] += top * inputs.t_surface[i]
                rhs[-1] += GEOTHERMAL_FLUX
                t_new = _tridiagonal(-g_above, storage + g_above + g_below, -g_below, rhs)
                if iteration < PICARD - 1:  # the chord heat capacity of this step's change
                    change = t_new - t
                    moved = np.abs(change) > 1e-9
                    cap = np.where(moved, (enthalpy(t_new) - h_old) / np.where(moved, change, 1.0), cap)
            t = temperature(h_old + cap * (t_new - t))
            month_mean += t / SUBSTEPS
        if step_index >= len(spin):
            out[i] = month_mean if return_cells else col.in_layer @ month_mean
    return out


@dataclass
class ThermalCore:
    """Per-band fitted parameters of the conduction core: ``fit``, then ``predict``."""

    params: dict[str, np.ndarray] = field(default_factory=dict)
    train_rmse: float = float("nan")
    iterations: int = 0

    def fit(
        self,
        inputs: CoreInputs,
        observed: np.ndarray,
        rows: np.ndarray,
        t_start: np.ndarray | None = None,
        max_iterations: int = FIT_ITERATIONS,
    ) -> ThermalCore:
        """Least squares on the layer temperatures ``observed`` (T, 4, B) of the months ``rows``
        (bool (T,)).

        Levenberg-Marquardt per band in log-parameter space, clipped to the bounds; the
        forward-difference Jacobian comes from ONE simulation of every band x (parameters + 1)
        side by side.
        """
        n_bands = observed.shape[2]
        n_params = len(NAMES)
        lower = np.log([PARAMETERS[n][1] for n in NAMES])[:, None]
        upper = np.log([PARAMETERS[n][2] for n in NAMES])[:, None]
        theta = np.log(np.array([[PARAMETERS[n][0]] * n_bands for n in NAMES]))  # (P, B)
        tiled = inputs.tile(n_params + 1)
        tiled_start = None if t_start is None else np.tile(t_start, n_params + 1)
        tiled_observed = np.tile(observed, (1, 1, n_params + 1))
        damping = np.full(n_bands, 1e-2)
        step = 1e-3

        def residuals(th):  # (P, B) -> residuals (n, B) and Jacobian (n, P, B)
            stacked = np.concatenate(
                [th] + [th + step * (np.arange(n_params)[:, None] == p) for p in range(n_params)], 1
            )
            sim = simulate({n: np.exp(stacked[i]) for i, n in enumerate(NAMES)}, tiled, tiled_start)
            r = (sim - tiled_observed)[rows]
            r = r.reshape(r.shape[0] * r.shape[1], n_params + 1, n_bands)
            return r[:, 0, :], (r[:, 1:, :] - r[:, :1, :]) / step

        def loss_of(th):
            sim = simulate({n: np.exp(th[i]) for i, n in enumerate(NAMES)}, inputs, t_start)
            return ((sim - observed)[rows] ** 2).reshape(-1, n_bands).mean(axis=0)

        r, jacobian = residuals(theta)
        loss = (r**2).mean(axis=0)
        for iteration in range(max_iterations):
            self.iterations = iteration + 1
            jt = np.transpose(jacobian, (2, 1, 0))  # (B, P, n)
            normal = jt @ np.transpose(jacobian, (2, 0, 1))  # (B, P, P)
            gradient = np.einsum("bpn,nb->bp", jt, r)
            diagonal = np.einsum("bpp->bp", normal)
            system = normal + (damping[:, None] * (diagonal + 1e-9))[:, :, None] * np.eye(n_params)
            delta = -np.linalg.solve(system, gradient[:, :, None])[..., 0]
            candidate = np.clip(theta + delta.T, lower, upper)
            new_loss = loss_of(candidate)
            better = new_loss < loss
            theta = np.where(better[None, :], candidate, theta)
            damping = np.where(better, damping / 3, damping * 4)
            converged = np.all(np.abs(new_loss - loss) / np.maximum(loss, 1e-12) < 1e-4) or np.all(damping > 1e6)
            loss = np.where(better, new_loss, loss)
            if converged:
                break
            if better.any():
                r, jacobian = residuals(theta)
        self.params = {n: np.exp(theta[i]) for i, n in enumerate(NAMES)}
        self.train_rmse = float(np.sqrt(loss.mean()))
        return self

    def predict(self, inputs: CoreInputs, t_start: np.ndarray | None = None) -> np.ndarray:
        """(T, 4, B) degC; ``inputs`` may hold k copies of the bands side by side (``tile``)."""
        copies = inputs.t_surface.shape[1] // len(next(iter(self.params.values())))
        params = {n: np.tile(v, copies) for n, v in self.params.items()}
        return simulate(params, inputs, t_start)

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": {n: v.tolist() for n, v in self.params.items()},
            "train_rmse": self.train_rmse,
            "iterations": self.iterations,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThermalCore:
        missing = [n for n in NAMES if n not in data["params"]]
        if missing:
            raise ValueError(f"thermal core parameters lack {missing}")
        return cls(
            {n: np.asarray(data["params"][n], dtype=float) for n in NAMES}, data["train_rmse"], data["iterations"]
        )
