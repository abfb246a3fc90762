"""Pass 2: lint — known pitfalls, found before any code runs.

Each rule is a function ``(spec, resolved) -> findings``; :data:`RULES` lists them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

from nnspec.compiler import ir
from nnspec.compiler.resolve import default_padding
from nnspec.compiler.resolved import Resolved
from nnspec.spec import models as m
from nnspec.spec.errors import Path

Finding = tuple[Path, str, str]  # (spec path, code, message)


def _output_node(resolved: Resolved) -> ir.Node | None:
    by_name = {node.name: node for node in resolved.nodes}
    return by_name.get(resolved.outputs[0]) if resolved.outputs else None


def _last_activation(resolved: Resolved) -> tuple[str | None, Path]:
    """The activation applied last on the way to the (first) output, and where it is set."""
    by_name = {node.name: node for node in resolved.nodes}
    node = _output_node(resolved)
    while node is not None:
        path = resolved.node_paths.get(node.name, ())
        if isinstance(node.op, ir.Dense | ir.Conv1D | ir.MemoryNetwork):
            return node.op.activation, (*path, "activation")
        if not isinstance(node.op, ir.Dropout):
            return None, path
        node = by_name.get(node.inputs[0])
    return None, ()


def output_activation(spec: m.Spec, resolved: Resolved) -> Iterator[Finding]:
    """The output activation must suit the loss (e.g. softmax under categorical cross-entropy)."""
    activation, path = _last_activation(resolved)
    loss = spec.training.loss
    logits = spec.training.from_logits
    if loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        if logits and activation == "softmax":
            yield path, "NN102", "softmax output with from_logits: true applies softmax twice"
        elif not logits and activation != "softmax":
            yield (
                path,
                "NN101",
                f"{loss} expects probabilities but the output activation is {activation!r}: "
                "use softmax, or set training.from_logits: true with a linear output",
            )
    if loss == "binary_crossentropy":
        if logits and activation == "sigmoid":
            yield path, "NN102", "sigmoid output with from_logits: true applies sigmoid twice"
        elif not logits and activation != "sigmoid":
            yield (
                path,
                "NN103",
                f"binary_crossentropy expects probabilities but the output activation is "
                f"{activation!r}: use sigmoid, or set training.from_logits: true",
            )


def unpadded_sequence_aggregate(spec: m.Spec, resolved: Resolved) -> Iterator[Finding]:
    """A table without pad zeroing whose sequence is flattened or pooled: padded positions feed
    the classifier a random, trainable vector (the pad-zeroing problem in the README).

    Linear: one backward search per flatten / pooling node, never entering a node an earlier
    search saw (every unpadded table behind it has been reported already)."""
    tables = {t.name: t for t in resolved.tables}
    by_name = {node.name: node for node in resolved.nodes}
    seen: set[str] = set()
    reported: set[str] = set()
    for node in resolved.nodes:
        if not ir.pools_sequence(node.op):
            continue
        behind: set[str] = set()
        stack = [node.name]
        while stack:
            name = stack.pop()
            if name in seen or name not in by_name:
                continue
            seen.add(name)
            current = by_name[name]
            if isinstance(current.op, ir.EmbeddingLookup):
                behind.add(current.op.table)
            else:
                stack.extend(current.inputs)
        for name in sorted(behind - reported):
            if tables[name].pad_index is None:
                reported.add(name)
                yield (
                    ("embeddings", name),
                    "NN201",
                    f"table {name!r} has no padding: padded positions embed to a random, "
                    "trainable vector that reaches the classifier; add `padding: {index: 0}`",
                )


def output_rank(spec: m.Spec, resolved: Resolved) -> Iterator[Finding]:
    """Losses here compare a (batch, classes) output with labels: a sequence output is an error
    the compiler reports (level error)."""
    node = _output_node(resolved)
    if node is not None and len(node.shape) != 2:
        yield (
            resolved.node_paths[node.name],
            "NN301",
            f"the model's output has shape {node.shape[1:]} per example; "
            "the losses need one vector per example: add flatten or a global pooling layer",
        )


def sparse_ce_single_unit(spec: m.Spec, resolved: Resolved) -> Iterator[Finding]:
    """Categorical losses over a single unit always give probability 1."""
    node = _output_node(resolved)
    categorical = spec.training.loss.endswith("categorical_crossentropy")
    if node is not None and categorical and node.shape[-1] == 1:
        yield (
            resolved.node_paths[node.name],
            "NN104",
            "categorical cross-entropy over 1 class: use binary_crossentropy with sigmoid",
        )


def attention_without_mask(spec: m.Spec, resolved: Resolved) -> Iterator[Finding]:
    """Attention over ids looked up without padding attends to pad positions as to words."""
    for node in resolved.nodes:
        if isinstance(node.op, ir.SelfAttention | ir.TransformerBlock) and node.mask is None:
            yield (
                resolved.node_paths[node.name],
                "NN202",
                "attention without a padding mask: keys at pad positions are attended to; give "
                "the embedding table `padding: {index: 0}` (or feed the layer unpadded data)",
            )


def unused_layers(spec: m.Spec, resolved: Resolved) -> Iterator[Finding]:
    """Layers that no output depends on are computed for nothing."""
    by_name = {node.name: node for node in resolved.nodes}
    needed: set[str] = set()
    stack = list(resolved.outputs)
    while stack:
        name = stack.pop()
        if name in needed or name not in by_name:
            continue
        needed.add(name)
        stack.extend(by_name[name].inputs)
    reported: set[Path] = set()
    for node in resolved.nodes:
        path = resolved.node_paths[node.name]
        if node.name not in needed and path not in reported:
            reported.add(path)
            yield path, "NN203", f"layer {node.name!r} does not reach any output"


def frozen_zero_rows(spec: m.Spec, resolved: Resolved) -> Iterator[Finding]:
    """``missing: zeros`` in a table whose rows do not all train: words without a pretrained
    vector embed to 0.0 forever, like padding."""
    weights = {w.name: w for w in resolved.weights}
    for table in resolved.tables:
        pretrained = table.pretrained
        zeros = pretrained is not None and pretrained.missing == "zeros"
        if zeros and weights[table.weight].trainable != "all":
            yield (
                ("embeddings", table.name, "pretrained", "missing"),
                "NN204",
                f"frozen rows of table {table.name!r} whose words have no pretrained vector "
                "stay 0.0 forever, like padding: use `missing: vector_stats`, or make those "
                "rows trainable",
            )


def _pads(padding: m.Padding | None) -> str:
    return "no padding" if padding is None else f"pad id {padding.index}"


def memory_network_padding(spec: m.Spec, resolved: Resolved) -> Iterator[Finding]:
    """A memory network's pad id must be said when nothing else says it: the default follows
    the tables looked up in the same ids, else the ``nnspec prepare`` layout (pad 0, words from
    1), which is wrong for data where id 0 is a word. Also: an explicit padding that the tables
    looked up in the same ids contradict."""
    tables_of: dict[str, dict[str, m.EmbeddingTableSpec]] = {}
    for node in resolved.nodes:
        if isinstance(node.op, ir.EmbeddingLookup) and node.op.table in spec.embeddings:
            table = spec.embeddings[node.op.table]
            tables_of.setdefault(node.inputs[0], {})[node.op.table] = table
    reported: set[Path] = set()
    for node in resolved.nodes:
        path = resolved.node_paths.get(node.name, ())
        if not isinstance(node.op, ir.MemoryNetwork) or path in reported or len(path) != 3:
            continue
        reported.add(path)
        layer = spec.model.layers[int(path[2])]
        assert isinstance(layer, m.MemoryNetworkLayer)
        tables = {k: v for name in node.inputs for k, v in tables_of.get(name, {}).items()}
        padding, source = default_padding(layer, tables)
        others = ", ".join(f"table {k!r} has {_pads(v.padding)}" for k, v in tables.items())
        if source == "layout":
            yield (
                path,
                "NN205",
                f"memory_network {node.name!r} does not say `padding`: id 0 is taken as the pad "
                "(the `nnspec prepare` layout: pad 0, words from 1) and embeds to 0.0; say "
                "`padding: {index: 0}`, or `padding: null` if id 0 is a word of your data",
            )
        elif source == "ambiguous":
            yield (
                path,
                "NN205",
                f"memory_network {node.name!r} does not say `padding` and the tables looked up "
                f"in the same ids disagree ({others}): id 0 is taken as the pad; say `padding`",
            )
        elif source == "given" and any(_pads(t.padding) != _pads(padding) for t in tables.values()):
            yield (
                (*path, "padding"),
                "NN205",
                f"memory_network {node.name!r} has {_pads(padding)} but the same ids are looked "
                f"up elsewhere with another ({others}): one of them misreads the data",
            )


RULES: tuple[Callable[[m.Spec, Resolved], Iterator[Finding]], ...] = (
    output_activation,
    unpadded_sequence_aggregate,
    output_rank,
    sparse_ce_single_unit,
    attention_without_mask,
    unused_layers,
    frozen_zero_rows,
    memory_network_padding,
)

ERROR_CODES = frozenset({"NN301"})


def lint(spec: m.Spec, resolved: Resolved) -> list[ir.Diagnostic]:
    """Run every rule; findings whose code is in :data:`ERROR_CODES` are errors."""
    out = []
    for rule in RULES:
        for path, code, message in rule(spec, resolved):
            level: Literal["error", "warning"] = "error" if code in ERROR_CODES else "warning"
            out.append(ir.Diagnostic(level, code, message, tuple(path)))
    return out
