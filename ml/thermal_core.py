"""A calibrated 1-D heat-conduction core for soil temperature per spatial unit (a band, a basin):
the part of the model that extrapolates.

Why a physical core: statistical models fitted to 2001-2018 learn how soil temperature responds
to weather ANOMALIES around today's climate; several kelvin of warming move the soil across the
freezing point and shorten the snow season, a state-dependent response that no linear anomaly
model reproduces (a linear distributed-lag model stays at a 0.5-0.8 K error of the late-century
change even when driven by the true forcing). Permafrost scientists extrapolate with physics
calibrated on the record (GIPL-like models, the TTOP/n-factor family); this is the smallest such
model that uses only canonical inputs every source provides. Its terms, each a choice of
``CoreStructure`` (``TERMS`` lists the choices and the parameters each adds):

* ``upper_boundary``: ``"skin"``, the monthly skin temperature ``t_surface``; or ``"air"``, for
  sources without one (real basins), the air temperature with a thawing-season n-factor,
  ``t_air + (n_thaw - 1) * PDD(t_air)``. Either reaches the soil behind the snowpack's thermal
  resistance and, with ``organic_layer``, an organic mat's ``organic_resistance`` (ORGANIC_FROZEN_RATIO
  times lower when its water is frozen: ice conducts, dry peat does not);
* the snowpack is a degree-day bucket, ``SWE += p_snow - melt_factor * PDD(t_air - threshold) *
  days`` (PDD: the expected positive part of daily means spread DAILY_SPREAD around the monthly
  mean); ``snowmelt``: ``"degree_day"`` melts above 0 degC (the demo simulator's), ``"delayed"``
  above a fitted ``melt_threshold`` (a cold pack refreezes what a few warm days melt). Where a
  source lacks snowfall, ``snowfall_from_precipitation`` derives it. ``snow_insulation``:
  ``"linear"``, resistance ``snow_resistance * SWE``; ``"power"``, ``snow_resistance * SWE_ref *
  (SWE / SWE_ref)^snow_exponent`` (thin, young packs are light and insulate more per mm);
* the soil is a column of cells whose edges include every ERA5-Land layer edge, solved
  implicitly with an apparent heat capacity. ``bottom``: ``"deep"``, cells down to
  COLUMN_BOTTOM_M and a geothermal flux below (the demo simulator's); ``"zero_flux"``, the column
  ends at 2.89 m without flux, where ERA5-Land's layers end; ``"coupled"``, the deep cells
  behind a fitted ``deep_coupling`` of the conductance at 2.89 m, between the two; ``"thick"``,
  cells down to THICK_BOTTOM_M (30 m, as GIPL-like permafrost models reach) under the geothermal
  flux, whose heat capacity slows a deep soil's warming (a structural alternative for the
  ensemble, ``ml.scenario_members.ENSEMBLE_STRUCTURES``).
  ``freezing``: ``"fixed"``, the latent heat of the layer's water content ``w_k`` spread over
  FREEZING_RANGE below 0 degC (the demo simulator's); ``"range"``, the same over a fitted
  ``freezing_range``; ``"power_law"``, unfrozen water ``w_k (|T| / UNFROZEN_ONSET)^-unfrozen_exponent``
  below -UNFROZEN_ONSET, the form fitted to permafrost soils (liquid water over several kelvin);
* the parameters of ``CoreStructure.fitted`` are fitted per unit by least squares to the
  training months' four layer temperatures (``scipy.optimize.least_squares``, trust-region
  reflective in log(value / initial value) within the bounds of ``PARAMETERS``, every unit in one
  problem whose Jacobian is block diagonal), with a weak prior on the log-parameters so that a
  parameter the data do not constrain stays near its initial value; the others keep their
  initial value.

DEFAULT_STRUCTURE is the one that did best on the real ERA5-Land basins and the demo together
(benchmarks/real_core.py); LEGACY_STRUCTURE is the core before it had choices. The other
constants are textbook values, not fitted and not tuned to the demo. Soil water enters as each
layer's volumetric content; callers pass the reanalysis' training climatology, so scenario soil
water cannot put noise into the core. Plain numpy and scipy, no Dagster.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from scipy.linalg import solve_banded
from scipy.optimize import least_squares
from scipy.special import ndtr

from sources import catalog

SOIL_LAYERS_M = catalog.SOIL_LAYERS_M
CELLS_PER_LAYER = (2, 2, 3, 4)
DEEP_EDGES_M = (3.5, 4.3, 5.3)  # cells below the deepest layer keep the bottom boundary away
COLUMN_BOTTOM_M = DEEP_EDGES_M[-1]
THICK_EDGES_M = DEEP_EDGES_M + (7.0, 9.5, 13.0, 18.0, 24.0, 30.0)  # bottom "thick"
THICK_BOTTOM_M = THICK_EDGES_M[-1]
TOP_SOIL_M = 0.28  # cells above this depth get the top (organic-rich) conductivity
SUBSTEPS = 4  # implicit steps per month
PICARD = 2  # linear solves per step, the second with the heat capacity of the first
SPINUP_YEARS = 10  # repeats of the first 12 months before the first month
FREEZING_RANGE = 1.0  # K: with freezing "fixed", water freezes between -1 degC and 0 degC
UNFROZEN_ONSET = 0.05  # K below 0 degC where a power-law soil starts to freeze
UNFROZEN_TOLERANCE = 1e-9  # K, Newton's tolerance on a power-law soil's temperature
ORGANIC_FROZEN_RATIO = 3.0  # thawed / frozen resistance of an organic mat
LATENT_FUSION = 3.34e5  # J kg-1
WATER_DENSITY = 1000.0  # kg m-3
C_WATER, C_ICE = 4.18e6, 1.9e6  # J m-3 K-1
GEOTHERMAL_FLUX = 0.06  # W m-2
DAILY_SPREAD = 4.5  # K, spread of daily means around the monthly mean
DEGREE_DAY_FACTOR = 3.5  # mm of melt per positive degree-day
SNOW_REFERENCE_MM = 100.0  # SWE at which a power-law snowpack's resistance is snow_resistance per mm
SECONDS_PER_DAY = 86400.0
FIT_ITERATIONS = 25  # function evaluations of one fit at most
FIT_STEP = 1e-3  # forward-difference step of the Jacobian in log-parameter space
FIT_TOLERANCE = 1e-4  # relative change of the cost at which a fit stops
PRIOR_WEIGHT = 0.05  # K of RMSE equivalent per prior standard deviation of a log-parameter
BOUND_TOLERANCE = 0.01  # a fitted parameter within 1% of a bound "hits" it
LOCKSTEP_DAMPING = 1e-3  # fit_lockstep's initial damping, relative to the diagonal of JᵀJ
LOCKSTEP_GTOL = 1e-8  # fit_lockstep stops a unit whose projected gradient is below this (scipy's gtol)

# name: (initial value, lower bound, upper bound); fitted in log space. The prior is centred on
# the initial value with a quarter of the log-width between the bounds as its standard deviation.
PARAMETERS: dict[str, tuple[float, float, float]] = {
    "k_top": (0.8, 0.1, 4.0),  # W m-1 K-1, thawed conductivity of 0-0.28 m
    "k_mineral": (1.5, 0.3, 5.0),  # W m-1 K-1, thawed conductivity below
    "frozen_ratio": (1.5, 0.7, 4.0),  # frozen / thawed conductivity (ice conducts better)
    "c_dry": (1.0e6, 3e5, 3e6),  # J m-3 K-1, dry volumetric heat capacity
    "snow_resistance": (0.02, 1e-4, 0.3),  # m2 K W-1 per mm of SWE (at SNOW_REFERENCE_MM)
    "snow_exponent": (1.0, 0.2, 1.5),  # with snow_insulation "power": resistance ~ SWE^snow_exponent
    "melt_factor": (DEGREE_DAY_FACTOR, 1.0, 10.0),  # mm of snowmelt per positive degree-day
    "melt_threshold": (1.0, 0.05, 5.0),  # K, daily mean above which a delayed snowpack melts
    "freezing_range": (FREEZING_RANGE, 0.2, 8.0),  # K below 0 degC over which water freezes
    "unfrozen_exponent": (0.5, 0.1, 2.0),  # b of the power-law unfrozen water curve
    "n_thaw": (1.0, 0.4, 2.0),  # thawing-season n-factor: surface / air positive degree-days
    "organic_resistance": (0.05, 1e-3, 0.5),  # m2 K W-1, the thawed organic mat
    "deep_coupling": (0.1, 1e-3, 3.0),  # conductance at 2.89 m over the soil's own there
}
NAMES = ("k_top", "k_mineral", "frozen_ratio", "c_dry", "snow_resistance")  # used by every structure
# term -> its choices -> the parameters each choice adds to NAMES and melt_factor
TERMS: dict[str, dict[Any, tuple[str, ...]]] = {
    "upper_boundary": {"skin": (), "air": ("n_thaw",)},
    "freezing": {"fixed": (), "range": ("freezing_range",), "power_law": ("unfrozen_exponent",)},
    "snowmelt": {"degree_day": (), "delayed": ("melt_threshold",)},
    "snow_insulation": {"linear": (), "power": ("snow_exponent",)},
    "organic_layer": {False: (), True: ("organic_resistance",)},
    "bottom": {"deep": (), "zero_flux": (), "coupled": ("deep_coupling",), "thick": ()},
}


@dataclass(frozen=True)
class CoreStructure:
    """Which terms of the core are on and which of their parameters are fitted (the module
    docstring says what each term is). ``fitted=None``: every parameter of the terms that are on;
    a parameter not fitted keeps its initial value (``PARAMETERS``)."""

    upper_boundary: str = "air"
    freezing: str = "range"
    snowmelt: str = "degree_day"
    snow_insulation: str = "power"
    organic_layer: bool = False
    bottom: str = "coupled"
    fitted: tuple[str, ...] | None = None
    prior_weight: float = PRIOR_WEIGHT

    def __post_init__(self) -> None:
        for term, choices in TERMS.items():
            if getattr(self, term) not in choices:
                raise ValueError(f"core {term} must be one of {tuple(choices)}, got {getattr(self, term)!r}")
        used = self.parameters()
        fitted = used if self.fitted is None else tuple(self.fitted)
        unused = [n for n in fitted if n not in used]
        if unused or not fitted:
            raise ValueError(f"core fits {unused or 'no parameter'}; this structure's parameters are {used}")
        object.__setattr__(self, "fitted", fitted)
        if not self.prior_weight >= 0:
            raise ValueError(f"core prior_weight must be >= 0, got {self.prior_weight}")

    def parameters(self) -> tuple[str, ...]:
        """Every parameter the terms that are on use, fitted or not."""
        return NAMES + ("melt_factor",) + sum((choices[getattr(self, term)] for term, choices in TERMS.items()), ())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fitted": list(self.fitted)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoreStructure:
        return cls(**{**data, "fitted": tuple(data["fitted"])})


# Today's core before it had a choice: skin temperature, 1 K freezing, five parameters, no prior.
# Cores saved without a structure are this one.
LEGACY_STRUCTURE = CoreStructure(
    upper_boundary="skin",
    freezing="fixed",
    snowmelt="degree_day",
    snow_insulation="linear",
    bottom="deep",
    fitted=NAMES,
    prior_weight=0.0,
)
DEFAULT_STRUCTURE = CoreStructure()


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


def column(bottom: str = "deep") -> Column:
    """The cells down to COLUMN_BOTTOM_M (``bottom="deep"`` or ``"coupled"``), to THICK_BOTTOM_M
    (``"thick"``) or to the deepest ERA5-Land edge (``"zero_flux"``)."""
    deep = {"zero_flux": (), "thick": THICK_EDGES_M}.get(bottom, DEEP_EDGES_M)
    edges, layer = [0.0], []
    for index, ((top, low), cells) in enumerate(zip(SOIL_LAYERS_M, CELLS_PER_LAYER, strict=True)):
        edges += list(np.linspace(top, low, cells + 1)[1:])
        layer += [index] * cells
    edges = np.array(edges + list(deep))
    layer = np.array(layer + [len(SOIL_LAYERS_M) - 1] * len(deep))
    thickness = np.diff(edges)
    centre = 0.5 * (edges[:-1] + edges[1:])
    inside = centre < SOIL_LAYERS_M[-1][1]
    weights = ((layer[None, :] == np.arange(len(SOIL_LAYERS_M))[:, None]) & inside[None, :]) * thickness
    return Column(thickness, layer, weights / weights.sum(axis=1, keepdims=True), centre < TOP_SOIL_M, centre)


def positive_degree_days(t: np.ndarray, spread: float = DAILY_SPREAD) -> np.ndarray:
    """Expected max(T, 0) (K) of daily means T ~ Normal(``t``, ``spread``) around the monthly
    mean ``t``."""
    z = np.asarray(t) / spread
    return spread * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) + t * ndtr(z)


def snowpack(
    p_snow_m: np.ndarray,
    t_air: np.ndarray,
    days: np.ndarray,
    spinup_years: int = 2,
    melt_factor: np.ndarray | float = DEGREE_DAY_FACTOR,
    melt_threshold: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Mean SWE (mm) within each month, (T, B), from a degree-day bucket melting ``melt_factor``
    mm per degree-day of daily means above ``melt_threshold`` degC (each scalar or (B,));
    ``spinup_years`` repeats of the first year come first, so the first winter does not start
    bare."""
    snow = p_snow_m * 1000.0
    melt = np.asarray(melt_factor) * positive_degree_days(t_air - np.asarray(melt_threshold)) * days[:, None]
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
    """Monthly inputs: ``t_surface`` (None where a source has no skin temperature: then only a
    structure with ``upper_boundary="air"`` runs), ``t_air`` (degC), ``p_snow`` (m water per
    month), each (T, B); ``w`` (T, 4, B) volumetric water per ERA5-Land layer; ``days`` (T,)
    month lengths."""

    t_surface: np.ndarray | None
    t_air: np.ndarray
    p_snow: np.ndarray
    w: np.ndarray
    days: np.ndarray

    def tile(self, copies: int) -> CoreInputs:
        """The same inputs for ``copies`` parameter sets side by side (column b + B * copy)."""
        return CoreInputs(
            None if self.t_surface is None else np.tile(self.t_surface, (1, copies)),
            np.tile(self.t_air, (1, copies)),
            np.tile(self.p_snow, (1, copies)),
            np.tile(self.w, (1, 1, copies)),
            self.days,
        )

    def columns(self, selected: np.ndarray) -> CoreInputs:
        """The inputs of the columns ``selected`` (indices) only."""
        return CoreInputs(
            None if self.t_surface is None else self.t_surface[:, selected],
            self.t_air[:, selected],
            self.p_snow[:, selected],
            self.w[:, :, selected],
            self.days,
        )

    def check(self) -> None:
        """Raise naming the input, month row and column of the first value that is missing,
        not finite or of the wrong shape."""
        n_months, n_columns = self.t_air.shape
        expected = {"t_air": (n_months, n_columns), "p_snow": (n_months, n_columns)}
        expected.update(w=(n_months, len(SOIL_LAYERS_M), n_columns), days=(n_months,))
        if self.t_surface is not None:
            expected["t_surface"] = (n_months, n_columns)
        for name, shape in expected.items():
            values = np.asarray(getattr(self, name))
            if values.shape != shape:
                raise ValueError(f"core input {name} has shape {values.shape}, expected {shape} (months, ...)")
            bad = np.argwhere(~np.isfinite(values))
            if len(bad):
                where = f"month row {bad[0][0]}" + (f", column {bad[0][-1]}" if values.ndim > 1 else "")
                raise ValueError(f"core input {name}: {len(bad)} non-finite value(s), the first at {where}")
        if (self.p_snow < 0).any() or (self.w < 0).any() or (self.days <= 0).any():
            raise ValueError("core inputs p_snow and w must be >= 0 and days > 0")


def solve_columns(lower: np.ndarray, diag: np.ndarray, upper: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Tridiagonal systems along axis 0 (cells), one per column (axis 1), solved as ONE banded
    system of the columns end to end: the entries that would couple a column's last cell to the
    next column's first (``upper[-1]``, ``lower[0]``) are zero, so the columns stay independent."""
    n_cells, n_columns = diag.shape
    banded = np.zeros((3, n_columns, n_cells))
    banded[0, :, 1:] = upper[:-1].T  # banded[0, k] = A[k - 1, k]
    banded[1] = diag.T
    banded[2, :, :-1] = lower[1:].T  # banded[2, k] = A[k + 1, k]
    x = solve_banded(
        (1, 1), banded.reshape(3, -1), rhs.T.reshape(-1), overwrite_ab=True, overwrite_b=True, check_finite=False
    )
    return x.reshape(n_columns, n_cells).T


class _RampFreezing:
    """Water freezes linearly over ``width`` K below 0 degC; in between, the mean of the frozen
    and thawed heat capacities plus the latent heat per kelvin. Arrays (cells, columns)."""

    def __init__(self, c_frozen: np.ndarray, c_thawed: np.ndarray, latent: np.ndarray, width: np.ndarray):
        self.c_frozen, self.c_thawed, self.width = c_frozen, c_thawed, width
        self.c_range = 0.5 * (c_frozen + c_thawed) + latent / width
        self.h_frozen = -c_frozen * width  # enthalpy where the last water has frozen
        self.h_thawed = self.h_frozen + self.c_range * width  # at 0 degC, all water liquid

    def liquid(self, t: np.ndarray) -> np.ndarray:
        return np.clip(t / self.width + 1.0, 0.0, 1.0)

    def enthalpy(self, t: np.ndarray) -> np.ndarray:
        frozen, thawing = t <= -self.width, t <= 0.0
        in_range = self.h_frozen + self.c_range * (t + self.width)
        return np.where(frozen, self.c_frozen * t, np.where(thawing, in_range, self.h_thawed + self.c_thawed * t))

    def capacity(self, t: np.ndarray) -> np.ndarray:
        return np.where(t <= -self.width, self.c_frozen, np.where(t <= 0.0, self.c_range, self.c_thawed))

    def temperature(self, h: np.ndarray, guess: np.ndarray) -> np.ndarray:
        in_range = (h - self.h_frozen) / self.c_range - self.width
        thawed = (h - self.h_thawed) / self.c_thawed
        return np.where(h <= self.h_frozen, h / self.c_frozen, np.where(h <= self.h_thawed, in_range, thawed))


class _PowerLawFreezing:
    """Unfrozen water ``theta (|T| / UNFROZEN_ONSET)^-b`` below -UNFROZEN_ONSET, all liquid
    above; sensible heat at the frozen capacity below 0 degC, the thawed above. Arrays (cells,
    columns)."""

    def __init__(self, c_frozen: np.ndarray, c_thawed: np.ndarray, latent: np.ndarray, exponent: np.ndarray):
        self.c_frozen, self.c_thawed, self.latent, self.exponent = c_frozen, c_thawed, latent, exponent

    def liquid(self, t: np.ndarray) -> np.ndarray:
        below = np.maximum(-t, UNFROZEN_ONSET) / UNFROZEN_ONSET
        return below**-self.exponent

    def enthalpy(self, t: np.ndarray) -> np.ndarray:
        return np.where(t > 0.0, self.latent + self.c_thawed * t, self.c_frozen * t + self.latent * self.liquid(t))

    def capacity(self, t: np.ndarray) -> np.ndarray:
        below = np.maximum(-t, UNFROZEN_ONSET) / UNFROZEN_ONSET
        freezing = self.c_frozen + self.latent * self.exponent / UNFROZEN_ONSET * below ** (-self.exponent - 1.0)
        return np.where(t > 0.0, self.c_thawed, np.where(t < -UNFROZEN_ONSET, freezing, self.c_frozen))

    def temperature(self, h: np.ndarray, guess: np.ndarray) -> np.ndarray:
        """Inverse of ``enthalpy``: closed form where the water is all liquid, else Newton on the
        liquid fraction f, in which the enthalpy's excess over ``h`` is convex and falling: from
        a start where the excess is >= 0, the iterates rise to the root without overshooting."""
        thawed = h > self.latent
        liquid = h >= self.latent - self.c_frozen * UNFROZEN_ONSET
        power = -1.0 / self.exponent

        def excess(f):
            return np.where(liquid, 0.0, self.c_frozen * UNFROZEN_ONSET * f**power - self.latent * f + h)

        coldest = np.maximum((self.latent - h) / self.c_frozen, UNFROZEN_ONSET)  # enthalpy there <= h
        f = self.liquid(guess)
        f = np.where(excess(f) >= 0.0, f, (coldest / UNFROZEN_ONSET) ** -self.exponent)
        for _ in range(50):
            gap = excess(f)
            if np.abs(gap).max() <= UNFROZEN_TOLERANCE * self.c_frozen.min():
                break
            f = f + gap / (self.c_frozen * UNFROZEN_ONSET / self.exponent * f ** (power - 1.0) + self.latent)
        frozen = -UNFROZEN_ONSET * np.minimum(f, 1.0) ** power
        return np.where(
            thawed, (h - self.latent) / self.c_thawed, np.where(liquid, (h - self.latent) / self.c_frozen, frozen)
        )


def _complete(params: dict[str, np.ndarray], structure: CoreStructure, n_columns: int) -> dict[str, np.ndarray]:
    """Every parameter of ``structure`` as (n_columns,); one not given takes its initial value."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown thermal core parameters {unknown}; known: {tuple(PARAMETERS)}")
    return {
        n: np.broadcast_to(np.asarray(params.get(n, PARAMETERS[n][0]), dtype=float), (n_columns,))
        for n in structure.parameters()
    }


def upper_boundary(params: dict[str, np.ndarray], inputs: CoreInputs, structure: CoreStructure) -> np.ndarray:
    """(T, B) degC above the snowpack: the skin temperature, or the air temperature with the
    thawing-season n-factor."""
    if structure.upper_boundary == "skin":
        if inputs.t_surface is None:
            raise ValueError(
                'the core\'s upper boundary is "skin" but the inputs have no t_surface: '
                'use CoreStructure(upper_boundary="air") for sources without a skin temperature'
            )
        return inputs.t_surface
    return inputs.t_air + (params["n_thaw"] - 1.0) * positive_degree_days(inputs.t_air)


def simulate(
    params: dict[str, np.ndarray],
    inputs: CoreInputs,
    t_start: np.ndarray | None = None,
    spinup_years: int = SPINUP_YEARS,
    return_cells: bool = False,
    structure: CoreStructure = DEFAULT_STRUCTURE,
) -> np.ndarray:
    """Monthly layer-mean soil temperatures (T, 4, B) in degC; every cell's (T, cells, B) if
    ``return_cells``.

    ``params``: name -> (B,) arrays, one value per column (a unit, or a unit and parameter set);
    a parameter of ``structure`` not given takes its initial value. The column starts at
    ``t_start`` (B,) everywhere (default: the first year's mean upper-boundary temperature) and
    first runs ``spinup_years`` repeats of the first 12 months.
    """
    inputs.check()
    col = column(structure.bottom)
    n_cells, n_layer_cells = len(col.thickness), sum(CELLS_PER_LAYER)
    n_columns = inputs.t_air.shape[1]
    p = _complete(params, structure, n_columns)
    k_thawed = np.where(col.top[:, None], p["k_top"][None, :], p["k_mineral"][None, :])
    k_frozen = k_thawed * p["frozen_ratio"][None, :]
    t_top = upper_boundary(p, inputs, structure)
    threshold = p["melt_threshold"] if structure.snowmelt == "delayed" else 0.0
    swe = snowpack(inputs.p_snow, inputs.t_air, inputs.days, melt_factor=p["melt_factor"], melt_threshold=threshold)
    if structure.snow_insulation == "power":  # thin, young packs are light and insulate more per mm
        swe = SNOW_REFERENCE_MM * (swe / SNOW_REFERENCE_MM) ** p["snow_exponent"][None, :]
    r_snow = p["snow_resistance"][None, :] * swe  # (T, B) m2 K W-1
    r_organic = p["organic_resistance"] if structure.organic_layer else np.zeros(n_columns)
    thick = col.thickness[:, None]
    spin = list(range(min(12, len(inputs.days)))) * spinup_years
    order = spin + list(range(len(inputs.days)))
    start = t_top[:12].mean(axis=0) if t_start is None else np.asarray(t_start, dtype=float)
    t = np.repeat(start[None, :], n_cells, axis=0).astype(float)
    out = np.empty((len(inputs.days), n_cells if return_cells else len(SOIL_LAYERS_M), n_columns))
    c_dry = p["c_dry"][None, :]
    for step_index, i in enumerate(order):
        theta = inputs.w[i][col.layer]  # (cells, B)
        c_frozen, c_thawed = c_dry + theta * C_ICE, c_dry + theta * C_WATER
        latent = LATENT_FUSION * WATER_DENSITY * theta
        if structure.freezing == "power_law":
            soil = _PowerLawFreezing(c_frozen, c_thawed, latent, p["unfrozen_exponent"][None, :])
        else:
            width = p["freezing_range"][None, :] if structure.freezing == "range" else FREEZING_RANGE
            soil = _RampFreezing(c_frozen, c_thawed, latent, width)
        dt_s = inputs.days[i] * SECONDS_PER_DAY / SUBSTEPS
        month_mean = np.zeros_like(t)
        for _ in range(SUBSTEPS):
            liquid = soil.liquid(t)
            k = k_frozen + (k_thawed - k_frozen) * liquid
            half = thick / (2 * k)
            between = 1.0 / (half[:-1] + half[1:])
            if structure.bottom == "coupled":
                between[n_layer_cells - 1] *= p["deep_coupling"]
            r_mat = r_organic * (liquid[0] + (1.0 - liquid[0]) / ORGANIC_FROZEN_RATIO)
            top = 1.0 / (r_snow[i] + r_mat + half[0])
            g_above = np.vstack([top[None, :], between])
            g_below = np.vstack([between, np.zeros((1, n_columns))])
            h_old = soil.enthalpy(t)
            cap = soil.capacity(t)
            for iteration in range(PICARD):
                storage = cap * thick / dt_s
                rhs = storage * t
                rhs[0] += top * t_top[i]
                rhs[-1] += 0.0 if structure.bottom == "zero_flux" else GEOTHERMAL_FLUX
                t_new = solve_columns(-g_above, storage + g_above + g_below, -g_below, rhs)
                if iteration < PICARD - 1:  # the chord heat capacity of this step's change
                    change = t_new - t
                    moved = np.abs(change) > 1e-9
                    cap = np.where(moved, (soil.enthalpy(t_new) - h_old) / np.where(moved, change, 1.0), cap)
            t = soil.temperature(h_old + cap * (t_new - t), guess=t_new)
            month_mean += t / SUBSTEPS
        if step_index >= len(spin):
            out[i] = month_mean if return_cells else col.in_layer @ month_mean
    return out


def _fit_problem(structure: CoreStructure, observed: np.ndarray, rows: np.ndarray) -> tuple:
    """What ``fit`` and ``fit_lockstep`` share: the fitted months' targets (R, 4, B), refused
    if any is not finite; the initial values and the log-space bounds and prior scale of
    ``structure.fitted`` (x = log(parameter / initial value): the prior's centre is 0 and the
    tolerances on x do not depend on a parameter's unit); the unfitted parameters, fixed."""
    names = structure.fitted
    target = np.asarray(observed, dtype=float)[rows]  # (R, 4, B)
    bad = np.argwhere(~np.isfinite(target))
    if len(bad):
        month, layer, unit = bad[0]
        raise ValueError(
            f"observed soil temperature: {len(bad)} non-finite value(s) in the fitted months, the first at "
            f"fitted month {month}, layer {layer}, unit {unit}"
        )
    initial = np.array([PARAMETERS[n][0] for n in names])
    lower = np.log([PARAMETERS[n][1] for n in names] / initial)
    upper = np.log([PARAMETERS[n][2] for n in names] / initial)
    prior_scale = structure.prior_weight / ((upper - lower) / 4.0)  # (P,)
    fixed = {n: np.full(target.shape[2], PARAMETERS[n][0]) for n in structure.parameters() if n not in names}
    return target, initial, lower, upper, prior_scale, fixed


@dataclass
class ThermalCore:
    """Per-unit parameters of the conduction core of one ``structure``: ``fit``, then
    ``predict``. ``at_bounds``: per fitted parameter, the units whose fit ended within
    BOUND_TOLERANCE of a bound (the data pushed it there; the prior did not hold it)."""

    params: dict[str, np.ndarray] = field(default_factory=dict)
    train_rmse: float = float("nan")
    iterations: int = 0
    structure: CoreStructure = DEFAULT_STRUCTURE
    at_bounds: dict[str, np.ndarray] = field(default_factory=dict)

    def fit(
        self,
        inputs: CoreInputs,
        observed: np.ndarray,
        rows: np.ndarray,
        t_start: np.ndarray | None = None,
        max_iterations: int = FIT_ITERATIONS,
    ) -> ThermalCore:
        """Least squares on the layer temperatures ``observed`` (T, 4, B) of the months ``rows``
        (bool (T,)), every unit at once.

        Each unit's residuals are its layer errors over sqrt(its number of values), so the cost
        is the sum of the units' mean squared errors, plus its prior residuals. The
        forward-difference Jacobian (block diagonal: units do not interact) comes from ONE
        simulation of every unit x fitted parameter side by side.
        """
        structure = self.structure
        names = structure.fitted
        n_units, n_params = observed.shape[2], len(names)
        target, initial, lower, upper, prior_scale, fixed = _fit_problem(structure, observed, rows)
        n_values = target.shape[0] * target.shape[1]
        tiled = {1: inputs, n_params: inputs.tile(n_params)}

        def errors(theta: np.ndarray) -> np.ndarray:  # (S, P, B) -> (S, B, R * 4), scaled
            copies = theta.shape[0]
            stacked = np.concatenate(list(theta), axis=1)  # (P, B * S)
            params = {n: initial[k] * np.exp(stacked[k]) for k, n in enumerate(names)}  # the others: initial
            start = None if t_start is None else np.tile(t_start, copies)
            sim = simulate(params, tiled[copies], start, structure=structure)[rows]
            r = (sim - np.tile(target, (1, 1, copies))).reshape(n_values, copies, n_units)
            return np.transpose(r, (1, 2, 0)) / np.sqrt(n_values)

        last: dict[str, Any] = {}

        def residuals(x: np.ndarray) -> np.ndarray:  # unit-major: a unit's errors, then its prior
            theta = x.reshape(n_units, n_params)
            last.update(x=x.copy(), errors=errors(theta.T[None])[0])
            return np.concatenate([last["errors"], prior_scale * theta], axis=1).ravel()

        def jacobian(x: np.ndarray) -> sparse.csr_matrix:
            if "x" not in last or not np.array_equal(last["x"], x):
                residuals(x)
            theta = x.reshape(n_units, n_params).T
            step = np.where(theta + FIT_STEP > upper[:, None], -FIT_STEP, FIT_STEP)  # stay inside the bounds
            shifted = np.stack([theta + np.eye(n_params)[:, p, None] * step for p in range(n_params)])
            slopes = (errors(shifted) - last["errors"][None]) / step[:, :, None]  # (P, B, R * 4)
            blocks = np.concatenate(
                [np.transpose(slopes, (1, 2, 0)), np.broadcast_to(np.diag(prior_scale), (n_units, n_params, n_params))],
                axis=1,
            )  # (B, R*4 + P, P): unit b's rows against its own parameters
            n_rows = blocks.shape[1]
            columns = (np.arange(n_units)[:, None, None] * n_params + np.arange(n_params)[None, None, :]).repeat(
                n_rows, axis=1
            )
            return sparse.csr_matrix(
                (blocks.ravel(), columns.ravel(), np.arange(0, blocks.size + 1, n_params)),
                shape=(n_units * n_rows, n_units * n_params),
            )

        x, evaluations = np.zeros(n_units * n_params), 0
        if max_iterations > 0:  # 0: the initial parameters, e.g. to compare a fit with its start
            result = least_squares(
                residuals,
                x,
                jac=jacobian,
                bounds=(np.tile(lower, n_units), np.tile(upper, n_units)),
                method="trf",
                tr_solver="lsmr",
                ftol=FIT_TOLERANCE,
                xtol=FIT_TOLERANCE,
                max_nfev=max_iterations,
            )
            x, evaluations = result.x, int(result.njev or 0)
        theta = x.reshape(n_units, n_params).T
        if "x" not in last or not np.array_equal(last["x"], x):
            residuals(x)
        return self._settle(theta, initial, lower, upper, fixed, last["errors"], evaluations)

    def _settle(self, theta, initial, lower, upper, fixed, errors, iterations) -> ThermalCore:
        """Keep a fit's result: log-space ``theta`` (P, B) as parameters, the units within
        BOUND_TOLERANCE of a bound, the RMSE over the units' scaled ``errors`` (B, R * 4)."""
        names = self.structure.fitted
        near = np.minimum(theta - lower[:, None], upper[:, None] - theta) < np.log1p(BOUND_TOLERANCE)
        self.params = {n: initial[k] * np.exp(theta[k]) for k, n in enumerate(names)} | fixed
        self.at_bounds = {n: near[k] for k, n in enumerate(names)}
        self.train_rmse = float(np.sqrt((errors**2).sum(axis=1).mean()))
        self.iterations = iterations
        return self

    def fit_each(self, inputs: CoreInputs, observed: np.ndarray, rows: np.ndarray, **options: Any) -> ThermalCore:
        """``fit`` for each unit on its own (``options``: ``fit``'s ``t_start``, ``max_iterations``):
        its own trust region and its own stopping, so a unit's parameters do not depend on which
        units it is fitted with (a map's cells do not show the tiles they were fitted in). ``fit``
        over many units at once is several times faster per unit, but stops when the JOINT cost
        stalls, which leaves some units short of their own optimum. ``fit_lockstep`` keeps this
        independence at about ``fit``'s cost per unit (grid mode uses it); this one is scipy's
        trust region, one unit after another. ``iterations``: the most any unit took;
        ``train_rmse``: over all."""
        t_start = options.pop("t_start", None)
        fits = [
            ThermalCore(structure=self.structure).fit(
                inputs.columns(np.array([b])),
                observed[:, :, [b]],
                rows,
                t_start=None if t_start is None else np.asarray(t_start)[[b]],
                **options,
            )
            for b in range(observed.shape[2])
        ]
        self.params = {n: np.concatenate([f.params[n] for f in fits]) for n in fits[0].params}
        self.at_bounds = {n: np.concatenate([f.at_bounds[n] for f in fits]) for n in fits[0].at_bounds}
        self.train_rmse = float(np.sqrt(np.mean([f.train_rmse**2 for f in fits])))
        self.iterations = max(f.iterations for f in fits)
        return self

    def fit_lockstep(
        self,
        inputs: CoreInputs,
        observed: np.ndarray,
        rows: np.ndarray,
        t_start: np.ndarray | None = None,
        max_iterations: int = FIT_ITERATIONS,
    ) -> ThermalCore:
        """Every unit fitted as its OWN least-squares problem, all units iterated side by side:
        the independence of ``fit_each`` at about the cost per unit of ``fit``.

        Why beside them: ``fit_each`` (scipy per unit) pays ``simulate``'s per-month overhead once
        per unit, about 6 s of CPU per grid cell; ``fit`` shares it among the units but stops
        when the JOINT cost stalls, so a unit's parameters depend on its companions. Here each
        unit has the residuals, log-parameter space, bounds, initial point and forward-difference
        Jacobian of ``fit`` (step FIT_STEP, taken downwards where upwards would leave the bounds),
        and its own damped Gauss-Newton (Levenberg-Marquardt) iteration: its own damping (Moré's
        scaling by the largest diagonal of JᵀJ seen; Nielsen's update), its own accept/reject
        (the cost must fall) and its own stopping (scipy's rules at FIT_TOLERANCE: a cost change
        below ftol x cost with a gain ratio above 0.25, a step below xtol x (xtol + |x|), or a
        projected gradient below LOCKSTEP_GTOL). Bounds: a parameter at a bound whose gradient
        points outwards is held there for the step (the others solve the reduced system), then
        the candidate is clipped into the bounds. Per iteration, ONE ``simulate`` runs every unit
        still moving at its candidate and at the candidate shifted along each fitted parameter
        (1 + P columns per unit), so an accepted candidate comes with its Jacobian; a unit that
        has stopped is no longer simulated. ``simulate``'s columns do not interact and every
        decision is per unit, so a unit's result does not depend on which units are fitted with
        it (to the last bit, for the structures whose freezing is not "power_law": that one's
        Newton iteration stops on the worst column's gap).

        ``max_iterations``: evaluations per unit at most, the first at the initial point (as
        ``fit``'s function evaluations; 0 keeps the initial parameters). ``iterations``: the most
        any unit took; ``train_rmse``: over all units, as ``fit``.
        """
        structure = self.structure
        names = structure.fitted
        n_units, n_params = observed.shape[2], len(names)
        target, initial, lower, upper, prior_scale, fixed = _fit_problem(structure, observed, rows)
        n_values = target.shape[0] * target.shape[1]
        prior_block = np.diag(prior_scale)
        eye = np.eye(n_params)

        def evaluate(units: np.ndarray, theta: np.ndarray, slopes: bool) -> tuple[np.ndarray, np.ndarray | None]:
            """Scaled layer errors (U, R * 4) of the units at theta (U, P), and their
            forward-difference slopes (U, R * 4, P) if ``slopes``: one simulation."""
            step = np.where(theta + FIT_STEP > upper, -FIT_STEP, FIT_STEP)  # stay inside the bounds
            stacked = [theta] + ([theta + eye[p] * step[:, [p]] for p in range(n_params)] if slopes else [])
            copies = len(stacked)
            columns = np.concatenate(stacked, axis=0).T  # (P, U * copies): column u + U * copy
            params = {n: initial[k] * np.exp(columns[k]) for k, n in enumerate(names)}  # the others: initial
            start = None if t_start is None else np.tile(np.asarray(t_start, dtype=float)[units], copies)
            sim = simulate(params, inputs.columns(units).tile(copies), start, structure=structure)[rows]
            r = (sim - np.tile(target[:, :, units], (1, 1, copies))).reshape(n_values, copies, len(units))
            # unit-major and contiguous: every per-unit sum runs in the same order whatever U is
            r = np.ascontiguousarray(np.transpose(r, (2, 1, 0))) / np.sqrt(n_values)  # (U, copies, R * 4)
            if not slopes:
                return r[:, 0].copy(), None
            jac = np.ascontiguousarray(np.transpose((r[:, 1:] - r[:, :1]) / step[:, :, None], (0, 2, 1)))
            return r[:, 0].copy(), jac

        def linearise(theta, errors, slopes):  # residuals (U, M), cost (U,), JᵀJ (U, P, P), gradient (U, P)
            residual = np.concatenate([errors, prior_scale * theta], axis=1)
            jac = np.concatenate([slopes, np.broadcast_to(prior_block, (len(theta), n_params, n_params))], axis=1)
            normal = np.matmul(np.transpose(jac, (0, 2, 1)), jac)
            gradient = np.matmul(np.transpose(jac, (0, 2, 1)), residual[:, :, None])[..., 0]
            return 0.5 * (residual**2).sum(axis=1), normal, gradient

        x = np.zeros((n_units, n_params))
        every = np.arange(n_units)
        evaluations = np.zeros(n_units, dtype=int)
        if max_iterations <= 0:  # the initial parameters, e.g. to compare a fit with its start
            errors, _ = evaluate(every, x, slopes=False)
        else:
            errors, slopes = evaluate(every, x, slopes=True)
            evaluations += 1
            cost, normal, gradient = linearise(x, errors, slopes)
            scale = np.einsum("upp->up", normal).copy()  # Moré: the largest diagonal of JᵀJ so far
            damping, growth = np.full(n_units, LOCKSTEP_DAMPING), np.full(n_units, 2.0)
            moving = evaluations < max_iterations
            while moving.any():
                u = np.flatnonzero(moving)
                xu, g, a = x[u], gradient[u], normal[u]
                held = ((xu <= lower) & (g > 0)) | ((xu >= upper) & (g < 0))  # at a bound, pushed outwards
                free = ~held
                projected = np.where(free, g, 0.0)
                system = a + damping[u, None, None] * (scale[u][:, :, None] * eye)
                system = np.where(free[:, :, None] & free[:, None, :], system, eye)  # held: a zero step
                delta = np.linalg.solve(system, -projected[:, :, None])[..., 0]
                candidate = np.clip(xu + delta, lower, upper)
                delta = candidate - xu
                predicted = -((g * delta).sum(axis=1) + 0.5 * (delta[:, None, :] @ a @ delta[:, :, None])[:, 0, 0])
                new_errors, new_slopes = evaluate(u, candidate, slopes=True)
                evaluations[u] += 1
                new_cost, new_normal, new_gradient = linearise(candidate, new_errors, new_slopes)
                actual = cost[u] - new_cost
                ratio = np.where(predicted > 0, actual / np.where(predicted > 0, predicted, 1.0), 0.0)
                accept = actual > 0
                stop = (actual < FIT_TOLERANCE * cost[u]) & (ratio > 0.25)  # scipy's ftol
                stop |= np.linalg.norm(delta, axis=1) < FIT_TOLERANCE * (
                    FIT_TOLERANCE + np.linalg.norm(xu, axis=1)
                )  # scipy's xtol
                stop |= ~np.isfinite(new_cost)
                factor = np.maximum(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3)
                damping[u] = np.where(accept, damping[u] * factor, damping[u] * growth[u])
                growth[u] = np.where(accept, 2.0, growth[u] * 2.0)
                taken = u[accept]
                x[taken], errors[taken], cost[taken] = candidate[accept], new_errors[accept], new_cost[accept]
                normal[taken], gradient[taken] = new_normal[accept], new_gradient[accept]
                scale[taken] = np.maximum(scale[taken], np.einsum("upp->up", new_normal[accept]))
                after = x[u]
                at_rest = ((after <= lower) & (gradient[u] > 0)) | ((after >= upper) & (gradient[u] < 0))
                stop |= np.linalg.norm(np.where(at_rest, 0.0, gradient[u]), axis=1) < LOCKSTEP_GTOL
                moving[u] = ~stop & (evaluations[u] < max_iterations)
        theta = x.T
        return self._settle(theta, initial, lower, upper, fixed, errors, int(evaluations.max()))

    def predict(self, inputs: CoreInputs, t_start: np.ndarray | None = None) -> np.ndarray:
        """(T, 4, B) degC; ``inputs`` may hold k copies of the units side by side (``tile``)."""
        copies = inputs.t_air.shape[1] // len(next(iter(self.params.values())))
        params = {n: np.tile(v, copies) for n, v in self.params.items()}
        return simulate(params, inputs, t_start, structure=self.structure)

    def to_dict(self) -> dict[str, Any]:
        return {
            "structure": self.structure.to_dict(),
            "params": {n: v.tolist() for n, v in self.params.items()},
            "train_rmse": self.train_rmse,
            "iterations": self.iterations,
            "at_bounds": {n: v.tolist() for n, v in self.at_bounds.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThermalCore:
        """A saved core; one saved before cores had a structure is ``LEGACY_STRUCTURE``."""
        structure = CoreStructure.from_dict(data["structure"]) if "structure" in data else LEGACY_STRUCTURE
        missing = [n for n in structure.fitted if n not in data["params"]]
        if missing:
            raise ValueError(f"thermal core parameters lack {missing}")
        return cls(
            {n: np.asarray(v, dtype=float) for n, v in data["params"].items()},
            data["train_rmse"],
            data["iterations"],
            structure,
            {n: np.asarray(v, dtype=bool) for n, v in data.get("at_bounds", {}).items()},
        )
