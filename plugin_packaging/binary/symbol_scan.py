"""Find the symbols whose names contain one word in a raw ELF or Mach-O symbol table, fast.

Decoding every entry with pyelftools or macholib costs 15-30 microseconds a symbol: a second for a
45,000-symbol C++ library, too slow for a checker that reads hundreds of libraries. Both formats
store a symbol's name as a 32-bit offset into a string table in the entry's first field. So we find
the word in the string table with `bytes.find`, collect the name offsets that would spell a name
containing it, and pick the entries with one of those offsets from an array of first fields built
in C by `memoryview.cast`. Only the few matching entries are then decoded by the format's library.
"""

from __future__ import annotations

import sys

# A name longer than this is cut off for matching: mangled Rust and C++ names reach a few KiB.
MAX_NAME_PREFIX = 1 << 16
# Candidate name offsets considered in one string table; bounds work and memory whatever it holds.
MAX_CANDIDATES = 1 << 20


def name_offsets_containing(strings: bytes, word: bytes) -> dict[int, tuple[int, int]]:
    """Every string-table offset at which a name containing `word` starts -> (offset, end) of it.

    Linkers merge a name into the tail of a longer one (`foo` stored inside `_foo`), so an entry
    may point into the middle of a stored string: every offset from the start of the stored string
    up to the start of the word spells a name that contains it.
    """
    found: dict[int, tuple[int, int]] = {}
    position = strings.find(word)
    while position >= 0 and len(found) < MAX_CANDIDATES:
        start = strings.rfind(b"\0", max(0, position - MAX_NAME_PREFIX), position) + 1
        if start == 0 and position > MAX_NAME_PREFIX:
            start = position - MAX_NAME_PREFIX
        end = strings.find(b"\0", position)
        if end < 0:
            end = len(strings)
        for offset in range(start, position + 1):
            found[offset] = (offset, end)
        position = strings.find(word, end)
    return found


def entries_naming(
    table: bytes,
    entry_size: int,
    little_endian: bool,
    strings: bytes,
    word: str,
) -> list[tuple[int, str]]:
    """(index, name) of each entry of `table` whose name contains `word`, in table order.

    `table` holds whole entries of `entry_size` bytes (a multiple of 4), each starting with its
    32-bit name offset into `strings`.
    """
    wanted = name_offsets_containing(strings, word.encode())
    count = len(table) // entry_size
    if not wanted or count == 0:
        return []
    words = memoryview(table)[: count * entry_size].cast("I")
    first_fields = words[:: entry_size // 4].tolist()
    if little_endian != (sys.byteorder == "little"):
        # Swap the few wanted offsets instead of the whole table.
        wanted = {
            int.from_bytes(offset.to_bytes(4, "little"), "big"): span
            for offset, span in wanted.items()
            if offset < 1 << 32
        }
    matches = [
        (index, wanted[value]) for index, value in enumerate(first_fields) if value in wanted
    ]
    return [
        (index, strings[start:end].decode("utf-8", errors="backslashreplace"))
        for index, (start, end) in matches
    ]
