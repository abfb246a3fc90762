"""Parity runs on another engine: a backend's generated code run in a subprocess.

A framework that fronts several engines picks one per process (Keras 3 reads ``KERAS_BACKEND``
when it is first imported), so :mod:`nnspec.parity` runs each engine other than its own here:
:func:`run` writes the weights, batches and jobs to a folder, starts ``python -m
nnspec.engine_worker FOLDER`` with the engine's environment, and reads back what
:func:`nnspec.parity.run_backend` computed there. Arrays travel as ``.npz`` files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nnspec import backends

TIMEOUT_S = 1800
"""How long one engine may take for all of its jobs."""


def run(
    backend: str,
    engine: str,
    model_py: Path,
    jobs: list[tuple[str, bool]],
    state: dict[str, np.ndarray],
    inputs: dict[str, np.ndarray],
    cotangent: np.ndarray,
    batches: list[tuple[dict[str, np.ndarray], np.ndarray]],
) -> list[dict[str, Any]]:
    """What :func:`nnspec.parity.run_backend` returns, computed on ``engine`` in a subprocess;
    ``RuntimeError`` with the end of its error output if it fails."""
    env = os.environ | backends.get(backend).engine_env(engine)
    with tempfile.TemporaryDirectory(prefix=f"nnspec-{backend}-{engine}-") as tmp:
        folder = Path(tmp)
        arrays = {"cotangent": cotangent, **_flat("state", state), **_flat("inputs", inputs)}
        for i, (x, y) in enumerate(batches):
            arrays |= _flat(f"batch{i}", x) | {f"labels{i}": y}
        np.savez(folder / "arrays.npz", **arrays)  # type: ignore[arg-type]  # numpy stubs: allow_pickle
        job = {"backend": backend, "model_py": str(model_py), "jobs": jobs, "batches": len(batches)}
        (folder / "job.json").write_text(json.dumps(job))
        done = subprocess.run(
            [sys.executable, "-m", __name__, str(folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            raise RuntimeError(f"{backend} on the {engine} engine failed: {lines[-1]}")
        return [_read_result(folder / f"result{i}.npz") for i in range(len(jobs))]


def main(folder: Path) -> None:
    """The subprocess: run the jobs in ``folder/job.json`` on this process's engine and write
    ``result<i>.npz`` for each."""
    from nnspec.parity import run_backend

    job = json.loads((folder / "job.json").read_text())
    with np.load(folder / "arrays.npz") as saved:
        arrays = dict(saved)
    batches = [(_unflat(f"batch{i}", arrays), arrays[f"labels{i}"]) for i in range(job["batches"])]
    jobs = [(dtype, train_only) for dtype, train_only in job["jobs"]]
    results = run_backend(
        job["backend"],
        Path(job["model_py"]),
        jobs,
        _unflat("state", arrays),
        _unflat("inputs", arrays),
        arrays["cotangent"],
        batches,
    )
    for i, result in enumerate(results):
        flat = {"losses": result["losses"], **_flat("state", result["state"])}
        if "outputs" in result:
            flat |= {"outputs": result["outputs"], **_flat("gradients", result["gradients"])}
        np.savez(folder / f"result{i}.npz", **flat)


def _read_result(path: Path) -> dict[str, Any]:
    with np.load(path) as saved:
        arrays = dict(saved)
    result: dict[str, Any] = {"losses": arrays["losses"], "state": _unflat("state", arrays)}
    if "outputs" in arrays:
        result["outputs"] = arrays["outputs"]
        result["gradients"] = _unflat("gradients", arrays)
    return result


def _flat(prefix: str, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}/{key}": np.asarray(value) for key, value in values.items()}


def _unflat(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    start = f"{prefix}/"
    return {key[len(start) :]: value for key, value in arrays.items() if key.startswith(start)}


if __name__ == "__main__":
    main(Path(sys.argv[1]))
