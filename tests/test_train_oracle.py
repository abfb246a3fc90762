"""The generated ``train.py`` of each backend against a training loop written here by hand.

The script runs as a user runs it (a subprocess: ``python train.py --data ... --init ...``) on a
small classifier with every part of a training step in play: a partially trainable, pad-zeroed
embedding, dropout, AdamW (decoupled weight decay), a warm-up and cosine learning-rate schedule,
gradient clipping that binds, two epochs with a partial last batch, validation after each epoch,
and ``--max-steps`` then ``--resume``; and, in float16 mixed precision with loss scaling, SGD with
momentum and (coupled) weight decay.

The hand-written loop starts from the same canonical weights (``--init``) and draws the same
batches: it re-implements each script's documented shuffle (torch: ``DistributedSampler``'s
``randperm`` seeded with ``seed + epoch``; Keras: ``numpy.random.default_rng([seed, epoch])``) and
seeds dropout as the script does. It uses the generated model for the forward pass only; the
loss, learning rate, clipping and the update are written here, the update by ``torch.optim``'s
reference (single-tensor) implementations -- for the Keras model too, as the README promises
PyTorch's update rules in both backends: the Keras gradients are handed to ``torch.optim``.

Tolerance. The scripts run in float32 (or float16 mixed precision) only: no flag gives float64.
So the hand loop runs twice: in the script's precision and in float64 (with the same dropout
masks). The float64 run is the reference; the hand loop's own distance from it, ``D`` per
tensor, is what the round-off of a correct low-precision run of this recipe amounts to (Adam
divides by ``sqrt(v)``, so it is not a fixed number). The script is another realisation of the
same low-precision recipe (its own kernels, graph mode, a fused optimizer), so its distance from
the reference is of the same order: it must be at most :data:`ROUNDOFF_FACTOR` times ``D``. Each
trained tensor must also have moved at least :data:`MEANINGFUL` times that tolerance, so the
comparison can fail: a missing ``zero_grad``, clipping before unscaling, dropout active at
evaluation or AdamW's decay coupled into the gradient all move weights by a sizeable share of
the step, far above round-off.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from nnspec import backends
from nnspec.backends.base import write_tree
from nnspec.compiler import compile_spec
from nnspec.spec import load_string

for framework in ("torch", "tensorflow", "tqdm", "matplotlib"):
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed", allow_module_level=True)

BACKENDS = ("torch", "keras")
TIMEOUT = 300  # seconds for one script run
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONUNBUFFERED": "1",
}

# A correct script may lie this many times as far from the float64 reference as the hand loop's
# own low-precision run does (a different rounding of the same recipe: same order, not the same
# value); and each trained tensor must move at least MEANINGFUL times the resulting tolerance.
ROUNDOFF_FACTOR = 10.0
MEANINGFUL = 10.0

SPEC = """\
nnspec: 1
name: oracle_loop
inputs:
  tokens: {length: 6}
embeddings:
  words:
    vocab_size: 30
    dim: 4
    padding: {index: 0, mode: zero}
    trainable: {ranges: [[0, 20]]}
model:
  layers:
    - {type: embedding, table: words}
    - {type: flatten}
    - {type: dense, units: 8, activation: tanh}
    - {type: dropout, rate: 0.25}
    - {type: dense, units: 3, activation: softmax}
training:
  loss: sparse_categorical_crossentropy
  optimizer: OPTIMIZER
"""
VOCAB, LENGTH, CLASSES, TRAINABLE_ROWS = 30, 6, 3, range(1, 20)  # row 0 is the pad: frozen
DROPOUT = 0.25


@dataclass(frozen=True)
class Recipe:
    """One training configuration: the spec's optimizer, the script's flags, the hand loop's
    ``torch.optim`` class and arguments."""

    name: str
    optimizer: str  # the spec's optimizer, YAML
    torch_optimizer: str  # torch.optim class
    torch_kwargs: dict
    lr: float
    precision: str  # float32 or float16
    clip_norm: float | None  # --clip-norm (clipping in train.py)
    spec_clip_norm: float | None = None  # the spec's clip_norm (clipping in model.py)
    warmup_steps: int = 2
    min_lr: float = 0.005
    epochs: int = 2

    def flags(self) -> list[str]:
        """The script's flags for this recipe (data, output and init are added per run)."""
        return [
            *("--epochs", str(self.epochs), "--batch-size", str(BATCH), "--seed", str(SEED)),
            *("--lr", repr(self.lr), "--schedule", "cosine"),
            *("--warmup-steps", str(self.warmup_steps), "--min-lr", repr(self.min_lr)),
            *(("--clip-norm", repr(self.clip_norm)) if self.clip_norm else ()),
            *("--precision", self.precision),
            *("--device", "cpu", "--deterministic", "--no-early-stopping", "--no-restore-best"),
        ]

    def learning_rate(self, step: int, steps_per_epoch: int) -> float:
        """The README's schedule: linear warm-up to ``lr`` over ``warmup_steps`` steps, then a
        half cosine down to ``min_lr`` at the end of the last epoch."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / (self.epochs * steps_per_epoch - self.warmup_steps)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


ADAMW = Recipe(
    "adamw",
    "{type: adamw, lr: 0.05, weight_decay: 0.25}",
    "AdamW",
    {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.25},
    lr=0.05,
    precision="float32",
    clip_norm=1.0,
)
SGD_FLOAT16 = Recipe(
    "sgd_float16",
    "{type: sgd, lr: 0.5, momentum: 0.9, weight_decay: 0.01}",
    "SGD",
    {"momentum": 0.9, "weight_decay": 0.01},
    lr=0.5,
    precision="float16",
    clip_norm=0.5,
)
SPEC_CLIP_FLOAT16 = Recipe(
    "spec_clip_float16",
    "{type: sgd, lr: 0.5}\n  clip_norm: 0.5",
    "SGD",
    {},
    lr=0.5,
    precision="float16",
    clip_norm=None,
    spec_clip_norm=0.5,
)
RECIPES = {r.name: r for r in (ADAMW, SGD_FLOAT16, SPEC_CLIP_FLOAT16)}

N_TRAIN, N_VAL, BATCH, SEED = 40, 16, 16, 11  # 3 steps per epoch, the last of 8 examples
STEPS_PER_EPOCH = math.ceil(N_TRAIN / BATCH)
INTERRUPT = 4  # --max-steps of the interrupted run: inside the second epoch


def make_data(path: Path) -> Path:
    """Post-padded token ids (some of frozen rows, ids >= 20) and labels; validation too."""
    rng = np.random.default_rng(5)
    arrays = {}
    for prefix, n in (("", N_TRAIN), ("val_", N_VAL)):
        ids = rng.integers(1, VOCAB, size=(n, LENGTH))
        lengths = rng.integers(2, LENGTH + 1, size=n)
        ids[np.arange(LENGTH) >= lengths[:, None]] = 0
        arrays[f"{prefix}tokens"] = ids.astype(np.int32)
        arrays[f"{prefix}labels"] = rng.integers(0, CLASSES, size=n).astype(np.int32)
    np.savez(path, **arrays)
    return path


def make_init(path: Path) -> Path:
    """Canonical initial weights (the pad row deliberately not 0.0: loading must zero it)."""
    rng = np.random.default_rng(3)
    shapes = {
        "words.embeddings": (VOCAB, 4),
        "dense.kernel": (LENGTH * 4, 8),
        "dense.bias": (8,),
        "dense_1.kernel": (8, CLASSES),
        "dense_1.bias": (CLASSES,),
    }
    save_file({k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in shapes.items()}, str(path))
    return path


def epoch_order(backend: str, epoch: int, n: int) -> np.ndarray:
    """The example order of ``epoch`` (from 1) as each script documents it."""
    if backend == "torch":  # DistributedSampler(shuffle=True, seed=SEED), set_epoch(epoch)
        import torch

        generator = torch.Generator()
        generator.manual_seed(SEED + epoch)
        return torch.randperm(n, generator=generator).numpy()
    return np.random.default_rng([SEED, epoch]).permutation(n)  # worker_order, one worker


def load_module(path: Path, name: str):
    """Import the generated ``model.py`` at ``path`` under a module name of its own."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- the hand loop


class TorchModel:
    """The generated torch model, driven by hand: forward, loss, gradients."""

    def __init__(self, module, dtype: str, precision: str, init: Path) -> None:
        import torch

        self.torch = torch
        self.model = module.build_model(dtype)
        self.model.load_canonical(init)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.float16 = precision == "float16"

    def seed_dropout(self) -> None:
        """The script reseeds torch's global generator with ``--seed`` before training."""
        self.torch.manual_seed(SEED)

    def autocast(self):
        """float16 autocast in the mixed-precision recipe, nothing otherwise."""
        if self.float16:
            return self.torch.autocast("cpu", dtype=self.torch.float16)
        return contextlib.nullcontext()

    def loss_and_gradients(self, ids: np.ndarray, labels: np.ndarray, scale: float) -> np.ndarray:
        """Set ``p.grad`` of every trainable parameter to the gradient of the batch's mean loss
        (computed with the loss multiplied by ``scale``); returns the examples' losses."""
        torch = self.torch
        self.model.train()
        for p in self.params:
            p.grad = None
        with self.autocast():
            logits = self.model(tokens=torch.from_numpy(ids.astype(np.int64)), logits=True)
        logits = logits.to(self.params[0].dtype)
        losses = hand_losses(torch, logits, torch.from_numpy(labels.astype(np.int64)))
        (losses.mean() * scale).backward()
        for p in self.params:
            p.grad /= scale  # unscale (exact: a power of 2)
        return losses.detach().double().numpy()

    def gradients(self) -> list:
        """The gradients set by :meth:`loss_and_gradients`."""
        return [p.grad for p in self.params]

    def after_step(self) -> None:
        """Nothing: torch.optim updated the model's own parameters."""

    def evaluate(self, ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The losses of a validation set's examples, dropout off."""
        torch = self.torch
        self.model.eval()
        with torch.no_grad(), self.autocast():
            logits = self.model(tokens=torch.from_numpy(ids.astype(np.int64)), logits=True)
        losses = hand_losses(torch, logits.to(self.params[0].dtype), torch.from_numpy(labels))
        return losses.double().numpy()

    def state(self) -> dict[str, np.ndarray]:
        """Canonical weights, float64."""
        return {k: v.astype(np.float64) for k, v in self.model.canonical_state().items()}


@contextlib.contextmanager
def dropout_masks_of(keras, dtype: str) -> Iterator[None]:
    """Keras draws dropout masks from uniforms in the layer's dtype, so a float64 model gets
    other masks than a float32 (or float16) one from the same seed. Meanwhile: draw each mask as
    a ``dtype`` layer would (same seed, same draw), apply it in the input's dtype."""
    random = keras.src.backend.random
    draw = random.dropout

    def dropout(inputs, rate, noise_shape=None, seed=None):
        kept = draw(keras.ops.ones(keras.ops.shape(inputs), dtype), rate, noise_shape, seed)
        mask = keras.ops.cast(keras.ops.not_equal(kept, 0.0), inputs.dtype)
        return inputs * mask / (1.0 - rate)

    random.dropout = dropout
    try:
        yield
    finally:
        random.dropout = draw


class KerasModel:
    """The generated Keras model, driven by hand; its weights are updated by ``torch.optim``
    through torch copies in :attr:`params`, written back after each step."""

    def __init__(self, module, dtype: str, precision: str, init: Path) -> None:
        import keras
        import tensorflow as tf
        import torch

        self.tf, self.torch = tf, torch
        keras.utils.set_random_seed(SEED)  # the script seeds before building: dropout's seeds
        policy = "mixed_float16" if precision == "float16" else dtype
        self.model = module.build_model(dtype=policy)
        self.model.load_canonical(str(init))
        self.variables = self.model.trainable_variables
        self.params = [torch.tensor(np.array(v.numpy())) for v in self.variables]
        self.dtype = dtype

    def seed_dropout(self) -> None:
        """Dropout draws from the model's own seed generators, seeded at build time."""

    def loss_and_gradients(self, ids: np.ndarray, labels: np.ndarray, scale: float) -> np.ndarray:
        """The torch copies' ``grad``: gradients of the batch's mean loss (computed with the loss
        multiplied by ``scale``, then divided by it), repeated embedding ids summed; returns the
        examples' losses."""
        tf = self.tf
        with tf.GradientTape() as tape:
            logits = self.model({"tokens": tf.constant(ids)}, training=True, logits=True)
            losses = hand_losses(tf, tf.cast(logits, self.dtype), tf.constant(labels))
            scaled = tf.reduce_mean(losses) * scale
        grads = tape.gradient(scaled, self.variables)
        for p, g in zip(self.params, grads, strict=True):
            p.grad = self.torch.from_numpy(np.array(tf.convert_to_tensor(g).numpy())) / scale
        return losses.numpy().astype(np.float64)

    def gradients(self) -> list:
        """The gradients set by :meth:`loss_and_gradients`."""
        return [p.grad for p in self.params]

    def after_step(self) -> None:
        """Write the updated torch copies back into the Keras variables."""
        for v, p in zip(self.variables, self.params, strict=True):
            v.assign(p.detach().numpy())

    def evaluate(self, ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The losses of a validation set's examples, dropout off."""
        tf = self.tf
        logits = self.model({"tokens": tf.constant(ids)}, training=False, logits=True)
        return (
            hand_losses(tf, tf.cast(logits, self.dtype), tf.constant(labels))
            .numpy()
            .astype(np.float64)
        )

    def state(self) -> dict[str, np.ndarray]:
        """Canonical weights, float64."""
        return {k: v.astype(np.float64) for k, v in self.model.canonical_state().items()}


def hand_losses(fw, logits, labels):
    """Sparse categorical cross-entropy of a softmax output from its logits, per example, as
    the IR says (exact, no clipping): ``logsumexp(z) - z[label]``, with the maximum taken out
    first; ``fw`` torch or TensorFlow."""
    if fw.__name__ == "torch":
        top = logits.max(dim=1, keepdim=True).values.detach()
        shifted = logits - top
        picked = shifted.gather(1, labels.long().reshape(-1, 1))[:, 0]
        return fw.log(fw.exp(shifted).sum(dim=1)) - picked
    top = fw.stop_gradient(fw.reduce_max(logits, axis=1, keepdims=True))
    shifted = logits - top
    picked = fw.gather(shifted, fw.cast(labels, "int32"), batch_dims=1)
    return fw.math.log(fw.reduce_sum(fw.exp(shifted), axis=1)) - picked


def clip_gradients(torch, grads: list, max_norm: float) -> None:
    """Scale ``grads`` in place to a global norm of at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_`` documents it: by ``max_norm / (norm + 1e-6)`` if below 1."""
    norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
    coefficient = max_norm / (norm + 1e-6)
    if coefficient < 1:
        for g in grads:
            g.mul_(coefficient)


@dataclass
class Trajectory:
    """What a hand-loop run saw: weights after each step, losses, gradient norms."""

    states: list[dict[str, np.ndarray]] = field(default_factory=list)  # [0] = initial
    losses: list[float] = field(default_factory=list)  # per epoch: mean training loss
    val_losses: list[float] = field(default_factory=list)  # per epoch
    example_losses: list[np.ndarray] = field(default_factory=list)  # per epoch, per example
    val_example_losses: list[np.ndarray] = field(default_factory=list)  # per epoch
    lrs: list[float] = field(default_factory=list)  # per step
    norms: list[float] = field(default_factory=list)  # per update, before clipping
    skipped: list[int] = field(default_factory=list)  # steps without an update (overflow)


def hand_train(
    backend: str,
    folder: Path,
    recipe: Recipe,
    dtype: str,
    data: Path,
    init: Path,
    skip: tuple[int, ...] = (),
) -> Trajectory:
    """Train the model in ``folder`` by hand: the recipe in ``dtype`` (``float64``: the
    reference; ``float32``: in the recipe's own precision, float16 autocast included), skipping
    the updates of the steps in ``skip``."""
    import keras
    import torch

    precision = recipe.precision if dtype == "float32" else "float64"
    module = load_module(folder / "model.py", f"oracle_{backend}_{recipe.name}_{dtype}")
    with np.load(data) as arrays:
        ids, labels = arrays["tokens"], arrays["labels"]
        val_ids, val_labels = arrays["val_tokens"], arrays["val_labels"].astype(np.int64)
    model_class = TorchModel if backend == "torch" else KerasModel
    masks = (
        dropout_masks_of(keras, "float16" if recipe.precision == "float16" else "float32")
        if backend == "keras" and dtype == "float64"
        else contextlib.nullcontext()
    )
    with masks:
        model = model_class(module, dtype, recipe.precision if dtype == "float32" else dtype, init)
        optimizer = getattr(torch.optim, recipe.torch_optimizer)(
            model.params, lr=recipe.lr, foreach=False, **recipe.torch_kwargs
        )
        # float16: loss scaling as each framework's recipe does it -- torch's GradScaler, and in
        # Keras a fixed 2**15 (this short run never overflows: asserted below).
        # float16: loss scaling as each script does it (torch's GradScaler; the Keras script's
        # own, starting at 2**15): a step whose gradients overflow is skipped and the scale
        # halved (neither grows again within 2000 steps). The float64 reference skips the steps
        # that the float16 run skipped.
        scale = {"torch": 65536.0, "keras": 2.0**15}[backend] if precision == "float16" else 1.0
        run = Trajectory(states=[model.state()])
        model.seed_dropout()
        step = 0
        for epoch in range(1, recipe.epochs + 1):
            order, epoch_losses = epoch_order(backend, epoch, len(labels)), []
            for start in range(0, len(order), BATCH):
                batch = order[start : start + BATCH]
                lr = recipe.learning_rate(step, STEPS_PER_EPOCH)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                epoch_losses.append(model.loss_and_gradients(ids[batch], labels[batch], scale))
                grads = model.gradients()
                finite = all(bool(torch.isfinite(g).all()) for g in grads)
                if not finite or step in skip:
                    run.skipped.append(step)
                    scale /= 2
                else:
                    norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
                    # train.py's --clip-norm first, then the spec's (in make_optimizer's step)
                    for clip in (recipe.clip_norm, recipe.spec_clip_norm):
                        if clip is not None:
                            clip_gradients(torch, grads, clip)
                    optimizer.step()
                    model.after_step()
                    run.norms.append(norm)
                run.states.append(model.state())
                run.lrs.append(lr)
                step += 1
            run.example_losses.append(np.concatenate(epoch_losses))
            run.losses.append(float(np.mean(run.example_losses[-1])))
            run.val_example_losses.append(model.evaluate(val_ids, val_labels))
            run.val_losses.append(float(np.mean(run.val_example_losses[-1])))
    return run


# ----------------------------------------------------------------------------- the script runs


def run_script(folder: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` in ``folder``, checked."""
    done = subprocess.run(
        [sys.executable, str(folder / "train.py"), *map(str, args)],
        cwd=folder,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
    return done


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a metrics CSV as floats, without the wall-clock column."""
    with path.open() as file:
        rows = csv.DictReader(file)
        return [{k: float(v) for k, v in row.items() if k != "seconds"} for row in rows]


class Setup:
    """The generated folders, the script runs (in the background) and the hand-loop runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = make_data(root / "data.npz")
        self.init = make_init(root / "init.safetensors")
        self.folders: dict[tuple[str, str], Path] = {}
        for recipe in RECIPES.values():
            parsed, doc = load_string(SPEC.replace("OPTIMIZER", recipe.optimizer), "oracle.yaml")
            program = compile_spec(parsed, doc)
            for backend in BACKENDS:
                folder = root / recipe.name / backend
                write_tree(backends.get(backend).generate(program), folder)
                self.folders[recipe.name, backend] = folder
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.scripts: dict[str, Future] = {}
        for backend in BACKENDS:
            self.scripts[f"resumed/{backend}"] = self.pool.submit(self.interrupted, backend)
        for recipe in RECIPES.values():
            for backend in BACKENDS:
                key = f"{recipe.name}/{backend}"
                self.scripts[key] = self.pool.submit(self.whole, recipe, backend)
        self.hand: dict[tuple[str, str, str], Trajectory] = {}

    def command(self, recipe: Recipe, backend: str, out: str) -> list[str | Path]:
        """The flags of one run writing to ``out``."""
        folder = self.folders[recipe.name, backend]
        return ["--data", self.data, "--init", self.init, "--out", folder / out, *recipe.flags()]

    def whole(self, recipe: Recipe, backend: str) -> Path:
        """An uninterrupted run; its output folder."""
        run_script(self.folders[recipe.name, backend], *self.command(recipe, backend, "whole"))
        return self.folders[recipe.name, backend] / "whole"

    def interrupted(self, backend: str) -> tuple[Path, str, str]:
        """The AdamW run stopped by ``--max-steps`` inside epoch 2, then resumed: its output
        folder, a copy of the weights at the interruption, and both runs' stdout."""
        folder = self.folders["adamw", backend]
        first = run_script(folder, *self.command(ADAMW, backend, "resumed"), "--max-steps", 4)
        out = folder / "resumed"
        (out / "at_interruption.safetensors").write_bytes((out / "last.safetensors").read_bytes())
        second = run_script(folder, *self.command(ADAMW, backend, "resumed"), "--resume")
        return out, first.stdout, second.stdout

    def result(self, key: str):
        """The result of a script run (waiting for it)."""
        return self.scripts[key].result(timeout=4 * TIMEOUT)

    def trajectory(self, recipe: Recipe, backend: str, dtype: str) -> Trajectory:
        """The hand loop's run (computed once)."""
        key = (recipe.name, backend, dtype)
        if key not in self.hand:
            folder = self.folders[recipe.name, backend]
            skip = ()
            if dtype == "float64":
                skip = tuple(self.trajectory(recipe, backend, "float32").skipped)
            self.hand[key] = hand_train(backend, folder, recipe, dtype, self.data, self.init, skip)
        return self.hand[key]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    setup = Setup(tmp_path_factory.mktemp("train_oracle"))
    yield setup
    setup.pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------- comparisons


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b|`` (0.0 for empty arrays)."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - b), initial=0.0))


def check_weights(
    got: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    own: dict[str, np.ndarray],
    init: dict[str, np.ndarray],
    what: str,
) -> list[str]:
    """Problems with the script's weights ``got``, compared with the float64 reference under the
    tolerance that the hand loop's own low-precision run ``own`` gives (see the module's
    docstring); also problems with the comparison's power (a tensor that did not move)."""
    problems = []
    assert sorted(got) == sorted(reference), f"{what}: {sorted(got)} != {sorted(reference)}"
    for name in sorted(reference):
        tolerance = ROUNDOFF_FACTOR * max_diff(own[name], reference[name])
        diff = max_diff(got[name], reference[name])
        print(f"{what} {name}: {diff:.2e} from float64, tolerance {tolerance:.2e}")
        if not diff <= tolerance:
            problems.append(f"{what} {name}: {diff:.3e} from float64 > {tolerance:.3e}")
        moved = max_diff(reference[name], init[name])
        if not moved > MEANINGFUL * tolerance:
            problems.append(f"{what} {name}: moved {moved:.3e}, not {MEANINGFUL}x {tolerance:.3e}")
    return problems


def check_losses(
    got: list[float], reference: list[np.ndarray], own: list[np.ndarray], what: str
) -> list[str]:
    """Problems with the script's per-epoch mean losses ``got``, against the float64 reference's
    per-example losses: the tolerance is :data:`ROUNDOFF_FACTOR` times the mean per-example
    distance of the hand loop's own low-precision run (a mean of errors is at most their mean
    size; the one mean of the hand loop may cancel by chance), plus the script's float32 sums
    (``loss * n`` per batch, added up, divided): ``STEPS_PER_EPOCH + 2`` roundings of relative
    size ``2**-24`` at most."""
    problems = []
    for i, (g, r_examples, o_examples) in enumerate(zip(got, reference, own, strict=True)):
        r = float(np.mean(r_examples))
        spread = float(np.mean(np.abs(o_examples - r_examples)))
        tolerance = ROUNDOFF_FACTOR * spread + (STEPS_PER_EPOCH + 2) * 2.0**-24 * abs(r)
        if not abs(g - r) <= tolerance:
            problems.append(f"{what} epoch {i + 1}: {g!r} vs float64 {r!r} (tolerance {tolerance})")
    return problems


def canonical(path: Path) -> dict[str, np.ndarray]:
    """Canonical weights of a safetensors file, float64."""
    return {k: v.astype(np.float64) for k, v in load_file(str(path)).items()}


def initial(setup: Setup) -> dict[str, np.ndarray]:
    """The initial weights as loaded (pad row zeroed)."""
    state = canonical(setup.init)
    state["words.embeddings"][0] = 0.0
    return state


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("backend", BACKENDS)
def test_adamw_clipping_and_schedule_match_the_hand_loop(setup: Setup, backend: str) -> None:
    """Two epochs of AdamW with warm-up, cosine schedule, binding clipping and dropout: weights
    after every epoch, training and validation losses, and learning rates agree with the hand
    loop's float64 run within the derived float32 tolerance."""
    out = setup.result(f"adamw/{backend}")
    reference = setup.trajectory(ADAMW, backend, "float64")
    own = setup.trajectory(ADAMW, backend, "float32")
    assert any(n > ADAMW.clip_norm for n in reference.norms), reference.norms
    assert not all(n > ADAMW.clip_norm for n in reference.norms), reference.norms
    start = initial(setup)
    problems = check_weights(
        canonical(out / "last.safetensors"), reference.states[-1], own.states[-1], start, "final"
    )
    problems += check_weights(
        canonical(out / "model.safetensors"),
        reference.states[-1],
        own.states[-1],
        start,
        "model.safetensors",
    )
    rows = read_metrics(out / "metrics.csv")
    problems += check_losses(
        [r["loss"] for r in rows], reference.example_losses, own.example_losses, "loss"
    )
    problems += check_losses(
        [r["val_loss"] for r in rows],
        reference.val_example_losses,
        own.val_example_losses,
        "val_loss",
    )
    assert not problems, "\n".join(problems)
    # The metrics' lr is the last step's of each epoch; the schedule's formula from the README.
    assert [r["lr"] for r in rows] == pytest.approx(reference.lrs[STEPS_PER_EPOCH - 1 :: 3])


@pytest.mark.parametrize("backend", BACKENDS)
def test_interrupted_and_resumed_run_matches_the_hand_loop(setup: Setup, backend: str) -> None:
    """``--max-steps 4`` stops inside epoch 2 with the hand loop's weights after 4 steps;
    ``--resume`` then ends with the uninterrupted run's weights, bit for bit, and so with the
    hand loop's."""
    out, first, second = setup.result(f"resumed/{backend}")
    whole = setup.result(f"adamw/{backend}")
    assert "stopped by --max-steps" in first and "resuming at epoch 2, step 4" in second
    reference = setup.trajectory(ADAMW, backend, "float64")
    own = setup.trajectory(ADAMW, backend, "float32")
    start = initial(setup)
    problems = check_weights(
        canonical(out / "at_interruption.safetensors"),
        reference.states[INTERRUPT],
        own.states[INTERRUPT],
        start,
        f"after {INTERRUPT} steps",
    )
    resumed = canonical(out / "last.safetensors")
    problems += check_weights(resumed, reference.states[-1], own.states[-1], start, "resumed")
    assert not problems, "\n".join(problems)
    uninterrupted = load_file(str(whole / "last.safetensors"))
    for name, array in load_file(str(out / "last.safetensors")).items():
        assert array.tobytes() == uninterrupted[name].tobytes(), f"{name}: resumed != whole"
    assert read_metrics(out / "metrics.csv") == read_metrics(whole / "metrics.csv")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("recipe", [SGD_FLOAT16, SPEC_CLIP_FLOAT16], ids=lambda r: r.name)
def test_float16_loss_scaling_matches_the_hand_loop(
    setup: Setup, recipe: Recipe, backend: str
) -> None:
    """Mixed float16 with loss scaling (steps that overflow skipped), SGD with momentum (and
    weight decay, or Nesterov), clipping that binds -- by ``--clip-norm`` or by the spec's
    ``clip_norm`` -- on unscaled gradients: weights and losses agree with the hand loop's float64
    run within the tolerance that the hand loop's own float16 run gives."""
    out = setup.result(f"{recipe.name}/{backend}")
    reference = setup.trajectory(recipe, backend, "float64")
    own = setup.trajectory(recipe, backend, "float32")
    clip = recipe.clip_norm or recipe.spec_clip_norm
    assert any(n > clip for n in reference.norms), reference.norms
    print(f"{recipe.name}: steps skipped (overflow) {own.skipped}")
    start = initial(setup)
    problems = check_weights(
        canonical(out / "last.safetensors"), reference.states[-1], own.states[-1], start, "final"
    )
    rows = read_metrics(out / "metrics.csv")
    problems += check_losses(
        [r["loss"] for r in rows], reference.example_losses, own.example_losses, "loss"
    )
    problems += check_losses(
        [r["val_loss"] for r in rows],
        reference.val_example_losses,
        own.val_example_losses,
        "val_loss",
    )
    assert not problems, "\n".join(problems)


def test_policies_hold_in_the_scripts_weights(setup: Setup) -> None:
    """The pad row is exactly 0.0 and the frozen rows (ids 20-29) bit-identical to ``--init``
    in every run's final weights."""
    init = load_file(str(setup.init))["words.embeddings"]
    for key in setup.scripts:
        result = setup.result(key)
        out = result[0] if isinstance(result, tuple) else result
        table = load_file(str(out / "last.safetensors"))["words.embeddings"]
        assert np.all(table[0] == 0.0), key
        assert table[20:].tobytes() == init[20:].tobytes(), key
        assert not np.array_equal(table[1:20], init[1:20]), key
