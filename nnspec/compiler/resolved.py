"""What resolution builds, shared by the resolver (:mod:`nnspec.compiler.resolve`) and the
per-layer builders (:mod:`nnspec.compiler.layers`): the result being assembled, the located
problem type, each spec layer's reference, and initializers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nnspec.compiler import ir
from nnspec.spec import models as m
from nnspec.spec.errors import Path


class CompileProblem(Exception):
    """A spec that validates field by field but cannot be compiled (located by field path)."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(message)


@dataclass
class Resolved:
    """What resolution produces; :func:`nnspec.compiler.compile_spec` wraps it in a Program."""

    inputs: list[ir.Input] = field(default_factory=list)
    tables: list[ir.EmbeddingTable] = field(default_factory=list)
    weights: list[ir.Weight] = field(default_factory=list)
    nodes: list[ir.Node] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    repeats: list[ir.Repeat] = field(default_factory=list)
    errors: list[CompileProblem] = field(default_factory=list)
    # The spec path each node came from, for locating lint findings.
    node_paths: dict[str, Path] = field(default_factory=dict)
    # Rotary settings travelling with sequence outputs (from `positional: {type: rotary}`).
    rotary: dict[str, ir.Rotary] = field(default_factory=dict)
    # One tuple per distinct shape (100,000 dense layers have a handful of shapes).
    shapes: dict[tuple, tuple] = field(default_factory=dict)

    def shape(self, shape: tuple) -> tuple:
        """The shared tuple equal to ``shape``."""
        return self.shapes.setdefault(shape, shape)

    def add_weight(self, weight: ir.Weight) -> str:
        """Record ``weight`` and return its name."""
        self.weights.append(weight)
        return weight.name


def initializer(
    spec: m.UniformInit | m.NormalInit | m.NamedInit, torch_default: ir.Initializer | None = None
) -> ir.Initializer:
    """The IR form of a spec initializer (parameterless ones are shared objects).

    ``torch_default`` is what ``torch_default`` means for this weight (PyTorch's initialisation
    of the layer holding it, e.g. :func:`torch_uniform`); the spec refuses ``torch_default``
    where no PyTorch layer holds the weight.
    """
    if isinstance(spec, m.UniformInit):
        return ir.Initializer("uniform", low=spec.low, high=spec.high)
    if isinstance(spec, m.NormalInit):
        return ir.Initializer(spec.type, mean=spec.mean, std=spec.std)
    kind = spec.type
    if kind == "torch_default":
        if torch_default is None:
            raise ValueError("torch_default has no meaning for this weight")
        return torch_default
    init = _NAMED_INITIALIZERS.get(kind)
    if init is None:
        init = _NAMED_INITIALIZERS[kind] = ir.Initializer(kind)
    return init


_NAMED_INITIALIZERS: dict[str, ir.Initializer] = {}

TORCH_EMBEDDING = ir.Initializer("normal", mean=0.0, std=1.0)
"""PyTorch's ``nn.Embedding`` initialisation: ``N(0, 1)``."""


def torch_uniform(fan: int) -> ir.Initializer:
    """``U(-1/sqrt(fan), 1/sqrt(fan))``: PyTorch's initialisation of ``nn.Linear`` and
    ``nn.Conv1d`` weights (``kaiming_uniform_(a=sqrt(5))``) and biases with ``fan = fan_in``, and
    of every ``nn.LSTM`` / ``nn.GRU`` weight with ``fan = hidden_size``."""
    bound = 1 / math.sqrt(fan)
    return ir.Initializer("uniform", low=-bound, high=bound, fan=fan)


def constraint(
    spec: m.Constraint | None, weight: ir.Weight
) -> tuple[ir.Constraint | None, str | None]:
    """The IR form of a spec constraint on ``weight``, or a problem with it (a message)."""
    if spec is None:
        return None, None
    if weight.trainable == "none":
        return None, "the weight never trains, so a constraint would never apply"
    if isinstance(spec, m.NonNegConstraint):
        return ir.Constraint("non_neg", ()), None
    if isinstance(spec, m.ValueClipConstraint):
        low, high = spec.min_value, spec.max_value
        if weight.zero_rows and not ((low is None or low <= 0) and (high is None or high >= 0)):
            return None, "the range must include 0.0: the padding row stays 0.0"
        return ir.Constraint("value_clip", (), min_value=low, max_value=high), None
    rank = len(weight.shape)
    given = [spec.axis] if isinstance(spec.axis, int) else list(spec.axis)
    if not given:
        return None, "give at least one axis"
    bad = [a for a in given if not -rank <= a < rank]
    if bad:
        return None, f"axis {bad[0]} is out of range for the weight's {rank} axes {weight.shape}"
    axes = tuple(sorted({a % rank for a in given}))
    if len(axes) != len(given):
        return None, f"axis {given} names an axis twice"
    if weight.trainable == "rows" and 0 in axes:
        return None, (
            "only some rows train: a norm over axis 0 would mix frozen rows in (use axis 1, "
            "each row)"
        )
    if isinstance(spec, m.MaxNormConstraint):
        return ir.Constraint("max_norm", axes, max_value=spec.max_value), None
    if isinstance(spec, m.UnitNormConstraint):
        return ir.Constraint("unit_norm", axes), None
    c = ir.Constraint("min_max_norm", axes, spec.min_value, spec.max_value, spec.rate)
    return c, None


@dataclass(slots=True)
class LayerRef:
    """A spec layer with its resolved name, inputs and position in the file."""

    index: int
    name: str
    spec: m.LayerBase
    inputs: list[str]
    path: Path = ()  # ("model", "layers", index), made once and shared by the layer's nodes

    def __post_init__(self) -> None:
        self.path = ("model", "layers", self.index)
