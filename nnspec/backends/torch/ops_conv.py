"""Emitters of the convolution ops: ``Conv1D`` (``nn.Conv1d``) and ``Pool1D``.

Activations are channels-last ``(B, L, C)`` between ops, as the IR has them; each op transposes
to torch's channels-first ``(B, C, L)`` and back (free views).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from nnspec.backends.torch.common import (
    TRANSFORMS,
    Emitted,
    activation,
    op_of,
    parameter,
    shape_comment,
)
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.torch.generator import TorchGenerator


def same_padding(length: int, kernel_size: int, strides: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's ``same`` padding of a length-``length`` input: ``(left, right)``."""
    span = (kernel_size - 1) * dilation + 1
    total = max((math.ceil(length / strides) - 1) * strides + span - length, 0)
    return total // 2, total - total // 2


@TRANSFORMS.emits(ir.Conv1D)
def emit_conv1d(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """An ``nn.Conv1d`` with the IR's padding rule, then the activation.

    ``same`` at stride 1 is torch's ``padding="same"`` (the same rule); at a larger stride the
    TensorFlow padding is computed here from the static input length: symmetric padding goes to
    the constructor, lopsided padding to an ``F.pad``. ``causal`` pads on the left only.
    """
    program = gen.program
    n = gen.names
    op = op_of(node, ir.Conv1D)
    layer = n.layer(node)
    kernel = program.weight(op.kernel)
    size, n_in, filters = kernel.shape
    x = f"{n.values[node.inputs[0]]}.transpose(1, 2)"
    args = [str(n_in), str(filters), str(size)]
    if op.strides != 1:
        args.append(f"stride={op.strides}")
    out = Emitted()
    if op.padding == "same" and op.strides == 1:
        args.append('padding="same"')
    elif op.padding == "same":
        length = program.node(node.inputs[0]).shape[1] if _is_node(program, node) else None
        if length is None:
            raise ValueError(f"node {node.name!r}: 'same' padding at stride > 1 needs a length")
        left, right = same_padding(length, size, op.strides, op.dilation)
        if left == right and left:
            args.append(f"padding={left}")
        elif left != right:
            out.imports.add("F")
            x = f"F.pad({x}, ({left}, {right}))"
    elif op.padding == "causal" and op.dilation * (size - 1):
        out.imports.add("F")
        x = f"F.pad({x}, ({op.dilation * (size - 1)}, 0))"
    if op.dilation != 1:
        args.append(f"dilation={op.dilation}")
    if op.bias is None:
        args.append("bias=False")
    out.init.append(f"{layer} = nn.Conv1d({', '.join(args)}, dtype=dtype)")
    # torch's weight is (filters, in, kernel_size); the canonical kernel (kernel_size, in, filters).
    out.weights.append(parameter(kernel, f"{layer}.weight", out, layout="conv", torch_fans=True))
    if op.bias is not None:
        out.weights.append(parameter(program.weight(op.bias), f"{layer}.bias", out))
    value = n.values[node.name]
    if op.activation == "linear":
        out.forward.append(f"{value} = {layer}({x}).transpose(1, 2)  # {shape_comment(node.shape)}")
        return out
    channels_first = f"(B, {filters}, {node.shape[1]})"
    out.forward.append(f"{value} = {layer}({x})  # {channels_first}")
    expr = activation(op.activation, f"{value}.transpose(1, 2)", out)
    out.forward.append(f"{value} = {expr}  # {shape_comment(node.shape)}")
    return out


def _is_node(program: ir.Program, node: ir.Node) -> bool:
    """Whether ``node``'s input is a node (not a model input)."""
    return any(m.name == node.inputs[0] for m in program.nodes)


@TRANSFORMS.emits(ir.Pool1D)
def emit_pool1d(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """Max or average pooling over windows along the sequence axis (valid padding)."""
    n = gen.names
    op = op_of(node, ir.Pool1D)
    fn = "F.max_pool1d" if op.mode == "max" else "F.avg_pool1d"
    x = n.values[node.inputs[0]]
    expr = f"{fn}({x}.transpose(1, 2), {op.pool_size}, stride={op.strides}).transpose(1, 2)"
    return Emitted(
        forward=[f"{n.values[node.name]} = {expr}  # {shape_comment(node.shape)}"], imports={"F"}
    )
