"""Run the curated mutants: each patch applied to a scratch copy, the tests that should catch it.

Usage (from the repository root, with the project's virtual environment)::

    .venv/bin/python -m mutants.run                 # all mutants, one at a time
    .venv/bin/python -m mutants.run -j 2            # two at a time
    .venv/bin/python -m mutants.run gru_gate_order  # only the named ones
    .venv/bin/python -m mutants.run --list          # names, descriptions and kill tests
    .venv/bin/python -m mutants.run --check         # only check the manifest and the patches

For each mutant the runner copies the working tree (tracked files and untracked ones git does
not ignore, uncommitted edits included) to a temporary folder, applies the patch there with
``git apply`` (a patch that no longer applies is an error), and runs
``python -m pytest -x -q -p no:xdist <tests>`` with that folder as the working directory and
``PYTHONPATH``, so the copy's ``nnspec`` is imported, not the editable install's (the
``mutants.guard`` plugin stops the run otherwise). Failing tests mean the mutant is killed;
passing tests, that it survived. The exit status is 0 only when every mutant is killed.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "mutants/manifest.toml"
# Tests a generator mutant would fail trivially: they compare the generator with its own
# checked-in output, so they detect change, not mistakes.
EXCLUDED_TESTS = ("tests/test_golden.py",)
KEYS = {"description", "tests", "patch"}
# pytest exit codes: 1 tests failed, 2 interrupted (e.g. an import error at collection).
KILLED_CODES = {1: "killed", 2: "killed"}


@dataclass(frozen=True)
class Mutant:
    """One curated mutant.

    Attributes:
        name: the manifest table's name.
        description: the bug, in a sentence.
        patch: the unified diff, relative to the repository root.
        tests: pytest node ids or files that should fail under the patch.
    """

    name: str
    description: str
    patch: str
    tests: tuple[str, ...]


@dataclass
class Result:
    """The outcome of one mutant: ``killed``, ``survived``, ``stale`` (the patch does not
    apply), ``timeout`` or ``error`` (pytest could not run the tests)."""

    mutant: Mutant
    status: str
    seconds: float
    caught_by: str = ""
    log: str = ""


class ManifestError(Exception):
    """The manifest is malformed or names a file that does not exist."""


def load_manifest(root: Path = ROOT) -> list[Mutant]:
    """The mutants of ``root``'s manifest, in file order."""
    path = root / MANIFEST
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ManifestError(f"{path}: {error}") from error
    mutants = []
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise ManifestError(f"{path}: {name!r} must be a table ([{name}])")
        unknown = set(entry) - KEYS
        if unknown:
            raise ManifestError(f"{path}: [{name}] has unknown keys {sorted(unknown)}")
        tests = entry.get("tests", [])
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise ManifestError(f"{path}: [{name}] tests must be a list of strings")
        mutants.append(
            Mutant(
                name=name,
                description=str(entry.get("description", "")),
                patch=str(entry.get("patch", f"mutants/{name}.patch")),
                tests=tuple(tests),
            )
        )
    return mutants


def manifest_problems(mutants: list[Mutant], root: Path = ROOT) -> list[str]:
    """What is wrong with the manifest: missing patches or test files, patches it does not
    list, mutants without tests, excluded tests."""
    problems = []
    for mutant in mutants:
        if not (root / mutant.patch).is_file():
            problems.append(f"{mutant.name}: patch {mutant.patch} does not exist")
        if not mutant.tests:
            problems.append(f"{mutant.name}: no tests named to kill it")
        for test in mutant.tests:
            file = test.split("::", 1)[0]
            if file in EXCLUDED_TESTS:
                problems.append(
                    f"{mutant.name}: {file} compares the generator with its own output; "
                    "it cannot count as catching a mutant"
                )
            elif not (root / file).is_file():
                problems.append(f"{mutant.name}: test file {file} does not exist")
    named = {(root / m.patch).resolve() for m in mutants}
    for patch in sorted((root / "mutants").glob("*.patch")):
        if patch.resolve() not in named:
            problems.append(f"{patch.relative_to(root)} is not listed in {MANIFEST}")
    return problems


def git_env(tree: Path) -> dict[str, str]:
    """An environment in which git treats ``tree`` as a plain folder, never a repository above."""
    return {**os.environ, "GIT_CEILING_DIRECTORIES": str(tree.parent)}


def apply_patch(patch: Path, tree: Path) -> str | None:
    """Apply ``patch`` in the plain folder ``tree``; git's message if it does not apply."""
    command = ["git", "apply", "--whitespace=nowarn", str(patch)]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, env=git_env(tree))
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip()


def check_patch(patch: Path, root: Path = ROOT) -> str | None:
    """Whether ``patch`` applies to ``root``'s working tree (git's message if not)."""
    command = ["git", "apply", "--check", "--whitespace=nowarn", str(patch)]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip()


def working_tree_files(root: Path) -> list[str]:
    """Tracked files and untracked ones git does not ignore, relative to ``root``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({path for path in listed.split("\0") if path})


def copy_working_tree(root: Path, dest: Path) -> None:
    """Copy ``root``'s working tree, as it is on disk, to ``dest``."""
    for rel in working_tree_files(root):
        source = root / rel
        target = dest / rel
        if source.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.readlink(source))
        elif source.is_file():  # skips files deleted in the working tree, and submodules
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def first_failure(output: str) -> str:
    """The first failing test (or collection error) in pytest's short summary."""
    for line in output.splitlines():
        match = re.match(r"(FAILED|ERROR) (\S+)", line)
        if match:
            return match.group(2)
    return ""


def run_mutant(
    mutant: Mutant,
    root: Path = ROOT,
    python: str = sys.executable,
    timeout: float = 900.0,
    keep: bool = False,
) -> Result:
    """Apply ``mutant`` to a scratch copy of ``root`` and run its tests there."""
    start = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f"nnspec-mutant-{mutant.name}-"))
    tree = scratch / "tree"
    try:
        copy_working_tree(root, tree)
        failure = apply_patch(root / mutant.patch, tree)
        if failure is not None:
            return Result(mutant, "stale", time.perf_counter() - start, log=failure)
        command = [
            python,
            *("-m", "pytest", "-x", "-q", "-rfE", "-p", "no:xdist", "-p", "no:cacheprovider"),
            *("-p", "mutants.guard"),
            *mutant.tests,
        ]
        pythonpath = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH")) if p)
        env = {
            **os.environ,
            "PYTHONPATH": pythonpath,
            "NNSPEC_MUTANT_TREE": str(tree),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        try:
            done = subprocess.run(
                command,
                cwd=tree,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as expired:
            output = expired.stdout or b""
            text = output.decode(errors="replace") if isinstance(output, bytes) else output
            return Result(mutant, "timeout", time.perf_counter() - start, log=text)
        output = done.stdout + done.stderr
        seconds = time.perf_counter() - start
        if done.returncode == 0:
            return Result(mutant, "survived", seconds, log=output)
        if done.returncode in KILLED_CODES:
            caught = first_failure(output) or f"pytest exit {done.returncode}"
            return Result(mutant, KILLED_CODES[done.returncode], seconds, caught, output)
        return Result(mutant, "error", seconds, f"pytest exit {done.returncode}", output)
    finally:
        if keep:
            print(f"kept {mutant.name}'s copy: {tree}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def table(results: list[Result]) -> str:
    """The results as a plain-text table, in manifest order."""
    width = max([len("mutant"), *(len(r.mutant.name) for r in results)])
    lines = [f"{'mutant':<{width}}  {'result':<8}  {'time':>7}  caught by"]
    for r in results:
        detail = r.caught_by
        if r.status == "survived":
            detail = "nothing: " + " ".join(r.mutant.tests)
        elif r.status == "stale":
            detail = "the patch no longer applies: " + r.log.splitlines()[0] if r.log else ""
        lines.append(f"{r.mutant.name:<{width}}  {r.status:<8}  {r.seconds:6.1f}s  {detail}")
    return "\n".join(lines)


def select(mutants: list[Mutant], names: list[str]) -> list[Mutant]:
    """The named mutants (all of them without names); an unknown name exits with a hint."""
    if not names:
        return mutants
    known = {m.name: m for m in mutants}
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SystemExit(f"unknown mutant {name!r}{hint} (--list shows them)")
    return [known[name] for name in names]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mutants.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument(
        "--check", action="store_true", help="only check the manifest and that every patch applies"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    parser.add_argument("--python", default=sys.executable, help="python running the tests")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant")
    parser.add_argument("--logs", type=Path, help="write each mutant's pytest output here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    args = parser.parse_args(argv)
    root = args.root.resolve()

    try:
        mutants = load_manifest(root)
    except ManifestError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    chosen = select(mutants, args.names)
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.description}")
            for test in m.tests:
                print(f"    {test}")
        return 0
    problems = manifest_problems(mutants, root)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    if args.check:
        stale = 0
        for m in chosen:
            failure = check_patch(root / m.patch, root)
            print(f"{m.name}: {'applies' if failure is None else 'DOES NOT APPLY'}")
            if failure is not None:
                print("    " + failure.replace("\n", "\n    "))
                stale += 1
        return 1 if stale else 0

    print(f"{len(chosen)} mutant(s), {args.jobs} at a time", flush=True)
    results: dict[str, Result] = {}
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {
            pool.submit(run_mutant, m, root, args.python, args.timeout, args.keep): m
            for m in chosen
        }
        for future in as_completed(futures):
            r = future.result()
            results[r.mutant.name] = r
            print(f"  {r.mutant.name}: {r.status} ({r.seconds:.1f}s)", flush=True)
            if args.logs is not None:
                args.logs.mkdir(parents=True, exist_ok=True)
                (args.logs / f"{r.mutant.name}.log").write_text(r.log)
            if r.status in ("stale", "error", "timeout"):
                print("    " + r.log.strip()[-2000:].replace("\n", "\n    "), file=sys.stderr)
    ordered = [results[m.name] for m in chosen]
    print()
    print(table(ordered))
    killed = sum(r.status == "killed" for r in ordered)
    print(f"\nkilled {killed}/{len(ordered)}")
    return 0 if killed == len(ordered) else 1


if __name__ == "__main__":
    sys.exit(main())
