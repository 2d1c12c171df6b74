"""The great-expectations suites on small constructed marts."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from dagster_project.dbt import canonical_ranges
from data_quality import suites
from sources import catalog


def _history(n_years=2) -> pl.DataFrame:
    months = catalog.month_range(dt.date(2001, 1, 1), dt.date(2000 + n_years, 12, 1))
    rows = []
    for band in range(catalog.N_BANDS):
        for _i, month in enumerate(months):
            season = np.cos(2 * np.pi * (month.month - 7) / 12)
            row = {"band": band, "month": month}
            row.update(
                {
                    c: 0.5 * (lo + hi)
                    for c, (lo, hi) in canonical_ranges().items()
                    if c in (*suites.DYNAMIC_FEATURES, *suites.SOIL_PROPERTIES)
                }
            )
            row.update({w: 0.3 for w in suites.WATER_CONTENT})
            row.update(
                {t: amplitude * season for t, amplitude in zip(suites.TARGETS, (10.0, 6.0, 3.0, 1.0), strict=False)}
            )
            row.update({c: 1.0 / len(suites.LITHOLOGY_COLUMNS) for c in suites.LITHOLOGY_COLUMNS})
            rows.append(row)
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def clean_reports():
    return {r.name: r for r in suites.run_checks(_history(), suites.history_suite(canonical_ranges()), "clean")}


def test_a_clean_mart_passes_every_check(clean_reports):
    assert all(r.passed for r in clean_reports.values()), [r.summary() for r in clean_reports.values()]


def test_months_since_previous_finds_a_gap():
    frame = _history().filter(~((pl.col("band") == 2) & (pl.col("month") == dt.date(2001, 5, 1))))
    gaps = suites.months_since_previous(frame).filter(pl.col("months_since_previous") != 1)
    assert gaps.rows() == [(2, dt.date(2001, 6, 1), 2)]


def test_failures_name_band_month_and_value():
    frame = _history()
    hit = (pl.col("band") == 4) & (pl.col("month") == dt.date(2002, 7, 1))
    frame = frame.with_columns(
        w_2=pl.when(hit).then(1.4).otherwise(pl.col("w_2")),
        litho_water=pl.when(pl.col("band") == 5).then(0.5).otherwise(pl.col("litho_water")),
    )
    reports = {r.name: r for r in suites.run_checks(frame, suites.history_suite(canonical_ranges()), "bad")}
    water = reports["water_content_fraction"]
    assert not water.passed
    assert water.failures[0]["rows"][0] == {"band": 4, "month": "2002-07", "w_2": 1.4}
    lithology = reports["lithology_fractions_sum_to_one"]
    assert not lithology.passed
    assert {row["band"] for row in lithology.failures[0]["rows"]} == {5}
    assert reports["physical_ranges"].passed


def test_amplitude_that_grows_with_depth_fails():
    frame = _history().with_columns(t_soil_3=pl.col("t_soil_0") * 2)
    reports = {r.name: r for r in suites.run_checks(frame, suites.history_suite(canonical_ranges()), "deep")}
    failure = reports["amplitude_damps_with_depth"]
    assert not failure.passed
    assert failure.failures[0]["column"] == "amplitude_t_soil_2 > amplitude_t_soil_3"
    assert {row["band"] for row in failure.failures[0]["rows"]} == set(range(6))


def test_a_band_missing_from_a_month_fails_six_bands_per_month():
    frame = _history().filter(~((pl.col("band") == 0) & (pl.col("month") == dt.date(2001, 3, 1))))
    reports = {r.name: r for r in suites.run_checks(frame, suites.history_suite(canonical_ranges()), "five")}
    failure = reports["six_bands_per_month"]
    assert not failure.passed
    assert failure.failures[0]["rows"] == [{"month": "2001-03", "n_bands": 5}]


def test_ranges_are_the_dbt_projects():
    ranges = canonical_ranges()
    assert ranges["t_air"][0] < -40 and ranges["t_air"][1] > 30
    assert ranges["w_0"] == (0.0, 1.0)
