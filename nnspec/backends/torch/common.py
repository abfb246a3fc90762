"""What an op emitter returns, and the code that maps canonical weights to torch tensors."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nnspec.backends.base import OpTable
from nnspec.compiler import ir

TRANSFORMS = OpTable()
"""The torch op table (IR op type -> emit function), filled by the ``ops_*`` modules."""

OpT = TypeVar("OpT")

ACTIVATIONS = {
    "linear": "{}",
    "relu": "torch.relu({})",
    "gelu": "F.gelu({})",
    "tanh": "torch.tanh({})",
    "sigmoid": "torch.sigmoid({})",
    "softmax": "torch.softmax({}, dim=-1)",
}

# The same activations as modules, for layers that take one as an argument.
ACTIVATION_MODULES = {
    "linear": "nn.Identity()",
    "relu": "nn.ReLU()",
    "gelu": "nn.GELU()",
    "tanh": "nn.Tanh()",
    "sigmoid": "nn.Sigmoid()",
    "softmax": "nn.Softmax(dim=-1)",
}


@dataclass
class WeightCode:
    """Where the generated model holds one canonical weight (a row of its ``CANONICAL`` table).

    Attributes:
        weight: the canonical weight.
        path: the tensor holding it, as an expression (``self.dense.weight``, ``block.ff1.bias``).
        rows: the ``(start, stop)`` rows of that tensor holding it, when it holds several.
        layout: how the tensor's layout differs from the canonical one (see ``LAYOUTS``).
        reset: statements drawing fresh initial values (padding rows included, as 0.0).
        constrain: statements applying the weight's constraint (``apply_constraints``).
    """

    weight: ir.Weight
    path: str
    rows: tuple[int, int] | None
    layout: str
    reset: list[str]
    constrain: list[str] = field(default_factory=list)

    def relative_path(self) -> str:
        """``path`` as a dotted path from the model (or the group member) holding it."""
        _head, _, rest = self.path.partition(".")
        return re.sub(r"\[(\d+)\]", r".\1", rest)


# How a torch tensor's layout can differ from the canonical one (keys of generated code).
LAYOUTS = {
    "": "the same",
    "T": "transposed",
    "conv": "axes reversed",
    "gru": "GRU gates (r, z, n) instead of (z, r, h)",
    "gru.T": "transposed, GRU gates (r, z, n) instead of (z, r, h)",
    "rows": "split into trainable and frozen rows (PartiallyTrainableEmbedding)",
}


@dataclass
class Emitted:
    """What one op contributes to ``model.py``.

    Attributes:
        init: lines of the model's ``__init__`` (creating its submodules).
        forward: lines of ``forward``.
        weights: the canonical weights the op owns.
        helpers: names of the fixed helper classes and functions it uses (``layers.py.j2``).
        imports: optional imports it needs (``"math"``, ``"F"``, ``"pairwise"``).
        classes: module-level classes generated for it, as ``(name, source)``.
        reset: for a group of repeated layers, the lines drawing their initial weights.
        group: the group of repeated layers it is (a ``generator.Group``), if it is one.
    """

    init: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)
    weights: list[WeightCode] = field(default_factory=list)
    helpers: set[str] = field(default_factory=set)
    imports: set[str] = field(default_factory=set)
    classes: list[tuple[str, str]] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    group: Any = None


def op_of(node: ir.Node, kind: type[OpT]) -> OpT:
    """``node.op``, checked to be a ``kind``."""
    if not isinstance(node.op, kind):
        raise TypeError(f"node {node.name!r}: expected a {kind.__name__}, got {node.op!r}")
    return node.op


def shape_comment(dims: ir.Shape) -> str:
    """A shape comment such as ``(B, 12, 8)``."""
    return "(" + ", ".join("B" if d is None else str(d) for d in dims) + ")"


def row_index(ids: tuple[int, ...]) -> str:
    """An index selecting rows ``ids`` of a tensor's first axis."""
    return str(ids[0]) if len(ids) == 1 else repr(list(ids))


def activation(name: str, expr: str, out: Emitted) -> str:
    """``expr`` under the activation ``name``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}")
    if name == "gelu":
        out.imports.add("F")
    return ACTIVATIONS[name].format(expr)


def _fans(dims: tuple[int, ...]) -> tuple[int, int]:
    """Canonical fans: ``shape[0]`` and ``shape[1]`` (both ``shape[0]`` for a vector)."""
    return dims[0], dims[1] if len(dims) > 1 else dims[0]


def init(target: str, weight: ir.Weight, torch_fans: bool, out: Emitted) -> str:
    """A statement drawing ``target`` (a tensor) from ``weight.initializer``.

    ``torch_fans`` says that torch's fan computation on ``target`` is the one to use (true of an
    ``nn.Linear`` weight, ``[out, in]``, whose fans are the canonical ``[in, out]`` ones), so
    ``nn.init``'s Glorot and He apply.
    """
    spec = weight.initializer
    kind = spec.kind
    if kind == "zeros":
        return f"nn.init.zeros_({target})"
    if kind == "ones":
        return f"nn.init.ones_({target})"
    if kind == "uniform":
        if spec.fan is not None:  # PyTorch's default bound
            out.imports.add("math")
            bound = f"1 / math.sqrt({spec.fan})"
            return f"nn.init.uniform_({target}, -{bound}, {bound})"
        return f"nn.init.uniform_({target}, {spec.low!r}, {spec.high!r})"
    if kind == "normal":
        return f"nn.init.normal_({target}, mean={spec.mean!r}, std={spec.std!r})"
    if kind == "truncated_normal":
        low, high = spec.mean - 2 * spec.std, spec.mean + 2 * spec.std
        return (
            f"nn.init.trunc_normal_({target}, mean={spec.mean!r}, std={spec.std!r}, "
            f"a={low!r}, b={high!r})"
        )
    symmetric = kind.startswith("glorot") and len(weight.shape) == 2
    if torch_fans or symmetric:
        return {
            "glorot_uniform": f"nn.init.xavier_uniform_({target})",
            "glorot_normal": f"nn.init.xavier_normal_({target})",
            "he_uniform": f'nn.init.kaiming_uniform_({target}, nonlinearity="relu")',
            "he_normal": f'nn.init.kaiming_normal_({target}, nonlinearity="relu")',
        }[kind]
    out.imports.add("math")
    fan_in, fan_out = _fans(weight.shape)
    if kind == "glorot_uniform":
        limit = f"math.sqrt(6 / ({fan_in} + {fan_out}))"
        return f"nn.init.uniform_({target}, -{limit}, {limit})"
    if kind == "glorot_normal":
        return f"nn.init.normal_({target}, std=math.sqrt(2 / ({fan_in} + {fan_out})))"
    if kind == "he_uniform":
        limit = f"math.sqrt(6 / {fan_in})"
        return f"nn.init.uniform_({target}, -{limit}, {limit})"
    if kind == "he_normal":
        return f"nn.init.normal_({target}, std=math.sqrt(2 / {fan_in}))"
    raise ValueError(f"unknown initializer {kind!r} for weight {weight.name!r}")


def draw(target: str, weight: ir.Weight, torch_fans: bool, out: Emitted) -> list[str]:
    """Statements drawing ``target`` (a tensor in canonical row order) from ``weight``'s
    initializer, then its rows with initializers of their own, then its zero rows."""
    lines = [init(target, weight, torch_fans, out)]
    for (start, stop), row_init in weight.row_initializers:
        rows = dataclasses.replace(weight, initializer=row_init)
        lines.append(init(f"{target}[{start}:{stop}]", rows, False, out))
    if weight.zero_rows:
        lines.append(f"{target}[{row_index(weight.zero_rows)}] = 0.0")
    return lines


# Canonical axis -> the torch tensor's axis, by layout (the layouts a constraint can be on).
_AXES = {"": lambda a, rank: a, "rows": lambda a, rank: a, "T": lambda a, rank: 1 - a}
_AXES["conv"] = lambda a, rank: rank - 1 - a


def constrain(weight: ir.Weight, tensor: str, layout: str, out: Emitted) -> list[str]:
    """The statement applying ``weight``'s constraint (:class:`ir.Constraint`) to ``tensor``,
    which holds its trainable values in layout ``layout``; none without a constraint."""
    c = weight.constraint
    if c is None:
        return []
    if layout not in _AXES:
        raise ValueError(f"weight {weight.name!r}: no constraint on a {layout!r} layout")
    where = weight.name + (", the rows that train" if layout == "rows" else "")
    if c.kind == "non_neg":
        return [f"{tensor}.clamp_(min=0.0)  # {where}"]
    if c.kind == "value_clip":
        bounds = [
            f"{k}={v!r}" for k, v in (("min", c.min_value), ("max", c.max_value)) if v is not None
        ]
        return [f"{tensor}.clamp_({', '.join(bounds)})  # {where}"]
    dims = sorted(_AXES[layout](a, len(weight.shape)) for a in c.axes)
    dim = str(dims[0]) if len(dims) == 1 else repr(tuple(dims))
    axes = ", ".join(map(str, c.axes))
    comment = f"# {where}: norms over canonical axis {axes}"
    if len(c.axes) > 1:
        comment = f"# {where}: norms over canonical axes ({axes})"
    out.helpers.add(f"{c.kind}_")
    if c.kind == "max_norm":
        return [comment, f"max_norm_({tensor}, {c.max_value!r}, dim={dim})"]
    if c.kind == "unit_norm":
        return [comment, f"unit_norm_({tensor}, dim={dim})"]
    return [
        comment,
        f"min_max_norm_({tensor}, {c.min_value!r}, {c.max_value!r}, rate={c.rate!r}, dim={dim})",
    ]


def parameter(
    weight: ir.Weight,
    param: str,
    out: Emitted,
    *,
    transposed: bool = False,
    part: str = "",
    rows: tuple[int, int] | None = None,
    layout: str = "",
    torch_fans: bool | None = None,
) -> WeightCode:
    """The code for a weight held in one parameter (``param``, e.g. ``self.dense.weight``).

    Args:
        weight: the canonical weight.
        param: the parameter holding it.
        out: the op's emitted code (receives ``requires_grad_`` lines and imports).
        transposed: the parameter is the canonical layout transposed (``nn.Linear.weight``).
        part: ``param``'s rows holding the weight when it holds several, as an index (``[:8]``).
        rows: the same rows as ``(start, stop)``.
        layout: how the parameter's layout differs from the canonical one (see ``LAYOUTS``).
        torch_fans: whether ``nn.init``'s fans on the parameter are the right ones (default:
            ``transposed``).
    """
    # trainable == "rows" is only on tables (ir.validate), which come here as "all" or "none"
    if transposed:
        layout = "T"
    target = f"{param}{part}"
    fans = transposed if torch_fans is None else torch_fans
    reset = draw(target, weight, fans, out)
    if weight.trainable == "none":
        line = f"{param}.requires_grad_(False)"
        if line not in out.init:
            out.init.append(line)
    code = WeightCode(weight=weight, path=param, rows=rows, layout=layout, reset=reset)
    if part:
        if weight.constraint is not None:
            raise ValueError(f"weight {weight.name!r}: no constraint on part of a tensor")
    else:
        code.constrain = constrain(weight, param, layout, out)
    return code


def buffer(weight: ir.Weight, name: str, out: Emitted) -> WeightCode:
    """The code for a state weight held in a buffer (batch-norm moving statistics)."""
    return WeightCode(
        weight=weight, path=name, rows=None, layout="", reset=[init(name, weight, False, out)]
    )
