"""The cell network under the scenarios (`ml.cell_projection`) on a synthetic tile of 4 cells: a
network that passes the target month's standardised air-temperature anomaly through to every layer
shows that the windows end at their target month, that the cell's training climatology is added
back and that every month 2024-01..2100-12 is projected; a GRU given the history's own drivers
predicts what the history's inference (`ml.cell_training.tile_predictions`) predicts; bad scenario
input names the tile, the driver, the cell and the month."""

import keras
import numpy as np
import polars as pl
import pytest
from synthetic_cells import network_series

from ml import cell_projection as cp
from ml import cell_training as ct
from ml.tiles import TileSeries
from ml.unit_arrays import UnitGrid
from sources import catalog
from sources.grid import Grid, GridSpec

SPEC = GridSpec(
    south=64.0, north=64.9, west=-150.0, east=-149.1, lat_step=0.3, lon_step=0.3, centred=True, tile_rows=2, tile_cols=2
)
GRID = Grid(SPEC, np.ones((3, 3), dtype=bool))
HISTORY = np.arange(np.datetime64("2001-01"), np.datetime64("2023-12") + 1)
SCENARIO = np.arange(np.datetime64("2006-01"), np.datetime64("2100-12") + 1)
T_AIR_ANOMALY = ct.DYNAMIC_INPUTS.index("t_air_anomaly")


@keras.saving.register_keras_serializable(package="tests")
class TargetMonthAirAnomaly(keras.layers.Layer):
    """(batch, window, F) -> (batch, 4): the last month's input ``T_AIR_ANOMALY`` on every layer."""

    def call(self, x):
        return keras.ops.repeat(x[:, -1:, T_AIR_ANOMALY], 4, axis=1)


def _tile() -> ct.CellTile:
    tile = GRID.tile("r00c00")
    positions = GRID.positions(tile.cells)
    lat, lon = GRID.cell_lat[positions], GRID.cell_lon[positions]
    values = network_series(tile.cells, lat, HISTORY, seed=0)
    return ct.CellTile(TileSeries(tile.key, tile.cells, HISTORY, values, ct.CELL_VARIABLES), lat, lon)


def _inputs(tile: ct.CellTile, warming_k: float) -> UnitGrid:
    """The tile's drivers over SCENARIO, air and skin temperature ramping up by ``warming_k``."""
    values = network_series(tile.series.cells, tile.latitude, SCENARIO, seed=5).astype(np.float64)
    drivers = values[..., [ct.CELL_VARIABLES.index(name) for name in ct.DRIVERS]]
    ramp = (SCENARIO - SCENARIO[0]).astype(float) / (SCENARIO[-1] - SCENARIO[0]).astype(float)
    for name in ("t_air", "t_surface"):
        drivers[..., ct.DRIVERS.index(name)] += warming_k * ramp[:, None]
    return UnitGrid(SCENARIO, drivers, ct.DRIVERS, np.asarray(tile.series.cells))


@pytest.fixture(scope="module")
def network():
    tile = _tile()
    stats = ct.pooled_stats(ct.moments_frame(ct.shard_frame(tile), tile.key))
    x = keras.Input((ct.WINDOW, len(ct.DYNAMIC_INPUTS)), name="x")
    statics = keras.Input((len(ct.STATICS),), name="unit_features")
    model = keras.Model({"x": x, "unit_features": statics}, TargetMonthAirAnomaly()(x))
    return ct.CellNetwork(model, stats, ct.CellTrainingConfig())


@pytest.fixture(scope="module")
def frames(network):
    tile = _tile()
    return cp.network_frames(tile, {"rcp26": _inputs(tile, 1.0), "rcp85": _inputs(tile, 5.0)}, network)


def test_every_month_to_2100_is_projected_for_every_cell(frames):
    soil = frames["soil_temperature"]
    months = pl.date_range(catalog.PROJECTION_FIRST_MONTH, catalog.PROJECTION_LAST_MONTH, "1mo", eager=True)
    assert soil.columns == ["scenario", "cell", "month", *catalog.TARGETS]
    assert soil.height == 2 * 4 * len(months) == 2 * 4 * 924
    for (scenario, cell), rows in soil.group_by("scenario", "cell"):
        assert rows["month"].to_list() == months.to_list(), (scenario, cell)
    assert soil.select(pl.all_horizontal(pl.col(catalog.TARGETS).is_finite().all())).item()
    summary = frames["summary"]
    assert summary.height == 8 and set(summary["tile"]) == {"r00c00"}
    assert set(cp.NETWORK_SUMMARY_COLUMNS) <= set(summary.columns)


def test_the_target_months_anomaly_and_the_cells_climatology_come_back(network, frames):
    tile = _tile()
    history = tile.series.grid(ct.DRIVERS + catalog.TARGETS).values
    train = np.datetime64("2018-12") >= HISTORY
    calendar = HISTORY.astype(np.int64) % 12
    climatology = np.stack([history[train & (calendar == m)].mean(axis=0) for m in range(12)])  # (12, cell, V)
    inputs = _inputs(tile, 5.0)
    t_air = inputs.select(("t_air",))[..., 0]
    anomaly = t_air - climatology[inputs.calendar_month][..., ct.DRIVERS.index("t_air")]
    x_mean, x_std = network.stats.of(ct.DYNAMIC_INPUTS)
    y_mean, y_std = network.stats.of(ct.TARGET_ANOMALIES)
    projected = inputs.months >= np.datetime64("2024-01")
    standardised = (anomaly[projected] - x_mean[T_AIR_ANOMALY]) / x_std[T_AIR_ANOMALY]  # (T, cell)
    target = climatology[inputs.calendar_month[projected]][..., len(ct.DRIVERS) :]  # (T, cell, 4)
    expected = standardised[..., None] * y_std + y_mean + target
    soil = frames["soil_temperature"].filter(pl.col("scenario") == "rcp85").sort("cell", "month")
    got = soil.select(catalog.TARGETS).to_numpy().reshape(4, -1, 4).transpose(1, 0, 2)
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_the_summary_warms_more_under_more_forcing_and_leaves_the_training_range(network, frames):
    summary = frames["summary"].sort("scenario", "cell")
    low, high = (summary.filter(pl.col("scenario") == s) for s in ("rcp26", "rcp85"))
    # same weather, ramps 4 K apart by 2100: 2081-2100 minus 2024-2043 differs by 4 K x 684 months of the ramp,
    # through the pass-through network's scaling (target anomaly std / air-temperature anomaly std)
    x_std = network.stats.of(ct.DYNAMIC_INPUTS)[1][T_AIR_ANOMALY]
    y_std = network.stats.of(ct.TARGET_ANOMALIES)[1]
    for k in range(4):
        difference = high[f"warming_{k}"].to_numpy() - low[f"warming_{k}"].to_numpy()
        np.testing.assert_allclose(difference, 4.0 * 684 / (len(SCENARIO) - 1) * y_std[k] / x_std, rtol=1e-3)
    assert cp.rcps_ordered(summary) == dict.fromkeys(catalog.TARGETS, True)
    # 5 K by 2100 takes most late-century months past anything 2001-2018 held; 1 K does not
    assert (high["t_air_outside_training_range_share"] > 0.5).all()
    assert (low["t_air_outside_training_range_share"] < 0.5).all()
    core = summary.select("scenario", "cell", *(pl.col(f"warming_{k}") * 2 for k in range(4)))
    checks = cp.credibility(summary, core)
    assert checks["scenario"].to_list() == ["rcp26", "rcp85"]
    np.testing.assert_allclose(checks["correlation_0"].to_numpy(), 1.0)
    np.testing.assert_allclose(checks["core_warming_0_K"], 2 * checks["network_warming_0_K"])
    assert checks["cells_outside_training_range_share"].to_list()[1] == 1.0


def test_the_history_as_a_scenario_is_predicted_as_the_history_is(network):
    from ml.architectures import InputSpec
    from ml.training import build_for_precision

    keras.utils.set_random_seed(3)
    spec = InputSpec(n_features=len(ct.DYNAMIC_INPUTS), window=ct.WINDOW, n_units=1, unit_features=len(ct.STATICS))
    gru = ct.CellNetwork(
        build_for_precision("gru", spec, {"units": 4, "layers": 1, "dropout": 0.0}, "float32"),
        network.stats,
        ct.CellTrainingConfig(),
    )
    tile = _tile()
    history = tile.series.grid(ct.DRIVERS)
    first = HISTORY[ct.WINDOW - 1]
    projected, ranges = cp.project_cells(tile, {"history": history}, gru, first=first, last=HISTORY[-1])
    months, soil = projected["history"]
    assert months[0] == first and months[-1] == HISTORY[-1] and ranges[cp.RANGE_COLUMNS[0]].is_nan().all()
    predicted = ct.tile_predictions(tile, gru).sort("cell", "month")  # windows cut by the training's own code
    expected = predicted.select(catalog.TARGETS).to_numpy().reshape(4, len(months), 4).transpose(1, 0, 2)
    shard = ct.shard_frame(tile).filter(pl.col("month") >= first.astype("datetime64[D]").item()).sort("cell", "month")
    climatology = shard.select(ct.CLIMATOLOGY).to_numpy().reshape(4, len(months), 4).transpose(1, 0, 2)
    anomaly = expected - climatology  # the GRU's own part varies month to month: not a comparison of constants
    assert (anomaly.std(axis=0) > 1e-3).all()
    np.testing.assert_allclose(soil, expected, atol=1e-4)


def test_bad_scenario_input_names_the_tile_driver_cell_and_month(network):
    tile = _tile()
    inputs = _inputs(tile, 1.0)
    values = inputs.values.copy()
    t = int(np.argmax(inputs.months == np.datetime64("2050-03")))
    values[t, 2, ct.DRIVERS.index("r_solar")] = np.nan
    broken = UnitGrid(inputs.months, values, inputs.names, inputs.units)
    cell = int(tile.series.cells[2])
    with pytest.raises(ValueError, match=f"tile r00c00, rcp45 network drivers: r_solar is not finite in cell {cell}, "):
        cp.project_cells(tile, {"rcp45": broken}, network)
    late = inputs.months >= np.datetime64("2023-01")
    short = UnitGrid(inputs.months[late], inputs.values[late], inputs.names, inputs.units)
    with pytest.raises(ValueError, match="rcp45 network drivers: cover 2023-01..2100-12; .* need 2022-02..2100-12"):
        cp.project_cells(tile, {"rcp45": short}, network)
    bands = pl.DataFrame({"scenario": ["rcp45"], "band": [0], "month": [HISTORY[0].astype("datetime64[D]").item()]})
    with pytest.raises(ValueError, match="tile r00c00 bands"):
        cp.scenario_inputs(cp.CellProjectionTask(tile, bands, ""))
