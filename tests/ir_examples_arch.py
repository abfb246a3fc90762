"""Hand-built IR programs for the architecture ops (Conv1D, pooling, LSTM/GRU, norms, merges,
graphs with tied layers, attention, Transformer blocks, rotary, memory networks)."""

from __future__ import annotations

from nnspec.compiler import ir

GLOROT = ir.Initializer("glorot_uniform")
ZEROS = ir.Initializer("zeros")
ONES = ir.Initializer("ones")
EMB = ir.Initializer("uniform", low=-0.05, high=0.05)
ORTHO_ISH = ir.Initializer("glorot_uniform")


def _training(loss: ir.Loss = "sparse_categorical_crossentropy", kind="adam") -> ir.Training:
    return ir.Training(loss=loss, optimizer=ir.Optimizer(kind, lr=0.01), batch_size=4, epochs=1)


def _dense(name, inp, shape, units, act, mask=None, layer=""):
    owner = layer or name
    node = ir.Node(
        name,
        ir.Dense(units, act, f"{owner}.kernel", f"{owner}.bias"),
        (inp,),
        (*shape[:-1], units),
        mask,
        layer,
    )
    weights = (
        ir.Weight(f"{owner}.kernel", (int(shape[-1]), units), GLOROT),
        ir.Weight(f"{owner}.bias", (units,), ZEROS),
    )
    return node, weights


def _program(
    name, inputs, tables, nodes, outputs, weights, training=None, repeats=()
) -> ir.Program:
    return ir.Program(
        name=name,
        class_name="".join(p.title() for p in name.split("_")),
        spec_hash="3" * 16,
        version="0.1.0",
        inputs=inputs,
        tables=tables,
        nodes=nodes,
        outputs=outputs,
        weights=tuple(weights),
        training=training or _training(),
        repeats=repeats,
    )


def conv_pool(length: int = 20, dim: int = 6) -> ir.Program:
    """Conv1D valid (stride 2), same (stride 2, dilation 2 is not allowed with stride > 1 in
    TF, so dilation 1), causal (dilation 2), max and average pooling, then global max pooling."""
    mask = ir.Mask("tokens", 0)
    table = ir.EmbeddingTable("words", 40, dim, "words.embeddings", pad_index=0)
    nodes = [
        ir.Node("words_lookup", ir.EmbeddingLookup("words"), ("tokens",), (None, length, dim), mask)
    ]
    weights = [ir.Weight("words.embeddings", (40, dim), EMB, zero_rows=(0,))]

    def conv(name, inp, in_ch, filters, k, s, d, padding, out_len, act, m=None):
        nodes.append(
            ir.Node(
                name,
                ir.Conv1D(filters, k, f"{name}.kernel", f"{name}.bias", s, d, padding, act),
                (inp,),
                (None, out_len, filters),
                m,
            )
        )
        weights.append(ir.Weight(f"{name}.kernel", (k, in_ch, filters), GLOROT))
        weights.append(ir.Weight(f"{name}.bias", (filters,), ZEROS))

    conv("causal", "words_lookup", dim, 5, 3, 1, 2, "causal", 20, "relu", mask)
    conv("same", "causal", 5, 7, 4, 2, 1, "same", 10, "tanh")
    nodes.append(ir.Node("max_pool", ir.Pool1D("max", 2, 1), ("same",), (None, 9, 7)))
    conv("valid", "max_pool", 7, 4, 3, 2, 1, "valid", 4, "linear")
    nodes.append(ir.Node("avg_pool", ir.Pool1D("average", 2, 2), ("valid",), (None, 2, 4)))
    nodes.append(ir.Node("flatten", ir.Flatten(), ("avg_pool",), (None, 8)))
    out, w = _dense("out", "flatten", (None, 8), 3, "softmax")
    nodes.append(out)
    weights += w
    return _program(
        "conv_pool", (ir.Input("tokens", length),), (table,), tuple(nodes), ("out",), weights
    )


def _direction(owner: str, cell: str, inp: int, units: int, weights: list) -> ir.RecurrentDirection:
    gates = 4 if cell == "lstm" else 3
    d = ir.RecurrentDirection(
        f"{owner}.kernel",
        f"{owner}.recurrent_kernel",
        f"{owner}.input_bias",
        f"{owner}.recurrent_bias",
    )
    weights += [
        ir.Weight(d.kernel, (inp, gates * units), GLOROT),
        ir.Weight(d.recurrent_kernel, (units, gates * units), GLOROT),
        ir.Weight(d.input_bias, (gates * units,), ZEROS),
        ir.Weight(d.recurrent_bias, (gates * units,), ZEROS),
    ]
    return d


def recurrent(length: int = 9, dim: int = 5) -> ir.Program:
    """Masked bidirectional LSTM (concat, sequences) -> masked bidirectional GRU (sum, final
    state) -> dense softmax; also a unidirectional GRU branch pooled and concatenated."""
    mask = ir.Mask("tokens", 0)
    table = ir.EmbeddingTable("words", 30, dim, "words.embeddings", pad_index=0)
    weights: list = [ir.Weight("words.embeddings", (30, dim), EMB, zero_rows=(0,))]
    lstm = ir.Recurrent(
        "lstm",
        4,
        _direction("lstm.forward", "lstm", dim, 4, weights),
        _direction("lstm.backward", "lstm", dim, 4, weights),
        return_sequences=True,
        merge="concat",
    )
    gru = ir.Recurrent(
        "gru",
        3,
        _direction("gru.forward", "gru", 8, 3, weights),
        _direction("gru.backward", "gru", 8, 3, weights),
        return_sequences=False,
        merge="sum",
    )
    gru_seq = ir.Recurrent(
        "gru", 2, _direction("gru_seq.forward", "gru", dim, 2, weights), return_sequences=True
    )
    lstm_last = ir.Recurrent("lstm", 3, _direction("lstm_last.forward", "lstm", dim, 3, weights))
    nodes = [
        ir.Node(
            "words_lookup", ir.EmbeddingLookup("words"), ("tokens",), (None, length, dim), mask
        ),
        ir.Node("lstm", lstm, ("words_lookup",), (None, length, 8), mask),
        ir.Node("gru", gru, ("lstm",), (None, 3)),
        ir.Node("gru_seq", gru_seq, ("words_lookup",), (None, length, 2), mask),
        ir.Node("pool", ir.GlobalPool("average"), ("gru_seq",), (None, 2)),
        ir.Node("lstm_last", lstm_last, ("words_lookup",), (None, 3)),
        ir.Node("concat", ir.Merge("concat"), ("gru", "pool", "lstm_last"), (None, 8)),
    ]
    out, w = _dense("out", "concat", (None, 8), 3, "softmax")
    nodes.append(out)
    weights += w
    return _program(
        "recurrent", (ir.Input("tokens", length),), (table,), tuple(nodes), ("out",), weights
    )


def graph_norms(length: int = 7, dim: int = 6) -> ir.Program:
    """A graph: two inputs with their own tables, a dense layer tied (shared) between both
    branches, layer norm, batch norm, add, multiply and concat merges."""
    ma, mb = ir.Mask("left", 0), ir.Mask("right", 0)
    ta = ir.EmbeddingTable("ltab", 25, dim, "ltab.embeddings", pad_index=0)
    tb = ir.EmbeddingTable("rtab", 25, dim, "rtab.embeddings", pad_index=0)
    weights: list = [
        ir.Weight("ltab.embeddings", (25, dim), EMB, zero_rows=(0,)),
        ir.Weight("rtab.embeddings", (25, dim), EMB, zero_rows=(0,)),
    ]
    shared_l, w = _dense("shared", "lemb", (None, length, dim), dim, "tanh", ma, layer="shared")
    weights += w
    shared_r, _ = _dense("shared_1", "remb", (None, length, dim), dim, "tanh", mb, layer="shared")
    both = ma  # a merge carries its first input's mask
    nodes = [
        ir.Node("lemb", ir.EmbeddingLookup("ltab"), ("left",), (None, length, dim), ma),
        ir.Node("remb", ir.EmbeddingLookup("rtab"), ("right",), (None, length, dim), mb),
        shared_l,
        shared_r,
        ir.Node("added", ir.Merge("add"), ("shared", "shared_1"), (None, length, dim), both),
        ir.Node(
            "norm",
            ir.LayerNorm(1e-5, "norm.gamma", "norm.beta"),
            ("added",),
            (None, length, dim),
            both,
        ),
        ir.Node(
            "bn",
            ir.BatchNorm(1e-5, 0.1, "bn.gamma", "bn.beta", "bn.moving_mean", "bn.moving_variance"),
            ("lemb",),
            (None, length, dim),
            ma,
        ),
        ir.Node("product", ir.Merge("multiply"), ("norm", "bn"), (None, length, dim), both),
        ir.Node("joined", ir.Merge("concat"), ("product", "remb"), (None, length, 2 * dim), both),
        ir.Node("pool", ir.GlobalPool("max"), ("joined",), (None, 2 * dim)),
    ]
    weights += [
        ir.Weight("norm.gamma", (dim,), ONES),
        ir.Weight("norm.beta", (dim,), ZEROS),
        ir.Weight("bn.gamma", (dim,), ONES),
        ir.Weight("bn.beta", (dim,), ZEROS),
        ir.Weight("bn.moving_mean", (dim,), ZEROS, trainable="none", state=True),
        ir.Weight("bn.moving_variance", (dim,), ONES, trainable="none", state=True),
    ]
    out, w = _dense("out", "pool", (None, 2 * dim), 2, "softmax")
    nodes.append(out)
    weights += w
    return _program(
        "graph_norms",
        (ir.Input("left", length), ir.Input("right", length)),
        (ta, tb),
        tuple(nodes),
        ("out",),
        weights,
    )


def _attention_weights(owner: str, width: int, weights: list) -> ir.AttentionWeights:
    names = {}
    for part in ("query", "key", "value", "output"):
        names[f"{part}_kernel"] = f"{owner}.{part}.kernel"
        names[f"{part}_bias"] = f"{owner}.{part}.bias"
        weights.append(ir.Weight(f"{owner}.{part}.kernel", (width, width), GLOROT))
        weights.append(ir.Weight(f"{owner}.{part}.bias", (width,), ZEROS))
    return ir.AttentionWeights(**names)


def _block(name, width, heads, ff, norm_first, rotary, weights, act="relu"):
    att = ir.SelfAttention(
        heads, width // heads, _attention_weights(f"{name}.attention", width, weights), 0.1, rotary
    )
    weights += [
        ir.Weight(f"{name}.ff1.kernel", (width, ff), GLOROT),
        ir.Weight(f"{name}.ff1.bias", (ff,), ZEROS),
        ir.Weight(f"{name}.ff2.kernel", (ff, width), GLOROT),
        ir.Weight(f"{name}.ff2.bias", (width,), ZEROS),
        ir.Weight(f"{name}.norm1.gamma", (width,), ONES),
        ir.Weight(f"{name}.norm1.beta", (width,), ZEROS),
        ir.Weight(f"{name}.norm2.gamma", (width,), ONES),
        ir.Weight(f"{name}.norm2.beta", (width,), ZEROS),
    ]
    return ir.TransformerBlock(
        att,
        ff,
        f"{name}.ff1.kernel",
        f"{name}.ff1.bias",
        f"{name}.ff2.kernel",
        f"{name}.ff2.bias",
        f"{name}.norm1.gamma",
        f"{name}.norm1.beta",
        f"{name}.norm2.gamma",
        f"{name}.norm2.beta",
        1e-5,
        0.1,
        act,
        norm_first,
    )


def transformer(length: int = 8, width: int = 8) -> ir.Program:
    """Sinusoidal embedding, a post-norm block, a pre-norm block with rotary attention and gelu,
    a bare rotary self-attention layer, masked average pooling."""
    mask = ir.Mask("tokens", 0)
    table = ir.EmbeddingTable(
        "words",
        30,
        width,
        "words.embeddings",
        pad_index=0,
        positional=ir.SinusoidalPositional(length),
    )
    weights: list = [ir.Weight("words.embeddings", (30, width), EMB, zero_rows=(0,))]
    post = _block("post", width, 2, 16, False, None, weights)
    pre = _block("pre", width, 4, 12, True, ir.Rotary(), weights, act="gelu")
    att = ir.SelfAttention(
        2, width // 2, _attention_weights("attention", width, weights), 0.0, ir.Rotary(500.0)
    )
    shape = (None, length, width)
    nodes = [
        ir.Node("words_lookup", ir.EmbeddingLookup("words"), ("tokens",), shape, mask),
        ir.Node("post", post, ("words_lookup",), shape, mask),
        ir.Node("pre", pre, ("post",), shape, mask),
        ir.Node("attention", att, ("pre",), shape, mask),
        ir.Node("pool", ir.GlobalPool("average"), ("attention",), (None, width)),
    ]
    out, w = _dense("out", "pool", (None, width), 3, "softmax")
    nodes.append(out)
    weights += w
    return _program(
        "transformer", (ir.Input("tokens", length),), (table,), tuple(nodes), ("out",), weights
    )


def memn2n(
    tying: str = "adjacent",
    memory_size: int = 5,
    sentence: int = 4,
    vocab: int = 20,
    dim: int = 6,
    hops: int = 3,
) -> ir.Program:
    """A memory network: adjacent tying with position encoding, temporal encoding and an
    embedded question; or layer-wise tying with a constant query, the linear map H and its own
    output matrix W (the language-model setting)."""
    weights: list = []
    hop_list = []
    zero = (0,)
    emb = ir.Initializer("normal", std=0.1)
    if tying == "adjacent":
        names_a = [f"memory.A{k + 1}" for k in range(hops + 1)]  # A_{k+1} = C_k
        tnames = [f"memory.T{k + 1}" for k in range(hops + 1)]
        for k in range(hops):
            hop_list.append(ir.MemoryHop(names_a[k], names_a[k + 1], tnames[k], tnames[k + 1]))
        for n in names_a:
            weights.append(ir.Weight(n, (vocab, dim), emb, zero_rows=zero))
        for n in tnames:
            weights.append(ir.Weight(n, (memory_size, dim), emb))
        op = ir.MemoryNetwork(
            tuple(hop_list),
            dim,
            vocab,
            memory_size,
            sentence,
            "adjacent",
            "embedded",
            position_encoding=True,
            pad_index=0,
            output_size=vocab,
            activation="softmax",
        )
        inputs = (
            ir.Input("memories", sentence, shape=(memory_size, sentence)),
            ir.Input("question", sentence),
        )
        node_inputs = ("memories", "question")
    else:
        hop = ir.MemoryHop("memory.A", "memory.C", "memory.TA", "memory.TC")
        hop_list = [hop] * hops
        weights += [
            ir.Weight("memory.A", (vocab, dim), emb, zero_rows=zero),
            ir.Weight("memory.C", (vocab, dim), emb, zero_rows=zero),
            ir.Weight("memory.TA", (memory_size, dim), emb),
            ir.Weight("memory.TC", (memory_size, dim), emb),
            ir.Weight("memory.H", (dim, dim), emb),
            ir.Weight("memory.W", (dim, vocab), emb),
        ]
        op = ir.MemoryNetwork(
            tuple(hop_list),
            dim,
            vocab,
            memory_size,
            1,
            "layerwise",
            "constant",
            linear_map="memory.H",
            output="memory.W",
            output_size=vocab,
            pad_index=0,
            activation="softmax",
        )
        inputs = (ir.Input("memories", 1, shape=(memory_size, 1)),)
        node_inputs = ("memories",)
    nodes = (ir.Node("memory", op, node_inputs, (None, vocab)),)
    return _program(f"memn2n_{tying}", inputs, (), nodes, ("memory",), weights)


ALL = (conv_pool, recurrent, graph_norms, transformer, memn2n, lambda: memn2n("layerwise"))
