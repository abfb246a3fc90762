"""Render an IR program as Keras 3 source: ``model.py`` (a ``keras.Model``) and ``train.py``.

:class:`KerasGenerator` holds one generation: the program, its Python names and the helpers the
file needs. Its :attr:`~KerasGenerator.OPS` table maps each IR op class to an emit function (in
a module per op family) returning an :class:`Emitted`: lines of the model's ``__init__``, the
expression ``call`` computes, the canonical weights the layer holds. Helper classes and
functions are templates under ``templates/helpers``; ``templates/model.py.j2`` lays the file out.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import jinja2

from nnspec.backends.base import (
    Backend,
    OpTable,
    UnsupportedOpError,
    format_source,
    header,
    template_env,
)
from nnspec.backends.export_script import render_export_script

# Importing the op modules registers their emit functions in OPS.
from nnspec.backends.keras import (  # noqa: F401
    attention,
    embeddings,
    layers,
    memory,
    recurrent,
    training,
)
from nnspec.backends.keras.code import OPS, Emitted, WeightCode, docstring, shape, with_args
from nnspec.backends.keras.naming import MODEL_ATTRIBUTES, assign_names, compute_mask
from nnspec.backends.predict_script import render_predict_script
from nnspec.backends.pretrained_files import pretrained_files, spec_file
from nnspec.backends.train_script import render_train_script
from nnspec.compiler import ir

__all__ = ["MODEL_ATTRIBUTES", "KerasBackend", "KerasGenerator"]


# The activation ``call`` applies to the logits of an output trained from its logits.
OUTPUT_ACTIVATIONS = {"softmax": "ops.softmax({}, axis=-1)", "sigmoid": "ops.sigmoid({})"}


class KerasGenerator:
    """One generation of Keras source for one program."""

    # The op modules register their emit functions here (``@OPS.emits(ir.Dense)``).
    OPS: ClassVar[OpTable] = OPS

    def __init__(self, program: ir.Program, env: jinja2.Environment) -> None:
        self.program = program
        self.names = assign_names(program)
        self.env = env
        self.helpers: dict[str, str] = {}

    # ------------------------------------------------------------------ helpers

    def helper(self, name: str) -> str:
        """Emit the module-level helper ``templates/helpers/<name>.py.j2`` once; its name."""
        if name not in self.helpers:
            template = self.env.get_template(f"helpers/{name}.py.j2")
            self.add_helper(name, template.render(h=self.helper, **self._helper_context(name)))
        return name

    def add_helper(self, name: str, source: str) -> str:
        """Emit the module-level helper ``name`` (``source``) once; its name."""
        if name == self.program.class_name:
            raise ValueError(f"the model class cannot be named after the helper {name!r}")
        if self.helpers.setdefault(name, source.strip("\n")) != source.strip("\n"):
            raise ValueError(f"two different helpers are both named {name!r}")
        return name

    def _helper_context(self, name: str) -> dict[str, Any]:
        """What a helper's template is written for."""
        blocks = [n.op for n in self.program.nodes if isinstance(n.op, ir.TransformerBlock)]
        if name == "TransformerEncoderBlock":
            return {
                "rotary": any(op.attention.rotary for op in blocks),
                "initializers": any(
                    attention.custom_initializers(self.program, op) for op in blocks
                ),
            }
        if name == "MultiHeadSelfAttention":
            ops: list[ir.SelfAttention | ir.TransformerBlock] = [
                n.op for n in self.program.nodes if isinstance(n.op, ir.SelfAttention)
            ]
            ops += blocks
            return {
                "rotary": any(op.rotary for op in ops if isinstance(op, ir.SelfAttention))
                or any(op.attention.rotary for op in blocks),
                "initializers": any(attention.custom_initializers(self.program, op) for op in ops),
            }
        if name in ("LSTMCellWithRecurrentBias", "LSTMWithRecurrentBias"):
            return {"package": self.program.name}
        return {}

    # ------------------------------------------------------------------ the model

    def emit(self, node: ir.Node) -> Emitted:
        """What ``node`` contributes, by :attr:`OPS`."""
        emit = self.OPS.get(type(node.op))
        if emit is None:
            raise UnsupportedOpError("keras", node.op, node.name)
        return emit(self, node)

    def _runs(self, parts: list[Emitted]) -> list[tuple[int, int]]:
        """``(first, last)`` node indices of each run of blocks built in one loop: the
        compiler's repeats (:class:`~nnspec.compiler.ir.Repeat`) with nothing between members,
        each the same layer class over the previous one's output, used by nothing else."""
        nodes = self.program.nodes
        index = {node.name: i for i, node in enumerate(nodes)}
        uses: dict[str, int] = {}
        for node in nodes:
            for name in node.inputs:
                uses[name] = uses.get(name, 0) + 1
        layer_uses: dict[str, int] = {}
        for node in nodes:
            layer_uses[node.layer_name] = layer_uses.get(node.layer_name, 0) + 1
        runs = []
        for repeat in self.program.repeats:
            i, j = index[repeat.members[0]], index[repeat.members[-1]]
            own = all(
                layer_uses[nodes[k].layer_name] == 1
                and all(code.variable is not None for code in parts[k].weights)
                for k in range(i, j + 1)
            )
            if (
                not repeat.between
                and own
                and all(self._continues(nodes, parts, i, k, uses) for k in range(i + 1, j + 1))
            ):
                runs.append((i, j))
        return runs

    def _continues(
        self, nodes: tuple[ir.Node, ...], parts: list[Emitted], first: int, k: int, uses: dict
    ) -> bool:
        """Whether node ``k`` computes the same layer as node ``first`` on node ``k - 1``'s
        output, which nothing else reads."""
        previous = nodes[k - 1]
        return (
            bool(parts[first].constructor)
            and parts[k].constructor == parts[first].constructor
            and parts[k].extra == parts[first].extra
            and nodes[k].inputs == (previous.name,)
            and uses.get(previous.name) == 1
            and previous.name not in self.program.outputs
        )

    def model_context(self) -> dict[str, Any]:
        """The template context of ``model.py``."""
        program, n = self.program, self.names
        parts = [embeddings.emit_table(self, table) for table in program.tables]
        tables = len(parts)
        layer_ops: dict[str, ir.Op] = {}
        for node in program.nodes:
            emitted = self.emit(node)
            if node.layer_name in layer_ops:  # a tied layer: built and owned by its first node
                emitted = Emitted(call=emitted.call)
            layer_ops[node.layer_name] = node.op
            parts.append(emitted)
        runs = dict(self._runs(parts[tables:]))

        dims = {inp.name: (None, *inp.dims) for inp in program.inputs}
        call = [
            f"{n.values[inp.name]} = inputs[{inp.name!r}]  # {shape(dims[inp.name])}"
            for inp in program.inputs
        ]
        call += [
            f"{variable} = {compute_mask(mask, n.values)}  # {shape(dims[mask.input])}"
            for variable, mask in n.mask_variables
        ]
        init = [line for part in parts[:tables] for line in part.init]
        codes = {code.name: code for part in parts[:tables] for code in part.weights}
        blocks: list[dict[str, Any]] = []
        compact: dict[str, str] = {}  # canonical name -> the entry of its run (first weight)
        i = 0
        while i < len(program.nodes):
            node, emitted = program.nodes[i], parts[tables + i]
            last = runs.get(i, i)
            comment = f"  # {shape(program.nodes[last].shape)}"
            if last == i:
                init += emitted.init
                codes.update((code.name, code) for code in emitted.weights)
                call.append(f"{n.values[node.name]} = {emitted.call}{comment}")
                i += 1
                continue
            # A run of blocks: a list of layers, built and called in a loop.
            run = program.nodes[i : last + 1]
            attr = n.attrs[run[-1].layer_name]
            layer_names = ", ".join(repr(n.attrs[m.layer_name]) for m in run)
            init += [
                f"self.{attr} = [",
                f"    {with_args(emitted.constructor, 'name=name')}",
                f"    for name in ({layer_names})",
                "]",
            ]
            element = n.local_space.claim("block")
            source, target = n.values[node.inputs[0]], n.values[run[-1].name]
            if source != target:
                call.append(f"{target} = {source}")
            call += [
                f"for {element} in self.{attr}:",
                f"    {target} = {element}({', '.join([target, *emitted.extra])}){comment}",
            ]
            block = self._run_weights(run, parts[tables + i : tables + last + 1], attr, codes)
            if block is not None:
                blocks.append(block)
                compact.update(dict.fromkeys(block["names"], ""))
                compact[block["names"][0]] = block["entry"]
            i = last + 1
        call = self._returning(call)

        missing = [w.name for w in program.weights if w.name not in codes]
        if missing:
            raise ValueError(f"no layer owns the canonical weights {missing}")
        canonical = []
        for w in program.weights:
            code = codes[w.name]
            if w.name in compact:
                canonical += [compact[w.name]] if compact[w.name] else []
            else:
                canonical.append(f"{w.name!r}: ({w.shape!r}, {code.variable!r})")
        special = [codes[w.name] for w in program.weights if codes[w.name].variable is None]
        return {
            "init": init,
            "call": call,
            "blocks": blocks,
            "canonical": canonical,
            "special": special,
            "special_grads": [code for code in special if code.grad is not None],
        }

    def _run_weights(
        self, run: tuple[ir.Node, ...], parts: list[Emitted], attr: str, codes: dict
    ) -> dict[str, Any] | None:
        """Put the weights of a run of blocks (``self.<attr>[k]``) into ``codes``; when every
        block holds its weights alike, the table of one block and the ``CANONICAL`` entry that
        expands it (else ``None``: each weight gets its own entry)."""
        n = self.names
        layouts: list[list[tuple[str, tuple[int, ...], str]] | None] = []
        for k, (node, part) in enumerate(zip(run, parts, strict=True)):
            own = n.attrs[node.layer_name]
            layout: list[tuple[str, tuple[int, ...], str]] | None = []
            for code in part.weights:
                relative = code.variable.removeprefix(f"{own}.")  # type: ignore[union-attr]
                codes[code.name] = WeightCode(code.name, variable=f"{attr}.{k}.{relative}")
                suffix = code.name.removeprefix(f"{node.layer_name}.")
                if suffix == code.name or relative == code.variable:
                    layout = None
                if layout is not None:
                    weight = self.program.weight(code.name)
                    layout.append((suffix, weight.shape, relative))
            layouts.append(layout)
        if layouts[0] is None or any(layout != layouts[0] for layout in layouts):
            return None
        table = n.attr_space.claim(f"{attr.upper()}_WEIGHTS")
        prefixes = ", ".join(repr(node.layer_name) for node in run)
        entry = (
            f'**{{f"{{name}}.{{suffix}}": (shape, f"{attr}.{{i}}.{{path}}") '
            f"for i, name in enumerate(({prefixes})) "
            f"for suffix, (shape, path) in {table}.items()}}"
        )
        names = [code.name for part in parts for code in part.weights]
        return {"table": table, "attr": attr, "layout": layouts[0], "entry": entry, "names": names}

    def _returning(self, call: list[str]) -> list[str]:
        """``call`` ending in a ``return`` of the program's outputs."""
        program, n = self.program, self.names
        if len(program.outputs) > 1:
            items = ", ".join(f"{o!r}: {n.values[o]}" for o in program.outputs)
            return [*call, f"return {{{items}}}"]
        target = n.values[program.outputs[0]]
        activation = OUTPUT_ACTIVATIONS.get(program.output_activation or "")
        if activation is not None:  # the output node computed logits
            return [*call, f"return {target} if logits else {activation.format(target)}"]
        last = call[-1]
        if last.startswith(f"{target} = ") and program.outputs[0] == program.nodes[-1].name:
            return [*call[:-1], f"return {last[len(target) + 3 :]}"]
        return [*call, f"return {target}"]

    def files(self) -> dict[str, str]:
        """``model.py``, ``train.py`` and, with pretrained vectors, ``pretrained.py``."""
        program = self.program
        context = self.model_context()
        dims = {inp.name: (None, *inp.dims) for inp in program.inputs}
        context.update(
            {
                "module_doc": "\n".join(docstring(self._module_doc(), 0)),
                "header": header(program, "keras"),
                "program": program,
                "shapes": {w.name: w.shape for w in program.weights},
                "helpers": list(self.helpers.values()),
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
                "loss": training.emit_loss(program),
                "optimizer": training.emit_optimizer(self),
            }
        )
        return {
            "model.py": format_source(self.env.get_template("model.py.j2").render(context)),
            "train.py": render_train_script(
                self.env, program, "keras", "logits" if program.output_activation else ""
            ),
            "predict.py": render_predict_script(program, "keras"),
            "export.py": render_export_script(program, "keras"),
            **spec_file(program),
            **pretrained_files(program, "keras"),
        }

    def _module_doc(self) -> str:
        """The docstring of ``model.py``."""
        return (
            f"The ``{self.program.name}`` model in Keras 3, with its loss and optimizer."
            "\n\nWeights load and save in canonical form (safetensors; names such as "
            "``<layer>.kernel``, dense kernels ``[in, out]``, embedding tables "
            "``[vocab_size, dim]``), so one file serves this model and the PyTorch version of the "
            "same spec."
        )


class KerasBackend(Backend):
    """Keras 3 on any of its engines (TensorFlow, JAX, PyTorch): a ``keras.Model`` subclass, a
    PyTorch-exact optimizer, and a training script for each engine."""

    name = "keras"
    emitters: ClassVar[OpTable] = KerasGenerator.OPS

    def engines(self) -> tuple[str, ...]:
        """Keras 3's engines."""
        return ("tensorflow", "jax", "torch")

    def other_engines(self) -> tuple[str, ...]:
        """The installed engines besides the one this process's Keras uses."""
        if importlib.util.find_spec("keras") is None:
            return ()
        current = current_engine()
        return tuple(
            e for e in self.engines() if e != current and importlib.util.find_spec(e) is not None
        )

    def engine_env(self, engine: str) -> dict[str, str]:
        """``KERAS_BACKEND``, the variable Keras picks its engine by."""
        if engine not in self.engines():
            return super().engine_env(engine)
        return {"KERAS_BACKEND": engine}

    def generate(self, program: ir.Program) -> dict[str, str]:
        """Render ``model.py``, ``train.py`` and, with pretrained vectors, ``pretrained.py``."""
        self.check(program)
        env = template_env(__package__)
        env.filters["py"] = repr
        return KerasGenerator(program, env).files()


def current_engine() -> str:
    """The engine Keras would use in this process, read without importing it: ``KERAS_BACKEND``,
    else the ``backend`` of Keras' configuration file, else TensorFlow."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        config = json.loads((home / "keras.json").read_text())
    except (OSError, ValueError):
        return "tensorflow"
    backend = config.get("backend") if isinstance(config, dict) else None
    return backend if isinstance(backend, str) else "tensorflow"
