"""The loss and optimizer code of the generated ``model.py``: ``loss_fn`` and ``make_optimizer``."""

from __future__ import annotations

import textwrap

from nnspec.compiler import ir


def docstring(summary: str, *details: str) -> str:
    """A docstring literal (quotes included): a summary line, then paragraphs of detail, wrapped
    to fit a function body's indentation within 100 columns."""
    if not details:
        return f'"""{summary}"""'
    paragraphs = ["\n".join(textwrap.wrap(detail, 96)) for detail in details]
    return f'"""{summary}\n\n' + "\n\n".join(paragraphs) + '\n"""'


def loss(training: ir.Training, imports: set[str]) -> tuple[str, list[str]]:
    """Docstring and body of ``loss_fn(y_true, y_pred)``."""
    eps = repr(training.epsilon)
    clip = f"clamp({eps}, 1 - {eps})"
    clipped = f"Probabilities are clipped to ``[{eps}, 1 - {eps}]``."
    logits = training.from_logits
    match training.loss:
        case "sparse_categorical_crossentropy" if logits:
            imports.add("F")
            doc = docstring("Cross-entropy of class ids ``(B,)`` and logits ``(B, C)``.")
            return doc, ["return F.cross_entropy(y_pred, y_true.long().reshape(-1))"]
        case "sparse_categorical_crossentropy":
            imports.add("F")
            doc = docstring(
                "Cross-entropy of class ids ``(B,)`` and probabilities ``(B, C)``.", clipped
            )
            return doc, [f"return F.nll_loss(torch.log(y_pred.{clip}), y_true.long().reshape(-1))"]
        case "categorical_crossentropy" if logits:
            imports.add("F")
            doc = docstring("Cross-entropy of class probabilities and logits, both ``(B, C)``.")
            return doc, ["return F.cross_entropy(y_pred, y_true.to(y_pred.dtype))"]
        case "categorical_crossentropy":
            doc = docstring(
                "Cross-entropy of one-hot labels and probabilities, both ``(B, C)``.", clipped
            )
            return doc, [
                f"log_p = torch.log(y_pred.{clip})",
                "return -(y_true.to(y_pred.dtype) * log_p).sum(dim=-1).mean()",
            ]
        case "binary_crossentropy" if logits:
            imports.add("F")
            doc = docstring("Binary cross-entropy of 0/1 labels and logits, over all elements.")
            return doc, [
                "y_true = y_true.to(y_pred.dtype).reshape_as(y_pred)",
                "return F.binary_cross_entropy_with_logits(y_pred, y_true)",
            ]
        case "binary_crossentropy":
            doc = docstring(
                "Binary cross-entropy of 0/1 labels and probabilities, over all elements.", clipped
            )
            return doc, [
                "y_true = y_true.to(y_pred.dtype).reshape_as(y_pred)",
                f"p = y_pred.{clip}",
                "return -(y_true * torch.log(p) + (1 - y_true) * torch.log(1 - p)).mean()",
            ]
        case "mse":
            imports.add("F")
            doc = docstring("Mean squared error over all elements.")
            return doc, ["return F.mse_loss(y_pred, y_true.to(y_pred.dtype).reshape_as(y_pred))"]
    raise ValueError(f"unknown loss {training.loss!r}")


def optimizer(opt: ir.Optimizer, constrained: bool = False) -> tuple[str, list[str]]:
    """Docstring and body of ``make_optimizer(model, lr=None)``; with ``constrained``, each step
    ends with ``model.apply_constraints()`` (a step post-hook)."""
    lr = f"{opt.lr!r} if lr is None else lr"
    if opt.kind == "sgd":
        args = [f"lr={lr}"]
        if opt.momentum:
            args.append(f"momentum={opt.momentum!r}")
        if opt.nesterov:
            args.append("nesterov=True")
        if opt.weight_decay:
            args.append(f"weight_decay={opt.weight_decay!r}")
        # Not fused with momentum: torch's fused SGD leaves its momentum buffer uninitialised
        # when mixed precision skips the first step (overflow), and the next step reads it.
        fused = [] if opt.momentum else ["fused=fused"]
        call = f"torch.optim.SGD(params, {', '.join([*args, *fused])})"
        doc = "SGD" + (" with Nesterov momentum" if opt.nesterov else "")
    elif opt.kind in ("adam", "adamw"):
        args = [f"lr={lr}", f"betas=({opt.beta1!r}, {opt.beta2!r})", f"eps={opt.eps!r}"]
        if opt.weight_decay or opt.kind == "adamw":
            args.append(f"weight_decay={opt.weight_decay!r}")
        cls = "Adam" if opt.kind == "adam" else "AdamW"
        call = f"torch.optim.{cls}(params, {', '.join([*args, 'fused=fused'])})"
        doc = cls
    else:
        raise ValueError(f"unknown optimizer {opt.kind!r}")
    summary = f"{doc} over the trainable parameters of ``model``."
    detail = f"The learning rate is {opt.lr!r} unless ``lr`` is given."
    body = ["params = [p for p in model.parameters() if p.requires_grad]"]
    if "fused=fused" in call:
        body += [
            "# One fused kernel per step (about twice as fast as the default on a CPU); it exists",
            "# for CPU and CUDA tensors only.",
            'fused = all(p.device.type in ("cpu", "cuda") for p in params)',
        ]
    if opt.clip_norm is None and not constrained:
        return docstring(summary, detail), [*body, f"return {call}"]
    body.append(f"optimizer = {call}")
    if constrained:
        detail += (
            " After each step the model applies its weight constraints, as Keras applies each "
            "variable's constraint after its update."
        )
        body += [
            "",
            "def apply_constraints(*_: object) -> None:",
            '    """Project the constrained weights back after the step."""',
            "    model.apply_constraints()",
            "",
            "optimizer.register_step_post_hook(apply_constraints)",
        ]
    if opt.clip_norm is None:
        return docstring(summary, detail), [*body, "return optimizer"]
    detail += f" Gradients are clipped to a global norm of {opt.clip_norm!r} before each step."
    return docstring(summary, detail), [
        *body,
        "",
        "def clip_gradients(optimizer: torch.optim.Optimizer, *_: object) -> None:",
        f'    """Scale the gradients down to a global norm of at most {opt.clip_norm!r}."""',
        "    # Stepped by a GradScaler without unscale_() first, a fused optimizer unscales the",
        "    # gradients itself after this hook: they are still multiplied by its grad_scale here.",
        '    scale = getattr(optimizer, "grad_scale", None)',
        f"    max_norm = {opt.clip_norm!r}",
        "    nn.utils.clip_grad_norm_(params, max_norm if scale is None else max_norm * scale)",
        "",
        "optimizer.register_step_pre_hook(clip_gradients)",
        "return optimizer",
    ]
