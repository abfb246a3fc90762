"""``shared_offset`` against the two-table trick it replaces, hand-written in each framework.

The spec: a table whose word rows are frozen, whose special-token rows train, and whose ordinary
words share one trainable offset (``shared_offset: {words: true}``). The hand-written model, in
PyTorch and in Keras with stock layers, is the original two-table form: a frozen table holding
the word vectors (special rows 0.0) plus a small trainable table -- row 0 the shared offset,
then one row per special token, and a last row of 0.0 for the pad -- looked up through an id
map. Both start from the same weights (the two tables built from the canonical ones) and take
the same batches; compared in float64, within 1e-12 of max(1, max|value|): outputs, gradients
(the offset's against the shared row's) and the weights after 5 SGD steps (Keras: stock SGD) and
5 Adam steps (PyTorch: stock ``torch.optim.Adam``). Frozen rows must stay bit-identical and the
pad row exactly 0.0.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnspec import backends
from nnspec.compiler import compile_spec
from nnspec.parity import random_batch, random_state, scaled_diff
from nnspec.spec import load_string

TOLERANCE = 1e-12
VOCAB, DIM, LENGTH, CLASSES, SPECIALS = 17, 5, 6, 3, 2
STEPS, BATCH = 5, 6

SPEC = f"""
nnspec: 1
name: two_tables
inputs:
  tokens: {{length: {LENGTH}}}
embeddings:
  words:
    vocab_size: {VOCAB}
    dim: {DIM}
    padding: {{index: 0}}
    special_tokens: [oov, bos]
    trainable: {{special_tokens: true}}
    shared_offset: {{words: true}}
model:
  layers:
    - {{type: embedding, table: words}}
    - {{type: flatten}}
    - {{type: dense, units: {CLASSES}, activation: softmax}}
training:
  loss: sparse_categorical_crossentropy
  optimizer: %s
"""
SGD = "{type: sgd, lr: 0.5}"
ADAM = "{type: adam, lr: 0.0625}"

FIRST_SPECIAL = VOCAB - SPECIALS
# The hand-written id map into the small trainable table.
INDEX = np.array([SPECIALS + 1] + [0] * (FIRST_SPECIAL - 1) + [1 + i for i in range(SPECIALS)])


def two_tables(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The canonical weights as the hand-written model's tables."""
    frozen = state["words.embeddings"].copy()
    frozen[FIRST_SPECIAL:] = 0.0
    small = np.zeros((SPECIALS + 2, DIM))
    small[0] = state["words.offset"]
    small[1 : SPECIALS + 1] = state["words.embeddings"][FIRST_SPECIAL:]
    return {
        "frozen": frozen,
        "small": small,
        "kernel": state["dense.kernel"],
        "bias": state["dense.bias"],
    }


def as_canonical(hand: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The hand-written model's weights back under the canonical names."""
    table = hand["frozen"].copy()
    table[FIRST_SPECIAL:] = hand["small"][1 : SPECIALS + 1]
    return {
        "words.embeddings": table,
        "words.offset": hand["small"][0],
        "dense.kernel": hand["kernel"],
        "dense.bias": hand["bias"],
    }


def program(optimizer: str):
    return compile_spec(*load_string(SPEC % optimizer, "two_tables.yaml"))


def recipe(optimizer: str):
    prog = program(optimizer)
    rng = np.random.default_rng(7)
    state = random_state(prog, rng)
    inputs, _ = random_batch(prog, rng, BATCH)
    cotangent = rng.normal(size=(BATCH, CLASSES))
    batches = [random_batch(prog, rng, BATCH) for _ in range(STEPS)]
    return prog, state, inputs, cotangent, batches


def generated(prog, backend: str, tmp_path, state):
    files = backends.get(backend).generate(prog)
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    runtime = backends.get(backend).runtime()
    module = runtime.load_module(tmp_path / "model.py")
    model = runtime.build(module, "float64")
    runtime.set_state(model, state)
    return runtime, module, model


def hand_torch(weights: dict[str, np.ndarray], optimizer: str, inputs, cotangent, batches):
    """The two-table model in PyTorch: its output, gradients and trained weights."""
    import torch
    from torch import nn

    class TwoTables(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            t = {k: torch.tensor(v) for k, v in weights.items()}
            self.frozen = nn.Embedding.from_pretrained(t["frozen"], freeze=True)
            self.small = nn.Embedding(SPECIALS + 2, DIM, padding_idx=SPECIALS + 1)
            self.small.weight = nn.Parameter(t["small"].clone())
            self.dense = nn.Linear(LENGTH * DIM, CLASSES).double()
            with torch.no_grad():
                self.dense.weight.copy_(t["kernel"].T)
                self.dense.bias.copy_(t["bias"])
            self.register_buffer("index", torch.tensor(INDEX))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h = self.frozen(ids) + self.small(self.index[ids])
            return torch.softmax(self.dense(h.flatten(1)), dim=-1)

    def state(model: TwoTables) -> dict[str, np.ndarray]:
        return {
            "frozen": model.frozen.weight.detach().numpy().copy(),
            "small": model.small.weight.detach().numpy().copy(),
            "kernel": model.dense.weight.detach().numpy().T.copy(),
            "bias": model.dense.bias.detach().numpy().copy(),
        }

    model = TwoTables()
    ids = torch.tensor(inputs["tokens"]).long()
    output = model(ids)
    (output * torch.tensor(cotangent)).sum().backward()
    grads = {
        "small": model.small.weight.grad.numpy().copy(),
        "kernel": model.dense.weight.grad.numpy().T.copy(),
        "bias": model.dense.bias.grad.numpy().copy(),
    }
    model.zero_grad()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (
        torch.optim.SGD(params, lr=0.5)
        if optimizer == SGD
        else torch.optim.Adam(params, lr=0.0625, eps=1e-8)
    )
    for x, y in batches:
        opt.zero_grad()
        p = model(torch.tensor(x["tokens"]).long())
        loss = torch.nn.functional.nll_loss(torch.log(p.clamp(1e-7, 1 - 1e-7)), torch.tensor(y))
        loss.backward()
        opt.step()
    return output.detach().numpy(), grads, state(model)


def hand_keras(weights: dict[str, np.ndarray], inputs, cotangent, batches):
    """The two-table model in Keras (stock layers, stock SGD): output, gradients, weights."""
    import keras
    import tensorflow as tf

    frozen = keras.layers.Embedding(VOCAB, DIM, trainable=False, dtype="float64")
    small = keras.layers.Embedding(SPECIALS + 2, DIM, dtype="float64")
    dense = keras.layers.Dense(CLASSES, activation="softmax", dtype="float64")
    index = tf.constant(INDEX)

    def forward(ids):
        # Keras has no padding_idx: the pad row stays 0.0 by multiplying by ids != 0.
        not_pad = tf.cast(tf.not_equal(ids, 0), "float64")[..., None]
        h = (frozen(ids) + small(tf.gather(index, ids))) * not_pad
        return dense(tf.reshape(h, (-1, LENGTH * DIM)))

    forward(inputs["tokens"])  # builds the layers
    frozen.set_weights([weights["frozen"]])
    small.set_weights([weights["small"]])
    dense.set_weights([weights["kernel"], weights["bias"]])
    trainable = [small.embeddings, dense.kernel, dense.bias]
    with tf.GradientTape() as tape:
        output = forward(inputs["tokens"])
        total = tf.reduce_sum(output * cotangent)
    g = tape.gradient(total, trainable)
    grads = {
        "small": tf.convert_to_tensor(g[0]).numpy(),
        "kernel": g[1].numpy(),
        "bias": g[2].numpy(),
    }
    opt = keras.optimizers.SGD(learning_rate=0.5)
    for x, y in batches:
        with tf.GradientTape() as tape:
            p = tf.clip_by_value(forward(x["tokens"]), 1e-7, 1 - 1e-7)
            picked = tf.gather(p, y, batch_dims=1)
            loss = -tf.reduce_mean(tf.math.log(picked))
        opt.apply(tape.gradient(loss, trainable), trainable)
    state = {
        "frozen": frozen.embeddings.numpy(),
        "small": small.embeddings.numpy(),
        "kernel": dense.kernel.numpy(),
        "bias": dense.bias.numpy(),
    }
    return output.numpy(), grads, state


def check(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    for name, value in want.items():
        diff = scaled_diff(got[name], value)
        assert diff <= TOLERANCE, f"{name}: {diff:.2e} > {TOLERANCE:.0e}"


@pytest.mark.parametrize(
    ("backend", "optimizer"), [("torch", SGD), ("torch", ADAM), ("keras", SGD)]
)
def test_shared_offset_is_the_two_table_model(backend, optimizer, tmp_path):
    pytest.importorskip("torch" if backend == "torch" else "tensorflow")
    prog, state, inputs, cotangent, batches = recipe(optimizer)
    runtime, module, model = generated(prog, backend, tmp_path, state)
    hand = two_tables(state)
    if backend == "torch":
        out, grads, trained = hand_torch(hand, optimizer, inputs, cotangent, batches)
    else:
        out, grads, trained = hand_keras(hand, inputs, cotangent, batches)

    assert scaled_diff(runtime.forward(model, inputs), out) <= TOLERANCE
    mine = runtime.gradients(model, inputs, cotangent)
    check(
        {
            "offset": mine["words.offset"],
            "specials": mine["words.embeddings"][FIRST_SPECIAL:],
            "kernel": mine["dense.kernel"],
            "bias": mine["dense.bias"],
        },
        {
            "offset": grads["small"][0],
            "specials": grads["small"][1 : SPECIALS + 1],
            "kernel": grads["kernel"],
            "bias": grads["bias"],
        },
    )
    assert np.abs(grads["small"][0]).max() > 1e-3  # the offset's gradient is not trivially 0

    runtime.train(module, model, batches)
    after = runtime.get_state(model)
    assert np.all(trained["small"][SPECIALS + 1] == 0.0)  # the hand model's pad row
    check(after, as_canonical(trained))
    table, start = after["words.embeddings"], state["words.embeddings"]
    assert np.all(table[0] == 0.0)
    assert np.array_equal(table[1:FIRST_SPECIAL], start[1:FIRST_SPECIAL])  # frozen: bit-identical
    assert scaled_diff(table[FIRST_SPECIAL:], start[FIRST_SPECIAL:]) > 1e-3  # specials trained
    assert scaled_diff(after["words.offset"], state["words.offset"]) > 1e-3  # the offset trained
