"""What every backend's generated ``train.py`` needs to know about a program.

The ``train.py.j2`` template of each backend renders from :func:`train_context`: the spec's
training section as literal defaults of the script's flags, the model inputs with their
per-example shapes, the kind of accuracy the loss calls for. Only literals computed here (with
``repr``) and identifiers validated by the compiler reach the generated code.

The framework-free half of the script (flags, data files, learning-rate schedule, early stopping,
metrics CSV and plot) is written once, as macros in ``backends/templates/train_common.py.j2``
that every backend's template imports; the script itself stays one self-contained file.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2

from nnspec.backends.base import format_source, header
from nnspec.backends.pretrained_files import pretrained_literal
from nnspec.compiler import ir

ACCURACY = {
    "sparse_categorical_crossentropy": "sparse",
    "categorical_crossentropy": "categorical",
    "binary_crossentropy": "binary",
}
"""The accuracy ``train.py`` reports for each loss (none for ``mse``)."""

LABELS = {
    "sparse_categorical_crossentropy": "integer class ids ``(N,)``",
    "categorical_crossentropy": "one-hot rows ``(N, {classes})``",
    "binary_crossentropy": "0/1 labels ``(N, {classes})``",
    "mse": "targets ``(N, {classes})``",
}
"""How the labels array looks, per loss (for the docstring)."""


@dataclass(frozen=True)
class ScriptInput:
    """A model input as ``train.py`` reads it.

    Attributes:
        name: the input's name (an array of that name in the data file).
        dtype: the integer dtype the model takes.
        shape: the shape of one example, e.g. ``(200,)`` or ``(memories, words)``.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def doc(self) -> str:
        """``tokens`` ``(N, 200)``, for docstrings."""
        return f"``{self.name}`` ``{_shape(self.shape)}``"


def script_context(program: ir.Program, backend: str) -> dict[str, object]:
    """The template variables every generated script shares (``train.py``, ``predict.py``,
    ``export.py``): header, names, spec hash, the inputs' shapes and, for Keras, the quiet
    TensorFlow import."""
    # Imported here: the keras package imports this module.
    from nnspec.backends.keras.startup import source as start_up_source

    return {
        "header": header(program, backend),
        "backend": backend,
        "name": program.name,
        "class_name": program.class_name,
        "spec_hash": program.spec_hash,
        "input_shapes": "{" + ", ".join(f"{i.name!r}: {i.dims!r}" for i in program.inputs) + "}",
        "start_up_source": start_up_source() if backend == "keras" else "",
    }


def train_context(program: ir.Program, backend: str) -> dict[str, object]:
    """Template variables of ``train.py`` for ``program`` in ``backend``.

    A model with several outputs is trained on its first (``loss_fn`` takes one prediction).
    """
    training = program.training
    stopping = training.early_stopping
    output = program.node(program.outputs[0]).shape
    classes = output[-1] if len(output) > 1 else 1
    inputs = [ScriptInput(inp.name, inp.dtype, inp.dims) for inp in program.inputs]
    vocab = input_vocab_sizes(program)
    monitor = stopping.monitor if stopping else "val_loss"
    defaults = {
        "epochs": training.epochs,
        "batch_size": training.batch_size,
        "lr": training.optimizer.lr,
        "seed": training.seed,
        "validation_split": training.validation_split,
        "early_stopping": stopping is not None,
        "monitor": monitor,
        "patience": stopping.patience if stopping else 5,
        "min_delta": stopping.min_delta if stopping else 0.0,
        "restore_best": stopping.restore_best if stopping else False,
    }
    return {
        **script_context(program, backend),
        "input_dtypes": "{" + ", ".join(f"{i.name!r}: {i.dtype!r}" for i in inputs) + "}",
        "input_docs": ", ".join(i.doc for i in inputs),
        "input_vocab": "{" + ", ".join(f"{name!r}: {size!r}" for name, size in vocab.items()) + "}",
        "loss": training.loss,
        "label_shape": repr(tuple(d for d in output[1:] if d is not None)),
        "classes": classes,
        "first_output": program.outputs[0] if len(program.outputs) > 1 else None,
        "output_shape": "(" + ", ".join("B" if d is None else str(d) for d in output) + ")",
        "labels_doc": LABELS[training.loss].format(classes=classes),
        "sparse_labels": training.loss == "sparse_categorical_crossentropy",
        "accuracy": ACCURACY.get(training.loss),
        "threshold": "0.0" if training.from_logits else "0.5",
        "spec_clip_norm": training.optimizer.clip_norm,
        "validation_percent": f"{training.validation_split:.0%}",
        "d": {key: repr(value) for key, value in defaults.items()},
        "pretrained": pretrained_literal(program),
        "linear_start": any(
            isinstance(node.op, ir.MemoryNetwork) and node.op.linear_start for node in program.nodes
        ),
    }


def input_vocab_sizes(program: ir.Program) -> dict[str, int]:
    """Per model input, the number of ids its readers take (the smallest vocabulary among the
    embedding tables and memory networks that read it); inputs read by neither are left out."""
    sizes: dict[str, int] = {}
    names = {inp.name for inp in program.inputs}
    for node in program.nodes:
        op = node.op
        if isinstance(op, ir.EmbeddingLookup):
            size = program.table(op.table).vocab_size
        elif isinstance(op, ir.MemoryNetwork):
            size = op.vocab_size
        else:
            continue
        for name in names.intersection(node.inputs):
            sizes[name] = min(size, sizes.get(name, size))
    return {inp.name: sizes[inp.name] for inp in program.inputs if inp.name in sizes}


def render_train_script(
    env: jinja2.Environment, program: ir.Program, backend: str, logits: str = ""
) -> str:
    """``train.py`` for ``program``: ``env``'s ``train.py.j2`` rendered and formatted.

    ``env`` finds the backend's templates; the shared ``train_common.py.j2`` is found beside them.
    ``logits``: the keyword that asks the model for the logits its loss takes (a program with
    an output activation), else ``""``.
    """
    shared = jinja2.PackageLoader("nnspec.backends", "templates")
    loader = jinja2.ChoiceLoader([env.loader, shared]) if env.loader else shared
    template = env.overlay(loader=loader).get_template("train.py.j2")
    return format_source(template.render(train_context(program, backend), logits=logits))


def _shape(shape: tuple[int, ...]) -> str:
    """``(N, 200)`` for a per-example shape ``(200,)``."""
    return "(" + ", ".join(["N", *map(str, shape)]) + ")"
