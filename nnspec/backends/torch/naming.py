"""The Python names of a generated PyTorch model: attributes, locals and the masks ``forward``
computes, chosen so that nothing a spec names can shadow what the module relies on: a spec name
that would (``state_dict``, ``F``, ``masked_mean`` ...) gets ``_`` appended in the code."""

from __future__ import annotations

import re
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from pathlib import Path

from nnspec.backends.base import Namespace
from nnspec.compiler import ir


def _template_helpers() -> frozenset[str]:
    """The helper classes and functions of ``templates/layers.py.j2`` (each emitted only when
    used): every module-level ``class`` and ``def`` in it."""
    source = (Path(__file__).parent / "templates" / "layers.py.j2").read_text()
    return frozenset(re.findall(r"^(?:class|def) (\w+)", source, flags=re.MULTILINE))


# The helper classes and functions (emitted only when used): the template's, and the memory
# network class written per layer by ops_memory.
HELPER_NAMES = _template_helpers() | {"MemoryNetwork"}

# Module-level names of the generated model.py: inputs and locals named like one are renamed, and
# the model class may not take one.
MODULE_NAMES = HELPER_NAMES | frozenset(
    {
        "CANONICAL",
        "CANONICAL_SHAPES",
        "F",
        "PADDING_ROWS",
        "Mapping",
        "Path",
        "build_model",
        "load_file",
        "loss_fn",
        "make_optimizer",
        "math",
        "nn",
        "np",
        "pairwise",
        "save_file",
        "self",
        "torch",
    }
)

# Public attributes of torch.nn.Module (torch 2.13) and the methods the model class adds: a
# submodule stored under one of these names would shadow it.
MODULE_ATTRIBUTES = frozenset(
    {
        "T_destination",
        "add_module",
        "apply",
        "bfloat16",
        "buffers",
        "call_super_init",
        "canonical_gradients",
        "canonical_state",
        "children",
        "compile",
        "cpu",
        "cuda",
        "double",
        "dump_patches",
        "eval",
        "extra_repr",
        "float",
        "forward",
        "get_buffer",
        "get_extra_state",
        "get_parameter",
        "get_submodule",
        "half",
        "ipu",
        "load_canonical",
        "load_canonical_state",
        "load_state_dict",
        "modules",
        "mtia",
        "named_buffers",
        "named_children",
        "named_modules",
        "named_parameters",
        "parameters",
        "register_backward_hook",
        "register_buffer",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
        "register_full_backward_pre_hook",
        "register_load_state_dict_post_hook",
        "register_load_state_dict_pre_hook",
        "register_module",
        "register_parameter",
        "register_state_dict_post_hook",
        "register_state_dict_pre_hook",
        "requires_grad_",
        "reset_parameters",
        "save_canonical",
        "set_extra_state",
        "set_submodule",
        "share_memory",
        "state_dict",
        "to",
        "to_empty",
        "train",
        "training",
        "type",
        "xpu",
        "zero_grad",
    }
)


def is_layer(program: ir.Program, node: ir.Node) -> bool:
    """Whether a submodule of the model computes ``node`` (one per layer; tied nodes share it):
    every op that owns weights, and dropout (``nn.Dropout`` follows the model's train/eval mode).
    Embedding lookups are the tables' own modules."""
    if isinstance(node.op, ir.EmbeddingLookup):
        return False
    return isinstance(node.op, ir.Dropout) or bool(program.op_weights(node.op))


@dataclass(frozen=True)
class Names:
    """The Python names of one program's generated model.

    Attributes:
        tables: the embedding submodule of each table, by table name.
        positions: the positional-encoding submodule of each table that has one.
        layers: the expression reaching the submodule of each layer (:attr:`ir.Node.layer_name`)
            that has one, such as ``self.dense``.
        values: local variable in ``forward`` of each model input and node.
        masks: the padding masks ``forward`` computes, in order, with their local variables.
        loops: the loop variable of each group of repeated layers, by its last node's name.
        logits: the keyword of ``forward`` that asks for the logits (a program with an
            :attr:`~nnspec.compiler.ir.Program.output_activation`), else ``""``.
    """

    tables: dict[str, str]
    positions: dict[str, str]
    layers: dict[str, str]
    values: dict[str, str]
    masks: dict[ir.Mask, str]
    loops: dict[str, str] = field(default_factory=dict)
    logits: str = ""

    def layer(self, node: ir.Node) -> str:
        """The expression reaching the submodule computing ``node`` (``self.<attribute>``)."""
        return self.layers[node.layer_name]


def zero_mask(program: ir.Program, node: ir.Node) -> ir.Mask | None:
    """The mask an embedding lookup multiplies its output by, if it needs one.

    Without a positional encoding the padding row of the table is already 0.0, so no multiply is
    needed (see :class:`ir.EmbeddingTable`).
    """
    assert isinstance(node.op, ir.EmbeddingLookup)
    table = program.table(node.op.table)
    if table.pad_index is None or not table.zero_padded_positions:
        return None
    if table.positional is None and table.pad_index in program.weight(table.weight).zero_rows:
        return None
    return ir.Mask(node.inputs[0], table.pad_index)


def input_mask(program: ir.Program, node: ir.Node) -> ir.Mask | None:
    """The padding mask of ``node``'s (first) input: that node's mask, none for a model input."""
    source = node.inputs[0]
    return program.node(source).mask if program.is_node(source) else None


def first_of_layer(program: ir.Program, node: ir.Node) -> bool:
    """Whether ``node`` is the first node computed by its layer (which then creates it)."""
    return program.first_nodes[node.layer_name] == node.name


def assign_names(
    program: ir.Program,
    skipped: Set[str] = frozenset(),
    loops: Iterable[str] = (),
    constants: frozenset[str] = frozenset(),
) -> Names:
    """Assign every attribute and local name of the generated model, once per generation.

    ``skipped`` nodes get no attribute or local of their own: they are computed inside another
    node's submodule (the layers of a stack or of a ``nn.ModuleList`` but the last, which names
    it). Each node of ``loops`` gets a loop variable; ``constants`` are further module-level
    names of the generated file.
    Whatever a spec names is renamed (``_`` appended) where it would collide with a name the
    module relies on: ``nn.Module`` attributes and the module-level names.
    """
    attrs = Namespace(MODULE_ATTRIBUTES, private_ok=False)
    tables = {table.name: attrs.claim(table.name) for table in program.tables}
    positions = {
        table.name: attrs.claim(f"{table.name}_positions")
        for table in program.tables
        if table.positional is not None
    }
    layers: dict[str, str] = {}
    for node in program.nodes:
        if node.name in skipped:
            continue
        if is_layer(program, node) and node.layer_name not in layers:
            layers[node.layer_name] = f"self.{attrs.claim(node.layer_name)}"

    local = Namespace(MODULE_NAMES | constants)
    values = {inp.name: local.claim(inp.name) for inp in program.inputs}
    logits = local.claim("logits") if program.output_activation else ""
    masks: dict[ir.Mask, str] = {}
    for node in program.nodes:
        if isinstance(node.op, ir.EmbeddingLookup):
            mask = zero_mask(program, node)
        else:
            mask = program.read_mask(node)
        if mask is not None and mask not in masks:
            masks[mask] = local.claim(f"{mask.input}_mask")
    for node in program.nodes:
        if node.name not in skipped:
            values[node.name] = local.claim(node.name)
    loop_names = {last: local.claim("block") for last in loops}
    return Names(tables, positions, layers, values, masks, loop_names, logits)
