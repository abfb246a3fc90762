"""Render an IR program as PyTorch source: ``model.py`` (an ``nn.Module``) and ``train.py``.

Each IR op has one emitter (see :attr:`TorchBackend.emitters`; they live in the ``ops_*``
modules) returning an :class:`~nnspec.backends.torch.code.Emitted`: its lines for the model's
``__init__`` and ``forward``, and how the model reaches the canonical weights the op owns. The
templates only lay the files out around them.

Nodes sharing a layer (:attr:`ir.Node.layer`, tied weights) share one submodule: only the first
of them creates it and owns its weights; every one of them calls it.
"""

from __future__ import annotations

from typing import ClassVar

from nnspec.backends.base import Backend, format_source, header, template_env
from nnspec.backends.pretrained_files import pretrained_files
from nnspec.backends.torch import ops_attention, ops_conv, ops_core, ops_memory, ops_recurrent
from nnspec.backends.torch import training as training_code
from nnspec.backends.torch.common import Emitted, row_index, shape_comment
from nnspec.backends.torch.naming import HELPER_NAMES, MODULE_NAMES, first_of_layer, names
from nnspec.backends.train_script import render_train_script
from nnspec.compiler import ir


class TorchBackend(Backend):
    """Generates an idiomatic ``torch.nn.Module``, its loss and optimizer, and a training script."""

    name = "torch"
    emitters: ClassVar[dict[type, str]] = {
        ir.EmbeddingLookup: "emit_embedding",
        ir.Flatten: "emit_flatten",
        ir.Dense: "emit_dense",
        ir.Dropout: "emit_dropout",
        ir.GlobalPool: "emit_global_pool",
        ir.Conv1D: "emit_conv1d",
        ir.Pool1D: "emit_pool1d",
        ir.Recurrent: "emit_recurrent",
        ir.LayerNorm: "emit_layer_norm",
        ir.BatchNorm: "emit_batch_norm",
        ir.Merge: "emit_merge",
        ir.SelfAttention: "emit_self_attention",
        ir.TransformerBlock: "emit_transformer_block",
        ir.MemoryNetwork: "emit_memory_network",
    }

    emit_embedding = staticmethod(ops_core.emit_embedding)
    emit_flatten = staticmethod(ops_core.emit_flatten)
    emit_dense = staticmethod(ops_core.emit_dense)
    emit_dropout = staticmethod(ops_core.emit_dropout)
    emit_global_pool = staticmethod(ops_core.emit_global_pool)
    emit_merge = staticmethod(ops_core.emit_merge)
    emit_layer_norm = staticmethod(ops_core.emit_layer_norm)
    emit_batch_norm = staticmethod(ops_core.emit_batch_norm)
    emit_conv1d = staticmethod(ops_conv.emit_conv1d)
    emit_pool1d = staticmethod(ops_conv.emit_pool1d)
    emit_recurrent = staticmethod(ops_recurrent.emit_recurrent)
    emit_self_attention = staticmethod(ops_attention.emit_self_attention)
    emit_transformer_block = staticmethod(ops_attention.emit_transformer_block)
    emit_memory_network = staticmethod(ops_memory.emit_memory_network)

    # ------------------------------------------------------------------------------ files

    def generate(self, program: ir.Program) -> dict[str, str]:
        """Render ``model.py``, ``train.py`` and, with pretrained vectors, ``pretrained.py``."""
        self.check(program)
        env = template_env(__package__)
        parts = [self._emit(program, node) for node in program.nodes]
        # Module-level names the model class would shadow: fixed ones, and the helpers in use.
        reserved = {name for name in MODULE_NAMES - HELPER_NAMES if name[0].isupper()}
        reserved |= {name for part in parts for name in part.helpers}
        reserved |= {name for part in parts for name, _ in part.classes}
        if program.class_name in reserved:
            raise ValueError(f"class name {program.class_name!r} is taken in model.py")
        context = {
            "header": header(program, self.name),
            "program": program,
            **self._model_context(program, parts),
        }
        return {
            "model.py": format_source(env.get_template("model.py.j2").render(context)),
            "train.py": render_train_script(env, program, self.name),
            **pretrained_files(program, self.name),
        }

    def _emit(self, program: ir.Program, node: ir.Node) -> Emitted:
        """``node``'s code; a node reusing an earlier node's layer contributes its call only."""
        part = self.emitter_for(node)(program, node)
        assert isinstance(part, Emitted)
        if not first_of_layer(program, node):
            part.init, part.weights, part.classes = [], [], []
        return part

    def _model_context(self, program: ir.Program, parts: list[Emitted]) -> dict[str, object]:
        """Template variables of ``model.py``."""
        n = names(program)
        by_name = {code.weight.name: code for part in parts for code in part.weights}
        missing = [w.name for w in program.weights if w.name not in by_name]
        if missing:
            raise ValueError(f"no op owns the weights {missing}")
        weights = [by_name[w.name] for w in program.weights]
        helpers = set().union(*(p.helpers for p in parts))
        imports = set().union(*(p.imports for p in parts))
        classes = [source for part in parts for _, source in part.classes]

        masks = [
            f"{local} = {n.values[mask.input]} != {mask.pad_index!r}  # (B, L), False at pads"
            for mask, local in n.masks.items()
        ]
        outputs = [n.values[name] for name in program.outputs]
        loss_doc, loss_body = training_code.loss(program.training, imports)
        optimizer_doc, optimizer_body = training_code.optimizer(program.training.optimizer)

        load = []
        for code in weights:
            source = f"tensors[{code.weight.name!r}]"
            if code.weight.zero_rows:
                load.append(f"{source}[{row_index(code.weight.zero_rows)}] = 0.0")
            load.append(code.load.format(source))

        output_shapes = ", ".join(
            f"``{name}`` ``{shape_comment(program.node(name).shape)}``" for name in program.outputs
        )
        return {
            "helpers": helpers,
            "imports": imports,
            "classes": classes,
            "shapes": [(repr(code.weight.name), repr(code.weight.shape)) for code in weights],
            "init": [line for part in parts for line in part.init],
            "reset": [line for code in weights for line in code.reset],
            "signature": ", ".join(f"{inp.name}: torch.Tensor" for inp in program.inputs),
            "forward": _fit(masks + [line for part in parts for line in part.forward], 8),
            "returns": ", ".join(outputs),
            "returns_type": "torch.Tensor" if len(outputs) == 1 else "tuple[torch.Tensor, ...]",
            "output_shapes": output_shapes,
            "state": [(repr(code.weight.name), code.value) for code in weights],
            "grads": [(repr(code.weight.name), code.grad) for code in weights if code.grad],
            "load": load,
            "loss_doc": loss_doc,
            "loss_body": loss_body,
            "optimizer_doc": optimizer_doc,
            "optimizer_body": optimizer_body,
            "trainable_count": f"{program.trainable_count:,}",
            "frozen_count": f"{program.frozen_count:,}",
        }


def _fit(lines: list[str], indent: int) -> list[str]:
    """``lines`` (indented by ``indent`` in the file), with any trailing comment that would
    take a line past 100 columns moved to a line of its own above it."""
    fitted = []
    for line in lines:
        code, sep, comment = line.partition("  # ")
        if sep and indent + len(line) > 100:
            fitted += [f"# {comment[0].upper()}{comment[1:]}", code]
        else:
            fitted.append(line)
    return fitted
