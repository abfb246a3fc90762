"""Wall time of one ``nnspec validate`` call on one example: the median of 20 runs, each a fresh
process, as pre-commit runs it (goal: <= 0.3 s on a quiet machine).

    python -m benchmarks.cli_time [--runs 20] [--spec FILE] [--importtime]

``--importtime`` adds the slowest imports of one run (``python -X importtime``), which is how the
start-up was measured and cut down: ``rich`` is imported only when a table is printed (validate
writes its lines directly), pydantic's plugin lookup (the metadata of every installed
distribution) is skipped for nnspec's own models, and ``import nnspec`` re-exports its Python API
lazily. What is left is Python itself, pydantic with the spec language's models (~40 % of it),
the compiler's IR classes and typer.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "glove_special_tokens" / "spec.yaml"
GOAL_S = 0.3


def validate_times(
    spec: Path = SPEC, runs: int = 20, cwd: Path = ROOT
) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of ``python -m nnspec validate spec``, one fresh
    process per run (after one unmeasured run that warms the file cache). CPU time is what a
    loaded machine changes least."""
    command = [sys.executable, "-m", "nnspec", "validate", str(spec)]
    subprocess.run(command, check=True, capture_output=True, cwd=cwd)
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=cwd)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall, cpu


def slowest_imports(spec: Path = SPEC, top: int = 12, cwd: Path = ROOT) -> list[tuple[int, str]]:
    """``(cumulative microseconds, module)`` of the slowest top-level imports of one run."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nnspec", "validate", str(spec)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        rows.append((int(cumulative), name.rstrip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    """Print the median (and min / max) of the runs as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--importtime", action="store_true")
    args = parser.parse_args()
    times, cpu = validate_times(args.spec, args.runs)
    median = statistics.median(times)
    shown = args.spec.relative_to(ROOT) if args.spec.is_relative_to(ROOT) else args.spec
    report = {
        "command": f"nnspec validate {shown}",
        "runs": args.runs,
        "median_s": round(median, 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "median_cpu_s": round(statistics.median(cpu), 3),
        "goal_s": GOAL_S,
        "ok": median <= GOAL_S,
    }
    print(json.dumps(report))
    if args.importtime:
        for micros, name in slowest_imports(args.spec):
            print(f"{micros / 1000:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
