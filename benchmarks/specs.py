"""The specs the benchmark runs: the examples (shrunk for ``--quick``) and the small policy specs.

Everything here is framework-free: specs are JSON text (valid YAML), compiled with
:func:`nnspec.compiler.compile_spec` and generated with each backend's ``generate``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nnspec.compiler import compile_spec
from nnspec.compiler.ir import Program
from nnspec.parity import generate_all
from nnspec.spec import load_string
from nnspec.spec.loader import load_text

ROOT = Path(__file__).resolve().parent.parent

# The example architectures, in report order.
EXAMPLES = (
    "newsgroups_flat",
    "glove_special_tokens",
    "glove_lstm",
    "transformer_classifier",
    "memn2n_lm",
)

# Policy variants of one embedding table; "plain" is the baseline the others are divided by.
# "frozen" (no row trains) shows what per-row trainability costs beyond freezing the table.
POLICIES = ("plain", "pad", "rows", "frozen", "sinusoidal", "learned")
POLICY_LABELS = {
    "plain": "plain embedding (baseline)",
    "pad": "pad zeroing",
    "rows": "per-row trainability",
    "frozen": "frozen table (reference)",
    "sinusoidal": "sinusoidal positions",
    "learned": "learned positions",
}
POLICY_GOALS = {"pad": 1.10, "rows": 1.20, "sinusoidal": 1.10, "learned": 1.10}
TRAINABLE_ROWS = 100  # rows that train in the per-row variant (the highest ids)

# Upper bounds applied by --quick, by key (the output layer keeps its width up to 16).
QUICK_LIMITS = {
    "length": 8,
    "vocab_size": 300,
    "dim": 16,
    "units": 16,
    "ff_dim": 32,
    "batch_size": 8,
}
QUICK_RECURRENT_UNITS = 8
QUICK_MEMORIES = 6


def example_text(name: str) -> str:
    """The example's spec file."""
    return (ROOT / "examples" / name / "spec.yaml").read_text()


def shrink(data: dict[str, Any]) -> dict[str, Any]:
    """A tiny copy of a spec document: every size capped by :data:`QUICK_LIMITS`."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if key == "max_length":
                continue  # defaults to the (shrunk) input length
            if key == "units" and node.get("type") in ("lstm", "gru"):
                value = min(value, QUICK_RECURRENT_UNITS)
            elif key in QUICK_LIMITS and isinstance(value, int):
                value = min(value, QUICK_LIMITS[key])
            out[key] = walk(value)
        return out

    small = walk({key: value for key, value in data.items() if key != "inputs"})
    small["inputs"] = {}
    for name, inp in data["inputs"].items():
        inp = dict(inp)
        if "length" in inp:
            inp["length"] = min(inp["length"], QUICK_LIMITS["length"])
        if "shape" in inp:
            inp["shape"] = [min(inp["shape"][0], QUICK_MEMORIES), *inp["shape"][1:]]
        small["inputs"][name] = inp
    return small


def example_spec(name: str, quick: bool) -> str:
    """The example's spec as JSON text, shrunk when ``quick``."""
    data = load_text(example_text(name)).data
    return json.dumps(shrink(data) if quick else data)


def policy_sizes(quick: bool) -> dict[str, int]:
    """Table rows, width, sequence length and batch of the policy specs."""
    if quick:
        return {"vocab_size": 2_000, "dim": 16, "length": 16, "batch_size": 8}
    return {"vocab_size": 100_000, "dim": 64, "length": 64, "batch_size": 32}


def policy_spec(variant: str, quick: bool) -> str:
    """A small spec: one table with ``variant``'s policy -> flatten -> dense softmax.

    Flatten (not pooling) keeps everything after the lookup identical across the variants.
    """
    size = policy_sizes(quick)
    vocab = size["vocab_size"]
    table: dict[str, Any] = {"vocab_size": vocab, "dim": size["dim"]}
    if variant == "pad":
        table["padding"] = {"index": 0}
    elif variant == "rows":
        table["trainable"] = {"ranges": [[vocab - TRAINABLE_ROWS, vocab]]}
    elif variant == "frozen":
        table["trainable"] = False
    elif variant in ("sinusoidal", "learned"):
        table["positional"] = {"type": variant}
    elif variant != "plain":
        raise ValueError(f"unknown policy variant {variant!r}")
    spec = {
        "nnspec": 1,
        "name": f"policy_{variant}",
        "inputs": {"tokens": {"length": size["length"]}},
        "embeddings": {"words": table},
        "model": {
            "layers": [
                {"type": "embedding", "table": "words"},
                {"type": "flatten"},
                {"type": "dense", "units": 4, "activation": "softmax"},
            ]
        },
        "training": {
            "loss": "sparse_categorical_crossentropy",
            "optimizer": {"type": "adam", "lr": 0.001},
            "batch_size": size["batch_size"],
        },
    }
    return json.dumps(spec)


def compile_text(text: str, file: str = "<benchmark>") -> Program:
    """Validate and compile spec text."""
    return compile_spec(*load_string(text, file))


def generate(text: str, backend: str, out: Path) -> tuple[str | None, str | None]:
    """Generate ``backend``'s code for spec ``text`` under ``out``.

    Returns ``(model.py path, None)``, or ``(None, reason)`` when the spec does not compile or the
    backend cannot generate it yet (the row is then reported as not available).
    """
    try:
        program = compile_text(text)
        path = generate_all(program, out, [backend])[backend]
    except Exception as error:  # any failure makes the row "not available", never a crash
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return None, f"{type(error).__name__}: {first}"[:200]
    return str(path), None
