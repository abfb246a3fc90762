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
from typing import Literal

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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
    """

    name: str
    shape: tuple[int, ...]
    initializer: Initializer
    trainable: Literal["all", "none", "rows"] = "all"
    trainable_rows: tuple[tuple[int, int], ...] = ()
    zero_rows: tuple[int, ...] = ()

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


@dataclass(frozen=True)
class SinusoidalPositional:
    """Fixed sinusoids of arXiv 1706.03762 §3.5, not a weight.

    ``pe[pos, 2i] = sin(pos / base**(2i/dim))`` and ``pe[pos, 2i+1] = cos(pos / base**(2i/dim))``
    for ``pos`` in ``0..max_length-1`` (absolute positions, pads included). Computed in float64
    with numpy, then cast to the model's dtype.
    """

    max_length: int
    base: float = 10000.0
    kind: Literal["sinusoidal"] = "sinusoidal"


@dataclass(frozen=True)
class LearnedPositional:
    """A trainable ``[max_length, dim]`` table (canonical weight ``weight``); row ``pos`` is added
    at position ``pos``."""

    max_length: int
    weight: str
    kind: Literal["learned"] = "learned"


Positional = SinusoidalPositional | LearnedPositional


@dataclass(frozen=True)
class EmbeddingTable:
    """A named embedding table and its policies.

    A lookup of ids ``x`` of shape ``(B, L)`` computes, in this order::

        h = table[x] * scale                 # (B, L, dim)
        h = h + positional[:L]               # if positional is set
        h = h * (x != pad_index)[..., None]  # if pad_index is set and zero_padded_positions

    so the output is exactly 0.0 wherever ``x == pad_index``. ``weight`` names the canonical
    ``[vocab_size, dim]`` table; its trainability and zero rows are on that :class:`Weight`.
    When no positional encoding is added, ``table[pad_index]`` is already 0.0 and the final
    multiply may be skipped.
    """

    name: str
    vocab_size: int
    dim: int
    weight: str
    pad_index: int | None = None
    scale: float = 1.0
    positional: Positional | None = None
    zero_padded_positions: bool = True


# ----------------------------------------------------------------------------- ops


@dataclass(frozen=True)
class Input:
    """A model input: integer token ids of shape ``(B, length)``."""

    name: str
    length: int
    dtype: Literal["int32", "int64"] = "int32"


@dataclass(frozen=True)
class EmbeddingLookup:
    """Look ids up in ``tables[table]`` (see :class:`EmbeddingTable` for the exact formula)."""

    table: str
    op: Literal["embedding"] = "embedding"


@dataclass(frozen=True)
class Flatten:
    """Flatten all but the batch axis, row-major (C order) over the channels-last layout."""

    op: Literal["flatten"] = "flatten"


@dataclass(frozen=True)
class Dense:
    """``y = activation(x @ kernel + bias)`` on the last axis.

    Canonical weights: ``kernel`` is ``[in, out]``, ``bias`` is ``[out]`` (``None`` without bias).
    """

    units: int
    activation: Activation
    kernel: str
    bias: str | None
    op: Literal["dense"] = "dense"


@dataclass(frozen=True)
class Dropout:
    """Inverted dropout with drop probability ``rate`` in training; identity otherwise."""

    rate: float
    op: Literal["dropout"] = "dropout"


@dataclass(frozen=True)
class GlobalPool:
    """Pool ``(B, L, D)`` over the sequence axis to ``(B, D)``.

    With a mask on the input node, padded positions are ignored: ``average`` divides the masked
    sum by ``max(count, 1)``; ``max`` takes the maximum over valid positions. A row with no valid
    position pools to 0.0 in both modes.
    """

    mode: Literal["average", "max"]
    op: Literal["global_pool"] = "global_pool"


Op = EmbeddingLookup | Flatten | Dense | Dropout | GlobalPool


@dataclass(frozen=True)
class Mask:
    """A padding mask: ``inputs[input] != pad_index``, boolean ``(B, L)``."""

    input: str
    pad_index: int


@dataclass(frozen=True)
class Node:
    """One op applied to earlier nodes or model inputs (by name), in topological order.

    Attributes:
        name: unique Python identifier (also the owner prefix of its weights).
        op: what the node computes.
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


# ----------------------------------------------------------------------------- training

Loss = Literal[
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "binary_crossentropy",
    "mse",
]


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    mode: Literal["min", "max"] = "min"
    restore_best: bool = True


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Diagnostic:
    """A lint finding; ``path`` is the spec field it concerns."""

    level: Literal["warning", "error"]
    code: str
    message: str
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True)
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

    def table(self, name: str) -> EmbeddingTable:
        """The embedding table called ``name``."""
        return next(t for t in self.tables if t.name == name)

    def weight(self, name: str) -> Weight:
        """The canonical weight called ``name``."""
        return next(w for w in self.weights if w.name == name)

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        return next(n for n in self.nodes if n.name == name)

    @property
    def trainable_count(self) -> int:
        """Total trainable parameters."""
        return sum(w.trainable_count for w in self.weights)

    @property
    def frozen_count(self) -> int:
        """Total non-trainable parameters."""
        return sum(w.frozen_count for w in self.weights)
