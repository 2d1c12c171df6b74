"""great-expectations suites for the two feature marts, and a runner that names failures.

Plain Python (no Dagster): a suite is a list of named checks, each a set of expectations on
the mart itself or on a frame derived from it (months per band, bands per month, annual
amplitude per layer). `run_checks` validates them and reports, for every failed check, the
band, month and value of the first failing rows. Ranges come from the dbt project's
`canonical_ranges` var (passed in: `dagster_project.dbt.canonical_ranges()`), the one
definition shared with the dbt tests.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from sources import catalog

DYNAMIC_FEATURES = catalog.DYNAMIC_FEATURES
WATER_CONTENT = catalog.WATER_CONTENT
TARGETS = catalog.TARGETS
SOIL_PROPERTIES = catalog.SOIL_PROPERTY_FEATURES
LITHOLOGY_COLUMNS = catalog.LITHOLOGY_FEATURES
LITHOLOGY_SUM_TOLERANCE = 1e-6
MAX_REPORTED_ROWS = 10


Ranges = dict[str, tuple[float, float]]


@dataclass(frozen=True)
class Check:
    """One named check: expectations (built lazily) run on `derive(mart)`."""

    name: str
    description: str
    expectations: Callable[[Any], list]  # gx.expectations module -> expectations
    derive: Callable[[pl.DataFrame], pl.DataFrame] = lambda frame: frame
    index_columns: tuple[str, ...] = ("band", "month")


@dataclass
class CheckReport:
    name: str
    passed: bool
    failures: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        if self.passed:
            return f"{self.name}: passed"
        first = self.failures[0]
        rows = first.get("rows") or [{}]
        return (
            f"{self.name}: {first['expectation']} on {first['column']} failed {first['unexpected_count']} time(s); "
            f"first: {rows[0]}"
        )


# --- derived frames ----------------------------------------------------------------------


def _group_keys(frame: pl.DataFrame) -> list[str]:
    return ["scenario"] if "scenario" in frame.columns else []


def months_since_previous(frame: pl.DataFrame) -> pl.DataFrame:
    """Per band (and scenario): months between consecutive rows; 1 everywhere when complete."""
    keys = [*_group_keys(frame), "band"]
    month_index = pl.col("month").dt.year().cast(pl.Int64) * 12 + pl.col("month").dt.month().cast(pl.Int64)
    return (
        frame.select(*keys, "month")
        .sort(*keys, "month")
        .with_columns(months_since_previous=(month_index - month_index.shift(1)).over(keys))
        .filter(pl.col("months_since_previous").is_not_null())
    )


def bands_per_month(frame: pl.DataFrame) -> pl.DataFrame:
    keys = [*_group_keys(frame), "month"]
    return frame.group_by(keys).agg(pl.col("band").n_unique().alias("n_bands")).sort(keys)


def annual_amplitude_per_layer(frame: pl.DataFrame) -> pl.DataFrame:
    """Per band: mean over complete years of (annual max - annual min) of each soil layer."""
    yearly = (
        frame.with_columns(year=pl.col("month").dt.year())
        .group_by("band", "year")
        .agg(
            pl.len().alias("n_months"), *[(pl.col(t).max() - pl.col(t).min()).alias(f"amplitude_{t}") for t in TARGETS]
        )
        .filter(pl.col("n_months") == 12)
    )
    return yearly.group_by("band").agg(pl.col(f"amplitude_{t}").mean() for t in TARGETS).sort("band")


def lithology_sum(frame: pl.DataFrame) -> pl.DataFrame:
    keys = [c for c in ("scenario", "band", "month") if c in frame.columns]
    return frame.select(*keys, pl.sum_horizontal(*LITHOLOGY_COLUMNS).alias("lithology_fraction_sum"))


# --- suites ------------------------------------------------------------------------------


def _between(gxe, columns, ranges: Ranges):
    return [
        gxe.ExpectColumnValuesToBeBetween(column=c, min_value=ranges[c][0], max_value=ranges[c][1]) for c in columns
    ] + [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]


def _common_checks(history: bool, ranges: Ranges) -> list[Check]:
    keys = ("scenario", "band", "month") if not history else ("band", "month")
    month_keys = ("scenario", "month") if not history else ("month",)
    band_keys = ("scenario", "band", "month") if not history else ("band", "month")
    return [
        Check(
            "physical_ranges",
            "every dynamic feature and soil property within its physical range (canonical units), none missing",
            lambda gxe: _between(gxe, [*DYNAMIC_FEATURES, *SOIL_PROPERTIES] + ([*TARGETS] if history else []), ranges),
            index_columns=keys,
        ),
        Check(
            "water_content_fraction",
            "volumetric soil water of every layer within [0, 1]",
            lambda gxe: _between(gxe, WATER_CONTENT, {c: (0.0, 1.0) for c in WATER_CONTENT}),
            index_columns=keys,
        ),
        Check(
            "lithology_fractions_sum_to_one",
            "lithology fractions of each band sum to 1",
            lambda gxe: [
                gxe.ExpectColumnValuesToBeBetween(
                    column="lithology_fraction_sum",
                    min_value=1 - LITHOLOGY_SUM_TOLERANCE,
                    max_value=1 + LITHOLOGY_SUM_TOLERANCE,
                ),
                gxe.ExpectColumnValuesToNotBeNull(column="lithology_fraction_sum"),
            ],
            derive=lithology_sum,
            index_columns=keys,
        ),
        Check(
            "no_missing_month",
            "every band's monthly series is complete: consecutive rows are one month apart",
            lambda gxe: [gxe.ExpectColumnValuesToBeBetween(column="months_since_previous", min_value=1, max_value=1)],
            derive=months_since_previous,
            index_columns=band_keys,
        ),
        Check(
            "six_bands_per_month",
            f"every month holds exactly {catalog.N_BANDS} bands",
            lambda gxe: [
                gxe.ExpectColumnValuesToBeBetween(
                    column="n_bands", min_value=catalog.N_BANDS, max_value=catalog.N_BANDS
                )
            ],
            derive=bands_per_month,
            index_columns=month_keys,
        ),
    ]


def history_suite(ranges: Ranges) -> list[Check]:
    """Checks of `fct_band_month_features` (with targets); `ranges` are the canonical ranges."""
    return [
        *_common_checks(history=True, ranges=ranges),
        Check(
            "amplitude_damps_with_depth",
            "the annual amplitude of soil temperature is smaller in each deeper layer than the one above",
            lambda gxe: [
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A=f"amplitude_{upper}", column_B=f"amplitude_{lower}", or_equal=False
                )
                for upper, lower in zip(TARGETS, TARGETS[1:], strict=False)
            ],
            derive=annual_amplitude_per_layer,
            index_columns=("band",),
        ),
    ]


def scenario_suite(ranges: Ranges) -> list[Check]:
    """Checks of `fct_scenario_band_month_features` (no targets); `ranges` are the canonical ranges."""
    return _common_checks(history=False, ranges=ranges)


# --- runner ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-friendly value for metadata: dates as YYYY-MM(-DD), NaN as the string 'NaN'."""
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m") if value.day == 1 else value.date().isoformat()
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m") if value.day == 1 else value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def run_checks(frame: pl.DataFrame, checks: list[Check], asset_name: str) -> list[CheckReport]:
    """Validate `frame` against every check; failures name band, month (and scenario) and value."""
    import great_expectations as gx

    context = _context()
    source = context.data_sources.add_pandas(f"{asset_name}_source")
    reports = []
    for check in checks:
        derived = check.derive(frame)
        data_asset = source.add_dataframe_asset(f"{asset_name}__{check.name}")
        batch = data_asset.add_batch_definition_whole_dataframe("whole").get_batch(
            batch_parameters={"dataframe": derived.to_pandas()}
        )
        suite = gx.ExpectationSuite(name=f"{asset_name}.{check.name}", expectations=check.expectations(gx.expectations))
        result = batch.validate(
            suite,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": list(check.index_columns)},
        )
        failures = []
        for outcome in result.results:
            if outcome.success:
                continue
            kwargs = outcome.expectation_config.kwargs
            column = kwargs.get("column") or f"{kwargs.get('column_A')} > {kwargs.get('column_B')}"
            rows = outcome.result.get("unexpected_index_list") or []
            failures.append(
                {
                    "expectation": outcome.expectation_config.type,
                    "column": column,
                    "expected": {k: _plain(v) for k, v in kwargs.items() if k in ("min_value", "max_value")},
                    "unexpected_count": outcome.result.get("unexpected_count"),
                    "rows": [{k: _plain(v) for k, v in row.items()} for row in rows[:MAX_REPORTED_ROWS]],
                }
            )
        reports.append(CheckReport(check.name, passed=not failures, failures=failures))
    return reports
