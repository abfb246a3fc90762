"""The Keras backend on the architecture ops (``tests/ir_examples_arch.py``): generated code,
parameter counts, canonical weights, and outputs against :mod:`nnspec.reference`, the numpy
transcription of the formulas in :mod:`nnspec.compiler.ir`, in float64 to 1e-10.

The reference is written from the IR's docstrings alone (no Keras, no PyTorch), step by step:
recurrent layers loop over time, convolutions over taps, memory networks over hops.
"""

from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnspec.backends.base import write_tree
from nnspec.backends.keras import BACKEND
from nnspec.compiler import ir
from nnspec.parity import random_batch, random_state
from nnspec.reference import attention, conv1d, embed, recurrent, transformer_block
from nnspec.reference import values as reference
from tests import ir_examples_arch

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
runtime = BACKEND.runtime()

PROGRAMS = {build().name: build for build in ir_examples_arch.ALL}
TOLERANCE = 1e-10  # float64, scaled as nnspec.parity.scaled_diff


def close(got, want, tolerance: float = TOLERANCE) -> None:
    """``max |got - want| <= tolerance * max(1, max |want|)``, shapes equal."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    diff = float(np.max(np.abs(got - want), initial=0.0))
    assert diff <= tolerance * scale, f"max difference {diff:.3e} (scale {scale:.3g})"


_modules: dict[str, object] = {}
_models: dict[tuple[str, str], object] = {}


def module_for(name: str, tmp: Path):
    """The generated model module of ``PROGRAMS[name]`` (generated once)."""
    if name not in _modules:
        write_tree(BACKEND.generate(PROGRAMS[name]()), tmp / name)
        _modules[name] = runtime.load_module(tmp / name / "model.py")
    return _modules[name]


def model_for(name: str, dtype: str, tmp: Path):
    """A built model of ``PROGRAMS[name]`` in ``dtype`` (built once: tests load their weights)."""
    if (name, dtype) not in _models:
        _models[name, dtype] = runtime.build(module_for(name, tmp), dtype)
    return _models[name, dtype]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keras_arch")


def loaded(name: str, tmp: Path, seed: int = 0):
    """The float64 model of ``name`` loaded with random canonical weights, and those weights."""
    program = PROGRAMS[name]()
    state = random_state(program, np.random.default_rng(seed))
    model = model_for(name, "float64", tmp)
    runtime.set_state(model, state)
    return program, model, state


# ----------------------------------------------------------------------------- generated code


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_generated_code_is_deterministic_parses_and_lints(name, tmp):
    files = BACKEND.generate(PROGRAMS[name]())
    assert files == BACKEND.generate(PROGRAMS[name]())
    source = files["model.py"]
    ast.parse(source)
    assert not [line for line in source.splitlines() if len(line) > 100]
    assert "nnspec" not in source.split("\n", 2)[2], "model.py mentions nnspec below its header"
    out = tmp / f"lint_{name}"
    write_tree({"model.py": source}, out)
    rules = ["--select", "E,F,W,I,B,UP,SIM,RUF", "--line-length", "100"]
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", *rules, str(out)],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout


def test_helpers_are_emitted_only_when_used():
    sources = {name: BACKEND.generate(build())["model.py"] for name, build in PROGRAMS.items()}
    owners = {
        "class LSTMCellWithRecurrentBias": {"recurrent"},
        "class TorchBatchNormalization": {"graph_norms"},
        "class MultiHeadSelfAttention": {"transformer"},
        "class TransformerEncoderBlock": {"transformer"},
        "def rotary": {"transformer"},
        "class MemoryNetwork": {"memn2n_adjacent", "memn2n_layerwise"},
        "def gelu": {"transformer"},
    }
    for helper, programs in owners.items():
        assert {name for name, source in sources.items() if helper in source} == programs, helper
    # Layer-wise tying: one pair of word tables, one linear map, its own answer matrix.
    layerwise = sources["memn2n_layerwise"]
    assert 'hops=(("A", "C", "TA", "TC"), ("A", "C", "TA", "TC")' in layerwise
    assert "linear_map" in layerwise and "answer_table" not in layerwise
    assert "linear_map" not in sources["memn2n_adjacent"]


def test_tied_layer_is_one_layer_called_twice():
    source = BACKEND.generate(PROGRAMS["graph_norms"]())["model.py"]
    assert source.count("self.shared = keras.layers.Dense(") == 1
    assert "shared = self.shared(lemb)" in source
    assert "x = self.shared(remb)" in source
    assert source.count('"shared.kernel": ((6, 6), "shared.kernel")') == 1


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_builds_in_dtype_with_exact_parameter_counts(name, dtype, tmp):
    program = PROGRAMS[name]()
    model = model_for(name, dtype, tmp)
    assert {v.dtype for v in model.weights} == {dtype}
    assert sum(math.prod(v.shape) for v in model.trainable_weights) == program.trainable_count
    assert sum(math.prod(v.shape) for v in model.non_trainable_weights) == program.frozen_count
    paths = [v.path for v in model.weights]
    assert len(set(paths)) == len(paths), "variable paths must be unique (gradients use them)"
    state = runtime.get_state(model)  # fresh draws, or weights loaded since: pad rows are 0.0
    assert {k: v.shape for k, v in state.items()} == {w.name: w.shape for w in program.weights}
    for weight in program.weights:
        assert np.all(state[weight.name][list(weight.zero_rows)] == 0.0), weight.name
    inputs, _ = random_batch(program, np.random.default_rng(0), 3)
    assert runtime.forward(model, inputs).dtype == dtype


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_canonical_state_round_trips_exactly(name, tmp):
    program = PROGRAMS[name]()
    model = model_for(name, "float64", tmp)
    rng = np.random.default_rng(1)
    state = {w.name: rng.normal(size=w.shape) for w in program.weights}  # pad rows not zero
    model.load_canonical_state(state)
    model.save_canonical(tmp / f"{name}.safetensors")
    model.load_canonical_state({w.name: np.zeros(w.shape) for w in program.weights})
    model.load_canonical(tmp / f"{name}.safetensors")
    loaded_state = model.canonical_state()
    for weight in program.weights:
        expected = state[weight.name].copy()
        expected[list(weight.zero_rows)] = 0.0
        assert np.array_equal(loaded_state[weight.name], expected), weight.name


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_outputs_match_the_numpy_reference(name, tmp):
    """Whole programs in float64, on batches with padded tails and an all-padding example."""
    program, model, state = loaded(name, tmp)
    inputs, _ = random_batch(program, np.random.default_rng(2), 5)
    want = reference(program, state, inputs)[program.outputs[0]]
    close(runtime.forward(model, inputs), want)


def layer_input(program: ir.Program, rng, shape, pad_rows: bool = True):
    """A random float64 input (B, L, D) with a post-padding mask (B, L) (one row all padding)."""
    x = rng.normal(size=shape)
    lengths = rng.integers(1, shape[1] + 1, size=shape[0])
    if pad_rows:
        lengths[-1] = 0
    valid = np.arange(shape[1])[None, :] < lengths[:, None]
    return x, valid


def test_conv1d_in_all_three_paddings_matches_the_reference(tmp):
    program, model, state = loaded("conv_pool", tmp)
    rng = np.random.default_rng(3)
    for node_name, length in (("causal", 20), ("same", 20), ("valid", 9), ("same", 7)):
        op = program.node(node_name).op
        x = rng.normal(size=(3, length, state[op.kernel].shape[1]))
        got = keras.ops.convert_to_numpy(getattr(model, node_name)(x))
        close(got, conv1d(op, state, x))
    assert {program.node(n).op.padding for n in ("causal", "same", "valid")} == {
        "causal",
        "same",
        "valid",
    }


@pytest.mark.parametrize("layer", ["lstm", "gru", "gru_seq", "lstm_last"])
def test_recurrent_layers_match_the_reference(layer, tmp):
    """Bidirectional LSTM (concat, sequences), bidirectional GRU (sum, final state), GRU
    sequences, LSTM final state; masked, with an all-padding row, padded steps exactly 0.0."""
    program, model, state = loaded("recurrent", tmp)
    op = program.node(layer).op
    width = state[op.forward.kernel].shape[0]
    x, valid = layer_input(program, np.random.default_rng(4), (4, 9, width))
    got = keras.ops.convert_to_numpy(getattr(model, layer)(x, mask=valid))
    close(got, recurrent(op, state, x, valid))
    if op.return_sequences:
        assert np.all(got[~valid] == 0.0)
    assert np.all(got[-1] == 0.0)  # no valid step: 0.0 everywhere


def test_padded_batch_matches_the_unpadded_sequences(tmp):
    """Each sequence alone (no padding, no mask) gives the outputs of its valid steps and the
    final states of the padded batch."""
    _, model, _ = loaded("recurrent", tmp)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 9, 5))
    lengths = [9, 6, 3, 1]
    valid = np.arange(9)[None, :] < np.array(lengths)[:, None]
    x[~valid] = rng.normal(size=x[~valid].shape) * 100  # padding garbage must not leak
    for layer in ("lstm", "gru_seq", "lstm_last"):
        batch = keras.ops.convert_to_numpy(getattr(model, layer)(x, mask=valid))
        for i, n in enumerate(lengths):
            alone = keras.ops.convert_to_numpy(getattr(model, layer)(x[i : i + 1, :n]))[0]
            if batch.ndim == 3:
                close(batch[i, :n], alone, 1e-12)
                assert np.all(batch[i, n:] == 0.0)
            else:
                close(batch[i], alone, 1e-12)
    sequences = keras.ops.convert_to_numpy(model.lstm(x, mask=valid))
    final = keras.ops.convert_to_numpy(model.gru(sequences, mask=valid))
    for i, n in enumerate(lengths):
        alone = keras.ops.convert_to_numpy(model.gru(sequences[i : i + 1, :n]))
        close(final[i], alone[0], 1e-12)


@pytest.mark.parametrize("layer", ["post", "pre", "attention"])
def test_attention_and_transformer_blocks_match_the_reference(layer, tmp):
    """Post-norm block, pre-norm block with rotary attention and gelu, bare rotary attention
    (base 500); padded keys get weight 0.0, and an all-padding row attends over every key."""
    program, model, state = loaded("transformer", tmp)
    op = program.node(layer).op
    x, valid = layer_input(program, np.random.default_rng(6), (4, 8, 8))
    if isinstance(op, ir.SelfAttention):
        got = model.attention(x, padding_mask=valid, training=False)
        want = attention(op, state, x, valid)
    else:
        got = getattr(model, layer)(x, padding_mask=valid, training=False)
        want = transformer_block(op, state, x, valid)
    close(keras.ops.convert_to_numpy(got), want)
    # No mask at all is plain attention.
    if isinstance(op, ir.TransformerBlock):
        got = getattr(model, layer)(x, training=False)
        close(keras.ops.convert_to_numpy(got), transformer_block(op, state, x, None))


def test_attention_ignores_implicit_keras_masks(tmp):
    """A Keras mask attached to the input (as ``keras.layers.Masking`` or a masked RNN leaves
    one) must not mask padded queries: the IR computes them like any other."""
    program, model, state = loaded("transformer", tmp)
    x, valid = layer_input(program, np.random.default_rng(7), (3, 8, 8))
    x[~valid] = 0.0
    masked = keras.layers.Masking(0.0, dtype="float64")(x)
    assert getattr(masked, "_keras_mask", None) is not None
    got = model.attention(masked, padding_mask=valid)
    want = attention(program.node("attention").op, state, x, valid)
    close(keras.ops.convert_to_numpy(got), want)
    got = model.pre(masked, padding_mask=valid)
    want = transformer_block(program.node("pre").op, state, x, valid)
    close(keras.ops.convert_to_numpy(got), want)


@pytest.mark.parametrize("name", ["memn2n_adjacent", "memn2n_layerwise"])
def test_memory_networks_keep_padding_rows_at_zero(name, tmp):
    """Pad rows of every word table get no gradient (answer matrix included) and stay 0.0."""
    program, model, state = loaded(name, tmp)
    module = module_for(name, tmp)
    rng = np.random.default_rng(8)
    inputs, _ = random_batch(program, rng, 4)
    cotangent = rng.normal(size=(4, *program.node(program.outputs[0]).shape[1:]))
    grads = runtime.gradients(model, inputs, cotangent)
    assert set(grads) == {w.name for w in program.weights}
    tables = [w for w in program.weights if w.zero_rows]
    assert tables
    for weight in tables:
        assert np.all(grads[weight.name][list(weight.zero_rows)] == 0.0), weight.name
    runtime.train(module, model, [random_batch(program, rng, 4) for _ in range(3)])
    after = model.canonical_state()
    for weight in tables:
        assert np.all(after[weight.name][list(weight.zero_rows)] == 0.0), weight.name
        assert not np.allclose(after[weight.name], state[weight.name])


def test_batch_norm_trains_with_pytorch_moving_statistics(tmp):
    """In training: batch statistics normalize, moving ones follow PyTorch's rule (unbiased
    variance, momentum 0.1); in inference the moving ones normalize."""
    program, model, state = loaded("graph_norms", tmp)
    op = program.node("bn").op
    x = np.random.default_rng(9).normal(size=(4, 7, 6))
    got = keras.ops.convert_to_numpy(model.bn(x, training=True))
    mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    close(got, (x - mean) / np.sqrt(var + op.epsilon) * state[op.gamma] + state[op.beta])
    unbiased = x.reshape(-1, 6).var(axis=0, ddof=1)
    after = model.canonical_state()
    m = op.momentum
    close(after[op.moving_mean], (1 - m) * state[op.moving_mean] + m * mean, 1e-15)
    close(after[op.moving_variance], (1 - m) * state[op.moving_variance] + m * unbiased, 1e-15)
    got = keras.ops.convert_to_numpy(model.bn(x, training=False))
    moving = (x - after[op.moving_mean]) / np.sqrt(after[op.moving_variance] + op.epsilon)
    close(got, moving * state[op.gamma] + state[op.beta])


def test_runtime_train_updates_batch_norm_with_dropout_off(tmp):
    """``runtime.train`` runs batch norm in training mode and is deterministic (no dropout)."""
    name = "transformer"
    program = PROGRAMS[name]()
    module = module_for(name, tmp)
    rng = np.random.default_rng(10)
    batches = [random_batch(program, rng, 4) for _ in range(2)]
    runs = []
    for _ in range(2):
        model = model_for(name, "float64", tmp)
        runtime.set_state(model, random_state(program, np.random.default_rng(11)))
        runs.append(runtime.train(module, model, batches))
    assert runs[0] == runs[1]
    program, model, state = loaded("graph_norms", tmp)
    inputs, labels = random_batch(program, rng, 4)
    runtime.train(module_for("graph_norms", tmp), model, [(inputs, labels)])
    lemb = embed(program.table("ltab"), state, inputs["left"])
    want = 0.9 * state["bn.moving_mean"] + 0.1 * lemb.mean(axis=(0, 1))
    close(model.canonical_state()["bn.moving_mean"], want, 1e-15)


def _narrow_heads(length: int, heads: int) -> ir.Program:
    """Embedding of width ``heads`` (head dimension 1), unmasked self-attention with ``heads``
    heads over ``length`` positions, flatten, dense."""
    from tests.ir_examples_arch import EMB, _attention_weights, _dense, _program

    table = ir.EmbeddingTable("words", 11, heads, "words.embeddings")
    weights: list = [ir.Weight("words.embeddings", (11, heads), EMB)]
    att = ir.SelfAttention(heads, 1, _attention_weights("attention", heads, weights))
    nodes = [
        ir.Node("words_lookup", ir.EmbeddingLookup("words"), ("tokens",), (None, length, heads)),
        ir.Node("attention", att, ("words_lookup",), (None, length, heads)),
        ir.Node("flat", ir.Flatten(), ("attention",), (None, length * heads)),
    ]
    out, w = _dense("out", "flat", (None, length * heads), 3, "linear")
    return _program(
        "narrow", (ir.Input("tokens", length),), (table,), (*nodes, out), ("out",), [*weights, *w]
    )


@pytest.mark.parametrize(("length", "heads"), [(2, 2), (4, 4), (3, 3), (5, 2)])
def test_attention_with_head_dimension_one_matches_the_reference(length, heads, tmp):
    """Head dimension 1 with as many positions as heads. ``keras.layers.MultiHeadAttention``
    (once used here) gets this wrong on TensorFlow: its ``(heads, 1)`` projection bias squeezes
    to a vector whose length is not the last axis, so ``ops.add`` takes it for a channels-first
    ``bias_add`` and adds it along the sequence axis when the length equals the head count."""
    program = _narrow_heads(length, heads)
    out = tmp / f"narrow_{length}_{heads}"
    write_tree(BACKEND.generate(program), out)
    model = runtime.build(runtime.load_module(out / "model.py"), "float64")
    state = random_state(program, np.random.default_rng(11))
    runtime.set_state(model, state)
    inputs, _ = random_batch(program, np.random.default_rng(12), 4)
    close(runtime.forward(model, inputs), reference(program, state, inputs)["out"])


def _framework_names() -> ir.Program:
    """Inputs, tables and layers named after Keras, numpy, builtins and the generated module's
    own names (helper classes, tables, ``call``'s loop variable, methods of ``keras.Model``)."""
    from tests.ir_examples_arch import (
        EMB,
        ONES,
        ZEROS,
        _attention_weights,
        _block,
        _dense,
        _program,
    )

    length, width = 6, 4
    mask = ir.Mask("ops", 0)
    table = ir.EmbeddingTable(
        "keras",
        20,
        width,
        "keras.embeddings",
        pad_index=0,
        positional=ir.SinusoidalPositional(length),
    )
    weights: list = [ir.Weight("keras.embeddings", (20, width), EMB, zero_rows=(0,))]
    first = _block("block_block0", width, 2, 8, True, None, weights)
    second = _block("block", width, 2, 8, True, None, weights)
    att = ir.SelfAttention(2, 2, _attention_weights("MultiHeadSelfAttention", width, weights))
    weights += [ir.Weight("build.gamma", (width,), ONES), ir.Weight("build.beta", (width,), ZEROS)]
    shape = (None, length, width)
    nodes = [
        ir.Node("np", ir.EmbeddingLookup("keras"), ("ops",), shape, mask),
        ir.Node("block_block0", first, ("np",), shape, mask),
        ir.Node("block", second, ("block_block0",), shape, mask),
        ir.Node("MultiHeadSelfAttention", att, ("block",), shape, mask),
        ir.Node("weights", ir.Merge("add"), ("block", "MultiHeadSelfAttention"), shape, mask),
        ir.Node(
            "build", ir.LayerNorm(1e-5, "build.gamma", "build.beta"), ("weights",), shape, mask
        ),
        ir.Node("Layer", ir.Dropout(0.5), ("build",), shape, mask),
        ir.Node("call", ir.Dropout(0.25), ("Layer",), shape, mask),
        ir.Node("isinstance", ir.Dropout(0.25), ("call",), shape, mask),
        ir.Node("CANONICAL", ir.Dropout(0.25), ("isinstance",), shape, mask),
        ir.Node("TorchAdam", ir.Dropout(0.25), ("CANONICAL",), shape, mask),
        ir.Node("variable", ir.GlobalPool("average"), ("TorchAdam",), (None, width)),
    ]
    out, w = _dense("name", "variable", (None, width), 3, "softmax")
    dense, w2 = _dense("trainable_variables", "name", (None, 3), 3, "linear")
    return _program(
        "framework_names",
        (ir.Input("ops", length),),
        (table,),
        (*nodes, out, dense),
        ("trainable_variables",),
        [*weights, *w, *w2],
        repeats=(ir.Repeat("block", ("block_block0", "block")),),
    )


def test_names_of_keras_and_of_generated_code_are_renamed_where_they_collide(tmp):
    """Spec names may be any identifier that is not a keyword: the backend renames what would
    shadow its module names, ``keras.Model`` attributes or ``call``'s locals."""
    program = _framework_names()
    out = tmp / "framework_names"
    write_tree(BACKEND.generate(program), out)
    source = (out / "model.py").read_text()
    assert "ops_ = inputs['ops']" in source or 'ops_ = inputs["ops"]' in source
    assert "self.trainable_variables_ = keras.layers.Dense(" in source
    assert "for block_ in self.block:" in source
    assert "self.variable_ = MaskedGlobalAveragePooling1D(" in source
    model = runtime.build(runtime.load_module(out / "model.py"), "float64")
    state = random_state(program, np.random.default_rng(13))
    runtime.set_state(model, state)
    close(runtime.get_state(model)["keras.embeddings"], state["keras.embeddings"])
    inputs, _ = random_batch(program, np.random.default_rng(14), 5)
    want = reference(program, state, inputs)["trainable_variables"]
    close(runtime.forward(model, inputs), want)


def test_repeated_blocks_are_one_list_built_and_called_in_a_loop(tmp):
    """The unrolled blocks of one spec layer (``enc_block0``, ``enc_block1``, ``enc``) are a list
    of layers built in a loop; their canonical weights come from one table per block."""
    from tests.ir_examples_arch import EMB, _block, _dense, _program

    length, width = 5, 4
    mask = ir.Mask("tokens", 0)
    table = ir.EmbeddingTable("words", 12, width, "words.embeddings", pad_index=0)
    weights: list = [ir.Weight("words.embeddings", (12, width), EMB, zero_rows=(0,))]
    shape = (None, length, width)
    nodes = [ir.Node("words_lookup", ir.EmbeddingLookup("words"), ("tokens",), shape, mask)]
    for name in ("enc_block0", "enc_block1", "enc"):
        block = _block(name, width, 2, 6, False, None, weights)
        nodes.append(ir.Node(name, block, (nodes[-1].name,), shape, mask))
    nodes.append(ir.Node("pool", ir.GlobalPool("max"), ("enc",), (None, width)))
    out, w = _dense("out", "pool", (None, width), 3, "linear")
    program = _program(
        "repeated",
        (ir.Input("tokens", length),),
        (table,),
        (*nodes, out),
        ("out",),
        [*weights, *w],
        repeats=(ir.Repeat("enc", ("enc_block0", "enc_block1", "enc")),),
    )
    files = BACKEND.generate(program)
    source = files["model.py"]
    assert 'for name in ("enc_block0", "enc_block1", "enc")' in source
    assert "for block in self.enc:" in source
    assert source.count("TransformerEncoderBlock(") == 2  # the class, and one call in the loop
    write_tree(files, tmp / "repeated")
    model = runtime.build(runtime.load_module(tmp / "repeated" / "model.py"), "float64")
    state = random_state(program, np.random.default_rng(15))
    runtime.set_state(model, state)
    got = runtime.get_state(model)
    assert list(got) == [w.name for w in program.weights]
    for name, value in state.items():
        close(got[name], value, 0.0)
    inputs, _ = random_batch(program, np.random.default_rng(16), 4)
    close(runtime.forward(model, inputs), reference(program, state, inputs)["out"])
