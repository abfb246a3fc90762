"""One training step, the same for generated and hand-written models, in each framework.

A :class:`Side` adapts one backend: it builds the generated model (``build_model``, ``loss_fn``,
``make_optimizer`` from the generated ``model.py``) or the hand-written one, turns numpy batches
into tensors on the device (before timing), and returns a ``step(i)`` closure that trains on batch
``i`` and waits for the result. Both models of a comparison go through the same ``step`` code:

* torch: ``zero_grad(set_to_none=True)``; ``loss_fn(y, model(**x))``; ``backward()``; clipping
  (hand-written only: the generated ``make_optimizer`` clips itself); ``optimizer.step()``;
  ``loss.item()``. Modules in training mode (dropout on).
* Keras: a ``tf.function`` (no XLA) of a ``GradientTape`` step and ``optimizer.apply``, as
  ``model.fit`` and the generated ``train.py`` do; the loss is fetched to the host.
* Keras on JAX and on PyTorch (``keras-jax``, ``keras-torch``): the generated ``train.py``'s step
  on that engine (see :class:`KerasEngineSide`); the loss is fetched to the host.

Importing this module imports no framework; constructing a side does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.handwritten import Handwritten
from nnspec import backends
from nnspec.spec import Spec

Batch = tuple[dict[str, np.ndarray], np.ndarray]
Step = Callable[[int], float]


class Side:
    """What the harness needs from one framework."""

    backend: str
    device: str

    def versions(self) -> dict[str, str]:
        """Framework versions and thread settings, for the report."""
        raise NotImplementedError

    def generated(self, model_py: Path) -> Handwritten:
        """The generated model, loss and optimizer (``clip_norm`` None: it clips itself)."""
        raise NotImplementedError

    def handwritten(self, name: str, spec: Spec, batch: Batch) -> Handwritten:
        """The hand-written model of example ``name``."""
        raise NotImplementedError

    def step(self, bundle: Handwritten, batches: list[Batch]) -> Step:
        """A closure running one training step on ``batches[i % len(batches)]``."""
        raise NotImplementedError

    def trainable_count(self, bundle: Handwritten) -> int:
        """Trainable scalars."""
        raise NotImplementedError

    def optimizer_bytes(self, bundle: Handwritten) -> int:
        """Bytes of optimizer state (after at least one step)."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on the CPU)."""

    def peak_memory(self) -> int | None:
        """Peak device memory allocated so far, in bytes, where the device tracks it."""
        return None


class TorchSide(Side):
    """PyTorch, on ``device`` (``cpu`` or ``cuda``), with ``threads`` intra-op threads."""

    backend = "torch"

    def __init__(self, device: str, threads: int) -> None:
        import torch

        self.torch = torch
        torch.set_num_threads(threads)
        self.threads = threads
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("no CUDA device visible to torch")
        self.device = device
        self.runtime = backends.get("torch").runtime()

    def versions(self) -> dict[str, str]:
        info = {"torch": self.torch.__version__, "torch threads": str(self.threads)}
        if self.device == "cuda":
            from benchmarks.gpu import peak_bandwidth

            name = self.torch.cuda.get_device_name(0)
            peak, source = peak_bandwidth(name, self.torch.cuda.get_device_properties(0))
            info.update({"GPU": name, "peak_bandwidth_GBps": str(peak), "peak_source": source})
        return info

    def generated(self, model_py: Path) -> Handwritten:
        module = self.runtime.load_module(model_py)
        model = module.build_model("float32").to(self.device)
        logits = self.runtime.logits_flag(model)  # loss_fn takes logits, as in train.py
        return Handwritten(model, module.loss_fn, module.make_optimizer(model), None, logits)

    def handwritten(self, name: str, spec: Spec, batch: Batch) -> Handwritten:
        from benchmarks.handwritten import torch_models

        return torch_models.build(name, spec, self.device)

    def step(self, bundle: Handwritten, batches: list[Batch]) -> Step:
        torch = self.torch
        tensors = [
            (
                {k: torch.as_tensor(v).to(self.device) for k, v in x.items()},
                torch.as_tensor(y).to(self.device),
            )
            for x, y in batches
        ]
        model, loss_fn, optimizer, clip = (
            bundle.model,
            bundle.loss_fn,
            bundle.optimizer,
            bundle.clip_norm,
        )
        params = [p for p in model.parameters() if p.requires_grad]
        model.train()

        def step(i: int) -> float:
            x, y = tensors[i % len(tensors)]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(y, model(**x, **bundle.call_kwargs))
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            return loss.item()

        return step

    def trainable_count(self, bundle: Handwritten) -> int:
        return sum(p.numel() for p in bundle.model.parameters() if p.requires_grad)

    def optimizer_bytes(self, bundle: Handwritten) -> int:
        return sum(
            value.numel() * value.element_size()
            for state in bundle.optimizer.state.values()
            for value in state.values()
            if isinstance(value, self.torch.Tensor)
        )

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def peak_memory(self) -> int | None:
        if self.device != "cuda":
            return None
        return int(self.torch.cuda.max_memory_allocated())


class KerasSide(Side):
    """Keras 3 on TensorFlow, with ``threads`` intra-op threads (set before TF starts).

    ``eager`` runs the step without ``tf.function`` (``--quick``: no graph tracing, which costs
    seconds per model; the timings then measure eager execution).
    """

    backend = "keras"

    def __init__(self, device: str, threads: int, eager: bool = False) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # one tf.function per model is not "retracing"
        self.eager = eager
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        import keras

        self.tf, self.keras, self.threads = tf, keras, threads
        gpus = tf.config.list_physical_devices("GPU")
        if device == "cuda" and not gpus:
            raise RuntimeError("no GPU visible to TensorFlow (tensorflow-cpu?)")
        if device == "cpu" and gpus:
            tf.config.set_visible_devices([], "GPU")
        self.device = device
        self.runtime = backends.get("keras").runtime()

    def versions(self) -> dict[str, str]:
        return {
            "tensorflow": self.tf.__version__,
            "keras": self.keras.__version__,
            "tf threads": str(self.threads),
            "keras step": "eager" if self.eager else "tf.function",
        }

    def generated(self, model_py: Path) -> Handwritten:
        module = self.runtime.load_module(model_py)
        model = module.build_model("float32")
        logits = self.runtime.logits_flag(model)  # loss_fn takes logits, as in train.py
        return Handwritten(model, module.loss_fn, module.make_optimizer(model), None, logits)

    def handwritten(self, name: str, spec: Spec, batch: Batch) -> Handwritten:
        from benchmarks.handwritten import keras_models

        return keras_models.build(name, spec, {k: v[:1] for k, v in batch[0].items()})

    def step(self, bundle: Handwritten, batches: list[Batch]) -> Step:
        tf = self.tf
        tensors = [({k: tf.constant(v) for k, v in x.items()}, tf.constant(y)) for x, y in batches]
        model, loss_fn, optimizer = bundle.model, bundle.loss_fn, bundle.optimizer

        def train_step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True, **bundle.call_kwargs))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        if not self.eager:
            train_step = tf.function(train_step, jit_compile=False)

        def step(i: int) -> float:
            x, y = tensors[i % len(tensors)]
            return float(train_step(x, y))

        return step

    def trainable_count(self, bundle: Handwritten) -> int:
        return int(sum(np.prod(v.shape) for v in bundle.model.trainable_variables))

    def optimizer_bytes(self, bundle: Handwritten) -> int:
        return int(
            sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in bundle.optimizer.variables)
        )


class KerasEngineSide(KerasSide):
    """Keras 3 on its JAX or PyTorch engine (``KERAS_BACKEND``, set by the harness before Keras
    starts), stepped as the generated ``train.py`` steps on that engine; TensorFlow is not
    imported.

    * JAX: one ``jax.jit`` of the stateless step (``stateless_call``, ``jax.value_and_grad``,
      ``stateless_apply``) on the variables' values, the new values written back to the
      variables; XLA's CPU thread pool is set by the harness (``XLA_FLAGS``).
    * PyTorch: eager forward and loss, ``torch.autograd.grad`` of the loss with respect to the
      trainable variables, ``optimizer.apply`` under ``torch.no_grad()``.
    """

    def __init__(self, engine: str, device: str, threads: int) -> None:
        import keras

        if keras.backend.backend() != engine:
            raise RuntimeError(f"KERAS_BACKEND is {keras.backend.backend()}, not {engine}")
        if device != "cpu":
            raise RuntimeError(f"keras-{engine} is measured on the CPU only")
        if engine == "torch":
            import torch

            torch.set_num_threads(threads)
            self.engine_version = torch.__version__
        else:
            import jax

            self.engine_version = jax.__version__
        self.keras, self.engine, self.threads, self.device = keras, engine, threads, device
        self.backend = f"keras-{engine}"
        self.runtime = backends.get("keras").runtime()

    def versions(self) -> dict[str, str]:
        step = "jax.jit" if self.engine == "jax" else "eager"
        return {
            self.engine: self.engine_version,
            "keras": self.keras.__version__,
            f"{self.engine} threads": str(self.threads),
            "keras step": step,
        }

    def step(self, bundle: Handwritten, batches: list[Batch]) -> Step:
        ops = self.keras.ops
        tensors = [
            ({k: ops.convert_to_tensor(v) for k, v in x.items()}, ops.convert_to_tensor(y))
            for x, y in batches
        ]
        return (self.jax_step if self.engine == "jax" else self.torch_step)(bundle, tensors)

    @staticmethod
    def jax_step(bundle: Handwritten, tensors: list) -> Step:
        import jax

        model, loss_fn, optimizer = bundle.model, bundle.loss_fn, bundle.optimizer
        optimizer.build(model.trainable_variables)
        groups = [model.trainable_variables, model.non_trainable_variables, optimizer.variables]

        def loss_of(trainable, non_trainable, x, y):
            y_pred, non_trainable = model.stateless_call(
                trainable, non_trainable, x, training=True, **bundle.call_kwargs
            )
            return loss_fn(y, y_pred), non_trainable

        @jax.jit
        def train_step(values, x, y):
            trainable, non_trainable, optimizer_values = values
            grad_fn = jax.value_and_grad(loss_of, has_aux=True)
            (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
            trainable, optimizer_values = optimizer.stateless_apply(
                optimizer_values, grads, trainable
            )
            return loss, [trainable, non_trainable, optimizer_values]

        def step(i: int) -> float:
            x, y = tensors[i % len(tensors)]
            loss, values = train_step([[v.value for v in g] for g in groups], x, y)
            for group, group_values in zip(groups, values, strict=True):
                for variable, value in zip(group, group_values, strict=True):
                    variable.assign(value)
            return float(loss)

        return step

    @staticmethod
    def torch_step(bundle: Handwritten, tensors: list) -> Step:
        import torch

        model, loss_fn, optimizer = bundle.model, bundle.loss_fn, bundle.optimizer

        def step(i: int) -> float:
            x, y = tensors[i % len(tensors)]
            loss = loss_fn(y, model(x, training=True, **bundle.call_kwargs))
            weights = [v.value for v in model.trainable_variables]
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
            with torch.no_grad():
                optimizer.apply(list(grads), model.trainable_variables)
            return float(loss)

        return step


def make_side(backend: str, device: str, threads: int, keras_eager: bool = False) -> Side:
    """The :class:`Side` of ``backend``."""
    if backend == "keras":
        return KerasSide(device, threads, eager=keras_eager)
    if backend in ("keras-jax", "keras-torch"):
        return KerasEngineSide(backend.removeprefix("keras-"), device, threads)
    if backend == "torch":
        return TorchSide(device, threads)
    raise ValueError(f"unknown backend {backend!r}")
