"""End-To-End Memory Networks (``ir.MemoryNetwork``, arXiv 1503.08895): one layer class written
for the op's configuration (tying, query, encodings, output), holding only what it uses.

Every distinct word table and temporal encoding is one weight of the layer's ``tables`` dict,
named after its canonical name's last part (``"memory.A2"`` is ``tables["A2"]``); hops name
the tables they use, so tied hops name the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnspec.backends.keras.code import (
    OPS,
    Emitted,
    WeightCode,
    docstring,
    indent,
    initializer,
    shared_initializer,
    variable,
)
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.keras.emitter import KerasGenerator


@dataclass(frozen=True)
class _Layout:
    """The tables of one memory network, by their names in the layer (canonical last parts).

    Attributes:
        hops: for each hop, ``(A, C)`` or ``(A, C, TA, TC)``.
        words: the distinct word tables, in order of first use.
        temporal: the distinct temporal encodings.
        question: the table embedding the question (``None``: a constant query).
        answer: the table whose transpose gives the logits (``None``: its own weight ``W``).
    """

    hops: tuple[tuple[str, ...], ...]
    words: tuple[str, ...]
    temporal: tuple[str, ...]
    question: str | None
    answer: str | None

    @classmethod
    def of(cls, op: ir.MemoryNetwork, node: ir.Node) -> _Layout:
        """The layout of ``op``, computed by ``node``."""
        prefix = f"{node.layer_name}."

        def local(name: str) -> str:
            if not name.startswith(prefix) or "/" in name:
                raise ValueError(f"weight {name!r} of node {node.name!r} must be {prefix}<name>")
            return name[len(prefix) :]

        temporal = op.hops[0].TA is not None  # every hop's, or none (ir.validate)
        hops = tuple(
            tuple(local(n) for n in (hop.A, hop.C, *((hop.TA, hop.TC) if temporal else ())))
            for hop in op.hops
        )
        question = None
        if op.query == "embedded":
            b = op.hops[0].A if op.tying == "adjacent" else op.query_embedding
            assert b is not None  # ir.validate
            question = local(b)
        answer = local(op.hops[-1].C) if op.output is None else None
        words = dict.fromkeys(
            [*(t for hop in hops for t in hop[:2]), *([question] if question else [])]
        )
        return cls(
            hops=hops,
            words=tuple(words),
            temporal=tuple(dict.fromkeys(t for hop in hops for t in hop[2:])),
            question=question,
            answer=answer,
        )


def _source(g: KerasGenerator, cls: str, op: ir.MemoryNetwork, layout: _Layout) -> str:
    """The memory-network class ``cls`` for ``op`` (``templates/helpers/memory_network.py.j2``)."""
    pad = op.pad_index is not None
    temporal = bool(layout.temporal)
    relu_half = getattr(op, "relu_half", False)
    if op.position_encoding:
        bag = (
            "the sum of its word vectors weighted by the position encoding "
            "``l_kj = (1 - j / J) - (k / d) * (1 - 2 * j / J)`` (word ``j`` of ``J``, unit "
            "``k`` of ``d``)"
        )
    else:
        bag = "the sum of its word vectors"
    doc = (
        "An End-To-End Memory Network (Sukhbaatar et al., 2015) over sentences of word ids.\n\n"
        f"Each sentence (a row of word ids) is embedded as {bag}"
        + (", plus the temporal encoding of its memory slot" if temporal else "")
        + ". Each hop names its word tables ``(A, C)``"
        + (" and temporal tables ``(TA, TC)``" if temporal else "")
        + " in ``tables``; hops naming the same table share it. From ``u`` "
        + ("(the embedded question)" if layout.question else "(a constant)")
        + ", each hop attends over the memories encoded with ``A``: ``p = softmax(u . m)``, "
        "then ``u = "
        + ("u @ linear_map" if op.linear_map else "u")
        + " + sum_i p_i c_i`` with the ``C`` encodings"
        + (", then ReLU on its last ``dim - dim // 2`` units" if relu_half else "")
        + (", then dropout in training" if op.dropout else "")
        + ". The logits are ``u @ "
        + ("tables[answer_table].T" if layout.answer else "answer")
        + "``, then ``activation``."
    )
    if pad:
        doc += (
            "\n\nThe pad id embeds to 0.0 (its rows are 0.0 and get no gradient) and a memory of "
            "pad ids only gets no attention (unless every memory of the row is one: then the "
            "softmax runs over all of them)."
        )
    params = ["vocab_size", "dim", "memory_size", "hops"]
    params += ["question_table"] if layout.question else ["query_value"]
    params += ["answer_table"] if layout.answer else ["output_size"]
    params += ["pad_index"] if pad else []
    params += ["activation"]
    params += ["dropout"] if op.dropout else []
    params += ["embeddings_initializer"]
    params += ["temporal_initializer"] if temporal else []
    params += ["linear_map_initializer"] if op.linear_map else []
    params += [] if layout.answer else ["answer_initializer"]
    return g.env.get_template("helpers/memory_network.py.j2").render(
        h=g.helper,
        cls=cls,
        doc="\n".join(indent(docstring(doc, 4), 1)).strip(),
        params=params,
        op=op,
        layout=layout,
        relu_half=relu_half,
    )


@OPS.emits(ir.MemoryNetwork)
def emit_memory_network(g: KerasGenerator, node: ir.Node) -> Emitted:
    """A ``MemoryNetwork`` layer called on the memories (and the question)."""
    program = g.program
    op = node.op
    assert isinstance(op, ir.MemoryNetwork)
    layout = _Layout.of(op, node)
    prefix = f"{node.layer_name}."
    # Zero rows are the pad row of the word tables only (ir.validate); all train whole here.
    weights = [program.weight(prefix + name) for name in layout.words + layout.temporal]
    weights += [program.weight(name) for name in (op.linear_map, op.output) if name]
    for weight in weights:
        if weight.trainable != "all":
            raise ValueError(f"weight {weight.name!r}: memory-network weights train whole")

    def init(names_: list[str], role: str) -> str:
        return shared_initializer(program, [prefix + n for n in names_], role, node)

    args = {
        "vocab_size": str(op.vocab_size),
        "dim": str(op.dim),
        "memory_size": str(op.memory_size),
        "hops": repr(layout.hops),
    }
    if layout.question:
        args["question_table"] = repr(layout.question)
    else:
        args["query_value"] = repr(op.query_value)
    if layout.answer:
        args["answer_table"] = repr(layout.answer)
    else:
        args["output_size"] = str(op.output_size)
    if op.pad_index is not None:
        args["pad_index"] = str(op.pad_index)
    args["activation"] = repr(op.activation)
    if op.dropout:
        args["dropout"] = repr(op.dropout)
    args["embeddings_initializer"] = init(list(layout.words), "word table")
    if layout.temporal:
        args["temporal_initializer"] = init(list(layout.temporal), "temporal encoding")
    if op.linear_map:
        args["linear_map_initializer"] = initializer(program.weight(op.linear_map).initializer)
    if op.output:
        args["answer_initializer"] = initializer(program.weight(op.output).initializer)

    n = g.names
    attr = n.attrs[node.layer_name]
    layers = dict.fromkeys(
        m.layer_name for m in program.nodes if isinstance(m.op, ir.MemoryNetwork)
    )
    position = list(layers).index(node.layer_name)
    cls = "MemoryNetwork" if position == 0 else f"MemoryNetwork{position + 1}"
    constructor = f"{cls}({', '.join(f'{k}={v}' for k, v in args.items())}, "
    out = Emitted(
        init=[f"self.{attr} = {constructor}dtype=self.dtype_policy, name={attr!r})"],
        call=f"self.{attr}({n.args(node)}{', training=training' if op.dropout else ''})",
    )
    g.add_helper(cls, _source(g, cls, op, layout))
    for name in layout.words + layout.temporal:
        weight = program.weight(prefix + name)
        table = f"self.{attr}.tables[{name!r}]"
        code = variable(weight, table)
        if op.pad_index is not None and name in layout.words:  # loading re-zeroes its pad row
            grad = f"grads[{table}.path]" if weight.trainable == "all" else None
            load = f"self.{attr}.set_table({name!r}, {{}})"
            code = WeightCode(code.name, value=f"{table}.numpy()", load=load, grad=grad)
        out.weights.append(code)
    if op.linear_map:
        out.weights.append(variable(program.weight(op.linear_map), f"self.{attr}.linear_map"))
    if op.output:
        out.weights.append(variable(program.weight(op.output), f"self.{attr}.answer"))
    return out
