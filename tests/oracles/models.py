"""The oracle models, each written once against a few array primitives.

``ops`` is :mod:`tests.oracles.torch_ops` or :mod:`tests.oracles.keras_ops`: ``const``,
``take``, ``matmul``, ``reshape``, ``transpose``, ``concat``, ``stack``, ``split``, ``sum``,
``mean``, ``max``, ``where``, ``sigmoid``, ``tanh``, ``relu``, ``erf``, ``log``, ``sqrt``,
``softmax``, ``clip`` and ``zeros``, with numpy's meaning, on float64 tensors. Masks and other
constants derived from the ids are computed in numpy.

A :class:`Model` lists its canonical weights (names and shapes, the interface it shares with
the generated code), which entries of each train, which rows are padding, and its forward
function. The semantics implemented here, and where they are documented:

* embedding lookups (README, "Embedding policies"): ``table[x] * scale``, plus the positional
  encoding, times ``x != pad`` (unless ``zero_padded_positions: false``); the pad row is held at
  0.0 and gets no gradient; sinusoids of arXiv 1706.03762 §3.5;
* masked pooling, LSTM / GRU (PyTorch's two biases, GRU reset-after, padded steps skipped),
  layer norm, multi-head attention with padded keys masked, Transformer encoder blocks
  (arXiv 1706.03762; pre-norm as in PyTorch's ``norm_first``);
* End-To-End Memory Networks (arXiv 1503.08895 §2, §4.1): adjacent / layer-wise tying, position
  encoding ``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)``, temporal encoding ``T_A`` / ``T_C``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Forward = Callable[[Any, dict[str, Any], dict[str, np.ndarray]], Any]

# A padded key or memory has its attention score replaced by this (float64's lowest finite
# number), so that its softmax weight is exactly 0.0.
MASKED_SCORE = float(np.finfo(np.float64).min)


def masked(ops: Any, scores: Any, padded: np.ndarray) -> Any:
    """``scores`` with the keys where ``padded`` (broadcast, keys last) replaced by
    :data:`MASKED_SCORE`; a row whose keys are all padded keeps every score (the documented
    rule: it attends over all of its keys)."""
    keep = ~padded | padded.all(axis=-1, keepdims=True)
    return ops.where(keep, scores, ops.const(MASKED_SCORE))


@dataclass
class Model:
    """A hand-written model.

    Attributes:
        weights: canonical name -> shape.
        forward: ``forward(ops, weights, inputs)`` -> the output tensor (inference: dropout is
            the identity).
        masks: canonical name -> boolean array broadcastable to the weight, True where the
            entry trains; a weight without an entry here is frozen entirely.
        zero_rows: canonical name -> padding rows, held at 0.0.
    """

    weights: dict[str, tuple[int, ...]]
    forward: Forward
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    zero_rows: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def trainable_count(self) -> int:
        """Trainable parameters: the entries the masks select."""
        return sum(
            int(np.broadcast_to(mask, self.weights[name]).sum())
            for name, mask in self.masks.items()
        )

    def frozen_count(self) -> int:
        """Every other parameter."""
        return sum(math.prod(shape) for shape in self.weights.values()) - self.trainable_count()

    def random_state(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Random canonical weights of a useful scale, padding rows at 0.0."""
        state = {}
        for name, shape in self.weights.items():
            table = name.endswith((".embeddings", ".positional")) or len(shape) == 1
            scale = 0.5 if table else 1 / math.sqrt(shape[0])
            state[name] = rng.normal(0.0, scale, size=shape)
            for row in self.zero_rows.get(name, ()):
                state[name][row] = 0.0
        return state


class Builder:
    """Collects the weights of a model under construction."""

    def __init__(self) -> None:
        self.weights: dict[str, tuple[int, ...]] = {}
        self.masks: dict[str, np.ndarray] = {}
        self.zero_rows: dict[str, tuple[int, ...]] = {}

    def add(
        self,
        name: str,
        shape: tuple[int, ...],
        rows: np.ndarray | bool = True,
        zero_rows: tuple[int, ...] = (),
    ) -> None:
        """Weight ``name``; ``rows`` is True (trains), False (frozen) or a per-row mask."""
        self.weights[name] = shape
        if rows is not False:
            mask = np.asarray(rows)
            self.masks[name] = mask[:, None] if mask.ndim == 1 else mask
        if zero_rows:
            self.zero_rows[name] = zero_rows

    def dense(self, name: str, n_in: int, n_out: int, bias: bool = True) -> None:
        """A dense layer's kernel ``[in, out]`` and bias."""
        self.add(f"{name}.kernel", (n_in, n_out))
        if bias:
            self.add(f"{name}.bias", (n_out,))

    def norm(self, name: str, width: int) -> None:
        """A layer norm's gamma and beta."""
        self.add(f"{name}.gamma", (width,))
        self.add(f"{name}.beta", (width,))

    def model(self, forward: Forward) -> Model:
        """The finished model."""
        return Model(self.weights, forward, self.masks, self.zero_rows)


def row_mask(
    vocab_size: int,
    *,
    ids: Iterable[int] = (),
    ranges: Iterable[tuple[int, int]] = (),
    n_special: int = 0,
    special: Iterable[int] = (),
    pad: int | None = None,
) -> np.ndarray:
    """The trainable rows of a table: ``ids``, half-open ``ranges`` and the special tokens
    numbered ``special`` (of ``n_special``, which take the highest ids in order); never the pad."""
    mask = np.zeros(vocab_size, dtype=bool)
    mask[list(ids)] = True
    for start, stop in ranges:
        mask[start:stop] = True
    for k in special:
        mask[vocab_size - n_special + k] = True
    if pad is not None:
        mask[pad] = False
    return mask


# ----------------------------------------------------------------------------- building blocks


def sinusoids(length: int, dim: int, base: float = 10000.0) -> np.ndarray:
    """``pe[pos, 2i] = sin(pos / base^(2i/dim))``, ``pe[pos, 2i+1] = cos(pos / base^(2i/dim))``."""
    pe = np.zeros((length, dim))
    for pos in range(length):
        for i in range(0, dim, 2):
            angle = pos / base ** (i / dim)
            pe[pos, i] = math.sin(angle)
            if i + 1 < dim:
                pe[pos, i + 1] = math.cos(angle)
    return pe


def position_weights(ids: np.ndarray, dim: int, pad: int | None) -> np.ndarray:
    """MemN2N position encoding (arXiv 1503.08895 §4.1) of post-padded sentences ``(..., S)``:
    ``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)`` for word ``j = 1..J`` and unit ``k = 1..d``, ``J``
    the sentence's number of words (at least 1); 0.0 at pads. Shape ``(..., S, dim)``."""
    words = np.ones(ids.shape, dtype=bool) if pad is None else ids != pad
    n_words = np.maximum(words.sum(axis=-1, keepdims=True), 1)[..., None]  # J, (..., 1, 1)
    j = np.arange(1, ids.shape[-1] + 1)[:, None]  # (S, 1)
    k = np.arange(1, dim + 1)[None, :]  # (1, d)
    weights = (1 - j / n_words) - (k / dim) * (1 - 2 * j / n_words)
    return weights * words[..., None]


def embed(
    ops: Any,
    w: dict[str, Any],
    table: str,
    ids: np.ndarray,
    *,
    pad: int | None = None,
    scale: float = 1.0,
    positional: str | None = None,
    zero_padded_positions: bool = True,
) -> Any:
    """Look ``ids`` ``(B, L)`` up in ``table`` with its policies: ``(B, L, dim)``."""
    h = ops.take(w[f"{table}.embeddings"], ids)
    if pad is not None:
        # The pad row is 0.0 and never trains: its lookups are constants.
        not_pad = ops.const((ids != pad)[..., None].astype(np.float64))
        h = h * not_pad
    if scale != 1.0:
        h = h * scale
    length, dim = ids.shape[-1], w[f"{table}.embeddings"].shape[-1]
    if positional == "sinusoidal":
        h = h + ops.const(sinusoids(length, dim))
    elif positional == "learned":
        h = h + w[f"{table}.positional"][:length]
    if pad is not None and positional is not None and zero_padded_positions:
        h = h * not_pad
    return h


def activation(ops: Any, name: str, x: Any) -> Any:
    """``linear``, ``relu``, exact (erf) ``gelu``, ``tanh``, ``sigmoid``, ``softmax``."""
    if name == "relu":
        return ops.relu(x)
    if name == "gelu":
        return 0.5 * x * (1.0 + ops.erf(x / math.sqrt(2.0)))
    if name == "tanh":
        return ops.tanh(x)
    if name == "sigmoid":
        return ops.sigmoid(x)
    if name == "softmax":
        return ops.softmax(x, -1)
    return x


def dense(ops: Any, w: dict[str, Any], name: str, x: Any, act: str = "linear") -> Any:
    """``act(x @ kernel + bias)`` on the last axis."""
    y = ops.matmul(x, w[f"{name}.kernel"])
    if f"{name}.bias" in w:
        y = y + w[f"{name}.bias"]
    return activation(ops, act, y)


def flatten(ops: Any, x: Any) -> Any:
    """``(B, ...)`` -> ``(B, prod(...))``, row-major."""
    return ops.reshape(x, (x.shape[0], -1))


def masked_mean(ops: Any, x: Any, mask: np.ndarray) -> Any:
    """Mean over the valid positions of ``(B, L, D)``; 0.0 for a row without any."""
    weights = mask[..., None].astype(np.float64)
    count = np.maximum(weights.sum(axis=1), 1.0)
    return ops.sum(x * ops.const(weights), 1) / ops.const(count)


def masked_max(ops: Any, x: Any, mask: np.ndarray) -> Any:
    """Maximum over the valid positions of ``(B, L, D)``; 0.0 for a row without any."""
    lowest = ops.const(np.full((*mask.shape, 1), -1e300))
    best = ops.max(ops.where(mask[..., None], x, lowest), 1)
    return ops.where(mask.any(axis=1)[:, None], best, ops.zeros(best.shape))


def layer_norm(ops: Any, w: dict[str, Any], name: str, x: Any, epsilon: float) -> Any:
    """``gamma * (x - mean) / sqrt(var + epsilon) + beta`` over the last axis (biased var)."""
    mean = ops.mean(x, -1, keepdims=True)
    var = ops.mean((x - mean) * (x - mean), -1, keepdims=True)
    return w[f"{name}.gamma"] * (x - mean) / ops.sqrt(var + epsilon) + w[f"{name}.beta"]


def lstm_cell(ops: Any, p: dict[str, Any], x: Any, state: tuple[Any, Any]) -> tuple[Any, Any]:
    """One LSTM step; gates ``(i, f, c, o)`` along the last axis of the canonical kernels."""
    h, c = state
    z = ops.matmul(x, p["kernel"]) + p["input_bias"] + ops.matmul(h, p["recurrent_kernel"])
    i, f, g, o = ops.split(z + p["recurrent_bias"], 4, -1)
    c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
    return ops.sigmoid(o) * ops.tanh(c), c


def gru_cell(ops: Any, p: dict[str, Any], x: Any, state: tuple[Any, Any]) -> tuple[Any, Any]:
    """One GRU step in the reset-after form; gates ``(z, r, h)`` along the last axis:
    ``h~ = tanh(x W_h + b_ih_h + r * (h U_h + b_hh_h))``, ``h' = z * h + (1 - z) * h~``."""
    h, _ = state
    xz, xr, xh = ops.split(ops.matmul(x, p["kernel"]) + p["input_bias"], 3, -1)
    hz, hr, hh = ops.split(ops.matmul(h, p["recurrent_kernel"]) + p["recurrent_bias"], 3, -1)
    z = ops.sigmoid(xz + hz)
    r = ops.sigmoid(xr + hr)
    candidate = ops.tanh(xh + r * hh)
    return z * h + (1.0 - z) * candidate, h


def recurrent_direction(
    ops: Any,
    cell: str,
    p: dict[str, Any],
    x: Any,
    mask: np.ndarray,
    units: int,
    reverse: bool,
) -> tuple[Any, Any]:
    """Run one direction over ``(B, L, C)``, skipping padded steps (the state is carried and
    the output is 0.0 there). Returns the outputs ``(B, L, units)`` and the final state."""
    step = lstm_cell if cell == "lstm" else gru_cell
    batch, length = mask.shape
    state = (ops.zeros((batch, units)), ops.zeros((batch, units)))
    outputs: list[Any] = [None] * length
    for t in reversed(range(length)) if reverse else range(length):
        valid = mask[:, t : t + 1]
        new = step(ops, p, x[:, t], state)
        state = (ops.where(valid, new[0], state[0]), ops.where(valid, new[1], state[1]))
        outputs[t] = state[0] * ops.const(valid.astype(np.float64))
    return ops.stack(outputs, 1), state[0]


def recurrent(
    ops: Any,
    w: dict[str, Any],
    name: str,
    cell: str,
    x: Any,
    mask: np.ndarray,
    units: int,
    *,
    bidirectional: bool = False,
    merge: str = "concat",
    return_sequences: bool = False,
) -> Any:
    """An LSTM or GRU layer (one or two directions) over ``(B, L, C)``."""

    def weights(direction: str) -> dict[str, Any]:
        parts = ("kernel", "recurrent_kernel", "input_bias", "recurrent_bias")
        return {part: w[f"{name}.{direction}.{part}"] for part in parts}

    results = [recurrent_direction(ops, cell, weights("forward"), x, mask, units, False)]
    if bidirectional:
        results.append(recurrent_direction(ops, cell, weights("backward"), x, mask, units, True))
    picked = [sequences if return_sequences else final for sequences, final in results]
    if len(picked) == 1:
        return picked[0]
    return ops.concat(picked, -1) if merge == "concat" else picked[0] + picked[1]


def rotate(ops: Any, x: Any, base: float) -> Any:
    """Rotary position embedding (arXiv 2104.09864) of ``(B, heads, L, head_dim)``: the pair
    ``(x[2i], x[2i+1])`` at position ``p`` is rotated by the angle ``p * base^(-2i/head_dim)``."""
    batch, heads, length, head_dim = x.shape
    angles = np.array(
        [[p * base ** (-2 * i / head_dim) for i in range(head_dim // 2)] for p in range(length)]
    )
    cos, sin = ops.const(np.cos(angles)), ops.const(np.sin(angles))
    even, odd = x[..., 0::2], x[..., 1::2]
    pairs = ops.stack([even * cos - odd * sin, even * sin + odd * cos], -1)
    return ops.reshape(pairs, (batch, heads, length, head_dim))


def attention(
    ops: Any,
    w: dict[str, Any],
    name: str,
    x: Any,
    key_mask: np.ndarray | None,
    heads: int,
    rotary_base: float | None = None,
) -> Any:
    """Multi-head self-attention over ``(B, L, E)``; padded keys get weight 0.0; with
    ``rotary_base``, queries and keys are rotated after the projections."""
    batch, length, width = x.shape
    head_dim = width // heads

    def split_heads(y: Any) -> Any:  # (B, L, E) -> (B, heads, L, head_dim)
        return ops.transpose(ops.reshape(y, (batch, length, heads, head_dim)), (0, 2, 1, 3))

    q = split_heads(dense(ops, w, f"{name}.query", x))
    k = split_heads(dense(ops, w, f"{name}.key", x))
    if rotary_base is not None:
        q, k = rotate(ops, q, rotary_base), rotate(ops, k, rotary_base)
    v = split_heads(dense(ops, w, f"{name}.value", x))
    scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(head_dim)
    if key_mask is not None:
        scores = masked(ops, scores, ~key_mask[:, None, None, :])
    heads_out = ops.matmul(ops.softmax(scores, -1), v)  # (B, heads, L, head_dim)
    merged = ops.reshape(ops.transpose(heads_out, (0, 2, 1, 3)), (batch, length, width))
    return dense(ops, w, f"{name}.output", merged)


def encoder_block(
    ops: Any,
    w: dict[str, Any],
    name: str,
    x: Any,
    mask: np.ndarray | None,
    heads: int,
    *,
    norm_first: bool,
    act: str = "relu",
    epsilon: float = 1e-5,
) -> Any:
    """A Transformer encoder block (dropout is the identity here)."""

    def feed_forward(y: Any) -> Any:
        return dense(ops, w, f"{name}.ff2", dense(ops, w, f"{name}.ff1", y, act))

    def attend(y: Any) -> Any:
        return attention(ops, w, f"{name}.attention", y, mask, heads)

    def norm(i: int, y: Any) -> Any:
        return layer_norm(ops, w, f"{name}.norm{i}", y, epsilon)

    if norm_first:
        x = x + attend(norm(1, x))
        return x + feed_forward(norm(2, x))
    x = norm(1, x + attend(x))
    return norm(2, x + feed_forward(x))


def add_encoder_block(b: Builder, name: str, width: int, ff_dim: int) -> None:
    """Declare the weights of an encoder block."""
    for part in ("query", "key", "value", "output"):
        b.dense(f"{name}.attention.{part}", width, width)
    b.dense(f"{name}.ff1", width, ff_dim)
    b.dense(f"{name}.ff2", ff_dim, width)
    b.norm(f"{name}.norm1", width)
    b.norm(f"{name}.norm2", width)


def add_recurrent(b: Builder, name: str, gates: int, n_in: int, units: int, directions: int):
    """Declare the weights of a recurrent layer (``gates`` 4 for LSTM, 3 for GRU)."""
    for direction in ("forward", "backward")[:directions]:
        b.add(f"{name}.{direction}.kernel", (n_in, gates * units))
        b.add(f"{name}.{direction}.recurrent_kernel", (units, gates * units))
        b.add(f"{name}.{direction}.input_bias", (gates * units,))
        b.add(f"{name}.{direction}.recurrent_bias", (gates * units,))


def sentence_encoding(
    ops: Any,
    table: Any,
    ids: np.ndarray,
    dim: int,
    pad: int | None,
    position_encoding: bool,
) -> Any:
    """``sum_j l_j * table[x_j]`` over the last axis of ``ids`` (bag of words: ``l_j = 1``;
    pads embed to 0.0)."""
    if position_encoding:
        weights = position_weights(ids, dim, pad)
    else:
        words = np.ones(ids.shape, dtype=bool) if pad is None else ids != pad
        weights = np.broadcast_to(words[..., None], (*ids.shape, dim)).astype(np.float64)
    return ops.sum(ops.take(table, ids) * ops.const(weights), -2)


def memory_network(
    ops: Any,
    w: dict[str, Any],
    name: str,
    memories: np.ndarray,
    question: np.ndarray | None,
    *,
    hops: int,
    dim: int,
    tying: str,
    temporal: bool,
    linear_map: bool,
    position_encoding: bool,
    pad: int | None = 0,
    query_value: float = 0.1,
) -> Any:
    """End-To-End Memory Network (arXiv 1503.08895) over memories ``(B, M, S)``; returns the
    answer distribution (softmax of the logits)."""

    def words(table: str) -> Any:
        """A word embedding whose pad row is held at 0.0 (a constant: it never trains, even
        where the table is used as the output matrix)."""
        rows = np.arange(w[table].shape[0]) != pad
        return w[table] * ops.const(rows[:, None].astype(np.float64))

    if tying == "adjacent":
        # A^{k+1} = C^k (and T likewise); the query embedding is A^1, the output W^T = C^K.
        a = [words(f"{name}.A{k}") for k in range(1, hops + 2)]
        t = [w[f"{name}.T{k}"] for k in range(1, hops + 2)] if temporal else None
        per_hop = [
            (a[k], a[k + 1], t[k] if t else None, t[k + 1] if t else None) for k in range(hops)
        ]
        query_table, output = a[0], ops.transpose(a[-1], (1, 0))
    else:
        shared = (words(f"{name}.A"), words(f"{name}.C"), w.get(f"{name}.TA"), w.get(f"{name}.TC"))
        per_hop = [shared] * hops
        query_table = words(f"{name}.B") if question is not None else None
        output = w[f"{name}.W"]
    empty = (
        np.all(memories == pad, axis=-1)
        if pad is not None
        else np.zeros(memories.shape[:2], dtype=bool)
    )
    if question is None:
        u = ops.const(np.full((memories.shape[0], dim), query_value))
    else:
        u = sentence_encoding(ops, query_table, question, dim, pad, position_encoding)
    for table_a, table_c, temporal_a, temporal_c in per_hop:
        m = sentence_encoding(ops, table_a, memories, dim, pad, position_encoding)
        c = sentence_encoding(ops, table_c, memories, dim, pad, position_encoding)
        if temporal:
            m, c = m + temporal_a, c + temporal_c
        scores = masked(ops, ops.sum(m * u[:, None, :], -1), empty)  # (B, M)
        o = ops.sum(ops.softmax(scores, -1)[:, :, None] * c, 1)
        u = (ops.matmul(u, w[f"{name}.H"]) if linear_map else u) + o
    return ops.softmax(ops.matmul(u, output), -1)


def add_memory_network(
    b: Builder,
    name: str,
    *,
    vocab_size: int,
    dim: int,
    memories: int,
    hops: int,
    tying: str,
    temporal: bool,
    linear_map: bool,
    embedded_query: bool,
    pad: int = 0,
) -> None:
    """Declare the weights of a memory network."""
    words, slots = (vocab_size, dim), (memories, dim)
    if tying == "adjacent":
        for k in range(1, hops + 2):
            b.add(f"{name}.A{k}", words, zero_rows=(pad,))
        for k in range(1, hops + 2) if temporal else ():
            b.add(f"{name}.T{k}", slots)
    else:
        b.add(f"{name}.A", words, zero_rows=(pad,))
        b.add(f"{name}.C", words, zero_rows=(pad,))
        if temporal:
            b.add(f"{name}.TA", slots)
            b.add(f"{name}.TC", slots)
        if embedded_query:
            b.add(f"{name}.B", words, zero_rows=(pad,))
        b.add(f"{name}.W", (dim, vocab_size))
    if linear_map:
        b.add(f"{name}.H", (dim, dim))


def sparse_categorical_crossentropy(
    ops: Any, labels: np.ndarray, probabilities: Any, epsilon: float = 1e-7
) -> Any:
    """``mean(-log(clip(p[y], epsilon, 1 - epsilon)))``."""
    one_hot = np.eye(probabilities.shape[-1])[labels]
    p = ops.clip(probabilities, epsilon, 1 - epsilon)
    return -ops.mean(ops.sum(ops.const(one_hot) * ops.log(p), -1), 0)


# ----------------------------------------------------------------------------- the examples


def flat_classifier(
    *, vocab_size: int, dim: int, length: int, hidden: int, classes: int, rows: Any = True
) -> Model:
    """``newsgroups_flat`` / ``newsgroups_glove``: pad-zeroed embedding -> flatten -> dense relu
    -> dropout -> dense softmax. ``rows``: the table's trainable rows."""
    b = Builder()
    b.add("words.embeddings", (vocab_size, dim), rows, zero_rows=(0,))
    b.dense("dense", length * dim, hidden)
    b.dense("dense_1", hidden, classes)

    def forward(ops, w, inputs):
        x = flatten(ops, embed(ops, w, "words", inputs["tokens"], pad=0))
        return dense(ops, w, "dense_1", dense(ops, w, "dense", x, "relu"), "softmax")

    return b.model(forward)


def glove_special_tokens(
    *, vocab_size: int, dim: int, n_special: int, hidden: int, classes: int
) -> Model:
    """Frozen table with trainable special-token rows -> masked mean -> dense relu -> dropout
    -> dense softmax."""
    b = Builder()
    rows = row_mask(vocab_size, n_special=n_special, special=range(n_special), pad=0)
    b.add("glove.embeddings", (vocab_size, dim), rows, zero_rows=(0,))
    b.dense("dense", dim, hidden)
    b.dense("dense_1", hidden, classes)

    def forward(ops, w, inputs):
        ids = inputs["tokens"]
        x = masked_mean(ops, embed(ops, w, "glove", ids, pad=0), ids != 0)
        return dense(ops, w, "dense_1", dense(ops, w, "dense", x, "relu"), "softmax")

    return b.model(forward)


def glove_lstm(*, vocab_size: int, dim: int, n_special: int, units: int, classes: int) -> Model:
    """Table with trainable special rows -> bidirectional LSTM (concat final states) ->
    dropout -> dense softmax."""
    b = Builder()
    rows = row_mask(vocab_size, n_special=n_special, special=range(n_special), pad=0)
    b.add("glove.embeddings", (vocab_size, dim), rows, zero_rows=(0,))
    add_recurrent(b, "lstm", 4, dim, units, 2)
    b.dense("dense", 2 * units, classes)

    def forward(ops, w, inputs):
        ids = inputs["tokens"]
        x = embed(ops, w, "glove", ids, pad=0)
        x = recurrent(ops, w, "lstm", "lstm", x, ids != 0, units, bidirectional=True)
        return dense(ops, w, "dense", x, "softmax")

    return b.model(forward)


def transformer_classifier(
    *,
    vocab_size: int,
    dim: int,
    scale: float,
    heads: int,
    ff_dim: int,
    blocks: int,
    classes: int,
) -> Model:
    """Scaled embedding + sinusoids (pads zeroed) -> pre-norm encoder blocks -> layer norm ->
    masked mean -> dense softmax."""
    b = Builder()
    b.add("words.embeddings", (vocab_size, dim), zero_rows=(0,))
    names = [f"transformer_encoder_block{i}" for i in range(blocks - 1)] + ["transformer_encoder"]
    for name in names:
        add_encoder_block(b, name, dim, ff_dim)
    b.norm("layer_norm", dim)
    b.dense("dense", dim, classes)

    def forward(ops, w, inputs):
        ids = inputs["tokens"]
        mask = ids != 0
        x = embed(ops, w, "words", ids, pad=0, scale=scale, positional="sinusoidal")
        for name in names:
            x = encoder_block(ops, w, name, x, mask, heads, norm_first=True)
        x = masked_mean(ops, layer_norm(ops, w, "layer_norm", x, 1e-5), mask)
        return dense(ops, w, "dense", x, "softmax")

    return b.model(forward)


def memn2n_lm(*, vocab_size: int, dim: int, memories: int, hops: int) -> Model:
    """The MemN2N language model: layer-wise tying (so a linear map H), constant query,
    temporal encoding, bag-of-words sentences of one word."""
    b = Builder()
    settings = {"hops": hops, "tying": "layerwise", "temporal": True, "linear_map": True}
    add_memory_network(
        b,
        "memory_network",
        vocab_size=vocab_size,
        dim=dim,
        memories=memories,
        embedded_query=False,
        **settings,
    )

    def forward(ops, w, inputs):
        return memory_network(
            ops,
            w,
            "memory_network",
            inputs["context"],
            None,
            dim=dim,
            position_encoding=False,
            **settings,
        )

    return b.model(forward)


# ----------------------------------------------------------------------------- policy cases


def rows_and_learned_positions(
    *, vocab_size: int, dim: int, length: int, max_length: int, pad: int, rows: np.ndarray
) -> Model:
    """Pad id ``pad`` (not 0), a partially trainable table, ``scale: 0.5`` and a learned
    positional table longer than the input -> flatten -> dense softmax (4 classes)."""
    b = Builder()
    b.add("words.embeddings", (vocab_size, dim), rows, zero_rows=(pad,))
    b.add("words.positional", (max_length, dim))
    b.dense("dense", length * dim, 4)

    def forward(ops, w, inputs):
        x = embed(ops, w, "words", inputs["tokens"], pad=pad, scale=0.5, positional="learned")
        return dense(ops, w, "dense", flatten(ops, x), "softmax")

    return b.model(forward)


def frozen_sinusoids_unzeroed(*, vocab_size: int, dim: int, length: int, scale: float) -> Model:
    """A frozen table scaled by ``scale`` plus sinusoids, pads *not* zeroed after the
    positional encoding -> flatten -> dense softmax (3 classes)."""
    b = Builder()
    b.add("words.embeddings", (vocab_size, dim), False, zero_rows=(0,))
    b.dense("dense", length * dim, 3)

    def forward(ops, w, inputs):
        x = embed(
            ops,
            w,
            "words",
            inputs["tokens"],
            pad=0,
            scale=scale,
            positional="sinusoidal",
            zero_padded_positions=False,
        )
        return dense(ops, w, "dense", flatten(ops, x), "softmax")

    return b.model(forward)


def gru_stack(*, vocab_size: int, dim: int, units: int) -> Model:
    """Two stacked bidirectional GRU layers (directions summed, sequences out) -> masked mean
    -> dense softmax (3 classes)."""
    b = Builder()
    b.add("words.embeddings", (vocab_size, dim), zero_rows=(0,))
    add_recurrent(b, "gru_layer0", 3, dim, units, 2)
    add_recurrent(b, "gru", 3, units, units, 2)
    b.dense("dense", units, 3)

    def forward(ops, w, inputs):
        ids = inputs["tokens"]
        mask = ids != 0
        x = embed(ops, w, "words", ids, pad=0)
        for name in ("gru_layer0", "gru"):
            x = recurrent(
                ops, w, name, "gru", x, mask, units,
                bidirectional=True, merge="sum", return_sequences=True,
            )  # fmt: skip
        return dense(ops, w, "dense", masked_mean(ops, x, mask), "softmax")

    return b.model(forward)


def lstm_attention(*, vocab_size: int, dim: int, units: int, heads: int, rows: np.ndarray) -> Model:
    """LSTM sequences -> layer norm (epsilon 1e-3) -> self-attention -> masked max -> dense
    softmax (3 classes), over a table with some trainable rows."""
    b = Builder()
    b.add("words.embeddings", (vocab_size, dim), rows, zero_rows=(0,))
    add_recurrent(b, "lstm", 4, dim, units, 1)
    b.norm("layer_norm", units)
    for part in ("query", "key", "value", "output"):
        b.dense(f"self_attention.{part}", units, units)
    b.dense("dense", units, 3)

    def forward(ops, w, inputs):
        ids = inputs["tokens"]
        mask = ids != 0
        x = embed(ops, w, "words", ids, pad=0)
        x = recurrent(ops, w, "lstm", "lstm", x, mask, units, return_sequences=True)
        x = layer_norm(ops, w, "layer_norm", x, 1e-3)
        x = attention(ops, w, "self_attention", x, mask, heads)
        return dense(ops, w, "dense", masked_max(ops, x, mask), "softmax")

    return b.model(forward)


def memn2n_adjacent(*, vocab_size: int, dim: int, memories: int, hops: int) -> Model:
    """A question-answering memory network: adjacent tying (no H), embedded question, position
    encoding and temporal encoding."""
    b = Builder()
    settings = {"hops": hops, "tying": "adjacent", "temporal": True, "linear_map": False}
    add_memory_network(
        b,
        "memory_network",
        vocab_size=vocab_size,
        dim=dim,
        memories=memories,
        embedded_query=True,
        **settings,
    )

    def forward(ops, w, inputs):
        return memory_network(
            ops,
            w,
            "memory_network",
            inputs["memories"],
            inputs["question"],
            dim=dim,
            position_encoding=True,
            **settings,
        )

    return b.model(forward)


def post_norm_transformer(
    *, vocab_size: int, dim: int, length: int, heads: int, ff_dim: int, rows: np.ndarray
) -> Model:
    """Learned positions (as long as the input) over a partially trainable table -> one
    post-norm GELU encoder block (epsilon 1e-6) -> masked mean -> dense softmax (3 classes)."""
    b = Builder()
    b.add("words.embeddings", (vocab_size, dim), rows, zero_rows=(0,))
    b.add("words.positional", (length, dim))
    add_encoder_block(b, "transformer_encoder", dim, ff_dim)
    b.dense("dense", dim, 3)

    def forward(ops, w, inputs):
        ids = inputs["tokens"]
        mask = ids != 0
        x = embed(ops, w, "words", ids, pad=0, positional="learned")
        x = encoder_block(
            ops, w, "transformer_encoder", x, mask, heads, norm_first=False, act="gelu",
            epsilon=1e-6,
        )  # fmt: skip
        return dense(ops, w, "dense", masked_mean(ops, x, mask), "softmax")

    return b.model(forward)


def rotary_attention(*, vocab_size: int, dim: int, heads: int, base: float) -> Model:
    """A table with rotary positions -> self-attention (rotated queries and keys) -> masked
    mean -> dense softmax (3 classes)."""
    b = Builder()
    b.add("words.embeddings", (vocab_size, dim), zero_rows=(0,))
    for part in ("query", "key", "value", "output"):
        b.dense(f"self_attention.{part}", dim, dim)
    b.dense("dense", dim, 3)

    def forward(ops, w, inputs):
        ids = inputs["tokens"]
        mask = ids != 0
        x = embed(ops, w, "words", ids, pad=0)
        x = attention(ops, w, "self_attention", x, mask, heads, rotary_base=base)
        return dense(ops, w, "dense", masked_mean(ops, x, mask), "softmax")

    return b.model(forward)
