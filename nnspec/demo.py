"""The main job on a built-in example, end to end: validate, compile, train, compare."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from nnspec import backends
from nnspec.builtin_examples import example_names, example_spec
from nnspec.compiler import compile_file, problems_of
from nnspec.spec import SpecError
from nnspec.synthetic import write_npz
from nnspec.writer import write_files


def run_demo(example: str, workdir: Path, epochs: int, console: Console) -> bool:
    """Run the demo; returns whether every step succeeded and the backends agree."""
    spec_path = example_spec(example)
    if not spec_path.exists():
        known = ", ".join(example_names())
        console.print(f"unknown example {example!r}; built-in: {known}", markup=False)
        return False
    console.rule(f"1. validate {spec_path}")
    try:
        program, doc = compile_file(spec_path)
    except SpecError as exc:
        console.print(str(exc), markup=False)
        return False
    for problem in problems_of(program, doc):
        console.print(str(problem), markup=False)
    total = program.trainable_count + program.frozen_count
    console.print(
        f"valid: {len(program.nodes)} layers, {total:,} parameters "
        f"({program.trainable_count:,} trainable, {program.frozen_count:,} frozen)",
        markup=False,
    )

    console.rule("2. compile for every backend")
    names = list(backends.available())
    for name in names:
        written = write_files(backends.get(name).generate(program), workdir / name, force=True)
        console.print(f"{name}: {', '.join(str(p) for p in written)}", markup=False)

    console.rule("3. train briefly on project-made data")
    data = write_npz(program, workdir / "data.npz", n_train=768, n_val=256, seed=0)
    console.print(f"data: {data} (768 training and 256 validation documents)", markup=False)
    for name in names:
        console.print(f"[bold]{name}[/]: python train.py --epochs {epochs}")
        start = time.perf_counter()
        run = (workdir / name / "run").resolve()  # train.py prints it as it saves: absolute
        cmd = ["train.py", "--data", str(data.resolve()), "--epochs", str(epochs)]
        cmd += ["--out", str(run), "--force"]  # the previous demo's run, if any, is replaced
        if _run_quietly(cmd, workdir / name) != 0:
            console.print(f"{name}: training failed", markup=False)
            return False
        console.print(f"{name}: trained in {time.perf_counter() - start:.1f} s", markup=False)

    console.rule("4. parity: same canonical weights and batches in both backends")
    cmd = ["-m", "nnspec", "parity", str(spec_path), "--dtype", "both", "--steps", "5"]
    return _run_quietly(cmd, Path.cwd()) == 0


def _run_quietly(args: list[str], cwd: Path) -> int:
    """Run ``python *args`` in ``cwd``, echoing its output as it comes (the generated Keras
    script and ``nnspec parity`` hold TensorFlow's start-up lines back themselves)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
    return proc.returncode
