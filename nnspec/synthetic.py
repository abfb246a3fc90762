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


def write_npz(program: ir.Program, path: Path, n_train: int, n_val: int, seed: int = 0) -> Path:
    """Write a train/validation ``.npz`` in the layout the generated ``train.py`` reads."""
    x, y = topic_documents(program, n_train + n_val, seed)
    arrays = {name: v[:n_train] for name, v in x.items()}
    arrays["labels"] = y[:n_train]
    arrays.update({f"val_{name}": v[n_train:] for name, v in x.items()})
    arrays["val_labels"] = y[n_train:]
    if program.training.loss == "categorical_crossentropy":
        classes = int(program.node(program.outputs[0]).shape[-1] or 2)
        arrays["labels"] = np.eye(classes, dtype=np.float32)[arrays["labels"]]
        arrays["val_labels"] = np.eye(classes, dtype=np.float32)[arrays["val_labels"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path
