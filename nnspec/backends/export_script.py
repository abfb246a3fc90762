"""The generated ``export.py``: a trained run's model in deployment formats, each checked.

It loads the run folder ``train.py`` wrote (``model.safetensors`` into ``build_model()``), writes
the model in the formats of its framework (PyTorch: a ``torch.export`` program ``.pt2`` and ONNX
from the dynamo exporter; Keras: a ``.keras`` file and a TensorFlow SavedModel), and checks each
file, read back, against the model's own outputs on one batch before anything is written. Like
``train.py`` it imports neither nnspec nor, before its flags and data are checked, the framework.
"""

from __future__ import annotations

from nnspec.backends.base import format_source, template_env
from nnspec.backends.train_script import input_vocab_sizes, script_context
from nnspec.compiler import ir

# Format name -> file (or folder) name, per backend; the first is the default.
FORMATS = {
    "torch": {"onnx": "model.onnx", "pt2": "model.pt2"},
    "keras": {"saved_model": "saved_model", "keras": "model.keras"},
}
TOLERANCE = 1e-5  # the largest absolute difference an exported float32 model may show


def export_context(program: ir.Program, backend: str) -> dict[str, object]:
    """Template variables of ``export.py`` for ``program`` in ``backend``."""
    vocab = input_vocab_sizes(program)
    return {
        **script_context(program, backend),
        "input_vocab": "{" + ", ".join(f"{name!r}: {size!r}" for name, size in vocab.items()) + "}",
        "input_names": ", ".join(f"``{i.name}``" for i in program.inputs),
        "formats": repr(FORMATS[backend]),
        "tolerance": repr(TOLERANCE),
    }


def render_export_script(program: ir.Program, backend: str) -> str:
    """``export.py`` for ``program`` in ``backend``, formatted."""
    template = template_env("nnspec.backends").get_template("export.py.j2")
    return format_source(template.render(export_context(program, backend)))
