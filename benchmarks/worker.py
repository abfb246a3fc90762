"""One backend's measurements, run in a subprocess of its own (``python -m benchmarks.worker JOB
OUT``) so that each framework sets its thread pools before starting and the two frameworks never
share a process.

``JOB`` is a JSON file written by :mod:`benchmarks.run`; ``OUT`` receives a JSON object with the
framework versions and one result per job. A job that fails is reported with its reason, never
raised: the report shows the row as not available.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.frameworks import Batch, Side, Step, make_side
from benchmarks.specs import compile_text
from nnspec.parity import random_batch
from nnspec.spec import load_string


def interleaved(side: Side, steps: dict[str, Step], n: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per training step of each of ``steps``, measured in turn (A B, B A, A B, ...).

    Each runs ``warmup`` untimed steps first. Step ``i`` of every model trains on the same batch;
    the order flips each round so that neither side always runs right after the other.
    """
    names = list(steps)
    for i in range(warmup):
        for name in names:
            steps[name](i)
    side.synchronize()
    times: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    gc.disable()
    try:
        for i in range(n):
            for name in names if i % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                steps[name](warmup + i)  # returns the loss as a Python float: the step is done
                times[name].append(time.perf_counter() - start)
    finally:
        gc.enable()
    return times


def summary(side: Side, bundle: Any, times: list[float], batch: int) -> dict[str, Any]:
    """Median and quartiles of ``times``, throughput, trainable size and optimizer state."""
    q1, _, q3 = (
        statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else times * 3
    )
    return {
        "median_s": statistics.median(times),
        "q1_s": q1,
        "q3_s": q3,
        "steps": len(times),
        "samples_per_s": batch / statistics.median(times),
        "params": side.trainable_count(bundle),
        "opt_bytes": side.optimizer_bytes(bundle),
    }


def reason_of(error: BaseException) -> str:
    """A one-line reason, with the innermost frame, for the report."""
    frame = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" ({Path(frame[0].filename).name}:{frame[0].lineno})" if frame else ""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:200] + where


def batches_for(spec_text: str, batch: int, count: int, seed: int) -> list[Batch]:
    """``count`` random batches of ``batch`` examples (ids with padded tails, labels)."""
    program = compile_text(spec_text)
    rng = np.random.default_rng(seed)
    return [random_batch(program, rng, batch) for _ in range(count)]


def run_example(side: Side, job: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Generated against hand-written on one example, interleaved."""
    result: dict[str, Any] = {"section": job["section"], "name": job["name"], "batch": job["batch"]}
    batches = batches_for(job["spec"], job["batch"], config["n_batches"], config["seed"])
    spec, _ = load_string(job["spec"])
    bundles, steps, reasons = {}, {}, {}
    for which in ("generated", "handwritten"):
        try:
            if which == "generated":
                if job["model_py"] is None:
                    raise RuntimeError(job["reason"])
                bundles[which] = side.generated(Path(job["model_py"]))
            else:
                bundles[which] = side.handwritten(job["name"], spec, batches[0])
            steps[which] = side.step(bundles[which], batches)
            steps[which](0)  # fail here, not in the timing loop
        except Exception as error:
            unavailable = which == "generated" and job["model_py"] is None
            reasons[which] = job["reason"] if unavailable else reason_of(error)
            bundles.pop(which, None)
            steps.pop(which, None)
    if steps:
        times = interleaved(side, steps, config["steps"], config["warmup"])
        for which, bundle in bundles.items():
            result[which] = summary(side, bundle, times[which], job["batch"])
    if not reasons:
        result["ratio"] = result["generated"]["median_s"] / result["handwritten"]["median_s"]
    result["reasons"] = reasons
    return result


def run_policy(side: Side, job: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """All policy variants of one table, round-robin; ratios to the plain table."""
    result: dict[str, Any] = {"section": "policy", "batch": job["batch"], "variants": {}}
    variants = result["variants"]
    bundles, steps = {}, {}
    for variant in job["variants"]:
        name = variant["name"]
        try:
            if variant["model_py"] is None:
                raise RuntimeError(variant["reason"])
            batches = batches_for(variant["spec"], job["batch"], config["n_batches"], 0)
            bundles[name] = side.generated(Path(variant["model_py"]))
            steps[name] = side.step(bundles[name], batches)
            steps[name](0)
        except Exception as error:
            variants[name] = {"reason": variant["reason"] or reason_of(error)}
            bundles.pop(name, None)
            steps.pop(name, None)
    if steps:
        times = interleaved(side, steps, config["steps"], config["warmup"])
        for name, bundle in bundles.items():
            variants[name] = summary(side, bundle, times[name], job["batch"])
    base = variants.get("plain", {}).get("median_s")
    for entry in variants.values():
        if base and "median_s" in entry:
            entry["ratio"] = entry["median_s"] / base
    return result


def main(argv: list[str]) -> int:
    """Run the jobs of ``argv[0]`` and write the results to ``argv[1]``."""
    started = time.perf_counter()
    config = json.loads(Path(argv[0]).read_text())
    out: dict[str, Any] = {"backend": config["backend"], "device": config["device"]}
    try:
        side = make_side(
            config["backend"], config["device"], config["threads"], config.get("keras_eager", False)
        )
    except Exception as error:
        out["unavailable"] = reason_of(error)
        Path(argv[1]).write_text(json.dumps(out))
        return 0
    out["versions"] = side.versions()
    out["startup_s"] = time.perf_counter() - started
    out["results"] = []
    for job in config["jobs"]:
        runner = run_policy if job["section"] == "policy" else run_example
        job_started = time.perf_counter()
        try:
            result = runner(side, job, config)
        except Exception as error:
            result = {"section": job["section"], "name": job.get("name"), "error": reason_of(error)}
        result.update(backend=config["backend"], device=config["device"])
        result["job_s"] = time.perf_counter() - job_started
        out["results"].append(result)
    peak = side.peak_memory()
    if peak is not None:
        out["peak_memory_bytes"] = peak
    out["elapsed_s"] = time.perf_counter() - started
    Path(argv[1]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
