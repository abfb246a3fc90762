"""The benchmark's Keras-engine rows (``keras-jax``, ``keras-torch``): chosen by default in a full
run, left out of ``--quick``, reported like the other backends, and started on their engine."""

from __future__ import annotations

from benchmarks import report, specs
from benchmarks.run import KERAS_ENGINES, parse_args


def test_engine_rows_run_in_a_full_run_not_in_quick() -> None:
    assert parse_args([]).backends == ["torch", "keras", "keras-jax", "keras-torch"]
    assert parse_args(["--quick"]).backends == ["torch", "keras"]
    assert parse_args(["--quick", "--backends", "keras-jax"]).backends == ["keras-jax"]
    assert KERAS_ENGINES == {"keras": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}


def test_engine_rows_are_reported() -> None:
    timing = {"median_s": 0.002, "q1_s": 0.001, "q3_s": 0.003, "samples_per_s": 4000.0}
    result = {
        "section": "examples",
        "name": "memn2n_lm",
        "batch": 8,
        "generated": {**timing, "params": 10, "opt_bytes": 80},
        "handwritten": {**timing, "median_s": 0.0025, "params": 10, "opt_bytes": 80},
        "ratio": 0.8,
    }
    results = {
        "machine": report.machine_info(1),
        "settings": {
            "quick": False,
            "device": "cpu",
            "steps": 50,
            "warmup": 5,
            "threads": 1,
            "backends": ["keras-jax", "keras-torch"],
            "sections": ["examples"],
            "examples": list(specs.EXAMPLES),
            "keras_step": "tf.function",
            "command": "python -m benchmarks --backends keras-jax,keras-torch",
        },
        "workers": [
            {"backend": "keras-jax", "device": "cpu", "results": [result]},
            {"backend": "keras-torch", "device": "cpu", "unavailable": "worker failed (1): x"},
        ],
    }
    table = report.markdown(results)
    row = "| memn2n_lm | keras-jax | 8 | 2.00 (1.00-3.00) | 2.50 (1.00-3.00) | 0.800 (ok) |"
    assert row in table
    assert f"| memn2n_lm | keras-torch | - | - | - | {report.NOT_AVAILABLE}: worker failed" in table
    assert "keras-jax: Keras on JAX, a jax.jit step" in table
