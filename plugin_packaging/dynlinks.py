"""Would the Linux dynamic loader find a library's dependencies on this machine? A rough `ld.so`.

For each `DT_NEEDED` name, in the order glibc searches (ld.so(8)): a name with a `/` is a path;
otherwise `DT_RPATH` (only when there is no `DT_RUNPATH`), `LD_LIBRARY_PATH`, `DT_RUNPATH`, the
cache `/etc/ld.so.cache` (read through `ldconfig -p`, once per resolver and only when first
needed), then the system directories. `$ORIGIN` is the directory the library is opened from.

Rough on purpose: it does not check that a file found has the right ELF class (ld.so skips
those silently), and it does not follow the executable's own RPATH. The server may also run with
another `LD_LIBRARY_PATH` than this shell; the message says which one was used.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .binary import LibraryInfo

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
    "riscv64": "RISC-V",
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


def read_ldconfig_cache() -> dict[str, list[tuple[str, Path]]]:
    """`ldconfig -p` as name -> [(flags, path)]; empty when there is no ldconfig."""
    program = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)), None
    )
    if program is None:
        return {}
    try:
        output = subprocess.run(
            [program, "-p"], capture_output=True, text=True, errors="replace", timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    cache: dict[str, list[tuple[str, Path]]] = {}
    for line in output.splitlines():
        match = _CACHE_LINE.match(line)
        if match:
            cache.setdefault(match.group(1), []).append((match.group(2), Path(match.group(3))))
    return cache


class DependencyResolver:
    """Resolves needed libraries like ld.so would, with the system cache read at most once."""

    def __init__(
        self,
        *,
        environment: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        read_cache: Callable[[], dict[str, list[tuple[str, Path]]]] = read_ldconfig_cache,
    ) -> None:
        env = os.environ if environment is None else environment
        self._library_path = env.get("LD_LIBRARY_PATH", "")
        self._cwd = cwd or Path.cwd()
        self._read_cache = read_cache
        self._cache: dict[str, list[tuple[str, Path]]] | None = None
        self._exists: dict[str, bool] = {}

    def resolve(self, info: LibraryInfo, opened_from: Path) -> tuple[Dependency, ...]:
        """Where each of `info.needed` comes from when `opened_from` is dlopen'ed."""
        origin = Path(os.path.abspath(opened_from)).parent
        return tuple(self._resolve_one(name, info, origin) for name in info.needed)

    def searched(self, info: LibraryInfo, opened_from: Path) -> str:
        """Where the search looked, for a message: tags with $ORIGIN expanded, then the system."""
        origin = Path(os.path.abspath(opened_from)).parent
        parts = []
        for label, entries in self._search_order(info, origin):
            if label in ("RPATH", "RUNPATH", "LD_LIBRARY_PATH"):
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

        order: list[tuple[str, list[str]]] = []
        if info.rpath and not info.runpath:
            order.append(("RPATH", expanded(info.rpath)))
        library_path = (
            [p for p in self._library_path.split(":") if p and "$" not in p] if self._library_path else []
        )
        order.append(("LD_LIBRARY_PATH", library_path))
        if info.runpath:
            order.append(("RUNPATH", expanded(info.runpath)))
        order.append(("ld.so.cache", []))
        order.append(
            (f"the system directories ({', '.join(system_directories(info))})", system_directories(info))
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
                    directory if os.path.isabs(directory) else os.path.join(self._cwd, directory), name
                )
                if self._is_file(candidate):
                    return Dependency(name, Path(candidate), label.split(" (")[0])
        return Dependency(name, None, None)

    def _from_cache(self, name: str, arch: str) -> Path | None:
        if self._cache is None:  # `ldconfig -p` runs only once a name needs the cache
            self._cache = self._read_cache()
        tag = CACHE_TAGS.get(arch)
        for flags, path in self._cache.get(name, ()):
            tags = [part.strip() for part in flags.split(",")]
            if tag is None and arch in ("x86", "arm"):
                if len(tags) == 1 or (arch == "arm" and any("hard-float" in t for t in tags)):
                    return path
            elif tag is None or tag in tags:
                return path
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
    return directories + ["/lib", "/usr/lib"]
