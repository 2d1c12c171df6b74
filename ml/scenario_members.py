"""The conduction core on the history and under each scenario, one run per ensemble member.

* ``fit_history_core``: fit ``ml.thermal_core`` per spatial unit on the training months of the
  reanalysis (air temperature, skin temperature where the sources have it, snowfall, the
  training climatology of each layer's water) and run it over the whole history.
* ``member_drivers``: the scenario drivers of each member: bias corrected by one of several
  METHODS in turn (member k by method k mod the number of methods: the pipeline's quantile
  delta mapping, and ``mean_delta_correction``), each with its own bootstrap draw of the
  correction's sampling error (``ml.forcing_bootstrap``; draw 0 unperturbed), drawn on the
  overlap of the reanalysis and the UNCORRECTED scenario; a derived driver (``ml.model_inputs``)
  is derived again from each member's corrected drivers. Why two methods: in the demo's
  perfect-model experiment the largest error of a projection is the bias correction's own
  (quantile mapping ranks a trending series within the overlap, which bends its trend a
  little); bootstrap draws of the correction's mean offsets widen the spread of the level
  but cancel in a change, so only a second method makes the spread of the CHANGE honest
  (measured on five demo worlds: the truth inside the 5-95% range of the change in 65-89% of
  cells instead of 52-78% with quantile mapping alone, scenario ordering kept).
* ``member_cores``: the fitted core driven by each member's drivers, all members side by side
  in one simulation. Soil water is the reanalysis' training climatology, so scenario soil water
  cannot reach the core.
* ``structure_offsets``: structural members. Every draw's ``core`` is the default structure's (the
  one the networks were trained on); draw k also belongs to structure k mod the number of
  ``ENSEMBLE_STRUCTURES`` used, and carries that structure's run MINUS the default's on the same
  drivers, less the mean of that difference over the training years per unit, calendar month and
  layer. A network member adds its draw's offset to its projection: the networks' correction of
  the history stays as trained, the extrapolation follows another physics. Why: with one core
  structure the members' 5-95% range was the networks' and the bias draws' spread only, and in
  demo worlds whose soil differs from the core (a 30 m column, freezing over kelvins) every member
  erred the same way; the structures' own runs disagree exactly there (a thick column halves the
  change error of the 30 m world, ``benchmarks/structural_worlds.py``). Why debiased: each
  structure is fitted to the same history, so their history means differ by misfit only, which
  the networks were trained to correct for the default.
* ``outside_training_range``: per variable, the share of scenario months outside the training
  range of the same unit and calendar month (about 10% even without climate change: each cell
  has only 18 training years).
* ``build_members``: all of the above for one scenario, as ``ScenarioMembers`` (saved as one
  ``.npz``), and ``training_range_shares`` its diagnostics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ml.forcing_bootstrap import MULTIPLICATIVE, offset_perturbation, overlap_block_years, perturb
from ml.model_inputs import ModelInputs, core_surface_temperature, derived_snowfall
from ml.thermal_core import DEFAULT_STRUCTURE, CoreInputs, CoreStructure, ThermalCore
from ml.training_config import BIAS_METHODS, CORE_STRUCTURES
from ml.unit_arrays import UnitGrid, Units, calendar_climatology, days_in_month, grid_frame, unit_grid
from sources import catalog

# The core structures of the ensemble, the default first (the one the networks are trained on):
# each differs from it in one term where the demo worlds showed the core's physics can be wrong.
DEFAULT_STRUCTURE_NAME = CORE_STRUCTURES[0]
ENSEMBLE_STRUCTURES: dict[str, CoreStructure] = {
    DEFAULT_STRUCTURE_NAME: DEFAULT_STRUCTURE,
    # a 30 m column under the geothermal flux: deep ground's heat capacity slows warming
    "thick_column": dataclasses.replace(DEFAULT_STRUCTURE, bottom="thick", fitted=None),
    # unfrozen water over several kelvin (silty soils) instead of a fitted freezing range
    "power_law_freezing": dataclasses.replace(DEFAULT_STRUCTURE, freezing="power_law", fitted=None),
}


if tuple(ENSEMBLE_STRUCTURES) != CORE_STRUCTURES:
    raise RuntimeError(f"ml.training_config.CORE_STRUCTURES {CORE_STRUCTURES} must name ENSEMBLE_STRUCTURES")


def structure_named(name: str) -> CoreStructure:
    """One of ``ENSEMBLE_STRUCTURES``, or a ValueError naming them."""
    if name not in ENSEMBLE_STRUCTURES:
        raise ValueError(f"core structure {name!r} is not one of the ensemble's {list(ENSEMBLE_STRUCTURES)}")
    return ENSEMBLE_STRUCTURES[name]


def member_structure(draw: int, structures: Sequence[str]) -> str:
    """The core structure of member ``draw``: structure ``draw`` mod their number. Draw k of
    network member s of architecture a is s * 5 + a (``ml.ensemble.bias_draw``), so with three
    structures every architecture has members of each, and they cross the two bias methods."""
    return structures[draw % len(structures)]


def water_climatology(history: UnitGrid, train: np.ndarray) -> np.ndarray:
    """(12, 4, U) training mean of w_0..w_3 per calendar month, layer and unit."""
    water = history.select(catalog.WATER_CONTENT)  # (T, U, 4)
    return np.transpose(calendar_climatology(water, history.calendar_month, train), (0, 2, 1))


def core_drivers(inputs: ModelInputs) -> tuple[str, ...]:
    """The drivers the core reads: its upper boundary (skin or air temperature), air
    temperature (the snowpack's melt) and snowfall."""
    return tuple(dict.fromkeys((inputs.core_surface, "t_air", "p_snow")))


def core_inputs(drivers: UnitGrid, water_clim: np.ndarray, days: np.ndarray, inputs: ModelInputs) -> CoreInputs:
    """Core inputs from a grid holding ``core_drivers(inputs)``, with climatological water."""
    values = {name: drivers.select((name,))[..., 0] for name in core_drivers(inputs)}
    surface = core_surface_temperature(values, inputs)
    return CoreInputs(surface, values["t_air"], values["p_snow"], water_clim[drivers.calendar_month], days)


def fit_history_core(
    history: UnitGrid,
    train: np.ndarray,
    days: np.ndarray,
    inputs: ModelInputs,
    structure: CoreStructure = DEFAULT_STRUCTURE,
) -> tuple[ThermalCore, np.ndarray]:
    """The core of ``structure`` fitted on the months ``train`` of ``history`` (drivers, water and
    t_soil_k) and its prediction (T, U, 4) degC over every month. The column starts at the first
    year's mean observed soil temperature of each unit."""
    observed = np.transpose(history.select(catalog.TARGETS), (0, 2, 1))  # (T, 4, U)
    core_in = core_inputs(history, water_climatology(history, train), days, inputs)
    t_start = observed[:12].mean(axis=(0, 1))
    core = ThermalCore(structure=structure).fit(core_in, observed, train, t_start=t_start)
    return core, np.transpose(core.predict(core_in, t_start=t_start), (0, 2, 1))


def history_run_frame(months: np.ndarray, core: np.ndarray, units: Units) -> pl.DataFrame:
    """The core's history run (T, U, 4) as a long frame unit, band, month, t_soil_0..t_soil_3."""
    return grid_frame(months, core, catalog.TARGETS, units)


def read_history_run(path: Path, months: np.ndarray, units: Units) -> np.ndarray:
    """The core's history run (T, U, 4) saved at ``path`` over ``months`` and ``units``; raises
    naming the months it lacks (the core ran before they were published: re-fit it)."""
    grid = unit_grid(pl.read_parquet(path), catalog.TARGETS, f"thermal core history {path}", units)
    missing = np.setdiff1d(months, grid.months)
    if len(missing):
        raise ValueError(
            f"the thermal core ran over {grid.months[0]}..{grid.months[-1]} and lacks {len(missing)} month(s) "
            f"from {missing[0]}: re-materialize thermal_core"
        )
    return grid.values[np.searchsorted(grid.months, months)]


def overlap(history: UnitGrid, raw_scenario: UnitGrid, variables: tuple[str, ...]) -> tuple[dict, dict, np.ndarray]:
    """Reanalysis and uncorrected-scenario ``variables`` over their common whole years (January
    to December): (reference, model, calendar) for ``offset_perturbation``."""
    first = max(history.months[0], raw_scenario.months[0])
    first = first + (-int(first.astype(np.int64)) % 12)  # the next January (or this one)
    last = min(history.months[-1], raw_scenario.months[-1])
    last = last - ((int(last.astype(np.int64)) + 1) % 12)  # the last December
    if last < first + 11:
        raise ValueError(
            f"the reanalysis ({history.months[0]}..{history.months[-1]}) and the scenario "
            f"({raw_scenario.months[0]}..{raw_scenario.months[-1]}) share no whole year"
        )
    rows_h, rows_s = history.rows(first, last), raw_scenario.rows(first, last)
    reference = {v: history.select((v,))[rows_h, :, 0] for v in variables}
    model = {v: raw_scenario.select((v,))[rows_s, :, 0] for v in variables}
    return reference, model, history.calendar_month[rows_h]


def rederive(values: np.ndarray, names: tuple[str, ...], inputs: ModelInputs) -> np.ndarray:
    """(..., V) driver values (``names`` order) with the derived drivers of ``inputs`` computed
    again from the others (in place, and returned)."""
    if "p_snow" in inputs.derived:
        at = names.index
        values[..., at("p_snow")] = derived_snowfall(values[..., at("p_total")], values[..., at("t_air")])
    return values


def mean_delta_correction(
    raw_scenario: UnitGrid,
    history: UnitGrid,
    like: UnitGrid,
    inputs: ModelInputs,
    runs: list[UnitGrid] | None = None,
) -> UnitGrid:
    """``like`` (a corrected scenario) with its measured drivers replaced by the raw scenario
    corrected by the plain difference (temperatures, fluxes) or ratio (precipitation, snowfall)
    of the reanalysis' and the climate model's means per unit and calendar month over their
    whole common years: the model's own change signal, untouched by any ranking. The model's
    means pool all its ``runs`` (default: this scenario's alone): a model's bias belongs to the
    model, not to one pathway, and pooling the runs' weather keeps sampling noise from shifting
    one pathway against another. Derived drivers are derived again; soil water is kept."""
    measured = inputs.measured
    pooled = [overlap(history, run, measured)[1] for run in (runs or [raw_scenario])]
    reference, _, _ = overlap(history, raw_scenario, measured)
    rows = raw_scenario.rows(like.months[0], like.months[-1])
    if len(rows) != len(like.months):
        raise ValueError(f"the raw scenario does not cover the corrected one's {like.months[0]}..{like.months[-1]}")
    values = like.values.copy()
    calendar = like.calendar_month

    def monthly_mean(series: np.ndarray) -> np.ndarray:  # (years * 12, U) -> (12, U)
        return series.reshape(-1, 12, series.shape[-1]).mean(axis=0)

    for v in measured:
        ref = monthly_mean(reference[v])
        mod = np.mean([monthly_mean(model[v]) for model in pooled], axis=0)
        raw = raw_scenario.select((v,))[rows, :, 0]
        if v in MULTIPLICATIVE:
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(mod > 0, ref / mod, 1.0)
            values[..., like.names.index(v)] = raw * factor[calendar]
        else:
            values[..., like.names.index(v)] = raw + (ref - mod)[calendar]
    return UnitGrid(like.months, rederive(values, like.names, inputs), like.names, like.units)


def bootstrap_block(
    history: UnitGrid, raw_scenario: UnitGrid, inputs: ModelInputs, block_years: int
) -> tuple[float | None, int]:
    """(persistence, block length) of the bias correction's bootstrap: ``block_years`` >= 1 as
    given (persistence not measured: None), 0 the block length of the overlap's measured
    persistence (``ml.forcing_bootstrap.overlap_block_years``)."""
    if block_years < 0:
        raise ValueError(f"block_years must be >= 0 (0: from the overlap's persistence), got {block_years}")
    if block_years:
        return None, block_years
    return overlap_block_years(*overlap(history, raw_scenario, inputs.measured))


def member_drivers(
    corrected: UnitGrid | list[UnitGrid],
    history: UnitGrid,
    raw_scenario: UnitGrid,
    draws: int,
    seed: int,
    inputs: ModelInputs,
    block_years: int = 1,
) -> np.ndarray:
    """(draws, T, U, V) drivers (``names`` order) of members 0..draws-1: member k starts from
    ``corrected[k % len(corrected)]`` (one grid per bias-correction method; draw 0 uses the
    first) and carries bootstrap draw k of the correction of each measured driver (draw 0 none),
    resampling ``block_years`` consecutive years together (``bootstrap_block``; 1: single
    years); derived drivers are derived again from the perturbed ones."""
    methods = corrected if isinstance(corrected, list) else [corrected]
    reference, model, calendar = overlap(history, raw_scenario, inputs.measured)
    _, block = bootstrap_block(history, raw_scenario, inputs, block_years)
    out = np.stack([methods[k % len(methods)].values for k in range(draws)]).astype(np.float32)
    for draw in range(1, draws):
        base = methods[draw % len(methods)]
        perturbation = offset_perturbation(reference, model, calendar, draw, seed, block)
        for v in inputs.measured:
            k = base.names.index(v)
            out[draw, ..., k] = perturb(base.values[..., k], perturbation[v], base.calendar_month, v)
        rederive(out[draw], base.names, inputs)
    return out


def member_cores(
    core: ThermalCore,
    drivers: np.ndarray,
    names: tuple[str, ...],
    calendar_month: np.ndarray,
    water_clim,
    days,
    inputs: ModelInputs,
) -> np.ndarray:
    """(draws, T, U, 4) degC: the core on each draw's drivers (D, T, U, V), side by side."""
    n_draws, _, n_units, _ = drivers.shape

    def side_by_side(name: str) -> np.ndarray:  # (T, U * D), draw-major columns
        return np.concatenate(list(drivers[..., names.index(name)].astype(np.float64)), axis=1)

    values = {name: side_by_side(name) for name in core_drivers(inputs)}
    core_in = CoreInputs(
        core_surface_temperature(values, inputs),
        values["t_air"],
        values["p_snow"],
        np.tile(water_clim[calendar_month], (1, 1, n_draws)),
        days,
    )
    simulated = core.predict(core_in)  # (T, 4, U * D)
    return np.stack(
        [np.transpose(simulated[:, :, d * n_units : (d + 1) * n_units], (0, 2, 1)) for d in range(n_draws)]
    ).astype(np.float32)


def structure_offsets(
    cores: Mapping[str, ThermalCore],
    structures: Sequence[str],
    drivers: np.ndarray,
    base: np.ndarray,
    names: tuple[str, ...],
    months: np.ndarray,
    water_clim: np.ndarray,
    days: np.ndarray,
    inputs: ModelInputs,
    history_last: np.datetime64 | None = None,
) -> np.ndarray:
    """(D, T, U, 4) float32: per draw, its structure's (``member_structure``) core run on the
    draw's drivers minus ``base`` (the default core's run of the draws, (D, T, U, 4)), less the
    mean of that difference over the training years (``catalog.HISTORY_START`` to
    ``TRAIN_LAST_TARGET_MONTH``) per unit, calendar month and layer; zero for the default's draws.
    Where the members do not reach back to the training years (a climate-model table from 2021)
    the mean is taken over their months up to ``history_last``, the reanalysis' last month.
    ``cores`` maps a structure's name to its fitted core."""
    missing = [name for name in structures if name not in cores]
    if missing:
        raise ValueError(f"no fitted core of structure(s) {missing}, only {list(cores)}: re-materialize thermal_core")
    calendar = months.astype(np.int64) % 12

    def every_calendar_month(rows: np.ndarray) -> bool:
        return all((rows & (calendar == m)).any() for m in range(12))

    first = catalog.month64(catalog.HISTORY_START)
    training = (months >= first) & (months <= catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH))
    if not every_calendar_month(training) and history_last is not None:
        training = months <= history_last  # the members' months beside the reanalysis
    if not every_calendar_month(training):
        raise ValueError(
            f"the members' months {months[0]}..{months[-1]} hold no whole year of the history "
            f"({first}..{history_last}) to debias the structures' offsets on"
        )
    offsets = np.zeros(base.shape, dtype=np.float32)
    for name in dict.fromkeys(structures):
        draws = [d for d in range(len(drivers)) if member_structure(d, structures) == name]
        if name == DEFAULT_STRUCTURE_NAME or not draws:
            continue
        run = member_cores(cores[name], drivers[draws], names, calendar, water_clim, days, inputs)
        difference = run - base[draws]  # (d, T, U, 4)
        for month in range(12):
            rows = calendar == month
            mean = difference[:, training & rows].mean(axis=1, keepdims=True)
            difference[:, rows] -= mean
        offsets[draws] = difference
    return offsets


def outside_training_range(
    history: UnitGrid, train: np.ndarray, scenario: UnitGrid, rows: np.ndarray, names: tuple[str, ...]
) -> dict[str, float]:
    """Per variable: the share of (month, unit) values of the scenario months ``rows`` outside
    the training months' [min, max] of the same unit and calendar month."""
    out = {}
    for name in names:
        values = history.select((name,))[..., 0]
        low = np.stack([values[train & (history.calendar_month == m)].min(axis=0) for m in range(12)])
        high = np.stack([values[train & (history.calendar_month == m)].max(axis=0) for m in range(12)])
        scenario_values = scenario.select((name,))[rows, :, 0]
        calendar = scenario.calendar_month[rows]
        outside = (scenario_values < low[calendar]) | (scenario_values > high[calendar])
        out[name] = float(outside.mean())
    return out


@dataclass
class ScenarioMembers:
    """Every ensemble member's drivers and core run under one scenario.

    ``months`` (T,) datetime64[M]; ``drivers`` (D, T, U, V) in ``driver_names`` order and
    ``core`` (D, T, U, 4) degC, float32, one per bias-correction draw (the default structure's
    run, what the networks read); ``bias_method`` (D,) the correction each draw starts from (draw
    0: the first method, unperturbed); ``units`` (U,) the unit ids of the unit axis;
    ``structure`` (D,) each draw's core structure and ``offsets`` (D, T, U, 4) what it adds to a
    network's projection (``structure_offsets``); default: every draw the default structure,
    no offset (members saved before structural members).
    """

    months: np.ndarray
    drivers: np.ndarray
    core: np.ndarray
    bias_method: tuple[str, ...]
    driver_names: tuple[str, ...]
    units: np.ndarray
    structure: tuple[str, ...] = ()
    offsets: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.structure:
            self.structure = (DEFAULT_STRUCTURE_NAME,) * len(self.core)
        if self.offsets is None:
            self.offsets = np.zeros(self.core.shape, dtype=np.float32)
        if len(self.structure) != len(self.core) or self.offsets.shape != self.core.shape:
            raise ValueError(
                f"scenario members: {len(self.structure)} structures and offsets {self.offsets.shape} for cores "
                f"{self.core.shape}"
            )

    def offset_at(self, draw: int, unit: np.ndarray, month: np.ndarray) -> np.ndarray:
        """(n, 4) the structural offset of member ``draw`` at unit positions ``unit`` (n,) and
        months ``month`` (n,), anything numpy turns into datetime64[M]."""
        month = np.asarray(month).astype("datetime64[M]")
        rows = np.searchsorted(self.months, month)
        if (rows >= len(self.months)).any() or (self.months[np.minimum(rows, len(self.months) - 1)] != month).any():
            raise ValueError(f"months outside the members' {self.months[0]}..{self.months[-1]}")
        return self.offsets[draw][rows, np.asarray(unit)]

    def save(self, path: Path) -> None:
        with open(path, "wb") as handle:  # a file object stops np.savez from appending '.npz'
            np.savez(
                handle,
                months=self.months,
                drivers=self.drivers,
                core=self.core,
                driver_names=np.asarray(self.driver_names, dtype=np.str_),
                bias_method=np.asarray(self.bias_method, dtype=np.str_),
                units=self.units,
                structure=np.asarray(self.structure, dtype=np.str_),
                offsets=self.offsets,
            )

    @classmethod
    def load(cls, path: Path) -> ScenarioMembers:
        with np.load(path, allow_pickle=False) as stored:
            return cls(
                months=stored["months"],
                drivers=stored["drivers"],
                core=stored["core"],
                bias_method=tuple(stored["bias_method"].tolist()),
                driver_names=tuple(stored["driver_names"].tolist()),
                units=stored["units"],
                structure=tuple(stored["structure"].tolist()) if "structure" in stored else (),
                offsets=stored.get("offsets"),
            )

    def select(self, draw: int, names: tuple[str, ...]) -> np.ndarray:
        """(T, U, len(names)) drivers of member ``draw`` in the order asked for."""
        missing = [n for n in names if n not in self.driver_names]
        if missing:
            raise KeyError(f"scenario members have no {missing}; they hold {list(self.driver_names)}")
        return self.drivers[draw][..., [self.driver_names.index(n) for n in names]]


def build_members(
    corrected: UnitGrid,
    raw_runs: dict[str, UnitGrid],
    scenario: str,
    history: UnitGrid,
    train: np.ndarray,
    core: ThermalCore,
    calendar: str,
    inputs: ModelInputs,
    methods: Sequence[str] = BIAS_METHODS,
    draws: int = 1,
    seed: int = catalog.DEFAULT_SEED,
    variants: Mapping[str, ThermalCore] | None = None,
    structures: Sequence[str] = (DEFAULT_STRUCTURE_NAME,),
    block_years: int = 1,
) -> ScenarioMembers:
    """The members of ``scenario``: its quantile-mapped drivers ``corrected`` (and the raw run
    ``raw_runs[scenario]``; every run of the model pools the mean-delta correction's means),
    corrected by ``methods`` in turn with bootstrap draws 0..draws-1, and the fitted ``core``
    (the default structure) run on each with the training months' (``train`` of ``history``)
    water climatology, in the climate model's own ``calendar``; draws take ``structures`` in
    turn, whose fitted cores ``variants`` gives (``structure_offsets``); the bootstrap resamples
    ``block_years`` consecutive years together (``bootstrap_block``). Every grid is over the
    same units, in the same order."""
    unknown = sorted(set(methods) - set(BIAS_METHODS))
    if unknown or not methods:
        raise ValueError(f"bias methods must be one or more of {BIAS_METHODS}; got {list(methods)}")
    for name, grid in (("raw", raw_runs[scenario]), ("reanalysis", history)):
        if not np.array_equal(grid.units, corrected.units):
            raise ValueError(f"the {name} grid's units differ from the corrected scenario's")
    raw = raw_runs[scenario]
    corrections = {
        "qdm": lambda: corrected,
        "mean_delta": lambda: mean_delta_correction(raw, history, corrected, inputs, list(raw_runs.values())),
    }
    drivers = member_drivers([corrections[name]() for name in methods], history, raw, draws, seed, inputs, block_years)
    days = days_in_month(corrected.months, calendar)
    water = water_climatology(history, train)
    cores = member_cores(core, drivers, corrected.names, corrected.calendar_month, water, days, inputs)
    drawn = tuple(methods[k % len(methods)] for k in range(draws))
    structures = list(structures) or [DEFAULT_STRUCTURE_NAME]
    if structures[0] != DEFAULT_STRUCTURE_NAME:
        raise ValueError(f"the first structure must be {DEFAULT_STRUCTURE_NAME!r} (draw 0's); got {structures}")
    for name in structures:
        structure_named(name)
    fitted = {DEFAULT_STRUCTURE_NAME: core, **(variants or {})}
    offsets = structure_offsets(
        fitted, structures, drivers, cores, corrected.names, corrected.months, water, days, inputs, history.months[-1]
    )
    return ScenarioMembers(
        corrected.months,
        drivers,
        cores,
        drawn,
        corrected.names,
        corrected.units,
        tuple(member_structure(k, structures) for k in range(draws)),
        offsets,
    )


def training_range_shares(
    history: UnitGrid, train: np.ndarray, corrected: UnitGrid, members: ScenarioMembers, scaler
) -> tuple[dict[str, float], dict[str, float]]:
    """How far the projection months (2024 on) leave the training range: per driver, the share
    of the quantile-mapped scenario's values outside the training months' range of their unit
    and calendar month (physical); per network channel, the share ``scaler``
    (``ml.residual.ResidualScaler``) clips in the unperturbed draw 0 (what the networks see)."""
    projected = corrected.rows(catalog.month64(catalog.PROJECTION_FIRST_MONTH), corrected.months[-1])
    physical = outside_training_range(history, train, corrected, projected, scaler.drivers)
    calendar = corrected.calendar_month[projected]
    drivers = members.select(0, scaler.drivers)[projected]
    clipped = scaler.out_of_range_share(drivers, members.core[0][projected], calendar)
    return physical, clipped
