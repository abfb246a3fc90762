"""A per-layer summary like Keras' ``model.summary()``, computed from the IR alone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nnspec.compiler import ir


@dataclass(frozen=True)
class Row:
    """One line of the summary."""

    name: str
    op: str
    shape: ir.Shape
    trainable: int
    frozen: int


def _strings(value: object) -> list[str]:
    """Every string inside a (nested) IR dataclass or tuple, in field order."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple):
        return [s for item in value for s in _strings(item)]
    if dataclasses.is_dataclass(value):
        return [s for f in dataclasses.fields(value) for s in _strings(getattr(value, f.name))]
    return []


def op_weights(program: ir.Program, op: ir.Op) -> list[ir.Weight]:
    """The canonical weights an op uses, each once, in order."""
    names = _strings(op)
    if isinstance(op, ir.EmbeddingLookup):
        table = program.table(op.table)
        names = [table.weight]
        if isinstance(table.positional, ir.LearnedPositional):
            names.append(table.positional.weight)
    known = program._by_name["weight"]  # built once per program
    return [known[n] for n in dict.fromkeys(names) if n in known]  # type: ignore[misc]


def _owned_weights(program: ir.Program, node: ir.Node) -> list[ir.Weight]:
    return op_weights(program, node.op)


def op_label(program: ir.Program, op: ir.Op) -> str:
    """The op's name, and for a lookup in a pretrained table where its rows come from
    (``embedding, pretrained glove-6b-50d``)."""
    label = getattr(op, "op", type(op).__name__)
    if isinstance(op, ir.EmbeddingLookup):
        pretrained = program.table(op.table).pretrained
        if pretrained is not None:
            label += f", pretrained {pretrained.vectors}"
    return label


def pretrained_sources(program: ir.Program) -> list[str]:
    """One line per table with pretrained vectors: ``words: glove-6b-50d (packaged); ...``."""
    lines = []
    for table in program.tables:
        p = table.pretrained
        if p is None:
            continue
        from nnspec.vectors import is_vocabulary_file

        words = f", words {p.words}" if p.words else ""
        vocabulary = (
            f"file {p.vocabulary}"
            if is_vocabulary_file(p.vocabulary)
            else f"the data file's array {p.vocabulary!r}"
        )
        lines.append(
            f"{table.name}: {p.vectors} ({p.format}{words}); vocabulary: {vocabulary}; "
            f"missing words: {p.missing}"
        )
    return lines


def summarize(program: ir.Program) -> list[Row]:
    """One :class:`Row` per node; a weight shared by several nodes is counted at its first use."""
    seen: set[str] = set()
    rows = []
    for node in program.nodes:
        weights = [w for w in _owned_weights(program, node) if w.name not in seen]
        seen.update(w.name for w in weights)
        rows.append(
            Row(
                name=node.name,
                op=op_label(program, node.op),
                shape=node.shape,
                trainable=sum(w.trainable_count for w in weights),
                frozen=sum(w.frozen_count for w in weights),
            )
        )
    return rows


def format_shape(shape: ir.Shape) -> str:
    """``(None, 12, 8)`` as Keras prints it."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
