"""Render an IR program as Keras 3 source: ``model.py`` (a ``keras.Model``) and ``train.py``.

Each IR op has one ``emit_*`` method (see :attr:`KerasBackend.emitters`) returning an
:class:`Emitted`: its lines for the model's ``__init__``, the expression its ``call`` computes, the
canonical weights it owns and the module-level helpers it needs. Embedding tables, the loss and
the optimizer have emitters of their own. The templates only lay the files out around them.
"""

from __future__ import annotations

import keyword
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar, Literal

from nnspec.backends.base import Backend, format_source, header, template_env
from nnspec.compiler import ir

# Module-level names of the generated model.py, and the names `call` itself uses: no input or
# local variable may take them.
MODULE_NAMES = frozenset(
    {
        "CANONICAL_SHAPES",
        "build_model",
        "check_canonical_state",
        "gelu",
        "inputs",
        "keras",
        "load_file",
        "loss_fn",
        "make_optimizer",
        "np",
        "ops",
        "save_file",
        "self",
        "sinusoids",
        "tf",
        "training",
        "x",
    }
)

# Public attributes of a compiled keras.Model (Keras 3.15) and the methods the model class adds:
# a layer stored under one of these names would shadow it.
MODEL_ATTRIBUTES = frozenset(
    """
    activity_regularizer add_loss add_metric add_variable add_weight autocast build
    build_from_config built call call_signature_parameters canonical_gradients canonical_state
    compile compile_from_config compiled compiled_loss compiled_metrics compute_dtype compute_loss
    compute_mask compute_metrics compute_output_shape compute_output_spec count_params
    distribute_reduction_method distribute_strategy dtype dtype_policy evaluate export fit
    from_config get_build_config get_compile_config get_config get_layer get_metrics_result
    get_quantization_layer_structure get_state_tree get_weights history input input_dtype
    input_spec inputs jit_compile layers load_canonical load_canonical_state load_own_variables
    load_weights loss losses make_predict_function make_test_function make_train_function metrics
    metrics_names metrics_variables name non_trainable_variables non_trainable_weights optimizer
    output outputs path predict predict_function predict_on_batch predict_step quantization_mode
    quantize quantized_build quantized_call rematerialized_call reset_metrics run_eagerly save
    save_canonical save_own_variables save_weights set_state_tree set_weights stateless_call
    stateless_compute_loss steps_per_execution stop_training summary supports_jit
    supports_masking symbolic_call test_function test_on_batch test_step to_json train_function
    train_on_batch train_step trainable trainable_variables trainable_weights
    unrolled_steps_per_execution variable_dtype variables weights
    """.split()  # noqa: SIM905 (a word list reads better than a column of 110 strings)
)

CLASSIFICATION_METRICS = {
    "sparse_categorical_crossentropy": "keras.metrics.SparseCategoricalAccuracy",
    "categorical_crossentropy": "keras.metrics.CategoricalAccuracy",
    "binary_crossentropy": "keras.metrics.BinaryAccuracy",
}

# (loss, from_logits) -> (summary, formula) of the generated loss_fn's docstring.
LOSSES = {
    ("sparse_categorical_crossentropy", False): (
        "Sparse categorical cross-entropy of class ids ``y_true`` under probabilities ``y_pred``.",
        "batch mean of ``-log(clip(y_pred[y_true], eps, 1 - eps))``",
    ),
    ("sparse_categorical_crossentropy", True): (
        "Sparse categorical cross-entropy of class ids ``y_true`` under logits ``y_pred``.",
        "batch mean of ``-log_softmax(y_pred)[y_true]``",
    ),
    ("categorical_crossentropy", False): (
        "Categorical cross-entropy of distributions ``y_true`` under probabilities ``y_pred``.",
        "batch mean of ``-sum(y_true * log(clip(y_pred, eps, 1 - eps)))``",
    ),
    ("categorical_crossentropy", True): (
        "Categorical cross-entropy of distributions ``y_true`` under logits ``y_pred``.",
        "batch mean of ``-sum(y_true * log_softmax(y_pred))``",
    ),
    ("binary_crossentropy", False): (
        "Binary cross-entropy of 0/1 labels ``y_true`` under probabilities ``y_pred``.",
        "mean over all elements of ``-(y_true * log(p) + (1 - y_true) * log(1 - p))``, where "
        "``p = clip(y_pred, eps, 1 - eps)``",
    ),
    ("binary_crossentropy", True): (
        "Binary cross-entropy of 0/1 labels ``y_true`` under logits ``y_pred``.",
        "mean over all elements of ``(1 - y_true) * y_pred - log_sigmoid(y_pred)``",
    ),
    ("mse", False): (
        "Mean squared error of predictions ``y_pred`` against targets ``y_true``.",
        "mean over all elements of ``(y_pred - y_true) ** 2``",
    ),
}

MASKED_POOLING = {
    "average": (
        "MaskedGlobalAveragePooling1D",
        '''
class MaskedGlobalAveragePooling1D(keras.layers.Layer):
    """Mean over the sequence axis of the valid (``padding_mask``) positions; 0.0 if none is."""

    def call(self, x, padding_mask):
        """Pool ``x`` (B, L, D) to (B, D); ``padding_mask`` (B, L) is true at valid positions."""
        weights = ops.expand_dims(ops.cast(padding_mask, x.dtype), -1)  # (B, L, 1)
        total = ops.sum(x * weights, axis=1)  # (B, D)
        count = ops.sum(weights, axis=1)  # (B, 1)
        return total / ops.maximum(count, 1.0)
''',
    ),
    "max": (
        "MaskedGlobalMaxPooling1D",
        '''
class MaskedGlobalMaxPooling1D(keras.layers.Layer):
    """Maximum over the sequence axis of the valid (``padding_mask``) positions; 0.0 if none is."""

    def call(self, x, padding_mask):
        """Pool ``x`` (B, L, D) to (B, D); ``padding_mask`` (B, L) is true at valid positions."""
        valid = ops.expand_dims(padding_mask, -1)  # (B, L, 1)
        pooled = ops.max(ops.where(valid, x, float("-inf")), axis=1)  # (B, D)
        return ops.where(ops.any(valid, axis=1), pooled, 0.0)
''',
    ),
}

GELU = '''
def gelu(x):
    """The exact (erf) GELU. Keras' own loses precision in float64 (a float32 constant inside)."""
    return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))
'''

SINUSOIDS = '''
def sinusoids(max_length, dim, base):
    """The fixed positional encodings of Vaswani et al. (2017), section 3.5, in float64.

    ``pe[pos, 2i] = sin(pos / base ** (2i / dim))`` and ``pe[pos, 2i + 1]`` is the cosine of the
    same angle, for every absolute position ``pos < max_length``.
    """
    angles = np.arange(max_length, dtype=np.float64)[:, None] / base ** (np.arange(0, dim, 2) / dim)
    table = np.zeros((max_length, dim))
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, : dim // 2])
    return table
'''


@dataclass(frozen=True)
class WeightCode:
    """How the generated model reaches one canonical weight.

    Attributes:
        name: the canonical name.
        value: expression for the weight as a numpy array in canonical layout.
        load: statement loading a canonical array, written ``{}``, into the model.
        grad: expression for its canonical gradient (0.0 at frozen rows), read from ``grads``, a
            dict of numpy gradients by variable path; ``None`` when nothing in it trains.
    """

    name: str
    value: str
    load: str
    grad: str | None


@dataclass
class Emitted:
    """What one op (or embedding table) contributes to ``model.py``.

    Attributes:
        init: lines of the model's ``__init__``.
        call: the expression ``call`` computes for the node (empty for a table).
        weights: the canonical weights it owns.
        helpers: module-level classes and functions it needs: name -> source.
    """

    init: list[str] = field(default_factory=list)
    call: str = ""
    weights: list[WeightCode] = field(default_factory=list)
    helpers: dict[str, str] = field(default_factory=dict)


class _Namespace:
    """Hands out unique Python names, appending ``_`` to any name that is taken or reserved."""

    def __init__(self, reserved: frozenset[str]) -> None:
        self.taken = set(reserved)

    def claim(self, name: str) -> str:
        """``name``, or ``name`` followed by enough underscores to be free; now taken."""
        while name in self.taken or keyword.iskeyword(name) or name.startswith("_"):
            name += "_"
        self.taken.add(name)
        return name


@dataclass(frozen=True)
class _Names:
    """The Python names of one program's generated model.

    Attributes:
        attrs: layer attribute (also the Keras layer name) of each table and of each node that
            owns a layer, by table or node name.
        values: the variable holding each model input and node output in ``call``. A value
            used only by the next node (or returned by the last) lives in ``x``; any other value
            gets its own name.
    """

    attrs: dict[str, str]
    values: dict[str, str]


@lru_cache(maxsize=16)
def _names(program: ir.Program) -> _Names:
    """Assign every attribute and variable name of the generated model."""
    attrs = _Namespace(MODEL_ATTRIBUTES)
    names = {table.name: attrs.claim(table.name) for table in program.tables}
    for node in program.nodes:
        if not isinstance(node.op, ir.EmbeddingLookup):
            names[node.name] = attrs.claim(node.name)

    end = len(program.nodes)
    uses: dict[str, list[int]] = {name: [end] for name in program.outputs}
    for i, node in enumerate(program.nodes):
        for name in node.inputs:
            uses.setdefault(name, []).append(i)
    local = _Namespace(MODULE_NAMES | {program.class_name})
    values = {inp.name: local.claim(inp.name) for inp in program.inputs}
    in_x: str | None = None  # the node whose output ``x`` holds
    for i, node in enumerate(program.nodes):
        x_free = in_x is None or max(uses.get(in_x, [-1])) <= i
        if x_free and uses.get(node.name) in ([i + 1], [end] if i == end - 1 else None):
            values[node.name] = "x"
            in_x = node.name
        else:
            values[node.name] = local.claim(node.name)
    return _Names(attrs=names, values=values)


def _shape(shape: ir.Shape) -> str:
    """A shape comment such as ``(B, 12, 8)``."""
    return "(" + ", ".join("B" if d is None else str(d) for d in shape) + ")"


def _initializer(init: ir.Initializer) -> str:
    """A Keras initializer for ``init``; fans are Keras' own, which are the canonical ones."""
    kind = init.kind
    if kind in ("zeros", "ones", "glorot_uniform", "he_uniform"):
        return repr(kind)
    if kind == "uniform":
        return f"keras.initializers.RandomUniform(minval={init.low!r}, maxval={init.high!r})"
    if kind == "normal":
        return f"keras.initializers.RandomNormal(mean={init.mean!r}, stddev={init.std!r})"
    if kind == "truncated_normal":
        return f"keras.initializers.TruncatedNormal(mean={init.mean!r}, stddev={init.std!r})"
    # Glorot and He normal are plain Gaussians (as in their papers and in PyTorch); Keras'
    # string shortcuts would truncate them.
    scale, mode = {"glorot_normal": ("1.0", "fan_avg"), "he_normal": ("2.0", "fan_in")}[kind]
    return (
        f'keras.initializers.VarianceScaling(scale={scale}, mode="{mode}", '
        f'distribution="untruncated_normal")'
    )


def _variable(weight: ir.Weight, expr: str) -> WeightCode:
    """The code for a weight held whole, in canonical layout, in the variable ``expr``."""
    return WeightCode(
        name=weight.name,
        value=f"{expr}.numpy()",
        load=f"{expr}.assign({{}})",
        grad=f"grads[{expr}.path]" if weight.trainable == "all" else None,
    )


def _docstring(text: str, indent: int) -> list[str]:
    """A docstring's lines: a one-line summary, then paragraphs wrapped to fit 100 columns."""
    summary, *paragraphs = text.split("\n\n")
    if not paragraphs:
        return [f'"""{summary}"""']
    lines = [f'"""{summary}']
    for paragraph in paragraphs:
        lines.append("")
        lines += _wrap(paragraph, 100 - indent)
    return [*lines, '"""']


def _wrap(text: str, width: int) -> list[str]:
    """``text`` wrapped to ``width`` columns, never inside a ````literal````."""
    parts = text.split("``")
    glued = "``".join(p.replace(" ", "\0") if i % 2 else p for i, p in enumerate(parts))
    lines = textwrap.wrap(glued, width, break_long_words=False, break_on_hyphens=False)
    return [line.replace("\0", " ") for line in lines]


def _indent(lines: list[str], levels: int) -> list[str]:
    """``lines`` indented by ``levels`` times four spaces (blank lines stay blank)."""
    pad = "    " * levels
    return [pad + line if line else "" for line in lines]


@dataclass(frozen=True)
class _TableKind:
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

    @classmethod
    def of(cls, program: ir.Program, table: ir.EmbeddingTable) -> _TableKind:
        """The kind of ``table``, after checking that its weights are what the IR promises."""
        weight = program.weight(table.weight)
        expected = () if table.pad_index is None else (table.pad_index,)
        if weight.zero_rows != expected:
            raise ValueError(
                f"weight {weight.name!r}: zero_rows {weight.zero_rows} must be the padding row "
                f"{list(expected)} of table {table.name!r}"
            )
        positional = table.positional
        if isinstance(positional, ir.LearnedPositional):
            pos = program.weight(positional.weight)
            if pos.trainable != "all" or pos.zero_rows:
                raise ValueError(f"weight {pos.name!r}: learned positions are trainable rows")
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
        )

    @property
    def plain(self) -> bool:
        """Whether ``keras.layers.Embedding`` computes it as it is."""
        return self.storage != "rows" and not (self.pad or self.scaled or self.positional)

    @property
    def class_name(self) -> str:
        """The generated layer class, named after what it does."""
        storage = {"all": "", "none": "Frozen", "rows": "PartiallyTrainable"}[self.storage]
        suffix = {None: "", "sinusoidal": "WithSinusoids", "learned": "WithLearnedPositions"}
        name = f"{storage}{'Padded' if self.pad else ''}{'Scaled' if self.scaled else ''}"
        name += f"Embedding{suffix[self.positional]}"
        if self.pad and self.positional and self.mask != "end":
            name += "AtPads"
        return name

    def params(self) -> list[str]:
        """The constructor's parameters, in order."""
        params = ["vocab_size", "dim"]
        params += ["pad_index"] if self.pad else []
        params += ["trainable_rows"] if self.storage == "rows" else []
        params += ["scale"] if self.scaled else []
        params += ["max_length"] if self.positional else []
        params += ["base"] if self.positional == "sinusoidal" else []
        params += ["embeddings_initializer"]
        params += ["positions_initializer"] if self.positional == "learned" else []
        return params

    def docstring(self) -> str:
        """The class docstring, paragraphs separated by blank lines."""
        formula = "table[ids]" + (" * scale" if self.scaled else "")
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

    def source(self) -> str:
        """The layer class."""
        rows = self.storage == "rows"
        params = self.params()
        init = ["super().__init__(**kwargs)"]
        init += [
            f"self.{p} = {p}"
            for p in params
            if p not in ("trainable_rows", "base") and not p.endswith("_initializer")
        ]
        init.append("self.embeddings_initializer = keras.initializers.get(embeddings_initializer)")
        if self.positional == "learned":
            init.append(
                "self.positions_initializer = keras.initializers.get(positions_initializer)"
            )
        if self.positional == "sinusoidal":
            init.append(
                "self.sinusoids = ops.convert_to_tensor("
                "sinusoids(max_length, dim, base), self.compute_dtype)"
            )
        if rows:
            init += [
                "is_trainable = np.zeros(vocab_size, dtype=bool)",
                "for start, stop in trainable_rows:",
                "    is_trainable[start:stop] = True",
                "self.trainable_ids = np.flatnonzero(is_trainable)",
                "self.frozen_ids = np.flatnonzero(~is_trainable)",
                "# Constant index maps: whether an id trains, and its row in its own table (0 in",
                "# the other table, whose vector `call` then discards).",
                'trainable_row = np.zeros(vocab_size, dtype="int32")',
                "trainable_row[self.trainable_ids] = np.arange(len(self.trainable_ids))",
                'frozen_row = np.zeros(vocab_size, dtype="int32")',
                "frozen_row[self.frozen_ids] = np.arange(len(self.frozen_ids))",
                "self.is_trainable = ops.convert_to_tensor(is_trainable)",
                "self.trainable_row = ops.convert_to_tensor(trainable_row)",
                "self.frozen_row = ops.convert_to_tensor(frozen_row)",
            ]

        build = []
        if rows:
            build += [
                "self.trainable_embeddings = self.add_weight(",
                "    shape=(len(self.trainable_ids), self.dim),",
                "    initializer=self.rows_initializer(self.trainable_ids),",
                '    name="trainable_embeddings",',
                ")",
                "self.frozen_embeddings = self.add_weight(",
                "    shape=(len(self.frozen_ids), self.dim),",
                "    initializer=self.rows_initializer(self.frozen_ids),",
                "    trainable=False,",
                '    name="frozen_embeddings",',
                ")",
            ]
        else:
            initializer = "self.padded_initializer" if self.pad else "self.embeddings_initializer"
            frozen = " trainable=False," if self.storage == "none" else ""
            build += [
                "self.embeddings = self.add_weight(",
                f"    shape=(self.vocab_size, self.dim), initializer={initializer},{frozen}",
                '    name="embeddings",',
                ")",
            ]
        if self.positional == "learned":
            build += [
                "self.positions = self.add_weight(",
                "    shape=(self.max_length, self.dim), initializer=self.positions_initializer,",
                '    name="positions",',
                ")",
            ]

        draw = []
        if self.pad:
            draw += [
                "def padded_initializer(self, shape, dtype=None):",
                '    """``embeddings_initializer`` with the padding row set to 0.0."""',
                "    table = self.embeddings_initializer(shape, dtype)",
                "    is_pad = ops.expand_dims(ops.equal(ops.arange(shape[0]), self.pad_index), -1)",
                "    return ops.where(is_pad, ops.zeros_like(table), table)",
                "",
            ]
        if rows:
            table = "self.padded_initializer" if self.pad else "self.embeddings_initializer"
            draw += [
                "def rows_initializer(self, ids):",
                '    """An initializer of the rows ``ids`` of a freshly drawn canonical table."""',
                "",
                "    def initializer(shape, dtype=None):",
                f"        table = {table}((self.vocab_size, self.dim), dtype)",
                "        return ops.take(table, ids, axis=0)",
                "",
                "    return initializer",
                "",
            ]

        if rows:
            get_table = [
                "table = np.empty((self.vocab_size, self.dim), dtype=self.variable_dtype)",
                "table[self.trainable_ids] = self.trainable_embeddings.numpy()",
                "table[self.frozen_ids] = self.frozen_embeddings.numpy()",
                "return table",
            ]
        else:
            get_table = ["return self.embeddings.numpy()"]

        set_table = []
        if self.pad:
            set_table += [
                "table = np.array(table, dtype=self.variable_dtype)",
                "table[self.pad_index] = 0.0",
            ]
        elif rows:
            set_table.append("table = np.asarray(table)")
        if rows:
            set_table += [
                "self.trainable_embeddings.assign(table[self.trainable_ids])",
                "self.frozen_embeddings.assign(table[self.frozen_ids])",
            ]
        else:
            set_table.append("self.embeddings.assign(table)")

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

        pad_note = "; its padding row is set to 0.0" if self.pad else ""
        body = [
            *_docstring(self.docstring(), 4),
            "",
            f"def __init__(self, {', '.join(params)}, **kwargs):",
            '    """``kwargs`` (such as ``dtype`` and ``name``) go to ``keras.layers.Layer``."""',
            *_indent(init, 1),
            "",
            "def build(self, input_shape):",
            '    """Create the weights."""',
            *_indent(build, 1),
            "",
            *draw,
            "def get_table(self):",
            '    """The canonical ``[vocab_size, dim]`` table, as numpy."""',
            *_indent(get_table, 1),
            "",
            "def set_table(self, table):",
            f'    """Load a canonical ``[vocab_size, dim]`` table{pad_note}."""',
            *_indent(set_table, 1),
            "",
        ]
        if rows:
            body += [
                "def table_gradient(self, grad):",
                '    """Spread the gradient of ``trainable_embeddings`` over a canonical table."""',
                "    table = np.zeros((self.vocab_size, self.dim), dtype=grad.dtype)",
                "    table[self.trainable_ids] = grad",
                "    return table",
                "",
            ]
        body += [
            "def call(self, ids):",
            '    """Embed ``ids`` (B, L) as (B, L, dim)."""',
            *_indent(call, 1),
        ]
        lines = [f"class {self.class_name}(keras.layers.Layer):", *_indent(body, 1)]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _OptimizerCode:
    """The optimizer class and the arguments ``make_optimizer`` passes it."""

    class_name: str
    source: str
    kwargs: dict[str, str]
    docstring: str


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
    }

    def generate(self, program: ir.Program) -> dict[str, str]:
        """Render ``model.py`` and ``train.py``."""
        self.check(program)
        names = _names(program)
        parts = [self.emit_table(program, table) for table in program.tables]
        call = [
            f"{names.values[inp.name]} = inputs[{inp.name!r}]  # {_shape((None, inp.length))}"
            for inp in program.inputs
        ]
        for i, node in enumerate(program.nodes):
            emitted = self.emitter_for(node)(program, node)
            assert isinstance(emitted, Emitted)
            parts.append(emitted)
            comment = f"  # {_shape(node.shape)}"
            if i == len(program.nodes) - 1 and program.outputs == (node.name,):
                call.append(f"return {emitted.call}{comment}")
            else:
                call.append(f"{names.values[node.name]} = {emitted.call}{comment}")
        if not call[-1].startswith("return "):
            if len(program.outputs) == 1:
                call.append(f"return {names.values[program.outputs[0]]}")
            else:
                items = ", ".join(f"{o!r}: {names.values[o]}" for o in program.outputs)
                call.append(f"return {{{items}}}")

        helpers: dict[str, str] = {}
        weights: dict[str, WeightCode] = {}
        for part in parts:
            helpers.update(part.helpers)
            weights.update((code.name, code) for code in part.weights)
        missing = [w.name for w in program.weights if w.name not in weights]
        if missing:
            raise ValueError(f"no layer owns the canonical weights {missing}")
        ordered = [weights[w.name] for w in program.weights]
        optimizer = self.emit_optimizer(program)

        env = template_env(__package__)
        env.filters["py"] = repr
        context = {
            "module_doc": "\n".join(_docstring(self._module_doc(program), 0)),
            "train_doc": "\n".join(self._train_doc(program)),
            "header": header(program, self.name),
            "program": program,
            "names": names,
            "shapes": {w.name: w.shape for w in program.weights},
            "helpers": [source.strip("\n") for source in helpers.values()],
            "init": [line for part in parts for line in part.init],
            "call": call,
            "weights": ordered,
            "trainable": [code for code in ordered if code.grad is not None],
            "output": " and ".join(
                f"``{o}`` {_shape(program.node(o).shape)}" for o in program.outputs
            ),
            "signature": ", ".join(
                f"``{inp.name}`` {_shape((None, inp.length))}" for inp in program.inputs
            ),
            "loss": self.emit_loss(program),
            "optimizer": optimizer,
            "metric": self.emit_metric(program.training),
            "input_dtypes": repr({inp.name: inp.dtype for inp in program.inputs}),
            "label_dtype": (
                "int32" if program.training.loss == "sparse_categorical_crossentropy" else "float32"
            ),
        }
        return {
            "model.py": format_source(env.get_template("model.py.j2").render(context)),
            "train.py": format_source(env.get_template("train.py.j2").render(context)),
        }

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

    @staticmethod
    def _train_doc(program: ir.Program) -> list[str]:
        """The docstring of ``train.py``: what it does and how to run it."""
        inputs = ", ".join(f"``{inp.name}``" for inp in program.inputs)
        val = " and ".join(f"``val_{inp.name}``" for inp in program.inputs)
        split = program.training.validation_split
        about = (
            f"The ``.npz`` file holds one integer array per model input ({inputs}) and ``labels``; "
            f"{val} with ``val_labels``, if present, are the validation data, else the last "
            f"{split:.0%} of the examples are. TensorFlow uses a GPU when it sees one. The "
            "trained weights are saved in canonical form to ``<out>/model.safetensors``."
        )
        return [
            f'"""Train the ``{program.name}`` model on token ids from an ``.npz`` file.',
            "",
            "Usage::",
            "",
            "    python train.py --data data.npz",
            "    python train.py --data data.npz --epochs 20 --batch-size 64 --lr 0.001 --out run1",
            "",
            *_wrap(about, 100),
            '"""',
        ]

    # ------------------------------------------------------------------------- tables and ops

    def emit_table(self, program: ir.Program, table: ir.EmbeddingTable) -> Emitted:
        """The layer computing ``table``'s lookup formula (see :class:`ir.EmbeddingTable`)."""
        kind = _TableKind.of(program, table)
        attr = f"self.{_names(program).attrs[table.name]}"
        weight = program.weight(table.weight)
        out = Emitted()
        if kind.plain:
            args = [str(table.vocab_size), str(table.dim)]
            args.append(f"embeddings_initializer={_initializer(weight.initializer)}")
            if kind.storage == "none":
                args.append("trainable=False")
            out.weights.append(_variable(weight, f"{attr}.embeddings"))
            layer = "keras.layers.Embedding"
        else:
            values = {
                "vocab_size": table.vocab_size,
                "dim": table.dim,
                "pad_index": table.pad_index,
                "trainable_rows": weight.trainable_rows,
                "scale": table.scale,
                "max_length": getattr(table.positional, "max_length", None),
                "base": getattr(table.positional, "base", None),
            }
            args = []
            for param in kind.params():
                if param == "embeddings_initializer":
                    value = _initializer(weight.initializer)
                elif param == "positions_initializer":
                    positions = program.weight(table.positional.weight)  # type: ignore[union-attr]
                    value = _initializer(positions.initializer)
                    out.weights.append(_variable(positions, f"{attr}.positions"))
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
                0, WeightCode(weight.name, f"{attr}.get_table()", f"{attr}.set_table({{}})", grad)
            )
            if kind.positional == "sinusoidal":
                out.helpers["sinusoids"] = SINUSOIDS
            out.helpers[kind.class_name] = kind.source()
            layer = kind.class_name
        args += ["dtype=self.dtype_policy", f"name={attr[5:]!r}"]
        out.init.append(f"{attr} = {layer}({', '.join(args)})")
        return out

    def emit_embedding(self, program: ir.Program, node: ir.Node) -> Emitted:
        """A lookup calls its table's layer on the ids."""
        assert isinstance(node.op, ir.EmbeddingLookup)
        names = _names(program)
        return Emitted(call=f"self.{names.attrs[node.op.table]}({names.values[node.inputs[0]]})")

    def emit_flatten(self, program: ir.Program, node: ir.Node) -> Emitted:
        """``keras.layers.Flatten``: row-major over the channels-last layout, as the IR says."""
        return self._layer(program, node, "keras.layers.Flatten()")

    def emit_dropout(self, program: ir.Program, node: ir.Node) -> Emitted:
        """``keras.layers.Dropout`` (inverted dropout), active only when ``training``."""
        assert isinstance(node.op, ir.Dropout)
        out = self._layer(program, node, f"keras.layers.Dropout({node.op.rate!r})")
        out.call = out.call[:-1] + ", training=training)"
        return out

    def emit_dense(self, program: ir.Program, node: ir.Node) -> Emitted:
        """``keras.layers.Dense``, whose kernel is already the canonical ``[in, out]``."""
        op = node.op
        assert isinstance(op, ir.Dense)
        kernel = program.weight(op.kernel)
        bias = None if op.bias is None else program.weight(op.bias)
        owned = [kernel] if bias is None else [kernel, bias]
        if any(w.trainable == "rows" or w.zero_rows for w in owned):
            raise ValueError(f"dense layer {node.name!r}: its weights train whole or not at all")
        if len({w.trainable for w in owned}) > 1:
            raise ValueError(f"dense layer {node.name!r}: kernel and bias must train alike")
        args = [str(op.units)]
        if op.activation == "gelu":
            args.append("activation=gelu")
        elif op.activation != "linear":
            args.append(f"activation={op.activation!r}")
        if bias is None:
            args.append("use_bias=False")
        if kernel.initializer.kind != "glorot_uniform":  # Keras' default
            args.append(f"kernel_initializer={_initializer(kernel.initializer)}")
        if bias is not None and bias.initializer.kind != "zeros":
            args.append(f"bias_initializer={_initializer(bias.initializer)}")
        if kernel.trainable == "none":
            args.append("trainable=False")
        out = self._layer(program, node, f"keras.layers.Dense({', '.join(args)})")
        if op.activation == "gelu":
            out.helpers["gelu"] = GELU
        attr = f"self.{_names(program).attrs[node.name]}"
        out.weights.append(_variable(kernel, f"{attr}.kernel"))
        if bias is not None:
            out.weights.append(_variable(bias, f"{attr}.bias"))
        return out

    def emit_global_pool(self, program: ir.Program, node: ir.Node) -> Emitted:
        """Pooling over the sequence axis; masked by the input node's mask when it has one."""
        op = node.op
        assert isinstance(op, ir.GlobalPool)
        source = next((n for n in program.nodes if n.name == node.inputs[0]), None)
        mask = None if source is None else source.mask
        if mask is None:
            layer = {"average": "GlobalAveragePooling1D", "max": "GlobalMaxPooling1D"}[op.mode]
            return self._layer(program, node, f"keras.layers.{layer}()")
        class_name, source_code = MASKED_POOLING[op.mode]
        out = self._layer(program, node, f"{class_name}()")
        ids = _names(program).values[mask.input]
        out.call = out.call[:-1] + f", padding_mask=ops.not_equal({ids}, {mask.pad_index}))"
        out.helpers[class_name] = source_code
        return out

    def _layer(self, program: ir.Program, node: ir.Node, constructor: str) -> Emitted:
        """A node computed by one layer: ``constructor`` gets the model's dtype and a name."""
        names = _names(program)
        attr = names.attrs[node.name]
        close = "" if constructor.endswith("()") else ", "
        init = f"self.{attr} = {constructor[:-1]}{close}dtype=self.dtype_policy, name={attr!r})"
        return Emitted(init=[init], call=f"self.{attr}({names.values[node.inputs[0]]})")

    # ------------------------------------------------------------------------- training

    def emit_loss(self, program: ir.Program) -> str:
        """``loss_fn``: :class:`ir.Training`'s formula, in ``y_pred``'s dtype."""
        training = program.training
        loss, eps = training.loss, training.epsilon
        logits = training.from_logits and loss != "mse"
        summary, formula = LOSSES[loss, logits]
        doc = f"{summary}\n\nThe {formula}" + (
            f", with ``eps = {eps!r}``" if "eps" in formula else ""
        )
        doc += ", computed in ``y_pred``'s dtype."
        width = program.node(program.outputs[0]).shape[1:]
        clip = f"ops.clip({{}}, {eps!r}, 1 - {eps!r})"
        if loss == "sparse_categorical_crossentropy":
            body = [f'y_true = ops.cast(ops.reshape(y_true, {(-1, *width[:-1], 1)!r}), "int32")']
            if logits:
                body += [
                    "log_p = ops.log_softmax(y_pred, axis=-1)",
                    "return -ops.mean(ops.take_along_axis(log_p, y_true, axis=-1))",
                ]
            else:
                body += [
                    "p = ops.take_along_axis(y_pred, y_true, axis=-1)",
                    f"return -ops.mean(ops.log({clip.format('p')}))",
                ]
        else:
            body = [f"y_true = ops.cast(ops.reshape(y_true, {(-1, *width)!r}), y_pred.dtype)"]
            if loss == "categorical_crossentropy":
                log_p = (
                    "ops.log_softmax(y_pred, axis=-1)"
                    if logits
                    else f"ops.log({clip.format('y_pred')})"
                )
                body.append(f"return -ops.mean(ops.sum(y_true * {log_p}, axis=-1))")
            elif loss == "binary_crossentropy" and logits:
                body.append("return ops.mean((1 - y_true) * y_pred - ops.log_sigmoid(y_pred))")
            elif loss == "binary_crossentropy":
                body += [
                    f"p = {clip.format('y_pred')}",
                    "return -ops.mean(y_true * ops.log(p) + (1 - y_true) * ops.log(1 - p))",
                ]
            else:
                body.append("return ops.mean(ops.square(y_pred - y_true))")
        lines = ["def loss_fn(y_true, y_pred):", *_indent([*_docstring(doc, 4), *body], 1)]
        return "\n".join(lines)

    def emit_metric(self, training: ir.Training) -> str | None:
        """The accuracy metric ``train.py`` reports, for classification losses."""
        metric = CLASSIFICATION_METRICS.get(training.loss)
        if metric is None:
            return None
        threshold = (
            ", threshold=0.0"
            if training.loss == "binary_crossentropy" and training.from_logits
            else ""
        )
        return f'{metric}(name="accuracy"{threshold})'

    def emit_optimizer(self, program: ir.Program) -> _OptimizerCode:
        """An optimizer class with PyTorch's update rule for :class:`ir.Optimizer`, and only the
        code the spec's settings use."""
        opt = program.training.optimizer
        kwargs: dict[str, str] = {}
        if opt.kind == "sgd":
            class_name, torch_name = "TorchSGD", "torch.optim.SGD"
            if opt.momentum:
                kwargs["momentum"] = repr(opt.momentum)
        else:
            class_name = "TorchAdamW" if opt.kind == "adamw" else "TorchAdam"
            torch_name = "torch.optim.AdamW" if opt.kind == "adamw" else "torch.optim.Adam"
            kwargs.update(beta_1=repr(opt.beta1), beta_2=repr(opt.beta2), epsilon=repr(opt.eps))
        decay = "decoupled_weight_decay" if opt.kind == "adamw" else "l2_weight_decay"
        if opt.weight_decay:
            kwargs[decay] = repr(opt.weight_decay)
        if opt.clip_norm is not None:
            kwargs["clip_norm"] = repr(opt.clip_norm)

        rule = []
        if opt.kind == "sgd":
            if opt.weight_decay:
                rule.append("``g += l2_weight_decay * p``")
            if opt.momentum:
                rule.append("``buf = momentum * buf + g`` (``buf = g`` at the first step)")
                rule.append("``g += momentum * buf``" if opt.nesterov else "``g = buf``")
            rule.append("``p -= lr * g``")
            unlike = (
                "Unlike ``keras.optimizers.SGD``, the learning rate scales the momentum buffer's "
                "output, not its input. "
                if opt.momentum
                else ""
            )
        else:
            if opt.weight_decay and opt.kind == "adamw":
                rule.append("``p *= 1 - lr * decoupled_weight_decay``")
            elif opt.weight_decay:
                rule.append("``g += l2_weight_decay * p``")
            rule += [
                "``m = beta_1 * m + (1 - beta_1) * g``",
                "``v = beta_2 * v + (1 - beta_2) * g * g``",
                "``p -= lr * m_hat / (sqrt(v_hat) + epsilon)`` with bias-corrected ``m_hat`` and "
                "``v_hat``",
            ]
            unlike = "Unlike ``keras.optimizers.Adam``, epsilon is added after bias correction"
            if opt.weight_decay and opt.kind == "adam":
                unlike += " and the decay is an L2 term of the gradient (Keras' is decoupled)"
            unlike += ". "
        clip = ", then clipped to a global norm of ``clip_norm``" if opt.clip_norm else ""
        doc = (
            f"{class_name[5:]} with PyTorch's update rule (``{torch_name}``).\n\n"
            f"Each step: {'; '.join(rule)}.\n\n{unlike}Embedding gradients are merged "
            f"(repeated ids summed) before the update{clip}."
        )

        source = [
            f"class {class_name}(keras.optimizers.Optimizer):",
            *_indent(_docstring(doc, 4), 1),
            "",
        ]
        if kwargs:
            source += [
                f"    def __init__(self, learning_rate, {', '.join(kwargs)}, **kwargs):",
                '        """``kwargs`` (such as ``name``) go to ``keras.optimizers.Optimizer``."""',
                "        super().__init__(learning_rate=learning_rate, **kwargs)",
                *[f"        self.{k} = {k}" for k in kwargs],
                "",
            ]
        slots = (
            ["momentum_buffer"]
            if opt.kind == "sgd" and opt.momentum
            else ["first_moment", "second_moment"]
            if opt.kind != "sgd"
            else []
        )
        if slots:
            targets = ", ".join(f"self.{s}s" for s in slots)
            names = repr(slots) if len(slots) > 1 else repr(slots[0])
            what = "a momentum buffer" if opt.kind == "sgd" else "first and second moments"
            source += [
                "    def build(self, variables):",
                f'        """Create {what} for every variable."""',
                "        if self.built:",
                "            return",
                "        super().build(variables)",
                f"        {targets} = self.add_optimizer_variables(variables, {names})",
                "",
            ]
        apply_doc = "Merge embedding gradients" + (
            ", clip all by global norm" if opt.clip_norm is not None else ""
        )
        apply = [
            f'"""{apply_doc}, then update the variables."""',
            "# Embedding gradients arrive as tf.IndexedSlices with one row per occurrence of an",
            "# id; densifying sums repeated ids, as PyTorch's dense embedding gradient does.",
            "grads = [None if g is None else tf.convert_to_tensor(g) for g in grads]",
        ]
        if opt.clip_norm is not None:
            apply += [
                "# As torch.nn.utils.clip_grad_norm_: the norm of the per-variable norms, and a",
                "# scale of min(1, clip_norm / (norm + 1e-6)).",
                "norms = [ops.norm(ops.reshape(g, (-1,))) for g in grads if g is not None]",
                "scale = ops.minimum(self.clip_norm / (ops.norm(ops.stack(norms)) + 1e-6), 1.0)",
                "grads = [None if g is None else g * scale for g in grads]",
            ]
        apply.append("return super().apply(grads, trainable_variables)")
        source += [
            "    def apply(self, grads, trainable_variables=None):",
            *_indent(apply, 2),
            "",
            "    def update_step(self, gradient, variable, learning_rate):",
            f'        """One ``{torch_name}`` step on ``variable``."""',
            *_indent(self._update_rule(opt), 2),
        ]
        summary = f"PyTorch's {class_name[5:]}" + (
            f" with weight decay {opt.weight_decay!r}" if opt.weight_decay else ""
        )
        factory_doc = (
            f"The spec's optimizer, {summary}, built for ``model``.\n\n``lr`` overrides the "
            f"spec's learning rate, {opt.lr!r}. Keras keeps the learning rate in "
            '``keras.config.floatx()``: set that to ``"float64"`` to train a float64 model with '
            "it exactly."
        )
        return _OptimizerCode(
            class_name, "\n".join(source), kwargs, "\n".join(_docstring(factory_doc, 4))
        )

    @staticmethod
    def _update_rule(opt: ir.Optimizer) -> list[str]:
        """The body of ``update_step`` for ``opt`` (see :class:`ir.Optimizer`)."""
        if opt.kind == "sgd":
            lines = ["lr = ops.cast(learning_rate, variable.dtype)"]
            if opt.weight_decay:
                lines.append("gradient = gradient + self.l2_weight_decay * variable")
            if opt.momentum:
                lines += [
                    "buffer = self.momentum_buffers[self._get_variable_index(variable)]",
                    "# From zeros this gives buffer = gradient at the first step, as in PyTorch.",
                    "self.assign(buffer, self.momentum * buffer + gradient)",
                    "gradient = gradient + self.momentum * buffer"
                    if opt.nesterov
                    else "gradient = buffer",
                ]
            return [*lines, "self.assign_sub(variable, lr * gradient)"]
        lines = [
            "dtype = variable.dtype",
            "# Step scalars in float64, as PyTorch computes them in Python floats.",
            'lr = ops.cast(learning_rate, "float64")',
            'step = ops.cast(self.iterations + 1, "float64")',
            "step_size = ops.cast(lr / (1 - ops.power(self.beta_1, step)), dtype)",
            "bias_correction2_sqrt = ops.cast(ops.sqrt(1 - ops.power(self.beta_2, step)), dtype)",
        ]
        if opt.weight_decay and opt.kind == "adamw":
            lines.append(
                "self.assign(variable, variable * ops.cast(1 - lr * self.decoupled_weight_decay, "
                "dtype))"
            )
        elif opt.weight_decay:
            lines.append("gradient = gradient + self.l2_weight_decay * variable")
        lines += [
            "m = self.first_moments[self._get_variable_index(variable)]",
            "v = self.second_moments[self._get_variable_index(variable)]",
            "self.assign(m, m + (1 - self.beta_1) * (gradient - m))",
            "self.assign(v, self.beta_2 * v + (1 - self.beta_2) * gradient * gradient)",
            "denominator = ops.sqrt(v) / bias_correction2_sqrt + self.epsilon",
            "self.assign_sub(variable, step_size * m / denominator)",
        ]
        return lines
