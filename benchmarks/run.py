"""The benchmark entry point: ``python -m benchmarks [--quick] [--device cuda] ...``.

This process imports no deep-learning framework. It compiles and generates the specs, starts one
worker subprocess per backend and device (:mod:`benchmarks.worker`), times the compiler itself,
and writes ``RESULTS.md``, ``results.json`` and ``chart.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import chart, compiler, gpu, report, specs
from benchmarks.specs import EXAMPLES, POLICIES, ROOT

SECTIONS = ("examples", "policy", "compiler", "gpu")
BACKENDS = ("torch", "keras", "keras-jax", "keras-torch")
# Keras on its JAX and PyTorch engines: the examples section only, on the CPU, not in --quick by
# default (each engine starts and compiles every model again: tens of seconds).
ENGINE_BACKENDS = ("keras-jax", "keras-torch")
# What KERAS_BACKEND each worker's Keras starts on (whatever the caller's environment says).
KERAS_ENGINES = {"keras": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}
LAYER_SIZES = (10, 100, 1_000, 10_000)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line flags."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Generated vs hand-written step time, policy overhead, compiler scaling, GPU.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and few steps (smoke test; timings mean nothing)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="device of the examples and policy sections (default cpu)",
    )
    parser.add_argument("--steps", type=int, help="timed steps per model (default 50; quick 2)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 5; quick 0)")
    parser.add_argument(
        "--backends",
        help=f"comma-separated, of {','.join(BACKENDS)} (keras-jax and keras-torch: Keras on "
        "those engines, examples section only; default: all, with --quick torch,keras)",
    )
    parser.add_argument("--sections", default=",".join(SECTIONS), help="of %(default)s")
    parser.add_argument("--examples", default=",".join(EXAMPLES), help="of %(default)s")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="intra-op threads of both frameworks, the same for both sides (default: all cores)",
    )
    parser.add_argument(
        "--max-layers", type=int, help="largest compiler spec (default 10000; quick 100)"
    )
    parser.add_argument(
        "--keras-eager",
        action="store_true",
        help="run Keras steps eagerly, not in tf.function (implied by --quick)",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds per worker (default 3600)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results",
        help="results folder (default benchmarks/results)",
    )
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.quick else 50)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 5)
    args.max_layers = args.max_layers or (100 if args.quick else LAYER_SIZES[-1])
    args.keras_eager = args.keras_eager or args.quick
    if args.backends is None:
        quick = [b for b in BACKENDS if b not in ENGINE_BACKENDS]
        args.backends = ",".join(quick if args.quick else BACKENDS)
    for name, allowed in (("backends", BACKENDS), ("sections", SECTIONS), ("examples", EXAMPLES)):
        chosen = [item.strip() for item in getattr(args, name).split(",") if item.strip()]
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            choices = ", ".join(allowed)
            parser.error(f"--{name}: unknown {', '.join(unknown)} (choose from {choices})")
        setattr(args, name, [item for item in allowed if item in chosen])
    return args


def example_jobs(args: argparse.Namespace, backend: str, work: Path) -> list[dict[str, Any]]:
    """One job per example: its spec and generated ``model.py`` (or why there is none)."""
    jobs = []
    for name in args.examples:
        text = specs.example_spec(name, args.quick)
        batch = specs.compile_text(text).training.batch_size
        generator = "keras" if backend in KERAS_ENGINES else backend
        path, reason = specs.generate(text, generator, work / "examples" / name)
        job = {"section": "examples", "name": name, "spec": text, "batch": batch}
        jobs.append({**job, "model_py": path, "reason": reason})
    return jobs


def policy_job(args: argparse.Namespace, backend: str, work: Path) -> dict[str, Any]:
    """One job with every policy variant of the table."""
    variants = []
    for variant in POLICIES:
        text = specs.policy_spec(variant, args.quick)
        path, reason = specs.generate(text, backend, work / "policy" / variant)
        variants.append({"name": variant, "spec": text, "model_py": path, "reason": reason})
    batch = specs.policy_sizes(args.quick)["batch_size"]
    return {"section": "policy", "variants": variants, "batch": batch}


def run_worker(
    args: argparse.Namespace, backend: str, device: str, jobs: list[dict[str, Any]], work: Path
) -> dict[str, Any]:
    """Run ``jobs`` in a worker subprocess for ``backend`` on ``device``; its JSON output."""
    config = {
        "backend": backend,
        "device": device,
        "threads": args.threads,
        "steps": args.steps,
        "warmup": args.warmup,
        "seed": 0,
        "n_batches": 2 if args.quick else 8,
        "keras_eager": args.keras_eager,
        "jobs": jobs,
    }
    job_file = work / f"job-{backend}-{device}.json"
    out_file = work / f"out-{backend}-{device}.json"
    job_file.write_text(json.dumps(config))
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if backend in KERAS_ENGINES:
        env["KERAS_BACKEND"] = KERAS_ENGINES[backend]
    if backend == "keras-jax" and args.threads == 1:  # XLA's CPU thread pool, as --threads says
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "benchmarks.worker", str(job_file), str(out_file)]
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return {"backend": backend, "device": device, "unavailable": "worker timed out"}
    if done.returncode != 0 or not out_file.exists():
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        return {
            "backend": backend,
            "device": device,
            "unavailable": f"worker failed ({done.returncode}): {tail[0][:200]}",
        }
    return json.loads(out_file.read_text())


def run_workers(
    args: argparse.Namespace, plans: list[tuple[str, str, list[dict[str, Any]]]], work: Path
) -> list[dict[str, Any]]:
    """Run each ``(backend, device, jobs)`` plan: one after the other, so that timings do not
    share the CPU, except with ``--quick`` (timings mean nothing there), where they overlap."""
    if not args.quick:
        return [run_worker(args, b, d, jobs, work) for b, d, jobs in plans]
    with ThreadPoolExecutor(max_workers=len(plans) or 1) as pool:
        futures = [pool.submit(run_worker, args, b, d, jobs, work) for b, d, jobs in plans]
        return [future.result() for future in futures]


def compiler_section(args: argparse.Namespace) -> dict[str, Any]:
    """Validate / compile / generate times by layer count, and the CLI's wall time."""
    sizes = tuple(n for n in LAYER_SIZES if n <= args.max_layers)
    return {
        "scaling": compiler.time_compiler(sizes),
        "cli": compiler.cli_wall_time(repeats=1 if args.quick else 5),
        "max_layers": args.max_layers,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections, write the results and print the table."""
    args = parse_args(argv)
    started = time.time()
    results: dict[str, Any] = {
        "machine": report.machine_info(args.threads),
        "settings": {
            "quick": args.quick,
            "device": args.device,
            "steps": args.steps,
            "warmup": args.warmup,
            "threads": args.threads,
            "backends": args.backends,
            "sections": args.sections,
            "examples": args.examples,
            "keras_step": "eager" if args.keras_eager else "tf.function",
            "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        },
        "workers": [],
    }
    with tempfile.TemporaryDirectory(prefix="nnspec-bench-") as tmp:
        work = Path(tmp)
        plans = []
        # Generation runs ruff in a subprocess per file: overlap it across backends.
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {
                backend: [
                    pool.submit(make, args, backend, work / backend)
                    for section, make in (("examples", example_jobs), ("policy", policy_job))
                    if section in args.sections
                ]
                for backend in args.backends
                if backend not in ENGINE_BACKENDS
            }
            if "examples" in args.sections and args.device == "cpu":
                for backend in ENGINE_BACKENDS:
                    if backend in args.backends:
                        futures[backend] = [
                            pool.submit(example_jobs, args, backend, work / backend)
                        ]
            for backend, todo in futures.items():
                jobs = []
                for future in todo:
                    value = future.result()
                    jobs += value if isinstance(value, list) else [value]
                if jobs:
                    plans.append((backend, args.device, jobs))
                gpu_backend = backend not in ENGINE_BACKENDS
                if (
                    gpu_backend
                    and "gpu" in args.sections
                    and args.device == "cpu"
                    and gpu.cuda_present()
                ):
                    gpu_jobs = [job for job in jobs if job["section"] == "examples"]
                    if not gpu_jobs:
                        gpu_jobs = example_jobs(args, backend, work / backend)
                    plans.append((backend, "cuda", [{**job, "section": "gpu"} for job in gpu_jobs]))
        # The compiler is timed alone, after the workers, except with --quick (overlapped).
        with ThreadPoolExecutor(max_workers=1) as pool:
            timing = None
            if "compiler" in args.sections and args.quick:
                timing = pool.submit(compiler_section, args)
            results["workers"] = run_workers(args, plans, work)
            if "compiler" in args.sections:
                results["compiler"] = timing.result() if timing else compiler_section(args)
    if "gpu" in args.sections:
        results["gpu"] = report.gpu_summary(args, results["workers"])
    results["elapsed_s"] = time.time() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    table = report.markdown(results)
    (args.out / "RESULTS.md").write_text(table)
    picture = chart.chart(results, args.out / "chart.png")
    print(table)
    written = ["RESULTS.md", "results.json", *([picture.name] if picture else [])]
    print(f"Wrote {', '.join(written)} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
