"""Reading parts of a library file by offset, with every size checked against the file first.

Library headers are untrusted: a count or an offset can be anything. Readers fetch each structure
through `BoundedFile.read`, which refuses a range that leaves the file (a truncated file) or a size
above the caller's cap (a corrupt one) before anything is allocated, so no header can make a reader
allocate more than the file holds or read the whole of a 150 MiB library.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from plugin_packaging.binary.info import CORRUPT, TRUNCATED, BinaryFormatError

# Caps on single tables. Real plugin libraries stay far below them; a header asking for more is
# corrupt (or hostile), and refusing it keeps memory bounded even for huge files.
MAX_HEADER_TABLE = 16 << 20  # program/section headers, load commands, dynamic tags
MAX_SYMBOL_TABLE = 256 << 20  # symbol and string tables, export tries and directories

# Caps on counts that cost work later rather than memory now. Resolving dependencies looks each
# needed library up in each search directory: thousands of DT_NEEDED names times thousands of
# RUNPATH entries (a few KiB of file) would be millions of lookups. Real plugins need tens of
# libraries and have a handful of search directories.
MAX_NEEDED = 256  # DT_NEEDED names, LC_LOAD_DYLIB commands, imported DLLs
MAX_SEARCH_PATH = 32  # RPATH/RUNPATH entries, LC_RPATH commands
MAX_DYNAMIC_SYMBOLS = 1 << 21  # .dynsym entries counted through a hash table's chains


class BoundedFile:
    """An open library file whose reads must stay inside it."""

    def __init__(self, path: Path, stream: BinaryIO, size: int) -> None:
        self.path = path
        self.stream = stream
        self.size = size

    def fail(self, code: str, message: str) -> BinaryFormatError:
        return BinaryFormatError(code, message, self.path)

    def check(self, offset: int, size: int, what: str, cap: int | None = MAX_SYMBOL_TABLE) -> None:
        """Raise unless `size` bytes at `offset` lie in the file and under `cap` (None: no cap)."""
        if offset < 0 or size < 0:
            raise self.fail(CORRUPT, f"{what} has a negative offset or size")
        if cap is not None and size > cap:
            raise self.fail(
                CORRUPT, f"{what} claims {size} bytes, more than any real library holds"
            )
        if offset + size > self.size:
            raise self.fail(
                TRUNCATED,
                f"{what} ({size} bytes at offset {offset}) runs past the end of the file "
                f"({self.size} bytes)",
            )

    def read(self, offset: int, size: int, what: str, cap: int | None = MAX_SYMBOL_TABLE) -> bytes:
        """Exactly `size` bytes at `offset`, after `check`."""
        self.check(offset, size, what, cap)
        self.stream.seek(offset)
        data = self.stream.read(size)
        if len(data) != size:  # the file shrank while we read it
            raise self.fail(TRUNCATED, f"{what} could not be read in full")
        return data

    def check_count(self, count: int, cap: int, what: str) -> None:
        """Raise (corrupt) when a file lists more `what` than `cap`: bounded work for the checks."""
        if count > cap:
            raise self.fail(
                CORRUPT, f"lists {count} {what}, more than any real library does (at most {cap})"
            )

    def read_upto(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset`, fewer at the end of the file (for bounded strings)."""
        if offset < 0 or offset >= self.size:
            return b""
        self.stream.seek(offset)
        return self.stream.read(min(size, self.size - offset))


def c_string(table: bytes, offset: int) -> str | None:
    """The NUL-terminated string at `offset` of a string table, or None when it is outside it.

    Names are decoded leniently: a stray byte in a dependency name is a fact to show, not a reason
    to refuse the file.
    """
    if offset < 0 or offset >= len(table):
        return None
    end = table.find(b"\0", offset)
    if end < 0:
        end = len(table)
    return table[offset:end].decode("utf-8", errors="backslashreplace")
