"""Keras initializers, constraints and activations as spec values.

Initializers only decide a fresh model's first values (imported weights replace them), so one the
spec has no form for is left at the spec's default with a note; a constraint or an activation
changes what the model computes or how it trains, so one without a spec form is an error.
"""

from __future__ import annotations

from typing import Any

ACTIVATIONS = {"linear", "relu", "gelu", "tanh", "sigmoid", "softmax"}

_NAMED_INITIALIZERS = {
    "zeros": "zeros",
    "ones": "ones",
    "glorotuniform": "glorot_uniform",
    "glorot_uniform": "glorot_uniform",
    "heuniform": "he_uniform",
    "he_uniform": "he_uniform",
}
# Keras draws these from normals truncated at two standard deviations; the spec's are plain.
_TRUNCATED_IN_KERAS = {"glorotnormal", "glorot_normal", "henormal", "he_normal"}


class Unmappable(Exception):
    """An option the spec language has no exact form for; the message says what it would
    need."""


def _kind(value: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str):
        return value.lower(), {}
    if isinstance(value, dict):
        return str(value.get("class_name", "")).lower(), dict(value.get("config") or {})
    return "", {}


def initializer(value: Any, notes: list[str], where: str) -> dict[str, Any] | None:
    """The spec form of a Keras initializer, or ``None`` (spec default, with a note)."""
    if value is None:
        return None
    kind, config = _kind(value)
    if kind in _NAMED_INITIALIZERS:
        return {"type": _NAMED_INITIALIZERS[kind]}
    if kind in ("randomuniform", "random_uniform", "uniform"):
        return {
            "type": "uniform",
            "low": float(config.get("minval", -0.05)),
            "high": float(config.get("maxval", 0.05)),
        }
    if kind in ("randomnormal", "random_normal", "normal", "truncatednormal", "truncated_normal"):
        kind_name = "truncated_normal" if kind.startswith("truncated") else "normal"
        return {
            "type": kind_name,
            "mean": float(config.get("mean", 0.0)),
            "std": float(config.get("stddev", 0.05)),
        }
    label = value if isinstance(value, str) else value.get("class_name")
    why = "truncated in Keras, plain in the spec" if kind in _TRUNCATED_IN_KERAS else "no spec form"
    notes.append(
        f"{where}: initializer {label} ({why}); the spec's default is used for fresh weights"
    )
    return None


def constraint(value: Any) -> dict[str, Any] | None:
    """The spec form of a Keras weight constraint; :class:`Unmappable` for one without."""
    if value is None:
        return None
    kind, config = _kind(value)
    kind = kind.replace("_", "")
    axis = config.get("axis", 0)
    if kind == "nonneg":
        return {"type": "non_neg"}
    if kind == "maxnorm":
        return {"type": "max_norm", "max_value": float(config.get("max_value", 2.0)), "axis": axis}
    if kind == "unitnorm":
        return {"type": "unit_norm", "axis": axis}
    if kind == "minmaxnorm":
        return {
            "type": "min_max_norm",
            "min_value": float(config.get("min_value", 0.0)),
            "max_value": float(config.get("max_value", 1.0)),
            "rate": float(config.get("rate", 1.0)),
            "axis": axis,
        }
    raise Unmappable(f"constraint {kind or value!r} has no spec form")


def activation(value: Any) -> str:
    """The spec name of a Keras activation; :class:`Unmappable` for one without."""
    kind, _ = _kind(value)
    if kind in ACTIVATIONS:
        return kind
    known = ", ".join(sorted(ACTIVATIONS))
    raise Unmappable(f"activation {kind or value!r} has no spec form (the spec has {known})")
