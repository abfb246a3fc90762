"""Emitter of ``MemoryNetwork``: an End-To-End Memory Network (arXiv 1503.08895) class written
for the layer's exact configuration (tying, query, encodings, output), so that the generated
code holds only what the model uses.

Every distinct embedding weight is one ``nn.Embedding`` of ``embeddings`` (adjacent tying makes
hop ``k``'s C and hop ``k + 1``'s A one module), every distinct temporal encoding one parameter
of ``temporal``; each distinct (embedding, temporal) pair encodes the memories once per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnspec.backends.base import template_env
from nnspec.backends.torch.common import (
    TRANSFORMS,
    Emitted,
    activation,
    op_of,
    parameter,
    shape_comment,
)
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.torch.generator import TorchGenerator


@dataclass(frozen=True)
class _Layout:
    """Where the weights of one memory network live.

    Attributes:
        embeddings: distinct embedding weight names, in order of first use.
        labels: for each, the roles it plays (``"A_1"``, ``"C_1"``, ``"B"`` ...).
        temporal: distinct temporal-encoding weight names.
        temporal_labels: their roles.
        encodings: distinct ``(embedding, temporal or None)`` index pairs encoding memories.
        hops: for each hop, the indices in ``encodings`` of its m and c.
        query: index of the question's embedding B (``None`` for a constant query).
        output: index of the embedding whose transpose is W (``None``: W is its own weight).
    """

    embeddings: list[str]
    labels: list[list[str]]
    temporal: list[str]
    temporal_labels: list[list[str]]
    encodings: list[tuple[int, int | None]]
    hops: list[tuple[int, int]]
    query: int | None
    output: int | None


def _index(items: list[str], labels: list[list[str]], name: str, label: str) -> int:
    """The index of ``name`` in ``items`` (appended if new), recording ``label`` for it."""
    if name not in items:
        items.append(name)
        labels.append([])
    i = items.index(name)
    if label not in labels[i]:
        labels[i].append(label)
    return i


def _layout(op: ir.MemoryNetwork) -> _Layout:
    """Assign every weight of ``op`` its module and every hop its encodings."""
    embeddings: list[str] = []
    labels: list[list[str]] = []
    temporal: list[str] = []
    temporal_labels: list[list[str]] = []
    encodings: list[tuple[int, int | None]] = []
    hops = []
    shared = len(set(op.hops)) == 1
    for k, hop in enumerate(op.hops, start=1):
        suffix = " (every hop)" if shared else f"_{k}"
        pair = []
        for emb, temp, role in ((hop.A, hop.TA, "A"), (hop.C, hop.TC, "C")):
            e = _index(embeddings, labels, emb, f"{role}{suffix}")
            t = (
                None
                if temp is None
                else _index(temporal, temporal_labels, temp, f"T_{role}{suffix}")
            )
            if (e, t) not in encodings:
                encodings.append((e, t))
            pair.append(encodings.index((e, t)))
        hops.append((pair[0], pair[1]))
    query = None
    if op.query == "embedded":
        b = op.hops[0].A if op.tying == "adjacent" else op.query_embedding
        assert b is not None  # ir.validate
        query = _index(embeddings, labels, b, "B")
    output = None
    if op.output is None:
        output = _index(embeddings, labels, op.hops[-1].C, "W^T")
    return _Layout(embeddings, labels, temporal, temporal_labels, encodings, hops, query, output)


@TRANSFORMS.emits(ir.MemoryNetwork)
def emit_memory_network(gen: TorchGenerator, node: ir.Node) -> Emitted:
    """A generated memory-network class, one instance of it, and its weight code."""
    program = gen.program
    n = gen.names
    op = op_of(node, ir.MemoryNetwork)
    layer = n.layer(node)
    layout = _layout(op)
    memory_layers = [m.layer_name for m in program.nodes if isinstance(m.op, ir.MemoryNetwork)]
    memory_layers = list(dict.fromkeys(memory_layers))
    position = memory_layers.index(node.layer_name)
    cls = "MemoryNetwork" if position == 0 else f"MemoryNetwork{position + 1}"

    out = Emitted()
    tables = [program.weight(name) for name in layout.embeddings]  # zero rows: the pad row
    for i, weight in enumerate(tables):
        out.weights.append(parameter(weight, f"{layer}.embeddings[{i}].weight", out))
    for i, name in enumerate(layout.temporal):
        out.weights.append(parameter(program.weight(name), f"{layer}.temporal[{i}]", out))
    if op.linear_map is not None:
        out.weights.append(
            parameter(
                program.weight(op.linear_map), f"{layer}.linear_map.weight", out, transposed=True
            )
        )
    if op.output is not None:
        out.weights.append(
            parameter(program.weight(op.output), f"{layer}.output.weight", out, transposed=True)
        )

    padding = tables[0].zero_rows[0] if tables[0].zero_rows else None
    out.classes.append((cls, _source(cls, op, layout, program, padding, out)))
    out.init.append(f"{layer} = {cls}(dtype=dtype)")
    args = ", ".join(n.values[name] for name in node.inputs)
    out.forward.append(f"{n.values[node.name]} = {layer}({args})  # {shape_comment(node.shape)}")
    return out


def _source(
    cls: str,
    op: ir.MemoryNetwork,
    layout: _Layout,
    program: ir.Program,
    padding: int | None,
    out: Emitted,
) -> str:
    """The source of the memory-network class (``templates/memory_network.py.j2``): the
    decisions here, the code and its documentation there."""
    hops = len(op.hops)
    n_emb, n_temp = len(layout.embeddings), len(layout.temporal)
    aligned = [(i, i if n_temp else None) for i in range(n_emb)]
    encodings = list(layout.encodings)
    if len(set(layout.hops)) == 1:
        loop = "shared"
        m, c = layout.hops[0]
        encodings = [layout.encodings[m], layout.encodings[c]]
    elif layout.hops == [(k, k + 1) for k in range(hops)] and layout.encodings == aligned:
        loop = "chain"
        out.imports.add("pairwise")
    else:
        loop = "general"
    if op.output is not None:
        logits = "output"
    elif padding is not None:
        logits = "tied_unpadded"
    else:
        logits = "tied"
    context = {
        "cls": cls,
        "op": op,
        "hops": hops,
        "question": op.query == "embedded",
        "temporal": n_temp,
        "padding_idx": "" if padding is None else f", padding_idx={padding}",
        "n_embeddings": n_emb,
        "embedding_roles": ", ".join(" = ".join(labels) for labels in layout.labels),
        "temporal_roles": ", ".join(" = ".join(labels) for labels in layout.temporal_labels),
        "output_size": program.weight(op.output).shape[1] if op.output is not None else 0,
        "tied_output": layout.output,
        "loop": loop,
        "encodings": encodings,
        "hop_pairs": layout.hops,
        "query": layout.query,
        "query_value": repr(op.query_value),
        "logits": logits,
        "activation": activation(op.activation, "{}", out),
    }
    return template_env(__package__).get_template("memory_network.py.j2").render(context)
