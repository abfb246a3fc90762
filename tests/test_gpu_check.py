"""``benchmarks/gpu_check.py`` (``make gpu-check``), run here on the CPU.

Without a GPU it says so in one line and exits 0; with ``--allow-cpu`` it runs its checks on the
CPU. Kept cheap: one example, eager, float32 and float16, both frameworks (4 runs); the compiled
mode's own test is ``tests/test_torch_compile.py``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

for framework in ("torch", "tensorflow"):
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed", allow_module_level=True)

ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def gpu_check(*args: str | Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "benchmarks.gpu_check", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path: Path) -> None:
    done = gpu_check("--out", tmp_path / "gpu_check.md")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "gpu_check: no CUDA GPU here, nothing checked (--allow-cpu runs it on the CPU)"
    ]
    assert not (tmp_path / "gpu_check.md").exists()


def test_allow_cpu_runs_the_checks(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.md"
    done = gpu_check(
        "--allow-cpu",
        *("--examples", "glove_special_tokens"),
        *("--precisions", "float32", "float16"),
        *("--modes", "eager"),
        *("--steps", "2"),
        *("--out", out),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    lines = out.read_text().splitlines()
    assert lines[0].startswith("GPU check on the CPU") and "4 of 4 runs passed" in lines[0]
    rows = [line.split(" | ") for line in lines if line.startswith("| glove_special_tokens")]
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (framework, precision, "eager")
        for framework in ("torch", "keras")
        for precision in ("float32", "float16")
    ]
    for row in rows:
        parity, tolerance = row[4].split()
        assert float(parity) <= float(tolerance.strip("()")), row
        if row[2] == "float32":  # float32 agrees with the numpy reference to round-off
            assert float(parity) < 1e-5, row
        losses = [float(x) for x in row[5].split()]
        assert len(losses) == 2 and all(0.0 < loss < 100.0 for loss in losses), row
        assert row[-1].rstrip(" |") == "ok", row
