"""The ELF reader's own `struct` decoding agrees with pyelftools on every compiled fixture library.

`binary/elf.py` decodes headers and symbols itself (pyelftools' import and parser cost more than
a post-install check's reading); pyelftools stays the reference these tests compare it with.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_D_TAG, ENUM_E_MACHINE, ENUM_P_TYPE_BASE, ENUM_SH_TYPE_BASE

from plugin_packaging.binary import elf
from plugin_packaging.binary.bounded import BoundedFile
from plugin_packaging.binary.info import ENTRY_SYMBOL


def _elf_fixtures(native_libs) -> list[Path]:
    return [path for name, path in native_libs.as_dict().items() if name != "static_archive"]


def _image(path: Path, stream) -> elf.ElfImage:
    return elf.ElfImage(BoundedFile(path, stream, path.stat().st_size))


def test_the_tag_numbers_are_pyelftools_numbers() -> None:
    for name, value in elf.TAGS.items():
        table = ENUM_D_TAG if name.startswith("DT_") else ENUM_SH_TYPE_BASE if name.startswith("SHT_") \
            else ENUM_P_TYPE_BASE
        assert table[name] == value, name


def test_the_machine_names_are_pyelftools_names() -> None:
    for value, name in elf.MACHINES.items():
        assert ENUM_E_MACHINE[name] == value
    assert elf._machine_name(ENUM_E_MACHINE["EM_68K"]) == "EM_68K"  # one ARCHES does not know
    assert elf._machine_name(0xFEDC) == 0xFEDC


def test_headers_decode_as_pyelftools_decodes_them(native_libs) -> None:
    for path in _elf_fixtures(native_libs):
        with open(path, "rb") as stream:
            image = _image(path, stream)
            reference = ELFFile(stream)
            header = reference.header
            assert (image.header.e_type, image.header.e_machine) == (header.e_type, header.e_machine), path
            segments = [
                (s.header.p_offset, s.header.p_vaddr, s.header.p_filesz, s.header.p_flags)
                for s in reference.iter_segments()
            ]
            assert [(p.p_offset, p.p_vaddr, p.p_filesz, p.p_flags) for p in image.program_table] == segments
            for name in ("PT_LOAD", "PT_DYNAMIC", "PT_INTERP", "PT_GNU_STACK"):
                expected = [s.header.p_offset for s in reference.iter_segments() if s.header.p_type == name]
                assert [p.p_offset for p in image.segments(name)] == expected, (path, name)
            sections = [
                (s.header.sh_offset, s.header.sh_size, s.header.sh_link, s.header.sh_info)
                for s in reference.iter_sections()
            ]
            assert [(h.sh_offset, h.sh_size, h.sh_link, h.sh_info) for h in image.section_table] == sections
            for name in ("SHT_SYMTAB", "SHT_DYNSYM", "SHT_STRTAB", "SHT_DYNAMIC"):
                expected = [s.header.sh_offset for s in reference.iter_sections() if s.header.sh_type == name]
                assert [h.sh_offset for h in image.sections(name)] == expected, (path, name)


def _reference_state(symbol, dynamic: bool) -> str:
    """The entry's state from pyelftools' decoding, as the reader judged it when it used pyelftools."""
    if symbol["st_shndx"] == "SHN_UNDEF":
        return "undefined"
    visible = symbol["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK", "STB_LOOS") and symbol["st_other"][
        "visibility"
    ] in ("STV_DEFAULT", "STV_PROTECTED")
    if not (dynamic and visible):
        return "hidden"
    return "exported" if symbol["st_info"]["type"] in ("STT_FUNC", "STT_LOOS") else "not-a-function"


def test_entry_symbols_are_judged_as_from_pyelftools_decoding(native_libs) -> None:
    compared = 0
    for path in _elf_fixtures(native_libs):
        with open(path, "rb") as stream:
            image = _image(path, stream)
            reference = ELFFile(stream)
            for section_name, section_type in ((".dynsym", "SHT_DYNSYM"), (".symtab", "SHT_SYMTAB")):
                tables = elf._section_symbols(image, section_type)
                if tables is None:
                    continue
                for dynamic in (True, False):
                    states, _variants = elf._symbol_states(image, *tables, dynamic=dynamic)
                    expected = [
                        _reference_state(symbol, dynamic)
                        for symbol in reference.get_section_by_name(section_name).iter_symbols()
                        if symbol.name == ENTRY_SYMBOL
                    ]
                    assert states == expected, (path, section_name, dynamic)
                    compared += len(expected)
    assert compared >= 40  # most fixtures define, hide or reference the entry


def test_reading_a_library_does_not_import_pyelftools(native_libs) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from plugin_packaging.binary import read_library\n"
        f"info = read_library(Path({str(native_libs.good_rust)!r}))\n"
        "print(info.arch, any(name.startswith('elftools') for name in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["x86_64", "False"]
