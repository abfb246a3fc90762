"""The reference semantics of the IR: a numpy interpreter of the forward pass (inference mode).

Written from the docstrings of :mod:`nnspec.compiler.ir` alone, independent of every backend:
recurrent layers loop over time, convolutions over taps, memory networks over hops. It reads
canonical weights, the same ``dict[str, numpy.ndarray]`` a backend runtime's ``get_state`` /
``set_state`` use (see :func:`nnspec.parity.random_state`), and computes in float64 by default
(``dtype="float32"`` runs the same formulas in float32, so that the backends' float32 round-off
has a float32 reference to be compared with).

Used by ``nnspec parity`` (every backend's outputs against :func:`forward`) and by the tests.
Imports numpy only.

Entry points: :func:`forward` (the program's output) and :func:`values` (every node's value);
the per-op functions (:func:`embed`, :func:`conv1d`, :func:`recurrent`, :func:`attention`,
:func:`transformer_block`, :func:`memory_network`, ...) take the op, the state and the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnspec.compiler import ir

State = Mapping[str, np.ndarray]


# ----------------------------------------------------------------------------- elementwise


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1 / (1 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)


def activation(kind: str, x: np.ndarray) -> np.ndarray:
    """The IR's activations (``gelu`` is the exact erf form, ``softmax`` over the last axis)."""
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "gelu":
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    if kind == "tanh":
        return np.tanh(x)
    if kind == "sigmoid":
        return sigmoid(x)
    if kind == "softmax":
        return softmax(x)
    if kind == "linear":
        return x
    raise ValueError(f"unknown activation {kind!r}")


def masked_softmax(scores: np.ndarray, padded: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of ``scores`` in which ``padded`` keys get weight exactly 0.0.

    A row whose keys are all padded has nothing to attend to, so nothing is masked there: it is
    ``softmax(scores)`` over all of its keys. The rule does not depend on the dtype.
    """
    keep = ~padded | padded.all(axis=-1, keepdims=True)
    return softmax(np.where(keep, scores, -np.inf))


# ----------------------------------------------------------------------------- embeddings


def sinusoids(length: int, dim: int, base: float) -> np.ndarray:
    """``pe[pos, 2i] = sin(pos / base**(2i/dim))``, ``pe[pos, 2i+1] = cos(...)``, float64."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    j = np.arange(dim)
    angle = pos / base ** ((j - j % 2) / dim)
    return np.where(j % 2 == 0, np.sin(angle), np.cos(angle))


def embed(table: ir.EmbeddingTable, state: State, ids: np.ndarray) -> np.ndarray:
    """:class:`ir.EmbeddingTable`'s lookup: shared offset, scale, positional encoding, pad
    zeroing."""
    weights = state[table.weight]
    h = weights[ids]
    if table.offset is not None:
        selected = np.zeros(table.vocab_size, dtype=h.dtype)
        for start, stop in table.offset.rows:
            selected[start:stop] = 1.0
        h = h + selected[ids][..., None] * state[table.offset.weight]
    h = h * weights.dtype.type(table.scale)
    pos = table.positional
    length = ids.shape[-1]
    if isinstance(pos, ir.SinusoidalPositional):
        h = h + sinusoids(pos.max_length, table.dim, pos.base)[:length].astype(h.dtype)
    elif isinstance(pos, ir.LearnedPositional):
        h = h + state[pos.weight][:length]
    if table.pad_index is not None and table.zero_padded_positions:
        h = h * (ids != table.pad_index)[..., None].astype(h.dtype)
    return h


# ----------------------------------------------------------------------------- layers


def dense(op: ir.Dense, state: State, x: np.ndarray) -> np.ndarray:
    """``activation(x @ kernel + bias)``."""
    y = x @ state[op.kernel]
    if op.bias is not None:
        y = y + state[op.bias]
    return activation(op.activation, y)


def global_pool(op: ir.GlobalPool, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Pool over the sequence axis, ignoring padded positions (an all-padding row gives 0.0)."""
    valid = np.ones(x.shape[:2], dtype=bool) if mask is None else mask
    if op.mode == "average":
        count = np.maximum(valid.sum(1), 1).astype(x.dtype)[:, None]
        return (x * valid[..., None]).sum(1) / count
    y = np.where(valid[..., None], x, -np.inf).max(1)
    any_valid = np.asarray(valid.any(1))
    return np.where(any_valid[:, None], y, 0).astype(x.dtype)


def attention_pool(
    op: ir.AttentionPool, state: State, x: np.ndarray, mask: np.ndarray | None
) -> np.ndarray:
    """``sum_t a_t x_t`` with ``a = softmax(x . query [/ sqrt(D)])`` over the valid positions
    only (exactly 0 at padded ones); a row with no valid position gives 0.0."""
    valid = np.ones(x.shape[:2], dtype=bool) if mask is None else mask
    scores = x @ state[op.query]  # (B, L)
    if op.scale:
        scores = scores / x.dtype.type(math.sqrt(x.shape[-1]))
    scores = np.where(valid, scores, -np.inf)
    top = np.where(valid.any(1, keepdims=True), scores.max(1, keepdims=True), 0)
    e = np.where(valid, np.exp(scores - top), 0).astype(x.dtype)
    a = e / np.maximum(e.sum(1, keepdims=True), np.finfo(x.dtype).tiny)
    return np.einsum("bl,bld->bd", a, x)


def conv1d(op: ir.Conv1D, state: State, x: np.ndarray) -> np.ndarray:
    """:class:`ir.Conv1D` with its three padding rules, tap by tap."""
    kernel = state[op.kernel]
    k, d, stride = op.kernel_size, op.dilation, op.strides
    length = x.shape[1]
    if op.padding == "same":
        total = max((math.ceil(length / stride) - 1) * stride + (k - 1) * d + 1 - length, 0)
        left, right = total // 2, total - total // 2
    elif op.padding == "causal":
        left, right = d * (k - 1), 0
    else:
        left = right = 0
    x = np.pad(x, ((0, 0), (left, right), (0, 0)))
    steps = (x.shape[1] - d * (k - 1) - 1) // stride + 1
    y = np.zeros((x.shape[0], steps, op.filters), dtype=x.dtype)
    for t in range(steps):
        for i in range(k):
            y[:, t] += x[:, t * stride + i * d] @ kernel[i]
    if op.bias is not None:
        y = y + state[op.bias]
    return activation(op.activation, y)


def pool1d(op: ir.Pool1D, x: np.ndarray) -> np.ndarray:
    """Valid max / average pooling over windows (masks ignored)."""
    steps = (x.shape[1] - op.pool_size) // op.strides + 1
    windows = [x[:, t * op.strides : t * op.strides + op.pool_size] for t in range(steps)]
    reduce = np.max if op.mode == "max" else np.mean
    return np.stack([reduce(w, axis=1) for w in windows], axis=1)


def _direction(
    op: ir.Recurrent,
    d: ir.RecurrentDirection,
    state: State,
    x: np.ndarray,
    valid: np.ndarray,
    reverse: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """One direction over time: padded steps keep the state and output 0.0."""
    kernel, recurrent_kernel = state[d.kernel], state[d.recurrent_kernel]
    b_ih, b_hh = state[d.input_bias], state[d.recurrent_bias]
    batch, length, _ = x.shape
    h = np.zeros((batch, op.units), dtype=x.dtype)
    c = np.zeros_like(h)
    out = np.zeros((batch, length, op.units), dtype=x.dtype)
    for t in reversed(range(length)) if reverse else range(length):
        gx = x[:, t] @ kernel + b_ih
        gh = h @ recurrent_kernel + b_hh
        if op.cell == "lstm":  # gates i, f, c, o
            i, f, g, o = np.split(gx + gh, 4, axis=-1)
            c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h_new = sigmoid(o) * np.tanh(c_new)
        else:  # gates z, r, h; reset after the recurrent matmul
            xz, xr, xh = np.split(gx, 3, axis=-1)
            hz, hr, hh = np.split(gh, 3, axis=-1)
            z, r = sigmoid(xz + hz), sigmoid(xr + hr)
            h_new = z * h + (1 - z) * np.tanh(xh + r * hh)
            c_new = c
        m = valid[:, t, None]
        h, c = np.where(m, h_new, h), np.where(m, c_new, c)
        out[:, t] = np.where(m, h_new, 0)
    return out, h


def recurrent(op: ir.Recurrent, state: State, x: np.ndarray, mask: np.ndarray | None):
    """:class:`ir.Recurrent`: LSTM / GRU, masked (post-padding), bidirectional."""
    valid = np.ones(x.shape[:2], dtype=bool) if mask is None else mask
    results = [_direction(op, op.forward, state, x, valid, False)]
    if op.backward is not None:
        results.append(_direction(op, op.backward, state, x, valid, True))
    parts = [seq if op.return_sequences else last for seq, last in results]
    if len(parts) == 1:
        return parts[0]
    return parts[0] + parts[1] if op.merge == "sum" else np.concatenate(parts, axis=-1)


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, epsilon: float) -> np.ndarray:
    """Layer normalization over the last axis (biased variance)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + x.dtype.type(epsilon)) + beta


def batch_norm(op: ir.BatchNorm, state: State, x: np.ndarray) -> np.ndarray:
    """Batch normalization in inference: the moving statistics normalize."""
    var = state[op.moving_variance] + x.dtype.type(op.epsilon)
    y = (x - state[op.moving_mean]) / np.sqrt(var)
    return y * state[op.gamma] + state[op.beta]


def merge(op: ir.Merge, xs: list[np.ndarray]) -> np.ndarray:
    """Element-wise ``add`` / ``multiply``, or ``concat`` on the last axis."""
    if op.mode == "concat":
        return np.concatenate(xs, axis=-1)
    y = xs[0]
    for other in xs[1:]:
        y = y + other if op.mode == "add" else y * other
    return y


def rotate(x: np.ndarray, base: float) -> np.ndarray:
    """:class:`ir.Rotary` on ``x`` ``(B, L, heads, d)``: pair ``(2i, 2i+1)`` at position ``p``
    rotated by ``p * base**(-2i/d)`` (angles in float64)."""
    d = x.shape[-1]
    angle = np.arange(x.shape[1], dtype=np.float64)[:, None] * base ** (-2 * np.arange(d // 2) / d)
    cos = np.cos(angle).astype(x.dtype)[None, :, None, :]
    sin = np.sin(angle).astype(x.dtype)[None, :, None, :]
    out = x.copy()
    a, b = x[..., 0 : 2 * (d // 2) : 2], x[..., 1 : 2 * (d // 2) : 2]
    out[..., 0 : 2 * (d // 2) : 2] = a * cos - b * sin
    out[..., 1 : 2 * (d // 2) : 2] = a * sin + b * cos
    return out


def attention(op: ir.SelfAttention, state: State, x: np.ndarray, mask: np.ndarray | None):
    """:class:`ir.SelfAttention` without dropout, head by head."""
    w = op.weights
    batch, length, _ = x.shape

    def project(kernel: str, bias: str) -> np.ndarray:
        y = x @ state[kernel] + state[bias]
        return y.reshape(batch, length, op.heads, op.head_dim)

    q = project(w.query_kernel, w.query_bias)
    k = project(w.key_kernel, w.key_bias)
    v = project(w.value_kernel, w.value_bias)
    if op.rotary is not None:
        q, k = rotate(q, op.rotary.base), rotate(k, op.rotary.base)
    out = np.zeros_like(q)
    scale = x.dtype.type(math.sqrt(op.head_dim))
    padded = np.zeros((batch, 1, length), dtype=bool) if mask is None else ~mask[:, None, :]
    for h in range(op.heads):
        scores = q[:, :, h] @ k[:, :, h].transpose(0, 2, 1) / scale  # (B, L queries, L keys)
        out[:, :, h] = masked_softmax(scores, padded) @ v[:, :, h]
    return out.reshape(batch, length, -1) @ state[w.output_kernel] + state[w.output_bias]


def transformer_block(
    op: ir.TransformerBlock, state: State, x: np.ndarray, mask: np.ndarray | None
) -> np.ndarray:
    """:class:`ir.TransformerBlock` without dropout (post-norm or pre-norm)."""

    def norm(y: np.ndarray, gamma: str, beta: str) -> np.ndarray:
        return layer_norm(y, state[gamma], state[beta], op.epsilon)

    def feed_forward(y: np.ndarray) -> np.ndarray:
        hidden = activation(op.activation, y @ state[op.ff1_kernel] + state[op.ff1_bias])
        return hidden @ state[op.ff2_kernel] + state[op.ff2_bias]

    if op.norm_first:
        x = x + attention(op.attention, state, norm(x, op.norm1_gamma, op.norm1_beta), mask)
        return x + feed_forward(norm(x, op.norm2_gamma, op.norm2_beta))
    x = norm(x + attention(op.attention, state, x, mask), op.norm1_gamma, op.norm1_beta)
    return norm(x + feed_forward(x), op.norm2_gamma, op.norm2_beta)


def sentences(op: ir.MemoryNetwork, ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``sum_j l_j * table[x_j]`` over the last axis of ``ids`` (bag of words, or position
    encoding ``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)`` for ``j <= J``, 0 beyond)."""
    vectors = table[ids]  # (..., S, d)
    if not op.position_encoding:
        return vectors.sum(axis=-2)
    words = ids.shape[-1]
    if op.pad_index is None:
        count = np.full(ids.shape[:-1], words)
    else:
        count = np.maximum((ids != op.pad_index).sum(-1), 1)
    big_j = count[..., None, None].astype(np.float64)  # (..., 1, 1)
    j = np.arange(1, words + 1, dtype=np.float64)[:, None]  # (S, 1)
    k = np.arange(1, op.dim + 1, dtype=np.float64) / op.dim  # (d,)
    weight = (1 - j / big_j) - k * (1 - 2 * j / big_j)
    weight = np.where(j <= big_j, weight, 0.0).astype(table.dtype)
    return (weight * vectors).sum(axis=-2)


def memory_network(
    op: ir.MemoryNetwork,
    state: State,
    memories: np.ndarray,
    question: np.ndarray | None = None,
    linear: bool = False,
) -> np.ndarray:
    """:class:`ir.MemoryNetwork` (arXiv 1503.08895), hop by hop; ``linear``: in linear-start
    mode (each hop's attention without softmax). Dropout is inference's identity."""
    dtype = state[op.hops[0].A].dtype
    if op.word_memories:
        memories = memories[..., None]  # (B, M, 1)
    if op.query == "embedded":
        assert question is not None
        b = op.hops[0].A if op.tying == "adjacent" else op.query_embedding
        assert b is not None
        u = sentences(op, question, state[b])
    else:
        u = np.full((memories.shape[0], op.dim), op.query_value, dtype=dtype)
    padded = np.zeros(memories.shape[:2], dtype=bool)
    if op.pad_index is not None:
        padded = np.all(memories == op.pad_index, axis=-1)  # (B, M)
    for hop in op.hops:
        m = sentences(op, memories, state[hop.A])
        c = sentences(op, memories, state[hop.C])
        if hop.TA is not None:
            m = m + state[hop.TA]
        if hop.TC is not None:
            c = c + state[hop.TC]
        scores = np.einsum("bmd,bd->bm", m, u)
        p = np.where(padded, 0.0, scores) if linear else masked_softmax(scores, padded)
        o = np.einsum("bm,bmd->bd", p, c)
        u = (u @ state[op.linear_map] if op.linear_map else u) + o
        if op.relu_half:  # the first d // 2 units stay linear
            u = np.concatenate([u[:, : op.dim // 2], np.maximum(u[:, op.dim // 2 :], 0)], axis=1)
    w = state[op.hops[-1].C].T if op.output is None else state[op.output]
    return activation(op.activation, u @ w)


# ----------------------------------------------------------------------------- programs


@dataclass(frozen=True)
class Args:
    """What an op's rule reads besides the op: the program, the canonical weights, the values of
    the node's inputs, and the padding mask its op reads (``True`` at valid positions)."""

    program: ir.Program
    state: State
    xs: list[np.ndarray]
    mask: np.ndarray | None
    linear_start: bool = False


def _embedding(op: ir.EmbeddingLookup, a: Args) -> np.ndarray:
    return embed(a.program.table(op.table), a.state, a.xs[0])


def _flatten(op: ir.Flatten, a: Args) -> np.ndarray:
    return a.xs[0].reshape(len(a.xs[0]), -1)


def _dropout(op: ir.Dropout, a: Args) -> np.ndarray:
    return a.xs[0]  # inference: identity


def _layer_norm(op: ir.LayerNorm, a: Args) -> np.ndarray:
    return layer_norm(a.xs[0], a.state[op.gamma], a.state[op.beta], op.epsilon)


OPS: dict[type, Callable[[Any, Args], np.ndarray]] = {
    ir.EmbeddingLookup: _embedding,
    ir.Flatten: _flatten,
    ir.Dense: lambda op, a: dense(op, a.state, a.xs[0]),
    ir.Dropout: _dropout,
    ir.GlobalPool: lambda op, a: global_pool(op, a.xs[0], a.mask),
    ir.AttentionPool: lambda op, a: attention_pool(op, a.state, a.xs[0], a.mask),
    ir.Conv1D: lambda op, a: conv1d(op, a.state, a.xs[0]),
    ir.Pool1D: lambda op, a: pool1d(op, a.xs[0]),
    ir.Recurrent: lambda op, a: recurrent(op, a.state, a.xs[0], a.mask),
    ir.LayerNorm: _layer_norm,
    ir.BatchNorm: lambda op, a: batch_norm(op, a.state, a.xs[0]),
    ir.Merge: lambda op, a: merge(op, a.xs),
    ir.SelfAttention: lambda op, a: attention(op, a.state, a.xs[0], a.mask),
    ir.TransformerBlock: lambda op, a: transformer_block(op, a.state, a.xs[0], a.mask),
    ir.MemoryNetwork: lambda op, a: memory_network(
        op, a.state, a.xs[0], a.xs[1] if len(a.xs) > 1 else None, a.linear_start
    ),
}
"""The rule of each op type, called as ``rule(op, args)``; an op missing here raises
``NotImplementedError``."""


def canonical(program: ir.Program, state: State, dtype: str = "float64") -> dict[str, np.ndarray]:
    """``state`` in ``dtype`` with every weight's zero rows at 0.0 (as loading it into a model
    does)."""
    out = {}
    for w in program.weights:
        values = np.array(state[w.name], dtype=dtype)
        if w.zero_rows:
            values[list(w.zero_rows)] = 0
        out[w.name] = values
    return out


def values(
    program: ir.Program,
    state: State,
    inputs: Mapping[str, np.ndarray],
    dtype: str = "float64",
    linear_start: bool = False,
) -> dict[str, np.ndarray]:
    """Every node's value (and the inputs), by name, in inference mode (with ``linear_start``:
    memory networks in linear-start mode)."""
    weights = canonical(program, state, dtype)
    result: dict[str, np.ndarray] = {name: np.asarray(ids) for name, ids in inputs.items()}
    for node in program.nodes:
        rule = OPS.get(type(node.op))
        if rule is None:
            raise NotImplementedError(f"the reference has no rule for op {type(node.op).__name__}")
        read = program.read_mask(node)
        mask = None if read is None else result[read.input] != read.pad_index
        xs = [result[name] for name in node.inputs]
        y = rule(node.op, Args(program, weights, xs, mask, linear_start))
        if program.output_activation is not None and node.name == program.outputs[0]:
            y = activation(program.output_activation, y)  # the node computed the logits
        y = np.asarray(y, dtype=dtype)
        if y.shape[1:] != tuple(node.shape[1:]):
            raise AssertionError(f"node {node.name!r}: shape {y.shape}, IR says {node.shape}")
        result[node.name] = y
    return result


def forward(
    program: ir.Program,
    state: State,
    inputs: Mapping[str, np.ndarray],
    dtype: str = "float64",
    linear_start: bool = False,
) -> np.ndarray:
    """The program's (first) output for ``inputs`` under the canonical weights ``state``."""
    return values(program, state, inputs, dtype, linear_start)[program.outputs[0]]
