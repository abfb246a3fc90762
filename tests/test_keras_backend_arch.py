"""The Keras backend on the architecture ops (``tests/ir_examples_arch.py``): generated code,
parameter counts, canonical weights, and outputs against ``Reference``, a numpy transcription of
the formulas in :mod:`nnspec.compiler.ir`, in float64 to 1e-10.

The reference is written from the IR's docstrings alone (no Keras, no PyTorch), step by step:
recurrent layers loop over time, convolutions over windows, attention over heads.
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


# ----------------------------------------------------------------------------- the reference


def activation(kind: str, x: np.ndarray) -> np.ndarray:
    """The IR's activations."""
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "gelu":
        return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    if kind == "tanh":
        return np.tanh(x)
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if kind == "softmax":
        return softmax(x)
    return x


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def conv1d(op: ir.Conv1D, x: np.ndarray, kernel: np.ndarray, bias) -> np.ndarray:
    """:class:`ir.Conv1D`, window by window."""
    k, d, s = op.kernel_size, op.dilation, op.strides
    length = x.shape[1]
    if op.padding == "causal":
        left, right = d * (k - 1), 0
    elif op.padding == "same":
        total = max((math.ceil(length / s) - 1) * s + (k - 1) * d + 1 - length, 0)
        left, right = total // 2, total - total // 2
    else:
        left = right = 0
    x = np.pad(x, ((0, 0), (left, right), (0, 0)))
    steps = (x.shape[1] - d * (k - 1) - 1) // s + 1
    y = np.zeros((x.shape[0], steps, op.filters))
    for t in range(steps):
        for i in range(k):
            y[:, t] += x[:, t * s + i * d] @ kernel[i]
    return activation(op.activation, y if bias is None else y + bias)


def pool1d(op: ir.Pool1D, x: np.ndarray) -> np.ndarray:
    """:class:`ir.Pool1D` (valid windows)."""
    steps = (x.shape[1] - op.pool_size) // op.strides + 1
    reduce = np.max if op.mode == "max" else np.mean
    windows = [x[:, t * op.strides : t * op.strides + op.pool_size] for t in range(steps)]
    return np.stack([reduce(w, axis=1) for w in windows], axis=1)


def recurrent_direction(op: ir.Recurrent, d: ir.RecurrentDirection, state, x, valid, reverse):
    """One direction over time: padded steps keep the state and output 0.0."""
    kernel, recurrent_kernel = state[d.kernel], state[d.recurrent_kernel]
    b_ih, b_hh = state[d.input_bias], state[d.recurrent_bias]
    batch, length, _ = x.shape
    h = np.zeros((batch, op.units))
    c = np.zeros((batch, op.units))
    out = np.zeros((batch, length, op.units))
    for t in reversed(range(length)) if reverse else range(length):
        gx = x[:, t] @ kernel + b_ih
        gh = h @ recurrent_kernel + b_hh
        if op.cell == "lstm":
            i, f, g, o = np.split(gx + gh, 4, axis=-1)
            c_new = activation("sigmoid", f) * c + activation("sigmoid", i) * np.tanh(g)
            h_new = activation("sigmoid", o) * np.tanh(c_new)
        else:
            xz, xr, xh = np.split(gx, 3, axis=-1)
            hz, hr, hh = np.split(gh, 3, axis=-1)
            z = activation("sigmoid", xz + hz)
            r = activation("sigmoid", xr + hr)
            h_new = z * h + (1 - z) * np.tanh(xh + r * hh)
            c_new = c
        m = valid[:, t, None]
        h, c = np.where(m, h_new, h), np.where(m, c_new, c)
        out[:, t] = np.where(m, h_new, 0.0)
    return out, h


def recurrent(op: ir.Recurrent, state, x, valid) -> np.ndarray:
    """:class:`ir.Recurrent`."""
    valid = np.ones(x.shape[:2], dtype=bool) if valid is None else valid
    results = [recurrent_direction(op, op.forward, state, x, valid, False)]
    if op.backward is not None:
        results.append(recurrent_direction(op, op.backward, state, x, valid, True))
    parts = [seq if op.return_sequences else last for seq, last in results]
    if len(parts) == 1:
        return parts[0]
    return parts[0] + parts[1] if op.merge == "sum" else np.concatenate(parts, axis=-1)


def layer_norm(x, gamma, beta, epsilon):
    """Layer normalization over the last axis (biased variance)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + epsilon) + beta


def rotate(x: np.ndarray, base: float) -> np.ndarray:
    """:class:`ir.Rotary` on ``x`` (B, L, heads, d), pair by pair."""
    out = x.copy()
    d = x.shape[-1]
    for p in range(x.shape[1]):
        for i in range(d // 2):
            angle = p * base ** (-2 * i / d)
            a, b = x[:, p, :, 2 * i], x[:, p, :, 2 * i + 1]
            out[:, p, :, 2 * i] = a * math.cos(angle) - b * math.sin(angle)
            out[:, p, :, 2 * i + 1] = a * math.sin(angle) + b * math.cos(angle)
    return out


def attention(op: ir.SelfAttention, state, x, valid) -> np.ndarray:
    """:class:`ir.SelfAttention` without dropout."""
    w = op.weights
    batch, length, width = x.shape

    def project(kernel, bias):
        y = x @ state[kernel] + state[bias]
        return y.reshape(batch, length, op.heads, op.head_dim)

    q = project(w.query_kernel, w.query_bias)
    k = project(w.key_kernel, w.key_bias)
    v = project(w.value_kernel, w.value_bias)
    if op.rotary is not None:
        q, k = rotate(q, op.rotary.base), rotate(k, op.rotary.base)
    out = np.zeros_like(q)
    for h in range(op.heads):
        scores = q[:, :, h] @ k[:, :, h].transpose(0, 2, 1) / math.sqrt(op.head_dim)
        if valid is not None:
            scores = scores + np.where(valid[:, None, :], 0.0, -1e9)
        out[:, :, h] = softmax(scores) @ v[:, :, h]
    return out.reshape(batch, length, width) @ state[w.output_kernel] + state[w.output_bias]


def transformer_block(op: ir.TransformerBlock, state, x, valid) -> np.ndarray:
    """:class:`ir.TransformerBlock` without dropout."""

    def norm(y, which):
        gamma, beta = getattr(op, f"norm{which}_gamma"), getattr(op, f"norm{which}_beta")
        return layer_norm(y, state[gamma], state[beta], op.epsilon)

    def feed_forward(y):
        hidden = activation(op.activation, y @ state[op.ff1_kernel] + state[op.ff1_bias])
        return hidden @ state[op.ff2_kernel] + state[op.ff2_bias]

    if op.norm_first:
        x = x + attention(op.attention, state, norm(x, 1), valid)
        return x + feed_forward(norm(x, 2))
    x = norm(x + attention(op.attention, state, x, valid), 1)
    return norm(x + feed_forward(x), 2)


def memory_network(op: ir.MemoryNetwork, state, memories, question=None) -> np.ndarray:
    """:class:`ir.MemoryNetwork`, sentence by sentence."""
    d = op.dim

    def sentence(ids, table):
        words = [w for w in ids if w != op.pad_index]
        count = max(len(words), 1)
        vector = np.zeros(d)
        for j, word in enumerate(ids, start=1):
            if word == op.pad_index:
                continue
            if op.position_encoding:
                k = np.arange(1, d + 1)
                weight = (1 - j / count) - (k / d) * (1 - 2 * j / count)
            else:
                weight = 1.0
            vector += weight * state[table][word]
        return vector

    batch = memories.shape[0]
    if op.query == "embedded":
        b = op.hops[0].A if op.tying == "adjacent" else op.query_embedding
        u = np.stack([sentence(q, b) for q in question])
    else:
        u = np.full((batch, d), op.query_value)
    padded = np.all(memories == op.pad_index, axis=-1)  # (B, M)
    for hop in op.hops:
        m = np.stack([[sentence(s, hop.A) for s in example] for example in memories])
        c = np.stack([[sentence(s, hop.C) for s in example] for example in memories])
        if hop.TA is not None:
            m, c = m + state[hop.TA], c + state[hop.TC]
        p = softmax(np.einsum("bd,bmd->bm", u, m) + np.where(padded, -1e9, 0.0))
        o = np.einsum("bm,bmd->bd", p, c)
        u = (u @ state[op.linear_map] if op.linear_map else u) + o
    w = state[op.hops[-1].C].T if op.output is None else state[op.output]
    return activation(op.activation, u @ w)


def embed(program: ir.Program, table: ir.EmbeddingTable, state, ids) -> np.ndarray:
    """:class:`ir.EmbeddingTable`'s lookup formula."""
    h = state[table.weight][ids] * table.scale
    pos = table.positional
    if isinstance(pos, ir.SinusoidalPositional):
        length = ids.shape[1]
        pe = np.zeros((length, table.dim))
        for p in range(length):
            for i in range(0, table.dim, 2):
                pe[p, i] = math.sin(p / pos.base ** (i / table.dim))
                if i + 1 < table.dim:
                    pe[p, i + 1] = math.cos(p / pos.base ** (i / table.dim))
        h = h + pe
    elif isinstance(pos, ir.LearnedPositional):
        h = h + state[pos.weight][: ids.shape[1]]
    if table.pad_index is not None:
        h = h * (ids != table.pad_index)[..., None]
    return h


def reference(program: ir.Program, state, inputs) -> dict[str, np.ndarray]:
    """Every node's output for ``inputs``, by node name."""
    values = {name: np.asarray(ids) for name, ids in inputs.items()}
    nodes = {node.name: node for node in program.nodes}

    def mask_of(node: ir.Node):
        source = nodes.get(node.inputs[0])
        mask = None if source is None else source.mask
        return None if mask is None else inputs[mask.input] != mask.pad_index

    for node in program.nodes:
        op, args = node.op, [values[name] for name in node.inputs]
        x = args[0]
        if isinstance(op, ir.EmbeddingLookup):
            y = embed(program, program.table(op.table), state, x)
        elif isinstance(op, ir.Dense):
            y = x @ state[op.kernel] + (0.0 if op.bias is None else state[op.bias])
            y = activation(op.activation, y)
        elif isinstance(op, ir.Flatten):
            y = x.reshape(len(x), -1)
        elif isinstance(op, ir.Dropout):
            y = x
        elif isinstance(op, ir.GlobalPool):
            valid = mask_of(node)
            valid = np.ones(x.shape[:2], dtype=bool) if valid is None else valid
            if op.mode == "average":
                y = (x * valid[..., None]).sum(1) / np.maximum(valid.sum(1), 1)[:, None]
            else:
                y = np.where(valid[..., None], x, -np.inf).max(axis=1)
                y = np.where(valid.any(axis=1)[:, None], y, 0.0)
        elif isinstance(op, ir.Conv1D):
            y = conv1d(op, x, state[op.kernel], None if op.bias is None else state[op.bias])
        elif isinstance(op, ir.Pool1D):
            y = pool1d(op, x)
        elif isinstance(op, ir.Recurrent):
            y = recurrent(op, state, x, mask_of(node))
        elif isinstance(op, ir.LayerNorm):
            y = layer_norm(x, state[op.gamma], state[op.beta], op.epsilon)
        elif isinstance(op, ir.BatchNorm):
            mean, var = state[op.moving_mean], state[op.moving_variance]
            y = (x - mean) / np.sqrt(var + op.epsilon) * state[op.gamma] + state[op.beta]
        elif isinstance(op, ir.Merge):
            if op.mode == "concat":
                y = np.concatenate(args, axis=-1)
            else:
                y = args[0]
                for other in args[1:]:
                    y = y + other if op.mode == "add" else y * other
        elif isinstance(op, ir.SelfAttention):
            y = attention(op, state, x, mask_of(node))
        elif isinstance(op, ir.TransformerBlock):
            y = transformer_block(op, state, x, mask_of(node))
        elif isinstance(op, ir.MemoryNetwork):
            y = memory_network(op, state, *args)
        else:  # pragma: no cover
            raise NotImplementedError(type(op))
        values[node.name] = y
    return values


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
    assert source.count('"shared.kernel": self.shared.kernel.numpy()') == 1


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
        close(got, conv1d(op, x, state[op.kernel], state[op.bias]))
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
    (base 500); padded keys get -1e9 added, so an all-padding row attends over every key."""
    program, model, state = loaded("transformer", tmp)
    op = program.node(layer).op
    x, valid = layer_input(program, np.random.default_rng(6), (4, 8, 8))
    if isinstance(op, ir.SelfAttention):
        mask = keras.ops.expand_dims(valid, 1)
        got = model.attention(x, x, attention_mask=mask, training=False)
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
    got = model.attention(masked, masked, attention_mask=keras.ops.expand_dims(valid, 1))
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
    lemb = embed(program, program.table("ltab"), state, inputs["left"])
    want = 0.9 * state["bn.moving_mean"] + 0.1 * lemb.mean(axis=(0, 1))
    close(model.canonical_state()["bn.moving_mean"], want, 1e-15)
