"""Render an IR program as PyTorch source: ``model.py`` (an ``nn.Module``) and ``train.py``.

One :class:`TorchGenerator` renders one program: it holds the program, the Python names of its
model (assigned once) and what the ops emit. :attr:`TorchGenerator.TRANSFORMS` maps each IR op
type to its emit function (each ``ops_*`` module registers its own), which returns an
:class:`~nnspec.backends.torch.common.Emitted`: its lines for the model's ``__init__`` and
``forward``, and where the model holds the canonical weights the op owns. The templates only lay
the files out around them.

Nodes sharing a layer (:attr:`ir.Node.layer`, tied weights) share one submodule: only the first
of them creates it and owns its weights; every one of them calls it. A run of repeated layers
that the compiler unrolled from one spec layer (an :class:`~nnspec.compiler.ir.Repeat`, e.g.
``transformer_encoder`` with ``num_layers``) becomes one ``nn.ModuleList`` built, initialised and
called in loops.
"""

from __future__ import annotations

import dataclasses
import textwrap
from typing import ClassVar

from nnspec.backends.base import (
    Backend,
    OpTable,
    UnsupportedOpError,
    format_source,
    header,
    template_env,
)
from nnspec.backends.export_script import render_export_script
from nnspec.backends.predict_script import render_predict_script
from nnspec.backends.pretrained_files import pretrained_files, spec_file

# Importing the ops_* modules registers their emit functions in TRANSFORMS.
from nnspec.backends.torch import (  # noqa: F401
    ops_attention,
    ops_conv,
    ops_core,
    ops_memory,
    ops_recurrent,
)
from nnspec.backends.torch import training as training_code
from nnspec.backends.torch.common import TRANSFORMS, Emitted, WeightCode, row_index, shape_comment
from nnspec.backends.torch.naming import (
    HELPER_NAMES,
    MODULE_NAMES,
    Names,
    assign_names,
    first_of_layer,
)
from nnspec.backends.torch.repeats import Group, recurrent_stacks, repeated_groups
from nnspec.backends.train_script import render_train_script
from nnspec.compiler import ir

# The activation forward() applies to the logits of an output trained from its logits.
OUTPUT_ACTIVATIONS = {"softmax": "torch.softmax({}, dim=-1)", "sigmoid": "torch.sigmoid({})"}


class TorchGenerator:
    """Generates the PyTorch ``model.py`` of one program."""

    # Every ops_* module registers its emit functions here (``@TRANSFORMS.emits(ir.Dense)``).
    TRANSFORMS: ClassVar[OpTable] = TRANSFORMS

    def __init__(self, program: ir.Program) -> None:
        self.program = program
        self.groups = repeated_groups(program)
        for k, group in enumerate(self.groups.values()):
            group.table = "BLOCK_WEIGHTS" if k == 0 else f"BLOCK{k + 1}_WEIGHTS"
        tables = frozenset(group.table for group in self.groups.values())
        # What the shared attention helpers must support (they hold only what is used).
        blocks = [node.op for node in program.nodes if isinstance(node.op, ir.TransformerBlock)]
        attentions = [op.attention for op in blocks]
        attentions += [n.op for n in program.nodes if isinstance(n.op, ir.SelfAttention)]
        self.block_norms = sorted({op.norm_first for op in blocks})
        self.block_activation = any(op.activation != "relu" for op in blocks)
        self.block_attention_dropout = any(op.attention.dropout != op.dropout for op in blocks)
        self.attention_rotary = any(op.rotary is not None for op in attentions)
        self.stacks = recurrent_stacks(program)
        skipped = {m.name for group in self.groups.values() for m in group.members[:-1]}
        skipped |= {
            m.name for layers, drops, _ in self.stacks.values() for m in layers[:-1] + drops
        }
        self.skipped = skipped
        self.names: Names = assign_names(program, skipped, self.groups, tables)

    # ------------------------------------------------------------------------------ model.py

    def model_source(self, backend: str) -> str:
        """The formatted source of ``model.py``."""
        program = self.program
        parts = []
        for node in program.nodes:
            if node.name in self.skipped:
                continue
            if node.name in self.groups:
                parts.append(self.emit_group(self.groups[node.name]))
            elif node.name in self.stacks:
                layers, _, rate = self.stacks[node.name]
                parts.append(ops_recurrent.emit_stack(self, layers, rate))
            else:
                parts.append(self.emit(node))
        # Module-level names the model class would shadow: fixed ones, and the helpers in use.
        reserved = {name for name in MODULE_NAMES - HELPER_NAMES if name[0].isupper()}
        reserved |= {name for part in parts for name in part.helpers}
        reserved |= {name for part in parts for name, _ in part.classes}
        if program.class_name in reserved:
            raise ValueError(f"class name {program.class_name!r} is taken in model.py")
        context = {
            "header": header(program, backend),
            "program": program,
            **self.model_context(parts),
        }
        env = template_env(__package__)
        return format_source(env.get_template("model.py.j2").render(context))

    def emit(self, node: ir.Node) -> Emitted:
        """``node``'s code; a node reusing an earlier node's layer contributes its call only."""
        emit_fn = self.TRANSFORMS.get(type(node.op))
        if emit_fn is None:
            raise UnsupportedOpError("torch", node.op, node.name)
        part = emit_fn(self, node)
        if not first_of_layer(self.program, node):
            part.init, part.weights, part.classes = [], [], []
        return part

    def emit_group(self, group: Group) -> Emitted:
        """One ``nn.ModuleList`` of the group's layers, created, initialised and run in loops.

        The first member is emitted with the loop variable as its layer and the last member's
        local as both its input and output; its lines become the bodies of the loops.
        """
        first, last = group.members[0], group.members[-1]
        names = self.names
        loop = names.loops[last.name]
        attr = names.layers[last.layer_name]
        value = names.values[last.name]
        self.names = dataclasses.replace(
            names,
            layers={**names.layers, first.layer_name: loop},
            values={**names.values, first.inputs[0]: value, first.name: value},
        )
        try:
            part = self.emit(first)
        finally:
            self.names = names
        make = f"{loop} = "
        constructor = [line for line in part.init if line.startswith(make)]
        if len(constructor) != 1:
            raise ValueError(f"layer {last.layer_name!r}: cannot repeat {part.init!r}")
        count = len(group.members)
        init = [f"{attr} = nn.ModuleList([{constructor[0][len(make) :]} for _ in range({count})])"]
        rest = [line for line in part.init if not line.startswith(make)]
        if rest:
            init += [f"for {loop} in {attr}:", *(f"    {line}" for line in rest)]
        reset = [line for code in part.weights for line in code.reset]
        forward = []
        if names.values[first.inputs[0]] != value:
            forward.append(f"{value} = {names.values[first.inputs[0]]}")
        forward += [f"for {loop} in {attr}:", *(f"    {line}" for line in part.forward)]
        order = {w.name: i for i, w in enumerate(self.program.weights)}
        group.weights = sorted(part.weights, key=lambda code: order[code.weight.name])
        return Emitted(
            init=init,
            forward=forward,
            reset=[f"for {loop} in {attr}:", *(f"    {line}" for line in reset)],
            helpers=part.helpers,
            imports=part.imports,
            classes=part.classes,
            group=group,
        )

    def model_context(self, parts: list[Emitted]) -> dict[str, object]:
        """Template variables of ``model.py``."""
        program, n = self.program, self.names
        helpers = set().union(*(p.helpers for p in parts))
        imports = set().union(*(p.imports for p in parts))
        classes = [source for part in parts for _, source in part.classes]
        canonical, padding, layouts = self.canonical_table(parts)

        masks = [
            f"{local} = {n.values[mask.input]} != {mask.pad_index!r}  # (B, L), False at pads"
            for mask, local in n.masks.items()
        ]
        outputs = [n.values[name] for name in program.outputs]
        loss_doc, loss_body = training_code.loss(program.training, imports)
        constraints = [line for part in parts for code in part.weights for line in code.constrain]
        optimizer_doc, optimizer_body = training_code.optimizer(
            program.training.optimizer, constrained=bool(constraints)
        )
        renamed = [inp for inp in program.inputs if n.values[inp.name] != inp.name]
        flag = f"{n.logits}: bool = False" if n.logits else ""
        if renamed:
            signature = ", ".join(filter(None, [flag, "**inputs: torch.Tensor"]))
            unpack = [f"{n.values[inp.name]} = inputs[{inp.name!r}]" for inp in program.inputs]
        else:
            signature = ", ".join(
                filter(None, [*(f"{inp.name}: torch.Tensor" for inp in program.inputs), flag])
            )
            unpack = []
        activation = OUTPUT_ACTIVATIONS.get(program.output_activation or "")
        output_shapes = ", ".join(
            f"``{name}`` ``{shape_comment(program.node(name).shape)}``" for name in program.outputs
        )
        reset = []
        for part in parts:
            reset += part.reset if part.group else [ln for c in part.weights for ln in c.reset]
        return {
            "helpers": helpers,
            "block_norms": self.block_norms,
            "block_activation": self.block_activation,
            "block_attention_dropout": self.block_attention_dropout,
            "block_doc": self.block_doc(),
            "attention_rotary": self.attention_rotary,
            "imports": imports,
            "classes": classes,
            "blocks": [
                {"table": g.table, "cls": g.members[0].op.__class__.__name__, "entries": rows}
                for g, rows in ((p.group, self.block_rows(p.group)) for p in parts if p.group)
            ],
            "canonical": canonical,
            "padding": padding,
            "layouts": layouts,
            "init": [line for part in parts for line in part.init],
            "reset": reset,
            "constraints": constraints,
            "signature": signature,
            "logits": n.logits,
            "forward": _fit(unpack + masks + [line for part in parts for line in part.forward], 8),
            "returns": (
                f"{outputs[0]} if {n.logits} else {activation.format(outputs[0])}"
                if activation
                else ", ".join(outputs)
            ),
            "returns_type": "torch.Tensor" if len(outputs) == 1 else "tuple[torch.Tensor, ...]",
            "output_shapes": output_shapes,
            "loss_doc": loss_doc,
            "loss_body": loss_body,
            "optimizer_doc": optimizer_doc,
            "optimizer_body": optimizer_body,
            "trainable_count": f"{program.trainable_count:,}",
            "frozen_count": f"{program.frozen_count:,}",
        }

    def block_doc(self) -> list[str]:
        """The lines of ``TransformerBlock.__init__``'s docstring: what its arguments are."""
        doc = (
            "A block of ``num_heads``-head attention over ``embed_dim`` features and a "
            "feed-forward network of ``ff_dim`` hidden units"
        )
        if self.block_activation:
            doc += ", ``activation`` (ReLU by default)"
        doc += "; ``dropout`` in training"
        if self.block_attention_dropout:
            doc += " (``attention_dropout`` on the attention weights, if given)"
        if self.attention_rotary:
            doc += "; ``rotary`` (a ``RotaryEmbedding``), if given, rotates the queries and keys"
        return textwrap.wrap(doc + ".", 89)

    def block_rows(self, group: Group) -> list[str]:
        """The entries of a group's per-member weight table."""
        owner = group.owners[0]
        return [
            f"{code.weight.name[len(owner) + 1 :]!r}: "
            f"{_location(code.weight.shape, code.relative_path(), code.rows, code.layout)},"
            for code in group.weights
        ]

    def canonical_table(
        self, parts: list[Emitted]
    ) -> tuple[list[str], list[tuple[str, str]], set[str]]:
        """The entries of ``CANONICAL`` in canonical order, the padding rows and the layouts."""
        program = self.program
        by_name: dict[str, WeightCode | Group] = {}
        for part in parts:
            for code in part.weights:
                by_name[code.weight.name] = code
            if part.group:
                for owner in part.group.owners:
                    for code in part.group.weights:
                        suffix = code.weight.name[len(part.group.owners[0]) :]
                        by_name[owner + suffix] = part.group
        missing = [w.name for w in program.weights if w.name not in by_name]
        if missing:
            raise ValueError(f"no op owns the weights {missing}")
        entries: list[str] = []
        layouts: set[str] = set()
        seen: set[int] = set()
        for weight in program.weights:
            where = by_name[weight.name]
            if isinstance(where, Group):
                if id(where) in seen:
                    continue
                seen.add(id(where))
                attr = self.names.layers[where.members[-1].layer_name].removeprefix("self.")
                layouts |= {code.layout for code in where.weights}
                entries += [
                    "**{",
                    f'    f"{{name}}.{{suffix}}": (shape, f"{attr}.{{i}}.{{path}}", rows, layout)',
                    f"    for i, name in enumerate({tuple(where.owners)!r})",
                    f"    for suffix, (shape, path, rows, layout) in {where.table}.items()",
                    "},",
                ]
            else:
                layouts.add(where.layout)
                location = _location(weight.shape, where.relative_path(), where.rows, where.layout)
                entries.append(f"{weight.name!r}: {location},")
        padding = [(repr(w.name), row_index(w.zero_rows)) for w in program.weights if w.zero_rows]
        return entries, padding, layouts


def _location(shape: tuple[int, ...], path: str, rows: tuple[int, int] | None, layout: str) -> str:
    """One entry of a weight table: ``(shape, path, rows, layout)``."""
    return f"({shape!r}, {path!r}, {rows!r}, {layout!r})"


class TorchBackend(Backend):
    """Generates an idiomatic ``torch.nn.Module``, its loss and optimizer, and a training script."""

    name = "torch"
    emitters: ClassVar[OpTable] = TorchGenerator.TRANSFORMS

    def generate(self, program: ir.Program) -> dict[str, str]:
        """Render ``model.py``, ``train.py`` and, with pretrained vectors, ``pretrained.py``."""
        self.check(program)
        generator = TorchGenerator(program)
        env = template_env(__package__)
        # DDP broadcasts the buffers before each forward pass only when training changes one.
        env.globals["changing_buffers"] = any(w.state for w in program.weights)
        return {
            "model.py": generator.model_source(self.name),
            "train.py": render_train_script(env, program, self.name, generator.names.logits),
            "predict.py": render_predict_script(program, self.name),
            "export.py": render_export_script(program, self.name),
            **spec_file(program),
            **pretrained_files(program, self.name),
        }


def _fit(lines: list[str], indent: int) -> list[str]:
    """``lines`` (indented by ``indent`` in the file), with any trailing comment that would
    take a line past 100 columns moved to a line of its own above it."""
    fitted = []
    for line in lines:
        code, sep, comment = line.partition("  # ")
        if sep and indent + len(line) > 100:
            lead = code[: len(code) - len(code.lstrip())]
            fitted += [f"{lead}# {comment[0].upper()}{comment[1:]}", code]
        else:
            fitted.append(line)
    return fitted
