"""One handler per Keras layer class: checks the layer's options and appends its spec layer
(and table, and weight plan) through the :class:`~nnspec.importers.mapping.Mapper`. An option
without an exact spec form is a problem naming the layer; initializers without one are notes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nnspec.importers.common import MERGES, RECURRENT, WeightPlan, identifier, is_refs
from nnspec.importers.keras_config import KerasLayer, Ref

if TYPE_CHECKING:
    from nnspec.importers.mapping import Mapper


def _embedding(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: dict[str, Any]) -> None:
    source = m.produced[refs[0]]
    if source not in m.inputs:
        m.fail(layer, "reads a layer's output; spec embeddings look up model inputs")
        return
    c = layer.config
    table = identifier(layer.name)
    if k == 0:
        m.check_none(layer, "embeddings_regularizer", "activity_regularizer", "lora_rank")
        if c.get("quantization_config") or c.get("sparse"):
            m.fail(layer, "quantized or sparse embeddings have no spec form")
        table = m.unique(table)
        spec: dict[str, Any] = {"vocab_size": int(c["input_dim"]), "dim": int(c["output_dim"])}
        m.init(layer, "embeddings_initializer", spec, "initializer")
        m.constraint(layer, "embeddings_constraint", spec, "constraint")
        if c.get("mask_zero") or layer.name in m.padded_by_multiply:
            spec["padding"] = {"index": 0}
        if c.get("trainable") is False:
            spec["trainable"] = False
            if spec.pop("constraint", None):
                m.notes.append(f"{layer.name}: frozen, so its constraint never applies (left out)")
        m.tables[table] = spec
        m.weights.append(WeightPlan("embedding", layer.name, table))
    else:
        table = m.by_name[m.produced[(layer.name, 0, 0)]]["table"]
    entry: dict[str, Any] = {"type": "embedding", "table": table}
    if len(m.inputs) > 1:
        entry["input"] = source
    name = m.unique(f"{table}_lookup" if k == 0 else f"{table}_lookup_{k}")
    m.add(layer, k, refs, entry, name=name)


def _dense(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: dict[str, Any]) -> None:
    c = layer.config
    _frozen(m, layer)
    m.check_none(layer, "kernel_regularizer", "bias_regularizer", "activity_regularizer")
    m.check_none(layer, "lora_rank", "quantization_config")
    entry: dict[str, Any] = {"type": "dense", "units": int(c["units"])}
    _common(m, layer, entry)
    m.add(layer, k, refs, entry, "dense")


def _time_distributed(
    m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: dict[str, Any]
) -> None:
    """``TimeDistributed(Dense)``: the spec's dense already acts on the last axis."""
    inner = layer.config.get("layer", {})
    if inner.get("class_name") != "Dense":
        m.fail(layer, f"wraps {inner.get('class_name')}; only TimeDistributed(Dense) maps")
        return
    config = {**inner.get("config", {}), "trainable": layer.config.get("trainable", True)}
    _dense(m, KerasLayer(layer.name, "TimeDistributed", config), k, refs, kw)


def _common(m: Mapper, layer: KerasLayer, entry: dict[str, Any]) -> None:
    """Activation, bias, initializers and constraints of a dense or conv1d layer."""
    c = layer.config
    act = m.activation(layer, c.get("activation", "linear"))
    if act != "linear":
        entry["activation"] = act
    if not c.get("use_bias", True):
        entry["use_bias"] = False
    m.init(layer, "kernel_initializer", entry, "kernel_initializer")
    if c.get("use_bias", True):
        m.init(layer, "bias_initializer", entry, "bias_initializer")
    m.constraint(layer, "kernel_constraint", entry, "kernel_constraint")
    m.constraint(layer, "bias_constraint", entry, "bias_constraint")
    for key in ("kernel_initializer", "bias_initializer"):
        if entry.get(key) == {"type": "glorot_uniform" if "kernel" in key else "zeros"}:
            del entry[key]  # the spec's default


def _frozen(m: Mapper, layer: KerasLayer) -> None:
    if layer.config.get("trainable") is False:
        m.fail(layer, "trainable=False: the spec freezes embedding tables only")


def _dropout(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: dict[str, Any]) -> None:
    m.check_none(layer, "noise_shape")
    m.add(layer, k, refs, {"type": "dropout", "rate": float(layer.config["rate"])})


def _flatten(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: dict[str, Any]) -> None:
    m.require(layer, "data_format", (None, "channels_last"))
    m.add(layer, k, refs, {"type": "flatten"})


def _global_pool(kind: str) -> Callable[..., None]:
    def handler(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: Any) -> None:
        """``GlobalAveragePooling1D`` / ``GlobalMaxPooling1D``, channels last, no keepdims."""
        m.require(layer, "data_format", (None, "channels_last"))
        m.require(layer, "keepdims", (None, False))
        m.add(layer, k, refs, {"type": kind})

    return handler


def _pool(kind: str) -> Callable[..., None]:
    def handler(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: Any) -> None:
        """``MaxPooling1D`` / ``AveragePooling1D`` with valid padding."""
        c = layer.config
        m.require(layer, "data_format", (None, "channels_last"))
        m.require(layer, "padding", ("valid",), "valid")
        size = _one(c.get("pool_size", 2))
        entry: dict[str, Any] = {"type": kind, "pool_size": size}
        strides = c.get("strides")
        if strides is not None and _one(strides) != size:
            entry["strides"] = _one(strides)
        m.add(layer, k, refs, entry)

    return handler


def _one(value: Any) -> int:
    return int(value[0] if isinstance(value, list | tuple) else value)


def _conv1d(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: dict[str, Any]) -> None:
    c = layer.config
    _frozen(m, layer)
    m.require(layer, "data_format", (None, "channels_last"))
    m.require(layer, "groups", (None, 1))
    m.require(layer, "padding", ("valid", "same", "causal"), "valid")
    m.check_none(layer, "kernel_regularizer", "bias_regularizer", "activity_regularizer")
    entry: dict[str, Any] = {
        "type": "conv1d",
        "filters": int(c["filters"]),
        "kernel_size": _one(c["kernel_size"]),
    }
    if _one(c.get("strides", 1)) != 1:
        entry["strides"] = _one(c["strides"])
    if _one(c.get("dilation_rate", 1)) != 1:
        entry["dilation"] = _one(c["dilation_rate"])
    if c.get("padding", "valid") != "valid":
        entry["padding"] = c["padding"]
    _common(m, layer, entry)
    m.add(layer, k, refs, entry, "conv1d")


def _recurrent_entry(m: Mapper, layer: KerasLayer, c: dict[str, Any], kind: str) -> dict[str, Any]:
    where = KerasLayer(layer.name, layer.class_name, c)
    m.require(where, "activation", ("tanh",), "tanh")
    m.require(where, "recurrent_activation", ("sigmoid",), "sigmoid")
    m.require(where, "use_bias", (True,), True)
    for key in ("go_backwards", "stateful", "return_state"):
        if c.get(key):
            m.fail(layer, f"{key}=True has no spec form")
    for key in ("dropout", "recurrent_dropout"):
        if c.get(key):
            m.fail(
                layer,
                f"{key}={c[key]} has no spec form (the spec's recurrent dropout is "
                "between stacked layers)",
            )
    if kind == "gru":
        m.require(where, "reset_after", (True,), True)
    m.check_none(where, "kernel_regularizer", "recurrent_regularizer", "bias_regularizer")
    m.check_none(where, "activity_regularizer", "kernel_constraint", "recurrent_constraint")
    m.check_none(where, "bias_constraint")
    entry: dict[str, Any] = {"type": kind, "units": int(c["units"])}
    if c.get("return_sequences"):
        entry["return_sequences"] = True
    m.init(where, "kernel_initializer", entry, "kernel_initializer")
    m.init(where, "recurrent_initializer", entry, "recurrent_initializer")
    m.init(where, "bias_initializer", entry, "bias_initializer")
    if entry.get("kernel_initializer") == {"type": "glorot_uniform"}:
        del entry["kernel_initializer"]
    if entry.get("bias_initializer") == {"type": "zeros"}:
        del entry["bias_initializer"]
    if kind == "lstm" and c.get("unit_forget_bias", True):
        m.notes.append(
            f"{layer.name}: unit_forget_bias (forget-gate bias starts at 1.0) has no spec form; "
            "fresh weights start at the bias initializer"
        )
    m.notes.append(
        f"{layer.name}: Keras' single {kind.upper()} bias is imported as the input bias, the "
        "recurrent bias as 0.0 (the same function; in training both biases learn)"
        if kind == "lstm"
        else f"{layer.name}: GRU biases imported as input and recurrent bias (reset_after)"
    )
    return entry


def _recurrent(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: dict[str, Any]) -> None:
    _frozen(m, layer)
    if kw.get("initial_state"):
        m.fail(layer, "an initial_state has no spec form")
    entry = _recurrent_entry(m, layer, layer.config, layer.class_name.lower())
    m.add(layer, k, refs, entry, "recurrent")


def _bidirectional(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: Any) -> None:
    _frozen(m, layer)
    inner = layer.config.get("layer", {})
    kind = inner.get("class_name")
    if kind not in RECURRENT:
        m.fail(layer, f"wraps {kind}; the spec's bidirectional layers are LSTM and GRU")
        return
    mode = layer.config.get("merge_mode", "concat")
    if mode not in ("concat", "sum"):
        m.fail(layer, f"merge_mode={mode!r} has no spec form (concat or sum)")
    backward = layer.config.get("backward_layer")
    if backward and backward.get("config", {}).get("units") != inner["config"]["units"]:
        m.fail(layer, "a backward_layer unlike the forward one has no spec form")
    entry = _recurrent_entry(m, layer, inner["config"], kind.lower())
    entry["bidirectional"] = True
    if mode == "sum":
        entry["merge"] = "sum"
    m.add(layer, k, refs, entry, "recurrent")


def _norm_axis(m: Mapper, layer: KerasLayer) -> None:
    axis = layer.config.get("axis", -1)
    axes = axis if isinstance(axis, list) else [axis]
    if axes != [-1] and len(axes) == 1:
        shape = (layer.config.get("build_config") or {}).get("input_shape")
        if not (shape and axes[0] == len(shape) - 1):
            m.fail(layer, f"axis={axis!r}: the spec normalizes over the last axis only")
    elif len(axes) != 1:
        m.fail(layer, f"axis={axis!r}: the spec normalizes over the last axis only")


def _layer_norm(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: Any) -> None:
    c = layer.config
    _frozen(m, layer)
    _norm_axis(m, layer)
    m.require(layer, "center", (True,), True)
    m.require(layer, "scale", (True,), True)
    m.require(layer, "rms_scaling", (False,), False)
    m.check_none(layer, "beta_regularizer", "gamma_regularizer", "beta_constraint")
    m.check_none(layer, "gamma_constraint")
    entry = {"type": "layer_norm", "epsilon": float(c.get("epsilon", 1e-3))}
    m.add(layer, k, refs, entry, "layer_norm")


def _batch_norm(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: Any) -> None:
    c = layer.config
    _frozen(m, layer)
    _norm_axis(m, layer)
    m.require(layer, "center", (True,), True)
    m.require(layer, "scale", (True,), True)
    m.check_none(layer, "renorm", "beta_regularizer", "gamma_regularizer")
    m.check_none(layer, "beta_constraint", "gamma_constraint")
    momentum = round(1.0 - float(c.get("momentum", 0.99)), 12)
    entry = {"type": "batch_norm", "epsilon": float(c.get("epsilon", 1e-3)), "momentum": momentum}
    m.add(layer, k, refs, entry, "batch_norm")


def _merge(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: Any) -> None:
    if layer.class_name == "Concatenate":
        axis = layer.config.get("axis", -1)
        if axis != -1:
            m.fail(layer, f"axis={axis}: the spec concatenates on the last axis only")
    m.add(layer, k, refs, {"type": MERGES[layer.class_name]})


def _activation(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: Any) -> None:
    c = layer.config
    if layer.class_name == "ReLU":
        plain = not c.get("max_value") and not c.get("negative_slope") and not c.get("threshold")
        act = "relu" if plain else "relu6-like"
        if not plain:
            m.fail(layer, "a ReLU with max_value, negative_slope or threshold has no spec form")
            return
    elif layer.class_name == "Softmax":
        if c.get("axis", -1) != -1:
            m.fail(layer, "a softmax over another axis than the last has no spec form")
            return
        act = "softmax"
    else:
        act = m.activation(layer, c.get("activation", "linear"))
    source = m.produced[refs[0]]
    target = m.by_name.get(source)
    alone = len(m.consumers.get(refs[0], [])) == 1 and refs[0] not in m.outputs
    if act == "linear" and target is not None:
        m.produced[(layer.name, k, 0)] = source
        return
    if (
        target is None
        or target["type"] not in ("dense", "conv1d")
        or target.get("activation", "linear") != "linear"
        or not alone
        or target.get("share")
    ):
        m.fail(
            layer,
            "the spec has activations only inside dense and conv1d layers: this one must follow "
            "a dense or conv1d layer without activation whose output nothing else reads",
        )
        return
    target["activation"] = act
    m.produced[(layer.name, k, 0)] = source


def _attention(m: Mapper, layer: KerasLayer, k: int, refs: list[Ref], kw: dict[str, Any]) -> None:
    c = layer.config
    _frozen(m, layer)
    tensors = list(refs)
    for key in ("query", "value", "key"):
        value = kw.get(key)
        if isinstance(value, list) and is_refs(value):
            tensors += value
    if len(set(tensors)) != 1:
        m.fail(
            layer,
            "attention over other keys/values than its queries: the spec has "
            "self-attention only (query = value = key)",
        )
        return
    for key in ("attention_mask", "use_causal_mask", "return_attention_scores"):
        if kw.get(key):
            m.fail(layer, f"{key} has no spec form")
    m.require(layer, "use_bias", (True,), True)
    m.require(layer, "output_shape", (None,))
    m.require(layer, "attention_axes", (None, [1], (1,)))
    m.check_none(layer, "kernel_regularizer", "bias_regularizer", "activity_regularizer")
    m.check_none(layer, "kernel_constraint", "bias_constraint")
    heads, key_dim = int(c["num_heads"]), int(c["key_dim"])
    if c.get("value_dim") not in (None, key_dim):
        m.fail(layer, "value_dim != key_dim has no spec form")
    entry: dict[str, Any] = {"type": "self_attention", "heads": heads}
    if c.get("dropout"):
        entry["dropout"] = float(c["dropout"])
    out = m.add(layer, k, tensors[:1], entry, "self_attention")
    m.attention.append((out["name"], heads, key_dim))


HANDLERS: dict[str, Callable[[Mapper, KerasLayer, int, list[Ref], dict[str, Any]], None]] = {
    "Embedding": _embedding,
    "Dense": _dense,
    "TimeDistributed": _time_distributed,
    "Dropout": _dropout,
    "Flatten": _flatten,
    "GlobalAveragePooling1D": _global_pool("global_average_pool"),
    "GlobalMaxPooling1D": _global_pool("global_max_pool"),
    "Conv1D": _conv1d,
    "MaxPooling1D": _pool("max_pool1d"),
    "AveragePooling1D": _pool("average_pool1d"),
    "LSTM": _recurrent,
    "GRU": _recurrent,
    "Bidirectional": _bidirectional,
    "LayerNormalization": _layer_norm,
    "BatchNormalization": _batch_norm,
    "Add": _merge,
    "Multiply": _merge,
    "Concatenate": _merge,
    "Activation": _activation,
    "ReLU": _activation,
    "Softmax": _activation,
    "MultiHeadAttention": _attention,
}
