"""Quantile mapping of one CMIP5 scenario onto ERA5-Land, per spatial unit, variable and calendar
month.

A unit's scenario is its nearest band's climate-model series (``ml.unit_arrays.unit_scenarios``;
on the band demo a unit is a band), mapped onto the unit's own reanalysis: reference = the
unit's reanalysis, historical = its band's model run. Only the drivers the models use and read
from the sources (``ml.model_inputs.ModelInputs.measured``) and the column water are mapped; a
derived driver is derived again from the corrected ones (``correct_scenario``).

Trained on the overlap of the reanalysis and the model's spliced historical+RCP run. Quantile
delta mapping (the default) keeps the scenario's change signal; empirical quantile mapping
(the paper's method) maps every month onto the reanalysis distribution of the overlap.
xsdba is imported only when a correction runs: it takes seconds to import.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from ml.soil_water import SOIL_WATER_TOTAL, column_water_kg_m2
from sources.catalog import DYNAMIC_FEATURES, WATER_CONTENT, require_columns

ADDITIVE: tuple[str, ...] = ("t_air", "t_surface", "r_thermal", "r_solar", "q_latent", "q_sensible")
# Amounts that scale: a ratio keeps them positive and keeps a dry month dry.
MULTIPLICATIVE: tuple[str, ...] = ("p_total", "p_snow", SOIL_WATER_TOTAL)
CORRECTED: tuple[str, ...] = ADDITIVE + MULTIPLICATIVE
NON_NEGATIVE: tuple[str, ...] = ("r_solar", "r_thermal", "p_total", "p_snow", SOIL_WATER_TOTAL)

# Canonical units spelled as pint/xsdba read them; both sides carry them before training.
UNITS: dict[str, str] = {
    "t_air": "degC",
    "t_surface": "degC",
    "p_total": "m",  # water per month
    "p_snow": "m",
    "r_thermal": "J m-2",  # per month
    "r_solar": "J m-2",
    "q_latent": "J m-2",
    "q_sensible": "J m-2",
    SOIL_WATER_TOTAL: "kg m-2",
}

METHODS: dict[str, str] = {"eqm": "EmpiricalQuantileMapping", "qdm": "QuantileDeltaMapping"}
DEFAULT_OVERLAP: tuple[date, date] = (date(2001, 1, 1), date(2023, 12, 1))  # the paper's 2001-2023
DIAGNOSTIC_PROBABILITIES = np.round(np.arange(0.05, 0.951, 0.05), 2)

# A ratio ref/hist is undefined for a dry month (0 m): multiplicative inputs are raised to this
# floor (1 micrometre of water a month, or 1 g m-2) before training, and results below it are
# set back to 0. Deterministic, unlike xsdba's random jitter_under_thresh.
DRY_FLOOR = 1.0e-6
# Quantile delta mapping ranks the projection within periods about as long as the overlap,
# but never shorter than this (a 3-year overlap would otherwise mean 30-odd periods).
MIN_RANK_PERIOD_YEARS = 20

assert set(ADDITIVE) | {"p_total", "p_snow"} == set(DYNAMIC_FEATURES), "every driver is corrected"


@dataclass
class BiasCorrection:
    """Result of `bias_correct` for one scenario."""

    corrected: pl.DataFrame  # the scenario frame with CORRECTED columns replaced
    diagnostics: pl.DataFrame  # variable, unit: quantile distance to reanalysis before/after
    method: str
    overlap_first: date
    overlap_last: date
    overlap_months: int
    warnings: list[str] = field(default_factory=list)


def bias_correct(
    reference: pl.DataFrame,
    scenario: pl.DataFrame,
    method: str = "qdm",
    overlap: tuple[date, date] = DEFAULT_OVERLAP,
    n_quantiles: int = 50,
    min_overlap_years: int = 20,
    variables: tuple[str, ...] = CORRECTED,
) -> BiasCorrection:
    """Quantile-map one scenario's drivers and column water (``variables``, of ``CORRECTED``)
    onto the reanalysis.

    `reference`: unit-month reanalysis features (canonical units, w_0..w_3); `scenario`: one
    scenario's unit-month frame, historical run spliced before the RCP. Trained per unit and
    calendar month on the months of `overlap` present in both; all units in one xsdba call.
    """
    if method not in METHODS:
        raise ValueError(f"unknown bias-correction method {method!r}; expected one of {sorted(METHODS)}")
    unknown = sorted(set(variables) - set(CORRECTED))
    if unknown:
        raise ValueError(f"no bias correction is defined for {unknown}; expected some of {list(CORRECTED)}")
    variables = tuple(v for v in CORRECTED if v in variables)
    drivers = tuple(v for v in variables if v != SOIL_WATER_TOTAL)
    require_columns(reference, ("unit", "month", *drivers, *WATER_CONTENT), "bias-correction reference frame")
    require_columns(scenario, ("unit", "month", *variables), "bias-correction scenario frame")
    name = _scenario_name(scenario)
    reference = reference.with_columns(column_water_kg_m2().alias(SOIL_WATER_TOTAL))

    units = sorted(scenario["unit"].unique().to_list())
    missing_units = sorted(set(units) - set(reference["unit"].unique().to_list()))
    if missing_units:
        raise ValueError(f"reference has no rows for units {missing_units} of scenario {name}")
    overlap_months = _overlap_months(reference, scenario, units, overlap, name)
    found: list[str] = []
    short = _check_overlap_length(overlap_months, min_overlap_years, name)
    if short:
        warnings.warn(short, UserWarning, stacklevel=2)
        found.append(short)

    scenario_months = _complete_months(scenario, units, name)
    ref_series = _series(reference, overlap_months, units, "reference", variables)
    sim_series = _series(scenario, scenario_months, units, f"scenario {name}", variables)
    in_overlap = np.isin(np.array(scenario_months), np.array(overlap_months))

    corrected = _adjust_all(
        ref_series, sim_series, scenario_months, overlap_months, in_overlap, units, method, n_quantiles
    )
    _enforce_physical_bounds(corrected)

    diagnostics = _diagnostics(ref_series, sim_series, corrected, in_overlap, overlap_months, units)
    return BiasCorrection(
        corrected=_replace_columns(scenario, corrected, scenario_months, units),
        diagnostics=diagnostics,
        method=method,
        overlap_first=overlap_months[0],
        overlap_last=overlap_months[-1],
        overlap_months=len(overlap_months),
        warnings=found,
    )


@contextmanager
def recorded_warnings() -> Iterator[list[str]]:
    """The messages of the warnings this thread raises while the block runs, every one (filter
    "always"), in the order raised.

    Not another thread's (a dask worker's event loop, fsspec's IO thread), whose warnings are
    shown as usual, and not ``ResourceWarning``: the garbage collector raises those in whichever
    thread it runs, about a socket or file some other code left open, so a record of them would
    depend on timing and not on the data."""
    here = threading.get_ident()
    messages: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ResourceWarning)
        show = warnings.showwarning

        def record(message, category, filename, lineno, file=None, line=None):
            if threading.get_ident() == here:
                messages.append(str(message))
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = record  # catch_warnings puts the original back
        yield messages


SOIL_WATER_SPLITS: tuple[str, ...] = ("lagged", "dirichlet")


@dataclass
class CorrectedScenario:
    """One scenario corrected and its soil water split over the four layers (``frame``), the
    correction's record, and the warnings the libraries raised on the way (``messages``)."""

    frame: pl.DataFrame
    correction: BiasCorrection
    messages: list[str]


def correct_scenario(
    reference: pl.DataFrame,
    scenario: pl.DataFrame,
    method: str = "qdm",
    n_quantiles: int = 50,
    soil_water_split: str = "lagged",
    shares=None,
    soil_water_seed: int = 0,
    inputs=None,
) -> CorrectedScenario:
    """``bias_correct`` one scenario's measured drivers of ``inputs`` (an
    ``ml.model_inputs.ModelInputs``; default every driver) and its column water, then split the
    corrected column water over the layers: by the lagged split fitted on the reanalysis
    (``"lagged"``) or by Dirichlet ``shares`` (``ml.soil_water.DirichletShares``,
    ``"dirichlet"``, sampled with ``soil_water_seed``); then derive the derived drivers again."""
    from ml.model_inputs import ModelInputs, with_derived
    from ml.soil_water import split_soil_water, split_soil_water_lagged

    inputs = inputs or ModelInputs.every_driver()
    if soil_water_split not in SOIL_WATER_SPLITS:
        raise ValueError(f"unknown soil-water split {soil_water_split!r}; expected one of {SOIL_WATER_SPLITS}")
    if soil_water_split == "dirichlet" and shares is None:
        raise ValueError("the Dirichlet soil-water split needs the reanalysis' layer shares")
    with recorded_warnings() as caught:
        result = bias_correct(
            reference, scenario, method=method, n_quantiles=n_quantiles, variables=(*inputs.measured, SOIL_WATER_TOTAL)
        )
    if soil_water_split == "lagged":
        frame = split_soil_water_lagged(result.corrected, reference)
    else:
        frame = split_soil_water(result.corrected, shares, seed=soil_water_seed)
    return CorrectedScenario(with_derived(frame, inputs), result, caught)


def diagnostics_summary(diagnostics: pl.DataFrame) -> pl.DataFrame:
    """Per scenario, variable and physical unit: the mean over spatial units (and calendar months) of the
    ``diagnostics`` of several scenarios (a ``scenario`` column): quantile distance to the
    reanalysis before and after correction, and the reanalysis' interquartile range."""
    return (
        diagnostics.group_by("scenario", "variable", "physical_unit")
        .agg(pl.col("mad_before", "mad_after", "reference_iqr").mean())
        .sort("scenario", "variable")
    )


# --- inputs ------------------------------------------------------------------------------


def _scenario_name(scenario: pl.DataFrame) -> str:
    if "scenario" not in scenario.columns:
        return "scenario"
    names = scenario["scenario"].unique().to_list()
    if len(names) != 1:
        raise ValueError(f"bias_correct takes one scenario at a time; got {sorted(map(str, names))}")
    return str(names[0])


def _months_with_every_unit(frame: pl.DataFrame, units: list[int], first: date, last: date) -> set[date]:
    counts = (
        frame.filter(pl.col("month").is_between(first, last), pl.col("unit").is_in(units))
        .group_by("month")
        .agg(pl.col("unit").n_unique().alias("n_units"))
    )
    return set(counts.filter(pl.col("n_units") == len(units))["month"].to_list())


def _overlap_months(
    reference: pl.DataFrame, scenario: pl.DataFrame, units: list[int], overlap: tuple[date, date], name: str
) -> list[date]:
    first, last = overlap
    months = _months_with_every_unit(reference, units, first, last) & _months_with_every_unit(
        scenario, units, first, last
    )
    if not months:
        raise ValueError(
            f"no month in {first:%Y-%m}..{last:%Y-%m} has every unit in both the reference and scenario {name}"
        )
    return sorted(months)


def _check_overlap_length(months: list[date], min_years: int, name: str) -> str | None:
    """Raise when a calendar month has fewer than 2 years; return a warning when short."""
    per_calendar_month = np.bincount([m.month for m in months], minlength=13)[1:]
    span = f"{months[0]:%Y-%m}..{months[-1]:%Y-%m}"
    if per_calendar_month.min() < 2:
        thin = int(np.argmin(per_calendar_month)) + 1
        raise ValueError(
            f"overlap {span} of reference and scenario {name} has {per_calendar_month.min()} year(s) "
            f"of calendar month {thin}; quantile mapping needs at least 2 per calendar month"
        )
    if len(months) < 12 * min_years:
        return (
            f"overlap {span} of reference and scenario {name} is {len(months)} months "
            f"({len(months) / 12:.1f} years), shorter than {min_years} years: the quantiles per "
            f"calendar month rest on {per_calendar_month.min()} values"
        )
    return None


def _complete_months(frame: pl.DataFrame, units: list[int], name: str) -> list[date]:
    months = sorted(frame["month"].unique().to_list())
    if frame.height != len(months) * len(units):
        raise ValueError(
            f"scenario {name} has {frame.height} rows, expected one per unit and month "
            f"({len(units)} units x {len(months)} months)"
        )
    return months


def _series(
    frame: pl.DataFrame, months: list[date], units: list[int], frame_name: str, variables: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Each corrected variable as a (month, unit) array; nulls are named, not mapped."""
    rows = frame.filter(pl.col("month").is_in(months), pl.col("unit").is_in(units)).sort("month", "unit")
    if rows.height != len(months) * len(units):
        raise ValueError(
            f"{frame_name} has {rows.height} rows for {len(months)} months x {len(units)} units: "
            "duplicate unit/month rows"
        )
    series = {}
    for variable in variables:
        bad = rows.filter(pl.col(variable).is_null() | pl.col(variable).is_nan())
        if bad.height:
            where = bad.row(0, named=True)
            raise ValueError(
                f"{frame_name} has {bad.height} missing values of {variable} "
                f"(first: unit {where['unit']}, month {where['month']:%Y-%m})"
            )
        series[variable] = rows[variable].cast(pl.Float64).to_numpy().reshape(len(months), len(units))
    return series


# --- adjustment --------------------------------------------------------------------------


@dataclass(frozen=True)
class _YearMonthAxis:
    """Months laid out as (year, calendar month) so calendar month is a dimension of its own."""

    months: list[date]
    years: list[int]

    @classmethod
    def of(cls, months: list[date]) -> _YearMonthAxis:
        return cls(months, sorted({m.year for m in months}))

    def _positions(self) -> tuple[list[int], list[int]]:
        first = self.years[0]
        return [m.year - first for m in self.months], [m.month - 1 for m in self.months]

    def to_grid(self, series: np.ndarray) -> np.ndarray:
        """(month, unit) -> (year, calendar month, unit); NaN where a month is absent."""
        grid = np.full((len(self.years), 12, series.shape[1]), np.nan)
        grid[self._positions()] = series
        return grid

    def to_series(self, grid: np.ndarray) -> np.ndarray:
        return grid[self._positions()]

    def time_index(self):
        """Standard-calendar time coordinate, one label (1 January) per year.

        Exact for monthly values: each value is already the mean (or total) over its month in
        the source's own calendar (staging used the source's true month lengths), so giving a
        noleap or 360_day model month and a reanalysis month the same standard-calendar
        (year, month) label drops, adds or interpolates no day; only daily data would need a
        calendar conversion.
        """
        import pandas as pd

        return pd.DatetimeIndex([f"{year}-01-01" for year in self.years], name="time")

    def data_array(self, series: np.ndarray, units: list[int], variable: str):
        import xarray as xr

        return xr.DataArray(
            self.to_grid(series),
            dims=("time", "month", "unit"),
            coords={"time": self.time_index(), "month": np.arange(1, 13), "unit": np.asarray(units)},
            name=variable,
            attrs={"units": UNITS[variable]},
        )


def _rank_periods(years: list[int], overlap_years: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ranked, kept) year-index arrays of the periods in which quantile delta mapping ranks.

    Periods tile the series from the overlap's first year, each as long as the overlap (at
    least MIN_RANK_PERIOD_YEARS), so the overlap is ranked on its own and maps onto the
    reanalysis. An edge remainder shorter than half a period is ranked together with its
    neighbour, and only its own years are kept from that ranking. xsdba's stack_periods aligns
    its windows to the series start instead, which would cut the overlap in two.
    """
    length = max(len(overlap_years), MIN_RANK_PERIOD_YEARS)
    period = (np.asarray(years) - overlap_years[0]) // length
    labels = sorted(set(period.tolist()))
    ranked = {label: np.flatnonzero(period == label) for label in labels}
    kept = dict(ranked)
    for edge, neighbour in ((labels[0], labels[0] + 1), (labels[-1], labels[-1] - 1)):
        if len(labels) > 1 and len(kept[edge]) < length / 2:
            ranked[edge] = np.union1d(kept[edge], kept[neighbour])
    return [(ranked[label], kept[label]) for label in labels]


def _adjust_all(
    ref_series: dict[str, np.ndarray],
    sim_series: dict[str, np.ndarray],
    months: list[date],
    overlap_months: list[date],
    in_overlap: np.ndarray,
    units: list[int],
    method: str,
    n_quantiles: int,
) -> dict[str, np.ndarray]:
    """Train on the overlap and adjust the whole scenario, one xsdba train per variable.

    Calendar month is a dimension of its own and xsdba groups along time only (group="time"),
    so every (calendar month, unit) cell is mapped on its own. xsdba's group="time.month" is
    built for daily data: with linear interpolation it blends the factors of neighbouring
    months by day of month (a month keyed by its 1st day gets about half of the previous
    month's), and its "nearest" interpolation jumps at quantile edges and can reorder values.
    """
    sim_axis, ref_axis = _YearMonthAxis.of(months), _YearMonthAxis.of(overlap_months)
    everything = np.arange(len(sim_axis.years))
    periods = _rank_periods(sim_axis.years, ref_axis.years) if method == "qdm" else [(everything, everything)]
    corrected = {}
    with warnings.catch_warnings():
        # xsdba stores its parameters with jsonpickle, which announces a future default, and
        # warns on cells of tied values, which _fill_tied_cells handles.
        warnings.filterwarnings("ignore", message="keys will default to True in jsonpickle")
        warnings.filterwarnings("ignore", message="All-nan slice encountered in interp_on_quantiles")
        for variable in ref_series:
            kind = "*" if variable in MULTIPLICATIVE else "+"
            ref, sim = ref_series[variable], sim_series[variable]
            if kind == "*":
                ref, sim = np.maximum(ref, DRY_FLOOR), np.maximum(sim, DRY_FLOOR)
            # ref and hist on one time axis, the overlap's years (EQM requires it).
            ref_da = ref_axis.data_array(ref, units, variable)
            hist_da = ref_axis.data_array(sim[in_overlap], units, variable)
            sim_da = sim_axis.data_array(sim, units, variable)
            grid = _train_and_adjust(method, ref_da, hist_da, sim_da, kind, n_quantiles, periods)
            adjusted = sim_axis.to_series(grid)
            adjusted = _fill_tied_cells(adjusted, sim, months, ref_da, hist_da, kind)
            if kind == "*":
                adjusted = np.where(adjusted <= DRY_FLOOR, 0.0, adjusted)
            _require_finite(adjusted, variable, months, units)
            corrected[variable] = adjusted
    return corrected


def _train_and_adjust(method: str, ref_da, hist_da, sim_da, kind: str, n_quantiles: int, periods: list) -> np.ndarray:
    """(year, calendar month, unit) grid of the adjusted scenario; QDM ranks within each period."""
    import xsdba

    adjustment = getattr(xsdba, METHODS[method])
    trained = adjustment.train(ref_da, hist_da, nquantiles=n_quantiles, group="time", kind=kind)
    grid = np.full(sim_da.shape, np.nan)
    for ranked, kept in periods:
        # Linear interpolation between quantiles keeps the (additive) mapping monotone.
        scen = trained.adjust(sim_da.isel(time=ranked), interp="linear", extrapolation="constant")
        scen = scen.transpose("time", "month", "unit").values
        grid[kept] = scen[np.isin(ranked, kept)]
    return grid


def _fill_tied_cells(adjusted: np.ndarray, sim: np.ndarray, months: list[date], ref_da, hist_da, kind: str):
    """Quantile delta mapping of a cell whose values are all equal within a rank period.

    Polar-night solar radiation, a floored winter latent heat flux or a snowless summer repeat
    one value for decades; xsdba's percent rank is then 0/0 and the result NaN. Tied values
    share the mid rank, so they take the factor at the median: ref median -/÷ hist median.
    """
    tied = np.isnan(adjusted) & ~np.isnan(sim)
    if not tied.any():
        return adjusted
    ref_median = ref_da.median("time").transpose("month", "unit").values  # (12, unit)
    hist_median = hist_da.median("time").transpose("month", "unit").values
    calendar = [m.month - 1 for m in months]
    mapped = sim + (ref_median - hist_median)[calendar] if kind == "+" else sim * (ref_median / hist_median)[calendar]
    return np.where(tied, mapped, adjusted)


def _require_finite(adjusted: np.ndarray, variable: str, months: list[date], units: list[int]) -> None:
    bad = np.argwhere(~np.isfinite(adjusted))
    if len(bad):
        month, unit = bad[0]
        raise RuntimeError(
            f"bias correction left {len(bad)} non-finite values of {variable} "
            f"(first: unit {units[unit]}, month {months[month]:%Y-%m})"
        )


def _enforce_physical_bounds(corrected: dict[str, np.ndarray]) -> None:
    """Radiation and water amounts cannot be negative; snowfall is part of precipitation."""
    for variable in NON_NEGATIVE:
        if variable in corrected:
            corrected[variable] = np.maximum(corrected[variable], 0.0)
    if "p_snow" in corrected and "p_total" in corrected:
        corrected["p_snow"] = np.minimum(corrected["p_snow"], corrected["p_total"])


# --- outputs -----------------------------------------------------------------------------


def _replace_columns(
    scenario: pl.DataFrame, corrected: dict[str, np.ndarray], months: list[date], units: list[int]
) -> pl.DataFrame:
    keys = pl.DataFrame(
        {
            "month": np.repeat(np.array(months, dtype="datetime64[D]"), len(units)),
            "unit": np.tile(np.asarray(units), len(months)),
        }
    ).with_columns(pl.col("month").cast(scenario.schema["month"]), pl.col("unit").cast(scenario.schema["unit"]))
    values = keys.with_columns(
        pl.Series(variable, values.reshape(-1)).cast(scenario.schema[variable])
        for variable, values in corrected.items()
    )
    return (
        scenario.drop(list(corrected))
        .join(values, on=["unit", "month"], how="left", maintain_order="left")
        .select(scenario.columns)
    )


def _quantile_distance(model: np.ndarray, reference: np.ndarray, calendar_month: np.ndarray) -> np.ndarray:
    """Mean |model - reference| quantile over probabilities and calendar months, per unit."""
    distances = [
        np.abs(
            np.quantile(model[calendar_month == m], DIAGNOSTIC_PROBABILITIES, axis=0)
            - np.quantile(reference[calendar_month == m], DIAGNOSTIC_PROBABILITIES, axis=0)
        ).mean(axis=0)
        for m in range(1, 13)
    ]
    return np.mean(distances, axis=0)


def _interquartile_range(reference: np.ndarray, calendar_month: np.ndarray) -> np.ndarray:
    spreads = [np.subtract(*np.quantile(reference[calendar_month == m], [0.75, 0.25], axis=0)) for m in range(1, 13)]
    return np.mean(spreads, axis=0)


def _diagnostics(
    ref_series: dict[str, np.ndarray],
    sim_series: dict[str, np.ndarray],
    corrected: dict[str, np.ndarray],
    in_overlap: np.ndarray,
    overlap_months: list[date],
    units: list[int],
) -> pl.DataFrame:
    """Per variable and unit over the overlap: quantile distance to the reanalysis, before and
    after correction (probabilities 0.05..0.95 per calendar month), and the reanalysis' mean
    interquartile range per calendar month for scale."""
    calendar_month = np.array([m.month for m in overlap_months])
    rows = []
    for variable in corrected:
        ref = ref_series[variable]
        before = _quantile_distance(sim_series[variable][in_overlap], ref, calendar_month)
        after = _quantile_distance(corrected[variable][in_overlap], ref, calendar_month)
        spread = _interquartile_range(ref, calendar_month)
        rows += [
            {
                "variable": variable,
                "unit": unit,
                "physical_unit": UNITS[variable],
                "mad_before": float(before[i]),
                "mad_after": float(after[i]),
                "reference_iqr": float(spread[i]),
            }
            for i, unit in enumerate(units)
        ]
    return pl.DataFrame(rows)
