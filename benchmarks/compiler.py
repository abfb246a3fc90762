"""How the compiler scales: validate and compile specs of 10 .. 10,000 layers, and the wall time
of one CLI call on a small spec (which must not import a framework)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from nnspec import backends
from nnspec.compiler import compile_spec
from nnspec.spec import load_string

ROOT = Path(__file__).resolve().parent.parent


def deep_spec(layers: int) -> str:
    """A valid spec with ``layers`` layers: an embedding, a chain of small dense layers, pooling
    and a softmax output."""
    lines = [
        "nnspec: 1",
        "name: deep",
        "inputs:",
        "  tokens: {length: 16}",
        "embeddings:",
        "  words: {vocab_size: 100, dim: 8, padding: {index: 0}}",
        "model:",
        "  layers:",
        "    - {type: embedding, table: words}",
    ]
    lines += ["    - {type: dense, units: 8, activation: tanh}"] * max(layers - 3, 0)
    lines += [
        "    - {type: global_average_pool}",
        "    - {type: dense, units: 4, activation: softmax}",
        "training:",
        "  loss: sparse_categorical_crossentropy",
    ]
    return "\n".join(lines) + "\n"


def time_compiler(sizes: tuple[int, ...] = (10, 100, 1_000, 10_000)) -> list[dict[str, float]]:
    """Seconds to validate (load + check) and to compile (IR + both backends' code)."""
    rows = []
    for n in sizes:
        text = deep_spec(n)
        start = time.perf_counter()
        spec, doc = load_string(text, "deep.yaml")
        validated = time.perf_counter()
        program = compile_spec(spec, doc)
        compiled = time.perf_counter()
        for backend in backends.available().values():
            backend.generate(program)
        generated = time.perf_counter()
        rows.append(
            {
                "layers": n,
                "validate_s": validated - start,
                "compile_ir_s": compiled - validated,
                "generate_s": generated - compiled,
            }
        )
    return rows


def cli_wall_time(repeats: int = 5) -> dict[str, float]:
    """Median wall time of ``nnspec validate`` and ``nnspec summary`` on a small example, and
    whether either imported a framework."""
    spec = ROOT / "examples" / "glove_special_tokens" / "spec.yaml"
    out = {}
    for command in ("validate", "summary"):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "nnspec", command, str(spec)],
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - start)
        out[command] = statistics.median(times)
    probe = (
        f"import sys, runpy; sys.argv = ['nnspec', 'validate', {str(spec)!r}]\n"
        "try:\n    runpy.run_module('nnspec', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(any(m in sys.modules for m in ('torch', 'tensorflow', 'keras')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    out["imports_framework"] = result.stdout.strip().endswith("True")
    return out
