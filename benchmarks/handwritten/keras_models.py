"""The example architectures written by hand in idiomatic Keras 3: the baselines of the benchmark.

Keras layers and stock optimizers (``keras.optimizers.Adam`` / ``AdamW`` with
``global_clipnorm``) and ``SparseCategoricalCrossentropy``, as an expert would write them: a
multiply by ``ids != 0`` where pads must embed to 0.0 (Keras' ``Embedding`` has no
``padding_idx``), the two-table trick for trainable special tokens, ``Bidirectional(LSTM)`` and
``MultiHeadAttention`` with masks. Sizes come from the example's spec.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import layers, ops

from benchmarks.handwritten import Handwritten
from nnspec.spec import Spec


def optimizer_for(spec: Spec) -> keras.optimizers.Optimizer:
    """The spec's optimizer, stock Keras, clipping with ``global_clipnorm``."""
    opt = spec.training.optimizer
    clip = {"global_clipnorm": spec.training.clip_norm} if spec.training.clip_norm else {}
    if opt.type == "sgd":
        return keras.optimizers.SGD(opt.lr, momentum=opt.momentum, nesterov=opt.nesterov, **clip)
    common = {"beta_1": opt.beta1, "beta_2": opt.beta2, "epsilon": opt.eps, **clip}
    if opt.type == "adamw":
        return keras.optimizers.AdamW(opt.lr, weight_decay=opt.weight_decay, **common)
    return keras.optimizers.Adam(opt.lr, **common)


def layers_of(spec: Spec, kind: str) -> list:
    """The spec's layers of type ``kind``, in order."""
    return [layer for layer in spec.model.layers if layer.type == kind]


def not_pad(ids, dtype="float32"):
    """``(B, ..., 1)``: 1.0 at real ids, 0.0 at pads (id 0)."""
    return ops.expand_dims(ops.cast(ops.not_equal(ids, 0), dtype), -1)


class TwoTableEmbedding(layers.Layer):
    """A frozen pretrained table plus a small trainable table for the special tokens (the
    highest ids); the small table's row 0 ("not special") is masked out, so it never trains."""

    def __init__(self, vocab_size, dim, n_special, std, **kwargs):
        super().__init__(**kwargs)
        self.first_special = vocab_size - n_special
        table = np.random.default_rng(0).normal(0.0, std, (vocab_size, dim)).astype("float32")
        table[0] = 0.0
        table[self.first_special :] = 0.0
        self.frozen = layers.Embedding(
            vocab_size, dim, embeddings_initializer=keras.initializers.Constant(table)
        )
        self.frozen.trainable = False
        self.special = layers.Embedding(n_special + 1, dim)

    def call(self, ids):
        special_ids = ops.maximum(ids - (self.first_special - 1), 0)
        is_special = ops.expand_dims(ops.cast(special_ids > 0, self.compute_dtype), -1)
        return self.frozen(ids) + self.special(special_ids) * is_special


def two_table(spec: Spec) -> TwoTableEmbedding:
    """The two-table embedding of the spec's only table."""
    (table,) = spec.embeddings.values()
    std = getattr(table.initializer, "std", 0.05)
    return TwoTableEmbedding(table.vocab_size, table.dim, len(table.special_tokens), std)


class NewsgroupsFlat(keras.Model):
    """Embedding (pads zeroed) -> Flatten -> Dense relu -> Dropout -> Dense softmax."""

    def __init__(self, spec: Spec):
        super().__init__()
        (table,) = spec.embeddings.values()
        hidden, classes = layers_of(spec, "dense")
        init = keras.initializers.RandomUniform(-0.05, 0.05)
        self.embedding = layers.Embedding(table.vocab_size, table.dim, embeddings_initializer=init)
        self.flatten = layers.Flatten()
        self.hidden = layers.Dense(hidden.units, activation="relu")
        self.dropout = layers.Dropout(layers_of(spec, "dropout")[0].rate)
        self.out = layers.Dense(classes.units, activation="softmax")

    def call(self, inputs, training=False):
        ids = inputs["tokens"]
        x = self.flatten(self.embedding(ids) * not_pad(ids))
        return self.out(self.dropout(self.hidden(x), training=training))


class GloveSpecialTokens(keras.Model):
    """Two-table embedding -> masked GlobalAveragePooling1D -> Dense relu -> Dropout -> Dense."""

    def __init__(self, spec: Spec):
        super().__init__()
        hidden, classes = layers_of(spec, "dense")
        self.embedding = two_table(spec)
        self.pool = layers.GlobalAveragePooling1D()
        self.hidden = layers.Dense(hidden.units, activation="relu")
        self.dropout = layers.Dropout(layers_of(spec, "dropout")[0].rate)
        self.out = layers.Dense(classes.units, activation="softmax")

    def call(self, inputs, training=False):
        ids = inputs["tokens"]
        x = self.pool(self.embedding(ids), mask=ops.not_equal(ids, 0))
        return self.out(self.dropout(self.hidden(x), training=training))


class GloveLstm(keras.Model):
    """Two-table embedding -> Bidirectional(LSTM) with the pad mask -> Dropout -> Dense."""

    def __init__(self, spec: Spec):
        super().__init__()
        (lstm,) = layers_of(spec, "lstm")
        (classes,) = layers_of(spec, "dense")
        self.embedding = two_table(spec)
        self.lstm = layers.LSTM(lstm.units)
        if lstm.bidirectional:
            self.lstm = layers.Bidirectional(self.lstm, merge_mode="concat")
        self.dropout = layers.Dropout(layers_of(spec, "dropout")[0].rate)
        self.out = layers.Dense(classes.units, activation="softmax")

    def call(self, inputs, training=False):
        ids = inputs["tokens"]
        x = self.lstm(self.embedding(ids), mask=ops.not_equal(ids, 0), training=training)
        return self.out(self.dropout(x, training=training))


def sinusoids(length, dim, base=10000.0):
    """The fixed positional encodings of arXiv 1706.03762, ``(length, dim)``."""
    angles = np.arange(length)[:, None] / base ** (np.arange(0, dim, 2) / dim)
    pe = np.zeros((length, dim), dtype="float32")
    pe[:, 0::2] = np.sin(angles)
    pe[:, 1::2] = np.cos(angles[:, : dim // 2])
    return pe


class EncoderBlock(layers.Layer):
    """A Transformer encoder block from Keras layers (pre- or post-norm)."""

    def __init__(self, dim, heads, ff_dim, dropout, activation, epsilon, norm_first, **kwargs):
        super().__init__(**kwargs)
        self.norm_first = norm_first
        self.attention = layers.MultiHeadAttention(heads, dim // heads, dropout=dropout)
        self.ff1 = layers.Dense(ff_dim, activation=activation)
        self.ff2 = layers.Dense(dim)
        self.norm1 = layers.LayerNormalization(epsilon=epsilon)
        self.norm2 = layers.LayerNormalization(epsilon=epsilon)
        self.dropout = layers.Dropout(dropout)

    def call(self, x, attention_mask, training=False):
        def attend(h):
            h = self.attention(h, h, attention_mask=attention_mask, training=training)
            return self.dropout(h, training=training)

        def feed_forward(h):
            h = self.ff2(self.dropout(self.ff1(h), training=training))
            return self.dropout(h, training=training)

        if self.norm_first:
            x = x + attend(self.norm1(x))
            return x + feed_forward(self.norm2(x))
        x = self.norm1(x + attend(x))
        return self.norm2(x + feed_forward(x))


class TransformerClassifier(keras.Model):
    """Scaled embedding + sinusoids -> encoder blocks -> LayerNormalization -> masked
    GlobalAveragePooling1D -> Dense softmax."""

    def __init__(self, spec: Spec):
        super().__init__()
        (table,) = spec.embeddings.values()
        (enc,) = layers_of(spec, "transformer_encoder")
        (classes,) = layers_of(spec, "dense")
        (length,) = next(iter(spec.inputs.values())).dims
        self.embedding = layers.Embedding(table.vocab_size, table.dim)
        self.scale = float(np.sqrt(table.dim))
        self.positions = ops.convert_to_tensor(sinusoids(length, table.dim))
        self.blocks = [
            EncoderBlock(
                table.dim,
                enc.heads,
                enc.ff_dim,
                enc.dropout,
                enc.activation,
                enc.epsilon,
                enc.norm_first,
            )
            for _ in range(enc.num_layers)
        ]
        self.norm = layers.LayerNormalization(epsilon=1e-5)
        self.pool = layers.GlobalAveragePooling1D()
        self.out = layers.Dense(classes.units, activation="softmax")

    def call(self, inputs, training=False):
        ids = inputs["tokens"]
        mask = ops.not_equal(ids, 0)
        x = self.embedding(ids) * self.scale + self.positions
        attention_mask = ops.expand_dims(mask, 1)  # (B, 1, L): attend to real tokens only
        for block in self.blocks:
            x = block(x, attention_mask, training=training)
        return self.out(self.pool(self.norm(x), mask=mask))


class MemN2N(keras.Model):
    """End-To-End Memory Network, layer-wise tying, constant query, temporal encoding."""

    def __init__(self, spec: Spec):
        super().__init__()
        (net,) = layers_of(spec, "memory_network")
        (memories, _) = next(iter(spec.inputs.values())).dims
        init = keras.initializers.RandomNormal(stddev=getattr(net.initializer, "std", 0.1))
        self.hops, self.query_value, self.dim = net.hops, net.query_value, net.dim
        outputs = net.output_size or net.vocab_size
        self.A = self.add_weight(shape=(net.vocab_size, net.dim), initializer=init, name="A")
        self.C = self.add_weight(shape=(net.vocab_size, net.dim), initializer=init, name="C")
        self.TA = self.add_weight(shape=(memories, net.dim), initializer=init, name="TA")
        self.TC = self.add_weight(shape=(memories, net.dim), initializer=init, name="TC")
        self.H = self.add_weight(shape=(net.dim, net.dim), initializer=init, name="H")
        self.W = self.add_weight(shape=(net.dim, outputs), initializer=init, name="W")

    def call(self, inputs, training=False):
        ids = inputs["context"]  # (B, M, S)
        words = not_pad(ids)  # pads embed to 0.0
        empty = ops.all(ops.equal(ids, 0), axis=-1)  # (B, M)
        bias = ops.cast(empty, "float32") * -1e9
        m = ops.sum(ops.take(self.A, ids, axis=0) * words, axis=-2) + self.TA
        c = ops.sum(ops.take(self.C, ids, axis=0) * words, axis=-2) + self.TC
        u = ops.full((ops.shape(ids)[0], self.dim), self.query_value)
        for _ in range(self.hops):
            p = ops.softmax(ops.einsum("bmd,bd->bm", m, u) + bias, axis=-1)
            u = ops.matmul(u, self.H) + ops.einsum("bm,bmd->bd", p, c)
        return ops.softmax(ops.matmul(u, self.W), axis=-1)


MODELS = {
    "newsgroups_flat": NewsgroupsFlat,
    "glove_special_tokens": GloveSpecialTokens,
    "glove_lstm": GloveLstm,
    "transformer_classifier": TransformerClassifier,
    "memn2n_lm": MemN2N,
}


def build(name: str, spec: Spec, example_inputs: dict) -> Handwritten:
    """The hand-written ``name`` example sized by ``spec``, built by a call on
    ``example_inputs`` (a dict of id arrays)."""
    model = MODELS[name](spec)
    with warnings.catch_warnings():  # Keras warns that a subclassed model has no build()
        warnings.simplefilter("ignore", UserWarning)
        model(example_inputs)
    loss = keras.losses.SparseCategoricalCrossentropy()
    optimizer = optimizer_for(spec)
    optimizer.build(model.trainable_variables)
    return Handwritten(model, loss, optimizer)
