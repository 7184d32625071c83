"""One writer at a time per plugin directory: an advisory lock file beside the state.

Two installs started at once (a developer's and an IDE's, or two CI steps) are serialised: the
second waits for the first, up to a limit, and then refuses with the holder's pid instead of
hanging forever. The lock dies with its process, so a killed run never leaves it stuck.

Taking the lock is also where a writer claims the directories it writes: every run that changes
the plugin directory passes through here before it stages, swaps or clears leftovers. The rule,
one for every directory the tool writes into: the plugins directory itself (`P`, chosen by the
user with `--plugins-dir`) may be a symlink, as may its parents; every directory the tool keeps
inside it (`P/native/`, `P/.plugin-packaging/`, its `staging/`) must be a real directory. A symlink
there would send the tool's writes and deletions to wherever it points, so it is refused with a
hint. (A `native/<id>` that is a symlink is never written through either: installing replaces the
link itself, see `swap.py`.)

The lock file itself is written to (the holder's pid): it must be a regular file owned by the
user running the tool, with one link. `O_NOFOLLOW` refuses a symlink; a hard link to a file
elsewhere shares its inode, so only the link count tells it apart, and it is refused before
anything is written.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from plugin_packaging.errors import PackagingError, display_path, from_os_error

LOCK_FILE = "lock"
#: How long a run waits for the lock in silence before saying whom it waits for.
WAIT_NOTICE_SECONDS = 1.0
#: Directories inside the state directory that writers fill and empty.
PRIVATE_DIRECTORIES = ("staging",)
#: Directories beside the state directory (in the plugins directory) that writers fill.
WRITTEN_DIRECTORIES = ("native",)


class DirectoryLock:
    """`with DirectoryLock(state_dir):` holds the exclusive lock for the block."""

    def __init__(
        self,
        state_dir: Path,
        *,
        timeout: float = 120.0,
        on_parent: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        """`on_parent` locks the directory holding `state_dir` itself instead of a lock file in
        it, so that a writer that empties and removes `state_dir` leaves nothing behind (release
        output directories, which get published as they are). `on_wait` is told once, after a
        second of waiting, who holds the lock: a wait of up to `timeout` seconds must not look
        like a hang."""
        self.path = state_dir / LOCK_FILE
        self.timeout = timeout
        self.on_parent = on_parent
        self.on_wait = on_wait
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
        started = time.monotonic()
        deadline = started + self.timeout
        told = self.on_wait is None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if not told and now - started >= WAIT_NOTICE_SECONDS:
                    told = True
                    assert self.on_wait is not None
                    holder = "another run" if self.on_parent else f"pid {_holder(fd)}"
                    self.on_wait(
                        f"waiting for the lock held by {holder} on "
                        f"{display_path(self.path.parent.parent)} (up to {self.timeout:g} s)"
                    )
                if now >= deadline:
                    holder = "" if self.on_parent else _holder(fd)
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


def _holder(fd: int) -> str:
    """The pid the lock's holder wrote into the lock file, as text ("unknown" if none)."""
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
    except OSError:
        return "unknown"


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
    checked = (
        *(state_dir.parent / name for name in WRITTEN_DIRECTORIES),
        state_dir,
        *(state_dir / name for name in PRIVATE_DIRECTORIES),
    )
    for path in checked:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue  # created by the writer when it needs it
        except OSError as exc:
            raise from_os_error(exc, path, "look at the bookkeeping directory") from None
        if stat.S_ISLNK(mode):
            raise PackagingError(
                "state-dir-unsafe",
                "is a symlink, but the directories this tool writes inside the plugins "
                "directory must be real directories: runs write into them and delete what "
                "they find there",
                path,
                hint=f"replace the symlink by the directory it points to (`rm {path}`, then "
                "move the content there), or point --plugins-dir at the real location",
            )
        if not stat.S_ISDIR(mode):
            raise PackagingError(
                "state-dir-unsafe",
                "is not a directory, but this tool writes into it (plugins, or its bookkeeping)",
                path,
                hint=f"move it away (`mv {path} {path}.bak`); the next run recreates the directory",
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
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a plain file; the lock file is written to"
    elif info.st_nlink != 1:
        problem = (
            f"has {info.st_nlink} hard links; the lock file is written to, and a link would "
            "write into a file elsewhere"
        )
    elif hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        problem = "belongs to another user; the lock file is written to"
    if problem is not None:
        os.close(fd)
        raise PackagingError(
            "state-dir-unsafe",
            problem,
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
