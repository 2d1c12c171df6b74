"""One shared network over many grid cells: per-tile shards, a tf.data pipeline, training and
inference per tile (grid mode's networks; the band networks are ``ml.training``).

Plain Python + Keras (no Dagster). TensorFlow and Keras are imported inside the functions that
need them, so the kernels can be shipped to dask workers and the module loads fast.

Choices, so the shards, the training and the inference agree:

* Inputs per month: the reanalysis drivers and soil water (``DRIVERS``), the same drivers as
  anomalies from the cell's training-years monthly climatology (``ANOMALIES``) and the month's
  sine and cosine; per cell (``STATICS``): latitude, longitude and the static features the mart
  gives the cell (its nearest band's lithology and soil). The statics replace the band embedding:
  the model takes them as ``unit_features`` (``ml.architectures.InputSpec.unit_features``), so it
  is one model for every cell, with no row per cell to learn.
* A window is the 24 months t-23..t, target month t included (its forcing is an input, as the
  design brief's "future covariates"); its targets are the four soil temperatures of month t as
  ANOMALIES from the cell's training-years climatology of that calendar month (absolute targets
  lost to climatology on deep layers). Predictions add the climatology back.
* Split by target month: training up to ``catalog.TRAIN_LAST_TARGET_MONTH`` (2018-12), held out
  2019-01..2023-12; the climatologies and the standardisation statistics come from training
  months only. Validation (early stopping) is the last ``validation_months`` of training targets.
* A shard is one tile's monthly rows (Parquet, one row per cell and month: raw drivers, anomalies,
  month features, statics, target anomalies and the climatology that inverts them), written by a
  per-tile kernel on the workers; its windows are cut when read (24 times smaller than storing
  them). Beside it, per tile, the moments (count, mean, M2) of every input and target over the
  training months; the training pools them (Chan et al.'s parallel formula) into the statistics.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from ml.tiles import TileSeries
from sources import catalog

WINDOW = 24
DRIVERS: tuple[str, ...] = catalog.DYNAMIC_FEATURES + catalog.WATER_CONTENT
MART_STATICS: tuple[str, ...] = catalog.STATIC_FEATURES
# what a tile's task needs of the mart (per cell and month)
CELL_VARIABLES: tuple[str, ...] = DRIVERS + MART_STATICS + catalog.TARGETS
ANOMALIES: tuple[str, ...] = tuple(f"{name}_anomaly" for name in DRIVERS)
MONTH_FEATURES: tuple[str, ...] = ("month_sin", "month_cos")
DYNAMIC_INPUTS: tuple[str, ...] = DRIVERS + ANOMALIES + MONTH_FEATURES
STATICS: tuple[str, ...] = ("latitude", "longitude") + MART_STATICS
TARGET_ANOMALIES: tuple[str, ...] = tuple(f"{name}_anomaly" for name in catalog.TARGETS)
CLIMATOLOGY: tuple[str, ...] = tuple(f"{name}_climatology" for name in catalog.TARGETS)
SHARD_COLUMNS: tuple[str, ...] = ("cell", "month", *DYNAMIC_INPUTS, *STATICS, *TARGET_ANOMALIES, *CLIMATOLOGY)
MODEL_FILE = "model.keras"
STATS_FILE = "cell_stats.json"
TRAINING_FILE = "training.json"
PREDICT_BATCH_SIZE = 2048


def _month(value) -> np.datetime64:
    return catalog.month64(value)


TRAIN_LAST = _month(catalog.TRAIN_LAST_TARGET_MONTH)
TEST_FIRST = _month(catalog.TEST_FIRST_TARGET_MONTH)
TEST_LAST = _month(catalog.TEST_LAST_TARGET_MONTH)


# --- one tile's cells ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CellTile:
    """One tile's monthly ``series`` (``CELL_VARIABLES`` at least) and its cells' coordinates."""

    series: TileSeries
    latitude: np.ndarray
    longitude: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.series.cells)
        for name in ("latitude", "longitude"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != (n,) or not np.isfinite(value).all():
                raise ValueError(f"tile {self.series.tile}: {name} must be {n} finite values, got {value.shape}")
            object.__setattr__(self, name, value)

    @property
    def key(self) -> str:
        return self.series.tile


def cell_tile(
    key: str, cells: np.ndarray, rows: pl.DataFrame, latitude: np.ndarray, longitude: np.ndarray, what: str
) -> CellTile:
    """A ``CellTile`` from a tile's long rows ``unit``, ``month``, ``CELL_VARIABLES`` (e.g.
    ``dagster_project.lake.cells.tile_rows``); errors name ``what``, the cell and the month."""
    from ml.unit_arrays import unit_grid

    grid = unit_grid(rows, CELL_VARIABLES, what, np.asarray(cells))
    series = TileSeries(key, np.asarray(cells), grid.months, grid.values.astype(np.float32), CELL_VARIABLES)
    return CellTile(series, latitude, longitude)


def _climatology(values: np.ndarray, months: np.ndarray, train: np.ndarray, tile: str, cells, names) -> np.ndarray:
    """(12, cell, V) mean of the training months per calendar month; every cell needs every
    calendar month among its training months."""
    calendar = months.astype(np.int64) % 12
    out = np.empty((12, *values.shape[1:]), dtype=np.float64)
    for m in range(12):
        chosen = train & (calendar == m)
        if not chosen.any():
            raise ValueError(
                f"tile {tile}: no training month is a calendar month {m + 1} (cells {list(cells)[:3]}...): "
                f"the climatology of {names[0]} and the others needs every calendar month up to {TRAIN_LAST}"
            )
        out[m] = values[chosen].mean(axis=0)
    return out


def shard_frame(tile: CellTile, train_last: np.datetime64 = TRAIN_LAST) -> pl.DataFrame:
    """One tile's shard: a row per cell and month (by cell, then month) with ``SHARD_COLUMNS``."""
    series = tile.series
    names = DRIVERS + MART_STATICS + catalog.TARGETS
    values = series.grid(names).values  # (T, cell, V) float64; errors name tile, variable, cell, month
    months = np.asarray(series.months, dtype="datetime64[M]")
    train = months <= train_last
    dynamic = [names.index(n) for n in DRIVERS + catalog.TARGETS]
    climatology = _climatology(values[..., dynamic], months, train, series.tile, series.cells, DRIVERS)
    calendar = months.astype(np.int64) % 12
    anomalies = values[..., dynamic] - climatology[calendar]
    n_drivers = len(DRIVERS)
    statics = values[..., [names.index(n) for n in MART_STATICS]]
    static_rows = statics[train].mean(axis=0) if train.any() else statics.mean(axis=0)  # (cell, S)
    n_months, n_cells = values.shape[:2]
    angle = 2 * np.pi * calendar / 12
    by_cell = {
        "cell": np.repeat(np.asarray(series.cells, dtype=np.int64), n_months),
        "month": np.tile(months.astype("datetime64[D]"), n_cells),
    }

    def column(matrix: np.ndarray) -> np.ndarray:  # (T, cell) -> cell-major rows
        return np.ascontiguousarray(matrix.T).ravel().astype(np.float32)

    for name in DRIVERS:
        by_cell[name] = column(values[..., names.index(name)])
    for k, name in enumerate(ANOMALIES):
        by_cell[name] = column(anomalies[..., k])
    by_cell["month_sin"] = column(np.repeat(np.sin(angle)[:, None], n_cells, 1))
    by_cell["month_cos"] = column(np.repeat(np.cos(angle)[:, None], n_cells, 1))
    by_cell["latitude"] = np.repeat(tile.latitude, n_months).astype(np.float32)
    by_cell["longitude"] = np.repeat(tile.longitude, n_months).astype(np.float32)
    for k, name in enumerate(MART_STATICS):
        by_cell[name] = np.repeat(static_rows[:, k], n_months).astype(np.float32)
    for k, name in enumerate(TARGET_ANOMALIES):
        by_cell[name] = column(anomalies[..., n_drivers + k])
    for k, name in enumerate(CLIMATOLOGY):
        by_cell[name] = column(climatology[calendar][..., n_drivers + k])
    frame = pl.DataFrame(by_cell).with_columns(pl.col("month").cast(pl.Date))
    return frame.select(SHARD_COLUMNS)


def _moments(values: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """count, mean, M2 (sum of squared deviations) per column of (n, V)."""
    values = np.asarray(values, dtype=np.float64)
    mean = values.mean(axis=0) if len(values) else np.zeros(values.shape[1])
    return len(values), mean, ((values - mean) ** 2).sum(axis=0)


def moments_frame(shard: pl.DataFrame, tile: str, train_last: np.datetime64 = TRAIN_LAST) -> pl.DataFrame:
    """Count, mean and M2 of every input and target anomaly of a shard over its training months
    (each cell-month once); the statics over its cells (each cell once)."""
    train = shard.filter(pl.col("month") <= train_last.astype("datetime64[D]").item())
    dynamic = _moments(train.select(DYNAMIC_INPUTS + TARGET_ANOMALIES).to_numpy())
    statics = _moments(train.group_by("cell").agg(pl.col(STATICS).first()).select(STATICS).to_numpy())
    names = DYNAMIC_INPUTS + TARGET_ANOMALIES + STATICS
    counts = [dynamic[0]] * len(DYNAMIC_INPUTS + TARGET_ANOMALIES) + [statics[0]] * len(STATICS)
    return pl.DataFrame(
        {
            "tile": [tile] * len(names),
            "name": list(names),
            "count": pl.Series(counts, dtype=pl.Int64),
            "mean": np.concatenate([dynamic[1], statics[1]]),
            "m2": np.concatenate([dynamic[2], statics[2]]),
        }
    )


def tile_shard_frames(tile: CellTile) -> dict[str, pl.DataFrame]:
    """The kernel grid mode maps over tiles: a tile's shard rows and their training moments."""
    rows = shard_frame(tile)
    return {"rows": rows, "moments": moments_frame(rows, tile.key)}


# --- statistics --------------------------------------------------------------------------


@dataclass(frozen=True)
class CellStats:
    """Means and standard deviations (population; 1 where constant) of the inputs and the target
    anomalies over the training months of every tile."""

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray

    def of(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        index = [self.names.index(n) for n in names]
        return self.mean[index].astype(np.float32), self.std[index].astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "count": self.count.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellStats:
        return cls(tuple(data["names"]), np.asarray(data["mean"]), np.asarray(data["std"]), np.asarray(data["count"]))


def pooled_stats(moments: pl.DataFrame) -> CellStats:
    """Pool per-tile moments (``moments_frame`` rows of many tiles) into ``CellStats``."""
    names = DYNAMIC_INPUTS + TARGET_ANOMALIES + STATICS
    missing = sorted(set(names) - set(moments["name"]))
    if missing:
        raise ValueError(f"the shards' moments lack {missing}: re-materialize tile_training_shards")
    mean, std, count = [], [], []
    for name in names:
        rows = moments.filter(pl.col("name") == name)
        n, mu, m2 = rows["count"].to_numpy().astype(np.float64), rows["mean"].to_numpy(), rows["m2"].to_numpy()
        total = n.sum()
        if total == 0:
            raise ValueError(f"no training month in any shard for {name} (months up to {TRAIN_LAST})")
        pooled = (n * mu).sum() / total
        pooled_m2 = m2.sum() + (n * (mu - pooled) ** 2).sum()
        sd = np.sqrt(pooled_m2 / total)
        mean.append(pooled)
        std.append(sd if sd > 1e-12 * max(1.0, abs(pooled)) else 1.0)
        count.append(total)
    return CellStats(names, np.asarray(mean), np.asarray(std), np.asarray(count))


# --- windows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CellWindows:
    """The windows of one cell: inputs ``x`` (n, window, F), statics ``s`` (n, K), standardised
    target anomalies ``y`` (n, 4), ``target_month`` (n,); the target anomalies in K
    (``anomaly``) and the climatology (degC) that turns them into soil temperatures."""

    cell: int
    target_month: np.ndarray
    x: np.ndarray
    s: np.ndarray
    y: np.ndarray
    anomaly: np.ndarray
    climatology: np.ndarray

    @property
    def observed(self) -> np.ndarray:
        """The soil temperatures of the target months (degC): anomaly plus climatology."""
        return self.anomaly.astype(np.float64) + self.climatology


def read_shard(path: str | Path) -> pl.DataFrame:
    """A shard file, checked for its columns (an error names the file)."""
    frame = pl.read_parquet(path)
    missing = [c for c in SHARD_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"shard {path}: no column(s) {missing}: re-materialize tile_training_shards")
    return frame


def cell_windows(
    shard: pl.DataFrame,
    stats: CellStats,
    first: np.datetime64 | None = None,
    last: np.datetime64 | None = None,
    window: int = WINDOW,
    source: str = "shard",
) -> Iterator[CellWindows]:
    """The windows of every cell of a shard whose target month is in ``first``..``last``
    (inclusive; None: unbounded), standardised with ``stats``. Errors name ``source``, the
    variable, the cell and the month of a gap or a non-finite value."""
    x_mean, x_std = stats.of(DYNAMIC_INPUTS)
    s_mean, s_std = stats.of(STATICS)
    y_mean, y_std = stats.of(TARGET_ANOMALIES)
    for (cell,), rows in shard.sort("cell", "month").group_by("cell", maintain_order=True):
        months = rows["month"].to_numpy().astype("datetime64[M]")
        step = np.diff(months).astype(np.int64)
        if (step != 1).any():
            i = int(np.argmax(step != 1))
            raise ValueError(f"{source}: cell {cell}: months jump from {months[i]} to {months[i + 1]}")
        dynamic = rows.select(DYNAMIC_INPUTS).to_numpy().astype(np.float32)
        targets = rows.select(TARGET_ANOMALIES).to_numpy().astype(np.float32)
        for names, values in ((DYNAMIC_INPUTS, dynamic), (TARGET_ANOMALIES, targets)):
            bad = ~np.isfinite(values)
            if bad.any():
                t, v = np.argwhere(bad)[0]
                raise ValueError(f"{source}: {names[v]} is not finite in cell {cell}, month {months[t]}")
        if len(months) < window:
            continue
        target = months[window - 1 :]
        keep = np.ones(len(target), dtype=bool)
        if first is not None:
            keep &= target >= first
        if last is not None:
            keep &= target <= last
        if not keep.any():
            continue
        x = sliding_window_view((dynamic - x_mean) / x_std, window, axis=0)[keep]  # (n, F, window)
        statics = rows.select(STATICS).row(0)
        s = (np.asarray(statics, dtype=np.float32) - s_mean) / s_std
        yield CellWindows(
            cell=int(cell),
            target_month=target[keep],
            x=np.ascontiguousarray(np.transpose(x, (0, 2, 1))),
            s=np.repeat(s[None, :], int(keep.sum()), axis=0),
            y=((targets[window - 1 :][keep] - y_mean) / y_std).astype(np.float32),
            anomaly=targets[window - 1 :][keep],
            climatology=rows.select(CLIMATOLOGY).to_numpy()[window - 1 :][keep].astype(np.float64),
        )


def window_count(paths: Sequence[str | Path], first=None, last=None, window: int = WINDOW) -> int:
    """How many windows the shards hold with a target month in ``first``..``last``."""
    total = 0
    for path in paths:
        frame = pl.read_parquet(path, columns=["cell", "month"])
        for (_,), rows in frame.group_by("cell"):
            target = np.sort(rows["month"].to_numpy().astype("datetime64[M]"))[window - 1 :]
            keep = np.ones(len(target), dtype=bool)
            if first is not None:
                keep &= target >= first
            if last is not None:
                keep &= target <= last
            total += int(keep.sum())
    return total


def window_dataset(
    paths: Sequence[str | Path],
    stats: CellStats,
    first: np.datetime64 | None = None,
    last: np.datetime64 | None = None,
    batch_size: int = 256,
    shuffle_buffer: int = 0,
    seed: int = 0,
    window: int = WINDOW,
    cycle_length: int = 4,
    with_cells: bool = False,
):
    """A ``tf.data.Dataset`` of ``({"x", "unit_features"}, y)`` batches over the shards' windows
    with a target month in ``first``..``last``: the shard files interleaved (``cycle_length`` at
    once, read in parallel), each cell's windows cut on the fly and unbatched, shuffled over
    ``shuffle_buffer`` windows (0: in order, deterministic), batched and prefetched. Every window
    comes once per pass. ``with_cells``: the features also carry ``cell`` and ``target_month``
    (months since 1970-01), for tests and evaluation."""
    import tensorflow as tf

    n_features, n_statics, n_targets = len(DYNAMIC_INPUTS), len(STATICS), len(TARGET_ANOMALIES)

    def blocks(path):
        path = path.decode() if isinstance(path, bytes) else str(path)
        for block in cell_windows(read_shard(path), stats, first, last, window, source=f"shard {path}"):
            features = {"x": block.x, "unit_features": block.s}
            if with_cells:
                features["cell"] = np.full(len(block.y), block.cell, dtype=np.int64)
                features["target_month"] = block.target_month.astype(np.int64)
            yield features, block.y

    features = {
        "x": tf.TensorSpec((None, window, n_features), tf.float32),
        "unit_features": tf.TensorSpec((None, n_statics), tf.float32),
    }
    if with_cells:
        features |= {"cell": tf.TensorSpec((None,), tf.int64), "target_month": tf.TensorSpec((None,), tf.int64)}
    signature = (features, tf.TensorSpec((None, n_targets), tf.float32))
    files = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    if shuffle_buffer:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = files.interleave(
        lambda path: tf.data.Dataset.from_generator(blocks, output_signature=signature, args=(path,)),
        cycle_length=max(1, min(cycle_length, len(paths))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle_buffer,
    ).unbatch()
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# --- training ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CellTrainingConfig:
    """How the shared network trains: ``architecture`` (``ml.architecture_catalog``) with
    ``hyperparameters`` overrides, at most ``epochs`` passes with early stopping (``patience``)
    on the last ``validation_months`` of training target months."""

    architecture: str = "gru"
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    patience: int = 3
    shuffle_buffer: int = 8192
    validation_months: int = 24
    seed: int = 0
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class CellNetwork:
    """The shared network and what it needs to be used again: the statistics, how it was trained."""

    model: Any
    stats: CellStats
    config: CellTrainingConfig
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "float32"
    windows: dict[str, int] = field(default_factory=dict)

    @property
    def best_epoch(self) -> int:
        monitored = self.history.get("val_loss") or self.history.get("loss") or []
        return int(np.argmin(monitored)) + 1 if monitored else 0


def train_cell_network(
    paths: Sequence[str | Path], stats: CellStats, config: CellTrainingConfig | None = None
) -> CellNetwork:
    """Train one network over every shard's training windows (one model for all cells)."""
    import keras

    from ml.architectures import InputSpec, compile_model
    from ml.training import _float32_copy, accelerator, build_for_precision, finite_history, precision_policy

    config = config or CellTrainingConfig()
    if not paths:
        raise ValueError("no shard to train on")
    device = accelerator()
    policy = precision_policy(device)
    keras.utils.set_random_seed(config.seed)
    spec = InputSpec(n_features=len(DYNAMIC_INPUTS), window=WINDOW, n_units=1, unit_features=len(STATICS))
    hyperparameters = dict(config.hyperparameters) or None
    model = compile_model(build_for_precision(config.architecture, spec, hyperparameters, policy), config.learning_rate)
    fit_last = TRAIN_LAST - np.timedelta64(config.validation_months, "M")
    windows = {
        "fit": window_count(paths, None, fit_last),
        "validation": window_count(paths, fit_last + 1, TRAIN_LAST) if config.validation_months else 0,
    }
    if windows["fit"] == 0:
        raise ValueError(f"the shards hold no training window with a target month up to {fit_last}")
    fit = window_dataset(paths, stats, None, fit_last, config.batch_size, config.shuffle_buffer, config.seed)
    validation = (
        window_dataset(paths, stats, fit_last + 1, TRAIN_LAST, config.batch_size) if windows["validation"] else None
    )
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss" if validation is not None else "loss", patience=config.patience, restore_best_weights=True
    )
    started = time.perf_counter()
    fitted = model.fit(fit, validation_data=validation, epochs=config.epochs, callbacks=[stopper], verbose=0)
    seconds = time.perf_counter() - started
    history = finite_history(fitted, f"cell network ({config.architecture})")
    if policy != "float32":
        model = _float32_copy(model, config.architecture, spec, hyperparameters, config.learning_rate)
    return CellNetwork(model, stats, config, history, seconds, device, policy, windows)


def predict_windows(model, blocks: Sequence[CellWindows]) -> np.ndarray:
    """Standardised anomalies (n, 4) predicted for the concatenated ``blocks``."""
    if not blocks:
        return np.empty((0, len(TARGET_ANOMALIES)), dtype=np.float32)
    inputs = {"x": np.concatenate([b.x for b in blocks]), "unit_features": np.concatenate([b.s for b in blocks])}
    return np.asarray(model.predict(inputs, batch_size=PREDICT_BATCH_SIZE, verbose=0), dtype=np.float64)


def to_degc(normalised: np.ndarray, stats: CellStats, climatology: np.ndarray) -> np.ndarray:
    """Absolute soil temperatures (degC): standardised anomalies back to anomalies, plus the
    cell's climatology of the target month."""
    mean, std = stats.of(TARGET_ANOMALIES)
    return np.asarray(normalised, dtype=np.float64) * std + mean + climatology


def held_out_scores(network: CellNetwork, paths: Sequence[str | Path]) -> pl.DataFrame:
    """RMSE per layer (K) on the held-out target months 2019-2023 of every shard: the network and
    the cells' monthly climatology (an anomaly of 0), and their ratio; with the window count."""
    mean, std = network.stats.of(TARGET_ANOMALIES)
    squared_model = np.zeros(len(TARGET_ANOMALIES))
    squared_climatology = np.zeros(len(TARGET_ANOMALIES))
    n = 0
    for path in paths:
        blocks = list(cell_windows(read_shard(path), network.stats, TEST_FIRST, TEST_LAST, source=f"shard {path}"))
        if not blocks:
            continue
        predicted = predict_windows(network.model, blocks) * std + mean
        anomaly = np.concatenate([b.anomaly for b in blocks]).astype(np.float64)
        squared_model += ((predicted - anomaly) ** 2).sum(axis=0)
        squared_climatology += (anomaly.astype(np.float64) ** 2).sum(axis=0)
        n += len(anomaly)
    if n == 0:
        raise ValueError(f"the shards hold no window with a target month in {TEST_FIRST}..{TEST_LAST}")
    model_rmse, climatology_rmse = np.sqrt(squared_model / n), np.sqrt(squared_climatology / n)
    return pl.DataFrame(
        {
            "layer": list(catalog.TARGETS),
            "network_rmse_K": model_rmse,
            "climatology_rmse_K": climatology_rmse,
            "ratio": model_rmse / climatology_rmse,
            "windows": [n] * len(catalog.TARGETS),
        }
    )


# --- files -------------------------------------------------------------------------------


def save_cell_network(network: CellNetwork, folder: str | Path) -> None:
    """``model.keras``, ``cell_stats.json`` and ``training.json`` into ``folder`` (the caller
    makes it atomic)."""
    import keras

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    network.model.save(folder / MODEL_FILE)
    (folder / STATS_FILE).write_text(json.dumps(network.stats.to_dict(), indent=2) + "\n")
    record = {
        "config": dataclasses.asdict(network.config),
        "history": network.history,
        "seconds": network.seconds,
        "device": network.device,
        "precision": network.precision,
        "windows": network.windows,
        "best_epoch": network.best_epoch,
        "window": WINDOW,
        "dynamic_inputs": list(DYNAMIC_INPUTS),
        "statics": list(STATICS),
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
    }
    (folder / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")


def load_cell_network(folder: str | Path) -> CellNetwork:
    """A folder written by ``save_cell_network``."""
    from ml.architectures import load_model

    folder = Path(folder)
    missing = [name for name in (MODEL_FILE, STATS_FILE, TRAINING_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"cell network folder {folder} lacks {missing}: materialize cell_network")
    record = json.loads((folder / TRAINING_FILE).read_text())
    if record.get("dynamic_inputs") != list(DYNAMIC_INPUTS) or record.get("statics") != list(STATICS):
        raise ValueError(f"{folder / TRAINING_FILE}: the network was trained on other inputs: re-materialize it")
    return CellNetwork(
        model=load_model(folder / MODEL_FILE),
        stats=CellStats.from_dict(json.loads((folder / STATS_FILE).read_text())),
        config=CellTrainingConfig(**record["config"]),
        history=record["history"],
        seconds=record["seconds"],
        device=record["device"],
        precision=record["precision"],
        windows=record["windows"],
    )


@functools.lru_cache(maxsize=2)
def _cached_network(folder: str, stamp: float) -> CellNetwork:
    return load_cell_network(folder)


@functools.lru_cache(maxsize=2)
def _cached_remote_network(location: str, stamp: str) -> CellNetwork:
    import tempfile

    import fsspec

    fs, path = fsspec.core.url_to_fs(location)
    with tempfile.TemporaryDirectory(prefix="cell-network-") as scratch:
        for name in (MODEL_FILE, STATS_FILE, TRAINING_FILE):
            if fs.exists(f"{path}/{name}"):  # what is missing, load_cell_network names
                fs.get_file(f"{path}/{name}", f"{scratch}/{name}")
        return load_cell_network(scratch)


def network_at(location: str) -> CellNetwork:
    """The network ``save_cell_network`` saved at ``location``: a local folder, or an fsspec URL
    (``s3://...``: the lake on an object store, reached with the worker's own credentials and
    endpoint, e.g. ``AWS_ENDPOINT_URL``). Loaded once per worker process and saved version (the
    model file's modification time, or its object's ETag)."""
    if "://" not in location:
        folder = Path(location)
        stamp = (folder / MODEL_FILE).stat().st_mtime if (folder / MODEL_FILE).exists() else 0.0
        return _cached_network(str(folder), stamp)
    import fsspec

    fs, path = fsspec.core.url_to_fs(location)
    fs.invalidate_cache(path)
    try:
        info = fs.info(f"{path}/{MODEL_FILE}")
    except FileNotFoundError:
        message = f"cell network folder {location} lacks {MODEL_FILE}: materialize cell_network"
        raise FileNotFoundError(message) from None
    stamp = str(info.get("ETag") or info.get("LastModified") or info.get("mtime") or info.get("size"))
    return _cached_remote_network(location, stamp)


# --- inference per tile ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CellInferenceTask:
    """One tile's cells and the folder of the shared network (read on the worker)."""

    tile: CellTile
    network: str


def tile_predictions(tile: CellTile, network: CellNetwork) -> pl.DataFrame:
    """Every window of the tile's history (target months from the 24th month on), predicted:
    rows cell, month, split (train/test/after), the predicted ``t_soil_0..3`` and the observed
    ones (``observed_t_soil_k``), degC, by cell then month."""
    shard = shard_frame(tile)
    blocks = list(cell_windows(shard, network.stats, source=f"tile {tile.key}"))
    if not blocks:
        raise ValueError(f"tile {tile.key}: fewer than {WINDOW} months: no window to predict")
    climatology = np.concatenate([b.climatology for b in blocks])
    predicted = to_degc(predict_windows(network.model, blocks), network.stats, climatology)
    observed = np.concatenate([b.observed for b in blocks])
    months = np.concatenate([b.target_month for b in blocks])
    split = np.where(months <= TRAIN_LAST, "train", np.where(months <= TEST_LAST, "test", "after"))
    return pl.DataFrame(
        {
            "tile": [tile.key] * len(months),
            "cell": np.concatenate([np.full(len(b.y), b.cell, dtype=np.int64) for b in blocks]),
            "month": months.astype("datetime64[D]"),
            "split": split,
            **{name: predicted[:, k].astype(np.float32) for k, name in enumerate(catalog.TARGETS)},
            **{f"observed_{name}": observed[:, k].astype(np.float32) for k, name in enumerate(catalog.TARGETS)},
        }
    ).with_columns(pl.col("month").cast(pl.Date))


def tile_network_frames(task: CellInferenceTask) -> dict[str, pl.DataFrame]:
    """The kernel grid mode maps over tiles: the tile's windows built and predicted on the worker
    with the network saved in ``task.network`` (loaded once per worker and folder version)."""
    return {"predictions": tile_predictions(task.tile, network_at(task.network))}
