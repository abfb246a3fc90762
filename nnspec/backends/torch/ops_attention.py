"""Emitters of ``SelfAttention`` and ``TransformerBlock``, built on the generated
``MultiHeadSelfAttention`` (one fused ``qkv`` projection, ``F.scaled_dot_product_attention``)
and ``TransformerBlock`` helpers.

Canonical layouts: the query, key and value kernels ``[E, E]`` are rows ``0:E``, ``E:2E`` and
``2E:3E`` of ``qkv.weight`` (``[3E, E]``) transposed, their biases the same slices of
``qkv.bias``; the output kernel is ``out.weight`` transposed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnspec.backends.torch.common import (
    ACTIVATION_MODULES,
    TRANSFORMS,
    Emitted,
    op_of,
    parameter,
    shape_comment,
)
from nnspec.backends.torch.naming import input_mask
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.torch.generator import TorchGenerator


def _attention_args(
    program: ir.Program,
    node: ir.Node,
    op: ir.SelfAttention,
    out: Emitted,
    block_dropout: float | None = None,
) -> list[str]:
    """Constructor arguments of ``MultiHeadSelfAttention``, or of a ``TransformerBlock`` that
    builds it (whose ``dropout``, ``block_dropout``, is the attention's unless it says so)."""
    out.helpers.add("MultiHeadSelfAttention")
    out.imports.add("F")
    width = op.heads * op.head_dim
    args = [str(width), str(op.heads)]
    if block_dropout is None and op.dropout:
        args.append(f"dropout={op.dropout!r}")
    elif block_dropout is not None and op.dropout != block_dropout:
        args.append(f"attention_dropout={op.dropout!r}")
    if op.rotary is not None:  # head_dim is even (ir.validate)
        out.helpers.add("RotaryEmbedding")
        base = "" if op.rotary.base == 10000.0 else f", base={op.rotary.base!r}"
        length = node.shape[1]
        args.append(f"rotary=RotaryEmbedding({op.head_dim}, {length}{base}, dtype=dtype)")
    return args


def _attention_weights(
    program: ir.Program, op: ir.SelfAttention, module: str, out: Emitted
) -> None:
    """Weight code of an attention layer held by ``module`` (``self.attention``)."""
    w = op.weights
    width = op.heads * op.head_dim
    parts = ("query", "key", "value")
    for i, part in enumerate(parts):
        index = f"[{i * width or ''}:{(i + 1) * width if i < 2 else ''}]"
        rows = (i * width, (i + 1) * width)
        kernel, bias = getattr(w, f"{part}_kernel"), getattr(w, f"{part}_bias")
        out.weights.append(
            parameter(
                program.weight(kernel),
                f"{module}.qkv.weight",
                out,
                part=index,
                rows=rows,
                transposed=True,
            )
        )
        out.weights.append(
            parameter(program.weight(bias), f"{module}.qkv.bias", out, part=index, rows=rows)
        )
    codes = out.weights[-6:]
    kernels, biases = codes[0::2], codes[1::2]
    for group in (kernels, biases):
        if len({code.weight.trainable for code in group}) > 1:
            names_ = tuple(code.weight.name for code in group)
            raise ValueError(f"weights {names_}: the fused qkv projection trains all or none")
    # The same initializers for the three parts: draw them in one loop (in the same order).
    same = all(
        len({(c.weight.initializer, c.weight.zero_rows) for c in group}) == 1
        for group in (kernels, biases)
    )
    if (
        same
        and biases[0].weight.initializer.kind in ("zeros", "ones")
        and not any(c.weight.zero_rows for c in codes)
    ):
        kernel_init = kernels[0].reset[0].replace(f"{module}.qkv.weight[:{width}]", "part")
        bias_init = biases[0].reset[0].replace(f"[:{width}]", "")
        codes[0].reset = [
            f"for part in {module}.qkv.weight.chunk(3):  # queries, keys, values",
            f"    {kernel_init}",
            bias_init,
        ]
        for code in codes[1:]:
            code.reset = []
    out.weights.append(
        parameter(program.weight(w.output_kernel), f"{module}.out.weight", out, transposed=True)
    )
    out.weights.append(parameter(program.weight(w.output_bias), f"{module}.out.bias", out))


def _call(gen: TorchGenerator, node: ir.Node, layer: str) -> str:
    """``layer(x, mask)`` with the input's padding mask, if it has one."""
    program, n = gen.program, gen.names
    x = n.values[node.inputs[0]]
    mask = input_mask(program, node)
    return f"{layer}({x})" if mask is None else f"{layer}({x}, {n.masks[mask]})"


@TRANSFORMS.emits(ir.SelfAttention)
def emit_self_attention(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """A ``MultiHeadSelfAttention`` layer (padded keys get weight 0.0)."""
    program = gen.program
    n = gen.names
    op = op_of(node, ir.SelfAttention)
    layer = n.layer(node)
    out = Emitted()
    out.init.append(
        f"{layer} = MultiHeadSelfAttention({', '.join(_attention_args(program, node, op, out))}, "
        "dtype=dtype)"
    )
    _attention_weights(program, op, layer, out)
    out.forward.append(
        f"{n.values[node.name]} = {_call(gen, node, layer)}  # {shape_comment(node.shape)}"
    )
    return out


@TRANSFORMS.emits(ir.TransformerBlock)
def emit_transformer_block(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """A ``TransformerBlock`` (post-norm or pre-norm)."""
    program = gen.program
    n = gen.names
    op = op_of(node, ir.TransformerBlock)
    layer = n.layer(node)
    out = Emitted()
    out.helpers.add("TransformerBlock")
    if op.activation not in ACTIVATION_MODULES:
        raise ValueError(f"node {node.name!r}: unknown activation {op.activation!r}")
    width, heads, *options = _attention_args(program, node, op.attention, out, op.dropout)
    args = [width, heads, str(op.ff_dim), f"dropout={op.dropout!r}", *options]
    if op.activation != "relu":
        args.append(f"activation={ACTIVATION_MODULES[op.activation]}")
    if op.epsilon != 1e-5:
        args.append(f"eps={op.epsilon!r}")
    if op.norm_first and len(gen.block_norms) > 1:
        args.append("norm_first=True")
    out.init.append(f"{layer} = TransformerBlock({', '.join(args)}, dtype=dtype)")
    _attention_weights(program, op.attention, f"{layer}.attention", out)
    for kernel, bias, module in (
        (op.ff1_kernel, op.ff1_bias, "ff1"),
        (op.ff2_kernel, op.ff2_bias, "ff2"),
    ):
        target = f"{layer}.{module}"
        out.weights.append(
            parameter(program.weight(kernel), f"{target}.weight", out, transposed=True)
        )
        out.weights.append(parameter(program.weight(bias), f"{target}.bias", out))
    for gamma, beta, module in (
        (op.norm1_gamma, op.norm1_beta, "norm1"),
        (op.norm2_gamma, op.norm2_beta, "norm2"),
    ):
        out.weights.append(parameter(program.weight(gamma), f"{layer}.{module}.weight", out))
        out.weights.append(parameter(program.weight(beta), f"{layer}.{module}.bias", out))
    out.forward.append(
        f"{n.values[node.name]} = {_call(gen, node, layer)}  # {shape_comment(node.shape)}"
    )
    return out
