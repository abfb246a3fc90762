"""``nnspec parity`` at its defaults on every full-size example but those with a file of their
own (:data:`tests.parity_seeds.ALONE`), seeds 0-9, float32 and float64 (see
:mod:`tests.parity_seeds` for the tolerances)."""

from __future__ import annotations

import pytest

from nnspec.parity import installed
from tests.conftest import EXAMPLE_NAMES
from tests.parity_seeds import ALONE, DTYPES, SEEDS, check_seed

if not installed():
    pytest.skip("no backend is installed", allow_module_level=True)

OTHERS = [name for name in EXAMPLE_NAMES if name not in ALONE]


def test_every_example_is_covered():
    assert set(ALONE) <= set(EXAMPLE_NAMES) and OTHERS


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OTHERS)
def test_parity_passes_at_every_seed(name, dtype, seed):
    check_seed(name, dtype, seed)
