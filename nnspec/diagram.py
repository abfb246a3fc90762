"""The model graph of a compiled spec as Mermaid or Graphviz DOT (and SVG through Graphviz).

Each layer shows its name, type, output shape and parameter counts; each embedding table its
size and policies (pad row, trainable rows, positional encoding, scale, pretrained vectors,
special tokens, shared offset), with a dotted edge to every lookup that reads it. Model inputs
are parallelograms, tables cylinders, outputs have a double border (DOT) or a thick one
(Mermaid). Everything is computed from the IR, without a framework.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from nnspec.compiler import ir
from nnspec.compiler.summary import format_shape, op_label, summarize

FORMATS = ("mermaid", "dot", "svg")


@dataclass(frozen=True)
class Box:
    """One box of the diagram: an input, a table or a layer."""

    id: str
    kind: str  # "input" | "table" | "layer"
    lines: tuple[str, ...]
    output: bool = False


@dataclass(frozen=True)
class Graph:
    """Boxes and edges (``(from, to, dotted)``), in a stable order."""

    name: str
    boxes: tuple[Box, ...]
    edges: tuple[tuple[str, str, bool], ...]


def _count(n: int) -> str:
    return f"{n:,}"


def _ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    parts = [str(a) if b == a + 1 else f"{a}..{b - 1}" for a, b in ranges]
    return ", ".join(parts) if len(parts) <= 4 else ", ".join(parts[:3]) + f", ... ({len(parts)})"


def table_policies(program: ir.Program, table: ir.EmbeddingTable) -> list[str]:
    """The table's embedding policies, one short line each."""
    lines = []
    if table.pad_index is not None:
        lines.append(f"pad id {table.pad_index} -> 0.0")
    weight = next(w for w in program.weights if w.name == table.weight)
    if weight.trainable == "none":
        lines.append("frozen")
    elif weight.trainable == "rows":
        rows = weight.n_trainable_rows
        lines.append(
            f"rows {_ranges(weight.trainable_rows)} train ({rows:,} of {table.vocab_size:,})"
        )
    else:
        lines.append("trainable")
    positional = table.positional
    if positional is not None:
        kind = getattr(positional, "kind", type(positional).__name__)
        length = getattr(positional, "max_length", None)
        lines.append(f"positional {kind}" + (f" (max length {length})" if length else ""))
    if table.scale != 1.0:
        lines.append(f"scale x{table.scale:g}")
    if table.special_tokens:
        tokens = " ".join(f"{t}={i}" for t, i in table.special_tokens)
        lines.append(f"special {tokens}")
    if table.pretrained is not None:
        lines.append(f"pretrained {table.pretrained.vectors}")
    offset = getattr(table, "offset", None)
    if offset is not None:
        lines.append(f"shared offset on rows {_ranges(offset.rows)}")
    return lines


def graph(program: ir.Program) -> Graph:
    """The diagram's boxes and edges for ``program``."""
    boxes: list[Box] = []
    edges: list[tuple[str, str, bool]] = []
    for inp in program.inputs:
        shape = format_shape((None, *(inp.shape or (inp.length,))))
        boxes.append(Box(f"input_{inp.name}", "input", (inp.name, f"input {shape} {inp.dtype}")))
    for table in program.tables:
        head = f"table {table.name}: {table.vocab_size:,} x {table.dim}"
        boxes.append(Box(f"table_{table.name}", "table", (head, *table_policies(program, table))))
    counts = {row.name: row for row in summarize(program)}
    ids = {inp.name: f"input_{inp.name}" for inp in program.inputs}
    outputs = set(program.outputs)
    for node in program.nodes:
        row = counts[node.name]
        lines = [node.name, op_label(program, node.op), format_shape(node.shape)]
        if row.frozen:
            lines.append(f"{_count(row.trainable)} trainable, {_count(row.frozen)} frozen")
        elif row.trainable:
            lines.append(f"{_count(row.trainable)} params")
        if node.layer and node.layer != node.name:
            lines.append(f"weights of {node.layer}")
        box_id = f"layer_{node.name}"
        ids[node.name] = box_id
        boxes.append(Box(box_id, "layer", tuple(lines), output=node.name in outputs))
        for source in node.inputs:
            edges.append((ids[source], box_id, False))
        if isinstance(node.op, ir.EmbeddingLookup):
            edges.append((f"table_{node.op.table}", box_id, True))
    return Graph(program.name, tuple(boxes), tuple(edges))


# ----------------------------------------------------------------------------- Mermaid

_MERMAID_ESCAPES = {"&": "#amp;", '"': "#quot;", "<": "#lt;", ">": "#gt;"}


def _mermaid_text(text: str) -> str:
    return "".join(_MERMAID_ESCAPES.get(c, c) for c in text)


def mermaid(program: ir.Program) -> str:
    """A Mermaid flowchart (renders in GitHub markdown inside a ```` ```mermaid ```` fence)."""
    g = graph(program)
    out = ["flowchart TD"]
    shapes = {"input": ('[/"', '"/]'), "table": ('[("', '")]'), "layer": ('["', '"]')}
    for box in g.boxes:
        label = "<br/>".join(_mermaid_text(line) for line in box.lines)
        if box.kind == "layer":
            label = f"<b>{_mermaid_text(box.lines[0])}</b><br/>" + label.split("<br/>", 1)[1]
        left, right = shapes[box.kind]
        out.append(f"    {box.id}{left}{label}{right}")
    for source, target, dotted in g.edges:
        out.append(f"    {source} {'-.->' if dotted else '-->'} {target}")
    out.append("    classDef input fill:#eef6ff,stroke:#4a7fb5")
    out.append("    classDef table fill:#fff6e5,stroke:#c28a1d")
    out.append("    classDef output stroke-width:3px")
    for kind in ("input", "table"):
        members = [b.id for b in g.boxes if b.kind == kind]
        if members:
            out.append(f"    class {','.join(members)} {kind}")
    outputs = [b.id for b in g.boxes if b.output]
    if outputs:
        out.append(f"    class {','.join(outputs)} output")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- Graphviz


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def dot(program: ir.Program) -> str:
    """A Graphviz DOT digraph (``dot -Tsvg``, ``-Tpng`` ... renders it)."""
    g = graph(program)
    out = [
        f'digraph "{_dot_text(g.name)}" {{',
        "    rankdir=TB;",
        '    node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", '
        "fontsize=11];",
        '    edge [fontname="Helvetica"];',
    ]
    styles = {
        "input": 'shape=parallelogram, style=filled, fillcolor="#eef6ff"',
        "table": 'shape=cylinder, style=filled, fillcolor="#fff6e5"',
        "layer": "",
    }
    for box in g.boxes:
        label = "\\n".join(_dot_text(line) for line in box.lines)
        attrs = [f'label="{label}"']
        if styles[box.kind]:
            attrs.append(styles[box.kind])
        if box.output:
            attrs.append("peripheries=2")
        out.append(f"    {box.id} [{', '.join(attrs)}];")
    for source, target, dotted in g.edges:
        out.append(f"    {source} -> {target}{' [style=dashed]' if dotted else ''};")
    out.append("}")
    return "\n".join(out) + "\n"


class GraphvizMissing(RuntimeError):
    """SVG was asked for but Graphviz's ``dot`` is not on PATH."""


def svg(program: ir.Program) -> str:
    """The DOT diagram rendered to SVG by Graphviz's ``dot`` (:class:`GraphvizMissing` when it
    is not installed)."""
    binary = shutil.which("dot")
    if binary is None:
        raise GraphvizMissing(
            "SVG needs Graphviz's `dot` on PATH (apt install graphviz, brew install graphviz); "
            "--format dot or mermaid need nothing"
        )
    result = subprocess.run(
        [binary, "-Tsvg"], input=dot(program), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise GraphvizMissing(f"dot failed: {result.stderr.strip()}")
    return result.stdout


def render(program: ir.Program, format: str) -> str:
    """``program`` as ``format``: ``mermaid``, ``dot`` or ``svg``."""
    if format == "mermaid":
        return mermaid(program)
    if format == "dot":
        return dot(program)
    if format == "svg":
        return svg(program)
    raise ValueError(f"unknown diagram format {format!r}; choose from: {', '.join(FORMATS)}")
