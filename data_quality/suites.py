"""great-expectations suites for the two feature marts, and a runner that names failures.

Plain Python (no Dagster): a suite is a list of named checks, each a set of expectations on
the mart itself or on a frame derived from it (months per unit, units per month, annual
amplitude per layer). The history mart is checked per spatial unit (`sources.units`: the six
bands by default, else basins or cells, each expected in every month); the scenario mart per
band. `run_checks` validates them and reports, for every failed check, the unit (and its
band), month and value of the first failing rows; a column null in every row is a variable
the source does not have (absent): its expectations are skipped and reported as absent, while
a column null in some rows fails. Ranges come from the dbt project's `canonical_ranges` var
(passed in: `dagster_project.dbt.canonical_ranges()`), the one definition shared with the dbt
tests.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from sources import catalog
from sources.units import SpatialUnits, band_units

DYNAMIC_FEATURES = catalog.DYNAMIC_FEATURES
OPTIONAL_FEATURES = catalog.OPTIONAL_FEATURES
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
    absent: list[str] = field(default_factory=list)  # columns null in every row: expectations skipped

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


def _unit_keys(frame: pl.DataFrame, unit_key: str) -> list[str]:
    """The unit's key, and its band beside it to name it where the unit is no band."""
    return [unit_key] + (["band"] if unit_key != "band" and "band" in frame.columns else [])


def months_since_previous(frame: pl.DataFrame, unit_key: str = "band") -> pl.DataFrame:
    """Per unit (`unit_key`: band by default) and scenario: months between consecutive rows; 1
    everywhere when complete."""
    keys = [*_group_keys(frame), unit_key]
    month_index = pl.col("month").dt.year().cast(pl.Int64) * 12 + pl.col("month").dt.month().cast(pl.Int64)
    return (
        frame.select(*_group_keys(frame), *_unit_keys(frame, unit_key), "month")
        .sort(*keys, "month")
        .with_columns(months_since_previous=(month_index - month_index.shift(1)).over(keys))
        .filter(pl.col("months_since_previous").is_not_null())
    )


def bands_per_month(frame: pl.DataFrame) -> pl.DataFrame:
    keys = [*_group_keys(frame), "month"]
    return frame.group_by(keys).agg(pl.col("band").n_unique().alias("n_bands")).sort(keys)


def rows_per_unit_month(frame: pl.DataFrame, units: SpatialUnits) -> pl.DataFrame:
    """Every unit of `units` in every month of `frame` with its number of rows there (`n_rows`,
    1 when complete), and the rows of units `units` does not know (`known_unit` false)."""
    counted = frame.group_by(pl.col("unit").cast(pl.Int64), "month").agg(pl.len().cast(pl.Int64).alias("n_rows"))
    expected = (
        frame.select("month")
        .unique()
        .join(units.frame.select("unit", "band"), how="cross")
        .join(counted, on=["unit", "month"], how="left")
        .with_columns(pl.col("n_rows").fill_null(0), known_unit=pl.lit(True))
    )
    unknown = counted.join(units.frame.select("unit"), on="unit", how="anti").with_columns(
        band=pl.lit(None, dtype=pl.Int64), known_unit=pl.lit(False)
    )
    return pl.concat([expected, unknown.select(expected.columns)]).sort("month", "unit")


def annual_amplitude_per_layer(frame: pl.DataFrame, unit_key: str = "band") -> pl.DataFrame:
    """Per unit (band by default): mean over complete years of (annual max - annual min) of each soil layer."""
    keys = _unit_keys(frame, unit_key)
    yearly = (
        frame.with_columns(year=pl.col("month").dt.year())
        .group_by(*keys, "year")
        .agg(
            pl.len().alias("n_months"), *[(pl.col(t).max() - pl.col(t).min()).alias(f"amplitude_{t}") for t in TARGETS]
        )
        .filter(pl.col("n_months") == 12)
    )
    return yearly.group_by(keys).agg(pl.col(f"amplitude_{t}").mean() for t in TARGETS).sort(unit_key)


def lithology_sum(frame: pl.DataFrame) -> pl.DataFrame:
    keys = [c for c in ("scenario", "unit", "band", "month") if c in frame.columns]
    return frame.select(*keys, pl.sum_horizontal(*LITHOLOGY_COLUMNS).alias("lithology_fraction_sum"))


# --- suites ------------------------------------------------------------------------------


def _between(gxe, columns, ranges: Ranges):
    return [
        gxe.ExpectColumnValuesToBeBetween(column=c, min_value=ranges[c][0], max_value=ranges[c][1]) for c in columns
    ] + [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]


def _exactly(gxe, column: str, count: int) -> list:
    return [gxe.ExpectColumnValuesToBeBetween(column=column, min_value=count, max_value=count)]


def _units_per_month(history: bool, units: SpatialUnits, month_keys: tuple[str, ...]) -> Check:
    """The check still named `six_bands_per_month` (checks keep their names): every unit in every
    month. Bands are counted per month; other units are named one by one, with their band."""
    if not history:  # the scenario mart: the bands the units stand for
        n_bands = units.frame["nearest_band"].n_unique()
        return Check(
            "six_bands_per_month",
            f"every month holds exactly {n_bands} bands (those the spatial units stand for)",
            lambda gxe: _exactly(gxe, "n_bands", n_bands),
            derive=bands_per_month,
            index_columns=month_keys,
        )
    if units.kind == "band":
        return Check(
            "six_bands_per_month",
            f"every month holds exactly {units.count} bands",
            lambda gxe: _exactly(gxe, "n_bands", units.count),
            derive=bands_per_month,
            index_columns=month_keys,
        )
    return Check(
        "six_bands_per_month",
        f"every month holds each of the {units.count} {units.kind}s of the spatial units table once, and no other",
        lambda gxe: [
            *_exactly(gxe, "n_rows", 1),
            gxe.ExpectColumnValuesToBeInSet(column="known_unit", value_set=[True]),
        ],
        derive=lambda frame: rows_per_unit_month(frame, units),
        index_columns=("unit", "band", "month"),
    )


def _common_checks(history: bool, ranges: Ranges, units: SpatialUnits) -> list[Check]:
    unit_key = "unit" if history and units.kind != "band" else "band"
    unit_index = ("unit", "band") if unit_key == "unit" else ("band",)
    keys = ("scenario", "band", "month") if not history else (*unit_index, "month")
    month_keys = ("scenario", "month") if not history else ("month",)
    return [
        Check(
            "physical_ranges",
            "every dynamic feature and soil property within its physical range (canonical units), none missing; "
            "a variable null in every row is absent (the source lacks it) and skipped",
            lambda gxe: _between(
                gxe,
                [*DYNAMIC_FEATURES, *SOIL_PROPERTIES] + ([*OPTIONAL_FEATURES, *TARGETS] if history else []),
                ranges,
            ),
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
            f"every {'band' if unit_key == 'band' else units.kind}'s monthly series is complete: consecutive rows are "
            "one month apart",
            lambda gxe: [gxe.ExpectColumnValuesToBeBetween(column="months_since_previous", min_value=1, max_value=1)],
            derive=lambda frame: months_since_previous(frame, unit_key),
            index_columns=keys,
        ),
        _units_per_month(history, units, month_keys),
    ]


def history_suite(ranges: Ranges, units: SpatialUnits | None = None) -> list[Check]:
    """Checks of `fct_band_month_features` (with targets); `ranges` are the canonical ranges,
    `units` the reanalysis' spatial units (the six bands by default)."""
    units = units or band_units()
    unit_key = "band" if units.kind == "band" else "unit"
    return [
        *_common_checks(history=True, ranges=ranges, units=units),
        Check(
            "amplitude_damps_with_depth",
            "the annual amplitude of soil temperature is smaller in each deeper layer than the one above",
            lambda gxe: [
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A=f"amplitude_{upper}", column_B=f"amplitude_{lower}", or_equal=False
                )
                for upper, lower in zip(TARGETS, TARGETS[1:], strict=False)
            ],
            derive=lambda frame: annual_amplitude_per_layer(frame, unit_key),
            index_columns=("band",) if unit_key == "band" else ("unit", "band"),
        ),
    ]


def scenario_suite(ranges: Ranges, units: SpatialUnits | None = None) -> list[Check]:
    """Checks of `fct_scenario_band_month_features` (no targets, per band); `ranges` are the
    canonical ranges, `units` the reanalysis' spatial units (whose nearest bands it holds)."""
    return _common_checks(history=False, ranges=ranges, units=units or band_units())


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


def _key(value: Any) -> Any:
    """An index value as it is in the mart: pandas turns an integer key with nulls (the band of a
    unit outside the bands) into floats and NaN."""
    value = _plain(value)
    if value == "NaN":
        return None
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def run_checks(frame: pl.DataFrame, checks: list[Check], asset_name: str) -> list[CheckReport]:
    """Validate `frame` against every check; failures name unit (or band), month (and scenario)
    and value; expectations on absent columns (`absent_columns`) are skipped and reported."""
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
        expectations = check.expectations(gx.expectations)
        absent = absent_columns(derived, [getattr(e, "column", None) for e in expectations])
        expectations = [e for e in expectations if getattr(e, "column", None) not in absent]
        suite = gx.ExpectationSuite(name=f"{asset_name}.{check.name}", expectations=expectations)
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
                    "rows": [
                        {k: _key(v) if k in check.index_columns else _plain(v) for k, v in row.items()}
                        for row in rows[:MAX_REPORTED_ROWS]
                    ],
                }
            )
        reports.append(CheckReport(check.name, passed=not failures, failures=failures, absent=absent))
    return reports


def absent_columns(frame: pl.DataFrame, columns: list[str | None]) -> list[str]:
    """Those of `columns` missing (null, or NaN) in every row of a frame that has rows: variables
    the source does not have. A column missing in some rows only is not absent: a hole, it fails."""
    if frame.is_empty():
        return []
    absent = []
    for column in dict.fromkeys(c for c in columns if c in frame.columns):
        values = frame[column]
        missing = values.is_null() | (values.is_nan() if values.dtype.is_float() else False)
        if missing.all():
            absent.append(column)
    return absent
