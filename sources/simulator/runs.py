"""Runs of the demo world over a set of spatial units: the reanalysis, the CMIP twin's
experiments, the perfect-model truth and the soil's response to given drivers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from sources import catalog
from sources.simulator import climate, land, soil
from sources.simulator.unit_climates import UnitClimates
from sources.simulator.worlds import World

# Random numbers are drawn through this month whatever is published, so a month's values
# never depend on how many months exist after it (prefix stability).
HORIZON_END = catalog.CMIP5_RCP_END
TWIN_SPINUP_YEARS = 2  # spin up snow and the bucket; the twin carries no soil heat model
REANALYSIS_CALENDAR = "gregorian"


def _weather_stream(experiment: str) -> int:
    """The reanalysis draws stream 0; every CMIP5 experiment has its own weather."""
    return 1 + catalog.CMIP5_EXPERIMENTS.index(experiment)


def _run_soil(
    forcing: dict[str, np.ndarray], days: np.ndarray, skip: int, units: UnitClimates, world: World, keep_cells: bool
) -> dict[str, np.ndarray]:
    """Land surface and soil column on spun-up forcing; every array without the spin-up.
    ``t_soil`` (months, 4, units) and, with `keep_cells`, ``t_soil_cells`` (months, cells, units)."""
    surface = land.land_surface(forcing, days, units)
    t_start = forcing["t_air"][:12].mean(axis=0) + 4.0  # snow keeps soil warmer than air
    cells = np.empty((len(days), len(soil.cell_centres_m(world)), len(units))) if keep_cells else None
    t_soil = soil.soil_temperatures(surface, days, t_start, units, world, cells)
    run = {name: values[skip:] for name, values in {**forcing, **surface}.items()}
    run["t_soil"] = t_soil[skip:]
    if cells is not None:
        run["t_soil_cells"] = cells[skip:]
    run["days"] = days[skip:]
    return run


def reanalysis(
    seed: int, latest_month: dt.date, units: UnitClimates, world: World, keep_cells: bool = False
) -> dict[str, np.ndarray]:
    """The reanalysis from 2001-01 through `latest_month` (empty before 2001-01).

    Weather is drawn through the horizon whatever is published; the simulation is causal,
    so publishing a new month never changes the months before it. Forcing and land arrays
    (months, units), ``theta`` and ``t_soil`` (months, 4, units), ``days`` (months,)."""
    horizon = catalog.month_range(catalog.HISTORY_START, HORIZON_END)
    published = max(climate.month_number(latest_month) - climate.month_number(catalog.HISTORY_START) + 1, 0)
    if not published:
        return {}
    anomalies = {name: values[:published] for name, values in climate.weather(seed, 0, len(horizon), units).items()}
    forcing, days, skip = climate.spun_up(
        horizon[:published], "observed", anomalies, climate.Bias(), REANALYSIS_CALENDAR, world.spinup_years, units
    )
    return _run_soil(forcing, days, skip, units, world, keep_cells)


def _experiment_months(experiment: str, historical_start: dt.date) -> list[dt.date]:
    if experiment == "historical":
        return catalog.month_range(historical_start, catalog.CMIP5_HISTORICAL_END)
    return catalog.month_range(catalog.CMIP5_RCP_START, catalog.CMIP5_RCP_END)


def twin(
    seed: int, experiment: str, historical_start: dt.date, units: UnitClimates
) -> tuple[list[dt.date], dict[str, np.ndarray]]:
    """One CMIP5 experiment of the twin model (noleap calendar, own weather, CMIP_BIAS): the
    months and the forcing and land arrays (months, units), ``theta`` (months, 4, units)."""
    months = _experiment_months(experiment, historical_start)
    anomalies = climate.weather(seed, _weather_stream(experiment), len(months), units)
    forcing, days, skip = climate.spun_up(
        months, experiment, anomalies, climate.CMIP_BIAS, climate.CMIP_CALENDAR, TWIN_SPINUP_YEARS, units
    )
    surface = land.land_surface(forcing, days, units)
    return months, {name: values[skip:] for name, values in {**forcing, **surface}.items()}


def truth(
    seed: int, pathway: str, historical_start: dt.date, units: UnitClimates, world: World, keep_cells: bool = False
) -> tuple[list[dt.date], dict[str, np.ndarray]]:
    """The simulator's soil under one RCP on the CMIP twin's weather with its bias removed.

    Months run from `historical_start` to 2100-12 on the twin's noleap calendar: the historical
    experiment's weather and forcing through 2005-12, then the pathway's own (the same weather
    the twin's runs carry), with ``Bias()`` instead of ``CMIP_BIAS`` and the world's years of
    spin-up, as the reanalysis. Returns (months, run): forcing and land arrays (months, units),
    ``theta`` and ``t_soil`` (months, 4, units; degC, ERA5-Land layers)."""
    if pathway not in catalog.RCP_EXPERIMENTS:
        raise ValueError(f"pathway must be one of {catalog.RCP_EXPERIMENTS}, got {pathway!r}")
    historical = _experiment_months("historical", historical_start)
    future = _experiment_months(pathway, historical_start)
    streams = [
        climate.weather(seed, _weather_stream(experiment), len(months), units)
        for experiment, months in (("historical", historical), (pathway, future))
    ]
    forcing, days, skip = climate.spun_up(
        historical, "historical", streams[0], climate.Bias(), climate.CMIP_CALENDAR, world.spinup_years, units
    )
    scenario = climate.forcing(future, pathway, streams[1], climate.Bias(), units)
    forcing = {name: np.concatenate([forcing[name], scenario[name]]) for name in forcing}
    days = np.concatenate([days, climate.days_in_month(future, climate.CMIP_CALENDAR)])
    return historical + future, _run_soil(forcing, days, skip, units, world, keep_cells)


def soil_response(
    drivers: dict[str, np.ndarray], days: np.ndarray, units: UnitClimates, world: World
) -> dict[str, np.ndarray]:
    """The land surface and soil driven by given monthly drivers (months, units): ``t_air``
    (degC), ``precip`` and ``snowfall`` (mm/day), ``sw_down`` and ``lw_down`` (W m-2) of
    consecutive months `days` long, spun up like the truth on their first 12 months."""
    forcing = {**drivers, "degree_days": climate.positive_degree_days(drivers["t_air"])}
    years = world.spinup_years
    forcing = {name: np.concatenate([np.tile(v[:12], (years, 1)), v]) for name, v in forcing.items()}
    return _run_soil(forcing, np.concatenate([np.tile(days[:12], years), days]), 12 * years, units, world, False)


@dataclass(frozen=True)
class UnitRun:
    """One run over a set of spatial units: ``values`` (time, unit, variable) with the months,
    the units' ids and the variables' names in order (units: see `RUN_VARIABLES`)."""

    months: list[dt.date]
    unit_ids: np.ndarray
    variables: tuple[str, ...]
    values: np.ndarray

    def variable(self, name: str) -> np.ndarray:
        """One variable, (time, unit)."""
        return self.values[:, :, self.variables.index(name)]


# name in a UnitRun: (name in a run, ERA5-Land layer or None), in the simulator's own units
RUN_VARIABLES: dict[str, tuple[str, int | None]] = {
    "t_air": ("t_air", None),  # degC
    "t_skin": ("t_skin", None),  # degC
    "precip": ("precip", None),  # mm/day
    "snowfall": ("snowfall", None),  # mm/day
    "sw_down": ("sw_down", None),  # W m-2
    "lw_down": ("lw_down", None),  # W m-2
    "latent": ("latent", None),  # W m-2, upwards
    "sensible": ("sensible", None),  # W m-2, upwards
    "snow_depth": ("snow_depth_end", None),  # m, at the end of the month
    **{f"w_{k}": ("theta", k) for k in range(4)},  # m3 m-3
    **{f"t_soil_{k}": ("t_soil", k) for k in range(4)},  # degC
}


def _unit_run(months: list[dt.date], run: dict[str, np.ndarray], units: UnitClimates) -> UnitRun:
    present = {name: source for name, source in RUN_VARIABLES.items() if source[0] in run}
    columns = [run[key] if layer is None else run[key][:, layer] for key, layer in present.values()]
    return UnitRun(months, units.ids, tuple(present), np.stack(columns, axis=-1))


def simulate_units(
    units: UnitClimates,
    seed: int,
    world: World,
    latest_month: dt.date = catalog.DEFAULT_LATEST_MONTH,
    experiments: tuple[str, ...] = catalog.CMIP5_EXPERIMENTS,
    historical_start: dt.date = dt.date(1950, 1, 1),
) -> dict[str, UnitRun]:
    """The reanalysis (2001-01 .. `latest_month`, with soil temperature) and the CMIP twin's
    `experiments` (without) over `units`: ``{"reanalysis": ..., experiment: ...}``."""
    if latest_month < catalog.HISTORY_START:
        raise ValueError(
            f"latest_month {latest_month:%Y-%m} is before the reanalysis starts ({catalog.HISTORY_START:%Y-%m})"
        )
    history = catalog.month_range(catalog.HISTORY_START, latest_month)
    results = {"reanalysis": _unit_run(history, reanalysis(seed, latest_month, units, world), units)}
    for experiment in experiments:
        months, run = twin(seed, experiment, historical_start, units)
        results[experiment] = _unit_run(months, run, units)
    return results
