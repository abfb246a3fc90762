"""Problem 3 (positional encodings) on Penn Treebank: a MemN2N language model with and without
temporal encoding (arXiv 1503.08895 §5).

Each example is a word to predict from the 150 words before it (one word per memory, slot 0 the
most recent), a constant 0.1 query, 6 hops, d = 150, layer-wise tying with H. The two runs differ
only in ``temporal``: without it, a memory is a bag of words that does not know which slot is
how far back. Reports training, validation and test perplexity (exp of the mean cross-entropy)
per epoch::

    python -m reproductions.ptb --train-words 200000   # both runs, 3 epochs each
    python -m reproductions.ptb --epochs 2 --runs temporal

Needs the data extra: ``pip install -e '.[data,torch]'``. Writes ``RESULTS.md``,
``perplexity.png`` and each run's generated code, log and metrics under
``reproductions/results/ptb/``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from nnspec import datasets
from nnspec.prepare import Prepared, prepare_language_model
from reproductions.runs import (
    Run,
    command,
    epoch_table,
    finished,
    load,
    machine,
    plot,
    selected,
    train,
)

ROOT = Path(__file__).resolve().parent.parent
SPECS = {
    "temporal": ROOT / "reproductions" / "specs" / "ptb_memn2n.yaml",
    "no_temporal": ROOT / "reproductions" / "specs" / "ptb_memn2n_no_temporal.yaml",
    "paper": ROOT / "reproductions" / "specs" / "ptb_memn2n_paper.yaml",
}
# train.py flags of a run besides the shared ones: the paper's annealing (divide the learning
# rate by 1.5 whenever the validation loss stops improving).
RUN_FLAGS = {"paper": ["--schedule", "plateau", "--plateau-factor", "1.5"]}
PAPER = "MemN2N (150 memories, 6 hops) 111 test perplexity; LSTM 115 (arXiv 1503.08895, Table 2)"


OPTIONAL = ("threads", "train_words")  # flags that change what the report measures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", default="temporal,no_temporal", help=f"comma-separated of {list(SPECS)}"
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run")
    parser.add_argument("--backend", default="torch", choices=("torch", "keras"))
    parser.add_argument(
        "--train-words",
        type=int,
        help="train on the first this many words of PTB train (default: all)",
    )
    parser.add_argument("--threads", type=int, help="intra-op threads (default: the framework's)")
    parser.add_argument("--max-steps", type=int, help="stop each run after this many steps")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from the runs' folders as they are (epochs finished so far)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "reproductions" / "results" / "ptb")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Prepare the data, train every run, score the test split, write the table and plot."""
    args = parse_args(argv)
    names = selected(args.runs, SPECS)
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    splits = {split: datasets.penn_treebank(split) for split in ("train", "valid", "test")}
    data, test = args.out / "data.npz", args.out / "test.npz"
    prepared = prepare_language_model(
        splits["train"],
        data,
        val=splits["valid"],
        spec=SPECS["temporal"],
        specials=[],
        oov=None,  # PTB has no unknown words: rare ones are already <unk>
        force=True,
    )
    # The test split as a validation file of its own, scored by train.py's --val-data.
    prepare_language_model(
        splits["train"],
        test,
        val=splits["test"],
        spec=SPECS["temporal"],
        specials=[],
        oov=None,
        force=True,
    )
    if args.train_words is not None:
        keep_first(data, args.train_words)
    print(f"data: {data}, {test} ({time.perf_counter() - start:.1f} s)", flush=True)

    flags = ["--epochs", str(args.epochs)]
    if args.max_steps is not None:
        flags += ["--max-steps", str(args.max_steps)]
    env = {} if args.threads is None else {"OMP_NUM_THREADS": str(args.threads)}
    for name in [] if args.report_only else names:
        run_flags = [*flags, *RUN_FLAGS.get(name, [])]
        run = train(Run(name, SPECS[name], args.out / name), args.backend, data, run_flags, env)
        print(f"[{name}] {run.seconds:.0f} s", flush=True)

    runs = [Run(name, SPECS[name], args.out / name) for name in names]
    runs = [load(run) for run in runs if finished(run)]
    tests = {run.name: test_perplexity(run, args.backend, test) for run in runs}
    for run in runs:
        for row in run.history:
            row["ppl"] = math.exp(row["loss"])
            row["val_ppl"] = math.exp(row["val_loss"])
    plot(runs, "val_ppl", "validation perplexity", args.out / "perplexity.png", "PTB, MemN2N")
    (args.out / "RESULTS.md").write_text(report(runs, tests, prepared, args))
    print(f"wrote {args.out / 'RESULTS.md'} and {args.out / 'perplexity.png'}")


def keep_first(data: Path, examples: int) -> None:
    """Cut the training arrays of ``data`` to their first ``examples`` (the vocabulary and the
    validation arrays stay those of the whole corpus)."""
    import numpy as np

    with np.load(data) as file:
        arrays = dict(file)
    for name, array in arrays.items():
        if array.ndim and not name.startswith(("val_", "test_")) and name != "vocabulary":
            arrays[name] = array[:examples]
    np.savez(data, **arrays)


def test_perplexity(run: Run, backend: str, test: Path, batch: int = 1024) -> float:
    """Perplexity of ``run``'s final weights on the test split (``val_*`` arrays of ``test``).

    Runs the generated ``model.py`` through the backend's runtime adapter, so it scores the
    very model ``train.py`` trained, in either framework.
    """
    import numpy as np
    from safetensors.numpy import load_file

    from nnspec import backends

    runtime = backends.get(backend).runtime()
    model = runtime.build(runtime.load_module(run.folder / "code" / "model.py"), "float32")
    weights = run.folder / "out" / "model.safetensors"
    if not weights.exists():  # a run stopped early: its last finished epoch's checkpoint
        weights = run.folder / "out" / "last.safetensors"
    runtime.set_state(model, load_file(weights))
    if still_linear(run, backend):  # scored as it was trained: its hops without softmax
        layers = model.modules() if backend == "torch" else model.layers
        for layer in layers:
            if hasattr(layer, "linear_start"):
                layer.linear_start = True
    with np.load(test) as arrays:
        (name,) = [key[4:] for key in arrays if key.startswith("val_") and key != "val_labels"]
        inputs, labels = arrays["val_" + name], arrays["val_labels"]
    total = 0.0
    for i in range(0, len(labels), batch):
        probs = runtime.forward(model, {name: inputs[i : i + batch]})
        picked = probs[np.arange(len(probs)), labels[i : i + batch]]
        total -= np.log(np.clip(picked, 1e-7, 1.0)).astype(np.float64).sum()
    return math.exp(total / len(labels))


def still_linear(run: Run, backend: str) -> bool:
    """Whether ``run`` ended still in linear start (its last checkpoint's progress says so)."""
    import json

    import numpy as np

    out = run.folder / "out"
    if backend == "torch":
        import torch

        progress = torch.load(out / "last.pt", weights_only=False)["progress"]
    else:
        with np.load(out / "last.npz") as checkpoint:
            progress = json.loads(str(checkpoint["progress"]))
    return bool(progress.get("linear_start", False))


def closer(runs: list[Run], n_train: int, n_full: int) -> str:
    """What it would take to get closer to the paper, from this run's measured speed."""
    run = runs[0]
    rate = n_train * len(run.history) / run.seconds  # examples/s, validation time included
    hours = 100 * n_full / rate / 3600
    used = "all of them" if n_train >= n_full else f"this run used {n_train:,}"
    return (
        f"To get closer: all {n_full:,} training words ({used}) and the paper's 100 epochs of"
        " SGD with learning-rate annealing, linear start and ReLU on half of each hop's units"
        " (the `paper` run's spec and flags)."
        f" At this run's {rate:,.0f} examples/s, 100 full epochs would take about {hours:,.0f} h"
        " on this CPU: a job for train.py on a GPU (`--device cuda`), not measured here."
    )


def report(
    runs: list[Run], tests: dict[str, float], prepared: Prepared, args: argparse.Namespace
) -> str:
    """The markdown report: test perplexity per run, then perplexities per epoch."""
    stats = prepared.splits
    n_train = stats["train"].examples
    if args.train_words is not None:
        n_train = min(n_train, args.train_words)
    lines = [
        "# Penn Treebank: MemN2N language model with and without temporal encoding",
        "",
        f"Measured on {machine()}, {args.backend} backend, generated code, {args.epochs} epochs"
        f" per run (each run's optimizer, batch and clipping as its spec says;"
        f" {'; '.join(f'{n}: `{chr(32).join(f)}`' for n, f in RUN_FLAGS.items() if n in SPECS)}"
        " besides). Vocabulary"
        f" {len(prepared.vocabulary):,} ids (10,000 words with `<eos>`, plus the pad id 0);"
        f" {n_train:,} training"
        f"{'' if args.train_words is None else ' (the start of PTB train only)'} and"
        f" {stats['val'].examples:,} validation next-word examples. Perplexity = exp(mean"
        " cross-entropy).",
        f"Command: `{command('ptb', args, OPTIONAL)}`.",
        "",
        "| run | spec | epochs | best val ppl (epoch) | test ppl (final weights) | time |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        best, epoch = run.best("val_ppl", mode="min")
        spec = run.spec.relative_to(ROOT)
        lines.append(
            f"| {run.name} | `{spec}` | {len(run.history)} | {best:.1f} ({epoch})"
            f" | {tests[run.name]:.1f} | {run.seconds / 60:.1f} min |"
        )
    lines += [
        "",
        f"Paper: {PAPER}, after 100 epochs of SGD with learning-rate annealing.",
        "",
        closer(runs, n_train, stats["train"].examples),
        "",
        "Perplexity per epoch:",
        "",
        epoch_table(runs, [("ppl", "train ppl"), ("val_ppl", "val ppl")]),
        "",
        "![validation perplexity per epoch](perplexity.png)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
