"""Static readers of plugin library files: ELF, Mach-O and PE, read without ever loading them.

`read_library(path)` looks at the first bytes, hands the file to the reader of its format
(`elf.py`, `macho.py`, `pe.py`) and returns a `LibraryInfo`: plain facts for the checker's rules to
judge. It raises `BinaryFormatError` only when the file cannot be read as a binary at all, and
nothing else, whatever the bytes: every reader seeks to the headers and symbol tables it needs,
checks each size against the file first, and never reads a whole large library.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from plugin_packaging._fs.files import LIBRARY, InputTooLarge, NotRegularFile, open_input
from plugin_packaging.binary.info import (
    CORRUPT,
    ENTRY_STATES,
    NOT_A_BINARY,
    TRUNCATED,
    UNREADABLE,
    BinaryFormat,
    BinaryFormatError,
    EntryState,
    EntrySymbol,
    LibraryInfo,
)

if TYPE_CHECKING:
    from plugin_packaging.binary.bounded import BoundedFile

__all__ = [
    "CORRUPT",
    "ENTRY_STATES",
    "NOT_A_BINARY",
    "SNIFF_BYTES",
    "TRUNCATED",
    "UNREADABLE",
    "BinaryFormatError",
    "EntryState",
    "EntrySymbol",
    "LibraryInfo",
    "read_library",
    "sniff_format",
]

SNIFF_BYTES = 8  # enough of the head for `sniff_format` to tell every format apart

FORMAT_NAMES = {"elf": "ELF", "macho": "Mach-O", "pe": "PE"}
MACHO_MAGICS = {
    b"\xfe\xed\xfa\xce",
    b"\xce\xfa\xed\xfe",
    b"\xfe\xed\xfa\xcf",
    b"\xcf\xfa\xed\xfe",
}
FAT_MAGICS = {b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"}
# A Java class file starts with CAFEBABE too, followed by its version (major >= 45); a universal
# Mach-O follows it with its slice count, which is small. `file(1)` draws the line the same way.
MAX_FAT_SLICE_COUNT = 44


def sniff_format(head: bytes) -> Literal["elf", "macho", "pe"] | None:
    """The format the first bytes of a file announce (pass `SNIFF_BYTES` of them), or None."""
    if head.startswith(b"\x7fELF"):
        return "elf"
    if head[:4] in MACHO_MAGICS:
        return "macho"
    if head[:4] in FAT_MAGICS:
        if len(head) < 8:
            return "macho"  # too short to be either; the Mach-O reader reports it truncated
        return "macho" if int.from_bytes(head[4:8], "big") <= MAX_FAT_SLICE_COUNT else None
    if head.startswith(b"MZ"):
        return "pe"
    return None


def read_library(path: Path) -> LibraryInfo:
    """The facts of one library file; `BinaryFormatError` if it is not a readable binary."""
    from plugin_packaging.binary.bounded import BoundedFile

    path = Path(path)
    try:
        # Never waits on a named pipe called `x.so`; refuses devices and absurd sizes.
        stream = open_input(path, LIBRARY)
    except NotRegularFile as error:
        raise BinaryFormatError(UNREADABLE, f"{error} (not a library)", path) from None
    except InputTooLarge as error:
        raise BinaryFormatError(CORRUPT, str(error), path) from None
    except OSError as error:
        raise BinaryFormatError(
            UNREADABLE, f"cannot be opened: {error.strerror or error}", path
        ) from None
    with stream:
        size = os.fstat(stream.fileno()).st_size
        try:
            head = stream.read(SNIFF_BYTES)
        except OSError as error:
            raise BinaryFormatError(
                UNREADABLE, f"cannot be read: {error.strerror or error}", path
            ) from None
        binary_format = sniff_format(head)
        if binary_format is None:
            raise BinaryFormatError(
                NOT_A_BINARY,
                f"is not a library binary: {_describe_other(head, size)}",
                path,
                hint="a plugin library is the linker's shared-library output (cdylib): an ELF .so, "
                "a Mach-O .dylib or a PE .dll",
            )
        return _read_format(binary_format, BoundedFile(path, stream, size))


def _describe_other(head: bytes, size: int) -> str:
    """What a file that is no binary looks like, for the message."""
    if size == 0:
        return "the file is empty"
    if head.startswith(b"!<arch>"):
        return "it is a static archive (ar), which can only be linked into another binary"
    if head[:4] in FAT_MAGICS:
        return "it is a Java class file"
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):
        return "it is a text file (a linker script or a placeholder?)"
    return "it has no ELF, Mach-O or PE header"


def _read_format(binary_format: BinaryFormat, source: BoundedFile) -> LibraryInfo:
    if binary_format == "elf":
        from plugin_packaging.binary.elf import read_elf as reader
    elif binary_format == "macho":
        from plugin_packaging.binary.macho import read_macho as reader
    else:
        from plugin_packaging.binary.pe import read_pe as reader
    name = FORMAT_NAMES[binary_format]
    try:
        return reader(source)
    except BinaryFormatError:
        raise
    except OSError as error:
        raise source.fail(UNREADABLE, f"cannot be read: {error.strerror or error}") from None
    except Exception as error:
        # pyelftools, construct, pefile, macholib and struct report a malformed file through
        # dozens of exception types (ELFError, StreamError, PEFormatError, struct.error,
        # ValueError, IndexError, ...). The readers check every size against the file before
        # trusting it, so whatever the libraries still trip over is a corrupt header.
        raise source.fail(CORRUPT, f"is not a valid {name} file: {_describe(error)}") from None


def _describe(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
