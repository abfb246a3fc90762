"""A softmax (sigmoid) output trained with categorical (binary) cross-entropy: the compiler moves
the activation out of the output node (``Program.output_activation``), the model still returns
probabilities and gives its logits on request, and the loss is exact from the logits."""

from __future__ import annotations

import numpy as np
import pytest

from nnspec import reference
from nnspec.parity import compare, installed
from tests.parity_helpers import check
from tests.test_known_answers import generated_model, program_of

SPEC = """
nnspec: 1
name: logits_case
inputs: {{{input}: {{length: 4}}}}
embeddings: {{words: {{vocab_size: 9, dim: 3}}}}
model:
  layers:
    - {{type: embedding, table: words}}
    - {{type: flatten}}
    - {{type: dense, units: {units}, activation: {activation}}}
training: {{loss: {loss}}}
"""


def program(input="tokens", units=3, activation="softmax", loss="sparse_categorical_crossentropy"):
    return program_of(SPEC.format(input=input, units=units, activation=activation, loss=loss))


@pytest.mark.parametrize(
    ("activation", "loss", "moved"),
    [
        ("softmax", "sparse_categorical_crossentropy", "softmax"),
        ("softmax", "categorical_crossentropy", "softmax"),
        ("sigmoid", "binary_crossentropy", "sigmoid"),
        ("softmax", "mse", None),
        ("sigmoid", "sparse_categorical_crossentropy", None),
    ],
)
def test_the_compiler_moves_the_activation_only_under_its_cross_entropy(activation, loss, moved):
    p = program(activation=activation, loss=loss)
    assert p.output_activation == moved
    assert p.node("dense").op.activation == ("linear" if moved else activation)
    assert p.training.from_logits == bool(moved)


def test_the_reference_still_returns_probabilities():
    p = program()
    rng = np.random.default_rng(0)
    state = {w.name: rng.normal(size=w.shape) for w in p.weights}
    out = reference.forward(p, state, {"tokens": rng.integers(0, 9, (5, 4))})
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert (out > 0).all()


@pytest.mark.parametrize("backend", installed())
def test_the_loss_is_exact_where_clipping_would_lose_it(backend, tmp_path):
    """Logits (100, -100, 0) for label 1: the exact cross-entropy is 200 (a clipped probability
    would give -log(1e-7) = 16.1 and no gradient)."""
    p = program()
    runtime, _ = generated_model(p, backend, tmp_path)
    module = runtime.load_module(tmp_path / "model.py")
    logits = np.array([[100.0, -100.0, 0.0]])
    if backend == "torch":
        import torch

        loss = module.loss_fn(torch.tensor([1]), torch.tensor(logits)).item()
    else:
        loss = float(module.loss_fn(np.array([1]), logits))
    assert loss == pytest.approx(200.0, rel=1e-12)


@pytest.mark.parametrize("backend", installed())
def test_the_model_returns_probabilities_and_logits_on_request(backend, tmp_path):
    p = program()
    runtime, model = generated_model(p, backend, tmp_path)
    rng = np.random.default_rng(1)
    state = {w.name: rng.normal(size=w.shape) for w in p.weights}
    runtime.set_state(model, state)
    ids = rng.integers(0, 9, (6, 4))
    probabilities = runtime.forward(model, {"tokens": ids})
    np.testing.assert_allclose(
        probabilities, reference.forward(p, state, {"tokens": ids}), atol=1e-12
    )
    if backend == "torch":
        import torch

        logits = model(torch.tensor(ids), logits=True).detach().numpy()
    else:
        logits = np.asarray(model({"tokens": ids}, logits=True))
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(exp / exp.sum(axis=1, keepdims=True), probabilities, atol=1e-12)


def test_an_input_called_logits_keeps_its_name(tmp_path):
    """The keyword that asks for the logits steps aside (``logits_``) for an input of that name;
    the parity harness and train.py find it."""
    pytest.importorskip("torch")
    from nnspec import backends

    p = program(input="logits")
    source = backends.get("torch").generate(p)["model.py"]
    assert "def forward(self, logits: torch.Tensor, logits_: bool = False)" in source
    check(compare(p, dtype="float64", steps=2))
