"""The conduction core on the history and under each scenario, one run per ensemble member.

* ``fit_history_core``: fit ``ml.thermal_core`` on the training months of the reanalysis
  (skin and air temperature, snowfall, the training climatology of each layer's water) and run
  it over the whole history.
* ``member_drivers``: the scenario drivers of each member: bias corrected by one of several
  METHODS in turn (member k by method k mod the number of methods: the pipeline's quantile
  delta mapping, and ``mean_delta_correction``), each with its own bootstrap draw of the
  correction's sampling error (``ml.forcing_bootstrap``; draw 0 unperturbed), drawn on the
  overlap of the reanalysis and the UNCORRECTED scenario. Why two methods: in the demo's
  perfect-model experiment the largest error of a projection is the bias correction's own
  (quantile mapping ranks a trending series within the overlap, which bends its trend a
  little); bootstrap draws of the correction's mean offsets widen the spread of the level
  but cancel in a change, so only a second method makes the spread of the CHANGE honest
  (measured on five demo worlds: the truth inside the 5-95% range of the change in 65-89% of
  cells instead of 52-78% with quantile mapping alone, scenario ordering kept).
* ``member_cores``: the fitted core driven by each member's drivers, all members side by side
  in one simulation. Soil water is the reanalysis' training climatology, so scenario soil water
  cannot reach the core.
* ``outside_training_range``: per variable, the share of scenario months outside the training
  range of the same band and calendar month (about 10% even without climate change: each cell
  has only 18 training years).
* ``build_members``: all of the above for one scenario, as ``ScenarioMembers`` (saved as one
  ``.npz``), and ``training_range_shares`` its diagnostics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ml.band_arrays import BandGrid, band_grid, calendar_climatology, days_in_month, grid_frame
from ml.forcing_bootstrap import MULTIPLICATIVE, offset_perturbation, perturb
from ml.thermal_core import CoreInputs, ThermalCore
from ml.training_config import BIAS_METHODS
from sources import catalog

CORE_DRIVERS: tuple[str, ...] = ("t_surface", "t_air", "p_snow")
BOOTSTRAPPED: tuple[str, ...] = catalog.DYNAMIC_FEATURES  # the drivers the correction maps one by one


def water_climatology(history: BandGrid, train: np.ndarray) -> np.ndarray:
    """(12, 4, B) training mean of w_0..w_3 per calendar month, layer and band."""
    water = history.select(catalog.WATER_CONTENT)  # (T, B, 4)
    return np.transpose(calendar_climatology(water, history.calendar_month, train), (0, 2, 1))


def core_inputs(drivers: BandGrid, water_clim: np.ndarray, days: np.ndarray) -> CoreInputs:
    """Core inputs from a grid holding ``CORE_DRIVERS``, with climatological water."""
    t_surface, t_air, p_snow = (drivers.select((name,))[..., 0] for name in CORE_DRIVERS)
    return CoreInputs(t_surface, t_air, p_snow, water_clim[drivers.calendar_month], days)


def fit_history_core(history: BandGrid, train: np.ndarray, days: np.ndarray) -> tuple[ThermalCore, np.ndarray]:
    """The core fitted on the months ``train`` of ``history`` (drivers, water and t_soil_k) and
    its prediction (T, B, 4) degC over every month. The column starts at the first year's mean
    observed soil temperature of each band."""
    observed = np.transpose(history.select(catalog.TARGETS), (0, 2, 1))  # (T, 4, B)
    inputs = core_inputs(history, water_climatology(history, train), days)
    t_start = observed[:12].mean(axis=(0, 1))
    core = ThermalCore().fit(inputs, observed, train, t_start=t_start)
    return core, np.transpose(core.predict(inputs, t_start=t_start), (0, 2, 1))


def history_run_frame(months: np.ndarray, core: np.ndarray) -> pl.DataFrame:
    """The core's history run (T, B, 4) as a long frame band, month, t_soil_0..t_soil_3."""
    return grid_frame(months, core, catalog.TARGETS)


def read_history_run(path: Path, months: np.ndarray) -> np.ndarray:
    """The core's history run (T, B, 4) saved at ``path`` over ``months``; raises naming the
    months it lacks (the core ran before they were published: re-fit it)."""
    grid = band_grid(pl.read_parquet(path), catalog.TARGETS, f"thermal core history {path}")
    missing = np.setdiff1d(months, grid.months)
    if len(missing):
        raise ValueError(
            f"the thermal core ran over {grid.months[0]}..{grid.months[-1]} and lacks {len(missing)} month(s) "
            f"from {missing[0]}: re-materialize thermal_core"
        )
    return grid.values[np.searchsorted(grid.months, months)]


def overlap(history: BandGrid, raw_scenario: BandGrid) -> tuple[dict, dict, np.ndarray]:
    """Reanalysis and uncorrected-scenario drivers over their common whole years (January to
    December): (reference, model, calendar) for ``offset_perturbation``."""
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
    reference = {v: history.select((v,))[rows_h, :, 0] for v in BOOTSTRAPPED}
    model = {v: raw_scenario.select((v,))[rows_s, :, 0] for v in BOOTSTRAPPED}
    return reference, model, history.calendar_month[rows_h]


def mean_delta_correction(
    raw_scenario: BandGrid, history: BandGrid, like: BandGrid, runs: list[BandGrid] | None = None
) -> BandGrid:
    """``like`` (a corrected scenario) with its drivers replaced by the raw scenario corrected by
    the plain difference (temperatures, fluxes) or ratio (precipitation, snowfall) of the
    reanalysis' and the climate model's means per band and calendar month over their whole
    common years: the model's own change signal, untouched by any ranking. The model's means
    pool all its ``runs`` (default: this scenario's alone): a model's bias belongs to the model,
    not to one pathway, and pooling the runs' weather keeps sampling noise from shifting one
    pathway against another. Soil water is kept."""
    pooled = [overlap(history, run)[1] for run in (runs or [raw_scenario])]
    reference, _, _ = overlap(history, raw_scenario)
    rows = raw_scenario.rows(like.months[0], like.months[-1])
    if len(rows) != len(like.months):
        raise ValueError(f"the raw scenario does not cover the corrected one's {like.months[0]}..{like.months[-1]}")
    values = like.values.copy()
    calendar = like.calendar_month

    def monthly_mean(series: np.ndarray) -> np.ndarray:  # (years * 12, B) -> (12, B)
        return series.reshape(-1, 12, series.shape[-1]).mean(axis=0)

    for v in BOOTSTRAPPED:
        ref = monthly_mean(reference[v])
        mod = np.mean([monthly_mean(model[v]) for model in pooled], axis=0)
        raw = raw_scenario.select((v,))[rows, :, 0]
        if v in MULTIPLICATIVE:
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(mod > 0, ref / mod, 1.0)
            values[..., like.names.index(v)] = raw * factor[calendar]
        else:
            values[..., like.names.index(v)] = raw + (ref - mod)[calendar]
    return BandGrid(like.months, values, like.names)


def member_drivers(
    corrected: BandGrid | list[BandGrid], history: BandGrid, raw_scenario: BandGrid, draws: int, seed: int
) -> np.ndarray:
    """(draws, T, B, V) drivers (``names`` order) of members 0..draws-1: member k starts from
    ``corrected[k % len(corrected)]`` (one grid per bias-correction method; draw 0 uses the
    first) and carries bootstrap draw k of the correction (draw 0 none)."""
    methods = corrected if isinstance(corrected, list) else [corrected]
    reference, model, calendar = overlap(history, raw_scenario)
    out = np.stack([methods[k % len(methods)].values for k in range(draws)]).astype(np.float32)
    for draw in range(1, draws):
        base = methods[draw % len(methods)]
        perturbation = offset_perturbation(reference, model, calendar, draw, seed)
        for v in BOOTSTRAPPED:
            k = base.names.index(v)
            out[draw, ..., k] = perturb(base.values[..., k], perturbation[v], base.calendar_month, v)
    return out


def member_cores(
    core: ThermalCore, drivers: np.ndarray, names: tuple[str, ...], calendar_month: np.ndarray, water_clim, days
) -> np.ndarray:
    """(draws, T, B, 4) degC: the core on each draw's drivers (D, T, B, V), side by side."""
    n_draws, _, n_bands, _ = drivers.shape

    def side_by_side(name: str) -> np.ndarray:  # (T, B * D), draw-major columns
        return np.concatenate(list(drivers[..., names.index(name)].astype(np.float64)), axis=1)

    inputs = CoreInputs(
        side_by_side("t_surface"),
        side_by_side("t_air"),
        side_by_side("p_snow"),
        np.tile(water_clim[calendar_month], (1, 1, n_draws)),
        days,
    )
    simulated = core.predict(inputs)  # (T, 4, B * D)
    return np.stack(
        [np.transpose(simulated[:, :, d * n_bands : (d + 1) * n_bands], (0, 2, 1)) for d in range(n_draws)]
    ).astype(np.float32)


def outside_training_range(
    history: BandGrid, train: np.ndarray, scenario: BandGrid, rows: np.ndarray, names: tuple[str, ...]
) -> dict[str, float]:
    """Per variable: the share of (month, band) values of the scenario months ``rows`` outside
    the training months' [min, max] of the same band and calendar month."""
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

    ``months`` (T,) datetime64[M]; ``drivers`` (D, T, B, V) in ``driver_names`` order and
    ``core`` (D, T, B, 4) degC, float32, one per bias-correction draw; ``bias_method`` (D,) the
    correction each draw starts from (draw 0: the first method, unperturbed).
    """

    months: np.ndarray
    drivers: np.ndarray
    core: np.ndarray
    bias_method: tuple[str, ...]
    driver_names: tuple[str, ...]

    def save(self, path: Path) -> None:
        with open(path, "wb") as handle:  # a file object stops np.savez from appending '.npz'
            np.savez(
                handle,
                months=self.months,
                drivers=self.drivers,
                core=self.core,
                driver_names=np.asarray(self.driver_names, dtype=np.str_),
                bias_method=np.asarray(self.bias_method, dtype=np.str_),
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
            )


def build_members(
    corrected: BandGrid,
    raw_runs: dict[str, BandGrid],
    scenario: str,
    history: BandGrid,
    train: np.ndarray,
    core: ThermalCore,
    calendar: str,
    methods: Sequence[str] = BIAS_METHODS,
    draws: int = 1,
    seed: int = catalog.DEFAULT_SEED,
) -> ScenarioMembers:
    """The members of ``scenario``: its quantile-mapped drivers ``corrected`` (and the raw run
    ``raw_runs[scenario]``; every run of the model pools the mean-delta correction's means),
    corrected by ``methods`` in turn with bootstrap draws 0..draws-1, and the fitted ``core``
    run on each with the training months' (``train`` of ``history``) water climatology, in the
    climate model's own ``calendar``."""
    unknown = sorted(set(methods) - set(BIAS_METHODS))
    if unknown or not methods:
        raise ValueError(f"bias methods must be one or more of {BIAS_METHODS}; got {list(methods)}")
    raw = raw_runs[scenario]
    corrections = {
        "qdm": lambda: corrected,
        "mean_delta": lambda: mean_delta_correction(raw, history, corrected, list(raw_runs.values())),
    }
    drivers = member_drivers([corrections[name]() for name in methods], history, raw, draws, seed)
    days = days_in_month(corrected.months, calendar)
    water = water_climatology(history, train)
    cores = member_cores(core, drivers, corrected.names, corrected.calendar_month, water, days)
    drawn = tuple(methods[k % len(methods)] for k in range(draws))
    return ScenarioMembers(corrected.months, drivers, cores, drawn, corrected.names)


def training_range_shares(
    history: BandGrid, train: np.ndarray, corrected: BandGrid, members: ScenarioMembers, scaler
) -> tuple[dict[str, float], dict[str, float]]:
    """How far the projection months (2024 on) leave the training range: per driver, the share
    of the quantile-mapped scenario's values outside the training months' range of their band
    and calendar month (physical); per network channel, the share ``scaler``
    (``ml.residual.ResidualScaler``) clips in the unperturbed draw 0 (what the networks see)."""
    projected = corrected.rows(catalog.month64(catalog.PROJECTION_FIRST_MONTH), corrected.months[-1])
    physical = outside_training_range(history, train, corrected, projected, corrected.names)
    calendar = corrected.calendar_month[projected]
    clipped = scaler.out_of_range_share(members.drivers[0][projected], members.core[0][projected], calendar)
    return physical, clipped
