"""What every report shares, whatever it reports: the output formats, GitHub workflow commands,
the header of the versioned JSON documents, and colour for people at a terminal.

The renderers (`check/report.py`, `install/report.py`, `release/report.py`, the build summary)
build on these; nothing here decides anything or touches the disk.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from plugin_packaging import __version__
from plugin_packaging.errors import PackagingError, display_path

OutputFormat = Literal["text", "json", "github"]
FORMATS: tuple[OutputFormat, ...] = ("text", "json", "github")

#: Version of every JSON document the tool writes; a change that breaks readers gets a new
#: number and new schema files (plugin_packaging/schemas/<kind>-report.v<N>.json).
REPORT_VERSION = 1

ColorChoice = Literal["auto", "always", "never"]
COLOR_CHOICES: tuple[ColorChoice, ...] = ("auto", "always", "never")


def document(kind: str, **fields: Any) -> dict[str, Any]:
    """A versioned JSON report: `version`, `kind`, `tool`, then `fields` in their order."""
    return {
        "version": REPORT_VERSION,
        "kind": kind,
        "tool": {"name": "plugin-packaging", "version": __version__},
        **fields,
    }


def tell_on_stderr(notice: str) -> None:
    """Progress and waiting notices (`[2/16] packaging ...`, `waiting for the lock ...`): on
    stderr, so that a report on stdout, maybe a JSON document, stays whole."""
    import sys

    print(notice, file=sys.stderr, flush=True)


# --- GitHub Actions workflow commands -----------------------------------------------------------

_GITHUB_LEVELS = {"error": "error", "warning": "warning", "info": "notice", "notice": "notice"}


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as the runner unescapes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command property value (`file=`, `title=`): data escaping plus `:` and `,`."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(
    severity: str,
    message: str,
    *,
    path: Path | None = None,
    line: int | None = None,
    column: int | None = None,
    title: str | None = None,
) -> str:
    """`::error file=F,line=L,col=C,title=T::message`: an annotation on a file of the run."""
    properties = []
    if path is not None:
        properties.append(f"file={escape_property(display_path(path))}")
        if line is not None:
            properties.append(f"line={line}")
            if column is not None:
                properties.append(f"col={column}")
    if title:
        properties.append(f"title={escape_property(title)}")
    head = f"::{_GITHUB_LEVELS[severity]}"
    if properties:
        head += " " + ",".join(properties)
    return f"{head}::{escape_data(message)}"


def problem_command(problem: PackagingError, severity: str = "error") -> str:
    """The annotation of a `PackagingError`: at its file, line and column when known."""
    message = problem.message + (f"\nhint: {problem.hint}" if problem.hint else "")
    return workflow_command(
        severity,
        message,
        path=problem.path,
        line=problem.line,
        column=problem.column,
        title=problem.code,
    )


def problem_dict(problem: PackagingError, severity: str = "error") -> dict[str, Any]:
    """A `PackagingError` in a JSON report (`$defs/problem` in problem.v1.json)."""
    return problem.to_dict(severity)


def fold_repeated_hints(text: str) -> str:
    """Print a hint that several problems share once, where it first appears, with their number.

    Fifteen bare libraries make fifteen findings with one fix; the fix is said once
    (`hint (15 times): ...`) and the other fourteen copies are left out.
    """
    lines = text.split("\n")
    hints = Counter(line.strip() for line in lines if line.strip().startswith("hint: "))
    repeated = {hint for hint, count in hints.items() if count > 1}
    if not repeated:
        return text
    out, seen = [], set()
    for line in lines:
        hint = line.strip()
        if hint not in repeated:
            out.append(line)
        elif hint not in seen:
            seen.add(hint)
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}hint ({hints[hint]} times): {hint[len('hint: ') :]}")
    return "\n".join(out)


# --- Markdown (the step summary of a GitHub Actions job) ----------------------------------------


def markdown_cell(text: object) -> str:
    """A value for one cell of a Markdown table: pipes and line breaks cannot break the row."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(header: tuple[str, ...], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(cell) for cell in row) + " |" for row in rows]
    return lines


# --- colour ---------------------------------------------------------------------------------------


def color_enabled(choice: ColorChoice, stream: Any, environ: Any = None) -> bool:
    """Whether to colour output on `stream`.

    `always` and `never` decide; `auto` follows the conventions of no-color.org and
    force-color.org: NO_COLOR (any non-empty value) turns colour off, FORCE_COLOR (non-empty)
    turns it on, and otherwise only a terminal gets colour (not a pipe, a file or a CI log),
    unless TERM is `dumb`.
    """
    if choice == "always":
        return True
    if choice == "never":
        return False
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    if env.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


_SGR = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

#: Colour of each word that starts a report line: severities, statuses and verdicts.
_LEVEL_STYLES = {
    "error": ("bold", "red"),
    "FAILED": ("bold", "red"),
    "warning": ("bold", "yellow"),
    "info": ("cyan",),
    "hint": ("cyan",),
    "installed": ("green",),
    "updated": ("green",),
    "built": ("green",),
    "published": ("green",),
    "removed": ("yellow",),
    "not built": ("yellow",),
    "orphaned": ("yellow",),
    "would install": ("cyan",),
    "would update": ("cyan",),
    "would remove": ("cyan",),
    "up to date": ("dim",),
}


@dataclass(frozen=True)
class Style:
    """Paints text with ANSI colours when `enabled`; a no-op otherwise, so renderers call it
    unconditionally and the plain text (tests, pipes, JSON) is exactly what they built."""

    enabled: bool = False

    def paint(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles or not text:
            return text
        codes = ";".join(_SGR[style] for style in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def level(self, word: str, text: str | None = None) -> str:
        """`text` (default: `word`) in the colour of the severity or status `word`."""
        return self.paint(word if text is None else text, *_LEVEL_STYLES.get(word, ()))

    def report(self, text: str) -> str:
        """Colour the leading word of each line of a plain report: `error[code]:`,
        `warning[...]`, `hint:`, and the status column of a table (`  installed  ...`)."""
        if not self.enabled:
            return text
        return "\n".join(self._line(line) for line in text.split("\n"))

    def _line(self, line: str) -> str:
        stripped = line.lstrip(" ")
        indent = line[: len(line) - len(stripped)]
        for word in ("error", "warning", "info"):
            if stripped.startswith(word + "["):
                end = stripped.index("]") + 1 if "]" in stripped else len(word)
                return indent + self.level(word, stripped[:end]) + stripped[end:]
        if stripped.startswith("hint:"):
            return indent + self.level("hint", "hint:") + stripped[5:]
        for word in sorted(_LEVEL_STYLES, key=len, reverse=True):
            if stripped.startswith(word + " ") or stripped == word:
                return indent + self.level(word) + stripped[len(word) :]
        return line


def plain(text: str) -> str:
    """`text` without ANSI colour codes."""
    return _ANSI.sub("", text)
