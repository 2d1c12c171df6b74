"""The great-expectations suites on small constructed marts."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from dagster_project.dbt import canonical_ranges
from data_quality import suites
from sources import catalog
from sources.units import SpatialUnits


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
    # as the band demo's mart: the optional variables (swe, net radiation, ...) absent, null throughout
    return pl.DataFrame(rows).with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in suites.OPTIONAL_FEATURES)


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


# --- spatial units other than bands (basins) ---------------------------------------------

BASINS = SpatialUnits.of(
    "basin",
    pl.DataFrame(
        {
            "unit": [3, 15, 308],
            "name": ["Little Meadow Creek", "a creek", "Falls Creek"],
            "latitude": [61.57, 64.0, 56.83],
            "longitude": [-149.76, -150.0, -134.69],  # 308 lies outside the bands' box
            "area_km2": [115.5, 40.0, 16.5],
        }
    ),
)
# variables the basin tables do not have: null in every row of the mart
BASIN_ABSENT = ("t_surface", "p_snow", "r_thermal", "r_solar", "q_latent", "q_sensible")


def _basin_history() -> pl.DataFrame:
    """The band history's values, one series per basin, keyed by unit, absent variables null."""
    bands = _history().filter(pl.col("band") == 0).drop("band")
    frames = [
        bands.with_columns(unit=pl.lit(row["unit"]), band=pl.lit(row["band"], dtype=pl.Int64))
        for row in BASINS.frame.iter_rows(named=True)
    ]
    return pl.concat(frames).with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in BASIN_ABSENT)


def _basin_reports(frame: pl.DataFrame, name: str) -> dict:
    return {r.name: r for r in suites.run_checks(frame, suites.history_suite(canonical_ranges(), BASINS), name)}


def test_a_basin_mart_with_absent_variables_passes_and_says_what_is_absent():
    reports = _basin_reports(_basin_history(), "basins")
    assert all(r.passed for r in reports.values()), [r.summary() for r in reports.values()]
    assert set(reports["physical_ranges"].absent) == {*BASIN_ABSENT, *suites.OPTIONAL_FEATURES}
    assert reports["water_content_fraction"].absent == []


def test_a_partly_null_variable_is_a_hole_named_by_unit_band_and_month():
    hit = (pl.col("unit") == 15) & (pl.col("month") == dt.date(2002, 2, 1))
    frame = _basin_history().with_columns(
        t_air=pl.when(hit).then(None).otherwise(pl.col("t_air")),
        r_thermal=pl.when(hit).then(1.0e8).otherwise(pl.col("r_thermal")),  # an absent variable with one value
    )
    ranges = _basin_reports(frame, "holes")["physical_ranges"]
    assert not ranges.passed
    failed = {f["column"]: f for f in ranges.failures}
    assert failed["t_air"]["rows"] == [{"unit": 15, "band": 2, "month": "2002-02", "t_air": "NaN"}]
    assert failed["r_thermal"]["rows"][0] == {"unit": 3, "band": 1, "month": "2001-01", "r_thermal": "NaN"}
    assert "r_thermal" not in ranges.absent


def test_a_basin_missing_from_a_month_is_named_with_its_band():
    frame = _basin_history().filter(~((pl.col("unit") == 308) & (pl.col("month") == dt.date(2001, 3, 1))))
    reports = _basin_reports(frame, "missing")
    every_unit = reports["six_bands_per_month"]
    assert not every_unit.passed
    assert every_unit.failures[0]["rows"] == [{"unit": 308, "band": None, "month": "2001-03", "n_rows": 0}]
    gap = reports["no_missing_month"]
    assert gap.failures[0]["rows"] == [{"unit": 308, "band": None, "month": "2001-04", "months_since_previous": 2}]


def test_a_unit_the_units_table_does_not_know_fails():
    stranger = _basin_history().filter(pl.col("unit") == 3).with_columns(pl.col("unit") + 96)  # unit 99
    every_unit = _basin_reports(pl.concat([_basin_history(), stranger]), "stranger")["six_bands_per_month"]
    assert not every_unit.passed
    failure = every_unit.failures[0]
    assert failure["column"] == "known_unit" and failure["rows"][0]["unit"] == 99


def test_amplitude_is_checked_per_basin():
    frame = _basin_history().with_columns(
        t_soil_3=pl.when(pl.col("unit") == 15).then(pl.col("t_soil_0") * 2).otherwise(pl.col("t_soil_3"))
    )
    failure = _basin_reports(frame, "deep")["amplitude_damps_with_depth"]
    assert not failure.passed
    assert failure.failures[0]["rows"] == [
        {"unit": 15, "band": 2, "amplitude_t_soil_2": 6.0, "amplitude_t_soil_3": 40.0}
    ]


def test_the_scenario_suite_expects_the_bands_the_units_stand_for():
    [per_month] = [c for c in suites.scenario_suite(canonical_ranges(), BASINS) if c.name == "six_bands_per_month"]
    assert "exactly 3 bands" in per_month.description  # nearest bands 0, 1 and 2
    frame = pl.DataFrame({"scenario": ["rcp45"] * 3, "band": [0, 1, 2], "month": [dt.date(2030, 1, 1)] * 3})
    assert suites.run_checks(frame, [per_month], "scenarios")[0].passed
    assert not suites.run_checks(frame.head(2), [per_month], "scenarios")[0].passed
