"""The static library readers against real binaries: ELF, PE and Mach-O, good, odd and damaged.

Linux libraries come from the shared `native_libs` fixture (tests/fixturelib.py). Foreign formats
and architectures are compiled here with clang and lld (Debian packages `clang` and `lld`):
PE DLLs through lld-link, Mach-O dylibs through ld64.lld, aarch64/ppc64/riscv64 ELF through
ld.lld, universal files through llvm-lipo. Hand edits are applied only to real compiled files,
for layouts no compiler here writes: a file without section headers (sstrip), an ELF without
PT_GNU_STACK, a Mach-O with LC_DYLD_EXPORTS_TRIE; and two tiny hand-made headers stand for a DOS
program and a Java class file.
"""

from __future__ import annotations

import json
import shutil
import signal
import struct
import subprocess
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fixturelib import (
    MISSING_DEPENDENCY_NAME,
    VENDORED_DEPENDENCY_NAME,
    FixtureBuildError,
    NativeLibraries,
    compiled_fixture,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugin_packaging.binary import (
    BinaryFormatError,
    LibraryInfo,
    read_library,
    sniff_format,
)
from plugin_packaging.contract import ENTRY_SYMBOL

# One C source for every foreign build, shaped by -D options.
FOREIGN_SOURCE = r"""
#if defined(_WIN32)
#define API __declspec(dllexport)
#else
#define API __attribute__((visibility("default")))
#endif
static const int table = 7;
#if defined(ENTRY_DATA)
API const int streamkit_native_plugin_api = 9;
#elif defined(ENTRY_HIDDEN)
__attribute__((visibility("hidden")))
const void *streamkit_native_plugin_api(void) { return &table; }
API const void *keep_entry(void) { return streamkit_native_plugin_api(); }
#elif defined(ENTRY_PROTECTED)
__attribute__((visibility("protected")))
const void *streamkit_native_plugin_api(void) { return &table; }
#elif defined(ENTRY_UNDEFINED)
extern const void *streamkit_native_plugin_api(void);
API const void *keep_entry(void) { return streamkit_native_plugin_api(); }
#else
API const void *streamkit_native_plugin_api(void) { return &table; }
#endif
#ifdef WITH_DEPENDENCY
extern int dependency_value(void);
API int use_dependency(void) { return dependency_value(); }
#endif
#ifdef BIG_TABLE
API const unsigned char big_table[BIG_TABLE] = {1, 2, 3};
#endif
"""
DEPENDENCY_SOURCE = r"""
#if defined(_WIN32)
__declspec(dllexport)
#endif
int dependency_value(void) { return 42; }
"""
# ld64.lld wants dyld_stub_binder from libSystem for lazy binding; this stands in for it.
LIBSYSTEM_SOURCE = r"""
void stub_binder(void) __asm__("dyld_stub_binder");
void stub_binder(void) {}
"""

BIG_TABLE_BYTES = 32 << 20
WATCHDOG_SECONDS = 20  # a read takes milliseconds; only a hang gets near this

MACHO_ARM64 = ["--target=arm64-apple-macos11", "-nostdlib", "-fuse-ld=lld"]
MACHO_X86_64 = ["--target=x86_64-apple-macos11", "-nostdlib", "-fuse-ld=lld"]
WINDOWS_X86_64 = ["--target=x86_64-pc-windows-msvc", "-nostdlib", "-fuse-ld=lld"]
DLL = ["-shared", "-Wl,/noentry"]


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise FixtureBuildError(
            f"{name} is not installed; the foreign-format fixtures need the Debian packages "
            "clang, lld and llvm"
        )
    return found


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FixtureBuildError("a foreign fixture failed to build", command, result.stderr)


def _clang(out: Path, target: list[str], *args: str, cxx: bool = False) -> Path:
    """Compile FOREIGN_SOURCE (from `out`'s directory) into `out` with clang for `target`."""
    compiler = _tool("clang++" if cxx else "clang")
    language = ["-x", "c++"] if cxx else []
    _run([compiler, *target, "-O1", "-o", out.name, *args, *language, "foreign.c"], out.parent)
    return out


def _elf_cross(out: Path, triple: str, *args: str) -> Path:
    return _clang(
        out, [f"--target={triple}", "-nostdlib", "-fuse-ld=lld", "-fPIC"], "-shared", *args
    )


def _macho_build(out: Path, *args: str) -> Path:
    return _clang(out, MACHO_ARM64, *args)


def _build_foreign(workdir: Path) -> dict[str, Path]:
    """Compile every foreign fixture into `workdir`; returns name -> path."""
    (workdir / "foreign.c").write_text(FOREIGN_SOURCE)
    (workdir / "dependency.c").write_text(DEPENDENCY_SOURCE)
    (workdir / "libsystem.c").write_text(LIBSYSTEM_SOURCE)
    cc = _tool("cc")
    clang = _tool("clang")

    def w(name: str) -> Path:
        return workdir / name

    # Libraries the others link against, built first.
    _run([clang, *WINDOWS_X86_64, *DLL, "-o", "dep.dll", "dependency.c"], workdir)
    _run(
        [
            clang,
            *MACHO_ARM64,
            "-shared",
            "-Wl,-install_name,/usr/lib/libSystem.B.dylib",
            "-o",
            "libSystem.B.dylib",
            "libsystem.c",
        ],
        workdir,
    )
    _run(
        [
            clang,
            *MACHO_ARM64,
            "-shared",
            "-Wl,-install_name,@rpath/libdep.dylib",
            "-o",
            "libdep.dylib",
            "dependency.c",
        ],
        workdir,
    )

    recipes: dict[str, Callable[[], Path]] = {
        # ELF, built by the host toolchain
        "elf_object": lambda: _run_and_return(
            [cc, "-c", "-fPIC", "-o", "plugin.o", "foreign.c"], w("plugin.o")
        ),
        "elf_soname_runpath": lambda: _run_and_return(
            [
                cc,
                "-shared",
                "-fPIC",
                "-Wl,-soname,libsoname.so.1",
                "-Wl,-rpath,$ORIGIN:$ORIGIN/../lib",
                "-Wl,--enable-new-dtags",
                "-o",
                "libsoname.so",
                "foreign.c",
            ],
            w("libsoname.so"),
        ),
        "elf_protected": lambda: _run_and_return(
            [cc, "-shared", "-fPIC", "-DENTRY_PROTECTED", "-o", "libprotected.so", "foreign.c"],
            w("libprotected.so"),
        ),
        "elf_sysv_hash": lambda: _run_and_return(
            [cc, "-shared", "-fPIC", "-Wl,--hash-style=sysv", "-o", "libsysv.so", "foreign.c"],
            w("libsysv.so"),
        ),
        "elf_big": lambda: _run_and_return(
            [
                cc,
                "-shared",
                "-fPIC",
                f"-DBIG_TABLE={BIG_TABLE_BYTES}",
                "-o",
                "libbig.so",
                "foreign.c",
            ],
            w("libbig.so"),
        ),
        # ELF for other architectures, through ld.lld
        "elf_aarch64": lambda: _elf_cross(w("libaarch64.so"), "aarch64-linux-gnu"),
        "elf_ppc64_big_endian": lambda: _elf_cross(w("libppc64.so"), "powerpc64-linux-gnu"),
        "elf_riscv64": lambda: _elf_cross(w("libriscv64.so"), "riscv64-linux-gnu"),
        # PE, through lld-link
        "pe_plugin": lambda: _clang(
            w("plugin.dll"), WINDOWS_X86_64, *DLL, "-DWITH_DEPENDENCY", "dep.lib"
        ),
        "pe_data_entry": lambda: _clang(w("data.dll"), WINDOWS_X86_64, *DLL, "-DENTRY_DATA"),
        "pe_cpp": lambda: _clang(w("cpp.dll"), WINDOWS_X86_64, *DLL, cxx=True),
        "pe_x86": lambda: _clang(
            w("x86.dll"), ["--target=i686-pc-windows-msvc", "-nostdlib", "-fuse-ld=lld"], *DLL
        ),
        "pe_aarch64": lambda: _clang(
            w("arm64.dll"), ["--target=aarch64-pc-windows-msvc", "-nostdlib", "-fuse-ld=lld"], *DLL
        ),
        "pe_executable": lambda: _clang(
            w("program.exe"),
            WINDOWS_X86_64,
            "-Wl,/entry:streamkit_native_plugin_api",
            "-Wl,/subsystem:console",
        ),
        "pe_big": lambda: _clang(
            w("big.dll"), WINDOWS_X86_64, *DLL, f"-DBIG_TABLE={BIG_TABLE_BYTES}"
        ),
        # Mach-O, through ld64.lld
        "macho_plugin": lambda: _macho_build(
            w("libplugin.dylib"),
            "-shared",
            "-DWITH_DEPENDENCY",
            "-Wl,-install_name,@rpath/libplugin.dylib",
            "-Wl,-rpath,@loader_path",
            "-Wl,-rpath,@loader_path/../Frameworks",
            "libdep.dylib",
            "libSystem.B.dylib",
        ),
        "macho_hidden": lambda: _macho_build(w("libhidden.dylib"), "-shared", "-DENTRY_HIDDEN"),
        "macho_undefined": lambda: _macho_build(
            w("libundefined.dylib"),
            "-shared",
            "-DENTRY_UNDEFINED",
            "-Wl,-undefined,dynamic_lookup",
            "libSystem.B.dylib",
        ),
        "macho_data_entry": lambda: _macho_build(w("libdata.dylib"), "-shared", "-DENTRY_DATA"),
        "macho_cpp": lambda: _clang(w("libcpp.dylib"), MACHO_ARM64, "-shared", cxx=True),
        "macho_bundle": lambda: _macho_build(w("plugin.bundle"), "-bundle"),
        "macho_object": lambda: _macho_build(w("plugin_macho.o"), "-c"),
        "macho_x86_64": lambda: _clang(w("libx86_64.dylib"), MACHO_X86_64, "-shared"),
        "macho_big": lambda: _macho_build(
            w("libbig.dylib"), "-shared", f"-DBIG_TABLE={BIG_TABLE_BYTES}"
        ),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(recipe) for name, recipe in recipes.items()}
    built = {name: future.result() for name, future in futures.items()}

    lipo = _tool("llvm-lipo") if shutil.which("llvm-lipo") else _tool("llvm-lipo-14")
    universal = w("libuniversal.dylib")
    _run(
        [
            lipo,
            "-create",
            str(built["macho_x86_64"]),
            str(built["macho_plugin"]),
            "-output",
            str(universal),
        ],
        workdir,
    )
    built["macho_universal"] = universal
    return built


def _run_and_return(command: list[str], out: Path) -> Path:
    _run(command, out.parent)
    return out


@pytest.fixture(scope="session")
@compiled_fixture
def foreign_libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """PE, Mach-O and cross-architecture ELF fixtures, compiled once per session."""
    return _build_foreign(tmp_path_factory.mktemp("foreign_libs"))


@pytest.fixture(scope="session")
def edited_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edited_libs")


# -- hand edits of real compiled files ---------------------------------------------------------


def _copy_edited(source: Path, dest: Path, edit: Callable[[bytearray], None]) -> Path:
    data = bytearray(source.read_bytes())
    edit(data)
    dest.write_bytes(data)
    return dest


def _strip_section_headers(data: bytearray) -> None:
    """What sstrip does to a 64-bit little-endian ELF: no section header table at all."""
    struct.pack_into("<Q", data, 0x28, 0)  # e_shoff
    struct.pack_into("<HHH", data, 0x3A, 0, 0, 0)  # e_shentsize, e_shnum, e_shstrndx


def _program_headers(data: bytes) -> Iterator[int]:
    """Offsets of the program headers of a 64-bit little-endian ELF."""
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    entry_size, count = struct.unpack_from("<HH", data, 0x36)
    return (phoff + index * entry_size for index in range(count))


def _drop_gnu_stack(data: bytearray) -> None:
    for offset in _program_headers(data):
        if struct.unpack_from("<I", data, offset)[0] == 0x6474E551:  # PT_GNU_STACK
            struct.pack_into("<I", data, offset, 0)  # PT_NULL


def _clear_pie_flag(data: bytearray) -> None:
    """Remove DF_1_PIE from DT_FLAGS_1, as linkers before binutils 2.33 never set it."""
    for offset in _program_headers(data):
        if struct.unpack_from("<I", data, offset)[0] == 2:  # PT_DYNAMIC
            start, size = (
                struct.unpack_from("<Q", data, offset + 8)[0],
                struct.unpack_from("<Q", data, offset + 32)[0],
            )
            for tag_at in range(start, start + size, 16):
                tag, value = struct.unpack_from("<qQ", data, tag_at)
                if tag == 0x6FFFFFFB:  # DT_FLAGS_1
                    struct.pack_into("<Q", data, tag_at + 8, value & ~0x08000000)
            return
    raise AssertionError("no PT_DYNAMIC")


def _macho_commands(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(offset, cmd, cmdsize) of the load commands of a thin 64-bit little-endian Mach-O."""
    count = struct.unpack_from("<I", data, 16)[0]
    offset = 32
    for _ in range(count):
        cmd, size = struct.unpack_from("<II", data, offset)
        yield offset, cmd, size
        offset += size


def _use_exports_trie_command(data: bytearray) -> None:
    """Rewrite LC_DYLD_INFO_ONLY as the LC_DYLD_EXPORTS_TRIE newer ld64 writes (lld 14 cannot)."""
    for offset, cmd, size in _macho_commands(data):
        if cmd == 0x80000022:  # LC_DYLD_INFO_ONLY
            export_off, export_size = struct.unpack_from("<II", data, offset + 40)
            data[offset : offset + size] = bytes(size)
            struct.pack_into("<IIII", data, offset, 0x80000033, size, export_off, export_size)
            return
    raise AssertionError("no LC_DYLD_INFO_ONLY")


def _info(path: Path) -> LibraryInfo:
    return read_library(path)


def _format_error(path: Path) -> BinaryFormatError:
    with pytest.raises(BinaryFormatError) as caught:
        read_library(path)
    return caught.value


# -- ELF from the shared fixtures --------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "state"),
    [
        ("good_c", "exported"),
        ("good_rust", "exported"),
        ("weak_symbol", "exported"),
        ("hidden_symbol", "hidden"),
        ("no_symbol", "absent"),
        ("undefined_symbol", "undefined"),
        ("entry_is_object", "not-a-function"),
    ],
)
def test_elf_entry_symbol_state(native_libs: NativeLibraries, variant: str, state: str) -> None:
    info = _info(getattr(native_libs, variant))
    assert info.entry.state == state
    assert info.entry.variants == ()


def test_protected_entry_is_exported(foreign_libs: dict[str, Path]) -> None:
    # STV_PROTECTED symbols are in .dynsym and dlsym finds them; only the library binds them early.
    assert _info(foreign_libs["elf_protected"]).entry.state == "exported"


def test_good_c_plugin_reads_as_a_linux_x86_64_shared_library(native_libs: NativeLibraries) -> None:
    info = _info(native_libs.good_c)
    assert (info.format, info.platform, info.kind, info.arch) == (
        "elf",
        "linux",
        "shared-library",
        "x86_64",
    )
    assert info.is_shared_library
    assert (info.bits, info.endianness) == (64, "little")
    assert "libc.so.6" in info.needed
    assert info.executable_stack is False
    assert (info.rpath, info.runpath, info.soname) == ((), (), None)
    assert info.slices == () and info.every_slice() == (info,)


def test_cpp_entry_without_extern_c_is_absent_with_its_mangled_name(
    native_libs: NativeLibraries,
) -> None:
    entry = _info(native_libs.mangled_cpp).entry
    assert entry.state == "absent"
    assert entry.variants == ("_Z27streamkit_native_plugin_apiv",)


@pytest.mark.parametrize("variant", ["rust_no_mangle", "mangled_rust_dylib"])
def test_rust_entry_without_no_mangle_is_absent_with_its_mangled_name(
    native_libs: NativeLibraries, variant: str
) -> None:
    entry = _info(getattr(native_libs, variant)).entry
    assert entry.state == "absent"
    assert len(entry.variants) == 1
    assert entry.variants[0].startswith("_ZN") and ENTRY_SYMBOL in entry.variants[0]


def test_execstack_library_has_an_executable_stack(native_libs: NativeLibraries) -> None:
    assert _info(native_libs.execstack).executable_stack is True


def test_missing_gnu_stack_header_means_an_executable_stack(
    native_libs: NativeLibraries, edited_dir: Path
) -> None:
    edited = _copy_edited(native_libs.good_c, edited_dir / "libnostack.so", _drop_gnu_stack)
    assert _info(edited).executable_stack is True


def test_rpath_and_runpath_are_told_apart(native_libs: NativeLibraries) -> None:
    rpath = _info(native_libs.rpath_usr_local)
    runpath = _info(native_libs.runpath_usr_local)
    assert (rpath.rpath, rpath.runpath) == (("/usr/local/lib",), ())
    assert (runpath.rpath, runpath.runpath) == ((), ("/usr/local/lib",))


def test_runpath_is_split_on_colons_and_soname_is_read(foreign_libs: dict[str, Path]) -> None:
    info = _info(foreign_libs["elf_soname_runpath"])
    assert info.runpath == ("$ORIGIN", "$ORIGIN/../lib")
    assert info.soname == "libsoname.so.1"


def test_needed_libraries_are_listed_in_order(native_libs: NativeLibraries) -> None:
    vendored = _info(native_libs.vendored_dep)
    assert vendored.needed[0] == VENDORED_DEPENDENCY_NAME
    assert vendored.runpath == ("$ORIGIN",)
    assert MISSING_DEPENDENCY_NAME in _info(native_libs.missing_dep).needed


@pytest.mark.parametrize("variant", ["executable", "pie_executable"])
def test_executables_are_not_shared_libraries(native_libs: NativeLibraries, variant: str) -> None:
    info = _info(getattr(native_libs, variant))
    assert info.kind == "executable"
    assert not info.is_shared_library


def test_pie_without_the_pie_flag_is_still_an_executable(
    native_libs: NativeLibraries, edited_dir: Path
) -> None:
    # Old linkers wrote no DF_1_PIE: an interpreter and no DT_SONAME tell it apart instead.
    edited = _copy_edited(native_libs.pie_executable, edited_dir / "old_pie.so", _clear_pie_flag)
    info = _info(edited)
    assert (info.kind, info.is_shared_library) == ("executable", False)


def test_relocatable_object_is_not_a_shared_library(foreign_libs: dict[str, Path]) -> None:
    info = _info(foreign_libs["elf_object"])
    assert (info.kind, info.is_shared_library) == ("relocatable", False)
    assert info.executable_stack is None
    # Its .symtab is what it would export once linked.
    assert info.entry.state == "exported"


def test_static_archive_named_so_is_not_a_binary(native_libs: NativeLibraries) -> None:
    error = _format_error(native_libs.static_archive)
    assert error.code == "not-a-binary"
    assert "static archive" in error.message
    assert error.path == native_libs.static_archive


def test_i386_library_reads_as_32_bit_x86(native_libs: NativeLibraries) -> None:
    info = _info(native_libs.foreign_arch)
    assert (info.arch, info.bits, info.kind) == ("x86", 32, "shared-library")


@pytest.mark.parametrize(
    ("name", "arch", "endianness"),
    [
        ("elf_aarch64", "aarch64", "little"),
        ("elf_ppc64_big_endian", "ppc64", "big"),
        ("elf_riscv64", "riscv64", "little"),
    ],
)
def test_cross_compiled_elf_architectures(
    foreign_libs: dict[str, Path], name: str, arch: str, endianness: str
) -> None:
    info = _info(foreign_libs[name])
    assert (info.arch, info.endianness, info.bits) == (arch, endianness, 64)
    assert info.entry.state == "exported"


@pytest.mark.parametrize("name", ["good_c", "sysv_hash"])
def test_library_without_section_headers_is_read_through_its_dynamic_segment(
    native_libs: NativeLibraries, foreign_libs: dict[str, Path], edited_dir: Path, name: str
) -> None:
    # gcc's default is a DT_GNU_HASH table; --hash-style=sysv gives DT_HASH: both size .dynsym.
    original = native_libs.good_c if name == "good_c" else foreign_libs["elf_sysv_hash"]
    stripped = _copy_edited(original, edited_dir / f"sstrip_{name}.so", _strip_section_headers)
    before, after = _info(original), _info(stripped)
    assert after.entry.state == "exported"
    assert (after.needed, after.kind, after.executable_stack) == (
        before.needed,
        before.kind,
        before.executable_stack,
    )


def test_hidden_entry_in_stripped_library_is_absent(
    native_libs: NativeLibraries, edited_dir: Path
) -> None:
    # `strip` removes .symtab: nothing is left to show the hidden definition.
    stripped = edited_dir / "libhidden_stripped.so"
    shutil.copy(native_libs.hidden_symbol, stripped)
    subprocess.run([_tool("strip"), str(stripped)], check=True)
    assert _info(stripped).entry.state == "absent"


# -- PE -----------------------------------------------------------------------------------------


def test_pe_dll_reports_exports_imports_and_name(foreign_libs: dict[str, Path]) -> None:
    info = _info(foreign_libs["pe_plugin"])
    assert (info.format, info.platform, info.kind, info.arch) == (
        "pe",
        "windows",
        "shared-library",
        "x86_64",
    )
    assert info.is_shared_library and (info.bits, info.endianness) == (64, "little")
    assert info.entry.state == "exported"
    assert info.needed == ("dep.dll",)
    assert info.soname == "plugin.dll"
    assert (info.rpath, info.runpath, info.executable_stack) == ((), (), None)


def test_pe_dll_exporting_data_under_the_entry_name(foreign_libs: dict[str, Path]) -> None:
    assert _info(foreign_libs["pe_data_entry"]).entry.state == "not-a-function"


def test_pe_dll_with_cpp_mangled_entry(foreign_libs: dict[str, Path]) -> None:
    entry = _info(foreign_libs["pe_cpp"]).entry
    assert entry.state == "absent"
    assert entry.variants == ("?streamkit_native_plugin_api@@YAPEBXXZ",)


@pytest.mark.parametrize(
    ("name", "arch", "bits"), [("pe_x86", "x86", 32), ("pe_aarch64", "aarch64", 64)]
)
def test_pe_architectures(foreign_libs: dict[str, Path], name: str, arch: str, bits: int) -> None:
    info = _info(foreign_libs[name])
    assert (info.arch, info.bits, info.entry.state) == (arch, bits, "exported")


def test_pe_executable_is_not_a_shared_library(foreign_libs: dict[str, Path]) -> None:
    info = _info(foreign_libs["pe_executable"])
    assert (info.kind, info.is_shared_library) == ("executable", False)


def test_dos_program_is_not_a_binary(tmp_path: Path) -> None:
    # A compiler here cannot write a DOS program: an MZ header whose e_lfanew finds no PE header.
    dos = tmp_path / "dos.dll"
    dos.write_bytes(b"MZ" + bytes(62) + b"\xb4\x4c\xcd\x21" * 16)
    assert _format_error(dos).code == "not-a-binary"


# -- Mach-O -------------------------------------------------------------------------------------


def test_macho_dylib_reports_loads_rpaths_and_install_name(foreign_libs: dict[str, Path]) -> None:
    info = _info(foreign_libs["macho_plugin"])
    assert (info.format, info.platform, info.kind, info.arch) == (
        "macho",
        "macos",
        "shared-library",
        "aarch64",
    )
    assert info.is_shared_library and (info.bits, info.endianness) == (64, "little")
    assert info.entry.state == "exported"
    assert info.needed == ("@rpath/libdep.dylib", "/usr/lib/libSystem.B.dylib")
    assert info.rpath == ("@loader_path", "@loader_path/../Frameworks")
    assert info.soname == "@rpath/libplugin.dylib"
    assert info.executable_stack is None


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("macho_hidden", "hidden"),
        ("macho_undefined", "undefined"),
        ("macho_data_entry", "not-a-function"),
    ],
)
def test_macho_entry_symbol_state(foreign_libs: dict[str, Path], name: str, state: str) -> None:
    assert _info(foreign_libs[name]).entry.state == state


def test_macho_cpp_entry_is_absent_with_its_mangled_name(foreign_libs: dict[str, Path]) -> None:
    entry = _info(foreign_libs["macho_cpp"]).entry
    assert entry.state == "absent"
    assert entry.variants == ("__Z27streamkit_native_plugin_apiv",)


def test_macho_bundle_is_loadable_as_a_library(foreign_libs: dict[str, Path]) -> None:
    info = _info(foreign_libs["macho_bundle"])
    assert (info.kind, info.is_shared_library, info.entry.state) == ("bundle", True, "exported")


def test_macho_object_is_relocatable(foreign_libs: dict[str, Path]) -> None:
    info = _info(foreign_libs["macho_object"])
    assert (info.kind, info.is_shared_library, info.entry.state) == (
        "relocatable",
        False,
        "exported",
    )


def test_universal_macho_reports_every_slice(foreign_libs: dict[str, Path]) -> None:
    info = _info(foreign_libs["macho_universal"])
    assert info.arch == "universal"
    assert sorted(part.arch for part in info.every_slice()) == ["aarch64", "x86_64"]
    assert all(part.entry.state == "exported" and part.slices == () for part in info.slices)
    arm64 = next(part for part in info.every_slice() if part.arch == "aarch64")
    assert arm64.needed == ("@rpath/libdep.dylib", "/usr/lib/libSystem.B.dylib")


def test_macho_exports_trie_command_is_read(
    foreign_libs: dict[str, Path], edited_dir: Path
) -> None:
    edited = _copy_edited(
        foreign_libs["macho_plugin"], edited_dir / "trie.dylib", _use_exports_trie_command
    )
    assert _info(edited).entry.state == "exported"


def test_java_class_file_is_not_a_universal_binary(tmp_path: Path) -> None:
    # Hand-made: no Java compiler here. CAFEBABE, minor 0, major 52 (Java 8).
    class_file = tmp_path / "Plugin.so"
    class_file.write_bytes(b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + bytes(32))
    error = _format_error(class_file)
    assert error.code == "not-a-binary" and "Java" in error.message


# -- files that are no binary, or damaged ---------------------------------------------------------


def test_text_file_named_so_is_not_a_binary(tmp_path: Path) -> None:
    text = tmp_path / "libplugin.so"
    text.write_text("INPUT(libplugin.so.1)\n")
    error = _format_error(text)
    assert (error.code, error.path) == ("not-a-binary", text)
    assert "text file" in error.message
    assert "not-a-binary" in error.render() and str(text.name) in error.render()


def test_empty_file_is_not_a_binary(tmp_path: Path) -> None:
    empty = tmp_path / "libempty.so"
    empty.touch()
    assert _format_error(empty).code == "not-a-binary"


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_missing_file_or_directory_is_unreadable(tmp_path: Path, make: str) -> None:
    target = tmp_path / "libx.so"
    if make == "directory":
        target.mkdir()
    assert _format_error(target).code == "unreadable"


@pytest.mark.parametrize("keep", [6, 40, 0.5, -1])
def test_truncated_library_is_reported_truncated(
    native_libs: NativeLibraries, foreign_libs: dict[str, Path], tmp_path: Path, keep: float
) -> None:
    # Cut just after the magic, inside the first header, mid-way, and one byte short of the end.
    for original in (native_libs.good_c, foreign_libs["pe_plugin"], foreign_libs["macho_plugin"]):
        data = original.read_bytes()
        length = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
        cut = tmp_path / f"cut_{original.name}"
        cut.write_bytes(data[:length])
        error = _format_error(cut)
        assert error.code == "truncated", (original.name, length, error.render())


def test_format_error_is_a_packaging_error_with_a_hint(tmp_path: Path) -> None:
    from plugin_packaging.errors import PackagingError

    cut = tmp_path / "libcut.so"
    cut.write_bytes(b"\x7fELF\x02\x01\x01")
    error = _format_error(cut)
    assert isinstance(error, PackagingError)
    assert error.hint and "again" in error.hint


# -- large libraries ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["elf_big", "pe_big", "macho_big"])
def test_large_library_is_read_without_reading_its_contents(
    foreign_libs: dict[str, Path], name: str
) -> None:
    path = foreign_libs[name]
    assert path.stat().st_size > BIG_TABLE_BYTES
    tracemalloc.start()
    try:
        info = read_library(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.entry.state == "exported"
    assert peak < 1 << 20, f"reading {path.name} allocated {peak} bytes at its peak"


# -- sniffing and serialisation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x7fELF\x02\x01\x01\x00", "elf"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "pe"),
        (b"\xcf\xfa\xed\xfe\x0c\x00\x00\x01", "macho"),
        (b"\xfe\xed\xfa\xce\x00\x00\x00\x12", "macho"),
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x02", "macho"),
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x34", None),  # Java class, major version 52
        (b"!<arch>\n", None),
        (b"", None),
        (b"\x7fEL", None),
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


def test_to_dict_is_json_ready_and_ordered(foreign_libs: dict[str, Path]) -> None:
    data = _info(foreign_libs["macho_universal"]).to_dict()
    assert list(data) == [
        "path",
        "format",
        "platform",
        "kind",
        "is_shared_library",
        "bits",
        "endianness",
        "arch",
        "entry",
        "needed",
        "rpath",
        "runpath",
        "executable_stack",
        "soname",
        "slices",
    ]
    assert json.loads(json.dumps(data)) == data
    assert data["entry"] == {"state": "exported", "variants": []}
    assert [part["arch"] for part in data["slices"]] == [
        part.arch for part in _info(foreign_libs["macho_universal"]).slices
    ]


# -- robustness: any bytes give facts or a format error -------------------------------------------


@pytest.fixture(scope="session")
def mutation_seeds(native_libs: NativeLibraries, foreign_libs: dict[str, Path]) -> list[bytes]:
    """Real libraries of every format and layout, as the starting points of the mutations."""
    stripped = bytearray(native_libs.good_c.read_bytes())
    _strip_section_headers(stripped)
    paths = [
        native_libs.good_c,
        native_libs.good_rust,
        native_libs.foreign_arch,
        foreign_libs["elf_object"],
        foreign_libs["elf_ppc64_big_endian"],
        foreign_libs["pe_plugin"],
        foreign_libs["pe_x86"],
        foreign_libs["macho_plugin"],
        foreign_libs["macho_universal"],
        foreign_libs["macho_object"],
    ]
    return [path.read_bytes() for path in paths] + [bytes(stripped)]


@pytest.fixture(scope="session")
def mutation_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mutated") / "libmutated.so"


def _interesting(length: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from(
            [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1]
        ),
        st.sampled_from([length - 1, length, length + 1, length // 2]),
        st.integers(0, 2**64 - 1),
    )


def _mutate(data: bytearray, draw: Callable) -> bytearray:
    """Apply 1-4 random edits: flip a byte, overwrite a header-sized field, or cut the file."""
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        edit = draw(st.sampled_from(["flip", "header-field", "field", "truncate"]))
        if edit == "flip":
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
        elif edit in ("header-field", "field"):
            # Headers, load commands and tables sit in the first kilobytes of these small files.
            limit = min(len(data), 4096) if edit == "header-field" else len(data)
            at = draw(st.integers(0, limit - 1))
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(_interesting(len(data))) % (1 << (8 * width))
            data[at : at + width] = value.to_bytes(width, draw(st.sampled_from(["little", "big"])))
        else:
            del data[draw(st.integers(0, len(data))) :]
    return data


class Hang(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang(f"read_library ran for {WATCHDOG_SECONDS} s")


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_damage_gives_facts_or_a_format_error(
    mutation_seeds: list[bytes], mutation_target: Path, data: st.DataObject
) -> None:
    seed = data.draw(st.sampled_from(range(len(mutation_seeds))), label="seed")
    mutated = _mutate(bytearray(mutation_seeds[seed]), data.draw)
    mutation_target.write_bytes(mutated)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(WATCHDOG_SECONDS)
    try:
        result = read_library(mutation_target)
    except BinaryFormatError as error:
        assert error.code in ("not-a-binary", "truncated", "corrupt")
        assert error.path == mutation_target
        return
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert isinstance(result, LibraryInfo)
    json.dumps(result.to_dict())


def _huge_section_table(data: bytearray) -> None:
    struct.pack_into("<Q", data, 0x28, 2**40)  # e_shoff far past the end


def _max_section_count(data: bytearray) -> None:
    struct.pack_into("<HH", data, 0x3A, 64, 0xFFFF)  # e_shnum 65535 entries from e_shoff


def _extended_program_header_count(data: bytearray) -> None:
    # e_phnum = PN_XNUM sends the reader to section 0's sh_info: make it four billion.
    struct.pack_into("<H", data, 0x38, 0xFFFF)
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    struct.pack_into("<I", data, shoff + 44, 0xFFFFFFFF)


def _endless_gnu_hash_chain(data: bytearray) -> None:
    """Without section headers .dynsym is sized by walking the DT_GNU_HASH chain of the highest
    bucket to a word with its end bit set. Point a bucket at 4 MiB of zeros appended to the file:
    a chain that never ends before the end of the file."""
    _strip_section_headers(data)
    for offset in _program_headers(data):
        if struct.unpack_from("<I", data, offset)[0] == 2:  # PT_DYNAMIC
            start = struct.unpack_from("<Q", data, offset + 8)[0]
            for tag_at in range(start, start + 4096, 16):
                tag, table = struct.unpack_from("<qQ", data, tag_at)
                if tag == 0x6FFFFEF5:  # DT_GNU_HASH, mapped at its own file offset by gcc
                    buckets, first_hashed, bloom = struct.unpack_from("<III", data, table)
                    chains = table + 16 + bloom * 8 + buckets * 4
                    struct.pack_into(
                        "<I", data, table + 16 + bloom * 8, first_hashed + (len(data) - chains) // 4
                    )
                    data.extend(bytes(4 << 20))
                    return
    raise AssertionError("no DT_GNU_HASH")


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (_huge_section_table, "truncated"),
        (_max_section_count, "truncated"),
        (_extended_program_header_count, "corrupt"),
        (_endless_gnu_hash_chain, "truncated"),
    ],
)
def test_impossible_elf_counts_are_refused_without_allocating(
    native_libs: NativeLibraries, tmp_path: Path, edit: Callable[[bytearray], None], code: str
) -> None:
    edited = _copy_edited(native_libs.good_c, tmp_path / "libedited.so", edit)
    tracemalloc.start()
    try:
        error = _format_error(edited)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code == code, error.render()
    assert peak < 1 << 20


def test_universal_header_with_slices_past_the_end_is_truncated(tmp_path: Path) -> None:
    fat = tmp_path / "libfat.dylib"
    fat.write_bytes(struct.pack(">IIiiIII", 0xCAFEBABE, 1, 0x0100000C, 0, 4096, 1 << 30, 14))
    assert _format_error(fat).code == "truncated"
