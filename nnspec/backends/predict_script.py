"""The generated ``predict.py``: a trained run's model applied to raw text.

It reads the run folder ``train.py`` wrote (``run.json`` with the tokenizer settings of
``nnspec prepare``, ``vocabulary.txt``, ``model.safetensors``), tokenizes texts exactly as
:mod:`nnspec.text` did for training (its patterns are rendered into the script), and prints the
most probable labels (classifiers) or next words and perplexity (memory-network language
models). Like ``train.py`` it imports neither nnspec nor, before its flags and inputs are
checked, the framework.
"""

from __future__ import annotations

from nnspec.backends.base import format_source, template_env
from nnspec.backends.train_script import script_context
from nnspec.compiler import ir
from nnspec.text import PUNCTUATION_PATTERN, WORD_PATTERN


def predict_context(program: ir.Program, backend: str) -> dict[str, object]:
    """Template variables of ``predict.py`` for ``program`` in ``backend``."""
    training = program.training
    language_model = any(
        isinstance(node.op, ir.MemoryNetwork) and node.op.query == "constant"
        for node in program.nodes
    )
    probabilities = training.loss in ("sparse_categorical_crossentropy", "categorical_crossentropy")
    return {
        **script_context(program, backend),
        "task": "language-model" if language_model else "classify",
        "probabilities": probabilities,
        # A model trained from its logits by the compiler's choice still returns probabilities.
        "from_logits": training.from_logits and probabilities and not program.output_activation,
        "first_output": program.outputs[0] if len(program.outputs) > 1 else None,
        "word_pattern": ascii(WORD_PATTERN),  # the curly apostrophe as \\u2019
        "punctuation_pattern": repr(PUNCTUATION_PATTERN),
    }


def render_predict_script(program: ir.Program, backend: str) -> str:
    """``predict.py`` for ``program`` in ``backend``, formatted."""
    template = template_env("nnspec.backends").get_template("predict.py.j2")
    return format_source(template.render(predict_context(program, backend)))
