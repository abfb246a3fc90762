"""Small, learnable token-classification data made by the project (no download needed).

Each class owns a few "topic" words. A document opens with a short class-specific header (as
newsgroup posts open with their headers), continues with a mix of topic words and common words,
and is padded with the pad id to the input length. Lengths vary, so padding matters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnspec.compiler import ir
from nnspec.parity import input_vocab
from nnspec.text import language_model_windows  # re-exported: it lives with the text tools


def topic_documents(
    program: ir.Program, n: int, seed: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``n`` documents for every input of ``program`` and integer class labels."""
    rng = np.random.default_rng(seed)
    classes = int(program.node(program.outputs[0]).shape[-1] or 2)
    labels = rng.integers(0, classes, size=n)
    inputs = {}
    for inp in program.inputs:
        vocab, pad = input_vocab(program).get(inp.name, (100, None))
        first = 1 if pad == 0 else 0
        words = np.arange(first, vocab)
        topic = words[: classes * 8].reshape(classes, -1) if len(words) >= classes * 8 else None
        ids = np.full((n, inp.length), pad if pad is not None else 0, dtype=inp.dtype)
        lengths = rng.integers(max(4, inp.length // 10), inp.length + 1, size=n)
        for i in range(n):
            length = int(lengths[i])
            doc = rng.choice(words, size=length)
            if topic is not None:
                own = topic[labels[i]]
                doc[:3] = rng.choice(own, size=3)
                share = rng.random(length) < 0.15
                doc[share] = rng.choice(own, size=int(share.sum()))
            ids[i, :length] = doc
        inputs[inp.name] = ids
    return inputs, labels


def _language_model_data(
    program: ir.Program, n: int, seed: int
) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
    """Next-word data for a memory-network language model (one input of memories)."""
    ops = [node.op for node in program.nodes if isinstance(node.op, ir.MemoryNetwork)]
    if len(program.inputs) != 1 or not ops or ops[0].query != "constant":
        return None
    op = ops[0]
    text = markov_text(op.vocab_size, n + 1, seed)
    memories, labels = language_model_windows(text, op.memory_size, op.sentence_length)
    memories = memories.reshape(len(memories), *program.inputs[0].dims)  # (N, M) word memories
    return {program.inputs[0].name: memories[:n]}, labels[:n]


def write_npz(program: ir.Program, path: Path, n_train: int, n_val: int, seed: int = 0) -> Path:
    """Write a train/validation ``.npz`` in the layout the generated ``train.py`` reads: topic
    documents for classifiers, next-word windows of Markov text for memory-network LMs."""
    data = _language_model_data(program, n_train + n_val, seed)
    x, y = data if data is not None else topic_documents(program, n_train + n_val, seed)
    arrays = {name: v[:n_train] for name, v in x.items()}
    arrays["labels"] = y[:n_train]
    arrays.update({f"val_{name}": v[n_train:] for name, v in x.items()})
    arrays["val_labels"] = y[n_train:]
    if program.training.loss == "categorical_crossentropy":
        classes = int(program.node(program.outputs[0]).shape[-1] or 2)
        arrays["labels"] = np.eye(classes, dtype=np.float32)[arrays["labels"]]
        arrays["val_labels"] = np.eye(classes, dtype=np.float32)[arrays["val_labels"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
    return path


def markov_text(vocab_size: int, n_words: int, seed: int = 0, successors: int = 3) -> np.ndarray:
    """Project-made "text": word ids ``1..vocab_size-1`` (0 is the pad) from a sparse random
    Markov chain in which each word has a few likely successors, plus 10% uniform noise. Its
    unigram entropy is high and its conditional entropy low, so a language model that reads
    its context learns visibly."""
    rng = np.random.default_rng(seed)
    words = np.arange(1, vocab_size)
    nexts = rng.choice(words, size=(vocab_size, successors))
    weights = rng.dirichlet(np.ones(successors), size=vocab_size)
    text = np.empty(n_words, dtype=np.int64)
    text[0] = rng.choice(words)
    noise = rng.random(n_words) < 0.1
    uniform = rng.choice(words, size=n_words)
    picks = rng.random(n_words)
    for i in range(1, n_words):
        if noise[i]:
            text[i] = uniform[i]
        else:
            cumulative = np.cumsum(weights[text[i - 1]])
            text[i] = nexts[
                text[i - 1], min(int(np.searchsorted(cumulative, picks[i])), successors - 1)
            ]
    return text


def unigram_entropy(text: np.ndarray) -> float:
    """Entropy (nats) of the word frequencies of ``text``: the loss of the best context-free
    language model."""
    counts = np.bincount(text)
    p = counts[counts > 0] / len(text)
    return float(-(p * np.log(p)).sum())
