"""Quantile mapping of a scenario onto the reanalysis, on small seeded synthetic bands.

The synthetic model has a known bias (cold, too variable, too wet) and a known warming per
scenario, so the tests can say what the correction must and must not do.
"""

import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ml.bias_correction import ADDITIVE, CORRECTED, MULTIPLICATIVE, bias_correct
from sources.catalog import DYNAMIC_FEATURES, N_BANDS, SOIL_LAYER_THICKNESS_M, WATER_CONTENT, month_range

REPO = Path(__file__).resolve().parents[2]
REFERENCE_MONTHS = month_range(date(2001, 1, 1), date(2023, 12, 1))
SCENARIO_MONTHS = month_range(date(1990, 1, 1), date(2100, 12, 1))
WARMING_DEGC_PER_YEAR = {"rcp26": 0.015, "rcp85": 0.06}
MODEL_T_BIAS = -2.5  # degC
MODEL_T_SPREAD = 1.6  # model anomalies are 1.6 times too large
MODEL_WETNESS = 1.3


def _climate(months: list[date], rng: np.random.Generator, *, model: bool, warming: float) -> dict:
    """Band-month drivers: seasonal cycle by band plus noise; the model side is biased."""
    band = np.repeat(np.arange(N_BANDS), len(months))
    month = np.tile(np.array(months), N_BANDS)
    calendar = np.array([m.month for m in month])
    year = np.array([m.year for m in month])
    season = np.cos(2 * np.pi * (calendar - 7) / 12)  # +1 in July, -1 in January
    n = len(band)
    spread = MODEL_T_SPREAD if model else 1.0
    t_air = -4 - 1.5 * band + 16 * season + spread * rng.normal(0, 2.0, n)
    t_air = t_air + (MODEL_T_BIAS + warming * (year - 2000) if model else 0.02 * (year - 2012))
    wet = 0.03 + 0.02 * season  # m per month
    if model:
        wet = wet * MODEL_WETNESS * (1 + 0.004 * (year - 2000))
    p_total = rng.gamma(2.0, wet / 2.0)
    snow_fraction = np.clip((2.0 - t_air) / 4.0, 0.0, 1.0)  # all snow below -2 degC, none above +2
    # polar night: no sun at all in the northern bands in December and January
    dark = (band >= 4) & np.isin(calendar, [12, 1])
    r_solar = np.where(dark, 0.0, np.maximum(0.0, 2.5e8 + 2.3e8 * season + rng.normal(0, 2e7, n)))
    columns = {
        "unit": band.astype(np.int64),  # the bands as spatial units
        "band": band.astype(np.int32),
        "month": pl.Series(month.tolist(), dtype=pl.Date),
        "t_air": t_air,
        "t_surface": t_air + 1.0 + rng.normal(0, 0.5, n),
        "p_total": p_total,
        "p_snow": p_total * snow_fraction,
        "r_thermal": 6.5e8 + 2e8 * season + 5e6 * t_air + rng.normal(0, 2e7, n),
        "r_solar": r_solar,
        "q_latent": -4e7 - 3e7 * np.maximum(season, 0) + rng.normal(0, 5e6, n),
        "q_sensible": -2e7 + 1e7 * season + rng.normal(0, 5e6, n),
    }
    total = 650 * (1.15 if model else 1.0) + 40 * season + rng.normal(0, 25, n)  # kg m-2
    shares = rng.dirichlet([2, 6, 25, 60], n)
    for k, (name, thickness) in enumerate(zip(WATER_CONTENT, SOIL_LAYER_THICKNESS_M, strict=True)):
        columns[name] = shares[:, k] * total / (1000 * thickness)
    if model:
        columns["soil_water_total_kg_m2"] = total
    return columns


@pytest.fixture(scope="module")
def reference() -> pl.DataFrame:
    return pl.DataFrame(_climate(REFERENCE_MONTHS, np.random.default_rng(11), model=False, warming=0.0))


@pytest.fixture(scope="module")
def scenarios() -> dict[str, pl.DataFrame]:
    frames = {}
    for seed, (name, warming) in enumerate(WARMING_DEGC_PER_YEAR.items()):
        columns = _climate(SCENARIO_MONTHS, np.random.default_rng(100 + seed), model=True, warming=warming)
        frame = pl.DataFrame(columns).with_columns(pl.lit(name).alias("scenario"), pl.lit(0.25).alias("litho_water"))
        frames[name] = frame.select("scenario", *[c for c in frame.columns if c != "scenario"])
    return frames


@pytest.fixture(scope="module")
def corrections(reference, scenarios) -> dict[tuple[str, str], object]:
    return {
        (name, method): bias_correct(reference, frame, method=method)
        for name, frame in scenarios.items()
        for method in ("eqm", "qdm")
    }


def _by_cell(frame: pl.DataFrame, variable: str, first: date, last: date) -> dict[tuple[int, int], np.ndarray]:
    rows = frame.filter(pl.col("month").is_between(first, last)).sort("month")
    return {
        (band, calendar): group[variable].to_numpy()
        for (band, calendar), group in rows.group_by("band", pl.col("month").dt.month().alias("m"))
    }


def test_importing_the_module_does_not_import_xsdba_or_matplotlib():
    code = "import sys, ml.bias_correction, ml.figures; print('xsdba' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_every_driver_has_one_kind():
    assert set(ADDITIVE) | set(MULTIPLICATIVE) >= set(DYNAMIC_FEATURES)
    assert not set(ADDITIVE) & set(MULTIPLICATIVE)
    assert {"p_total", "p_snow", "soil_water_total_kg_m2"} <= set(MULTIPLICATIVE)


@pytest.mark.parametrize("method", ["eqm", "qdm"])
def test_corrected_frame_keeps_rows_columns_and_untouched_values(corrections, scenarios, method):
    raw = scenarios["rcp85"]
    corrected = corrections[("rcp85", method)].corrected
    assert corrected.columns == raw.columns
    assert corrected.select("band", "month").equals(raw.select("band", "month"))
    assert corrected.select("litho_water", *WATER_CONTENT).equals(raw.select("litho_water", *WATER_CONTENT))
    assert all(corrected[v].is_nan().sum() == 0 and corrected[v].null_count() == 0 for v in CORRECTED)
    assert not corrected["t_air"].equals(raw["t_air"])


@pytest.mark.parametrize("method", ["eqm", "qdm"])
@pytest.mark.parametrize("variable", ["t_air", "p_total", "soil_water_total_kg_m2"])
def test_corrected_overlap_quantiles_match_the_reanalysis(reference, corrections, scenarios, method, variable):
    # Tolerance, per band and calendar month, in units of the reference's 10-90% range: the
    # mean |quantile difference| over probabilities 0.1..0.9 within 5%, the worst single one
    # within 15% (50 quantile nodes on 23 years smooth the jump between neighbouring years).
    reference = reference.with_columns(
        pl.sum_horizontal(
            pl.col(w) * t * 1000 for w, t in zip(WATER_CONTENT, SOIL_LAYER_THICKNESS_M, strict=False)
        ).alias("soil_water_total_kg_m2")
    )
    probabilities = np.linspace(0.1, 0.9, 9)
    first, last = REFERENCE_MONTHS[0], REFERENCE_MONTHS[-1]
    ref_cells = _by_cell(reference, variable, first, last)
    corrected_cells = _by_cell(corrections[("rcp85", method)].corrected, variable, first, last)
    raw_cells = _by_cell(scenarios["rcp85"], variable, first, last)
    assert len(ref_cells) == N_BANDS * 12
    mean_after, worst_after, mean_before = [], [], []
    for cell, ref in ref_cells.items():
        ref_q = np.quantile(ref, probabilities)
        scale = ref_q[-1] - ref_q[0]
        after = np.abs(np.quantile(corrected_cells[cell], probabilities) - ref_q) / scale
        before = np.abs(np.quantile(raw_cells[cell], probabilities) - ref_q) / scale
        mean_after.append(after.mean())
        worst_after.append(after.max())
        mean_before.append(before.mean())
    assert max(mean_after) <= 0.05, f"{variable} {method}: mean quantile error {max(mean_after):.3f} of the range"
    assert max(worst_after) <= 0.15, f"{variable} {method}: worst quantile error {max(worst_after):.3f}"
    assert np.median(mean_before) > 0.2  # the synthetic bias is real


@pytest.mark.parametrize("variable", [v for v in CORRECTED if v != "p_snow"])
def test_eqm_mapping_is_monotone_within_band_and_calendar_month(corrections, scenarios, variable):
    # p_snow is left out: it is capped by the same month's p_total afterwards, which is not a
    # function of p_snow's own rank. Additive mapping interpolates linearly between quantile
    # nodes and is monotone to rounding; a multiplicative one scales sim by a ratio that is
    # linear between nodes, sim * (a + b sim), which can dip slightly between two nodes: allow
    # 2% of the cell's range there.
    allowed = 1e-9 if variable in ADDITIVE else 0.02
    first, last = SCENARIO_MONTHS[0], SCENARIO_MONTHS[-1]
    raw = _by_cell(scenarios["rcp85"], variable, first, last)
    corrected = _by_cell(corrections[("rcp85", "eqm")].corrected, variable, first, last)
    assert len(raw) == N_BANDS * 12
    for cell, values in raw.items():
        mapped = corrected[cell][np.argsort(values, kind="stable")]
        reversal = -np.diff(mapped).min() / (mapped.max() - mapped.min() + 1e-300)
        assert reversal <= allowed, f"{variable} cell {cell}: order reversed by {reversal:.2e} of its range"


def test_precipitation_never_negative_and_snowfall_within_total(corrections):
    for key, result in corrections.items():
        frame = result.corrected
        assert frame["p_total"].min() >= 0 and frame["p_snow"].min() >= 0, key
        assert frame["r_solar"].min() >= 0, key
        assert (frame["p_snow"] <= frame["p_total"]).all(), key
    # the dark months stay dark: a tied cell of zeros maps to zeros, not NaN
    dark = corrections[("rcp85", "qdm")].corrected.filter(
        pl.col("band") >= 4, pl.col("month").dt.month().is_in([12, 1])
    )
    assert dark["r_solar"].max() == 0.0


def _warming(frame: pl.DataFrame) -> np.ndarray:
    """2071-2100 minus 2001-2023 mean t_air per band."""
    year = pl.col("month").dt.year()
    late = pl.col("t_air").filter(year.is_between(2071, 2100)).mean()
    overlap = pl.col("t_air").filter(year.is_between(2001, 2023)).mean()
    change = frame.group_by("band").agg(late - overlap)
    return change.sort("band")["t_air"].to_numpy()


@pytest.mark.parametrize("scenario", list(WARMING_DEGC_PER_YEAR))
def test_qdm_keeps_each_scenarios_warming_and_eqm_does_less_well(corrections, scenarios, scenario):
    raw = _warming(scenarios[scenario])
    assert raw.min() > 0.5  # the known trend shows in the raw model
    qdm = _warming(corrections[(scenario, "qdm")].corrected)
    eqm = _warming(corrections[(scenario, "eqm")].corrected)
    qdm_error = np.abs(qdm - raw) / np.abs(raw)
    eqm_error = np.abs(eqm - raw) / np.abs(raw)
    print(f"{scenario}: raw {raw.round(2)}, qdm {qdm.round(2)}, eqm {eqm.round(2)}")
    assert qdm_error.max() <= 0.10
    assert qdm_error.max() < eqm_error.max()


def test_diagnostics_show_the_quantile_distance_shrinking(corrections):
    diagnostics = corrections[("rcp85", "eqm")].diagnostics
    assert set(diagnostics["variable"]) == set(CORRECTED)
    assert diagnostics.height == len(CORRECTED) * N_BANDS
    for variable in ("t_air", "p_total", "soil_water_total_kg_m2"):
        rows = diagnostics.filter(pl.col("variable") == variable)
        assert (rows["mad_after"] < 0.2 * rows["mad_before"]).all(), variable


def test_result_records_the_overlap(corrections):
    result = corrections[("rcp26", "qdm")]
    assert result.method == "qdm"
    assert (result.overlap_first, result.overlap_last) == (date(2001, 1, 1), date(2023, 12, 1))
    assert result.overlap_months == 276 and result.warnings == []


def test_short_overlap_warns_and_records_it(reference, scenarios):
    recent = reference.filter(pl.col("month") >= date(2021, 1, 1))
    with pytest.warns(UserWarning, match=r"2021-01\.\.2023-12.*rcp26"):
        result = bias_correct(recent, scenarios["rcp26"])
    assert (result.overlap_first, result.overlap_last, result.overlap_months) == (
        date(2021, 1, 1),
        date(2023, 12, 1),
        36,
    )
    assert len(result.warnings) == 1 and "36 months" in result.warnings[0]
    assert result.corrected["t_air"].is_nan().sum() == 0


def test_overlap_with_a_calendar_month_seen_once_raises(reference, scenarios):
    one_and_a_half_years = reference.filter(pl.col("month") >= date(2022, 7, 1))
    with pytest.raises(ValueError, match=r"2022-07\.\.2023-12"):
        bias_correct(one_and_a_half_years, scenarios["rcp26"])


def test_missing_variables_and_unknown_method_raise(reference, scenarios):
    with pytest.raises(ValueError, match="q_latent"):
        bias_correct(reference.drop("q_latent"), scenarios["rcp26"])
    with pytest.raises(ValueError, match="soil_water_total_kg_m2"):
        bias_correct(reference, scenarios["rcp26"].drop("soil_water_total_kg_m2"))
    with pytest.raises(ValueError, match="isimip"):
        bias_correct(reference, scenarios["rcp26"], method="isimip")


def test_bias_correction_figure_is_a_png(tmp_path, reference, scenarios, corrections):
    from ml.figures import bias_correction_figure

    path = bias_correction_figure(
        reference,
        scenarios["rcp85"],
        corrections[("rcp85", "qdm")].corrected,
        unit=2,
        path=tmp_path / "figures" / "bias_correction_band2.png",
    )
    assert path.exists() and path.stat().st_size > 20_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(path.parent.iterdir()) == [path]  # the temporary file was renamed, not left behind


def test_a_scenario_corrected_with_its_soil_water_split_and_the_warnings_kept(reference, scenarios):
    from ml.bias_correction import correct_scenario
    from ml.soil_water import split_soil_water_lagged

    recent = reference.filter(pl.col("month") >= date(2019, 1, 1))
    result = correct_scenario(recent, scenarios["rcp26"], method="eqm", n_quantiles=20)
    # the short overlap warns: the warning is kept for the caller's log, not lost
    assert any("60 months" in message for message in result.messages)
    assert result.correction.method == "eqm" and result.correction.overlap_months == 60
    assert result.frame.equals(split_soil_water_lagged(result.correction.corrected, recent))
    assert not result.frame.select(WATER_CONTENT).equals(result.correction.corrected.select(WATER_CONTENT))
    with pytest.raises(ValueError, match="'tipping_bucket'"):
        correct_scenario(reference, scenarios["rcp26"], soil_water_split="tipping_bucket")
    with pytest.raises(ValueError, match="layer shares"):
        correct_scenario(reference, scenarios["rcp26"], soil_water_split="dirichlet")


def test_recorded_warnings_are_this_threads_and_not_the_garbage_collectors():
    """A dask worker runs other threads (its event loop, fsspec's IO) and collects garbage
    whenever: their warnings must not land in a tile's record, or it depends on timing."""
    import threading
    import warnings

    from ml.bias_correction import recorded_warnings

    def elsewhere():
        warnings.warn("from another thread", UserWarning, stacklevel=1)

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with recorded_warnings() as caught:
            warnings.warn("overlap is short", UserWarning, stacklevel=1)
            worker = threading.Thread(target=elsewhere)
            worker.start()
            worker.join()
            warnings.warn("unclosed <socket>", ResourceWarning, stacklevel=1)
            warnings.warn("overlap is short", UserWarning, stacklevel=1)  # every one, not once per place
    assert caught == ["overlap is short", "overlap is short"]
    assert [str(w.message) for w in shown] == ["from another thread"]  # shown as usual, not recorded


def test_diagnostics_summary_averages_over_bands_per_scenario(corrections):
    from ml.bias_correction import diagnostics_summary

    both = pl.concat(
        corrections[(s, "qdm")].diagnostics.with_columns(pl.lit(s).alias("scenario")) for s in ("rcp85", "rcp26")
    )
    summary = diagnostics_summary(both)
    assert summary.height == 2 * len(CORRECTED) and summary["scenario"].to_list()[0] == "rcp26"
    t_air = summary.filter(pl.col("scenario") == "rcp85", pl.col("variable") == "t_air").row(0, named=True)
    rows = corrections[("rcp85", "qdm")].diagnostics.filter(pl.col("variable") == "t_air")
    assert t_air["mad_after"] == pytest.approx(rows["mad_after"].mean()) and t_air["physical_unit"] == "degC"


def test_only_the_measured_drivers_are_mapped_and_a_derived_one_is_derived_again(reference, scenarios):
    from ml.bias_correction import correct_scenario
    from ml.model_inputs import ModelInputs, derived_snowfall

    # a reanalysis with no skin temperature, radiation, turbulent fluxes or snowfall
    absent = ("t_surface", "r_thermal", "r_solar", "q_latent", "q_sensible", "p_snow")
    basins = reference.with_columns(pl.lit(None, dtype=pl.Float64).alias(name) for name in absent)
    inputs = ModelInputs(("t_air", "p_total", "p_snow"), {"p_snow": "from p_total and t_air"})
    result = correct_scenario(basins, scenarios["rcp85"], n_quantiles=20, inputs=inputs)
    assert set(result.correction.diagnostics["variable"]) == {"t_air", "p_total", "soil_water_total_kg_m2"}
    frame = result.frame
    expected = derived_snowfall(frame["p_total"].to_numpy(), frame["t_air"].to_numpy())
    np.testing.assert_allclose(frame["p_snow"].to_numpy(), expected, rtol=1e-12)
    # what is not a model input is the raw scenario's, untouched
    assert frame["q_latent"].equals(scenarios["rcp85"]["q_latent"])
    with pytest.raises(ValueError, match="no bias correction is defined for"):
        bias_correct(basins, scenarios["rcp85"], variables=("t_air", "swe"))
