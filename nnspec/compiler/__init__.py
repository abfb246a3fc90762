"""Spec -> IR: graph resolution, shape inference, parameter counts, lint.

The compiler never imports a framework. Its passes run in order: :func:`resolve.resolve`
(tables, weights, nodes with shapes) then :func:`lint.lint`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import Any

from nnspec import __version__
from nnspec.compiler import ir
from nnspec.compiler.lint import lint
from nnspec.compiler.resolve import resolve
from nnspec.spec import Document, Problem, Spec, SpecError
from nnspec.spec import load as load_spec

__all__ = ["compile_file", "compile_spec", "problems_of", "spec_hash"]


# Layer options added to the language later, by layer type, with their defaults: left out of the
# hash while at the default, like an unset `pretrained` (see `_canonical_json`), so that specs
# written before them keep their hash and generated files.
LATER_LAYER_FIELDS: dict[str, dict[str, object]] = {
    "memory_network": {
        "relu_half": False,
        "dropout": 0.0,
        "linear_start": False,
        "temporal_initializer": None,
        "linear_map_initializer": None,
        "output_initializer": None,
    },
    "dense": {"kernel_constraint": None, "bias_constraint": None},
    "conv1d": {
        "bias_initializer": {"type": "zeros"},
        "kernel_constraint": None,
        "bias_constraint": None,
    },
    "lstm": {"recurrent_initializer": None, "bias_initializer": {"type": "zeros"}},
    "gru": {"recurrent_initializer": None, "bias_initializer": {"type": "zeros"}},
}
# Embedding-table options added later, likewise.
LATER_TABLE_FIELDS: dict[str, object] = {
    "pretrained": None,
    "shared_offset": None,
    "special_tokens_initializer": None,
    "constraint": None,
}


def spec_hash(spec: Spec) -> str:
    """sha256 (16 hex digits) of the spec's canonical JSON form: formatting-independent."""
    digest = hashlib.sha256()
    for chunk in _canonical_json(spec):
        digest.update(chunk.encode())
    return digest.hexdigest()[:16]


def canonical_json(spec: Spec) -> str:
    """The spec's canonical JSON form (sorted keys, no spaces; options added to the language
    later left out at their defaults), whose sha256 :func:`spec_hash` is."""
    return "".join(_canonical_json(spec))


def _canonical_json(spec: Spec) -> Iterator[str]:
    """``json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))`` in
    pieces, one layer at a time, so that a 100,000-layer spec is never dumped whole."""
    encode = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
    data = spec.model_dump(mode="json", exclude={"model": {"layers": True}})
    # Fields added to the language later are left out while unset: adding them does not change
    # the hash (and so the generated files) of specs that do not use them.
    for table in data["embeddings"].values():
        for name, default in LATER_TABLE_FIELDS.items():
            if name in table and table[name] == default:
                del table[name]
    model = data.pop("model")
    yield "{"
    for i, key in enumerate(sorted([*data, "model"])):
        yield ("," if i else "") + encode(key) + ":"
        if key != "model":
            yield encode(data[key])
            continue
        yield "{"
        for j, field in enumerate(sorted([*model, "layers"])):
            yield ("," if j else "") + encode(field) + ":"
            if field != "layers":
                yield encode(model[field])
                continue
            yield "["
            for k, layer in enumerate(spec.model.layers):
                dumped = layer.model_dump(mode="json")
                for name, default in LATER_LAYER_FIELDS.get(layer.type, {}).items():
                    if name in dumped and dumped[name] == default:
                        del dumped[name]
                yield ("," if k else "") + encode(dumped)
            yield "]"
        yield "}"
    yield "}"


def class_name(name: str) -> str:
    """``newsgroups_flat`` -> ``NewsgroupsFlatModel``.

    The ``Model`` suffix keeps the class clear of every helper the generated code defines
    (``MemoryNetwork``, ``F``, ...), whatever the spec is called; a name whose words start with
    a digit (``_0``) gets a ``Spec`` prefix so the class name is an identifier."""
    camel = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    if not camel[:1].isidentifier():
        camel = f"Spec{camel}"
    return camel if camel.endswith("Model") else f"{camel}Model"


# Output activations whose cross-entropy is computed from the logits instead, by loss.
_FROM_LOGITS: dict[str, ir.Activation] = {
    "sparse_categorical_crossentropy": "softmax",
    "categorical_crossentropy": "softmax",
    "binary_crossentropy": "sigmoid",
}


def _loss_from_logits(
    nodes: tuple[ir.Node, ...], outputs: list[str], training: ir.Training
) -> tuple[tuple[ir.Node, ...], ir.Training, ir.Activation | None]:
    """A softmax (sigmoid) output trained with categorical (binary) cross-entropy: its node
    computes the logits, the model applies the activation as :attr:`ir.Program.output_activation`,
    and the loss takes the logits (exact log-softmax, no clipping), as stock Keras does inside
    its cross-entropy of a softmax output. Unchanged for anything else (several outputs, an
    output layer tied elsewhere, other losses)."""
    activation = _FROM_LOGITS.get(training.loss)
    if training.from_logits or activation is None or len(outputs) != 1:
        return nodes, training, None
    index = next(i for i, node in enumerate(nodes) if node.name == outputs[0])
    node = nodes[index]
    if getattr(node.op, "activation", None) != activation:
        return nodes, training, None
    if sum(n.layer_name == node.layer_name for n in nodes) != 1:
        return nodes, training, None
    op: Any = node.op  # an op with an activation: Dense, Conv1D, MemoryNetwork
    logits = dataclasses.replace(node, op=dataclasses.replace(op, activation="linear"))
    nodes = (*nodes[:index], logits, *nodes[index + 1 :])
    return nodes, dataclasses.replace(training, from_logits=True), activation


def compile_spec(spec: Spec, doc: Document) -> ir.Program:
    """Compile a validated spec. Raises :class:`SpecError` (located) on compile errors and lint
    errors; lint warnings are kept on ``Program.diagnostics``. The program is checked by
    :func:`ir.validate` before it is returned (a failure there is an internal error)."""
    resolved = resolve(spec)
    if resolved.errors:
        raise SpecError([doc.problem(e.path, e.message) for e in resolved.errors])
    diagnostics = lint(spec, resolved)
    errors = [d for d in diagnostics if d.level == "error"]
    if errors:
        raise SpecError([doc.problem(d.path, d.message, code=d.code) for d in errors])
    t = spec.training
    opt = t.optimizer
    optimizer = ir.Optimizer(
        kind=opt.type,
        lr=opt.lr,
        momentum=getattr(opt, "momentum", 0.0),
        nesterov=getattr(opt, "nesterov", False),
        beta1=getattr(opt, "beta1", 0.9),
        beta2=getattr(opt, "beta2", 0.999),
        eps=getattr(opt, "eps", 1e-8),
        weight_decay=opt.weight_decay,
        clip_norm=t.clip_norm,
    )
    early = None
    if t.early_stopping is not None:
        es = t.early_stopping
        early = ir.EarlyStopping(
            monitor=es.monitor,
            patience=es.patience,
            min_delta=es.min_delta,
            mode="max" if es.monitor.endswith("accuracy") else "min",
            restore_best=es.restore_best,
        )
    training = ir.Training(
        loss=t.loss,
        optimizer=optimizer,
        batch_size=t.batch_size,
        epochs=t.epochs,
        seed=t.seed,
        from_logits=t.from_logits,
        early_stopping=early,
        validation_split=t.validation_split,
    )
    nodes, training, output_activation = _loss_from_logits(
        tuple(resolved.nodes), resolved.outputs, training
    )
    program = ir.Program(
        name=spec.name,
        class_name=class_name(spec.name),
        spec_hash=spec_hash(spec),
        spec=spec,
        version=__version__,
        inputs=tuple(resolved.inputs),
        tables=tuple(resolved.tables),
        nodes=nodes,
        outputs=tuple(resolved.outputs),
        weights=tuple(resolved.weights),
        training=training,
        diagnostics=tuple(diagnostics),
        repeats=tuple(resolved.repeats),
        output_activation=output_activation,
    )
    ir.validate(program)
    return program


def compile_file(path: str | FsPath) -> tuple[ir.Program, Document]:
    """Load, validate and compile a spec file (with "did you mean" hints for the first few
    unknown names only: :func:`~nnspec.spec.validate.hint_budget`)."""
    from nnspec.spec.validate import hint_budget

    with hint_budget():
        spec, doc = load_spec(path)
    return compile_spec(spec, doc), doc


def problems_of(program: ir.Program, doc: Document) -> list[Problem]:
    """The program's lint warnings as located problems."""
    return [doc.problem(d.path, d.message, level=d.level, code=d.code) for d in program.diagnostics]
