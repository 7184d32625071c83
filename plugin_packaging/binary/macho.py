"""Read a Mach-O file's loader-relevant facts: file type, CPU, dylib loads, rpaths, entry symbol.

macholib supplies the structure layouts and constants (`mach_header_64`, `dylib_command`,
`nlist_64`, ...). Its `MachO` class is not used: while walking the load commands it reads the
contents of every section into memory, all 100 MiB of a large constant table. So the load commands
are read here as one bounded block and decoded with macholib's structures, and the symbol data is
read only where the commands point to it.

What counts, as dyld sees it:
- the entry is `_streamkit_native_plugin_api` (C names get a leading underscore on Apple platforms);
- exports come from the export trie (LC_DYLD_INFO(_ONLY) export_off/size, or LC_DYLD_EXPORTS_TRIE,
  written by newer linkers); only a file without a trie falls back to the external, non-private
  defined symbols of LC_SYMTAB, as dyld does for old binaries and as a relocatable object would
  export when linked;
- an exported symbol is a function when its address lies in a section holding instructions (there
  is no symbol type as in ELF); re-exports and stub-and-resolver entries count as functions;
- LC_SYMTAB is read only when the trie does not export the entry, to tell "hidden" (a local or
  private-extern definition) and "undefined" from "absent", and to find mangled copies;
- a universal (fat) file is read slice by slice; see `LibraryInfo.slices`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from plugin_packaging.binary.bounded import (
    MAX_HEADER_TABLE,
    MAX_NEEDED,
    MAX_SEARCH_PATH,
    MAX_SYMBOL_TABLE,
    BoundedFile,
)
from plugin_packaging.binary.info import (
    CORRUPT,
    EntryState,
    EntrySymbol,
    LibraryInfo,
    best_state,
)
from plugin_packaging.binary.symbol_scan import entries_naming
from plugin_packaging.contract import ENTRY_SYMBOL

MACHO_ENTRY_SYMBOL = "_" + ENTRY_SYMBOL
FAT_MAGIC = 0xCAFEBABE
FAT_MAGIC_64 = 0xCAFEBABF
MAX_FAT_SLICES = 64  # real universal files hold two or three
MAX_VARIANTS = 32

KINDS = {
    1: "relocatable",  # MH_OBJECT
    2: "executable",  # MH_EXECUTE
    4: "core",  # MH_CORE
    6: "shared-library",  # MH_DYLIB
    8: "bundle",  # MH_BUNDLE: what dlopen also loads, the classic plugin file type
}
RAW_KINDS = {
    3: "MH_FVMLIB",
    5: "MH_PRELOAD",
    7: "MH_DYLINKER",
    9: "MH_DYLIB_STUB",
    10: "MH_DSYM",
    11: "MH_KEXT_BUNDLE",
    12: "MH_FILESET",
}
ARCHES = {
    7: "x86",  # CPU_TYPE_I386
    0x01000007: "x86_64",
    12: "arm",
    0x0100000C: "aarch64",  # CPU_TYPE_ARM64 (arm64 and arm64e)
    0x0200000C: "arm64_32",
    18: "ppc",
    0x01000012: "ppc64",
}


def read_macho(source: BoundedFile) -> LibraryInfo:
    """The facts of the Mach-O file behind `source`, thin or universal."""
    from macholib import mach_o

    magic = int.from_bytes(source.read(0, 4, "the Mach-O magic"), "big")
    if magic not in (FAT_MAGIC, FAT_MAGIC_64):
        return _read_slice(source, mach_o, 0, source.size)

    # Universal file: a big-endian table of slices, each a complete Mach-O file.
    header = mach_o.fat_header.from_str(source.read(0, mach_o.fat_header._size_, "the fat header"))
    arch_struct = mach_o.fat_arch if magic == FAT_MAGIC else mach_o.fat_arch64
    if not 0 < header.nfat_arch <= MAX_FAT_SLICES:
        raise source.fail(CORRUPT, f"the universal header lists {header.nfat_arch} slices")
    table = source.read(
        mach_o.fat_header._size_, header.nfat_arch * arch_struct._size_, "the universal slice table"
    )
    slices = []
    for index in range(header.nfat_arch):
        entry = arch_struct.from_str(
            table[index * arch_struct._size_ : (index + 1) * arch_struct._size_]
        )
        source.check(entry.offset, entry.size, f"universal slice {index}", cap=None)
        slices.append(_read_slice(source, mach_o, entry.offset, entry.size))
    return dataclasses.replace(slices[0], arch="universal", slices=tuple(slices))


def _read_slice(source: BoundedFile, mach_o: Any, base: int, size: int) -> LibraryInfo:
    """One thin Mach-O image of `size` bytes at `base` (offsets inside it are relative to base)."""
    magic = int.from_bytes(source.read(base, 4, "the Mach-O header"), "big")
    layouts = {
        mach_o.MH_MAGIC: (mach_o.mach_header, ">", 32),
        mach_o.MH_CIGAM: (mach_o.mach_header, "<", 32),
        mach_o.MH_MAGIC_64: (mach_o.mach_header_64, ">", 64),
        mach_o.MH_CIGAM_64: (mach_o.mach_header_64, "<", 64),
    }
    if magic not in layouts:
        raise source.fail(CORRUPT, f"a Mach-O slice at offset {base} has no Mach-O header")
    header_struct, endian, bits = layouts[magic]
    header = header_struct.from_str(
        source.read(base, header_struct._size_, "the Mach-O header"), _endian_=endian
    )
    _check_in_image(
        source, base, size, header_struct._size_, header.sizeofcmds, "the load commands"
    )
    commands = LoadCommands(
        source,
        mach_o,
        endian,
        bits,
        source.read(
            base + header_struct._size_, header.sizeofcmds, "the load commands", MAX_HEADER_TABLE
        ),
        header.ncmds,
    )
    for start, length in commands.segments:
        # What dyld maps must be in the image: a library cut short fails here.
        _check_in_image(source, base, size, start, length, "a segment")
    cpu = int(header.cputype) & 0xFFFFFFFF
    filetype = int(header.filetype)
    kind = KINDS.get(filetype) or RAW_KINDS.get(filetype, f"{filetype:#x}")
    source.check_count(len(commands.needed), MAX_NEEDED, "loaded dylibs (LC_LOAD_DYLIB)")
    source.check_count(len(commands.rpaths), MAX_SEARCH_PATH, "rpaths (LC_RPATH)")
    return LibraryInfo(
        path=source.path,
        format="macho",
        platform="macos",
        kind=kind,
        is_shared_library=kind in ("shared-library", "bundle"),
        bits=bits,
        endianness="little" if endian == "<" else "big",
        arch=ARCHES.get(cpu) or str(mach_o.CPU_TYPE_NAMES.get(header.cputype, f"{cpu:#x}")),
        entry=_entry_symbol(source, mach_o, commands, base, size),
        needed=tuple(commands.needed),
        rpath=tuple(commands.rpaths),
        soname=commands.install_name,
    )


def _check_in_image(
    source: BoundedFile, base: int, size: int, offset: int, length: int, what: str
) -> None:
    """Raise unless `length` bytes at `offset` of the image lie in the file and in the image."""
    source.check(base + offset, length, what, cap=None)
    if offset + length > size:
        raise source.fail(CORRUPT, f"{what} runs past the end of its universal slice")


class LoadCommands:
    """The load commands of one image that matter here, decoded from one bounded block."""

    def __init__(
        self, source: BoundedFile, mach_o: Any, endian: str, bits: int, block: bytes, count: int
    ) -> None:
        self.source = source
        self.endian = endian
        self.bits = bits
        self.needed: list[str] = []
        self.rpaths: list[str] = []
        self.install_name: str | None = None
        self.symtab: Any = None  # symtab_command
        self.export_trie: tuple[int, int] | None = None  # (offset, size) in the image
        self.sections: list[tuple[int, int, int]] = []  # (address, size, flags)
        self.segments: list[tuple[int, int]] = []  # (file offset, size) in the image
        self.text_address: int | None = None  # vmaddr of __TEXT: export addresses count from it
        self.code_flags = mach_o.S_ATTR_PURE_INSTRUCTIONS | mach_o.S_ATTR_SOME_INSTRUCTIONS

        loads = {
            mach_o.LC_LOAD_DYLIB,
            mach_o.LC_LOAD_WEAK_DYLIB,
            mach_o.LC_REEXPORT_DYLIB,
            mach_o.LC_LAZY_LOAD_DYLIB,
            mach_o.LC_LOAD_UPWARD_DYLIB,
        }
        header_size = mach_o.load_command._size_
        if count > len(block) // header_size:
            raise source.fail(
                CORRUPT, f"the header lists {count} load commands in {len(block)} bytes"
            )
        position = 0
        for index in range(count):
            if position + header_size > len(block):
                raise source.fail(
                    CORRUPT, f"load command {index} starts past the end of the load commands"
                )
            command = mach_o.load_command.from_str(
                block[position : position + header_size], _endian_=endian
            )
            if command.cmdsize < header_size or position + command.cmdsize > len(block):
                raise source.fail(
                    CORRUPT, f"load command {index} has an impossible size {command.cmdsize}"
                )
            body = block[position : position + command.cmdsize]
            position += command.cmdsize
            if command.cmd in loads:
                self.needed.append(self._string(mach_o.dylib_command, body, "name", mach_o))
            elif command.cmd == mach_o.LC_ID_DYLIB:
                self.install_name = self._string(mach_o.dylib_command, body, "name", mach_o)
            elif command.cmd == mach_o.LC_RPATH:
                self.rpaths.append(self._string(mach_o.rpath_command, body, "path", mach_o))
            elif command.cmd == mach_o.LC_SYMTAB:
                self.symtab = self._decode(mach_o.symtab_command, body, mach_o)
            elif command.cmd in (mach_o.LC_DYLD_INFO, mach_o.LC_DYLD_INFO_ONLY):
                info = self._decode(mach_o.dyld_info_command, body, mach_o)
                if info.export_size:
                    self.export_trie = (info.export_off, info.export_size)
            elif command.cmd == mach_o.LC_DYLD_EXPORTS_TRIE:
                data = self._decode(mach_o.linkedit_data_command, body, mach_o)
                self.export_trie = (data.dataoff, data.datasize)
            elif command.cmd in (mach_o.LC_SEGMENT, mach_o.LC_SEGMENT_64):
                self._segment(mach_o, command.cmd == mach_o.LC_SEGMENT_64, body)

    def _decode(self, struct: Any, body: bytes, mach_o: Any) -> Any:
        start = mach_o.load_command._size_
        if len(body) < start + struct._size_:
            raise self.source.fail(CORRUPT, f"a load command is shorter than its {struct.__name__}")
        return struct.from_str(body[start : start + struct._size_], _endian_=self.endian)

    def _string(self, struct: Any, body: bytes, field: str, mach_o: Any) -> str:
        # An lc_str is an offset from the start of the load command to a NUL-terminated string.
        offset = int(getattr(self._decode(struct, body, mach_o), field))
        if not 0 < offset < len(body):
            raise self.source.fail(CORRUPT, f"a {struct.__name__} string lies outside its command")
        text = body[offset:].split(b"\0", 1)[0]
        return text.decode("utf-8", errors="backslashreplace")

    def _segment(self, mach_o: Any, is_64: bool, body: bytes) -> None:
        segment_struct = mach_o.segment_command_64 if is_64 else mach_o.segment_command
        section_struct = mach_o.section_64 if is_64 else mach_o.section
        segment = self._decode(segment_struct, body, mach_o)
        self.segments.append((int(segment.fileoff), int(segment.filesize)))
        if segment.segname.rstrip(b"\0") == b"__TEXT":
            self.text_address = int(segment.vmaddr)
        start = mach_o.load_command._size_ + segment_struct._size_
        if segment.nsects > (len(body) - start) // section_struct._size_:
            raise self.source.fail(CORRUPT, "a segment lists more sections than its command holds")
        for index in range(segment.nsects):
            at = start + index * section_struct._size_
            section = section_struct.from_str(
                body[at : at + section_struct._size_], _endian_=self.endian
            )
            self.sections.append((int(section.addr), int(section.size), int(section.flags)))

    def holds_code(self, address: int) -> bool:
        """Does the section at this virtual address hold instructions."""
        return any(
            start <= address < start + size and flags & self.code_flags
            for start, size, flags in self.sections
        )


def _entry_symbol(
    source: BoundedFile, mach_o: Any, commands: LoadCommands, base: int, size: int
) -> EntrySymbol:
    states: list[EntryState] = []
    variants: list[str] = []
    if commands.export_trie is not None:
        offset, length = commands.export_trie
        _check_in_image(source, base, size, offset, length, "the export trie")
        trie = source.read(base + offset, length, "the export trie")
        states.append(_trie_state(source, trie, mach_o, commands))
    if best_state(states) == "exported" or commands.symtab is None:
        return EntrySymbol(state=best_state(states))

    symtab = commands.symtab
    nlist = mach_o.nlist_64 if commands.bits == 64 else mach_o.nlist
    _check_in_image(
        source, base, size, symtab.symoff, symtab.nsyms * nlist._size_, "the symbol table"
    )
    _check_in_image(source, base, size, symtab.stroff, symtab.strsize, "the symbol string table")
    table = source.read(
        base + symtab.symoff, symtab.nsyms * nlist._size_, "the symbol table", MAX_SYMBOL_TABLE
    )
    strings = source.read(
        base + symtab.stroff, symtab.strsize, "the symbol string table", MAX_SYMBOL_TABLE
    )
    for index, name in entries_naming(
        table, nlist._size_, commands.endian == "<", strings, ENTRY_SYMBOL
    ):
        if name != MACHO_ENTRY_SYMBOL:
            variants.append(name)
            continue
        symbol = nlist.from_str(
            table[index * nlist._size_ : (index + 1) * nlist._size_], _endian_=commands.endian
        )
        # Without a trie the external symbols are the exports (old binaries, relocatable objects).
        states.append(
            _nlist_state(symbol, mach_o, commands, as_exports=commands.export_trie is None)
        )
    return EntrySymbol(
        state=best_state(states), variants=tuple(dict.fromkeys(variants))[:MAX_VARIANTS]
    )


def _nlist_state(symbol: Any, mach_o: Any, commands: LoadCommands, as_exports: bool) -> EntryState:
    n_type = int(symbol.n_type)
    if n_type & mach_o.N_STAB:
        return "absent"  # a debugger note, not a symbol
    kind = n_type & mach_o.N_TYPE
    if kind == mach_o.N_UNDF:
        return "undefined" if n_type & mach_o.N_EXT else "absent"
    external = bool(n_type & mach_o.N_EXT) and not n_type & mach_o.N_PEXT
    if not (external and as_exports):
        return "hidden"
    if kind == mach_o.N_SECT and commands.holds_code(int(symbol.n_value)):
        return "exported"
    return "not-a-function"


def _trie_state(
    source: BoundedFile, trie: bytes, mach_o: Any, commands: LoadCommands
) -> EntryState:
    """Follow the export trie down the entry's name and judge what its terminal says.

    A node is: terminal size (ULEB128), terminal info (flags, then the address), a child count
    byte, and per child an edge label (C string) and the child's offset (ULEB128). Every edge
    followed consumes at least one byte of the name, so the walk is as short as the name, even
    in a trie whose edges loop.
    """
    name = MACHO_ENTRY_SYMBOL.encode()
    matched = 0  # bytes of the name consumed by the edges followed so far
    node = 0

    def uleb128(position: int) -> tuple[int, int]:
        value, shift = 0, 0
        while position < len(trie) and shift <= 63:
            byte = trie[position]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value, position + 1
            position, shift = position + 1, shift + 7
        raise source.fail(CORRUPT, "the export trie holds a number that runs past its end")

    for _ in range(len(name) + 1):
        terminal_size, position = uleb128(node)
        after_terminal = position + terminal_size
        if matched == len(name):
            if terminal_size == 0:
                return "absent"
            flags, position = uleb128(position)
            if flags & (
                mach_o.EXPORT_SYMBOL_FLAGS_REEXPORT | mach_o.EXPORT_SYMBOL_FLAGS_STUB_AND_RESOLVER
            ):
                return (
                    "exported"  # dyld resolves both to code: another dylib's, or a resolver's pick
                )
            if (
                flags & mach_o.EXPORT_SYMBOL_FLAGS_KIND_MASK
                != mach_o.EXPORT_SYMBOL_FLAGS_KIND_REGULAR
            ):
                return "not-a-function"  # thread-local or absolute
            address, _ = uleb128(position)
            code = commands.holds_code((commands.text_address or 0) + address)
            return "exported" if code else "not-a-function"
        if after_terminal >= len(trie):
            raise source.fail(CORRUPT, "an export trie node runs past the end of the trie")
        children = trie[after_terminal]
        position = after_terminal + 1
        for _child in range(children):
            end = trie.find(b"\0", position)
            if end < 0:
                raise source.fail(CORRUPT, "an export trie edge label is not terminated")
            label = trie[position:end]
            child, position = uleb128(end + 1)
            if label and name.startswith(label, matched):
                matched += len(label)
                node = child
                break
        else:
            return "absent"
        if node >= len(trie):
            raise source.fail(CORRUPT, "an export trie edge points past the end of the trie")
    raise source.fail(CORRUPT, "the export trie follows an empty edge")
