"""``ir.validate``: the IR's invariants, checked once before any backend runs, on hand-built
programs broken one invariant at a time."""

from __future__ import annotations

import dataclasses

import pytest

from nnspec.compiler import compile_file, ir
from tests import ir_examples, ir_examples_arch
from tests.conftest import EXAMPLES

replace = dataclasses.replace


@pytest.mark.parametrize(
    "build", ir_examples.ALL + ir_examples_arch.ALL, ids=lambda f: getattr(f, "__name__", "f")
)
def test_hand_built_programs_are_valid(build):
    ir.validate(build())


@pytest.mark.parametrize("spec", sorted(EXAMPLES.glob("*/spec.yaml")), ids=lambda p: p.parent.name)
def test_compiled_examples_are_valid(spec):
    program, _ = compile_file(spec)  # compile_spec validates
    ir.validate(program)


def test_compile_spec_validates(monkeypatch):
    def broken(program):
        raise ir.InvalidProgram("checked")

    monkeypatch.setattr(ir, "validate", broken)
    with pytest.raises(AssertionError, match="checked"):
        compile_file(sorted(EXAMPLES.glob("*/spec.yaml"))[0])


def _nodes(program: ir.Program, **changes) -> ir.Program:
    """``program`` with the named nodes replaced (``name=lambda node: new_node``)."""
    nodes = tuple(changes[n.name](n) if n.name in changes else n for n in program.nodes)
    return replace(program, nodes=nodes)


def _weights(program: ir.Program, **changes) -> ir.Program:
    weights = tuple(
        replace(w, **changes[w.name.replace(".", "__")])
        if w.name.replace(".", "__") in changes
        else w
        for w in program.weights
    )
    return replace(program, weights=weights)


def _block_with_odd_rotary(node):
    att = replace(node.op.attention, head_dim=3)
    return replace(node, op=replace(node.op, attention=att))


def _memory_without_tc(node):
    hops = (replace(node.op.hops[0], TC=None), *node.op.hops[1:])
    return replace(node, op=replace(node.op, hops=hops))


BROKEN = {
    "input after its reader": (
        lambda: replace(
            (p := ir_examples.flat_classifier()), nodes=(p.nodes[1], p.nodes[0], *p.nodes[2:])
        ),
        r"node 'flatten': input 'words_lookup' must come before it",
    ),
    "unknown input": (
        lambda: _nodes(
            ir_examples.flat_classifier(), flatten=lambda n: replace(n, inputs=("nowhere",))
        ),
        r"node 'flatten': input 'nowhere' must come before it",
    ),
    "batch not first": (
        lambda: _nodes(ir_examples.flat_classifier(), flatten=lambda n: replace(n, shape=(4, 10))),
        r"node 'flatten': shape \(4, 10\) must be",
    ),
    "zero length": (
        lambda: _nodes(
            ir_examples.flat_classifier(), flatten=lambda n: replace(n, shape=(None, 0))
        ),
        r"node 'flatten': shape \(None, 0\)",
    ),
    "mask on a node": (
        lambda: _nodes(
            ir_examples.flat_classifier(),
            flatten=lambda n: replace(n, mask=ir.Mask("words_lookup", 0)),
        ),
        r"node 'flatten': mask on 'words_lookup': not an input",
    ),
    "weight without owner": (
        lambda: replace(
            (p := ir_examples.flat_classifier()),
            weights=(*p.weights, ir.Weight("stray.kernel", (2, 2), ir.Initializer("zeros"))),
        ),
        r"weight 'stray.kernel': no table or op owns it",
    ),
    "output not a node": (
        lambda: replace(ir_examples.flat_classifier(), outputs=("tokens",)),
        r"output 'tokens': must be a node",
    ),
    "odd rotary head_dim": (
        lambda: _nodes(ir_examples_arch.transformer(), pre=_block_with_odd_rotary),
        r"node 'pre': rotary needs an even head_dim",
    ),
    "tied layer, other op": (
        lambda: _nodes(
            ir_examples_arch.graph_norms(),
            shared_1=lambda n: replace(n, op=replace(n.op, activation="relu")),
        ),
        r"node 'shared_1': layer 'shared' computes another op",
    ),
    "batch-norm statistics trained": (
        lambda: _weights(ir_examples_arch.graph_norms(), bn__moving_mean={"state": False}),
        r"node 'bn': batch-norm statistics 'bn.moving_mean' must be state weights",
    ),
    "memory hop with TA only": (
        lambda: _nodes(ir_examples_arch.memn2n(), memory=_memory_without_tc),
        r"node 'memory': every hop needs TA and TC, or none does",
    ),
    "zero rows on a dense kernel": (
        lambda: _weights(ir_examples_arch.conv_pool(), out__kernel={"zero_rows": (0,)}),
        r"weight 'out.kernel': zero rows \(0,\): expected \(\)",
    ),
    "pad row missing": (
        lambda: _weights(ir_examples.flat_classifier(), words__embeddings={"zero_rows": ()}),
        r"weight 'words.embeddings': zero rows \(\): expected \(0,\)",
    ),
    "trainable rows on a dense kernel": (
        lambda: _weights(
            ir_examples_arch.conv_pool(),
            out__kernel={"trainable": "rows", "trainable_rows": ((0, 1),)},
        ),
        r"weight 'out.kernel': rows train only in tables",
    ),
    "repeat of one node": (
        lambda: replace(ir_examples.flat_classifier(), repeats=(ir.Repeat("dense", ("dense",)),)),
        r"repeat 'dense': members \(at least two",
    ),
    "repeat of two ops": (
        lambda: replace(
            ir_examples.flat_classifier(),
            repeats=(ir.Repeat("flatten", ("words_lookup", "flatten")),),
        ),
        r"repeat 'flatten': members compute one op type",
    ),
    "repeat not consecutive": (
        lambda: _repeat_apart(),
        r"repeat 'pre': members and the nodes between them are consecutive nodes",
    ),
}


def _repeat_apart() -> ir.Program:
    """A transformer's two blocks recorded as one repeat with a later node between them."""
    p = ir_examples_arch.transformer()
    return replace(p, repeats=(ir.Repeat("pre", ("post", "pre"), ("attention",)),))


@pytest.mark.parametrize("case", BROKEN, ids=str)
def test_a_broken_program_names_node_and_invariant(case):
    build, message = BROKEN[case]
    with pytest.raises(ir.InvalidProgram, match=message):
        ir.validate(build())
