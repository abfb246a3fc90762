"""Cross-backend parity: the same canonical weights and batches in PyTorch and Keras give the same
outputs, gradients and weights after 5 optimizer steps, for every op and policy.

Tolerances (stated in :data:`nnspec.parity.TOLERANCES`, on max |diff| / max(1, max |value|)):
float64 1e-10 for outputs and gradients, 1e-9 for weights after training (a mismatch there can
only be a semantic difference); float32 1e-6 outputs, 1e-5 gradients and trained weights.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnspec.compiler import compile_file, compile_spec
from nnspec.parity import compare, random_state
from nnspec.spec import load_string
from tests import ir_examples
from tests.conftest import EXAMPLE_NAMES, EXAMPLES

pytest.importorskip("torch")
pytest.importorskip("tensorflow")


def spec(
    layers: str,
    table: str = "padding: {index: 0}",
    loss: str = "sparse_categorical_crossentropy",
    optimizer: str = "{type: adam, lr: 0.0625}",
    extra: str = "",
    length: int = 7,
):
    text = f"""
nnspec: 1
name: parity_case
inputs:
  tokens: {{length: {length}}}
embeddings:
  words: {{vocab_size: 23, dim: 6, {table}}}
model:
  layers:
    - {{type: embedding, table: words}}
{layers}
training:
  loss: {loss}
  optimizer: {optimizer}
{extra}
"""
    parsed, doc = load_string(text, "case.yaml")
    return compile_spec(parsed, doc)


FLAT = "    - {type: flatten}\n    - {type: dense, units: 4, activation: softmax}"
AVG = "    - {type: global_average_pool}\n    - {type: dense, units: 4, activation: softmax}"
MAX = "    - {type: global_max_pool}\n    - {type: dense, units: 4, activation: softmax}"

CASES = {
    # one op or policy each, on top of a minimal model
    "flatten_dense_softmax": spec(FLAT),
    "masked_average_pool": spec(AVG),
    "masked_max_pool": spec(MAX),
    "no_padding": spec(AVG, table="initializer: {type: normal, std: 0.3}"),
    "frozen_table": spec(AVG, table="padding: {index: 0}, trainable: false"),
    "trainable_rows": spec(
        AVG, table="padding: {index: 0}, trainable: {ids: [2, 5], ranges: [[10, 14]]}"
    ),
    "special_token_rows": spec(
        FLAT,
        table="padding: {index: 0}, special_tokens: [oov, bos], trainable: {special_tokens: true}",
    ),
    "sinusoidal": spec(AVG, table="padding: {index: 0}, positional: {type: sinusoidal}"),
    "sinusoidal_scaled_long_table": spec(
        FLAT,
        table="padding: {index: 0}, scale: sqrt_dim,"
        " positional: {type: sinusoidal, max_length: 50}",
    ),
    "learned_positional": spec(MAX, table="padding: {index: 0}, positional: {type: learned}"),
    "positional_pads_not_zeroed": spec(
        FLAT,
        table="padding: {index: 0}, positional: {type: learned}, zero_padded_positions: false",
    ),
    "positional_with_row_selection": spec(
        AVG,
        table="padding: {index: 3}, trainable: {ranges: [[0, 8]]}, positional: {type: learned}",
    ),
    **{
        f"activation_{act}": spec(f"    - {{type: dense, units: 5, activation: {act}}}\n" + AVG)
        for act in ("linear", "relu", "gelu", "tanh", "sigmoid")
    },
    "dense_without_bias": spec(
        "    - {type: flatten}\n    - {type: dense, units: 4, activation: softmax, use_bias: false}"
    ),
    "dropout_is_identity_in_inference": spec(
        "    - {type: flatten}\n    - {type: dropout, rate: 0.5}\n"
        "    - {type: dense, units: 4, activation: softmax}"
    ),
    "sgd_momentum": spec(FLAT, optimizer="{type: sgd, lr: 0.5, momentum: 0.875}"),
    "sgd_nesterov_weight_decay": spec(
        FLAT, optimizer="{type: sgd, lr: 0.5, momentum: 0.875, nesterov: true, weight_decay: 0.125}"
    ),
    "adam_weight_decay": spec(
        FLAT, optimizer="{type: adam, lr: 0.0625, weight_decay: 0.25, eps: 0.0078125}"
    ),
    "adamw": spec(FLAT, optimizer="{type: adamw, lr: 0.0625, weight_decay: 0.25}"),
    "adamw_frozen_rows": spec(
        AVG,
        table="padding: {index: 0}, trainable: {ids: [1, 2, 3]}",
        optimizer="{type: adamw, lr: 0.0625, weight_decay: 0.5}",
    ),
    "clip_norm": spec(FLAT, extra="  clip_norm: 0.25"),
    "categorical_crossentropy": spec(FLAT, loss="categorical_crossentropy"),
    "from_logits": spec(
        "    - {type: flatten}\n    - {type: dense, units: 4}", extra="  from_logits: true"
    ),
    "binary_crossentropy": spec(
        "    - {type: global_average_pool}\n    - {type: dense, units: 1, activation: sigmoid}",
        loss="binary_crossentropy",
    ),
    "binary_from_logits": spec(
        "    - {type: global_average_pool}\n    - {type: dense, units: 3}",
        loss="binary_crossentropy",
        extra="  from_logits: true",
    ),
    "mse": spec("    - {type: global_max_pool}\n    - {type: dense, units: 2}", loss="mse"),
}


def check(report):
    assert not report.failures(), "; ".join(report.failures())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_spec_case_parity(name, dtype):
    check(compare(CASES[name], dtype=dtype, steps=5, batch=5))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("build", ir_examples.ALL, ids=lambda f: f.__name__)
def test_ir_example_parity(build, dtype):
    check(compare(build(), dtype=dtype, steps=5, batch=4))


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_parity(name):
    program, _ = compile_file(EXAMPLES / name / "spec.yaml")
    check(compare(program, dtype="float32", steps=2, batch=2))


def test_policies_hold_after_training_in_both_backends():
    """After AdamW with weight decay: pad rows exactly 0.0 and frozen rows bit-identical, in
    both backends' trained weights."""
    from nnspec import backends

    program = CASES["adamw_frozen_rows"]
    rng = np.random.default_rng(1)
    start = random_state(program, rng)
    from nnspec.parity import generate_all, random_batch

    batches = [random_batch(program, rng, 6) for _ in range(5)]
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        paths = generate_all(program, Path(tmp), ["torch", "keras"])
        for name, path in paths.items():
            runtime = backends.get(name).runtime()
            module = runtime.load_module(path)
            model = runtime.build(module, "float32")
            runtime.set_state(model, {k: v.astype("float32") for k, v in start.items()})
            runtime.train(module, model, batches)
            table = runtime.get_state(model)["words.embeddings"]
            before = start["words.embeddings"].astype("float32")
            assert np.all(table[0] == 0.0), name
            frozen = [i for i in range(23) if i not in (1, 2, 3)]
            assert np.array_equal(table[frozen], before[frozen]), name
            assert not np.allclose(table[[1, 2, 3]], before[[1, 2, 3]]), name
