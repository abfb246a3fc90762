"""Every example: the frameworks' own parameter counts equal `nnspec summary`'s, and the
memory-network language model learns (loss well below the unigram entropy of its text)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from nnspec import backends
from nnspec.compiler import compile_file
from nnspec.parity import generate_all, installed
from nnspec.synthetic import language_model_windows, markov_text, unigram_entropy
from tests.conftest import EXAMPLE_NAMES, EXAMPLES

pytest.importorskip("torch")
pytest.importorskip("tensorflow")


def framework_counts(backend: str, model) -> tuple[int, int]:
    """(trainable, frozen) as the framework itself reports them."""
    if backend == "torch":
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        # Batch-norm moving statistics are buffers in torch, non-trainable weights in Keras.
        frozen += sum(
            b.numel()
            for n, b in model.named_buffers()
            if n.endswith(("running_mean", "running_var"))
        )
        return trainable, frozen
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    frozen = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    return trainable, frozen


@pytest.mark.parametrize("backend", ["torch", "keras"])
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_summary_counts_equal_the_frameworks(name, backend):
    program, _ = compile_file(EXAMPLES / name / "spec.yaml")
    runtime = backends.get(backend).runtime()
    module = runtime.load_module(EXAMPLES / name / backend / "model.py")
    model = runtime.build(module, "float32")
    assert framework_counts(backend, model) == (program.trainable_count, program.frozen_count)


@pytest.mark.parametrize("backend", installed())
def test_memn2n_language_model_learns_with_temporal_encoding(backend):
    program, _ = compile_file(EXAMPLES / "memn2n_lm" / "spec.yaml")
    op = program.nodes[0].op
    assert op.hops[0].TA is not None  # temporal encoding is on
    text = markov_text(op.vocab_size, 30_000, seed=1)
    memories, labels = language_model_windows(text, op.memory_size, op.sentence_length)
    entropy = unigram_entropy(text)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(250):
        idx = rng.integers(0, len(labels), size=64)
        batches.append(({"context": memories[idx]}, labels[idx]))
    with tempfile.TemporaryDirectory() as tmp:
        path = generate_all(program, Path(tmp), [backend])[backend]
        runtime = backends.get(backend).runtime()
        module = runtime.load_module(path)
        model = runtime.build(module, "float32")
        losses = runtime.train(module, model, batches)
    final = float(np.mean(losses[-25:]))
    # The text's unigram entropy is ~3.9 nats; reading the previous words gets far below it.
    assert final < entropy - 1.0, (final, entropy)
