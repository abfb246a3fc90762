"""Parity of the Keras model on Keras' jax engine (``nnspec parity --backend torch --backend
keras-jax``): every example, float32 and float64, against the reference and the PyTorch backend.
A file per engine, so that ``pytest -n 2 --dist loadfile`` runs the engines side by side."""

from __future__ import annotations

from tests.parity_helpers import engine_test

test_keras_on_the_engine_agrees = engine_test("jax")
