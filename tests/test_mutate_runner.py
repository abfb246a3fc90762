"""The mutation check's runner (``mutants/run.py``): the manifest is consistent, every curated
patch still applies to the working tree, and a tiny project's mutants are killed, survive or
are reported stale as they should be. The mutants themselves run with ``make mutate``."""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys

import pytest

from mutants import run as mutate
from tests.conftest import ROOT

MUTANTS = mutate.load_manifest()
needs_git = pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)


def test_manifest_names_existing_patches_and_tests():
    assert len(MUTANTS) >= 12
    assert mutate.manifest_problems(MUTANTS) == []


@needs_git
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_patch_applies_to_the_working_tree(mutant):
    failure = mutate.check_patch(ROOT / mutant.patch)
    assert failure is None, (
        f"{mutant.patch} no longer applies: redo the change by hand and save it with "
        f"`git diff -- FILES > {mutant.patch}` (then undo it). git says: {failure}"
    )


def test_golden_tests_cannot_kill_a_mutant():
    cheat = mutate.Mutant("cheat", "", MUTANTS[0].patch, ("tests/test_golden.py::test_x",))
    assert any("test_golden.py" in p for p in mutate.manifest_problems([*MUTANTS, cheat]))


def diff(path: str, old: str, new: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(True), new.splitlines(True), f"a/{path}", f"b/{path}"
    )
    return "".join(lines)


SOURCE = '"""A tiny package."""\n\n\ndef add(a, b):\n    return a + b\n'
MANIFEST = """\
[wrong_sum]
description = "subtracts"
tests = ["tests/test_add.py"]

[harmless]
description = "changes a docstring"
tests = ["tests/test_add.py"]

[stale]
description = "made against code that is gone"
tests = ["tests/test_add.py"]
"""


@needs_git
def test_runner_on_a_tiny_project(tmp_path, capsys):
    """Untracked files are copied (nothing here is committed), the copy's ``nnspec`` is the one
    tested (``mutants.guard`` would stop the run otherwise), failing tests kill a mutant,
    passing ones let it survive, and a patch that does not apply is an error."""
    (tmp_path / "nnspec").mkdir()
    (tmp_path / "nnspec" / "__init__.py").write_text(SOURCE)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_add.py").write_text(
        "import nnspec\n\n\ndef test_add():\n    assert nnspec.add(2, 3) == 5\n"
    )
    (tmp_path / "mutants").mkdir()
    for name in ("__init__.py", "guard.py"):
        shutil.copy(ROOT / "mutants" / name, tmp_path / "mutants" / name)
    (tmp_path / "mutants" / "manifest.toml").write_text(MANIFEST)
    path = "nnspec/__init__.py"
    patches = {
        "wrong_sum": diff(path, SOURCE, SOURCE.replace("a + b", "a - b")),
        "harmless": diff(path, SOURCE, SOURCE.replace("A tiny", "A small")),
        "stale": diff(path, SOURCE.replace("a + b", "a * b"), SOURCE),
    }
    for name, text in patches.items():
        (tmp_path / "mutants" / f"{name}.patch").write_text(text)
    (tmp_path / ".gitignore").write_text("ignored.txt\n")
    (tmp_path / "ignored.txt").write_text("not copied\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    assert "ignored.txt" not in mutate.working_tree_files(tmp_path)

    assert mutate.main(["--root", str(tmp_path), "--list"]) == 0
    assert mutate.main(["--root", str(tmp_path), "--check"]) == 1
    assert "stale: DOES NOT APPLY" in capsys.readouterr().out

    status = mutate.main(["--root", str(tmp_path), "-j", "2", "--logs", str(tmp_path / "logs")])
    out = capsys.readouterr().out
    assert status == 1
    assert "killed 1/3" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert (
        rows["wrong_sum"][0] == "killed" and rows["wrong_sum"][2] == "tests/test_add.py::test_add"
    )
    assert rows["harmless"][0] == "survived"
    assert rows["stale"][0] == "stale"
    assert "1 passed" in (tmp_path / "logs" / "harmless.log").read_text()
    assert mutate.main(["--root", str(tmp_path), "wrong_sum"]) == 0


def test_guard_stops_a_run_that_imports_another_nnspec(tmp_path):
    """With ``NNSPEC_MUTANT_TREE`` elsewhere, the plugin refuses to run (pytest exit code 4)."""
    env = {**os.environ, "NNSPEC_MUTANT_TREE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "mutants.guard", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert "not from the mutant's copy" in done.stdout + done.stderr
