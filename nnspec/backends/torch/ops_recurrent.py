"""Emitter of ``Recurrent``: an ``nn.LSTM`` / ``nn.GRU`` (``batch_first``), run over packed
sequences when its input carries a padding mask.

Canonical layouts: kernels are ``[in, G * units]`` (torch: ``weight_ih_l0``, transposed),
recurrent kernels ``[units, G * units]`` (``weight_hh_l0``, transposed), and the two biases are
torch's ``bias_ih_l0`` / ``bias_hh_l0``. LSTM gates are in torch's order; GRU gates are
``(z, r, h)`` canonically and ``(r, z, n)`` in torch, so the first two blocks swap (the generated
``swap_gru_gates``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnspec.backends.torch.common import TRANSFORMS, Emitted, op_of, parameter, shape_comment
from nnspec.backends.torch.naming import input_mask
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.torch.generator import TorchGenerator


@TRANSFORMS.emits(ir.Recurrent)
def emit_recurrent(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """The recurrent module, and the lines running it and merging its directions."""
    return emit_stack(gen, [node], 0.0)


def emit_stack(gen: TorchGenerator, layers: list[ir.Node], dropout: float) -> Emitted:
    """One recurrent module of ``len(layers)`` stacked layers (torch's ``num_layers``), with
    ``dropout`` on the outputs of all but the last, and the lines running it.

    The layers are the nodes the compiler unrolled one spec layer into: each reads the whole
    sequence of the one before (both directions concatenated), as torch's stacked layers do.
    """
    program = gen.program
    n = gen.names
    first, node = layers[0], layers[-1]
    op = op_of(node, ir.Recurrent)
    layer = n.layer(node)
    cls = "nn.LSTM" if op.cell == "lstm" else "nn.GRU"
    n_in = program.weight(op_of(first, ir.Recurrent).forward.kernel).shape[0]
    args = [str(n_in), str(op.units)]
    if len(layers) > 1:
        args.append(f"num_layers={len(layers)}")
    args.append("batch_first=True")
    if dropout:
        args.append(f"dropout={dropout!r}")
    if op.backward is not None:
        args.append("bidirectional=True")
    out = Emitted(init=[f"{layer} = {cls}({', '.join(args)}, dtype=dtype)"])
    for i, member in enumerate(layers):
        member_op = op_of(member, ir.Recurrent)
        for direction, suffix in ((member_op.forward, ""), (member_op.backward, "_reverse")):
            if direction is not None:
                _direction_weights(program, op, direction, f"{layer}.{{}}_l{i}{suffix}", out)

    x = n.values[first.inputs[0]]
    value = n.values[node.name]
    mask = input_mask(program, first)
    units = op.units
    both = op.backward is not None
    if mask is not None:
        out.helpers.add("packed_rnn")
        call = f"packed_rnn({layer}, {x}, {n.masks[mask]})"
        note = ", 0.0 at padding"
    else:
        call = f"{layer}({x})"
        note = ""
    if op.return_sequences:
        width = 2 * units if both else units
        comment = f"(B, {node.shape[1]}, {width})"
        if both:
            comment += ": forward then backward units"
        comment += note
        out.forward.append(f"{value}, _ = {call}  # {comment}")
        if both and op.merge == "sum":
            out.forward.append(
                f"{value} = {value}[..., :{units}] + {value}[..., {units}:]  "
                f"# {shape_comment(node.shape)}: sum of the directions"
            )
        return out

    directions = 2 if both else 1
    states = directions * len(layers)
    state = f"(B, {units})" if states == 1 else f"({states}, B, {units})"
    what = "final hidden state" if len(layers) == 1 else "final hidden states of every layer"
    if mask is None and op.cell == "lstm":
        out.forward.append(f"_, ({value}, _) = {call}  # {what} {state}")
    else:
        out.forward.append(f"_, {value} = {call}  # {what} {state}")
    # The last layer's states are the last ``directions`` (forward, then backward).
    last = "0" if states == 1 else "-1"
    if not both:
        out.forward.append(f"{value} = {value}[{last}]  # {shape_comment(node.shape)}")
        return out
    fwd, bwd = ("0", "1") if len(layers) == 1 else ("-2", "-1")
    if op.merge == "sum":
        expr = f"{value}[{fwd}] + {value}[{bwd}]"
    else:
        expr = f"torch.cat([{value}[{fwd}], {value}[{bwd}]], dim=-1)"
    out.forward.append(f"{value} = {expr}  # {shape_comment(node.shape)}")
    return out


def _direction_weights(
    program: ir.Program,
    op: ir.Recurrent,
    direction: ir.RecurrentDirection,
    param: str,
    out: Emitted,
) -> None:
    """Weight code of one direction; ``param`` formats a torch name such as ``weight_ih``."""
    matrices = ((direction.kernel, "weight_ih"), (direction.recurrent_kernel, "weight_hh"))
    vectors = ((direction.input_bias, "bias_ih"), (direction.recurrent_bias, "bias_hh"))
    if op.cell == "lstm":
        for name, torch_name in matrices:
            out.weights.append(
                parameter(program.weight(name), param.format(torch_name), out, transposed=True)
            )
        for name, torch_name in vectors:
            out.weights.append(parameter(program.weight(name), param.format(torch_name), out))
        return
    out.helpers.add("swap_gru_gates")
    for name, torch_name in matrices:
        out.weights.append(
            parameter(
                program.weight(name),
                param.format(torch_name),
                out,
                layout="gru.T",
                torch_fans=True,
            )
        )
    for name, torch_name in vectors:
        out.weights.append(
            parameter(
                program.weight(name),
                param.format(torch_name),
                out,
                layout="gru",
            )
        )
