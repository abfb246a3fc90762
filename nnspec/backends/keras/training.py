"""The loss and the optimizer (PyTorch's update rules) of ``model.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnspec.backends.keras.code import docstring, indent
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.keras.emitter import KerasGenerator

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


@dataclass(frozen=True)
class OptimizerCode:
    """The optimizer class and the arguments ``make_optimizer`` passes it."""

    class_name: str
    source: str
    kwargs: dict[str, str]
    docstring: str


def emit_loss(program: ir.Program) -> str:
    """``loss_fn``: :class:`ir.Training`'s formula, in ``y_pred``'s dtype."""
    training = program.training
    loss, eps = training.loss, training.epsilon
    logits = training.from_logits and loss != "mse"
    summary, formula = LOSSES[loss, logits]
    doc = f"{summary}\n\nThe {formula}" + (f", with ``eps = {eps!r}``" if "eps" in formula else "")
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
    lines = ["def loss_fn(y_true, y_pred):", *indent([*docstring(doc, 4), *body], 1)]
    return "\n".join(lines)


def emit_optimizer(g: KerasGenerator) -> OptimizerCode:
    """An optimizer class with PyTorch's update rule for :class:`ir.Optimizer`, and only the
    code the spec's settings use (``templates/helpers/optimizer.py.j2``)."""
    opt = g.program.training.optimizer
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

    slots = {"sgd": ["momentum_buffer"] if opt.momentum else []}.get(
        opt.kind, ["first_moment", "second_moment"]
    )
    source = g.env.get_template("helpers/optimizer.py.j2").render(
        class_name=class_name,
        doc="\n".join(indent(docstring(doc, 4), 1)).strip(),
        kwargs=list(kwargs),
        slots=slots,
        opt=opt,
        torch_name=torch_name,
    )
    summary = f"PyTorch's {class_name[5:]}" + (
        f" with weight decay {opt.weight_decay!r}" if opt.weight_decay else ""
    )
    factory_doc = (
        f"The spec's optimizer, {summary}, built for ``model``.\n\n``lr`` overrides the "
        f"spec's learning rate, {opt.lr!r}. Keras keeps the learning rate in "
        '``keras.config.floatx()``: set that to ``"float64"`` to train a float64 model with '
        "it exactly."
    )
    return OptimizerCode(class_name, source, kwargs, "\n".join(docstring(factory_doc, 4)))
