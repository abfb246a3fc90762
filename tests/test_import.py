"""``nnspec import``: Keras models built here, saved, imported, and compared with the imported
spec on both backends (float32, 1e-5), plus the located errors of what cannot be mapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from nnspec.backends.keras.startup import tensorflow_start_up_held_back

with tensorflow_start_up_held_back():
    import keras
    from keras import layers

import nnspec
from nnspec.importers import import_keras, load_keras_model
from nnspec.importers.check import check

TOLERANCE = 1e-5


def randomized(model: Any, seed: int = 0) -> Any:
    """``model`` with every weight random (biases and statistics too), so a mapping that drops
    or swaps a weight shows in the outputs."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        values = rng.normal(0.0, 0.4, size=shape)
        if "variance" in variable.path:
            values = np.abs(values) + 0.5
        variable.assign(values.astype(variable.dtype))
    return model


def imported(model: Any, tmp_path: Path, name: str = "m") -> Any:
    """Save ``model`` as ``.keras``, import it (spec and weights)."""
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return import_keras(path)


def parity(model: Any, tmp_path: Path) -> dict[str, float]:
    """Import ``model`` and compare it with the spec on both backends: the worst scaled output
    difference per backend, each asserted within 1e-5."""
    result = imported(randomized(model), tmp_path)
    program = nnspec.load(result.text).program
    report = check(load_keras_model(result.source), program, result.weights)
    diffs = {c.backend: c.diff for c in report.comparisons}
    assert set(diffs) == {"keras", "torch"}
    assert all(d <= TOLERANCE for d in diffs.values()), diffs
    return diffs


def ids(length: int = 12) -> Any:
    return keras.Input((length,), dtype="int32", name="tokens")


def test_newsgroups_flatten_classifier(tmp_path: Path) -> None:
    inp = ids()
    x = layers.Embedding(50, 8, embeddings_constraint=keras.constraints.NonNeg(), name="words")(inp)
    x = layers.Flatten()(x)
    x = layers.Dense(5, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(4, activation="softmax")(x)
    model = keras.Model(inp, out)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    parity(model, tmp_path)
    spec = imported(model, tmp_path).spec
    assert spec["embeddings"]["words"] == {
        "vocab_size": 50,
        "dim": 8,
        "initializer": {"type": "uniform", "low": -0.05, "high": 0.05},
        "constraint": {"type": "non_neg"},
    }
    assert [layer["type"] for layer in spec["model"]["layers"]] == [
        "embedding",
        "flatten",
        "dense",
        "dropout",
        "dense",
    ]
    assert spec["model"]["layers"][2]["activation"] == "relu"
    assert spec["training"] == {"loss": "sparse_categorical_crossentropy"}


def test_frozen_table_and_weights_file(tmp_path: Path) -> None:
    inp = ids(6)
    x = layers.Embedding(20, 4, trainable=False, name="glove")(inp)
    out = layers.Dense(3, name="dense")(layers.GlobalMaxPooling1D()(x))
    model = randomized(keras.Model(inp, out))
    result = imported(model, tmp_path)
    assert result.spec["embeddings"]["glove"]["trainable"] is False
    table = model.get_layer("glove").embeddings.numpy()
    np.testing.assert_array_equal(result.weights["glove.embeddings"], table)
    np.testing.assert_array_equal(result.weights["dense.kernel"], model.get_layer("dense").kernel)
    parity(model, tmp_path)


def sequence_model(
    *middle: Any, mask_zero: bool = False, length: int = 10, head: Any = None
) -> Any:
    """``ids -> Embedding(30, 8) -> middle... -> head (Dense 3 softmax)``."""
    inp = ids(length)
    x = layers.Embedding(30, 8, mask_zero=mask_zero, name="words")(inp)
    for layer in middle:
        x = layer(x)
    out = (head or layers.Dense(3, activation="softmax", name="head"))(x)
    return keras.Model(inp, out)


CASES = {
    "global_average_masked": lambda: sequence_model(
        layers.GlobalAveragePooling1D(name="gap"), mask_zero=True
    ),
    "global_max": lambda: sequence_model(layers.GlobalMaxPooling1D(name="gmp")),
    "conv1d_pools": lambda: sequence_model(
        layers.Conv1D(6, 3, padding="same", activation="relu", name="conv"),
        layers.MaxPooling1D(2, name="maxpool"),
        layers.Conv1D(4, 2, dilation_rate=2, padding="causal", name="conv_b"),
        layers.AveragePooling1D(2, strides=1, name="avgpool"),
        layers.Flatten(name="flat"),
    ),
    "lstm_masked": lambda: sequence_model(layers.LSTM(5, name="lstm"), mask_zero=True),
    "gru_sequences_masked": lambda: sequence_model(
        layers.GRU(5, return_sequences=True, name="gru"),
        layers.GlobalAveragePooling1D(name="gap"),
        mask_zero=True,
    ),
    "bidirectional_lstm_concat": lambda: sequence_model(
        layers.Bidirectional(layers.LSTM(4), name="bilstm"), mask_zero=True
    ),
    "bidirectional_gru_sum": lambda: sequence_model(
        layers.Bidirectional(layers.GRU(4), merge_mode="sum", name="bigru")
    ),
    "layer_and_batch_norm": lambda: sequence_model(
        layers.LayerNormalization(epsilon=1e-4, name="ln"),
        layers.BatchNormalization(momentum=0.9, name="bn"),
        layers.Flatten(name="flat"),
    ),
    "activation_layers": lambda: sequence_model(
        layers.Dense(6, name="proj"),
        layers.Activation("tanh", name="tanh"),
        layers.GlobalAveragePooling1D(name="gap"),
        head=keras.Sequential([layers.Dense(3, name="head"), layers.Softmax(name="sm")]).layers[0],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_layer_parity(case: str, tmp_path: Path) -> None:
    parity(CASES[case](), tmp_path)


def test_self_attention(tmp_path: Path) -> None:
    inp = ids(10)
    x = layers.Embedding(30, 8, mask_zero=True, name="words")(inp)
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(x, x)
    x = layers.Add(name="residual")([x, attended])
    x = layers.LayerNormalization(name="ln")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    out = layers.Dense(3, activation="softmax", name="head")(x)
    diffs = parity(keras.Model(inp, out), tmp_path)
    assert max(diffs.values()) <= TOLERANCE


def test_functional_graph_two_inputs_shared_layer(tmp_path: Path) -> None:
    """Two inputs, the two-table trick (a frozen and a trainable table added), a shared dense
    layer applied to both branches, multiply and concatenate."""
    a = keras.Input((6,), dtype="int32", name="premise")
    b = keras.Input((6,), dtype="int32", name="hypothesis")
    frozen = layers.Embedding(40, 8, trainable=False, name="frozen")
    extra = layers.Embedding(40, 8, name="extra")
    shared = layers.Dense(8, activation="tanh", name="shared")
    pooled = []
    for x in (a, b):
        h = layers.Add()([frozen(x), extra(x)])
        pooled.append(layers.GlobalAveragePooling1D()(shared(h)))
    both = layers.Concatenate(name="concat")([pooled[0], layers.Multiply()(pooled)])
    model = keras.Model([a, b], layers.Dense(2, activation="softmax", name="head")(both))
    parity(model, tmp_path)
    spec = imported(model, tmp_path).spec
    shared_calls = [layer for layer in spec["model"]["layers"] if layer.get("share") == "shared"]
    assert len(shared_calls) == 1 and shared_calls[0]["name"] == "shared_1"
    assert spec["embeddings"]["frozen"]["trainable"] is False
    assert list(spec["inputs"]) == ["premise", "hypothesis"]


def test_sequential_json_and_h5(tmp_path: Path) -> None:
    model = keras.Sequential(
        [
            keras.Input((7,), dtype="int32"),
            layers.Embedding(10, 4, name="words"),
            layers.LSTM(3, name="lstm"),
            layers.Dense(2, name="head"),
        ]
    )
    (tmp_path / "seq.json").write_text(model.to_json())
    result = import_keras(tmp_path / "seq.json")
    assert result.weights is None and not result.has_weights
    assert [layer["type"] for layer in result.spec["model"]["layers"]] == [
        "embedding",
        "lstm",
        "dense",
    ]
    randomized(model).save(tmp_path / "seq.h5")
    from_h5 = import_keras(tmp_path / "seq.h5")
    assert from_h5.spec == result.spec
    lstm = model.layers[1]
    np.testing.assert_array_equal(from_h5.weights["lstm.forward.input_bias"], lstm.cell.bias)
    np.testing.assert_array_equal(from_h5.weights["lstm.forward.recurrent_bias"], np.zeros(12))
