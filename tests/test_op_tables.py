"""Every backend's op table and the reference cover every IR op, and each op is registered where
it is emitted (a new op touches only its own modules)."""

from __future__ import annotations

import typing

import pytest

from nnspec import backends, reference
from nnspec.backends.base import OpTable
from nnspec.compiler import ir

OP_CLASSES = set(typing.get_args(ir.Op))


@pytest.mark.parametrize("name", sorted(backends.available()))
def test_every_backend_emits_every_op(name):
    table = backends.get(name).emitters
    assert isinstance(table, OpTable)
    assert set(table) == OP_CLASSES


def test_the_reference_computes_every_op():
    assert set(reference.OPS) >= OP_CLASSES


def test_an_op_registered_twice_is_refused():
    table = OpTable()
    table.emits(ir.Dense)(lambda gen, node: None)
    with pytest.raises(ValueError, match="Dense has two emitters"):
        table.emits(ir.Dense)(lambda gen, node: None)


def test_pooling_ops_say_so():
    pooled = {op for op in OP_CLASSES if getattr(op, "pools_sequence", False)}
    assert pooled == {ir.Flatten, ir.GlobalPool, ir.AttentionPool}
