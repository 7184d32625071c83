"""Would the Linux dynamic loader find a library's dependencies on this machine? A rough `ld.so`.

For each `DT_NEEDED` name, in the order glibc searches (ld.so(8)): a name with a `/` is a path;
otherwise `DT_RPATH` (only when there is no `DT_RUNPATH`), `LD_LIBRARY_PATH`, `DT_RUNPATH`, the
cache `/etc/ld.so.cache`, then the system directories. `$ORIGIN` is the directory the library is
opened from. The cache is read once per resolver and only when a name gets that far; it is read
straight from the file, as ld.so reads it, and through `ldconfig -p` only when the file is absent
or in a format this module does not know (a subprocess costs more than the whole file).

Rough on purpose: it does not check that a file found has the right ELF class (ld.so skips
those silently), and it does not follow the executable's own RPATH. The server may also run with
another `LD_LIBRARY_PATH` than this shell; the message says which one was used.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from plugin_packaging.binary import LibraryInfo

#: Multiarch directory names (Debian's triplets) by normalised architecture.
TRIPLETS = {
    "x86_64": "x86_64-linux-gnu",
    "aarch64": "aarch64-linux-gnu",
    "x86": "i386-linux-gnu",
    "arm": "arm-linux-gnueabihf",
    "riscv64": "riscv64-linux-gnu",
    "ppc64le": "powerpc64le-linux-gnu",
    "s390x": "s390x-linux-gnu",
    "loongarch64": "loongarch64-linux-gnu",
}
#: The architecture tag `ldconfig -p` prints in parentheses, by normalised architecture.
CACHE_TAGS = {
    "x86_64": "x86-64",
    "aarch64": "AArch64",
    "riscv64": "double-float",  # lp64d, the ABI of Linux distributions
    "ppc64le": "64bit",
    "ppc64": "64bit",
    "s390x": "64bit",
    "loongarch64": "LoongArch",
    "mips64el": "64bit",
    "mips64": "64bit",
}
_TOKEN = re.compile(r"\$(ORIGIN|\{ORIGIN\})")
_CACHE_LINE = re.compile(r"^\s+(\S+) \(([^)]*)\)(?: OS ABI: [^=]*)? => (.+)$")


@dataclass(frozen=True)
class Dependency:
    """One needed library and where the loader would find it (None: nowhere)."""

    name: str
    path: Path | None
    via: str | None


def expand_origin(entry: str, origin: Path) -> str | None:
    """A search path entry with `$ORIGIN` replaced; None when it holds another token ($LIB, ...)."""
    expanded = _TOKEN.sub(lambda _: str(origin), entry)
    return None if "$" in expanded else expanded


#: ld.so's cache, written by `ldconfig`.
LD_SO_CACHE = Path("/etc/ld.so.cache")
#: The cache lists every library of the system once: a few hundred KiB at most.
MAX_CACHE_BYTES = 16 << 20

# The cache file's layout (glibc's dl-cache.h), in the machine's own byte order: the old format
# ("ld.so-1.7.0", 12-byte entries), optionally followed by the new one; or the new one alone
# ("glibc-ld.so.cache1.1", 24-byte entries, 8-byte aligned).
_OLD_MAGIC = b"ld.so-1.7.0"
_OLD_HEADER = struct.Struct("=11sxI")
_OLD_ENTRY = struct.Struct("=iII")
_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_NEW_HEADER = struct.Struct("=20sIIB3xI12x")
_NEW_ENTRY = struct.Struct("=iIIIQ")
_EXTENSION_MAGIC = 0xEAA42174
_EXTENSION_HWCAPS = 1
_HWCAP_EXTENSION = 1 << 30  # in the upper 32 bits of `hwcap`, beside 10 ISA-level bits
_ENDIAN_CURRENT = 2 if sys.byteorder == "little" else 3
# How `ldconfig -p` prints an entry's flags: the library type, then the ABI it requires.
_FLAG_TYPES = {0: "libc4", 1: "ELF", 2: "libc5", 3: "libc6"}
_FLAG_ABIS = {
    0x0100: ",64bit",
    0x0200: ",IA-64",
    0x0300: ",x86-64",
    0x0400: ",64bit",
    0x0500: ",64bit",
    0x0600: ",N32",
    0x0700: ",64bit",
    0x0800: ",x32",
    0x0900: ",hard-float",
    0x0A00: ",AArch64",
    0x0B00: ",soft-float",
    0x0C00: ",nan2008",
    0x0D00: ",N32,nan2008",
    0x0E00: ",64bit,nan2008",
    0x0F00: ",soft-float",
    0x1000: ",double-float",
}
_ABI_TAG_OS = ("Linux", "Hurd", "Solaris", "FreeBSD", "kNetBSD", "Syllable", "Unknown OS")


def read_system_cache() -> dict[str, list[tuple[str, str]]]:
    """The loader's cache as name -> [(flags, path)], in the cache's order.

    Read from `/etc/ld.so.cache` itself; `ldconfig -p` (the same data, printed) is asked only
    when that file is missing or not in a format `read_ld_so_cache` knows.
    """
    found = read_ld_so_cache()
    return found if found is not None else read_ldconfig_cache()


def read_ld_so_cache(path: Path = LD_SO_CACHE) -> dict[str, list[tuple[str, str]]] | None:
    """`path` as name -> [(flags, path)], with flags spelt as `ldconfig -p` prints them.

    None when the file is missing, unreadable or not a cache of this machine's byte order in a
    known format: the caller then asks `ldconfig -p`, which knows its own glibc's format.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CACHE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_CACHE_BYTES:
        return None
    try:
        return _parse_cache(data)
    except (struct.error, IndexError, ValueError):
        return None  # cut short or inconsistent: ldconfig -p says what it makes of it


def _parse_cache(data: bytes) -> dict[str, list[tuple[str, str]]] | None:
    start = 0
    if data.startswith(_OLD_MAGIC):
        _magic, count = _OLD_HEADER.unpack_from(data)
        old_end = _OLD_HEADER.size + count * _OLD_ENTRY.size
        if old_end > len(data):
            return None
        start = (old_end + 7) & ~7  # the new format follows, 8-byte aligned
        if not data.startswith(_NEW_MAGIC, start):
            # The old format alone: its strings start right after its entries.
            entries = (
                (flags, key, value, 0, 0)
                for flags, key, value in _OLD_ENTRY.iter_unpack(data[_OLD_HEADER.size : old_end])
            )
            return _cache_entries(data, old_end, entries, {})
    elif not data.startswith(_NEW_MAGIC):
        return None
    _magic, count, _strings, endian, extension = _NEW_HEADER.unpack_from(data, start)
    if endian not in (0, _ENDIAN_CURRENT):
        return None
    table = start + _NEW_HEADER.size
    table_end = table + count * _NEW_ENTRY.size
    hwcaps = _hwcap_names(data, extension)
    if table_end > len(data) or hwcaps is None:
        return None
    return _cache_entries(data, start, _NEW_ENTRY.iter_unpack(data[table:table_end]), hwcaps)


def _cache_entries(
    data: bytes, strings_at: int, entries: Iterable[tuple[int, ...]], hwcaps: dict[int, str]
) -> dict[str, list[tuple[str, str]]]:
    """The entries as `ldconfig -p` lists them; `strings_at` is where string offsets count from."""
    cache: dict[str, list[tuple[str, str]]] = {}
    spelt: dict[
        tuple[int, int, int], str
    ] = {}  # a handful of distinct flags for hundreds of entries
    for flags, key, value, osversion, hwcap in entries:
        name = _cache_string(data, strings_at + key)
        target = _cache_string(data, strings_at + value)
        text = spelt.get((flags, osversion, hwcap))
        if text is None:
            text = spelt[flags, osversion, hwcap] = _flags_text(flags, osversion, hwcap, hwcaps)
        cache.setdefault(name, []).append((text, target))
    return cache


def _cache_string(data: bytes, offset: int) -> str:
    if not 0 <= offset < len(data):
        raise ValueError("a cache string lies outside the file")
    end = data.find(b"\0", offset)
    return data[offset : end if end >= 0 else len(data)].decode("utf-8", errors="replace")


def _hwcap_names(data: bytes, extension: int) -> dict[int, str] | None:
    """The glibc-hwcaps subdirectory names by index; None when the extensions are malformed."""
    if extension == 0:
        return {}
    words = struct.Struct("=II")
    if extension % 4 or extension + words.size > len(data):
        return None
    magic, count = words.unpack_from(data, extension)
    section = struct.Struct("=IIII")
    if magic != _EXTENSION_MAGIC or extension + words.size + count * section.size > len(data):
        return None
    names: dict[int, str] = {}
    for index in range(count):
        at = extension + words.size + index * section.size
        tag, _flags, offset, size = section.unpack_from(data, at)
        if offset + size > len(data):
            return None
        if tag == _EXTENSION_HWCAPS and size and offset % 4 == 0 and size % 4 == 0:
            for slot, (string_at,) in enumerate(
                struct.iter_unpack("=I", data[offset : offset + size])
            ):
                if string_at < len(data):
                    names[slot] = _cache_string(data, string_at)
    return names


def _flags_text(flags: int, osversion: int, hwcap: int, hwcaps: dict[int, str]) -> str:
    """An entry's flags as `ldconfig -p` prints them between the parentheses."""
    text = _FLAG_TYPES.get(flags & 0xFF, "unknown")
    abi = flags & 0xFF00
    if abi:
        text += _FLAG_ABIS.get(abi, f",{abi}")
    name = hwcaps.get(hwcap & 0xFFFFFFFF) if (hwcap >> 32) & ~0x3FF == _HWCAP_EXTENSION else None
    if name is not None:
        text += f', hwcap: "{name}"'
    elif hwcap:
        text += f", hwcap: 0x{hwcap:016x}"
    if osversion:
        system = _ABI_TAG_OS[min(osversion >> 24, len(_ABI_TAG_OS) - 1)]
        major, minor, patch = (osversion >> 16) & 0xFF, (osversion >> 8) & 0xFF, osversion & 0xFF
        text += f", OS ABI: {system} {major}.{minor}.{patch}"
    return text


def read_ldconfig_cache(cache_file: Path | None = None) -> dict[str, list[tuple[str, str]]]:
    """`ldconfig -p` (of `cache_file`, default the system's) as name -> [(flags, path)]; empty
    when there is no ldconfig."""
    program = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)), None
    )
    if program is None:
        return {}
    argv = [program, "-p"] + (["-C", str(cache_file)] if cache_file is not None else [])
    try:
        output = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    cache: dict[str, list[tuple[str, str]]] = {}
    for line in output.splitlines():
        match = _CACHE_LINE.match(line)
        if match:
            cache.setdefault(match.group(1), []).append((match.group(2), match.group(3)))
    return cache


class DependencyResolver:
    """Resolves needed libraries like ld.so would, with the system cache read at most once."""

    def __init__(
        self,
        *,
        environment: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        read_cache: Callable[[], dict[str, list[tuple[str, str]]]] = read_system_cache,
        first_directories: tuple[str, Sequence[str]] | None = None,
    ) -> None:
        """`first_directories`, (label, directories), are searched before anything else: the
        directories a user named for finding libraries to vendor (`plugins.vendor.search_dirs`)."""
        env = os.environ if environment is None else environment
        self._library_path = env.get("LD_LIBRARY_PATH", "")
        self._cwd = cwd or Path.cwd()
        self._read_cache = read_cache
        self._cache: dict[str, list[tuple[str, str]]] | None = None
        self._exists: dict[str, bool] = {}
        self._first = (
            (first_directories[0], [str(d) for d in first_directories[1]])
            if first_directories is not None and first_directories[1]
            else None
        )

    def resolve(self, info: LibraryInfo, opened_from: Path) -> tuple[Dependency, ...]:
        """Where each of `info.needed` comes from when `opened_from` is dlopen'ed."""
        origin = Path(os.path.abspath(opened_from)).parent
        return tuple(self._resolve_one(name, info, origin) for name in info.needed)

    def searched(self, info: LibraryInfo, opened_from: Path) -> str:
        """Where the search looked, for a message: tags with $ORIGIN expanded, then the system."""
        origin = Path(os.path.abspath(opened_from)).parent
        parts = []
        for label, entries in self._search_order(info, origin):
            if self._first is not None and label == self._first[0]:
                parts.append(f"{label} {':'.join(entries)}")
            elif label in ("RPATH", "RUNPATH", "LD_LIBRARY_PATH"):
                shown = ":".join(entries) if entries else "unset"
                if label != "LD_LIBRARY_PATH" and not entries:
                    continue
                parts.append(f"{label} {shown}")
            else:
                parts.append(label)
        return ", ".join(parts)

    def _search_order(self, info: LibraryInfo, origin: Path) -> list[tuple[str, list[str]]]:
        def expanded(entries: Sequence[str]) -> list[str]:
            out = []
            for entry in entries:
                value = expand_origin(entry, origin)
                if value is not None:
                    out.append(value or ".")
            return out

        order: list[tuple[str, list[str]]] = [self._first] if self._first is not None else []
        if info.rpath and not info.runpath:
            order.append(("RPATH", expanded(info.rpath)))
        library_path = (
            [p for p in self._library_path.split(":") if p and "$" not in p]
            if self._library_path
            else []
        )
        order.append(("LD_LIBRARY_PATH", library_path))
        if info.runpath:
            order.append(("RUNPATH", expanded(info.runpath)))
        order.append(("ld.so.cache", []))
        order.append(
            (
                f"the system directories ({', '.join(system_directories(info))})",
                system_directories(info),
            )
        )
        return order

    def _resolve_one(self, name: str, info: LibraryInfo, origin: Path) -> Dependency:
        if "/" in name:
            path = Path(name) if os.path.isabs(name) else self._cwd / name
            return Dependency(name, path if self._is_file(str(path)) else None, "path")
        for label, directories in self._search_order(info, origin):
            if label == "ld.so.cache":
                found = self._from_cache(name, info.arch)
                if found is not None:
                    return Dependency(name, found, label)
                continue
            for directory in directories:
                candidate = os.path.join(
                    directory if os.path.isabs(directory) else os.path.join(self._cwd, directory),
                    name,
                )
                if self._is_file(candidate):
                    return Dependency(name, Path(candidate), label.split(" (")[0])
        return Dependency(name, None, None)

    def _from_cache(self, name: str, arch: str) -> Path | None:
        if self._cache is None:  # the cache is read only once a name needs it
            self._cache = self._read_cache()
        tag = CACHE_TAGS.get(arch)
        for flags, path in self._cache.get(name, ()):
            tags = [part.strip() for part in flags.split(",")]
            if tag is None and arch in ("x86", "arm"):
                if len(tags) == 1 or (arch == "arm" and any("hard-float" in t for t in tags)):
                    return Path(path)
            elif tag is None or tag in tags:
                return Path(path)
        return None

    def _is_file(self, path: str) -> bool:
        known = self._exists.get(path)
        if known is None:
            known = os.path.isfile(path)
            self._exists[path] = known
        return known


def system_directories(info: LibraryInfo) -> list[str]:
    """ld.so's built-in directories for a library of this architecture, multiarch first."""
    triplet = TRIPLETS.get(info.arch)
    directories = [f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []
    if info.bits == 64:
        directories += ["/lib64", "/usr/lib64"]
    return [*directories, "/lib", "/usr/lib"]
