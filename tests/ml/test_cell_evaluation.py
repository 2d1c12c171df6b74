"""The cell network's evaluation (`ml.cell_evaluation`) on a 6 x 6 grid of 36 cells in 9 tiles
(3 rows of tiles), 2001-2023: the split of tiles, statistics from the training tiles only, the
ridge and persistence baselines, the borrowed climatology, the summary over seeds and one tiny
evaluation end to end."""

import numpy as np
import polars as pl
import pytest
from synthetic_cells import network_series

from ml import cell_evaluation as ce
from ml import cell_training as ct
from ml.tiles import TileSeries
from sources.grid import Grid, GridSpec

SPEC = GridSpec(
    south=64.0, north=65.8, west=-150.0, east=-148.2, lat_step=0.3, lon_step=0.3, centred=True, tile_rows=2, tile_cols=2
)
GRID = Grid(SPEC, np.ones((6, 6), dtype=bool))
MONTHS = np.arange(np.datetime64("2001-01"), np.datetime64("2023-12") + 1)
DEMO_KEYS = [f"r{r:02d}c{c:02d}" for r in range(4) for c in range(5)]  # the demo grid's 4 x 5 tiles
TINY = ct.CellTrainingConfig(
    epochs=1, batch_size=256, learning_rate=1e-2, patience=1, shuffle_buffer=256, validation_months=24
)


def _tile(key: str, values=None) -> ct.CellTile:
    tile = GRID.tile(key)
    positions = GRID.positions(tile.cells)
    lat, lon = GRID.cell_lat[positions], GRID.cell_lon[positions]
    values = network_series(tile.cells, lat, MONTHS) if values is None else values
    return ct.CellTile(TileSeries(key, tile.cells, MONTHS, values, ct.CELL_VARIABLES), lat, lon)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    files, moments = {}, {}
    for tile in GRID.tiles:
        frames = ct.tile_shard_frames(_tile(tile.key))
        rows, moment = folder / f"{tile.key}.parquet", folder / f"{tile.key}_moments.parquet"
        frames["rows"].write_parquet(rows)
        frames["moments"].write_parquet(moment)
        files[tile.key] = (rows, moment)
        moments[tile.key] = frames["moments"]
    return {"files": files, "moments": moments, "split": ce.tile_split(files)}


def test_the_split_of_tiles_is_deterministic_disjoint_complete_and_spread_over_rows():
    split = ce.tile_split(DEMO_KEYS)
    assert split == ce.tile_split(list(reversed(DEMO_KEYS)))  # same keys, same split
    assert not set(split.train) & set(split.held_out)
    assert sorted(split.train + split.held_out) == sorted(DEMO_KEYS)
    assert len(split.held_out) == 5  # a quarter of 20
    rows = [ce.tile_row(key) for key in split.held_out]
    assert sorted(set(rows)) == [0, 1, 2, 3]  # every latitude row gives one tile at least
    others = {ce.tile_split(DEMO_KEYS, seed=seed).held_out for seed in range(6)}
    assert len(others) > 1  # the seed decides which tiles
    assert len(ce.tile_split(DEMO_KEYS, fraction=0.5).held_out) == 10
    assert len(ce.tile_split(["r00c00", "r00c01"], fraction=0.9).train) == 1  # never every tile
    subset = ce.spread_pick(DEMO_KEYS, 12)
    assert [sum(ce.tile_row(k) == r for k in subset) for r in range(4)] == [3, 3, 3, 3]
    with pytest.raises(ValueError, match="2 tiles at least"):
        ce.tile_split(["r00c00"])


def test_statistics_come_from_the_training_tiles_only(shards):
    split, moments = shards["split"], shards["moments"]
    assert len(split.held_out) == 2 and len(split.train) == 7
    stats = ce.training_stats(moments, split)
    # the same as pooling the training tiles' moments alone, and as computing over their rows
    alone = ct.pooled_stats(pl.concat(moments[k] for k in split.train))
    assert np.array_equal(stats.mean, alone.mean) and np.array_equal(stats.std, alone.std)
    train = pl.col("month") <= np.datetime64("2018-12-01").item()
    rows = pl.concat(pl.read_parquet(shards["files"][k][0]) for k in split.train).filter(train)
    for name in ("t_air", "t_surface_anomaly", "t_soil_2_anomaly"):
        assert np.isclose(stats.mean[stats.names.index(name)], rows[name].to_numpy().astype(float).mean(), atol=1e-5)
    assert stats.count[stats.names.index("latitude")] == 4 * len(split.train)
    # a hot held-out tile changes nothing; pooled over every tile it would
    key = split.held_out[0]
    hot = _tile(key).series.values + 30.0
    changed = dict(moments) | {key: ct.tile_shard_frames(_tile(key, hot))["moments"]}
    again = ce.training_stats(changed, split)
    assert np.array_equal(again.mean, stats.mean) and np.array_equal(again.std, stats.std)
    everything = ct.pooled_stats(pl.concat(changed.values()))
    assert everything.mean[everything.names.index("t_air")] > stats.mean[stats.names.index("t_air")] + 3.0
    with pytest.raises(ValueError, match="missing"):
        ce.training_stats({k: moments[k] for k in split.train[1:]}, split)


def test_the_ridge_sums_recover_a_known_linear_relation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 5)) * [1.0, 2.0, 0.5, 1.0, 3.0] + [0.0, 1.0, -2.0, 0.0, 5.0]
    coef = rng.normal(size=(5, 2))
    intercept = np.array([1.5, -0.7])
    y = x @ coef + intercept + rng.normal(scale=0.01, size=(3000, 2))
    sums = ce.RidgeSums().add(x[:1000], y[:1000]) + ce.RidgeSums().add(x[1000:], y[1000:])
    assert sums.n == 3000
    fitted, offset = sums.solve(1e-6)
    assert np.allclose(fitted, coef, atol=2e-3) and np.allclose(offset, intercept, atol=2e-3)
    # the squared error from the sums is the squared error of the rows
    direct = ((y - x @ fitted - offset) ** 2).sum(axis=0)
    assert np.allclose(sums.squared_error(fitted, offset), direct, rtol=1e-6)
    # a large alpha shrinks the coefficients towards 0, the intercept to the mean
    shrunk, mean = sums.solve(1e9)
    assert np.abs(shrunk).max() < 1e-3 and np.allclose(mean, y.mean(axis=0) - x.mean(axis=0) @ shrunk)


def test_the_ridge_on_the_shards_learns_the_linear_soil_anomaly_and_persistence_reads_last_month(shards):
    # the synthetic soil's anomaly is 0.2 x the surface's, a linear relation the ridge must find
    split, files = shards["split"], shards["files"]
    stats = ce.training_stats(shards["moments"], split)
    ridge = ce.fit_cell_ridge([files[k][0] for k in split.train], stats, lags=2)
    assert ridge.alpha in ce.RIDGE_ALPHAS and len(ridge.validation_rmse) == len(ce.RIDGE_ALPHAS)
    windows = ce.region_windows(files[split.held_out[0]][0], stats, ct.TEST_FIRST, ct.TEST_LAST)
    assert len(windows) == 4 * 60 and windows.target_month.min() == ct.TEST_FIRST
    mean, std = stats.of(ct.TARGET_ANOMALIES)
    predicted = ridge.predict(windows.x, windows.s) * std + mean
    rmse = np.sqrt(((predicted - windows.anomaly) ** 2).mean(axis=0))
    climatology = np.sqrt((windows.anomaly**2).mean(axis=0))
    assert (climatology > 0.1).all() and (rmse / climatology < 0.05).all(), rmse / climatology
    # persistence: the anomaly of the month before each target month
    shard = pl.read_parquet(files[split.held_out[0]][0])
    cell, month = int(windows.cell[0]), windows.target_month[0] - 1
    row = shard.filter((pl.col("cell") == cell) & (pl.col("month") == month.astype("datetime64[D]").item()))
    assert np.allclose(windows.previous[0], row.select(ct.TARGET_ANOMALIES).to_numpy()[0])
    assert not np.allclose(windows.previous[0], windows.anomaly[0])


def test_a_borrowed_climatology_is_the_mean_of_the_nearest_cells():
    source = ce.CellClimatology(
        cell=np.array([1, 2, 3]),
        latitude=np.array([64.0, 64.0, 66.0]),
        longitude=np.array([-150.0, -149.0, -150.0]),
        climatology=np.arange(3 * 12 * 4, dtype=float).reshape(3, 12, 4),
    )
    one = ce.borrowed_climatology(np.array([64.1, 65.9]), np.array([-150.1, -150.0]), source, neighbours=1)
    assert np.array_equal(one[0], source.climatology[0]) and np.array_equal(one[1], source.climatology[2])
    two = ce.borrowed_climatology(np.array([64.0]), np.array([-149.4]), source, neighbours=2)
    assert np.allclose(two[0], source.climatology[:2].mean(axis=0))


def test_a_regressed_climatology_recovers_a_linear_dependence_on_the_features():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(80, 6)) * 3.0 + 10.0
    weights, offset = rng.normal(size=(6, 48)), rng.normal(size=48)
    truth = (features @ weights + offset).reshape(80, 12, 4)
    source = ce.CellClimatology(
        cell=np.arange(60),
        latitude=np.zeros(60),
        longitude=np.zeros(60),
        climatology=truth[:60],
        features=features[:60],
        group=np.repeat(np.arange(6), 10),
    )
    predicted, alpha = ce.regressed_climatology(features[60:], source)
    assert alpha == min(ce.RIDGE_ALPHAS)  # exact linear data: the least shrinkage wins out of tile
    assert np.abs(predicted - truth[60:]).max() < 0.05 * np.abs(truth[60:]).mean()
    # a constant target is predicted as that constant, whatever the features
    flat = ce.CellClimatology(
        source.cell, source.latitude, source.longitude, np.ones((60, 12, 4)), source.features, source.group
    )
    assert np.allclose(ce.regressed_climatology(features[60:], flat)[0], 1.0)


def test_the_summary_over_seeds_has_the_mean_sample_sd_and_range():
    ratios = {"gru": [0.4, 0.5, 0.9], "tcn": [0.7, 0.6, 0.8]}
    rows = [
        {
            "region": "years",
            "reference": "own",
            "model": m,
            "seed": s,
            "layer": "t_soil_0",
            "rmse_K": r * 2.0,
            "reference_rmse_K": 2.0,
            "ratio": r,
            "windows": 10,
        }
        for m, values in ratios.items()
        for s, r in enumerate(values)
    ]
    rows.append(
        {"region": "years", "reference": "own", "model": "ridge", "seed": None, "layer": "t_soil_0", "rmse_K": 1.6,
         "reference_rmse_K": 2.0, "ratio": 0.8, "windows": 10}
    )  # fmt: skip
    summary = ce.summarise(pl.DataFrame(rows))
    for model, values in ratios.items():
        row = summary.filter(pl.col("model") == model).row(0, named=True)
        assert row["seeds"] == 3
        assert np.isclose(row["ratio_mean"], np.mean(values)) and np.isclose(row["ratio_sd"], np.std(values, ddof=1))
        assert row["ratio_min"] == min(values) and row["ratio_max"] == max(values)
        assert np.isclose(row["rmse_sd_K"], np.std(np.multiply(values, 2.0), ddof=1))
    ridge = summary.filter(pl.col("model") == "ridge").row(0, named=True)
    assert ridge["seeds"] == 1 and ridge["ratio_sd"] is None
    table = ce.summary_table(summary, "years", models=["ridge", "gru"])
    assert "| ridge | 0.800 (1.600 K) |" in table
    gru = f"{np.mean(ratios['gru']):.3f} ± {np.std(ratios['gru'], ddof=1):.3f} [0.400-0.900]"
    assert f"| gru | {gru} |" in table


def test_an_evaluation_scores_every_region_model_and_seed(shards):
    config = ce.EvaluationConfig(
        architectures=("gru",),
        seeds=(0, 1),
        training=TINY,
        units=4,
        ridge_lags=2,
        neighbours=1,
        keep_networks=True,
    )
    result = ce.evaluate_cells(shards["files"], config)
    assert result.split == shards["split"]
    scores, summary = result.scores, result.summary
    n_train, n_held = 4 * len(result.split.train), 4 * len(result.split.held_out)
    tiles = n_held * int((ct.TRAIN_LAST - MONTHS[23]).astype(int) + 1)  # target months 2002-12..2018-12
    windows = {"years": n_train * 60, "tiles": tiles, "tiles_years": n_held * 60}
    for region, n in windows.items():
        own = summary.filter((pl.col("region") == region) & (pl.col("reference") == "own"))
        assert set(own["model"]) == {"climatology", "persistence", "ridge", "gru"}
        assert (own["windows"] == n).all(), region
        assert own.filter(pl.col("model") == "gru")["seeds"].to_list() == [2] * 4
        assert np.allclose(own.filter(pl.col("model") == "climatology")["ratio_mean"], 1.0)
        borrowed = summary.filter((pl.col("region") == region) & (pl.col("reference") == "borrowed"))
        if region == "years":
            assert borrowed.is_empty()
            continue
        assert set(borrowed["model"]) == {"borrowed_climatology", "ridge", "gru"}
        regressed = summary.filter((pl.col("region") == region) & (pl.col("reference") == "regressed"))
        assert set(regressed["model"]) == {"regressed_climatology", "ridge", "gru"}
    # the borrowed climatology of 2019-2023: each held-out cell's nearest training cell's own
    borrowed = summary.filter((pl.col("model") == "borrowed_climatology") & (pl.col("region") == "tiles_years"))
    train = pl.concat(pl.read_parquet(shards["files"][k][0]) for k in result.split.train).sort("cell", "month")
    cells = train.group_by("cell", maintain_order=True).agg(pl.col("latitude", "longitude").first())
    source_lat, source_lon = (cells[c].to_numpy().astype(np.float64) for c in ("latitude", "longitude"))
    squared, n = np.zeros(4), 0
    test = pl.col("month") >= ct.TEST_FIRST.astype("datetime64[D]").item()
    for key in result.split.held_out:
        for _, rows in pl.read_parquet(shards["files"][key][0]).filter(test).group_by("cell"):
            lat, lon = float(rows["latitude"][0]), float(rows["longitude"][0])
            distance = ((lon - source_lon) * np.cos(np.radians(lat))) ** 2 + (lat - source_lat) ** 2
            nearest = train.filter(pl.col("cell") == cells["cell"][int(np.argmin(distance))])
            calendar = (rows["month"].to_numpy().astype("datetime64[M]").astype(int) % 12).tolist()
            guess = nearest.select(ct.CLIMATOLOGY).to_numpy()[calendar]  # the shard's first 12 months
            observed = rows.select(ct.TARGET_ANOMALIES).to_numpy() + rows.select(ct.CLIMATOLOGY).to_numpy()
            squared += ((observed - guess) ** 2).sum(axis=0)
            n += len(observed)
    assert n == windows["tiles_years"]
    assert np.allclose(borrowed.sort("layer")["reference_rmse_K"], np.sqrt(squared / n), rtol=1e-5)
    gru = scores.filter((pl.col("model") == "gru") & (pl.col("region") == "years") & (pl.col("layer") == "t_soil_0"))
    assert sorted(gru["seed"].to_list()) == [0, 1] and gru["ratio"].n_unique() == 2  # the seeds differ
    assert result.runs["model"].to_list() == ["ridge", "gru", "gru"]
    # the hold-out of years is the one ml.cell_training reports for the same network
    network = result.networks[("gru", 1)]
    assert network.stats is result.stats
    held_out = ct.held_out_scores(network, [shards["files"][k][0] for k in result.split.train])
    mine = scores.filter((pl.col("model") == "gru") & (pl.col("seed") == 1) & (pl.col("region") == "years"))
    mine = mine.filter(pl.col("reference") == "own").sort("layer")
    assert np.allclose(mine["rmse_K"], held_out["network_rmse_K"], rtol=1e-5)
    assert np.allclose(mine["reference_rmse_K"], held_out["climatology_rmse_K"], rtol=1e-6)
    assert (mine["windows"] == held_out["windows"]).all()
