"""Replacing a bundle directory atomically, and finishing what a killed run left half done.

A new bundle is staged in `P/.plugin-packaging/staging/` (same file system, never scanned by the
loader) and then swapped in. On Linux the swap is one `renameat2(RENAME_EXCHANGE)`: at every
instant `native/<id>` is either the old complete bundle or the new complete one. Elsewhere (or
on a file system without exchange) it is two renames, old out then new in; a crash between them
leaves the old bundle parked as `<id>..old..*`, and `recover_staging` puts it back.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# Ids never contain "..", so these marks split a staging name into its id unambiguously.
_OLD_MARK = "..old.."
NEW_MARK = "..new.."


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


def swap_in(staged: Path, target: Path) -> None:
    """Make `staged` become `target`, replacing whatever was there; then delete the old copy."""
    if not os.path.lexists(target):
        os.rename(staged, target)
        return
    if exchange(staged, target):
        remove_entry(staged)  # `staged` now holds the old bundle
        return
    parked = staged.with_name(f"{target.name}{_OLD_MARK}{staged.name}")
    os.rename(target, parked)
    os.rename(staged, target)
    remove_entry(parked)


def park(target: Path, staging: Path) -> Path:
    """Move `target` out of the loader's sight, ready to be deleted (used for pruning)."""
    parked = staging / f"{target.name}{_OLD_MARK}prune"
    remove_entry(parked)
    os.rename(target, parked)
    return parked


def remove_entry(path: Path) -> None:
    """Delete a file, a symlink (not its target) or a directory tree; missing is fine."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)
    except FileNotFoundError:
        pass


def recover_staging(staging: Path, native_dir: Path) -> list[str]:
    """Finish what a killed run left: restore parked bundles whose place is empty, drop the rest.

    Returns a line per repair, for the report.
    """
    repairs: list[str] = []
    try:
        entries = sorted(os.listdir(staging))
    except FileNotFoundError:
        return repairs
    for name in entries:
        path = staging / name
        if _OLD_MARK in name:
            plugin_id = name.split(_OLD_MARK, 1)[0]
            target = native_dir / plugin_id
            if plugin_id and not os.path.lexists(target) and not name.endswith(f"{_OLD_MARK}prune"):
                os.rename(path, target)
                repairs.append(f"restored {plugin_id} from an interrupted run")
                continue
        remove_entry(path)
        repairs.append(f"removed leftover {name} from an interrupted run")
    return repairs
