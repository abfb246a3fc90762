"""Every example and embedding policy against an independent, hand-written oracle, per backend.

The oracles (:mod:`tests.oracles`) are written from the documented semantics, not from the
generator, and run in the same framework as the generated code they are compared with: generated
PyTorch against the PyTorch oracle, generated Keras against the Keras oracle. Both start from the
same canonical weights; compared are the outputs, the gradients of every trainable weight, the
losses and the weights after several optimizer steps (SGD with Nesterov momentum and L2 decay,
Adam with L2 decay and clipping, AdamW), all in float64. So a compiler mistake that both backends
share, which cross-backend parity cannot see, fails here.

Tolerance: ``max|generated - oracle| / max(1, max|oracle|) <= 1e-12`` for every compared array
(float64 round-off of these small models is ~1e-15). Frozen rows must be bit-identical after
training and padding rows exactly 0.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nnspec import backends
from nnspec.compiler import compile_spec
from nnspec.spec import load_string
from tests.conftest import EXAMPLES
from tests.oracles import models
from tests.oracles.optim import Optimizer

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

TOLERANCE = 1e-12
# A key bias's true gradient is exactly 0.0 without rotary positions (softmax ignores a shift
# shared by all scores): each implementation computes round-off, bounded by this, which Adam
# scales to steps of up to lr * |g| / eps. Its trained values are compared within that bound
# (both ways, every step).
NULL_GRADIENT = 1e-13
BATCH = 6
STEPS = 5


@dataclass
class Case:
    """A spec, its hand-written oracle, the optimizer its training section describes, and how
    to draw a batch of its inputs."""

    spec: str
    oracle: models.Model
    optimizer: Callable[[], Optimizer]
    inputs: Callable[[np.random.Generator], dict[str, np.ndarray]]
    classes: int


def token_ids(
    rng: np.random.Generator,
    dims: tuple[int, ...],
    vocab_size: int,
    pad: int | None = 0,
    hot: tuple[int, ...] = (),
) -> np.ndarray:
    """Random ids ``(BATCH, *dims)``, post-padded to random lengths along the last axis, the last
    example all padding. Each ``hot`` id (rows that rarely come up by chance: trainable rows,
    special tokens) appears at least twice, so repeated ids are merged."""
    ids = rng.integers(0, vocab_size, size=(BATCH, *dims))
    if pad is None:
        return ids.astype(np.int32)
    ids[ids == pad] = (pad + 1) % vocab_size
    sentences = ids.reshape(-1, dims[-1])  # a view
    real = len(sentences) - len(sentences) // BATCH  # rows of the examples before the last
    for token in hot:
        sentences[rng.integers(0, real, size=2), 0] = token  # position 0 is never padded
    lengths = rng.integers(1, dims[-1] + 1, size=(BATCH, *dims[:-1]))
    ids[np.arange(dims[-1]) >= lengths[..., None]] = pad
    if len(dims) == 2:  # memories: one empty memory per example
        ids[np.arange(BATCH), rng.integers(0, dims[0], size=BATCH)] = pad
    ids[-1] = pad
    return ids.astype(np.int32)


def tokens(length: int, vocab_size: int, pad: int = 0, hot: tuple[int, ...] = ()):
    """Batches of one ``tokens`` input."""
    return lambda rng: {"tokens": token_ids(rng, (length,), vocab_size, pad, hot)}


def example(name: str, **replace: str) -> str:
    """An example's spec text, with some values replaced (a smaller but identical structure)."""
    text = (EXAMPLES / name / "spec.yaml").read_text()
    for old, new in replace.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def policy_spec(inputs: str, table: str, layers: str, optimizer: str, extra: str = "") -> str:
    """A small spec exercising some policies."""
    return f"""
nnspec: 1
name: policy_case
inputs: {inputs}
embeddings:
  words: {table}
model:
  layers:
{layers}
training:
  loss: sparse_categorical_crossentropy
  optimizer: {optimizer}
{extra}
"""


# newsgroups_flat's structure at 300 ids of 40 tokens, 16 dimensions (from 19000, 1100, 300).
NEWSGROUPS_SMALL = {
    "length: 1100": "length: 40",
    "vocab_size: 19000": "vocab_size: 300",
    "dim: 300": "dim: 16",
}


def rows_case(optimizer: str, oracle_optimizer: Callable[[], Optimizer]) -> Case:
    """A non-zero pad id, a partially trainable table, ``scale: 0.5`` and a learned positional
    table longer than the input, under ``optimizer``."""
    return Case(
        policy_spec(
            "{tokens: {length: 7}}",
            "{vocab_size: 20, dim: 5, padding: {index: 3}, special_tokens: [s0, s1], scale: 0.5,"
            " trainable: {ids: [1, 12], ranges: [[2, 6]], special_tokens: [s1]},"
            " positional: {type: learned, max_length: 9}}",
            "    - {type: embedding, table: words}\n    - {type: flatten}\n"
            "    - {type: dense, units: 4, activation: softmax}",
            optimizer,
        ),
        # ids 1, 12, the range 2..5 without the pad 3, and s1 = the highest id, 19
        models.rows_and_learned_positions(
            vocab_size=20,
            dim=5,
            length=7,
            max_length=9,
            pad=3,
            rows=models.row_mask(20, ids=[1, 2, 4, 5, 12, 19]),
        ),
        oracle_optimizer,
        tokens(7, 20, pad=3, hot=(1, 2, 4, 5, 12, 18, 19)),
        4,
    )


CASES = {
    # The examples, each with the optimizer of its own spec (the newsgroups ones shrunk).
    "newsgroups_flat": Case(
        example("newsgroups_flat", **NEWSGROUPS_SMALL),
        models.flat_classifier(vocab_size=300, dim=16, length=40, hidden=25, classes=20),
        lambda: Optimizer("adam", lr=0.001, eps=1e-8),
        tokens(40, 300),
        20,
    ),
    "newsgroups_glove": Case(
        example(
            "newsgroups_glove",
            **{"length: 1100": "length: 40", "vocab_size: 19000": "vocab_size: 300"},
        ),
        models.flat_classifier(
            vocab_size=300,
            dim=50,
            length=40,
            hidden=25,
            classes=20,
            rows=models.row_mask(300, ids=[299]),
        ),
        lambda: Optimizer("adam", lr=0.001, eps=1e-8),
        tokens(40, 300, hot=(299,)),
        20,
    ),
    "glove_special_tokens": Case(
        example("glove_special_tokens"),
        models.glove_special_tokens(vocab_size=10000, dim=50, n_special=4, hidden=64, classes=4),
        lambda: Optimizer("adamw", lr=0.002, weight_decay=0.01),
        tokens(200, 10000, hot=(9996, 9997, 9998, 9999)),
        4,
    ),
    "glove_lstm": Case(
        example("glove_lstm"),
        models.glove_lstm(vocab_size=5000, dim=50, n_special=3, units=48, classes=4),
        lambda: Optimizer("adam", lr=0.003, clip_norm=5.0),
        tokens(60, 5000, hot=(4997, 4998, 4999)),
        4,
    ),
    "transformer_classifier": Case(
        example("transformer_classifier"),
        # scale: sqrt_dim with dim 64 is 8.0
        models.transformer_classifier(
            vocab_size=8000, dim=64, scale=8.0, heads=4, ff_dim=128, blocks=2, classes=4
        ),
        lambda: Optimizer("adamw", lr=0.001, weight_decay=0.01, clip_norm=1.0),
        tokens(64, 8000),
        4,
    ),
    "memn2n_lm": Case(
        example("memn2n_lm"),
        models.memn2n_lm(vocab_size=60, dim=48, memories=16, hops=3),
        lambda: Optimizer("adam", lr=0.01, clip_norm=50.0),
        lambda rng: {"context": token_ids(rng, (16, 1), 60)},
        60,
    ),
    # Policies and layers the examples do not reach.
    # Frozen rows bit-identical and the pad row 0.0 under every optimizer and weight decay.
    "rows_adamw": rows_case(
        "{type: adamw, lr: 0.05, weight_decay: 0.1}",
        lambda: Optimizer("adamw", lr=0.05, weight_decay=0.1),
    ),
    "rows_adam_l2_clipped": rows_case(
        "{type: adam, lr: 0.05, weight_decay: 0.1}\n  clip_norm: 0.25",
        lambda: Optimizer("adam", lr=0.05, weight_decay=0.1, clip_norm=0.25),
    ),
    "rows_sgd_nesterov_l2": rows_case(
        "{type: sgd, lr: 0.5, momentum: 0.9, nesterov: true, weight_decay: 0.1}",
        lambda: Optimizer("sgd", lr=0.5, momentum=0.9, nesterov=True, weight_decay=0.1),
    ),
    "newsgroups_flat_sgd_l2": Case(
        example("newsgroups_flat", **NEWSGROUPS_SMALL).replace(
            "{type: adam, lr: 0.001, eps: 1.0e-8}", "{type: sgd, lr: 0.25, weight_decay: 0.5}"
        ),
        models.flat_classifier(vocab_size=300, dim=16, length=40, hidden=25, classes=20),
        lambda: Optimizer("sgd", lr=0.25, weight_decay=0.5),
        tokens(40, 300),
        20,
    ),
    "frozen_sinusoids_unzeroed": Case(
        policy_spec(
            "{tokens: {length: 6}}",
            "{vocab_size: 30, dim: 7, padding: {index: 0}, trainable: false, scale: sqrt_dim,"
            " positional: {type: sinusoidal}, zero_padded_positions: false}",
            "    - {type: embedding, table: words}\n    - {type: flatten}\n"
            "    - {type: dense, units: 3, activation: softmax}",
            "{type: sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.01}",
        ),
        models.frozen_sinusoids_unzeroed(vocab_size=30, dim=7, length=6, scale=math.sqrt(7)),
        lambda: Optimizer("sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        tokens(6, 30),
        3,
    ),
    "gru_stack": Case(
        policy_spec(
            "{tokens: {length: 8}}",
            "{vocab_size: 25, dim: 6, padding: {index: 0}}",
            "    - {type: embedding, table: words}\n"
            "    - {type: gru, units: 5, bidirectional: true, merge: sum, num_layers: 2,"
            " return_sequences: true, dropout: 0.25}\n"
            "    - {type: global_average_pool}\n"
            "    - {type: dense, units: 3, activation: softmax}",
            "{type: adam, lr: 0.01, weight_decay: 0.05}",
            "  clip_norm: 0.5",
        ),
        models.gru_stack(vocab_size=25, dim=6, units=5),
        lambda: Optimizer("adam", lr=0.01, weight_decay=0.05, clip_norm=0.5),
        tokens(8, 25),
        3,
    ),
    "lstm_attention": Case(
        policy_spec(
            "{tokens: {length: 8}}",
            "{vocab_size: 25, dim: 6, padding: {index: 0}, special_tokens: [x, y, z],"
            " trainable: {special_tokens: true, ids: [5]}}",
            "    - {type: embedding, table: words}\n"
            "    - {type: lstm, units: 4, return_sequences: true}\n"
            "    - {type: layer_norm, epsilon: 0.001}\n"
            "    - {type: self_attention, heads: 2}\n"
            "    - {type: global_max_pool}\n"
            "    - {type: dense, units: 3, activation: softmax}",
            "{type: sgd, lr: 0.1, momentum: 0.5}",
        ),
        models.lstm_attention(
            vocab_size=25, dim=6, units=4, heads=2, rows=models.row_mask(25, ids=[5, 22, 23, 24])
        ),
        lambda: Optimizer("sgd", lr=0.1, momentum=0.5),
        tokens(8, 25, hot=(5, 22, 23, 24)),
        3,
    ),
    "memn2n_adjacent": Case(
        """
nnspec: 1
name: policy_case
inputs:
  memories: {shape: [5, 4]}
  question: {length: 4}
model:
  layers:
    - {type: memory_network, inputs: [memories, question], vocab_size: 30, dim: 6, hops: 2,
       tying: adjacent, query: embedded, sentence_encoding: memn2n_pe, temporal: true}
training:
  loss: sparse_categorical_crossentropy
  optimizer: {type: adamw, lr: 0.02, weight_decay: 0.1}
""",
        models.memn2n_adjacent(vocab_size=30, dim=6, memories=5, hops=2),
        lambda: Optimizer("adamw", lr=0.02, weight_decay=0.1),
        lambda rng: {
            "memories": token_ids(rng, (5, 4), 30),
            "question": token_ids(rng, (4,), 30),
        },
        30,
    ),
    "rotary_attention": Case(
        policy_spec(
            "{tokens: {length: 7}}",
            "{vocab_size: 20, dim: 8, padding: {index: 0},"
            " positional: {type: rotary, base: 100.0}}",
            "    - {type: embedding, table: words}\n"
            "    - {type: self_attention, heads: 2}\n"
            "    - {type: global_average_pool}\n"
            "    - {type: dense, units: 3, activation: softmax}",
            "{type: sgd, lr: 0.5}",
        ),
        models.rotary_attention(vocab_size=20, dim=8, heads=2, base=100.0),
        lambda: Optimizer("sgd", lr=0.5),
        tokens(7, 20),
        3,
    ),
    "post_norm_transformer": Case(
        policy_spec(
            "{tokens: {length: 6}}",
            "{vocab_size: 20, dim: 8, padding: {index: 0}, trainable: {ranges: [[0, 10]]},"
            " positional: {type: learned}}",
            "    - {type: embedding, table: words}\n"
            "    - {type: transformer_encoder, heads: 2, ff_dim: 12, activation: gelu,"
            " epsilon: 1.0e-6}\n"
            "    - {type: global_average_pool}\n"
            "    - {type: dense, units: 3, activation: softmax}",
            "{type: adam, lr: 0.01}",
            "  clip_norm: 1.0",
        ),
        models.post_norm_transformer(
            vocab_size=20,
            dim=8,
            length=6,
            heads=2,
            ff_dim=12,
            rows=models.row_mask(20, ranges=[(1, 10)]),
        ),
        lambda: Optimizer("adam", lr=0.01, clip_norm=1.0),
        tokens(6, 20),
        3,
    ),
}


def scaled_diff(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max|actual - expected| / max(1, max|expected|)``; infinite on a shape mismatch."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return math.inf
    if expected.size == 0:
        return 0.0
    return float(np.max(np.abs(actual - expected)) / max(1.0, np.max(np.abs(expected))))


def framework_counts(backend: str, model) -> tuple[int, int]:
    """(trainable, frozen) parameters as the framework counts them."""
    if backend == "torch":
        params = list(model.parameters())
        trainable = sum(p.numel() for p in params if p.requires_grad)
        return trainable, sum(p.numel() for p in params if not p.requires_grad)
    count = lambda weights: sum(math.prod(w.shape) for w in weights)  # noqa: E731
    return count(model.trainable_weights), count(model.non_trainable_weights)


def generated(case: Case, backend: str, out: Path):
    """Compile the case's spec, write ``backend``'s code under ``out`` and import it."""
    spec, doc = load_string(case.spec, "case.yaml")
    files = backends.get(backend).generate(compile_spec(spec, doc))
    for rel, text in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    runtime = backends.get(backend).runtime()
    return runtime, runtime.load_module(out / "model.py")


def oracle_engine(backend: str):
    """The oracle's primitives in ``backend``'s framework."""
    if backend == "torch":
        from tests.oracles import torch_ops

        return torch_ops
    from tests.oracles import keras_ops

    return keras_ops


@pytest.mark.parametrize("backend", ["torch", "keras"])
@pytest.mark.parametrize("name", list(CASES))
def test_generated_model_equals_the_hand_written_oracle(name, backend, tmp_path):
    """Weights, parameter counts, outputs, gradients and training of the generated model of
    ``backend`` against the oracle in the same framework."""
    case = CASES[name]
    oracle = case.oracle
    engine = oracle_engine(backend)
    runtime, module = generated(case, backend, tmp_path)
    model = runtime.build(module, "float64")

    shapes = {name: tuple(shape) for name, shape in module.CANONICAL_SHAPES.items()}
    assert shapes == oracle.weights
    assert framework_counts(backend, model) == (oracle.trainable_count(), oracle.frozen_count())

    rng = np.random.default_rng(0)
    state = oracle.random_state(rng)
    loaded = {name: value.copy() for name, value in state.items()}
    for name, rows in oracle.zero_rows.items():
        loaded[name][list(rows)] = 7.0  # loading canonical weights re-zeroes padding rows
    runtime.set_state(model, loaded)
    assert {n: v.tolist() for n, v in runtime.get_state(model).items()} == {
        n: v.tolist() for n, v in state.items()
    }

    failures = []

    def check(what: str, actual, expected, tolerance: float = TOLERANCE) -> None:
        diff = scaled_diff(actual, expected)
        if not diff <= tolerance:
            failures.append(f"{what}: {diff:.3e} > {tolerance:.0e}")

    # Outputs and gradients of sum(output * cotangent), in inference mode.
    inputs = case.inputs(rng)
    expected = engine.forward(oracle, state, inputs)
    check("outputs", runtime.forward(model, inputs), expected)
    cotangent = rng.normal(size=expected.shape)
    _, grads = engine.value_and_gradients(
        oracle, state, inputs, lambda ops, out: ops.sum(ops.sum(out * ops.const(cotangent), -1), 0)
    )
    actual_grads = runtime.gradients(model, inputs, cotangent)
    assert sorted(actual_grads) == sorted(grads), "weights with trainable entries"
    null = {w for w, grad in grads.items() if np.max(np.abs(grad)) <= NULL_GRADIENT}
    assert all(w.endswith(".key.bias") for w in null), f"untested, no gradient here: {null}"
    for weight in grads:
        if weight in null:
            check(f"gradient of {weight} (0.0)", actual_grads[weight], grads[weight], NULL_GRADIENT)
        else:
            check(f"gradient of {weight}", actual_grads[weight], grads[weight])

    # Training steps of the spec's optimizer (dropout off), from the same weights.
    batches = [(case.inputs(rng), rng.integers(0, case.classes, size=BATCH)) for _ in range(STEPS)]
    losses = runtime.train(module, model, batches)
    optimizer = case.optimizer()
    params = {name: value.copy() for name, value in state.items()}
    expected_losses = []
    for batch_inputs, labels in batches:
        loss, batch_grads = engine.value_and_gradients(
            oracle,
            params,
            batch_inputs,
            lambda ops, out, labels=labels: models.sparse_categorical_crossentropy(
                ops, labels, out
            ),
        )
        expected_losses.append(loss)
        optimizer.step(params, batch_grads, oracle.masks)
    check("losses", np.array(losses), np.array(expected_losses))
    trained = runtime.get_state(model)
    for weight, value in params.items():
        tolerance = TOLERANCE
        if weight in null and optimizer.kind != "sgd":
            tolerance += 2 * STEPS * optimizer.lr * NULL_GRADIENT / optimizer.eps
        check(f"trained {weight}", trained[weight], value, tolerance)
        frozen = ~np.broadcast_to(oracle.masks.get(weight, False), value.shape)
        if not np.array_equal(trained[weight][frozen], state[weight][frozen]):
            failures.append(f"frozen entries of {weight} changed")
        for row in oracle.zero_rows.get(weight, ()):
            if np.any(trained[weight][row] != 0.0):
                failures.append(f"padding row {row} of {weight} is not 0.0")
    # Every other weight must move measurably, or the comparison checks little.
    still = [w for w in oracle.masks if w not in null and scaled_diff(params[w], state[w]) < 1e-6]
    assert not still, f"weights that barely train in this case (a weak check): {still}"
    assert not failures, "\n".join(failures)
