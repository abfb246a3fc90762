"""``nnspec parity`` at its defaults on the full-size ``newsgroups_flat`` example, seeds 0-9,
float32 and float64 (see :mod:`tests.parity_seeds` for the tolerances)."""

from tests.parity_seeds import seed_test

test_parity_passes_at_every_seed = seed_test("newsgroups_flat")
