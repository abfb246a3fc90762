"""Parity for the architecture ops (hand-built IR programs): every installed backend's outputs
against the numpy reference, gradients and weights after 5 optimizer steps across backends, at
the tolerances of :data:`nnspec.parity.TOLERANCES`."""

from __future__ import annotations

import pytest

from nnspec.parity import compare, installed
from tests import ir_examples_arch
from tests.parity_helpers import check

if not installed():
    pytest.skip("no backend is installed", allow_module_level=True)

PROGRAMS = {build().name: build for build in ir_examples_arch.ALL}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_architecture_parity(name, dtype):
    check(compare(PROGRAMS[name](), dtype=dtype, steps=5, batch=5))
