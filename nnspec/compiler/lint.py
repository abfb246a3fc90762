"""Pass 2: lint — known pitfalls, found before any code runs.

Each rule is a function ``(spec, resolved) -> findings``; :data:`RULES` lists them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from nnspec.compiler import ir
from nnspec.compiler.resolve import Resolved
from nnspec.spec import models as m
from nnspec.spec.errors import Path

Finding = tuple[Path, str, str]  # (spec path, code, message)


def _last_activation(resolved: Resolved) -> tuple[str | None, Path]:
    for node in reversed(resolved.nodes):
        if isinstance(node.op, ir.Dense):
            return node.op.activation, (*resolved.node_paths[node.name], "activation")
        if not isinstance(node.op, ir.Dropout):
            return None, resolved.node_paths.get(node.name, ())
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
    the classifier a random, trainable vector (DESIGN problem 1)."""
    tables = {t.name: t for t in resolved.tables}
    current: str | None = None
    for node in resolved.nodes:
        if isinstance(node.op, ir.EmbeddingLookup):
            current = node.op.table
        elif isinstance(node.op, ir.Flatten | ir.GlobalPool) and current is not None:
            table = tables[current]
            if table.pad_index is None:
                yield (
                    ("embeddings", current),
                    "NN201",
                    f"table {current!r} has no padding: padded positions embed to a random, "
                    "trainable vector that reaches the classifier; add `padding: {index: 0}`",
                )
            current = None


def output_rank(spec: m.Spec, resolved: Resolved) -> Iterator[Finding]:
    """Losses here compare a (batch, classes) output with labels: a sequence output is an error
    the compiler reports (level error)."""
    if resolved.nodes and len(resolved.nodes[-1].shape) != 2:
        yield (
            resolved.node_paths[resolved.nodes[-1].name],
            "NN301",
            f"the model's output has shape {resolved.nodes[-1].shape[1:]} per example; "
            "the losses need one vector per example: add flatten or a global pooling layer",
        )


def sparse_ce_single_unit(spec: m.Spec, resolved: Resolved) -> Iterator[Finding]:
    """Categorical losses over a single unit always give probability 1."""
    if resolved.nodes and spec.training.loss.endswith("categorical_crossentropy"):
        if resolved.nodes[-1].shape[-1] == 1:
            yield (
                resolved.node_paths[resolved.nodes[-1].name],
                "NN104",
                "categorical cross-entropy over 1 class: use binary_crossentropy with sigmoid",
            )


RULES: tuple[Callable[[m.Spec, Resolved], Iterator[Finding]], ...] = (
    output_activation,
    unpadded_sequence_aggregate,
    output_rank,
    sparse_ce_single_unit,
)

ERROR_CODES = frozenset({"NN301"})


def lint(spec: m.Spec, resolved: Resolved) -> list[ir.Diagnostic]:
    """Run every rule; findings whose code is in :data:`ERROR_CODES` are errors."""
    out = []
    for rule in RULES:
        for path, code, message in rule(spec, resolved):
            level = "error" if code in ERROR_CODES else "warning"
            out.append(ir.Diagnostic(level, code, message, tuple(path)))
    return out
