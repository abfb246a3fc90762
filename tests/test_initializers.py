"""Initializers per weight: ``torch_default`` (PyTorch's own initialisation, per layer type),
bias and recurrent initializers, a table's special rows from their own initializer, and a memory
network's temporal tables, map and output matrix apart from its word tables.

Initial values are random, so the tests check distributions, in both backends: uniform bounds
exactly (never exceeded, and reached to within ``20 / n`` of the bound, which fails with
probability ``e^-20`` for ``n`` draws), and the sample mean and variance within 6 standard
deviations of their estimators for the tensor's size; zero rows exactly 0.0."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from nnspec import backends
from nnspec.compiler import compile_spec, ir, spec_hash
from nnspec.parity import generate_all, installed
from nnspec.spec import SpecError, load_string
from tests.test_constraints import one_problem

INITS = """\
nnspec: 1
name: inits
inputs:
  ids: {length: 6}
embeddings:
  words:
    vocab_size: 3000
    dim: 32
    initializer: torch_default
    padding: {index: 0}
    special_tokens: [unk, bos, eos]
    special_tokens_initializer: zeros
model:
  layers:
    - {type: embedding, table: words}
    - type: conv1d
      filters: 96
      kernel_size: 3
      kernel_initializer: torch_default
      bias_initializer: torch_default
    - type: lstm
      units: 64
      return_sequences: true
      kernel_initializer: torch_default
      bias_initializer: torch_default
    - type: gru
      units: 48
      kernel_initializer: torch_default
      recurrent_initializer: {type: normal, std: 0.3}
      bias_initializer: torch_default
    - {type: dense, units: 400, kernel_initializer: torch_default, bias_initializer: torch_default}
    - {type: dense, units: 3, activation: softmax}
training:
  loss: sparse_categorical_crossentropy
"""

MEMORY = """\
nnspec: 1
name: memory
inputs:
  memories: {shape: [50, 4]}
  question: {length: 4}
model:
  layers:
    - type: memory_network
      inputs: [memories, question]
      vocab_size: 300
      dim: 40
      hops: 2
      tying: layerwise
      temporal: true
      padding: {index: 0}
      initializer: {type: normal, std: 0.1}
      temporal_initializer: {type: normal, std: 0.02}
      linear_map_initializer: torch_default
      output_initializer: {type: uniform, low: -0.3, high: 0.3}
training:
  loss: sparse_categorical_crossentropy
"""


def compile_text(text: str) -> ir.Program:
    spec, doc = load_string(text, "spec.yaml")
    return compile_spec(spec, doc)


def fresh_states(program: ir.Program) -> dict[str, dict[str, np.ndarray]]:
    """Each installed backend's canonical state right after building the model (float64)."""
    states = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate_all(program, Path(tmp), list(installed()))
        for name in installed():
            runtime = backends.get(name).runtime()
            module = runtime.load_module(paths[name])
            states[name] = runtime.get_state(runtime.build(module, "float64"))
    return states


def check_uniform(values: np.ndarray, bound: float, what: str) -> None:
    """``values`` look drawn from ``U(-bound, bound)``."""
    x = values.ravel()
    n = x.size
    assert np.abs(x).max() <= bound, what
    assert np.abs(x).max() >= bound * (1 - 20 / n), what
    assert abs(x.mean()) <= 6 * bound / math.sqrt(3 * n), what
    # var = bound^2 / 3; the sample variance's std is bound^2 * sqrt(1/5 - 1/9) / sqrt(n)
    assert abs(x.var() - bound**2 / 3) <= 6 * bound**2 * math.sqrt(4 / 45 / n), what


def check_normal(values: np.ndarray, std: float, what: str) -> None:
    """``values`` look drawn from ``N(0, std^2)``."""
    x = values.ravel()
    n = x.size
    assert abs(x.mean()) <= 6 * std / math.sqrt(n), what
    # the sample variance's std is std^2 * sqrt(2 / n)
    assert abs(x.var() - std**2) <= 6 * std**2 * math.sqrt(2 / n), what


def test_torch_default_resolves_per_layer_type():
    program = compile_text(INITS)
    w = program.weight

    def uniform(fan: int) -> ir.Initializer:
        bound = 1 / math.sqrt(fan)
        return ir.Initializer("uniform", low=-bound, high=bound, fan=fan)

    assert w("words.embeddings").initializer == ir.Initializer("normal", mean=0.0, std=1.0)
    assert w("words.embeddings").row_initializers == (((2997, 3000), ir.Initializer("zeros")),)
    assert w("conv1d.kernel").initializer == uniform(32 * 3)  # fan_in = in_channels * kernel
    assert w("conv1d.bias").initializer == uniform(32 * 3)
    for part in ("kernel", "recurrent_kernel", "input_bias", "recurrent_bias"):
        assert w(f"lstm.forward.{part}").initializer == uniform(64)  # 1 / sqrt(hidden)
    assert w("gru.forward.recurrent_kernel").initializer == ir.Initializer("normal", std=0.3)
    assert w("gru.forward.input_bias").initializer == uniform(48)
    assert w("dense.kernel").initializer == uniform(48)  # fan_in
    assert w("dense.bias").initializer == uniform(48)
    assert w("dense_1.kernel").initializer == ir.Initializer("glorot_uniform")


def test_memory_network_initializers_per_weight():
    program = compile_text(MEMORY)
    w = program.weight
    words = ir.Initializer("normal", std=0.1)
    assert w("memory_network.A").initializer == words
    assert w("memory_network.C").initializer == words
    assert w("memory_network.B").initializer == words
    assert w("memory_network.TA").initializer == ir.Initializer("normal", std=0.02)
    assert w("memory_network.TC").initializer == ir.Initializer("normal", std=0.02)
    bound = 1 / math.sqrt(40)
    assert w("memory_network.H").initializer == ir.Initializer("uniform", -bound, bound, fan=40)
    assert w("memory_network.W").initializer == ir.Initializer("uniform", -0.3, 0.3)


@pytest.mark.parametrize(
    ("old", "new", "where", "message"),
    [
        (
            "    special_tokens: [unk, bos, eos]\n",
            "",
            "embeddings.words.special_tokens_initializer",
            "the table has no `special_tokens`",
        ),
        (
            "    - {type: dense, units: 3, activation: softmax}",
            "    - {type: attention_pool, initializer: torch_default}\n"
            "    - {type: dense, units: 3, activation: softmax}",
            "model.layers.5.initializer",
            "has no PyTorch layer",
        ),
        (
            "special_tokens_initializer: zeros",
            "special_tokens_initializer: {type: orthogonal}",
            "embeddings.words.special_tokens_initializer",
            "orthogonal",
        ),
    ],
)
def test_bad_initializers_give_located_errors(old, new, where, message):
    assert INITS.count(old) == 1
    text = INITS.replace(old, new)
    if "attention_pool" in new:  # the pool reads a sequence
        text = text.replace("- type: gru\n", "- type: gru\n      return_sequences: true\n")
    problem = one_problem(text)
    assert ".".join(map(str, problem.path)) == where, str(problem)
    assert message in problem.message, str(problem)


def test_memory_network_initializer_without_its_weight_is_located():
    text = MEMORY.replace("tying: layerwise", "tying: adjacent")
    with pytest.raises(SpecError) as info:
        compile_text(text)
    (problem,) = info.value.problems
    assert problem.path == ("model", "layers", 0, "linear_map_initializer")
    assert "has no map H between hops" in problem.message


@pytest.mark.skipif(not installed(), reason="needs a backend")
def test_torch_default_distributions_in_every_backend():
    program = compile_text(INITS)
    states = fresh_states(program)
    assert set(states) == set(installed())
    for name, state in states.items():
        table = state["words.embeddings"]
        assert (table[0] == 0.0).all(), name  # the pad row
        assert (table[2997:] == 0.0).all(), name  # the special rows, from their initializer
        check_normal(table[1:2997], 1.0, f"{name} words")  # nn.Embedding: N(0, 1)
        for weight, fan in [
            ("conv1d.kernel", 96),
            ("conv1d.bias", 96),
            ("lstm.forward.kernel", 64),
            ("lstm.forward.recurrent_kernel", 64),
            ("lstm.forward.input_bias", 64),
            ("lstm.forward.recurrent_bias", 64),
            ("gru.forward.kernel", 48),
            ("gru.forward.input_bias", 48),
            ("gru.forward.recurrent_bias", 48),
            ("dense.kernel", 48),
            ("dense.bias", 48),
        ]:
            check_uniform(state[weight], 1 / math.sqrt(fan), f"{name} {weight}")
        check_normal(state["gru.forward.recurrent_kernel"], 0.3, f"{name} gru recurrent")


@pytest.mark.skipif(not installed(), reason="needs a backend")
def test_memory_network_distributions_in_every_backend():
    program = compile_text(MEMORY)
    for name, state in fresh_states(program).items():
        for table in ("A", "C", "B"):
            values = state[f"memory_network.{table}"]
            assert (values[0] == 0.0).all(), (name, table)  # the pad row
            check_normal(values[1:], 0.1, f"{name} {table}")
        for table in ("TA", "TC"):
            check_normal(state[f"memory_network.{table}"], 0.02, f"{name} {table}")
        check_uniform(state["memory_network.H"], 1 / math.sqrt(40), f"{name} H")
        check_uniform(state["memory_network.W"], 0.3, f"{name} W")


@pytest.mark.skipif(not installed(), reason="needs a backend")
def test_special_rows_initializer_on_a_partially_trainable_table():
    """Special rows from their own initializer also when only some rows train (the model draws
    a whole table, then splits it into its trainable and frozen parts)."""
    text = INITS.replace(
        "    special_tokens_initializer: zeros\n",
        "    special_tokens_initializer: {type: uniform, low: 0.5, high: 0.75}\n"
        "    trainable: {ranges: [[0, 100]], special_tokens: [unk]}\n",
    )
    program = compile_text(text)
    assert program.weight("words.embeddings").trainable == "rows"
    for name, state in fresh_states(program).items():
        table = state["words.embeddings"]
        assert (table[0] == 0.0).all(), name
        special = table[2997:]
        assert special.min() >= 0.5 and special.max() <= 0.75, name
        check_normal(table[1:2997], 1.0, f"{name} words")


def test_new_fields_at_their_defaults_keep_the_spec_hash():
    """Specs written before these fields keep their hash (and generated files): the fields are
    left out of it at their defaults; set, they change it."""
    base = INITS.replace("      bias_initializer: torch_default\n", "", 1)
    assert base != INITS
    same = base.replace(
        "      kernel_initializer: torch_default\n",
        "      kernel_initializer: torch_default\n      bias_initializer: zeros\n"
        "      kernel_constraint: null\n",
        1,
    )
    changed = base.replace(
        "    - {type: dense, units: 3,", "    - {type: dense, bias_constraint: non_neg, units: 3,"
    )

    def digest(text: str) -> str:
        return spec_hash(load_string(text, "spec.yaml")[0])

    assert digest(same) == digest(base)
    assert digest(changed) != digest(base)


def test_torch_default_reads_as_written_by_hand():
    """PyTorch's bound appears as ``1 / sqrt(fan_in)`` in both backends' code, not a literal."""
    program = compile_text(INITS)
    torch_py = backends.get("torch").generate(program)["model.py"]
    keras_py = backends.get("keras").generate(program)["model.py"]
    assert "nn.init.uniform_(self.dense.weight, -1 / math.sqrt(48), 1 / math.sqrt(48))" in torch_py
    assert "nn.init.normal_(self.words.weight, mean=0.0, std=1.0)" in torch_py
    assert "nn.init.zeros_(self.words.weight[2997:3000])" in torch_py
    assert (
        "kernel_initializer=keras.initializers.RandomUniform(\n"
        "                minval=-1 / np.sqrt(48), maxval=1 / np.sqrt(48)\n"
    ) in keras_py
    assert '[(2997, 3000, "zeros")]' in keras_py
