"""nnspec: a declarative model-spec compiler for Keras and PyTorch."""

__version__ = "0.1.0"
