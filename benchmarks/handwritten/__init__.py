"""Hand-written, idiomatic implementations of the example architectures: the baselines that the
generated code is timed against.

One builder per example in each framework module (``BUILDERS``), keyed by example name. A builder
takes the validated :class:`nnspec.spec.Spec` of the example and reads its sizes from it (so the
``--quick`` shrunken specs shrink both sides alike); it returns a :class:`Handwritten` bundle.
Importing this package imports no framework: import ``torch_models`` or ``keras_models``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Handwritten:
    """A hand-written model with its loss and optimizer.

    Attributes:
        model: the model, called like the generated one (torch: one keyword argument per input;
            Keras: a dict of inputs).
        loss_fn: ``loss_fn(y_true, y_pred)`` on the model's output.
        optimizer: a stock optimizer over the trainable weights.
        clip_norm: global gradient-norm clipping done by the training step (torch), or ``None``
            (no clipping, or the optimizer clips, as Keras' ``global_clipnorm`` does).
        call_kwargs: what the training step passes the model besides its inputs: for a generated
            model trained from its logits, its ``logits`` flag, as its ``train.py`` passes it.
    """

    model: Any
    loss_fn: Callable[[Any, Any], Any]
    optimizer: Any
    clip_norm: float | None = None
    call_kwargs: dict[str, Any] = field(default_factory=dict)
