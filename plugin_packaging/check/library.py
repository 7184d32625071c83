"""One library file judged against the loader (N6, N11, section 5), from a static read only.

`binary.read_library` reads headers and symbol tables (never the whole file, never loading it);
this module decides: the right format, platform and architecture for the target, a shared object,
the entry symbol exported as a default-visibility function, no executable stack, no search path
leaving the bundle, and (for the host's own platform and architecture) every `DT_NEEDED` found.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path, PurePath

from plugin_packaging._fs.files import open_regular_file
from plugin_packaging.binary import (
    CORRUPT,
    NOT_A_BINARY,
    TRUNCATED,
    BinaryFormatError,
    LibraryInfo,
    read_library,
)
from plugin_packaging.binary.dynlinks import Dependency, DependencyResolver, expand_origin
from plugin_packaging.contract import (
    ENTRY_DECLARATION_C,
    ENTRY_SYMBOL,
    PLATFORM_LIBRARY_EXTENSION,
)
from plugin_packaging.rules.model import Violation
from plugin_packaging.rules.table import blocks_load
from plugin_packaging.target import Platform, Target

_RUST_TRIPLES = {
    "linux": "{arch}-unknown-linux-gnu",
    "macos": "{arch}-apple-darwin",
    "windows": "{arch}-pc-windows-msvc",
}
#: Where Rust's target triple spells an architecture differently from the binary readers.
_RUST_TRIPLE_EXCEPTIONS = {
    ("linux", "x86"): "i686-unknown-linux-gnu",
    ("linux", "arm"): "armv7-unknown-linux-gnueabihf",
    ("linux", "ppc64le"): "powerpc64le-unknown-linux-gnu",
    ("linux", "ppc64"): "powerpc64-unknown-linux-gnu",
    ("windows", "x86"): "i686-pc-windows-msvc",
}
_FORMAT_PLATFORM: dict[str, Platform] = {"elf": "linux", "macho": "macos", "pe": "windows"}
_FORMAT_NAME = {"elf": "ELF", "macho": "Mach-O", "pe": "PE"}
_RUST_LEGACY = re.compile(r"^_ZN.*17h[0-9a-f]{16}E$")


@dataclass(frozen=True)
class LibraryVerdict:
    """What the static checks found in one library."""

    path: Path
    info: LibraryInfo | None
    violations: tuple[Violation, ...]
    #: Resolved `DT_NEEDED` entries, when dependencies were checked.
    dependencies: tuple[Dependency, ...] = ()

    @property
    def blocked(self) -> bool:
        return any(blocks_load(v) for v in self.violations)


@dataclass(frozen=True)
class _Subject:
    """Who a library's violations are about (a bundle or an active record)."""

    bundle: str | None
    record: str | None


def check_library(
    path: Path,
    *,
    target: Target,
    resolver: DependencyResolver | None,
    bundle: str | None = None,
    record: str | None = None,
) -> LibraryVerdict:
    """Judge the library at `path`; `resolver` None skips the dependency search."""
    subject = _Subject(bundle, record)
    out: list[Violation] = []
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        out.append(
            _violation(
                "library-unreadable",
                path,
                subject,
                detail=f"cannot be read ({exc.strerror or exc})",
            )
        )
        return LibraryVerdict(path, None, tuple(out))
    if stat.S_IMODE(mode) & 0o444 == 0:
        # Root reads it anyway; the server's user does not.
        detail = f"has no read permission for anyone (mode {stat.S_IMODE(mode):04o})"
        out.append(_violation("library-unreadable", path, subject, detail=detail))
        return LibraryVerdict(path, None, tuple(out))
    try:
        info = read_library(path)
    except BinaryFormatError as exc:
        out.append(_format_error(exc, path, subject))
        return LibraryVerdict(path, None, tuple(out))

    _check_format(info, path, subject, out)
    if info.platform != target.platform:
        out.append(
            _violation(
                "library-wrong-platform",
                path,
                subject,
                format=_FORMAT_NAME[info.format],
                platform=info.platform,
                target=target.platform,
            )
        )
        return LibraryVerdict(path, info, tuple(out))
    part = next((s for s in info.every_slice() if _fits(s, target)), None)
    if part is None:
        out.append(_wrong_arch(info, path, target, subject))
        return LibraryVerdict(path, info, tuple(out))
    if not part.is_shared_library:
        out.append(_not_shared(part, path, subject))
        return LibraryVerdict(path, info, tuple(out))
    entry = _entry_violation(part, path, subject)
    if entry is not None:
        out.append(entry)
    if part.executable_stack:
        violation = _violation("library-executable-stack", path, subject)
        # Older glibc grants the executable stack; the plan says what this host's would do.
        out.append(
            replace(violation, blocks=glibc_refuses_executable_stack() if target.is_host else True)
        )
    out.extend(_search_path_violations(part, path, subject))
    dependencies: tuple[Dependency, ...] = ()
    if resolver is not None and part.format == "elf" and target.is_host:
        dependencies = _dependency_violations(part, path, resolver, subject, out)
    return LibraryVerdict(path, info, tuple(out), dependencies)


def glibc_refuses_executable_stack() -> bool:
    """True when this host's glibc (2.41 and later) refuses to dlopen a library needing an executable stack."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        return True
    match = re.fullmatch(r"glibc (\d+)\.(\d+).*", version)
    return match is None or (int(match.group(1)), int(match.group(2))) >= (2, 41)


def _violation(
    code: str,
    path: Path,
    subject: _Subject,
    *,
    symbol: str | None = None,
    key: str | None = None,
    **details: object,
) -> Violation:
    return Violation(code, path, details, subject.bundle, subject.record, symbol=symbol, key=key)


def _format_error(exc: BinaryFormatError, path: Path, subject: _Subject) -> Violation:
    detail = exc.message
    if exc.code == NOT_A_BINARY:
        fix = exc.hint or "a plugin library must be the linker's output"
        head = _head(path)
        if head.startswith(b"!<arch>"):
            detail = "is a static archive (ar), not a shared library"
            fix = 'build a shared library: crate-type = ["cdylib"] in Rust, -shared -fPIC in C'
        elif head.startswith(b"#!") or (
            head and all(32 <= b < 127 or b in b"\t\r\n" for b in head)
        ):
            detail = "is a text file, not a library binary"
            fix = (
                "copy the built library (is this a linker script or a stub left by a failed build?)"
            )
        return _violation("library-not-binary", path, subject, detail=detail, fix=fix)
    if exc.code == TRUNCATED:
        return _violation("library-truncated", path, subject, detail=_strip_is(detail))
    if exc.code == CORRUPT:
        return _violation("library-corrupt", path, subject, detail=_strip_is(detail))
    return _violation("library-unreadable", path, subject, detail=detail)


def _strip_is(detail: str) -> str:
    return detail[3:] if detail.startswith("is ") else detail


def _head(path: Path) -> bytes:
    try:
        with open_regular_file(path) as handle:  # never waits on a FIFO
            return handle.read(64)
    except OSError:
        return b""


def _check_format(info: LibraryInfo, path: Path, subject: _Subject, out: list[Violation]) -> None:
    """A format named with another platform's extension: an ELF `.dylib` loads on Linux, misnamed."""
    extension = PurePath(path.name).suffix[1:]
    platform = _FORMAT_PLATFORM[info.format]
    expected = PLATFORM_LIBRARY_EXTENSION[platform]
    if extension in PLATFORM_LIBRARY_EXTENSION.values() and extension != expected:
        owner = next(p for p, e in PLATFORM_LIBRARY_EXTENSION.items() if e == extension)
        stem = PurePath(path.name).stem
        if platform == "windows":
            suggestion = (stem[3:] if stem.startswith("lib") else stem) + ".dll"
        else:
            suggestion = (stem if stem.startswith("lib") else "lib" + stem) + "." + expected
        out.append(
            _violation(
                "library-format-mismatch",
                path,
                subject,
                format=_FORMAT_NAME[info.format],
                extension=extension,
                expected_platform=owner,
                suggestion=suggestion,
                platform=platform,
            )
        )


def _fits(part: LibraryInfo, target: Target) -> bool:
    return (
        part.arch == target.arch
        and part.bits == target.bits
        and part.endianness == target.endianness
    )


def _wrong_arch(info: LibraryInfo, path: Path, target: Target, subject: _Subject) -> Violation:
    described = ", ".join(
        f"{s.arch} ({_FORMAT_NAME[s.format]} {s.bits}-bit, {s.endianness}-endian)"
        for s in info.every_slice()
    )
    first = info.every_slice()[0].arch
    target_text = f"{target.arch} ({target.bits}-bit, {target.endianness}-endian)"
    triple = _RUST_TRIPLE_EXCEPTIONS.get(
        (target.platform, target.arch), _RUST_TRIPLES[target.platform].format(arch=target.arch)
    )
    return _violation(
        "library-wrong-arch",
        path,
        subject,
        arch=described,
        target=target_text,
        triple=triple,
        first_arch=first,
    )


def _not_shared(part: LibraryInfo, path: Path, subject: _Subject) -> Violation:
    kind = part.kind
    what = {
        "executable": "an executable (glibc refuses to dlopen one, position-independent or not)",
        "relocatable": "an object file (.o)",
        "core": "a core dump",
        "bundle": "a Mach-O bundle",
    }.get(kind, f"a file of type {kind}")
    fixes = {
        "executable": 'build a shared library: crate-type = ["cdylib"] in Rust, -shared -fPIC in C '
        "(not a program with main)",
        "relocatable": "link the object file into a shared library (cc -shared -o libfoo.so foo.o)",
    }
    fix = fixes.get(kind, "copy the plugin's shared library, the linker's cdylib output")
    return _violation("library-not-shared", path, subject, what=what, fix=fix)


def _entry_violation(part: LibraryInfo, path: Path, subject: _Subject) -> Violation | None:
    state = part.entry.state
    if state == "exported":
        return None
    if state == "hidden":
        return _violation("entry-symbol-hidden", path, subject, symbol=ENTRY_SYMBOL)
    if state == "undefined":
        return _violation("entry-symbol-undefined", path, subject, symbol=ENTRY_SYMBOL)
    if state == "not-a-function":
        return _violation("entry-symbol-not-function", path, subject, symbol=ENTRY_SYMBOL)
    for variant in part.entry.variants:
        language = mangling_language(variant, macho=part.format == "macho")
        if language is not None:
            if language == "Rust":
                fix = (
                    'mark the function `#[no_mangle] pub extern "C"` (StreamKit\'s native_plugin_entry! '
                    "macro does it) in a cdylib crate"
                )
            else:
                fix = f'declare it `extern "C"` so it keeps its C name: `{ENTRY_DECLARATION_C}`'
            return _violation(
                "entry-symbol-mangled",
                path,
                subject,
                symbol=ENTRY_SYMBOL,
                language=language,
                variant=variant,
                fix=fix,
            )
    others = part.entry.variants
    also = ""
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        also = f" (only {shown}, which the loader does not look up)"
    return _violation("entry-symbol-missing", path, subject, symbol=ENTRY_SYMBOL, also=also)


def mangling_language(name: str, *, macho: bool = False) -> str | None:
    """'Rust' or 'C++' when `name` is a mangled symbol name, else None."""
    if macho and name.startswith("_"):
        name = name[1:]
    if name.startswith("_R") or _RUST_LEGACY.match(name):
        return "Rust"
    if name.startswith("_Z"):
        return "C++"
    return None


def _search_path_violations(part: LibraryInfo, path: Path, subject: _Subject) -> list[Violation]:
    origin = Path(os.path.abspath(path)).parent
    out = []
    for tag, entries in (("RPATH", part.rpath), ("RUNPATH", part.runpath)):
        outside: list[str] = []
        relative: list[str] = []
        for entry in entries:
            expanded = expand_origin(entry, origin)
            if expanded is None:
                continue  # $LIB or $PLATFORM: depends on the machine, not on the bundle
            if expanded == "" or not os.path.isabs(expanded):
                relative.append(entry or "(empty)")
                continue
            resolved = os.path.normpath(expanded)
            if os.path.commonpath([resolved, str(origin)]) != str(origin):
                outside.append(entry)
        if not outside and not relative:
            continue
        problems = []
        if outside:
            problems.append(
                "points outside the bundle, so the library loads only where those directories hold the right files"
            )
        if relative:
            problems.append(
                "has relative entries, which the loader resolves against the server's working directory"
            )
        shown = ", ".join(f"`{e}`" for e in outside + relative)
        out.append(
            _violation(
                "library-search-path",
                path,
                subject,
                key=tag,
                tag=tag,
                entries=shown,
                problem="; ".join(problems),
                name=path.name,
            )
        )
    return out


def _dependency_violations(
    part: LibraryInfo,
    path: Path,
    resolver: DependencyResolver,
    subject: _Subject,
    out: list[Violation],
) -> tuple[Dependency, ...]:
    """Add a violation for each needed library the loader would not find; look into vendored ones."""
    bundle_dir = Path(os.path.abspath(path)).parent
    dependencies = resolver.resolve(part, path)
    seen = {os.path.abspath(path)}
    pending = [(part, path, dependencies)]
    depth = 0
    while pending and depth < 4:
        next_round = []
        for info, opened, resolved in pending:
            for dependency in resolved:
                if dependency.path is None:
                    out.append(
                        _violation(
                            "library-dependency-missing",
                            opened,
                            subject,
                            symbol=dependency.name,
                            searched=resolver.searched(info, opened),
                        )
                    )
                    continue
                absolute = os.path.abspath(dependency.path)
                # Vendored libraries inside the bundle have dependencies of their own to check;
                # the system's are the system's business.
                if absolute in seen or os.path.commonpath([absolute, str(bundle_dir)]) != str(
                    bundle_dir
                ):
                    continue
                seen.add(absolute)
                try:
                    vendored = read_library(dependency.path)
                except BinaryFormatError:
                    continue
                next_round.append(
                    (vendored, dependency.path, resolver.resolve(vendored, dependency.path))
                )
        pending = next_round
        depth += 1
    return dependencies
