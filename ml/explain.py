"""Which inputs drive a trained soil-temperature network: mean |SHAP| per feature (paper section 2.5).

shap and Keras are imported inside ``feature_importance``, so importing this module is cheap.

How the values are computed (shap 0.51, Keras 3, TensorFlow backend):

* ``shap.GradientExplainer`` (expected gradients). DeepExplainer does not support Keras 3
  recurrent and attention layers; GradientExplainer only needs gradients of the outputs with
  respect to a float input.
* The networks also take an integer band index, which has no gradient. The band is held
  fixed per explained window: a wrapper model takes only ``x`` and feeds the trained model
  a band read from a non-trainable variable, and the explained windows are explained band
  by band with the variable set to their band. The background windows (any band) then
  supply only their ``x``: the attributions answer "how much does this window's weather and
  soil, against typical windows, move the prediction for its own band". The band
  embedding itself gets no attribution.
* A feature's SHAP value for one window and one layer is the SUM of its values over the
  window's time steps (SHAP values are additive, so this is the attribution of the feature
  over the whole window); ``mean_abs_shap`` is the mean of its absolute value over the
  explained windows (hence bands) and the four soil layers, in the model's output units
  (normalised soil temperature: each layer weighs the same, whatever its variance in degC).
* Deterministic for ``seed``: it picks the background and explained windows and seeds
  shap's own sampling of background windows and interpolation points (shap does that by
  reseeding numpy's global random state).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ml.windows import WindowSet

if TYPE_CHECKING:
    from ml.training import TrainedModel

# Paper: 100 background windows from the test set, 10 explained.
DEFAULT_BACKGROUND = 100
DEFAULT_EXPLAINED = 10
# Samples (background draws x interpolation points) per explained window; shap's default.
DEFAULT_SAMPLES = 200


def feature_importance(
    trained: TrainedModel,
    background: WindowSet,
    explained: WindowSet,
    max_background: int = DEFAULT_BACKGROUND,
    max_explained: int = DEFAULT_EXPLAINED,
    seed: int = 0,
    *,
    samples: int = DEFAULT_SAMPLES,
) -> pl.DataFrame:
    """Mean |SHAP| of every input feature: columns ``feature``, ``mean_abs_shap`` (descending).

    ``background`` and ``explained`` are normalised windows with the model's features (the
    paper draws both from the test set). Up to ``max_background`` and ``max_explained`` of
    them are drawn without replacement with ``seed``.
    """
    import keras

    with warnings.catch_warnings():
        # shap's colour maps call matplotlib methods that are pending deprecation; not ours.
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module=r"shap\.")
        import shap

    names = tuple(trained.stats.feature_names)
    for what, windows in (("background", background), ("explained", explained)):
        if tuple(windows.feature_names) != names:
            raise ValueError(
                f"{what} windows have features {list(windows.feature_names)}, the model expects {list(names)}"
            )
        if len(windows) == 0:
            raise ValueError(f"no {what} windows")
    for what, value in (("max_background", max_background), ("max_explained", max_explained), ("samples", samples)):
        if value < 1:
            raise ValueError(f"{what} must be >= 1, got {value}")

    rng = np.random.default_rng(seed)
    background_x = background.x[_draw(rng, len(background), max_background)].astype(np.float32)
    chosen = _draw(rng, len(explained), max_explained)
    explained_x = explained.x[chosen].astype(np.float32)
    explained_band = explained.band[chosen].astype(np.int32)

    band_holder = _fixed_band_layer(keras)
    x = keras.Input(shape=explained_x.shape[1:], dtype="float32", name="x")
    output = trained.model({"x": x, "band": band_holder(x)})
    # A one-element input list, because shap calls the model with a list of inputs; the
    # float32 Activation makes the output shap reads a plain layer output.
    wrapper = keras.Model([x], keras.layers.Activation("linear", dtype="float32")(output))
    explainer = shap.GradientExplainer(wrapper, background_x)

    per_window = np.zeros((len(chosen), len(names), output.shape[-1]))  # (n, F, layers)
    for band in np.unique(explained_band):
        rows = np.flatnonzero(explained_band == band)
        band_holder.band.assign(int(band))
        values = explainer.shap_values(explained_x[rows], nsamples=samples, rseed=seed)
        values = np.asarray(values)
        expected = (len(rows), *explained_x.shape[1:], per_window.shape[2])  # (n_band, window, F, layers)
        if values.shape != expected:
            raise RuntimeError(f"shap returned values of shape {values.shape}, expected {expected}")
        per_window[rows] = values.sum(axis=1)  # the feature's attribution over the whole window
    importance = np.abs(per_window).mean(axis=(0, 2))
    return pl.DataFrame({"feature": list(names), "mean_abs_shap": importance.astype(np.float64)}).sort(
        "mean_abs_shap", descending=True, maintain_order=True
    )


def _draw(rng: np.random.Generator, available: int, wanted: int) -> np.ndarray:
    """Up to ``wanted`` distinct indices in ascending order (all of them when fewer exist)."""
    if available <= wanted:
        return np.arange(available)
    return np.sort(rng.choice(available, size=wanted, replace=False))


def _fixed_band_layer(keras):
    """A layer ``x (b, ...) -> band (b,) int32`` filled with a settable band index.

    Defined here, not in ml.architectures: it exists only for explaining, is never saved,
    and keeps keras out of this module's import.
    """

    class FixedBand(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(trainable=False, **kwargs)
            self.band = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False, name="band")

        def call(self, x):
            return keras.ops.zeros((keras.ops.shape(x)[0],), dtype="int32") + self.band

        def compute_output_shape(self, input_shape):
            return (input_shape[0],)

    return FixedBand(name="fixed_band")
