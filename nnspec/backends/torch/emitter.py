"""Render an IR program as PyTorch source: ``model.py`` (an ``nn.Module``) and ``train.py``.

Each IR op has one ``emit_*`` method (see :attr:`TorchBackend.emitters`) returning an
:class:`Emitted`: its lines for the model's ``__init__`` and ``forward``, and how the model
reaches the canonical weights the op owns. The templates only lay the files out around them.
"""

from __future__ import annotations

import dataclasses
import keyword
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar

from nnspec.backends.base import Backend, format_source, header, template_env
from nnspec.compiler import ir

# Module-level names of the generated model.py; no input, local or class may shadow them.
MODULE_NAMES = frozenset(
    {
        "CANONICAL_SHAPES",
        "F",
        "LearnedPositionalEncoding",
        "Mapping",
        "PartiallyTrainableEmbedding",
        "Path",
        "SinusoidalPositionalEncoding",
        "build_model",
        "load_file",
        "loss_fn",
        "make_optimizer",
        "masked_max",
        "masked_mean",
        "math",
        "nn",
        "np",
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

ACTIVATIONS = {
    "linear": "{}",
    "relu": "torch.relu({})",
    "gelu": "F.gelu({})",
    "tanh": "torch.tanh({})",
    "sigmoid": "torch.sigmoid({})",
    "softmax": "torch.softmax({}, dim=-1)",
}

CLASSIFICATION_LOSSES = (
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
)


@dataclass
class WeightCode:
    """How the generated model reaches one canonical weight.

    Attributes:
        weight: the canonical weight.
        value: expression for the weight in canonical layout.
        grad: expression for its gradient in canonical layout (0.0 at frozen rows); ``None`` when
            the weight has no trainable scalars.
        load: statement copying a canonical-layout tensor, written as ``{}``, into the model.
        reset: statements drawing fresh initial values (padding rows included, as 0.0).
    """

    weight: ir.Weight
    value: str
    grad: str | None
    load: str
    reset: list[str]


@dataclass
class Emitted:
    """What one op contributes to ``model.py``."""

    init: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)
    weights: list[WeightCode] = field(default_factory=list)
    helpers: set[str] = field(default_factory=set)
    imports: set[str] = field(default_factory=set)


class _Namespace:
    """Hands out unique Python names, appending ``_`` to any name that is taken or reserved."""

    def __init__(self, reserved: frozenset[str], private_ok: bool = True) -> None:
        self.taken = set(reserved)
        self.private_ok = private_ok

    def free(self, name: str) -> bool:
        """Whether ``name`` can be handed out as it is."""
        return not (
            name in self.taken
            or keyword.iskeyword(name)
            or (not self.private_ok and name.startswith("_") and not name.endswith("_"))
        )

    def claim(self, name: str) -> str:
        """``name``, or ``name`` followed by enough underscores to be free; now taken."""
        while not self.free(name):
            name += "_"
        self.taken.add(name)
        return name


@dataclass(frozen=True)
class _Names:
    """The Python names of one program's generated model.

    Attributes:
        tables: the embedding submodule of each table, by table name.
        positions: the positional-encoding submodule of each table that has one.
        layers: the submodule of each node that has one, by node name.
        values: local variable in ``forward`` of each model input and node.
        masks: the padding masks ``forward`` computes, in order, with their local variables.
    """

    tables: dict[str, str]
    positions: dict[str, str]
    layers: dict[str, str]
    values: dict[str, str]
    masks: dict[ir.Mask, str]


def _zero_mask(program: ir.Program, node: ir.Node) -> ir.Mask | None:
    """The mask an embedding lookup multiplies its output by, if it needs one.

    Without a positional encoding the padding row of the table is already 0.0, so no multiply is
    needed (see :class:`ir.EmbeddingTable`).
    """
    table = program.table(node.op.table)
    if table.pad_index is None or not table.zero_padded_positions:
        return None
    if table.positional is None and table.pad_index in program.weight(table.weight).zero_rows:
        return None
    return ir.Mask(node.inputs[0], table.pad_index)


def _pool_mask(program: ir.Program, node: ir.Node) -> ir.Mask | None:
    """The mask a pooling node reads: its input node's."""
    source = node.inputs[0]
    if any(n.name == source for n in program.nodes):
        return program.node(source).mask
    return None


@lru_cache(maxsize=16)
def _names(program: ir.Program) -> _Names:
    """Assign every attribute and local name of the generated model."""
    for inp in program.inputs:
        if inp.name in MODULE_NAMES or keyword.iskeyword(inp.name):
            raise ValueError(
                f"input name {inp.name!r} is reserved in the generated PyTorch module; rename it"
            )
    attrs = _Namespace(MODULE_ATTRIBUTES, private_ok=False)
    tables = {table.name: attrs.claim(table.name) for table in program.tables}
    positions = {
        table.name: attrs.claim(f"{table.name}_positions")
        for table in program.tables
        if table.positional is not None
    }
    layers = {
        node.name: attrs.claim(node.name)
        for node in program.nodes
        if isinstance(node.op, ir.Dense | ir.Dropout)
    }

    local = _Namespace(MODULE_NAMES | {inp.name for inp in program.inputs})
    values = {inp.name: inp.name for inp in program.inputs}
    masks: dict[ir.Mask, str] = {}
    for node in program.nodes:
        if isinstance(node.op, ir.EmbeddingLookup):
            mask = _zero_mask(program, node)
        elif isinstance(node.op, ir.GlobalPool):
            mask = _pool_mask(program, node)
        else:
            mask = None
        if mask is not None and mask not in masks:
            masks[mask] = local.claim(f"{mask.input}_mask")
    for node in program.nodes:
        values[node.name] = local.claim(node.name)
    return _Names(tables=tables, positions=positions, layers=layers, values=values, masks=masks)


def _shape(shape: ir.Shape) -> str:
    """A shape comment such as ``(B, 12, 8)``."""
    return "(" + ", ".join("B" if d is None else str(d) for d in shape) + ")"


def _rows(rows: tuple[int, ...]) -> str:
    """An index selecting ``rows`` of a tensor's first axis."""
    return str(rows[0]) if len(rows) == 1 else repr(list(rows))


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Canonical fans: ``shape[0]`` and ``shape[1]`` (both ``shape[0]`` for a vector)."""
    return shape[0], shape[1] if len(shape) > 1 else shape[0]


def _init(target: str, weight: ir.Weight, torch_fans: bool, out: Emitted) -> str:
    """A statement drawing ``target`` (a tensor) from ``weight.initializer``.

    ``torch_fans`` says that torch's fan computation on ``target`` equals the canonical one
    (true of an ``nn.Linear`` weight, ``[out, in]``), so ``nn.init``'s Glorot and He apply.
    """
    init = weight.initializer
    kind = init.kind
    if kind == "zeros":
        return f"nn.init.zeros_({target})"
    if kind == "ones":
        return f"nn.init.ones_({target})"
    if kind == "uniform":
        return f"nn.init.uniform_({target}, {init.low!r}, {init.high!r})"
    if kind == "normal":
        return f"nn.init.normal_({target}, mean={init.mean!r}, std={init.std!r})"
    if kind == "truncated_normal":
        low, high = init.mean - 2 * init.std, init.mean + 2 * init.std
        return (
            f"nn.init.trunc_normal_({target}, mean={init.mean!r}, std={init.std!r}, "
            f"a={low!r}, b={high!r})"
        )
    symmetric = kind.startswith("glorot") and len(weight.shape) == 2
    if torch_fans or symmetric:
        return {
            "glorot_uniform": f"nn.init.xavier_uniform_({target})",
            "glorot_normal": f"nn.init.xavier_normal_({target})",
            "he_uniform": f'nn.init.kaiming_uniform_({target}, nonlinearity="relu")',
            "he_normal": f'nn.init.kaiming_normal_({target}, nonlinearity="relu")',
        }[kind]
    out.imports.add("math")
    fan_in, fan_out = _fans(weight.shape)
    if kind == "glorot_uniform":
        limit = f"math.sqrt(6 / ({fan_in} + {fan_out}))"
        return f"nn.init.uniform_({target}, -{limit}, {limit})"
    if kind == "glorot_normal":
        return f"nn.init.normal_({target}, std=math.sqrt(2 / ({fan_in} + {fan_out})))"
    if kind == "he_uniform":
        limit = f"math.sqrt(6 / {fan_in})"
        return f"nn.init.uniform_({target}, -{limit}, {limit})"
    if kind == "he_normal":
        return f"nn.init.normal_({target}, std=math.sqrt(2 / {fan_in}))"
    raise ValueError(f"unknown initializer {kind!r} for weight {weight.name!r}")


def _parameter(
    weight: ir.Weight, param: str, out: Emitted, *, transposed: bool = False
) -> WeightCode:
    """The code for a weight held whole in one parameter (``param``, e.g. ``self.dense.weight``).

    ``transposed``: the parameter is the canonical layout transposed (``nn.Linear.weight``).
    """
    if weight.trainable == "rows":
        raise ValueError(f"weight {weight.name!r}: row-wise trainability is for embedding tables")
    t = ".T" if transposed else ""
    reset = [_init(param, weight, transposed, out)]
    if weight.zero_rows:
        reset.append(f"{param}[{_rows(weight.zero_rows)}] = 0.0")
    if weight.trainable == "none":
        out.init.append(f"{param}.requires_grad_(False)")
    return WeightCode(
        weight=weight,
        value=f"{param}{t}",
        grad=None if weight.trainable == "none" else f"_grad({param}){t}",
        load=f"{param}.copy_({{}}{t})",
        reset=reset,
    )


class TorchBackend(Backend):
    """Generates an idiomatic ``torch.nn.Module``, its loss and optimizer, and a training script."""

    name = "torch"
    emitters: ClassVar[dict[type, str]] = {
        ir.EmbeddingLookup: "emit_embedding",
        ir.Flatten: "emit_flatten",
        ir.Dense: "emit_dense",
        ir.Dropout: "emit_dropout",
        ir.GlobalPool: "emit_global_pool",
    }

    # ------------------------------------------------------------------------------ ops

    def emit_embedding(self, program: ir.Program, node: ir.Node) -> Emitted:
        """Look ids up: ``table[ids] * scale``, plus positions, times the padding mask."""
        names = _names(program)
        table = program.table(node.op.table)
        out = Emitted()
        lookups = (n for n in program.nodes if isinstance(n.op, ir.EmbeddingLookup))
        if next(n for n in lookups if n.op.table == table.name) is node:
            self._emit_table(program, table, out)
        expr = f"self.{names.tables[table.name]}({names.values[node.inputs[0]]})"
        if table.scale != 1.0:
            expr = f"{expr} * {table.scale!r}"
        if table.positional is not None:
            expr = f"self.{names.positions[table.name]}({expr})"
        value = names.values[node.name]
        out.forward.append(f"{value} = {expr}  # {_shape(node.shape)}")
        mask = _zero_mask(program, node)
        if mask is not None:
            out.forward.append(
                f"{value} = {value} * {names.masks[mask]}.unsqueeze(-1)  # 0.0 at padding"
            )
        return out

    def _emit_table(self, program: ir.Program, table: ir.EmbeddingTable, out: Emitted) -> None:
        """Create a table's embedding (and positional encoding) submodules and weight code."""
        attr = _names(program).tables[table.name]
        weight = program.weight(table.weight)
        vocab, dim = weight.shape
        policy = weight.trainable
        if policy == "rows" and weight.n_trainable_rows == 0:
            policy = "none"
        elif policy == "rows" and weight.n_trainable_rows == vocab:
            policy = "all"
        if policy == "rows":
            out.helpers.add("PartiallyTrainableEmbedding")
            out.imports.add("F")
            out.init.append(
                f"self.{attr} = PartiallyTrainableEmbedding({vocab}, {dim}, "
                f"trainable_rows={list(weight.trainable_rows)!r}, dtype=dtype)"
            )
            reset = [f"table = {_init(f'torch.empty({vocab}, {dim})', weight, False, out)}"]
            if weight.zero_rows:
                reset.append(f"table[{_rows(weight.zero_rows)}] = 0.0")
            reset.append(f"self.{attr}.load_weight(table)")
            out.weights.append(
                WeightCode(
                    weight=weight,
                    value=f"self.{attr}.weight",
                    grad=(
                        f"self.{attr}.merge(_grad(self.{attr}.trainable), "
                        f"torch.zeros_like(self.{attr}.frozen))"
                    ),
                    load=f"self.{attr}.load_weight({{}})",
                    reset=reset,
                )
            )
        else:
            padding = ""
            if len(weight.zero_rows) == 1:
                padding = f", padding_idx={weight.zero_rows[0]}"
            elif weight.zero_rows and policy == "all":
                raise ValueError(
                    f"weight {weight.name!r}: a fully trainable table can hold only one row at 0.0"
                )
            out.init.append(f"self.{attr} = nn.Embedding({vocab}, {dim}{padding}, dtype=dtype)")
            if policy != weight.trainable:
                weight = dataclasses.replace(weight, trainable=policy, trainable_rows=())
            out.weights.append(_parameter(weight, f"self.{attr}.weight", out))

        positional = table.positional
        if positional is None:
            return
        pos_attr = _names(program).positions[table.name]
        if isinstance(positional, ir.SinusoidalPositional):
            out.helpers.add("SinusoidalPositionalEncoding")
            base = "" if positional.base == 10000.0 else f", base={positional.base!r}"
            out.init.append(
                f"self.{pos_attr} = SinusoidalPositionalEncoding("
                f"{positional.max_length}, {dim}{base}, dtype=dtype)"
            )
        else:
            out.helpers.add("LearnedPositionalEncoding")
            out.init.append(
                f"self.{pos_attr} = LearnedPositionalEncoding("
                f"{positional.max_length}, {dim}, dtype=dtype)"
            )
            out.weights.append(
                _parameter(program.weight(positional.weight), f"self.{pos_attr}.weight", out)
            )

    def emit_flatten(self, program: ir.Program, node: ir.Node) -> Emitted:
        """Flatten all but the batch axis (row-major over the channels-last layout)."""
        names = _names(program)
        x = names.values[node.inputs[0]]
        return Emitted(
            forward=[f"{names.values[node.name]} = {x}.flatten(1)  # {_shape(node.shape)}"]
        )

    def emit_dense(self, program: ir.Program, node: ir.Node) -> Emitted:
        """An ``nn.Linear`` and its activation."""
        names = _names(program)
        op: ir.Dense = node.op
        attr = names.layers[node.name]
        kernel = program.weight(op.kernel)
        n_in, n_out = kernel.shape
        bias = "" if op.bias is not None else ", bias=False"
        out = Emitted(init=[f"self.{attr} = nn.Linear({n_in}, {n_out}{bias}, dtype=dtype)"])
        out.weights.append(_parameter(kernel, f"self.{attr}.weight", out, transposed=True))
        if op.bias is not None:
            out.weights.append(_parameter(program.weight(op.bias), f"self.{attr}.bias", out))
        if op.activation not in ACTIVATIONS:
            raise ValueError(f"node {node.name!r}: unknown activation {op.activation!r}")
        if op.activation == "gelu":
            out.imports.add("F")
        expr = ACTIVATIONS[op.activation].format(f"self.{attr}({names.values[node.inputs[0]]})")
        out.forward.append(f"{names.values[node.name]} = {expr}  # {_shape(node.shape)}")
        return out

    def emit_dropout(self, program: ir.Program, node: ir.Node) -> Emitted:
        """An ``nn.Dropout`` (inverted dropout, identity in eval mode)."""
        names = _names(program)
        attr = names.layers[node.name]
        return Emitted(
            init=[f"self.{attr} = nn.Dropout({node.op.rate!r})"],
            forward=[f"{names.values[node.name]} = self.{attr}({names.values[node.inputs[0]]})"],
        )

    def emit_global_pool(self, program: ir.Program, node: ir.Node) -> Emitted:
        """Average or max over the sequence axis, ignoring padded positions when masked."""
        names = _names(program)
        x = names.values[node.inputs[0]]
        mask = _pool_mask(program, node)
        out = Emitted()
        if mask is not None:
            helper = "masked_mean" if node.op.mode == "average" else "masked_max"
            out.helpers.add(helper)
            expr = f"{helper}({x}, {names.masks[mask]})"
        else:
            expr = f"{x}.mean(dim=1)" if node.op.mode == "average" else f"{x}.amax(dim=1)"
        out.forward.append(f"{names.values[node.name]} = {expr}  # {_shape(node.shape)}")
        return out

    # ------------------------------------------------------------------------------ files

    def generate(self, program: ir.Program) -> dict[str, str]:
        """Render ``model.py`` and ``train.py`` for ``program``."""
        self.check(program)
        reserved = MODULE_NAMES - {"self"}
        if program.class_name in reserved:
            raise ValueError(f"class name {program.class_name!r} is reserved in model.py")
        env = template_env(__package__)
        parts = [self.emitter_for(node)(program, node) for node in program.nodes]
        context = {
            "header": header(program, self.name),
            "program": program,
            **self._model_context(program, parts),
        }
        return {
            "model.py": format_source(env.get_template("model.py.j2").render(context)),
            "train.py": format_source(
                env.get_template("train.py.j2").render(self._train_context(program, context))
            ),
        }

    def _model_context(self, program: ir.Program, parts: list[Emitted]) -> dict[str, object]:
        """Template variables of ``model.py``."""
        names = _names(program)
        by_name = {code.weight.name: code for part in parts for code in part.weights}
        missing = [w.name for w in program.weights if w.name not in by_name]
        if missing:
            raise ValueError(f"no op owns the weights {missing}")
        weights = [by_name[w.name] for w in program.weights]
        helpers = set().union(*(p.helpers for p in parts))
        imports = set().union(*(p.imports for p in parts))

        masks = [
            f"{local} = {names.values[mask.input]} != {mask.pad_index!r}  # (B, L), False at pads"
            for mask, local in names.masks.items()
        ]
        outputs = [names.values[name] for name in program.outputs]
        loss_doc, loss_body = _loss(program.training, imports)
        optimizer_doc, optimizer_body = _optimizer(program.training.optimizer)

        load = []
        for code in weights:
            source = f"tensors[{code.weight.name!r}]"
            if code.weight.zero_rows:
                load.append(f"{source}[{_rows(code.weight.zero_rows)}] = 0.0")
            load.append(code.load.format(source))

        output_shapes = ", ".join(
            f"``{name}`` ``{_shape(program.node(name).shape)}``" for name in program.outputs
        )
        return {
            "helpers": helpers,
            "imports": imports,
            "shapes": [(repr(code.weight.name), repr(code.weight.shape)) for code in weights],
            "init": [line for part in parts for line in part.init],
            "reset": [line for code in weights for line in code.reset],
            "signature": ", ".join(f"{inp.name}: torch.Tensor" for inp in program.inputs),
            "forward": masks + [line for part in parts for line in part.forward],
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

    def _train_context(self, program: ir.Program, model: dict[str, object]) -> dict[str, object]:
        """Template variables of ``train.py``."""
        training = program.training
        stopping = training.early_stopping
        return {
            "header": model["header"],
            "program": program,
            "inputs": repr(tuple(inp.name for inp in program.inputs)),
            "input_list": ", ".join(f"``{inp.name}``" for inp in program.inputs),
            "epochs": training.epochs,
            "batch_size": training.batch_size,
            "lr": repr(training.optimizer.lr),
            "seed": training.seed,
            "validation_split": repr(training.validation_split),
            "validation_percent": f"{training.validation_split:.0%}",
            "accuracy": _accuracy(training),
            "early_stopping": stopping
            and {
                "monitor": repr(stopping.monitor),
                "patience": stopping.patience,
                "min_delta": repr(stopping.min_delta),
                "mode": repr(stopping.mode),
                "restore_best": stopping.restore_best,
            },
        }


# ------------------------------------------------------------------------------ training


def _docstring(summary: str, *details: str) -> str:
    """A docstring literal (quotes included): a summary line, then paragraphs of detail."""
    if not details:
        return f'"""{summary}"""'
    return f'"""{summary}\n\n' + "\n\n".join(details) + '\n"""'


def _loss(training: ir.Training, imports: set[str]) -> tuple[str, list[str]]:
    """Docstring and body of ``loss_fn(y_true, y_pred)``."""
    eps = repr(training.epsilon)
    clip = f"clamp({eps}, 1 - {eps})"
    clipped = f"Probabilities are clipped to ``[{eps}, 1 - {eps}]``."
    logits = training.from_logits
    match training.loss:
        case "sparse_categorical_crossentropy" if logits:
            imports.add("F")
            doc = _docstring("Cross-entropy of class ids ``(B,)`` and logits ``(B, C)``.")
            return doc, ["return F.cross_entropy(y_pred, y_true.long().reshape(-1))"]
        case "sparse_categorical_crossentropy":
            doc = _docstring(
                "Cross-entropy of class ids ``(B,)`` and probabilities ``(B, C)``.", clipped
            )
            return doc, [
                "p = y_pred.gather(-1, y_true.long().reshape(-1, 1)).squeeze(-1)",
                f"return -torch.log(p.{clip}).mean()",
            ]
        case "categorical_crossentropy" if logits:
            imports.add("F")
            doc = _docstring("Cross-entropy of class probabilities and logits, both ``(B, C)``.")
            return doc, ["return F.cross_entropy(y_pred, y_true.to(y_pred.dtype))"]
        case "categorical_crossentropy":
            doc = _docstring(
                "Cross-entropy of one-hot labels and probabilities, both ``(B, C)``.", clipped
            )
            return doc, [
                f"log_p = torch.log(y_pred.{clip})",
                "return -(y_true.to(y_pred.dtype) * log_p).sum(dim=-1).mean()",
            ]
        case "binary_crossentropy" if logits:
            imports.add("F")
            doc = _docstring("Binary cross-entropy of 0/1 labels and logits, over all elements.")
            return doc, [
                "y_true = y_true.to(y_pred.dtype).reshape_as(y_pred)",
                "return F.binary_cross_entropy_with_logits(y_pred, y_true)",
            ]
        case "binary_crossentropy":
            doc = _docstring(
                "Binary cross-entropy of 0/1 labels and probabilities, over all elements.", clipped
            )
            return doc, [
                "y_true = y_true.to(y_pred.dtype).reshape_as(y_pred)",
                f"p = y_pred.{clip}",
                "return -(y_true * torch.log(p) + (1 - y_true) * torch.log(1 - p)).mean()",
            ]
        case "mse":
            imports.add("F")
            doc = _docstring("Mean squared error over all elements.")
            return doc, ["return F.mse_loss(y_pred, y_true.to(y_pred.dtype).reshape_as(y_pred))"]
    raise ValueError(f"unknown loss {training.loss!r}")


def _optimizer(opt: ir.Optimizer) -> tuple[str, list[str]]:
    """Docstring and body of ``make_optimizer(model, lr=None)``."""
    lr = f"{opt.lr!r} if lr is None else lr"
    if opt.kind == "sgd":
        args = [f"lr={lr}"]
        if opt.momentum:
            args.append(f"momentum={opt.momentum!r}")
        if opt.nesterov:
            args.append("nesterov=True")
        if opt.weight_decay:
            args.append(f"weight_decay={opt.weight_decay!r}")
        call = f"torch.optim.SGD(params, {', '.join(args)})"
        doc = "SGD" + (" with Nesterov momentum" if opt.nesterov else "")
    elif opt.kind in ("adam", "adamw"):
        args = [f"lr={lr}", f"betas=({opt.beta1!r}, {opt.beta2!r})", f"eps={opt.eps!r}"]
        if opt.weight_decay or opt.kind == "adamw":
            args.append(f"weight_decay={opt.weight_decay!r}")
        cls = "Adam" if opt.kind == "adam" else "AdamW"
        call = f"torch.optim.{cls}(params, {', '.join(args)})"
        doc = cls
    else:
        raise ValueError(f"unknown optimizer {opt.kind!r}")
    summary = f"{doc} over the trainable parameters of ``model``."
    detail = f"The learning rate is {opt.lr!r} unless ``lr`` is given."
    body = ["params = [p for p in model.parameters() if p.requires_grad]"]
    if opt.clip_norm is None:
        return _docstring(summary, detail), [*body, f"return {call}"]
    detail += f" Gradients are clipped to a global norm of {opt.clip_norm!r} before each step."
    return _docstring(summary, detail), [
        *body,
        f"optimizer = {call}",
        "",
        "def clip_gradients(*_: object) -> None:",
        f'    """Scale the gradients down to a global norm of at most {opt.clip_norm!r}."""',
        f"    nn.utils.clip_grad_norm_(params, {opt.clip_norm!r})",
        "",
        "optimizer.register_step_pre_hook(clip_gradients)",
        "return optimizer",
    ]


def _accuracy(training: ir.Training) -> dict[str, str] | None:
    """Docstring and expression of ``train.py``'s accuracy, for classification losses."""
    if training.loss not in CLASSIFICATION_LOSSES:
        return None
    if training.loss == "sparse_categorical_crossentropy":
        return {
            "doc": "Fraction of examples whose most probable class is the label.",
            "expr": "y_pred.argmax(dim=-1) == y_true.reshape(-1)",
        }
    if training.loss == "categorical_crossentropy":
        return {
            "doc": "Fraction of examples whose most probable class is the label's.",
            "expr": "y_pred.argmax(dim=-1) == y_true.argmax(dim=-1)",
        }
    threshold = "0.0" if training.from_logits else "0.5"
    return {
        "doc": f"Fraction of outputs on the label's side of {threshold}.",
        "expr": f"(y_pred > {threshold}) == (y_true.reshape_as(y_pred) > 0.5)",
    }
