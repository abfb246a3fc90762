"""Cross-backend parity for the architecture ops (hand-built IR programs): outputs, gradients
and weights after 5 optimizer steps, at the tolerances of :data:`nnspec.parity.TOLERANCES`."""

from __future__ import annotations

import pytest

from nnspec.parity import compare
from tests import ir_examples_arch

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

PROGRAMS = {build().name: build for build in ir_examples_arch.ALL}


def check(report):
    assert not report.failures(), "; ".join(report.failures())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_architecture_parity(name, dtype):
    check(compare(PROGRAMS[name](), dtype=dtype, steps=5, batch=5))
