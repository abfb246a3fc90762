"""Hand-built IR programs covering every v1 op and policy, for backend unit tests.

They are what the compiler produces for small specs; backend tests use them so that a backend can
be tested on its own.
"""

from __future__ import annotations

import math

from nnspec.compiler import ir

GLOROT = ir.Initializer("glorot_uniform")
ZEROS = ir.Initializer("zeros")
EMB_INIT = ir.Initializer("uniform", low=-0.05, high=0.05)


def _dense(name: str, inp: str, shape: ir.Shape, units: int, act: ir.Activation, mask=None):
    node = ir.Node(
        name=name,
        op=ir.Dense(units=units, activation=act, kernel=f"{name}.kernel", bias=f"{name}.bias"),
        inputs=(inp,),
        shape=(*shape[:-1], units),
        mask=mask,
    )
    weights = (
        ir.Weight(f"{name}.kernel", (int(shape[-1]), units), GLOROT),
        ir.Weight(f"{name}.bias", (units,), ZEROS),
    )
    return node, weights


def flat_classifier(
    vocab: int = 50, length: int = 12, dim: int = 8, classes: int = 5, optimizer: str = "adam"
) -> ir.Program:
    """Problem 1 in miniature: padded embedding, flatten, dense relu, dropout, dense softmax."""
    mask = ir.Mask("tokens", 0)
    table = ir.EmbeddingTable("words", vocab, dim, weight="words.embeddings", pad_index=0)
    emb = ir.Node(
        "words_lookup", ir.EmbeddingLookup("words"), ("tokens",), (None, length, dim), mask
    )
    flat = ir.Node("flatten", ir.Flatten(), ("words_lookup",), (None, length * dim))
    d1, w1 = _dense("dense", "flatten", flat.shape, 6, "relu")
    drop = ir.Node("dropout", ir.Dropout(0.3), ("dense",), d1.shape)
    d2, w2 = _dense("dense_1", "dropout", drop.shape, classes, "softmax")
    weights = (ir.Weight("words.embeddings", (vocab, dim), EMB_INIT, zero_rows=(0,)), *w1, *w2)
    return ir.Program(
        name="flat_classifier",
        class_name="FlatClassifier",
        spec_hash="0" * 16,
        version="0.1.0",
        inputs=(ir.Input("tokens", length),),
        tables=(table,),
        nodes=(emb, flat, d1, drop, d2),
        outputs=("dense_1",),
        weights=weights,
        training=ir.Training(
            loss="sparse_categorical_crossentropy",
            optimizer=ir.Optimizer(optimizer, lr=0.01, momentum=0.9, weight_decay=0.01),
            batch_size=8,
            epochs=2,
        ),
    )


def special_rows_pooled(vocab: int = 40, length: int = 10, dim: int = 6) -> ir.Program:
    """Problem 2: frozen table with trainable special rows (the highest ids) and row 3, learned
    positions, masked average pooling, a sigmoid output under binary cross-entropy, AdamW."""
    mask = ir.Mask("tokens", 0)
    table = ir.EmbeddingTable(
        "glove",
        vocab,
        dim,
        weight="glove.embeddings",
        pad_index=0,
        positional=ir.LearnedPositional(max_length=length, weight="glove.positional"),
    )
    emb = ir.Node(
        "glove_lookup", ir.EmbeddingLookup("glove"), ("tokens",), (None, length, dim), mask
    )
    pool = ir.Node("pool", ir.GlobalPool("average"), ("glove_lookup",), (None, dim))
    out, w = _dense("out", "pool", pool.shape, 1, "sigmoid")
    weights = (
        ir.Weight(
            "glove.embeddings",
            (vocab, dim),
            ir.Initializer("normal", mean=0.0, std=0.1),
            trainable="rows",
            trainable_rows=((3, 4), (vocab - 4, vocab)),
            zero_rows=(0,),
        ),
        ir.Weight("glove.positional", (length, dim), ir.Initializer("normal", std=0.02)),
        *w,
    )
    return ir.Program(
        name="special_rows_pooled",
        class_name="SpecialRowsPooled",
        spec_hash="1" * 16,
        version="0.1.0",
        inputs=(ir.Input("tokens", length),),
        tables=(table,),
        nodes=(emb, pool, out),
        outputs=("out",),
        weights=weights,
        training=ir.Training(
            loss="binary_crossentropy",
            optimizer=ir.Optimizer("adamw", lr=0.01, weight_decay=0.1),
            batch_size=4,
            epochs=1,
        ),
    )


def sinusoidal_max_pool(vocab: int = 30, length: int = 9, dim: int = 8) -> ir.Program:
    """Fixed sinusoids scaled by sqrt(dim), masked max pooling, a per-position dense with gelu,
    a frozen table (trainable: false), and SGD with Nesterov momentum under categorical CE."""
    mask = ir.Mask("ids", 0)
    table = ir.EmbeddingTable(
        "tok",
        vocab,
        dim,
        weight="tok.embeddings",
        pad_index=0,
        scale=math.sqrt(dim),
        positional=ir.SinusoidalPositional(max_length=16),
    )
    emb = ir.Node("tok_lookup", ir.EmbeddingLookup("tok"), ("ids",), (None, length, dim), mask)
    hidden, wh = _dense("hidden", "tok_lookup", emb.shape, 7, "gelu", mask)
    pool = ir.Node("pool", ir.GlobalPool("max"), ("hidden",), (None, 7))
    out, wo = _dense("out", "pool", pool.shape, 3, "softmax")
    weights = (
        ir.Weight(
            "tok.embeddings",
            (vocab, dim),
            ir.Initializer("normal", std=0.1),
            trainable="none",
            zero_rows=(0,),
        ),
        *wh,
        *wo,
    )
    return ir.Program(
        name="sinusoidal_max_pool",
        class_name="SinusoidalMaxPool",
        spec_hash="2" * 16,
        version="0.1.0",
        inputs=(ir.Input("ids", length),),
        tables=(table,),
        nodes=(emb, hidden, pool, out),
        outputs=("out",),
        weights=weights,
        training=ir.Training(
            loss="categorical_crossentropy",
            optimizer=ir.Optimizer("sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
            batch_size=4,
            epochs=1,
        ),
    )


ALL = (flat_classifier, special_rows_pooled, sinusoidal_max_pool)
