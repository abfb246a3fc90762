"""Keras layers -> spec layers: the spec dict of a Keras layer graph
(:class:`~nnspec.importers.keras_config.KerasGraph`) and the plan for its weights.

Each Keras layer call becomes one spec layer named after the Keras layer (a shared layer's later
calls are ``<name>_<k>`` with ``share``); an ``Embedding`` becomes a table named after the layer
plus a lookup. Whatever has no exact spec form is collected as a problem naming the layer and its
class; nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nnspec.importers import options
from nnspec.importers.common import (
    MASK_ARGS,
    POSITIONWISE,
    RECURRENT,
    WeightPlan,
    identifier,
    inner,
    is_refs,
)
from nnspec.importers.keras_config import KerasGraph, KerasLayer, Ref
from nnspec.importers.layers import HANDLERS
from nnspec.importers.options import Unmappable
from nnspec.importers.patterns import MaskMultiply, is_op, mask_multiplies
from nnspec.importers.training import training_section


@dataclass
class Mapped:
    """The spec (a plain dict, as YAML would load it), the weight plan and notes for people."""

    spec: dict[str, Any]
    weights: list[WeightPlan]
    notes: list[str]
    attention: list[tuple[str, int, int]] = field(default_factory=list)
    probes: list[MaskMultiply] = field(default_factory=list)


class ImportFailed(Exception):
    """Layers or options without an exact spec form: one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class Mapper:
    """Maps one Keras layer graph: spec inputs, tables and layers, the weight plan, notes and
    problems; the layer handlers of :mod:`nnspec.importers.layers` call its helpers."""

    def __init__(self, graph: KerasGraph, name: str) -> None:
        self.graph = graph
        self.name = name
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.inputs: dict[str, dict[str, Any]] = {}
        self.tables: dict[str, dict[str, Any]] = {}
        self.layers: list[dict[str, Any]] = []
        self.weights: list[WeightPlan] = []
        self.attention: list[tuple[str, int, int]] = []
        self.produced: dict[Ref, str] = {}
        self.by_name: dict[str, dict[str, Any]] = {}
        self.consumers: dict[Ref, list[tuple[KerasLayer, int]]] = {}
        for layer in graph.layers:
            for k, (refs, kwargs) in enumerate(layer.calls):
                tensors = [
                    r for key, v in kwargs.items() if is_refs(v) and key not in MASK_ARGS for r in v
                ]
                for ref in refs + tensors:
                    self.consumers.setdefault(ref, []).append((layer, k))
        self.plumbing = _mask_plumbing(graph, self.consumers)
        found = mask_multiplies(graph, self.consumers)
        self.multiplies = {mm.multiply: mm for mm in found}
        self.padded_by_multiply = {mm.embedding: mm for mm in found}
        for mm in found:
            self.plumbing |= mm.chain
        self.outputs = set(graph.outputs)
        self.names: set[str] = set()

    # -------------------------------------------------------------- helpers

    def fail(self, layer: KerasLayer, message: str) -> None:
        """Record a problem located at ``layer`` (its name and class)."""
        self.problems.append(f"layer {layer.name!r} ({layer.class_name}): {message}")

    def unique(self, base: str) -> str:
        """``base``, or ``base_<n>`` if taken: a spec name no input, table or layer has."""
        name, n = base, 1
        while name in self.names:
            name, n = f"{base}_{n}", n + 1
        self.names.add(name)
        return name

    def check_none(self, layer: KerasLayer, *keys: str) -> bool:
        """A problem for each of ``keys`` set in the layer's config; whether none is."""
        bad = [k for k in keys if layer.config.get(k)]
        for key in bad:
            self.fail(layer, f"{key} is set; the spec has no {key.replace('_', ' ')} (remove it)")
        return not bad

    def require(self, layer: KerasLayer, key: str, allowed: Any, default: Any = None) -> bool:
        """A problem unless the config's ``key`` (``default`` if absent) is ``allowed`` (a
        value or a tuple of values); whether it is."""
        value = layer.config.get(key, default)
        ok = value in allowed if isinstance(allowed, tuple | list | set) else value == allowed
        if not ok:
            self.fail(layer, f"{key}={value!r} has no spec form (needs {allowed!r})")
        return ok

    def init(self, layer: KerasLayer, key: str, out: dict[str, Any], spec_key: str) -> None:
        """Set ``out[spec_key]`` to the spec form of the initializer at ``key`` (a note if it
        has none)."""
        value = options.initializer(layer.config.get(key), self.notes, f"{layer.name}.{key}")
        if value is not None:
            out[spec_key] = value

    def constraint(self, layer: KerasLayer, key: str, out: dict[str, Any], spec_key: str) -> None:
        """Set ``out[spec_key]`` to the spec form of the constraint at ``key`` (a problem if it
        has none)."""
        try:
            value = options.constraint(layer.config.get(key))
        except Unmappable as exc:
            self.fail(layer, f"{key}: {exc}")
            return
        if value is not None:
            out[spec_key] = value

    def activation(self, layer: KerasLayer, value: Any) -> str:
        """The spec name of a Keras activation (a problem and ``linear`` if it has none)."""
        try:
            return options.activation(value)
        except Unmappable as exc:
            self.fail(layer, str(exc))
            return "linear"

    # -------------------------------------------------------------- the graph

    def run(self) -> Mapped:
        """Map the whole graph; :class:`ImportFailed` with every problem found."""
        for ref in self.graph.inputs:
            self.add_input(self.graph.layer(ref[0]))
        for layer in _topological(self.graph):
            if layer.class_name == "InputLayer" or layer.name in self.plumbing:
                continue
            for k, (refs, kwargs) in enumerate(layer.calls):
                self.call(layer, k, refs, kwargs)
        self.check_masks()
        self.check_multiplied_masks()
        outputs = [self.produced.get(ref) for ref in self.graph.outputs]
        if any(o is None or o in self.inputs for o in outputs) and not self.problems:
            self.problems.append("the model's outputs are not layers the spec can express")
        if self.problems:
            raise ImportFailed(self.problems)
        model: dict[str, Any] = {"layers": self.layers}
        if len(outputs) > 1 or outputs[0] != self.layers[-1]["name"]:
            model["outputs"] = outputs
        spec: dict[str, Any] = {"nnspec": 1, "name": self.name, "inputs": self.inputs}
        if self.tables:
            spec["embeddings"] = self.tables
        spec["model"] = model
        spec["training"] = training_section(self.graph.compile_config, self.notes)
        probes = [mm for mm in self.multiplies.values() if mm.needs_probe]
        return Mapped(spec, self.weights, self.notes, self.attention, probes)

    def add_input(self, layer: KerasLayer) -> None:
        """A spec input for an ``InputLayer``: its length (or shape) and integer dtype."""
        shape = layer.config.get("batch_shape") or layer.config.get("batch_input_shape") or []
        dims = list(shape[1:])
        name = self.unique(identifier(layer.name))
        self.produced[(layer.name, 0, 0)] = name
        if layer.config.get("sparse") or layer.config.get("ragged"):
            self.fail(layer, "sparse or ragged inputs have no spec form")
        if not dims or len(dims) > 2 or not all(isinstance(d, int) and d > 0 for d in dims):
            self.fail(layer, f"input shape {dims}: the spec needs a fixed length (or 2-D shape)")
            return
        entry: dict[str, Any] = {"length": dims[0]} if len(dims) == 1 else {"shape": dims}
        dtype = layer.config.get("dtype")
        dtype = dtype if isinstance(dtype, str) else "float32"
        if dtype in ("int64", "uint32"):
            entry["dtype"] = "int64"
        elif dtype not in ("int32", "int16", "int8", "uint8", "uint16"):
            self.notes.append(
                f"input {layer.name!r}: dtype {dtype}; the spec's inputs are int32 ids "
                "(Keras' Embedding casts its input to int)"
            )
        for consumer, _ in self.consumers.get((layer.name, 0, 0), []):
            known = consumer.name in self.plumbing or consumer.name in self.multiplies
            if consumer.class_name != "Embedding" and not known:
                self.fail(
                    consumer,
                    f"reads the input {layer.name!r} directly; spec inputs are token ids that "
                    "only embedding layers read",
                )
        self.inputs[name] = entry

    def call(self, layer: KerasLayer, k: int, refs: list[Ref], kwargs: dict[str, Any]) -> None:
        """Map call ``k`` of ``layer`` (reading ``refs``) with its class's handler."""
        if layer.name in self.multiplies:  # embedding * (ids > 0): the table's padding
            emb = self.multiplies[layer.name].embedding
            self.produced[(layer.name, k, 0)] = self.produced[(emb, 0, 0)]
            return
        policy = _policy(layer.config.get("dtype"))
        if k == 0 and policy not in (None, "float32", "float64"):
            self.fail(layer, f"dtype policy {policy!r}: the spec computes in one float dtype")
        handler = HANDLERS.get(layer.class_name)
        if is_op(layer) and layer.class_name not in ("Add", "Multiply"):
            handler = None
        # After a problem, later layers are still checked: an unmapped output is a placeholder.
        placeholder = f"unmapped_{identifier(layer.name)}_{k}"
        if handler is None:
            self.unknown(layer)
            self.produced[(layer.name, k, 0)] = placeholder
            return
        if any(ref[2] != 0 for ref in refs):
            self.fail(layer, "reads a second output of a layer (e.g. return_state)")
        for ref in refs:
            self.produced.setdefault(ref, f"unmapped_{identifier(ref[0])}_{ref[1]}")
        handler(self, layer, k, refs, kwargs)

    def unknown(self, layer: KerasLayer) -> None:
        """The problem of a layer without a handler: a keras.ops call, a Lambda, a custom
        layer or another Keras layer."""
        if is_op(layer):
            self.fail(
                layer,
                "a keras.ops call without a spec layer (of the ops, only +, * and the "
                "pad-mask multiply `embedding(ids) * cast(ids > 0)[..., None]` map)",
            )
        elif layer.class_name == "Lambda":
            self.fail(
                layer,
                "a Lambda layer runs arbitrary Python that nnspec cannot read; express it with "
                "layers or keras.ops (the pad fix `embedding(ids) * ops.expand_dims(ops.cast("
                "ids > 0, 'float32'), -1)` written with keras.ops imports as the table's "
                "`padding` policy)",
            )
        elif not layer.module.startswith("keras") and layer.module:
            self.fail(
                layer,
                f"a custom layer (module {layer.module!r}): its computation is not in the "
                "config; it would need an nnspec layer type",
            )
        else:
            self.fail(layer, "no spec layer type for this Keras layer")

    def add(
        self,
        layer: KerasLayer,
        k: int,
        refs: list[Ref],
        entry: dict[str, Any],
        plan: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Append a spec layer for call ``k`` of ``layer`` reading ``refs``."""
        base = identifier(layer.name)
        if name is None:
            name = self.unique(base if k == 0 else f"{base}_{k}")
        out: dict[str, Any] = {"type": entry.pop("type"), "name": name}
        if k > 0 and plan is not None:
            out["share"] = self.produced_name(layer, 0)
        sources = [self.produced[ref] for ref in refs]
        previous = self.layers[-1]["name"] if self.layers else None
        if out["type"] != "embedding" and (len(sources) != 1 or sources[0] != previous):
            out["inputs"] = sources
        out.update(entry)
        self.layers.append(out)
        self.by_name[name] = out
        self.produced[(layer.name, k, 0)] = name
        if plan is not None and k == 0:
            self.weights.append(WeightPlan(plan, layer.name, name))
        return out

    def produced_name(self, layer: KerasLayer, k: int) -> str:
        """The spec name of call ``k`` of ``layer``."""
        return self.produced[(layer.name, k, 0)]

    # -------------------------------------------------------------- masks

    def check_multiplied_masks(self) -> None:
        """``embedding * (ids > 0)``: the spec's padding also masks the layers that read masks
        (pooling, recurrent, attention), where Keras' multiply does not."""
        readers = ("GlobalAveragePooling1D", "GlobalMaxPooling1D", "MultiHeadAttention")
        for mm in self.multiplies.values():
            todo, seen = [(mm.multiply, 0, 0)], set()
            while todo:
                ref = todo.pop()
                if ref in seen:
                    continue
                seen.add(ref)
                for consumer, k in self.consumers.get(ref, []):
                    kind = consumer.class_name
                    if kind in readers or kind in (*RECURRENT, "Bidirectional"):
                        self.fail(
                            self.graph.layer(mm.embedding),
                            f"its output times (ids > 0) reaches {kind} {consumer.name!r}, which "
                            "Keras runs over every position and the spec's padding policy would "
                            "mask: no exact spec form (mask_zero=True instead of the multiply "
                            "would map)",
                        )
                    elif kind in POSITIONWISE:
                        todo.append((consumer.name, k, 0))
            self.notes.append(
                f"{mm.embedding}: embedding output times (ids > 0) ('{mm.multiply}') -> padding "
                "{index: 0}: pad positions embed to 0.0 in both; row 0 (never used, never "
                "trained in Keras) is imported as 0.0 instead of its Keras values"
            )

    def check_masks(self) -> None:
        """``mask_zero``: Keras masks the padded positions for the layers that read masks but
        keeps row 0's own vector there; the spec's padding makes them 0.0. The same function
        only if no layer computes with the values at padded positions without the mask."""
        for layer in self.graph.layers:
            if layer.class_name != "Embedding" or not layer.config.get("mask_zero"):
                continue
            todo = [(layer.name, k, 0) for k in range(len(layer.calls))]
            seen: set[Ref] = set()
            while todo:
                ref = todo.pop()
                if ref in seen:
                    continue
                seen.add(ref)
                if ref in self.outputs:
                    self.fail(
                        layer,
                        "mask_zero=True and the padded positions reach the model's output, "
                        "where Keras has row 0's vector and the spec 0.0",
                    )
                for consumer, k in self.consumers.get(ref, []):
                    kind = consumer.class_name
                    cfg = inner(consumer)
                    if kind == "GlobalAveragePooling1D" or (
                        kind in (*RECURRENT, "Bidirectional") and not cfg.get("return_sequences")
                    ):
                        continue  # reads the mask: padded positions never count
                    if kind in POSITIONWISE or kind in (*RECURRENT, "Bidirectional"):
                        todo.append((consumer.name, k, 0))
                        continue
                    if kind not in HANDLERS or is_op(consumer):
                        continue  # unmappable anyway: reported once, as such
                    self.fail(
                        layer,
                        f"mask_zero=True and the padded positions reach {consumer.class_name} "
                        f"{consumer.name!r}, which Keras computes from row 0's vector (mask_zero "
                        "masks but does not zero it) and the spec from 0.0: the same function "
                        "needs mask_zero=False (import the table without padding) or a layer "
                        "that reads the mask",
                    )
            self.notes.append(
                f"{layer.name}: mask_zero=True -> padding {{index: 0}}: padded positions are "
                "masked as in Keras and embed to 0.0 (Keras keeps row 0's vector there, which "
                "no layer of this model reads); row 0 is imported as 0.0. The spec's recurrent "
                "layers need the pads after the words (post-padding), as nnspec prepare writes"
            )


def _policy(dtype: Any) -> str | None:
    """The name of a layer's dtype policy (Keras 3 ``DTypePolicy`` dict, Keras 2 string or
    ``Policy`` dict)."""
    if isinstance(dtype, dict):
        return str((dtype.get("config") or {}).get("name"))
    return dtype if isinstance(dtype, str) else None


def _mask_plumbing(
    graph: KerasGraph, consumers: dict[Ref, list[tuple[KerasLayer, int]]]
) -> set[str]:
    """Keras 3 saves the masks it derives (``mask_zero``'s ``ids != 0``, their ``or`` in merges)
    as op layers feeding ``mask=`` arguments: the op layers whose outputs reach only ``mask=``
    arguments. The spec derives the same masks from the tables' padding."""
    plumbing = {layer.name for layer in graph.layers if layer.module.startswith("keras.src.ops")}
    changed = True
    while changed:
        changed = False
        for layer in graph.layers:
            if layer.name not in plumbing:
                continue
            readers = [
                c for k in range(len(layer.calls)) for c, _ in consumers.get((layer.name, k, 0), [])
            ]
            if any(c.name not in plumbing for c in readers) or (layer.name, 0, 0) in graph.outputs:
                plumbing.discard(layer.name)
                changed = True
    return plumbing


def _topological(graph: KerasGraph) -> list[KerasLayer]:
    """Layers in an order where every call's inputs come from earlier layers (config order,
    unless it is not)."""
    done: set[str] = set()
    order: list[KerasLayer] = []
    pending = list(graph.layers)
    while pending:
        progressed = False
        for layer in list(pending):
            sources = {ref[0] for refs, _ in layer.calls for ref in refs}
            if sources - {layer.name} <= done:
                order.append(layer)
                done.add(layer.name)
                pending.remove(layer)
                progressed = True
        if not progressed:
            order += pending
            break
    return order


def map_graph(graph: KerasGraph, name: str) -> Mapped:
    """The spec dict of ``graph`` (named ``name``); :class:`ImportFailed` listing every layer
    or option without an exact spec form."""
    return Mapper(graph, identifier(name)).run()
