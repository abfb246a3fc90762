"""TensorFlow's start-up lines held back: the one place that imports TensorFlow quietly.

Importing TensorFlow prints C++ log lines straight to the process's stderr (file descriptor 2)
before any Python setting applies: ``WARNING: All log messages before absl::InitializeLog() is
called are written to STDERR``, oneDNN's ``I0000 ... port.cc`` notice, the CPU-feature line,
and on GPU machines ``E0000 ... Unable to register cuDNN factory``, each of them twice.
``TF_CPP_MIN_LOG_LEVEL`` does not silence the absl ones. :func:`tensorflow_start_up_held_back`
holds everything written to file descriptor 2 during the import and passes on all but those
lines, so real warnings still show.

The generated Keras ``train.py`` carries a copy of the function (its source is rendered into
the script), so it behaves exactly as ``nnspec parity`` does; this module imports nothing but
the standard library.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def tensorflow_start_up_held_back() -> Iterator[None]:
    """Import TensorFlow inside this block to drop its C++ start-up log lines.

    TensorFlow's C++ info lines are turned off (``TF_CPP_MIN_LOG_LEVEL=1`` unless already set);
    what reaches file descriptor 2 during the block is held in a file and written to stderr
    afterwards, without the absl preamble, info lines (``I0000``), the CPU-instructions notice
    and the GPU plugins' "already registered" errors. Warnings and tracebacks pass.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    preambles = ("WARNING: All log messages before absl::", "To enable the following")
    plugins = ("Unable to register", "already been registered", "TF-TRT")

    def noise(line: str) -> bool:
        """absl's preamble, an info line, or a GPU plugin's start-up error."""
        level = line[:5]  # I0000 (info), W0000, E0000: severity and month-day of absl lines
        if len(level) == 5 and level[0] in "IWE" and level[1:].isdigit() and line[5:6] == " ":
            return level[0] == "I" or any(text in line for text in plugins)
        return line.startswith(preambles)

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not noise(line)))
            sys.stderr.flush()


def source() -> str:
    """The source of :func:`tensorflow_start_up_held_back`, for the generated ``train.py``."""
    return inspect.getsource(tensorflow_start_up_held_back)
