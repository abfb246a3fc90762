"""Self-attention and Transformer encoder blocks: ``MultiHeadSelfAttention``, a public
``keras.layers.Layer`` of this module written with ``keras.ops`` (PyTorch's additive key-padding
mask, rotary embeddings), and a block layer built from it, ``Dense`` and ``LayerNormalization``
(``templates/helpers``).

The four projections are ``Dense`` layers whose ``[E, E]`` kernels and ``[E]`` biases are the
canonical weights as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnspec.backends.keras.code import (
    OPS,
    Emitted,
    initializer,
    layer,
    shared_initializer,
    variable,
    whole,
)
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


def _kernels_and_biases(op: ir.SelfAttention | ir.TransformerBlock) -> tuple[list[str], list[str]]:
    """The canonical kernels and biases of ``op`` (a block's feed-forward ones included)."""
    if isinstance(op, ir.SelfAttention):
        return _attention_names(op)
    kernels, biases = _attention_names(op.attention)
    return [*kernels, op.ff1_kernel, op.ff2_kernel], [*biases, op.ff1_bias, op.ff2_bias]


def custom_initializers(program: ir.Program, op: ir.SelfAttention | ir.TransformerBlock) -> bool:
    """Whether ``op``'s kernels or biases start other than Glorot-uniform and zeros."""
    kernels, biases = _kernels_and_biases(op)
    return any(
        initializer(program.weight(name).initializer) != default
        for names, default in ((kernels, "'glorot_uniform'"), (biases, "'zeros'"))
        for name in names
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


def _mask_arg(g: KerasGenerator, node: ir.Node) -> list[str]:
    """``padding_mask=...`` from the input's padding mask, if it has one."""
    mask = input_mask(g.program, node)
    return [] if mask is None else [f"padding_mask={g.names.masks[mask]}"]


@OPS.emits(ir.SelfAttention)
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
    paths = _attention_paths(op, g.names.layer(node))
    out.weights += [variable(program.weight(name), path) for name, path in paths.items()]
    return out


@OPS.emits(ir.TransformerBlock)
def emit_transformer_block(g: KerasGenerator, node: ir.Node) -> Emitted:
    """``TransformerEncoderBlock``, called with its input's padding mask."""
    op = node.op
    assert isinstance(op, ir.TransformerBlock)
    program = g.program
    att = op.attention
    kernels, biases = _kernels_and_biases(op)
    for weights, default in (
        ([op.norm1_gamma, op.norm2_gamma], "'ones'"),
        ([op.norm1_beta, op.norm2_beta], "'zeros'"),
    ):
        if shared_initializer(program, weights, "norm weight", node) != default:
            raise ValueError(f"node {node.name!r}: {weights} must start at {default}")
    activation = {"linear": "None", "gelu": "gelu"}.get(op.activation, repr(op.activation))
    if op.activation == "gelu":
        activation = g.helper("gelu")
    args = [f"num_heads={att.heads}", f"head_dim={att.head_dim}", f"ff_dim={op.ff_dim}"]
    for arg, value, default in (
        ("dropout", repr(op.dropout), "0.1"),
        ("attention_dropout", repr(att.dropout), "0.1"),
        ("activation", activation, "'relu'"),
        ("epsilon", repr(op.epsilon), "1e-05"),
        ("norm_first", repr(op.norm_first), "False"),
    ):
        if value != default:  # the block's defaults are torch.nn.TransformerEncoderLayer's
            args.append(f"{arg}={value}")
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
    paths = _block_paths(op, g.names.layer(node))
    out.weights += [variable(program.weight(name), path) for name, path in paths.items()]
    return out
