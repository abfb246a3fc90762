"""Graph breaks of ``torch.compile`` in every example's generated PyTorch model.

    python -m benchmarks.graph_breaks [--out benchmarks/results]

Each example's model (at the spec's size) runs through ``torch._dynamo.explain`` on a batch of
random ids with padded tails and one all-padding row (:func:`nnspec.parity.random_batch`), as
training runs it (train mode, with gradients) and as validation does (eval mode, no gradients).
A graph break is where Dynamo stops tracing and falls back to Python: each one splits the
compiled model into more graphs. Writes ``graph_breaks.json`` and ``graph_breaks.md`` (a table;
README's benchmarks section shows it). Tracing only, nothing is compiled: seconds per example.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nnspec.compiler import compile_file
from nnspec.parity import generate_all, random_batch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 4


def reason(record: Any) -> str:
    """A break reason of ``torch._dynamo.explain``: its first line and the user code it broke at."""
    text = str(getattr(record, "reason", record)).splitlines()[0]
    stack = getattr(record, "user_stack", None)
    if stack:
        code = (stack[-1].line or "").split("  #")[0].rstrip("(")
        text += f" at `{code}` ({stack[-1].name})"
    return text


def explain(model_py: Path, inputs: dict[str, np.ndarray], training: bool) -> dict[str, Any]:
    """Graphs, graph breaks and their reasons of the model in ``model_py`` on ``inputs``."""
    import torch
    import torch._dynamo

    from nnspec.backends.torch import runtime

    torch._dynamo.reset()
    model = runtime.load_module(model_py).build_model("float32")
    model.train(training)
    tensors = {name: torch.from_numpy(ids.astype(np.int64)) for name, ids in inputs.items()}
    with torch.set_grad_enabled(training):
        result = torch._dynamo.explain(model)(**tensors, **runtime.logits_flag(model))
    reasons = sorted({reason(r) for r in result.break_reasons})
    return {
        "graphs": result.graph_count,
        "graph_breaks": result.graph_break_count,
        "ops": result.op_count,
        "reasons": reasons,
    }


def measure(names: list[str]) -> dict[str, dict[str, Any]]:
    """``{example: {"train": explain(...), "eval": explain(...)}}``."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="nnspec-graph-breaks-") as tmp:
        for name in names:
            program, _ = compile_file(EXAMPLES / name / "spec.yaml")
            model_py = generate_all(program, Path(tmp) / name, ["torch"])["torch"]
            inputs, _ = random_batch(program, np.random.default_rng(0), BATCH)
            out[name] = {
                phase: explain(model_py, inputs, training=phase == "train")
                for phase in ("train", "eval")
            }
            print(f"{name}: {out[name]['train']['graph_breaks']} graph break(s)", flush=True)
    return out


def table(results: dict[str, dict[str, Any]], torch_version: str) -> str:
    """The markdown table of ``results``."""
    lines = [
        f"Graph breaks under `torch.compile` (torch {torch_version}, `torch._dynamo.explain`, "
        "training and validation modes)",
        "",
        "| example | graphs (train / eval) | graph breaks (train / eval) | reasons |",
        "|---|---|---|---|",
    ]
    for name, phases in results.items():
        train, evaluation = phases["train"], phases["eval"]
        reasons = sorted(set(train["reasons"]) | set(evaluation["reasons"]))
        lines.append(
            f"| {name} | {train['graphs']} / {evaluation['graphs']} "
            f"| {train['graph_breaks']} / {evaluation['graph_breaks']} "
            f"| {'; '.join(reasons) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument("examples", nargs="*", help="example names (default: all)")
    args = parser.parse_args(argv)
    import torch

    names = args.examples or sorted(p.parent.name for p in EXAMPLES.glob("*/spec.yaml"))
    results = measure(names)
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"torch": torch.__version__, "batch": BATCH, "examples": results}
    (args.out / "graph_breaks.json").write_text(json.dumps(document, indent=2) + "\n")
    (args.out / "graph_breaks.md").write_text(table(results, torch.__version__))
    print(f"wrote {args.out / 'graph_breaks.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
