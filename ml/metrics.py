"""Skill scores for soil-temperature predictions (paper section 2.4: RMSE, MAE, R2).

Textbook definitions on the values given, no weighting:

* ``rmse = sqrt(mean((y - p)^2))``
* ``mae = mean(|y - p|)``
* ``r2 = 1 - SS_res / SS_tot`` with ``SS_res = sum((y - p)^2)`` and
  ``SS_tot = sum((y - mean(y))^2)`` about the mean of ``y_true`` (so predicting that mean
  scores 0 and a worse model scores below 0). R2 is NaN when ``SS_tot`` is 0 (a constant
  truth), where it is undefined.

``evaluation_table`` scores one model over every scope the product reports: all values
pooled ("overall": every layer flattened together), each band, each layer, and each band x
layer. Its ``n`` counts the values scored (windows x layers for the pooled scopes).
"""

from __future__ import annotations

import numpy as np
import polars as pl

# scope, split by band, split by layer
SCOPE_SPLITS: tuple[tuple[str, bool, bool], ...] = (
    ("overall", False, False),
    ("band", True, False),
    ("layer", False, True),
    ("band_layer", True, True),
)
TABLE_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.Utf8,
    "scope": pl.Utf8,
    "band": pl.Int64,
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


def evaluation_table(y_true: np.ndarray, y_pred: np.ndarray, band: np.ndarray, model: str) -> pl.DataFrame:
    """RMSE, MAE, R2 and n for ``model`` overall, per band, per layer and per band x layer.

    ``y_true`` and ``y_pred`` are (n, L) (L = 4 soil layers, degC), ``band`` is (n,). Rows come
    in scope order overall, band, layer, band_layer, sorted by band then layer; ``band`` and
    ``layer`` are null where the scope does not split by them.
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
    n, layers = t.shape
    band_of = np.repeat(b.astype(np.int64), layers)
    layer_of = np.tile(np.arange(layers, dtype=np.int64), n)
    t, p = t.ravel(), p.ravel()
    rows = []
    for scope, by_band, by_layer in SCOPE_SPLITS:
        for band_value in np.unique(band_of) if by_band else [None]:
            for layer_value in range(layers) if by_layer else [None]:
                keep = np.ones(t.shape, dtype=bool)
                if band_value is not None:
                    keep &= band_of == band_value
                if layer_value is not None:
                    keep &= layer_of == layer_value
                truth, pred = t[keep], p[keep]
                rows.append(
                    {
                        "model": model,
                        "scope": scope,
                        "band": None if band_value is None else int(band_value),
                        "layer": layer_value,
                        "rmse": rmse(truth, pred),
                        "mae": mae(truth, pred),
                        "r2": r2(truth, pred),
                        "n": int(keep.sum()),
                    }
                )
    return pl.DataFrame(rows, schema=TABLE_SCHEMA)
