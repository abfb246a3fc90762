"""One command for the first GPU that comes along: every example's training step, in every
precision, eager and compiled, PyTorch and Keras, checked for finiteness and parity.

    python -m benchmarks.gpu_check            # or: make gpu-check
    python -m benchmarks.gpu_check --allow-cpu --examples newsgroups_flat --precisions float32

Per example, framework, precision (float32, bfloat16, float16) and mode (eager; compiled:
``torch.compile`` / Keras ``jit_compile``), from the same random canonical weights:

* the first step's forward output (on a batch with padded tails and an all-padding row) is
  finite and matches :func:`nnspec.reference.forward` (float32 numpy): float32 within
  :data:`FLOAT32_TOLERANCE`, mixed precision within :data:`LOW_ULPS` units of round-off
  (the bound ``tests/test_precisions.py`` derives), both as :func:`nnspec.parity.scaled_diff`;
* ``--steps`` optimizer steps (the generated ``make_optimizer`` and ``loss_fn``; PyTorch
  autocast with ``GradScaler`` in float16, Keras ``mixed_*`` policies with a
  ``LossScaleOptimizer`` in float16) give finite losses and finite weights that moved.

Dropout is off (eval mode), as in ``nnspec parity``: the runs are deterministic and the first
output is comparable with the reference. TF32 is off in both frameworks for the float32 runs.
Writes a markdown table (``benchmarks/results/gpu_check.md``) and exits 1 if any check failed.
Without a CUDA GPU it says so in one line and exits 0, unless ``--allow-cpu`` runs the same
checks on the CPU (small batch, quick; what ``tests/test_gpu_check.py`` does).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnspec import reference
from nnspec.compiler import compile_file, ir
from nnspec.parity import generate_all, random_batch, random_state, scaled_diff

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
RESULTS = Path(__file__).resolve().parent / "results"
PRECISIONS = ("float32", "bfloat16", "float16")
MODES = ("eager", "compiled")
FRAMEWORKS = ("torch", "keras")
UNIT_ROUNDOFF = {"float16": 2.0**-11, "bfloat16": 2.0**-8}
# Float32 outputs against the float32 reference: 10x the CPU parity tolerance
# (nnspec.parity.TOLERANCES), for GPU kernels that sum in other orders.
FLOAT32_TOLERANCE = 1e-5
LOW_ULPS = 16  # mixed-precision outputs: 16 units of round-off (see tests/test_precisions.py)


@dataclass
class Result:
    """One run: an example's training step in one framework, precision and mode."""

    example: str
    framework: str
    precision: str
    mode: str
    parity: float = float("nan")  # scaled max difference of the first output from the reference
    tolerance: float = float("nan")
    losses: tuple[float, ...] = ()
    ms_per_step: float = float("nan")  # after the first step (which compiles)
    error: str = ""  # why the run failed, "" when it passed

    @property
    def ok(self) -> bool:
        return not self.error


def tolerance(precision: str) -> float:
    return FLOAT32_TOLERANCE if precision == "float32" else LOW_ULPS * UNIT_ROUNDOFF[precision]


def problems(
    output: np.ndarray, expected: np.ndarray, losses: list[float], before: dict, after: dict
) -> list[str]:
    """What is wrong with a run's first output, losses and weights before and after."""
    found = []
    if not np.isfinite(output).all():
        found.append(f"{int(np.sum(~np.isfinite(output).all(axis=-1)))} non-finite output rows")
    if not np.isfinite(losses).all():
        found.append(f"non-finite losses {losses}")
    bad = sorted(k for k, v in after.items() if not np.isfinite(v).all())
    if bad:
        found.append(f"non-finite weights {bad[:3]}")
    if not any(np.any(after[k] != before[k]) for k in before):
        found.append("no weight moved")
    return found


# ----------------------------------------------------------------------------- PyTorch


def torch_run(
    model_py: Path, program: ir.Program, case: dict[str, Any], result: Result, device: str
) -> None:
    """``result``'s PyTorch run: autocast (GradScaler in float16), compiled or eager."""
    import torch

    from nnspec.backends.torch import runtime

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    module = runtime.load_module(model_py)
    model = module.build_model("float32").to(device)
    model.load_canonical_state(case["state"])
    model.eval()  # dropout off
    optimizer = module.make_optimizer(model)
    scaler = torch.amp.GradScaler(device, enabled=result.precision == "float16")
    run = torch.compile(model) if result.mode == "compiled" else model
    logits = runtime.logits_flag(model)
    inputs = {k: torch.from_numpy(v.astype(np.int64)).to(device) for k, v in case["x"].items()}
    labels = torch.from_numpy(case["y"]).to(device)
    dtype = getattr(torch, result.precision)
    before = model.canonical_state()
    losses, times, first = [], [], None
    for _ in range(case["steps"]):
        started = time.perf_counter()
        with torch.autocast(device, dtype=dtype, enabled=result.precision != "float32"):
            y_pred = run(**inputs, **logits).float()
        loss = module.loss_fn(labels, y_pred)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())  # waits for the device
        times.append(time.perf_counter() - started)
        if first is None:
            first = y_pred.detach().cpu().double().numpy()
    expected = case["expected_logits"] if logits else case["expected"]
    finish(result, first, expected, losses, times, before, model.canonical_state())


# ----------------------------------------------------------------------------- Keras


def keras_run(
    model_py: Path, program: ir.Program, case: dict[str, Any], result: Result, device: str
) -> None:
    """``result``'s Keras run: a ``mixed_*`` policy (LossScaleOptimizer in float16), the step
    under ``tf.function(jit_compile=True)`` (compiled) or plain eager."""
    import keras
    import tensorflow as tf

    from nnspec.backends.keras import runtime

    tf.config.experimental.enable_tensor_float_32_execution(False)
    module = runtime.load_module(model_py)
    policy = "float32" if result.precision == "float32" else f"mixed_{result.precision}"
    model = module.build_model(policy)
    model.load_canonical_state(case["state"])
    optimizer = module.make_optimizer(model)
    if result.precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    logits = runtime.logits_flag(model)
    inputs = {k: tf.convert_to_tensor(v) for k, v in case["x"].items()}
    labels = tf.convert_to_tensor(case["y"])

    def step() -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            y_pred = tf.cast(model(inputs, training=False, **logits), tf.float32)
            loss = module.loss_fn(labels, y_pred)
            scaled = optimizer.scale_loss(loss) if result.precision == "float16" else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return y_pred, loss

    if result.mode == "compiled":
        model.jit_compile = True  # False, with Keras' warning, for cuDNN RNNs on a GPU
        run = tf.function(step, jit_compile=model.jit_compile)
    else:
        run = step
    before = model.canonical_state()
    losses, times, first = [], [], None
    with tf.device("/GPU:0" if device == "cuda" else "/CPU:0"):
        for _ in range(case["steps"]):
            started = time.perf_counter()
            y_pred, loss = run()
            losses.append(float(loss))
            times.append(time.perf_counter() - started)
            if first is None:
                first = np.asarray(y_pred, np.float64)
    expected = case["expected_logits"] if logits else case["expected"]
    finish(result, first, expected, losses, times, before, model.canonical_state())


def finish(
    result: Result,
    first: Any,
    expected: np.ndarray,
    losses: list[float],
    times: list[float],
    before: dict,
    after: dict,
) -> None:
    """Fill in ``result`` from a finished run."""
    result.losses = tuple(losses)
    result.ms_per_step = 1000 * float(np.median(times[1:] if len(times) > 1 else times))
    result.tolerance = tolerance(result.precision)
    found = problems(first, expected, losses, before, after)
    if np.isfinite(first).all():
        result.parity = scaled_diff(first, expected)
        if not result.parity <= result.tolerance:
            found.append(f"output off the reference: {result.parity:.2e}")
    result.error = "; ".join(found)


RUNS = {"torch": torch_run, "keras": keras_run}


# ----------------------------------------------------------------------------- driver


def case_of(program: ir.Program, batch: int, steps: int) -> dict[str, Any]:
    """Random float32 canonical weights, a batch and the reference's outputs for it."""
    rng = np.random.default_rng(0)
    state = {k: v.astype(np.float32) for k, v in random_state(program, rng).items()}
    x, y = random_batch(program, rng, batch)
    y = y.astype(np.float32) if y.dtype.kind == "f" else y.astype(np.int64)
    expected = np.asarray(reference.forward(program, state, x), np.float64)
    expected_logits = expected
    if program.output_activation is not None:  # the runs return logits: compare those
        without = dataclasses.replace(program, output_activation=None)
        expected_logits = np.asarray(reference.forward(without, state, x), np.float64)
    return {
        "state": state,
        "x": x,
        "y": y,
        "steps": steps,
        "expected": expected,
        "expected_logits": expected_logits,
    }


def check(
    names: list[str],
    frameworks: list[str],
    precisions: list[str],
    modes: list[str],
    device: str,
    batch: int,
    steps: int,
) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory(prefix="nnspec-gpu-check-") as tmp:
        for name in names:
            program, _ = compile_file(EXAMPLES / name / "spec.yaml")
            paths = generate_all(program, Path(tmp) / name, frameworks)
            case = case_of(program, batch, steps)
            for framework in frameworks:
                for precision in precisions:
                    for mode in modes:
                        result = Result(name, framework, precision, mode)
                        started = time.perf_counter()
                        try:
                            RUNS[framework](paths[framework], program, case, result, device)
                        except Exception as error:  # a crash is a failed check, not the end
                            result.error = f"{type(error).__name__}: {error}".splitlines()[0]
                            traceback.print_exc()
                        print(
                            f"{name} {framework} {precision} {mode}: "
                            f"{'ok' if result.ok else 'FAIL ' + result.error} "
                            f"({time.perf_counter() - started:.1f} s)",
                            flush=True,
                        )
                        results.append(result)
    return results


def table(results: list[Result], device: str, seconds: float) -> str:
    lines = [
        f"GPU check on {device} ({seconds:.0f} s): "
        f"{sum(r.ok for r in results)} of {len(results)} runs passed",
        "",
        "| example | framework | precision | mode | output vs reference (tolerance) "
        "| losses | ms/step | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        losses = " ".join(f"{loss:.4g}" for loss in r.losses) or "-"
        lines.append(
            f"| {r.example} | {r.framework} | {r.precision} | {r.mode} "
            f"| {r.parity:.2e} ({r.tolerance:.0e}) | {losses} | {r.ms_per_step:.1f} "
            f"| {'ok' if r.ok else 'FAIL: ' + r.error} |"
        )
    return "\n".join(lines) + "\n"


def device_name() -> str | None:
    """The CUDA GPU's name, or None without one."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--allow-cpu", action="store_true", help="without a GPU, run on the CPU")
    parser.add_argument("--examples", nargs="+", help="example names (default: all)")
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--batch", type=int, help="batch size (default: 32 on a GPU, 4 on a CPU)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.md")
    args = parser.parse_args(argv)
    gpu = device_name()
    if gpu is None and not args.allow_cpu:
        print("gpu_check: no CUDA GPU here, nothing checked (--allow-cpu runs it on the CPU)")
        return 0
    device = "cuda" if gpu else "cpu"
    names = args.examples or sorted(p.parent.name for p in EXAMPLES.glob("*/spec.yaml"))
    batch = args.batch or (32 if gpu else 4)
    started = time.perf_counter()
    results = check(names, args.frameworks, args.precisions, args.modes, device, batch, args.steps)
    seconds = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table(results, gpu or "the CPU", seconds))
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} of {len(results)} runs passed in {seconds:.0f} s")
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
