"""One writer at a time per plugin directory: an advisory lock file beside the state.

Two installs started at once (a developer's and an IDE's, or two CI steps) are serialised: the
second waits for the first, up to a limit, and then refuses with the holder's pid instead of
hanging forever. The lock dies with its process, so a killed run never leaves it stuck.

Taking the lock is also where a writer claims `P/.plugin-packaging/`: every run that changes the
plugin directory passes through here before it stages, swaps or clears leftovers, so this is
where the bookkeeping directory is checked to be a real directory of this tree. A symlink in its
place (or in place of `staging/`, which each run empties) would send those writes and deletions
to wherever it points.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path
from types import TracebackType

from plugin_packaging.errors import PackagingError, from_os_error

LOCK_FILE = "lock"
#: Directories inside the state directory that writers fill and empty.
PRIVATE_DIRECTORIES = ("staging",)


class DirectoryLock:
    """`with DirectoryLock(state_dir):` holds the exclusive lock for the block."""

    def __init__(self, state_dir: Path, *, timeout: float = 120.0, on_parent: bool = False) -> None:
        """`on_parent` locks the directory holding `state_dir` itself instead of a lock file in
        it, so that a writer that empties and removes `state_dir` leaves nothing behind (release
        output directories, which get published as they are)."""
        self.path = state_dir / LOCK_FILE
        self.timeout = timeout
        self.on_parent = on_parent
        self._fd: int | None = None

    def __enter__(self) -> DirectoryLock:
        claim_state_dir(self.path.parent)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks, run unguarded
            return self
        fd = (
            _open_directory(self.path.parent.parent)
            if self.on_parent
            else _open_lock_file(self.path)
        )
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = (
                        "" if self.on_parent else os.pread(fd, 32, 0).decode("ascii", "replace")
                    )
                    os.close(fd)
                    raise PackagingError(
                        "plugins-dir-locked",
                        f"another plugin-packaging run (pid {holder.strip() or 'unknown'}) is "
                        "writing here",
                        self.path.parent.parent,
                        hint="wait for it to finish; the lock is released when that process ends",
                    ) from None
                time.sleep(0.05)
            except OSError as exc:
                os.close(fd)
                raise from_os_error(exc, self.path, "lock the plugin directory") from None
        if not self.on_parent:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass  # the pid is only shown to a waiting run; the flock is what excludes it
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


def claim_state_dir(state_dir: Path) -> None:
    """Create `state_dir` if needed and make sure it, and its private directories, are real
    directories rather than symlinks or files; raise `PackagingError` otherwise."""
    try:
        if not os.path.lexists(state_dir):
            state_dir.mkdir(parents=True)
    except FileExistsError:
        pass  # created by a run that started at the same moment
    except OSError as exc:
        raise from_os_error(exc, state_dir, "create the bookkeeping directory") from None
    for path in (state_dir, *(state_dir / name for name in PRIVATE_DIRECTORIES)):
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue  # created by the writer when it needs it
        except OSError as exc:
            raise from_os_error(exc, path, "look at the bookkeeping directory") from None
        if stat.S_ISLNK(mode):
            raise PackagingError(
                "state-dir-unsafe",
                "is a symlink, but this tool's bookkeeping directory must be a real directory: "
                "runs write into it and delete what they find there",
                path,
                hint=f"remove the symlink (`rm {path}`); the next run recreates the directory",
            )
        if not stat.S_ISDIR(mode):
            raise PackagingError(
                "state-dir-unsafe",
                "is not a directory, but this tool keeps its bookkeeping there",
                path,
                hint=f"remove it (`rm {path}`); the next run recreates the directory",
            )


def _open_lock_file(path: Path) -> int:
    """Open (or create) the lock file itself: never through a symlink, never a FIFO or device."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PackagingError(
                "state-dir-unsafe",
                "is a symlink; the lock file is written to, so it must be a plain file",
                path,
                hint=f"remove it (`rm {path}`); the next run recreates it",
            ) from None
        raise from_os_error(exc, path, "open the lock file") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PackagingError(
            "state-dir-unsafe",
            "is not a plain file; the lock file is written to",
            path,
            hint=f"remove it (`rm {path}`); the next run recreates it",
        )
    return fd


def _open_directory(path: Path) -> int:
    """A directory opened for flock (Linux and macOS lock directories like files)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags)
    except OSError as exc:
        raise from_os_error(exc, path, "lock the directory") from None
