"""Which inputs drive a trained soil-temperature network: mean |SHAP| per feature (paper section 2.5).

shap and Keras are imported inside ``shap_importance``, so importing this module is cheap.
``network_importance`` explains an architecture's first network in its own design.

How the values are computed (shap 0.51, Keras 3, TensorFlow backend):

* ``shap.GradientExplainer`` (expected gradients). DeepExplainer does not support Keras 3
  recurrent and attention layers; GradientExplainer only needs gradients of the outputs with
  respect to a float input.
* The networks also take an integer unit position (a band on the demo, a basin on the real
  tables), which has no gradient. The unit is held fixed per explained window: a wrapper model
  takes only ``x`` and feeds the trained model a unit read from a non-trainable variable, and
  the explained windows are explained unit by unit with the variable set to their unit. The
  background windows (any unit) then supply only their ``x``: the attributions answer "how much
  does this window's weather and soil, against typical windows, move the prediction for its own
  unit". The unit embedding itself gets no attribution.
* A feature's SHAP value for one window and one layer is the SUM of its values over the
  window's time steps (SHAP values are additive, so this is the attribution of the feature
  over the whole window). The network's outputs are in its own units (a residual network's
  in residual standard deviations, the paper's in normalised soil temperature); each layer's
  values are multiplied by that layer's ``output_scale`` (K per output unit) before
  ``mean_abs_shap`` averages their absolute value over the explained windows (hence units)
  and the four soil layers, so the importance is in K: how many kelvin of soil temperature
  a feature moves, each layer weighed by its own variability in kelvin.
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
    """Mean |SHAP| (K) of every input feature of a paper-design network (``ml.training``).

    ``background`` and ``explained`` are normalised windows with the model's features (the
    paper draws both from the test set); outputs are scaled to K by the target standard
    deviations. See ``shap_importance``.
    """
    names = tuple(trained.stats.feature_names)
    for what, windows in (("background", background), ("explained", explained)):
        if tuple(windows.feature_names) != names:
            raise ValueError(
                f"{what} windows have features {list(windows.feature_names)}, the model expects {list(names)}"
            )
    return shap_importance(
        trained.model,
        names,
        background.x,
        explained.x,
        explained.unit,
        trained.stats.target_std,
        max_background,
        max_explained,
        seed,
        samples=samples,
    )


def network_importance(trained, residual_test=None, residual_scaler=None, paper_test=None) -> pl.DataFrame:
    """Mean |SHAP| (K) of the first network of an architecture (``ml.ensemble.TrainedArchitecture``)
    on the test windows of its design, which serve as background and explained windows alike: a
    residual network's correction to the core per channel (``residual_test``, scaled to K by the
    ``residual_scaler``'s residual standard deviations), a paper network's prediction per feature."""
    network = trained.members[0]
    if trained.design == "residual":
        if residual_test is None or residual_scaler is None:
            raise ValueError(f"{trained.architecture} is a residual design: pass its test windows and scaler")
        if residual_scaler.unit_features is not None:
            raise ValueError(f"{trained.architecture}: explaining networks that take unit features is not built")
        x, unit = residual_test.x, residual_test.unit
        return shap_importance(network.model, residual_scaler.channels, x, x, unit, residual_scaler.sigma_res)
    if paper_test is None:
        raise ValueError(f"{trained.architecture} is the paper design: pass the paper's test windows")
    return feature_importance(network, paper_test, paper_test)


def shap_importance(
    model,
    feature_names: tuple[str, ...],
    background_x: np.ndarray,
    explained_x: np.ndarray,
    explained_unit: np.ndarray,
    output_scale: np.ndarray,
    max_background: int = DEFAULT_BACKGROUND,
    max_explained: int = DEFAULT_EXPLAINED,
    seed: int = 0,
    *,
    samples: int = DEFAULT_SAMPLES,
) -> pl.DataFrame:
    """Mean |SHAP| of every input feature: columns ``feature``, ``mean_abs_shap`` (descending),
    in the units of ``output_scale`` (per output layer: K per unit of the model's output).

    ``model`` takes ``{"x": (n, window, F), "unit": (n,)}``. Up to ``max_background`` background
    windows and ``max_explained`` explained windows (with their units) are drawn without
    replacement with ``seed``.
    """
    import keras

    with warnings.catch_warnings():
        # shap's colour maps call matplotlib methods that are pending deprecation; not ours.
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module=r"shap\.")
        import shap

    names = tuple(feature_names)
    for what, x in (("background", background_x), ("explained", explained_x)):
        if x.ndim != 3 or x.shape[2] != len(names):
            raise ValueError(f"{what} windows have shape {x.shape}, expected (n, window, {len(names)})")
        if len(x) == 0:
            raise ValueError(f"no {what} windows")
    for what, value in (("max_background", max_background), ("max_explained", max_explained), ("samples", samples)):
        if value < 1:
            raise ValueError(f"{what} must be >= 1, got {value}")

    rng = np.random.default_rng(seed)
    background_x = background_x[_draw(rng, len(background_x), max_background)].astype(np.float32)
    chosen = _draw(rng, len(explained_x), max_explained)
    explained_unit = np.asarray(explained_unit)[chosen].astype(np.int32)
    explained_x = explained_x[chosen].astype(np.float32)

    unit_holder = _fixed_unit_layer(keras)
    x = keras.Input(shape=explained_x.shape[1:], dtype="float32", name="x")
    output = model({"x": x, "unit": unit_holder(x)})
    # A one-element input list, because shap calls the model with a list of inputs; the
    # float32 Activation makes the output shap reads a plain layer output.
    wrapper = keras.Model([x], keras.layers.Activation("linear", dtype="float32")(output))
    explainer = shap.GradientExplainer(wrapper, background_x)

    per_window = np.zeros((len(chosen), len(names), output.shape[-1]))  # (n, F, layers)
    for unit in np.unique(explained_unit):
        rows = np.flatnonzero(explained_unit == unit)
        unit_holder.unit.assign(int(unit))
        values = explainer.shap_values(explained_x[rows], nsamples=samples, rseed=seed)
        values = np.asarray(values)
        expected = (len(rows), *explained_x.shape[1:], per_window.shape[2])  # (n_unit, window, F, layers)
        if values.shape != expected:
            raise RuntimeError(f"shap returned values of shape {values.shape}, expected {expected}")
        per_window[rows] = values.sum(axis=1)  # the feature's attribution over the whole window
    scale = np.asarray(output_scale, dtype=np.float64)
    if scale.shape != (per_window.shape[2],):
        raise ValueError(f"output_scale has shape {scale.shape}, expected ({per_window.shape[2]},)")
    importance = np.abs(per_window * scale).mean(axis=(0, 2))
    return pl.DataFrame({"feature": list(names), "mean_abs_shap": importance.astype(np.float64)}).sort(
        "mean_abs_shap", descending=True, maintain_order=True
    )


def _draw(rng: np.random.Generator, available: int, wanted: int) -> np.ndarray:
    """Up to ``wanted`` distinct indices in ascending order (all of them when fewer exist)."""
    if available <= wanted:
        return np.arange(available)
    return np.sort(rng.choice(available, size=wanted, replace=False))


def _fixed_unit_layer(keras):
    """A layer ``x (b, ...) -> unit (b,) int32`` filled with a settable unit position.

    Defined here, not in ml.architectures: it exists only for explaining, is never saved,
    and keeps keras out of this module's import.
    """

    class FixedUnit(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(trainable=False, **kwargs)
            self.unit = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False, name="unit")

        def call(self, x):
            return keras.ops.zeros((keras.ops.shape(x)[0],), dtype="int32") + self.unit

        def compute_output_shape(self, input_shape):
            return (input_shape[0],)

    return FixedUnit(name="fixed_unit")
