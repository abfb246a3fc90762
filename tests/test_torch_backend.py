"""Tests of the PyTorch backend on its own: generated source, semantics, policies, train.py.

Semantics are checked against :mod:`nnspec.reference`, the numpy interpreter of the IR (float64)
written from the docstrings of :mod:`nnspec.compiler.ir`, independent of the generated code.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import re
import runpy
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import ir_examples
import numpy as np
import pytest

from nnspec import reference
from nnspec.backends.base import UnsupportedOpError, format_source, write_tree
from nnspec.backends.torch import BACKEND
from nnspec.compiler import ir

torch = pytest.importorskip("torch")
runtime = BACKEND.runtime()
safetensors_numpy = pytest.importorskip("safetensors.numpy")

PROGRAMS = {f.__name__: f for f in ir_examples.ALL}
# The framework, numpy, safetensors, the framework's usual companions (tqdm, matplotlib) and the
# standard library: never nnspec.
ALLOWED_IMPORTS = {
    "__future__",
    "argparse",
    "collections",
    "contextlib",
    "csv",
    "io",
    "json",
    "logging",
    "math",
    "matplotlib",
    "model",
    "numpy",
    "onnxruntime",
    "os",
    "pathlib",
    "random",
    "re",
    "safetensors",
    "shutil",
    "sys",
    "tempfile",
    "time",
    "torch",
    "tqdm",
    "warnings",
}


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
    return tmp_path_factory.mktemp("torch_backend")


@pytest.fixture(params=sorted(PROGRAMS))
def gen(request: pytest.FixtureRequest, tmp_root: Path) -> Generated:
    """Each example program, generated and imported."""
    return generated(PROGRAMS[request.param](), tmp_root)


# ----------------------------------------------------------------------------- reference


def sinusoids(max_length: int, dim: int, base: float) -> np.ndarray:
    """``pe[pos, 2i] = sin(pos / base**(2i/dim))``, ``pe[pos, 2i+1] = cos(...)``, entry by entry."""
    pe = np.zeros((max_length, dim))
    for pos in range(max_length):
        for j in range(dim):
            angle = pos / base ** ((j - j % 2) / dim)
            pe[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return pe


def random_ids(program: ir.Program, rng: np.random.Generator, batch: int = 4) -> np.ndarray:
    """Ids with padding, repeated ids, every trainable row and one all-padding row."""
    table = program.tables[0]
    length = program.inputs[0].length
    ids = rng.integers(1, table.vocab_size, (batch, length))
    ids[:, -3:] = 0
    ids[-1] = 0
    special = program.weight(table.weight).trainable_ids()
    if special:
        ids[0, : len(special)] = special[:length]
    ids[1, :2] = ids[1, 2]
    return ids.astype(np.int32)


def random_labels(program: ir.Program, rng: np.random.Generator, batch: int) -> np.ndarray:
    """Labels fitting the program's loss and output shape."""
    units = program.node(program.outputs[0]).shape[-1]
    loss = program.training.loss
    if loss == "sparse_categorical_crossentropy":
        return rng.integers(0, units, batch)
    if loss == "categorical_crossentropy":
        return np.eye(units)[rng.integers(0, units, batch)]
    if loss == "binary_crossentropy":
        return rng.integers(0, 2, (batch, units)).astype(np.float64)
    return rng.normal(size=(batch, units))


def random_state(program: ir.Program, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random canonical weights (padding rows 0.0)."""
    state = {w.name: rng.normal(scale=0.5, size=w.shape) for w in program.weights}
    for w in program.weights:
        state[w.name][list(w.zero_rows)] = 0.0
    return state


def with_training(program: ir.Program, **changes: object) -> ir.Program:
    """``program`` with its training section changed."""
    return dataclasses.replace(program, training=dataclasses.replace(program.training, **changes))


# ----------------------------------------------------------------------------- source


def test_generated_source_parses_and_is_stable(gen: Generated) -> None:
    again = BACKEND.generate(gen.program)
    assert again == gen.files
    spec = {"spec.json"} if gen.program.spec is not None else set()  # none when built by hand
    assert set(gen.files) == {"model.py", "train.py", "predict.py", "export.py", *spec}
    for source in python_files(gen).values():
        ast.parse(source)
        assert format_source(source) == source
        assert source.startswith("# Generated by nnspec")


def python_files(gen: Generated) -> dict[str, str]:
    """The generated Python files (all but ``spec.json``)."""
    return {rel: text for rel, text in gen.files.items() if rel.endswith(".py")}


def test_generated_source_depends_only_on_torch_numpy_safetensors(gen: Generated) -> None:
    for source in python_files(gen).values():
        tree = ast.parse(source)
        assert ast.get_docstring(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert {a.name.split(".")[0] for a in node.names} <= ALLOWED_IMPORTS
            elif isinstance(node, ast.ImportFrom):
                assert node.module.split(".")[0] in ALLOWED_IMPORTS
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                assert ast.get_docstring(node) or node.name in {"__init__", "update", "result"}


def test_generated_source_is_lint_clean(gen: Generated) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--quiet"),
            *("--target-version", "py311", "--select", "E,F,W,B,UP,SIM,RUF"),
            *("--ignore", "E501,RUF001,RUF002,RUF003"),
            *(str(gen.folder / f) for f in python_files(gen)),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for source in python_files(gen).values():
        assert max(len(line) for line in source.splitlines()[1:]) <= 100


def test_only_used_helpers_are_emitted(tmp_root: Path) -> None:
    flat = generated(ir_examples.flat_classifier(), tmp_root).files["model.py"]
    rows = generated(ir_examples.special_rows_pooled(), tmp_root).files["model.py"]
    sines = generated(ir_examples.sinusoidal_max_pool(), tmp_root).files["model.py"]
    for name in ("\nclass ", "\ndef masked_", "import math"):
        assert name not in flat.replace("\nclass FlatClassifier", "")
    for source in (flat, rows, sines):  # F is imported exactly when something uses it
        uses_f = " F." in source or "(F." in source
        assert ("import torch.nn.functional as F" in source) == uses_f
    assert "class PartiallyTrainableEmbedding" in rows and "def unpadded_mean" in rows
    assert "def masked_mean" not in rows  # the table zeroes pads, so a plain sum serves
    assert "class LearnedPositionalEncoding" in rows and "Sinusoidal" not in rows
    assert "class SinusoidalPositionalEncoding" in sines and "def masked_max" in sines
    assert "PartiallyTrainable" not in sines and "def masked_mean" not in sines
    assert "nn.Embedding(50, 8, padding_idx=0, dtype=dtype)" in flat


def test_importing_the_backend_does_not_import_torch() -> None:
    code = "import sys, nnspec.backends.torch as b; b.BACKEND; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unsupported_op_names_the_op_and_backend() -> None:
    @dataclass(frozen=True)
    class Conv1D:
        filters: int = 4
        op: str = "conv1d"

    program = ir_examples.flat_classifier()
    node = ir.Node("conv", Conv1D(), ("words_lookup",), (None, 12, 4))
    program = dataclasses.replace(program, nodes=(*program.nodes, node))
    with pytest.raises(UnsupportedOpError, match="'conv1d'") as info:
        BACKEND.generate(program)
    assert info.value.backend == "torch"
    assert "conv" in str(info.value)


def test_names_that_would_shadow_are_renamed(tmp_root: Path) -> None:
    base = ir_examples.flat_classifier()
    renames = {"words_lookup": "torch", "dense": "train", "dropout": "words", "flatten": "F"}

    def rename(name: str) -> str:
        return renames.get(name, name)

    nodes = tuple(
        dataclasses.replace(
            n,
            name=rename(n.name),
            inputs=tuple(rename(i) for i in n.inputs),
            op=dataclasses.replace(n.op, kernel="train.kernel", bias="train.bias")
            if n.name == "dense"
            else n.op,
        )
        for n in base.nodes
    )
    weights = tuple(
        dataclasses.replace(w, name=w.name.replace("dense.", "train."))
        if w.name.startswith("dense.")
        else w
        for w in base.weights
    )
    program = dataclasses.replace(base, name="shadowing", nodes=nodes, weights=weights)
    gen = generated(program, tmp_root)
    model = runtime.build(gen.module, "float64")
    state = random_state(program, np.random.default_rng(0))
    runtime.set_state(model, state)
    ids = random_ids(program, np.random.default_rng(1))
    out = runtime.forward(model, {"tokens": ids})
    np.testing.assert_allclose(out, reference.forward(program, state, {"tokens": ids}), atol=1e-12)


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_builds_in_dtype_with_the_ir_parameter_counts(gen: Generated, dtype: str) -> None:
    model = runtime.build(gen.module, dtype)
    params = list(model.parameters())
    assert {p.dtype for p in params} == {getattr(torch, dtype)}
    assert sum(p.numel() for p in params if p.requires_grad) == gen.program.trainable_count
    assert sum(p.numel() for p in params if not p.requires_grad) == gen.program.frozen_count
    for buffer in model.buffers():
        assert buffer.dtype in (getattr(torch, dtype), torch.long, torch.bool)
    state = runtime.get_state(model)
    assert list(state) == [w.name for w in gen.program.weights]
    for w in gen.program.weights:
        assert state[w.name].shape == w.shape and state[w.name].dtype == np.dtype(dtype)
        assert not state[w.name][list(w.zero_rows)].any()
        assert state[w.name].any() == (w.initializer.kind != "zeros")


def test_forward_matches_the_ir_semantics_in_float64(gen: Generated) -> None:
    rng = np.random.default_rng(0)
    model = runtime.build(gen.module, "float64")
    state = random_state(gen.program, rng)
    runtime.set_state(model, state)
    inputs = {gen.program.inputs[0].name: random_ids(gen.program, rng)}
    out = runtime.forward(model, inputs)
    np.testing.assert_allclose(out, reference.forward(gen.program, state, inputs), atol=1e-12)


def test_float32_forward_is_close_to_float64(gen: Generated) -> None:
    rng = np.random.default_rng(1)
    state = random_state(gen.program, rng)
    inputs = {gen.program.inputs[0].name: random_ids(gen.program, rng)}
    outs = []
    for dtype in ("float32", "float64"):
        model = runtime.build(gen.module, dtype)
        runtime.set_state(model, state)
        outs.append(runtime.forward(model, inputs))
    assert outs[0].dtype == np.float32
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-6)


def test_canonical_state_round_trips_through_safetensors(gen: Generated, tmp_path: Path) -> None:
    for dtype in ("float32", "float64"):
        torch.manual_seed(0)
        model = runtime.build(gen.module, dtype)
        path = tmp_path / f"{dtype}.safetensors"
        model.save_canonical(path)
        on_disk = safetensors_numpy.load_file(str(path))
        torch.manual_seed(1)
        other = runtime.build(gen.module, dtype)
        other.load_canonical(path)
        saved, loaded = runtime.get_state(model), runtime.get_state(other)
        assert list(on_disk) == sorted(saved)
        for name in saved:
            assert np.array_equal(on_disk[name], saved[name])
            assert np.array_equal(loaded[name], saved[name])
            assert loaded[name].dtype == np.dtype(dtype)


def test_load_sets_padding_rows_to_zero_and_checks_names_and_shapes(gen: Generated) -> None:
    program = gen.program
    model = runtime.build(gen.module, "float32")
    state = {w.name: np.ones(w.shape, np.float32) for w in program.weights}
    runtime.set_state(model, state)
    loaded = runtime.get_state(model)
    for w in program.weights:
        expected = np.ones(w.shape, np.float32)
        expected[list(w.zero_rows)] = 0.0
        assert np.array_equal(loaded[w.name], expected)
    assert state[program.weights[0].name].all(), "the caller's arrays must not change"

    first = program.weights[0]
    with pytest.raises(ValueError, match=f"missing '{re.escape(first.name)}'"):
        runtime.set_state(model, {k: v for k, v in state.items() if k != first.name})
    with pytest.raises(ValueError, match=r"unexpected 'extra\.weight'"):
        runtime.set_state(model, {**state, "extra.weight": np.zeros(3)})
    bad_shape = (*first.shape[:-1], first.shape[-1] + 1)
    message = re.escape(f"'{first.name}' has shape {bad_shape}, expected {first.shape}")
    with pytest.raises(ValueError, match=message):
        runtime.set_state(model, {**state, first.name: np.zeros(bad_shape)})


def test_sinusoids_are_computed_in_float64_then_cast(tmp_root: Path) -> None:
    program = ir_examples.sinusoidal_max_pool()
    module = generated(program, tmp_root).module
    pos = program.tables[0].positional
    expected = sinusoids(pos.max_length, program.tables[0].dim, pos.base)
    model64, model32 = runtime.build(module, "float64"), runtime.build(module, "float32")
    assert np.array_equal(model64.tok_positions.encoding.numpy(), expected)
    assert np.array_equal(model32.tok_positions.encoding.numpy(), expected.astype(np.float32))
    assert "tok_positions.encoding" not in model64.state_dict()


@pytest.mark.parametrize(
    ("kind", "bound"),
    [
        ("he_uniform", math.sqrt(6 / 40)),
        ("glorot_uniform", math.sqrt(6 / (40 + 6))),
        ("truncated_normal", 2 * 0.05),
        ("uniform", 0.05),
    ],
)
def test_initializers_follow_the_canonical_layout(kind: str, bound: float, tmp_root: Path) -> None:
    base = ir_examples.special_rows_pooled()
    init = ir.Initializer(kind)
    weights = tuple(
        dataclasses.replace(w, initializer=init) if w.name != "out.bias" else w
        for w in base.weights
    )
    program = dataclasses.replace(base, name=f"init_{kind}", weights=weights)
    module = generated(program, tmp_root).module
    torch.manual_seed(0)
    state = runtime.get_state(runtime.build(module, "float64"))
    table = state["glove.embeddings"]
    assert not table[0].any()
    assert np.abs(table).max() <= bound and np.abs(table).max() > 0.8 * bound
    kernel_bound = {"he_uniform": math.sqrt(6 / 6), "glorot_uniform": math.sqrt(6 / 7)}
    kernel = state["out.kernel"]
    assert np.abs(kernel).max() <= kernel_bound.get(kind, bound)


def embedding_only(program: ir.Program) -> ir.Program:
    """``program`` cut after its embedding lookup, which becomes the output."""
    lookup = program.nodes[0]
    table = program.table(lookup.op.table)
    names = {table.weight, getattr(table.positional, "weight", None)}
    return dataclasses.replace(
        program,
        name=f"{program.name}_lookup",
        nodes=(lookup,),
        outputs=(lookup.name,),
        weights=tuple(w for w in program.weights if w.name in names),
    )


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_embedding_output_is_exactly_zero_at_padding(name: str, tmp_root: Path) -> None:
    program = embedding_only(PROGRAMS[name]())
    module = generated(program, tmp_root).module
    rng = np.random.default_rng(2)
    ids = random_ids(program, rng)
    for dtype in ("float32", "float64"):
        model = runtime.build(module, dtype)
        out = runtime.forward(model, {program.inputs[0].name: ids})
        assert out.shape == (*ids.shape, program.tables[0].dim)
        assert np.all(out[ids == 0] == 0.0)
        assert np.all(np.abs(out[ids != 0]).sum(-1) > 0)
    state = random_state(program, rng)
    model = runtime.build(module, "float64")
    runtime.set_state(model, state)
    inputs = {program.inputs[0].name: ids}
    expected = reference.forward(program, state, inputs)
    np.testing.assert_allclose(runtime.forward(model, inputs), expected, atol=1e-12)


def test_int64_ids_give_the_same_output(gen: Generated) -> None:
    model = runtime.build(gen.module, "float32")
    ids = random_ids(gen.program, np.random.default_rng(3))
    name = gen.program.inputs[0].name
    out32 = runtime.forward(model, {name: ids})
    assert np.array_equal(out32, runtime.forward(model, {name: ids.astype(np.int64)}))


# ----------------------------------------------------------------------------- gradients


def frozen_rows(weight: ir.Weight) -> list[int]:
    """Rows of ``weight`` that must never change."""
    if weight.trainable == "none":
        return list(range(weight.shape[0]))
    if weight.trainable == "rows":
        trainable = set(weight.trainable_ids())
        return [i for i in range(weight.shape[0]) if i not in trainable]
    return list(weight.zero_rows)


def test_gradients_match_finite_differences_and_are_zero_at_frozen_rows(gen: Generated) -> None:
    program = gen.program
    rng = np.random.default_rng(4)
    state = random_state(program, rng)
    inputs = {program.inputs[0].name: random_ids(program, rng)}
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
        assert grad.shape == w.shape and grad.dtype == np.float64
        frozen = frozen_rows(w)
        assert not grad[frozen].any()
        live = [i for i in np.unique(inputs[program.inputs[0].name]) if i not in frozen]
        rows = live if w.name == program.tables[0].weight else range(w.shape[0])
        for _ in range(4):
            index = (rng.choice(list(rows)), *(rng.integers(0, d) for d in w.shape[1:]))
            plus, minus = dict(state), dict(state)
            plus[w.name], minus[w.name] = state[w.name].copy(), state[w.name].copy()
            plus[w.name][index] += 1e-6
            minus[w.name][index] -= 1e-6
            numeric = (objective(plus) - objective(minus)) / 2e-6
            assert grad[index] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (w.name, index)


# ----------------------------------------------------------------------------- training


def batches(program: ir.Program, seed: int, n: int = 5) -> list[tuple[dict, np.ndarray]]:
    """``n`` random training batches."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ids = random_ids(program, rng, batch=program.training.batch_size)
        out.append(({program.inputs[0].name: ids}, random_labels(program, rng, len(ids))))
    return out


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_padding_and_frozen_rows_survive_optimizer_steps(
    name: str, kind: str, tmp_root: Path
) -> None:
    base = PROGRAMS[name]()
    optimizer = ir.Optimizer(kind, lr=0.05, momentum=0.9, weight_decay=0.1)
    program = with_training(base, optimizer=optimizer)
    module = generated(program, tmp_root).module
    model = runtime.build(module, "float32")
    runtime.set_state(model, random_state(program, np.random.default_rng(5)))
    before = runtime.get_state(model)
    losses = runtime.train(module, model, batches(program, seed=6))
    after = runtime.get_state(model)
    assert len(losses) == 5 and all(np.isfinite(losses))
    for w in program.weights:
        frozen = frozen_rows(w)
        assert np.array_equal(after[w.name][frozen], before[w.name][frozen]), w.name
        assert not after[w.name][list(w.zero_rows)].any()
        moving = [i for i in range(w.shape[0]) if i not in frozen]
        if not moving:
            continue
        changed = after[w.name][moving] != before[w.name][moving]
        assert changed.reshape(len(moving), -1).any(axis=1).all(), w.name


def test_train_is_deterministic_and_float64_agrees(tmp_root: Path) -> None:
    program = ir_examples.special_rows_pooled()
    module = generated(program, tmp_root).module
    state = random_state(program, np.random.default_rng(7))
    results = {}
    for dtype in ("float32", "float32", "float64"):
        model = runtime.build(module, dtype)
        runtime.set_state(model, state)
        losses = runtime.train(module, model, batches(program, seed=8))
        results.setdefault(dtype, []).append((losses, runtime.get_state(model)))
    (l1, s1), (l2, s2) = results["float32"]
    assert l1 == l2 and all(np.array_equal(s1[k], s2[k]) for k in s1)
    _, s64 = results["float64"][0]
    for k in s1:
        np.testing.assert_allclose(s1[k], s64[k], atol=1e-5)


LOSS_CASES = [
    ("sparse_categorical_crossentropy", False),
    ("sparse_categorical_crossentropy", True),
    ("categorical_crossentropy", False),
    ("categorical_crossentropy", True),
    ("binary_crossentropy", False),
    ("binary_crossentropy", True),
    ("mse", False),
]


def reference_loss(loss: str, logits: bool, eps: float, y: np.ndarray, p: np.ndarray) -> float:
    """The formulas of :class:`ir.Training`."""
    if loss == "sparse_categorical_crossentropy":
        if logits:
            log_p = p - p.max(-1, keepdims=True)
            log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
            return float(-log_p[np.arange(len(y)), y].mean())
        return float(-np.log(np.clip(p[np.arange(len(y)), y], eps, 1 - eps)).mean())
    if loss == "categorical_crossentropy":
        if logits:
            log_p = p - p.max(-1, keepdims=True)
            log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
            return float(-(y * log_p).sum(-1).mean())
        return float(-(y * np.log(np.clip(p, eps, 1 - eps))).sum(-1).mean())
    if loss == "binary_crossentropy":
        p = 1 / (1 + np.exp(-p)) if logits else np.clip(p, eps, 1 - eps)
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    return float(((p - y) ** 2).mean())


@pytest.mark.parametrize(("loss", "logits"), LOSS_CASES)
def test_loss_fn_follows_the_ir_formulas(loss: str, logits: bool, tmp_root: Path) -> None:
    program = with_training(ir_examples.flat_classifier(), loss=loss, from_logits=logits)
    module = generated(program, tmp_root).module
    rng = np.random.default_rng(9)
    y = random_labels(program, rng, 6)
    if logits or loss == "mse":
        p = rng.normal(size=(6, 5)) * 3
    else:
        p = rng.dirichlet(np.full(5, 0.3), size=6)
        p[0, 0], p[0, 1] = 1.0, 0.0  # exercises the clipping
    if loss == "binary_crossentropy" and not logits:
        p = rng.uniform(size=(6, 5))
        p[0, :2] = 0.0, 1.0
    expected = reference_loss(loss, logits, program.training.epsilon, y, p)
    got = module.loss_fn(torch.tensor(y), torch.tensor(p))
    assert got.dtype == torch.float64 and got.shape == ()
    assert got.item() == pytest.approx(expected, rel=1e-10)
    got32 = module.loss_fn(torch.tensor(y), torch.tensor(p, dtype=torch.float32))
    assert got32.dtype == torch.float32 and got32.item() == pytest.approx(expected, rel=1e-5)


def test_make_optimizer_uses_the_ir_hyperparameters(gen: Generated) -> None:
    program = gen.program
    model = runtime.build(gen.module, "float32")
    optimizer = gen.module.make_optimizer(model)
    opt = program.training.optimizer
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    assert type(optimizer) is cls[opt.kind]
    assert optimizer.defaults["lr"] == opt.lr
    assert optimizer.defaults["weight_decay"] == opt.weight_decay
    if opt.kind == "sgd":
        assert optimizer.defaults["momentum"] == opt.momentum
        assert optimizer.defaults["nesterov"] == opt.nesterov
    else:
        assert optimizer.defaults["betas"] == (opt.beta1, opt.beta2)
        assert optimizer.defaults["eps"] == opt.eps
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert all(p.requires_grad for p in params)
    assert sum(p.numel() for p in params) == program.trainable_count
    assert gen.module.make_optimizer(model, lr=0.125).defaults["lr"] == 0.125


def test_clip_norm_clips_the_global_gradient_norm(tmp_root: Path) -> None:
    base = ir_examples.flat_classifier()
    optimizer = ir.Optimizer("sgd", lr=1.0, clip_norm=0.01)
    program = with_training(base, optimizer=optimizer)
    module = generated(program, tmp_root).module
    model = runtime.build(module, "float64")
    state = random_state(program, np.random.default_rng(10))
    runtime.set_state(model, state)
    [(inputs, labels)] = batches(program, seed=11, n=1)
    runtime.train(module, model, [(inputs, labels)])
    after = runtime.get_state(model)
    step = np.sqrt(sum(((after[k] - state[k]) ** 2).sum() for k in state))
    assert step == pytest.approx(0.01, rel=1e-4)


# ----------------------------------------------------------------------------- train.py


def write_data(program: ir.Program, path: Path, n: int, validation: bool) -> None:
    """A tiny random .npz for ``program``."""
    rng = np.random.default_rng(12)
    arrays = {}
    for prefix in ("", "val_") if validation else ("",):
        ids = random_ids(program, rng, batch=n)
        arrays[prefix + program.inputs[0].name] = ids
        arrays[prefix + "labels"] = random_labels(program, rng, n)
    np.savez(path, **arrays)


@dataclass
class TrainRun:
    """A ``train.py`` process started in the background."""

    gen: Generated
    out: Path
    process: subprocess.Popen[str]

    def result(self) -> tuple[int, str, str]:
        """Wait for the process: its exit status, stdout and stderr."""
        stdout, stderr = self.process.communicate(timeout=180)
        return self.process.returncode, stdout, stderr


@pytest.fixture(scope="session")
def train_runs(tmp_root: Path) -> dict[str, TrainRun]:
    """A 1-epoch train.py process per example, all started at once (each imports torch)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    runs = {}
    for name in sorted(PROGRAMS):
        gen = generated(PROGRAMS[name](), tmp_root)
        out = tmp_root / f"run_{name}"
        out.mkdir()
        write_data(gen.program, out / "data.npz", n=20, validation=False)
        command = [sys.executable, str(gen.folder / "train.py"), "--data", str(out / "data.npz")]
        process = subprocess.Popen(
            [*command, "--epochs", "1", "--out", str(out / "weights")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=out,  # not the script's folder: it must find model.py by itself
        )
        runs[name] = TrainRun(gen, out / "weights", process)
    yield runs
    for run in runs.values():
        run.process.kill()
        run.process.communicate()


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_train_script_runs_end_to_end(name: str, train_runs: dict[str, TrainRun]) -> None:
    run = train_runs[name]
    status, stdout, stderr = run.result()
    assert status == 0, stderr
    assert "18 examples, 2 for validation" in stdout
    assert "epoch 1/1" in stdout and "val_loss" in stdout
    assert ("accuracy" in stdout) == (run.gen.program.training.loss != "mse")
    model = runtime.build(run.gen.module, "float32")
    model.load_canonical(run.out / "model.safetensors")
    state = runtime.get_state(model)
    for w in run.gen.program.weights:
        assert not state[w.name][list(w.zero_rows)].any()


def run_in_process(gen: Generated, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> str:
    """Run ``gen``'s train.py as ``__main__`` in this process (no torch import to pay)."""
    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    monkeypatch.syspath_prepend(str(gen.folder))
    monkeypatch.delitem(sys.modules, "model", raising=False)
    try:
        runpy.run_path(str(gen.folder / "train.py"), run_name="__main__")
    finally:
        sys.modules.pop("model", None)
    return capsys.readouterr().out


def test_train_script_stops_early_and_restores_the_best(
    tmp_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    stopping = ir.EarlyStopping(monitor="val_loss", patience=1, min_delta=100.0)
    program = with_training(ir_examples.special_rows_pooled(), early_stopping=stopping, epochs=5)
    gen = generated(program, tmp_root)
    write_data(program, tmp_path / "data.npz", n=12, validation=True)
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "data.npz"), "--out", str(out), "--device", "cpu"]
    stdout = run_in_process(gen, args, monkeypatch, capsys)
    assert "12 examples, 12 for validation" in stdout
    assert "epoch 2/5" in stdout and "epoch 3/5" not in stdout
    assert "early stopping" in stdout and "restored" in stdout
    assert (out / "model.safetensors").exists()


def test_train_script_max_steps(
    tmp_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    gen = generated(ir_examples.flat_classifier(), tmp_root)
    write_data(gen.program, tmp_path / "data.npz", n=40, validation=False)
    args = ["--data", str(tmp_path / "data.npz"), "--out", str(tmp_path / "out")]
    stdout = run_in_process(gen, [*args, "--epochs", "3", "--max-steps", "2"], monkeypatch, capsys)
    assert "36 examples, 4 for validation" in stdout
    assert "epoch 1/3" in stdout and "epoch 2/3" not in stdout
    assert (tmp_path / "out" / "model.safetensors").exists()


# ----------------------------------------------------------------------------- stacks

STACKED = {
    "lstm_bidirectional_masked": (
        "{type: lstm, units: 3, bidirectional: true, num_layers: 3, dropout: 0.2}",
        "padding: {index: 0}",
        True,
    ),
    "gru_sequences": (
        "{type: gru, units: 4, num_layers: 2, return_sequences: true}",
        "initializer: {type: normal, std: 0.5}",
        True,
    ),
    "gru_sum_between_layers": (
        "{type: gru, units: 3, bidirectional: true, merge: sum, num_layers: 2}",
        "padding: {index: 0}",
        False,
    ),
}


@pytest.mark.parametrize("name", sorted(STACKED))
def test_stacked_recurrent_layers_are_one_module_computing_the_unrolled_layers(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unrolled stacked layers that torch's ``num_layers`` computes exactly become one module:
    same outputs and gradients, in float64, as the layer-by-layer code."""
    from nnspec.backends.torch import generator
    from nnspec.compiler import compile_spec
    from nnspec.spec import load_string

    layer, table, stacked = STACKED[name]
    pool = "" if "return_sequences" not in layer else "    - {type: global_average_pool}\n"
    text = (
        f"nnspec: 1\nname: {name}\ninputs:\n  tokens: {{length: 5}}\n"
        f"embeddings:\n  words: {{vocab_size: 12, dim: 4, {table}}}\n"
        f"model:\n  layers:\n    - {{type: embedding, table: words}}\n    - {layer}\n{pool}"
        "    - {type: dense, units: 2, activation: softmax}\n"
        "training:\n  loss: sparse_categorical_crossentropy\n"
    )
    program = load_string(text, "stack.yaml")
    program = compile_spec(*program)
    rng = np.random.default_rng(0)
    state = random_state(program, rng)
    ids = random_ids(program, rng)
    ids[0, 2:] = 0  # padded tails (and a row of padding only)
    ids[1, :] = 0
    cotangent = rng.normal(size=(ids.shape[0], 2))
    results = []
    for variant in ("stacked", "unrolled"):
        if variant == "unrolled":
            monkeypatch.setattr(generator, "recurrent_stacks", lambda program: {})
        files = BACKEND.generate(program)
        assert ("num_layers=" in files["model.py"]) == (stacked and variant == "stacked")
        write_tree(files, tmp_path / variant)
        module = runtime.load_module(tmp_path / variant / "model.py")
        model = runtime.build(module, "float64")
        runtime.set_state(model, state)
        assert all(np.array_equal(v, state[k]) for k, v in runtime.get_state(model).items())
        output = runtime.forward(model, {"tokens": ids})
        grads = runtime.gradients(model, {"tokens": ids}, cotangent)
        results.append((output, grads))
    (out_a, grads_a), (out_b, grads_b) = results
    np.testing.assert_allclose(out_a, out_b, atol=1e-12)
    assert grads_a.keys() == grads_b.keys()
    for key in grads_a:
        np.testing.assert_allclose(grads_a[key], grads_b[key], atol=1e-12, err_msg=key)
