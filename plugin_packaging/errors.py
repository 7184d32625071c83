"""The one error type users see: what went wrong, in which file, and how to fix it.

Every mistake a user can make (a missing artifact, broken YAML, an unsafe id) is raised as a
`PackagingError` and turned into a single readable message by the task layer; a traceback means a
bug in this tool, never a user mistake.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable
from pathlib import Path


class PackagingError(Exception):
    """A user-facing failure with a stable code, the file it concerns and a hint."""

    def __init__(
        self,
        code: str,
        message: str,
        path: Path | str | None = None,
        hint: str | None = None,
        *,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = Path(path) if path is not None else None
        self.hint = hint
        #: The manifest or settings key the error is about, so its place can be found.
        self.key = key
        #: 1-based place in `path` of the cause, when known (`path:line:column` in messages,
        #: `line=`/`col=` in GitHub annotations).
        self.line = line
        self.column = column

    def placed(self, line: int | None, column: int | None = None) -> PackagingError:
        """This error with the place of its cause in `path` (kept when already known)."""
        if self.line is None and line is not None:
            self.line, self.column = line, column
        return self

    @property
    def location(self) -> str | None:
        """`path`, `path:line` or `path:line:column` as editors and compilers print them."""
        if self.path is None:
            return None
        where = display_path(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def to_dict(self, severity: str = "error") -> dict[str, object]:
        """The error in a versioned JSON report (`$defs/problem` of the report schemas)."""
        return {
            "code": self.code,
            "severity": severity,
            "message": self.message,
            "hint": self.hint,
            "path": display_path(self.path) if self.path is not None else None,
            "line": self.line,
            "column": self.column,
            "key": self.key,
        }

    def render(self, severity: str = "error") -> str:
        """The message as shown to a person: `error[code]: path:line:col: message`, the hint below."""
        where = f"{self.location}: " if self.path is not None else ""
        # Messages quote names from disk and manifests: escaped, a newline in one cannot break
        # the message or forge a line after it.
        text = f"{severity}[{self.code}]: {where}{printable(self.message)}"
        if self.hint:
            text += f"\n  hint: {printable(self.hint)}"
        return text

    def __str__(self) -> str:
        return self.render()


def from_os_error(
    exc: OSError,
    path: Path,
    doing: str,
    *,
    writable: str = "the plugin directory (or pass --plugins-dir)",
    kept: str = "nothing was changed",
) -> PackagingError:
    """An operating system failure while `doing` something to `path`, said as a user error.

    The hint follows from the errno: a full disk, a read-only or forbidden `writable` place, a
    directory where a file belongs; `kept` says what is still as it was.
    """
    hint = None
    if exc.errno == errno.ENOSPC:
        hint = f"free some disk space and run again; {kept}"
    elif exc.errno == errno.EROFS:
        hint = f"{writable.split(' (')[0]} is on a read-only file system; {kept}"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = f"make {writable} writable; {kept}"
    elif exc.errno == errno.EISDIR:
        hint = f"remove the directory in its place (`rm -r {path}`); {kept}"
    where = Path(exc.filename) if isinstance(exc.filename, str) and exc.filename else path
    return PackagingError("io-error", f"could not {doing}: {exc.strerror or exc}", where, hint=hint)


def display_path(path: Path) -> str:
    """A path as a person wants to read it: relative to the working directory when inside it.

    Control characters (a newline in a hostile file name) are escaped so a message stays one line.
    """
    try:
        shown = str(path.relative_to(Path.cwd())) if path.is_absolute() else str(path)
    except (ValueError, OSError):
        shown = str(path)
    return printable(shown)


def printable(text: str) -> str:
    """`text` for one line of output: control characters, and bytes of a name that is not UTF-8
    (surrogate escapes), shown as backslash escapes; anything printable is left as it is."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        for ch in text
    )


def did_you_mean(word: str, candidates: Iterable[str], *, prefix: str = "") -> str:
    """`did you mean X?` for the candidate closest to a mistyped `word`, else empty.

    Used for every name a user types (tasks, flags, plugin ids, settings keys), so a typo is
    answered the same way everywhere.
    """
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"{prefix}did you mean {close[0]}?" if close else ""
