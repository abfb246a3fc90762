"""Runs of layers the compiler unrolled from one spec layer, found again so that the generated
model holds them as hand-written code would: repeated Transformer blocks as one ``nn.ModuleList``
(:func:`repeated_groups`), stacked recurrent layers as one ``nn.LSTM`` / ``nn.GRU`` with
``num_layers`` (:func:`recurrent_stacks`).

The compiler names them ``<name>_block0``, ``<name>_block1`` ... ``<name>`` (``_layer<i>`` for
recurrent layers, with ``<name>_dropout<i>`` between them); a run is regrouped only when the
grouped code computes exactly what the unrolled nodes compute.
"""

from __future__ import annotations

import dataclasses
import re
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
    """The runs of repeated layers unrolled from one spec layer, by their last node's name.

    A run is ``<name>_block0`` (or ``_layer0``), ``<name>_block1`` ... ``<name>``: each member
    feeds only the next, none is tied to another layer, and all compute the same op on the same
    shapes with equally drawn weights, listed member after member in the program.
    """
    consumers = Counter(name for node in program.nodes for name in node.inputs)
    consumers.update(program.outputs)
    nodes = program.nodes
    groups: dict[str, Group] = {}
    i = 0
    while i < len(nodes):
        match = re.fullmatch(r"(.+)_(block|layer)0", nodes[i].name)
        if match is None or not isinstance(nodes[i].op, REPEATED_OPS):
            i += 1
            continue
        base, word = match.groups()
        j = i + 1
        while j < len(nodes) and nodes[j].name == f"{base}_{word}{j - i}":
            j += 1
        if j < len(nodes) and nodes[j].name == base:
            group = _group(program, list(nodes[i : j + 1]), consumers)
            if group is not None:
                groups[base] = group
                i = j + 1
                continue
        i += 1
    return groups


def recurrent_stacks(program: ir.Program) -> dict[str, tuple[list[ir.Node], list[ir.Node], float]]:
    """The stacked recurrent layers the compiler unrolled, as ``(layers, dropouts, rate)`` by the
    last layer's name, where torch's own stacking (``num_layers``) computes the same.

    A stack is ``<name>_layer0``, ``<name>_dropout0`` (with dropout) ... ``<name>``: one cell,
    width and direction count, each layer reading the whole output sequence of the one before
    with both directions concatenated (torch's rule; ``merge: sum`` between layers is not), no
    node but the next reading it, and no layer tied to another.
    """
    consumers = Counter(name for node in program.nodes for name in node.inputs)
    consumers.update(program.outputs)
    nodes = program.nodes
    stacks: dict[str, tuple[list[ir.Node], list[ir.Node], float]] = {}
    for i, node in enumerate(nodes):
        match = re.fullmatch(r"(.+)_layer0", node.name)
        if match is None or not isinstance(node.op, ir.Recurrent):
            continue
        base = match.group(1)
        chain, layers, drops, j = [node], [node], [], i + 1
        while j < len(nodes):
            k = len(layers)
            if nodes[j].name == f"{base}_dropout{k - 1}" and isinstance(nodes[j].op, ir.Dropout):
                drops.append(nodes[j])
            elif nodes[j].name in (f"{base}_layer{k}", base):
                layers.append(nodes[j])
            else:
                break
            chain.append(nodes[j])
            j += 1
            if chain[-1].name == base:
                break
        if chain[-1].name != base or not _stacks(program, chain, layers, drops, consumers):
            continue
        stacks[base] = (layers, drops, drops[0].op.rate if drops else 0.0)  # type: ignore[union-attr]
    return stacks


def _stacks(
    program: ir.Program,
    chain: list[ir.Node],
    layers: list[ir.Node],
    drops: list[ir.Node],
    consumers: Counter[str],
) -> bool:
    """Whether the unrolled ``chain`` computes what one stacked torch module computes."""
    if len(drops) not in (0, len(layers) - 1) or len({d.op for d in drops}) > 1:
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
