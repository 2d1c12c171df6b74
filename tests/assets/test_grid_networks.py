"""Grid mode's networks (`assets.grid_networks`) on a 3 x 3 grid of 7 land cells in 3 tiles,
2001-2023: shards per tile, the shared network, its inference per tile with a warehouse view, its
projections under two RCPs for one tile and a two-tile backfill; a tile that fails lands nothing.
The history mart and the scenario mart's band scenarios are written here (synthetic,
`synthetic_cells`)."""

import duckdb
import numpy as np
import polars as pl
import pytest
from dagster import DagsterInstance, materialize
from synthetic_cells import network_series

from assets.grid_networks import grid_network_assets
from dagster_project import lake
from dagster_project.dask_engine import DaskResource
from dagster_project.resources import LakeResource, WarehouseResource
from ml.cell_projection import BAND_VARIABLES, NETWORK_SUMMARY_COLUMNS
from ml.cell_training import CELL_VARIABLES
from ml.regrid import BAND_CENTROID_LATITUDES
from ml.tile_projection import WARMING
from sources import catalog
from sources.grid import Grid, GridSpec

SPEC = GridSpec(
    south=64.0, north=64.9, west=-150.0, east=-149.1, lat_step=0.3, lon_step=0.3, centred=True, tile_rows=2, tile_cols=2
)
LAND = np.array([[True, True, True], [True, True, True], [True, False, False]])
GRID = Grid(SPEC, LAND)
MONTHS = np.arange(np.datetime64("2001-01"), np.datetime64("2023-12") + 1)
SCENARIO = np.arange(np.datetime64("2001-01"), np.datetime64("2100-12") + 1)
WARMING_K = {"rcp85": 5.0}  # the bands' air and skin temperature by 2100 (one RCP: the correction takes seconds)
CONFIG = {"ops": {"cell_network": {"config": {"epochs": 2, "batch_size": 128, "units": 4, "shuffle_buffer": 256}}}}


def _write_history(warehouse, short_tile: str | None = None) -> None:
    """The history mart; ``short_tile``'s cells only for 2001-01..2001-06 (its kernel fails: no
    climatology for July to December)."""
    values = network_series(GRID.cells, GRID.cell_lat, MONTHS).astype(np.float64)
    n_months, n_cells = values.shape[:2]
    frame = pl.DataFrame(
        {
            "unit": np.tile(GRID.cells, n_months),
            "month": pl.Series(np.repeat(MONTHS.astype("datetime64[D]"), n_cells)).cast(pl.Date),
            **{name: values[..., k].ravel() for k, name in enumerate(CELL_VARIABLES)},
        }
    )
    if short_tile is not None:
        cells = GRID.tile(short_tile).cells.tolist()
        frame = frame.filter(~pl.col("unit").is_in(cells) | (pl.col("month") < np.datetime64("2001-07-01").item()))
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema marts")
        con.register("history", frame.to_arrow())
        con.execute("create table marts.fct_band_month_features as select * from history")


def _write_scenarios(warehouse) -> None:
    """The scenario mart: each RCP per band (the same weather), air and skin temperature ramping up
    by WARMING_K from 2006, the column water the layers' total."""
    values = network_series(np.arange(catalog.N_BANDS), BAND_CENTROID_LATITUDES, SCENARIO, seed=1).astype(np.float64)
    columns = {name: values[..., CELL_VARIABLES.index(name)] for name in BAND_VARIABLES[:-1]}
    thickness = np.asarray(catalog.SOIL_LAYER_THICKNESS_M)
    columns["soil_water_total_kg_m2"] = sum(columns[f"w_{k}"] * thickness[k] * 1000.0 for k in range(4))
    ramp = np.clip((SCENARIO - np.datetime64("2006-01")).astype(float) / (12 * 95), 0.0, None)[:, None]
    parts = []
    for scenario, warming in WARMING_K.items():
        warmed = columns | {name: columns[name] + warming * ramp for name in ("t_air", "t_surface")}
        parts.append(
            pl.DataFrame(
                {
                    "scenario": scenario,
                    "band": np.tile(np.arange(catalog.N_BANDS), len(SCENARIO)),
                    "month": pl.Series(np.repeat(SCENARIO.astype("datetime64[D]"), catalog.N_BANDS)).cast(pl.Date),
                    **{name: warmed[name].ravel() for name in BAND_VARIABLES},
                }
            )
        )
    with duckdb.connect(str(warehouse)) as con:
        con.register("scenarios", pl.concat(parts).to_arrow())
        con.execute("create table marts.fct_scenario_band_month_features as select * from scenarios")


def _resources(root, warehouse):
    return {
        "lake": LakeResource(root=str(root)),
        "warehouse": WarehouseResource(path=str(warehouse)),
        "dask": DaskResource(serial=True),
    }


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    root = tmp_path_factory.mktemp("networks") / "data"
    root.mkdir()
    warehouse = root / "warehouse.duckdb"
    _write_history(warehouse)
    assets = grid_network_assets(GRID)
    instance = DagsterInstance.ephemeral()
    resources = _resources(root, warehouse)
    keys = [t.key for t in GRID.tiles]
    tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
    shards = materialize(assets, selection=["tile_training_shards"], resources=resources, instance=instance, tags=tags)
    network = materialize(assets, selection=["cell_network"], resources=resources, instance=instance, run_config=CONFIG)
    history = materialize(assets, selection=["tile_network_history"], resources=resources, instance=instance, tags=tags)
    return {
        "root": root,
        "warehouse": warehouse,
        "shards": shards,
        "network": network,
        "history": history,
        "assets": assets,
        "instance": instance,
    }


@pytest.fixture(scope="module")
def projections(flow):
    """The network's projections for tile r00c00 alone, beside a core summary written here (each
    cell's warming its id / 10 K, twice that in the deepest layer); then r00c01..r01c00 in one
    backfill run, which have no core summary."""
    _write_scenarios(flow["warehouse"])
    layout = lake.LakeLayout(flow["root"])
    cells = GRID.tile("r00c00").cells
    core = pl.DataFrame({"scenario": "rcp85", "cell": cells, **{name: cells / 10.0 for name in WARMING}})
    core = core.with_columns(pl.col(WARMING[-1]) * 2)
    layout.tile_projections("r00c00").summary.parent.mkdir(parents=True)
    core.write_parquet(layout.tile_projections("r00c00").summary)
    resources = _resources(flow["root"], flow["warehouse"])
    select = {"selection": ["tile_network_projections"], "resources": resources, "instance": flow["instance"]}
    one = materialize(flow["assets"], partition_key="r00c00", **select)
    tags = {"dagster/asset_partition_range_start": "r00c01", "dagster/asset_partition_range_end": "r01c00"}
    backfill = materialize(flow["assets"], tags=tags, **select)
    return {"one": one, "backfill": backfill, "layout": layout, "core_mean": cells.mean() / 10.0}


def test_the_shards_land_per_tile(flow):
    assert flow["shards"].success
    layout = lake.LakeLayout(flow["root"])
    events = flow["shards"].get_asset_materialization_events()
    assert sorted(e.materialization.partition for e in events) == [t.key for t in GRID.tiles]
    for tile in GRID.tiles:
        rows = pl.read_parquet(layout.tile_training_shards(tile.key).rows)
        assert rows["cell"].unique().sort().to_list() == tile.cells.tolist()
        assert rows.height == tile.cells.size * len(MONTHS)
        moments = pl.read_parquet(layout.tile_training_shards(tile.key).moments)
        assert set(moments["tile"]) == {tile.key} and (moments["count"] > 0).all()


def test_the_network_reports_held_out_scores_beside_climatology(flow):
    assert flow["network"].success
    metadata = flow["network"].asset_materializations_for_node("cell_network")[0].metadata
    assert metadata["architecture"].value == "gru" and metadata["hyperparameters"].value["units"] == 4
    assert metadata["test_windows"].value == GRID.cells.size * 60
    assert metadata["fit_windows"].value == GRID.cells.size * (12 * 16 - 23)  # 2002-12..2016-12
    assert "climatology_rmse_K" in metadata["held_out_2019_2023"].value
    assert all(metadata[f"rmse_ratio_t_soil_{k}"].value > 0 for k in range(4))
    folder = lake.LakeLayout(flow["root"]).cell_network()
    assert sorted(p.name for p in folder.iterdir()) == ["cell_stats.json", "model.keras", "training.json"]


def test_the_history_is_predicted_per_cell_and_month_with_a_view(flow):
    assert flow["history"].success
    metadata = flow["history"].asset_materializations_for_node("tile_network_history")[0].metadata
    assert metadata["predictions"].value == GRID.cells.size * (len(MONTHS) - 23)
    assert metadata["warehouse_views"].value == "maps.cell_network_history"
    with duckdb.connect(str(flow["warehouse"]), read_only=True) as con:
        rows = con.execute(
            "select split, count(*), count(distinct cell) from maps.cell_network_history group by split order by split"
        ).fetchall()
    assert rows == [("test", GRID.cells.size * 60, 7), ("train", GRID.cells.size * (len(MONTHS) - 23 - 60), 7)]


def test_the_projections_land_per_tile_beside_the_cores_warming(flow, projections):
    assert projections["one"].success and projections["backfill"].success
    layout = projections["layout"]
    months = 12 * (2100 - 2024 + 1)
    for tile in GRID.tiles:
        soil = pl.read_parquet(layout.tile_network_projections(tile.key).soil_temperature)
        assert soil.height == len(WARMING_K) * tile.cells.size * months
        assert soil["month"].min().isoformat() == "2024-01-01" and soil["month"].max().isoformat() == "2100-12-01"
        summary = pl.read_parquet(layout.tile_network_projections(tile.key).summary)
        assert summary["cell"].unique().sort().to_list() == tile.cells.tolist()
        assert set(NETWORK_SUMMARY_COLUMNS) <= set(summary.columns) and set(summary["tile"]) == {tile.key}
    backfill = projections["backfill"].get_asset_materialization_events()
    assert sorted(e.materialization.partition for e in backfill) == ["r00c01", "r01c00"]
    metadata = projections["backfill"].asset_materializations_for_node("tile_network_projections")[0].metadata
    assert metadata["tiles"].value == 2 and metadata["cells"].value == 3 and metadata["scenarios"].value == "rcp85"
    assert metadata["tiles_without_core_projections"].value == ["r00c01", "r01c00"]
    assert metadata["months"].value == "2024-01..2100-12"
    views = "maps.cell_network_projections, maps.cell_network_soil_temperature"
    assert metadata["warehouse_views"].value == views
    # r00c00's metadata sets the network's mean warming beside the core's summary of the same cells
    beside = projections["one"].asset_materializations_for_node("tile_network_projections")[0].metadata
    assert beside["tiles_without_core_projections"].value == []
    header, _, *rows = (line.strip("| ").split(" | ") for line in beside["network_beside_core"].value.splitlines())
    table = {row[0].strip(): dict(zip([h.strip() for h in header], row, strict=True)) for row in rows}
    assert float(table["rcp85"]["core_warming_0_K"]) == pytest.approx(projections["core_mean"], abs=1e-3)
    assert float(table["rcp85"]["core_warming_3_K"]) == pytest.approx(2 * projections["core_mean"], abs=1e-3)
    assert abs(float(table["rcp85"]["network_warming_0_K"])) < 10 and int(table["rcp85"]["cells"]) == 4
    with duckdb.connect(str(flow["warehouse"]), read_only=True) as con:
        rows = con.execute(
            "select scenario, count(distinct cell), avg(warming_0) from maps.cell_network_projections "
            "group by scenario order by scenario"
        ).fetchall()
        monthly = con.execute("select count(*) from maps.cell_network_soil_temperature").fetchone()[0]
    assert [(s, n) for s, n, _ in rows] == [("rcp85", 7)] and np.isfinite(rows[0][2])
    assert monthly == len(WARMING_K) * GRID.cells.size * months


def test_a_failing_tile_lands_nothing(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    warehouse = root / "warehouse.duckdb"
    _write_history(warehouse, short_tile="r01c00")
    keys = [t.key for t in GRID.tiles]
    tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
    result = materialize(
        grid_network_assets(GRID),
        selection=["tile_training_shards"],
        resources=_resources(root, warehouse),
        tags=tags,
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "1 of 3 tile(s) failed, nothing landed; tile r01c00" in message
    assert "no training month is a calendar month 7" in message
    assert not [p for p in root.rglob("*") if p.is_file() and p.name != "warehouse.duckdb"]
