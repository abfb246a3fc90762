"""Names and layer kinds shared by the mapping and its layer handlers."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Any

from nnspec.importers.keras_config import KerasLayer

RECURRENT = ("LSTM", "GRU")
# Layers that compute each position from that position only (masks pass through them).
POSITIONWISE = {
    "Dense",
    "Dropout",
    "Activation",
    "ReLU",
    "Softmax",
    "LayerNormalization",
    "BatchNormalization",
    "Add",
    "Multiply",
    "Concatenate",
    "MultiHeadAttention",
    "TimeDistributed",
}
# Call arguments through which Keras 3 passes the masks it derives.
MASK_ARGS = ("mask", "query_mask", "value_mask", "key_mask")
MERGES = {"Add": "add", "Multiply": "multiply", "Concatenate": "concatenate"}


def identifier(name: str) -> str:
    """``name`` as a spec name: a Python identifier, not a keyword, not ``self``."""
    text = re.sub(r"\W", "_", name) or "layer"
    if text[0].isdigit() or keyword.iskeyword(text) or text.startswith("__") or text == "self":
        text = f"k_{text.lstrip('_')}"
    return text


def is_refs(value: Any) -> bool:
    """Whether ``value`` is a non-empty list of tensor references."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, tuple) for v in value)


def inner(layer: KerasLayer) -> dict[str, Any]:
    """The config of the recurrent layer a ``Bidirectional`` wraps (else the layer's own)."""
    if layer.class_name == "Bidirectional":
        return dict(layer.config.get("layer", {}).get("config", {}))
    return layer.config


@dataclass
class WeightPlan:
    """Where the canonical weights of one spec layer (or table) come from: the Keras layer's
    weights, converted by ``kind``, named ``<owner>.<param>``."""

    kind: str
    keras_layer: str
    owner: str
