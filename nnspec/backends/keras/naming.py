"""Python names in a generated Keras ``model.py``: layer attributes, the variables of ``call``,
and the padding masks ``call`` computes."""

from __future__ import annotations

from dataclasses import dataclass

from nnspec.backends.base import Namespace
from nnspec.compiler import ir

# Module-level names of the generated model.py, and the names `call` itself uses: no input or
# local variable may take them.
MODULE_NAMES = frozenset(
    {
        "CANONICAL",
        "CANONICAL_SHAPES",
        "build_model",
        "check_canonical_state",
        "fresh_initializer",
        "gelu",
        "inputs",
        "keras",
        "load_file",
        "loss_fn",
        "make_optimizer",
        "np",
        "ops",
        "rotary",
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
    load_weights logits loss losses make_predict_function make_test_function make_train_function
    metrics metrics_names metrics_variables name non_trainable_variables non_trainable_weights
    optimizer
    output outputs path predict predict_function predict_on_batch predict_step quantization_mode
    quantize quantized_build quantized_call rematerialized_call reset_metrics run_eagerly save
    save_canonical save_own_variables save_weights set_state_tree set_weights stateless_call
    stateless_compute_loss steps_per_execution stop_training summary supports_jit
    supports_masking symbolic_call test_function test_on_batch test_step to_json train_function
    train_on_batch train_step trainable trainable_variables trainable_weights
    unrolled_steps_per_execution variable variable_dtype variables weights
    """.split()  # noqa: SIM905 (a word list reads better than a column of 110 strings)
)


@dataclass(frozen=True)
class Names:
    """The Python names of one program's generated model.

    Attributes:
        attrs: layer attribute (also the Keras layer name) of each table and of each layer, by
            table name or :attr:`ir.Node.layer_name` (nodes sharing a layer share its attribute).
        values: the variable holding each model input and node output in ``call``. A value
            used only by the next node (or returned by the last) lives in ``x``; any other value
            gets its own name.
        masks: the expression for each padding mask a node reads: a variable that ``call``
            computes first when several nodes read the mask, else the computation itself.
        mask_variables: ``(variable, mask)`` for each mask computed once in ``call``.
        attr_space: the namespace of the model's attributes and Keras layer names, to claim more.
        local_space: the namespace of ``call``'s local variables, to claim more.
    """

    attrs: dict[str, str]
    values: dict[str, str]
    masks: dict[ir.Mask, str]
    mask_variables: tuple[tuple[str, ir.Mask], ...]
    attr_space: Namespace
    local_space: Namespace

    def layer(self, node: ir.Node) -> str:
        """``self.<attribute>`` of the layer computing ``node``."""
        return f"self.{self.attrs[node.layer_name]}"

    def args(self, node: ir.Node) -> str:
        """The variables of ``node``'s inputs, comma-separated."""
        return ", ".join(self.values[name] for name in node.inputs)


def input_mask(program: ir.Program, node: ir.Node) -> ir.Mask | None:
    """The padding mask of ``node``'s (first) input node, if any."""
    source = next((n for n in program.nodes if n.name == node.inputs[0]), None)
    return None if source is None else source.mask


def compute_mask(mask: ir.Mask, values: dict[str, str]) -> str:
    """The expression computing ``mask`` from its input's variable."""
    return f"ops.not_equal({values[mask.input]}, {mask.pad_index})"


def assign_names(program: ir.Program) -> Names:
    """Assign every attribute and variable name of the generated model (once per generation:
    the generator keeps the result)."""
    attrs = Namespace(MODEL_ATTRIBUTES, private_prefix="layer")
    layer_attrs = {table.name: attrs.claim(table.name) for table in program.tables}
    for node in program.nodes:
        if not isinstance(node.op, ir.EmbeddingLookup) and node.layer_name not in layer_attrs:
            layer_attrs[node.layer_name] = attrs.claim(node.layer_name)

    end = len(program.nodes)
    uses: dict[str, list[int]] = {name: [end] for name in program.outputs}
    for i, node in enumerate(program.nodes):
        for name in node.inputs:
            uses.setdefault(name, []).append(i)
    # `call`'s own parameters: a program trained from its logits also takes `logits`.
    flags = {"logits"} if program.output_activation else set()
    local = Namespace(MODULE_NAMES | {program.class_name} | flags, private_prefix="layer")
    values = {inp.name: local.claim(inp.name) for inp in program.inputs}

    readers: dict[ir.Mask, int] = {}
    for node in program.nodes:
        mask = program.read_mask(node)
        if mask is not None:
            readers[mask] = readers.get(mask, 0) + 1
    masks: dict[ir.Mask, str] = {}
    variables = []
    for mask, count in readers.items():
        if count == 1:
            masks[mask] = compute_mask(mask, values)
        else:
            masks[mask] = local.claim(f"{mask.input}_mask")
            variables.append((masks[mask], mask))

    in_x: str | None = None  # the node whose output ``x`` holds
    for i, node in enumerate(program.nodes):
        x_free = in_x is None or max(uses.get(in_x, [-1])) <= i
        if x_free and uses.get(node.name) in ([i + 1], [end] if i == end - 1 else None):
            values[node.name] = "x"
            in_x = node.name
        else:
            values[node.name] = local.claim(node.name)
    return Names(layer_attrs, values, masks, tuple(variables), attrs, local)
