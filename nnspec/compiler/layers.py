"""Shape inference and IR construction, one builder per spec layer type.

Each builder gets the layer, the nodes it reads, and the name of the layer that owns its weights
(itself, or the layer it shares with), and returns the IR nodes it becomes (stacked recurrent
layers and Transformer encoders become several).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from nnspec.compiler import ir
from nnspec.compiler.resolved import (
    TORCH_EMBEDDING,
    CompileProblem,
    LayerRef,
    Resolved,
    constraint,
    initializer,
    torch_uniform,
)
from nnspec.spec import models as m
from nnspec.spec.validate import did_you_mean

GLOROT = ir.Initializer("glorot_uniform")
ZEROS = ir.Initializer("zeros")
ONES = ir.Initializer("ones")


@dataclass(slots=True)
class Context:
    """What a builder needs: the spec, the layer, its inputs and how to make weights."""

    spec: m.Spec
    ref: LayerRef
    owner: str
    sources: list[ir.Node | ir.Input]
    resolved: Resolved
    first_use: bool

    @property
    def layer(self) -> m.LayerBase:
        return self.ref.spec

    def fail(self, message: str, field: str | None = None) -> CompileProblem:
        path = self.ref.path if field is None else (*self.ref.path, field)
        return CompileProblem(path, message)

    def weight(
        self,
        name: str,
        shape: tuple[int, ...],
        init: ir.Initializer,
        constrained: tuple[m.Constraint | None, str] | None = None,
        **kw,
    ) -> str:
        """Create canonical weight ``<owner>.<name>`` on the owner's first use; ``constrained``
        is its spec constraint and the field saying it (layers sharing weights are configured
        alike, constraints included)."""
        full = f"{self.owner}.{name}"
        spec, field = constrained if constrained is not None else (None, "")
        if self.first_use:
            self.resolved.add_weight(ir.Weight(full, self.resolved.shape(shape), init, **kw))
        if spec is not None:
            weights = self.resolved.weights
            index = next(i for i in range(len(weights) - 1, -1, -1) if weights[i].name == full)
            projection, problem = constraint(spec, weights[index])
            if problem is not None:
                raise self.fail(problem, field)
            weights[index] = dataclasses.replace(weights[index], constraint=projection)
        return full

    def shape_of(self, i: int = 0) -> ir.Shape:
        source = self.sources[i]
        if isinstance(source, ir.Input):
            return (None, *source.dims)
        return source.shape

    def mask_of(self, i: int = 0) -> ir.Mask | None:
        source = self.sources[i]
        return None if isinstance(source, ir.Input) else source.mask

    def node(
        self,
        op: ir.Op,
        shape: ir.Shape,
        mask: ir.Mask | None,
        name: str | None = None,
        inputs: tuple[str, ...] | None = None,
        layer: str | None = None,
    ) -> ir.Node:
        name = name or self.ref.name
        inputs = inputs if inputs is not None else tuple(self.ref.inputs)
        layer_name = layer if layer is not None else self.owner
        shape = self.resolved.shape(shape)
        return ir.Node(name, op, inputs, shape, mask, "" if layer_name == name else layer_name)

    def rotary_in(self) -> ir.Rotary | None:
        return self.resolved.rotary.get(self.ref.inputs[0]) if self.ref.inputs else None


def _type(layer: m.LayerBase) -> str:
    """The spec ``type`` of a layer (every concrete layer model has one)."""
    return str(getattr(layer, "type", type(layer).__name__))


def _size(dim: int | None) -> int:
    """A known (non-batch) dimension; the compiler infers every one but the batch."""
    assert dim is not None, "only the batch dimension is unknown"
    return dim


def _fmt(shape: ir.Shape) -> str:
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"


def _need_rank(ctx: Context, rank: int, what: str) -> ir.Shape:
    shape = ctx.shape_of()
    if len(shape) != rank:
        raise ctx.fail(f"{what} needs a {_rank_words(rank)} input, got shape {_fmt(shape)}")
    return shape


def _rank_words(rank: int) -> str:
    return {2: "(batch, features)", 3: "(batch, length, features)"}.get(rank, f"rank-{rank}")


def _one_input(ctx: Context) -> None:
    if len(ctx.sources) != 1:
        raise ctx.fail(
            f"{_type(ctx.layer)} reads exactly one input, got {len(ctx.sources)}", "inputs"
        )
    if isinstance(ctx.sources[0], ir.Input) and not isinstance(ctx.layer, m.EmbeddingLayer):
        raise ctx.fail(
            f"{ctx.layer.type} cannot read the ids of input {ctx.sources[0].name!r} directly: "  # type: ignore[attr-defined]
            "look them up in an embedding first",
            "inputs",
        )


# ----------------------------------------------------------------------------- builders


def embedding(ctx: Context) -> list[ir.Node]:
    layer: m.EmbeddingLayer = ctx.layer  # type: ignore[assignment]
    spec = ctx.spec
    if len(ctx.sources) != 1 or not isinstance(ctx.sources[0], ir.Input):
        raise ctx.fail("an embedding lookup reads one model input's ids", "inputs")
    source = ctx.sources[0]
    if source.shape and len(source.shape) != 1:
        raise ctx.fail(f"input {source.name!r} is not a sequence of ids (shape {source.shape})")
    if layer.table not in spec.embeddings:
        known = list(spec.embeddings)
        listed = ", ".join(known) or "none defined"
        raise ctx.fail(
            f"unknown table {layer.table!r}{did_you_mean(layer.table, known)}; known: {listed}",
            "table",
        )
    table = spec.embeddings[layer.table]
    mask = ir.Mask(source.name, table.padding.index) if table.padding else None
    if isinstance(table.positional, m.RotaryPositional):
        ctx.resolved.rotary[ctx.ref.name] = ir.Rotary(table.positional.base)
    return [
        ctx.node(
            ir.EmbeddingLookup(layer.table), (None, source.dims[-1], table.dim), mask, layer=""
        )
    ]


def flatten(ctx: Context) -> list[ir.Node]:
    _one_input(ctx)
    shape = ctx.shape_of()
    if len(shape) < 3:
        raise ctx.fail(f"flatten needs a sequence input, got shape {_fmt(shape)}")
    return [ctx.node(ir.Flatten(), (None, math.prod(shape[1:])), None)]  # type: ignore[arg-type]


def _kernel_and_bias(
    ctx: Context, layer: m.DenseLayer | m.Conv1DLayer, shape: tuple[int, ...], fan_in: int
) -> tuple[str, str | None]:
    """The kernel (canonical ``shape``) and bias of a dense or convolution layer, with their
    initializers and constraints; ``torch_default`` is ``nn.Linear``'s and ``nn.Conv1d``'s
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for both."""
    torch = torch_uniform(fan_in)
    kernel = ctx.weight(
        "kernel",
        shape,
        initializer(layer.kernel_initializer, torch),
        (layer.kernel_constraint, "kernel_constraint"),
    )
    if not layer.use_bias:
        if layer.bias_constraint is not None:
            raise ctx.fail("the layer has no bias (`use_bias: false`)", "bias_constraint")
        return kernel, None
    bias = ctx.weight(
        "bias",
        (shape[-1],),
        initializer(layer.bias_initializer, torch),
        (layer.bias_constraint, "bias_constraint"),
    )
    return kernel, bias


def dense(ctx: Context) -> list[ir.Node]:
    layer: m.DenseLayer = ctx.layer  # type: ignore[assignment]
    _one_input(ctx)
    shape = ctx.shape_of()
    fan_in = _size(shape[-1])
    kernel, bias = _kernel_and_bias(ctx, layer, (fan_in, layer.units), fan_in)  # nn.Linear's
    node = ctx.node(
        ir.Dense(layer.units, layer.activation, kernel, bias),
        (*shape[:-1], layer.units),
        ctx.mask_of(),
    )
    _carry_rotary(ctx, node)
    return [node]


def dropout(ctx: Context) -> list[ir.Node]:
    _one_input(ctx)
    node = ctx.node(ir.Dropout(ctx.layer.rate), ctx.shape_of(), ctx.mask_of(), layer="")  # type: ignore[attr-defined]
    _carry_rotary(ctx, node)
    return [node]


def global_pool(ctx: Context) -> list[ir.Node]:
    _one_input(ctx)
    shape = _need_rank(ctx, 3, _type(ctx.layer))
    mode: Literal["average", "max"] = (
        "average" if isinstance(ctx.layer, m.GlobalAveragePoolLayer) else "max"
    )
    return [ctx.node(ir.GlobalPool(mode), (None, shape[2]), None, layer="")]


def attention_pool(ctx: Context) -> list[ir.Node]:
    layer: m.AttentionPoolLayer = ctx.layer  # type: ignore[assignment]
    _one_input(ctx)
    shape = _need_rank(ctx, 3, "attention_pool")
    query = ctx.weight("query", (_size(shape[2]),), initializer(layer.initializer))
    return [ctx.node(ir.AttentionPool(query, layer.scale), (None, shape[2]), None)]


def conv1d(ctx: Context) -> list[ir.Node]:
    layer: m.Conv1DLayer = ctx.layer  # type: ignore[assignment]
    _one_input(ctx)
    _, length, channels = _need_rank(ctx, 3, "conv1d")
    assert length is not None and channels is not None
    if layer.strides > 1 and layer.dilation > 1:
        raise ctx.fail(
            "strides > 1 with dilation > 1 is not supported (TensorFlow refuses it)", "dilation"
        )
    span = layer.dilation * (layer.kernel_size - 1) + 1
    if layer.padding == "valid":
        out = (length - span) // layer.strides + 1
    else:
        out = math.ceil(length / layer.strides)
    if out < 1:
        raise ctx.fail(
            f"the window spans {span} steps but the input has only {length}", "kernel_size"
        )
    shape = (layer.kernel_size, channels, layer.filters)
    kernel, bias = _kernel_and_bias(ctx, layer, shape, channels * layer.kernel_size)
    op = ir.Conv1D(
        layer.filters,
        layer.kernel_size,
        kernel,
        bias,
        layer.strides,
        layer.dilation,
        layer.padding,
        layer.activation,
    )
    aligned = layer.strides == 1 and layer.padding != "valid"
    node = ctx.node(op, (None, out, layer.filters), ctx.mask_of() if aligned else None)
    if aligned:
        _carry_rotary(ctx, node)
    return [node]


def pool1d(ctx: Context) -> list[ir.Node]:
    layer: m.Pool1DLayer = ctx.layer  # type: ignore[assignment]
    _one_input(ctx)
    _, length, channels = _need_rank(ctx, 3, layer.type)
    assert length is not None
    strides = layer.strides or layer.pool_size
    out = (length - layer.pool_size) // strides + 1
    if out < 1:
        raise ctx.fail(
            f"pool_size {layer.pool_size} is longer than the input ({length})", "pool_size"
        )
    mode: Literal["max", "average"] = "max" if layer.type == "max_pool1d" else "average"
    return [
        ctx.node(ir.Pool1D(mode, layer.pool_size, strides), (None, out, channels), None, layer="")
    ]


def recurrent(ctx: Context) -> list[ir.Node]:
    layer: m.RecurrentLayer = ctx.layer  # type: ignore[assignment]
    _one_input(ctx)
    _, length, features = _need_rank(ctx, 3, layer.type)
    assert features is not None
    gates = 4 if layer.type == "lstm" else 3
    units = layer.units
    width = units * (2 if layer.bidirectional and layer.merge == "concat" else 1)
    mask = ctx.mask_of()
    nodes: list[ir.Node] = []
    previous = ctx.ref.inputs[0]
    in_features = features
    torch = torch_uniform(units)  # nn.LSTM's and nn.GRU's, for every weight
    init = initializer(layer.kernel_initializer, torch)
    recurrent_init = (
        init
        if layer.recurrent_initializer is None
        else initializer(layer.recurrent_initializer, torch)
    )
    bias_init = initializer(layer.bias_initializer, torch)
    for i in range(layer.num_layers):
        last = i == layer.num_layers - 1
        name = ctx.ref.name if last else f"{ctx.ref.name}_layer{i}"
        owner = ctx.owner if last else f"{ctx.owner}_layer{i}"

        def direction(
            prefix: str, owner: str = owner, n_in: int = in_features
        ) -> ir.RecurrentDirection:
            full = f"{owner}.{prefix}"
            names = ir.RecurrentDirection(
                f"{full}.kernel",
                f"{full}.recurrent_kernel",
                f"{full}.input_bias",
                f"{full}.recurrent_bias",
            )
            if ctx.first_use:
                ctx.resolved.weights.extend(
                    [
                        ir.Weight(names.kernel, (n_in, gates * units), init),
                        ir.Weight(names.recurrent_kernel, (units, gates * units), recurrent_init),
                        ir.Weight(names.input_bias, (gates * units,), bias_init),
                        ir.Weight(names.recurrent_bias, (gates * units,), bias_init),
                    ]
                )
            return names

        sequences = layer.return_sequences or not last
        op = ir.Recurrent(
            layer.type,
            units,
            direction("forward"),
            direction("backward") if layer.bidirectional else None,
            sequences,
            layer.merge,
        )
        shape = (None, length, width) if sequences else (None, width)
        node = ir.Node(
            name,
            op,
            (previous,),
            shape,
            mask if sequences else None,
            "" if owner == name else owner,
        )
        nodes.append(node)
        previous, in_features = name, width
        if not last and layer.dropout > 0:
            drop = ir.Node(
                f"{ctx.ref.name}_dropout{i}", ir.Dropout(layer.dropout), (previous,), shape, mask
            )
            nodes.append(drop)
            previous = drop.name
    _record_repeat(ctx, nodes, ir.Recurrent)
    return nodes


def _record_repeat(ctx: Context, nodes: list[ir.Node], op: type[ir.Op]) -> None:
    """Record the nodes of type ``op`` among ``nodes`` (a layer's unrolled repeats, anything
    between them in between) as one :class:`~nnspec.compiler.ir.Repeat`."""
    members = tuple(n.name for n in nodes if isinstance(n.op, op))
    if len(members) > 1:
        between = tuple(n.name for n in nodes if not isinstance(n.op, op))
        ctx.resolved.repeats.append(ir.Repeat(ctx.ref.name, members, between))


def layer_norm(ctx: Context) -> list[ir.Node]:
    _one_input(ctx)
    shape = ctx.shape_of()
    width = int(shape[-1])  # type: ignore[arg-type]
    gamma = ctx.weight("gamma", (width,), ONES)
    beta = ctx.weight("beta", (width,), ZEROS)
    node = ctx.node(ir.LayerNorm(ctx.layer.epsilon, gamma, beta), shape, ctx.mask_of())  # type: ignore[attr-defined]
    _carry_rotary(ctx, node)
    return [node]


def batch_norm(ctx: Context) -> list[ir.Node]:
    layer: m.BatchNormLayer = ctx.layer  # type: ignore[assignment]
    _one_input(ctx)
    shape = ctx.shape_of()
    width = int(shape[-1])  # type: ignore[arg-type]
    op = ir.BatchNorm(
        layer.epsilon,
        layer.momentum,
        ctx.weight("gamma", (width,), ONES),
        ctx.weight("beta", (width,), ZEROS),
        ctx.weight("moving_mean", (width,), ZEROS, trainable="none", state=True),
        ctx.weight("moving_variance", (width,), ONES, trainable="none", state=True),
    )
    node = ctx.node(op, shape, ctx.mask_of())
    _carry_rotary(ctx, node)
    return [node]


def merge(ctx: Context) -> list[ir.Node]:
    layer: m.MergeLayer = ctx.layer  # type: ignore[assignment]
    if len(ctx.sources) < 2:
        raise ctx.fail(
            f"{layer.type} combines at least two inputs; name them in `inputs`", "inputs"
        )
    for i, source in enumerate(ctx.sources):
        if isinstance(source, ir.Input):
            # Model inputs are integer ids: only embedding and memory_network layers read them,
            # so what a merge passes on to dense, conv and norm layers is always floats.
            raise CompileProblem(
                (*ctx.ref.path, "inputs", i),
                f"{layer.type} cannot combine the ids of input {source.name!r}: look them up "
                "in an embedding first",
            )
    shapes = [ctx.shape_of(i) for i in range(len(ctx.sources))]
    first = shapes[0]
    for i, shape in enumerate(shapes[1:], start=1):
        same = shape[:-1] == first[:-1] if layer.type == "concatenate" else shape == first
        if not same:
            what = "all but the last axis" if layer.type == "concatenate" else "shapes"
            raise ctx.fail(
                f"{layer.type} needs matching {what}: {ctx.ref.inputs[0]!r} is {_fmt(first)}, "
                f"{ctx.ref.inputs[i]!r} is {_fmt(shape)}",
                "inputs",
            )
    out = (*first[:-1], sum(_size(s[-1]) for s in shapes)) if layer.type == "concatenate" else first
    mask = next((ctx.mask_of(i) for i in range(len(shapes)) if ctx.mask_of(i)), None)
    mode = {"add": "add", "multiply": "multiply", "concatenate": "concat"}[layer.type]
    node = ctx.node(ir.Merge(mode), out, mask, layer="")  # type: ignore[arg-type]
    _carry_rotary(ctx, node)
    return [node]


def _attention(
    ctx: Context,
    owner: str,
    width: int,
    heads: int,
    dropout: float,
    rotary: ir.Rotary | None,
    field: str = "heads",
) -> ir.SelfAttention:
    if width % heads:
        raise ctx.fail(f"{heads} heads do not divide the input width {width}", field)
    if rotary is not None and (width // heads) % 2:
        own = getattr(ctx.layer, "rotary", None) is not None
        source = "" if own else " (from the embedding table's `positional: {type: rotary}`)"
        raise ctx.fail(
            f"rotary position embedding{source} rotates pairs of features: it needs an even "
            f"head dimension, but width {width} / {heads} heads = {width // heads}",
            "rotary" if own else field,
        )
    names = {}
    for part in ("query", "key", "value", "output"):
        names[f"{part}_kernel"] = f"{owner}.{part}.kernel"
        names[f"{part}_bias"] = f"{owner}.{part}.bias"
        if ctx.first_use:
            ctx.resolved.weights.append(ir.Weight(f"{owner}.{part}.kernel", (width, width), GLOROT))
            ctx.resolved.weights.append(ir.Weight(f"{owner}.{part}.bias", (width,), ZEROS))
    return ir.SelfAttention(heads, width // heads, ir.AttentionWeights(**names), dropout, rotary)


def _rotary(ctx: Context, spec: m.RotarySpec | None) -> ir.Rotary | None:
    if spec is not None:
        return ir.Rotary(spec.base)
    return ctx.rotary_in()


def self_attention(ctx: Context) -> list[ir.Node]:
    layer: m.SelfAttentionLayer = ctx.layer  # type: ignore[assignment]
    _one_input(ctx)
    shape = _need_rank(ctx, 3, "self_attention")
    op = _attention(
        ctx, ctx.owner, _size(shape[2]), layer.heads, layer.dropout, _rotary(ctx, layer.rotary)
    )
    node = ctx.node(op, shape, ctx.mask_of())
    _carry_rotary(ctx, node)
    return [node]


def transformer_encoder(ctx: Context) -> list[ir.Node]:
    layer: m.TransformerEncoderLayer = ctx.layer  # type: ignore[assignment]
    _one_input(ctx)
    shape = _need_rank(ctx, 3, "transformer_encoder")
    width = int(shape[2])  # type: ignore[arg-type]
    rotary = _rotary(ctx, layer.rotary)
    nodes = []
    previous = ctx.ref.inputs[0]
    for i in range(layer.num_layers):
        last = i == layer.num_layers - 1
        name = ctx.ref.name if last else f"{ctx.ref.name}_block{i}"
        owner = ctx.owner if last else f"{ctx.owner}_block{i}"
        attention = _attention(ctx, f"{owner}.attention", width, layer.heads, layer.dropout, rotary)

        def w(part: str, shape: tuple[int, ...], init: ir.Initializer, owner: str = owner) -> str:
            full = f"{owner}.{part}"
            if ctx.first_use:
                ctx.resolved.weights.append(ir.Weight(full, shape, init))
            return full

        op = ir.TransformerBlock(
            attention,
            layer.ff_dim,
            w("ff1.kernel", (width, layer.ff_dim), GLOROT),
            w("ff1.bias", (layer.ff_dim,), ZEROS),
            w("ff2.kernel", (layer.ff_dim, width), GLOROT),
            w("ff2.bias", (width,), ZEROS),
            w("norm1.gamma", (width,), ONES),
            w("norm1.beta", (width,), ZEROS),
            w("norm2.gamma", (width,), ONES),
            w("norm2.beta", (width,), ZEROS),
            layer.epsilon,
            layer.dropout,
            layer.activation,
            layer.norm_first,
        )
        node = ir.Node(name, op, (previous,), shape, ctx.mask_of(), "" if owner == name else owner)
        nodes.append(node)
        previous = name
    _carry_rotary(ctx, nodes[-1])
    _record_repeat(ctx, nodes, ir.TransformerBlock)
    return nodes


def memory_network(ctx: Context) -> list[ir.Node]:
    layer: m.MemoryNetworkLayer = ctx.layer  # type: ignore[assignment]
    expected = 2 if layer.query == "embedded" else 1
    if len(ctx.sources) != expected or not all(isinstance(s, ir.Input) for s in ctx.sources):
        what = "memories and question" if expected == 2 else "memories"
        raise ctx.fail(f"memory_network reads the model inputs of its {what} (`inputs`)", "inputs")
    memories = ctx.sources[0]
    assert isinstance(memories, ir.Input)
    if len(memories.dims) not in (1, 2):
        raise ctx.fail(
            f"memories input {memories.name!r} must have shape [memory_size, sentence_length] "
            f"or [memory_size] (one word per memory), got {list(memories.dims)}",
            "inputs",
        )
    if expected == 2 and len(ctx.sources[1].dims) != 1:  # type: ignore[union-attr]
        raise ctx.fail("the question input must be a sequence of ids (`length`)", "inputs")
    memory_size, sentence = (*memories.dims, 1)[:2]
    out_size = layer.output_size or layer.vocab_size
    if layer.tying == "adjacent" and out_size != layer.vocab_size:
        raise ctx.fail(
            "adjacent tying uses the last C as the output matrix: "
            "output_size must equal vocab_size",
            "output_size",
        )
    pad = layer.padding.index if layer.padding else None
    if pad is not None and pad >= layer.vocab_size:
        raise ctx.fail(f"pad index {pad} is outside the vocabulary ({layer.vocab_size})", "padding")
    zero = (pad,) if pad is not None else ()
    linear = layer.linear_map if layer.linear_map is not None else layer.tying == "layerwise"
    for field, unused in (
        ("temporal_initializer", not layer.temporal),
        ("linear_map_initializer", not linear),
        ("output_initializer", layer.tying == "adjacent"),
    ):
        if unused and getattr(layer, field) is not None:
            what = {
                "temporal_initializer": "has no temporal tables (`temporal: false`)",
                "linear_map_initializer": "has no map H between hops",
                "output_initializer": "uses the last C as its output matrix (adjacent tying)",
            }[field]
            raise ctx.fail(f"the memory network {what}", field)
    init = initializer(layer.initializer, TORCH_EMBEDDING)  # the tables as nn.Embedding
    temporal_init = _or_default(layer.temporal_initializer, init, TORCH_EMBEDDING)
    torch = torch_uniform(layer.dim)  # H and W as nn.Linear without bias
    matrix_init = initializer(layer.initializer, torch)
    linear_init = _or_default(layer.linear_map_initializer, matrix_init, torch)
    output_init = _or_default(layer.output_initializer, matrix_init, torch)
    words = (layer.vocab_size, layer.dim)
    slots = (memory_size, layer.dim)
    hops = []
    if layer.tying == "adjacent":
        a = [ctx.weight(f"A{k + 1}", words, init, zero_rows=zero) for k in range(layer.hops + 1)]
        t = (
            [ctx.weight(f"T{k + 1}", slots, temporal_init) for k in range(layer.hops + 1)]
            if layer.temporal
            else None
        )
        for k in range(layer.hops):
            hops.append(ir.MemoryHop(a[k], a[k + 1], t[k] if t else None, t[k + 1] if t else None))
        query_embedding, output = None, None
    else:
        hop = ir.MemoryHop(
            ctx.weight("A", words, init, zero_rows=zero),
            ctx.weight("C", words, init, zero_rows=zero),
            ctx.weight("TA", slots, temporal_init) if layer.temporal else None,
            ctx.weight("TC", slots, temporal_init) if layer.temporal else None,
        )
        hops = [hop] * layer.hops
        query_embedding = (
            ctx.weight("B", words, init, zero_rows=zero) if layer.query == "embedded" else None
        )
        output = ctx.weight("W", (layer.dim, out_size), output_init)
    op = ir.MemoryNetwork(
        tuple(hops),
        layer.dim,
        layer.vocab_size,
        memory_size,
        sentence,
        layer.tying,
        layer.query,
        query_embedding=query_embedding,
        query_value=layer.query_value,
        linear_map=ctx.weight("H", (layer.dim, layer.dim), linear_init) if linear else None,
        output=output,
        output_size=out_size,
        position_encoding=layer.sentence_encoding == "memn2n_pe",
        pad_index=pad,
        activation=layer.activation,
        relu_half=layer.relu_half,
        dropout=layer.dropout,
        linear_start=layer.linear_start,
        word_memories=len(memories.dims) == 1,
    )
    return [ctx.node(op, (None, out_size), None)]


def _or_default(
    spec: m.UniformInit | m.NormalInit | m.NamedInit | None,
    default: ir.Initializer,
    torch: ir.Initializer,
) -> ir.Initializer:
    """``spec`` in IR form (``torch`` for ``torch_default``), or ``default`` when unset."""
    return default if spec is None else initializer(spec, torch)


def _carry_rotary(ctx: Context, node: ir.Node) -> None:
    rotary = ctx.rotary_in()
    if rotary is not None and len(node.shape) == 3:
        ctx.resolved.rotary[node.name] = rotary


BUILDERS: dict[type, Callable[[Context], list[ir.Node]]] = {
    m.EmbeddingLayer: embedding,
    m.FlattenLayer: flatten,
    m.DenseLayer: dense,
    m.DropoutLayer: dropout,
    m.GlobalAveragePoolLayer: global_pool,
    m.GlobalMaxPoolLayer: global_pool,
    m.AttentionPoolLayer: attention_pool,
    m.Conv1DLayer: conv1d,
    m.Pool1DLayer: pool1d,
    m.RecurrentLayer: recurrent,
    m.LayerNormLayer: layer_norm,
    m.BatchNormLayer: batch_norm,
    m.MergeLayer: merge,
    m.SelfAttentionLayer: self_attention,
    m.TransformerEncoderLayer: transformer_encoder,
    m.MemoryNetworkLayer: memory_network,
}


def build_node(
    spec: m.Spec,
    ref: LayerRef,
    owner: str,
    built: dict[str, ir.Node | ir.Input],
    owner_shapes: dict[str, tuple],
    resolved: Resolved,
) -> list[ir.Node]:
    """The IR nodes for one spec layer (``built`` holds the model inputs and the nodes built
    so far, including everything this layer reads)."""
    sources = [built[n] for n in ref.inputs]
    ctx = Context(spec, ref, owner, sources, resolved, first_use=owner not in owner_shapes)
    shapes = tuple((None, *s.dims) if isinstance(s, ir.Input) else s.shape for s in sources)
    if not ctx.first_use and owner_shapes[owner] != shapes:
        raise ctx.fail(
            f"layer shares {owner!r}'s weights but reads shape {', '.join(map(_fmt, shapes))} "
            f"where {owner!r} reads {', '.join(map(_fmt, owner_shapes[owner]))}",
            "share",
        )
    nodes = BUILDERS[type(ref.spec)](ctx)
    owner_shapes.setdefault(owner, shapes)
    return nodes
