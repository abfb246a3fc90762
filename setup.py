"""Build hook: the wheel ships the examples' specs as ``nnspec/examples/<name>/spec.yaml``.

``examples/`` at the repository root stays the one source of truth (the repo's tests, ``make``
targets and generated code live there); the copy is made at build time only, so there are never
two copies to keep in step. Every other setting is in ``pyproject.toml``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithExamples(build_py):
    """``build_py`` plus the examples' spec files (not for editable installs, which read
    ``examples/`` in place)."""

    def run(self) -> None:
        """Build the package, then copy ``examples/*/spec.yaml`` into it."""
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "nnspec" / "examples"
        for spec in sorted((ROOT / "examples").glob("*/spec.yaml")):
            dest = target / spec.parent.name / "spec.yaml"
            self.mkpath(str(dest.parent))
            self.copy_file(str(spec), str(dest))


setup(cmdclass={"build_py": BuildPyWithExamples})
