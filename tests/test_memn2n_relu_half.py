"""MemN2N's ReLU on half of each hop's units (arXiv 1503.08895 §5, the language models;
``relu_half``): the last ``d - d // 2`` units of ``u_(k+1) = u_k H + o`` go through a ReLU after
every hop, the first ``d // 2`` stay linear. Known answers in the reference and every installed
backend, and parity."""

from __future__ import annotations

import numpy as np
import pytest

from nnspec.parity import REFERENCE, compare, installed
from tests.parity_helpers import check
from tests.test_known_answers import generated_model, program_of

PROBE = """
nnspec: 1
name: relu_half
inputs: {{memories: {{shape: [2, 2]}}}}
model:
  layers:
    - {{type: memory_network, vocab_size: 3, dim: {dim}, hops: {hops}, tying: layerwise,
       query: constant, query_value: 0.0, linear_map: true, relu_half: {relu_half},
       output_size: {dim}, activation: linear}}
training: {{loss: mse, optimizer: {{type: sgd, lr: 0.5}}}}
"""

# One memory holding word 1 (then the pad) and one memory of padding only (no attention): with
# A = 0 every hop attends to the first memory alone, so o = C[1] in every hop.
MEMORIES = np.array([[[1, 0], [0, 0]], [[1, 0], [0, 0]]], dtype=np.int32)


def run(backend, tmp_path, dim, hops, relu_half, c1, h):
    program = program_of(PROBE.format(dim=dim, hops=hops, relu_half=str(relu_half).lower()))
    runtime, model = generated_model(program, backend, tmp_path)
    table = np.zeros((3, dim))
    table[1] = c1
    runtime.set_state(
        model,
        {
            "memory_network.A": np.zeros((3, dim)),
            "memory_network.C": table,
            "memory_network.H": np.asarray(h, dtype=np.float64),
            "memory_network.W": np.eye(dim),  # the output is u_(K+1) itself
        },
    )
    return runtime.forward(model, {"memories": MEMORIES})


@pytest.mark.parametrize("backend", [*installed(), REFERENCE])
def test_one_hop_last_half(backend, tmp_path):
    """u_1 = 0, so u_2 = o = C[1] = [-1, 2, -3, 4]: the last two units are rectified."""
    out = run(backend, tmp_path, 4, 1, True, [-1.0, 2.0, -3.0, 4.0], np.eye(4))
    np.testing.assert_allclose(out, [[-1.0, 2.0, 0.0, 4.0]] * 2, rtol=0, atol=1e-15)
    off = run(backend, tmp_path, 4, 1, False, [-1.0, 2.0, -3.0, 4.0], np.eye(4))
    np.testing.assert_allclose(off, [[-1.0, 2.0, -3.0, 4.0]] * 2, rtol=0, atol=1e-15)


@pytest.mark.parametrize("backend", [*installed(), REFERENCE])
def test_odd_width(backend, tmp_path):
    """d = 5: the first 5 // 2 = 2 units stay linear, the last 3 are rectified."""
    out = run(backend, tmp_path, 5, 1, True, [-1.0, -2.0, -3.0, 4.0, -5.0], np.eye(5))
    np.testing.assert_allclose(out, [[-1.0, -2.0, 0.0, 4.0, 0.0]] * 2, rtol=0, atol=1e-15)


@pytest.mark.parametrize("backend", [*installed(), REFERENCE])
def test_every_hop(backend, tmp_path):
    """Two hops, o = [0, 1, -1, 2] each, H moving unit 2 to unit 0 and unit 3 to unit 1.

    Per hop: u_2 = relu_half(o) = [0, 1, 0, 2]; u_2 H = [0, 2, 0, 0]; u_3 = relu_half(u_2 H + o)
    = relu_half([0, 3, -1, 2]) = [0, 3, 0, 2]. (A ReLU only after the last hop would give
    u_2 = o, u_2 H = [-1, 2, 0, 0] and [-1, 3, 0, 2].)"""
    h = np.zeros((4, 4))
    h[2, 0] = h[3, 1] = 1.0
    out = run(backend, tmp_path, 4, 2, True, [0.0, 1.0, -1.0, 2.0], h)
    np.testing.assert_allclose(out, [[0.0, 3.0, 0.0, 2.0]] * 2, rtol=0, atol=1e-15)


LANGUAGE_MODEL = """
nnspec: 1
name: memn2n_relu_half
inputs: {memories: {shape: [6, 1]}}
model:
  layers:
    - {type: memory_network, vocab_size: 20, dim: 7, hops: 3, tying: layerwise,
       query: constant, temporal: true, relu_half: true}
training: {loss: sparse_categorical_crossentropy, optimizer: {type: adam, lr: 0.01}}
"""

QUESTION_ANSWERING = """
nnspec: 1
name: memn2n_relu_half_adjacent
inputs: {memories: {shape: [4, 5]}, question: {length: 5}}
model:
  layers:
    - {type: memory_network, vocab_size: 25, dim: 6, hops: 2, tying: adjacent,
       sentence_encoding: memn2n_pe, relu_half: true, inputs: [memories, question]}
training: {loss: sparse_categorical_crossentropy, optimizer: {type: sgd, lr: 0.1}}
"""


@pytest.mark.skipif(not installed(), reason="no backend is installed")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("text", [LANGUAGE_MODEL, QUESTION_ANSWERING], ids=["lm", "qa"])
def test_parity(text, dtype):
    check(compare(program_of(text), dtype=dtype, steps=5, batch=5))
