"""Shared by the parity tests: the check of a report, and the examples at test size."""

from __future__ import annotations

from nnspec.compiler import compile_spec, ir
from nnspec.parity import REFERENCE, TOLERANCES, ParityReport, installed
from nnspec.spec import load_string
from tests.conftest import EXAMPLES


def check(report: ParityReport) -> None:
    """Within tolerance, and every installed backend's outputs were compared with the
    reference (in float64 at 1e-12 at most)."""
    assert not report.failures(), "; ".join(report.failures())
    outputs = {c.backend: c for c in report.comparisons if c.what == "outputs"}
    assert set(outputs) == set(installed()), outputs
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
