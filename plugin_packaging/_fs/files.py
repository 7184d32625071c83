"""Reading and writing single files in trees that other people and programs share with us.

Every file this tool reads lies in a tree others write to: a manifest, an active record, the
state file, an installed library, a bundle, a key, a signature, SHA256SUMS. A named pipe there
would block a plain `open()` until some writer came (forever, in practice), a device such as
/dev/zero never ends, a directory is no text, and a sparse file can claim 256 GiB while costing
nothing on disk. So every input the tool does not own is opened here, and only here:

- `open_regular_file` opens without waiting (O_NONBLOCK) and then checks what it opened (the
  descriptor, not the path, so nothing can be swapped in between): a regular file, or a symlink
  to one, else `NotRegularFile`;
- `open_input(path, kind)` adds the size cap of that kind of input (`InputKind`, one table
  below), checked on the descriptor before a byte is read (`InputTooLarge`);
- `read_input(path, kind)` reads such a file whole, never more than its cap even if it grows;
- `input_problem(error)` says in a few words what went wrong, for the caller's coded error.

Both error types are `OSError`s, so code that reports `OSError`s reports them too.

Every small file this tool writes (checksums, signatures, its own state) goes through
`write_atomically`: readers see the old file or the new one, never half of one, and a failed
write (no space, no permission) leaves no temporary file behind.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from plugin_packaging.errors import PackagingError

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


@dataclass(frozen=True)
class InputKind:
    """One kind of input file and the most bytes one may hold (beyond that it is not one)."""

    #: What it is, for messages: "a plugin manifest".
    what: str
    limit: int


_KIB, _MIB, _GIB = 1 << 10, 1 << 20, 1 << 30

#: A plugin.yml, manifest.json, Cargo.toml or template: a few KiB; a megabyte is already absurd.
MANIFEST = InputKind("a plugin manifest", 1 * _MIB)
#: A settings file invoke would load (invoke.yaml, ~/.invoke.yaml, -f FILE).
INVOKE_CONFIG = InputKind("a settings file", 1 * _MIB)
#: An active record (active/*.json): a handful of keys.
ACTIVE_RECORD = InputKind("an active plugin record", 1 * _MIB)
#: A registry document (manifest.json of a release, index.json of a registry).
REGISTRY_DOCUMENT = InputKind("a registry document", 16 * _MIB)
#: A minisign public or secret key file: two short lines.
KEY = InputKind("a minisign key", 4 * _KIB)
#: A minisign signature: four short lines (the trusted comment is at most 8 KiB).
SIGNATURE = InputKind("a minisign signature", 16 * _KIB)
#: A SHA256SUMS list: one 70-odd byte line per release file.
CHECKSUMS = InputKind("a SHA256SUMS list", 16 * _MIB)
#: A compressed bundle archive; the unpacked size has its own, configurable cap.
ARCHIVE = InputKind("a bundle archive", 4 * _GIB)
#: A plugin library (or a dependency of one); the biggest real ones (CUDA) are a few hundred MiB.
LIBRARY = InputKind("a plugin library", 2 * _GIB)


class InputTooLarge(OSError):
    """A regular file bigger than any real file of its kind: refused before it is read."""

    def __init__(self, path: Path | str, size: int, kind: InputKind) -> None:
        message = (
            f"is {_size_text(size)}, larger than {kind.what} can be ({_size_text(kind.limit)})"
        )
        super().__init__(errno.EFBIG, message)
        self.strerror = message
        self.filename = os.fspath(path)
        self.size = size
        self.kind = kind

    def __str__(self) -> str:
        return str(self.strerror)


def open_input(path: Path | str, kind: InputKind) -> BinaryIO:
    """`open_regular_file`, refusing a file bigger than `kind.limit` before reading anything."""
    handle = open_regular_file(path)
    try:
        size = os.fstat(handle.fileno()).st_size
        if size > kind.limit:
            raise InputTooLarge(path, size, kind)
        return handle
    except BaseException:
        handle.close()
        raise


def read_input(path: Path | str, kind: InputKind) -> bytes:
    """The whole of a regular file of at most `kind.limit` bytes (see `open_input`)."""
    with open_input(path, kind) as handle:
        data = handle.read(kind.limit + 1)
    if len(data) > kind.limit:  # it grew after the check
        raise InputTooLarge(path, len(data), kind)
    return data


def input_problem(error: OSError) -> str:
    """What went wrong opening or reading an input, in words that fit after its path."""
    if isinstance(error, (NotRegularFile, InputTooLarge)):
        return str(error)
    if isinstance(error, FileNotFoundError):
        return f"does not exist ({error.strerror})"  # also a dangling symlink
    if isinstance(error, PermissionError):
        return "cannot be read (permission denied)"
    if error.errno == errno.ELOOP:
        return f"is a symbolic link loop ({error.strerror})"
    return f"cannot be read ({error.strerror or error})"


def _size_text(size: int) -> str:
    for unit, scale in (("GiB", _GIB), ("MiB", _MIB), ("KiB", _KIB)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


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


def _create_new(target: Path, mode: int) -> int:
    """A descriptor on a new file at `target`: never an existing file, never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return os.open(target, flags | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0), mode)


def write_new_file(target: Path, data: bytes, mode: int) -> None:
    """Create `target` (it must not exist) holding `data`, with exactly `mode` (the umask aside).

    The mode is set on the descriptor (`fchmod`), so it lands on the file written and nowhere
    else; a partial file is removed on failure.
    """
    fd = _create_new(target, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if hasattr(os, "fchmod"):
                os.fchmod(out.fileno(), mode)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def copy_new_file(source: Path, target: Path, mode: int, *, follow_symlinks: bool = True) -> None:
    """Copy the regular file `source` to a new `target` with exactly `mode` (see `write_new_file`).

    With `follow_symlinks=False` a `source` that is a symlink is refused (ELOOP) rather than read
    through. A `source` that is not a regular file raises `NotRegularFile`.
    """
    import shutil  # not at the top: the read-only commands never copy, and start-up is measured

    if not follow_symlinks and stat.S_ISLNK(os.lstat(source).st_mode):
        raise OSError(errno.ELOOP, "is a symbolic link, not the file this tool installed", source)
    with open_regular_file(source) as reader:
        fd = _create_new(target, mode)
        try:
            with os.fdopen(fd, "wb") as out:
                if not _send_whole_file(reader.fileno(), out.fileno()):
                    shutil.copyfileobj(reader, out, 1 << 20)
                if hasattr(os, "fchmod"):
                    os.fchmod(out.fileno(), mode)
        except BaseException:
            target.unlink(missing_ok=True)
            raise


def _send_whole_file(source_fd: int, target_fd: int) -> bool:
    """Copy in the kernel with sendfile (what `shutil.copyfile` does on Linux: large libraries
    are the cost of an install); False when the system cannot, before anything was written."""
    if not hasattr(os, "sendfile") or not sys.platform.startswith("linux"):
        return False
    offset = 0
    while True:
        try:
            sent = os.sendfile(target_fd, source_fd, offset, 1 << 30)
        except OSError as exc:
            if offset == 0 and exc.errno in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
                return False
            raise
        if sent == 0:
            return True
        offset += sent


def require_directory(path: Path, code: str, what: str, hint: str) -> None:
    """Raise `code` ("<what> does not exist" or "... is not a directory") unless `path` is a
    directory, for the directories a task is pointed at (plugins, registry, bundles)."""
    if not path.is_dir():
        problem = "does not exist" if not os.path.lexists(path) else "is not a directory"
        raise PackagingError(code, f"{what} {problem}", path, hint=hint)
