"""Measure the framework differences that nnspec resolves, on this machine.

Run with the project's environment (torch and TensorFlow/Keras installed)::

    python docs/facts/measure.py            # measure, print, write docs/facts/measured.json
    python docs/facts/measure.py --check    # measure and compare with the checked-in numbers

Every number on the "Framework differences" page comes from here. Each fact is measured on
stock framework layers and optimizers (not on nnspec's generated code), in float32 on the CPU,
with fixed seeds. ``--check`` exits 1 when a fact no longer holds: exact facts (counts, lengths,
ratios of defaults) must be equal, small differences must stay below 1e-5, and the others must
agree within 2%.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import warnings

import numpy as np

warnings.filterwarnings("ignore", message="Using padding='same'")

HERE = Path(__file__).resolve().parent
OUT = HERE / "measured.json"

# name -> (value, kind, what); kind: "exact", "small" (< 1e-5) or "approx" (2%)
Facts = dict[str, tuple[float, str, str]]


def setup_tensorflow():
    """Import TensorFlow with the CPU split into two logical devices (for the replica facts)."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras

    return tf, keras


def adam(tf, keras, torch) -> Facts:
    """Where epsilon goes in Adam, the default epsilons, and repeated ids in Keras Adam."""
    facts: Facts = {}
    lr, eps, g = 1e-3, 1e-8, 1e-6
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr, eps=eps)
    w.grad = torch.full((1,), g)
    opt.step()
    torch_step = -float(w.detach()[0])

    v = keras.Variable(np.zeros(1, np.float32))
    kopt = keras.optimizers.Adam(learning_rate=lr, epsilon=eps)
    kopt.apply_gradients([(tf.constant([g], tf.float32), v)])
    keras_step = -float(v.numpy()[0])
    facts["adam_first_step_torch"] = (
        torch_step / lr,
        "approx",
        "first Adam step / lr, gradient 1e-6, eps 1e-8: torch",
    )
    facts["adam_first_step_keras"] = (
        keras_step / lr,
        "approx",
        "first Adam step / lr, gradient 1e-6, eps 1e-8: Keras",
    )
    facts["adam_keras_effective_eps"] = (
        eps / math.sqrt(1 - 0.999),
        "approx",
        "Keras' epsilon at step 1 in torch's terms: eps / sqrt(1 - beta2)",
    )
    facts["adam_default_eps_torch"] = (
        torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults["eps"],
        "exact",
        "default epsilon: torch",
    )
    facts["adam_default_eps_keras"] = (
        keras.optimizers.Adam().epsilon,
        "exact",
        "default epsilon: Keras",
    )

    # An id seen twice in a batch: torch's dense embedding gradient holds the sum per row.
    emb = keras.layers.Embedding(10, 4)
    emb.build((None, 2))
    kopt = keras.optimizers.Adam(learning_rate=0.1)
    ids = tf.constant([[1, 1]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(emb(ids))
    (grad,) = tape.gradient(loss, emb.trainable_variables)
    kopt.apply_gradients([(grad, emb.embeddings)])
    keras_v = float(kopt._velocities[0].numpy()[1, 0])

    table = torch.nn.Embedding(10, 4)
    topt = torch.optim.Adam(table.parameters(), lr=0.1)
    table(torch.tensor([[1, 1]])).sum().backward()
    topt.step()
    torch_v = float(topt.state[table.weight]["exp_avg_sq"][1, 0])
    facts["adam_repeated_id_v_torch"] = (
        torch_v,
        "approx",
        "second moment of a row seen twice (gradient 1 each), after one step: torch",
    )
    facts["adam_repeated_id_v_keras"] = (
        keras_v,
        "approx",
        "second moment of a row seen twice (gradient 1 each), after one step: Keras",
    )
    return facts


def recurrent(tf, keras, torch) -> Facts:
    """LSTM biases, GRU gate order and reset_after: parameter counts and copied weights."""
    facts: Facts = {}
    inp, units, steps = 8, 16, 5
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(2, steps, inp)).astype(np.float32)

    lstm_t = torch.nn.LSTM(inp, units, batch_first=True)
    lstm_k = keras.layers.LSTM(units, return_sequences=True)
    lstm_k.build((None, steps, inp))
    facts["lstm_params_torch"] = (
        sum(p.numel() for p in lstm_t.parameters()),
        "exact",
        "LSTM(8 -> 16) parameters: torch (b_ih and b_hh)",
    )
    facts["lstm_params_keras"] = (lstm_k.count_params(), "exact", "LSTM(8 -> 16): Keras (one bias)")
    with torch.no_grad():
        torch.nn.init.uniform_(lstm_t.bias_hh_l0, -0.5, 0.5)
        ref = lstm_t(torch.from_numpy(x))[0].numpy()
    w_ih, w_hh = lstm_t.weight_ih_l0.detach().numpy(), lstm_t.weight_hh_l0.detach().numpy()
    b_ih, b_hh = lstm_t.bias_ih_l0.detach().numpy(), lstm_t.bias_hh_l0.detach().numpy()
    lstm_k.cell.set_weights([w_ih.T, w_hh.T, b_ih])
    facts["lstm_one_bias_diff"] = (
        float(np.abs(lstm_k(x).numpy() - ref).max()),
        "approx",
        "max |output difference|, torch LSTM copied into Keras with b_ih only",
    )
    lstm_k.cell.set_weights([w_ih.T, w_hh.T, b_ih + b_hh])
    facts["lstm_summed_bias_diff"] = (
        float(np.abs(lstm_k(x).numpy() - ref).max()),
        "small",
        "the same with b_ih + b_hh (same gate order i, f, g/c, o)",
    )

    gru_t = torch.nn.GRU(inp, units, batch_first=True)
    with torch.no_grad():
        ref = gru_t(torch.from_numpy(x))[0].numpy()
    facts["gru_params_torch"] = (
        sum(p.numel() for p in gru_t.parameters()),
        "exact",
        "GRU(8 -> 16) parameters: torch",
    )
    counts = {}
    for reset_after in (True, False):
        layer = keras.layers.GRU(units, reset_after=reset_after)
        layer.build((None, steps, inp))
        counts[reset_after] = layer.count_params()
    facts["gru_params_keras_reset_after"] = (
        counts[True],
        "exact",
        "GRU(8 -> 16): Keras reset_after=True (the default)",
    )
    facts["gru_params_keras_reset_before"] = (
        counts[False],
        "exact",
        "GRU(8 -> 16): Keras reset_after=False",
    )
    w_ih, w_hh = gru_t.weight_ih_l0.detach().numpy(), gru_t.weight_hh_l0.detach().numpy()
    b_ih, b_hh = gru_t.bias_ih_l0.detach().numpy(), gru_t.bias_hh_l0.detach().numpy()
    gru_k = keras.layers.GRU(units, return_sequences=True, reset_after=True)
    gru_k.build((None, steps, inp))

    def blocks(a, order):
        parts = np.split(a, 3, axis=0)
        return np.concatenate([parts[i] for i in order], axis=0)

    for label, order in (("torch_order", (0, 1, 2)), ("reordered", (1, 0, 2))):
        gru_k.cell.set_weights(
            [
                blocks(w_ih, order).T,
                blocks(w_hh, order).T,
                np.stack([blocks(b_ih, order), blocks(b_hh, order)]),
            ]
        )
        facts[f"gru_{label}_diff"] = (
            float(np.abs(gru_k(x).numpy() - ref).max()),
            "approx" if label == "torch_order" else "small",
            "max |output difference|, torch GRU copied into Keras "
            + ("in torch's order (r, z, n)" if label == "torch_order" else "as (z, r, n)"),
        )
    return facts


def conv_same(tf, keras, torch) -> Facts:
    """`same` padding: stride 2 in torch, and which side gets the extra zero."""
    facts: Facts = {}
    length, k = 10, 4
    x = np.zeros((1, length, 1), np.float32)
    x[0, 0, 0] = 1.0  # an impulse at the first position
    conv_k = keras.layers.Conv1D(1, k, strides=2, padding="same", use_bias=False)
    conv_k.build((None, length, 1))
    facts["same_length_keras_stride2"] = (
        conv_k(x).shape[1],
        "exact",
        "output length, L=10, kernel 4, stride 2, `same`: Keras",
    )
    try:
        torch.nn.Conv1d(1, 1, k, stride=2, padding="same")
        refused = 0.0
    except ValueError:
        refused = 1.0
    facts["same_torch_stride2_refused"] = (
        refused,
        "exact",
        "torch refuses padding='same' with stride 2 (1 = ValueError)",
    )
    conv_t = torch.nn.Conv1d(1, 1, k, stride=2, padding=k // 2, bias=False)
    facts["same_length_torch_symmetric"] = (
        conv_t(torch.zeros(1, 1, length)).shape[-1],
        "exact",
        "output length with the usual torch substitute padding=k//2",
    )
    # Stride 1: impulse response shows where the left padding ends.
    kernel = np.arange(1, k + 1, dtype=np.float32)
    conv_k1 = keras.layers.Conv1D(1, k, padding="same", use_bias=False)
    conv_k1.build((None, length, 1))
    conv_k1.set_weights([kernel.reshape(k, 1, 1)])
    conv_t1 = torch.nn.Conv1d(1, 1, k, padding="same", bias=False)
    with torch.no_grad():
        conv_t1.weight.copy_(torch.from_numpy(kernel.reshape(1, 1, k)))
        torch_out = conv_t1(torch.from_numpy(x.transpose(0, 2, 1)))[0, 0].numpy()
    keras_out = conv_k1(x)[0, :, 0].numpy()
    facts["same_stride1_diff"] = (
        float(np.abs(torch_out - keras_out).max()),
        "exact",
        "max |difference|, kernel 4, stride 1, `same`, both frameworks (the same left pad)",
    )
    return facts


def normalization(tf, keras, torch) -> Facts:
    """LayerNorm and BatchNorm defaults, BatchNorm's moving variance."""
    facts: Facts = {}
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(4, 64)) * 0.01).astype(np.float32)  # small activations
    ln_t = torch.nn.LayerNorm(64)
    ln_k = keras.layers.LayerNormalization()
    with torch.no_grad():
        out_t = ln_t(torch.from_numpy(x)).numpy()
    out_k = ln_k(x).numpy()
    facts["layernorm_eps_torch"] = (ln_t.eps, "exact", "LayerNorm default epsilon: torch")
    facts["layernorm_eps_keras"] = (ln_k.epsilon, "exact", "LayerNormalization default: Keras")
    facts["layernorm_default_diff"] = (
        float(np.abs(out_t - out_k).max()),
        "approx",
        "max |output difference| of the defaults on activations of std 0.01",
    )
    facts["layernorm_keras_output_std"] = (
        float(out_k.std()),
        "approx",
        "std of Keras' default output there (torch's: 1.0)",
    )

    bn_t = torch.nn.BatchNorm1d(3)
    bn_k = keras.layers.BatchNormalization()
    facts["batchnorm_momentum_torch"] = (bn_t.momentum, "exact", "BatchNorm momentum: torch")
    facts["batchnorm_momentum_keras"] = (bn_k.momentum, "exact", "BatchNormalization: Keras")
    facts["batchnorm_eps_torch"] = (bn_t.eps, "exact", "BatchNorm epsilon: torch")
    facts["batchnorm_eps_keras"] = (bn_k.epsilon, "exact", "BatchNormalization epsilon: Keras")
    batch = rng.normal(size=(4, 3)).astype(np.float32)
    bn_t.train()
    bn_t(torch.from_numpy(batch))
    bn_k = keras.layers.BatchNormalization(momentum=1 - bn_t.momentum)  # the same weighting
    bn_k(batch, training=True)
    torch_step = bn_t.running_var.numpy() - 1.0
    keras_step = bn_k.moving_variance.numpy() - 1.0
    facts["batchnorm_moving_var_ratio"] = (
        float(np.mean((torch_step + 0.1) / (keras_step + 0.1))),
        "approx",
        "torch / Keras moving-variance update after one batch of 4 (n / (n - 1) = 1.333)",
    )
    return facts


def attention(tf, keras, torch) -> Facts:
    """The boolean masks mean opposite things; an all-padding row."""
    facts: Facts = {}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 4)).astype(np.float32)
    pads = np.array([[False, False, False, True, True], [True] * 5])  # True at padded keys
    mha_t = torch.nn.MultiheadAttention(4, 1, batch_first=True)
    with torch.no_grad():
        out_t, w_t = mha_t(
            torch.from_numpy(x),
            torch.from_numpy(x),
            torch.from_numpy(x),
            key_padding_mask=torch.from_numpy(pads),
        )
    mha_k = keras.layers.MultiHeadAttention(num_heads=1, key_dim=4)
    mask = np.broadcast_to(pads[:, None, :], (2, 5, 5))
    out_k, w_k = mha_k(x, x, attention_mask=mask, return_attention_scores=True)
    w_k = w_k.numpy()[:, 0]
    facts["mask_torch_weight_on_pads"] = (
        float(w_t[0][:, 3:].sum(-1).max()),
        "exact",
        "attention weight on padded keys, mask True at pads: torch key_padding_mask",
    )
    facts["mask_keras_weight_on_pads"] = (
        float(w_k[0][:, 3:].sum(-1).min()),
        "approx",
        "the same boolean array as Keras attention_mask (True = attend)",
    )
    facts["mask_torch_all_pad_nan"] = (
        float(np.isnan(out_t[1].numpy()).mean()),
        "exact",
        "share of NaN outputs for a row whose keys are all padding: torch",
    )
    facts["mask_keras_all_pad_nan"] = (
        float(np.isnan(out_k.numpy()[1]).mean()),
        "exact",
        "the same row: Keras",
    )
    return facts


def replicas(tf, keras, torch) -> Facts:
    """Gradients over two replicas: MirroredStrategy sums, DistributedDataParallel averages."""
    facts: Facts = {}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    xs = tf.constant(np.arange(8, dtype=np.float32).reshape(8, 1))
    with strategy.scope():
        w = tf.Variable([[0.5]])

    def gradient(weighted: bool):
        def replica(x):
            ctx = tf.distribute.get_replica_context()
            n = tf.cast(tf.shape(x)[0], tf.float32)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((x @ w) ** 2)
                if weighted:  # the replica's share of the global batch
                    loss = loss * n / ctx.all_reduce("sum", n)
            return ctx.all_reduce("sum", tape.gradient(loss, w))

        dataset = tf.data.Dataset.from_tensor_slices(xs).batch(8)
        batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
        result = strategy.run(replica, args=(batch,))
        return float(strategy.experimental_local_results(result)[0].numpy()[0, 0])

    with tf.GradientTape() as tape:
        one_device = tape.gradient(tf.reduce_mean((xs @ w) ** 2), w)
    facts["replicas_keras_sum_ratio"] = (
        gradient(False) / float(one_device.numpy()[0, 0]),
        "approx",
        "2 replicas, per-replica mean loss, gradients all-reduced (summed): / one device",
    )
    facts["replicas_keras_weighted_ratio"] = (
        gradient(True) / float(one_device.numpy()[0, 0]),
        "approx",
        "the same with each replica's loss weighted by its share of the batch",
    )
    return facts


def holds(kind: str, value: float, old: float) -> bool:
    """Whether a fact measured as ``value`` still says what the checked-in ``old`` says."""
    if kind == "exact":
        return value == old
    if kind == "small":
        return value < 1e-5 and old < 1e-5
    return math.isclose(value, old, rel_tol=0.02, abs_tol=1e-12)


def _ddp_worker(rank: int, store: str, out: str) -> None:
    """One process of :func:`ddp`: the gradient of its local mean loss through DDP, for local
    batches of 4 + 4 and of 6 + 2 examples."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    xs = torch.arange(8, dtype=torch.float32).reshape(8, 1)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(1, 1, bias=False))
    grads = []
    for first in (4, 6):
        mine = xs[:first] if rank == 0 else xs[first:]
        with torch.no_grad():
            model.module.weight.fill_(0.5)
        model.zero_grad()
        model(mine).pow(2).mean().backward()
        grads.append(float(model.module.weight.grad[0, 0]))
    if rank == 0:
        Path(out).write_text(json.dumps(grads))
    dist.destroy_process_group()


def ddp(tf, keras, torch) -> Facts:
    """DistributedDataParallel over 2 CPU processes: gradients are averaged over processes."""
    import tempfile

    import torch.multiprocessing as mp

    xs = torch.arange(8, dtype=torch.float32).reshape(8, 1)
    one_device = float((2 * xs * 0.5 * xs).mean())  # d/dw mean((w x)^2) at w = 0.5
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_ddp_worker, args=(f"{tmp}/store", f"{tmp}/grads"), nprocs=2)
        equal, uneven = json.loads(Path(f"{tmp}/grads").read_text())
    what = "2 processes (gloo), local batches {}, mean loss: gradient / one device's"
    return {
        "ddp_equal_ratio": (equal / one_device, "approx", what.format("4 + 4")),
        "ddp_uneven_ratio": (uneven / one_device, "approx", what.format("6 + 2")),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure every fact; write them, or with ``--check`` compare with the checked-in ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with measured.json")
    args = parser.parse_args(argv)
    tf, keras = setup_tensorflow()
    import torch

    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    facts: Facts = {}
    for measure in (adam, recurrent, conv_same, normalization, attention, replicas, ddp):
        facts.update(measure(tf, keras, torch))
    for name, (value, _, what) in facts.items():
        print(f"{name:34s} {value:<12.6g} {what}")
    versions = {
        "torch": torch.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    if not args.check:
        record = {
            "versions": versions,
            "facts": {
                k: {"value": v, "kind": kind, "what": w} for k, (v, kind, w) in facts.items()
            },
        }
        OUT.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {OUT}")
        return 0
    stored = json.loads(OUT.read_text())["facts"]
    failed = [name for name in stored if name not in facts]
    for name, (value, kind, _) in facts.items():
        old = stored.get(name, {}).get("value")
        if old is None or not holds(kind, value, old):
            failed.append(name)
    if failed:
        print(f"facts that changed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(facts)} facts hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
