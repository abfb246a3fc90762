"""Self-attention and Transformer encoder blocks: ``MultiHeadSelfAttention``, a public
``keras.layers.Layer`` of this module written with ``keras.ops`` (PyTorch's additive key-padding
mask, rotary embeddings), and a block layer built from it, ``Dense`` and ``LayerNormalization``
(``templates/helpers``).

The four projections are ``Dense`` layers whose ``[E, E]`` kernels and ``[E]`` biases are the
canonical weights as they are; each layer lists its own variables by canonical name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnspec.backends.keras.code import Emitted, layer, shared_initializer, variable, whole
from nnspec.backends.keras.naming import input_mask
from nnspec.compiler import ir

if TYPE_CHECKING:
    from nnspec.backends.keras.emitter import KerasGenerator

PROJECTIONS = ("query", "key", "value", "output")
BLOCK_LAYERS = ("ff1", "ff2", "norm1", "norm2")


def _attention_names(op: ir.SelfAttention) -> tuple[list[str], list[str]]:
    """The canonical kernels and biases of ``op``, in ``PROJECTIONS`` order."""
    w = op.weights
    return (
        [w.query_kernel, w.key_kernel, w.value_kernel, w.output_kernel],
        [w.query_bias, w.key_bias, w.value_bias, w.output_bias],
    )


def _attention_paths(op: ir.SelfAttention, attr: str) -> dict[str, str]:
    """Canonical name -> the variable holding it, in the attention layer at ``attr``."""
    kernels, biases = _attention_names(op)
    paths = {}
    for part, kernel, bias in zip(("query", "key", "value", "out"), kernels, biases, strict=True):
        paths[kernel] = f"{attr}.{part}.kernel"
        paths[bias] = f"{attr}.{part}.bias"
    return paths


def _block_paths(op: ir.TransformerBlock, attr: str) -> dict[str, str]:
    """Canonical name -> the variable holding it, in the block layer at ``attr``."""
    paths = _attention_paths(op.attention, f"{attr}.attention")
    paths.update(
        {
            op.ff1_kernel: f"{attr}.ff1.kernel",
            op.ff1_bias: f"{attr}.ff1.bias",
            op.ff2_kernel: f"{attr}.ff2.kernel",
            op.ff2_bias: f"{attr}.ff2.bias",
            op.norm1_gamma: f"{attr}.norm1.gamma",
            op.norm1_beta: f"{attr}.norm1.beta",
            op.norm2_gamma: f"{attr}.norm2.gamma",
            op.norm2_beta: f"{attr}.norm2.beta",
        }
    )
    return paths


def _relative(paths: dict[str, str], attr: str) -> str | None:
    """The common prefix of the canonical names when each is ``<prefix>.<path below attr>``
    (the layer's ``canonical_variables(prefix)`` then lists them), else ``None``."""
    prefixes = set()
    for name, path in paths.items():
        suffix = path[len(attr) :].replace(".out.", ".output.")
        if not name.endswith(suffix):
            return None
        prefixes.add(name[: -len(suffix)])
    return prefixes.pop() if len(prefixes) == 1 else None


def _own_weights(g: KerasGenerator, out: Emitted, paths: dict[str, str], attr: str) -> None:
    """Add the weights at ``paths`` to ``out``: one group when the layer lists them itself."""
    prefix = _relative(paths, attr)
    if prefix is None:
        out.weights += [variable(g.program.weight(n), path) for n, path in paths.items()]
    else:
        out.groups.append((prefix, attr))
        out.covered += list(paths)


def _mask_arg(g: KerasGenerator, node: ir.Node) -> list[str]:
    """``padding_mask=...`` from the input's padding mask, if it has one."""
    mask = input_mask(g.program, node)
    return [] if mask is None else [f"padding_mask={g.names.masks[mask]}"]


def emit_self_attention(g: KerasGenerator, node: ir.Node) -> Emitted:
    """``MultiHeadSelfAttention``, called with its input's padding mask."""
    op = node.op
    assert isinstance(op, ir.SelfAttention)
    program = g.program
    kernels, biases = _attention_names(op)
    args = [f"num_heads={op.heads}", f"head_dim={op.head_dim}"]
    if op.dropout:
        args.append(f"dropout={op.dropout!r}")
    if op.rotary is not None:
        args.append(f"rotary_base={op.rotary.base!r}")
    kernel_init = shared_initializer(program, kernels, "kernel", node)
    if kernel_init != "'glorot_uniform'":
        args.append(f"kernel_initializer={kernel_init}")
    bias_init = shared_initializer(program, biases, "bias", node)
    if bias_init != "'zeros'":
        args.append(f"bias_initializer={bias_init}")
    if not whole(program, node, kernels + biases):
        args.append("trainable=False")
    cls = g.helper("MultiHeadSelfAttention")
    out = layer(g, node, f"{cls}({', '.join(args)})", *_mask_arg(g, node), "training=training")
    attr = g.names.layer(node)
    _own_weights(g, out, _attention_paths(op, attr), attr)
    return out


def emit_transformer_block(g: KerasGenerator, node: ir.Node) -> Emitted:
    """``TransformerEncoderBlock``, called with its input's padding mask."""
    op = node.op
    assert isinstance(op, ir.TransformerBlock)
    program = g.program
    att = op.attention
    kernels, biases = _attention_names(att)
    kernels += [op.ff1_kernel, op.ff2_kernel]
    biases += [op.ff1_bias, op.ff2_bias]
    for weights, default in (
        ([op.norm1_gamma, op.norm2_gamma], "'ones'"),
        ([op.norm1_beta, op.norm2_beta], "'zeros'"),
    ):
        if shared_initializer(program, weights, "norm weight", node) != default:
            raise ValueError(f"node {node.name!r}: {weights} must start at {default}")
    activation = {"linear": "None", "gelu": "gelu"}.get(op.activation, repr(op.activation))
    if op.activation == "gelu":
        activation = g.helper("gelu")
    args = [
        f"num_heads={att.heads}",
        f"head_dim={att.head_dim}",
        f"ff_dim={op.ff_dim}",
        f"dropout={op.dropout!r}",
        f"attention_dropout={att.dropout!r}",
        f"activation={activation}",
        f"epsilon={op.epsilon!r}",
        f"norm_first={op.norm_first!r}",
    ]
    if att.rotary is not None:
        args.append(f"rotary_base={att.rotary.base!r}")
    kernel_init = shared_initializer(program, kernels, "kernel", node)
    if kernel_init != "'glorot_uniform'":
        args.append(f"kernel_initializer={kernel_init}")
    bias_init = shared_initializer(program, biases, "bias", node)
    if bias_init != "'zeros'":
        args.append(f"bias_initializer={bias_init}")
    owned = kernels + biases + [op.norm1_gamma, op.norm1_beta, op.norm2_gamma, op.norm2_beta]
    if not whole(program, node, owned):
        args.append("trainable=False")
    cls = g.helper("TransformerEncoderBlock")
    out = layer(g, node, f"{cls}({', '.join(args)})", *_mask_arg(g, node), "training=training")
    attr = g.names.layer(node)
    _own_weights(g, out, _block_paths(op, attr), attr)
    return out
