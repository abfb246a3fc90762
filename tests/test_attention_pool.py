"""The ``attention_pool`` layer: shapes and parameter counts, known answers in the reference and
every installed backend (values worked out by formula here), and parity against the reference
and across backends in float64 and float32."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnspec.compiler.summary import summarize
from nnspec.parity import REFERENCE, compare, installed
from tests.parity_helpers import check
from tests.test_known_answers import generated_model, program_of

POOL = """
nnspec: 1
name: pooled
inputs: {{tokens: {{length: 4}}}}
embeddings:
  words: {{vocab_size: 5, dim: 2{padding}}}
model:
  layers:
    - {{type: embedding, table: words}}
    - {{type: attention_pool, scale: {scale}}}
training: {{loss: mse}}
"""

# Rows of the table: word v embeds to TABLE[v]; the pad (0) to 0.0.
TABLE = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
IDS = np.array([[1, 2, 0, 0], [3, 4, 1, 0], [0, 2, 0, 2], [0, 0, 0, 0]], dtype=np.int32)


def expected(ids: np.ndarray, query: np.ndarray, scale: bool, pad: int | None) -> np.ndarray:
    """``sum_t a_t x_t``, ``a = softmax(x_t . q [/ sqrt(2)])`` over the non-pad positions."""
    rows = []
    for row in ids:
        words = [v for v in row if v != pad]
        if not words:
            rows.append([0.0, 0.0])
            continue
        scores = [float(TABLE[v] @ query) / (math.sqrt(2) if scale else 1) for v in words]
        e = [math.exp(s) for s in scores]
        rows.append(list(sum(w / sum(e) * TABLE[v] for w, v in zip(e, words, strict=True))))
    return np.array(rows)


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("backend", [*installed(), REFERENCE])
def test_known_answers(backend, scale, tmp_path):
    """With ``q . x`` = ln 2, ln 3, ln 6, ln 4 for words 1..4, the weights are ratios of
    2, 3, 6, 4: ``[1, 2]`` pools to ``(2 x_1 + 3 x_2) / 5 = [0.4, 0.6]``, ``[3, 4, 1]`` to
    ``(6 x_3 + 4 x_4 + 2 x_1) / 12 = [4/3, 1/2]``, pads in between are skipped, and a row of
    padding only pools to exactly 0.0."""
    program = program_of(POOL.format(padding=", padding: {index: 0}", scale=str(scale).lower()))
    runtime, model = generated_model(program, backend, tmp_path)
    query = np.array([math.log(2), math.log(3)]) * (math.sqrt(2) if scale else 1)
    runtime.set_state(model, {"words.embeddings": TABLE, "attention_pool.query": query})
    out = runtime.forward(model, {"tokens": IDS})
    hand = [[0.4, 0.6], [4 / 3, 1 / 2], [0.0, 1.0], [0.0, 0.0]]
    np.testing.assert_allclose(expected(IDS, query, scale, 0), hand, rtol=0, atol=1e-15)
    np.testing.assert_allclose(out, hand, rtol=0, atol=1e-14)
    assert np.all(out[3] == 0.0)  # exactly


@pytest.mark.parametrize("backend", [*installed(), REFERENCE])
def test_without_padding_every_position_counts(backend, tmp_path):
    """A table without padding: id 0 is a word (embedding 0.0, score 0, weight e^0 = 1)."""
    program = program_of(POOL.format(padding="", scale="true"))
    runtime, model = generated_model(program, backend, tmp_path)
    query = np.array([math.log(2), math.log(3)]) * math.sqrt(2)
    runtime.set_state(model, {"words.embeddings": TABLE, "attention_pool.query": query})
    out = runtime.forward(model, {"tokens": IDS})
    np.testing.assert_allclose(out[0], [2 / 7, 3 / 7], rtol=0, atol=1e-14)  # weights 2, 3, 1, 1
    np.testing.assert_allclose(out, expected(IDS, query, True, None), rtol=0, atol=1e-14)


def test_shape_and_parameters():
    program = program_of(POOL.format(padding=", padding: {index: 0}", scale="true"))
    rows = {row.name: row for row in summarize(program)}
    assert rows["attention_pool"].shape == (None, 2)
    assert (rows["attention_pool"].trainable, rows["attention_pool"].frozen) == (2, 0)
    assert program.weight("attention_pool.query").shape == (2,)


PARITY = {
    # Pad zeroing, the scaled default, a classifier on top.
    "padded": """
nnspec: 1
name: attention_pool_padded
inputs: {tokens: {length: 9}}
embeddings:
  words: {vocab_size: 40, dim: 6, padding: {index: 0}}
model:
  layers:
    - {type: embedding, table: words}
    - {type: attention_pool}
    - {type: dense, units: 3, activation: softmax}
training: {loss: sparse_categorical_crossentropy, optimizer: {type: adam, lr: 0.01}}
""",
    # The mask carried through a dense layer, no scaling, and a second (tied) pool over
    # another input; a table without padding on the second input.
    "tied": """
nnspec: 1
name: attention_pool_tied
inputs: {first: {length: 7}, second: {length: 7}}
embeddings:
  words: {vocab_size: 30, dim: 4, padding: {index: 0}}
  other: {vocab_size: 30, dim: 4}
model:
  layers:
    - {type: embedding, table: words, input: first, name: a}
    - {type: dense, units: 5, activation: tanh, name: project}
    - {type: attention_pool, scale: false, name: pool}
    - {type: embedding, table: other, input: second, name: b}
    - {type: dense, units: 5, activation: tanh, share: project, name: project_b}
    - {type: attention_pool, scale: false, share: pool, name: pool_b}
    - {type: concatenate, inputs: [pool, pool_b]}
    - {type: dense, units: 2}
training: {loss: mse, optimizer: {type: sgd, lr: 0.1, momentum: 0.9}}
""",
}


@pytest.mark.skipif(not installed(), reason="no backend is installed")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(PARITY))
def test_parity(name, dtype):
    check(compare(program_of(PARITY[name]), dtype=dtype, steps=5, batch=5))
