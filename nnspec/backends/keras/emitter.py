"""Render an IR program as Keras 3 source: ``model.py`` (a ``keras.Model``) and ``train.py``.

Each IR op has one ``emit_*`` function (see :attr:`KerasBackend.emitters`), in a module per op
family, returning an :class:`Emitted`: its lines for the model's ``__init__``, the expression its
``call`` computes, the canonical weights it owns and the module-level helpers it needs. Embedding
tables, the loss and the optimizer have emitters of their own. The templates only lay the files
out around them.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from nnspec.backends.base import Backend, format_source, header, template_env
from nnspec.backends.keras import attention, embeddings, layers, memory, recurrent, training
from nnspec.backends.keras.code import Emitted, WeightCode, docstring, shape
from nnspec.backends.keras.naming import MODEL_ATTRIBUTES, compute_mask, names
from nnspec.backends.pretrained_files import pretrained_files
from nnspec.backends.train_script import render_train_script
from nnspec.compiler import ir

__all__ = ["MODEL_ATTRIBUTES", "KerasBackend"]


class KerasBackend(Backend):
    """Keras 3 on TensorFlow: a ``keras.Model`` subclass, a PyTorch-exact optimizer, and a
    ``model.fit`` training script."""

    name = "keras"
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

    emit_table = staticmethod(embeddings.emit_table)
    emit_embedding = staticmethod(embeddings.emit_embedding)
    emit_flatten = staticmethod(layers.emit_flatten)
    emit_dense = staticmethod(layers.emit_dense)
    emit_dropout = staticmethod(layers.emit_dropout)
    emit_global_pool = staticmethod(layers.emit_global_pool)
    emit_conv1d = staticmethod(layers.emit_conv1d)
    emit_pool1d = staticmethod(layers.emit_pool1d)
    emit_layer_norm = staticmethod(layers.emit_layer_norm)
    emit_batch_norm = staticmethod(layers.emit_batch_norm)
    emit_merge = staticmethod(layers.emit_merge)
    emit_recurrent = staticmethod(recurrent.emit_recurrent)
    emit_self_attention = staticmethod(attention.emit_self_attention)
    emit_transformer_block = staticmethod(attention.emit_transformer_block)
    emit_memory_network = staticmethod(memory.emit_memory_network)
    emit_loss = staticmethod(training.emit_loss)
    emit_optimizer = staticmethod(training.emit_optimizer)

    def generate(self, program: ir.Program) -> dict[str, str]:
        """Render ``model.py``, ``train.py`` and, with pretrained vectors, ``pretrained.py``."""
        self.check(program)
        n = names(program)
        parts = [self.emit_table(program, table) for table in program.tables]
        dims = {inp.name: (None, *inp.dims) for inp in program.inputs}
        call = [
            f"{n.values[inp.name]} = inputs[{inp.name!r}]  # {shape(dims[inp.name])}"
            for inp in program.inputs
        ]
        call += [
            f"{variable} = {compute_mask(mask, n.values)}  # {shape(dims[mask.input])}"
            for variable, mask in n.mask_variables
        ]
        layer_ops: dict[str, ir.Op] = {}
        for i, node in enumerate(program.nodes):
            emitted = self.emitter_for(node)(program, node)
            assert isinstance(emitted, Emitted)
            if node.layer_name in layer_ops:  # a tied layer: built and owned by its first node
                if layer_ops[node.layer_name] != node.op:
                    raise ValueError(f"node {node.name!r}: layer {node.layer_name!r} is another op")
                emitted = Emitted(call=emitted.call)
            layer_ops[node.layer_name] = node.op
            parts.append(emitted)
            comment = f"  # {shape(node.shape)}"
            if i == len(program.nodes) - 1 and program.outputs == (node.name,):
                call.append(f"return {emitted.call}{comment}")
            else:
                call.append(f"{n.values[node.name]} = {emitted.call}{comment}")
        if not call[-1].startswith("return "):
            if len(program.outputs) == 1:
                call.append(f"return {n.values[program.outputs[0]]}")
            else:
                items = ", ".join(f"{o!r}: {n.values[o]}" for o in program.outputs)
                call.append(f"return {{{items}}}")

        helpers: dict[str, str] = {}
        weights: dict[str, WeightCode] = {}
        for part in parts:
            for name, source in part.helpers.items():
                if helpers.setdefault(name, source) != source:
                    raise ValueError(f"two different helpers are both named {name!r}")
            weights.update((code.name, code) for code in part.weights)
        missing = [w.name for w in program.weights if w.name not in weights]
        if missing:
            raise ValueError(f"no layer owns the canonical weights {missing}")
        ordered = [self._fit(weights[w.name]) for w in program.weights]
        optimizer = self.emit_optimizer(program)

        env = template_env(__package__)
        env.filters["py"] = repr
        context = {
            "module_doc": "\n".join(docstring(self._module_doc(program), 0)),
            "header": header(program, self.name),
            "program": program,
            "names": n,
            "shapes": {w.name: w.shape for w in program.weights},
            "helpers": [source.strip("\n") for source in helpers.values()],
            "init": [line for part in parts for line in part.init],
            "call": call,
            "weights": ordered,
            "trainable": [code for code in ordered if code.grad is not None],
            "output": " and ".join(
                f"``{o}`` {shape(program.node(o).shape)}" for o in program.outputs
            ),
            "signature": ", ".join(
                f"``{inp.name}`` {shape(dims[inp.name])}" for inp in program.inputs
            ),
            "build_inputs": ", ".join(
                f"{inp.name!r}: np.zeros({(1, *inp.dims)!r}, dtype={inp.dtype!r})"
                for inp in program.inputs
            ),
            "loss": self.emit_loss(program),
            "optimizer": optimizer,
        }
        return {
            "model.py": format_source(env.get_template("model.py.j2").render(context)),
            "train.py": render_train_script(env, program, self.name),
            **pretrained_files(program, self.name),
        }

    @staticmethod
    def _fit(code: WeightCode) -> WeightCode:
        """``code`` with its value parenthesized when its ``canonical_state`` line would pass
        100 columns (ruff splits a parenthesized value, not an attribute chain)."""
        if 12 + len(repr(code.name)) + len(": ,") + len(code.value) <= 100:
            return code
        return dataclasses.replace(code, value=f"(\n{code.value}\n)")

    @staticmethod
    def _module_doc(program: ir.Program) -> str:
        """The docstring of ``model.py``."""
        return (
            f"The ``{program.name}`` model in Keras 3, with its loss and optimizer."
            "\n\nWeights load and save in canonical form (safetensors; names such as "
            "``<layer>.kernel``, dense kernels ``[in, out]``, embedding tables "
            "``[vocab_size, dim]``), so one file serves this model and the PyTorch version of the "
            "same spec."
        )
