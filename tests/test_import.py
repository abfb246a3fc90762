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
from nnspec.importers import ImportFailed, import_keras, load_keras_model
from nnspec.importers.check import check
from tests.conftest import EXAMPLE_NAMES

TOLERANCES = {"float32": 1e-5, "float64": 1e-12}


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


def parity(model: Any, tmp_path: Path) -> dict[str, dict[str, float]]:
    """Import ``model`` and compare it with the spec on both backends in float32 and float64:
    the worst scaled output difference per dtype and backend, each asserted within 1e-5
    (float64: 1e-12)."""
    result = imported(randomized(model), tmp_path)
    program = nnspec.load(result.text).program
    keras_model = load_keras_model(result.source)
    diffs = {}
    for dtype, tolerance in TOLERANCES.items():
        report = check(keras_model, program, result.weights, dtype=dtype)
        diffs[dtype] = {}
        for c in report.comparisons:  # the worst output per backend
            diffs[dtype][c.backend] = max(c.diff, diffs[dtype].get(c.backend, 0.0))
        assert {c.name for c in report.comparisons} == set(program.outputs)
        assert set(diffs[dtype]) == {"keras", "torch"}
        assert all(d <= tolerance for d in diffs[dtype].values()), (dtype, diffs)
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
    (warning,) = imported(model, tmp_path).warnings  # the README's problem 1, found by lint
    assert "warning: [NN201] table 'words' has no padding" in warning
    assert spec["training"] == {
        "loss": "sparse_categorical_crossentropy",
        "optimizer": {"type": "adam", "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7},
    }


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
    "time_distributed_dense": lambda: sequence_model(
        layers.TimeDistributed(layers.Dense(5, activation="tanh"), name="td"),
        layers.GlobalAveragePooling1D(name="gap"),
        mask_zero=True,
    ),
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
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(query=x, value=x)
    x = layers.Add(name="residual")([x, attended])
    x = layers.LayerNormalization(name="ln")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    out = layers.Dense(3, activation="softmax", name="head")(x)
    diffs = parity(keras.Model(inp, out), tmp_path)
    assert max(diffs["float32"].values()) <= 1e-5
    assert max(diffs["float64"].values()) <= 1e-12


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


@keras.saving.register_keras_serializable(package="test_import")
class Doubling(layers.Layer):
    """A custom layer: the importer cannot know what it computes."""

    def call(self, x: Any) -> Any:
        return x * 2.0


def failed(model: Any, tmp_path: Path) -> list[str]:
    """The problems of importing ``model`` (which must fail)."""
    with pytest.raises(ImportFailed) as info:
        imported(model, tmp_path)
    return info.value.problems


def test_lambda_custom_layer_and_options_are_located_errors(tmp_path: Path) -> None:
    inp = ids(8)
    x = layers.Embedding(20, 4, name="words")(inp)
    x = layers.Lambda(lambda t: t * 2.0, name="scale_by_two")(x)
    x = Doubling(name="doubling")(x)
    x = layers.LSTM(3, go_backwards=True, name="lstm")(x)
    x = layers.Dense(3, kernel_regularizer="l2", activation="elu", name="head")(x)
    problems = failed(keras.Model(inp, x), tmp_path)
    assert problems[0].startswith("layer 'scale_by_two' (Lambda): a Lambda layer runs arbitrary")
    assert problems[1].startswith("layer 'doubling' (Doubling): a custom layer (module")
    # Layers after an unmappable one are still checked, each problem located.
    assert "layer 'lstm' (LSTM): go_backwards=True has no spec form" in problems
    assert "layer 'head' (Dense): kernel_regularizer is set; the spec has no kernel " in (
        " ".join(problems)
    )
    assert any(p.startswith("layer 'head' (Dense): activation 'elu' has no spec") for p in problems)


def test_mask_zero_into_flatten_is_an_error(tmp_path: Path) -> None:
    """Keras' mask_zero does not zero row 0: Flatten sees its vector, the spec's padding 0.0."""
    model = sequence_model(layers.Flatten(name="flat"), mask_zero=True)
    (problem,) = failed(model, tmp_path)
    assert problem.startswith(
        "layer 'words' (Embedding): mask_zero=True and the padded positions reach Flatten 'flat'"
    )


def test_cli_import_check_and_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nnspec.cli import app

    runner = CliRunner()
    model = randomized(sequence_model(layers.GlobalAveragePooling1D(name="gap"), mask_zero=True))
    model.save(tmp_path / "clf.keras")
    spec, weights = tmp_path / "clf.yaml", tmp_path / "clf.safetensors"
    args = ["import", str(tmp_path / "clf.keras"), "--out", str(spec), "--weights", str(weights)]
    result = runner.invoke(app, [*args, "--check"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "keras, torch and the keras original model agree in float32" in result.output
    assert "keras, torch and the keras original model agree in float64" in result.output
    assert nnspec.load(spec).spec.embeddings["words"].padding is not None
    from safetensors.numpy import load_file

    state = load_file(str(weights))
    table = model.get_layer("words").embeddings.numpy()
    np.testing.assert_array_equal(state["words.embeddings"][1:], table[1:])
    np.testing.assert_array_equal(state["words.embeddings"][0], np.zeros(8))  # the pad row
    # Existing files are kept unless --force.
    assert runner.invoke(app, args).exit_code == 2
    # An unmappable model: exit 1, located lines, nothing written, no traceback.
    bad = sequence_model(layers.Flatten(name="flat"), mask_zero=True)
    bad.save(tmp_path / "bad.keras")
    out = tmp_path / "bad.yaml"
    result = runner.invoke(app, ["import", str(tmp_path / "bad.keras"), "--out", str(out)])
    assert result.exit_code == 1
    assert "bad.keras: layer 'words' (Embedding): mask_zero=True" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_round_trip_newsgroups_flat(tmp_path: Path) -> None:
    """Spec -> weights of the generated Keras model -> the same architecture in plain Keras ->
    .keras -> import: the same spec (normalised, the training section aside) and bit-identical
    weights. The example's pad zeroing is written as plain Keras writes it, the embedding output
    times ``ids > 0`` (keras.ops), and comes back as ``padding: {index: 0}``."""
    from keras import ops

    from tests.parity_helpers import SMALLER

    source = (Path(__file__).parent.parent / "examples/newsgroups_flat/spec.yaml").read_text()
    for old, new in SMALLER["newsgroups_flat"].items():
        source = source.replace(old, new)
    original = nnspec.load(source)
    state = nnspec.build(original, "keras").canonical_state()

    inp = keras.Input((30,), dtype="int32", name="tokens")
    table = layers.Embedding(60, 8, name="words")
    x = table(inp) * ops.expand_dims(ops.cast(ops.greater(inp, 0), "float32"), -1)
    dense = layers.Dense(25, activation="relu", name="dense")
    head = layers.Dense(20, activation="softmax", name="dense_1")
    x = layers.Dropout(0.3, name="dropout")(dense(layers.Flatten(name="flatten")(x)))
    model = keras.Model(inp, head(x))
    model.compile(loss="sparse_categorical_crossentropy")
    table.embeddings.assign(state["words.embeddings"])
    for layer in (dense, head):
        layer.kernel.assign(state[f"{layer.name}.kernel"])
        layer.bias.assign(state[f"{layer.name}.bias"])

    result = imported(model, tmp_path, "newsgroups_flat")
    # Normalised: the compiled programs (names resolved, defaults filled in).
    again = nnspec.load(result.text).program
    assert again.nodes == original.program.nodes
    assert again.inputs == original.program.inputs
    assert again.tables == original.program.tables
    assert again.weights == original.program.weights
    assert result.weights is not None and result.weights.keys() == state.keys()
    for name, value in state.items():
        np.testing.assert_array_equal(result.weights[name], value)


def test_mask_multiply_pattern_is_the_padding_policy(tmp_path: Path) -> None:
    """The seed's fix, ``embedding(ids) * cast(ids > 0)[..., None]``, is ``padding: {index: 0}``;
    before a layer that reads masks it is not (the spec's padding would mask it) and fails."""
    from keras import ops

    def model(pool: Any) -> Any:
        inp = ids(10)
        x = layers.Embedding(30, 8, name="words")(inp)
        x = x * ops.expand_dims(ops.cast(ops.greater(inp, 0), "float32"), -1)
        x = pool(layers.Dense(6, activation="relu", name="proj")(x))
        return keras.Model(inp, layers.Dense(3, activation="softmax", name="head")(x))

    flat = model(layers.Flatten(name="flat"))
    result = imported(flat, tmp_path)
    assert result.spec["embeddings"]["words"]["padding"] == {"index": 0}
    assert [layer["type"] for layer in result.spec["model"]["layers"]] == [
        "embedding",
        "dense",
        "flatten",
        "dense",
    ]
    assert any("times (ids > 0)" in note for note in result.notes)
    parity(flat, tmp_path)
    (problem,) = failed(model(layers.GlobalAveragePooling1D(name="gap")), tmp_path)
    assert "reaches GlobalAveragePooling1D 'gap'" in problem


def test_json_config_check_and_no_framework_needed_without_weights(tmp_path: Path) -> None:
    """A JSON config imports without TensorFlow or PyTorch (nothing is built); ``--check``
    builds it in Keras with fresh weights. Weights of a .keras file without Keras: one line
    naming the extra."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from nnspec.cli import app

    model = sequence_model(layers.GlobalAveragePooling1D(name="gap"), mask_zero=True)
    config = tmp_path / "clf.json"
    config.write_text(model.to_json())
    model.save(tmp_path / "clf.keras")
    args = ["import", str(config), "--out", str(tmp_path / "a.yaml"), "--check"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "keras, torch and the keras original model agree in float64" in result.output

    code = (
        "import sys\n"
        "for m in ('torch', 'tensorflow', 'keras'):\n    sys.modules[m] = None\n"
        "sys.argv = ['nnspec', 'import', *sys.argv[1:]]\n"
        "from nnspec.cli import run\nrun()\n"
    )
    plain = [str(config), "--out", str(tmp_path / "b.yaml")]
    out = subprocess.run([sys.executable, "-c", code, *plain], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "b.yaml").read_text() == (tmp_path / "a.yaml").read_text()
    weights = [str(tmp_path / "clf.keras"), "--out", str(tmp_path / "c.yaml"), "--weights", "w"]
    out = subprocess.run([sys.executable, "-c", code, *weights], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().endswith("pip install 'nnspec[keras]'"), out.stderr
    assert not (tmp_path / "c.yaml").exists()


def test_check_catches_a_wrong_weight(tmp_path: Path) -> None:
    """The check is not vacuous: one unit's bias off by 0.05 shows in both backends."""
    model = randomized(sequence_model(layers.LSTM(4, name="lstm")))
    result = imported(model, tmp_path)
    program = nnspec.load(result.text).program
    assert result.weights is not None
    bias = result.weights["head.bias"].copy()
    bias[0] += 0.05
    wrong = dict(result.weights, **{"head.bias": bias})
    report = check(load_keras_model(result.source), program, wrong)
    assert not report.ok
    assert all(1e-3 < c.diff < 0.05 for c in report.comparisons), report.comparisons


def test_keras2_functional_config(tmp_path: Path) -> None:
    """A tf.keras 2 ``model.to_json()`` (inbound nodes as ``[name, node, tensor, kwargs]``
    lists, ``batch_input_shape``, no modules) maps as Keras 3's does."""
    import json

    def layer(cls: str, name: str, config: dict[str, Any], source: str | None) -> Any:
        nodes = [] if source is None else [[[source, 0, 0, {}]]]
        return {
            "class_name": cls,
            "name": name,
            "config": {"name": name, "trainable": True, "dtype": "float32", **config},
            "inbound_nodes": nodes,
        }

    uniform = {"class_name": "RandomUniform", "config": {"minval": -0.05, "maxval": 0.05}}
    config = {
        "class_name": "Functional",
        "config": {
            "name": "model",
            "layers": [
                layer("InputLayer", "input_1", {"batch_input_shape": [None, 12]}, None),
                layer(
                    "Embedding",
                    "embedding",
                    {
                        "input_dim": 50,
                        "output_dim": 8,
                        "embeddings_initializer": uniform,
                        "embeddings_constraint": {"class_name": "NonNeg", "config": {}},
                        "mask_zero": False,
                        "input_length": 12,
                    },
                    "input_1",
                ),
                layer("Flatten", "flatten", {"data_format": "channels_last"}, "embedding"),
                layer("Dense", "dense", {"units": 5, "activation": "relu"}, "flatten"),
                layer("Dropout", "dropout", {"rate": 0.3}, "dense"),
                layer("Dense", "dense_1", {"units": 4, "activation": "softmax"}, "dropout"),
            ],
            "input_layers": [["input_1", 0, 0]],
            "output_layers": [["dense_1", 0, 0]],
        },
    }
    path = tmp_path / "keras2.json"
    path.write_text(json.dumps(config))
    spec = import_keras(path).spec
    assert spec["inputs"] == {"input_1": {"length": 12}}
    assert spec["embeddings"]["embedding"]["constraint"] == {"type": "non_neg"}
    assert [(layer["type"], layer["name"]) for layer in spec["model"]["layers"]] == [
        ("embedding", "embedding_lookup"),
        ("flatten", "flatten"),
        ("dense", "dense"),
        ("dropout", "dropout"),
        ("dense", "dense_1"),
    ]


def test_training_section_and_mixed_precision(tmp_path: Path) -> None:
    from nnspec.importers.training import training_section

    notes: list[str] = []
    adam = {"class_name": "Adam", "config": {"learning_rate": 0.0030000001, "weight_decay": 0.01}}
    loss = {"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}}
    section = training_section({"loss": loss, "optimizer": adam}, notes)
    assert section == {
        "loss": "categorical_crossentropy",
        "from_logits": True,
        "optimizer": {
            "type": "adamw",
            "lr": 0.003,
            "beta1": 0.9,
            "beta2": 0.999,
            "eps": 1e-7,
            "weight_decay": 0.01,
        },
    }
    sgd = {"class_name": "SGD", "config": {"learning_rate": 0.1, "global_clipnorm": 5.0}}
    assert training_section({"loss": "mse", "optimizer": sgd}, notes) == {
        "loss": "mse",
        "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.0},
        "clip_norm": 5.0,
    }
    rms = {"class_name": "RMSprop", "config": {}}
    assert "optimizer" not in training_section({"loss": "mse", "optimizer": rms}, notes)
    assert notes[-1] == "training: optimizer 'rmsprop' has no spec form; the spec's default (Adam)"

    inp = ids(6)
    x = layers.Embedding(20, 4, name="words", dtype="mixed_float16")(inp)
    model = keras.Model(inp, layers.Dense(2, name="head")(layers.Flatten(name="flat")(x)))
    (problem,) = failed(model, tmp_path)
    assert problem == (
        "layer 'words' (Embedding): dtype policy 'mixed_float16': the spec computes in one "
        "float dtype"
    )


def test_two_outputs(tmp_path: Path) -> None:
    inp = ids(10)
    x = layers.GlobalAveragePooling1D(name="gap")(layers.Embedding(30, 8, name="words")(inp))
    topic = layers.Dense(3, activation="softmax", name="topic")(x)
    sentiment = layers.Dense(2, activation="sigmoid", name="sentiment")(x)
    model = keras.Model(inp, [topic, sentiment])
    parity(model, tmp_path)
    assert imported(model, tmp_path).spec["model"]["outputs"] == ["topic", "sentiment"]


# The seed's one-Lambda pad fix (Keras runs a loaded Lambda's code with its own globals, so it
# imports what it uses), and a Lambda that is not it.
PAD_FIXES = {
    "one_lambda": lambda t: (
        t[0]
        * __import__("keras").ops.expand_dims(__import__("keras").ops.cast(t[1] > 0, "float32"), -1)
    ),
    "not_the_pad_fix": lambda t: (
        t[0]
        * __import__("keras").ops.expand_dims(__import__("keras").ops.cast(t[1] > 1, "float32"), -1)
    ),
}
PAD_MASK = lambda t: __import__("keras").ops.cast(t > 0, "float32")  # noqa: E731


def test_lambda_pad_mask_with_trust_lambda(tmp_path: Path) -> None:
    """The seed's Lambda forms of the pad fix map to ``padding`` once run on probe ids
    (``trust_lambda``); a Lambda that is not the pad fix fails the probe."""

    def model(form: str) -> Any:
        inp = ids(10)
        emb = layers.Embedding(30, 8, name="words")(inp)
        if form == "mask_chain":
            mask = layers.Lambda(PAD_MASK, output_shape=(10,), name="pad_mask")(inp)
            x = layers.Multiply(name="zero_pads")([emb, layers.Reshape((10, 1), name="r")(mask)])
        else:
            x = layers.Lambda(PAD_FIXES[form], output_shape=(10, 8), name="zero_pads")([emb, inp])
        x = layers.Flatten(name="flat")(x)
        return keras.Model(inp, layers.Dense(3, activation="softmax", name="head")(x))

    for form in ("mask_chain", "one_lambda"):
        path = tmp_path / f"{form}.keras"
        randomized(model(form)).save(path)
        with pytest.raises(ImportFailed, match="--trust-lambda runs it"):
            import_keras(path)
        result = import_keras(path, trust_lambda=True)
        assert result.spec["embeddings"]["words"]["padding"] == {"index": 0}
        assert [layer["type"] for layer in result.spec["model"]["layers"]] == [
            "embedding",
            "flatten",
            "dense",
        ]
        program = nnspec.load(result.text).program
        report = check(load_keras_model(path, safe_mode=False), program, result.weights)
        assert all(c.diff <= 1e-5 for c in report.comparisons), report.comparisons
    model("not_the_pad_fix").save(tmp_path / "wrong.keras")
    with pytest.raises(ImportFailed, match="not embedding 'words' times"):
        import_keras(tmp_path / "wrong.keras", trust_lambda=True)


def test_subclassed_model_is_refused(tmp_path: Path) -> None:
    """A subclassed model saves no layer graph; nnspec's own generated model without its
    ``spec.json`` (built in memory) is refused too, naming what to use instead."""
    from nnspec.importers import ConfigError

    source = (Path(__file__).parent.parent / "examples/glove_lstm/spec.yaml").read_text()
    model = nnspec.build(source.replace("vocab_size: 5000", "vocab_size: 40"), "keras")
    model.save(tmp_path / "generated.keras")
    with pytest.raises(ConfigError, match=r"generated by nnspec \(spec sha256:\w+\) was saved wit"):
        import_keras(tmp_path / "generated.keras")

    class Custom(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    custom = Custom()
    custom(np.zeros((1, 3), "float32"))
    custom.save(tmp_path / "custom.keras")
    with pytest.raises(ConfigError, match="only Sequential and functional models have a readable"):
        import_keras(tmp_path / "custom.keras")


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_round_trips_through_its_generated_keras_model(
    name: str, tmp_path: Path
) -> None:
    """Spec -> generated Keras code (with the ``spec.json`` beside it) -> random weights ->
    ``.keras`` -> import: the same spec (canonical form, hash included) and bit-identical
    canonical weights."""
    from nnspec import backends
    from nnspec.backends.base import write_tree
    from nnspec.compiler import canonical_json
    from tests.parity_helpers import example_at_test_size

    program = example_at_test_size(name)
    write_tree(backends.get("keras").generate(program), tmp_path / "code")
    runtime = backends.get("keras").runtime()
    model = runtime.build(runtime.load_module(tmp_path / "code" / "model.py"), "float32")
    rng = np.random.default_rng(1)
    state = {w.name: rng.normal(0.0, 0.3, w.shape).astype("float32") for w in program.weights}
    runtime.set_state(model, state)
    state = model.canonical_state()  # pad rows are 0.0
    model.save(tmp_path / f"{name}.keras")

    result = import_keras(tmp_path / f"{name}.keras")
    again = nnspec.load(result.text)
    assert again.program.spec_hash == program.spec_hash
    assert canonical_json(again.spec) == canonical_json(program.spec)
    assert result.weights is not None and result.weights.keys() == state.keys()
    for weight, value in state.items():
        np.testing.assert_array_equal(result.weights[weight], np.asarray(value))
