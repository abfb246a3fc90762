"""What resolution builds, shared by the resolver (:mod:`nnspec.compiler.resolve`) and the
per-layer builders (:mod:`nnspec.compiler.layers`): the result being assembled, the located
problem type, each spec layer's reference, and initializers."""

from __future__ import annotations

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


def initializer(spec: m.UniformInit | m.NormalInit | m.NamedInit) -> ir.Initializer:
    """The IR form of a spec initializer (parameterless ones are shared objects)."""
    if isinstance(spec, m.UniformInit):
        return ir.Initializer("uniform", low=spec.low, high=spec.high)
    if isinstance(spec, m.NormalInit):
        return ir.Initializer(spec.type, mean=spec.mean, std=spec.std)
    init = _NAMED_INITIALIZERS.get(spec.type)
    if init is None:
        init = _NAMED_INITIALIZERS[spec.type] = ir.Initializer(spec.type)
    return init


_NAMED_INITIALIZERS: dict[str, ir.Initializer] = {}


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
