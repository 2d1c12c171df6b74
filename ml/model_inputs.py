"""Which drivers the models use on a given pair of sources, and the ones derived from others.

A model may use a canonical driver (``catalog.DYNAMIC_FEATURES``) only if the history has it
(not null in every row: a source that lacks a variable lands it null) AND the scenarios have it
too, since a projection needs every input the model was trained on. What is missing is ABSENT:
the networks drop the channel and the distributed-lag ridge the column; nothing is invented.

Where physics allows, a missing driver is DERIVED from others, by one definition for history and
scenarios alike (the model sees one variable):

* ``p_snow`` (snowfall, m water per month) from precipitation and air temperature when the
  history lacks it: the month's precipitation times the share of its days whose daily mean air
  temperature is below ``SNOW_THRESHOLD_C``, the daily means spread normally with standard
  deviation ``DAILY_SPREAD_K`` around the monthly mean (``snowfall_share``). Both constants are
  textbook values (a rain/snow threshold of about 1 degC on daily means; the day-to-day spread of
  Alaskan winter temperatures), not fitted. The scenarios' own snowfall is then replaced by the
  same derivation from their (bias-corrected) precipitation and air temperature.

Skin temperature has no derivation: where it is absent the core gets none
(``core_surface_temperature``), which its default structure does not need (air temperature with a
thawing n-factor at its upper boundary, ``ml.thermal_core.CoreStructure``); a structure with a skin
boundary refuses such a source. Plain numpy and
polars, no Keras.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtr

from sources import catalog

SNOW_THRESHOLD_C = 1.0  # degC: daily mean air temperature below which precipitation falls as snow
DAILY_SPREAD_K = 4.5  # K: standard deviation of daily mean air temperature around the monthly mean
DERIVATIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "p_snow": (
        ("p_total", "t_air"),
        f"p_total x the share of the month's daily mean air temperatures below {SNOW_THRESHOLD_C:g} degC, "
        f"daily means normal around the monthly t_air with sd {DAILY_SPREAD_K:g} K (ml.model_inputs)",
    ),
}
REQUIRED: tuple[str, ...] = ("t_air",)  # the core's upper boundary (air temperature with an n-factor)


def snowfall_share(
    t_air: np.ndarray, threshold: float = SNOW_THRESHOLD_C, spread: float = DAILY_SPREAD_K
) -> np.ndarray:
    """Expected share of a month's days whose daily mean air temperature is below ``threshold``,
    the daily means normal around the monthly mean ``t_air`` (degC) with sd ``spread`` (K)."""
    return ndtr((threshold - np.asarray(t_air, dtype=np.float64)) / spread)


def derived_snowfall(p_total: np.ndarray, t_air: np.ndarray) -> np.ndarray:
    """Snowfall (the unit of ``p_total``): precipitation times ``snowfall_share(t_air)``."""
    return np.asarray(p_total, dtype=np.float64) * snowfall_share(t_air)


@dataclass(frozen=True)
class ModelInputs:
    """The drivers the models use (``drivers``, in ``catalog.DYNAMIC_FEATURES`` order), those of
    them derived (``derived``: name -> how), the canonical drivers left out and why (``absent``),
    and the soil water (``water``: ``catalog.WATER_CONTENT``)."""

    drivers: tuple[str, ...]
    derived: dict[str, str] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)
    water: tuple[str, ...] = catalog.WATER_CONTENT

    def __post_init__(self) -> None:
        object.__setattr__(self, "drivers", tuple(self.drivers))
        object.__setattr__(self, "water", tuple(self.water))
        unknown = sorted(set(self.drivers) - set(catalog.DYNAMIC_FEATURES))
        if unknown:
            raise ValueError(f"model inputs: {unknown} are not canonical drivers {list(catalog.DYNAMIC_FEATURES)}")
        missing = [name for name in REQUIRED if name not in self.drivers]
        if missing:
            raise ValueError(f"model inputs lack {missing}: the conduction core needs air temperature")

    @classmethod
    def every_driver(cls) -> ModelInputs:
        """Every canonical driver, none derived: what a source with all of them (the demo) gives."""
        return cls(catalog.DYNAMIC_FEATURES)

    @property
    def channels(self) -> tuple[str, ...]:
        """The monthly inputs of the networks and the ridge: drivers, then soil water."""
        return self.drivers + self.water

    @property
    def measured(self) -> tuple[str, ...]:
        """The drivers read from the sources (the bias correction maps these), not derived."""
        return tuple(name for name in self.drivers if name not in self.derived)

    @property
    def core_surface(self) -> str:
        """The surface driver the core is given: skin temperature where the sources have it, else
        air temperature (which its default, air-driven structure reads in any case)."""
        return "t_surface" if "t_surface" in self.drivers else "t_air"

    def to_dict(self) -> dict[str, Any]:
        return {
            "drivers": list(self.drivers),
            "derived": dict(self.derived),
            "absent": dict(self.absent),
            "water": list(self.water),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInputs:
        return cls(tuple(data["drivers"]), dict(data["derived"]), dict(data["absent"]), tuple(data["water"]))

    def describe(self) -> dict[str, Any]:
        """What metadata shows: the drivers used, how the derived ones are made, what is absent."""
        return {"drivers": list(self.drivers), "derived": dict(self.derived), "absent": dict(self.absent)}


def _present(frame: pl.DataFrame | Iterable[str], name: str) -> bool:
    """Whether ``frame`` has ``name`` with a value somewhere (a column of nulls is absent)."""
    if not isinstance(frame, pl.DataFrame):
        return name in set(frame)
    return name in frame.columns and frame[name].null_count() < frame.height


def model_inputs(history: pl.DataFrame, scenarios: pl.DataFrame) -> ModelInputs:
    """The model inputs of a history mart and the scenario mart (see the module docstring)."""
    missing_water = [w for w in catalog.WATER_CONTENT if not _present(history, w)]
    if missing_water:
        raise ValueError(f"history mart: soil water {missing_water} is absent; the models need every layer's water")
    drivers, derived, absent = [], {}, {}
    for name in catalog.DYNAMIC_FEATURES:
        in_history, in_scenarios = _present(history, name), _present(scenarios, name)
        sources, how = DERIVATIONS.get(name, ((), ""))
        derivable = bool(sources) and all(_present(history, s) and _present(scenarios, s) for s in sources)
        if in_history and in_scenarios:
            drivers.append(name)
        elif not in_history and derivable:
            drivers.append(name)
            derived[name] = how
        elif not in_history:
            absent[name] = "absent from the history (the reanalysis source lacks it); not derivable"
        else:
            absent[name] = "absent from the scenarios: a projection could not provide it"
    return ModelInputs(tuple(drivers), derived, absent)


def with_derived(frame: pl.DataFrame, inputs: ModelInputs) -> pl.DataFrame:
    """``frame`` with each of ``inputs.derived`` (re)computed from its sources, by the one
    definition of this module (a scenario's own value of a derived driver is replaced)."""
    for name in inputs.derived:
        if name != "p_snow":
            raise ValueError(f"no derivation of {name!r} is defined")
        catalog.require_columns(frame, DERIVATIONS[name][0], f"frame to derive {name} in")
        value = derived_snowfall(
            frame["p_total"].cast(pl.Float64).to_numpy(), frame["t_air"].cast(pl.Float64).to_numpy()
        )
        frame = frame.with_columns(pl.Series(name, value, dtype=pl.Float64))
    return frame


def core_surface_temperature(values: dict[str, np.ndarray], inputs: ModelInputs) -> np.ndarray | None:
    """The core's skin temperature (``CoreInputs.t_surface``) where the model inputs have it, else
    None: the core's default upper boundary is air temperature with a thawing n-factor, and a
    structure with a skin boundary raises on None rather than run on air temperature unawares."""
    return values["t_surface"] if inputs.core_surface == "t_surface" else None


def modelling_marts(history: pl.DataFrame, scenarios: pl.DataFrame, units: pl.DataFrame):
    """What every modelling step starts from, so all of them see the same inputs: the history
    mart with its derived drivers, its units (``ml.unit_arrays.Units`` of ``marts.dim_spatial_units``),
    the model inputs of the history and the scenario mart, and the scenario mart itself."""
    from ml.unit_arrays import Units

    inputs = model_inputs(history, scenarios)
    return with_derived(history, inputs), Units.of(units, "marts.dim_spatial_units"), inputs, scenarios
