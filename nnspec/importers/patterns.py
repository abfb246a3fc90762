"""Keras idioms the spec has one policy for.

The seed's pad fix, ``embedding(ids) * cast(ids > 0)[..., None]`` (Keras 3 saves it as op layers:
``Greater``/``NotEqual`` of the ids and 0, ``Cast``, ``ExpandDims``, ``Multiply``), is the
table's ``padding: {index: 0}``: pad positions embed to exactly 0.0 in both. Row 0 differs: Keras
keeps its (never used, never trained) values, the spec stores 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnspec.importers.keras_config import KerasGraph, KerasLayer, Ref

COMPARISONS = ("Greater", "NotEqual")
CHAIN = ("Cast", "ExpandDims")


@dataclass
class MaskMultiply:
    """``multiply`` = the output of ``embedding`` times the pad mask that ``chain`` computes."""

    multiply: str
    embedding: str
    chain: set[str] = field(default_factory=set)
    # Lambda or Reshape layers compute the mask (or the product): their code is not in the
    # config, so the import runs them on probe ids before it maps them (``--trust-lambda``).
    needs_probe: bool = False


def is_op(layer: KerasLayer) -> bool:
    """A ``keras.ops`` call saved as a layer (not a ``keras.layers`` layer)."""
    return layer.module.startswith("keras.src.ops")


def _producer(graph: KerasGraph, ref: Ref) -> KerasLayer | None:
    try:
        return graph.layer(ref[0])
    except StopIteration:
        return None


PROBED = ("Lambda", "Reshape")


def _mask_chain(graph: KerasGraph, ref: Ref, ids: Ref) -> tuple[set[str], bool] | None:
    """The layers from ``ids > 0`` (or ``!= 0``) to ``ref`` through casts to float and an
    ``expand_dims(-1)``, or ``None`` if ``ref`` is not that; with Lambda or Reshape layers on
    the way (whose effect is checked on probes later), any chain of single-input layers from
    the ids. Also whether it needs the probe."""
    chain: set[str] = set()
    expanded = False
    probed = False
    while True:
        layer = _producer(graph, ref)
        if layer is None or len(layer.calls) != 1:
            return None
        refs, kwargs = layer.calls[0]
        if layer.class_name in PROBED:
            probed = True
        elif not is_op(layer):
            return None
        chain.add(layer.name)
        if probed:
            if len(refs) != 1 or layer.class_name not in (*PROBED, *COMPARISONS, *CHAIN):
                return None
            if refs == [ids]:
                return chain, True
            ref = refs[0]
            continue
        if layer.class_name in COMPARISONS:
            zero = kwargs.get("__constants__") == [0]
            return (chain, False) if zero and refs == [ids] and expanded else None
        if layer.class_name == "ExpandDims" and layer.config.get("axis") in (-1, 2):
            expanded = True
        elif layer.class_name != "Cast" or "float" not in str(layer.config.get("dtype")):
            return None
        if len(refs) != 1:
            return None
        ref = refs[0]


def mask_multiplies(
    graph: KerasGraph, consumers: dict[Ref, list[tuple[KerasLayer, int]]]
) -> list[MaskMultiply]:
    """Every ``embedding(ids) * mask(ids)`` of ``graph`` whose embedding output nothing else
    reads."""
    found = []
    for layer in graph.layers:
        if layer.class_name not in ("Multiply", "Lambda") or len(layer.calls) != 1:
            continue
        refs, _ = layer.calls[0]
        if len(refs) != 2:
            continue
        for emb_ref, mask_ref in (refs, refs[::-1]):
            emb = _producer(graph, emb_ref)
            if emb is None or emb.class_name != "Embedding" or len(emb.calls) != 1:
                continue
            if emb.config.get("mask_zero") or len(consumers.get(emb_ref, [])) != 1:
                continue
            ids = emb.calls[0][0][0]
            if layer.class_name == "Lambda":  # lambda t: t[0] * mask(t[1]), say
                if mask_ref == ids:
                    found.append(MaskMultiply(layer.name, emb.name, set(), True))
                    break
                continue
            chain = _mask_chain(graph, mask_ref, ids)
            if chain is not None:
                found.append(MaskMultiply(layer.name, emb.name, *chain))
                break
    return found


def probe(model: Any, mm: MaskMultiply, seed: int = 0) -> bool:
    """Whether the live Keras ``model``'s ``mm.multiply`` output is exactly the embedding
    output times ``ids > 0`` on random probe ids (zeros at the end, inside and at the start)."""
    import keras

    emb = model.get_layer(mm.embedding)
    sub = keras.Model(model.inputs, [emb.output, model.get_layer(mm.multiply).output])
    rng = np.random.default_rng(seed)
    for inp in model.inputs:
        if tuple(inp.shape[1:]) != tuple(emb.input.shape[1:]):
            return False
    shape = (16, *emb.input.shape[1:])
    for _ in range(3):
        arrays = [
            np.where(rng.random(shape) < 0.3, 0, rng.integers(1, emb.input_dim, size=shape))
            for _ in model.inputs
        ]
        embedded, product = (np.asarray(v) for v in sub(arrays if len(arrays) > 1 else arrays[0]))
        which = [i for i, inp in enumerate(model.inputs) if inp is emb.input]
        ids = arrays[which[0]] if which else arrays[0]
        if not np.array_equal(product, embedded * (ids > 0)[..., None]):
            return False
    return True
