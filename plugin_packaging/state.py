"""What the last run installed, so that the next one can skip unchanged plugins without work.

The state file lives in `P/.plugin-packaging/state.json`, beside the lock and the staging area,
where the loader never looks. It is a cache, never the truth: a missing, unreadable or foreign
state file only means every plugin takes the careful path (compare bytes) once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__

STATE_FILE = "state.json"
#: Bumped whenever the meaning of a recorded signature changes, so old caches are ignored.
STATE_FORMAT = 1

#: `[size, mtime_ns, inode]` of a file, or None when it is missing; what rsync and make compare.
Signature = list[int] | None


def file_signature(path: Path | str) -> Signature:
    """The quick-check signature of a file, following symlinks; None when it cannot be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ino]


@dataclass
class InstallState:
    """The cache read at the start of a run and written back at its end."""

    #: id -> {"inputs": {...}, "installed": {...}, "version": str, "library": str, "size": int}
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: source manifest path -> {"signature": Signature, "data": parsed manifest}
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: Path) -> "InstallState":
        try:
            with open(state_dir / STATE_FILE, encoding="utf-8") as handle:
                document = json.load(handle)
        except (OSError, ValueError):
            return cls()
        if (
            not isinstance(document, dict)
            or document.get("format") != STATE_FORMAT
            or document.get("tool_version") != __version__
        ):
            return cls()
        plugins = document.get("plugins")
        sources = document.get("sources")
        return cls(
            plugins=plugins if isinstance(plugins, dict) else {},
            sources=sources if isinstance(sources, dict) else {},
        )

    def save(self, state_dir: Path) -> None:
        """Write atomically: a crash leaves the old state or the new one, never half of one."""
        document = {
            "format": STATE_FORMAT,
            "tool_version": __version__,
            "plugins": self.plugins,
            "sources": self.sources,
        }
        state_dir.mkdir(parents=True, exist_ok=True)
        temporary = state_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(document, handle, sort_keys=True)
        os.replace(temporary, state_dir / STATE_FILE)
