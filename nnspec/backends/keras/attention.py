"""Self-attention and Transformer encoder blocks: ``keras.layers.MultiHeadAttention`` with the
IR's masking (and rotary embeddings) in its ``_compute_attention`` hook, and a block layer built
from it, ``Dense`` and ``LayerNormalization``.

Keras keeps the query / key / value kernels as ``(E, heads, head_dim)`` and the output kernel as
``(heads, head_dim, E)``: reshapes (same element order) of the canonical ``[E, E]`` matrices.
"""

from __future__ import annotations

from nnspec.backends.keras.code import (
    FRESH_INITIALIZER,
    GELU,
    Emitted,
    docstring,
    indent,
    layer,
    reshaped,
    shared_initializer,
    variable,
    whole,
)
from nnspec.backends.keras.naming import input_mask, names
from nnspec.compiler import ir

ROTARY = '''
def rotary(x, base):
    """Rotary position embedding (Su et al., 2021) of ``x`` (B, L, heads, head_dim).

    The pair ``(x[2i], x[2i + 1])`` at position ``p`` turns by the angle
    ``p * base ** (-2i / head_dim)``, computed in float64.
    """
    length, dim = x.shape[1], x.shape[-1]
    angles = np.arange(length)[:, None] * base ** (-np.arange(0, dim, 2) / dim)  # (L, dim / 2)
    cos = ops.convert_to_tensor(np.cos(angles)[:, None, :], x.dtype)  # (L, 1, dim / 2)
    sin = ops.convert_to_tensor(np.sin(angles)[:, None, :], x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]  # (B, L, heads, dim / 2)
    rotated = ops.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
    return ops.reshape(rotated, ops.shape(x))
'''

PROJECTION_INITIALIZER = '''
class ProjectionInitializer(keras.initializers.Initializer):
    """Draw an attention kernel from ``initializer`` as the [E, E] matrix it reshapes.

    ``keras.layers.MultiHeadAttention`` keeps its kernels as (E, heads, head_dim) and
    (heads, head_dim, E), whose Glorot and He fans are not those of the [E, E] projection (which
    PyTorch initializes).
    """

    def __init__(self, initializer):
        """Wrap ``initializer`` (anything ``keras.initializers.get`` takes)."""
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape, dtype=None):
        """A draw of the square matrix, reshaped to ``shape``."""
        width = int(np.sqrt(np.prod(shape)))
        return ops.reshape(self.initializer((width, width), dtype=dtype), shape)

    def get_config(self):
        """The config (``MultiHeadAttention`` clones its initializers through it)."""
        return {"initializer": keras.initializers.serialize(self.initializer)}
'''


def _attention_source(rotary: bool) -> str:
    """The ``MultiHeadSelfAttention`` class, with rotary embeddings if any attention uses them."""
    summary = "``keras.layers.MultiHeadAttention`` with PyTorch's key-padding mask" + (
        " and rotary embeddings." if rotary else "."
    )
    doc = (
        f"{summary}\n\nScores of keys outside ``attention_mask`` get ``-1e9`` added before the "
        "softmax. Keras' own masking replaces them by ``-1e9`` and gives a query that sees no "
        "valid key zero weights, where PyTorch's additive mask lets it attend over all keys."
    )
    if rotary:
        doc += " With ``rotary_base``, queries and keys are rotated by ``rotary`` after projection."
    body = [*docstring(doc, 4), ""]
    if rotary:
        body += [
            "def __init__(self, num_heads, key_dim, rotary_base=None, **kwargs):",
            '    """``kwargs`` (such as ``dropout``) go to ``keras.layers.MultiHeadAttention``."""',
            "    super().__init__(num_heads, key_dim, **kwargs)",
            "    self.rotary_base = rotary_base",
            "",
            "def get_config(self):",
            '    """The config, ``rotary_base`` included."""',
            '    return {**super().get_config(), "rotary_base": self.rotary_base}',
            "",
        ]
    body += [
        "def _compute_attention_mask(self, query, value, attention_mask=None, **kwargs):",
        '    """``attention_mask`` alone: Keras would also mask padded queries (from an input\'s',
        "    implicit mask), which here attend like any other.",
        '    """',
        "    return attention_mask",
        "",
        "def _compute_attention(",
        "    self, query, key, value, attention_mask=None, training=None,",
        "    return_attention_scores=False,",
        "):",
        '    """Attention of the projected queries over the projected keys and values.',
        "",
        "    ``query`` is (B, T, heads, head_dim), ``key`` and ``value`` (B, S, heads, head_dim);",
        "    ``attention_mask`` (B, 1, S) is true at valid keys. Returns the heads' outputs",
        "    (B, T, heads, head_dim) and the attention weights (B, heads, T, S).",
        '    """',
    ]
    if rotary:
        body += [
            "    if self.rotary_base is not None:",
            "        query = rotary(query, self.rotary_base)",
            "        key = rotary(key, self.rotary_base)",
        ]
    body += [
        '    scores = ops.einsum("btnh,bsnh->bnts", query, key) / self.key_dim**0.5',
        "    if attention_mask is not None:",
        "        padded = ops.logical_not(ops.expand_dims(attention_mask, 1))  # (B, 1, 1, S)",
        "        scores = scores + ops.cast(padded, scores.dtype) * -1e9",
        "    weights = ops.softmax(scores, axis=-1)",
        "    dropped = self._dropout_layer(weights, training=training)",
        '    return ops.einsum("bnts,bsnh->btnh", dropped, value), weights',
    ]
    lines = ["class MultiHeadSelfAttention(keras.layers.MultiHeadAttention):", *indent(body, 1)]
    return "\n".join(lines) + "\n"


def _block_source(rotary: bool) -> str:
    """The ``TransformerEncoderBlock`` class (``rotary_base`` only if a block uses rotary)."""
    doc = (
        "A Transformer encoder block (Vaswani et al., 2017) with pre- or post-normalization."
        "\n\nSelf-attention, then a feed-forward network, each with dropout, a residual "
        "connection and layer normalization."
        "\n\nPost-norm: ``x = norm1(x + dropout(attention(x)))``, then "
        "``x = norm2(x + dropout(feed_forward(x)))``. Pre-norm (``norm_first``): "
        "``x = x + dropout(attention(norm1(x)))``, then "
        "``x = x + dropout(feed_forward(norm2(x)))``, where "
        "``feed_forward(x) = ff2(dropout(activation(ff1(x))))``, as in "
        "``torch.nn.TransformerEncoderLayer``."
    )
    rotary_param = ", rotary_base=None" if rotary else ""
    rotary_arg = " rotary_base=rotary_base," if rotary else ""
    body = [
        *docstring(doc, 4),
        "",
        "def __init__(",
        "    self, num_heads, key_dim, ff_dim, dropout, attention_dropout, activation, epsilon,",
        f'    norm_first{rotary_param}, kernel_initializer="glorot_uniform",',
        '    bias_initializer="zeros", **kwargs,',
        "):",
        '    """``kwargs`` (such as ``dtype`` and ``name``) go to ``keras.layers.Layer``."""',
        "    super().__init__(**kwargs)",
        "    self.supports_masking = True  # an implicit Keras mask passes through",
        "    self.norm_first = norm_first",
        "    self.attention = MultiHeadSelfAttention(",
        f"        num_heads, key_dim,{rotary_arg} dropout=attention_dropout,",
        "        kernel_initializer=ProjectionInitializer(kernel_initializer),",
        '        bias_initializer=bias_initializer, dtype=self.dtype_policy, name="attention",',
        "    )",
        "    initializers = (kernel_initializer, bias_initializer)",
        '    self.ff1 = self.dense(ff_dim, activation, *initializers, name="ff1")',
        '    self.ff2 = self.dense(num_heads * key_dim, None, *initializers, name="ff2")',
        "    self.norm1 = keras.layers.LayerNormalization(",
        '        epsilon=epsilon, dtype=self.dtype_policy, name="norm1"',
        "    )",
        "    self.norm2 = keras.layers.LayerNormalization(",
        '        epsilon=epsilon, dtype=self.dtype_policy, name="norm2"',
        "    )",
        "    self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)",
        "",
        "def dense(self, units, activation, kernel_initializer, bias_initializer, name):",
        '    """A feed-forward layer, with initializers of its own (unseeded ones repeat)."""',
        "    return keras.layers.Dense(",
        "        units, activation=activation,",
        "        kernel_initializer=fresh_initializer(kernel_initializer),",
        "        bias_initializer=fresh_initializer(bias_initializer),",
        "        dtype=self.dtype_policy, name=name,",
        "    )",
        "",
        "def call(self, x, padding_mask=None, training=False):",
        '    """Encode ``x`` (B, L, E); ``padding_mask`` (B, L) is true at valid positions."""',
        "    if padding_mask is not None:",
        "        padding_mask = ops.expand_dims(padding_mask, 1)  # (B, 1, L)",
        "    if self.norm_first:",
        "        h = self.norm1(x)",
        "        h = self.attention(h, h, attention_mask=padding_mask, training=training)",
        "        x = x + self.dropout(h, training=training)",
        "        h = self.feed_forward(self.norm2(x), training)",
        "        return x + self.dropout(h, training=training)",
        "    h = self.attention(x, x, attention_mask=padding_mask, training=training)",
        "    x = self.norm1(x + self.dropout(h, training=training))",
        "    h = self.feed_forward(x, training)",
        "    return self.norm2(x + self.dropout(h, training=training))",
        "",
        "def feed_forward(self, x, training):",
        '    """``ff2(dropout(activation(ff1(x))))``."""',
        "    return self.ff2(self.dropout(self.ff1(x), training=training))",
    ]
    lines = ["class TransformerEncoderBlock(keras.layers.Layer):", *indent(body, 1)]
    return "\n".join(lines) + "\n"


def _uses_rotary(program: ir.Program, blocks: bool) -> bool:
    """Whether a Transformer block (``blocks``), else a bare self-attention, uses rotary."""
    for node in program.nodes:
        op = node.op
        if blocks and isinstance(op, ir.TransformerBlock) and op.attention.rotary:
            return True
        if not blocks and isinstance(op, ir.SelfAttention) and op.rotary:
            return True
    return False


def _attention_helpers(program: ir.Program, out: Emitted) -> None:
    """Add the attention class and the helpers it needs to ``out``."""
    rotary = _uses_rotary(program, blocks=False) or _uses_rotary(program, blocks=True)
    if rotary:
        out.helpers["rotary"] = ROTARY
    out.helpers["ProjectionInitializer"] = PROJECTION_INITIALIZER
    out.helpers["MultiHeadSelfAttention"] = _attention_source(rotary)


def _attention_weights(program: ir.Program, op: ir.SelfAttention, attr: str, out: Emitted) -> None:
    """Add the canonical weights of ``op``, held by the ``MultiHeadAttention`` at ``attr``."""
    heads, head_dim = op.heads, op.head_dim
    width = heads * head_dim
    w = op.weights
    for part, kernel, bias, kernel_shape, bias_shape in (
        ("query", w.query_kernel, w.query_bias, (width, heads, head_dim), (heads, head_dim)),
        ("key", w.key_kernel, w.key_bias, (width, heads, head_dim), (heads, head_dim)),
        ("value", w.value_kernel, w.value_bias, (width, heads, head_dim), (heads, head_dim)),
        ("output", w.output_kernel, w.output_bias, (heads, head_dim, width), (width,)),
    ):
        dense = f"{attr}.{part}_dense"
        out.weights.append(reshaped(program.weight(kernel), f"{dense}.kernel", kernel_shape))
        if bias_shape == (width,):
            out.weights.append(variable(program.weight(bias), f"{dense}.bias"))
        else:
            out.weights.append(reshaped(program.weight(bias), f"{dense}.bias", bias_shape))


def _attention_names(op: ir.SelfAttention) -> tuple[list[str], list[str]]:
    """The canonical kernels and biases of ``op``."""
    w = op.weights
    return (
        [w.query_kernel, w.key_kernel, w.value_kernel, w.output_kernel],
        [w.query_bias, w.key_bias, w.value_bias, w.output_bias],
    )


def _mask_args(program: ir.Program, node: ir.Node, keyword: str, expand: bool) -> list[str]:
    """The mask argument of an attention call, from the input's padding mask (if any)."""
    mask = input_mask(program, node)
    if mask is None:
        return []
    expr = names(program).masks[mask]
    return [f"{keyword}=ops.expand_dims({expr}, 1)" if expand else f"{keyword}={expr}"]


def emit_self_attention(program: ir.Program, node: ir.Node) -> Emitted:
    """``MultiHeadSelfAttention`` called as ``attention(x, x)`` with a ``(B, 1, L)`` mask."""
    op = node.op
    assert isinstance(op, ir.SelfAttention)
    kernels, biases = _attention_names(op)
    args = [f"num_heads={op.heads}", f"key_dim={op.head_dim}"]
    if op.rotary is not None:
        args.append(f"rotary_base={op.rotary.base!r}")
    if op.dropout:
        args.append(f"dropout={op.dropout!r}")
    kernel_init = shared_initializer(program, kernels, "kernel", node)
    args.append(f"kernel_initializer=ProjectionInitializer({kernel_init})")
    bias_init = shared_initializer(program, biases, "bias", node)
    if bias_init != "'zeros'":
        args.append(f"bias_initializer={bias_init}")
    if not whole(program, node, kernels + biases):
        args.append("trainable=False")
    out = layer(program, node, f"MultiHeadSelfAttention({', '.join(args)})")
    n = names(program)
    x = n.values[node.inputs[0]]
    extra = [*_mask_args(program, node, "attention_mask", True), "training=training"]
    out.call = f"{n.layer(node)}({', '.join([x, x, *extra])})"
    _attention_helpers(program, out)
    _attention_weights(program, op, n.layer(node), out)
    return out


def emit_transformer_block(program: ir.Program, node: ir.Node) -> Emitted:
    """``TransformerEncoderBlock``, called with its input's padding mask."""
    op = node.op
    assert isinstance(op, ir.TransformerBlock)
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
    out = Emitted()
    activation = {"linear": "None", "gelu": "gelu"}.get(op.activation, repr(op.activation))
    if op.activation == "gelu":
        out.helpers["gelu"] = GELU
    args = [
        f"num_heads={att.heads}",
        f"key_dim={att.head_dim}",
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
    extra = [*_mask_args(program, node, "padding_mask", False), "training=training"]
    block = layer(program, node, f"TransformerEncoderBlock({', '.join(args)})", *extra)
    block.helpers.update(out.helpers)
    _attention_helpers(program, block)
    block.helpers["fresh_initializer"] = FRESH_INITIALIZER
    block.helpers["TransformerEncoderBlock"] = _block_source(_uses_rotary(program, blocks=True))
    attr = names(program).layer(node)
    _attention_weights(program, att, f"{attr}.attention", block)
    for name, path in (
        (op.ff1_kernel, "ff1.kernel"),
        (op.ff1_bias, "ff1.bias"),
        (op.ff2_kernel, "ff2.kernel"),
        (op.ff2_bias, "ff2.bias"),
        (op.norm1_gamma, "norm1.gamma"),
        (op.norm1_beta, "norm1.beta"),
        (op.norm2_gamma, "norm2.gamma"),
        (op.norm2_beta, "norm2.beta"),
    ):
        block.weights.append(variable(program.weight(name), f"{attr}.{path}"))
    return block
