"""The example architectures written by hand in idiomatic PyTorch: the baselines of the benchmark.

Written the way an expert would: ``nn.Embedding(padding_idx=0)`` for pad zeroing, the two-table
trick (a frozen table plus a small trainable one) for trainable special tokens, ``nn.LSTM`` over
packed sequences, ``nn.TransformerEncoderLayer``, logits under ``F.cross_entropy`` and stock
optimizers. Sizes come from the example's spec (see :mod:`benchmarks.handwritten`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.handwritten import Handwritten
from nnspec.spec import Spec


def cross_entropy(y_true: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of class ids under logits (softmax folded into the loss)."""
    return F.cross_entropy(logits, y_true.long())


def optimizer_for(spec: Spec, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The spec's optimizer, stock ``torch.optim`` with its fused kernel (as the generated code
    uses: an expert asks for it, and it is about twice as fast on a CPU)."""
    opt = spec.training.optimizer
    if opt.type == "sgd":
        return torch.optim.SGD(
            params, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov, fused=True
        )
    cls = torch.optim.AdamW if opt.type == "adamw" else torch.optim.Adam
    return cls(
        params,
        lr=opt.lr,
        betas=(opt.beta1, opt.beta2),
        eps=opt.eps,
        weight_decay=opt.weight_decay,
        fused=True,
    )


def bundle(spec: Spec, model: nn.Module, device: str) -> Handwritten:
    """``model`` on ``device`` with cross-entropy, the spec's optimizer and clipping."""
    model = model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    return Handwritten(model, cross_entropy, optimizer_for(spec, params), spec.training.clip_norm)


def layers_of(spec: Spec, kind: str) -> list:
    """The spec's layers of type ``kind``, in order."""
    return [layer for layer in spec.model.layers if layer.type == kind]


class TwoTableEmbedding(nn.Module):
    """A frozen pretrained table plus a small trainable table for the special tokens.

    The special tokens are the highest ids. Their rows of the frozen table are 0.0; the small
    table's row 0 stands for "not a special token" and is held at 0.0 by ``padding_idx=0``, so
    it neither trains nor adds anything to ordinary words.
    """

    def __init__(self, vocab_size: int, dim: int, n_special: int, std: float) -> None:
        super().__init__()
        self.first_special = vocab_size - n_special
        table = torch.randn(vocab_size, dim) * std
        table[0] = 0.0
        table[self.first_special :] = 0.0
        self.frozen = nn.Embedding.from_pretrained(table, freeze=True, padding_idx=0)
        self.special = nn.Embedding(n_special + 1, dim, padding_idx=0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        special_ids = (ids - (self.first_special - 1)).clamp(min=0)
        return self.frozen(ids) + self.special(special_ids)


def two_table(spec: Spec) -> TwoTableEmbedding:
    """The two-table embedding of the spec's only table."""
    (table,) = spec.embeddings.values()
    std = getattr(table.initializer, "std", 0.05)
    return TwoTableEmbedding(table.vocab_size, table.dim, len(table.special_tokens), std)


class NewsgroupsFlat(nn.Module):
    """Embedding (pad row 0.0) -> flatten -> dense relu -> dropout -> dense (logits)."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        (table,) = spec.embeddings.values()
        hidden, classes = layers_of(spec, "dense")
        (length,) = next(iter(spec.inputs.values())).dims
        self.embedding = nn.Embedding(table.vocab_size, table.dim, padding_idx=0)
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        with torch.no_grad():
            self.embedding.weight[0] = 0.0
        self.hidden = nn.Linear(length * table.dim, hidden.units)
        self.dropout = nn.Dropout(layers_of(spec, "dropout")[0].rate)
        self.out = nn.Linear(hidden.units, classes.units)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens).flatten(1)
        return self.out(self.dropout(F.relu(self.hidden(x))))


class GloveSpecialTokens(nn.Module):
    """Two-table embedding -> mean over words -> dense relu -> dropout -> dense (logits)."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        (table,) = spec.embeddings.values()
        hidden, classes = layers_of(spec, "dense")
        self.embedding = two_table(spec)
        self.hidden = nn.Linear(table.dim, hidden.units)
        self.dropout = nn.Dropout(layers_of(spec, "dropout")[0].rate)
        self.out = nn.Linear(hidden.units, classes.units)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # Pads embed to 0.0: sum everything, divide by the number of words.
        lengths = (tokens != 0).sum(dim=1, keepdim=True).clamp(min=1)
        x = self.embedding(tokens).sum(dim=1) / lengths
        return self.out(self.dropout(F.relu(self.hidden(x))))


class GloveLstm(nn.Module):
    """Two-table embedding -> bidirectional LSTM over packed sequences -> dropout -> dense."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        (table,) = spec.embeddings.values()
        (lstm,) = layers_of(spec, "lstm")
        (classes,) = layers_of(spec, "dense")
        self.embedding = two_table(spec)
        self.lstm = nn.LSTM(
            table.dim, lstm.units, batch_first=True, bidirectional=lstm.bidirectional
        )
        self.dropout = nn.Dropout(layers_of(spec, "dropout")[0].rate)
        self.out = nn.Linear(lstm.units * (2 if lstm.bidirectional else 1), classes.units)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = (tokens != 0).sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(tokens), lengths, batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.lstm(packed)  # h: (directions, B, units)
        return self.out(self.dropout(torch.cat(list(h), dim=-1)))


def sinusoids(length: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed positional encodings of arXiv 1706.03762, ``(length, dim)``."""
    angles = np.arange(length)[:, None] / base ** (np.arange(0, dim, 2) / dim)
    pe = np.zeros((length, dim))
    pe[:, 0::2] = np.sin(angles)
    pe[:, 1::2] = np.cos(angles[:, : dim // 2])
    return torch.tensor(pe, dtype=torch.float32)


class TransformerClassifier(nn.Module):
    """Scaled embedding + sinusoids -> ``nn.TransformerEncoder`` -> layer norm -> masked mean
    -> dense (logits)."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        (table,) = spec.embeddings.values()
        (enc,) = layers_of(spec, "transformer_encoder")
        (classes,) = layers_of(spec, "dense")
        (length,) = next(iter(spec.inputs.values())).dims
        self.embedding = nn.Embedding(table.vocab_size, table.dim, padding_idx=0)
        self.scale = math.sqrt(table.dim)
        self.register_buffer("positions", sinusoids(length, table.dim), persistent=False)
        layer = nn.TransformerEncoderLayer(
            table.dim,
            enc.heads,
            enc.ff_dim,
            enc.dropout,
            activation=enc.activation,
            layer_norm_eps=enc.epsilon,
            batch_first=True,
            norm_first=enc.norm_first,
        )
        self.encoder = nn.TransformerEncoder(layer, enc.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(table.dim)
        self.out = nn.Linear(table.dim, classes.units)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != 0
        x = self.embedding(tokens) * self.scale + self.positions[: tokens.shape[1]]
        x = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        weights = mask.unsqueeze(-1).to(x.dtype)
        x = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        return self.out(x)


class MemN2N(nn.Module):
    """End-To-End Memory Network, layer-wise tying, constant query, temporal encoding."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        (net,) = layers_of(spec, "memory_network")
        (memories, _) = next(iter(spec.inputs.values())).dims
        std = getattr(net.initializer, "std", 0.1)
        self.hops, self.query_value, self.dim = net.hops, net.query_value, net.dim
        self.A = nn.Embedding(net.vocab_size, net.dim, padding_idx=0)
        self.C = nn.Embedding(net.vocab_size, net.dim, padding_idx=0)
        self.TA = nn.Parameter(torch.randn(memories, net.dim) * std)
        self.TC = nn.Parameter(torch.randn(memories, net.dim) * std)
        self.H = nn.Linear(net.dim, net.dim, bias=False)
        self.W = nn.Linear(net.dim, net.output_size or net.vocab_size, bias=False)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        empty = (context == 0).all(dim=-1)  # (B, M): memories of padding only
        m = self.A(context).sum(dim=-2) + self.TA  # (B, M, d)
        c = self.C(context).sum(dim=-2) + self.TC
        u = m.new_full((context.shape[0], self.dim), self.query_value)
        for _ in range(self.hops):
            scores = torch.bmm(m, u.unsqueeze(-1)).squeeze(-1).masked_fill(empty, -1e9)
            o = torch.bmm(scores.softmax(dim=-1).unsqueeze(1), c).squeeze(1)
            u = self.H(u) + o
        return self.W(u)


MODELS = {
    "newsgroups_flat": NewsgroupsFlat,
    "glove_special_tokens": GloveSpecialTokens,
    "glove_lstm": GloveLstm,
    "transformer_classifier": TransformerClassifier,
    "memn2n_lm": MemN2N,
}


def build(name: str, spec: Spec, device: str = "cpu") -> Handwritten:
    """The hand-written ``name`` example, sized by ``spec``, on ``device``."""
    return bundle(spec, MODELS[name](spec), device)
