"""Active-layer thickness on constructed annual profiles; expected depths by hand."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from ml import active_layer
from sources import catalog

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
    out = active_layer.active_layer_thickness(frame)
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
    out = active_layer.active_layer_thickness(frame).sort("year")
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
    out = active_layer.active_layer_thickness(frame, group_columns=("scenario", "model", "band"))
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
        active_layer.active_layer_thickness(frame, group_columns=("band",))


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
    out = active_layer.active_layer_thickness(frame).sort("year")
    assert out["n_months"].to_list() == [11, 11]
    assert out["flag"].to_list() == ["incomplete", "incomplete"]
    assert out["alt_m"].null_count() == 2
