"""The per-tile scenario kernel: band scenarios regridded onto the tile's cells and quantile-mapped
onto each cell's reanalysis by the band path's correction. A cell on a band centroid gets exactly
what the nearest-band path gives it; a cell between two centroids warms as the mean of the two
bands (the scenarios' change signal survives the correction); bad input names what is wrong."""

import numpy as np
import polars as pl
import pytest

from ml.bias_correction import bias_correct
from ml.regrid import BAND_CENTROID_LATITUDES
from ml.tile_projection import SCENARIO_DRIVERS
from ml.tile_scenarios import (
    REFERENCE_VARIABLES,
    SCENARIO_VARIABLES,
    TileScenarioTask,
    reference_frame,
    scenario_drivers,
    tile_scenario_frames,
)
from ml.tiles import TileSeries

HISTORY = np.arange(np.datetime64("2001-01"), np.datetime64("2023-12") + 1)
SCENARIO = np.arange(np.datetime64("2001-01"), np.datetime64("2100-12") + 1)
CELLS = np.array([105, 230, 377])
# on band 2's centroid, halfway between band 2's and band 3's, north of band 5's (clamped)
CELL_LAT = np.array([BAND_CENTROID_LATITUDES[2], BAND_CENTROID_LATITUDES[2:4].mean(), 71.2])
WARMING_K = {"rcp45": np.array([1.0, 1.5, 2.0, 3.0, 4.0, 5.0]), "rcp85": np.array([2.0, 3.0, 4.0, 6.0, 8.0, 10.0])}


def _climate(months: np.ndarray, lat: np.ndarray, seed: int, bias: float = 0.0) -> dict[str, np.ndarray]:
    """(T, point) series of SCENARIO_VARIABLES: a seasonal cycle cooling north, weather noise."""
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * (months.astype(np.int64) % 12 - 0.5)[:, None] / 12
    weather = rng.normal(0.0, 1.5, (len(months), lat.size))
    t_air = 1.0 - 0.7 * (lat - 59.0) - (12.0 + 0.5 * (lat - 59.0)) * np.cos(phase) + weather + bias
    p_total = 0.04 + 0.02 * np.sin(phase) + 0.005 * rng.random((len(months), lat.size))
    p_snow = p_total * (t_air < 0)
    return {"t_surface": t_air + 0.8, "t_air": t_air, "p_total": p_total, "p_snow": p_snow}


def _history(values=None) -> TileSeries:
    climate = _climate(HISTORY, CELL_LAT, seed=3)
    water = {f"w_{k}": 0.3 + 0.01 * k + 0.0 * climate["t_air"] for k in range(4)}
    stacked = np.stack([{**climate, **water}[name] for name in REFERENCE_VARIABLES], axis=-1)
    return TileSeries("r01c02", CELLS, HISTORY, stacked if values is None else values, REFERENCE_VARIABLES)


def _bands(scenarios=("rcp45", "rcp85")) -> pl.DataFrame:
    """Band scenarios: a model 2 K too cold, each band warming linearly from 2006 by WARMING_K."""
    parts = []
    ramp = np.clip((SCENARIO - np.datetime64("2006-01")).astype(float) / (12 * 95), 0.0, None)
    for scenario in scenarios:
        climate = _climate(SCENARIO, BAND_CENTROID_LATITUDES, seed=11, bias=-2.0)
        for name in ("t_air", "t_surface"):
            climate[name] = climate[name] + ramp[:, None] * WARMING_K[scenario][None]
        n_bands = BAND_CENTROID_LATITUDES.size
        parts.append(
            pl.DataFrame(
                {
                    "scenario": scenario,
                    "band": np.tile(np.arange(n_bands), len(SCENARIO)),
                    "month": pl.Series(np.repeat(SCENARIO.astype("datetime64[D]"), n_bands)).cast(pl.Date),
                    **{name: climate[name].ravel() for name in SCENARIO_VARIABLES},
                }
            )
        )
    return pl.concat(parts)


@pytest.fixture(scope="module")
def frames():
    return tile_scenario_frames(TileScenarioTask(_history(), CELL_LAT, _bands()))


def _series(frame: pl.DataFrame, scenario: str, cell: int, name: str = "t_air") -> np.ndarray:
    rows = frame.filter((pl.col("scenario") == scenario) & (pl.col("cell") == cell)).sort("month")
    return rows[name].to_numpy().astype(np.float64)


def _change(series: np.ndarray) -> float:
    """2081-2100 mean minus 2001-2020 mean."""
    year = SCENARIO.astype("datetime64[Y]").astype(int) + 1970
    return float(series[year >= 2081].mean() - series[year <= 2020].mean())


def test_the_kernel_lands_every_scenario_cell_and_month(frames):
    drivers, diagnostics = frames["drivers"], frames["diagnostics"]
    assert drivers.columns == ["scenario", "cell", "month", *SCENARIO_DRIVERS]
    assert drivers.height == 2 * CELLS.size * len(SCENARIO)
    assert drivers.select(SCENARIO_DRIVERS).dtypes == [pl.Float32] * len(SCENARIO_DRIVERS)
    assert drivers["scenario"].unique(maintain_order=True).to_list() == ["rcp45", "rcp85"]
    assert drivers.filter(pl.col("scenario") == "rcp85")["cell"].unique().sort().to_list() == CELLS.tolist()
    assert drivers["month"].min().isoformat() == "2001-01-01" and drivers["month"].max().isoformat() == "2100-12-01"
    assert (drivers["p_snow"] >= 0).all() and drivers.select(pl.col(SCENARIO_DRIVERS).is_nan().any()).row(0) == (
        False,
    ) * 3
    assert set(diagnostics["variable"]) == set(SCENARIO_VARIABLES) and set(diagnostics["tile"]) == {"r01c02"}
    assert set(diagnostics["overlap"]) == {"2001-01..2023-12"} and set(diagnostics["method"]) == {"qdm"}
    # the correction removes the model's cold bias: closer to the reanalysis' quantiles after
    t_air = diagnostics.filter(pl.col("variable") == "t_air")
    assert (t_air["mad_after"] < 0.5 * t_air["mad_before"]).all()


def test_a_cell_on_a_band_centroid_gets_the_nearest_band_path_exactly(frames):
    band = _bands(("rcp85",)).filter(pl.col("band") == 2)
    nearest = band.drop("band").with_columns(pl.lit(int(CELLS[0])).alias("unit"))
    reference = reference_frame(_history()).filter(pl.col("unit") == int(CELLS[0]))
    expected = bias_correct(reference, nearest, variables=SCENARIO_VARIABLES).corrected.sort("month")
    for name in SCENARIO_DRIVERS:
        np.testing.assert_allclose(
            _series(frames["drivers"], "rcp85", CELLS[0], name), expected[name].to_numpy(), atol=2e-5, err_msg=name
        )


def test_cells_warm_with_the_regridded_scenario(frames):
    drivers = frames["drivers"]
    for scenario, warming in WARMING_K.items():
        on_band_2, halfway, north = (_change(_series(drivers, scenario, cell)) for cell in CELLS)
        # the ramp's late-minus-early share (about 0.83) of each band's warming survives the mapping
        share = on_band_2 / warming[2]
        assert 0.7 < share < 1.0, scenario
        assert halfway == pytest.approx(share * warming[2:4].mean(), abs=0.25), scenario
        assert abs(halfway - on_band_2) > 0.3 and north == pytest.approx(share * warming[5], abs=0.4), scenario


def test_scenario_drivers_are_the_projections_input_in_the_models_calendar(frames):
    drivers = scenario_drivers(frames["drivers"], CELLS, {"rcp85": "noleap"}, "tile r01c02")
    one = drivers["rcp85"]
    assert one.calendar == "noleap" and one.values.shape == (len(SCENARIO), CELLS.size, len(SCENARIO_DRIVERS))
    assert one.months[0] == SCENARIO[0] and one.months[-1] == SCENARIO[-1]
    np.testing.assert_array_equal(
        one.values[:, 1, SCENARIO_DRIVERS.index("t_air")], _series(frames["drivers"], "rcp85", 230)
    )
    with pytest.raises(ValueError, match=r"tile r01c02: no drivers of scenario rcp26; it holds \['rcp45', 'rcp85'\]"):
        scenario_drivers(frames["drivers"], CELLS, {"rcp26": "noleap"}, "tile r01c02")
    with pytest.raises(ValueError, match=r"tile r01c02, rcp45: cell 999 is missing in month 2001-01"):
        scenario_drivers(frames["drivers"], np.array([105, 230, 377, 999]), {"rcp45": "noleap"}, "tile r01c02")


def test_bad_input_names_tile_variable_place_and_month():
    bands = _bands(("rcp45",))
    holed = bands.with_columns(
        pl.when((pl.col("band") == 4) & (pl.col("month") == pl.date(2077, 7, 1)))
        .then(None)
        .otherwise(pl.col("p_total"))
        .alias("p_total")
    )
    with pytest.raises(
        ValueError, match=r"tile r01c02, rcp45 band scenario: p_total is missing or not finite in band 4, month 2077-07"
    ):
        tile_scenario_frames(TileScenarioTask(_history(), CELL_LAT, holed))
    values = _history().values.copy()
    values[30, 2, REFERENCE_VARIABLES.index("w_1")] = np.nan
    with pytest.raises(ValueError, match=r"tile r01c02: w_1 is not finite in cell 377, month 2003-07"):
        tile_scenario_frames(TileScenarioTask(_history(values), CELL_LAT, bands))
    with pytest.raises(ValueError, match=r"tile r01c02 bands: missing column\(s\) \['p_total'\]"):
        tile_scenario_frames(TileScenarioTask(_history(), CELL_LAT, bands.drop("p_total")))
