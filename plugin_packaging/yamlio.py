"""Reading YAML that people wrote, safely and with errors that point at the line.

Manifests are small; anything big, deeply aliased or not UTF-8 is refused before it can cost
memory or time (a "billion laughs" alias bomb is cheap for PyYAML to build as shared references,
but expensive for everything that walks the result afterwards).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import PackagingError

#: A manifest is a few KiB; a megabyte is already absurd.
MAX_MANIFEST_BYTES = 1024 * 1024
#: Manifests need no anchors at all; a handful is tolerated, a bomb is not.
MAX_ALIASES = 64


def read_text(path: Path, *, limit: int = MAX_MANIFEST_BYTES) -> str:
    """Read a small UTF-8 text file, refusing huge, unreadable or binary files clearly."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except IsADirectoryError:
        raise PackagingError("not-a-file", "is a directory, expected a YAML file", path) from None
    except PermissionError:
        raise PackagingError(
            "unreadable", "cannot be read (permission denied)", path, hint="check the file's permissions"
        ) from None
    except OSError as exc:
        raise PackagingError("unreadable", f"cannot be read ({exc.strerror or exc})", path) from None
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

    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except PackagingError:
        raise
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


def load_yaml_file(path: Path) -> Any:
    """Read and parse one YAML file (see `read_text` and `load_yaml`)."""
    return load_yaml(read_text(path), path)
