"""Skill scores for soil-temperature predictions (paper section 2.4: RMSE, MAE, R2).

Textbook definitions on the values given, no weighting:

* ``rmse = sqrt(mean((y - p)^2))``
* ``mae = mean(|y - p|)``
* ``r2 = 1 - SS_res / SS_tot`` with ``SS_res = sum((y - p)^2)`` and
  ``SS_tot = sum((y - mean(y))^2)`` about the mean of ``y_true`` (so predicting that mean
  scores 0 and a worse model scores below 0). R2 is NaN when ``SS_tot`` is 0 (a constant
  truth), where it is undefined.

``evaluation_table`` scores one model over every scope the product reports: all values
pooled ("overall": every layer flattened together), each latitude band of the spatial units
(``band`` null: the units outside every band, grouped), each layer, each band x layer and, where
units are given, each spatial unit (a basin, a cell; on the band demo a unit is its band). Its
``n`` counts the values scored (windows x layers for the pooled scopes).
"""

from __future__ import annotations

import numpy as np
import polars as pl

# scope, split by (band, unit or nothing), split by layer
SCOPE_SPLITS: tuple[tuple[str, str | None, bool], ...] = (
    ("overall", None, False),
    ("band", "band", False),
    ("layer", None, True),
    ("band_layer", "band", True),
    ("unit", "unit", False),
)
# the band of units outside every band (ml.unit_arrays.OUTSIDE_BANDS): null in the tables
OUTSIDE_BANDS = -1
TABLE_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.Utf8,
    "scope": pl.Utf8,
    "band": pl.Int64,
    "unit": pl.Int64,
    "layer": pl.Int64,
    "rmse": pl.Float64,
    "mae": pl.Float64,
    "r2": pl.Float64,
    "n": pl.Int64,
}


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    if t.size == 0:
        raise ValueError("no values to score")
    return t.ravel(), p.ravel()


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _pair(y_true, y_pred)
    ss_res = float(np.sum((t - p) ** 2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - ss_res / ss_tot


def _scope_masks(band: np.ndarray, layers: int, unit: np.ndarray | None = None):
    """(scope, band, unit, layer, mask over the flattened (n, layers) values) of every scope; the
    unit scope only where ``unit`` (n,) ids are given. ``band`` (n,) holds ``OUTSIDE_BANDS`` for
    a unit outside every band: its group's band is null."""
    keys = {"band": np.repeat(band.astype(np.int64), layers)}
    if unit is not None:
        keys["unit"] = np.repeat(np.asarray(unit).astype(np.int64), layers)
    layer_of = np.tile(np.arange(layers), len(band))
    for scope, split, by_layer in SCOPE_SPLITS:
        if split is not None and split not in keys:
            continue
        for value in np.unique(keys[split]) if split else [None]:
            for layer_value in range(layers) if by_layer else [None]:
                keep = np.ones(layer_of.shape, dtype=bool)
                if value is not None:
                    keep &= keys[split] == value
                if layer_value is not None:
                    keep &= layer_of == layer_value
                band_value = int(value) if split == "band" and value != OUTSIDE_BANDS else None
                unit_value = int(value) if split == "unit" else None
                yield scope, band_value, unit_value, layer_value, keep


def evaluation_table(
    y_true: np.ndarray, y_pred: np.ndarray, band: np.ndarray, model: str, unit: np.ndarray | None = None
) -> pl.DataFrame:
    """RMSE, MAE, R2 and n for ``model`` overall, per band, per layer, per band x layer and, with
    ``unit`` (n,) ids, per unit.

    ``y_true`` and ``y_pred`` are (n, L) (L = 4 soil layers, degC), ``band`` is (n,). Rows come
    in scope order overall, band, layer, band_layer, unit, sorted by band (or unit) then layer;
    ``band``, ``unit`` and ``layer`` are null where the scope does not split by them.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    b = np.asarray(band)
    if t.ndim != 2 or t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must be the same (n, layers) shape")
    if b.shape != (t.shape[0],):
        raise ValueError(f"band has shape {b.shape}, expected ({t.shape[0]},)")
    if t.size == 0:
        raise ValueError("no values to score")
    layers = t.shape[1]
    t, p = t.ravel(), p.ravel()
    rows = []
    for scope, band_value, unit_value, layer_value, keep in _scope_masks(b, layers, unit):
        truth, pred = t[keep], p[keep]
        rows.append(
            {
                "model": model,
                "scope": scope,
                "band": band_value,
                "unit": unit_value,
                "layer": layer_value,
                "rmse": rmse(truth, pred),
                "mae": mae(truth, pred),
                "r2": r2(truth, pred),
                "n": int(keep.sum()),
            }
        )
    return pl.DataFrame(rows, schema=TABLE_SCHEMA)


# --- skill against climatology, seeds and year-block intervals -----------------------------

SKILL_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.Utf8,
    "kind": pl.Utf8,  # "network" (one row per member and a seed-mean row), "ensemble", "baseline"
    "member": pl.Int64,  # the network's seed index; null on seed-mean, ensemble and baseline rows
    "members": pl.Int64,  # predictions summarised by the row (seeds for a seed mean)
    "uses_observed_soil_temperature": pl.Boolean,
    "scope": pl.Utf8,
    "band": pl.Int64,
    "unit": pl.Int64,
    "layer": pl.Int64,
    "rmse": pl.Float64,
    "rmse_sd": pl.Float64,  # across seeds, on seed-mean rows
    "rmse_low": pl.Float64,  # 5% and 95% quantiles of the RMSE over resampled years
    "rmse_high": pl.Float64,
    "mae": pl.Float64,
    "r2": pl.Float64,
    "skill": pl.Float64,  # 1 - MSE / MSE of the climatology, same scope
    "n": pl.Int64,
}
# Test-year targets (issue 18), each judged per soil layer: every architecture's seed-mean RMSE
# and the ensemble's this far below monthly climatology on the held-out years, and the ensemble's
# on held-out whole units (basins) below those units' own climatology.
TARGET_ARCHITECTURE = 0.15
TARGET_ENSEMBLE = 0.25
TARGET_HELD_OUT_UNITS = 0.10
BOOTSTRAP_DRAWS = 2000
INTERVAL = (0.05, 0.95)


def skill_table(
    y_true: np.ndarray,
    predictions: np.ndarray,
    climatology: np.ndarray,
    band: np.ndarray,
    year: np.ndarray,
    model: str,
    kind: str,
    uses_observed_soil_temperature: bool = False,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
    unit: np.ndarray | None = None,
) -> pl.DataFrame:
    """Scores of ``predictions`` (members, n, L) of one model over every scope (``SKILL_SCHEMA``;
    the unit scope where ``unit`` (n,) ids are given).

    With several members (a network's seeds) there is one row per member and scope plus a
    seed-mean row (member null) holding the MEAN over members of each score, the standard
    deviation of their RMSE, and the interval of their mean RMSE. With one member (an ensemble
    mean or a baseline) there is one row per scope, member null. ``rmse_low``/``rmse_high``
    resample whole target YEARS (``year`` (n,)) with replacement ``draws`` times (the same
    draws for every model with the same ``seed``), so the months of one year stay together.
    ``skill`` is 1 - MSE / MSE of ``climatology`` (n, L) in the same scope.
    """
    truth = np.asarray(y_true, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.ndim == 2:
        predictions = predictions[None]
    if predictions.shape[1:] != truth.shape or climatology.shape != truth.shape:
        raise ValueError(
            f"predictions {predictions.shape[1:]}, climatology {climatology.shape} and truth {truth.shape} differ"
        )
    members, n, layers = predictions.shape
    year_of = np.repeat(np.asarray(year), layers)
    years, year_index = np.unique(year_of, return_inverse=True)
    picks = np.random.default_rng(seed).integers(0, len(years), (draws, len(years)))
    flat_truth = truth.ravel()
    flat_clim = climatology.ravel()
    flat_predictions = predictions.reshape(members, -1)
    rows = []
    for scope, band_value, unit_value, layer_value, keep in _scope_masks(np.asarray(band), layers, unit):
        t = flat_truth[keep]
        squared = (flat_predictions[:, keep] - t) ** 2  # (members, values)
        mse_clim = float(np.mean((flat_clim[keep] - t) ** 2))
        # per year: sum of squared errors and count, then resampled years -> RMSE per member
        sums = np.stack([np.bincount(year_index[keep], weights=s, minlength=len(years)) for s in squared])
        counts = np.bincount(year_index[keep], minlength=len(years)).astype(float)
        resampled = np.sqrt(sums[:, picks].sum(axis=2) / counts[picks].sum(axis=1))  # (members, draws)
        low, high = np.quantile(resampled.mean(axis=0), INTERVAL)
        per_member = []
        for m in range(members):
            p = flat_predictions[m, keep]
            mse = float(np.mean((p - t) ** 2))
            per_member.append(
                {
                    "rmse": float(np.sqrt(mse)),
                    "mae": mae(t, p),
                    "r2": r2(t, p),
                    "skill": 1.0 - mse / mse_clim if mse_clim > 0 else float("nan"),
                }
            )
        common = {
            "model": model,
            "kind": kind,
            "uses_observed_soil_temperature": uses_observed_soil_temperature,
            "scope": scope,
            "band": band_value,
            "unit": unit_value,
            "layer": layer_value,
            "n": int(keep.sum()),
        }
        if members > 1:
            for m, scores in enumerate(per_member):
                interval = np.quantile(resampled[m], INTERVAL)
                rows.append(
                    {**common, **scores, "member": m, "members": 1, "rmse_low": interval[0], "rmse_high": interval[1]}
                )
        means = {key: float(np.mean([s[key] for s in per_member])) for key in per_member[0]}
        spread = float(np.std([s["rmse"] for s in per_member], ddof=1)) if members > 1 else None
        rows.append(
            {
                **common,
                **means,
                "member": None,
                "members": members,
                "rmse_sd": spread,
                "rmse_low": low,
                "rmse_high": high,
            }
        )
    return pl.DataFrame(rows, schema=SKILL_SCHEMA)
