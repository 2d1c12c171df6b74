"""The shared cell network (`ml.cell_training`) on a 3 x 3 grid of 9 cells in 4 tiles, 2001-2023:
shards, statistics from training years only, anomaly targets, the tf.data pipeline, a tiny GRU
that must beat the cells' climatology, and inference per tile serially and on dask workers."""

import pickle

import numpy as np
import polars as pl
import pytest
from synthetic_cells import network_series

from dagster_project import tile_engine
from ml import cell_training as ct
from ml.tiles import TileSeries
from sources import catalog
from sources.grid import Grid, GridSpec

SPEC = GridSpec(
    south=64.0, north=64.9, west=-150.0, east=-149.1, lat_step=0.3, lon_step=0.3, centred=True, tile_rows=2, tile_cols=2
)
GRID = Grid(SPEC, np.ones((3, 3), dtype=bool))
MONTHS = np.arange(np.datetime64("2001-01"), np.datetime64("2023-12") + 1)
TRAIN = np.datetime64("2018-12") >= MONTHS
TINY = ct.CellTrainingConfig(
    architecture="gru",
    epochs=6,
    batch_size=64,
    learning_rate=1e-2,
    patience=6,
    shuffle_buffer=512,
    hyperparameters={"units": 8, "layers": 1, "dropout": 0.0},
)


def _tile(key: str, seed: int = 0, values=None) -> ct.CellTile:
    tile = GRID.tile(key)
    positions = GRID.positions(tile.cells)
    lat, lon = GRID.cell_lat[positions], GRID.cell_lon[positions]
    values = network_series(tile.cells, lat, MONTHS, seed) if values is None else values
    return ct.CellTile(TileSeries(key, tile.cells, MONTHS, values, ct.CELL_VARIABLES), lat, lon)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    paths, moments, tiles = [], [], {}
    for tile in GRID.tiles:
        tiles[tile.key] = _tile(tile.key)
        frames = ct.tile_shard_frames(tiles[tile.key])
        frames["rows"].write_parquet(folder / f"{tile.key}.parquet")
        paths.append(folder / f"{tile.key}.parquet")
        moments.append(frames["moments"])
    return {"paths": paths, "stats": ct.pooled_stats(pl.concat(moments)), "tiles": tiles, "folder": folder}


@pytest.fixture(scope="module")
def network(shards):
    return ct.train_cell_network(shards["paths"], shards["stats"], TINY)


def test_a_shard_round_trips_and_its_windows_are_the_tiles_months(shards):
    tile = shards["tiles"]["r00c00"]
    frame = ct.shard_frame(tile)
    read = ct.read_shard(shards["paths"][0])
    assert read.equals(frame) and read.columns == list(ct.SHARD_COLUMNS)
    assert read.height == len(MONTHS) * len(tile.series.cells)
    blocks = list(ct.cell_windows(read, shards["stats"]))
    assert [b.cell for b in blocks] == tile.series.cells.tolist()
    first = blocks[0]
    assert first.x.shape == (len(MONTHS) - 23, ct.WINDOW, len(ct.DYNAMIC_INPUTS))
    assert first.s.shape[1] == len(ct.STATICS)
    assert first.target_month[0] == MONTHS[23] and first.target_month[-1] == MONTHS[-1]
    # window 5 holds months 5..28 of the cell's t_air, standardised; its target is month 28's
    mean, std = shards["stats"].of(["t_air"])
    raw = tile.series.values[5:29, 0, ct.CELL_VARIABLES.index("t_air")]
    assert np.allclose(first.x[5, :, ct.DYNAMIC_INPUTS.index("t_air")], (raw - mean) / std, atol=1e-5)
    assert np.allclose(first.observed[5], tile.series.values[28, 0, -4:], atol=1e-4)
    statics = np.asarray(read.filter(pl.col("cell") == first.cell).select(ct.STATICS).row(0), dtype=np.float32)
    mean, std = shards["stats"].of(ct.STATICS)
    assert np.allclose(first.s, (statics - mean) / std, atol=1e-6)


def test_standardisation_uses_training_years_only(shards):
    tile = shards["tiles"]["r00c01"]
    changed = tile.series.values.copy()
    changed[~TRAIN] += 50.0  # a hot future in every variable
    other = _tile("r00c01", values=changed)
    before, after = ct.tile_shard_frames(tile), ct.tile_shard_frames(other)
    assert before["moments"].equals(after["moments"])
    train = pl.col("month") <= np.datetime64("2018-12-01").item()
    assert before["rows"].filter(train).equals(after["rows"].filter(train))
    assert not before["rows"].equals(after["rows"])
    # pooled over the tiles = computed at once over every tile's training rows (each cell-month once)
    rows = pl.concat(pl.read_parquet(p) for p in shards["paths"]).filter(train)
    stats = shards["stats"]
    for name in ("t_air", "r_thermal", "t_air_anomaly", "month_sin", "t_soil_3_anomaly"):
        values = rows[name].to_numpy().astype(np.float64)
        assert np.isclose(stats.mean[stats.names.index(name)], values.mean(), rtol=1e-6, atol=1e-6), name
        assert np.isclose(stats.std[stats.names.index(name)], values.std(), rtol=1e-5), name
    assert stats.count[stats.names.index("t_air")] == TRAIN.sum() * GRID.cells.size
    assert stats.count[stats.names.index("latitude")] == GRID.cells.size
    assert np.isclose(stats.std[stats.names.index("latitude")], np.std(GRID.cell_lat), rtol=1e-5)


def test_anomaly_targets_invert_to_the_soil_temperatures(shards):
    tile = shards["tiles"]["r01c00"]
    frame = ct.shard_frame(tile)
    for c, cell in enumerate(tile.series.cells):
        rows = frame.filter(pl.col("cell") == int(cell))
        for k, name in enumerate(catalog.TARGETS):
            observed = tile.series.values[:, c, ct.CELL_VARIABLES.index(name)]
            anomaly, climatology = rows[f"{name}_anomaly"].to_numpy(), rows[f"{name}_climatology"].to_numpy()
            assert np.allclose(anomaly + climatology, observed, atol=2e-5), (cell, name)
            # the climatology is the training-years mean of each calendar month
            january = observed[TRAIN & (MONTHS.astype(int) % 12 == 0)].mean()
            assert np.isclose(climatology[0], january, atol=1e-4) and np.isclose(climatology[12], january, atol=1e-4)
            assert abs(anomaly[TRAIN].mean()) < 1e-4, (cell, k)


def test_the_pipeline_yields_every_window_once_per_epoch(shards):
    expected = ct.window_count(shards["paths"], None, ct.TRAIN_LAST)
    assert expected == GRID.cells.size * (TRAIN.sum() - 23)
    dataset = ct.window_dataset(
        shards["paths"], shards["stats"], None, ct.TRAIN_LAST, batch_size=50, shuffle_buffer=300, with_cells=True
    )
    epochs = []
    for _ in range(2):
        seen = []
        for features, y in dataset:
            assert features["x"].shape[1:] == (ct.WINDOW, len(ct.DYNAMIC_INPUTS)) and y.shape[1] == 4
            seen += list(zip(features["cell"].numpy().tolist(), features["target_month"].numpy().tolist(), strict=True))
        epochs.append(seen)
    for seen in epochs:
        assert len(seen) == len(set(seen)) == expected
        assert max(month for _, month in seen) == ct.TRAIN_LAST.astype(np.int64)
    assert set(epochs[0]) == set(epochs[1]) and epochs[0] != epochs[1]  # reshuffled, same windows


def test_a_tiny_network_beats_the_climatology_on_a_learnable_signal(network, shards):
    scores = ct.held_out_scores(network, shards["paths"])
    assert scores["windows"][0] == GRID.cells.size * 60  # 2019-2023
    assert (scores["climatology_rmse_K"] > 0.1).all()
    assert (scores["ratio"] < 0.8).all(), scores
    assert network.windows["validation"] == GRID.cells.size * 24 and network.device in ("cpu", "gpu")


def test_inference_on_workers_equals_inference_here_and_the_held_out_scores(network, shards, tmp_path):
    folder = tmp_path / "network"
    ct.save_cell_network(network, folder)
    tasks = {key: ct.CellInferenceTask(tile, str(folder)) for key, tile in shards["tiles"].items()}
    pickle.loads(pickle.dumps(tasks))  # what a process worker receives
    targets = {key: {"predictions": tmp_path / "here" / f"{key}.parquet"} for key in tasks}
    tile_engine.map_tiles(ct.tile_network_frames, tasks, targets)
    from distributed import Client, LocalCluster

    elsewhere = {key: {"predictions": tmp_path / "workers" / f"{key}.parquet"} for key in tasks}
    # thread workers: the task and kernel are the same, without a TensorFlow import per process
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster, Client(cluster) as client:
        tile_engine.map_tiles(ct.tile_network_frames, tasks, elsewhere, client=client)
    here = pl.concat(pl.read_parquet(t["predictions"]) for t in targets.values())
    workers = pl.concat(pl.read_parquet(t["predictions"]) for t in elsewhere.values())
    assert here.equals(workers)
    assert here.height == GRID.cells.size * (len(MONTHS) - 23)
    test = here.filter(pl.col("split") == "test")
    scores = ct.held_out_scores(network, shards["paths"])
    for k, name in enumerate(catalog.TARGETS):
        rmse = np.sqrt(((test[name] - test[f"observed_{name}"]) ** 2).mean())
        assert np.isclose(rmse, scores["network_rmse_K"][k], rtol=1e-3), name
    # the saved network predicts as the trained one
    loaded = ct.load_cell_network(folder)
    assert ct.tile_predictions(shards["tiles"]["r00c00"], loaded).equals(
        ct.tile_predictions(shards["tiles"]["r00c00"], network)
    )


def test_bad_input_names_the_file_variable_cell_and_month(shards, tmp_path):
    values = shards["tiles"]["r01c01"].series.values.copy()
    values[30, 0, ct.CELL_VARIABLES.index("p_total")] = np.nan
    cell = int(GRID.tile("r01c01").cells[0])
    with pytest.raises(ValueError, match=rf"tile r01c01: p_total is not finite in cell {cell}, month 2003-07"):
        ct.tile_shard_frames(_tile("r01c01", values=values))
    gap = pl.read_parquet(shards["paths"][0]).filter(pl.col("month") != np.datetime64("2005-03-01").item())
    path = tmp_path / "gap.parquet"
    gap.write_parquet(path)
    first = int(GRID.tile("r00c00").cells[0])
    with pytest.raises(ValueError, match=rf"gap.parquet: cell {first}: months jump from 2005-02 to 2005-04"):
        next(ct.cell_windows(ct.read_shard(path), shards["stats"], source=f"shard {path}"))


def test_the_workers_load_the_network_from_a_lake_on_an_object_store(
    network, shards, s3_root, s3_endpoint, monkeypatch
):
    """The network saved in a bucket (moto's S3 server) as the cell_network asset saves it (one
    object-store batch); the kernel's tiles, their outputs uploaded to the bucket too, predict what
    the network predicts from a local folder."""
    from dagster_project import lake

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # a worker's own configuration: the URL carries none
    with lake.atomic_batch(s3_root) as batch:
        folder = batch.folder(s3_root / "grid/networks/cell_network", lambda tmp: ct.save_cell_network(network, tmp))
    location = f"s3://{folder.path}"
    key = sorted(shards["tiles"])[0]
    tasks = {key: ct.CellInferenceTask(shards["tiles"][key], location)}
    target = s3_root / "grid/networks/history" / f"{key}.parquet"
    tile_engine.map_tiles(ct.tile_network_frames, tasks, {key: {"predictions": target}}, root=s3_root)
    expected = ct.tile_predictions(shards["tiles"][key], network)
    assert lake.read_parquet(target).equals(expected)
    assert ct.network_at(location) is ct.network_at(location)  # loaded once per saved version
    with pytest.raises(FileNotFoundError, match="lacks model.keras: materialize cell_network"):
        ct.network_at(f"s3://{s3_root.path}/grid/networks/none")
