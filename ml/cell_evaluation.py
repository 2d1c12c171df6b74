"""How good is the shared cell network (``ml.cell_training``)? Seeds x architectures with their
spread, a spatial hold-out of whole tiles, and honest baselines on the same windows.

Plain numpy and polars; Keras only through ``ml.cell_training.train_cell_network`` and the
model's ``predict``. ``ml.cell_training`` is used as it is: the evaluation trains on a subset of
the shard files with statistics pooled from that subset's moments.

* Split of tiles (``tile_split``): a fixed seed holds out about a quarter of the tiles, spread
  over the latitude rows of tiles (each row gets its share, by largest remainder). The network,
  the ridge and the standardisation statistics see the training tiles only (their months up to
  2018-12, the last 24 of them for early stopping).
* Regions scored (``REGIONS``): the training tiles' held-out years 2019-2023 (the hold-out of
  years ``ml.cell_training.held_out_scores`` reports), the held-out tiles over their training
  years (target months 2002-12..2018-12) and over 2019-2023.
* The reference of every ratio is each cell's monthly climatology of its own soil temperature
  over 2001-2018, which the shard stores and the targets are anomalies from. For a held-out cell
  that reads its OBSERVED soil temperature: information a truly unseen cell would not have. So
  the held-out tiles are also scored without it (``REFERENCES``): every model's absolute
  prediction is its predicted anomaly plus a climatology that reads none of the cell's soil,
  against the observed soil temperature, beside that climatology alone: ``borrowed``, the mean
  climatology of the ``neighbours`` nearest training-tile cells, and ``regressed``, a ridge from
  the cell's statics and its drivers' monthly climatology to its 48 soil-climatology values,
  fitted on the training cells (alpha by leaving one training tile out). The networks' inputs
  hold no soil temperature (drivers, soil water, their anomalies from the cell's own DRIVER
  climatology, which an unseen cell does have, and statics).
* Baselines (``BASELINES``), on the same windows: the climatology (an anomaly of 0), the
  persistence of last month's soil-temperature anomaly (it READS the observed soil of month t-1,
  which no network input holds: a reference for what a local soil observation is worth, not a
  fair competitor) and a ridge (``CellRidge``) on the same standardised inputs as the network:
  the last ``lags`` months of the window (drivers, their anomalies, month features) and the
  statics, to the standardised target anomalies, one intercept, alpha chosen on the validation
  months, closed form from sums streamed over the shards.
* Seeds: each (architecture, seed) trains once on the same split; ``summarise`` gives the mean,
  the sample standard deviation and the range over the seeds per region, model and layer. The
  spread is the training's randomness only (initial weights, shuffling), the split stays fixed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from ml import cell_training as ct
from sources import catalog

SPLIT_SEED = catalog.DEFAULT_SEED
HELD_OUT_FRACTION = 0.25
RIDGE_LAGS = 12
RIDGE_ALPHAS: tuple[float, ...] = tuple(10.0**k for k in range(-1, 7))
NEIGHBOURS = 4
REGIONS: dict[str, str] = {
    "years": "training tiles, held-out target months 2019-2023",
    "tiles": "held-out tiles, their training target months (up to 2018-12)",
    "tiles_years": "held-out tiles, held-out target months 2019-2023",
}
BASELINES: dict[str, str] = {
    "climatology": "the cell's monthly climatology 2001-2018 (an anomaly of 0)",
    "persistence": "last month's soil-temperature anomaly: READS the observed soil of month t-1 (not a network input)",
    "ridge": "ridge on the window's last months of the network's inputs and the statics (one intercept)",
}
REFERENCES: dict[str, str] = {
    "own": "the cell's own climatology 2001-2018 (reads its observed soil temperature)",
    "borrowed": "the mean climatology of the nearest training-tile cells (no soil observation of the cell)",
    "regressed": "a ridge from the cell's statics and driver climatology, fitted on the training cells (no soil)",
}
_KEY = re.compile(r"^r(\d+)c(\d+)$")


# --- the split of tiles ----------------------------------------------------------------------


def tile_row(key: str) -> int:
    """The latitude row of a tile key ``rNNcMM`` (0 for a key of another form)."""
    match = _KEY.match(key)
    return int(match.group(1)) if match else 0


def spread_pick(keys: Iterable[str], count: int, seed: int = SPLIT_SEED) -> tuple[str, ...]:
    """``count`` of ``keys`` spread over the tiles' latitude rows: each row gets its share by
    largest remainder (ties broken by the seed), the tiles within a row drawn by the seed.
    Deterministic; sorted."""
    keys = sorted(set(keys))
    if not 0 <= count <= len(keys):
        raise ValueError(f"cannot pick {count} of {len(keys)} tiles")
    rows: dict[int, list[str]] = {}
    for key in keys:
        rows.setdefault(tile_row(key), []).append(key)
    order = sorted(rows)
    rng = np.random.default_rng(seed)
    quota = np.array([count * len(rows[r]) / len(keys) for r in order])
    share = np.floor(quota).astype(int)
    remainder = quota - share
    ties = rng.random(len(order))
    for i in np.lexsort((ties, -remainder))[: count - share.sum()]:
        share[i] += 1
    picked = []
    for r, n in zip(order, share, strict=True):
        picked += list(rng.permutation(rows[r])[:n])
    return tuple(sorted(str(k) for k in picked))


@dataclass(frozen=True)
class TileSplit:
    """Training and held-out tiles (disjoint, sorted; together every tile)."""

    train: tuple[str, ...]
    held_out: tuple[str, ...]
    seed: int


def tile_split(keys: Iterable[str], fraction: float = HELD_OUT_FRACTION, seed: int = SPLIT_SEED) -> TileSplit:
    """Hold out ``round(fraction * n)`` tiles (at least 1, at most n - 1) spread over the rows."""
    keys = sorted(set(keys))
    if len(keys) < 2:
        raise ValueError(f"a split of tiles needs 2 tiles at least, got {keys}")
    count = min(len(keys) - 1, max(1, round(fraction * len(keys))))
    held_out = spread_pick(keys, count, seed)
    return TileSplit(tuple(k for k in keys if k not in held_out), held_out, seed)


def training_stats(moments: Mapping[str, str | Path | pl.DataFrame], split: TileSplit) -> ct.CellStats:
    """``ml.cell_training.CellStats`` pooled from the TRAINING tiles' moments only."""
    frames = [m if isinstance(m, pl.DataFrame) else pl.read_parquet(m) for k, m in moments.items() if k in split.train]
    if len(frames) != len(split.train):
        raise ValueError(f"moments of training tiles {sorted(set(split.train) - set(moments))} are missing")
    return ct.pooled_stats(pl.concat(frames))


# --- the windows of a region -----------------------------------------------------------------


@dataclass(frozen=True)
class RegionWindows:
    """The windows of one shard with a target month in a range, concatenated over its cells: the
    network's inputs ``x``, ``s`` (standardised), the target ``anomaly`` (K), the cell's own
    ``climatology`` (degC), last month's anomaly ``previous`` (K), ``cell`` and ``target_month``."""

    x: np.ndarray
    s: np.ndarray
    anomaly: np.ndarray
    climatology: np.ndarray
    previous: np.ndarray
    cell: np.ndarray
    target_month: np.ndarray

    def __len__(self) -> int:
        return len(self.anomaly)


def region_windows(
    path: str | Path, stats: ct.CellStats, first: np.datetime64 | None, last: np.datetime64 | None
) -> RegionWindows | None:
    """The windows of a shard file with a target month in ``first``..``last`` (None: none)."""
    shard = ct.read_shard(path).sort("cell", "month")
    targets = {
        int(cell): (rows["month"][0], rows.select(ct.TARGET_ANOMALIES).to_numpy().astype(np.float64))
        for (cell,), rows in shard.group_by("cell", maintain_order=True)
    }
    blocks = list(ct.cell_windows(shard, stats, first, last, source=f"shard {path}"))
    if not blocks:
        return None
    previous = []
    for block in blocks:
        start, values = targets[block.cell]
        index = (block.target_month - np.datetime64(start, "M")).astype(np.int64) - 1
        previous.append(values[index])
    return RegionWindows(
        x=np.concatenate([b.x for b in blocks]),
        s=np.concatenate([b.s for b in blocks]),
        anomaly=np.concatenate([b.anomaly for b in blocks]).astype(np.float64),
        climatology=np.concatenate([b.climatology for b in blocks]),
        previous=np.concatenate(previous),
        cell=np.concatenate([np.full(len(b.y), b.cell, dtype=np.int64) for b in blocks]),
        target_month=np.concatenate([b.target_month for b in blocks]),
    )


# --- the ridge baseline ----------------------------------------------------------------------


def ridge_features(x: np.ndarray, s: np.ndarray, lags: int = RIDGE_LAGS) -> np.ndarray:
    """(n, lags * F + K): the last ``lags`` months of each window (target month first) and the statics."""
    if not 1 <= lags <= x.shape[1]:
        raise ValueError(f"lags must be 1..{x.shape[1]}, got {lags}")
    recent = x[:, ::-1][:, :lags].reshape(len(x), -1)
    return np.concatenate([recent, s], axis=1).astype(np.float64)


@dataclass
class RidgeSums:
    """Sufficient statistics of a linear least-squares fit, added block by block."""

    n: int = 0
    sx: np.ndarray | None = None
    sy: np.ndarray | None = None
    xx: np.ndarray | None = None
    xy: np.ndarray | None = None
    yy: np.ndarray | None = None

    def add(self, features: np.ndarray, targets: np.ndarray) -> RidgeSums:
        features, targets = np.asarray(features, dtype=np.float64), np.asarray(targets, dtype=np.float64)
        parts = (features.sum(0), targets.sum(0), features.T @ features, features.T @ targets, (targets**2).sum(0))
        if self.sx is None:
            self.sx, self.sy, self.xx, self.xy, self.yy = parts
        else:
            self.sx, self.sy, self.xx, self.xy, self.yy = (a + b for a, b in zip(self.parts, parts, strict=True))
        self.n += len(features)
        return self

    @property
    def parts(self) -> tuple[np.ndarray, ...]:
        return self.sx, self.sy, self.xx, self.xy, self.yy

    def __add__(self, other: RidgeSums) -> RidgeSums:
        if self.sx is None:
            return other
        if other.sx is None:
            return self
        out = RidgeSums(self.n + other.n)
        out.sx, out.sy, out.xx, out.xy, out.yy = (a + b for a, b in zip(self.parts, other.parts, strict=True))
        return out

    def solve(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients (P, Y) and intercept (Y,) minimising the squared error plus alpha |coef|^2
        (the intercept unpenalised)."""
        if self.n == 0:
            raise ValueError("a ridge needs at least one row")
        mx, my = self.sx / self.n, self.sy / self.n
        cxx = self.xx - self.n * np.outer(mx, mx)
        cxy = self.xy - self.n * np.outer(mx, my)
        coef = np.linalg.solve(cxx + alpha * np.eye(len(mx)), cxy)
        return coef, my - mx @ coef

    def squared_error(self, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
        """Sum of squared residuals per target of these rows under ``coef``, ``intercept``."""
        fitted = np.einsum("pj,pq,qj->j", coef, self.xx, coef)
        return (
            self.yy
            - 2 * np.einsum("pj,pj->j", coef, self.xy)
            - 2 * intercept * self.sy
            + fitted
            + 2 * intercept * (self.sx @ coef)
            + self.n * intercept**2
        )


@dataclass
class CellRidge:
    """The ridge baseline: standardised target anomalies from ``ridge_features``."""

    lags: int
    alpha: float
    coef: np.ndarray
    intercept: np.ndarray
    validation_rmse: dict[float, float] = field(default_factory=dict)

    def predict(self, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        return ridge_features(x, s, self.lags) @ self.coef + self.intercept


def fit_cell_ridge(
    paths: Sequence[str | Path],
    stats: ct.CellStats,
    lags: int = RIDGE_LAGS,
    alphas: Sequence[float] = RIDGE_ALPHAS,
    validation_months: int = 24,
) -> CellRidge:
    """Fit on the shards' training windows up to 2018-12 less the last ``validation_months``,
    choose alpha there by the validation months' squared error, refit on all of them.
    ``validation_rmse``: per alpha, the validation RMSE (standardised units, the layers pooled)."""
    fit_last = ct.TRAIN_LAST - np.timedelta64(validation_months, "M")
    fit, validation = RidgeSums(), RidgeSums()
    for path in paths:
        for block in ct.cell_windows(ct.read_shard(path), stats, None, ct.TRAIN_LAST, source=f"shard {path}"):
            features = ridge_features(block.x, block.s, lags)
            early = block.target_month <= fit_last
            if early.any():
                fit.add(features[early], block.y[early])
            if (~early).any():
                validation.add(features[~early], block.y[~early])
    if fit.n == 0:
        raise ValueError(f"the shards hold no training window with a target month up to {fit_last}")
    scores = {}
    for alpha in alphas:
        if validation.n == 0:
            break
        coef, intercept = fit.solve(alpha)
        scores[float(alpha)] = float(np.sqrt(validation.squared_error(coef, intercept).mean() / validation.n))
    alpha = min(scores, key=scores.get) if scores else float(alphas[0])
    coef, intercept = (fit + validation).solve(alpha)
    return CellRidge(lags, alpha, coef, intercept, scores)


# --- a climatology for a cell without a soil record ---------------------------------------------


@dataclass(frozen=True)
class CellClimatology:
    """Cells' coordinates and their monthly soil climatology (cell, 12 calendar months, 4 layers);
    ``features`` (cell, F): what an unseen cell has, its statics (``STATICS``) and the monthly
    climatology of its drivers (12 x ``DRIVERS``); ``group``: the tile (shard) of each cell."""

    cell: np.ndarray
    latitude: np.ndarray
    longitude: np.ndarray
    climatology: np.ndarray
    features: np.ndarray | None = None
    group: np.ndarray | None = None


def cell_climatology(paths: Sequence[str | Path]) -> CellClimatology:
    """From shard files: each cell's latitude, longitude, target climatology by calendar month and
    ``features`` (the drivers' climatology is a driver minus its anomaly)."""
    frames = []
    for g, path in enumerate(paths):
        frame = pl.read_parquet(
            path, columns=["cell", "month", *ct.STATICS, *ct.DRIVERS, *ct.ANOMALIES, *ct.CLIMATOLOGY]
        )
        frames.append(
            frame.with_columns(
                calendar=pl.col("month").dt.month() - 1,
                group=pl.lit(g),
                **{f"{n}_clim": pl.col(n).cast(pl.Float64) - pl.col(f"{n}_anomaly") for n in ct.DRIVERS},
            )
            .group_by("cell", "calendar")
            .agg(pl.col("group", *ct.STATICS, *ct.CLIMATOLOGY, *(f"{n}_clim" for n in ct.DRIVERS)).first())
        )
    rows = pl.concat(frames).sort("cell", "calendar")
    cells = rows["cell"].unique(maintain_order=True).to_numpy()
    if rows.height != 12 * len(cells):
        raise ValueError("every cell's shard must hold every calendar month")
    values = rows.select(ct.CLIMATOLOGY).to_numpy().reshape(len(cells), 12, len(ct.CLIMATOLOGY))
    drivers = rows.select(f"{n}_clim" for n in ct.DRIVERS).to_numpy().reshape(len(cells), -1)
    first = rows.filter(pl.col("calendar") == 0)
    features = np.concatenate([first.select(ct.STATICS).to_numpy().astype(np.float64), drivers], axis=1)
    return CellClimatology(
        cells, first["latitude"].to_numpy(), first["longitude"].to_numpy(), values, features, first["group"].to_numpy()
    )


def borrowed_climatology(
    latitude: np.ndarray, longitude: np.ndarray, source: CellClimatology, neighbours: int = NEIGHBOURS
) -> np.ndarray:
    """(n, 12, 4): the mean climatology of the ``neighbours`` nearest ``source`` cells of each
    (latitude, longitude) (distance on the local plane, longitude scaled by cos latitude)."""
    latitude, longitude = np.asarray(latitude, dtype=np.float64), np.asarray(longitude, dtype=np.float64)
    k = min(neighbours, len(source.cell))
    dy = latitude[:, None] - source.latitude[None, :]
    dx = (longitude[:, None] - source.longitude[None, :]) * np.cos(np.radians(latitude))[:, None]
    nearest = np.argsort(dx**2 + dy**2, axis=1, kind="stable")[:, :k]
    return source.climatology[nearest].mean(axis=1)


def regressed_climatology(
    features: np.ndarray, source: CellClimatology, alphas: Sequence[float] = RIDGE_ALPHAS
) -> tuple[np.ndarray, float]:
    """(n, 12, 4) and alpha: a ridge from the source cells' ``features`` (standardised over them)
    to their 48 climatology values, alpha chosen by leaving one group (tile) out at a time."""
    mean, std = source.features.mean(axis=0), source.features.std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    x = (source.features - mean) / std
    y = source.climatology.reshape(len(x), -1)
    groups = np.unique(source.group)
    parts = {g: RidgeSums().add(x[source.group == g], y[source.group == g]) for g in groups}
    total = RidgeSums()
    for part in parts.values():
        total = total + part
    alpha = float(alphas[0])
    if len(groups) > 1:
        errors = {}
        for a in alphas:
            squared = 0.0
            for part in parts.values():
                rest = RidgeSums(total.n - part.n)
                rest.sx, rest.sy, rest.xx, rest.xy, rest.yy = (
                    t - p for t, p in zip(total.parts, part.parts, strict=True)
                )
                squared += part.squared_error(*rest.solve(a)).sum()
            errors[float(a)] = squared
        alpha = min(errors, key=errors.get)
    coef, intercept = total.solve(alpha)
    predicted = ((np.asarray(features, dtype=np.float64) - mean) / std) @ coef + intercept
    return predicted.reshape(len(predicted), 12, -1), alpha


# --- scores ----------------------------------------------------------------------------------


@dataclass
class _Errors:
    squared: np.ndarray = field(default_factory=lambda: np.zeros(len(catalog.TARGETS)))
    n: int = 0

    def add(self, error: np.ndarray) -> None:
        self.squared += (np.asarray(error, dtype=np.float64) ** 2).sum(axis=0)
        self.n += len(error)

    @property
    def rmse(self) -> np.ndarray:
        return np.sqrt(self.squared / self.n)


def score_rows(errors: Mapping[tuple[str, str, str], _Errors], run: Mapping[str, object]) -> list[dict]:
    """Rows region, reference, model, layer, rmse_K, reference_rmse_K, ratio, windows and ``run``'s
    fields, from squared errors keyed by (region, reference, model); the reference model of
    reference ``own`` is ``climatology``, of another ``<reference>_climatology``."""
    rows = []
    for (region, reference, model), err in errors.items():
        base = errors.get((region, reference, "climatology" if reference == "own" else f"{reference}_climatology"))
        if base is None:
            raise ValueError(f"no climatology for region {region}, reference {reference}")
        for k, layer in enumerate(catalog.TARGETS):
            rows.append(
                {
                    "region": region,
                    "reference": reference,
                    "model": model,
                    **run,
                    "layer": layer,
                    "rmse_K": float(err.rmse[k]),
                    "reference_rmse_K": float(base.rmse[k]),
                    "ratio": float(err.rmse[k] / base.rmse[k]),
                    "windows": err.n,
                }
            )
    return rows


def summarise(scores: pl.DataFrame) -> pl.DataFrame:
    """Per region, reference, model and layer over the seeds (``run`` rows): how many, the mean,
    the sample standard deviation (null for one) and the range of the RMSE and of the ratio."""
    keys = ["region", "reference", "model", "layer"]
    return (
        scores.group_by(keys, maintain_order=True)
        .agg(
            pl.len().alias("seeds"),
            pl.col("rmse_K").mean().alias("rmse_mean_K"),
            pl.col("rmse_K").std(ddof=1).alias("rmse_sd_K"),
            pl.col("ratio").mean().alias("ratio_mean"),
            pl.col("ratio").std(ddof=1).alias("ratio_sd"),
            pl.col("ratio").min().alias("ratio_min"),
            pl.col("ratio").max().alias("ratio_max"),
            pl.col("reference_rmse_K").first(),
            pl.col("windows").first(),
        )
        .sort(keys)
    )


def summary_table(summary: pl.DataFrame, region: str, reference: str = "own", models: Sequence[str] = ()) -> str:
    """A markdown table: a row per model, a column per layer, ``ratio mean ± sd [min-max]``
    (``RMSE K`` for the reference itself)."""
    chosen = summary.filter((pl.col("region") == region) & (pl.col("reference") == reference))
    order = list(models) or chosen["model"].unique(maintain_order=True).to_list()
    lines = ["| model | " + " | ".join(catalog.TARGETS) + " |", "|---" * (1 + len(catalog.TARGETS)) + "|"]
    for model in order:
        cells = []
        for layer in catalog.TARGETS:
            row = chosen.filter((pl.col("model") == model) & (pl.col("layer") == layer))
            if row.is_empty():
                cells.append("")
                continue
            r = row.row(0, named=True)
            if r["seeds"] > 1:
                cells.append(f"{r['ratio_mean']:.3f} ± {r['ratio_sd']:.3f} [{r['ratio_min']:.3f}-{r['ratio_max']:.3f}]")
            else:
                cells.append(f"{r['ratio_mean']:.3f} ({r['rmse_mean_K']:.3f} K)")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- the evaluation --------------------------------------------------------------------------


def network_hyperparameters(architecture: str, units: int | None = None) -> dict:
    """The architecture's small hyperparameters (``ml.architecture_catalog``), ``units`` where it has them."""
    from ml import architecture_catalog

    hyperparameters = dict(architecture_catalog.architecture(architecture).small_hyperparameters)
    if units is not None and "units" in hyperparameters:
        hyperparameters["units"] = units
    return hyperparameters


@dataclass(frozen=True)
class EvaluationConfig:
    """What ``evaluate_cells`` trains and scores: every architecture with every seed (the
    ``training`` config's other fields), the split of tiles, the ridge and the borrowing."""

    architectures: tuple[str, ...] = ("gru",)
    seeds: tuple[int, ...] = (0, 1, 2)
    training: ct.CellTrainingConfig = field(default_factory=ct.CellTrainingConfig)
    units: int | None = None
    held_out_fraction: float = HELD_OUT_FRACTION
    split_seed: int = SPLIT_SEED
    ridge_lags: int = RIDGE_LAGS
    neighbours: int = NEIGHBOURS
    keep_networks: bool = False  # return the trained networks (memory: one model per run)


@dataclass
class Evaluation:
    """The split, the scores (a row per region, reference, model, seed and layer), their summary
    over the seeds, and what each run took."""

    split: TileSplit
    stats: ct.CellStats
    scores: pl.DataFrame
    runs: pl.DataFrame
    ridge: CellRidge
    networks: dict[tuple[str, int], ct.CellNetwork] = field(default_factory=dict)  # config.keep_networks

    @property
    def summary(self) -> pl.DataFrame:
        return summarise(self.scores)


def _regions(files: Mapping[str, str | Path], split: TileSplit, stats: ct.CellStats) -> dict[str, list[RegionWindows]]:
    chosen = {
        "years": (split.train, ct.TEST_FIRST, ct.TEST_LAST),
        "tiles": (split.held_out, None, ct.TRAIN_LAST),
        "tiles_years": (split.held_out, ct.TEST_FIRST, ct.TEST_LAST),
    }
    out = {}
    for region, (keys, first, last) in chosen.items():
        out[region] = [w for w in (region_windows(files[k], stats, first, last) for k in keys) if w is not None]
        if not out[region]:
            raise ValueError(f"region {region} ({REGIONS[region]}) holds no window")
    return out


def evaluate_cells(
    files: Mapping[str, tuple[str | Path, str | Path]],
    config: EvaluationConfig | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> Evaluation:
    """Split the tiles of ``files`` (tile key -> (shard rows, moments)), train every
    architecture x seed and the ridge on the training tiles, score them and the baselines on
    every region (``REGIONS``) against the cells' own climatology and, on the held-out tiles,
    against climatologies that read no soil of theirs (``REFERENCES``)."""
    config = config or EvaluationConfig()
    split = tile_split(files, config.held_out_fraction, config.split_seed)
    rows = {k: Path(f[0]) for k, f in files.items()}
    stats = training_stats({k: f[1] for k, f in files.items()}, split)
    train_paths = [rows[k] for k in split.train]
    log(f"split (seed {split.seed}): train {', '.join(split.train)}; held out {', '.join(split.held_out)}")
    regions = _regions(rows, split, stats)
    y_mean, y_std = (v.astype(np.float64) for v in stats.of(ct.TARGET_ANOMALIES))
    source = cell_climatology(train_paths)
    held = cell_climatology([rows[k] for k in split.held_out])
    regressed, alpha = regressed_climatology(held.features, source)
    log(f"regressed climatology: alpha {alpha} (leave one training tile out)")
    climatologies = {  # (held-out cell, 12, 4); held.cell is sorted
        "borrowed": borrowed_climatology(held.latitude, held.longitude, source, config.neighbours),
        "regressed": regressed,
    }

    def offset(windows: RegionWindows, reference: str) -> np.ndarray:
        """The reference's minus the own climatology of each window's cell and calendar month."""
        calendar = windows.target_month.astype(np.int64) % 12
        return climatologies[reference][np.searchsorted(held.cell, windows.cell), calendar] - windows.climatology

    offsets = {
        (r, reference): [offset(w, reference) for w in ws]
        for r, ws in regions.items()
        if r != "years"
        for reference in climatologies
    }

    def add(errors: dict, region: str, model: str, anomaly_error: list[np.ndarray]) -> None:
        """An anomaly-predicting model's errors against the own and, held-out tiles, the other climatologies."""
        errors.setdefault((region, "own", model), _Errors())
        for e in anomaly_error:
            errors[(region, "own", model)].add(e)
        for reference in climatologies:
            if (region, reference) not in offsets:
                continue
            key = (region, reference, f"{reference}_climatology" if model == "climatology" else model)
            errors.setdefault(key, _Errors())
            for e, shift in zip(anomaly_error, offsets[(region, reference)], strict=True):
                errors[key].add(e + shift)

    started = time.perf_counter()
    ridge = fit_cell_ridge(train_paths, stats, config.ridge_lags, validation_months=config.training.validation_months)
    ridge_seconds = time.perf_counter() - started
    log(f"ridge: alpha {ridge.alpha} ({ridge_seconds:.1f} s)")
    baselines: dict = {}
    for region, windows in regions.items():
        add(baselines, region, "climatology", [-w.anomaly for w in windows])
        add(baselines, region, "ridge", [ridge.predict(w.x, w.s) * y_std + y_mean - w.anomaly for w in windows])
        persistence = baselines.setdefault((region, "own", "persistence"), _Errors())  # no borrowed variant
        for w in windows:
            persistence.add(w.previous - w.anomaly)
    references = {k: v for k, v in baselines.items() if k[2].endswith("climatology")}
    scores = score_rows(baselines, {"kind": "baseline", "architecture": None, "seed": None})
    runs = [{"model": "ridge", "seed": None, "seconds": ridge_seconds, "epochs_run": None, "best_epoch": None}]
    networks = {}
    for architecture in config.architectures:
        for seed in config.seeds:
            training = replace(
                config.training,
                architecture=architecture,
                seed=seed,
                hyperparameters=network_hyperparameters(architecture, config.units),
            )
            network = ct.train_cell_network(train_paths, stats, training)
            if config.keep_networks:
                networks[(architecture, seed)] = network
            errors: dict = {}
            for region, windows in regions.items():
                every = ct.predict_windows(network.model, windows) * y_std + y_mean  # one call per region
                predicted = np.split(every, np.cumsum([len(w) for w in windows])[:-1])
                add(errors, region, architecture, [p - w.anomaly for p, w in zip(predicted, windows, strict=True)])
            run = {"kind": "network", "architecture": architecture, "seed": seed}
            scored = [r for r in score_rows(references | errors, run) if r["model"] == architecture]
            scores += scored
            runs.append(
                {
                    "model": architecture,
                    "seed": seed,
                    "seconds": network.seconds,
                    "epochs_run": len(network.history.get("loss", [])),
                    "best_epoch": network.best_epoch,
                }
            )
            years = [r["ratio"] for r in scored if r["region"] == "years" and r["reference"] == "own"]
            log(f"{architecture} seed {seed}: {network.seconds:.1f} s, ratio (years) {np.round(years, 3).tolist()}")
    frame = pl.DataFrame(scores, schema_overrides={"architecture": pl.String, "seed": pl.Int64})
    return Evaluation(split, stats, frame, pl.DataFrame(runs, schema_overrides={"seed": pl.Int64}), ridge, networks)
