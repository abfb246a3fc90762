"""Pass 1: resolve a validated spec into IR tables, weights and nodes with inferred shapes."""

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
    errors: list[CompileProblem] = field(default_factory=list)
    # The spec path each node came from, for locating lint findings.
    node_paths: dict[str, Path] = field(default_factory=dict)


def initializer(spec: m.UniformInit | m.NormalInit | m.NamedInit) -> ir.Initializer:
    """The IR form of a spec initializer."""
    if isinstance(spec, m.UniformInit):
        return ir.Initializer("uniform", low=spec.low, high=spec.high)
    if isinstance(spec, m.NormalInit):
        return ir.Initializer(spec.type, mean=spec.mean, std=spec.std)
    return ir.Initializer(spec.type)


def merge_ranges(ranges: list[tuple[int, int]], exclude: int | None) -> tuple[tuple[int, int], ...]:
    """Sort and merge half-open ranges, cutting out row ``exclude``."""
    merged: list[list[int]] = []
    for start, stop in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    out: list[tuple[int, int]] = []
    for start, stop in merged:
        if exclude is not None and start <= exclude < stop:
            out.extend(r for r in ((start, exclude), (exclude + 1, stop)) if r[0] < r[1])
        else:
            out.append((start, stop))
    return tuple(out)


def special_token_ids(table: m.EmbeddingTableSpec) -> dict[str, int]:
    """Special tokens take the highest ids, in the order they are listed."""
    first = table.vocab_size - len(table.special_tokens)
    return {token: first + i for i, token in enumerate(table.special_tokens)}


def _table_weight(name: str, spec: m.EmbeddingTableSpec) -> ir.Weight:
    pad = spec.padding.index if spec.padding else None
    zero_rows = (pad,) if pad is not None else ()
    shape = (spec.vocab_size, spec.dim)
    init = initializer(spec.initializer)
    wname = f"{name}.embeddings"
    if spec.trainable is True:
        return ir.Weight(wname, shape, init, "all", zero_rows=zero_rows)
    if spec.trainable is False:
        return ir.Weight(wname, shape, init, "none", zero_rows=zero_rows)
    selection = spec.trainable
    specials = special_token_ids(spec)
    ranges = [(i, i + 1) for i in selection.ids]
    ranges += [(r.start, r.stop) for r in selection.ranges]
    chosen = (
        list(specials)
        if selection.special_tokens is True
        else list(selection.special_tokens or [])
    )
    ranges += [(specials[t], specials[t] + 1) for t in chosen]
    rows = merge_ranges(ranges, exclude=pad)
    if not rows:
        return ir.Weight(wname, shape, init, "none", zero_rows=zero_rows)
    if rows == ((0, spec.vocab_size),):
        return ir.Weight(wname, shape, init, "all", zero_rows=zero_rows)
    return ir.Weight(wname, shape, init, "rows", trainable_rows=rows, zero_rows=zero_rows)


def _scale(spec: m.EmbeddingTableSpec) -> float:
    if spec.scale == "none":
        return 1.0
    if spec.scale == "sqrt_dim":
        return math.sqrt(spec.dim)
    return float(spec.scale)


def _positional(
    name: str, spec: m.EmbeddingTableSpec, lengths: list[int], r: Resolved
) -> ir.Positional | None:
    pos = spec.positional
    if pos is None:
        return None
    longest = max(lengths, default=1)
    max_length = pos.max_length or longest
    if max_length < longest:
        r.errors.append(
            CompileProblem(
                ("embeddings", name, "positional", "max_length"),
                f"positional table has {max_length} positions but an input of length {longest} "
                "is looked up in this table",
            )
        )
    if isinstance(pos, m.SinusoidalPositional):
        return ir.SinusoidalPositional(max_length=max_length, base=pos.base)
    wname = f"{name}.positional"
    r.weights.append(ir.Weight(wname, (max_length, spec.dim), initializer(pos.initializer)))
    return ir.LearnedPositional(max_length=max_length, weight=wname)


def _table_lengths(spec: m.Spec) -> dict[str, list[int]]:
    """Input lengths each table is looked up with (for positional table sizes)."""
    only_input = next(iter(spec.inputs)) if len(spec.inputs) == 1 else None
    lengths: dict[str, list[int]] = {name: [] for name in spec.embeddings}
    for layer in spec.model.layers:
        if isinstance(layer, m.EmbeddingLayer) and layer.table in lengths:
            inp = layer.input or only_input
            if inp in spec.inputs:
                lengths[layer.table].append(spec.inputs[inp].length)
    return lengths


def resolve(spec: m.Spec) -> Resolved:
    """Resolve ``spec`` into IR pieces; problems are collected in ``errors``, not raised."""
    r = Resolved()
    r.inputs = [ir.Input(name, i.length, i.dtype) for name, i in spec.inputs.items()]
    lengths = _table_lengths(spec)
    for name, table in spec.embeddings.items():
        r.weights.append(_table_weight(name, table))
        r.tables.append(
            ir.EmbeddingTable(
                name=name,
                vocab_size=table.vocab_size,
                dim=table.dim,
                weight=f"{name}.embeddings",
                pad_index=table.padding.index if table.padding else None,
                scale=_scale(table),
                positional=_positional(name, table, lengths[name], r),
                zero_padded_positions=table.zero_padded_positions,
            )
        )
    _resolve_layers(spec, r)
    return r


def _default_name(layer: m.LayerBase, counts: dict[str, int], taken: set[str]) -> str:
    base = layer.type  # type: ignore[attr-defined]
    if isinstance(layer, m.EmbeddingLayer):
        base = f"{layer.table}_lookup"
    while True:
        n = counts.get(base, 0)
        counts[base] = n + 1
        candidate = base if n == 0 else f"{base}_{n}"
        if candidate not in taken:
            return candidate


def _resolve_layers(spec: m.Spec, r: Resolved) -> None:
    taken = {layer.name for layer in spec.model.layers if layer.name}
    taken |= set(spec.inputs) | set(spec.embeddings)
    counts: dict[str, int] = {}
    prev: ir.Node | None = None
    only_input = next(iter(spec.inputs)) if len(spec.inputs) == 1 else None
    for i, layer in enumerate(spec.model.layers):
        path: Path = ("model", "layers", i)
        name = layer.name or _default_name(layer, counts, taken)
        if layer.name and (layer.name in spec.inputs or layer.name in spec.embeddings):
            r.errors.append(
                CompileProblem((*path, "name"), f"{name!r} is already an input or table name")
            )
            return
        try:
            node = _node(spec, layer, name, prev, only_input, path, r)
        except CompileProblem as problem:
            r.errors.append(problem)
            return
        r.nodes.append(node)
        r.node_paths[name] = path
        prev = node


def _node(
    spec: m.Spec,
    layer: m.LayerBase,
    name: str,
    prev: ir.Node | None,
    only_input: str | None,
    path: Path,
    r: Resolved,
) -> ir.Node:
    if isinstance(layer, m.EmbeddingLayer):
        if prev is not None:
            raise CompileProblem(
                path, "an embedding lookup must be the first layer (it reads an input's ids)"
            )
        inp = layer.input or only_input
        if inp is None:
            raise CompileProblem((*path, "input"), "several inputs exist: say which one to read")
        if inp not in spec.inputs:
            raise CompileProblem((*path, "input"), _unknown("input", inp, list(spec.inputs)))
        if layer.table not in spec.embeddings:
            raise CompileProblem((*path, "table"), _unknown("table", layer.table, list(spec.embeddings)))
        table = spec.embeddings[layer.table]
        mask = ir.Mask(inp, table.padding.index) if table.padding else None
        length = spec.inputs[inp].length
        return ir.Node(name, ir.EmbeddingLookup(layer.table), (inp,), (None, length, table.dim), mask)
    if prev is None:
        raise CompileProblem(path, f"a {layer.type} layer cannot come first: start with an embedding lookup")  # type: ignore[attr-defined]
    shape = prev.shape
    if isinstance(layer, m.FlattenLayer):
        if len(shape) < 3:
            raise CompileProblem(path, f"flatten needs a sequence input, got shape {_fmt(shape)}")
        return ir.Node(name, ir.Flatten(), (prev.name,), (None, math.prod(shape[1:])))  # type: ignore[arg-type]
    if isinstance(layer, m.DenseLayer):
        kernel, bias = f"{name}.kernel", f"{name}.bias" if layer.use_bias else None
        r.weights.append(ir.Weight(kernel, (int(shape[-1]), layer.units), initializer(layer.kernel_initializer)))  # type: ignore[arg-type]
        if bias:
            r.weights.append(ir.Weight(bias, (layer.units,), initializer(layer.bias_initializer)))
        op = ir.Dense(layer.units, layer.activation, kernel, bias)
        return ir.Node(name, op, (prev.name,), (*shape[:-1], layer.units), prev.mask)
    if isinstance(layer, m.DropoutLayer):
        return ir.Node(name, ir.Dropout(layer.rate), (prev.name,), shape, prev.mask)
    if isinstance(layer, m.GlobalAveragePoolLayer | m.GlobalMaxPoolLayer):
        if len(shape) != 3:
            raise CompileProblem(path, f"{layer.type} needs a (batch, length, features) input, got {_fmt(shape)}")
        mode = "average" if isinstance(layer, m.GlobalAveragePoolLayer) else "max"
        return ir.Node(name, ir.GlobalPool(mode), (prev.name,), (None, shape[2]))
    raise CompileProblem(path, f"layer type {layer.type!r} is not supported by the compiler")  # type: ignore[attr-defined]


def _unknown(kind: str, name: str, known: list[str]) -> str:
    from nnspec.spec.validate import did_you_mean

    listed = ", ".join(known) or "none defined"
    return f"unknown {kind} {name!r}{did_you_mean(name, known)}; known: {listed}"


def _fmt(shape: ir.Shape) -> str:
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"
