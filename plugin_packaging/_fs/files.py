"""Reading and writing single files in trees that other people and programs share with us.

Every file this tool reads lies in a tree others write to: a manifest, an active record, the
state file, an installed library. A named pipe there would block a plain `open()` until some
writer came (forever, in practice), a device such as /dev/zero never ends, and a directory is no
text. `open_regular_file` is the one way to open such a file for reading: it opens without
waiting and then checks what it opened (the descriptor, not the path, so nothing can be swapped
in between).

Every small file this tool writes (checksums, signatures, its own state) goes through
`write_atomically`: readers see the old file or the new one, never half of one, and a failed
write (no space, no permission) leaves no temporary file behind.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

#: O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused right after). Reads from
#: a regular file are not affected by the flag.
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


class NotRegularFile(OSError):
    """The path exists but is not a regular file (nor a symlink to one): a directory, a pipe..."""

    def __init__(self, path: Path | str, mode: int) -> None:
        self.kind = file_kind(mode)
        self.is_directory = stat.S_ISDIR(mode)
        message = f"is {self.kind}, not a regular file"
        super().__init__(message)
        # Like any OSError: `strerror` says what is wrong, `filename` where (no errno fits).
        self.strerror = message
        self.filename = os.fspath(path)

    def __str__(self) -> str:
        return str(self.strerror)


def open_regular_file(path: Path | str) -> BinaryIO:
    """Open `path` for binary reading, following symlinks, if it is a regular file.

    Raises `NotRegularFile` for anything else that exists, and the `OSError` of the open itself
    (missing, permission denied, a symlink loop) when it cannot be opened.
    """
    descriptor = os.open(path, _READ_FLAGS)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, mode)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def file_kind(mode: int) -> str:
    """What a file of this mode is, in words: `a directory`, `a named pipe (FIFO)`..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def write_atomically(target: Path, data: bytes) -> None:
    """Replace `target` with `data` (mode 0644) in one step: a temporary file beside it, renamed.

    On any failure the temporary file is removed and the error raised; `target` is unchanged.
    """
    import tempfile  # not at the top: the read-only commands never write, and start-up is measured

    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
