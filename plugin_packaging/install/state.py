"""What the last run installed, so that the next one can skip unchanged plugins without work.

The state file lives in `P/.plugin-packaging/state.json`, beside the lock and the staging area,
where the loader never looks. It is a cache, never the truth: a missing, unreadable or foreign
state file only means every plugin takes the careful path (compare bytes) once.

Besides signatures it keeps each plugin's generated `plugin.yml` text with the signatures of what
it was made from, so a rebuilt library is reinstalled without rendering the template again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plugin_packaging import __version__
from plugin_packaging._fs.files import open_regular_file, write_atomically
from plugin_packaging.errors import PackagingError, display_path

STATE_FILE = "state.json"
#: Bumped whenever the meaning of a recorded signature changes, so old caches are ignored.
STATE_FORMAT = 3
#: Far more than any real state (200 plugins take ~300 KiB); a bigger file is not ours.
MAX_STATE_BYTES = 64 * 1024 * 1024

#: `[size, mtime_ns, inode, mode]` of a file, or None when it is missing: what rsync and make
#: compare, plus the mode, because a `chmod` changes no mtime but can make a library unloadable.
Signature = list[int] | None


def file_signature(path: Path | str) -> Signature:
    """The quick-check signature of a file, following symlinks; None when it cannot be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return stat_signature(info)


def stat_signature(info: os.stat_result) -> list[int]:
    """The signature of a file already stat'ed."""
    return [info.st_size, info.st_mtime_ns, info.st_ino, info.st_mode]


@dataclass
class InstallState:
    """The cache read at the start of a run and written back at its end.

    Entries are replaced, never changed in place: `save` finds out whether anything changed by
    comparing the two mappings with shallow copies taken at load time, which for an unchanged
    entry is an identity check (serialising 200 plugins just to compare costs more).
    """

    #: id -> {"inputs": {...}, "installed": {...}, "version": str, "library": str,
    #:        "manifest": {"inputs": {...}, "text": str, "version": str, "warnings": [...]}}
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: source manifest path -> {"signature": Signature, "data": parsed manifest}
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Shallow copies of `plugins` and `sources` as loaded (None: nothing was loaded).
    loaded: tuple[dict[str, Any], dict[str, Any]] | None = field(
        default=None, repr=False, compare=False
    )

    @classmethod
    def load(cls, state_dir: Path) -> InstallState:
        try:
            # Never a blocking open: a named pipe or a device put there is just "no state".
            with open_regular_file(state_dir / STATE_FILE) as handle:
                document = json.loads(handle.read(MAX_STATE_BYTES + 1))
        except (OSError, ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            return cls()
        if (
            not isinstance(document, dict)
            or document.get("format") != STATE_FORMAT
            or document.get("tool_version") != __version__
        ):
            return cls()
        raw_plugins, raw_sources = document.get("plugins"), document.get("sources")
        # Entries of the wrong type (a damaged or foreign file) are dropped here, once, so that
        # readers can rely on every entry being a mapping.
        plugins = {k: v for k, v in _items(raw_plugins) if isinstance(v, dict)}
        sources = {k: v for k, v in _items(raw_sources) if isinstance(v, dict)}
        intact = plugins == raw_plugins and sources == raw_sources
        return cls(
            plugins=plugins,
            sources=sources,
            loaded=(dict(plugins), dict(sources)) if intact else None,
        )

    def save(self, state_dir: Path) -> None:
        """Write atomically: a crash leaves the old state or the new one, never half of one.

        Nothing is written when nothing changed since `load`. A state that cannot be written (no
        space, no permission, a read-only file system) raises `PackagingError` `state-not-saved`
        and leaves no temporary file behind; the old state file stays as it was.
        """
        if self.loaded == (self.plugins, self.sources):
            return
        document = {
            "format": STATE_FORMAT,
            "tool_version": __version__,
            "plugins": self.plugins,
            "sources": self.sources,
        }
        target = state_dir / STATE_FILE
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(target, json.dumps(document, sort_keys=True).encode("utf-8"))
        except OSError as exc:
            raise PackagingError(
                "state-not-saved",
                f"could not record what was installed ({exc.strerror or exc})",
                target,
                hint=_not_saved_hint(exc, state_dir),
            ) from None
        self.loaded = (dict(self.plugins), dict(self.sources))


def _not_saved_hint(exc: OSError, state_dir: Path) -> str:
    """What a lost state means (only a cache is lost) and, where known, how to avoid it."""
    import errno

    consequence = "only a cache is lost: the next run compares the installed files instead"
    if exc.errno == errno.ENOSPC:
        return f"free some disk space; {consequence}"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"make {display_path(state_dir)} writable; {consequence}"
    return consequence


def _items(value: Any) -> list[tuple[Any, Any]]:
    return list(value.items()) if isinstance(value, dict) else []
