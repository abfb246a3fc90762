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

from nnspec.backends.torch.common import Emitted, op_of, parameter, shape_comment
from nnspec.backends.torch.naming import input_mask
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.torch.generator import TorchGenerator


def emit_recurrent(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """The recurrent module, and the lines running it and merging its directions."""
    program = gen.program
    n = gen.names
    op = op_of(node, ir.Recurrent)
    layer = n.layer(node)
    cls = "nn.LSTM" if op.cell == "lstm" else "nn.GRU"
    n_in = program.weight(op.forward.kernel).shape[0]
    bidirectional = ", bidirectional=True" if op.backward is not None else ""
    out = Emitted(
        init=[f"{layer} = {cls}({n_in}, {op.units}, batch_first=True{bidirectional}, dtype=dtype)"]
    )
    for direction, suffix in ((op.forward, "l0"), (op.backward, "l0_reverse")):
        if direction is not None:
            _direction_weights(program, op, direction, f"{layer}.{{}}_{suffix}", out)

    x = n.values[node.inputs[0]]
    value = n.values[node.name]
    mask = input_mask(program, node)
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
    state = f"(B, {units})" if directions == 1 else f"({directions}, B, {units})"
    if mask is None and op.cell == "lstm":
        out.forward.append(f"_, ({value}, _) = {call}  # final hidden state {state}")
    else:
        out.forward.append(f"_, {value} = {call}  # final hidden state {state}")
    if not both:
        out.forward.append(f"{value} = {value}[0]  # {shape_comment(node.shape)}")
    elif op.merge == "sum":
        out.forward.append(f"{value} = {value}[0] + {value}[1]  # {shape_comment(node.shape)}")
    else:
        out.forward.append(
            f"{value} = torch.cat([{value}[0], {value}[1]], dim=-1)  # {shape_comment(node.shape)}"
        )
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
