"""The framework-independent intermediate representation (IR).

The compiler turns a validated spec into one :class:`Program`. Backends read only this module's
types: every shape, constant, weight name and layout a backend needs is stated here, so that two
backends built from the same program compute the same function.

Conventions shared by every backend:

* Activations are channels-last: a sequence is ``(batch, length, features)``.
* Shapes include the batch dimension as ``None`` in front.
* Canonical weights are float arrays named ``"<owner>.<param>"`` with the layout documented on
  each op (e.g. a dense kernel is ``[in, out]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import Any, ClassVar, Literal

Shape = tuple[int | None, ...]

Activation = Literal["linear", "relu", "gelu", "tanh", "sigmoid", "softmax"]
"""Activations. ``gelu`` is the exact (erf) form; ``softmax`` is over the last axis."""

InitializerKind = Literal[
    "zeros",
    "ones",
    "uniform",
    "normal",
    "truncated_normal",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
]


@dataclass(frozen=True, slots=True)
class Initializer:
    """How a weight's initial values are drawn (the distribution, not the values).

    ``uniform`` uses ``low``/``high``; ``normal`` and ``truncated_normal`` use ``mean``/``std``
    (truncated at two standard deviations). Glorot and He use ``fan_in = shape[0]`` and
    ``fan_out = shape[1]`` of the canonical ``[in, out]`` layout (``shape[0]`` for both on a 1-D
    weight); their ``_normal`` forms are plain (untruncated) normals.
    """

    kind: InitializerKind
    low: float = -0.05
    high: float = 0.05
    mean: float = 0.0
    std: float = 0.05
    # Set on PyTorch's default bounds: ``high == -low == 1 / math.sqrt(fan)`` (``torch_default``).
    fan: int | None = None


CONSTRAINT_EPSILON = 1e-7
"""Keras' ``backend.epsilon()``: added to the norms that the norm constraints divide by."""


@dataclass(frozen=True, slots=True)
class Constraint:
    """A projection applied to a weight after each optimizer step (Keras' ``variable.constraint``,
    which its optimizers apply after the update), on the canonical layout.

    With ``n = sqrt(sum(w ** 2, axis=axes, keepdims=True))`` and ``eps`` =
    :data:`CONSTRAINT_EPSILON`:

    * ``non_neg``: ``max(w, 0)``;
    * ``value_clip``: ``min(max(w, min_value), max_value)`` (a ``None`` bound is left out);
    * ``max_norm``: ``w * (clip(n, 0, max_value) / (eps + n))``;
    * ``unit_norm``: ``w / (eps + n)``;
    * ``min_max_norm``: ``w * ((rate * clip(n, min_value, max_value) + (1 - rate) * n) /
      (eps + n))``.

    ``axes`` are non-negative axes of the canonical shape. Only the rows that train are
    constrained (a partially trainable table's frozen rows never change; its constraint has no
    norm over axis 0); zero rows stay 0.0 (every constraint maps a zero row to itself, and a
    ``value_clip`` of a table with zero rows keeps 0.0 in range).
    """

    kind: Literal["non_neg", "value_clip", "max_norm", "unit_norm", "min_max_norm"]
    axes: tuple[int, ...] = (0,)
    min_value: float | None = None
    max_value: float | None = None
    rate: float = 1.0

    @property
    def norm(self) -> bool:
        """Whether the constraint rescales by norms along ``axes``."""
        return self.kind in ("max_norm", "unit_norm", "min_max_norm")


@dataclass(frozen=True, slots=True)
class Weight:
    """One canonical weight.

    Attributes:
        name: canonical name, ``"<owner>.<param>"``.
        shape: canonical numpy shape.
        initializer: distribution of the initial values.
        trainable: ``"all"``, ``"none"``, or ``"rows"`` (only ``trainable_rows`` train; the
            backend stores the other rows in a non-trainable tensor, so no optimizer ever sees
            them).
        trainable_rows: sorted, disjoint, half-open ``(start, stop)`` row ranges; only for
            ``trainable == "rows"``.
        zero_rows: rows held at exactly 0.0 forever (padding). They are never in
            ``trainable_rows``. With ``trainable == "all"`` they live in the trainable tensor
            and are kept at 0.0 by receiving a zero gradient.
        state: a non-trainable statistic updated by the forward pass in training (batch-norm
            moving mean / variance); counted as frozen.
        row_initializers: ``((start, stop), initializer)`` pairs: half-open row ranges drawn
            from their own initializer instead of ``initializer`` (a table's special-token
            rows); the whole weight is drawn first, then these rows, then zero rows are set.
        constraint: the projection applied after each optimizer step, if any (only on weights
            that train).
    """

    name: str
    shape: tuple[int, ...]
    initializer: Initializer
    trainable: Literal["all", "none", "rows"] = "all"
    trainable_rows: tuple[tuple[int, int], ...] = ()
    zero_rows: tuple[int, ...] = ()
    state: bool = False
    row_initializers: tuple[tuple[tuple[int, int], Initializer], ...] = ()
    constraint: Constraint | None = None

    @property
    def size(self) -> int:
        """Number of scalars in the weight."""
        return math.prod(self.shape)

    @property
    def row_size(self) -> int:
        """Number of scalars in one row (first axis)."""
        return math.prod(self.shape[1:])

    @property
    def n_trainable_rows(self) -> int:
        """How many rows are trainable under ``trainable == "rows"``."""
        return sum(stop - start for start, stop in self.trainable_rows)

    @property
    def trainable_count(self) -> int:
        """Trainable parameters as the frameworks count them."""
        if self.trainable == "all":
            return self.size
        if self.trainable == "none":
            return 0
        return self.n_trainable_rows * self.row_size

    @property
    def frozen_count(self) -> int:
        """Non-trainable parameters as the frameworks count them."""
        return self.size - self.trainable_count

    def trainable_ids(self) -> list[int]:
        """The trainable row ids in ascending order (``trainable == "rows"`` only)."""
        return [i for start, stop in self.trainable_rows for i in range(start, stop)]


# ----------------------------------------------------------------------------- embeddings


@dataclass(frozen=True, slots=True)
class SinusoidalPositional:
    """Fixed sinusoids of arXiv 1706.03762 §3.5, not a weight.

    ``pe[pos, 2i] = sin(pos / base**(2i/dim))`` and ``pe[pos, 2i+1] = cos(pos / base**(2i/dim))``
    for ``pos`` in ``0..max_length-1`` (absolute positions, pads included). Computed in float64
    with numpy, then cast to the model's dtype.
    """

    max_length: int
    base: float = 10000.0
    kind: Literal["sinusoidal"] = "sinusoidal"


@dataclass(frozen=True, slots=True)
class LearnedPositional:
    """A trainable ``[max_length, dim]`` table (canonical weight ``weight``); row ``pos`` is added
    at position ``pos``."""

    max_length: int
    weight: str
    kind: Literal["learned"] = "learned"


Positional = SinusoidalPositional | LearnedPositional


@dataclass(frozen=True, slots=True)
class PretrainedVectors:
    """Where a table's initial rows come from: pretrained word vectors, matched by word.

    Not read by the compiler: the generated ``train.py`` reads them on a fresh start with its
    ``pretrained.py`` (a copy of :mod:`nnspec.vectors`, which defines the exact semantics):
    vocabulary id ``i``'s row is the vector of ``vocabulary[i]`` (or of its lowercase form with
    ``lowercase_fallback``); rows of words without one are filled per ``missing``; the pad row
    stays 0.0. The table's initializer still draws the initial values first.

    Attributes:
        vectors: a packaged name (``glove-6b-50d``) or a file path, relative to where
            ``train.py`` runs.
        format: ``text``, ``word2vec_binary``, ``npy`` or ``packaged`` (resolved from
            ``auto``).
        words: the word list of an ``npy`` matrix.
        vocabulary: the name of a string array in the training data file, or a text file
            (see :func:`nnspec.vectors.is_vocabulary_file`).
        missing: ``vector_stats``, ``zeros`` or ``initializer``.
        lowercase_fallback: try ``word.lower()`` when the word has no vector.
        special_tokens: how many of the highest ids are special tokens (for the report).
    """

    vectors: str
    format: Literal["text", "word2vec_binary", "npy", "packaged"]
    words: str | None = None
    vocabulary: str = "vocabulary"
    missing: Literal["vector_stats", "zeros", "initializer"] = "vector_stats"
    lowercase_fallback: bool = True
    special_tokens: int = 0


@dataclass(frozen=True, slots=True)
class SharedOffset:
    """One vector (canonical weight ``weight``, ``[dim]``) added to the row of every id in
    ``rows``: sorted, disjoint, half-open ``(start, stop)`` ranges, never the pad id. Its
    trainability is on that :class:`Weight` (``all`` or ``none``)."""

    weight: str
    rows: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class EmbeddingTable:
    """A named embedding table and its policies.

    A lookup of ids ``x`` of shape ``(B, L)`` computes, in this order::

        h = table[x]                         # (B, L, dim)
        h = h + selected(x)[..., None] * offset  # if offset is set: 1.0 where x is in its rows
        h = h * scale
        h = h + positional[:L]               # if positional is set
        h = h * (x != pad_index)[..., None]  # if pad_index is set and zero_padded_positions

    so the output is exactly 0.0 wherever ``x == pad_index``. ``weight`` names the canonical
    ``[vocab_size, dim]`` table; its trainability and zero rows are on that :class:`Weight`.
    When no positional encoding is added, ``table[pad_index]`` is already 0.0 and the final
    multiply may be skipped. ``pretrained`` says where the training script takes the initial
    rows from; the model itself does not depend on it. ``special_tokens`` are the table's
    special tokens with their ids, ``(token, id)`` in the spec's order: they take the highest
    ids (what data preparation must give them).
    """

    name: str
    vocab_size: int
    dim: int
    weight: str
    pad_index: int | None = None
    scale: float = 1.0
    positional: Positional | None = None
    zero_padded_positions: bool = True
    pretrained: PretrainedVectors | None = None
    special_tokens: tuple[tuple[str, int], ...] = ()
    offset: SharedOffset | None = None

    @property
    def special_ids(self) -> dict[str, int]:
        """The special-token ids by token, in the spec's order."""
        return dict(self.special_tokens)


# ----------------------------------------------------------------------------- ops


@dataclass(frozen=True, slots=True)
class Input:
    """A model input: integer token ids of shape ``(B, length)``, or ``(B, *shape)`` when
    ``shape`` is given (e.g. memories ``(B, memory_size, sentence_length)``)."""

    name: str
    length: int
    dtype: Literal["int32", "int64"] = "int32"
    shape: tuple[int, ...] = ()

    @property
    def dims(self) -> tuple[int, ...]:
        """The per-example shape."""
        return self.shape or (self.length,)


@dataclass(frozen=True, slots=True)
class EmbeddingLookup:
    """Look ids up in ``tables[table]`` (see :class:`EmbeddingTable` for the exact formula)."""

    table: str
    op: Literal["embedding"] = "embedding"
    reads_mask: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Flatten:
    """Flatten all but the batch axis, row-major (C order) over the channels-last layout."""

    op: Literal["flatten"] = "flatten"
    reads_mask: ClassVar[bool] = False
    pools_sequence: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Dense:
    """``y = activation(x @ kernel + bias)`` on the last axis.

    Canonical weights: ``kernel`` is ``[in, out]``, ``bias`` is ``[out]`` (``None`` without bias).
    """

    units: int
    activation: Activation
    kernel: str
    bias: str | None
    op: Literal["dense"] = "dense"
    reads_mask: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Dropout:
    """Inverted dropout with drop probability ``rate`` in training; identity otherwise."""

    rate: float
    op: Literal["dropout"] = "dropout"
    reads_mask: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class GlobalPool:
    """Pool ``(B, L, D)`` over the sequence axis to ``(B, D)``.

    With a mask on the input node, padded positions are ignored: ``average`` divides the masked
    sum by ``max(count, 1)``; ``max`` takes the maximum over valid positions. A row with no valid
    position pools to 0.0 in both modes.
    """

    mode: Literal["average", "max"]
    op: Literal["global_pool"] = "global_pool"
    reads_mask: ClassVar[bool] = True
    pools_sequence: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class AttentionPool:
    """Attention-weighted pooling of ``(B, L, D)`` over the sequence to ``(B, D)`` with a
    learned query: canonical weight ``query`` ``[D]``.

    Scores ``s_t = x_t . query`` (divided by ``sqrt(D)`` with ``scale``); weights
    ``a = softmax(s)`` over the valid positions only (with a mask on the input node, padded
    positions get exactly ``a_t = 0``); output ``sum_t a_t x_t``. A row with no valid position
    pools to 0.0 (and passes no gradient).
    """

    query: str
    scale: bool = True
    op: Literal["attention_pool"] = "attention_pool"
    reads_mask: ClassVar[bool] = True
    pools_sequence: ClassVar[bool] = True


# ----------------------------------------------------------------------------- architectures


@dataclass(frozen=True, slots=True)
class Conv1D:
    """1-D convolution over ``(B, L, C)``, channels-last.

    Canonical weights: ``kernel`` ``[kernel_size, in, filters]`` (Keras' layout; torch's
    ``weight`` is ``kernel.transpose(2, 1, 0)``), ``bias`` ``[filters]``.

    Output length: ``valid``: ``floor((L - dilation * (kernel_size - 1) - 1) / strides) + 1``;
    ``same``: ``ceil(L / strides)`` with TensorFlow's rule, total padding
    ``max((ceil(L / s) - 1) * s + (k - 1) * d + 1 - L, 0)``, ``total // 2`` on the left and the
    rest on the right; ``causal``: ``dilation * (kernel_size - 1)`` zeros on the left, then valid.
    """

    filters: int
    kernel_size: int
    kernel: str
    bias: str | None
    strides: int = 1
    dilation: int = 1
    padding: Literal["valid", "same", "causal"] = "valid"
    activation: Activation = "linear"
    op: Literal["conv1d"] = "conv1d"
    reads_mask: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Pool1D:
    """Max or average pooling over windows of ``pool_size`` every ``strides`` steps (valid
    padding, so ``floor((L - pool_size) / strides) + 1`` outputs). Ignores masks."""

    mode: Literal["max", "average"]
    pool_size: int
    strides: int
    op: Literal["pool1d"] = "pool1d"
    reads_mask: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class RecurrentDirection:
    """Canonical weight names of one direction of a recurrent layer (``G`` gates: 4 for LSTM,
    3 for GRU).

    * ``kernel`` ``[in, G * units]``, ``recurrent_kernel`` ``[units, G * units]``;
    * ``input_bias`` and ``recurrent_bias`` ``[G * units]`` (PyTorch's ``b_ih`` and ``b_hh``;
      both train).

    Gate order along the last axis is Keras': LSTM ``(i, f, c, o)`` (the same as torch's
    ``(i, f, g, o)``), GRU ``(z, r, h)`` (torch: ``(r, z, n)``). The GRU is the ``reset_after``
    form (torch's): ``h~ = tanh(x W_h + b_ih_h + r * (h U_h + b_hh_h))``,
    ``h' = z * h + (1 - z) * h~``. Gate activations are sigmoid, the cell/candidate tanh.
    """

    kernel: str
    recurrent_kernel: str
    input_bias: str
    recurrent_bias: str


@dataclass(frozen=True, slots=True)
class Recurrent:
    """An LSTM or GRU over ``(B, L, C)`` with zero initial state.

    With a mask on its input, padded positions must come after the valid ones (post-padding);
    they are skipped: the state is carried unchanged, outputs there are 0.0, the final state is
    the state after the last valid step, and the backward direction starts at the last valid
    step. A row with no valid step gives 0.0 everywhere.

    Output: ``(B, L, D)`` with ``return_sequences`` else the final state ``(B, D)``; ``D`` is
    ``units``, or ``2 * units`` for bidirectional ``concat`` (forward first), ``units`` for
    ``sum``.
    """

    cell: Literal["lstm", "gru"]
    units: int
    forward: RecurrentDirection
    backward: RecurrentDirection | None = None
    return_sequences: bool = False
    merge: Literal["concat", "sum"] = "concat"
    op: Literal["recurrent"] = "recurrent"
    reads_mask: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class LayerNorm:
    """``gamma * (x - mean) / sqrt(var + epsilon) + beta`` over the last axis (biased var).
    Canonical weights ``gamma``, ``beta`` ``[D]``."""

    epsilon: float
    gamma: str
    beta: str
    op: Literal["layer_norm"] = "layer_norm"
    reads_mask: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class BatchNorm:
    """Batch normalization over every axis but the last (masks ignored).

    Training: normalize with the batch mean and biased variance; update
    ``moving = (1 - momentum) * moving + momentum * batch`` with the *unbiased* batch variance
    for ``moving_variance`` (PyTorch's rule; Keras' ``momentum`` is ``1 - momentum``).
    Inference: use the moving statistics. ``gamma``/``beta`` train; ``moving_mean`` and
    ``moving_variance`` (initialised to 0 and 1) are state weights: counted as frozen, saved in
    canonical form, never touched by the optimizer.
    """

    epsilon: float
    momentum: float
    gamma: str
    beta: str
    moving_mean: str
    moving_variance: str
    op: Literal["batch_norm"] = "batch_norm"
    reads_mask: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Merge:
    """Element-wise ``add`` / ``multiply`` of same-shape inputs, or ``concat`` on the last
    axis. The output carries the first input mask present (inputs of one length normally share
    their padding)."""

    mode: Literal["add", "multiply", "concat"]
    op: Literal["merge"] = "merge"
    reads_mask: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Rotary:
    """Rotary position embedding (arXiv 2104.09864) applied to queries and keys per head.

    For head dimension ``d`` and position ``p`` (``0..L-1``), the pair
    ``(x[2i], x[2i+1])`` is rotated by ``p * base**(-2i/d)``:
    ``(x[2i] cos - x[2i+1] sin, x[2i] sin + x[2i+1] cos)``. Computed in float64 numpy.
    """

    base: float = 10000.0


@dataclass(frozen=True, slots=True)
class AttentionWeights:
    """Canonical weights of multi-head attention, model width ``E = heads * head_dim``:
    ``query``, ``key``, ``value`` kernels ``[E, E]`` with biases ``[E]``; ``output`` kernel
    ``[E, E]`` with bias ``[E]``. Head ``h`` uses columns ``h*head_dim:(h+1)*head_dim``."""

    query_kernel: str
    query_bias: str
    key_kernel: str
    key_bias: str
    value_kernel: str
    value_bias: str
    output_kernel: str
    output_bias: str


@dataclass(frozen=True, slots=True)
class SelfAttention:
    """Multi-head self-attention over ``(B, L, E)``.

    ``scores = (q k^T) / sqrt(head_dim)`` per head; ``softmax(scores)`` over the keys gives
    keys at padded positions (from the input's mask) weight exactly 0.0, except in a row whose
    keys are all padded: nothing is masked there (the softmax runs over all of its keys). The
    rule is exact in every dtype (backends mask by replacement, never by adding a large
    negative number). Attention dropout at ``dropout`` in training; output
    ``concat(heads) @ output_kernel + output_bias``. Queries at padded positions are computed
    like any other. Rotary, if set, rotates q and k after projection.
    """

    heads: int
    head_dim: int
    weights: AttentionWeights
    dropout: float = 0.0
    rotary: Rotary | None = None
    op: Literal["self_attention"] = "self_attention"
    reads_mask: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class TransformerBlock:
    """A Transformer encoder block over ``(B, L, E)``.

    Post-norm (``norm_first`` false, arXiv 1706.03762)::

        x = norm1(x + dropout(attention(x)))
        x = norm2(x + dropout(ff2(dropout(activation(ff1(x))))))

    Pre-norm::

        x = x + dropout(attention(norm1(x)))
        x = x + dropout(ff2(dropout(activation(ff1(norm2(x))))))

    Canonical weights: the attention's (see :class:`AttentionWeights`); ``ff1`` kernel
    ``[E, ff_dim]`` + bias, ``ff2`` kernel ``[ff_dim, E]`` + bias; ``norm1``/``norm2`` gamma and
    beta ``[E]`` (layer norm with ``epsilon``). The mask passes through.
    """

    attention: SelfAttention
    ff_dim: int
    ff1_kernel: str
    ff1_bias: str
    ff2_kernel: str
    ff2_bias: str
    norm1_gamma: str
    norm1_beta: str
    norm2_gamma: str
    norm2_beta: str
    epsilon: float = 1e-5
    dropout: float = 0.1
    activation: Activation = "relu"
    norm_first: bool = False
    op: Literal["transformer_block"] = "transformer_block"
    reads_mask: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class MemoryHop:
    """Canonical weights of one hop ``k`` of an End-To-End Memory Network: the memory
    embedding ``A`` and output embedding ``C`` ``[vocab, dim]``, and, with temporal encoding,
    ``TA`` / ``TC`` ``[memory_size, dim]``. Adjacent tying makes hop ``k+1``'s ``A`` / ``TA``
    the same names as hop ``k``'s ``C`` / ``TC``; layer-wise tying gives every hop the same
    names."""

    A: str
    C: str
    TA: str | None = None
    TC: str | None = None


@dataclass(frozen=True, slots=True)
class MemoryNetwork:
    """End-To-End Memory Network (arXiv 1503.08895), inputs ``memories`` ``(B, M, S)`` ids and,
    for ``query == "embedded"``, ``question`` ``(B, Q)`` ids (the node's inputs, in that order).

    With ``pad_index`` p, a word id p embeds to 0.0 (its rows in every embedding are zero rows)
    and a memory whose words are all p is padded: it gets no attention. Sentences are
    post-padded; ``J`` is the number of non-pad words of a sentence (at least 1).

    * Sentence encoding: ``m_i = sum_j l_j * A[x_ij]`` (``+ TA[i]``), ``c_i`` likewise with
      ``C`` / ``TC``; ``l_j = 1`` (bag of words), or with ``position_encoding``
      ``l_kj = (1 - j/J) - (k/d) (1 - 2j/J)`` for word ``j = 1..J`` and unit ``k = 1..d``
      (0 beyond ``J``).
    * Query: ``u_1 = sum_j l_j * B[q_j]`` (``B`` is hop 1's ``A`` under adjacent tying, else
      the weight ``query_embedding``), or ``constant``: every unit ``query_value``.
    * Each hop ``k``: ``p = softmax(u_k . m_i)`` over the non-padded memories (padded ones get
      ``p_i`` exactly 0.0; in a row of padded memories only, nothing is masked, as in
      :class:`SelfAttention`); ``o = sum_i p_i c_i``; ``u_{k+1} = u_k H + o`` with ``H``
      ``[d, d]`` (``linear_map``) else ``u_k + o``. With ``relu_half`` (§5), ReLU is then
      applied to the last ``d - d // 2`` units of ``u_{k+1}`` (the first ``d // 2`` stay
      linear), after every hop, the last included. With ``dropout``, inverted dropout is then
      applied to ``u_{k+1}`` in training.
    * Linear start (``linear_start``): the model starts in linear mode, where each hop's ``p``
      is ``u_k . m_i`` itself (no softmax; 0 at padded memories), until training switches it
      to the softmax for good (the generated ``train.py``, when the validation loss stops
      falling). Inference and parity use the softmax unless linear mode is asked for.
    * With ``word_memories`` the memories input is ``(B, M)``: one word per memory, as
      ``(B, M, 1)`` (``sentence_length`` 1).
    * Output logits ``u_{K+1} W`` with ``W`` ``[d, vocab_out]``: under adjacent tying ``W`` is
      the transpose of the last hop's ``C`` (``output`` is ``None``), else its own weight.
      ``activation`` (``softmax`` or ``linear``) is applied to the logits.
    """

    hops: tuple[MemoryHop, ...]
    dim: int
    vocab_size: int
    memory_size: int
    sentence_length: int
    tying: Literal["adjacent", "layerwise"]
    query: Literal["constant", "embedded"]
    query_embedding: str | None = None
    query_value: float = 0.1
    linear_map: str | None = None
    output: str | None = None
    output_size: int = 0
    position_encoding: bool = False
    pad_index: int | None = None
    activation: Activation = "softmax"
    relu_half: bool = False
    dropout: float = 0.0
    linear_start: bool = False
    word_memories: bool = False
    op: Literal["memory_network"] = "memory_network"
    reads_mask: ClassVar[bool] = False


Op = (
    EmbeddingLookup
    | Flatten
    | Dense
    | Dropout
    | GlobalPool
    | AttentionPool
    | Conv1D
    | Pool1D
    | Recurrent
    | LayerNorm
    | BatchNorm
    | Merge
    | SelfAttention
    | TransformerBlock
    | MemoryNetwork
)
"""Every op class states ``reads_mask``: whether it reads the padding mask of its (first) input
node (see :meth:`Program.read_mask`). Backends compute a mask only for the nodes that read it.
Ops that reduce a sequence to one vector per example (flatten, pooling) also state
``pools_sequence = True`` (see :func:`pools_sequence`)."""


def pools_sequence(op: Op) -> bool:
    """Whether ``op`` reduces a sequence to one vector per example (flatten, pooling): every
    position, padding included, reaches its output unless a mask keeps it out."""
    return getattr(op, "pools_sequence", False)


@dataclass(frozen=True, slots=True)
class Mask:
    """A padding mask: ``inputs[input] != pad_index``, boolean ``(B, L)``."""

    input: str
    pad_index: int


@dataclass(frozen=True, slots=True)
class Node:
    """One op applied to earlier nodes or model inputs (by name), in topological order.

    Attributes:
        name: unique Python identifier.
        op: what the node computes.
        layer: the layer object that computes it (the owner prefix of its weights); nodes with
            the same ``layer`` share (tie) its weights and are the same op. Defaults to ``name``.
        inputs: names of model inputs or earlier nodes.
        shape: output shape, batch first as ``None``.
        mask: the padding mask that travels with the output (position-wise ops keep it;
            flatten and pooling drop it). A pooling node reads its input node's mask.
    """

    name: str
    op: Op
    inputs: tuple[str, ...]
    shape: Shape
    mask: Mask | None = None
    layer: str = ""

    @property
    def layer_name(self) -> str:
        """The layer object computing this node (``layer`` or ``name``)."""
        return self.layer or self.name


@dataclass(frozen=True, slots=True)
class Repeat:
    """One spec layer unrolled into consecutive repeats of one op: a stack of recurrent layers
    (``num_layers``) or a run of Transformer blocks. Backends may build the members in a loop
    (``nn.ModuleList``, a list of Keras layers) or as one stacked module; the reference and the
    weights see the unrolled nodes.

    Attributes:
        layer: the spec layer's name, which its last member takes.
        members: the repeated nodes, in order (``<layer>_block0`` ... ``<layer>``).
        between: the nodes between consecutive members, one per gap (a stack's dropout), or
            none.
    """

    layer: str
    members: tuple[str, ...]
    between: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        """How many times the op repeats."""
        return len(self.members)


# ----------------------------------------------------------------------------- training

Loss = Literal[
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "binary_crossentropy",
    "mse",
]


@dataclass(frozen=True, slots=True)
class Optimizer:
    """One optimizer with PyTorch's update rule (``torch.optim.SGD / Adam / AdamW``).

    * ``sgd``: ``g += weight_decay * p``; ``buf = g`` on the first step, then
      ``buf = momentum * buf + g``; ``g = g + momentum * buf`` if ``nesterov`` else ``buf``;
      ``p -= lr * g``.
    * ``adam``: ``g += weight_decay * p`` (L2); ``m = b1 m + (1-b1) g``;
      ``v = b2 v + (1-b2) g²``; ``p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``.
    * ``adamw``: ``p *= 1 - lr * weight_decay`` first, then the Adam step without L2.

    Gradients of embedding tables are dense and merged (repeated ids summed) before the update.
    With ``clip_norm``, all trainable gradients are first scaled by
    ``min(1, clip_norm / (global_norm + 1e-6))`` (``torch.nn.utils.clip_grad_norm_``), the
    global norm taken over the merged gradients.
    """

    kind: Literal["sgd", "adam", "adamw"]
    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float | None = None


@dataclass(frozen=True, slots=True)
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    mode: Literal["min", "max"] = "min"
    restore_best: bool = True


@dataclass(frozen=True, slots=True)
class Training:
    """The training section.

    Loss formulas (mean over the batch; ``eps`` is :attr:`epsilon`):

    * ``sparse_categorical_crossentropy``: labels are int class ids ``(B,)``;
      ``-log(clip(p[y], eps, 1 - eps))``, or ``-log_softmax(z)[y]`` with ``from_logits``.
    * ``categorical_crossentropy``: labels are one-hot / probabilities ``(B, C)``;
      ``-sum(y * log(clip(p, eps, 1 - eps)))``, or ``-sum(y * log_softmax(z))``.
    * ``binary_crossentropy``: mean over all elements of
      ``-(y log(clip(p)) + (1 - y) log(1 - clip(p)))``, or the logits form.
    * ``mse``: mean over all elements of ``(p - y)**2``.
    """

    loss: Loss
    optimizer: Optimizer
    batch_size: int = 32
    epochs: int = 10
    seed: int = 0
    from_logits: bool = False
    epsilon: float = 1e-7
    early_stopping: EarlyStopping | None = None
    validation_split: float = 0.1


# ----------------------------------------------------------------------------- program


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A lint finding; ``path`` is the spec field it concerns."""

    level: Literal["warning", "error"]
    code: str
    message: str
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True, eq=False)
class Program:
    """A compiled spec: everything a backend needs, and nothing framework-specific.

    Attributes:
        name: the spec's name (a Python identifier).
        class_name: the generated model class name (CamelCase of ``name``).
        spec_hash: sha256 of the spec's canonical JSON form (first 16 hex digits).
        version: the nnspec version that compiled it.
        inputs: model inputs in call order.
        tables: embedding tables.
        nodes: ops in topological order.
        outputs: names of output nodes.
        weights: every canonical weight, in a stable order.
        training: the training section.
        diagnostics: lint findings.
        repeats: the spec layers unrolled into repeats of one op.
        spec: the validated spec it was compiled from (``None`` for a program built by hand),
            written beside the generated code as ``spec.json`` in its canonical JSON form (of
            which ``spec_hash`` is the sha256) and copied into every run folder.
        output_activation: the activation the model applies to its output node, which computes
            logits (``None``: the output node's value is the output). Set by the compiler for a
            softmax (sigmoid) output under categorical (binary) cross-entropy: training then
            computes the loss from the logits (``training.from_logits``), exactly, while the
            model still returns probabilities.
    """

    name: str
    class_name: str
    spec_hash: str
    version: str
    inputs: tuple[Input, ...]
    tables: tuple[EmbeddingTable, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    weights: tuple[Weight, ...]
    training: Training
    diagnostics: tuple[Diagnostic, ...] = field(default=())
    repeats: tuple[Repeat, ...] = field(default=())
    output_activation: Activation | None = None
    spec: Any = field(default=None, repr=False)

    # Programs compare and hash by identity: backends cache per-program work keyed on them.

    @cached_property
    def _by_name(self) -> dict[str, dict[str, object]]:
        return {
            "table": {t.name: t for t in self.tables},
            "weight": {w.name: w for w in self.weights},
            "node": {n.name: n for n in self.nodes},
        }

    def table(self, name: str) -> EmbeddingTable:
        """The embedding table called ``name``."""
        return self._by_name["table"][name]  # type: ignore[return-value]

    def weight(self, name: str) -> Weight:
        """The canonical weight called ``name``."""
        return self._by_name["weight"][name]  # type: ignore[return-value]

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        return self._by_name["node"][name]  # type: ignore[return-value]

    def is_node(self, name: str) -> bool:
        """Whether ``name`` names a node (rather than a model input)."""
        return name in self._by_name["node"]

    def read_mask(self, node: Node) -> Mask | None:
        """The padding mask ``node`` reads: its first input node's mask when its op
        ``reads_mask`` (none for a model input or an op that ignores masks)."""
        if not node.op.reads_mask or not self.is_node(node.inputs[0]):
            return None
        return self.node(node.inputs[0]).mask

    def op_weights(self, op: Op) -> list[str]:
        """The names of the canonical weights ``op`` holds, in the order its fields name them."""
        weights = self._by_name["weight"]
        return [name for name in _op_strings(op) if name in weights]

    @cached_property
    def first_nodes(self) -> dict[str, str]:
        """For each layer, the first node (in order) that computes it."""
        first: dict[str, str] = {}
        for node in self.nodes:
            first.setdefault(node.layer_name, node.name)
        return first

    @property
    def trainable_count(self) -> int:
        """Total trainable parameters."""
        return sum(w.trainable_count for w in self.weights)

    @property
    def frozen_count(self) -> int:
        """Total non-trainable parameters."""
        return sum(w.frozen_count for w in self.weights)


# ----------------------------------------------------------------------------- invariants


class InvalidProgram(AssertionError):
    """A program breaks an invariant of the IR: an internal error (a valid spec never compiles
    to one), raised by :func:`validate` naming the node, table or weight and the invariant."""


def _op_strings(value: object) -> list[str]:
    """Every string held (recursively) by an op's fields: its weight names among them."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple):
        return [s for item in value for s in _op_strings(item)]
    if hasattr(value, "__dataclass_fields__"):
        return [s for name in value.__dataclass_fields__ for s in _op_strings(getattr(value, name))]
    return []


def _memory_words(op: MemoryNetwork) -> set[str]:
    """The word-embedding weights of a memory network (the ones holding its pad row)."""
    words = {name for hop in op.hops for name in (hop.A, hop.C)}
    if op.query_embedding is not None:
        words.add(op.query_embedding)
    return words


def validate(program: Program) -> None:
    """Check the IR's invariants once, before any backend runs; :class:`InvalidProgram` names
    the first one broken. Backends assume a program that passes.

    * names: inputs, nodes, tables and weights are unique; node names are not input names;
    * order: a node's inputs are model inputs or earlier nodes; every output is a node;
    * shapes: ``(None, d1, ...)`` with positive ints; weights have positive dimensions;
    * masks: a node's mask is on a model input;
    * tying: nodes computed by one layer have the same op;
    * weights: every weight has an owner (a table, its learned positions, or an op); row-wise
      trainability only on embedding tables, with sorted, disjoint, in-range rows apart from
      the zero rows; zero rows only on embedding tables (exactly the pad row) and on a memory
      network's word tables (exactly its pad row); learned positions train whole; a constraint
      only on a weight that trains, with distinct axes of its shape (never axis 0 when only
      some rows train); initializer rows in range;
    * ops: an embedding looks up an existing table in a model input; rotary needs an even
      head_dim; batch-norm statistics are state weights; memory-network hops have ``TA`` and
      ``TC`` all or none, and an embedded query has a table (``query_embedding`` or adjacent
      tying).
    """

    def check(ok: bool, where: str, invariant: str) -> None:
        if not ok:
            raise InvalidProgram(f"program {program.name!r}: {where}: {invariant}")

    inputs = {inp.name for inp in program.inputs}
    check(len(inputs) == len(program.inputs), "inputs", "input names must be unique")
    weights = {w.name: w for w in program.weights}
    check(len(weights) == len(program.weights), "weights", "weight names must be unique")
    tables = {t.name: t for t in program.tables}
    check(len(tables) == len(program.tables), "tables", "table names must be unique")

    owned: set[str] = set()
    zero_row_owners: dict[str, tuple[int, ...]] = {}
    for table in program.tables:
        where = f"table {table.name!r}"
        check(table.weight in weights, where, f"its weight {table.weight!r} must exist")
        owned.add(table.weight)
        zero_row_owners[table.weight] = () if table.pad_index is None else (table.pad_index,)
        if isinstance(table.positional, LearnedPositional):
            pos = weights.get(table.positional.weight)
            check(pos is not None, where, "its learned positions must be a weight")
            assert pos is not None
            check(
                pos.trainable == "all" and not pos.zero_rows,
                where,
                f"learned positions {pos.name!r} train whole and have no zero rows",
            )
            owned.add(pos.name)
        if table.offset is not None:
            offset = weights.get(table.offset.weight)
            rows, pad_id = table.offset.rows, table.pad_index
            check(
                offset is not None
                and offset.shape == (table.dim,)
                and offset.trainable in ("all", "none")
                and not offset.zero_rows,
                where,
                "its shared offset is a [dim] weight that trains whole or not at all",
            )
            check(
                bool(rows)
                and all(0 <= a < b <= table.vocab_size for a, b in rows)
                and all(b <= c for (_, b), (c, _) in pairwise(rows))
                and (pad_id is None or not any(a <= pad_id < b for a, b in rows)),
                where,
                "its shared offset's rows are sorted, disjoint, in range and not the pad row",
            )
            owned.add(table.offset.weight)

    seen: set[str] = set()
    layer_ops: dict[str, Op] = {}
    for node in program.nodes:
        where = f"node {node.name!r}"
        check(node.name not in seen and node.name not in inputs, where, "names must be unique")
        for name in node.inputs:
            check(name in inputs or name in seen, where, f"input {name!r} must come before it")
        check(bool(node.inputs), where, "a node needs an input")
        shape = node.shape
        check(
            len(shape) >= 2
            and shape[0] is None
            and all(isinstance(d, int) and d > 0 for d in shape[1:]),
            where,
            f"shape {shape} must be (None, positive ints...)",
        )
        if node.mask is not None:
            check(node.mask.input in inputs, where, f"mask on {node.mask.input!r}: not an input")
        op = node.op
        first = layer_ops.setdefault(node.layer_name, op)
        check(first == op, where, f"layer {node.layer_name!r} computes another op")
        owned.update(name for name in _op_strings(op) if name in weights)
        if isinstance(op, EmbeddingLookup):
            check(op.table in tables, where, f"table {op.table!r} must exist")
            check(node.inputs[0] in inputs, where, "an embedding looks up a model input")
        attention = op.attention if isinstance(op, TransformerBlock) else op
        if isinstance(attention, SelfAttention) and attention.rotary is not None:
            check(attention.head_dim % 2 == 0, where, "rotary needs an even head_dim")
        if isinstance(op, BatchNorm):
            for name in (op.moving_mean, op.moving_variance):
                check(
                    name in weights and weights[name].state,
                    where,
                    f"batch-norm statistics {name!r} must be state weights",
                )
        if isinstance(op, MemoryNetwork):
            check(bool(op.hops), where, "a memory network needs a hop")
            temporal = {(hop.TA is not None, hop.TC is not None) for hop in op.hops}
            check(
                temporal <= {(True, True)} or temporal <= {(False, False)},
                where,
                "every hop needs TA and TC, or none does",
            )
            check(
                op.query != "embedded" or op.tying == "adjacent" or op.query_embedding is not None,
                where,
                "an embedded query needs query_embedding (or adjacent tying)",
            )
            pad = () if op.pad_index is None else (op.pad_index,)
            for name in _memory_words(op):
                if zero_row_owners.setdefault(name, pad) != pad:
                    check(False, where, f"weight {name!r} is padded differently elsewhere")
        seen.add(node.name)
    for name in program.outputs:
        check(name in seen, f"output {name!r}", "must be a node")

    order = {node.name: i for i, node in enumerate(program.nodes)}
    for repeat in program.repeats:
        where = f"repeat {repeat.layer!r}"
        chain = [repeat.members[0]]
        for k, member in enumerate(repeat.members[1:]):
            chain += [repeat.between[k], member] if repeat.between else [member]
        check(
            repeat.count >= 2
            and repeat.members[-1] == repeat.layer
            and len(repeat.between) in (0, repeat.count - 1)
            and all(name in order for name in chain),
            where,
            "members (at least two, the last named after the layer) and one node per gap",
        )
        ops = {type(program.node(name).op) for name in repeat.members}
        check(len(ops) == 1, where, "members compute one op type")
        start = order[chain[0]]
        check(
            [order[name] for name in chain] == list(range(start, start + len(chain))),
            where,
            "members and the nodes between them are consecutive nodes",
        )
        check(
            all(program.node(b).inputs == (a,) for a, b in pairwise(chain)),
            where,
            "each member reads the node before it",
        )

    for w in program.weights:
        where = f"weight {w.name!r}"
        check(w.name in owned, where, "no table or op owns it")
        check(all(d > 0 for d in w.shape), where, f"shape {w.shape} must be positive")
        expected = zero_row_owners.get(w.name, ())
        check(
            w.zero_rows == expected,
            where,
            f"zero rows {w.zero_rows}: expected {expected} (only pad rows of word tables)",
        )
        if w.trainable == "rows":
            check(w.name in {t.weight for t in program.tables}, where, "rows train only in tables")
            stop_before = 0
            for start, stop in w.trainable_rows:
                check(
                    stop_before <= start < stop <= w.shape[0],
                    where,
                    f"trainable rows {w.trainable_rows} must be sorted, disjoint, in range",
                )
                stop_before = stop
            check(
                not any(start <= z < stop for z in w.zero_rows for start, stop in w.trainable_rows),
                where,
                "a zero row cannot be trainable",
            )
        else:
            check(not w.trainable_rows, where, "trainable rows need trainable == 'rows'")
        for (start, stop), _ in w.row_initializers:
            check(0 <= start < stop <= w.shape[0], where, "initializer rows must be in range")
        c = w.constraint
        if c is not None:
            check(
                w.trainable != "none" and not w.state,
                where,
                "a constraint needs a weight that trains",
            )
            check(
                not c.norm
                or (
                    bool(c.axes)
                    and all(0 <= a < len(w.shape) for a in c.axes)
                    and len(set(c.axes)) == len(c.axes)
                ),
                where,
                f"constraint axes {c.axes} must be distinct axes of {w.shape}",
            )
            check(
                w.trainable != "rows" or not c.norm or 0 not in c.axes,
                where,
                "a partially trainable weight's norms cannot span its rows (axis 0)",
            )
