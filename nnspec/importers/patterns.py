"""Keras idioms the spec has one policy for.

The seed's pad fix, ``embedding(ids) * cast(ids > 0)[..., None]`` (Keras 3 saves it as op layers:
``Greater``/``NotEqual`` of the ids and 0, ``Cast``, ``ExpandDims``, ``Multiply``), is the
table's ``padding: {index: 0}``: pad positions embed to exactly 0.0 in both. Row 0 differs: Keras
keeps its (never used, never trained) values, the spec stores 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nnspec.importers.keras_config import KerasGraph, KerasLayer, Ref

COMPARISONS = ("Greater", "NotEqual")
CHAIN = ("Cast", "ExpandDims")


@dataclass
class MaskMultiply:
    """``multiply`` = the output of ``embedding`` times the pad mask that ``chain`` computes."""

    multiply: str
    embedding: str
    chain: set[str] = field(default_factory=set)


def is_op(layer: KerasLayer) -> bool:
    """A ``keras.ops`` call saved as a layer (not a ``keras.layers`` layer)."""
    return layer.module.startswith("keras.src.ops")


def _producer(graph: KerasGraph, ref: Ref) -> KerasLayer | None:
    try:
        return graph.layer(ref[0])
    except StopIteration:
        return None


def _mask_chain(graph: KerasGraph, ref: Ref, ids: Ref) -> set[str] | None:
    """The op layers from ``ids > 0`` (or ``!= 0``) to ``ref`` through casts to float and an
    ``expand_dims(-1)``, or ``None`` if ``ref`` is not that."""
    chain: set[str] = set()
    expanded = False
    while True:
        layer = _producer(graph, ref)
        if layer is None or not is_op(layer) or len(layer.calls) != 1:
            return None
        refs, kwargs = layer.calls[0]
        chain.add(layer.name)
        if layer.class_name in COMPARISONS:
            zero = kwargs.get("__constants__") == [0]
            return chain if zero and refs == [ids] and expanded else None
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
        if layer.class_name != "Multiply" or len(layer.calls) != 1:
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
            chain = _mask_chain(graph, mask_ref, emb.calls[0][0][0])
            if chain is not None:
                found.append(MaskMultiply(layer.name, emb.name, chain))
                break
    return found
