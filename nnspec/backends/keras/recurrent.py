"""LSTM and GRU layers (``ir.Recurrent``): stock ``keras.layers.GRU``, and
``keras.layers.LSTM`` over a cell with PyTorch's two biases (``LSTMWithRecurrentBias``);
``keras.layers.Bidirectional`` for both directions.

Both run the stock layers' implementations, cuDNN on a GPU included: the GRU's ``reset_after``
form has PyTorch's two biases (its ``(2, 3H)`` bias: the input bias in row 0, the recurrent bias
in row 1), and the LSTM cell hands the stock code the sum of its two biases, which is the one
bias the equations use, while each bias still trains (and gets the gradient of the sum) as in
PyTorch. Folding the two into stock ``keras.layers.LSTM``'s one trained bias would compute the
same function but train differently: one bias moves the sum half as fast under SGD and Adam
alike, and doubling its learning rate is exact only without weight decay or binding clipping.

Canonical layouts are Keras' (gates ``(i, f, c, o)`` and ``(z, r, h)``). With a padding mask, the
layer is called through the ``masked_recurrent`` helper, which gives rows without any valid
step (which cuDNN rejects) their 0.0 outputs.
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
    kind = "LSTMWithRecurrentBias" if op.cell == "lstm" else "keras.layers.GRU"
    return f"{kind}({', '.join(args + layer_args)})"


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
            variable(program.weight(direction.input_bias), f"{cell}.input_bias"),
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
    input's padding mask (outputs are 0.0 at padded steps) through ``masked_recurrent``."""
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
    if op.cell == "lstm":
        g.helper("LSTMWithRecurrentBias")
    out = layer(g, node, constructor)
    if mask is not None:  # not in a loop of blocks, which calls the layers themselves
        out.call = f"{g.helper('masked_recurrent')}(self.{n.attrs[node.layer_name]}, "
        out.call += f"{n.args(node)}, {n.masks[mask]})"
        out.constructor = ""
    for direction, cell in cells:
        out.weights += _weights(program, op, direction, cell)
    return out
