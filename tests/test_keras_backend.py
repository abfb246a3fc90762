"""The Keras backend on its own: generated code, parameter counts, canonical weights, embedding
policies under training, PyTorch's optimizer rules, losses, and the training script.

Exact checks use ``==`` / ``np.array_equal``; the optimizer check compares float64 trajectories
with a numpy transcription of ``torch.optim`` (and with ``torch.optim`` itself when installed) to
1e-12.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nnspec.backends.base import UnsupportedOpError, format_source, header, write_tree
from nnspec.backends.keras import BACKEND
from nnspec.backends.keras.emitter import MODEL_ATTRIBUTES
from nnspec.compiler import ir
from tests import ir_examples

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
runtime = BACKEND.runtime()

EXAMPLES = {build.__name__: build for build in ir_examples.ALL}
ROOT = Path(__file__).resolve().parent.parent


def with_training(program: ir.Program, **changes) -> ir.Program:
    """``program`` with fields of its optimizer or of its training section changed."""
    fields = {f.name for f in dataclasses.fields(ir.Optimizer)}
    optimizer = dataclasses.replace(
        program.training.optimizer, **{k: v for k, v in changes.items() if k in fields}
    )
    training = dataclasses.replace(
        program.training,
        optimizer=optimizer,
        **{k: v for k, v in changes.items() if k not in fields},
    )
    return dataclasses.replace(program, training=training)


_modules: dict[ir.Program, object] = {}


def module_for(program: ir.Program, tmp: Path):
    """The generated model module of ``program`` (generated and imported once per program)."""
    if program not in _modules:
        out = tmp / f"m{len(_modules)}"
        write_tree(BACKEND.generate(program), out)
        _modules[program] = runtime.load_module(out / "model.py")
    return _modules[program]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keras")


def random_state(program: ir.Program, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random canonical weights; padding rows deliberately not zero."""
    return {w.name: rng.normal(0.0, 0.5, size=w.shape) for w in program.weights}


def random_batch(program: ir.Program, rng: np.random.Generator, batch: int = 4):
    """Ids with repeated tokens, padded tails and one all-pad row, and labels for the loss."""
    inputs = {}
    for inp in program.inputs:
        table = next(
            program.table(n.op.table)
            for n in program.nodes
            if isinstance(n.op, ir.EmbeddingLookup) and n.inputs == (inp.name,)
        )
        ids = rng.integers(0, table.vocab_size, size=(batch, inp.length))
        ids[:, :3] = table.vocab_size - 1  # every row holds a repeated (trainable) id
        ids[:, 3] = 3
        ids[0, -2:] = 0
        ids[-1] = 0
        inputs[inp.name] = ids.astype(inp.dtype)
    width = program.node(program.outputs[0]).shape[-1]
    loss = program.training.loss
    if loss == "sparse_categorical_crossentropy":
        labels = rng.integers(0, width, size=batch)
    elif loss == "categorical_crossentropy":
        labels = np.eye(width)[rng.integers(0, width, size=batch)]
    elif loss == "binary_crossentropy":
        labels = rng.integers(0, 2, size=(batch, width)).astype(np.float64)
    else:
        labels = rng.normal(size=(batch, width))
    return inputs, labels


def table_rows(program: ir.Program, table: ir.EmbeddingTable) -> tuple[list[int], list[int]]:
    """``(trainable rows, frozen rows)`` of a table, padding rows counted as frozen."""
    weight = program.weight(table.weight)
    if weight.trainable == "rows":
        trainable = weight.trainable_ids()
    elif weight.trainable == "all":
        trainable = [i for i in range(table.vocab_size) if i not in weight.zero_rows]
    else:
        trainable = []
    return trainable, [i for i in range(table.vocab_size) if i not in trainable]


# ----------------------------------------------------------------------------- generated code


def test_backend_package_imports_no_framework():
    code = (
        "import sys, nnspec.backends.keras as k; "
        "assert k.BACKEND.name == 'keras'; "
        "assert not {'tensorflow', 'keras'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


VARIANTS = {
    **{name: {} for name in EXAMPLES},
    "flat_classifier-clip-logits": {"clip_norm": 1.0, "from_logits": True},
    "flat_classifier-sgd": {"kind": "sgd", "momentum": 0.0, "weight_decay": 0.0},
    "sinusoidal_max_pool-adamw-mse": {"kind": "adamw", "loss": "mse"},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_generated_code_is_stable_parses_and_lints(variant, tmp):
    name = variant.split("-")[0]
    files = BACKEND.generate(with_training(EXAMPLES[name](), **VARIANTS[variant]))
    assert files == BACKEND.generate(with_training(EXAMPLES[name](), **VARIANTS[variant]))
    # A program built by hand has no spec, so no spec.json.
    assert set(files) == {"model.py", "train.py", "predict.py", "export.py"}
    out = tmp / f"lint_{variant}"
    write_tree(files, out)
    head = header(EXAMPLES[name](), "keras")
    for rel, text in files.items():
        ast.parse(text)
        assert format_source(text) == text
        assert text.startswith(head + "\n")
        body = text[len(head) :]
        assert "nnspec" not in body, f"{rel} mentions nnspec below its header"
        long = [line for line in body.splitlines() if len(line) > 100]
        assert not long, f"{rel}: lines longer than 100: {long}"
    # E501 is checked above, on all but the header (whose spec name may be long).
    rules = ["--select", "E,F,W,I,B,UP,SIM,RUF", "--ignore", "E501", "--line-length", "100"]
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", *rules, str(out)],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout


def test_model_attribute_names_cover_keras_model():
    class Probe(keras.Model):
        def call(self, x):
            return x

    probe = Probe()
    probe.compile(optimizer="sgd", loss="mse")
    public = {n for n in set(dir(probe)) | set(vars(probe)) if not n.startswith("_")}
    assert public <= MODEL_ATTRIBUTES, sorted(public - MODEL_ATTRIBUTES)


def test_node_names_that_clash_with_keras_model_get_another_attribute(tmp):
    program = ir_examples.flat_classifier()
    renamed = {"dense": "output", "flatten": "layers"}

    def rename(name: str) -> str:
        return renamed.get(name, name)

    nodes = tuple(
        dataclasses.replace(n, name=rename(n.name), inputs=tuple(map(rename, n.inputs)))
        for n in program.nodes
    )
    program = dataclasses.replace(program, nodes=nodes)
    source = BACKEND.generate(program)["model.py"]
    assert "self.output_ = keras.layers.Dense(" in source
    assert "self.layers_ = keras.layers.Flatten(" in source
    model = runtime.build(module_for(program, tmp), "float32")
    assert runtime.forward(model, random_batch(program, np.random.default_rng(0))[0]).shape == (
        4,
        5,
    )


def test_a_value_used_twice_keeps_its_own_variable(tmp):
    """Outputs ``dense_1`` and a masked pool of the embeddings: ``call`` keeps the embeddings in a
    named variable while the dense branch runs in ``x``, and returns both outputs by name."""
    program = ir_examples.flat_classifier()
    pool = ir.Node("pool", ir.GlobalPool("average"), ("words_lookup",), (None, 8))
    program = dataclasses.replace(
        program, nodes=(*program.nodes, pool), outputs=("dense_1", "pool")
    )
    source = BACKEND.generate(program)["model.py"]
    assert "words_lookup = self.words(tokens)" in source
    assert "x = self.flatten(words_lookup)" in source
    assert 'return {"dense_1": dense_1, "pool": x}' in source
    model = runtime.build(module_for(program, tmp), "float64")
    inputs, _ = random_batch(program, np.random.default_rng(0))
    out = model(inputs)
    embedded = keras.ops.convert_to_numpy(model.words(inputs["tokens"]))
    valid = inputs["tokens"] != 0
    expected = (embedded * valid[..., None]).sum(1) / np.maximum(valid.sum(1), 1)[:, None]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["pool"]), expected, rtol=1e-14)
    assert tuple(out["dense_1"].shape) == (4, 5)


def test_unknown_op_is_an_error_naming_it():
    @dataclasses.dataclass(frozen=True)
    class Conv1D:
        filters: int = 4
        op: str = "conv1d"

    program = ir_examples.flat_classifier()
    node = ir.Node("conv", Conv1D(), ("words_lookup",), (None, 12, 4))  # type: ignore[arg-type]
    program = dataclasses.replace(program, nodes=(program.nodes[0], node, *program.nodes[1:]))
    with pytest.raises(
        UnsupportedOpError, match=r"'keras' cannot emit op 'conv1d' \(node 'conv'\)"
    ):
        BACKEND.generate(program)


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_builds_in_dtype_with_exact_parameter_counts(name, dtype, tmp):
    program = EXAMPLES[name]()
    model = runtime.build(module_for(program, tmp), dtype)
    assert {v.dtype for v in model.weights} == {dtype}
    assert sum(math.prod(v.shape) for v in model.trainable_weights) == program.trainable_count
    assert sum(math.prod(v.shape) for v in model.non_trainable_weights) == program.frozen_count
    state = runtime.get_state(model)
    assert {k: v.shape for k, v in state.items()} == {w.name: w.shape for w in program.weights}
    for table in program.tables:
        for row in program.weight(table.weight).zero_rows:
            assert np.all(state[table.weight][row] == 0.0), "fresh padding row is not 0.0"
    inputs, _ = random_batch(program, np.random.default_rng(0))
    assert runtime.forward(model, inputs).dtype == dtype


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_canonical_state_round_trips_through_safetensors(name, tmp):
    program = EXAMPLES[name]()
    module = module_for(program, tmp)
    state = random_state(program, np.random.default_rng(1))
    model = runtime.build(module, "float64")
    model.load_canonical_state(state)
    path = tmp / f"{name}.safetensors"
    model.save_canonical(path)
    other = runtime.build(module, "float64")
    other.load_canonical(path)
    loaded = other.canonical_state()
    for weight in program.weights:
        expected = state[weight.name].copy()
        expected[list(weight.zero_rows)] = 0.0  # padding rows are zeroed whatever the file says
        assert np.array_equal(loaded[weight.name], expected), weight.name


def test_load_canonical_state_checks_names_and_shapes(tmp):
    program = ir_examples.flat_classifier()
    model = runtime.build(module_for(program, tmp), "float32")
    state = random_state(program, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"missing: \['dense.bias'\]; unexpected: \['extra'\]"):
        model.load_canonical_state(
            {**{k: v for k, v in state.items() if k != "dense.bias"}, "extra": 1}
        )
    with pytest.raises(ValueError, match=r"'dense.kernel' has shape \(6, 96\), expected \(96, 6\)"):
        model.load_canonical_state({**state, "dense.kernel": state["dense.kernel"].T})


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_embedding_output_is_exactly_zero_at_padding(name, tmp):
    program = EXAMPLES[name]()
    model = runtime.build(module_for(program, tmp), "float32")
    model.load_canonical_state(random_state(program, np.random.default_rng(2)))
    inputs, _ = random_batch(program, np.random.default_rng(3))
    for node in program.nodes:
        if not isinstance(node.op, ir.EmbeddingLookup):
            continue
        table = program.table(node.op.table)
        ids = inputs[node.inputs[0]]
        out = keras.ops.convert_to_numpy(getattr(model, table.name)(ids))
        assert out.shape == (len(ids), *node.shape[1:])
        assert np.all(out[ids == table.pad_index] == 0.0)
        assert np.all(np.abs(out[ids != table.pad_index]).sum(axis=-1) > 0)


def test_masked_pooling_of_an_all_padding_row_is_zero(tmp):
    for name in ("special_rows_pooled", "sinusoidal_max_pool"):
        program = EXAMPLES[name]()
        model = runtime.build(module_for(program, tmp), "float64")
        pool = model.pool
        x = np.random.default_rng(0).normal(size=(2, 5, 3)) - 10.0
        mask = np.array([[True, True, False, False, False], [False] * 5])
        pooled = keras.ops.convert_to_numpy(pool(x, padding_mask=mask))
        assert np.array_equal(pooled[1], np.zeros(3))
        reduce = np.max if name == "sinusoidal_max_pool" else np.mean
        np.testing.assert_allclose(pooled[0], reduce(x[0, :2], axis=0), rtol=1e-15)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_gradients_are_canonical_and_zero_at_frozen_rows(name, tmp):
    program = EXAMPLES[name]()
    model = runtime.build(module_for(program, tmp), "float64")
    model.load_canonical_state(random_state(program, np.random.default_rng(4)))
    inputs, _ = random_batch(program, np.random.default_rng(5))
    cotangent = np.random.default_rng(6).normal(
        size=(4, *program.node(program.outputs[0]).shape[1:])
    )
    grads = runtime.gradients(model, inputs, cotangent)
    assert set(grads) == {w.name for w in program.weights if w.trainable_count}
    for name_, grad in grads.items():
        assert grad.shape == program.weight(name_).shape
    for table in program.tables:
        if table.weight not in grads:
            continue
        trainable, frozen = table_rows(program, table)
        assert np.all(grads[table.weight][frozen] == 0.0)
        seen = np.unique(np.concatenate([ids.ravel() for ids in inputs.values()])).tolist()
        used = sorted(set(seen) & set(trainable))
        assert np.all(np.abs(grads[table.weight][used]).sum(axis=-1) > 0)


@pytest.mark.parametrize(
    "optimizer",
    [
        {"kind": "adam", "weight_decay": 0.1},
        {"kind": "adamw", "weight_decay": 0.1},
        {"kind": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    ],
    ids=lambda o: o["kind"],
)
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_padding_and_frozen_rows_hold_under_training(name, optimizer, tmp):
    program = with_training(EXAMPLES[name](), lr=0.05, **optimizer)
    module = module_for(program, tmp)
    model = runtime.build(module, "float32")
    start = random_state(program, np.random.default_rng(7))
    model.load_canonical_state(start)
    rng = np.random.default_rng(8)
    losses = runtime.train(module, model, [random_batch(program, rng) for _ in range(5)])
    assert len(losses) == 5 and all(np.isfinite(losses))
    after = model.canonical_state()
    for table in program.tables:
        weight = program.weight(table.weight)
        before = start[table.weight].astype("float32")
        trainable, frozen = table_rows(program, table)
        frozen = [i for i in frozen if i not in weight.zero_rows]
        assert np.all(after[table.weight][list(weight.zero_rows)] == 0.0), "padding row moved"
        assert np.array_equal(after[table.weight][frozen], before[frozen]), "frozen rows moved"
        if trainable:
            assert not np.allclose(after[table.weight][trainable], before[trainable])


# ----------------------------------------------------------------------------- optimizer rules


def toy_gradients(table, w, ids, target):
    """Loss ``mean((sum_l table[ids] @ w - target)**2)`` and its exact gradients (numpy); ids
    repeat within the batch, so the table's gradient sums several occurrences per row."""
    h = table[ids]  # (B, L, D)
    residual = (h @ w).sum(axis=1) - target  # (B,)
    d_y = 2 * residual / len(target)
    d_table = np.zeros_like(table)
    np.add.at(d_table, ids, d_y[:, None, None] * w)
    return [d_table, np.einsum("bld,b->d", h, d_y)]


def torch_rules(opt: ir.Optimizer, params, ids, target, lr, steps):
    """``torch.optim`` (single-tensor CPU path) and ``clip_grad_norm_``, transcribed to numpy."""
    params = [p.copy() for p in params]
    state = [{"m": np.zeros_like(p), "v": np.zeros_like(p), "buf": None} for p in params]
    for step in range(1, steps + 1):
        grads = toy_gradients(*params, ids, target)
        if opt.clip_norm is not None:
            norm = np.linalg.norm([np.linalg.norm(g) for g in grads])
            grads = [g * min(opt.clip_norm / (norm + 1e-6), 1.0) for g in grads]
        for p, g, s in zip(params, grads, state, strict=True):
            if opt.kind == "sgd":
                g = g + opt.weight_decay * p
                if opt.momentum:
                    s["buf"] = g.copy() if s["buf"] is None else opt.momentum * s["buf"] + g
                    g = g + opt.momentum * s["buf"] if opt.nesterov else s["buf"]
                p -= lr * g
                continue
            if opt.kind == "adamw":
                p *= 1 - lr * opt.weight_decay
            else:
                g = g + opt.weight_decay * p
            s["m"] += (1 - opt.beta1) * (g - s["m"])
            s["v"] = opt.beta2 * s["v"] + (1 - opt.beta2) * g * g
            step_size = lr / (1 - opt.beta1**step)
            denom = np.sqrt(s["v"]) / math.sqrt(1 - opt.beta2**step) + opt.eps
            p -= step_size * s["m"] / denom
    return params


def torch_optim(opt: ir.Optimizer, params, ids, target, lr, steps):
    """The same trajectory from ``torch.optim`` itself."""
    torch = pytest.importorskip("torch")
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    if opt.kind == "sgd":
        optimizer = torch.optim.SGD(
            tensors,
            lr=lr,
            momentum=opt.momentum,
            nesterov=opt.nesterov,
            weight_decay=opt.weight_decay,
        )
    else:
        cls = torch.optim.AdamW if opt.kind == "adamw" else torch.optim.Adam
        optimizer = cls(
            tensors, lr=lr, betas=(opt.beta1, opt.beta2), eps=opt.eps, weight_decay=opt.weight_decay
        )
    ids_t, target_t = torch.tensor(ids), torch.tensor(target)
    for _ in range(steps):
        optimizer.zero_grad()
        table, w = tensors
        loss = (((table[ids_t] @ w).sum(dim=1) - target_t) ** 2).mean()
        loss.backward()
        if opt.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(tensors, opt.clip_norm)
        optimizer.step()
    return [t.detach().numpy() for t in tensors]


OPTIMIZER_CASES = [
    {"kind": "sgd", "momentum": 0.875, "nesterov": True, "weight_decay": 0.125},
    {"kind": "sgd", "momentum": 0.5},
    {"kind": "sgd", "weight_decay": 0.25},
    {"kind": "adam", "weight_decay": 0.25, "eps": 0.0078125},
    {"kind": "adam", "clip_norm": 0.25},
    {"kind": "adamw", "weight_decay": 0.25, "beta1": 0.75, "beta2": 0.875},
    {"kind": "adamw", "weight_decay": 0.5, "clip_norm": 0.5},
]
"""Optimizer settings on which the generated optimizers must follow PyTorch's rules."""


def case_id(case: dict) -> str:
    """A test id for an entry of :data:`OPTIMIZER_CASES`."""
    return "-".join(f"{k}={v}" for k, v in case.items())


def toy_problem() -> tuple[list[np.ndarray], np.ndarray, np.ndarray, float, int]:
    """``(params, ids, target, lr, steps)`` of the optimizer tests: ids repeat within the batch,
    and the learning rate is exact in float32, where Keras stores it."""
    rng = np.random.default_rng(9)
    params = [rng.normal(0.0, 0.5, size=(7, 3)), rng.normal(0.0, 0.5, size=3)]
    ids = np.array([[1, 2, 1, 1], [3, 1, 6, 6], [6, 6, 6, 0]])
    return params, ids, rng.normal(size=3), 0.03125, 6


@pytest.mark.parametrize("optimizer", OPTIMIZER_CASES, ids=case_id)
def test_optimizer_follows_pytorch_rules_with_repeated_ids(optimizer, tmp):
    program = with_training(ir_examples.flat_classifier(), lr=0.25, **optimizer)
    module = module_for(program, tmp)
    params, ids, target, lr, steps = toy_problem()

    table, w = (keras.Variable(p, dtype="float64") for p in params)
    optimizer_ = module.make_optimizer(SimpleNamespace(trainable_variables=[table, w]), lr=lr)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            h = keras.ops.take(table, ids, axis=0)
            loss = keras.ops.mean((keras.ops.einsum("bld,d->b", h, w) - target) ** 2)
        grads = tape.gradient(loss, [table, w])
        assert isinstance(grads[0], tf.IndexedSlices)  # one row per occurrence of an id
        optimizer_.apply(grads, [table, w])
    result = [v.numpy() for v in (table, w)]

    opt = program.training.optimizer
    for expected in (
        torch_rules(opt, params, ids, target, lr, steps),
        torch_optim(opt, params, ids, target, lr, steps),
    ):
        for got, want in zip(result, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert not np.allclose(result[0], params[0])


# ----------------------------------------------------------------------------- losses


@pytest.mark.parametrize(
    "loss, logits",
    [
        ("sparse_categorical_crossentropy", False),
        ("sparse_categorical_crossentropy", True),
        ("categorical_crossentropy", False),
        ("categorical_crossentropy", True),
        ("binary_crossentropy", False),
        ("binary_crossentropy", True),
        ("mse", False),
    ],
)
def test_loss_matches_the_ir_formula(loss, logits, tmp):
    program = with_training(
        ir_examples.flat_classifier(), loss=loss, from_logits=logits, epsilon=0.01
    )
    module = module_for(program, tmp)
    rng = np.random.default_rng(10)
    z = rng.normal(size=(6, 5)) * 3
    if logits:
        pred = z
    elif loss == "binary_crossentropy":
        pred = 1 / (1 + np.exp(-z))
    else:
        pred = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    pred[0, 0] = 0.0 if loss != "mse" and not logits else pred[0, 0]  # exercises the clipping
    eps = 0.01
    if loss == "sparse_categorical_crossentropy":
        labels = rng.integers(0, 5, size=6)
        if logits:
            log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            want = -log_p[np.arange(6), labels].mean()
        else:
            want = -np.log(np.clip(pred[np.arange(6), labels], eps, 1 - eps)).mean()
    elif loss == "categorical_crossentropy":
        labels = rng.dirichlet(np.ones(5), size=6)
        log_p = (
            z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            if logits
            else np.log(np.clip(pred, eps, 1 - eps))
        )
        want = -(labels * log_p).sum(axis=1).mean()
    elif loss == "binary_crossentropy":
        labels = rng.integers(0, 2, size=(6, 5)).astype(float)
        if logits:
            want = ((1 - labels) * z + np.log1p(np.exp(-z))).mean()
        else:
            p = np.clip(pred, eps, 1 - eps)
            want = -(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean()
    else:
        labels = rng.normal(size=(6, 5))
        want = ((pred - labels) ** 2).mean()
    got = module.loss_fn(tf.constant(labels), tf.constant(pred))
    assert got.dtype == tf.float64
    np.testing.assert_allclose(float(got), want, rtol=1e-12)


# ----------------------------------------------------------------------------- train.py


def test_train_script_runs_end_to_end(tmp):
    """Two epochs with early stopping on a tiny .npz, validation held out of it."""
    program = with_training(
        ir_examples.special_rows_pooled(), early_stopping=ir.EarlyStopping(patience=1)
    )
    out = tmp / "script"
    write_tree(BACKEND.generate(program), out)
    rng = np.random.default_rng(11)
    tokens = rng.integers(0, 40, size=(24, 10))
    tokens[:, 7:] = 0
    np.savez(out / "data.npz", tokens=tokens, labels=rng.integers(0, 2, size=24))
    result = subprocess.run(
        [sys.executable, "train.py", "--data", "data.npz", "--epochs", "2", "--out", "run"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val_loss" in result.stdout and "accuracy" in result.stdout, result.stdout
    module = module_for(program, tmp)
    model = runtime.build(module, "float32")
    model.load_canonical(out / "run" / "model.safetensors")
    assert np.all(model.canonical_state()["glove.embeddings"][0] == 0.0)
