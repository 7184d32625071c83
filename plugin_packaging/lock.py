"""One writer at a time per plugin directory: an advisory lock file beside the state.

Two installs started at once (a developer's and an IDE's, or two CI steps) are serialised: the
second waits for the first, up to a limit, and then refuses with the holder's pid instead of
hanging forever. The lock dies with its process, so a killed run never leaves it stuck.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

from .errors import PackagingError

LOCK_FILE = "lock"


class DirectoryLock:
    """`with DirectoryLock(state_dir):` holds the exclusive lock for the block."""

    def __init__(self, state_dir: Path, *, timeout: float = 120.0) -> None:
        self.path = state_dir / LOCK_FILE
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> "DirectoryLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks, run unguarded
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                    os.close(fd)
                    raise PackagingError(
                        "plugins-dir-locked",
                        f"another plugin-packaging run (pid {holder}) is writing here",
                        self.path.parent.parent,
                        hint="wait for it to finish; the lock is released when that process ends",
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
