"""What emitters return, and the small pieces of generated code they share (initializers,
weights held in variables, docstrings, the construction of a node's layer)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from nnspec.backends.keras.naming import names
from nnspec.compiler import ir

GELU = '''
def gelu(x):
    """The exact (erf) GELU. Keras' own loses precision in float64 (a float32 constant inside)."""
    return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))
'''

FRESH_INITIALIZER = '''
def fresh_initializer(initializer):
    """A new instance of ``initializer``: an unseeded Keras initializer repeats its draws."""
    initializer = keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())
'''


@dataclass(frozen=True)
class WeightCode:
    """How the generated model reaches one canonical weight.

    Attributes:
        name: the canonical name.
        value: expression for the weight as a numpy array in canonical layout.
        load: statement loading a canonical array, written ``{}``, into the model (empty when
            the statement of another weight loads this one too).
        grad: expression for its canonical gradient (0.0 at frozen rows), read from ``grads``, a
            dict of numpy gradients by variable path; ``None`` when nothing in it trains.
    """

    name: str
    value: str
    load: str
    grad: str | None


@dataclass
class Emitted:
    """What one op (or embedding table) contributes to ``model.py``.

    Attributes:
        init: lines of the model's ``__init__``.
        call: the expression ``call`` computes for the node (empty for a table).
        weights: the canonical weights it owns.
        helpers: module-level classes and functions it needs: name -> source.
    """

    init: list[str] = field(default_factory=list)
    call: str = ""
    weights: list[WeightCode] = field(default_factory=list)
    helpers: dict[str, str] = field(default_factory=dict)


def shape(dims: ir.Shape) -> str:
    """A shape comment such as ``(B, 12, 8)``."""
    return "(" + ", ".join("B" if d is None else str(d) for d in dims) + ")"


def initializer(init: ir.Initializer) -> str:
    """A Keras initializer for ``init``; fans are Keras' own, which are the canonical ones."""
    kind = init.kind
    if kind in ("zeros", "ones", "glorot_uniform", "he_uniform"):
        return repr(kind)
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
    """The code for a weight held whole, in canonical layout, in the variable ``expr``."""
    return WeightCode(
        name=weight.name,
        value=f"{expr}.numpy()",
        load=f"{expr}.assign({{}})",
        grad=f"grads[{expr}.path]" if weight.trainable == "all" else None,
    )


def reshaped(weight: ir.Weight, expr: str, keras_shape: tuple[int, ...]) -> WeightCode:
    """The code for a weight held in ``expr`` as ``keras_shape`` (a reshape, same order)."""
    canonical = repr(weight.shape)
    return WeightCode(
        name=weight.name,
        value=f"{expr}.numpy().reshape({canonical})",
        load=f"{expr}.assign(np.reshape({{}}, {keras_shape!r}))",
        grad=f"grads[{expr}.path].reshape({canonical})" if weight.trainable == "all" else None,
    )


def activation_arg(activation: ir.Activation, out: Emitted) -> str | None:
    """The ``activation=`` argument of a Keras layer (``None`` for linear)."""
    if activation == "linear":
        return None
    if activation == "gelu":
        out.helpers["gelu"] = GELU
        return "activation=gelu"
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


def layer(program: ir.Program, node: ir.Node, constructor: str, *extra: str) -> Emitted:
    """A node computed by one layer: ``constructor`` gets the model's dtype and a name; the
    layer is called on the node's input (its inputs as a list if it has several) and ``extra``
    keyword arguments."""
    n = names(program)
    attr = n.attrs[node.layer_name]
    close = "" if constructor.endswith("()") else ", "
    init = f"self.{attr} = {constructor[:-1]}{close}dtype=self.dtype_policy, name={attr!r})"
    args = n.args(node) if len(node.inputs) == 1 else f"[{n.args(node)}]"
    return Emitted(init=[init], call=f"self.{attr}({', '.join([args, *extra])})")
