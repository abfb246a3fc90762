"""Located diagnostics: every problem names the file, line, column and field path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Path = tuple[str | int, ...]


def dotted(path: Path) -> str:
    """``("model", "layers", 2, "units")`` -> ``"model.layers.2.units"`` (escaped: keys come
    from the file)."""
    return escaped(".".join(str(p) for p in path)) or "<root>"


@dataclass(frozen=True)
class Problem:
    """One error or warning about a spec file."""

    file: str
    line: int
    column: int
    path: Path
    message: str
    level: Literal["error", "warning"] = "error"
    code: str = ""

    def __str__(self) -> str:
        kind = "" if self.level == "error" else "warning: "
        code = f"[{self.code}] " if self.code else ""
        where = f"{escaped(self.file)}:{self.line}:{self.column}: {dotted(self.path)}"
        return f"{where}: {kind}{code}{escaped(self.message)}"


class SpecError(Exception):
    """A spec could not be loaded, validated or compiled; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def escaped(text: str) -> str:
    """``text`` with every character a terminal or log would act on (controls, escapes, line
    breaks, surrogates, non-printables) written as a Python escape, so it is shown, not run."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
