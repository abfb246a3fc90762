"""Machine information and the markdown report (framework-free)."""

from __future__ import annotations

import argparse
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import gpu, specs
from benchmarks.specs import EXAMPLES, POLICIES, POLICY_GOALS, POLICY_LABELS
from nnspec import __version__

EXAMPLE_GOAL = 1.05
CLI_GOAL_S = 0.3
NOT_AVAILABLE = "not available"


def cpu_model() -> str:
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(*packages: str) -> str:
    """The installed version of the first of ``packages`` found (without importing it)."""
    for package in packages:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "threads": threads,
        "load_average": [round(x, 2) for x in load],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "nnspec": __version__,
        "torch": version("torch"),
        "tensorflow": version("tensorflow", "tensorflow-cpu"),
        "keras": version("keras"),
        "jax": version("jax"),
        "numpy": version("numpy"),
    }


# ----------------------------------------------------------------------------- helpers


def ms(entry: dict[str, Any] | None) -> str:
    """Median step time and quartiles in milliseconds."""
    if not entry or "median_s" not in entry:
        return "-"
    return f"{entry['median_s'] * 1e3:.2f} ({entry['q1_s'] * 1e3:.2f}-{entry['q3_s'] * 1e3:.2f})"


def size(n: float | None) -> str:
    """Bytes, human-readable."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def verdict(ratio: float | None, goal: float) -> str:
    """``1.03 (ok)`` or ``1.27 (OVER 1.05)``."""
    if ratio is None:
        return "-"
    return f"{ratio:.3f} " + ("(ok)" if ratio <= goal else f"(OVER {goal:.2f})")


def results_of(results: dict[str, Any], section: str, device: str | None = None) -> list:
    """Every ``(worker, result)`` of ``section``; unavailable workers as ``(worker, None)``."""
    out = []
    for worker in results["workers"]:
        if device is not None and worker["device"] != device:
            continue
        if "unavailable" in worker:
            out.append((worker, None))
            continue
        out += [(worker, r) for r in worker.get("results", []) if r["section"] == section]
    return out


def reason_text(result: dict[str, Any] | None, worker: dict[str, Any]) -> str:
    """Why a row has no number."""
    if result is None:
        return worker.get("unavailable", "")
    if "error" in result:
        return result["error"]
    return "; ".join(f"{k}: {v}" for k, v in result.get("reasons", {}).items())


def example_rows(results: dict[str, Any], section: str, device: str) -> list[dict[str, Any]]:
    """One row per example and backend (in report order), found or not."""
    found = results_of(results, section, device)
    rows = []
    backends = results["settings"]["backends"]
    for name in results["settings"].get("examples", EXAMPLES):
        for backend in backends:
            match = [
                (w, r)
                for w, r in found
                if w["backend"] == backend and (r is None or r.get("name") == name)
            ]
            worker, result = match[0] if match else ({"unavailable": "not run"}, None)
            rows.append({"name": name, "backend": backend, "worker": worker, "result": result})
    return rows


# ----------------------------------------------------------------------------- markdown


def machine_md(results: dict[str, Any]) -> list[str]:
    m, s = results["machine"], results["settings"]
    mode = "QUICK: tiny sizes, timings are noise" if s["quick"] else "full sizes"
    return [
        "## Machine",
        "",
        "| CPU | cores (usable) | threads | load avg (1/5/15 min) | Python | torch | TensorFlow "
        "| Keras | JAX | platform |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {m['cpu']} | {m['cores']} ({m['usable_cores']}) | {m['threads']} "
        f"| {' / '.join(map(str, m['load_average']))} | {m['python']} | {m['torch']} "
        f"| {m['tensorflow']} | {m['keras']} | {m.get('jax', '-')} | {m['platform']} |",
        "",
        f"Run {m['date']}: `{s['command']}` ({mode}); "
        f"device {s['device']}; {s['steps']} timed steps per model after {s['warmup']} warm-up "
        f"steps; Keras steps run {s['keras_step']}"
        + (
            "; keras-jax: Keras on JAX, a jax.jit step; keras-torch: Keras on PyTorch, eager."
            if {"keras-jax", "keras-torch"} & set(s["backends"])
            else "."
        ),
        "",
    ]


def examples_md(results: dict[str, Any]) -> list[str]:
    s = results["settings"]
    lines = [
        "## 1. Generated vs hand-written (training step)",
        "",
        f"Median step time in ms (quartiles), the two models stepped in turn (A B B A ...) on the "
        f"same batches, same thread count; ratio = generated / hand-written, goal <= "
        f"{EXAMPLE_GOAL}.",
        "",
        "| example | backend | batch | generated ms | hand-written ms | ratio | samples/s gen / hw "
        "| trainable params gen / hw | optimizer state gen / hw |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in example_rows(results, "examples", s["device"]):
        r = row["result"]
        if r is None or "error" in r or "ratio" not in r:
            gen = ms(r.get("generated")) if r else "-"
            hw = ms(r.get("handwritten")) if r else "-"
            lines.append(
                f"| {row['name']} | {row['backend']} | {r.get('batch', '-') if r else '-'} "
                f"| {gen} | {hw} | {NOT_AVAILABLE}: {reason_text(r, row['worker'])} | | | |"
            )
            continue
        g, h = r["generated"], r["handwritten"]
        lines.append(
            f"| {row['name']} | {row['backend']} | {r['batch']} | {ms(g)} | {ms(h)} "
            f"| {verdict(r['ratio'], EXAMPLE_GOAL)} "
            f"| {g['samples_per_s']:.0f} / {h['samples_per_s']:.0f} "
            f"| {g['params']:,} / {h['params']:,} "
            f"| {size(g['opt_bytes'])} / {size(h['opt_bytes'])} |"
        )
    return [*lines, ""]


def policy_md(results: dict[str, Any]) -> list[str]:
    s = results["settings"]
    sizes = specs.policy_sizes(s["quick"])
    lines = [
        "## 2. Policy overhead (generated code)",
        "",
        f"One table of {sizes['vocab_size']:,} x {sizes['dim']} (ids of length "
        f"{sizes['length']}, batch {sizes['batch_size']}) -> flatten -> dense softmax, Adam; each "
        f"variant's step time divided by the plain table's, all variants stepped in turn. "
        f"Per-row trainability: {specs.TRAINABLE_ROWS} trainable rows, the rest frozen; it is "
        "also compared with a wholly frozen table, which needs no routing.",
        "",
        "| policy | backend | step ms | plain ms | ratio | optimizer state | trainable params |",
        "|---|---|---|---|---|---|---|",
    ]
    found = results_of(results, "policy", s["device"])
    for variant in POLICIES:
        for backend in s["backends"]:
            match = [(w, r) for w, r in found if w["backend"] == backend]
            if not match:
                continue
            worker, r = match[0]
            label = POLICY_LABELS[variant]
            entry = (r or {}).get("variants", {}).get(variant)
            if not entry or "median_s" not in entry:
                why = (entry or {}).get("reason") or reason_text(r, worker)
                lines.append(f"| {label} | {backend} | {NOT_AVAILABLE}: {why} | | | | |")
                continue
            plain = r["variants"].get("plain", {})
            goal = POLICY_GOALS.get(variant)
            if goal:
                ratio = verdict(entry.get("ratio"), goal)
            elif variant == "plain":
                ratio = "1 (baseline)"
            else:
                ratio = f"{entry.get('ratio', float('nan')):.3f} (no goal)"
            frozen = r["variants"].get("frozen", {}).get("median_s")
            if variant == "rows" and frozen:
                ratio += f"; {entry['median_s'] / frozen:.3f} x frozen table"
            lines.append(
                f"| {label} | {backend} | {ms(entry)} | {ms(plain)} | {ratio} "
                f"| {size(entry['opt_bytes'])} | {entry['params']:,} |"
            )
    goals = ", ".join(f"{POLICY_LABELS[k]} <= {v}" for k, v in POLICY_GOALS.items())
    lines += [
        "",
        f"Goals: {goals}. Per-row trainability must keep no optimizer state for frozen rows "
        f"(its state should be that of {specs.TRAINABLE_ROWS} rows plus the dense layer).",
        "",
    ]
    return lines


def compiler_md(results: dict[str, Any]) -> list[str]:
    c = results["compiler"]
    lines = [
        "## 3. Compiler",
        "",
        "Seconds for a chain of N layers: validate (load + check), compile to IR, generate both "
        f"backends' code (capped at --max-layers {c['max_layers']:,}).",
        "",
        "| layers | validate s | compile IR s | generate s (all backends) | total s |",
        "|---|---|---|---|---|",
    ]
    for row in c["scaling"]:
        total = row["validate_s"] + row["compile_ir_s"] + row["generate_s"]
        lines.append(
            f"| {row['layers']:,} | {row['validate_s']:.3f} | {row['compile_ir_s']:.3f} "
            f"| {row['generate_s']:.3f} | {total:.3f} |"
        )
    cli = c["cli"]
    imports = "yes (FAIL)" if cli["imports_framework"] else "no"
    lines += [
        "",
        f"CLI wall time (one call, median): `nnspec validate` {cli['validate']:.3f} s "
        f"({'ok' if cli['validate'] < CLI_GOAL_S else 'OVER'} vs goal < {CLI_GOAL_S} s), "
        f"`nnspec summary` {cli['summary']:.3f} s; imports a framework: {imports}.",
        "",
    ]
    return lines


def gpu_md(results: dict[str, Any]) -> list[str]:
    g = results.get("gpu", {})
    lines = ["## 4. GPU", ""]
    if g.get("skipped"):
        return [*lines, f"Skipped: {g['skipped']}.", ""]
    lines += [
        "| example | backend | generated samples/s | hand-written samples/s | ratio "
        "| bandwidth share gen / hw |",
        "|---|---|---|---|---|---|",
    ]
    for row in g.get("rows", []):
        lines.append(
            f"| {row['name']} | {row['backend']} | {row['gen_sps']} | {row['hw_sps']} "
            f"| {row['ratio']} | {row['bandwidth']} |"
        )
    lines += ["", *g.get("notes", []), ""]
    return lines


NOTES = [
    "## Method",
    "",
    "- Each framework runs in a subprocess of its own with its thread pools fixed (`--threads`); "
    "both models of a comparison run in that process, in training mode (dropout on), on the same "
    "batches, through the same step code (`benchmarks/frameworks.py`): torch `zero_grad`, "
    "forward, loss, `backward`, clipping, `step`, `loss.item()`; Keras one `tf.function` "
    "(no XLA) of a `GradientTape` step and `optimizer.apply`, as `model.fit` does (eager with "
    "`--quick` or `--keras-eager`). Keras on its other engines steps as the generated `train.py` "
    "does there: `keras-jax` one `jax.jit` of the stateless step (`stateless_call`, "
    "`jax.value_and_grad`, `stateless_apply`), the values written back to the variables; "
    "`keras-torch` eagerly, `torch.autograd.grad` and `optimizer.apply`. The hand-written side "
    "is the same stock Keras model and optimizer on that engine; TensorFlow is not imported there.",
    "- Hand-written models (`benchmarks/handwritten/`) use stock layers and optimizers (torch: "
    "`fused=True`, as the generated `make_optimizer` does; the default foreach Adam is about "
    "twice as slow on the 14M-parameter classifier). The torch ones output logits under "
    "`F.cross_entropy`; the generated ones are stepped as their `train.py` steps them: a model "
    "trained from its logits returns them (`logits=True`) to its `loss_fn`. "
    "Generated optimizers clip themselves (spec `clip_norm`); hand-written torch clips with "
    "`clip_grad_norm_`, Keras with `global_clipnorm`.",
    "- Trainable counts differ slightly by design: the two-table trick has one extra row (held "
    "at 0.0), and Keras' stock LSTM has one bias per gate where the generated, torch-compatible "
    "cell has two.",
    "- Timings are only meaningful on a quiet machine: with more threads than free cores, "
    "OpenMP threads spin and single steps stall (quartiles far from the median show it); "
    "use `--threads 1` on a shared machine.",
    "",
]


def markdown(results: dict[str, Any]) -> str:
    """The whole report."""
    lines = ["# nnspec benchmarks", "", *machine_md(results)]
    sections = results["settings"]["sections"]
    if "examples" in sections:
        lines += examples_md(results)
    if "policy" in sections:
        lines += policy_md(results)
    if "compiler" in sections:
        lines += compiler_md(results)
    if "gpu" in sections:
        lines += gpu_md(results)
    lines += NOTES
    lines.append(f"Total benchmark time {results.get('elapsed_s', 0):.0f} s.")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- GPU section


def embedding_elements(name: str, quick: bool, batch: int) -> int:
    """Elements of the looked-up embeddings per step (``B * L * dim`` summed over lookups)."""
    program = specs.compile_text(specs.example_spec(name, quick))
    total = 0
    for node in program.nodes:
        if type(node.op).__name__ == "EmbeddingLookup":
            per_example = 1
            for dim in node.shape[1:]:
                per_example *= dim or 1
            total += batch * per_example
    return total


def gpu_summary(args: argparse.Namespace, workers: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples/s on CUDA and, for the big classifier, the share of peak memory bandwidth."""
    cuda = [w for w in workers if w["device"] == "cuda"]
    if not cuda:
        return {"skipped": "no CUDA device (no NVIDIA driver found); run with a GPU for this"}
    if all("unavailable" in w for w in cuda):
        return {"skipped": "; ".join(f"{w['backend']}: {w['unavailable']}" for w in cuda)}
    rows, notes = [], []
    for worker in cuda:
        if "unavailable" in worker:
            rows.append(
                {
                    "name": "all",
                    "backend": worker["backend"],
                    "gen_sps": NOT_AVAILABLE,
                    "hw_sps": "",
                    "ratio": worker["unavailable"],
                    "bandwidth": "",
                }
            )
            continue
        versions = worker.get("versions", {})
        peak = versions.get("peak_bandwidth_GBps")
        peak = float(peak) if peak not in (None, "None") else None
        if "GPU" in versions:
            notes.append(
                f"{worker['backend']}: {versions['GPU']}, assumed peak bandwidth "
                f"{peak or 'unknown'} GB/s ({versions.get('peak_source')}); peak memory "
                f"allocated {size(worker.get('peak_memory_bytes'))}."
            )
        for r in worker.get("results", []):
            if r["section"] not in ("examples", "gpu"):
                continue
            g, h = r.get("generated", {}), r.get("handwritten", {})
            share = ""
            if r.get("name") == "newsgroups_flat" and peak and g and h:
                moved = gpu.step_bytes(
                    g["params"], embedding_elements(r["name"], args.quick, r["batch"])
                )
                share = " / ".join(f"{moved / e['median_s'] / (peak * 1e9):.1%}" for e in (g, h))
                notes.append(
                    f"Bandwidth share: an estimated {moved / 1e6:.0f} MB moved per step "
                    f"({gpu.BYTES_PER_TRAINABLE} B per trainable float32 scalar under Adam + "
                    f"{gpu.BYTES_PER_ACTIVATION} B per looked-up embedding element), divided by "
                    "the step time, over the peak bandwidth."
                )
            rows.append(
                {
                    "name": r.get("name"),
                    "backend": worker["backend"],
                    "gen_sps": f"{g['samples_per_s']:.0f}" if g else NOT_AVAILABLE,
                    "hw_sps": f"{h['samples_per_s']:.0f}" if h else NOT_AVAILABLE,
                    "ratio": f"{r['ratio']:.3f}" if "ratio" in r else reason_text(r, worker),
                    "bandwidth": share,
                }
            )
    return {"rows": rows, "notes": notes}
