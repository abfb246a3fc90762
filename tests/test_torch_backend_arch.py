"""Tests of the PyTorch backend on the architecture ops (``tests/ir_examples_arch.py``): generated
source, parameter counts, canonical layouts, and outputs and gradients against
:mod:`nnspec.reference`, the float64 numpy interpreter of the IR written from the docstrings of
:mod:`nnspec.compiler.ir`, independent of the generated code.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import ir_examples_arch
import numpy as np
import pytest

from nnspec import reference
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


# ----------------------------------------------------------------------------- data


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
    "recurrent": {"packed_rnn", "unpacked_rnn", "swap_gru_gates", "masked_mean"},
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
    np.testing.assert_allclose(out, reference.forward(gen.program, state, inputs), atol=1e-10)


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
    np.testing.assert_allclose(out, reference.forward(program, state, inputs), atol=1e-10)


def test_float32_is_close_to_float64(gen: Generated) -> None:
    state, inputs = data(gen.program, 4)
    outs = []
    for dtype in ("float32", "float64"):
        model = runtime.build(gen.module, dtype)
        runtime.set_state(model, {k: v.astype(dtype) for k, v in state.items()})
        outs.append(runtime.forward(model, inputs))
    assert outs[0].dtype == np.float32
    # The last row is all padding: masks replace scores (no -1e9 offset swamping them in
    # float32), so it is as close as the others.
    np.testing.assert_allclose(outs[0], outs[1], atol=2e-5)


def test_gradients_match_finite_differences_of_the_reference(gen: Generated) -> None:
    program = gen.program
    state, inputs = data(program, 5)
    rng = np.random.default_rng(6)
    cotangent = rng.normal(size=reference.forward(program, state, inputs).shape)
    model = runtime.build(gen.module, "float64")
    runtime.set_state(model, state)
    grads = runtime.gradients(model, inputs, cotangent)
    assert list(grads) == [w.name for w in program.weights if w.trainable_count]

    def objective(s: dict[str, np.ndarray]) -> float:
        return float((reference.forward(program, s, inputs) * cotangent).sum())

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
    x = reference.values(program, state, inputs)["lemb"].reshape(-1, 6)
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
