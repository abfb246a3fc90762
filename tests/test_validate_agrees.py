"""`validate` accepts exactly what `compile` accepts, for every backend.

A spec that validates must generate code in every backend, and that code must import, build and
run a forward pass (tiny shapes, both frameworks); a spec that a backend cannot generate must
already fail validation with a located error. Checked on the examples, on the cases of issue 11
(unused tables, rotary with an odd head dimension, ids reaching a dense layer through a merge),
on a hand-made set of small specs covering every layer and option, and on seeded random layer
stacks.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnspec import backends
from nnspec.compiler import compile_spec, ir
from nnspec.parity import random_batch, random_state
from nnspec.spec import SpecError, load_string
from tests.conftest import EXAMPLE_NAMES, EXAMPLES

BACKENDS = sorted(backends.available())

# ----------------------------------------------------------------------------- specs

HEAD = """\
nnspec: 1
name: agree
inputs:
  tokens: {length: 6}
embeddings:
  words: {vocab_size: 20, dim: %(dim)d, padding: {index: 0}%(table)s}
model:
  layers:
    - {type: embedding, table: words}
"""
TAIL = """\
training:
  loss: sparse_categorical_crossentropy
"""
POOLED = ["{type: global_average_pool}", "{type: dense, units: 3, activation: softmax}"]


def spec(layers: list[str], dim: int = 8, table: str = "", head: str = HEAD) -> str:
    """A spec: one input of 6 ids, table ``words`` (``dim``, pad 0, ``table`` options appended)
    looked up, then ``layers`` (flow style, one per line)."""
    body = "".join(f"    - {layer}\n" for layer in layers)
    return head % {"dim": dim, "table": table} + body + TAIL


TWO_INPUTS = """\
nnspec: 1
name: agree
inputs:
  a: {length: 4}
  b: {length: 4}
%(tables)smodel:
  layers:
"""


def two_inputs(layers: list[str], tables: str = "") -> str:
    """Two inputs ``a`` and ``b`` of 4 ids; ``layers`` must say what they read."""
    body = "".join(f"    - {layer}\n" for layer in layers)
    return TWO_INPUTS % {"tables": tables} + body + TAIL


WORDS = "embeddings:\n  words: {vocab_size: 20, dim: 4, padding: {index: 0}}\n"

MEMORY = """\
nnspec: 1
name: agree
inputs:
  memories: {shape: [3, 4]}
%(question)smodel:
  layers:
    - {type: memory_network, vocab_size: 15, dim: 4, hops: 2, %(options)s}
training:
  loss: sparse_categorical_crossentropy
"""


def memory(options: str, question: bool = False) -> str:
    q = "  question: {length: 4}\n" if question else ""
    return MEMORY % {"question": q, "options": options}


# Spec names that collide with names of the torch framework or the generated torch module:
# valid, the torch backend renames them (issue 12: names belong to backends).
TORCH_NAMES = (
    two_inputs(
        [
            "{name: state_dict, type: embedding, table: modules, input: F}",
            "{name: masked_mean, type: embedding, table: modules, input: Mapping}",
            "{name: zero_grad, type: add, inputs: [state_dict, masked_mean]}",
            "{name: pairwise, type: gru, units: 4, return_sequences: true}",
            "{name: get_submodule, type: global_average_pool}",
            "{name: CANONICAL, type: dense, units: 3, activation: softmax}",
        ],
        "embeddings:\n  modules: {vocab_size: 20, dim: 4, padding: {index: 0}}\n",
    )
    .replace("  a: {length: 4}", "  F: {length: 4}")
    .replace("  b: {length: 4}", "  Mapping: {length: 4}")
)

# Specs that validate: each must generate and run in every backend.
# Names of frameworks, their modules and Python builtins: valid, every backend renames them.
FRAMEWORK_NAMES = (
    two_inputs(
        [
            "{name: keras, type: embedding, table: np, input: torch}",
            "{name: ops, type: embedding, table: np, input: tf}",
            "{name: print, type: add, inputs: [keras, ops]}",
            "{name: super, type: self_attention, heads: 2}",
            "{name: len, type: global_average_pool}",
            "{name: Exception, type: dense, units: 3, activation: relu}",
            "{name: Model, type: dense, units: 3, activation: softmax}",
        ],
        "embeddings:\n  np: {vocab_size: 20, dim: 4, padding: {index: 0}}\n",
    )
    .replace("  a: {length: 4}", "  torch: {length: 4}")
    .replace("  b: {length: 4}", "  tf: {length: 4}")
)

VALID: dict[str, str] = {
    "names_like_torch_helpers": TORCH_NAMES,
    "framework_and_builtin_names": FRAMEWORK_NAMES,
    "flatten_dense": spec(["{type: flatten}", "{type: dense, units: 3, activation: softmax}"]),
    "dense_options": spec(
        [
            "{type: dense, units: 5, activation: gelu, use_bias: false, "
            "kernel_initializer: he_normal}",
            "{type: dropout, rate: 0.2}",
            "{type: global_max_pool}",
            "{type: dense, units: 3, activation: softmax, "
            "kernel_initializer: {type: uniform, low: -0.1, high: 0.1}}",
        ]
    ),
    "conv_pool": spec(
        [
            "{type: conv1d, filters: 4, kernel_size: 3, padding: causal, dilation: 2}",
            "{type: conv1d, filters: 4, kernel_size: 2, strides: 2, padding: same}",
            "{type: max_pool1d, pool_size: 2, strides: 1}",
            "{type: conv1d, filters: 3, kernel_size: 1, activation: relu, use_bias: false}",
            "{type: average_pool1d, pool_size: 1}",
            *POOLED,
        ]
    ),
    "lstm_stack": spec(
        [
            "{type: lstm, units: 3, num_layers: 2, dropout: 0.1, bidirectional: true}",
            "{type: dense, units: 3, activation: softmax}",
        ]
    ),
    "gru_sequences_sum": spec(
        [
            "{type: gru, units: 3, return_sequences: true, bidirectional: true, merge: sum}",
            *POOLED,
        ]
    ),
    "norms": spec(
        [
            "{type: layer_norm, epsilon: 0.001}",
            "{type: batch_norm, momentum: 0.2}",
            *POOLED,
        ]
    ),
    "attention_rotary": spec(
        ["{type: self_attention, heads: 2, rotary: {base: 500.0}, dropout: 0.1}", *POOLED]
    ),
    "transformer_rotary_table": spec(
        [
            "{type: transformer_encoder, heads: 2, ff_dim: 6, num_layers: 2, norm_first: true, "
            "activation: gelu}",
            *POOLED,
        ],
        table=", positional: {type: rotary}",
    ),
    "rotary_through_dense": spec(
        [
            "{type: dense, units: 4}",
            "{type: self_attention, heads: 2}",
            *POOLED,
        ],
        dim=6,
        table=", positional: {type: rotary}",
    ),
    "positional_learned_scaled": spec(
        POOLED,
        table=", positional: {type: learned, max_length: 8}, scale: sqrt_dim",
    ),
    "positional_sinusoidal_unpadded": spec(
        POOLED, table=", positional: {type: sinusoidal}, zero_padded_positions: false, scale: 2.0"
    ),
    "row_selection": spec(
        ["{type: flatten}", "{type: dense, units: 3, activation: softmax}"],
        table=", special_tokens: [a, b], trainable: {ids: [3], ranges: [[5, 8]], "
        "special_tokens: [b]}",
    ),
    "frozen_table": spec(POOLED, table=", trainable: false, initializer: zeros"),
    "merges": two_inputs(
        [
            "{name: ea, type: embedding, table: words, input: a}",
            "{name: eb, type: embedding, table: words, input: b}",
            "{name: s, type: add, inputs: [ea, eb]}",
            "{name: p, type: multiply, inputs: [s, ea]}",
            "{name: c, type: concatenate, inputs: [p, eb, eb]}",
            "{type: global_average_pool}",
            "{type: dense, units: 3, activation: softmax}",
        ],
        WORDS,
    ),
    "shared_dense": two_inputs(
        [
            "{name: ea, type: embedding, table: words, input: a}",
            "{name: eb, type: embedding, table: words, input: b}",
            "{name: da, type: dense, units: 4, activation: tanh, inputs: [ea]}",
            "{name: db, type: dense, units: 4, activation: tanh, inputs: [eb], share: da}",
            "{name: s, type: concatenate, inputs: [da, db]}",
            "{type: flatten}",
            "{type: dense, units: 3, activation: softmax}",
        ],
        WORDS,
    ),
    "attention_pool": spec(
        [
            "{type: dense, units: 4, activation: tanh}",
            "{type: attention_pool, scale: false, initializer: zeros}",
            "{type: dense, units: 3, activation: softmax}",
        ]
    ),
    "memory_relu_half": memory("tying: adjacent, query: constant, relu_half: true, dim: 5").replace(
        "dim: 4, ", ""
    ),
    "memory_layerwise": memory(
        "tying: layerwise, query: constant, temporal: true, padding: {index: 0}"
    ),
    "memory_adjacent_embedded": memory(
        "tying: adjacent, query: embedded, sentence_encoding: memn2n_pe, inputs: [memories, "
        "question]",
        question=True,
    ),
    "memory_layerwise_embedded": memory(
        "tying: layerwise, query: embedded, linear_map: false, output_size: 5, "
        "activation: linear, inputs: [memories, question]",
        question=True,
    ).replace("training:\n  loss: sparse_categorical_crossentropy", "training:\n  loss: mse"),
}

# Specs that a backend could not generate (or whose code would compute on ids) before issue 11:
# each must fail validation, located, with this message fragment.
INVALID: dict[str, tuple[str, str, str]] = {
    "unused_table": (
        spec(POOLED).replace("embeddings:\n", "embeddings:\n  unused: {vocab_size: 10, dim: 2}\n"),
        "embeddings.unused",
        "table 'unused' is not used by any layer",
    ),
    "rotary_odd_head_dim": (
        spec(["{type: self_attention, heads: 2, rotary: true}", *POOLED], dim=6),
        "model.layers.1.rotary",
        "needs an even head dimension, but width 6 / 2 heads = 3",
    ),
    "rotary_table_odd_dim": (
        spec(
            ["{type: self_attention, heads: 1}", *POOLED],
            dim=5,
            table=", positional: {type: rotary}",
        ),
        "model.layers.1.heads",
        "needs an even head dimension, but width 5 / 1 heads = 5",
    ),
    "rotary_transformer_odd_head_dim": (
        spec(["{type: transformer_encoder, heads: 3, ff_dim: 4, rotary: true}", *POOLED], dim=9),
        "model.layers.1.rotary",
        "width 9 / 3 heads = 3",
    ),
    "add_ids_then_dense": (
        two_inputs(
            ["{name: s, type: add, inputs: [a, b]}", "{type: dense, units: 3, activation: softmax}"]
        ),
        "model.layers.0.inputs.0",
        "add cannot combine the ids of input 'a': look them up in an embedding first",
    ),
    "concatenate_ids_with_floats": (
        two_inputs(
            [
                "{name: ea, type: embedding, table: words, input: a}",
                "{name: c, type: concatenate, inputs: [ea, b]}",
                "{type: flatten}",
                "{type: dense, units: 3, activation: softmax}",
            ],
            WORDS,
        ),
        "model.layers.1.inputs.1",
        "concatenate cannot combine the ids of input 'b'",
    ),
    "dense_reads_ids": (
        two_inputs(["{type: dense, units: 3, activation: softmax, inputs: [a]}"]),
        "model.layers.0.inputs",
        "cannot read the ids of input 'a' directly",
    ),
}


def flow(**fields: object) -> str:
    """A layer in YAML flow style: ``flow(type="dense", units=2)`` is
    ``{type: dense, units: 2}``."""
    return (
        "{"
        + ", ".join(
            f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in fields.items()
        )
        + "}"
    )


def _random_layers(rng: random.Random) -> list[str]:
    """A random stack over ``(batch, 6, 8)``: mostly valid, sometimes not (odd widths for
    rotary attention, windows longer than the sequence, rank errors)."""
    palette = [
        flow(type="dense", units=rng.choice([2, 4, 6]), activation="relu"),
        flow(type="dropout", rate=0.1),
        flow(
            type="conv1d",
            filters=rng.choice([2, 4]),
            kernel_size=rng.choice([1, 3, 9]),
            padding=rng.choice(["valid", "same", "causal"]),
        ),
        flow(type="max_pool1d", pool_size=rng.choice([1, 2, 7])),
        flow(type="layer_norm"),
        flow(type="batch_norm"),
        flow(type="self_attention", heads=rng.choice([1, 2, 3]), rotary=rng.random() < 0.5),
        flow(type="lstm", units=2, return_sequences=rng.random() < 0.5),
        flow(type="gru", units=2, return_sequences=True),
        flow(type="transformer_encoder", heads=rng.choice([1, 2]), ff_dim=4),
    ]
    layers = [rng.choice(palette) for _ in range(rng.randint(1, 3))]
    return [*layers, rng.choice(["{type: global_average_pool}", "{type: flatten}"]), POOLED[1]]


RANDOM = {f"random_{seed}": spec(_random_layers(random.Random(seed))) for seed in range(24)}

# ----------------------------------------------------------------------------- helpers


def _compile(text: str) -> ir.Program:
    spec_, doc = load_string(text, "agree.yaml")
    return compile_spec(spec_, doc)


def _generated(program: ir.Program) -> dict[str, dict[str, str] | Exception]:
    out: dict[str, dict[str, str] | Exception] = {}
    for name in BACKENDS:
        try:
            out[name] = backends.get(name).generate(program)
        except Exception as exc:  # any failure is the disagreement under test
            out[name] = exc
    return out


def _run_forward(program: ir.Program, files: dict[str, str], backend: str, folder: Path) -> Any:
    folder.mkdir(parents=True)
    for rel, text in files.items():
        (folder / rel).write_text(text)
    runtime = backends.get(backend).runtime()
    module = runtime.load_module(folder / "model.py")
    model = runtime.build(module, "float32")
    rng = np.random.default_rng(0)
    state = {k: v.astype("float32") for k, v in random_state(program, rng).items()}
    runtime.set_state(model, state)
    inputs, _ = random_batch(program, rng, 2)
    return runtime.forward(model, inputs)


def _check_valid(text: str, tmp_path: Path, forward: bool = True) -> None:
    program = _compile(text)  # validates (raises SpecError otherwise)
    generated = _generated(program)
    failed = {k: v for k, v in generated.items() if isinstance(v, Exception)}
    assert not failed, f"validates but does not compile: {failed}"
    if not forward:
        return
    width = program.node(program.outputs[0]).shape[1:]
    outputs = {}
    for backend in BACKENDS:
        pytest.importorskip({"torch": "torch", "keras": "keras"}.get(backend, backend))
        files = generated[backend]
        assert isinstance(files, dict)
        output = np.asarray(_run_forward(program, files, backend, tmp_path / backend))
        assert output.shape == (2, *width), backend
        assert np.all(np.isfinite(output)), backend
        outputs[backend] = output
    # Same weights, same inputs: the backends agree (parity proper is tested elsewhere).
    first, *rest = outputs.values()
    for other in rest:
        np.testing.assert_allclose(other, first, rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_examples_validate_and_run_in_every_backend(name: str, tmp_path: Path) -> None:
    _check_valid((EXAMPLES / name / "spec.yaml").read_text(), tmp_path)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_specs_run_in_every_backend(name: str, tmp_path: Path) -> None:
    _check_valid(VALID[name], tmp_path)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_what_a_backend_cannot_build_fails_validation_located(name: str) -> None:
    text, path, message = INVALID[name]
    with pytest.raises(SpecError) as exc:
        _compile(text)
    [problem] = exc.value.problems
    assert ".".join(map(str, problem.path)) == path
    assert message in problem.message
    assert problem.line > 1  # located in the file, not at 1:1


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_stacks_validate_exactly_when_they_compile(name: str, tmp_path: Path) -> None:
    """validate passes <=> every backend generates; valid ones also run."""
    try:
        _compile(RANDOM[name])
    except SpecError as exc:
        assert all(p.line > 1 for p in exc.problems), exc.problems
        return
    _check_valid(RANDOM[name], tmp_path)


def test_the_random_stacks_include_both_outcomes() -> None:
    outcomes = set()
    for text in RANDOM.values():
        try:
            _compile(text)
            outcomes.add("valid")
        except SpecError:
            outcomes.add("invalid")
    assert outcomes == {"valid", "invalid"}


def test_names_like_torch_framework_names_are_renamed_in_torch_code(tmp_path: Path) -> None:
    """Spec names the torch module relies on are valid: the generated code renames them, takes
    inputs it had to rename as ``**inputs``, and runs (the forward pass in every backend is
    checked by ``test_valid_specs_run_in_every_backend``)."""
    pytest.importorskip("torch")
    program = _compile(TORCH_NAMES)
    source = backends.get("torch").generate(program)["model.py"]
    # The spec trains a softmax from its logits: forward also takes `logits`.
    assert "def forward(self, logits: bool = False, **inputs: torch.Tensor)" in source
    assert 'F_ = inputs["F"]' in source and 'Mapping_ = inputs["Mapping"]' in source
    assert "self.state_dict_ = " not in source  # an embedding lookup is no submodule
    assert "self.modules_ = nn.Embedding(" in source and "self.pairwise = nn.GRU(" in source
    state = _run_forward(program, {"model.py": source}, "torch", tmp_path / "torch")
    assert np.all(np.isfinite(state))
