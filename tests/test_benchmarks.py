"""The benchmark harness (``python -m benchmarks``): a ``--quick`` smoke run in a subprocess, and
the report's handling of rows that cannot be measured."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu, report, specs
from benchmarks.run import parse_args
from tests.conftest import ROOT

BACKENDS = ("torch", "keras")
TIMEOUT = 300  # seconds; about 30 s on a quiet 2-core machine


def row(table: str, *cells: str) -> str | None:
    """The first markdown table row whose leading cells are ``cells``."""
    prefix = "| " + " | ".join(cells) + " |"
    return next((line for line in table.splitlines() if line.startswith(prefix)), None)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Stdout and output folder of one ``python -m benchmarks --quick`` run."""
    for framework in ("torch", "tensorflow", "matplotlib"):
        if importlib.util.find_spec(framework) is None:
            pytest.skip(f"{framework} is not installed")
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, out


@pytest.mark.slow
def test_quick_run_writes_every_row(quick_run: tuple[str, Path]) -> None:
    stdout, out = quick_run
    table = (out / "RESULTS.md").read_text()
    assert "## 1. Generated vs hand-written" in stdout  # the table is printed too
    assert (out / "chart.png").read_bytes().startswith(b"\x89PNG")
    results = json.loads((out / "results.json").read_text())
    assert results["machine"]["cpu"] and results["machine"]["torch"] != "not installed"
    number = re.compile(r"\| \d+\.\d{3} \((ok|OVER [\d.]+)\) \|")
    for name in specs.EXAMPLES:
        for backend in BACKENDS:
            line = row(table, name, backend)
            assert line is not None, f"no row for {name} / {backend}"
            # Examples that do not generate yet are reported, not crashed on.
            assert number.search(line) or report.NOT_AVAILABLE in line, line
    for name in ("newsgroups_flat", "glove_special_tokens"):
        for backend in BACKENDS:
            assert number.search(row(table, name, backend) or ""), (name, backend)
    for variant in specs.POLICIES:
        for backend in BACKENDS:
            line = row(table, specs.POLICY_LABELS[variant], backend)
            assert line is not None and report.NOT_AVAILABLE not in line, line
    assert row(table, "10") and row(table, "100")
    assert "imports a framework: no" in table
    assert "## 4. GPU" in table
    check_example_numbers(results, table)


def check_example_numbers(results: dict, table: str) -> None:
    """The numbers of section 1 follow from the raw measurements in the same results: the ratio
    is generated / hand-written median step time, samples/s is batch / median step time, the
    generated model's parameter count is the spec's (the quick spec, compiled here), and the
    table shows those ratios."""
    checked = 0
    for worker in results["workers"]:
        for r in worker.get("results", []):
            if r.get("section") != "examples" or "ratio" not in r:
                continue
            gen, hw = r["generated"], r["handwritten"]
            assert r["ratio"] == pytest.approx(gen["median_s"] / hw["median_s"], rel=1e-12)
            for timing in (gen, hw):
                assert timing["q1_s"] <= timing["median_s"] <= timing["q3_s"], r["name"]
                assert timing["samples_per_s"] == pytest.approx(r["batch"] / timing["median_s"])
            program = specs.compile_text(specs.example_spec(r["name"], quick=True))
            assert gen["params"] == program.trainable_count, r["name"]
            line = row(table, r["name"], worker["backend"]) or ""
            assert f"| {r['ratio']:.3f} " in line, (r, line)
            assert f"{gen['params']:,} / {hw['params']:,}" in line, (r, line)
            checked += 1
    assert checked >= 2 * len(BACKENDS), "too few example rows were measured"


def test_rows_that_cannot_run_are_reported_not_available() -> None:
    args = parse_args(["--quick", "--sections", "examples,policy,gpu"])
    results = {
        "machine": report.machine_info(1),
        "settings": {
            "quick": True,
            "device": "cpu",
            "steps": 2,
            "warmup": 0,
            "threads": 1,
            "backends": list(BACKENDS),
            "sections": args.sections,
            "examples": list(specs.EXAMPLES),
            "keras_step": "eager",
            "command": "python -m benchmarks --quick",
        },
        "workers": [
            {"backend": "torch", "device": "cpu", "unavailable": "worker failed (1): boom"},
            {
                "backend": "keras",
                "device": "cpu",
                "results": [
                    {
                        "section": "examples",
                        "name": "glove_lstm",
                        "batch": 8,
                        "reasons": {"generated": "UnsupportedOpError: no lstm"},
                    }
                ],
            },
        ],
        "gpu": report.gpu_summary(args, []),
    }
    table = report.markdown(results)
    assert "boom" in (row(table, "newsgroups_flat", "torch") or "")
    assert "no lstm" in (row(table, "glove_lstm", "keras") or "")
    assert report.NOT_AVAILABLE in (row(table, "memn2n_lm", "keras") or "")
    assert "Skipped: no CUDA device" in table


def test_generation_failure_is_a_reason_not_an_exception(tmp_path: Path) -> None:
    path, reason = specs.generate("nnspec: 1\nname: broken\n", "torch", tmp_path)
    assert path is None and reason


def test_quick_specs_are_small_and_compile() -> None:
    for name in specs.EXAMPLES:
        program = specs.compile_text(specs.example_spec(name, quick=True))
        assert program.trainable_count < 20_000, name
    for variant in specs.POLICIES:
        assert specs.compile_text(specs.policy_spec(variant, quick=True))


def test_gpu_section_reports_samples_per_second_and_bandwidth_share() -> None:
    args = parse_args(["--quick"])
    timing = {"median_s": 0.01, "q1_s": 0.01, "q3_s": 0.01, "samples_per_s": 800.0}
    result = {
        "section": "gpu",
        "name": "newsgroups_flat",
        "batch": 8,
        "generated": {**timing, "params": 8160},
        "handwritten": {**timing, "params": 8160},
        "ratio": 1.0,
    }
    worker = {
        "backend": "torch",
        "device": "cuda",
        "versions": {"GPU": "NVIDIA H100 80GB HBM3", "peak_bandwidth_GBps": "3350.0"},
        "results": [result],
    }
    summary = report.gpu_summary(args, [worker])
    (row_,) = summary["rows"]
    assert row_["gen_sps"] == "800" and row_["bandwidth"].endswith("%")
    assert any("3350.0 GB/s" in note for note in summary["notes"])
    assert gpu.peak_bandwidth("NVIDIA GH200 480GB")[0] == 4000.0
    assert gpu.peak_bandwidth("NVIDIA H100 PCIe")[0] == 2000.0
    assert gpu.peak_bandwidth("Mystery GPU")[0] is None
