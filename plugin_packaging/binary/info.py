"""The facts a static read of one library file produces, and the error for files that are no binary.

A reader (`elf.py`, `pe.py`, `macho.py`) turns a file into a `LibraryInfo`: format, platform,
architecture, what kind of file it is, how the entry symbol is present, what it needs at load time.
These values say nothing about whether the file is acceptable; the checker's rules decide that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from plugin_packaging.errors import PackagingError
from plugin_packaging.target import Platform

BinaryFormat = Literal["elf", "macho", "pe"]

# How the entry symbol shows in the file, best first:
#   exported        the loader's dlsym/GetProcAddress finds it and it is code
#   not-a-function  the loader finds it, but it names data (or has no type), not code
#   hidden          defined in the file, but not visible to the loader (local or hidden visibility)
#   undefined       the file only refers to it, expecting another library to define it
#   absent          no symbol of that exact name at all
EntryState = Literal["exported", "not-a-function", "hidden", "undefined", "absent"]
ENTRY_STATES: tuple[EntryState, ...] = (
    "exported",
    "not-a-function",
    "hidden",
    "undefined",
    "absent",
)

# Codes of BinaryFormatError.
NOT_A_BINARY = "not-a-binary"  # no known magic: a text file, an archive, a Java class, ...
TRUNCATED = "truncated"  # the headers point past the end of the file
CORRUPT = "corrupt"  # the headers contradict themselves or hold impossible values
UNREADABLE = "unreadable"  # the operating system refused to open or read it, or not a regular file

DEFAULT_HINTS = {
    TRUNCATED: "the file was cut short (an interrupted copy or download?): build or copy it again",
    CORRUPT: "the file is damaged or was not written by a linker: rebuild the library",
    UNREADABLE: "check that the path names a readable regular file",
}


class BinaryFormatError(PackagingError):
    """The file cannot be read as a library binary at all: not one, truncated, or corrupt.

    A `PackagingError`, so that one escaping to the user renders as a readable message; the checker
    normally turns it into a finding about the file instead.
    """

    def __init__(self, code: str, message: str, path: Path | str, hint: str | None = None) -> None:
        super().__init__(code, message, path, hint or DEFAULT_HINTS.get(code))


def best_state(states: list[EntryState]) -> EntryState:
    """The state the loader would meet when one name shows up several times (UNDEF and local)."""
    return min(states, key=ENTRY_STATES.index, default="absent")


@dataclass(frozen=True)
class EntrySymbol:
    """How the entry symbol appears in one library."""

    state: EntryState
    # Other symbol names that contain the entry name: a C++ or Rust mangled copy (the function
    # was written without `extern "C"` / `#[no_mangle]`), or a prefixed hidden copy. They explain
    # an "absent" state; the loader never looks them up.
    variants: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "variants": list(self.variants)}


@dataclass(frozen=True)
class LibraryInfo:
    """What one library file says about itself, read without loading it.

    For a Mach-O universal (fat) file the top-level fields describe the first slice, except that
    `arch` is "universal"; every slice is in `slices`, fully read. Rules about the entry symbol,
    dependencies or architecture should look at `every_slice()`. Thin files have no slices.
    """

    path: Path
    format: BinaryFormat
    platform: Platform  # what the format implies: ELF -> linux, Mach-O -> macos, PE -> windows
    # "shared-library", "executable", "relocatable", "core", "bundle" (Mach-O MH_BUNDLE, which
    # dlopen also loads), or the raw type name of anything rarer ("ET_NONE", "MH_DYLINKER").
    kind: str
    is_shared_library: bool  # could the platform's dlopen/LoadLibrary load it as a library
    bits: int  # 32 or 64
    endianness: Literal["little", "big"]
    # Normalised: "x86_64", "aarch64", "x86", "arm", "riscv64", "ppc64le", ... else the raw name.
    arch: str
    entry: EntrySymbol
    needed: tuple[str, ...] = ()  # DT_NEEDED / LC_LOAD_DYLIB (and weak, re-export) / PE imports
    rpath: tuple[str, ...] = ()  # DT_RPATH split on ':' / LC_RPATH
    runpath: tuple[str, ...] = ()  # DT_RUNPATH split on ':'
    executable_stack: bool | None = None  # ELF only: PT_GNU_STACK with PF_X, or no PT_GNU_STACK
    soname: str | None = None  # DT_SONAME / LC_ID_DYLIB install name / PE export-directory name
    slices: tuple[LibraryInfo, ...] = field(default=())

    def every_slice(self) -> tuple[LibraryInfo, ...]:
        """The slices of a universal file, or the file itself."""
        return self.slices or (self,)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping, keys in a fixed order."""
        return {
            "path": str(self.path),
            "format": self.format,
            "platform": self.platform,
            "kind": self.kind,
            "is_shared_library": self.is_shared_library,
            "bits": self.bits,
            "endianness": self.endianness,
            "arch": self.arch,
            "entry": self.entry.to_dict(),
            "needed": list(self.needed),
            "rpath": list(self.rpath),
            "runpath": list(self.runpath),
            "executable_stack": self.executable_stack,
            "soname": self.soname,
            "slices": [part.to_dict() for part in self.slices],
        }
