"""Read an ELF file's loader-relevant facts: type, machine, dynamic tags, stack, the entry symbol.

The structures are decoded here with `struct`, from the ELF specification's layouts and constants:
a check runs after every install, and pyelftools costs more than the reading itself there (its
import, with construct and pdb, takes about 8 ms; its parser about 30 us per header, which on 200
small libraries was most of a check's time). pyelftools is still the authority the tests compare
these readings with, and names an unusual machine (`_machine_name`).

The tables are walked here too, because pyelftools' own walkers trust the headers: its string
reads run to the next NUL however far that is, its dynamic-tag loop runs until a DT_NULL that may
never come, and decoding every symbol takes a second on a large C++ library. Each table is read
once, through `BoundedFile`, sized from its header and checked against the file. Only the entries
that matter are decoded: headers are picked by their type word, dynamic tags are unpacked with
`struct`, and only the symbols whose names contain the entry name are decoded (see
`symbol_scan`); that keeps a typical library well under a millisecond.

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
import operator
import struct
import sys
from array import array
from typing import Any, NamedTuple

from plugin_packaging.binary.bounded import MAX_HEADER_TABLE, BoundedFile, c_string
from plugin_packaging.binary.info import (
    CORRUPT,
    ENTRY_SYMBOL,
    TRUNCATED,
    EntryState,
    EntrySymbol,
    LibraryInfo,
    best_state,
)
from plugin_packaging.binary.symbol_scan import entries_naming

PN_XNUM = 0xFFFF
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
PF_X = 0x1
DF_1_PIE = 0x08000000
ODD_BYTES = bytes(value & 1 for value in range(256))  # maps a byte to its lowest bit
MAX_VARIANTS = 32  # mangled copies listed; enough to explain, bounded for the report

# st_info's binding and type, st_other's visibility (10 is GNU's STB_GNU_UNIQUE / STT_GNU_IFUNC).
STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 1, 2, 10
STT_FUNC, STT_GNU_IFUNC = 2, 10
STV_DEFAULT, STV_PROTECTED = 0, 3
VISIBLE_BINDINGS = {STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE}
VISIBLE_VISIBILITIES = {STV_DEFAULT, STV_PROTECTED}
FUNCTION_TYPES = {STT_FUNC, STT_GNU_IFUNC}

# The tag and type numbers this reader looks for (ELF gABI and the GNU extensions).
TAGS = {
    "DT_NULL": 0,
    "DT_NEEDED": 1,
    "DT_HASH": 4,
    "DT_STRTAB": 5,
    "DT_SYMTAB": 6,
    "DT_STRSZ": 10,
    "DT_SONAME": 14,
    "DT_RPATH": 15,
    "DT_RUNPATH": 29,
    "DT_GNU_HASH": 0x6FFFFEF5,
    "DT_FLAGS_1": 0x6FFFFFFB,
    "SHT_SYMTAB": 2,
    "SHT_STRTAB": 3,
    "SHT_DYNAMIC": 6,
    "SHT_DYNSYM": 11,
    "PT_LOAD": 1,
    "PT_DYNAMIC": 2,
    "PT_INTERP": 3,
    "PT_GNU_STACK": 0x6474E551,
}

# e_type by name, as pyelftools spells them (a value without a name stays a number).
E_TYPES = {
    0: "ET_NONE",
    1: "ET_REL",
    2: "ET_EXEC",
    3: "ET_DYN",
    4: "ET_CORE",
    0xFF00: "ET_LOPROC",
    0xFFFF: "ET_HIPROC",
}
# The machines `ARCHES` knows, by number; any other is named by pyelftools (`_machine_name`).
MACHINES = {
    3: "EM_386",
    8: "EM_MIPS",
    20: "EM_PPC",
    21: "EM_PPC64",
    22: "EM_S390",
    40: "EM_ARM",
    43: "EM_SPARCV9",
    62: "EM_X86_64",
    183: "EM_AARCH64",
    243: "EM_RISCV",
    258: "EM_LOONGARCH",
}

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


class ProgramHeader(NamedTuple):
    """The fields of one program header the facts use (a tuple: built for every header read)."""

    p_type: int
    p_offset: int
    p_vaddr: int
    p_filesz: int
    p_flags: int


class SectionHeader(NamedTuple):
    """The fields of one section header the facts use."""

    sh_type: int
    sh_offset: int
    sh_size: int
    sh_link: int
    sh_info: int


# Elf32_Phdr / Elf64_Phdr and Elf32_Shdr / Elf64_Shdr (the byte order is prefixed per file), and
# where the fields above sit in each.
_PHDR = {32: ("8I", (0, 1, 2, 4, 6)), 64: ("2I6Q", (0, 2, 3, 5, 1))}
_SHDR = {32: ("10I", (1, 4, 5, 6, 7)), 64: ("2I4Q2I2Q", (1, 4, 5, 6, 7))}


class FileHeader(NamedTuple):
    """The fields of the ELF file header the facts use; type and machine by name when known."""

    e_type: int | str
    e_machine: int | str
    e_phoff: int
    e_shoff: int
    e_phentsize: int
    e_phnum: int
    e_shentsize: int
    e_shnum: int


class Symbol(NamedTuple):
    """The fields of one symbol table entry the entry's state depends on."""

    st_shndx: int
    bind: int
    type: int
    visibility: int


# Elf32_Ehdr / Elf64_Ehdr from e_type on (after the 16 bytes of e_ident), and where the fields
# of FileHeader sit; Elf32_Sym / Elf64_Sym and where st_info, st_other and st_shndx sit. The
# visibility is st_other's low two bits, as glibc reads it (pyelftools reads three, as Solaris).
_EHDR = {
    32: ("HHIIIIIHHHHHH", (0, 1, 4, 5, 8, 9, 10, 11)),
    64: ("HHIQQQIHHHHHH", (0, 1, 4, 5, 8, 9, 10, 11)),
}
_SYM = {32: ("IIIBBH", (3, 4, 5)), 64: ("IBBHQQ", (1, 2, 3))}


@functools.lru_cache(maxsize=16)
def _layout(order: str, bits: int, table: str) -> tuple[struct.Struct, tuple[int, ...]]:
    layout, picks = {"phdr": _PHDR, "shdr": _SHDR, "ehdr": _EHDR, "sym": _SYM}[table][bits]
    return struct.Struct(order + layout), picks


@functools.lru_cache(maxsize=64)
def _machine_name(machine: int) -> int | str:
    """pyelftools' name of an e_machine value (imported only for a machine `ARCHES` does not
    know), or the number when it has none."""
    known = MACHINES.get(machine)
    if known is not None:
        return known
    from elftools.elf.enums import ENUM_E_MACHINE

    # Reversed as construct reverses it: of two names for one value, the last wins.
    names = {value: name for name, value in ENUM_E_MACHINE.items() if name != "_default_"}
    return names.get(machine, machine)


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
        layout, picks = _layout(self.order, self.bits, "ehdr")
        fields = operator.itemgetter(*picks)(
            layout.unpack_from(source.read(0, 16 + layout.size, "the ELF file header"), 16)
        )
        e_type, e_machine = fields[0], fields[1]
        self.header = FileHeader(
            E_TYPES.get(e_type, e_type), _machine_name(e_machine), *fields[2:]
        )
        self.symbol_layout = _layout(self.order, self.bits, "sym")
        self.tags = TAGS
        self.section_table = self._section_table()
        self.program_table = self._program_table()

    # -- header tables ----------------------------------------------------------------------

    def _table(
        self, offset: int, count: int, entry_size: int, program: bool, what: str
    ) -> list[Any]:
        """`count` headers at `offset`, decoded (each table is read and decoded once per file)."""
        if count == 0:
            return []
        layout, picks = _layout(self.order, self.bits, "phdr" if program else "shdr")
        if entry_size < layout.size:
            raise self.source.fail(CORRUPT, f"{what} entries are {entry_size} bytes, too small")
        data = self.source.read(offset, count * entry_size, what, MAX_HEADER_TABLE)
        if entry_size == layout.size:
            rows: Any = layout.iter_unpack(data)
        else:  # larger entries (allowed) carry fields this reader does not know
            rows = (layout.unpack_from(data, start) for start in range(0, len(data), entry_size))
        make = (ProgramHeader if program else SectionHeader)._make
        pick = operator.itemgetter(*picks)
        return [make(pick(row)) for row in rows]

    def _section_table(self) -> list[SectionHeader]:
        offset, count, size = self.header.e_shoff, self.header.e_shnum, self.header.e_shentsize
        if offset == 0:
            return []
        what = "the section header table"
        if count == 0:
            # SHN_LORESERVE sections or more: the real count is in section 0's sh_size.
            count = self._table(offset, 1, size, False, what)[0].sh_size
        return self._table(offset, count, size, False, what)

    def _program_table(self) -> list[ProgramHeader]:
        count = self.header.e_phnum
        if count == PN_XNUM:
            # PN_XNUM program headers or more: the real count is in section 0's sh_info.
            if not self.section_table:
                raise self.source.fail(CORRUPT, "e_phnum is PN_XNUM but there is no section 0")
            count = self.section_table[0].sh_info
        return self._table(
            self.header.e_phoff,
            count,
            self.header.e_phentsize,
            True,
            "the program header table",
        )

    def sections(self, type_name: str) -> list[SectionHeader]:
        """Section headers of one type."""
        wanted = self.tags[type_name]
        return [header for header in self.section_table if header.sh_type == wanted]

    def section(self, index: int) -> SectionHeader:
        if not 0 <= index < len(self.section_table):
            raise self.source.fail(
                CORRUPT, f"a section header links to section {index}, which does not exist"
            )
        return self.section_table[index]

    def segments(self, type_name: str) -> list[ProgramHeader]:
        """Program headers of one type."""
        wanted = self.tags[type_name]
        return [header for header in self.program_table if header.p_type == wanted]

    def file_offset(self, address: int, size: int = 1) -> int | None:
        """The file offset of a virtual address, through the PT_LOAD segment that maps it."""
        for segment in self.segments("PT_LOAD"):
            start = segment.p_vaddr
            if start <= address and address + size <= start + segment.p_filesz:
                return segment.p_offset + (address - start)
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
        needed=dynamic.strings("DT_NEEDED"),
        rpath=_search_path(dynamic.strings("DT_RPATH")),
        runpath=_search_path(dynamic.strings("DT_RUNPATH")),
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
    layout, picks = image.symbol_layout
    entry_size = layout.size
    states: list[EntryState] = []
    variants: list[str] = []
    for index, name in entries_naming(table, entry_size, image.little, strings, ENTRY_SYMBOL):
        if name != ENTRY_SYMBOL:
            variants.append(name)
            continue
        info, other, shndx = operator.itemgetter(*picks)(layout.unpack_from(table, index * entry_size))
        states.append(_state(Symbol(shndx, info >> 4, info & 0xF, other & 0x3), dynamic))
    return states, variants


def _state(symbol: Symbol, dynamic: bool) -> EntryState:
    if symbol.st_shndx == SHN_UNDEF:
        return "undefined"
    visible = symbol.bind in VISIBLE_BINDINGS and symbol.visibility in VISIBLE_VISIBILITIES
    if not (dynamic and visible):
        return "hidden"
    return "exported" if symbol.type in FUNCTION_TYPES else "not-a-function"


def _section_symbols(image: ElfImage, section_type: str) -> tuple[bytes, bytes] | None:
    """(symbol table, string table) bytes of the first section of `section_type`, or None."""
    found = image.sections(section_type)
    if not found:
        return None
    section = found[0]
    strings = image.section(section.sh_link)
    if strings.sh_type != image.tags["SHT_STRTAB"]:
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
    entry_size = image.symbol_layout[0].size
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
        return _words(source.read(offset + 4, 4, "the DT_HASH header"), image.little)[0]

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
        block = source.read_upto(chain_at, 1 << 16)
        block = block[: len(block) - len(block) % 4]
        if not block:
            raise source.fail(TRUNCATED, "the DT_GNU_HASH chain runs past the end of the file")
        end = block[low_byte::4].translate(ODD_BYTES).find(1)
        if end >= 0:
            return last + end + 1
        last += len(block) // 4
        chain_at += len(block)


def _words(data: bytes, little: bool) -> array:
    """32-bit words of the file's byte order."""
    words = array("I")
    words.frombytes(data[: len(data) - len(data) % 4])
    if little != (sys.byteorder == "little"):
        words.byteswap()
    return words
