"""Runs of layers the compiler unrolled from one spec layer, found again so that the generated
model holds them as hand-written code would: repeated Transformer blocks as one ``nn.ModuleList``
(:func:`repeated_groups`), stacked recurrent layers as one ``nn.LSTM`` / ``nn.GRU`` with
``num_layers`` (:func:`recurrent_stacks`).

The compiler records each run as an :class:`~nnspec.compiler.ir.Repeat`; a run is regrouped
only when the grouped code computes exactly what the unrolled nodes compute.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

from nnspec.backends.torch.common import WeightCode
from nnspec.backends.torch.naming import first_of_layer, input_mask
from nnspec.compiler import ir

# Ops whose unrolled repeats are regrouped into one nn.ModuleList.
REPEATED_OPS = (ir.TransformerBlock,)


@dataclass
class Group:
    """A run of repeated layers held in one ``nn.ModuleList``.

    Attributes:
        members: the nodes, in order; the last one names the list.
        owners: the canonical-name prefix of each member's weights.
        table: the module-level name of the per-member weight table.
        weights: where one member holds its weights, relative to it, in canonical order.
    """

    members: list[ir.Node]
    owners: list[str]
    table: str = ""
    weights: list[WeightCode] = dataclasses.field(default_factory=list)


def repeated_groups(program: ir.Program) -> dict[str, Group]:
    """The compiler's runs of repeated blocks (:class:`~nnspec.compiler.ir.Repeat`) that one
    ``nn.ModuleList`` computes, by layer name: each member feeds only the next, none is tied to
    another layer, and all compute the same op on the same shapes with equally drawn weights,
    listed member after member in the program."""
    consumers = _consumers(program)
    groups: dict[str, Group] = {}
    for repeat in program.repeats:
        members = [program.node(name) for name in repeat.members]
        if repeat.between or not isinstance(members[0].op, REPEATED_OPS):
            continue
        group = _group(program, members, consumers)
        if group is not None:
            groups[repeat.layer] = group
    return groups


def recurrent_stacks(program: ir.Program) -> dict[str, tuple[list[ir.Node], list[ir.Node], float]]:
    """The compiler's stacks of recurrent layers (:class:`~nnspec.compiler.ir.Repeat`) that
    torch's own stacking (``num_layers``) computes, as ``(layers, dropouts, rate)`` by layer name:
    one cell, width and direction count, each layer reading the whole output sequence of the one
    before with both directions concatenated (torch's rule; ``merge: sum`` between layers is
    not), no node but the next reading it, and no layer tied to another.
    """
    consumers = _consumers(program)
    stacks: dict[str, tuple[list[ir.Node], list[ir.Node], float]] = {}
    for repeat in program.repeats:
        layers = [program.node(name) for name in repeat.members]
        if not isinstance(layers[0].op, ir.Recurrent):
            continue
        drops = [program.node(name) for name in repeat.between]
        chain = [layers[0]]
        for k, layer in enumerate(layers[1:]):
            chain += [drops[k], layer] if drops else [layer]
        if not _stacks(program, chain, layers, drops, consumers):
            continue
        stacks[repeat.layer] = (layers, drops, drops[0].op.rate if drops else 0.0)  # type: ignore[union-attr]
    return stacks


def _consumers(program: ir.Program) -> Counter[str]:
    """How many nodes (and outputs) read each node."""
    consumers = Counter(name for node in program.nodes for name in node.inputs)
    consumers.update(program.outputs)
    return consumers


def _stacks(
    program: ir.Program,
    chain: list[ir.Node],
    layers: list[ir.Node],
    drops: list[ir.Node],
    consumers: Counter[str],
) -> bool:
    """Whether the unrolled ``chain`` computes what one stacked torch module computes."""
    if not all(isinstance(d.op, ir.Dropout) for d in drops) or len({d.op for d in drops}) > 1:
        return False
    first = layers[0].op
    assert isinstance(first, ir.Recurrent)
    mask = input_mask(program, layers[0])
    for k, node in enumerate(chain):
        if node.layer_name != node.name or not first_of_layer(program, node):
            return False
        if k and (node.inputs != (chain[k - 1].name,) or consumers[chain[k - 1].name] != 1):
            return False
        if k and input_mask(program, node) != mask:
            return False
    for node in layers:
        op = node.op
        if not isinstance(op, ir.Recurrent) or (op.cell, op.units) != (first.cell, first.units):
            return False
        if (op.backward is None) != (first.backward is None):
            return False
        if node is not layers[-1] and not (
            op.return_sequences and (op.backward is None or op.merge == "concat")
        ):
            return False
    return True


def _group(program: ir.Program, members: list[ir.Node], consumers: Counter[str]) -> Group | None:
    """``members`` as a :class:`Group`, or ``None`` if they are not plain repeats."""
    first = members[0]
    for k, node in enumerate(members):
        if node.layer_name != node.name or not first_of_layer(program, node):
            return None
        if k and (node.inputs != (members[k - 1].name,) or consumers[members[k - 1].name] != 1):
            return None
        if node.shape != first.shape or input_mask(program, node) != input_mask(program, first):
            return None
    weights = {w.name: w for w in program.weights}
    owners = [node.layer_name for node in members]
    shapes = [
        _relabel(node.op, owner, weights) for node, owner in zip(members, owners, strict=True)
    ]
    if any(shape != shapes[0] for shape in shapes):
        return None
    # The members' weights, member after member, each in the same order, as the program lists
    # them: the CANONICAL table enumerates them so.
    index = {w.name: i for i, w in enumerate(program.weights)}
    names = [
        sorted({w for w in _strings(node.op) if w in weights}, key=index.__getitem__)
        for node in members
    ]
    suffixes = [[w[len(owner) :] for w in ns] for ns, owner in zip(names, owners, strict=True)]
    if any(s != suffixes[0] for s in suffixes):
        return None
    flat = [index[w] for ns in names for w in ns]
    if flat != list(range(flat[0], flat[0] + len(flat))):
        return None
    return Group(members, owners)


def _relabel(value: object, owner: str, weights: dict[str, ir.Weight]) -> object:
    """``value`` (an IR op) with each weight name replaced by its weight, named relative to
    ``owner``: equal for two ops that differ only in the names of equally drawn weights."""
    if isinstance(value, str):
        if value in weights and value.startswith(f"{owner}."):
            return dataclasses.replace(weights[value], name=value[len(owner) :])
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(
            _relabel(getattr(value, f.name), owner, weights) for f in dataclasses.fields(value)
        )
    if isinstance(value, tuple):
        return tuple(_relabel(v, owner, weights) for v in value)
    return value


def _strings(value: object) -> list[str]:
    """Every string inside a (nested) IR dataclass, in field order."""
    if isinstance(value, str):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [s for f in dataclasses.fields(value) for s in _strings(getattr(value, f.name))]
    if isinstance(value, tuple):
        return [s for v in value for s in _strings(v)]
    return []
