"""Each model figure writes a real PNG atomically; inputs it cannot draw are refused."""

import os

import numpy as np
import polars as pl
import pytest

from ml import architecture_catalog
from ml import figures as F
from ml import projections as P
from ml.unit_arrays import Units

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, target):
    assert path == target
    data = target.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000
    assert sorted(os.listdir(target.parent)) == [target.name]  # no temporary left behind


def seasonal(months, band, layer, amplitude=10.0):
    phase = (months.astype(int) % 12) / 12.0
    wave = np.sin(2 * np.pi * (phase - 0.3 - 0.05 * layer))
    return 2.0 - band - 0.3 * layer + amplitude * np.exp(-0.5 * layer) * wave


def test_observed_vs_predicted_figure(tmp_path):
    months = np.arange(np.datetime64("2022-01"), np.datetime64("2024-01"))
    month = np.tile(months, 6)
    band = np.repeat(np.arange(6), len(months))
    observed = np.stack([seasonal(month, band, k) for k in range(4)], axis=1)
    predicted = {"gru": observed + 0.5, "tcn": observed - 0.8}
    target = tmp_path / "fig4.png"
    assert_png(F.observed_vs_predicted_figure(month, band, observed, predicted, 2023, target), target)
    with pytest.raises(ValueError, match="no rows in 2030"):
        F.observed_vs_predicted_figure(month, band, observed, predicted, 2030, tmp_path / "x.png")
    with pytest.raises(ValueError, match="predicted"):
        F.observed_vs_predicted_figure(month, band, observed, {"gru": observed[:, :3]}, 2023, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def projections_frame():
    months = np.arange(np.datetime64("2001-01"), np.datetime64("2101-01"))
    frames = []
    for offset, (model, member) in enumerate((("gru", 0), ("gru", 1), ("tcn", 0), ("bilstm", 0), ("thermal_core", 0))):
        month = np.tile(months, 6)
        band = np.repeat(np.arange(6), len(months))
        trend = 0.04 * (month.astype(int) - months[0].astype(int)) / 12.0
        values = np.stack([seasonal(month, band, k) + trend + 0.3 * offset for k in range(4)], axis=1)
        frames.append(P.projection_frame("rcp85", model, Units.bands(), band, month, values, member))
    return pl.concat(frames)


def history_frame():
    months = np.arange(np.datetime64("2001-01"), np.datetime64("2024-01"))
    month = np.tile(months, 6)
    band = np.repeat(np.arange(6), len(months))
    values = {f"t_soil_{k}": seasonal(month, band, k) for k in range(4)}
    return pl.DataFrame({"band": band, "month": month.astype("datetime64[D]"), **values}).with_columns(
        pl.col("month").cast(pl.Date)
    )


def test_projection_figure(tmp_path):
    frame = P.with_ensemble(projections_frame())
    target = tmp_path / "fig8.png"
    assert_png(F.projection_figure(frame, "rcp85", target, history=history_frame()), target)
    with pytest.raises(ValueError, match="rcp26"):
        F.projection_figure(frame, "rcp26", tmp_path / "none.png")
    with pytest.raises(ValueError, match="no network member"):
        F.projection_figure(frame.filter(pl.col("model") == "thermal_core"), "rcp85", tmp_path / "none.png")


def test_one_colour_per_model_everywhere():
    names = ("tcn", "transformer", "conv1d_lstm", "gru", "bilstm", "thermal_core", "dl_ridge", "ridge")
    colours = [F.model_colour(name) for name in names]
    assert len(set(colours)) == len(colours)
    assert F.model_colour("ensemble") == F.model_colour("ensemble_mean") == F.ENSEMBLE_COLOUR
    assert F.model_colour("something_new") == F.model_colour("something_new")
    # the observed reanalysis has a colour of its own, which no model and no scenario takes
    architectures = {a.colour for a in architecture_catalog.ARCHITECTURES.values()}
    taken = (
        architectures | set(F.MODEL_COLOURS.values()) | {c for s, c in F.SCENARIO_COLOURS.items() if s != "reanalysis"}
    )
    assert F.REANALYSIS_COLOUR == F.OBSERVED_COLOUR and F.REANALYSIS_COLOUR not in taken


def test_perfect_model_figure(tmp_path):
    rng = np.random.default_rng(3)
    cells = pl.DataFrame(
        {
            "scenario": np.repeat(["rcp26", "rcp45", "rcp60", "rcp85"], 24),
            **{f"truth_{s}": rng.normal(2, 1, 96) for s in ("change", "level")},
            **{f"ensemble_{s}": rng.normal(2, 1, 96) for s in ("change", "level")},
        }
    ).with_columns(
        *(pl.col(f"ensemble_{s}") - 0.3 for s in ("change", "level")),
    )
    cells = cells.with_columns(
        *(
            (pl.col(f"ensemble_{s}") + sign * 0.4).alias(f"{s}_{q}")
            for s in ("change", "level")
            for q, sign in (("q05", -1), ("q95", 1))
        )
    )
    years = np.arange(2001, 2101)
    series = pl.concat(
        [
            pl.DataFrame({"scenario": s, "source": source, "year": years, "value": np.linspace(-3, 1 + i, 100)})
            for i, s in enumerate(("rcp26", "rcp85"))
            for source in ("truth", "ensemble")
        ]
    ).with_columns((pl.col("value") - 0.5).alias("q05"), (pl.col("value") + 0.5).alias("q95"))
    target = tmp_path / "pm.png"
    assert_png(F.perfect_model_figure(cells, series, target), target)
    with pytest.raises(ValueError, match="no perfect-model cells"):
        F.perfect_model_figure(cells.head(0), series, tmp_path / "x.png")


def test_feature_importance_figure(tmp_path):
    features = [f"feature_{i:02d}" for i in range(25)]
    importance = pl.DataFrame({"feature": features, "mean_abs_shap": np.linspace(0.01, 1.0, 25)})
    target = tmp_path / "fig10.png"
    assert_png(F.feature_importance_figure(importance, "gru", target, explained="its correction to the core"), target)
    with pytest.raises(ValueError, match=r"missing column\(s\) \[.mean_abs_shap.\]"):
        F.feature_importance_figure(importance.rename({"mean_abs_shap": "shap"}), "gru", tmp_path / "bad.png")
    with pytest.raises(ValueError, match="more than once"):
        F.feature_importance_figure(pl.concat([importance, importance.head(1)]), "gru", tmp_path / "bad.png")


def test_active_layer_figure(tmp_path):
    years = np.arange(2024, 2101)
    rows = []
    for scenario, rate in (("rcp26", 0.002), ("rcp45", 0.006), ("rcp85", 0.025)):
        for band in range(6):
            alt = 0.3 + 0.1 * (5 - band) + rate * (years - 2024)
            flag = np.where(alt > 1.945, "all_thawed", "ok").astype(object)
            alt = np.minimum(alt, 1.945)
            alt_list = alt.tolist()
            flag[10], alt_list[10] = "incomplete", None
            rows.append(
                pl.DataFrame(
                    {
                        "scenario": scenario,
                        "band": band,
                        "year": years,
                        "alt_m": pl.Series(alt_list, dtype=pl.Float64),
                        "flag": flag.astype(str),
                    }
                )
            )
    frame = pl.concat(rows)
    assert (frame["flag"] == "all_thawed").any()  # the marks are exercised
    target = tmp_path / "alt.png"
    assert_png(F.active_layer_figure(frame, target), target)
    several = pl.concat([frame.with_columns(pl.lit(m).alias("model")) for m in ("gru", "tcn")])
    with pytest.raises(ValueError, match="pick one"):
        F.active_layer_figure(several, tmp_path / "several.png")
    assert_png(F.active_layer_figure(several, tmp_path / "gru" / "alt.png", model="gru"), tmp_path / "gru" / "alt.png")


def test_a_band_without_units_gets_no_empty_panel(tmp_path):
    """Units in two bands only (as the basins leave band 5 empty): two rows of panels, not six."""
    import matplotlib.image

    frame = P.with_ensemble(projections_frame())
    two = frame.filter(pl.col("band").is_in([0, 1]))
    heights = {
        name: matplotlib.image.imread(F.projection_figure(rows, "rcp85", tmp_path / f"{name}.png")).shape[0]
        for name, rows in (("six", frame), ("two", two))
    }
    assert heights["two"] < 0.5 * heights["six"]
