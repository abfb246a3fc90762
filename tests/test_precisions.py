"""Every example, and every masked layer, in mixed precision: Keras ``mixed_float16`` /
``mixed_bfloat16`` policies and PyTorch CPU autocast to float16 / bfloat16, against the same
model in float32.

Each model loads the float32 model's canonical weights and runs a batch from
:func:`nnspec.parity.random_batch`, whose padded tails reach the attention and memory-network
masks and whose last example is all padding (a row with no valid key or memory, where an
additive ``-1e9`` mask once gave NaN in float16). Outputs and the gradients of
``sum(output * cotangent)`` must be finite and close to float32's.

Tolerance. A low-precision run rounds the weights, each layer's inputs and each layer's result
to the dtype, every rounding a relative error of at most ``u`` (the unit round-off: ``2**-11``
for float16, ``2**-8`` for bfloat16; float32's own ``2**-24`` is negligible next to them). Along
an example's longest path (the transformer: embedding, 2 blocks of attention, feed-forward and
2 layer norms, pooling, 2 dense layers: 12 rounding layers) with gains near 1, the rounding
errors of the outputs add up to about ``12 u``: outputs may differ by :data:`OUTPUT_ULPS` = 16
``u`` (scaled max difference, :func:`nnspec.parity.scaled_diff`).

Gradients are not continuous in a ReLU network: a rounding that moves a pre-activation across 0
switches the unit's gate for that example, and the gradient changes by the example's whole share
through that unit -- a single entry (a bias) can change sign. So gradients are compared as one
vector, by the relative L2 norm of the difference, ``|g - g32| / |g32|``: the rounding errors
of the forward pass, twice (forward, then back through the same layers), ``2 x 16 u``, plus the
gates that flip. Their share is what rounding of size ``u`` makes of the pre-activations within
about ``u`` of 0 (a share of order ``u`` of the units, each flip an example's whole share of a
unit's gradient); :data:`GRADIENT_ULPS` = 64 ``u`` allows as much again.

Measured (the batch below, in units of ``u``): outputs at most 1.8 u (torch, rotary transformer
blocks, bfloat16); gradients at most 15 u (Keras, rotary transformer blocks, bfloat16), except
the Keras model of ``glove_special_tokens``: 25 u in float16 and 41 u in bfloat16 (its average
pooling sums 30 positions in the compute dtype, where PyTorch's autocast sums in float32, and
the dense ReLU layer after it flips gates). A mask that lets a padded key or an all-padding row
go wrong is off by order 1 (or NaN): hundreds of ``u`` in bfloat16, thousands in float16.
"""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from nnspec import reference
from nnspec.compiler import compile_spec, ir
from nnspec.parity import generate_all, input_vocab, random_batch, random_state, scaled_diff
from nnspec.spec import load_string
from tests import ir_examples, ir_examples_arch
from tests.conftest import EXAMPLE_NAMES
from tests.parity_helpers import example_at_test_size
from tests.test_attention_pool import PARITY as ATTENTION_POOL_SPECS

for framework in ("torch", "tensorflow"):
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed", allow_module_level=True)

from nnspec import backends  # noqa: E402

UNIT_ROUNDOFF = {"float16": 2.0**-11, "bfloat16": 2.0**-8}
OUTPUT_ULPS = 16
GRADIENT_ULPS = 64
BATCH = 8

Run = tuple[np.ndarray, dict[str, np.ndarray]]


def attention_pool() -> ir.Program:
    """Attention pooling over padded embeddings (``tests/test_attention_pool.py``)."""
    return compile_spec(*load_string(ATTENTION_POOL_SPECS["padded"], "attention_pool.yaml"))


# Every example, and the masked layers no example has: max pooling, attention pooling, rotary
# attention in pre- and post-norm blocks, memory networks over sentences with a question.
PROGRAMS = {name: partial(example_at_test_size, name) for name in EXAMPLE_NAMES} | {
    "max_pool": ir_examples.sinusoidal_max_pool,
    "attention_pool": attention_pool,
    "transformer_blocks": ir_examples_arch.transformer,
    "memn2n_question": ir_examples_arch.memn2n,
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Per example: the model.py paths, float32 canonical weights, a batch and a cotangent."""
    root = tmp_path_factory.mktemp("precisions")
    out = {}
    for name, make in PROGRAMS.items():
        program = make()
        rng = np.random.default_rng(17)
        state = random_state(program, rng)
        inputs, _ = random_batch(program, rng, BATCH)
        cotangent = rng.normal(size=reference.forward(program, state, inputs).shape)
        state = {k: v.astype(np.float32) for k, v in state.items()}
        paths = generate_all(program, root / name, ["keras", "torch"])
        out[name] = (program, paths, state, inputs, cotangent)
    return out


def keras_run(model_py: Path, dtype: str, state, inputs, cotangent) -> Run:
    """Outputs and canonical gradients of the Keras model under the policy ``mixed_<dtype>``
    (plain ``float32`` for float32)."""
    import tensorflow as tf

    runtime = backends.get("keras").runtime()
    policy = dtype if dtype == "float32" else f"mixed_{dtype}"
    model = runtime.load_module(model_py).build_model(policy)
    model.load_canonical_state(state)
    with tf.GradientTape() as tape:
        output = tf.cast(model(inputs, training=False), tf.float32)
        total = tf.reduce_sum(output * cotangent.astype(np.float32))
    grads = model.canonical_gradients(tape.gradient(total, model.trainable_variables))
    grads = {k: np.asarray(g, np.float64) for k, g in grads.items()}
    return np.asarray(output, np.float64), grads


def torch_run(model_py: Path, dtype: str, state, inputs, cotangent) -> Run:
    """Outputs and canonical gradients of the float32 PyTorch model, under CPU autocast to
    ``dtype`` unless it is ``float32``."""
    import torch

    runtime = backends.get("torch").runtime()
    model = runtime.load_module(model_py).build_model("float32")
    model.load_canonical_state(state)
    model.eval()
    tensors = {name: torch.tensor(ids) for name, ids in inputs.items()}
    with torch.autocast("cpu", dtype=getattr(torch, dtype), enabled=dtype != "float32"):
        output = model(**tensors).float()
    (output * torch.tensor(cotangent, dtype=torch.float32)).sum().backward()
    grads = model.canonical_gradients()
    grads = {k: np.asarray(g, np.float64) for k, g in grads.items()}
    return output.detach().double().numpy(), grads


RUNS = {"keras": keras_run, "torch": torch_run}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("backend", sorted(RUNS))
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_mixed_precision_is_finite_and_close_to_float32(cases, name, backend, dtype) -> None:
    program, paths, state, inputs, cotangent = cases[name]
    # The batch has padded tails and its last example is all padding.
    pads = {name: pad for name, (_, pad) in input_vocab(program).items() if pad is not None}
    assert pads and all((inputs[name][-1] == pad).all() for name, pad in pads.items())
    run = RUNS[backend]
    out32, grads32 = run(paths[backend], "float32", state, inputs, cotangent)
    out, grads = run(paths[backend], dtype, state, inputs, cotangent)
    assert set(grads) == set(grads32)
    assert np.isfinite(out).all(), f"{np.sum(~np.isfinite(out).all(-1))} non-finite rows"
    bad = [k for k, g in grads.items() if not np.isfinite(g).all()]
    assert not bad, f"non-finite gradients of {bad}"
    u = UNIT_ROUNDOFF[dtype]
    assert scaled_diff(out, out32) <= OUTPUT_ULPS * u
    names = sorted(grads)
    vector = np.concatenate([grads[name].ravel() for name in names])
    vector32 = np.concatenate([grads32[name].ravel() for name in names])
    relative = np.linalg.norm(vector - vector32) / np.linalg.norm(vector32)
    assert relative <= GRADIENT_ULPS * u, f"{relative / u:.1f} u"
