"""Active-layer thickness on constructed annual profiles; expected depths by hand.

The mid-depth method is checked on hand-made profiles, the conduction-profile method (the
default) on the analytic solution it fits."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from ml import active_layer
from sources import catalog

MID = "mid_depth"
# mid-depths of 0-0.07, 0.07-0.28, 0.28-1.00, 1.00-2.89 m
D = (0.035, 0.175, 0.64, 1.945)


def year_rows(peak, year=2010, months=range(1, 13), **keys) -> pl.DataFrame:
    """Monthly rows whose annual maximum per layer is `peak` (reached in July), colder otherwise."""
    months = list(months)
    peak = np.asarray(peak, dtype=float)
    values = np.array([peak - (0.0 if m == 7 else 5.0 + m) for m in months])
    data = {
        "month": [dt.date(year, m, 1) for m in months],
        **{c: values[:, k] for k, c in enumerate(catalog.TARGETS)},
    }
    frame = pl.DataFrame(data)
    return frame.with_columns(*(pl.lit(v).alias(k) for k, v in keys.items()))


def test_mid_depths_from_catalog():
    assert pytest.approx(D) == active_layer.MID_DEPTHS_M


def test_flags_and_depths():
    frame = pl.concat(
        [
            year_rows([-1.0, -2.0, -3.0, -4.0], band=0),  # all frozen
            year_rows([9.0, 7.0, 3.0, 0.5], band=1),  # all thawed
            year_rows([8.0, 4.0, 1.0, -1.0], band=2),  # crossing between layers 2 and 3
            year_rows([3.0, -1.0, -2.0, -3.0], band=3),  # crossing between layers 0 and 1
            year_rows([6.0, 2.0, 0.0, -1.0], band=4),  # exactly 0 at the third mid-depth
            year_rows([5.0, -1.0, 2.0, -3.0], band=5),  # frozen then thawed again: first crossing
        ]
    )
    out = active_layer.active_layer_thickness(frame, method=MID)
    assert out.columns == ["band", "year", "alt_m", "flag", "n_months"]
    assert out["band"].to_list() == [0, 1, 2, 3, 4, 5]
    assert out["year"].to_list() == [2010] * 6
    assert out["n_months"].to_list() == [12] * 6
    assert out["flag"].to_list() == ["none_thawed", "all_thawed", "ok", "ok", "ok", "multiple_crossings"]
    expected = [
        0.0,
        1.945,  # documented lower bound: the deepest mid-depth
        0.64 + (1.945 - 0.64) * 1.0 / (1.0 - -1.0),  # 1.2925
        0.035 + (0.175 - 0.035) * 3.0 / (3.0 - -1.0),  # 0.14
        0.64,
        0.035 + (0.175 - 0.035) * 5.0 / 6.0,  # 0.151666...
    ]
    assert out["alt_m"].to_list() == pytest.approx(expected)
    assert expected[2] == pytest.approx(1.2925)


def test_annual_maximum_not_mean_and_not_other_years():
    # 2010 crosses between layers 2 and 3; 2011 is colder everywhere (crosses 0 and 1)
    frame = pl.concat(
        [year_rows([8.0, 4.0, 1.0, -1.0], year=2010, band=0), year_rows([2.0, -2.0, -3.0, -4.0], year=2011, band=0)]
    )
    out = active_layer.active_layer_thickness(frame, method=MID).sort("year")
    assert out["year"].to_list() == [2010, 2011]
    assert out["alt_m"].to_list() == pytest.approx([1.2925, 0.035 + 0.14 * 2.0 / 4.0])


def test_scenario_model_grouping():
    frame = pl.concat(
        [
            year_rows([8.0, 4.0, 1.0, -1.0], scenario="rcp85", model="gru", band=2),
            year_rows([8.0, 4.0, -1.0, -2.0], scenario="rcp85", model="tcn", band=2),
            year_rows([3.0, -1.0, -2.0, -3.0], scenario="rcp26", model="gru", band=2),
        ]
    )
    out = active_layer.active_layer_thickness(frame, group_columns=("scenario", "model", "band"), method=MID)
    assert out.columns == ["scenario", "model", "band", "year", "alt_m", "flag", "n_months"]
    got = {(r["scenario"], r["model"]): r["alt_m"] for r in out.iter_rows(named=True)}
    assert got == pytest.approx(
        {
            ("rcp85", "gru"): 1.2925,
            ("rcp85", "tcn"): 0.175 + (0.64 - 0.175) * 4.0 / 5.0,
            ("rcp26", "gru"): 0.14,
        }
    )
    # pooling several scenarios under one band is refused, not silently maxed together
    with pytest.raises(ValueError, match="more than one row"):
        active_layer.active_layer_thickness(frame, group_columns=("band",), method=MID)


def test_incomplete_year_flagged_with_null_alt():
    frame = pl.concat(
        [
            year_rows([8.0, 4.0, 1.0, -1.0], year=2010, band=0),
            year_rows([8.0, 4.0, 1.0, -1.0], year=2011, months=range(1, 12), band=0),  # no December
        ]
    )
    # a month with a missing temperature does not count either
    frame = frame.with_columns(
        pl.when(pl.col("month") == dt.date(2010, 2, 1)).then(None).otherwise(pl.col("t_soil_2")).alias("t_soil_2")
    )
    out = active_layer.active_layer_thickness(frame, method=MID).sort("year")
    assert out["n_months"].to_list() == [11, 11]
    assert out["flag"].to_list() == ["incomplete", "incomplete"]
    assert out["alt_m"].null_count() == 2


def conduction_year(mean, amplitude, damping, year=2010, **keys) -> pl.DataFrame:
    """Monthly LAYER MEANS of T(z, t) = mean + amplitude exp(-z/D) cos(wt - z/D): the annual
    maximum at depth z is mean + amplitude exp(-z/D), so ALT = D ln(amplitude / -mean)."""
    z = np.linspace(0, 2.89, 2000)
    t = np.arange(12) + 0.5
    field = mean + amplitude * np.exp(-z[None, :] / damping) * np.cos(
        2 * np.pi * t[:, None] / 12 - z[None, :] / damping
    )
    layers = np.stack([field[:, (z >= a) & (z <= b)].mean(axis=1) for a, b in catalog.SOIL_LAYERS_M], axis=1)
    frame = pl.DataFrame(
        {
            "month": [dt.date(year, m, 1) for m in range(1, 13)],
            **{c: layers[:, k] for k, c in enumerate(catalog.TARGETS)},
        }
    )
    return frame.with_columns(*(pl.lit(v).alias(k) for k, v in keys.items()))


def test_profile_fit_recovers_the_conduction_solution():
    frame = pl.concat(
        [
            conduction_year(-1.5, 12.0, 1.2, band=0),  # ALT 1.2 ln 8 = 2.50 m: deeper than the deepest mid-depth
            conduction_year(-3.0, 10.0, 0.8, band=1),  # 0.8 ln(10/3) = 0.96 m
            conduction_year(-0.3, 12.0, 1.2, band=2),  # 1.2 ln 40 = 4.4 m: below 2.89 m, a lower bound
            conduction_year(-8.0, 6.0, 1.0, band=3),  # never thaws
        ]
    )
    out = active_layer.active_layer_thickness(frame).sort("band")  # the profile method is the default
    assert out["flag"].to_list() == ["ok", "ok", "all_thawed", "none_thawed"]
    assert out["alt_m"].to_list()[:2] == pytest.approx([1.2 * np.log(8.0), 0.8 * np.log(10.0 / 3.0)], abs=0.15)
    assert out["alt_m"][2] == pytest.approx(active_layer.MAX_DEPTH_M)
    # the mid-depth method can only say "deeper than 1.945 m" for the first band
    mid = active_layer.active_layer_thickness(frame, method=MID).sort("band")
    assert mid["flag"][0] == "all_thawed" and mid["alt_m"][0] == pytest.approx(1.945)


def test_profile_groups_by_member_with_nulls():
    frame = pl.concat(
        [
            conduction_year(-3.0, 10.0, 0.8, model="gru", member=0, band=1),
            conduction_year(-3.0, 10.0, 0.8, model="ensemble_mean", member=None, band=1),
        ]
    )
    out = active_layer.active_layer_thickness(frame, group_columns=("model", "member", "band"))
    assert out.height == 2 and out["alt_m"][0] == pytest.approx(out["alt_m"][1])


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="stefan"):
        active_layer.active_layer_thickness(year_rows([1.0, 1.0, 1.0, 1.0], band=0), method="stefan")


def test_thickness_table_of_the_reanalysis_and_every_projection():
    from ml.projections import with_ensemble

    history = pl.concat(
        conduction_year(mean=1.0 - band, amplitude=8.0, damping=1.0, year=2020, unit=band, band=band) for band in (2, 3)
    )
    members = pl.concat(
        conduction_year(mean=m - band, amplitude=8.0, damping=1.0, year=year, unit=band, band=band).with_columns(
            pl.lit("rcp85").alias("scenario"), pl.lit("gru").alias("model"), pl.lit(m).cast(pl.Int64).alias("member")
        )
        for m in (0, 1)
        for band in (2, 3)
        for year in (2023, 2030)
    )
    projections = with_ensemble(
        members.select("scenario", "model", "member", "unit", "band", "month", *catalog.TARGETS)
    )
    table = active_layer.thickness_table(projections, history)
    assert table.columns == ["scenario", "model", "member", "unit", "band", "year", "alt_m", "flag", "n_months"]
    reanalysis = table.filter(pl.col("scenario") == "reanalysis")
    assert reanalysis["model"].unique().to_list() == ["era5_land"] and reanalysis["member"].unique().to_list() == [0]
    assert reanalysis.select("band", "alt_m").equals(
        active_layer.active_layer_thickness(history).select("band", "alt_m")
    )
    assert table.filter(pl.col("model") == "gru").height == 2 * 2 * 2
    shown = active_layer.reanalysis_and_ensemble(table)
    assert "model" not in shown.columns
    assert shown.select("scenario", "year").unique().sort("scenario", "year").rows() == [
        ("rcp85", 2030),
        ("reanalysis", 2020),
    ]
    share = active_layer.censored_share(table, bands=(2, 3))
    assert share.columns == ["scenario", "model", "censored_share", "band_years"]
    assert share.select("scenario", "model", "band_years").rows() == [
        ("rcp85", "ensemble_mean", 4),
        ("reanalysis", "era5_land", 2),
    ]
    flags = table.filter(pl.col("model") == "ensemble_mean")["flag"]
    assert share["censored_share"][0] == pytest.approx((flags == "all_thawed").mean())
