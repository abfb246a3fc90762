"""What emitters return, and the small pieces of generated code they share (initializers,
weights held in variables, docstrings, the construction of a node's layer)."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nnspec.backends.base import OpTable
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.keras.emitter import KerasGenerator

OPS = OpTable()
"""The Keras op table (IR op type -> emit function), filled by the modules that emit each op."""


@dataclass(frozen=True)
class WeightCode:
    """How the generated model reaches one canonical weight.

    Most weights live whole, in canonical layout, in one variable (``variable``): the module's
    ``CANONICAL`` table lists their paths and one loop saves, loads and differentiates them all.
    The others (embedding tables, rows of a GRU bias) have statements of their own:

    Attributes:
        name: the canonical name.
        variable: the attribute path from the model of the variable holding the weight whole
            (``dense.kernel``, ``memory.tables.A1``), if one does.
        value: expression for the weight as a numpy array in canonical layout.
        load: statement loading a canonical array, written ``{}``, into the model (empty when
            the statement of another weight loads this one too).
        grad: expression for its canonical gradient (0.0 at frozen rows), read from ``grads``, a
            dict of numpy gradients by variable path; ``None`` when nothing in it trains.
    """

    name: str
    variable: str | None = None
    value: str = ""
    load: str = ""
    grad: str | None = None


@dataclass
class Emitted:
    """What one op (or embedding table) contributes to ``model.py``.

    Attributes:
        init: lines of the model's ``__init__``.
        call: the expression ``call`` computes for the node (empty for a table).
        weights: the canonical weights it owns.
        constructor: the layer's constructor call without ``name=`` (blocks built in a loop
            compare it), empty when the node has no layer of its own.
        extra: the keyword arguments of the layer's call after its inputs.
    """

    init: list[str] = field(default_factory=list)
    call: str = ""
    weights: list[WeightCode] = field(default_factory=list)
    constructor: str = ""
    extra: tuple[str, ...] = ()


def shape(dims: ir.Shape) -> str:
    """A shape comment such as ``(B, 12, 8)``."""
    return "(" + ", ".join("B" if d is None else str(d) for d in dims) + ")"


def initializer(init: ir.Initializer) -> str:
    """A Keras initializer for ``init``; fans are Keras' own, which are the canonical ones."""
    kind = init.kind
    if kind in ("zeros", "ones", "glorot_uniform", "he_uniform"):
        return repr(kind)
    if kind == "uniform" and init.fan is not None:  # PyTorch's default bound
        bound = f"1 / np.sqrt({init.fan})"
        return f"keras.initializers.RandomUniform(minval=-{bound}, maxval={bound})"
    if kind == "uniform":
        return f"keras.initializers.RandomUniform(minval={init.low!r}, maxval={init.high!r})"
    if kind == "normal":
        return f"keras.initializers.RandomNormal(mean={init.mean!r}, stddev={init.std!r})"
    if kind == "truncated_normal":
        return f"keras.initializers.TruncatedNormal(mean={init.mean!r}, stddev={init.std!r})"
    # Glorot and He normal are plain Gaussians (as in their papers and in PyTorch); Keras'
    # string shortcuts would truncate them.
    scale, mode = {"glorot_normal": ("1.0", "fan_avg"), "he_normal": ("2.0", "fan_in")}[kind]
    return (
        f'keras.initializers.VarianceScaling(scale={scale}, mode="{mode}", '
        f'distribution="untruncated_normal")'
    )


def weight_initializer(g: KerasGenerator, weight: ir.Weight) -> str:
    """The Keras initializer of ``weight``: its ``initializer``, and its rows with initializers of
    their own redrawn by the ``RowsInitializer`` helper."""
    if not weight.row_initializers:
        return initializer(weight.initializer)
    rows = ", ".join(
        f"({start}, {stop}, {initializer(init)})" for (start, stop), init in weight.row_initializers
    )
    return f"{g.helper('RowsInitializer')}({initializer(weight.initializer)}, [{rows}])"


def constraint(g: KerasGenerator, c: ir.Constraint) -> str:
    """A Keras constraint for ``c`` (its axes are the canonical ones, which are Keras')."""
    axis = str(c.axes[0]) if len(c.axes) == 1 else repr(list(c.axes))
    if c.kind == "non_neg":
        return "keras.constraints.NonNeg()"
    if c.kind == "value_clip":
        limits = (("min_value", c.min_value), ("max_value", c.max_value))
        bounds = [f"{k}={v!r}" for k, v in limits if v is not None]
        return f"{g.helper('ValueClip')}({', '.join(bounds)})"
    if c.kind == "max_norm":
        return f"keras.constraints.MaxNorm(max_value={c.max_value!r}, axis={axis})"
    if c.kind == "unit_norm":
        return f"keras.constraints.UnitNorm(axis={axis})"
    return (
        f"keras.constraints.MinMaxNorm(min_value={c.min_value!r}, max_value={c.max_value!r}, "
        f"rate={c.rate!r}, axis={axis})"
    )


def shared_initializer(program: ir.Program, weights: list[str], role: str, node: ir.Node) -> str:
    """The one initializer that Keras draws ``weights`` with (they must agree)."""
    kinds = {program.weight(name).initializer for name in weights}
    if len(kinds) > 1:
        raise ValueError(
            f"node {node.name!r}: the keras backend draws every {role} with one initializer, "
            f"but {weights} have {len(kinds)} different ones"
        )
    return initializer(kinds.pop())


def initializer_args(
    program: ir.Program, node: ir.Node, defaults: dict[str, tuple[list[str], str]]
) -> list[str]:
    """``<argument>=<initializer>`` for each argument whose weights differ from Keras' default.

    ``defaults`` maps a constructor argument to the canonical weights it initializes and its
    Keras default (a repr such as ``'"zeros"'``).
    """
    args = []
    for arg, (weights, default) in defaults.items():
        if weights:
            value = shared_initializer(program, weights, arg.removesuffix("_initializer"), node)
            if value != default:
                args.append(f"{arg}={value}")
    return args


def whole(program: ir.Program, node: ir.Node, weights: list[str]) -> bool:
    """Whether ``weights`` (owned by ``node``'s layer) train; they must all train or none."""
    owned = [program.weight(name) for name in weights]
    if any(w.trainable == "rows" or w.zero_rows for w in owned):
        raise ValueError(f"layer {node.layer_name!r}: its weights train whole or not at all")
    kinds = {w.trainable for w in owned if not w.state}
    if len(kinds) > 1:
        raise ValueError(f"layer {node.layer_name!r}: its weights must train alike")
    return kinds != {"none"}


def variable(weight: ir.Weight, expr: str) -> WeightCode:
    """The code for a weight held whole, in canonical layout, in the variable ``expr`` (such as
    ``self.memory.tables["A1"]``)."""
    path = re.sub(r"\[(['\"])(\w+)\1\]", r".\2", expr.removeprefix("self."))
    return WeightCode(name=weight.name, variable=path)


def activation_arg(g: KerasGenerator, activation: ir.Activation) -> str | None:
    """The ``activation=`` argument of a Keras layer (``None`` for linear)."""
    if activation == "linear":
        return None
    if activation == "gelu":
        return f"activation={g.helper('gelu')}"
    return f"activation={activation!r}"


def docstring(text: str, indent: int) -> list[str]:
    """A docstring's lines: a one-line summary, then paragraphs wrapped to fit 100 columns."""
    summary, *paragraphs = text.split("\n\n")
    if not paragraphs:
        return [f'"""{summary}"""']
    lines = [f'"""{summary}']
    for paragraph in paragraphs:
        lines.append("")
        lines += wrap(paragraph, 100 - indent)
    return [*lines, '"""']


def wrap(text: str, width: int) -> list[str]:
    """``text`` wrapped to ``width`` columns, never inside a ````literal````."""
    parts = text.split("``")
    glued = "``".join(p.replace(" ", "\0") if i % 2 else p for i, p in enumerate(parts))
    lines = textwrap.wrap(glued, width, break_long_words=False, break_on_hyphens=False)
    return [line.replace("\0", " ") for line in lines]


def indent(lines: list[str], levels: int) -> list[str]:
    """``lines`` indented by ``levels`` times four spaces (blank lines stay blank)."""
    pad = "    " * levels
    return [pad + line if line else "" for line in lines]


def with_args(constructor: str, *args: str) -> str:
    """``constructor`` (a call) with ``args`` appended."""
    close = "" if constructor.endswith("()") else ", "
    return f"{constructor[:-1]}{close}{', '.join(args)})"


def layer(g: KerasGenerator, node: ir.Node, constructor: str, *extra: str) -> Emitted:
    """A node computed by one layer: ``constructor`` gets the model's dtype and a name; the
    layer is called on the node's input (its inputs as a list if it has several) and ``extra``
    keyword arguments."""
    n = g.names
    attr = n.attrs[node.layer_name]
    built = with_args(constructor, "dtype=self.dtype_policy")
    init = f"self.{attr} = {with_args(built, f'name={attr!r}')}"
    args = n.args(node) if len(node.inputs) == 1 else f"[{n.args(node)}]"
    return Emitted(
        init=[init],
        call=f"self.{attr}({', '.join([args, *extra])})",
        constructor=built,
        extra=extra,
    )
