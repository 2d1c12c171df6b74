"""The paper's five soil-temperature networks (section 2.3.1), written in Keras 3 only: their
builders (``ml.architecture_catalog`` lists them).

Every model takes ``{"x": (batch, window, n_features) float32, "unit": (batch,) int32}`` and
returns ``(batch, 4)``: the four normalised soil-layer temperatures of the month after the
window. The unit's position (a band on the demo, a basin on the real tables) goes through a
learnable embedding of size 4, as many rows as the data has units, that is appended to every
time step of the window (paper eq. 2.4, B_j = [b, ..., b]) before the architecture proper. A
model for units it will not have seen takes ``"unit_features": (batch, K) float32`` (per-unit
features such as latitude and climate) instead, appended the same way.

Only ``keras`` / ``keras.ops`` are used (no TensorFlow import), so the models run unchanged on
the JAX and PyTorch backends. Custom layers are registered classes with ``get_config``, never
``Lambda`` layers, so saved ``.keras`` files reload with plain ``keras.models.load_model``
once this module has been imported (``load_model`` below does both).

Keras is imported at module top level: this module is imported only inside asset bodies and
training code, never at Dagster definition load, so the import cost (about 10 s) is paid only
when a model is actually built or loaded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
from keras import layers, ops

# the list of the architectures (this module holds their builders), also found here by callers
from ml import architecture_catalog
from ml.architecture_catalog import ARCHITECTURES  # noqa: F401

SERIALIZATION_PACKAGE = "permafrost"
UNIT_EMBEDDING_LAYER = "unit_embedding"
OUTPUT_LAYER = "soil_temperature"
TCN_STACK_OUTPUT_LAYER = "tcn_stack_output"


@dataclass(frozen=True)
class InputSpec:
    """Shape of one model input: ``window`` months x ``n_features`` channels, plus the unit: its
    position among ``n_units`` (the embedding's rows), or ``unit_features`` features when > 0."""

    n_features: int
    window: int = 24
    n_units: int = 6
    n_targets: int = 4
    embedding_dim: int = 4
    unit_features: int = 0

    def __post_init__(self) -> None:
        for name in ("n_features", "window", "n_units", "n_targets", "embedding_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"InputSpec.{name} must be a positive int, got {value!r}")
        if not isinstance(self.unit_features, int) or self.unit_features < 0:
            raise ValueError(f"InputSpec.unit_features must be a non-negative int, got {self.unit_features!r}")


# --- custom layers ------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class AppendToEveryStep(layers.Layer):
    """``[x (b, T, F), v (b, E)] -> (b, T, F + E)``: v concatenated to each of the T steps."""

    def call(self, inputs):
        sequence, vector = inputs
        vector = ops.cast(vector, sequence.dtype)
        # (b, T, 1) * (b, 1, E) broadcasts to (b, T, E) without needing T as a Python int,
        # so the layer works for any window length and on every backend.
        steps = ops.ones_like(sequence[..., :1])
        repeated = steps * ops.expand_dims(vector, axis=1)
        return ops.concatenate([sequence, repeated], axis=-1)

    def compute_output_shape(self, input_shape):
        sequence_shape, vector_shape = input_shape
        channels = None
        if sequence_shape[-1] is not None and vector_shape[-1] is not None:
            channels = sequence_shape[-1] + vector_shape[-1]
        return (*sequence_shape[:-1], channels)

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class SinusoidalPositionEncoding(layers.Layer):
    """Adds the fixed sine/cosine position code of Vaswani et al. (2017) to ``(b, T, d)``.

    Self-attention followed by average pooling is blind to the order of the months; this code
    is what lets the Transformer tell January-of-year-1 from January-of-year-2. It has no
    weights, so it works for any window length.
    """

    def __init__(self, max_wavelength: float = 10_000.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = float(max_wavelength)

    def call(self, inputs):
        steps = ops.shape(inputs)[1]
        width = inputs.shape[-1]
        position = ops.cast(ops.arange(steps), self.compute_dtype)[:, None]  # (T, 1)
        channel = ops.arange(width)
        pair = ops.cast(channel // 2 * 2, self.compute_dtype)
        frequency = ops.exp(-math.log(self.max_wavelength) * pair / width)[None, :]  # (1, d)
        angle = position * frequency
        is_even = ops.equal(channel % 2, 0)[None, :]
        code = ops.where(is_even, ops.sin(angle), ops.cos(angle))  # (T, d)
        return inputs + ops.cast(code, inputs.dtype)[None, :, :]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


# --- shared pieces ------------------------------------------------------------------------


def _hyperparameters(builder: str, defaults: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults updated with ``overrides``; an unknown key is an error, not silently ignored."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"{builder}: unknown hyperparameters {unknown}; expected some of {sorted(defaults)}")
    return {**defaults, **overrides}


def _inputs(spec: InputSpec) -> tuple[dict[str, keras.KerasTensor], keras.KerasTensor]:
    """Model inputs and the window with the unit's embedding (b, window, F + 4), or its
    features (b, window, F + K), appended."""
    x = keras.Input(shape=(spec.window, spec.n_features), dtype="float32", name="x")
    if spec.unit_features:
        features = keras.Input(shape=(spec.unit_features,), dtype="float32", name="unit_features")
        return {"x": x, "unit_features": features}, AppendToEveryStep(name="append_unit")([x, features])
    unit = keras.Input(shape=(), dtype="int32", name="unit")
    unit_vector = layers.Embedding(spec.n_units, spec.embedding_dim, name=UNIT_EMBEDDING_LAYER)(unit)
    return {"x": x, "unit": unit}, AppendToEveryStep(name="append_unit")([x, unit_vector])


def _last_step(sequence: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """``(b, T, c) -> (b, c)``: the features of the window's last month."""
    last = layers.Cropping1D((sequence.shape[1] - 1, 0), name=f"{name}_crop")(sequence)
    return layers.Flatten(name=name)(last)


def _head(features: keras.KerasTensor, spec: InputSpec, dropout: float) -> keras.KerasTensor:
    """Dropout then a linear Dense to the four (normalised) layer temperatures."""
    if dropout > 0:
        features = layers.Dropout(dropout, name="head_dropout")(features)
    return layers.Dense(spec.n_targets, name=OUTPUT_LAYER)(features)


# --- TCN ----------------------------------------------------------------------------------

TCN_DEFAULTS: dict[str, Any] = {
    "filters": 32,
    "kernel_size": 3,
    # Receptive field 1 + 2 * (kernel_size - 1) * sum(dilations) = 61 months >= 24.
    "dilations": (1, 2, 4, 8),
    "dropout": 0.1,
}


def _tcn_residual_block(
    sequence: keras.KerasTensor, filters: int, kernel_size: int, dilation: int, dropout: float, name: str
) -> keras.KerasTensor:
    """Two causal dilated convolutions plus a skip (1x1 conv when the channel count changes)."""
    path = sequence
    for i in (1, 2):
        path = layers.Conv1D(
            filters, kernel_size, padding="causal", dilation_rate=dilation, activation="relu", name=f"{name}_conv{i}"
        )(path)
        if dropout > 0:
            path = layers.Dropout(dropout, name=f"{name}_dropout{i}")(path)
    skip = sequence
    if sequence.shape[-1] != filters:
        skip = layers.Conv1D(filters, 1, name=f"{name}_skip")(sequence)
    return layers.Add(name=f"{name}_add")([skip, path])


def build_tcn(spec: InputSpec, hyperparameters: dict | None = None) -> keras.Model:
    """Temporal convolutional network: residual blocks of causal dilated Conv1D, last step -> Dense.

    Hyperparameters (defaults in ``TCN_DEFAULTS``): ``filters`` 32, ``kernel_size`` 3,
    ``dilations`` (1, 2, 4, 8), ``dropout`` 0.1. The output of the conv stack at step t sees
    only steps <= t; the layer named ``TCN_STACK_OUTPUT_LAYER`` is that stack's output.
    """
    hp = _hyperparameters("build_tcn", TCN_DEFAULTS, hyperparameters)
    inputs, sequence = _inputs(spec)
    for dilation in hp["dilations"]:
        sequence = _tcn_residual_block(
            sequence, hp["filters"], hp["kernel_size"], dilation, hp["dropout"], name=f"tcn_block_d{dilation}"
        )
        sequence = layers.Activation("relu", name=f"tcn_block_d{dilation}_relu")(sequence)
    sequence = layers.Identity(name=TCN_STACK_OUTPUT_LAYER)(sequence)
    last_step = _last_step(sequence, name="last_step")
    return keras.Model(inputs, _head(last_step, spec, hp["dropout"]), name="tcn")


# --- Transformer --------------------------------------------------------------------------

TRANSFORMER_DEFAULTS: dict[str, Any] = {
    "d_model": 32,
    "heads": 4,
    "ff_units": 64,
    "layers": 2,
    "dropout": 0.1,
}


def _transformer_encoder_block(
    sequence: keras.KerasTensor, d_model: int, heads: int, ff_units: int, dropout: float, name: str
) -> keras.KerasTensor:
    """Self-attention and feed-forward sub-layers, each with a residual and layer norm (post-norm)."""
    attended = layers.MultiHeadAttention(
        num_heads=heads, key_dim=max(1, d_model // heads), dropout=dropout, name=f"{name}_attention"
    )(sequence, sequence)
    sequence = layers.LayerNormalization(name=f"{name}_attention_norm")(
        layers.Add(name=f"{name}_attention_add")([sequence, attended])
    )
    fed = layers.Dense(ff_units, activation="relu", name=f"{name}_ff1")(sequence)
    fed = layers.Dense(d_model, name=f"{name}_ff2")(fed)
    if dropout > 0:
        fed = layers.Dropout(dropout, name=f"{name}_ff_dropout")(fed)
    return layers.LayerNormalization(name=f"{name}_ff_norm")(layers.Add(name=f"{name}_ff_add")([sequence, fed]))


def build_transformer(spec: InputSpec, hyperparameters: dict | None = None) -> keras.Model:
    """Transformer encoder: project to d_model, add sinusoidal positions, encoder blocks, then
    the window mean and the last step -> Dense.

    Hyperparameters (defaults in ``TRANSFORMER_DEFAULTS``): ``d_model`` 32, ``heads`` 4,
    ``ff_units`` 64, ``layers`` 2, ``dropout`` 0.1.
    """
    hp = _hyperparameters("build_transformer", TRANSFORMER_DEFAULTS, hyperparameters)
    inputs, sequence = _inputs(spec)
    sequence = layers.Dense(hp["d_model"], name="projection")(sequence)
    sequence = SinusoidalPositionEncoding(name="position_encoding")(sequence)
    for i in range(hp["layers"]):
        sequence = _transformer_encoder_block(
            sequence, hp["d_model"], hp["heads"], hp["ff_units"], hp["dropout"], name=f"encoder{i + 1}"
        )
    # Mean pooling summarises the window; the last month is read out beside it because the
    # next month depends most on the latest ones, and mean pooling alone learns that slowly.
    pooled = layers.Concatenate(name="window_summary")(
        [layers.GlobalAveragePooling1D(name="mean_over_window")(sequence), _last_step(sequence, name="last_step")]
    )
    return keras.Model(inputs, _head(pooled, spec, hp["dropout"]), name="transformer")


# --- Conv1D + LSTM ------------------------------------------------------------------------

CONV1D_LSTM_DEFAULTS: dict[str, Any] = {
    "filters": 32,
    "kernel_size": 3,
    "units": 64,
    "dropout": 0.1,
}


def build_conv1d_lstm(spec: InputSpec, hyperparameters: dict | None = None) -> keras.Model:
    """Conv1D feature extraction (causal, keeps the 24 steps) then an LSTM over the features.

    Hyperparameters (defaults in ``CONV1D_LSTM_DEFAULTS``): ``filters`` 32, ``kernel_size`` 3,
    ``units`` 64, ``dropout`` 0.1.
    """
    hp = _hyperparameters("build_conv1d_lstm", CONV1D_LSTM_DEFAULTS, hyperparameters)
    inputs, sequence = _inputs(spec)
    sequence = layers.Conv1D(hp["filters"], hp["kernel_size"], padding="causal", activation="relu", name="conv")(
        sequence
    )
    state = layers.LSTM(hp["units"], name="lstm")(sequence)
    return keras.Model(inputs, _head(state, spec, hp["dropout"]), name="conv1d_lstm")


# --- GRU ----------------------------------------------------------------------------------

GRU_DEFAULTS: dict[str, Any] = {
    "units": 64,
    "layers": 2,
    "dropout": 0.1,
}


def build_gru(spec: InputSpec, hyperparameters: dict | None = None) -> keras.Model:
    """Stacked GRU: every layer but the last returns its full sequence; last state -> Dense.

    Hyperparameters (defaults in ``GRU_DEFAULTS``): ``units`` 64 per layer, ``layers`` 2,
    ``dropout`` 0.1 (between layers and before the head, not recurrent dropout).
    """
    hp = _hyperparameters("build_gru", GRU_DEFAULTS, hyperparameters)
    inputs, sequence = _inputs(spec)
    for i in range(hp["layers"]):
        is_last = i == hp["layers"] - 1
        sequence = layers.GRU(hp["units"], return_sequences=not is_last, name=f"gru{i + 1}")(sequence)
        if not is_last and hp["dropout"] > 0:
            sequence = layers.Dropout(hp["dropout"], name=f"gru{i + 1}_dropout")(sequence)
    return keras.Model(inputs, _head(sequence, spec, hp["dropout"]), name="gru")


# --- BiLSTM -------------------------------------------------------------------------------

BILSTM_DEFAULTS: dict[str, Any] = {
    "units": 32,
    "dropout": 0.1,
}


def build_bilstm(spec: InputSpec, hyperparameters: dict | None = None) -> keras.Model:
    """Bidirectional LSTM (forward and backward final states concatenated) -> Dense.

    Hyperparameters (defaults in ``BILSTM_DEFAULTS``): ``units`` 32 per direction,
    ``dropout`` 0.1.
    """
    hp = _hyperparameters("build_bilstm", BILSTM_DEFAULTS, hyperparameters)
    inputs, sequence = _inputs(spec)
    state = layers.Bidirectional(layers.LSTM(hp["units"], name="lstm"), name="bilstm")(sequence)
    return keras.Model(inputs, _head(state, spec, hp["dropout"]), name="bilstm")


# --- build, compile, load ----------------------------------------------------------------


def build_model(name: str, spec: InputSpec, hyperparameters: dict | None = None) -> keras.Model:
    """Build the architecture called ``name`` (``ml.architecture_catalog.ARCHITECTURES``)."""
    return architecture_catalog.architecture(name).build(spec, hyperparameters)


def compile_model(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Compile for regression on normalised targets: Adam, MSE loss, MAE metric. Returns ``model``."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse", metrics=["mae"])
    return model


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` file saved from one of these models (this module registers its layers)."""
    return keras.models.load_model(path)
