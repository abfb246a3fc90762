"""Independent oracles: hand-written float64 models of the examples and embedding policies.

The models are written from the documented semantics (the README's "Embedding policies: exact
semantics", the layer table, the papers: arXiv 1706.03762 for sinusoids and Transformer blocks,
arXiv 1503.08895 for memory networks, the ``torch.optim`` update rules), never from the
generator's templates or the IR. They share only the interface with the generated code:
canonical weight names and layouts (a dense kernel is ``[in, out]``, recurrent gates are in
Keras' order, attention projections are ``[E, E]`` kernels).

* :mod:`tests.oracles.models` — each model once, written against a handful of array
  primitives (``ops``);
* :mod:`tests.oracles.torch_ops` and :mod:`tests.oracles.keras_ops` — those primitives in
  PyTorch and in Keras 3 on TensorFlow, so every model runs (and is differentiated) in the same
  framework as the generated code it is compared with;
* :mod:`tests.oracles.optim` — SGD, Adam and AdamW with PyTorch's update rules in numpy, over
  the trainable entries only.

Importing this package imports no framework.
"""
