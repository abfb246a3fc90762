"""``nnspec import``: a Keras model (``.keras``, Keras 2 ``.h5`` or a JSON config) as a validated
spec plus its weights in canonical form.

The architecture is read from the saved config without building the model (so custom layers are
named, not run); the spec is validated by nnspec's own loader; the weights are read by loading
the model with Keras. See :mod:`nnspec.importers.mapping` for what maps to what.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nnspec.importers.keras_config import ConfigError, parse_graph, read_config
from nnspec.importers.mapping import ImportFailed, Mapped, identifier, map_graph

__all__ = [
    "ConfigError",
    "ImportFailed",
    "Imported",
    "converted_weights",
    "import_keras",
    "load_keras_model",
]


@dataclass
class Imported:
    """The result of an import: the spec (dict and YAML text), notes, and the canonical weights
    (``None`` for a config without weights or when not asked for)."""

    spec: dict[str, Any]
    text: str
    notes: list[str]
    mapped: Mapped
    weights: dict[str, np.ndarray] | None = None
    has_weights: bool = False
    source: Path = field(default_factory=Path)
    warnings: list[str] = field(default_factory=list)


def import_keras(
    path: str | Path,
    name: str | None = None,
    weights: bool = True,
    file: str | None = None,
    trust_lambda: bool = False,
) -> Imported:
    """Import the Keras model at ``path``. Raises :class:`ConfigError` (not a Keras model) or
    :class:`ImportFailed` (every layer or option without an exact spec form, and any problem of
    the resulting spec). ``file`` names the spec in its lint warnings (where it will be
    written). ``trust_lambda`` lets Keras run the model's Lambda layers (their code comes from
    the file) to check that an embedding times a Lambda-made mask is the pad fix ``embedding *
    (ids > 0)`` on probe ids, which then maps to ``padding``; without it such a model fails."""
    import nnspec
    from nnspec.spec import SpecError

    path = Path(path)
    config, compile_config, has_weights = read_config(path)
    graph = parse_graph(config)
    graph.compile_config = compile_config
    mapped = map_graph(graph, name or path.stem)
    text = to_yaml(mapped.spec, path, mapped.notes)
    try:
        loaded = nnspec.load(text, file=file or f"<spec imported from {path.name}>")
    except SpecError as exc:
        problems = [f"the imported spec does not validate: {p}" for p in exc.problems]
        raise ImportFailed(problems) from None
    problems = []
    for layer, heads, key_dim in mapped.attention:
        width = loaded.program.node(layer).shape[-1]
        if heads * key_dim != width:
            problems.append(
                f"layer {layer!r} (MultiHeadAttention): key_dim {key_dim} x {heads} heads != "
                f"width {width}; the spec's self-attention has head size width / heads"
            )
    if problems:
        raise ImportFailed(problems)
    result = Imported(mapped.spec, text, mapped.notes, mapped, None, has_weights, path)
    result.warnings = [str(problem) for problem in loaded.warnings]
    model = None
    if mapped.probes:
        model = _probed(path, mapped, trust_lambda)
    if weights and has_weights:
        model = model or load_keras_model(path)
        result.weights = converted_weights(model, mapped, loaded.program)
    return result


def _probed(path: Path, mapped: Mapped, trust_lambda: bool) -> Any:
    """The Keras model, loaded with its Lambda code, once every probed mask multiply is
    ``embedding * (ids > 0)`` on probe ids; :class:`ImportFailed` otherwise."""
    from nnspec.importers.patterns import probe

    if not trust_lambda:
        raise ImportFailed(
            [
                f"layer {mm.multiply!r}: embedding {mm.embedding!r} times a mask made by Lambda "
                "or Reshape layers looks like the pad fix `embedding * (ids > 0)` (the table's "
                "padding), but their code is not in the config: --trust-lambda runs it (it "
                "comes from the file) on probe ids and maps it if so"
                for mm in mapped.probes
            ]
        )
    try:
        model = load_keras_model(path, safe_mode=False)
        wrong = [mm for mm in mapped.probes if not probe(model, mm)]
    except Exception as exc:  # the file's own Lambda code, run by Keras
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImportFailed([f"Keras could not run the model's Lambda code: {first}"]) from None
    if wrong:
        raise ImportFailed(
            [
                f"layer {mm.multiply!r}: not embedding {mm.embedding!r} times (ids > 0) on probe "
                "ids; it has no spec form"
                for mm in wrong
            ]
        )
    return model


def converted_weights(model: Any, mapped: Mapped, program: Any) -> dict[str, np.ndarray]:
    """The canonical weights of the live Keras ``model``, checked against ``program``'s names
    and shapes; padding rows set to 0.0."""
    from nnspec.importers.weights import canonical_weights

    state = canonical_weights(model, mapped.weights)
    expected = {w.name: w for w in program.weights}
    wrong = sorted(set(state) ^ set(expected))
    wrong += [n for n in state if n in expected and state[n].shape != expected[n].shape]
    if wrong:
        raise ImportFailed([f"converted weights do not match the spec's: {', '.join(wrong)}"])
    for name, weight in expected.items():
        for row in weight.zero_rows:
            state[name][row] = 0.0
    return {name: state[name] for name in expected}


def load_keras_model(path: Path, safe_mode: bool = True) -> Any:
    """The Keras model at ``path`` (a JSON config is built with fresh weights); ``safe_mode``
    False lets Keras load Lambda layers (running code from the file)."""
    from nnspec.backends.keras.startup import tensorflow_start_up_held_back

    with tensorflow_start_up_held_back():
        import keras
    if not safe_mode:  # also for the float64 rebuild of --check (from_config)
        keras.config.enable_unsafe_deserialization()
    if path.suffix.lower() in (".keras", ".h5", ".hdf5"):
        return keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    return keras.models.model_from_json(path.read_text())


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def to_yaml(spec: dict[str, Any], source: Path, notes: list[str]) -> str:
    """The spec as YAML in the examples' style: one flow mapping per input, table and layer,
    with a header naming the source and the notes."""
    lines = [f"# Imported by `nnspec import` from {source.name}."]
    lines += [f"# note: {note}" for note in notes]
    lines += [f"nnspec: {spec['nnspec']}", f"name: {spec['name']}", "", "inputs:"]
    lines += [f"  {k}: {_flow(v)}" for k, v in spec["inputs"].items()]
    if spec.get("embeddings"):
        lines += ["", "embeddings:"]
        lines += [f"  {k}: {_flow(v)}" for k, v in spec["embeddings"].items()]
    lines += ["", "model:", "  layers:"]
    lines += [f"    - {_flow(layer)}" for layer in spec["model"]["layers"]]
    if "outputs" in spec["model"]:
        lines.append(f"  outputs: {_flow(spec['model']['outputs'])}")
    lines += ["", "training:"]
    lines += [f"  {k}: {_flow(v)}" for k, v in spec["training"].items()]
    return "\n".join(lines) + "\n"


def default_name(path: Path) -> str:
    """The spec name for a model file: its stem as an identifier."""
    return identifier(path.stem)
