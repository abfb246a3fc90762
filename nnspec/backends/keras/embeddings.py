"""Embedding tables: the layer computing each table's lookup formula (see
:class:`nnspec.compiler.ir.EmbeddingTable`), and the lookups that call it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from nnspec.backends.keras.code import (
    OPS,
    Emitted,
    WeightCode,
    constraint,
    docstring,
    indent,
    initializer,
    variable,
    weight_initializer,
)
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.keras.emitter import KerasGenerator


@dataclass(frozen=True)
class TableKind:
    """What decides the code of an embedding layer class (tables alike share one class).

    ``mask``: where the output is multiplied by ``ids != pad_index``: ``"end"`` after the
    positions are added (``zero_padded_positions``), ``"lookup"`` on the looked-up vectors (only
    to give the padding row of a trainable table a zero gradient), or nowhere.
    """

    storage: Literal["all", "none", "rows"]
    pad: bool
    scaled: bool
    positional: Literal["sinusoidal", "learned"] | None
    mask: Literal["end", "lookup"] | None
    offset: Literal["trainable", "frozen"] | None = None
    constrained: bool = False

    @classmethod
    def of(cls, program: ir.Program, table: ir.EmbeddingTable) -> TableKind:
        """The kind of ``table`` (whose weights :func:`ir.validate` checked: the zero rows are
        the pad row, learned positions train whole)."""
        weight = program.weight(table.weight)
        positional = table.positional
        pad = table.pad_index is not None
        if pad and positional is not None and table.zero_padded_positions:
            mask: Literal["end", "lookup"] | None = "end"
        elif pad and weight.trainable == "all":
            mask = "lookup"
        else:
            mask = None
        return cls(
            storage=weight.trainable,
            pad=pad,
            scaled=table.scale != 1.0,
            positional=None if positional is None else positional.kind,
            mask=mask,
            offset=None if table.offset is None else _offset_kind(program, table.offset),
            constrained=weight.constraint is not None,
        )

    @property
    def plain(self) -> bool:
        """Whether ``keras.layers.Embedding`` computes it as it is."""
        return self.storage != "rows" and not (
            self.pad or self.scaled or self.positional or self.offset
        )

    @property
    def class_name(self) -> str:
        """The generated layer class, named after what it does."""
        storage = {"all": "", "none": "Frozen", "rows": "PartiallyTrainable"}[self.storage]
        suffix = {None: "", "sinusoidal": "WithSinusoids", "learned": "WithLearnedPositions"}
        name = f"{storage}{'Padded' if self.pad else ''}{'Scaled' if self.scaled else ''}"
        name += {None: "", "trainable": "SharedOffset", "frozen": "FixedOffset"}[self.offset]
        name += f"Embedding{suffix[self.positional]}"
        name = f"Constrained{name}" if self.constrained else name
        if self.pad and self.positional and self.mask != "end":
            name += "AtPads"
        return name

    def params(self) -> list[str]:
        """The constructor's parameters, in order."""
        params = ["vocab_size", "dim"]
        params += ["pad_index"] if self.pad else []
        params += ["trainable_rows"] if self.storage == "rows" else []
        params += ["offset_rows"] if self.offset else []
        params += ["scale"] if self.scaled else []
        params += ["max_length"] if self.positional else []
        params += ["base"] if self.positional == "sinusoidal" else []
        params += ["embeddings_initializer"]
        params += ["embeddings_constraint"] if self.constrained else []
        params += ["offset_initializer"] if self.offset else []
        params += ["positions_initializer"] if self.positional == "learned" else []
        return params

    def docstring(self) -> str:
        """The class docstring, paragraphs separated by blank lines."""
        formula = ("(table + offset)[ids]" if self.offset else "table[ids]") + (
            " * scale" if self.scaled else ""
        )
        formula += {None: "", "sinusoidal": " + sinusoids[:L]", "learned": " + positions[:L]"}[
            self.positional
        ]
        zero_at_pads = self.pad and (self.positional is None or self.mask == "end")
        text = f"Token embedding ``{formula}``" + (
            ", exactly 0.0 at the padding id." if zero_at_pads else "."
        )
        if self.storage == "all" and self.pad:
            where = (
                "the output is multiplied by ``ids != pad_index``"
                if self.mask == "end"
                else "looked-up vectors are multiplied by ``ids != pad_index``"
            )
            text += (
                f"\n\nThe padding row is 0.0 and, as {where}, gets a zero gradient: it stays 0.0 "
                "under any optimizer, weight decay included."
            )
        elif self.storage == "none":
            text += "\n\nThe table is frozen (a non-trainable weight)"
            text += ", its padding row 0.0." if self.pad else "."
        elif self.storage == "rows":
            text += (
                "\n\nOnly the rows in the half-open ``trainable_rows`` ranges train. They live in "
                "``trainable_embeddings`` and every other row"
                + (" (the padding row included, at 0.0)" if self.pad else "")
                + " in the non-trainable ``frozen_embeddings``; constant index maps route each id "
                "to its table, so no optimizer ever sees a frozen row: frozen rows stay "
                "bit-identical."
            )
        if self.offset:
            text += (
                "\n\n``offset`` is one "
                + ("trainable" if self.offset == "trainable" else "non-trainable")
                + " ``[dim]`` vector added to the rows of the ids in the half-open "
                "``offset_rows`` ranges only (``selected`` is 1.0 there, 0.0 elsewhere)."
            )
        if self.constrained:
            text += (
                "\n\n``embeddings_constraint`` is applied to the "
                + ("trainable rows" if self.storage == "rows" else "table")
                + " after each optimizer step."
            )
        if self.positional == "sinusoidal":
            text += (
                "\n\n``sinusoids`` are the fixed encodings of Vaswani et al. (2017): a constant, "
                "not a weight."
            )
        elif self.positional == "learned":
            text += "\n\n``positions`` is a trainable ``[max_length, dim]`` table."
        if self.pad and self.positional and self.mask != "end":
            text += " Padded positions keep their positional encoding."
        return text

    def source(self, g: KerasGenerator) -> str:
        """The layer class (``templates/helpers/embedding.py.j2``)."""
        rows = self.storage == "rows"
        if rows:
            call = [
                "trainable = ops.take(",
                "    self.trainable_embeddings, ops.take(self.trainable_row, ids), axis=0",
                ")",
                "frozen = ops.take(self.frozen_embeddings, ops.take(self.frozen_row, ids), axis=0)",
                "is_trainable = ops.expand_dims(ops.take(self.is_trainable, ids), -1)",
                "x = ops.where(is_trainable, trainable, frozen)  # (B, L, dim)",
            ]
        else:
            call = ["x = ops.take(self.embeddings, ids, axis=0)  # (B, L, dim)"]
        not_pad = (
            "not_pad = ops.expand_dims(ops.cast(ops.not_equal(ids, self.pad_index), x.dtype), -1)"
        )
        if self.mask == "lookup":
            call += [not_pad, "x = x * not_pad"]
        if self.offset:
            call.append("x = x + ops.take(self.selected, ids, axis=0) * self.offset")
        if self.scaled:
            call.append("x = x * self.scale")
        if self.positional == "sinusoidal":
            call.append("x = x + self.sinusoids[: ops.shape(ids)[1]]")
        elif self.positional == "learned":
            call.append("x = x + self.positions[: ops.shape(ids)[1]]")
        if self.mask == "end":
            call += [not_pad, "x = x * not_pad"]
        if call[-1].startswith("x = ") and "  #" not in call[-1]:
            call[-1] = "return " + call[-1][4:]
        else:
            call.append("return x")
        return g.env.get_template("helpers/embedding.py.j2").render(
            h=g.helper,
            kind=self,
            params=self.params(),
            doc="\n".join(indent(docstring(self.docstring(), 4), 1)).strip(),
            call=call,
        )


def _offset_kind(program: ir.Program, offset: ir.SharedOffset) -> Literal["trainable", "frozen"]:
    return "trainable" if program.weight(offset.weight).trainable == "all" else "frozen"


def emit_table(g: KerasGenerator, table: ir.EmbeddingTable) -> Emitted:
    """The layer computing ``table``'s lookup formula (see :class:`ir.EmbeddingTable`)."""
    program = g.program
    kind = TableKind.of(program, table)
    attr = f"self.{g.names.attrs[table.name]}"
    weight = program.weight(table.weight)
    out = Emitted()
    if kind.plain:
        args = [str(table.vocab_size), str(table.dim)]
        args.append(f"embeddings_initializer={weight_initializer(g, weight)}")
        if weight.constraint is not None:
            args.append(f"embeddings_constraint={constraint(g, weight.constraint)}")
        if kind.storage == "none":
            args.append("trainable=False")
        out.weights.append(variable(weight, f"{attr}.embeddings"))
        layer = "keras.layers.Embedding"
    else:
        values = {
            "vocab_size": table.vocab_size,
            "dim": table.dim,
            "pad_index": table.pad_index,
            "trainable_rows": weight.trainable_rows,
            "scale": table.scale,
            "offset_rows": getattr(table.offset, "rows", None),
            "max_length": getattr(table.positional, "max_length", None),
            "base": getattr(table.positional, "base", None),
        }
        args = []
        for param in kind.params():
            if param == "embeddings_initializer":
                value = weight_initializer(g, weight)
            elif param == "embeddings_constraint" and weight.constraint is not None:
                value = constraint(g, weight.constraint)
            elif param == "offset_initializer" and table.offset is not None:
                offset = program.weight(table.offset.weight)
                value = initializer(offset.initializer)
                out.weights.append(variable(offset, f"{attr}.offset"))
            elif param == "positions_initializer":
                positions = program.weight(table.positional.weight)  # type: ignore[union-attr]
                value = initializer(positions.initializer)
                out.weights.append(variable(positions, f"{attr}.positions"))
            else:
                value = repr(values[param])
            args.append(f"{param}={value}")
        if kind.storage == "rows":
            grad = f"{attr}.table_gradient(grads[{attr}.trainable_embeddings.path])"
        elif kind.storage == "all":
            grad = f"grads[{attr}.embeddings.path]"
        else:
            grad = None
        out.weights.insert(
            0,
            WeightCode(
                weight.name, value=f"{attr}.get_table()", load=f"{attr}.set_table({{}})", grad=grad
            ),
        )
        g.add_helper(kind.class_name, kind.source(g))
        layer = kind.class_name
    args += ["dtype=self.dtype_policy", f"name={attr[5:]!r}"]
    out.init.append(f"{attr} = {layer}({', '.join(args)})")
    return out


@OPS.emits(ir.EmbeddingLookup)
def emit_embedding(g: KerasGenerator, node: ir.Node) -> Emitted:
    """A lookup calls its table's layer on the ids."""
    assert isinstance(node.op, ir.EmbeddingLookup)
    n = g.names
    return Emitted(call=f"self.{n.attrs[node.op.table]}({n.values[node.inputs[0]]})")
