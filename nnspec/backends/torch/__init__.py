"""The PyTorch backend. Importing this package does not import torch; only ``runtime`` does."""

from nnspec.backends.torch.generator import TorchBackend

BACKEND = TorchBackend()

__all__ = ["BACKEND", "TorchBackend"]
