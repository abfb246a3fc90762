"""SGD, Adam and AdamW with PyTorch's documented update rules, in numpy float64.

Written from the algorithm boxes of the ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` docs (no
dampening, no amsgrad, not maximizing) and ``torch.nn.utils.clip_grad_norm_``. Only the entries
a mask selects are updated: the oracle of a table whose frozen rows no optimizer ever sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Optimizer:
    """One optimizer over named float64 arrays.

    Attributes:
        kind: ``sgd``, ``adam`` or ``adamw``.
        lr, momentum, nesterov, beta1, beta2, eps, weight_decay: the hyper-parameters
            (``weight_decay`` is L2 added to the gradient for ``sgd`` and ``adam``, decoupled
            for ``adamw``).
        clip_norm: scale the gradients by ``min(1, clip_norm / (norm + 1e-6))`` first, ``norm``
            the global 2-norm of every trainable entry's gradient.
    """

    kind: str
    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float | None = None
    steps: int = 0
    slots: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def step(
        self,
        params: dict[str, np.ndarray],
        grads: dict[str, np.ndarray],
        masks: dict[str, np.ndarray],
    ) -> None:
        """Update ``params`` in place from ``grads``; ``masks[name]`` (broadcastable to the
        weight) says which entries train. Weights without a mask are not touched."""
        self.steps += 1
        grads = {name: np.where(mask, grads[name], 0.0) for name, mask in masks.items()}
        if self.clip_norm is not None:
            norm = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
            coef = self.clip_norm / (norm + 1e-6)
            if coef < 1.0:
                grads = {name: g * coef for name, g in grads.items()}
        for name, mask in masks.items():
            p = params[name]
            updated = getattr(self, f"_{self.kind}")(name, p, grads[name])
            params[name] = np.where(mask, updated, p)

    def _slot(self, name: str, key: str, like: np.ndarray) -> np.ndarray:
        return self.slots.setdefault(name, {}).setdefault(key, np.zeros_like(like))

    def _sgd(self, name: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            buf = g.copy() if self.steps == 1 else self.momentum * self.slots[name]["buf"] + g
            self.slots.setdefault(name, {})["buf"] = buf
            g = g + self.momentum * buf if self.nesterov else buf
        return p - self.lr * g

    def _adam(self, name: str, p: np.ndarray, g: np.ndarray, decoupled: bool = False) -> np.ndarray:
        if self.weight_decay and not decoupled:
            g = g + self.weight_decay * p
        m = self._slot(name, "m", p)
        v = self._slot(name, "v", p)
        m[...] = self.beta1 * m + (1 - self.beta1) * g
        v[...] = self.beta2 * v + (1 - self.beta2) * g * g
        m_hat = m / (1 - self.beta1**self.steps)
        v_hat = v / (1 - self.beta2**self.steps)
        return p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def _adamw(self, name: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self._adam(name, p * (1 - self.lr * self.weight_decay), g, decoupled=True)
