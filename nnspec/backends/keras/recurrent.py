"""LSTM and GRU layers (``ir.Recurrent``): stock ``keras.layers.GRU``, and ``keras.layers.RNN``
over an LSTM cell with PyTorch's two biases; ``keras.layers.Bidirectional`` for both directions.

Canonical layouts are Keras' (gates ``(i, f, c, o)`` and ``(z, r, h)``); the GRU's ``(2, 3H)``
bias holds the input bias in row 0 and the recurrent bias in row 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnspec.backends.keras.code import (
    OPS,
    Emitted,
    WeightCode,
    initializer_args,
    layer,
    variable,
    whole,
)
from nnspec.backends.keras.naming import input_mask
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.keras.emitter import KerasGenerator


def _direction(
    program: ir.Program,
    node: ir.Node,
    direction: ir.RecurrentDirection,
    zero_at_pads: bool,
    wrapped: bool,
    go_backwards: bool = False,
) -> str:
    """The layer running one direction of ``node``'s recurrent op (``wrapped`` in
    ``keras.layers.Bidirectional``, or the node's layer itself)."""
    op = node.op
    assert isinstance(op, ir.Recurrent)
    weights = [
        direction.kernel,
        direction.recurrent_kernel,
        direction.input_bias,
        direction.recurrent_bias,
    ]
    inits = {
        "kernel_initializer": ([direction.kernel], "'glorot_uniform'"),
        "recurrent_initializer": ([direction.recurrent_kernel], "'orthogonal'"),
    }
    if op.cell == "lstm":
        inits["bias_initializer"] = ([direction.input_bias], "'zeros'")
        inits["recurrent_bias_initializer"] = ([direction.recurrent_bias], "'zeros'")
    else:  # one (2, 3 * units) bias: input row, recurrent row
        inits["bias_initializer"] = ([direction.input_bias, direction.recurrent_bias], "'zeros'")
    args = [str(op.units), *initializer_args(program, node, inits)]
    if op.cell == "lstm":
        args.append("unit_forget_bias=False")  # biases start from their initializers
    if not whole(program, node, weights):
        args.append("trainable=False")
    layer_args = []
    if op.return_sequences:
        layer_args.append("return_sequences=True")
        if zero_at_pads:
            layer_args.append("zero_output_for_mask=True")  # not the last valid output
    if go_backwards:
        layer_args.append("go_backwards=True")
    if wrapped:  # Bidirectional passes neither its dtype nor its name on
        layer_args.append("dtype=self.dtype_policy")
    if op.cell == "lstm":
        cell = f"LSTMCellWithRecurrentBias({', '.join([*args, 'dtype=self.dtype_policy'])})"
        return f"keras.layers.RNN({', '.join([cell, *layer_args])})"
    return f"keras.layers.GRU({', '.join(args + layer_args)})"


def _weights(
    program: ir.Program, op: ir.Recurrent, direction: ir.RecurrentDirection, cell: str
) -> list[WeightCode]:
    """The canonical weights of one direction, held by the Keras cell ``cell``."""
    codes = [
        variable(program.weight(direction.kernel), f"{cell}.kernel"),
        variable(program.weight(direction.recurrent_kernel), f"{cell}.recurrent_kernel"),
    ]
    if op.cell == "lstm":
        return [
            *codes,
            variable(program.weight(direction.input_bias), f"{cell}.bias"),
            variable(program.weight(direction.recurrent_bias), f"{cell}.recurrent_bias"),
        ]
    trains = program.weight(direction.input_bias).trainable == "all"
    load = f"{cell}.bias.assign(np.stack([{{}}, state[{direction.recurrent_bias!r}]]))"
    for row, name in enumerate((direction.input_bias, direction.recurrent_bias)):
        codes.append(
            WeightCode(
                name=name,
                value=f"{cell}.bias.numpy()[{row}]",
                load="" if row else load,
                grad=f"grads[{cell}.bias.path][{row}]" if trains else None,
            )
        )
    return codes


@OPS.emits(ir.Recurrent)
def emit_recurrent(g: KerasGenerator, node: ir.Node) -> Emitted:
    """An LSTM or GRU, bidirectional when the op has a backward direction, called with its
    input's padding mask (outputs are 0.0 at padded steps)."""
    program = g.program
    op = node.op
    assert isinstance(op, ir.Recurrent)
    n = g.names
    mask = input_mask(program, node)
    wrapped = op.backward is not None
    forward = _direction(program, node, op.forward, mask is not None, wrapped)
    if op.backward is None:
        constructor = forward
        cells = [(op.forward, f"{n.layer(node)}.cell")]
    else:
        args = [forward]
        backward = _direction(program, node, op.backward, mask is not None, True, True)
        if backward.replace("go_backwards=True, ", "") != forward:
            args.append(f"backward_layer={backward}")  # else Bidirectional clones ``forward``
        args.append(f"merge_mode={op.merge!r}")
        constructor = f"keras.layers.Bidirectional({', '.join(args)})"
        cells = [
            (op.forward, f"{n.layer(node)}.forward_layer.cell"),
            (op.backward, f"{n.layer(node)}.backward_layer.cell"),
        ]
    out = layer(g, node, constructor, *([f"mask={n.masks[mask]}"] if mask else []))
    for direction, cell in cells:
        out.weights += _weights(program, op, direction, cell)
    if op.cell == "lstm":
        g.helper("LSTMCellWithRecurrentBias")
    return out
