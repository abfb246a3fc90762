"""Read a Keras model's architecture without building it: the ``config.json`` of a ``.keras``
file, the ``model_config`` attribute of a Keras 2 / tf.keras ``.h5`` file, or a JSON model
config (``model.to_json()``), as one graph of :class:`KerasNode` calls.

Nothing here imports Keras or TensorFlow, so a model with custom layers is read (and its custom
layers reported by name) without their code.
"""

from __future__ import annotations

import itertools
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Ref = tuple[str, int, int]
"""A tensor: ``(layer name, node index, tensor index)``, as Keras' ``keras_history``."""


class ConfigError(Exception):
    """The file is not a Keras model this importer can read."""


@dataclass
class KerasLayer:
    """One layer of the config: its name, class, own config and the calls (nodes) made of it,
    each a list of input tensors plus the call's keyword arguments."""

    name: str
    class_name: str
    config: dict[str, Any]
    calls: list[tuple[list[Ref], dict[str, Any]]] = field(default_factory=list)
    module: str = ""


@dataclass
class KerasGraph:
    """A model's layers in config order, and its input and output tensors."""

    name: str
    layers: list[KerasLayer]
    inputs: list[Ref]
    outputs: list[Ref]
    compile_config: dict[str, Any] | None = None
    has_weights: bool = False

    def layer(self, name: str) -> KerasLayer:
        """The layer called ``name``."""
        return next(layer for layer in self.layers if layer.name == name)


def read_config(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
    """The model config of ``path``, its compile config (if saved) and whether the file holds
    weights. Raises :class:`ConfigError` for a file that is not a Keras model."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".keras" or zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
            return config, config.get("compile_config"), True
        if suffix in (".h5", ".hdf5"):
            return _read_h5(path)
        config = json.loads(path.read_text())
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: not a Keras model file ({exc})") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise ConfigError(f"{path}: not a Keras model config (no 'class_name')")
    return config, None, False


def _read_h5(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
    try:
        import h5py
    except ImportError:
        hint = "pip install 'nnspec[keras]'"
        raise ConfigError(f"{path}: reading .h5 files needs h5py: {hint}") from None

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
        if raw is None:
            raise ConfigError(f"{path}: an .h5 file of weights only (no model_config)")
        training = f.attrs.get("training_config")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    compile_config = None
    if training is not None:
        compile_config = json.loads(training.decode() if isinstance(training, bytes) else training)
    return json.loads(text), compile_config, True


def parse_graph(config: dict[str, Any]) -> KerasGraph:
    """The layer graph of a ``Functional`` / ``Model`` or ``Sequential`` config."""
    kind = config.get("class_name")
    body = config.get("config", {})
    if kind == "Sequential":
        return _sequential(body)
    if kind in ("Functional", "Model") and "layers" in body:
        return _functional(body)
    raise ConfigError(
        f"a {kind} model: only Sequential and functional models have a readable layer graph"
        " (a subclassed model's config does not describe its layers)"
    )


def _layer(entry: dict[str, Any]) -> KerasLayer:
    config = entry.get("config", {})
    name = entry.get("name") or config.get("name") or ""
    return KerasLayer(name, entry["class_name"], config, module=entry.get("module") or "")


def _sequential(body: dict[str, Any]) -> KerasGraph:
    layers = [_layer(entry) for entry in body.get("layers", [])]
    if not layers or layers[0].class_name != "InputLayer":
        shape = body.get("build_input_shape")
        first = layers[0].config if layers else {}
        shape = shape or first.get("batch_input_shape") or first.get("batch_shape")
        if shape is None:
            raise ConfigError("a Sequential model without an input shape (never built)")
        dtype = first.get("dtype") if isinstance(first.get("dtype"), str) else "float32"
        cfg = {"batch_shape": list(shape), "dtype": dtype, "name": "input_layer"}
        layers.insert(0, KerasLayer("input_layer", "InputLayer", cfg))
    for before, layer in itertools.pairwise(layers):
        layer.calls.append(([(before.name, 0, 0)], {}))
    return KerasGraph(
        body.get("name", "sequential"),
        layers,
        [(layers[0].name, 0, 0)],
        [(layers[-1].name, 0, 0)],
    )


def _functional(body: dict[str, Any]) -> KerasGraph:
    layers = []
    for entry in body["layers"]:
        layer = _layer(entry)
        for node in entry.get("inbound_nodes", []):
            layer.calls.append(_call(node))
        layers.append(layer)
    return KerasGraph(
        body.get("name", "model"),
        layers,
        [_ref(r) for r in _refs(body.get("input_layers", []))],
        [_ref(r) for r in _refs(body.get("output_layers", []))],
    )


def _refs(value: Any) -> list[Any]:
    """``[name, node, tensor]`` or a list (or dict) of them."""
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return [value]
    return [r for v in value for r in _refs(v)] if isinstance(value, list) else []


def _ref(value: list[Any]) -> Ref:
    return (str(value[0]), int(value[1]), int(value[2]))


def _call(node: Any) -> tuple[list[Ref], dict[str, Any]]:
    """One inbound node: Keras 3 ``{"args": [...], "kwargs": {...}}`` or Keras 2
    ``[[name, node, tensor, kwargs], ...]``."""
    if isinstance(node, dict):
        refs = _tensors(node.get("args", []))
        kwargs: dict[str, Any] = {}
        constants = [a for a in node.get("args", []) if not _tensors(a)]
        if constants:  # such as the 0 of ops.greater(ids, 0)
            kwargs["__constants__"] = constants
        for key, value in node.get("kwargs", {}).items():
            tensors = _tensors(value)
            if tensors:
                kwargs[key] = tensors
            else:
                kwargs[key] = value
        return refs, kwargs
    refs = [(str(item[0]), int(item[1]), int(item[2])) for item in node]
    kwargs = node[0][3] if node and len(node[0]) > 3 and isinstance(node[0][3], dict) else {}
    return refs, dict(kwargs)


def _tensors(value: Any) -> list[Ref]:
    """The Keras tensors in a (nested) call argument, in order."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = value["config"]["keras_history"]
            return [(str(history[0]), int(history[1]), int(history[2]))]
        return [r for v in value.values() for r in _tensors(v)]
    if isinstance(value, list):
        return [r for v in value for r in _tensors(v)]
    return []
