"""Reading YAML that people wrote, safely and with errors that point at the line.

Manifests are small; anything big, deeply aliased or not UTF-8 is refused before it can cost
memory or time (a "billion laughs" alias bomb is cheap for PyYAML to build as shared references,
but expensive for everything that walks the result afterwards).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from .errors import PackagingError

#: A manifest is a few KiB; a megabyte is already absurd.
MAX_MANIFEST_BYTES = 1024 * 1024
#: Manifests need no anchors at all; a handful is tolerated, a bomb is not.
MAX_ALIASES = 64


def read_text(path: Path, *, limit: int = MAX_MANIFEST_BYTES) -> str:
    """Read a small UTF-8 text file, refusing huge, unreadable or binary files clearly.

    Only a regular file (or a symlink to one) is read: a named pipe would block the open until
    a writer came, and a device such as /dev/zero would never end.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below anyway).
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except PermissionError:
        raise PackagingError(
            "unreadable", "cannot be read (permission denied)", path, hint="check the file's permissions"
        ) from None
    except OSError as exc:
        raise PackagingError("unreadable", f"cannot be read ({exc.strerror or exc})", path) from None
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise PackagingError("not-a-file", "is a directory, expected a text file", path)
        if not stat.S_ISREG(mode):
            raise PackagingError(
                "not-a-file",
                f"is {_file_kind(mode)}, not a regular file",
                path,
                hint="replace it with the text file it should be",
            )
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise PackagingError("unreadable", f"cannot be read ({exc.strerror or exc})", path) from None
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise PackagingError(
            "manifest-too-large",
            f"is larger than {limit // 1024} KiB; a plugin manifest is a few lines of YAML",
            path,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackagingError(
            "manifest-not-utf8",
            f"is not UTF-8 text (bad byte at offset {exc.start})",
            path,
            hint="save the file as UTF-8",
        ) from None


def _file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def load_yaml(text: str, path: Path) -> Any:
    """`yaml.safe_load` with an alias limit; syntax errors name the line and column."""
    import yaml

    class _BoundedLoader(yaml.SafeLoader):
        aliases_seen = 0

        def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
            if self.check_event(yaml.AliasEvent):
                self.aliases_seen += 1
                if self.aliases_seen > MAX_ALIASES:
                    raise PackagingError(
                        "manifest-alias-bomb",
                        f"uses more than {MAX_ALIASES} YAML aliases",
                        path,
                        hint="write the values out; manifests do not need anchors",
                    )
            return super().compose_node(parent, index)

    try:
        # The reader checks every character as it is built: a NUL or another unprintable
        # character already fails here.
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, path) from None
    try:
        return loader.get_single_data()
    except PackagingError:
        raise
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, path) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise PackagingError(
            "manifest-invalid-yaml", f"is not valid YAML{where}: {problem}", path
        ) from None
    except yaml.YAMLError as exc:
        raise PackagingError("manifest-invalid-yaml", f"is not valid YAML: {exc}", path) from None
    except RecursionError:
        raise PackagingError("manifest-too-deep", "nests too deeply to be a manifest", path) from None
    finally:
        loader.dispose()


def _reader_error(exc: Any, text: str, path: Path) -> PackagingError:
    """A character YAML does not allow (NUL, most control characters), placed by line and column."""
    before = text[: exc.position]
    line = before.count("\n") + 1
    column = exc.position - (before.rfind("\n") + 1) + 1
    return PackagingError(
        "manifest-invalid-yaml",
        f"is not valid YAML at line {line}, column {column}: the character U+{exc.character:04X} is "
        "not allowed in YAML",
        path,
        hint="remove the control character (YAML allows tabs, line breaks and printable text)",
    )


def load_yaml_file(path: Path) -> Any:
    """Read and parse one YAML file (see `read_text` and `load_yaml`)."""
    return load_yaml(read_text(path), path)
