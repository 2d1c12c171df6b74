"""The five architectures: shapes, learning, .keras round trip, unit embedding, causality, positions."""

import re
from pathlib import Path

import keras
import numpy as np
import pytest

from ml import architectures
from ml.architectures import ARCHITECTURES, InputSpec, build_model, compile_model

# Keras' TensorFlow backend calls np.array(tensor, copy=False) internally; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

N_FEATURES = 10
SPEC = InputSpec(n_features=N_FEATURES)
NAMES = sorted(ARCHITECTURES)


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)


def _shuffle_all_but_last_month(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Same months in another order, the last month kept last (the Transformer also reads it out)."""
    order = np.r_[np.arange(SPEC.window - 2, -1, -1), SPEC.window - 1]
    return {"x": inputs["x"][:, order, :].copy(), "unit": inputs["unit"]}


def _windows(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Random normalised windows; the target is learnable: the last month of channels 0-3."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, SPEC.window, N_FEATURES)).astype("float32")
    unit = rng.integers(0, SPEC.n_units, n).astype("int32")
    return {"x": x, "unit": unit}, x[:, -1, :4].copy()


@pytest.mark.parametrize("name", NAMES)
def test_builds_with_dict_inputs_and_four_outputs(name):
    model = build_model(name, SPEC)
    inputs, _ = _windows(3)
    assert model.name == name
    assert model.predict(inputs, verbose=0).shape == (3, SPEC.n_targets)
    assert model.get_layer(architectures.OUTPUT_LAYER).units == 4


@pytest.mark.parametrize("name", NAMES)
def test_training_lowers_the_loss(name):
    model = compile_model(build_model(name, SPEC), learning_rate=5e-3)
    inputs, y = _windows(128)
    predict_zero = float(np.mean(y**2))  # MSE of always answering the (normalised) mean
    before = model.evaluate(inputs, y, verbose=0, return_dict=True)["loss"]
    history = model.fit(inputs, y, epochs=4, batch_size=16, verbose=0)
    after = model.evaluate(inputs, y, verbose=0, return_dict=True)["loss"]
    assert np.all(np.isfinite(history.history["loss"]))
    assert after < 0.8 * before, f"{name}: loss {before:.3f} -> {after:.3f}"
    # Learned the signal, not just shrunk its initial outputs towards zero.
    assert after < 0.8 * predict_zero, f"{name}: loss {after:.3f}, predicting 0 gives {predict_zero:.3f}"


@pytest.mark.parametrize("name", NAMES)
def test_keras_file_reloads_without_unsafe_mode(name, tmp_path):
    model = compile_model(build_model(name, SPEC))
    inputs, y = _windows(32)
    model.fit(inputs, y, epochs=1, batch_size=16, verbose=0)  # weights differ from a fresh init
    path = tmp_path / f"{name}.keras"
    model.save(path)

    reloaded = keras.models.load_model(path)  # default safe_mode=True

    np.testing.assert_allclose(
        reloaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0), rtol=1e-5, atol=1e-6
    )
    assert reloaded.count_params() == model.count_params()
    assert architectures.load_model(path).name == name


@pytest.mark.parametrize("name", NAMES)
def test_unit_embedding_changes_the_prediction(name):
    model = build_model(name, SPEC)
    embedding = model.get_layer(architectures.UNIT_EMBEDDING_LAYER)
    assert isinstance(embedding, keras.layers.Embedding)
    assert (embedding.input_dim, embedding.output_dim) == (SPEC.n_units, SPEC.embedding_dim)
    rows = np.linspace(-1.0, 1.0, SPEC.n_units * SPEC.embedding_dim, dtype="float32")
    embedding.set_weights([rows.reshape(SPEC.n_units, SPEC.embedding_dim)])
    inputs, _ = _windows(1)
    same_x = np.repeat(inputs["x"], 2, axis=0)

    out = model.predict({"x": same_x, "unit": np.array([0, 5], dtype="int32")}, verbose=0)

    assert np.abs(out[0] - out[1]).max() > 1e-4


def test_tcn_conv_stack_is_causal():
    model = build_model("tcn", SPEC)
    stack = keras.Model(model.inputs, model.get_layer(architectures.TCN_STACK_OUTPUT_LAYER).output)
    inputs, _ = _windows(2)
    perturbed = {"x": inputs["x"].copy(), "unit": inputs["unit"]}
    step = 15
    perturbed["x"][:, step, :] += 5.0

    before = stack.predict(inputs, verbose=0)
    after = stack.predict(perturbed, verbose=0)

    assert before.shape[:2] == (2, SPEC.window)
    np.testing.assert_array_equal(after[:, :step], before[:, :step])  # the past cannot see step 15
    assert np.abs(after[:, step] - before[:, step]).max() > 1e-4
    assert np.abs(after[:, -1] - before[:, -1]).max() > 1e-4  # receptive field reaches back 9 steps


def test_tcn_prediction_depends_on_the_last_month():
    model = build_model("tcn", SPEC)
    inputs, _ = _windows(2)
    changed = {"x": inputs["x"].copy(), "unit": inputs["unit"]}
    changed["x"][:, -1, :] += 5.0
    assert np.abs(model.predict(changed, verbose=0) - model.predict(inputs, verbose=0)).max() > 1e-4


def test_transformer_knows_the_order_of_the_months():
    model = build_model("transformer", SPEC)
    inputs, _ = _windows(2)
    shuffled = _shuffle_all_but_last_month(inputs)

    out = model.predict(inputs, verbose=0)
    out_shuffled = model.predict(shuffled, verbose=0)

    # Without the position code, attention + pooling would give the same output (next test).
    assert np.abs(out - out_shuffled).max() > 1e-3


def test_transformer_without_position_code_would_be_order_blind(monkeypatch):
    """Guards the test above: the position encoding, nothing else, breaks the time symmetry."""

    class NoPosition(keras.layers.Layer):
        def call(self, inputs):
            return inputs

    monkeypatch.setattr(architectures, "SinusoidalPositionEncoding", NoPosition)
    model = build_model("transformer", SPEC)
    inputs, _ = _windows(2)
    shuffled = _shuffle_all_but_last_month(inputs)

    np.testing.assert_allclose(
        model.predict(shuffled, verbose=0), model.predict(inputs, verbose=0), rtol=1e-4, atol=1e-5
    )


def test_position_code_is_bounded_and_differs_between_months():
    code = architectures.SinusoidalPositionEncoding()(keras.ops.zeros((1, SPEC.window, 8)))
    code = keras.ops.convert_to_numpy(code)[0]
    np.testing.assert_allclose(code[0], [0, 1] * 4, atol=1e-6)  # sin(0), cos(0) per pair
    assert np.abs(code).max() <= 1.0 + 1e-6
    assert len({tuple(row) for row in np.round(code, 4)}) == SPEC.window


def test_hyperparameters_override_defaults_and_unknown_keys_fail():
    small = build_model("gru", SPEC, {"units": 8, "layers": 1})
    assert small.get_layer("gru1").units == 8
    assert small.count_params() < build_model("gru", SPEC).count_params()
    with pytest.raises(ValueError, match="unknown hyperparameters \\['unit'\\]"):
        build_model("gru", SPEC, {"unit": 8})


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(ValueError, match="lstm.*bilstm.*conv1d_lstm.*gru.*tcn.*transformer"):
        build_model("lstm", SPEC)


def test_compile_uses_adam_mse_and_mae():
    model = compile_model(build_model("bilstm", SPEC), learning_rate=5e-4)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(5e-4)
    assert model.loss == "mse"
    inputs, y = _windows(16)
    assert set(model.evaluate(inputs, y, verbose=0, return_dict=True)) == {"loss", "mae"}


def test_input_spec_rejects_nonsense():
    assert InputSpec(n_features=33).window == 24
    with pytest.raises(ValueError, match="n_features"):
        InputSpec(n_features=0)


def test_module_uses_neither_lambda_layers_nor_tensorflow():
    source = Path(architectures.__file__).read_text()
    assert "Lambda(" not in source
    assert not re.search(r"^\s*(import|from)\s+tensorflow", source, flags=re.MULTILINE)
    assert "tf." not in source
