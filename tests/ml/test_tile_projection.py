"""The per-tile projection kernel's map summary (warming, active layer, taliks) on hand-made soil
temperatures, and its refusal of drivers that do not cover the projection."""

import numpy as np
import polars as pl
import pytest

from ml.tile_projection import (
    SCENARIO_DRIVERS,
    SUMMARY_COLUMNS,
    ScenarioDrivers,
    TileProjectionTask,
    active_layer_frame,
    project_tile,
    summary_frame,
)
from ml.tiles import CORE_VARIABLES, TileSeries
from sources import catalog

MONTHS = np.arange(np.datetime64("2024-01"), np.datetime64("2100-12") + 1)


def _soil(cell: int, deep_floor: np.ndarray, offset: np.ndarray) -> pl.DataFrame:
    """A seasonal cycle per layer (amplitude shrinking with depth) around ``offset`` (per month),
    the deepest layer's winter minimum at ``deep_floor`` (per month)."""
    phase = np.cos(2 * np.pi * (MONTHS.astype(np.int64) % 12) / 12)
    layers = {f"t_soil_{k}": offset - (8.0 / (k + 1)) * phase for k in range(3)}
    layers["t_soil_3"] = deep_floor + (1.0 - phase)  # its minimum (January, phase 1) at deep_floor
    return pl.DataFrame(
        {
            "scenario": "rcp85",
            "cell": cell,
            "month": pl.Series(MONTHS.astype("datetime64[D]")).cast(pl.Date),
            **{name: pl.Series(values, dtype=pl.Float32) for name, values in layers.items()},
        }
    )


def test_the_summary_says_warming_active_layer_and_which_cells_become_taliks():
    year = MONTHS.astype("datetime64[Y]").astype(np.int64) + 1970
    ramp = np.where(year >= 2081, 2.0, 0.0)  # +2 K from 2081 on
    # cell 1: the deepest layer refreezes (min -1 degC) until 2080, then stays at +0.5 degC or more
    thawing = _soil(1, np.where(year >= 2081, 0.5, -1.0), -3.0 + ramp)
    frozen = _soil(2, np.full(len(MONTHS), -4.0), -6.0 + ramp)  # refreezes every year
    soil = pl.concat([thawing, frozen])
    active_layer = active_layer_frame(soil)
    assert active_layer.height == 2 * 77 and active_layer.columns[-1] == "talik"
    assert active_layer.filter((pl.col("cell") == 1) & (pl.col("year") == 2090))["talik"].item() is True
    assert active_layer.filter((pl.col("cell") == 1) & (pl.col("year") == 2050))["talik"].item() is False
    assert not active_layer.filter(pl.col("cell") == 2)["talik"].any()
    summary = summary_frame(soil, active_layer)
    assert summary.columns == ["scenario", "cell", *SUMMARY_COLUMNS]
    one, two = summary.sort("cell").iter_rows(named=True)
    for k in range(3):  # the upper layers warm by the ramp exactly
        assert one[f"warming_{k}"] == pytest.approx(2.0, abs=1e-5) and two[f"warming_{k}"] == pytest.approx(
            2.0, abs=1e-5
        )
    assert one["warming_3"] == pytest.approx(1.5, abs=1e-5) and two["warming_3"] == pytest.approx(0.0, abs=1e-5)
    assert (one["talik_early_share"], one["talik_late_share"], one["becomes_talik"]) == (0.0, 1.0, True)
    assert (two["talik_early_share"], two["talik_late_share"], two["becomes_talik"]) == (0.0, 0.0, False)
    assert one["alt_late_m"] > one["alt_early_m"] > 0.0  # warmer: a deeper active layer
    assert one[f"{catalog.TARGETS[0]}_late"] - one[f"{catalog.TARGETS[0]}_early"] == pytest.approx(one["warming_0"])


def test_drivers_that_do_not_reach_2100_are_refused_naming_tile_and_scenario():
    cells = np.array([5, 6])
    history_months = np.arange(np.datetime64("2015-01"), np.datetime64("2019-12") + 1)
    history = TileSeries(
        "r01c02",
        cells,
        history_months,
        np.full((len(history_months), 2, len(CORE_VARIABLES)), 0.3, dtype=np.float32),
        CORE_VARIABLES,
    )
    short = np.arange(np.datetime64("2010-01"), np.datetime64("2099-12") + 1)
    drivers = ScenarioDrivers(short, np.zeros((len(short), 2, len(SCENARIO_DRIVERS)), np.float32), "noleap")
    params = {"k_top": np.array([0.5, 0.5])}
    with pytest.raises(
        ValueError, match=r"tile r01c02, rcp45: drivers must cover .*2024-01..2100-12, got 2010-01..2099-12"
    ):
        project_tile(TileProjectionTask(history, params, {"rcp45": drivers}))
    with pytest.raises(ValueError, match=r"tile r01c02: parameter k_top holds \(3,\) values for 2 cells"):
        project_tile(TileProjectionTask(history, {"k_top": np.ones(3)}, {"rcp45": drivers}))
