"""The spec's ``training`` section from a Keras model's saved compile config.

Only what the spec has a form for is carried over; the rest is a note (training settings do not
change the imported function). The spec's optimizers follow PyTorch's update rules: Keras'
``epsilon`` is added before Adam's bias correction, the spec's ``eps`` after, so the value is
carried over but the steps differ slightly (a note says so); Keras' ``weight_decay`` is
decoupled, so an ``Adam`` with one becomes the spec's ``adamw``.
"""

from __future__ import annotations

from typing import Any

LOSSES = {
    "sparsecategoricalcrossentropy": "sparse_categorical_crossentropy",
    "categoricalcrossentropy": "categorical_crossentropy",
    "binarycrossentropy": "binary_crossentropy",
    "mse": "mse",
    "meansquarederror": "mse",
}


def _float(value: Any) -> float:
    """A Keras hyperparameter as the number written in the code: Keras keeps the learning rate
    in float32 (0.001 reads back as 0.0010000000474974513)."""
    return float(f"{float(value):.7g}")


def _name(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("class_name") or (value.get("config") or {}).get("name")
    return str(value or "").replace("_", "").lower()


def training_section(compile_config: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    """``loss``, ``from_logits``, ``optimizer`` and ``clip_norm`` from ``compile_config``; notes
    for what has no spec form."""
    config = compile_config or {}
    loss = config.get("loss")
    out: dict[str, Any] = {}
    if _name(loss) in LOSSES:
        out["loss"] = LOSSES[_name(loss)]
        if isinstance(loss, dict) and (loss.get("config") or {}).get("from_logits"):
            out["from_logits"] = True
    else:
        notes.append(
            f"training: loss {loss!r} not saved or without a spec form; "
            "sparse_categorical_crossentropy assumed"
        )
        out["loss"] = "sparse_categorical_crossentropy"
    optimizer = config.get("optimizer")
    if optimizer is None:
        notes.append("training: no optimizer saved; the spec's default (Adam, lr 0.001)")
        return out
    spec, clip = _optimizer(optimizer, notes)
    if spec is not None:
        out["optimizer"] = spec
    if clip is not None:
        out["clip_norm"] = clip
    return out


def _optimizer(value: Any, notes: list[str]) -> tuple[dict[str, Any] | None, float | None]:
    kind = _name(value)
    c = (value.get("config") or {}) if isinstance(value, dict) else {}
    lr = c.get("learning_rate", 0.001)
    if not isinstance(lr, int | float):
        notes.append(f"training: learning-rate schedule {lr!r} has no spec form; lr 0.001")
        lr = 0.001
    clip = c.get("global_clipnorm")
    if c.get("clipnorm") or c.get("clipvalue"):
        notes.append("training: per-variable clipnorm / clipvalue have no spec form (left out)")
    if c.get("use_ema") or c.get("amsgrad"):
        notes.append(f"training: {kind} with EMA or AMSGrad has no spec form; default optimizer")
        return None, clip
    decay = _float(c.get("weight_decay") or 0.0)
    if kind in ("adam", "adamw"):
        spec: dict[str, Any] = {
            "type": "adamw" if kind == "adamw" or decay else "adam",
            "lr": _float(lr),
            "beta1": _float(c.get("beta_1", 0.9)),
            "beta2": _float(c.get("beta_2", 0.999)),
            "eps": _float(c.get("epsilon", 1e-7)),
        }
        if decay or kind == "adamw":
            spec["weight_decay"] = decay
        notes.append(
            "training: Keras adds Adam's epsilon before the bias correction, the spec (PyTorch's "
            "rule) after: the same value, slightly different steps"
        )
        return spec, clip
    if kind == "sgd":
        if decay:
            notes.append("training: SGD's decoupled weight_decay has no spec form (left out)")
        spec = {"type": "sgd", "lr": _float(lr), "momentum": _float(c.get("momentum", 0.0))}
        if c.get("nesterov"):
            spec["nesterov"] = True
        return spec, clip
    notes.append(f"training: optimizer {kind!r} has no spec form; the spec's default (Adam)")
    return None, clip
