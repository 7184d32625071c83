"""Read a PE (Windows DLL or EXE) file's loader-relevant facts: machine, DLL flag, exports, imports.

pefile parses the headers, the section table and the data directories (`fast_load=True`, over a
`FileView` that reads only the slices it asks for) and maps RVAs to file offsets. The export and
import directories are walked here instead of with pefile's `parse_data_directories`: its export
walker copies the whole section holding the export names into
memory (the 100 MiB `.rdata` of a large DLL), stops at 8192 exports, and its import walker loops
until an all-zero descriptor that a corrupt file need not have. Here both are bounded by the sizes
their directory entries declare.

What counts, as LoadLibrary/GetProcAddress see it:
- a file with IMAGE_FILE_DLL is a shared library;
- the entry is "exported" when the export directory names it and its address lies in an executable
  section, or it forwards to another DLL; "not-a-function" when it names data;
- a DLL carries no symbol table of unexported functions (the linker leaves it to the PDB), so PE
  never reports "hidden"; and imports are read as DLL names only, so never "undefined";
- `needed` lists the DLLs of the import directory, in order; delay-loaded DLLs are not needed at
  load time and are not listed;
- `soname` is the DLL name recorded in the export directory.
"""

from __future__ import annotations

import struct
from typing import Any, overload

from plugin_packaging.binary.bounded import MAX_HEADER_TABLE, MAX_NEEDED, BoundedFile
from plugin_packaging.binary.info import (
    CORRUPT,
    NOT_A_BINARY,
    EntryState,
    EntrySymbol,
    LibraryInfo,
)
from plugin_packaging.binary.symbol_scan import name_offsets_containing
from plugin_packaging.contract import ENTRY_SYMBOL

IMAGE_FILE_EXECUTABLE_IMAGE = 0x0002
IMAGE_FILE_DLL = 0x2000
IMAGE_SCN_CNT_CODE = 0x00000020
IMAGE_SCN_MEM_EXECUTE = 0x20000000
EXPORT_DIRECTORY, IMPORT_DIRECTORY = 0, 1
EXPORT_DIRECTORY_SIZE = 40
IMPORT_DESCRIPTOR_SIZE = 20
MAX_NAME = 4096  # bytes read for one DLL or export name
MAX_IMPORTED_DLLS = 4096
MAX_EXPORTS = 1 << 16  # export ordinals are 16-bit: no real table is longer
MAX_NAME_BLOCK = 64 << 20  # export names read as one block up to this size
MAX_VARIANTS = 32
MAX_STUB_SEARCH = 64 << 10

ARCHES = {
    0x8664: "x86_64",  # IMAGE_FILE_MACHINE_AMD64
    0xAA64: "aarch64",  # IMAGE_FILE_MACHINE_ARM64
    0x014C: "x86",  # IMAGE_FILE_MACHINE_I386
    0x01C4: "arm",  # IMAGE_FILE_MACHINE_ARMNT
    0x01C0: "arm",
    0x01C2: "arm",  # IMAGE_FILE_MACHINE_THUMB
    0xA641: "arm64ec",
    0x5064: "riscv64",
    0x5032: "riscv32",
    0x6264: "loongarch64",
}


def read_pe(source: BoundedFile) -> LibraryInfo:
    """The facts of the PE file behind `source` (any byte string starting with "MZ")."""
    import pefile

    dos_header = source.read(0, 64, "the DOS header")
    pe_offset = int.from_bytes(dos_header[0x3C:0x40], "little")
    if source.read(pe_offset, 4, "the PE signature", cap=None) != b"PE\0\0":
        raise source.fail(
            NOT_A_BINARY, "the file starts like a DOS program (MZ) but has no PE header"
        )
    coff = source.read(pe_offset + 4, 20, "the COFF file header")
    section_count = struct.unpack_from("<H", coff, 2)[0]
    optional_size = struct.unpack_from("<H", coff, 16)[0]
    # pefile parses these before anything else: check their extent, so a cut file reads truncated.
    source.check(pe_offset + 24, optional_size, "the optional header")
    source.check(pe_offset + 24 + optional_size, section_count * 40, "the section table")
    image = pefile.PE(data=FileView(source), fast_load=True)
    return _facts(source, image, pefile)


class FileView:
    """The file as the read-only byte string pefile parses, read piece by piece when sliced.

    pefile would otherwise take the whole file as bytes, or map it into memory, where a file
    truncated by another process while we read kills the process with SIGBUS. pefile only slices
    its data, takes its length and searches the DOS stub for the Rich header.
    """

    def __init__(self, source: BoundedFile) -> None:
        self.source = source

    def __len__(self) -> int:
        return self.source.size

    @overload
    def __getitem__(self, key: slice) -> bytes: ...
    @overload
    def __getitem__(self, key: int) -> int: ...
    def __getitem__(self, key: slice | int) -> bytes | int:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.source.size)
            if step != 1:
                raise TypeError("PE data is read in contiguous slices only")
            if stop <= start:
                return b""
            # Every structure pefile reads is small; a header that makes it slice megabytes
            # (a huge first-section offset, say) is corrupt.
            return self.source.read(start, stop - start, "a PE header structure", MAX_HEADER_TABLE)
        index = key + self.source.size if key < 0 else key
        return self.source.read(index, 1, "a PE header byte")[0]

    def find(self, needle: bytes, start: int = 0, end: int | None = None) -> int:
        # Only used to find the Rich header in the DOS stub, which lies in the first kilobytes.
        end = self.source.size if end is None else min(end, self.source.size)
        window = self[start : min(end, start + MAX_STUB_SEARCH)]
        found = window.find(needle)
        return found + start if found >= 0 else -1


def _facts(source: BoundedFile, image: Any, pefile: Any) -> LibraryInfo:
    machine = image.FILE_HEADER.Machine
    characteristics = image.FILE_HEADER.Characteristics
    if image.PE_TYPE == pefile.OPTIONAL_HEADER_MAGIC_PE_PLUS:
        bits = 64
    elif image.PE_TYPE == pefile.OPTIONAL_HEADER_MAGIC_PE:
        bits = 32
    else:
        raise source.fail(CORRUPT, f"unknown optional header magic {image.PE_TYPE:#x}")
    if characteristics & IMAGE_FILE_DLL:
        kind = "shared-library"
    elif characteristics & IMAGE_FILE_EXECUTABLE_IMAGE:
        kind = "executable"
    else:
        kind = "image"  # linked, but marked as not runnable (a failed link)

    for section in image.sections:
        # What the loader maps must be in the file: a DLL cut short fails here.
        name = section.Name.rstrip(b"\0").decode("ascii", errors="replace")
        source.check(section.PointerToRawData, section.SizeOfRawData, f"section {name}", cap=None)
    exports = ExportDirectory.read(source, image)
    needed = _imported_dlls(source, image)
    source.check_count(len(needed), MAX_NEEDED, "imported DLLs")
    return LibraryInfo(
        path=source.path,
        format="pe",
        platform="windows",
        kind=kind,
        is_shared_library=kind == "shared-library",
        bits=bits,
        endianness="little",
        arch=ARCHES.get(machine) or pefile.MACHINE_TYPE.get(machine, f"{machine:#x}"),
        entry=exports.entry_symbol(),
        needed=needed,
        soname=exports.dll_name,
    )


def _directory(image: Any, index: int) -> tuple[int, int]:
    """(RVA, size) of a data directory, (0, 0) when the header has fewer entries."""
    directories = image.OPTIONAL_HEADER.DATA_DIRECTORY
    if index >= len(directories):
        return 0, 0
    return directories[index].VirtualAddress, directories[index].Size


def _read_rva(source: BoundedFile, image: Any, rva: int, size: int, what: str) -> bytes:
    return source.read(image.get_offset_from_rva(rva), size, what)


def _name_at(source: BoundedFile, image: Any, rva: int) -> str:
    data = source.read_upto(image.get_offset_from_rva(rva), MAX_NAME)
    return data.split(b"\0", 1)[0].decode("utf-8", errors="backslashreplace")


def _imported_dlls(source: BoundedFile, image: Any) -> tuple[str, ...]:
    rva, size = _directory(image, IMPORT_DIRECTORY)
    if rva == 0 or size == 0:
        return ()
    # The table ends with an all-zero descriptor; its declared size bounds it when that is missing.
    count = min(size // IMPORT_DESCRIPTOR_SIZE, MAX_IMPORTED_DLLS)
    table = _read_rva(source, image, rva, count * IMPORT_DESCRIPTOR_SIZE, "the import directory")
    names = []
    for index in range(count):
        descriptor = table[index * IMPORT_DESCRIPTOR_SIZE : (index + 1) * IMPORT_DESCRIPTOR_SIZE]
        if descriptor == bytes(IMPORT_DESCRIPTOR_SIZE):
            break
        name_rva = struct.unpack_from("<I", descriptor, 12)[0]
        names.append(_name_at(source, image, name_rva))
    return tuple(names)


class ExportDirectory:
    """The named exports of a PE image, looked up without decoding every name."""

    def __init__(
        self,
        dll_name: str | None,
        entry_rvas: list[int],
        variants: list[str],
        directory: tuple[int, int],
        image: Any,
    ) -> None:
        self.dll_name = dll_name
        self.entry_rvas = entry_rvas  # code addresses exported under the entry's exact name
        self.variants = variants
        self.directory = directory
        self.image = image

    @classmethod
    def read(cls, source: BoundedFile, image: Any) -> ExportDirectory:
        rva, size = _directory(image, EXPORT_DIRECTORY)
        if rva == 0 or size == 0:
            return cls(None, [], [], (0, 0), image)
        header = _read_rva(source, image, rva, EXPORT_DIRECTORY_SIZE, "the export directory")
        (name_rva, _base, function_count, name_count, functions_rva, names_rva, ordinals_rva) = (
            struct.unpack_from("<7I", header, 12)
        )
        if function_count > MAX_EXPORTS or name_count > MAX_EXPORTS:
            raise source.fail(CORRUPT, "the export directory lists more than 65536 exports")
        functions = _read_rva(
            source, image, functions_rva, function_count * 4, "the export address table"
        )
        names = _read_rva(source, image, names_rva, name_count * 4, "the export name table")
        ordinals = _read_rva(
            source, image, ordinals_rva, name_count * 2, "the export ordinal table"
        )
        name_rvas = struct.unpack(f"<{name_count}I", names)

        entry_rvas: list[int] = []
        variants: list[str] = []
        for index, name in _names_containing(source, image, name_rvas, ENTRY_SYMBOL):
            if name != ENTRY_SYMBOL:
                variants.append(name)
                continue
            ordinal = struct.unpack_from("<H", ordinals, index * 2)[0]
            if ordinal >= function_count:
                raise source.fail(
                    CORRUPT, "an export's ordinal lies outside the export address table"
                )
            entry_rvas.append(struct.unpack_from("<I", functions, ordinal * 4)[0])
        dll_name = _name_at(source, image, name_rva) if name_rva else None
        return cls(dll_name, entry_rvas, variants[:MAX_VARIANTS], (rva, size), image)

    def entry_symbol(self) -> EntrySymbol:
        states: list[EntryState] = [self._state(rva) for rva in self.entry_rvas]
        state: EntryState = "absent"
        if "exported" in states:
            state = "exported"
        elif states:
            state = "not-a-function"
        return EntrySymbol(state=state, variants=tuple(dict.fromkeys(self.variants)))

    def _state(self, rva: int) -> EntryState:
        start, size = self.directory
        if start <= rva < start + size:
            return "exported"  # a forwarder ("other.dll.name"): GetProcAddress follows it
        section = self.image.get_section_by_rva(rva)
        if section is not None and section.Characteristics & (
            IMAGE_SCN_MEM_EXECUTE | IMAGE_SCN_CNT_CODE
        ):
            return "exported"
        return "not-a-function"


def _names_containing(
    source: BoundedFile, image: Any, name_rvas: tuple[int, ...], word: str
) -> list[tuple[int, str]]:
    """(index in the name table, name) of the export names containing `word`.

    Linkers write the export names one after another; they are read as one block spanning the
    lowest to the highest name and searched with `bytes.find`, falling back to one read per name
    when they are scattered over several sections.
    """
    if not name_rvas:
        return []
    low, high = min(name_rvas), max(name_rvas)
    low_offset, high_offset = image.get_offset_from_rva(low), image.get_offset_from_rva(high)
    if high_offset - low_offset == high - low and high - low <= MAX_NAME_BLOCK:
        block = source.read_upto(low_offset, high - low + MAX_NAME)
        wanted = name_offsets_containing(block, word.encode())
        found = []
        for index, rva in enumerate(name_rvas):
            span = wanted.get(rva - low)
            if span is not None:
                found.append(
                    (index, block[span[0] : span[1]].decode("utf-8", errors="backslashreplace"))
                )
        return found
    found = []
    for index, rva in enumerate(name_rvas):
        name = _name_at(source, image, rva)
        if word in name:
            found.append((index, name))
    return found
