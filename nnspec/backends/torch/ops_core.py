"""Emitters of the position-wise ops: embedding lookups, flatten, dense, dropout, global and
attention pooling, merges and normalization."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from nnspec.backends.torch.common import (
    TRANSFORMS,
    Emitted,
    WeightCode,
    activation,
    buffer,
    constrain,
    draw,
    init,
    op_of,
    parameter,
    shape_comment,
)
from nnspec.backends.torch.naming import input_mask, zero_mask
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.torch.generator import TorchGenerator


@TRANSFORMS.emits(ir.EmbeddingLookup)
def emit_embedding(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """Look ids up: ``table[ids]`` (plus the shared offset at selected ids) ``* scale``, plus
    positions, times the padding mask."""
    program = gen.program
    n = gen.names
    table = program.table(op_of(node, ir.EmbeddingLookup).table)
    out = Emitted()
    lookups = (m for m in program.nodes if isinstance(m.op, ir.EmbeddingLookup))
    if next(m for m in lookups if op_of(m, ir.EmbeddingLookup).table == table.name) is node:
        _emit_table(gen, table, out)
    ids = n.values[node.inputs[0]]
    expr = f"self.{n.tables[table.name]}({ids})"
    if table.offset is not None:
        expr = f"self.{n.tables[table.name]}.shared_offset({ids}, {expr})"
    if table.scale != 1.0:
        expr = f"{expr} * {table.scale!r}"
    if table.positional is not None:
        expr = f"self.{n.positions[table.name]}({expr})"
    value = n.values[node.name]
    out.forward.append(f"{value} = {expr}  # {shape_comment(node.shape)}")
    mask = zero_mask(program, node)
    if mask is not None:
        out.forward.append(f"{value} = {value} * {n.masks[mask]}.unsqueeze(-1)  # 0.0 at padding")
    return out


def _emit_table(gen: TorchGenerator, table: ir.EmbeddingTable, out: Emitted) -> None:
    """Create a table's embedding (and positional encoding) submodules and weight code."""
    program = gen.program
    attr = gen.names.tables[table.name]
    weight = program.weight(table.weight)
    vocab, dim = weight.shape
    policy = weight.trainable
    if policy == "rows" and weight.n_trainable_rows == 0:
        policy = "none"
    elif policy == "rows" and weight.n_trainable_rows == vocab:
        policy = "all"
    if policy == "rows":
        out.helpers.add("PartiallyTrainableEmbedding")
        out.imports.add("F")
        zero_row = ""
        if weight.zero_rows:
            zero_row = f"zero_row={weight.zero_rows[0]}, "
        out.init.append(
            f"self.{attr} = PartiallyTrainableEmbedding({vocab}, {dim}, "
            f"trainable_rows={list(weight.trainable_rows)!r}, {zero_row}dtype=dtype)"
        )
        reset = draw("table", weight, False, out)
        reset[0] = f"table = {init(f'torch.empty({vocab}, {dim})', weight, False, out)}"
        reset.append(f"self.{attr}.load_weight(table)")
        code = WeightCode(weight, f"self.{attr}.weight", rows=None, layout="rows", reset=reset)
        code.constrain = constrain(weight, f"self.{attr}.trainable", "rows", out)
        out.weights.append(code)
    else:
        padding = ""
        if weight.zero_rows:  # the pad row only (ir.validate)
            padding = f", padding_idx={weight.zero_rows[0]}"
        out.init.append(f"self.{attr} = nn.Embedding({vocab}, {dim}{padding}, dtype=dtype)")
        if policy != weight.trainable:
            weight = dataclasses.replace(weight, trainable=policy, trainable_rows=())
        out.weights.append(parameter(weight, f"self.{attr}.weight", out))
    if table.offset is not None:
        out.helpers.add("SharedOffset")
        out.init.append(
            f"self.{attr}.shared_offset = SharedOffset({vocab}, {dim}, "
            f"rows={list(table.offset.rows)!r}, dtype=dtype)"
        )
        offset = program.weight(table.offset.weight)
        out.weights.append(parameter(offset, f"self.{attr}.shared_offset.offset", out))

    positional = table.positional
    if positional is None:
        return
    pos_attr = gen.names.positions[table.name]
    if isinstance(positional, ir.SinusoidalPositional):
        out.helpers.add("SinusoidalPositionalEncoding")
        base = "" if positional.base == 10000.0 else f", base={positional.base!r}"
        out.init.append(
            f"self.{pos_attr} = SinusoidalPositionalEncoding("
            f"{positional.max_length}, {dim}{base}, dtype=dtype)"
        )
    else:
        out.helpers.add("LearnedPositionalEncoding")
        out.init.append(
            f"self.{pos_attr} = LearnedPositionalEncoding("
            f"{positional.max_length}, {dim}, dtype=dtype)"
        )
        out.weights.append(
            parameter(program.weight(positional.weight), f"self.{pos_attr}.weight", out)
        )


@TRANSFORMS.emits(ir.Flatten)
def emit_flatten(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """Flatten all but the batch axis (row-major over the channels-last layout)."""
    n = gen.names
    x = n.values[node.inputs[0]]
    line = f"{n.values[node.name]} = {x}.flatten(1)  # {shape_comment(node.shape)}"
    return Emitted(forward=[line])


@TRANSFORMS.emits(ir.Dense)
def emit_dense(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """An ``nn.Linear`` and its activation."""
    program = gen.program
    n = gen.names
    op = op_of(node, ir.Dense)
    layer = n.layer(node)
    kernel = program.weight(op.kernel)
    n_in, n_out = kernel.shape
    bias = "" if op.bias is not None else ", bias=False"
    out = Emitted(init=[f"{layer} = nn.Linear({n_in}, {n_out}{bias}, dtype=dtype)"])
    out.weights.append(parameter(kernel, f"{layer}.weight", out, transposed=True))
    if op.bias is not None:
        out.weights.append(parameter(program.weight(op.bias), f"{layer}.bias", out))
    expr = activation(op.activation, f"{layer}({n.values[node.inputs[0]]})", out)
    out.forward.append(f"{n.values[node.name]} = {expr}  # {shape_comment(node.shape)}")
    return out


@TRANSFORMS.emits(ir.Dropout)
def emit_dropout(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """An ``nn.Dropout`` (inverted dropout, identity in eval mode)."""
    n = gen.names
    layer = n.layer(node)
    return Emitted(
        init=[f"{layer} = nn.Dropout({op_of(node, ir.Dropout).rate!r})"],
        forward=[f"{n.values[node.name]} = {layer}({n.values[node.inputs[0]]})"],
    )


@TRANSFORMS.emits(ir.GlobalPool)
def emit_global_pool(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """Average or max over the sequence axis, ignoring padded positions when masked."""
    program = gen.program
    n = gen.names
    x = n.values[node.inputs[0]]
    mode = op_of(node, ir.GlobalPool).mode
    mask = input_mask(program, node)
    out = Emitted()
    if mask is not None and mode == "average" and _zero_at_mask(program, node.inputs[0], mask):
        out.helpers.add("unpadded_mean")
        expr = f"unpadded_mean({x}, {n.masks[mask]})"
    elif mask is not None:
        helper = "masked_mean" if mode == "average" else "masked_max"
        out.helpers.add(helper)
        expr = f"{helper}({x}, {n.masks[mask]})"
    else:
        expr = f"{x}.mean(dim=1)" if mode == "average" else f"{x}.amax(dim=1)"
    out.forward.append(f"{n.values[node.name]} = {expr}  # {shape_comment(node.shape)}")
    return out


@TRANSFORMS.emits(ir.AttentionPool)
def emit_attention_pool(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """An ``AttentionPool`` (its learned query is the canonical ``query``), given the input's
    padding mask when it has one."""
    program = gen.program
    n = gen.names
    op = op_of(node, ir.AttentionPool)
    layer = n.layer(node)
    query = program.weight(op.query)
    scale = "" if op.scale else ", scale=False"
    out = Emitted(
        init=[f"{layer} = AttentionPool({query.shape[0]}{scale}, dtype=dtype)"],
        helpers={"AttentionPool"},
        imports={"math"},
    )
    out.weights.append(parameter(query, f"{layer}.query", out))
    args = [n.values[node.inputs[0]]]
    mask = input_mask(program, node)
    if mask is not None:
        args.append(n.masks[mask])
    expr = f"{layer}({', '.join(args)})"
    out.forward.append(f"{n.values[node.name]} = {expr}  # {shape_comment(node.shape)}")
    return out


def _zero_at_mask(program: ir.Program, source: str, mask: ir.Mask) -> bool:
    """Whether ``source`` is an embedding lookup that is exactly 0.0 wherever ``mask`` is False."""
    if not program.is_node(source):
        return False
    op = program.node(source).op
    if not isinstance(op, ir.EmbeddingLookup):
        return False
    table = program.table(op.table)
    return (
        table.zero_padded_positions
        and table.pad_index == mask.pad_index
        and program.node(source).inputs[0] == mask.input
    )


@TRANSFORMS.emits(ir.Merge)
def emit_merge(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """Element-wise sum or product of the inputs, or their concatenation on the last axis."""
    n = gen.names
    xs = [n.values[name] for name in node.inputs]
    mode = op_of(node, ir.Merge).mode
    if mode == "concat":
        expr = f"torch.cat([{', '.join(xs)}], dim=-1)"
    else:
        expr = (" + " if mode == "add" else " * ").join(xs)
    return Emitted(forward=[f"{n.values[node.name]} = {expr}  # {shape_comment(node.shape)}"])


@TRANSFORMS.emits(ir.LayerNorm)
def emit_layer_norm(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """An ``nn.LayerNorm`` over the last axis (``gamma`` is its weight, ``beta`` its bias)."""
    program = gen.program
    n = gen.names
    op = op_of(node, ir.LayerNorm)
    layer = n.layer(node)
    width = program.weight(op.gamma).shape[0]
    out = Emitted(init=[f"{layer} = nn.LayerNorm({width}, eps={op.epsilon!r}, dtype=dtype)"])
    out.weights.append(parameter(program.weight(op.gamma), f"{layer}.weight", out))
    out.weights.append(parameter(program.weight(op.beta), f"{layer}.bias", out))
    x = n.values[node.inputs[0]]
    out.forward.append(f"{n.values[node.name]} = {layer}({x})  # {shape_comment(node.shape)}")
    return out


@TRANSFORMS.emits(ir.BatchNorm)
def emit_batch_norm(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """An ``nn.BatchNorm1d`` over every axis but the last; the moving statistics are its
    ``running_mean`` / ``running_var`` buffers, with the IR's (PyTorch's) momentum rule."""
    program = gen.program
    n = gen.names
    op = op_of(node, ir.BatchNorm)
    layer = n.layer(node)
    width = program.weight(op.gamma).shape[0]
    out = Emitted(
        init=[
            f"{layer} = nn.BatchNorm1d({width}, eps={op.epsilon!r}, momentum={op.momentum!r}, "
            "dtype=dtype)"
        ]
    )
    out.weights += [
        parameter(program.weight(op.gamma), f"{layer}.weight", out),
        parameter(program.weight(op.beta), f"{layer}.bias", out),
        buffer(program.weight(op.moving_mean), f"{layer}.running_mean", out),
        buffer(program.weight(op.moving_variance), f"{layer}.running_var", out),
    ]
    x = n.values[node.inputs[0]]
    rank = len(node.shape)
    if rank == 2:
        expr = f"{layer}({x})"
    elif rank == 3:  # BatchNorm1d wants channels first: (B, C, L)
        expr = f"{layer}({x}.transpose(1, 2)).transpose(1, 2)"
    else:
        expr = f"{layer}({x}.flatten(0, -2)).view_as({x})"
    out.forward.append(f"{n.values[node.name]} = {expr}  # {shape_comment(node.shape)}")
    return out
