"""Tests of the PyTorch backend on the architecture ops (``tests/ir_examples_arch.py``): generated
source, parameter counts, canonical layouts, and outputs and gradients against a float64 numpy
interpreter of the IR written from the docstrings of :mod:`nnspec.compiler.ir`, independent of
the generated code.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import ir_examples_arch
import numpy as np
import pytest

from nnspec.backends.base import format_source, write_tree
from nnspec.backends.torch import BACKEND
from nnspec.compiler import ir
from nnspec.parity import random_batch, random_state

torch = pytest.importorskip("torch")
runtime = BACKEND.runtime()


def extras(length: int = 10, dim: int = 4) -> ir.Program:
    """What the shared examples leave out: unmasked recurrent layers and attention, a
    bidirectional GRU tied between two nodes (different inputs), ``same`` convolutions at stride
    1 (even kernel, dilated) and at stride 3 with lopsided padding."""
    g, z = ir_examples_arch.GLOROT, ir_examples_arch.ZEROS
    table = ir.EmbeddingTable("words", 20, dim, "words.embeddings")
    weights = [ir.Weight("words.embeddings", (20, dim), ir_examples_arch.EMB)]

    def direction(owner: str, cell: str, n_in: int, units: int) -> ir.RecurrentDirection:
        gates = 4 if cell == "lstm" else 3
        names = [f"{owner}.{p}" for p in ("kernel", "recurrent_kernel", "in_b", "rec_b")]
        weights.extend(
            [
                ir.Weight(names[0], (n_in, gates * units), g),
                ir.Weight(names[1], (units, gates * units), g),
                ir.Weight(names[2], (gates * units,), z),
                ir.Weight(names[3], (gates * units,), z),
            ]
        )
        return ir.RecurrentDirection(*names)

    def conv(name: str, n_in: int, filters: int, k: int, s: int, d: int, padding: str):
        weights.extend(
            [
                ir.Weight(f"{name}.kernel", (k, n_in, filters), g),
                ir.Weight(f"{name}.b", (filters,), z),
            ]
        )
        return ir.Conv1D(filters, k, f"{name}.kernel", f"{name}.b", s, d, padding, "sigmoid")

    lstm = ir.Recurrent(
        "lstm",
        3,
        direction("seq.f", "lstm", dim, 3),
        direction("seq.b", "lstm", dim, 3),
        True,
        "sum",
    )
    gru = ir.Recurrent(
        "gru", 3, direction("tied.f", "gru", 3, 3), direction("tied.b", "gru", 3, 3), False
    )
    weights += [
        ir.Weight(f"att.{p}.{q}", (3, 3) if q == "kernel" else (3,), g if q == "kernel" else z)
        for p in ("query", "key", "value", "output")
        for q in ("kernel", "bias")
    ]
    names = {
        f"{p}_{q}": f"att.{p}.{q}"
        for p in ("query", "key", "value", "output")
        for q in ("kernel", "bias")
    }
    att = ir.SelfAttention(1, 3, ir.AttentionWeights(**names))
    dense, w = ir_examples_arch._dense("out", "joined", (None, 17), 2, "softmax")
    weights += w
    nodes = [
        ir.Node("emb", ir.EmbeddingLookup("words"), ("tokens",), (None, length, dim)),
        ir.Node("seq", lstm, ("emb",), (None, length, 3)),
        ir.Node("tied", gru, ("seq",), (None, 6)),
        ir.Node("same1", conv("same1", dim, 3, 4, 1, 2, "same"), ("emb",), (None, length, 3)),
        ir.Node("tied_1", gru, ("same1",), (None, 6), layer="tied"),
        ir.Node("same3", conv("same3", 3, 2, 4, 3, 1, "same"), ("same1",), (None, 4, 2)),
        ir.Node("flat", ir.Flatten(), ("same3",), (None, 8)),
        ir.Node("att", att, ("seq",), (None, length, 3)),
        ir.Node("att_pool", ir.GlobalPool("max"), ("att",), (None, 3)),
        ir.Node("product", ir.Merge("multiply"), ("tied", "tied_1"), (None, 6)),
        ir.Node("joined", ir.Merge("concat"), ("product", "att_pool", "flat"), (None, 17)),
    ]
    nodes.append(dataclasses.replace(dense, inputs=("joined",)))
    return ir_examples_arch._program(
        "extras", (ir.Input("tokens", length),), (table,), tuple(nodes), ("out",), weights
    )


PROGRAMS = {build().name: build for build in (*ir_examples_arch.ALL, extras)}
ALLOWED_IMPORTS = {"__future__", "collections", "itertools", "math", "numpy", "pathlib"}
ALLOWED_IMPORTS |= {"safetensors", "torch"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Exact comparisons need a fixed thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class Generated:
    """A program, its generated files on disk and the imported model module."""

    program: ir.Program
    files: dict[str, str]
    folder: Path
    module: ModuleType


_cache: dict[tuple[str, int], Generated] = {}


def generated(program: ir.Program, tmp_root: Path) -> Generated:
    """Generate, write and import ``program`` once per test session."""
    key = (program.name, hash(program))
    if key not in _cache:
        files = BACKEND.generate(program)
        folder = tmp_root / f"{program.name}_{len(_cache)}"
        write_tree(files, folder)
        _cache[key] = Generated(program, files, folder, runtime.load_module(folder / "model.py"))
    return _cache[key]


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for generated code shared by the whole session."""
    return tmp_path_factory.mktemp("torch_backend_arch")


@pytest.fixture(params=sorted(PROGRAMS))
def gen(request: pytest.FixtureRequest, tmp_root: Path) -> Generated:
    """Each example program, generated and imported."""
    return generated(PROGRAMS[request.param](), tmp_root)


# ----------------------------------------------------------------------------- reference


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1 / (1 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def act(name: str, y: np.ndarray) -> np.ndarray:
    """The IR's activations (``gelu`` is the erf form)."""
    if name == "relu":
        return np.maximum(y, 0.0)
    if name == "gelu":
        return 0.5 * y * (1 + np.vectorize(math.erf)(y / math.sqrt(2)))
    if name == "tanh":
        return np.tanh(y)
    if name == "sigmoid":
        return sigmoid(y)
    if name == "softmax":
        return softmax(y)
    assert name == "linear"
    return y


def sinusoids(max_length: int, dim: int, base: float) -> np.ndarray:
    """``pe[pos, 2i] = sin(pos / base**(2i/dim))``, ``pe[pos, 2i+1] = cos(...)``."""
    pe = np.zeros((max_length, dim))
    for pos in range(max_length):
        for j in range(dim):
            angle = pos / base ** ((j - j % 2) / dim)
            pe[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return pe


def conv1d(op: ir.Conv1D, x: np.ndarray, s: dict) -> np.ndarray:
    """``Conv1D`` with its three padding rules, written out tap by tap."""
    kernel = s[op.kernel]
    k, d, stride = op.kernel_size, op.dilation, op.strides
    length = x.shape[1]
    if op.padding == "same":
        total = max((math.ceil(length / stride) - 1) * stride + (k - 1) * d + 1 - length, 0)
        left, right = total // 2, total - total // 2
    elif op.padding == "causal":
        left, right = d * (k - 1), 0
    else:
        left = right = 0
    x = np.pad(x, ((0, 0), (left, right), (0, 0)))
    n_out = (x.shape[1] - d * (k - 1) - 1) // stride + 1
    y = np.zeros((x.shape[0], n_out, op.filters))
    for t in range(n_out):
        for i in range(k):
            y[:, t] += x[:, t * stride + i * d] @ kernel[i]
    if op.bias:
        y = y + s[op.bias]
    return act(op.activation, y)


def pool1d(op: ir.Pool1D, x: np.ndarray) -> np.ndarray:
    """Valid max / average pooling over windows."""
    n_out = (x.shape[1] - op.pool_size) // op.strides + 1
    windows = [x[:, t * op.strides : t * op.strides + op.pool_size] for t in range(n_out)]
    reduce = np.max if op.mode == "max" else np.mean
    return np.stack([reduce(w, axis=1) for w in windows], axis=1)


def cell_step(cell: str, d: ir.RecurrentDirection, s: dict, x, h, c):
    """One LSTM / GRU step in the canonical gate orders (LSTM i f c o, GRU z r h)."""
    if cell == "lstm":
        z = x @ s[d.kernel] + s[d.input_bias] + h @ s[d.recurrent_kernel] + s[d.recurrent_bias]
        i, f, g, o = np.split(z, 4)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c
    xz, xr, xh = np.split(x @ s[d.kernel] + s[d.input_bias], 3)
    hz, hr, hh = np.split(h @ s[d.recurrent_kernel] + s[d.recurrent_bias], 3)
    z, r = sigmoid(xz + hz), sigmoid(xr + hr)
    candidate = np.tanh(xh + r * hh)
    return z * h + (1 - z) * candidate, c


def recurrent(op: ir.Recurrent, x: np.ndarray, mask: np.ndarray | None, s: dict) -> np.ndarray:
    """A recurrent layer, row by row: only the valid (post-padded) steps run."""
    batch, length, _ = x.shape
    lengths = mask.sum(1) if mask is not None else np.full(batch, length)
    dirs = [(op.forward, False)] + ([(op.backward, True)] if op.backward else [])
    seqs, finals = [], []
    for direction, reverse in dirs:
        out = np.zeros((batch, length, op.units))
        final = np.zeros((batch, op.units))
        for b in range(batch):
            h, c = np.zeros(op.units), np.zeros(op.units)
            steps = range(lengths[b])
            for t in reversed(steps) if reverse else steps:
                h, c = cell_step(op.cell, direction, s, x[b, t], h, c)
                out[b, t] = h
            final[b] = h
        seqs.append(out)
        finals.append(final)
    parts = seqs if op.return_sequences else finals
    if len(parts) == 1:
        return parts[0]
    return parts[0] + parts[1] if op.merge == "sum" else np.concatenate(parts, -1)


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """Layer normalization over the last axis (biased variance)."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def rotate(x: np.ndarray, base: float) -> np.ndarray:
    """Rotary embedding of ``(B, heads, L, d)``, pair by pair."""
    out = x.copy()
    d = x.shape[-1]
    for p in range(x.shape[2]):
        for i in range(d // 2):
            angle = p * base ** (-2 * i / d)
            a, b = x[:, :, p, 2 * i], x[:, :, p, 2 * i + 1]
            out[:, :, p, 2 * i] = a * math.cos(angle) - b * math.sin(angle)
            out[:, :, p, 2 * i + 1] = a * math.sin(angle) + b * math.cos(angle)
    return out


def attention(op: ir.SelfAttention, x: np.ndarray, mask: np.ndarray | None, s: dict):
    """Multi-head self-attention with -1e9 added at padded keys."""
    w = op.weights
    batch, length, _ = x.shape

    def heads(y: np.ndarray) -> np.ndarray:
        return y.reshape(batch, length, op.heads, op.head_dim).transpose(0, 2, 1, 3)

    q = heads(x @ s[w.query_kernel] + s[w.query_bias])
    k = heads(x @ s[w.key_kernel] + s[w.key_bias])
    v = heads(x @ s[w.value_kernel] + s[w.value_bias])
    if op.rotary is not None:
        q, k = rotate(q, op.rotary.base), rotate(k, op.rotary.base)
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(op.head_dim)
    if mask is not None:
        scores = scores + np.where(mask, 0.0, -1e9)[:, None, None, :]
    y = (softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
    return y @ s[w.output_kernel] + s[w.output_bias]


def transformer_block(op: ir.TransformerBlock, x: np.ndarray, mask, s: dict) -> np.ndarray:
    """The block's formulas (dropout off)."""

    def norm(y, gamma, beta):
        return layer_norm(y, s[gamma], s[beta], op.epsilon)

    def ff(y):
        hidden = act(op.activation, y @ s[op.ff1_kernel] + s[op.ff1_bias])
        return hidden @ s[op.ff2_kernel] + s[op.ff2_bias]

    if op.norm_first:
        x = x + attention(op.attention, norm(x, op.norm1_gamma, op.norm1_beta), mask, s)
        return x + ff(norm(x, op.norm2_gamma, op.norm2_beta))
    x = norm(x + attention(op.attention, x, mask, s), op.norm1_gamma, op.norm1_beta)
    return norm(x + ff(x), op.norm2_gamma, op.norm2_beta)


def sentences(op: ir.MemoryNetwork, ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``sum_j l_j * table[x_j]`` over the last axis of ``ids``, loop by loop."""
    d = op.dim
    out = np.zeros((*ids.shape[:-1], d))
    for index in np.ndindex(*ids.shape[:-1]):
        words = ids[index]
        count = len(words)
        if op.pad_index is not None:
            count = max(int((words != op.pad_index).sum()), 1)
        for j in range(1, len(words) + 1):
            if op.position_encoding:
                if j > count:
                    continue
                weight = np.array(
                    [(1 - j / count) - (k / d) * (1 - 2 * j / count) for k in range(1, d + 1)]
                )
            else:
                weight = 1.0
            out[index] += weight * table[words[j - 1]]
    return out


def memory_network(op: ir.MemoryNetwork, xs: list[np.ndarray], s: dict) -> np.ndarray:
    """End-To-End Memory Network, hop by hop."""
    memories = xs[0]
    batch = len(memories)
    if op.query == "embedded":
        b = op.hops[0].A if op.tying == "adjacent" else op.query_embedding
        u = sentences(op, xs[1], s[b])
    else:
        u = np.full((batch, op.dim), op.query_value)
    padded = np.zeros(memories.shape[:2], bool)
    if op.pad_index is not None:
        padded = (memories == op.pad_index).all(-1)
    for hop in op.hops:
        m = sentences(op, memories, s[hop.A]) + (s[hop.TA] if hop.TA else 0.0)
        c = sentences(op, memories, s[hop.C]) + (s[hop.TC] if hop.TC else 0.0)
        p = softmax(np.einsum("bmd,bd->bm", m, u) + np.where(padded, -1e9, 0.0))
        o = np.einsum("bm,bmd->bd", p, c)
        u = (u @ s[op.linear_map] if op.linear_map else u) + o
    w = s[op.hops[-1].C].T if op.output is None else s[op.output]
    return act(op.activation, u @ w)


def reference_values(program: ir.Program, s: dict, inputs: dict) -> dict[str, np.ndarray]:
    """Every node's value, computed in float64 numpy from the IR's documented semantics."""
    values: dict[str, np.ndarray] = dict(inputs)

    def mask_of(name: str) -> np.ndarray | None:
        node = next((n for n in program.nodes if n.name == name), None)
        if node is None or node.mask is None:
            return None
        return values[node.mask.input] != node.mask.pad_index

    for node in program.nodes:
        op = node.op
        xs = [values[name] for name in node.inputs]
        x = xs[0]
        mask = mask_of(node.inputs[0])
        if isinstance(op, ir.EmbeddingLookup):
            table = program.table(op.table)
            y = s[table.weight][x] * table.scale
            if isinstance(table.positional, ir.SinusoidalPositional):
                pos = table.positional
                y = y + sinusoids(pos.max_length, table.dim, pos.base)[: x.shape[1]]
            elif isinstance(table.positional, ir.LearnedPositional):
                y = y + s[table.positional.weight][: x.shape[1]]
            if table.pad_index is not None and table.zero_padded_positions:
                y = y * (x != table.pad_index)[..., None]
        elif isinstance(op, ir.Dense):
            y = act(op.activation, x @ s[op.kernel] + (s[op.bias] if op.bias else 0.0))
        elif isinstance(op, ir.Dropout):
            y = x
        elif isinstance(op, ir.Flatten):
            y = x.reshape(len(x), -1)
        elif isinstance(op, ir.GlobalPool):
            if mask is None:
                y = x.mean(1) if op.mode == "average" else x.max(1)
            elif op.mode == "average":
                y = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1), 1)[:, None]
            else:
                y = np.where(mask[..., None], x, -np.inf).max(1)
                y = np.where(mask.any(1)[:, None], y, 0.0)
        elif isinstance(op, ir.Conv1D):
            y = conv1d(op, x, s)
        elif isinstance(op, ir.Pool1D):
            y = pool1d(op, x)
        elif isinstance(op, ir.Recurrent):
            y = recurrent(op, x, mask, s)
        elif isinstance(op, ir.LayerNorm):
            y = layer_norm(x, s[op.gamma], s[op.beta], op.epsilon)
        elif isinstance(op, ir.BatchNorm):
            y = (x - s[op.moving_mean]) / np.sqrt(s[op.moving_variance] + op.epsilon)
            y = y * s[op.gamma] + s[op.beta]
        elif isinstance(op, ir.Merge):
            if op.mode == "concat":
                y = np.concatenate(xs, -1)
            elif op.mode == "add":
                y = sum(xs[1:], xs[0])
            else:
                y = math.prod(xs[1:], start=xs[0])
        elif isinstance(op, ir.SelfAttention):
            y = attention(op, x, mask, s)
        elif isinstance(op, ir.TransformerBlock):
            y = transformer_block(op, x, mask, s)
        elif isinstance(op, ir.MemoryNetwork):
            y = memory_network(op, xs, s)
        else:
            raise AssertionError(op)
        assert y.shape[1:] == node.shape[1:], (node.name, y.shape, node.shape)
        values[node.name] = y
    return values


def reference_forward(program: ir.Program, s: dict, inputs: dict) -> np.ndarray:
    """The program's output."""
    return reference_values(program, s, inputs)[program.outputs[0]]


def data(program: ir.Program, seed: int, batch: int = 5) -> tuple[dict, dict]:
    """Random canonical weights and a batch (padded tails, an all-padding row)."""
    rng = np.random.default_rng(seed)
    state = random_state(program, rng)
    for w in program.weights:
        if w.state and w.initializer.kind == "ones":  # a moving variance
            state[w.name] = rng.uniform(0.5, 2.0, w.shape)
    inputs, _ = random_batch(program, rng, batch)
    return state, inputs


def cut(program: ir.Program, output: str) -> ir.Program:
    """``program`` up to node ``output``, which becomes its output; unused weights dropped."""
    index = [n.name for n in program.nodes].index(output)
    nodes = program.nodes[: index + 1]
    weights = {w.name for w in program.weights}
    used = set()
    for node in nodes:
        used |= _strings(node.op) & weights
    for table in program.tables:
        used.add(table.weight)
    return dataclasses.replace(
        program,
        name=f"{program.name}_{output}",
        nodes=nodes,
        outputs=(output,),
        weights=tuple(w for w in program.weights if w.name in used),
    )


def _strings(value: object) -> set[str]:
    """Every string inside a (nested) IR dataclass."""
    if isinstance(value, str):
        return {value}
    if dataclasses.is_dataclass(value):
        return set().union(*(_strings(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, tuple):
        return set().union(set(), *(_strings(v) for v in value))
    return set()


# ----------------------------------------------------------------------------- source


def test_generated_source_parses_is_formatted_and_deterministic(gen: Generated) -> None:
    assert BACKEND.generate(gen.program) == gen.files
    for source in gen.files.values():
        ast.parse(source)
        assert format_source(source) == source
    tree = ast.parse(gen.files["model.py"])
    assert ast.get_docstring(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {a.name.split(".")[0] for a in node.names} <= ALLOWED_IMPORTS
        elif isinstance(node, ast.ImportFrom):
            assert node.module.split(".")[0] in ALLOWED_IMPORTS
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            assert ast.get_docstring(node) or node.name == "__init__", node.name


def test_generated_source_is_lint_clean(gen: Generated) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--quiet"),
            *("--target-version", "py311", "--select", "E,F,W,B,UP,SIM,RUF"),
            *("--ignore", "E501,RUF001,RUF002,RUF003"),
            str(gen.folder / "model.py"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert max(len(line) for line in gen.files["model.py"].splitlines()[1:]) <= 100


HELPERS = {
    "conv_pool": set(),
    "recurrent": {"packed_rnn", "swap_gru_gates", "masked_mean"},
    "graph_norms": {"masked_max"},
    "transformer": {
        "SinusoidalPositionalEncoding",
        "RotaryEmbedding",
        "MultiHeadSelfAttention",
        "TransformerBlock",
        "masked_mean",
    },
    "memn2n_adjacent": {"MemoryNetwork"},
    "memn2n_layerwise": {"MemoryNetwork"},
    "extras": {"swap_gru_gates", "MultiHeadSelfAttention"},
}


def test_only_used_helpers_are_emitted(gen: Generated) -> None:
    tree = ast.parse(gen.files["model.py"])
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    defined -= {gen.program.class_name, "build_model", "loss_fn", "make_optimizer"}
    defined -= {"_to_numpy", "_grad", "_check_state"}
    assert defined == HELPERS[gen.program.name]


def test_idioms(tmp_root: Path) -> None:
    conv = generated(PROGRAMS["conv_pool"](), tmp_root).files["model.py"]
    assert "nn.Conv1d(6, 5, 3, dilation=2, dtype=dtype)" in conv
    assert "F.pad(words_lookup.transpose(1, 2), (4, 0))" in conv  # causal
    assert "nn.Conv1d(5, 7, 4, stride=2, padding=1, dtype=dtype)" in conv  # same, TF rule
    recurrent_ = generated(PROGRAMS["recurrent"](), tmp_root).files["model.py"]
    assert "nn.LSTM(5, 4, batch_first=True, bidirectional=True, dtype=dtype)" in recurrent_
    assert "pack_padded_sequence" in recurrent_
    graph = generated(PROGRAMS["graph_norms"](), tmp_root).files["model.py"]
    assert graph.count("nn.Linear(6, 6, dtype=dtype)") == 1  # tied: one module, two calls
    assert "self.shared(lemb)" in graph and "self.shared(remb)" in graph
    assert "nn.BatchNorm1d(6, eps=1e-05, momentum=0.1, dtype=dtype)" in graph
    transformer = generated(PROGRAMS["transformer"](), tmp_root).files["model.py"]
    assert "F.scaled_dot_product_attention" in transformer


# ----------------------------------------------------------------------------- model


def counts(model: torch.nn.Module) -> tuple[int, int]:
    """Trainable and frozen scalars; batch-norm moving statistics count as frozen."""
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    frozen = sum(p.numel() for p in params if not p.requires_grad)
    frozen += sum(
        b.numel()
        for name, b in model.named_buffers()
        if name.endswith(("running_mean", "running_var"))
    )
    return trainable, frozen


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_builds_in_dtype_with_the_ir_parameter_counts(gen: Generated, dtype: str) -> None:
    model = runtime.build(gen.module, dtype)
    assert {p.dtype for p in model.parameters()} == {getattr(torch, dtype)}
    assert counts(model) == (gen.program.trainable_count, gen.program.frozen_count)
    for buffer in model.buffers():
        assert buffer.dtype in (getattr(torch, dtype), torch.long, torch.bool)
    state = runtime.get_state(model)
    assert list(state) == [w.name for w in gen.program.weights]
    for w in gen.program.weights:
        assert state[w.name].shape == w.shape and state[w.name].dtype == np.dtype(dtype)
        assert not state[w.name][list(w.zero_rows)].any()
        assert state[w.name].any() == (w.initializer.kind != "zeros")


def test_canonical_state_round_trips_exactly(gen: Generated, tmp_path: Path) -> None:
    for dtype in ("float32", "float64"):
        state, _ = data(gen.program, 1)
        state = {k: v.astype(dtype) for k, v in state.items()}
        model = runtime.build(gen.module, dtype)
        runtime.set_state(model, state)
        loaded = runtime.get_state(model)
        assert all(np.array_equal(loaded[k], state[k]) for k in state)
        path = tmp_path / f"{dtype}.safetensors"
        model.save_canonical(path)
        other = runtime.build(gen.module, dtype)
        other.load_canonical(path)
        again = runtime.get_state(other)
        assert all(np.array_equal(again[k], state[k]) for k in state)


def test_forward_matches_the_ir_semantics_in_float64(gen: Generated) -> None:
    state, inputs = data(gen.program, 2)
    model = runtime.build(gen.module, "float64")
    runtime.set_state(model, state)
    out = runtime.forward(model, inputs)
    np.testing.assert_allclose(out, reference_forward(gen.program, state, inputs), atol=1e-10)


# Nodes whose own values are checked against the reference (not only through the output).
INNER = {
    "conv_pool": ["causal", "same", "max_pool", "valid", "avg_pool"],
    "recurrent": ["lstm", "gru", "gru_seq", "lstm_last"],
    "graph_norms": ["norm", "bn", "joined"],
    "transformer": ["post", "pre", "attention"],
}


@pytest.mark.parametrize(
    ("name", "node"), [(name, node) for name, nodes in INNER.items() for node in nodes]
)
def test_inner_nodes_match_the_ir_semantics_in_float64(
    name: str, node: str, tmp_root: Path
) -> None:
    program = cut(PROGRAMS[name](), node)
    gen = generated(program, tmp_root)
    state, inputs = data(program, 3)
    model = runtime.build(gen.module, "float64")
    runtime.set_state(model, state)
    out = runtime.forward(model, inputs)
    np.testing.assert_allclose(out, reference_forward(program, state, inputs), atol=1e-10)


def test_float32_is_close_to_float64(gen: Generated) -> None:
    state, inputs = data(gen.program, 4)
    outs = []
    for dtype in ("float32", "float64"):
        model = runtime.build(gen.module, dtype)
        runtime.set_state(model, {k: v.astype(dtype) for k, v in state.items()})
        outs.append(runtime.forward(model, inputs))
    assert outs[0].dtype == np.float32
    # The last row is all padding: there "-1e9 added" to every score of a memory network
    # swamps the scores in float32 (uniform attention) but not in float64.
    np.testing.assert_allclose(outs[0][:-1], outs[1][:-1], atol=2e-5)


def test_gradients_match_finite_differences_of_the_reference(gen: Generated) -> None:
    program = gen.program
    state, inputs = data(program, 5)
    rng = np.random.default_rng(6)
    cotangent = rng.normal(size=reference_forward(program, state, inputs).shape)
    # The last row is all padding: "-1e9 added" rounds a memory network's scores there to a
    # grid of 1.2e-7, too coarse for finite differences.
    cotangent[-1] = 0.0
    model = runtime.build(gen.module, "float64")
    runtime.set_state(model, state)
    grads = runtime.gradients(model, inputs, cotangent)
    assert list(grads) == [w.name for w in program.weights if w.trainable_count]

    def objective(s: dict[str, np.ndarray]) -> float:
        return float((reference_forward(program, s, inputs) * cotangent).sum())

    for w in program.weights:
        if not w.trainable_count:
            continue
        grad = grads[w.name]
        assert grad.shape == w.shape and not grad[list(w.zero_rows)].any()
        # the largest entry and a random one: layouts and gate orders show up here
        picks = [np.unravel_index(np.argmax(np.abs(grad)), grad.shape)]
        picks.append(tuple(int(rng.integers(0, d)) for d in w.shape))
        for index in picks:
            if any(index[0] == r for r in w.zero_rows):
                continue
            plus, minus = dict(state), dict(state)
            plus[w.name], minus[w.name] = state[w.name].copy(), state[w.name].copy()
            plus[w.name][index] += 1e-6
            minus[w.name][index] -= 1e-6
            numeric = (objective(plus) - objective(minus)) / 2e-6
            assert grad[index] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (w.name, index)


# ----------------------------------------------------------------------------- recurrent


@pytest.mark.parametrize("output", ["lstm", "gru", "gru_seq", "lstm_last"])
def test_padded_batch_gives_the_unpadded_recurrent_outputs(output: str, tmp_root: Path) -> None:
    program = cut(PROGRAMS["recurrent"](), output)
    gen = generated(program, tmp_root)
    state, inputs = data(program, 7, batch=6)
    ids = inputs["tokens"]
    model = runtime.build(gen.module, "float64")
    runtime.set_state(model, state)
    padded = runtime.forward(model, inputs)
    sequences = program.node(output).op.return_sequences
    for row, row_ids in enumerate(ids):
        n = int((row_ids != 0).sum())
        assert (row_ids[:n] != 0).all(), "post-padded"
        if n == 0:
            assert not padded[row].any()
            continue
        alone = runtime.forward(model, {"tokens": row_ids[None, :n]})[0]
        if sequences:
            np.testing.assert_allclose(padded[row, :n], alone, atol=1e-13)
            assert not padded[row, n:].any()
        else:
            np.testing.assert_allclose(padded[row], alone, atol=1e-13)


def test_gru_gates_and_conv_kernels_are_converted_for_torch(tmp_root: Path) -> None:
    program = PROGRAMS["recurrent"]()
    gen = generated(program, tmp_root)
    state, _ = data(program, 8)
    model = runtime.build(gen.module, "float64")
    runtime.set_state(model, state)
    kernel = state["gru_seq.forward.kernel"]  # (in, 3 * 2): z, r, h
    z, r, h = np.split(kernel, 3, axis=1)
    torch_weight = model.gru_seq.weight_ih_l0.detach().numpy()  # (3 * 2, in): r, z, n
    np.testing.assert_array_equal(torch_weight, np.concatenate([r, z, h], axis=1).T)
    conv = generated(PROGRAMS["conv_pool"](), tmp_root)
    model = runtime.build(conv.module, "float64")
    state, _ = data(conv.program, 8)
    runtime.set_state(model, state)
    weight = model.causal.weight.detach().numpy()
    np.testing.assert_array_equal(weight, state["causal.kernel"].transpose(2, 1, 0))


# ----------------------------------------------------------------------------- batch norm


def test_batch_norm_state_trains_with_the_ir_momentum_rule(tmp_root: Path) -> None:
    program = PROGRAMS["graph_norms"]()
    gen = generated(program, tmp_root)
    state, _ = data(program, 9)
    rng = np.random.default_rng(10)
    inputs, labels = random_batch(program, rng, 5)
    model = runtime.build(gen.module, "float64")
    runtime.set_state(model, state)
    runtime.train(gen.module, model, [(inputs, labels)])
    after = runtime.get_state(model)
    x = reference_values(program, state, inputs)["lemb"].reshape(-1, 6)
    np.testing.assert_allclose(
        after["bn.moving_mean"], 0.9 * state["bn.moving_mean"] + 0.1 * x.mean(0), atol=1e-13
    )
    np.testing.assert_allclose(
        after["bn.moving_variance"],
        0.9 * state["bn.moving_variance"] + 0.1 * x.var(0, ddof=1),
        atol=1e-13,
    )
    assert not model.training, "the harness leaves the model in eval mode"


def test_train_runs_batch_norm_in_training_mode_and_dropout_off(tmp_root: Path) -> None:
    program = PROGRAMS["transformer"]()  # dropout 0.1 in both blocks and their attention
    gen = generated(program, tmp_root)
    state, _ = data(program, 11)
    rng = np.random.default_rng(12)
    batches = [random_batch(program, rng, 5) for _ in range(2)]
    runs = []
    for _ in range(2):
        model = runtime.build(gen.module, "float64")
        runtime.set_state(model, state)
        runs.append(runtime.train(gen.module, model, batches))
    assert runs[0] == runs[1]
    model = runtime.build(gen.module, "float64")
    runtime.set_state(model, state)
    expected = gen.module.loss_fn(
        torch.tensor(batches[0][1]), torch.tensor(runtime.forward(model, batches[0][0]))
    )
    assert runs[0][0] == pytest.approx(float(expected), abs=1e-12)


def test_model_class_may_not_shadow_a_helper_in_use() -> None:
    transformer = dataclasses.replace(PROGRAMS["transformer"](), class_name="TransformerBlock")
    with pytest.raises(ValueError, match="'TransformerBlock' is taken"):
        BACKEND.generate(transformer)
    conv = dataclasses.replace(PROGRAMS["conv_pool"](), class_name="TransformerBlock")
    assert "class TransformerBlock(nn.Module)" in BACKEND.generate(conv)["model.py"]
