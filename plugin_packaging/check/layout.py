"""What lies in a plugin base directory, as the loader's directory scan sees it: facts, no verdicts.

`read_plugin_tree` reads `P/native` (its direct entries, and each bundle's direct entries) and
the names in `P/active` with `os.scandir` only: no file is opened, so this costs the same for a
tree of 150 MiB libraries as for an empty one. Deeper directories of a bundle are listed only to
find libraries the loader would never see (N3), within fixed bounds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePath

from plugin_packaging._fs.files import require_directory
from plugin_packaging.contract import LIBRARY_EXTENSIONS, is_native_library_name
from plugin_packaging.errors import PackagingError

#: How far below a bundle to look for libraries the loader never finds, and how many entries.
NESTED_DEPTH = 4
NESTED_ENTRIES = 2000


@dataclass(frozen=True)
class Entry:
    """One directory entry, with what a scan tells about it without opening it."""

    name: str
    path: Path
    is_dir: bool  # following symlinks, as the loader's `is_dir()` does
    is_file: bool  # following symlinks
    is_symlink: bool
    #: For a symlink whose target is missing: where it points.
    broken_target: str | None = None

    @property
    def is_library_name(self) -> bool:
        """True when the loader would treat this entry as a library candidate (section 3)."""
        return is_native_library_name(self.name)


@dataclass(frozen=True)
class Bundle:
    """One directory of `P/native` and its direct entries."""

    name: str
    path: Path
    entries: tuple[Entry, ...]
    #: Library-named files below the direct entries (relative paths inside the bundle).
    nested_libraries: tuple[PurePath, ...] = ()
    #: Set when the directory could not be listed.
    unreadable: str | None = None

    @property
    def candidates(self) -> tuple[Entry, ...]:
        """The entries the loader dlopens, in its order (N4, N5)."""
        return tuple(e for e in self.entries if e.is_library_name)

    def entry(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.name == name), None)


@dataclass(frozen=True)
class PluginTree:
    """The layout of one plugin base directory."""

    plugins_dir: Path
    #: Direct entries of P/native that are not directories (bare files, broken links).
    top_level: tuple[Entry, ...]
    #: Every directory of P/native (a symlink to one counts), sorted by name.
    bundles: tuple[Bundle, ...]
    #: The files of P/active, in directory order: the order the server reads them in.
    active: tuple[Entry, ...]
    has_native: bool
    has_active: bool

    @property
    def native_dir(self) -> Path:
        return self.plugins_dir / "native"

    def bundle(self, name: str) -> Bundle | None:
        return next((b for b in self.bundles if b.name == name), None)


def loader_order(path: Path) -> tuple[str, ...]:
    """The sort key of Rust's `PathBuf` ordering: component by component (N5)."""
    return PurePath(path).parts


def read_plugin_tree(plugins_dir: Path) -> PluginTree:
    """List `plugins_dir`; raise `PackagingError` when it does not exist or holds nothing to check."""
    require_directory(
        plugins_dir,
        "plugins-dir-missing",
        "the plugin directory",
        hint="pass --plugins-dir (or --root), or install plugins first with copy-plugins-native",
    )
    native, active = plugins_dir / "native", plugins_dir / "active"
    has_native, has_active = native.is_dir(), active.is_dir()
    if not has_native and not has_active:
        raise PackagingError(
            "plugins-dir-empty",
            "holds neither native/ nor active/: there is nothing for the server to load",
            plugins_dir,
            hint="install plugins first with copy-plugins-native, or pass the right --plugins-dir",
        )
    top_level: list[Entry] = []
    bundles: list[Bundle] = []
    if has_native:
        for entry in sorted(_scan(native), key=lambda e: e.name):
            if entry.is_dir:
                bundles.append(_read_bundle(entry))
            else:
                top_level.append(entry)
    # Directory order, not sorted: the server reads active records in the order read_dir gives.
    records = _scan(active) if has_active else []
    return PluginTree(
        plugins_dir, tuple(top_level), tuple(bundles), tuple(records), has_native, has_active
    )


def read_bundle(path: Path, name: str) -> Bundle:
    """One bundle directory on its own, as the loader will see it under `native/<name>/` (a staged
    bundle is checked this way before it is swapped in)."""
    return _read_bundle(Entry(name, path, is_dir=True, is_file=False, is_symlink=False))


def _scan(directory: Path) -> list[Entry]:
    try:
        with os.scandir(directory) as scan:
            return [_entry(item) for item in scan]
    except OSError as exc:
        raise PackagingError(
            "unreadable",
            f"cannot be listed ({exc.strerror or exc})",
            directory,
            hint="check the directory's permissions",
        ) from None


def _entry(item: os.DirEntry[str]) -> Entry:
    path = Path(item.path)
    try:
        is_symlink = item.is_symlink()
        is_dir = item.is_dir()
        is_file = item.is_file()
    except OSError:
        is_symlink, is_dir, is_file = False, False, False
    broken = None
    if is_symlink and not is_dir and not is_file and not os.path.exists(path):
        try:
            broken = os.readlink(path)
        except OSError:
            broken = "?"
    return Entry(item.name, path, is_dir, is_file, is_symlink, broken)


def _read_bundle(entry: Entry) -> Bundle:
    try:
        with os.scandir(entry.path) as scan:
            entries = sorted((_entry(item) for item in scan), key=lambda e: e.name)
    except OSError as exc:
        return Bundle(entry.name, entry.path, (), unreadable=exc.strerror or str(exc))
    nested: list[PurePath] = []
    subdirectories = [e for e in entries if e.is_dir and not e.is_symlink]
    if subdirectories:
        budget = [NESTED_ENTRIES]
        for sub in subdirectories:
            _find_nested(sub.path, PurePath(sub.name), 2, nested, budget)
    return Bundle(entry.name, entry.path, tuple(entries), tuple(nested))


def _find_nested(
    directory: Path, relative: PurePath, depth: int, found: list[PurePath], budget: list[int]
) -> None:
    """Library-named files below a bundle's direct entries; bounded in depth and entries."""
    if depth > NESTED_DEPTH or budget[0] <= 0:
        return
    try:
        with os.scandir(directory) as scan:
            items = sorted(scan, key=lambda e: e.name)
    except OSError:
        return
    for item in items:
        budget[0] -= 1
        if budget[0] <= 0:
            return
        try:
            if item.is_dir(follow_symlinks=False):
                _find_nested(Path(item.path), relative / item.name, depth + 1, found, budget)
            elif is_native_library_name(item.name):
                found.append(relative / item.name)
        except OSError:
            continue


def near_miss(name: str) -> tuple[str, str] | None:
    """(why the loader skips it, a name it would open) for a name that looks meant as a library.

    `libfoo.so.1` (extension `1`) and `libfoo.SO` (extensions are case-sensitive) look like
    libraries to people but not to `is_native_lib`; cargo's `libfoo.so.d` dep-info is not one.
    """
    if is_native_library_name(name):
        return None
    suffix = PurePath(name).suffix[1:]
    if suffix.lower() in LIBRARY_EXTENSIONS:
        return (
            f"its extension `{suffix}` is not `{suffix.lower()}` (the loader compares case-sensitively)",
            PurePath(name).stem + "." + suffix.lower(),
        )
    for extension in LIBRARY_EXTENSIONS:
        marker = f".{extension}."
        at = name.rfind(marker)
        if at > 0:
            version = name[at + len(marker) :]
            if version and all(part.isdigit() for part in version.split(".")):
                return (
                    f"its extension is `{suffix}`, not `so`, `dylib` or `dll` (versioned names are never loaded)",
                    name[: at + len(marker) - 1],
                )
    return None
