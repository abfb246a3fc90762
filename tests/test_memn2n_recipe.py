"""The MemN2N language-model recipe of arXiv 1503.08895 in the spec language: memories given as
``(B, M)`` word ids, dropout on each hop's state, and linear start (the hops' softmax removed
until training restores it). Known answers and parity against the reference in every installed
backend."""

from __future__ import annotations

import numpy as np
import pytest

from nnspec import reference
from nnspec.parity import compare, installed
from tests.parity_helpers import check
from tests.test_known_answers import generated_model, program_of

SPEC = """
nnspec: 1
name: recipe
inputs: {{context: {{shape: {shape}}}}}
model:
  layers:
    - {{type: memory_network, vocab_size: 9, dim: 6, hops: 3, tying: layerwise,
       query: constant, temporal: true, relu_half: true, dropout: {dropout},
       linear_start: {linear_start}, padding: {{index: 0}}}}
training: {{loss: sparse_categorical_crossentropy, optimizer: {{type: adam, lr: 0.01}}}}
"""


def spec(shape="[5]", dropout=0.0, linear_start="false"):
    return SPEC.format(shape=shape, dropout=dropout, linear_start=linear_start)


# Previous words, most recent first; the last example has a short history (padded slots).
CONTEXT = np.array([[3, 1, 4, 1, 5], [2, 7, 8, 2, 8], [6, 0, 0, 0, 0]], dtype=np.int32)


def random_state(program, seed=0):
    rng = np.random.default_rng(seed)
    return {w.name: rng.normal(0, 0.5, w.shape) for w in program.weights}


def test_word_memories_are_single_word_sentences():
    """``[M]`` memories compute what ``[M, 1]`` memories of the same words compute."""
    words, sentences = program_of(spec("[5]")), program_of(spec("[5, 1]"))
    assert words.node("memory_network").op.word_memories
    assert [w.name for w in words.weights] == [w.name for w in sentences.weights]
    state = random_state(words)
    a = reference.forward(words, state, {"context": CONTEXT})
    b = reference.forward(sentences, state, {"context": CONTEXT[..., None]})
    np.testing.assert_array_equal(a, b)


def test_linear_start_in_the_reference_is_the_hops_without_softmax():
    """One hop, A = C = identity-like rows: p_i = u . m_i, 0 at padded memories."""
    program = program_of(spec("[3]", linear_start="true").replace("hops: 3", "hops: 1"))
    state = {w.name: np.zeros(w.shape) for w in program.weights}
    state["memory_network.A"][1:, :] = 1.0  # m_i = 1 for every word: u . m_i = 6 * 0.1
    state["memory_network.C"][2, 0] = 1.0  # only word 2 carries something: c = e_0
    state["memory_network.H"] = np.eye(6)
    state["memory_network.W"][0, 0] = 1.0  # logit 0 = u[0]
    context = np.array([[2, 2, 0]])  # two memories of word 2, one padded
    linear = reference.values(program, state, {"context": context}, linear_start=True)
    soft = reference.values(program, state, {"context": context})
    # u_2 = u_1 + sum_i p_i c_i: linear p_i = 0.6 (twice), softmax p_i = 1/2 (twice)
    u0_linear, u0_soft = 0.1 + 2 * 0.6, 0.1 + 1.0
    out = "memory_network"
    logits_linear = np.log(linear[out][0])
    assert logits_linear[0] - logits_linear[1] == pytest.approx(u0_linear, abs=1e-12)
    logits_soft = np.log(soft[out][0])
    assert logits_soft[0] - logits_soft[1] == pytest.approx(u0_soft, abs=1e-12)


@pytest.mark.parametrize("backend", installed())
def test_generated_models_switch_linear_start_like_the_reference(backend, tmp_path):
    """The generated model starts with the softmax (the spec's function, for inference and
    parity); with its memory network's ``linear_start`` set it computes the reference's
    linear-start mode. Float64, 1e-12."""
    program = program_of(spec(linear_start="true"))
    runtime, model = generated_model(program, backend, tmp_path)
    state = random_state(program, 1)
    runtime.set_state(model, state)
    inputs = {"context": CONTEXT}
    soft = reference.forward(program, state, inputs)
    linear = reference.forward(program, state, inputs, linear_start=True)
    assert np.abs(soft - linear).max() > 1e-3  # the two modes differ on these weights
    np.testing.assert_allclose(runtime.forward(model, inputs), soft, rtol=0, atol=1e-12)
    model.memory_network.linear_start = True
    np.testing.assert_allclose(runtime.forward(model, inputs), linear, rtol=0, atol=1e-12)
    model.memory_network.linear_start = False
    np.testing.assert_allclose(runtime.forward(model, inputs), soft, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", installed())
def test_dropout_acts_in_training_only(backend, tmp_path):
    """Inference equals the reference (dropout is the identity); in training the state is
    dropped, so outputs change, and with rate 0.5 on 6 units some unit of some hop drops."""
    program = program_of(spec(dropout=0.5))
    runtime, model = generated_model(program, backend, tmp_path)
    state = random_state(program, 2)
    runtime.set_state(model, state)
    inputs = {"context": np.repeat(CONTEXT, 20, axis=0)}
    expected = reference.forward(program, state, inputs)
    np.testing.assert_allclose(runtime.forward(model, inputs), expected, rtol=0, atol=1e-12)
    if backend == "torch":
        import torch

        model.train()
        with torch.no_grad():
            trained = model(**{k: torch.as_tensor(v) for k, v in inputs.items()}).numpy()
        model.eval()
    else:
        trained = np.asarray(model(inputs, training=True))
    changed = np.abs(trained - expected).max(axis=1) > 1e-9
    assert changed.mean() > 0.9  # 3 hops x 6 units at rate 0.5: all kept has odds 2^-18


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_recipe_parity(dtype):
    """Word memories, dropout and linear start together: outputs against the reference,
    gradients and trained weights across backends (dropout off in the harness)."""
    check(compare(program_of(spec(dropout=0.3, linear_start="true")), dtype=dtype, steps=4))
