"""Compile a spec, run its generated ``train.py``, collect the per-epoch metrics, report them.

Used by every reproduction: each trains the same data several times, once per spec variant,
through the code nnspec generates (nothing is trained by hand-written code here).
"""

from __future__ import annotations

import csv
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nnspec import backends
from nnspec.compiler import compile_file
from nnspec.writer import write_files


@dataclass
class Run:
    """One training run: its name, spec, folder and what it measured.

    Attributes:
        name: a short label for tables and plots.
        spec: the spec file trained.
        folder: where the generated code, log and metrics are.
        history: one dict per epoch, as ``metrics.csv`` of ``train.py`` holds them.
        seconds: wall time of the whole ``train.py`` call.
    """

    name: str
    spec: Path
    folder: Path
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def best(self, metric: str, mode: str = "max") -> tuple[float, int]:
        """The best value of ``metric`` over the epochs, and its epoch."""
        pick = max if mode == "max" else min
        row = pick(self.history, key=lambda r: r[metric])
        return row[metric], int(row["epoch"])


def selected(runs: str, specs: dict[str, Path]) -> list[str]:
    """The run names of a comma-separated ``--runs`` value; ``SystemExit`` for unknown ones."""
    names = [name.strip() for name in runs.split(",") if name.strip()]
    unknown = [name for name in names if name not in specs]
    if unknown:
        raise SystemExit(f"unknown run(s) {unknown}; known: {list(specs)}")
    return names


def command(module: str, args: object, optional: tuple[str, ...]) -> str:
    """The command line that reproduces a report: ``--epochs`` and the ``optional`` flags set."""
    flags = [f"--epochs {args.epochs}"]
    flags += [
        f"--{name.replace('_', '-')} {getattr(args, name)}"
        for name in optional
        if getattr(args, name) is not None
    ]
    return f"python -m reproductions.{module} {' '.join(flags)}"


def compile_spec(spec: Path, folder: Path, backend: str) -> Path:
    """Generate ``spec``'s code for ``backend`` into ``folder``; returns its ``train.py``."""
    program, _ = compile_file(spec)
    write_files(backends.get(backend).generate(program), folder, force=True)
    return folder / "train.py"


def train(
    run: Run, backend: str, data: Path, flags: list[str], env: dict[str, str] | None = None
) -> Run:
    """Compile and train ``run`` on ``data`` (extra ``flags`` and environment ``env``); its
    output streams to ``<folder>/train.log``."""
    script = compile_spec(run.spec, run.folder / "code", backend).resolve()
    out = (run.folder / "out").resolve()
    command = [sys.executable, str(script), "--data", str(data.resolve()), "--out", str(out)]
    command += ["--force"]  # a run of the same name replaces the last one
    command += flags
    env = os.environ | {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"} | (env or {})
    print(f"[{run.name}] {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    with open(run.folder / "train.log", "w") as log:
        result = subprocess.run(
            command, cwd=script.parent, stdout=log, stderr=subprocess.STDOUT, env=env, check=False
        )
    run.seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = (run.folder / "train.log").read_text()[-3000:]
        raise SystemExit(f"[{run.name}] train.py failed ({result.returncode}):\n{tail}")
    (run.folder / "seconds.txt").write_text(f"{run.seconds:.1f}\n")
    return load(run)


def load(run: Run) -> Run:
    """Fill ``run`` from its folder: the metrics of a finished ``train.py`` and its wall time."""
    run.history = read_metrics(run.folder / "out" / "metrics.csv")
    timing = run.folder / "seconds.txt"
    if timing.exists():
        run.seconds = float(timing.read_text())
    else:  # the epochs' own times (training and validation)
        run.seconds = sum(row.get("seconds", 0.0) for row in run.history)
    return run


def finished(run: Run) -> bool:
    """Whether ``run``'s folder holds the metrics of a finished training."""
    return (run.folder / "out" / "metrics.csv").exists()


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` written by a generated ``train.py``, as numbers."""
    with open(path, newline="") as file:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]


def machine() -> str:
    """A one-line description of this machine, for the reports."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} usable cores, Python {platform.python_version()}"


def epoch_table(runs: list[Run], metrics: list[tuple[str, str]]) -> str:
    """A markdown table: one row per epoch, ``metrics`` (csv column, heading) per run."""
    epochs = max(len(run.history) for run in runs)
    head = ["epoch"] + [f"{run.name} {heading}" for run in runs for _, heading in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i in range(epochs):
        cells = [str(i + 1)]
        for run in runs:
            for column, _ in metrics:
                row = run.history[i] if i < len(run.history) else None
                cells.append(f"{row[column]:.4g}" if row and column in row else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list[Run], column: str, label: str, path: Path, title: str) -> None:
    """One line per run of ``column`` against the epoch, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run in runs:
        epochs = [row["epoch"] for row in run.history]
        ax.plot(epochs, [row[column] for row in run.history], marker="o", label=run.name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
