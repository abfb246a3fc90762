"""Pass 1: resolve a validated spec into IR tables, weights and a graph of nodes.

Layers read the layer before them unless they name their ``inputs``; the graph is sorted
topologically (cycles are errors), tied layers (``share``) are checked to match, and shapes are
inferred node by node by :mod:`nnspec.compiler.layers`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from nnspec.compiler import ir
from nnspec.compiler.layers import build_node
from nnspec.compiler.resolved import (
    TORCH_EMBEDDING,
    CompileProblem,
    LayerRef,
    Resolved,
    constraint,
    initializer,
)
from nnspec.spec import models as m
from nnspec.spec.errors import Path
from nnspec.spec.validate import did_you_mean, hint_budget


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
    init = initializer(spec.initializer, TORCH_EMBEDDING)
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
        list(specials) if selection.special_tokens is True else list(selection.special_tokens or [])
    )
    ranges += [(specials[t], specials[t] + 1) for t in chosen]
    rows = merge_ranges(ranges, exclude=pad)
    if not rows:
        return ir.Weight(wname, shape, init, "none", zero_rows=zero_rows)
    if rows == ((0, spec.vocab_size),):
        return ir.Weight(wname, shape, init, "all", zero_rows=zero_rows)
    return ir.Weight(wname, shape, init, "rows", trainable_rows=rows, zero_rows=zero_rows)


def _weight_policies(
    name: str, spec: m.EmbeddingTableSpec, weight: ir.Weight, r: Resolved
) -> ir.Weight:
    """``weight`` (the table's) with its special rows' initializer and its constraint (a problem
    with the constraint goes to ``r.errors``)."""
    if spec.special_tokens_initializer is not None and not spec.special_tokens:
        where = ("embeddings", name, "special_tokens_initializer")
        r.errors.append(CompileProblem(where, "the table has no `special_tokens`"))
    elif spec.special_tokens_initializer is not None:
        first = spec.vocab_size - len(spec.special_tokens)
        init = initializer(spec.special_tokens_initializer, TORCH_EMBEDDING)
        weight = dataclasses.replace(weight, row_initializers=(((first, spec.vocab_size), init),))
    projection, problem = constraint(spec.constraint, weight)
    if problem is not None:
        r.errors.append(CompileProblem(("embeddings", name, "constraint"), problem))
    return dataclasses.replace(weight, constraint=projection)


def _shared_offset(name: str, spec: m.EmbeddingTableSpec, r: Resolved) -> ir.SharedOffset | None:
    """The table's shared offset (its weight added to ``r``): the selected rows, pad cut out."""
    offset = spec.shared_offset
    if offset is None:
        return None
    pad = spec.padding.index if spec.padding else None
    specials = special_token_ids(spec)
    ranges = [(i, i + 1) for i in offset.ids] + [(g.start, g.stop) for g in offset.ranges]
    chosen = list(specials) if offset.special_tokens is True else offset.special_tokens or []
    ranges += [(specials[t], specials[t] + 1) for t in chosen]
    if offset.words:
        ranges.append((0, spec.vocab_size - len(spec.special_tokens)))
    weight = ir.Weight(
        f"{name}.offset",
        (spec.dim,),
        initializer(offset.initializer),
        "all" if offset.trainable else "none",
    )
    rows = merge_ranges(ranges, exclude=pad)
    if not rows:
        where = ("embeddings", name, "shared_offset")
        r.errors.append(CompileProblem(where, "selects no id but the pad row, which takes none"))
        return None
    r.add_weight(weight)
    return ir.SharedOffset(weight.name, rows)


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
    if pos is None or isinstance(pos, m.RotaryPositional):
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
    r.add_weight(
        ir.Weight(wname, (max_length, spec.dim), initializer(pos.initializer, TORCH_EMBEDDING))
    )
    return ir.LearnedPositional(max_length=max_length, weight=wname)


def _pretrained(spec: m.EmbeddingTableSpec) -> ir.PretrainedVectors | None:
    settings = spec.pretrained
    if settings is None:
        return None
    from nnspec.vectors import detect_format  # validated already; imports numpy

    return ir.PretrainedVectors(
        vectors=settings.vectors,
        format=detect_format(settings.vectors, settings.format),  # type: ignore[arg-type]
        words=settings.words,
        vocabulary=settings.vocabulary,
        missing=settings.missing,
        lowercase_fallback=settings.lowercase_fallback,
        special_tokens=len(spec.special_tokens),
    )


# ----------------------------------------------------------------------------- memory networks

PaddingSource = Literal["given", "table", "layout", "ambiguous"]


def default_padding(
    layer: m.MemoryNetworkLayer, tables: dict[str, m.EmbeddingTableSpec]
) -> tuple[m.Padding | None, PaddingSource]:
    """A memory network's padding and what decided it.

    ``tables`` are the tables looked up in the same ids (an embedding layer reading one of the
    memory network's inputs). ``given``: the layer says ``padding`` (``null`` included);
    ``table``: it does not, and those tables agree, so it follows them; ``layout``: nothing says
    it, so the ``nnspec prepare`` layout decides (the pad at id 0, words from 1); ``ambiguous``:
    those tables disagree, and the layout decides too (lint ``NN205`` reports both cases).
    """
    if "padding" in layer.model_fields_set:
        return layer.padding, "given"
    paddings = {_padding_key(t.padding) for t in tables.values()}
    if len(paddings) == 1:
        return next(iter(tables.values())).padding, "table"
    return m.Padding(), "ambiguous" if paddings else "layout"


def _padding_key(padding: m.Padding | None) -> tuple[int, str] | None:
    return None if padding is None else (padding.index, padding.mode)


def tables_by_input(
    spec: m.Spec, refs: list[LayerRef]
) -> dict[str, dict[str, m.EmbeddingTableSpec]]:
    """For each model input: the tables looked up in it, by name, in layer order."""
    out: dict[str, dict[str, m.EmbeddingTableSpec]] = {}
    for ref in refs:
        if isinstance(ref.spec, m.EmbeddingLayer) and ref.spec.table in spec.embeddings:
            for name in ref.inputs:
                out.setdefault(name, {})[ref.spec.table] = spec.embeddings[ref.spec.table]
    return out


def _memory_network_defaults(spec: m.Spec, refs: list[LayerRef]) -> None:
    """Give every memory network that does not say ``padding`` the one
    :func:`default_padding` decides."""
    by_input: dict[str, dict[str, m.EmbeddingTableSpec]] | None = None
    for ref in refs:
        layer = ref.spec
        if not isinstance(layer, m.MemoryNetworkLayer) or "padding" in layer.model_fields_set:
            continue
        by_input = tables_by_input(spec, refs) if by_input is None else by_input
        tables = {k: v for name in ref.inputs for k, v in by_input.get(name, {}).items()}
        padding, _ = default_padding(layer, tables)
        ref.spec = layer.model_copy(update={"padding": padding})


# ----------------------------------------------------------------------------- the graph


def _default_name(layer: m.LayerBase, counts: dict[str, int], taken: set[str]) -> str:
    base = f"{layer.table}_lookup" if isinstance(layer, m.EmbeddingLayer) else layer.type  # type: ignore[attr-defined]
    while True:
        n = counts.get(base, 0)
        counts[base] = n + 1
        candidate = base if n == 0 else f"{base}_{n}"
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def _layer_refs(spec: m.Spec, r: Resolved) -> list[LayerRef]:
    """Name every layer and resolve what it reads (names are checked later)."""
    taken = {layer.name for layer in spec.model.layers if layer.name}
    taken |= set(spec.inputs) | set(spec.embeddings)
    counts: dict[str, int] = {}
    only_input = next(iter(spec.inputs)) if len(spec.inputs) == 1 else None
    refs: list[LayerRef] = []
    for i, layer in enumerate(spec.model.layers):
        name = layer.name or _default_name(layer, counts, taken)
        path: Path = ("model", "layers", i)
        if layer.name and (layer.name in spec.inputs or layer.name in spec.embeddings):
            r.errors.append(
                CompileProblem((*path, "name"), f"{name!r} is already an input or table name")
            )
        if layer.inputs is not None:
            inputs = list(layer.inputs)
        elif isinstance(layer, m.EmbeddingLayer):
            if layer.input is None and only_input is None:
                r.errors.append(
                    CompileProblem(path, "several inputs exist: say which one to read (`input`)")
                )
                inputs = []
            else:
                inputs = [layer.input or only_input]  # type: ignore[list-item]
        elif isinstance(layer, m.MemoryNetworkLayer) and only_input is not None:
            inputs = [only_input]
        elif refs:
            inputs = [refs[-1].name]
        else:
            r.errors.append(
                CompileProblem(
                    path,
                    f"the first layer ({getattr(layer, 'type', '')}) must say what it reads: "
                    "give `inputs`",
                )
            )
            inputs = []
        refs.append(LayerRef(i, name, layer, inputs))
    return refs


def _topological(refs: list[LayerRef], spec: m.Spec, r: Resolved) -> list[LayerRef]:
    """Order layers so every layer comes after what it reads; report unknown names and cycles.

    Linear in layers plus inputs read: each layer's list of layers it reads is built once."""
    by_name = {ref.name: ref for ref in refs}
    known = [*spec.inputs, *by_name]
    for ref in refs:
        for j, name in enumerate(ref.inputs):
            if name not in by_name and name not in spec.inputs:
                where = (
                    (*ref.path, "inputs", j)
                    if ref.spec.inputs is not None
                    else (*ref.path, "input")
                )
                r.errors.append(
                    CompileProblem(
                        where,
                        f"unknown layer or input {name!r}{did_you_mean(name, known)}",
                    )
                )
    if r.errors:
        return []
    # Iterative depth-first search (graphs may be thousands of layers deep).
    order: list[LayerRef] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in refs:
        if state.get(root.name) == 2:
            continue
        stack: list[tuple[LayerRef, list[LayerRef], int]] = [(root, _deps(root, by_name), 0)]
        path: list[str] = [root.name]
        state[root.name] = 1
        while stack:
            ref, deps, i = stack[-1]
            if i < len(deps):
                stack[-1] = (ref, deps, i + 1)
                dep = deps[i]
                if state.get(dep.name) == 1:
                    cycle = [*path[path.index(dep.name) :], dep.name]
                    r.errors.append(CompileProblem(dep.path, f"cycle: {' -> '.join(cycle)}"))
                    return []
                if state.get(dep.name) != 2:
                    state[dep.name] = 1
                    stack.append((dep, _deps(dep, by_name), 0))
                    path.append(dep.name)
                continue
            state[ref.name] = 2
            order.append(ref)
            stack.pop()
            path.pop()
    return order


def _deps(ref: LayerRef, by_name: dict[str, LayerRef]) -> list[LayerRef]:
    """The layers ``ref`` reads, each once (``inputs: [e, e, ...]`` reads ``e`` once)."""
    return [by_name[n] for n in dict.fromkeys(ref.inputs) if n in by_name]


_SHARE_IGNORED = {"name", "inputs", "share"}


def _share_roots(refs: list[LayerRef], r: Resolved) -> dict[str, str]:
    """Map every layer to the layer owning its weights; check tied layers match.

    Linear in the number of layers: each ``share`` chain is walked once, every layer on it
    taking the owner found at its end."""
    by_name = {ref.name: ref for ref in refs}
    names = list(by_name)
    owner: dict[str, str] = {}
    for ref in refs:
        chain: list[LayerRef] = []
        on_chain: set[str] = set()
        node = ref
        while True:
            if node.name in owner:
                root_name = owner[node.name]
                break
            if node.name in on_chain:
                # A circle: report it once, at each layer on it.
                circle = chain[[c.name for c in chain].index(node.name) :]
                for member in circle:
                    r.errors.append(
                        CompileProblem((*member.path, "share"), "layers share in a circle")
                    )
                root_name = node.name
                break
            chain.append(node)
            on_chain.add(node.name)
            if node.spec.share is None:
                root_name = node.name
                break
            target = by_name.get(node.spec.share)
            if target is None:
                r.errors.append(
                    CompileProblem(
                        (*node.path, "share"),
                        f"unknown layer {node.spec.share!r}{did_you_mean(node.spec.share, names)}",
                    )
                )
                root_name = node.name
                break
            node = target
        for member in chain:
            owner[member.name] = root_name
    dumps: dict[str, dict] = {}

    def dump(ref: LayerRef) -> dict:
        if ref.name not in dumps:
            dumps[ref.name] = ref.spec.model_dump(exclude=_SHARE_IGNORED)
        return dumps[ref.name]

    for ref in refs:
        root = by_name[owner[ref.name]]
        if root is not ref:
            mine, theirs = dump(ref), dump(root)
            if mine != theirs:
                diff = sorted(k for k in mine if mine[k] != theirs.get(k))
                r.errors.append(
                    CompileProblem(
                        (*ref.path, "share"),
                        f"a layer sharing {root.name!r}'s weights must be configured like it; "
                        f"differs in: {', '.join(diff)}",
                    )
                )
    return owner


def resolve(spec: m.Spec) -> Resolved:
    """Resolve ``spec`` into IR pieces; problems are collected in ``errors``, not raised.

    Every step is linear (or n log n) in the size of the spec, and "did you mean" hints are
    looked for only for the first few unknown names (:func:`~nnspec.spec.validate.hint_budget`).
    """
    with hint_budget():
        return _resolve(spec)


def _resolve(spec: m.Spec) -> Resolved:
    r = Resolved()
    r.inputs = [
        ir.Input(name, i.dims[-1], i.dtype, tuple(i.shape) if i.shape else ())
        for name, i in spec.inputs.items()
    ]
    refs = _layer_refs(spec, r)
    _memory_network_defaults(spec, refs)
    lengths = _table_lengths(spec, refs)
    for name, table in spec.embeddings.items():
        r.add_weight(_weight_policies(name, table, _table_weight(name, table), r))
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
                pretrained=_pretrained(table),
                special_tokens=tuple(special_token_ids(table).items()),
                offset=_shared_offset(name, table, r),
            )
        )
    if r.errors:
        return r
    owners = _share_roots(refs, r)
    order = _topological(refs, spec, r)
    if r.errors:
        return r
    built: dict[str, ir.Node | ir.Input] = {i.name: i for i in r.inputs}
    owner_shapes: dict[str, tuple] = {}
    for ref in order:
        try:
            nodes = build_node(spec, ref, owners[ref.name], built, owner_shapes, r)
        except CompileProblem as problem:
            r.errors.append(problem)
            return r
        for node in nodes:
            r.nodes.append(node)
            r.node_paths[node.name] = ref.path
            built[node.name] = node
    _outputs(spec, refs, r)
    _unused_inputs(spec, r)
    _unused_tables(spec, r)
    return r


def _table_lengths(spec: m.Spec, refs: list[LayerRef]) -> dict[str, list[int]]:
    """Input lengths each table is looked up with (for positional table sizes)."""
    lengths: dict[str, list[int]] = {name: [] for name in spec.embeddings}
    for ref in refs:
        if isinstance(ref.spec, m.EmbeddingLayer) and ref.spec.table in lengths:
            for name in ref.inputs:
                if name in spec.inputs:
                    lengths[ref.spec.table].append(spec.inputs[name].dims[-1])
    return lengths


def _outputs(spec: m.Spec, refs: list[LayerRef], r: Resolved) -> None:
    if spec.model.outputs is None:
        r.outputs = [refs[-1].name]
        return
    names = {n.name for n in r.nodes}
    known = sorted(names)
    for i, name in enumerate(spec.model.outputs):
        if name not in names:
            r.errors.append(
                CompileProblem(
                    ("model", "outputs", i),
                    f"unknown layer {name!r}{did_you_mean(name, known)}",
                )
            )
    r.outputs = list(spec.model.outputs)


def _unused_inputs(spec: m.Spec, r: Resolved) -> None:
    read = {name for node in r.nodes for name in node.inputs}
    for name in spec.inputs:
        if name not in read:
            r.errors.append(
                CompileProblem(("inputs", name), f"input {name!r} is not read by any layer")
            )


def _unused_tables(spec: m.Spec, r: Resolved) -> None:
    """A table no layer looks up would be weights no op owns (and that never train)."""
    used = {node.op.table for node in r.nodes if isinstance(node.op, ir.EmbeddingLookup)}
    for name in spec.embeddings:
        if name not in used:
            r.errors.append(
                CompileProblem(
                    ("embeddings", name),
                    f"table {name!r} is not used by any layer: look it up with an `embedding` "
                    "layer, or remove it",
                )
            )
