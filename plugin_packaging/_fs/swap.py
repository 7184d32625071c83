"""Replacing a bundle directory atomically, and finishing what a killed run left half done.

A new bundle is staged in `P/.plugin-packaging/staging/` (same file system, never scanned by the
loader) and then swapped in. On Linux the swap is one `renameat2(RENAME_EXCHANGE)`: at every
instant `native/<id>` is either the old complete bundle or the new complete one. Elsewhere (or
on a file system without exchange) it is two renames, old out then new in; a crash between them
leaves the old bundle parked, and `recover_staging` puts it back.

Every operation gets its own short directory in staging, `op-XXXXXXXX/`, holding the plugin id in
a file (`id`), the new bundle (`bundle/`) and, between the two renames, the old one (`old/`). The
id is never part of a staging name: an id may be 255 bytes long, the longest name a file system
takes, and `<id>` plus any mark would not fit.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from plugin_packaging._fs.files import open_regular_file
from plugin_packaging.contract import MAX_NAME_BYTES, path_component_problem

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
#: The per-operation directory in staging and what it holds.
_OPERATION_PREFIX = "op-"
_ID_FILE = "id"
_NEW = "bundle"
_OLD = "old"
#: Marks a bundle parked for deletion (prune): never restored.
_PRUNED = "pruned"
# Names left by earlier versions of this tool: `<id>..old..<anything>` is a parked bundle.
_LEGACY_OLD_MARK = "..old.."


def _renameat2_exchange() -> Callable[..., int] | None:
    """libc's `renameat2`, or None where the platform has none."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_exchange_function: Callable[..., int] | None = None
_exchange_probed = False


def exchange(first: Path, second: Path) -> bool:
    """Atomically swap two directory entries; False when the system cannot do it."""
    global _exchange_function, _exchange_probed
    if not _exchange_probed:
        _exchange_function = _renameat2_exchange()
        _exchange_probed = True
    if _exchange_function is None:
        return False
    import ctypes

    result = _exchange_function(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def new_bundle_dir(staging: Path, plugin_id: str) -> Path:
    """An empty directory (mode 0755) to assemble `plugin_id`'s new bundle in, inside staging.

    Its name is short whatever the id; the id is written beside it so that a run killed later
    can still tell which bundle a parked copy belongs to.
    """
    operation = Path(tempfile.mkdtemp(prefix=_OPERATION_PREFIX, dir=staging))
    try:
        with open(operation / _ID_FILE, "x", encoding="utf-8") as handle:
            handle.write(plugin_id)
        bundle = operation / _NEW
        bundle.mkdir()
        os.chmod(bundle, 0o755)
    except BaseException:
        remove_entry(operation)
        raise
    return bundle


def discard(staged: Path) -> None:
    """Delete a bundle made by `new_bundle_dir`, with its operation directory."""
    remove_entry(_operation_of(staged))


def swap_in(staged: Path, target: Path) -> None:
    """Make `staged` become `target`, replacing whatever was there; then delete the old copy
    (and, for a bundle from `new_bundle_dir`, its operation directory)."""
    parked = staged.with_name(_OLD if _in_operation(staged) else f"{staged.name}.old")
    if not os.path.lexists(target):
        os.rename(staged, target)
    elif exchange(staged, target):
        remove_entry(staged)  # `staged` now holds the old bundle
    else:
        os.rename(target, parked)
        os.rename(staged, target)
        remove_entry(parked)
    if _in_operation(staged):
        remove_entry(staged.parent)


def park(target: Path, staging: Path) -> Path:
    """Move `target` out of the loader's sight, ready to be deleted (used for pruning).

    Returns the operation directory; a run killed before deleting it leaves it to the next run's
    `recover_staging`, which deletes it (a pruned bundle is never restored).
    """
    operation = Path(tempfile.mkdtemp(prefix=_OPERATION_PREFIX, dir=staging))
    try:
        (operation / _PRUNED).touch()
        os.rename(target, operation / _OLD)
    except BaseException:
        remove_entry(operation)
        raise
    return operation


def _in_operation(staged: Path) -> bool:
    return staged.name == _NEW and staged.parent.name.startswith(_OPERATION_PREFIX)


def _operation_of(staged: Path) -> Path:
    return staged.parent if _in_operation(staged) else staged


def remove_entry(path: Path) -> None:
    """Delete a file, a symlink (not its target) or a directory tree; missing is fine.

    Directories inside the tree that were left without write permission (a read-only leftover
    of a killed run, a bundle someone chmodded) are made writable first, without following any
    symlink, since they are about to go anyway.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        _unlink(path)
        return
    _rmtree(str(path))


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _make_writable_and_retry(function: object, failed: str, error: object) -> None:
    """rmtree's error handler: a directory that refuses `unlink`/`rmdir`/listing because it (or its
    parent) is read-only is given u+rwx, never through a symlink, and the step retried.

    When the permissions were already there, the failure has another cause and is raised.
    """
    if function in (os.open, os.scandir, os.listdir):
        # The directory itself could not be opened or listed: make it listable, then remove it.
        _add_owner_permissions(failed, error)
        _rmtree(failed)
        return
    _add_owner_permissions(os.path.dirname(failed), error)
    if function is os.rmdir:
        os.rmdir(failed)
    else:
        os.unlink(failed)


def _rmtree(path: str) -> None:
    # Python 3.12 renamed the handler's keyword (`onerror` is deprecated there).
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_make_writable_and_retry)
    else:
        shutil.rmtree(path, onerror=_make_writable_and_retry)


def _add_owner_permissions(directory: str, error: object) -> None:
    """Give the owner rwx on `directory` (a real directory, not a symlink) or raise `error`."""
    info = os.lstat(directory)
    wanted = stat.S_IMODE(info.st_mode) | stat.S_IRWXU
    if not stat.S_ISDIR(info.st_mode) or wanted == stat.S_IMODE(info.st_mode):
        raise error if isinstance(error, BaseException) else error[1]  # type: ignore[index]
    os.chmod(directory, wanted)


def recover_staging(staging: Path, native_dir: Path) -> list[str]:
    """Finish what a killed run left: restore parked bundles whose place is empty, drop the rest.

    Returns a line per repair, for the report. Nothing found in staging is trusted as a path: an
    id read from an operation directory must be one safe name, or the parked copy is dropped.
    """
    repairs: list[str] = []
    try:
        entries = sorted(os.listdir(staging))
    except FileNotFoundError:
        return repairs
    for name in entries:
        path = staging / name
        plugin_id = _parked_id(path, name)
        if plugin_id is not None:
            target = native_dir / plugin_id
            parked = path / _OLD if name.startswith(_OPERATION_PREFIX) else path
            if not os.path.lexists(target):
                os.rename(parked, target)
                repairs.append(f"restored {plugin_id} from an interrupted run")
                remove_entry(path)
                continue
        remove_entry(path)
        repairs.append(f"removed leftover {_short(name)} from an interrupted run")
    return repairs


def _parked_id(path: Path, name: str) -> str | None:
    """The id of a bundle parked between two renames in `path`, or None when it holds none."""
    if name.startswith(_OPERATION_PREFIX):
        if os.path.lexists(path / _PRUNED) or not _is_directory(path / _OLD):
            return None
        try:
            with open_regular_file(path / _ID_FILE) as handle:
                plugin_id = handle.read(MAX_NAME_BYTES + 1).decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    elif _LEGACY_OLD_MARK in name and not name.endswith(f"{_LEGACY_OLD_MARK}prune"):
        plugin_id = name.split(_LEGACY_OLD_MARK, 1)[0]
        if not _is_directory(path):
            return None
    else:
        return None
    return plugin_id if path_component_problem(plugin_id) is None else None


def _is_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _short(name: str) -> str:
    return name if len(name) <= 40 else name[:37] + "..."
