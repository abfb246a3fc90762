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
    known = {w.name: w for w in program.weights}
    return [known[n] for n in dict.fromkeys(names) if n in known]


def _owned_weights(program: ir.Program, node: ir.Node) -> list[ir.Weight]:
    return op_weights(program, node.op)


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
                op=getattr(node.op, "op", type(node.op).__name__),
                shape=node.shape,
                trainable=sum(w.trainable_count for w in weights),
                frozen=sum(w.frozen_count for w in weights),
            )
        )
    return rows


def format_shape(shape: ir.Shape) -> str:
    """``(None, 12, 8)`` as Keras prints it."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
