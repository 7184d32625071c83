"""Read an ELF file's loader-relevant facts: type, machine, dynamic tags, stack, the entry symbol.

pyelftools supplies the structure layouts (`Elf_Ehdr`, `Elf_Shdr`, `Elf_Phdr`, `Elf_Sym`, decoded to
their enum names) and the constants. Walking the tables is done here, because pyelftools' own
walkers trust the headers: its string reads run to the next NUL however far that is, its
dynamic-tag loop runs until a DT_NULL that may never come, and decoding every symbol takes a second
on a large C++ library. Each table is read once, through `BoundedFile`, sized from its header and
checked against the file. Only the entries that matter are decoded: headers are picked by their
type word, dynamic tags are unpacked with `struct`, and only the symbols whose names contain the
entry name are decoded (see `symbol_scan`); that keeps a typical library near a millisecond.

What counts, as the Linux loader sees it:
- the dynamic section is found through PT_DYNAMIC (what ld.so reads), else the SHT_DYNAMIC section;
- the entry is "exported" when `.dynsym` defines it (st_shndx != SHN_UNDEF) as STT_FUNC or
  STT_GNU_IFUNC, binding GLOBAL, WEAK or GNU_UNIQUE, visibility DEFAULT or PROTECTED (dlsym finds
  protected symbols too);
- `.dynsym` is the SHT_DYNSYM section, or for a file without section headers the DT_SYMTAB table
  sized by its DT_HASH / DT_GNU_HASH hash table;
- `.symtab` is consulted only when `.dynsym` does not export the entry, to tell "hidden" from
  "absent" and to find mangled copies; it is absent from stripped files. A relocatable object has
  no dynamic table, so its `.symtab` is judged as its export table;
- an ET_DYN file is a shared library unless DT_FLAGS_1 has DF_1_PIE (glibc refuses to dlopen
  those) or, for linkers older than that flag, it has an interpreter (PT_INTERP) and no DT_SONAME.
"""

from __future__ import annotations

import functools
import struct
import sys
from array import array
from typing import Any, overload

from plugin_packaging.binary.bounded import (
    MAX_DYNAMIC_SYMBOLS,
    MAX_HEADER_TABLE,
    MAX_NEEDED,
    MAX_SEARCH_PATH,
    BoundedFile,
    c_string,
)
from plugin_packaging.binary.info import (
    CORRUPT,
    TRUNCATED,
    EntryState,
    EntrySymbol,
    LibraryInfo,
    best_state,
)
from plugin_packaging.binary.symbol_scan import entries_naming
from plugin_packaging.contract import ENTRY_SYMBOL

PN_XNUM = 0xFFFF
PF_X = 0x1
DF_1_PIE = 0x08000000
ODD_BYTES = bytes(value & 1 for value in range(256))  # maps a byte to its lowest bit
MAX_VARIANTS = 32  # mangled copies listed; enough to explain, bounded for the report

# pyelftools names 10 of st_info by its generic name: STB_GNU_UNIQUE / STT_GNU_IFUNC.
VISIBLE_BINDINGS = {"STB_GLOBAL", "STB_WEAK", "STB_LOOS"}
VISIBLE_VISIBILITIES = {"STV_DEFAULT", "STV_PROTECTED"}
FUNCTION_TYPES = {"STT_FUNC", "STT_LOOS"}

KINDS = {
    "ET_DYN": "shared-library",
    "ET_EXEC": "executable",
    "ET_REL": "relocatable",
    "ET_CORE": "core",
}

# e_machine -> normalised name (Rust's target_arch spelling, as plugin.yml's compatibility uses),
# keyed by (machine, bits, little endian) where the word size or byte order changes the name.
ARCHES: dict[Any, str] = {
    "EM_X86_64": "x86_64",
    "EM_AARCH64": "aarch64",
    "EM_386": "x86",
    "EM_ARM": "arm",
    "EM_PPC": "ppc",
    "EM_SPARCV9": "sparc64",
    "EM_LOONGARCH": "loongarch64",
    ("EM_RISCV", 64): "riscv64",
    ("EM_RISCV", 32): "riscv32",
    ("EM_PPC64", 64, True): "ppc64le",
    ("EM_PPC64", 64, False): "ppc64",
    ("EM_S390", 64): "s390x",
    ("EM_S390", 32): "s390",
    ("EM_MIPS", 64, True): "mips64el",
    ("EM_MIPS", 64, False): "mips64",
    ("EM_MIPS", 32, True): "mipsel",
    ("EM_MIPS", 32, False): "mips",
}


@functools.lru_cache(maxsize=64)
def _layouts(
    little: bool, bits: int, e_type: Any = None, e_machine: Any = None, osabi: Any = None
) -> Any:
    """pyelftools' structures for one kind of ELF file, built once: building them costs more than
    reading a small library. Without e_type they hold only the file header."""
    from elftools.elf.structs import ELFStructs

    layouts = ELFStructs(little_endian=little, elfclass=bits)
    layouts.create_basic_structs()
    if e_type is not None:
        layouts.create_advanced_structs(e_type, e_machine, osabi)
    return layouts


@functools.lru_cache(maxsize=1)
def _tags() -> dict[str, int]:
    from elftools.elf.enums import ENUM_D_TAG, ENUM_P_TYPE_BASE, ENUM_SH_TYPE_BASE

    names = (
        "DT_NULL",
        "DT_NEEDED",
        "DT_SONAME",
        "DT_RPATH",
        "DT_RUNPATH",
        "DT_FLAGS_1",
        "DT_STRTAB",
        "DT_STRSZ",
        "DT_SYMTAB",
        "DT_HASH",
        "DT_GNU_HASH",
    )
    found = {name: ENUM_D_TAG[name] for name in names}
    for name in ("SHT_SYMTAB", "SHT_DYNSYM", "SHT_STRTAB", "SHT_DYNAMIC"):
        found[name] = ENUM_SH_TYPE_BASE[name]
    for name in ("PT_LOAD", "PT_DYNAMIC", "PT_INTERP", "PT_GNU_STACK"):
        found[name] = ENUM_P_TYPE_BASE[name]
    return found


class ElfImage:
    """The parts of one ELF file the facts come from, each read once and bounds-checked."""

    def __init__(self, source: BoundedFile) -> None:
        self.source = source
        ident = source.read(0, 16, "the ELF identification")
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise source.fail(CORRUPT, f"unknown ELF class {ident[4]} or byte order {ident[5]}")
        self.bits = 32 if ident[4] == 1 else 64
        self.little = ident[5] == 1
        self.order = "<" if self.little else ">"
        basic = _layouts(self.little, self.bits)
        self.header = basic.Elf_Ehdr.parse(
            source.read(0, basic.Elf_Ehdr.sizeof(), "the ELF file header")
        )
        self.layouts = _layouts(
            self.little,
            self.bits,
            self.header.e_type,
            self.header.e_machine,
            self.header.e_ident.EI_OSABI,
        )
        self.tags = _tags()
        self.section_table = self._section_table()
        self.program_table = self._program_table()
        self._segments: dict[str, list[Any]] = {}

    # -- header tables ----------------------------------------------------------------------

    def _raw_table(
        self, offset: int, count: int, entry_size: int, layout: Any, what: str
    ) -> list[bytes]:
        if count == 0:
            return []
        if entry_size < layout.sizeof():
            raise self.source.fail(CORRUPT, f"{what} entries are {entry_size} bytes, too small")
        data = self.source.read(offset, count * entry_size, what, MAX_HEADER_TABLE)
        return [data[i : i + entry_size] for i in range(0, len(data), entry_size)]

    def _section_table(self) -> list[bytes]:
        offset, count, size = self.header.e_shoff, self.header.e_shnum, self.header.e_shentsize
        if offset == 0:
            return []
        layout = self.layouts.Elf_Shdr
        if count == 0:
            # SHN_LORESERVE sections or more: the real count is in section 0's sh_size.
            first = self._raw_table(offset, 1, size, layout, "the section header table")[0]
            count = layout.parse(first).sh_size
        return self._raw_table(offset, count, size, layout, "the section header table")

    def _program_table(self) -> list[bytes]:
        count = self.header.e_phnum
        if count == PN_XNUM:
            # PN_XNUM program headers or more: the real count is in section 0's sh_info.
            if not self.section_table:
                raise self.source.fail(CORRUPT, "e_phnum is PN_XNUM but there is no section 0")
            count = self.layouts.Elf_Shdr.parse(self.section_table[0]).sh_info
        return self._raw_table(
            self.header.e_phoff,
            count,
            self.header.e_phentsize,
            self.layouts.Elf_Phdr,
            "the program header table",
        )

    def sections(self, type_name: str) -> list[Any]:
        """Decoded section headers of one type; the rest are never decoded."""
        wanted = self.tags[type_name]
        return [
            self.layouts.Elf_Shdr.parse(raw)
            for raw in self.section_table
            if struct.unpack_from(self.order + "I", raw, 4)[0] == wanted
        ]

    def section(self, index: int) -> Any:
        if not 0 <= index < len(self.section_table):
            raise self.source.fail(
                CORRUPT, f"a section header links to section {index}, which does not exist"
            )
        return self.layouts.Elf_Shdr.parse(self.section_table[index])

    def segments(self, type_name: str) -> list[Any]:
        """Decoded program headers of one type, decoded once per image.

        Reading one library asks for PT_LOAD several times (bounds, then every address it
        translates); pyelftools' parse of the same bytes each time was the check's hot spot.
        """
        cached = self._segments.get(type_name)
        if cached is None:
            wanted = self.tags[type_name]
            cached = self._segments[type_name] = [
                self.layouts.Elf_Phdr.parse(raw)
                for raw in self.program_table
                if struct.unpack_from(self.order + "I", raw, 0)[0] == wanted
            ]
        return cached

    def file_offset(self, address: int, size: int = 1) -> int | None:
        """The file offset of a virtual address, through the PT_LOAD segment that maps it."""
        for segment in self.segments("PT_LOAD"):
            start = segment.p_vaddr
            if start <= address and address + size <= start + segment.p_filesz:
                offset: int = segment.p_offset + (address - start)
                return offset
        return None


def read_elf(source: BoundedFile) -> LibraryInfo:
    """The facts of the ELF file behind `source` (any byte string starting with the ELF magic)."""
    image = ElfImage(source)
    elf_type = image.header.e_type
    for segment in image.segments("PT_LOAD"):
        # What the loader maps must be in the file: a library cut short fails here.
        source.check(segment.p_offset, segment.p_filesz, "a loadable segment", cap=None)
    dynamic = DynamicTable.read(image)

    soname = dynamic.first_string("DT_SONAME")
    interpreter = bool(image.segments("PT_INTERP"))
    is_pie = bool(dynamic.first_value("DT_FLAGS_1", 0) & DF_1_PIE) or (
        interpreter and soname is None
    )
    if elf_type == "ET_DYN":
        kind = "executable" if is_pie else "shared-library"
    else:
        kind = KINDS.get(elf_type, elf_type if isinstance(elf_type, str) else f"{elf_type:#x}")

    needed = dynamic.strings("DT_NEEDED")
    source.check_count(len(needed), MAX_NEEDED, "needed libraries (DT_NEEDED)")
    rpath = _search_path(dynamic.strings("DT_RPATH"))
    runpath = _search_path(dynamic.strings("DT_RUNPATH"))
    source.check_count(len(rpath) + len(runpath), MAX_SEARCH_PATH, "RPATH/RUNPATH entries")
    return LibraryInfo(
        path=source.path,
        format="elf",
        platform="linux",
        kind=kind,
        is_shared_library=kind == "shared-library",
        bits=image.bits,
        endianness="little" if image.little else "big",
        arch=_arch(image.header.e_machine, image.bits, image.little),
        entry=_entry_symbol(image, dynamic),
        needed=needed,
        rpath=rpath,
        runpath=runpath,
        executable_stack=_executable_stack(image),
        soname=soname,
    )


def _arch(machine: Any, bits: int, little: bool) -> str:
    for key in ((machine, bits, little), (machine, bits), machine):
        if key in ARCHES:
            return ARCHES[key]
    return machine if isinstance(machine, str) else f"{machine:#x}"


def _search_path(values: tuple[str, ...]) -> tuple[str, ...]:
    # Empty components are kept: to ld.so an empty entry means the current directory.
    return tuple(part for value in values for part in value.split(":"))


def _executable_stack(image: ElfImage) -> bool | None:
    if image.header.e_type in ("ET_REL", "ET_CORE"):
        return None  # nothing is mapped from these; the linker decides from .note.GNU-stack
    for segment in image.segments("PT_GNU_STACK"):
        return bool(segment.p_flags & PF_X)
    # Without PT_GNU_STACK the Linux kernel and glibc give the process an executable stack.
    return True


class DynamicTable:
    """The dynamic tags of a file and the string table their names live in."""

    def __init__(self, tags: dict[int, list[int]], strings: bytes, names: dict[str, int]) -> None:
        self.tags = tags
        self.string_table = strings
        self.names = names

    @classmethod
    def read(cls, image: ElfImage) -> DynamicTable:
        """The tags through PT_DYNAMIC (what ld.so reads), else the SHT_DYNAMIC section."""
        names = image.tags
        location = next(((s.p_offset, s.p_filesz) for s in image.segments("PT_DYNAMIC")), None)
        if location is None:
            location = next(((s.sh_offset, s.sh_size) for s in image.sections("SHT_DYNAMIC")), None)
        if location is None:
            return cls({}, b"", names)
        entry = struct.Struct(image.order + ("iI" if image.bits == 32 else "qQ"))
        offset, size = location
        data = image.source.read(
            offset, size - size % entry.size, "the dynamic section", MAX_HEADER_TABLE
        )
        tags: dict[int, list[int]] = {}
        for tag, value in entry.iter_unpack(data):
            if tag == names["DT_NULL"]:
                break
            tags.setdefault(tag, []).append(value)
        table = cls(tags, b"", names)
        table.string_table = table._read_strings(image)
        return table

    def _read_strings(self, image: ElfImage) -> bytes:
        address, length = self.first_value("DT_STRTAB"), self.first_value("DT_STRSZ")
        if address is None or length is None:
            return b""
        offset = image.file_offset(address, length)
        if offset is None:
            # ld.so finds names through DT_STRTAB; an object no PT_LOAD maps still has the
            # SHT_DYNAMIC section's linked string table.
            linked = image.sections("SHT_DYNAMIC")
            if not linked:
                raise image.source.fail(CORRUPT, "DT_STRTAB points outside every loaded segment")
            strings = image.section(linked[0].sh_link)
            offset, length = strings.sh_offset, strings.sh_size
        return image.source.read(offset, length, "the dynamic string table")

    def values(self, name: str) -> list[int]:
        return self.tags.get(self.names[name], [])

    @overload
    def first_value(self, name: str) -> int | None: ...
    @overload
    def first_value(self, name: str, default: int) -> int: ...
    def first_value(self, name: str, default: int | None = None) -> int | None:
        found = self.values(name)
        return found[0] if found else default

    def strings(self, name: str) -> tuple[str, ...]:
        found = (c_string(self.string_table, value) for value in self.values(name))
        return tuple(text for text in found if text is not None)

    def first_string(self, name: str) -> str | None:
        found = self.strings(name)
        return found[0] if found else None


def _entry_symbol(image: ElfImage, dynamic: DynamicTable) -> EntrySymbol:
    states: list[EntryState] = []
    variants: list[str] = []
    dynsym = _dynamic_symbols(image, dynamic)
    if dynsym is not None:
        found_states, found_variants = _symbol_states(image, *dynsym, dynamic=True)
        states += found_states
        variants += found_variants
    if best_state(states) != "exported":
        symtab = _section_symbols(image, "SHT_SYMTAB")
        if symtab is not None:
            # A relocatable object has no dynamic table: its .symtab is what it would export.
            as_exports = dynsym is None and image.header.e_type == "ET_REL"
            found_states, found_variants = _symbol_states(image, *symtab, dynamic=as_exports)
            states += found_states
            variants += found_variants
    unique = tuple(dict.fromkeys(variants))[:MAX_VARIANTS]
    return EntrySymbol(state=best_state(states), variants=unique)


def _symbol_states(
    image: ElfImage, table: bytes, strings: bytes, dynamic: bool
) -> tuple[list[EntryState], list[str]]:
    """The states of the symbols named exactly like the entry, and the other names containing it."""
    layout = image.layouts.Elf_Sym
    entry_size = layout.sizeof()
    states: list[EntryState] = []
    variants: list[str] = []
    for index, name in entries_naming(table, entry_size, image.little, strings, ENTRY_SYMBOL):
        if name != ENTRY_SYMBOL:
            variants.append(name)
            continue
        symbol = layout.parse(table[index * entry_size : (index + 1) * entry_size])
        states.append(_state(symbol, dynamic))
    return states, variants


def _state(symbol: Any, dynamic: bool) -> EntryState:
    if symbol.st_shndx == "SHN_UNDEF":
        return "undefined"
    visible = (
        symbol.st_info.bind in VISIBLE_BINDINGS
        and symbol.st_other.visibility in VISIBLE_VISIBILITIES
    )
    if not (dynamic and visible):
        return "hidden"
    return "exported" if symbol.st_info.type in FUNCTION_TYPES else "not-a-function"


def _section_symbols(image: ElfImage, section_type: str) -> tuple[bytes, bytes] | None:
    """(symbol table, string table) bytes of the first section of `section_type`, or None."""
    found = image.sections(section_type)
    if not found:
        return None
    section = found[0]
    strings = image.section(section.sh_link)
    if strings.sh_type != "SHT_STRTAB":
        raise image.source.fail(
            CORRUPT, f"the {section_type} section does not link to a string table"
        )
    what = "the dynamic symbol table" if section_type == "SHT_DYNSYM" else "the symbol table"
    return (
        image.source.read(section.sh_offset, section.sh_size, what),
        image.source.read(strings.sh_offset, strings.sh_size, f"the string table of {what}"),
    )


def _dynamic_symbols(image: ElfImage, dynamic: DynamicTable) -> tuple[bytes, bytes] | None:
    """(symbol table, string table) bytes of .dynsym: the section, else DT_SYMTAB."""
    found = _section_symbols(image, "SHT_DYNSYM")
    if found is not None or image.section_table:
        return found
    # No section headers (sstrip'ed): ld.so finds the table through DT_SYMTAB and knows its length
    # only from a hash table.
    address = dynamic.first_value("DT_SYMTAB")
    if address is None:
        return None
    offset = image.file_offset(address)
    if offset is None:
        raise image.source.fail(CORRUPT, "DT_SYMTAB points outside every loaded segment")
    count = _symbol_count(image, dynamic)
    entry_size = image.layouts.Elf_Sym.sizeof()
    table = image.source.read(offset, count * entry_size, "the dynamic symbol table")
    return table, dynamic.string_table


def _symbol_count(image: ElfImage, dynamic: DynamicTable) -> int:
    """The number of .dynsym entries: DT_HASH's nchain, or the end of DT_GNU_HASH's last chain."""
    source = image.source
    address = dynamic.first_value("DT_HASH")
    if address is not None:
        offset = image.file_offset(address, 8)
        if offset is None:
            raise source.fail(CORRUPT, "DT_HASH points outside every loaded segment")
        count = _words(source.read(offset + 4, 4, "the DT_HASH header"), image.little)[0]
        source.check_count(count, MAX_DYNAMIC_SYMBOLS, "dynamic symbols (DT_HASH nchain)")
        return int(count)

    address = dynamic.first_value("DT_GNU_HASH")
    offset = None if address is None else image.file_offset(address, 16)
    if offset is None:
        raise source.fail(
            CORRUPT, "no DT_HASH or DT_GNU_HASH gives the size of the dynamic symbol table"
        )
    bucket_count, first_hashed, bloom_words, _shift = _words(
        source.read(offset, 16, "the DT_GNU_HASH header"), image.little
    )
    buckets_at = offset + 16 + bloom_words * (image.bits // 8)
    buckets = _words(
        source.read(buckets_at, bucket_count * 4, "the DT_GNU_HASH buckets"), image.little
    )
    last = max(buckets, default=0)
    if last < first_hashed:
        return first_hashed  # no hashed symbols: only the unhashed ones before symoffset
    # Walk the chain of the highest bucket to its end, the first word with its lowest bit set;
    # each word is one symbol. Scanned a block at a time in C: a corrupt chain may never end.
    chain_at = buckets_at + bucket_count * 4 + (last - first_hashed) * 4
    low_byte = 0 if image.little else 3
    while True:
        # A chain that never ends (no word with its low bit set) stops at the cap, not at the end
        # of a large file.
        source.check_count(last, MAX_DYNAMIC_SYMBOLS, "dynamic symbols (DT_GNU_HASH chains)")
        block = source.read_upto(chain_at, 1 << 16)
        block = block[: len(block) - len(block) % 4]
        if not block:
            raise source.fail(TRUNCATED, "the DT_GNU_HASH chain runs past the end of the file")
        end = block[low_byte::4].translate(ODD_BYTES).find(1)
        if end >= 0:
            return last + end + 1
        last += len(block) // 4
        chain_at += len(block)


def _words(data: bytes, little: bool) -> array[int]:
    """32-bit words of the file's byte order."""
    words = array("I")
    words.frombytes(data[: len(data) - len(data) % 4])
    if little != (sys.byteorder == "little"):
        words.byteswap()
    return words
