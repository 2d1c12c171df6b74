"""Demo worlds: the soil physics a demo run uses, selectable by name (`WORLDS`).

The default world shares the physical class of the model's conduction core (water freezing
over 1 K, snow as a uniform insulating layer, a thin organic mat), which flatters the core's
skill. The other worlds differ structurally so the perfect-model validation can be run where the
core's physics is wrong. Only the soil differs: weather, snow and soil water are the same
(but for a longer spin-up's first months).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FreezingCurve:
    """Share of the soil water still liquid at knot temperatures (degC, rising, the last 0):
    linear between knots, constant below the first (unfrozen residual), all liquid above 0."""

    knots_c: tuple[float, ...] = (-1.0, 0.0)
    liquid: tuple[float, ...] = (0.0, 1.0)

    def __post_init__(self) -> None:
        knots = np.array(self.knots_c)
        if len(knots) != len(self.liquid) or len(knots) < 2 or knots[-1] != 0.0 or (np.diff(knots) <= 0).any():
            raise ValueError(f"freezing curve: knots {self.knots_c} must rise to 0 degC, one liquid share each")
        if self.liquid[-1] != 1.0 or (np.diff(self.liquid) < 0).any():
            raise ValueError(f"freezing curve: liquid shares {self.liquid} must rise to 1 at 0 degC")

    @classmethod
    def power_law(cls, scale_k: float, exponent: float, coldest_c: float, n_knots: int) -> FreezingCurve:
        """Unfrozen water (1 + |T| / scale_k) ** -exponent, as silty soils hold it, on knots
        spaced geometrically from -scale_k / 4 down to `coldest_c`."""
        below = -np.geomspace(scale_k / 4, -coldest_c, n_knots - 1)[::-1]
        knots = np.append(below, 0.0)
        liquid = (1.0 + np.abs(knots) / scale_k) ** -exponent
        return cls(tuple(float(k) for k in knots), tuple(float(v) for v in liquid))

    def liquid_share(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.knots_c, self.liquid)


@dataclass(frozen=True)
class SnowLaw:
    """How the snowpack's thermal resistance follows its depth and density: a uniform layer of
    Sturm conductivity by default. A depth varying within the unit (coefficient of variation)
    lets heat escape through thin patches; depth hoar, up to `hoar_max` of the pack, grows under
    steep temperature gradients and insulates; wind packing makes the rest conduct better."""

    depth_cv: float = 0.0
    hoar_max: float = 0.0
    packing: float = 1.0  # factor on the conductivity of the settled snow


@dataclass(frozen=True)
class OrganicMat:
    """The organic mat above the mineral soil: its thickness against the units' own, heat
    properties, and the water it holds per unit of the layer's water (peat holds more)."""

    depth_factor: float = 1.0
    dry_capacity: float = 0.6e6  # J m-3 K-1
    k_thawed: float = 0.35  # W m-1 K-1
    k_frozen: float = 0.9
    water_factor: float = 1.0
    water_max: float = 0.9  # m3 m-3


@dataclass(frozen=True)
class World:
    """The soil physics of one demo world."""

    name: str
    description: str
    freezing: FreezingCurve = field(default_factory=FreezingCurve)
    snow: SnowLaw = field(default_factory=SnowLaw)
    organic: OrganicMat = field(default_factory=OrganicMat)
    geothermal_flux: float = 0.06  # W m-2 entering the bottom of the column
    deep_edges: tuple[float, ...] = (3.5, 4.2, 5.0)  # m, cells below the deepest ERA5-Land layer
    spinup_years: int = 8  # years of the first year's climate run before the first month


DEFAULT_WORLD = "default"
WORLDS: dict[str, World] = {
    world.name: world
    for world in (
        World(DEFAULT_WORLD, "water freezes over 1 K under a uniform snow layer (the core's own class)"),
        World(
            "wide_freezing",
            "silty soil keeps unfrozen water down to -20 degC (power law), latent heat spread over kelvins",
            freezing=FreezingCurve.power_law(scale_k=0.3, exponent=0.7, coldest_c=-20.0, n_knots=12),
        ),
        World(
            "drifting_snow",
            "wind-drifted snow: heat escapes where the cover is thin, wind slab conducts, depth hoar insulates",
            snow=SnowLaw(depth_cv=0.4, hoar_max=0.5, packing=1.3),
        ),
        World(
            "peat",
            "a peat and moss mat 2.5 times as thick, holding 1.8 times the water, conducting 3 times better frozen",
            organic=OrganicMat(depth_factor=2.5, dry_capacity=0.58e6, k_thawed=0.3, k_frozen=0.9, water_factor=1.8),
        ),
        World(
            "deep_ground",
            "a 30 m column under a 0.10 W m-2 geothermal flux: the deep ground stores heat and slows warming",
            geothermal_flux=0.10,
            deep_edges=(3.5, 4.2, 5.0, 6.5, 8.5, 11.0, 15.0, 21.0, 30.0),
            spinup_years=25,
        ),
    )
}


def world_named(name: str) -> World:
    """The world called `name`, or a ValueError naming the worlds there are."""
    if name not in WORLDS:
        raise ValueError(f"demo world {name!r} is unknown; expected one of {tuple(WORLDS)}")
    return WORLDS[name]
