"""Weight constraints (Keras' ``NonNeg``, ``MaxNorm``, ``UnitNorm``, ``MinMaxNorm`` and a value
clip): located errors for bad ones, and both backends applying them after each optimizer step
with Keras' formulas, in float64 to 1e-12, while the constraints bind."""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from nnspec import backends
from nnspec.compiler import compile_file, compile_spec, ir
from nnspec.parity import compare, generate_all, installed, random_batch, random_state
from nnspec.spec import SpecError, load_string
from nnspec.spec.errors import Problem
from tests.conftest import EXAMPLES

BOTH = ("torch", "keras")
needs_both = pytest.mark.skipif(
    not set(BOTH) <= set(installed()), reason="needs the torch and keras backends"
)
# Parity bound asked of every constrained run in float64 (outputs, gradients, trained weights).
PARITY_64 = 1e-12

# A partially trainable table (rows 1..19 and the two special tokens train; 20..27 and the pad
# row are frozen) under NonNeg; a convolution whose filters are held to norms in [0.5, 0.8] and
# whose bias is clipped; a MaxNorm and a UnitNorm dense kernel.
CONSTRAINED = """\
nnspec: 1
name: constrained
inputs:
  ids: {length: 8}
embeddings:
  words:
    vocab_size: 30
    dim: 6
    padding: {index: 0}
    special_tokens: [unk, bos]
    trainable: {ranges: [[0, 20]], special_tokens: true}
    constraint: non_neg
model:
  layers:
    - {type: embedding, table: words}
    - type: conv1d
      filters: 5
      kernel_size: 3
      padding: same
      activation: relu
      kernel_constraint: {type: min_max_norm, min_value: 0.5, max_value: 0.8, axis: [0, 1]}
      bias_constraint: {type: value_clip, min_value: -0.01, max_value: 0.01}
    - {type: global_max_pool}
    - {type: dense, units: 7, activation: tanh, kernel_constraint: {type: max_norm, max_value: 0.6}}
    - {type: dense, units: 4, activation: softmax, kernel_constraint: {type: unit_norm, axis: -1}}
training:
  loss: sparse_categorical_crossentropy
  optimizer: {type: adam, lr: 0.05}
"""


def compile_text(text: str) -> ir.Program:
    spec, doc = load_string(text, "spec.yaml")
    return compile_spec(spec, doc)


def one_problem(text: str) -> Problem:
    """The one located problem of a spec that must not compile."""
    with pytest.raises(SpecError) as info:
        compile_text(text)
    problems = info.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def trained(
    program: ir.Program, steps: int = 5, batch: int = 8, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """The random initial canonical state that :func:`nnspec.parity.compare` starts from, and
    each backend's canonical state after ``steps`` float64 optimizer steps from it."""
    rng = np.random.default_rng(seed)
    state = random_state(program, rng)
    batches = [random_batch(program, rng, batch) for _ in range(steps)]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate_all(program, Path(tmp), list(BOTH))
        for name in BOTH:
            runtime = backends.get(name).runtime()
            module = runtime.load_module(paths[name])
            model = runtime.build(module, "float64")
            runtime.set_state(model, state)
            runtime.train(module, model, batches)
            out[name] = runtime.get_state(model)
    return state, out


def norms(w: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.sqrt((w**2).sum(axis=axes))


def worst(report) -> float:
    return max(c.diff for c in report.comparisons)


# ----------------------------------------------------------------------------- located errors


@pytest.mark.parametrize(
    ("old", "new", "where", "message"),
    [
        (
            "max_value: 0.6}",
            "max_value: -0.6}",
            "model.layers.3.kernel_constraint.max_value",
            "greater than 0",
        ),
        (
            "axis: -1}",
            "axis: 2}",
            "model.layers.4.kernel_constraint",
            "axis 2 is out of range for the weight's 2 axes (7, 4)",
        ),
        (
            "axis: [0, 1]}",
            "axis: [0, -3]}",
            "model.layers.1.kernel_constraint",
            "names an axis twice",
        ),
        (
            "- {type: global_max_pool}",
            "- {type: global_max_pool, kernel_constraint: non_neg}",
            "model.layers.2.kernel_constraint",
            "unknown key 'kernel_constraint'",
        ),
        (
            "constraint: non_neg",
            "constraint: {type: max_norm, axis: 0}",
            "embeddings.words.constraint",
            "a norm over axis 0 would mix frozen rows in",
        ),
        (
            "constraint: non_neg",
            "constraint: {type: value_clip, min_value: 0.1}",
            "embeddings.words.constraint",
            "the range must include 0.0: the padding row stays 0.0",
        ),
        (
            "constraint: non_neg",
            "constraint: {type: value_clip}",
            "embeddings.words.constraint",
            "give `min_value`, `max_value` or both",
        ),
        (
            "trainable: {ranges: [[0, 20]], special_tokens: true}",
            "trainable: false",
            "embeddings.words.constraint",
            "never trains",
        ),
        (
            "min_value: 0.5, max_value: 0.8",
            "min_value: 0.9, max_value: 0.8",
            "model.layers.1.kernel_constraint",
            "`min_value` must not exceed `max_value`",
        ),
        (
            "padding: same",
            "padding: same\n      use_bias: false",
            "model.layers.1.bias_constraint",
            "the layer has no bias",
        ),
        (
            "constraint: non_neg",
            "constraint: positive",
            "embeddings.words.constraint",
            "",
        ),
    ],
)
def test_bad_constraints_give_located_errors(old, new, where, message):
    assert CONSTRAINED.count(old) == 1
    problem = one_problem(CONSTRAINED.replace(old, new))
    assert ".".join(map(str, problem.path)) == where, str(problem)
    assert message in problem.message, str(problem)
    assert problem.line > 0


def test_constraints_in_the_ir():
    program = compile_text(CONSTRAINED)
    table = program.weight("words.embeddings")
    assert table.constraint == ir.Constraint("non_neg", ())
    assert program.weight("conv1d.kernel").constraint == ir.Constraint(
        "min_max_norm", (0, 1), 0.5, 0.8, 1.0
    )
    assert program.weight("conv1d.bias").constraint == ir.Constraint("value_clip", (), -0.01, 0.01)
    assert program.weight("dense.kernel").constraint == ir.Constraint("max_norm", (0,), None, 0.6)
    assert program.weight("dense_1.kernel").constraint == ir.Constraint("unit_norm", (1,))
    assert program.weight("dense_1.bias").constraint is None


# ----------------------------------------------------------------------------- generated code


def test_generated_code_applies_constraints_in_both_backends():
    program = compile_text(CONSTRAINED)
    torch_py = backends.get("torch").generate(program)["model.py"]
    keras_py = backends.get("keras").generate(program)["model.py"]
    # torch: in place, on torch's layouts (Linear weights are [out, in], Conv1d [filters, in, k])
    for line in [
        "self.words.trainable.clamp_(min=0.0)  # words.embeddings, the rows that train",
        "# conv1d.kernel: norms over canonical axes (0, 1)\n"
        "        min_max_norm_(self.conv1d.weight, 0.5, 0.8, rate=1.0, dim=(1, 2))",
        "self.conv1d.bias.clamp_(min=-0.01, max=0.01)  # conv1d.bias",
        "# dense.kernel: norms over canonical axis 0\n"
        "        max_norm_(self.dense.weight, 0.6, dim=1)",
        "unit_norm_(self.dense_1.weight, dim=0)",
        "optimizer.register_step_post_hook(apply_constraints)",
        "KERAS_EPSILON = 1e-7",
    ]:
        assert line in torch_py, line
    # Keras: its own constraints (the canonical layout is Keras'), and the helper clip
    for text in [
        "embeddings_constraint=keras.constraints.NonNeg()",
        'constraint=self.embeddings_constraint,\n            name="trainable_embeddings"',
        "kernel_constraint=keras.constraints.MinMaxNorm(\n"
        "                min_value=0.5, max_value=0.8, rate=1.0, axis=[0, 1]\n",
        "bias_constraint=ValueClip(min_value=-0.01, max_value=0.01)",
        "kernel_constraint=keras.constraints.MaxNorm(max_value=0.6, axis=0)",
        "kernel_constraint=keras.constraints.UnitNorm(axis=1)",
    ]:
        assert text in keras_py, text
    assert (
        "constraint="
        not in keras_py.split('name="frozen_embeddings"')[0].split(
            "self.frozen_embeddings = self.add_weight("
        )[-1]
    )


def test_unconstrained_models_have_no_constraint_code():
    program, _ = compile_file(EXAMPLES / "newsgroups_flat" / "spec.yaml")
    torch_py = backends.get("torch").generate(program)["model.py"]
    keras_py = backends.get("keras").generate(program)["model.py"]
    assert "apply_constraints" not in torch_py and "register_step_post_hook" not in torch_py
    assert "constraint" not in keras_py


# ----------------------------------------------------------------------------- parity


@needs_both
def test_constraints_parity_and_binding():
    """Both backends agree to 1e-12 after 5 Adam steps with every constraint kind active, and
    each constraint visibly bound: frozen rows bit-identical, the pad row 0.0."""
    program = compile_text(CONSTRAINED)
    report = compare(program, "float64", names=BOTH, batch=8, steps=5)
    assert report.ok, report.failures()
    assert worst(report) <= PARITY_64, worst(report)

    start, states = trained(program, steps=5, batch=8)
    trainable = np.r_[1:20, 28:30]
    frozen = np.r_[0:1, 20:28]
    assert (start["words.embeddings"][trainable] < 0).sum() > 20  # NonNeg has work to do
    assert norms(start["conv1d.kernel"], (0, 1)).min() > 0.8
    assert np.abs(start["conv1d.bias"]).max() > 0.01
    assert norms(start["dense.kernel"], (0,)).max() > 0.6
    assert np.abs(norms(start["dense_1.kernel"], (1,)) - 1).max() > 0.1
    for name, state in states.items():
        table = state["words.embeddings"]
        assert table[trainable].min() == 0.0, name
        assert (table[trainable] == 0.0).sum() >= 20, name  # negative entries projected to 0.0
        assert np.array_equal(table[frozen], start["words.embeddings"][frozen]), name
        assert (table[0] == 0.0).all(), name
        filters = norms(state["conv1d.kernel"], (0, 1))
        assert ((filters >= 0.5 * (1 - 1e-6)) & (filters <= 0.8)).all(), (name, filters)
        bias = state["conv1d.bias"]
        assert np.abs(bias).max() <= 0.01 and (np.abs(bias) == 0.01).any(), (name, bias)
        assert norms(state["dense.kernel"], (0,)).max() <= 0.6, name
        np.testing.assert_allclose(norms(state["dense_1.kernel"], (1,)), 1.0, atol=1e-6)
    for weight in start:
        diff = np.abs(states["torch"][weight] - states["keras"][weight]).max()
        assert diff <= PARITY_64, (weight, diff)


@needs_both
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "plain_keras_embedding"])
def test_min_max_norm_rate_and_row_norms_on_a_whole_table_parity(padded):
    """A partial-rate MinMaxNorm and a per-row MaxNorm on a fully trainable table (padded, or
    Keras' own ``Embedding``) under SGD with momentum: 1e-12 in float64; a pad row stays
    exactly 0.0."""
    text = CONSTRAINED if padded else CONSTRAINED.replace("    padding: {index: 0}\n", "")
    text = (
        text.replace("    trainable: {ranges: [[0, 20]], special_tokens: true}\n", "")
        .replace("constraint: non_neg", "constraint: {type: max_norm, max_value: 0.7, axis: 1}")
        .replace("max_value: 0.8, axis", "max_value: 0.8, rate: 0.4, axis")
        .replace("{type: adam, lr: 0.05}", "{type: sgd, lr: 0.3, momentum: 0.9}")
    )
    program = compile_text(text)
    keras_py = backends.get("keras").generate(program)["model.py"]
    plain = "keras.layers.Embedding(" in keras_py
    assert plain != padded
    report = compare(program, "float64", names=BOTH, batch=8, steps=5)
    assert report.ok, report.failures()
    assert worst(report) <= PARITY_64, worst(report)
    start, states = trained(program, steps=5, batch=8)
    assert norms(start["words.embeddings"], (1,)).max() > 0.7
    for state in states.values():
        table = state["words.embeddings"]
        assert (table[0] == 0.0).all() == padded
        assert norms(table, (1,)).max() <= 0.7
        filters = norms(state["conv1d.kernel"], (0, 1))
        assert filters.max() > 0.8  # rate 0.4 moves the norms only part of the way


@needs_both
def test_newsgroups_published_model_with_non_neg_embedding():
    """The 20 Newsgroups model as published later: ``NonNeg`` on the embedding. The spec says
    it in one line; both backends agree to 1e-12 over 5 Adam steps and the table stays
    non-negative with its pad row at 0.0."""
    text = (EXAMPLES / "newsgroups_flat" / "spec.yaml").read_text()
    replacements = {
        "mode: zero}\n": "mode: zero}\n    constraint: non_neg\n",
        "vocab_size: 19000": "vocab_size: 60",
        "dim: 300": "dim: 8",
        "length: 1100": "length: 30",
        "lr: 0.001": "lr: 0.02",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    program = compile_text(text)
    assert program.weight("words.embeddings").constraint == ir.Constraint("non_neg", ())
    keras_py = backends.get("keras").generate(program)["model.py"]
    assert "embeddings_constraint=keras.constraints.NonNeg()" in keras_py
    report = compare(program, "float64", names=BOTH, batch=8, steps=5)
    assert report.ok, report.failures()
    assert worst(report) <= PARITY_64, worst(report)
    start, states = trained(program, steps=5, batch=8)
    assert (start["words.embeddings"] < 0).sum() > 100
    for state in states.values():
        table = state["words.embeddings"]
        assert table.min() == 0.0 and (table == 0.0).sum() > 100
        assert (table[0] == 0.0).all()


SHARED = """\
nnspec: 1
name: shared
inputs:
  ids: {length: 8}
embeddings:
  words: {vocab_size: 30, dim: 6, padding: {index: 0}}
model:
  layers:
    - {type: embedding, table: words}
    - {type: global_average_pool}
    - {name: first, type: dense, units: 6, share: owner}
    - name: owner
      type: dense
      units: 6
      inputs: [global_average_pool]
      kernel_constraint: non_neg
    - {type: add, inputs: [first, owner]}
    - {type: dense, units: 3, activation: softmax}
training:
  loss: sparse_categorical_crossentropy
"""


def test_shared_weights_are_constrained_alike():
    """Layers sharing weights say the same constraint (a located error otherwise), whichever
    comes first."""
    with pytest.raises(SpecError) as info:
        compile_text(SHARED)
    (problem,) = info.value.problems
    assert problem.path == ("model", "layers", 2, "share")
    assert "differs in: kernel_constraint" in problem.message
    program = compile_text(
        SHARED.replace("share: owner}", "share: owner, kernel_constraint: non_neg}")
    )
    assert program.weight("owner.kernel").constraint == ir.Constraint("non_neg", ())


def project(c: ir.Constraint, w: np.ndarray) -> np.ndarray:
    """:class:`ir.Constraint`'s formula in numpy (the oracle)."""
    if c.kind == "non_neg":
        return np.maximum(w, 0.0)
    if c.kind == "value_clip":
        low = -np.inf if c.min_value is None else c.min_value
        high = np.inf if c.max_value is None else c.max_value
        return np.minimum(np.maximum(w, low), high)
    n = np.sqrt((w**2).sum(axis=c.axes, keepdims=True))
    eps = ir.CONSTRAINT_EPSILON
    if c.kind == "unit_norm":
        return w / (eps + n)
    low = 0.0 if c.kind == "max_norm" else c.min_value
    desired = c.rate * np.clip(n, low, c.max_value) + (1 - c.rate) * n
    return w * (desired / (eps + n))


@needs_both
def test_each_backend_projects_as_the_ir_says():
    """One projection of a random state by each backend (torch: ``apply_constraints()``; Keras:
    every variable's ``constraint``, as its optimizer applies it) equals the numpy formula of
    :class:`ir.Constraint` to 1e-15, on the trainable rows only."""
    program = compile_text(
        CONSTRAINED.replace("max_value: 0.8, axis", "max_value: 0.8, rate: 0.3, axis")
    )
    state = random_state(program, np.random.default_rng(1))
    want = {}
    for weight in program.weights:
        w = state[weight.name]
        if weight.constraint is not None and weight.trainable == "rows":
            rows = weight.trainable_ids()
            w = w.copy()
            w[rows] = project(weight.constraint, w[rows])
        elif weight.constraint is not None:
            w = project(weight.constraint, w)
        want[weight.name] = w
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate_all(program, Path(tmp), list(BOTH))
        for name in BOTH:
            runtime = backends.get(name).runtime()
            module = runtime.load_module(paths[name])
            model = runtime.build(module, "float64")
            runtime.set_state(model, state)
            if name == "torch":
                model.apply_constraints()
            else:
                for variable in model.trainable_variables:
                    if variable.constraint is not None:
                        variable.assign(variable.constraint(variable))
            got = runtime.get_state(model)
            for weight, value in want.items():
                diff = np.abs(got[weight] - value).max()
                assert diff <= 1e-15, (name, weight, diff)
            assert not np.array_equal(got["conv1d.kernel"], state["conv1d.kernel"])


@pytest.mark.parametrize(
    ("changes", "invariant"),
    [
        (
            {"trainable": "none", "constraint": ir.Constraint("non_neg", ())},
            "a constraint needs a weight that trains",
        ),
        ({"constraint": ir.Constraint("max_norm", (2,), max_value=1.0)}, "constraint axes"),
        ({"constraint": ir.Constraint("unit_norm", (1, 1))}, "constraint axes"),
        (
            {
                "trainable": "rows",
                "trainable_rows": ((1, 5),),
                "constraint": ir.Constraint("unit_norm", (0,)),
            },
            "a partially trainable weight's norms cannot span its rows",
        ),
        (
            {"row_initializers": (((18, 31), ir.Initializer("zeros")),)},
            "initializer rows must be in range",
        ),
    ],
)
def test_ir_validate_checks_constraints_and_row_initializers(changes, invariant):
    program = compile_text(
        CONSTRAINED.replace("    trainable: {ranges: [[0, 20]], special_tokens: true}\n", "")
    )
    weights = tuple(
        dataclasses.replace(w, **changes) if w.name == "words.embeddings" else w
        for w in program.weights
    )
    with pytest.raises(
        ir.InvalidProgram, match="weight 'words.embeddings': " + re.escape(invariant)
    ):
        ir.validate(dataclasses.replace(program, weights=weights))


ODD_VALUES = [
    "non_neg",
    "max_norm",
    "nonneg",
    "",
    0,
    1.5,
    True,
    None,
    [],
    ["non_neg"],
    {},
    {"type": "max_norm", "axis": []},
    {"type": "max_norm", "axis": "0"},
    {"type": "max_norm", "axis": [0, "a"]},
    {"type": "max_norm", "axis": [0, 0]},
    {"type": "max_norm", "axis": 2**40},
    {"type": "max_norm", "axis": True},
    {"type": "max_norm", "max_value": 1e308, "axis": -1},
    {"type": "unit_norm", "axis": [-1, -2]},
    {"type": "min_max_norm", "rate": 0},
    {"type": "min_max_norm", "rate": 1.5},
    {"type": "min_max_norm", "min_value": -1},
    {"type": "value_clip", "min_value": 1, "max_value": 0},
    {"type": "value_clip", "min_value": "0"},
    {"type": "value_clip", "max_value": -1e-300},
    {"type": "non_neg", "axis": 0},
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
@pytest.mark.parametrize(
    "where",
    [
        "embeddings.words.constraint",
        "model.layers.1.kernel_constraint",
        "model.layers.1.bias_constraint",
        "model.layers.4.kernel_constraint",
    ],
)
def test_odd_constraints_compile_or_give_located_errors(where, value):
    """Whatever a constraint field holds, the spec compiles or gives located errors."""
    spec = yaml.safe_load(CONSTRAINED)
    target = spec
    *parents, key = [int(p) if p.isdigit() else p for p in where.split(".")]
    for part in parents:
        target = target[part]
    target[key] = value
    try:
        program = compile_text(json.dumps(spec))
    except SpecError as exc:
        assert exc.problems and all(p.line >= 1 for p in exc.problems)
        return
    assert isinstance(program, ir.Program)
