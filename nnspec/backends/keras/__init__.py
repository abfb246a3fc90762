"""The Keras 3 (TensorFlow) backend. Importing it imports neither TensorFlow nor Keras."""

from nnspec.backends.keras.emitter import KerasBackend

BACKEND = KerasBackend()

__all__ = ["BACKEND", "KerasBackend"]
