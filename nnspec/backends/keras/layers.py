"""Position-wise and pooling ops: flatten, dense, dropout, masked global pooling, merges, layer
and batch normalization, 1-D convolution and pooling. Each is a stock Keras layer except where
the IR's semantics differ from Keras' (masked pooling, PyTorch's batch-norm update)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnspec.backends.keras.code import (
    OPS,
    Emitted,
    activation_arg,
    constraint,
    initializer_args,
    layer,
    variable,
    whole,
)
from nnspec.backends.keras.naming import input_mask
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.keras.emitter import KerasGenerator


@OPS.emits(ir.Flatten)
def emit_flatten(g: KerasGenerator, node: ir.Node) -> Emitted:
    """``keras.layers.Flatten``: row-major over the channels-last layout, as the IR says."""
    return layer(g, node, "keras.layers.Flatten()")


@OPS.emits(ir.Dropout)
def emit_dropout(g: KerasGenerator, node: ir.Node) -> Emitted:
    """``keras.layers.Dropout`` (inverted dropout), active only when ``training``."""
    assert isinstance(node.op, ir.Dropout)
    return layer(g, node, f"keras.layers.Dropout({node.op.rate!r})", "training=training")


def _kernel_layer(
    g: KerasGenerator, node: ir.Node, args: list[str], kernel: str, bias: str | None
) -> tuple[list[str], Emitted]:
    """The arguments shared by dense and convolution layers (bias, initializers, trainability)
    after ``args``, and an :class:`Emitted` holding the weights."""
    program = g.program
    op = node.op
    assert isinstance(op, ir.Dense | ir.Conv1D)
    owned = [kernel] if bias is None else [kernel, bias]
    trains = whole(program, node, owned)
    out = Emitted()
    activation = activation_arg(g, op.activation)
    args = [*args, *([activation] if activation else [])]
    if bias is None:
        args.append("use_bias=False")
    args += initializer_args(
        program,
        node,
        {
            "kernel_initializer": ([kernel], "'glorot_uniform'"),
            "bias_initializer": ([] if bias is None else [bias], "'zeros'"),
        },
    )
    for weight, param in zip(owned, ("kernel", "bias"), strict=False):
        c = program.weight(weight).constraint
        if c is not None:
            args.append(f"{param}_constraint={constraint(g, c)}")
    if not trains:
        args.append("trainable=False")
    attr = g.names.layer(node)
    for weight, param in zip(owned, ("kernel", "bias"), strict=False):
        out.weights.append(variable(program.weight(weight), f"{attr}.{param}"))
    return args, out


def _merge(first: Emitted, second: Emitted) -> Emitted:
    """``first`` with ``second``'s weights added."""
    first.weights += second.weights
    return first


@OPS.emits(ir.Dense)
def emit_dense(g: KerasGenerator, node: ir.Node) -> Emitted:
    """``keras.layers.Dense``, whose kernel is already the canonical ``[in, out]``."""
    op = node.op
    assert isinstance(op, ir.Dense)
    args, out = _kernel_layer(g, node, [str(op.units)], op.kernel, op.bias)
    return _merge(layer(g, node, f"keras.layers.Dense({', '.join(args)})"), out)


@OPS.emits(ir.Conv1D)
def emit_conv1d(g: KerasGenerator, node: ir.Node) -> Emitted:
    """``keras.layers.Conv1D``: its kernel is the canonical ``[kernel_size, in, filters]`` and
    its ``same`` and ``causal`` paddings are the IR's (TensorFlow's rule)."""
    op = node.op
    assert isinstance(op, ir.Conv1D)
    args = [str(op.filters), str(op.kernel_size)]
    if op.strides != 1:
        args.append(f"strides={op.strides}")
    if op.padding != "valid":
        args.append(f"padding={op.padding!r}")
    if op.dilation != 1:
        args.append(f"dilation_rate={op.dilation}")
    args, out = _kernel_layer(g, node, args, op.kernel, op.bias)
    return _merge(layer(g, node, f"keras.layers.Conv1D({', '.join(args)})"), out)


@OPS.emits(ir.Pool1D)
def emit_pool1d(g: KerasGenerator, node: ir.Node) -> Emitted:
    """``keras.layers.MaxPooling1D`` / ``AveragePooling1D`` with valid padding."""
    op = node.op
    assert isinstance(op, ir.Pool1D)
    cls = {"max": "MaxPooling1D", "average": "AveragePooling1D"}[op.mode]
    return layer(g, node, f"keras.layers.{cls}({op.pool_size}, strides={op.strides})")


@OPS.emits(ir.GlobalPool)
def emit_global_pool(g: KerasGenerator, node: ir.Node) -> Emitted:
    """Pooling over the sequence axis; masked by the input node's mask when it has one."""
    program = g.program
    op = node.op
    assert isinstance(op, ir.GlobalPool)
    mask = input_mask(program, node)
    if mask is None:
        cls = {"average": "GlobalAveragePooling1D", "max": "GlobalMaxPooling1D"}[op.mode]
        return layer(g, node, f"keras.layers.{cls}()")
    cls = g.helper(
        {"average": "MaskedGlobalAveragePooling1D", "max": "MaskedGlobalMaxPooling1D"}[op.mode]
    )
    return layer(g, node, f"{cls}()", f"padding_mask={g.names.masks[mask]}")


@OPS.emits(ir.AttentionPool)
def emit_attention_pool(g: KerasGenerator, node: ir.Node) -> Emitted:
    """``AttentionPool``: its ``query`` variable is the canonical ``[D]`` query; it reads the
    input node's mask when there is one."""
    program = g.program
    op = node.op
    assert isinstance(op, ir.AttentionPool)
    args = [] if op.scale else ["scale=False"]
    args += initializer_args(program, node, {"query_initializer": ([op.query], "'glorot_uniform'")})
    if not whole(program, node, [op.query]):
        args.append("trainable=False")
    mask = input_mask(program, node)
    extra = () if mask is None else (f"padding_mask={g.names.masks[mask]}",)
    out = layer(g, node, f"{g.helper('AttentionPool')}({', '.join(args)})", *extra)
    out.weights.append(variable(program.weight(op.query), f"{g.names.layer(node)}.query"))
    return out


@OPS.emits(ir.Merge)
def emit_merge(g: KerasGenerator, node: ir.Node) -> Emitted:
    """``keras.layers.Add`` / ``Multiply`` / ``Concatenate`` (last axis) of the inputs."""
    op = node.op
    assert isinstance(op, ir.Merge)
    cls = {"add": "Add", "multiply": "Multiply", "concat": "Concatenate"}[op.mode]
    return layer(g, node, f"keras.layers.{cls}()")


@OPS.emits(ir.LayerNorm)
def emit_layer_norm(g: KerasGenerator, node: ir.Node) -> Emitted:
    """``keras.layers.LayerNormalization`` over the last axis with the IR's epsilon."""
    program = g.program
    op = node.op
    assert isinstance(op, ir.LayerNorm)
    args = [f"epsilon={op.epsilon!r}"]
    args += initializer_args(
        program,
        node,
        {"gamma_initializer": ([op.gamma], "'ones'"), "beta_initializer": ([op.beta], "'zeros'")},
    )
    if not whole(program, node, [op.gamma, op.beta]):
        args.append("trainable=False")
    out = layer(g, node, f"keras.layers.LayerNormalization({', '.join(args)})")
    attr = g.names.layer(node)
    out.weights += [
        variable(program.weight(op.gamma), f"{attr}.gamma"),
        variable(program.weight(op.beta), f"{attr}.beta"),
    ]
    return out


@OPS.emits(ir.BatchNorm)
def emit_batch_norm(g: KerasGenerator, node: ir.Node) -> Emitted:
    """``TorchBatchNormalization``: Keras' layer with PyTorch's moving-variance update; its
    moving statistics are non-trainable state weights."""
    program = g.program
    op = node.op
    assert isinstance(op, ir.BatchNorm)
    momentum = float(f"{1 - op.momentum:.12g}")  # Keras' momentum is one minus PyTorch's
    args = [f"momentum={momentum!r}", f"epsilon={op.epsilon!r}"]
    args += initializer_args(
        program,
        node,
        {
            "gamma_initializer": ([op.gamma], "'ones'"),
            "beta_initializer": ([op.beta], "'zeros'"),
            "moving_mean_initializer": ([op.moving_mean], "'zeros'"),
            "moving_variance_initializer": ([op.moving_variance], "'ones'"),
        },
    )
    if not whole(program, node, [op.gamma, op.beta]):
        args.append("trainable=False")
    cls = g.helper("TorchBatchNormalization")
    out = layer(g, node, f"{cls}({', '.join(args)})", "training=training")
    attr = g.names.layer(node)
    for name, param in (
        (op.gamma, "gamma"),
        (op.beta, "beta"),
        (op.moving_mean, "moving_mean"),
        (op.moving_variance, "moving_variance"),
    ):
        out.weights.append(variable(program.weight(name), f"{attr}.{param}"))
    return out
