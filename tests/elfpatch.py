"""Hand-made hostile ELF files: a real compiled library (64-bit little-endian) with its dynamic
table or hash table patched. Each stays a few KiB (or is padded on purpose), so the readers'
caps, not the file's size, are what bounds the work."""

from __future__ import annotations

import struct

PT_LOAD, PT_DYNAMIC = 1, 2
SHT_DYNAMIC = 6
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 15, 29
DT_GNU_HASH = 0x6FFFFEF5
#: An address no PT_LOAD of a small library maps: readers fall back to the section headers.
UNMAPPED = 0xDEAD_0000_0000


def _program_headers(data: bytes) -> list[int]:
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    size, count = struct.unpack_from("<HH", data, 0x36)
    return [phoff + i * size for i in range(count)]


def _section_headers(data: bytes) -> list[int]:
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    size, count = struct.unpack_from("<HH", data, 0x3A)
    return [shoff + i * size for i in range(count)]


def _dynamic_entries(data: bytes) -> list[tuple[int, int]]:
    for ph in _program_headers(data):
        if struct.unpack_from("<I", data, ph)[0] == PT_DYNAMIC:
            offset, size = (
                struct.unpack_from("<Q", data, ph + 8)[0],
                struct.unpack_from("<Q", data, ph + 32)[0],
            )
            entries = list(struct.iter_unpack("<qQ", data[offset : offset + size]))
            return [(tag, value) for tag, value in entries]
    raise ValueError("no PT_DYNAMIC")


def _file_offset(data: bytes, address: int) -> int:
    for ph in _program_headers(data):
        if struct.unpack_from("<I", data, ph)[0] == PT_LOAD:
            offset, vaddr = struct.unpack_from("<QQ", data, ph + 8)
            filesz = struct.unpack_from("<Q", data, ph + 32)[0]
            if vaddr <= address < vaddr + filesz:
                return address - vaddr + offset
    raise ValueError(f"address {address:#x} is not mapped")


def _align(data: bytearray, to: int = 16) -> None:
    data.extend(bytes(-len(data) % to))


def with_needed_and_runpath(library: bytes, needed: list[str], runpath: list[str]) -> bytes:
    """`library` whose dynamic table lists `needed` (DT_NEEDED) and one DT_RUNPATH of `runpath`.

    A new string table (the old one plus the new names, so symbol names stay valid) and a new
    dynamic table are appended; PT_DYNAMIC, the SHT_DYNAMIC section and the string table's
    section header point at them, and DT_STRTAB at an unmapped address, so the string table is
    found through the section headers.
    """
    data = bytearray(library)
    sections = _section_headers(data)
    dynamic_section = next(
        sh for sh in sections if struct.unpack_from("<I", data, sh + 4)[0] == SHT_DYNAMIC
    )
    strings_section = sections[struct.unpack_from("<I", data, dynamic_section + 40)[0]]
    old_at, old_size = struct.unpack_from("<QQ", data, strings_section + 24)
    strings = bytearray(data[old_at : old_at + old_size])
    entries = [
        (tag, value)
        for tag, value in _dynamic_entries(data)
        if tag not in (DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_RPATH, DT_RUNPATH)
    ]
    for name in needed:
        entries.append((DT_NEEDED, len(strings)))
        strings += name.encode() + b"\0"
    if runpath:
        entries.append((DT_RUNPATH, len(strings)))
        strings += ":".join(runpath).encode() + b"\0"
    entries += [(DT_STRTAB, UNMAPPED), (DT_STRSZ, len(strings)), (DT_NULL, 0)]

    _align(data)
    strings_at = len(data)
    data += strings
    _align(data)
    dynamic_at = len(data)
    data += b"".join(struct.pack("<qQ", tag, value) for tag, value in entries)
    dynamic_size = len(entries) * 16

    struct.pack_into("<QQ", data, strings_section + 24, strings_at, len(strings))
    struct.pack_into("<QQ", data, dynamic_section + 24, dynamic_at, dynamic_size)
    for ph in _program_headers(data):
        if struct.unpack_from("<I", data, ph)[0] == PT_DYNAMIC:
            struct.pack_into("<Q", data, ph + 8, dynamic_at)
            struct.pack_into("<QQ", data, ph + 32, dynamic_size, dynamic_size)
    return bytes(data)


def with_endless_gnu_hash_chain(library: bytes, padding: int) -> bytes:
    """`library` without section headers (so .dynsym is sized through DT_GNU_HASH) whose highest
    bucket starts a chain in `padding` bytes of zeros appended to the file: a chain that never
    sets its end bit, for as long as the file goes on."""
    data = bytearray(library)
    struct.pack_into("<Q", data, 0x28, 0)  # e_shoff
    struct.pack_into("<HHH", data, 0x3A, 0, 0, 0)  # e_shentsize, e_shnum, e_shstrndx
    address = next(value for tag, value in _dynamic_entries(data) if tag == DT_GNU_HASH)
    table = _file_offset(data, address)
    buckets, first_hashed, bloom_words, _shift = struct.unpack_from("<IIII", data, table)
    buckets_at = table + 16 + bloom_words * 8
    chains_at = buckets_at + buckets * 4
    _align(data, 4)
    padding_at = len(data)
    data += bytes(padding)
    # The chain of bucket 0 starts at symbol `first_hashed + (padding_at - chains_at) / 4`.
    start = first_hashed + (padding_at - chains_at) // 4
    for bucket in range(buckets):
        struct.pack_into("<I", data, buckets_at + bucket * 4, start if bucket == 0 else 0)
    return bytes(data)
