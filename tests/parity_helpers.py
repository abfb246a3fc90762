"""Shared by the parity tests: the check of a report, and the examples at test size."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import pytest

from nnspec.compiler import compile_spec, ir
from nnspec.parity import REFERENCE, TOLERANCES, ParityReport
from nnspec.spec import load_string
from tests.conftest import EXAMPLE_NAMES, EXAMPLES


def check(report: ParityReport) -> None:
    """Within tolerance, and every backend the report ran (by default every installed one) had
    its outputs compared with the reference (in float64 at 1e-12 at most)."""
    assert not report.failures(), "; ".join(report.failures())
    outputs = {c.backend: c for c in report.comparisons if c.what == "outputs"}
    assert set(outputs) == set(report.backends), outputs
    assert all(c.against == REFERENCE for c in outputs.values())
    assert all(c.tolerance <= TOLERANCES[report.dtype]["outputs"] for c in outputs.values())
    assert TOLERANCES["float64"]["outputs"] <= 1e-12


# The examples at test size: the same layers, policies and training, smaller tables and inputs
# (so that a batch of 8 reaches every trainable row kind, special tokens included, in 6 steps).

SMALLER = {
    "newsgroups_flat": {"vocab_size: 19000": "vocab_size: 60", "dim: 300": "dim: 8"},
    "newsgroups_glove": {"vocab_size: 19000": "vocab_size: 60"},
    "glove_special_tokens": {"vocab_size: 10000": "vocab_size: 40", "length: 200": "length: 30"},
    "glove_lstm": {"vocab_size: 5000": "vocab_size: 40", "length: 60": "length: 16"},
    "transformer_classifier": {"vocab_size: 8000": "vocab_size: 60", "length: 64": "length: 16"},
}
SMALLER["newsgroups_flat"]["length: 1100"] = "length: 30"
SMALLER["newsgroups_glove"]["length: 1100"] = "length: 30"


def example_at_test_size(name: str) -> ir.Program:
    """The example's program, with the replacements of :data:`SMALLER` (each must apply once)."""
    path = EXAMPLES / name / "spec.yaml"
    text = path.read_text()
    for old, new in SMALLER.get(name, {}).items():
        assert text.count(old) == 1, (name, old)
        text = text.replace(old, new)
    parsed, doc = load_string(text, str(path))
    return compile_spec(parsed, doc)


def engine_test(engine: str) -> Callable[[str, str], None]:
    """For a file of its own: every example at full size, as ``nnspec parity`` runs it (its
    default steps and batch, seed 0), in float32 and float64, with Keras on ``engine`` in a
    subprocess against the reference and the PyTorch backend (the baseline), at the tolerances of
    :data:`nnspec.parity.TOLERANCES`."""
    from tests.parity_seeds import DTYPES, check_seed

    name = f"keras-{engine}"
    missing = [m for m in ("keras", "torch", engine) if importlib.util.find_spec(m) is None]

    @pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("example", EXAMPLE_NAMES)
    def test_keras_on_the_engine_agrees(example: str, dtype: str) -> None:
        report = check_seed(example, dtype, 0, names=("torch", name))
        assert report.backends == ("torch", name)

    return test_keras_on_the_engine_agrees
