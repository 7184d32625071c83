"""Pin that the compiled fixtures are what their names claim.

The checker and prober tests trust `native_libs` and the sample tree: a "hidden symbol"
library that quietly exports its symbol would make a checker test pass for the wrong reason.
These tests read each library's ELF data statically with pyelftools, and load libraries only in
child processes (loading runs plugin code, which must never run in the pytest process).
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from fixturelib import (
    CHILD_PID_FILE_VARIABLE,
    COLON_KIND,
    CTOR_HANG_MESSAGE,
    CTOR_MARKER_NAME,
    ENTRY_SYMBOL,
    GOOD_C_KIND,
    INVALID_UTF8_KIND,
    MISSING_DEPENDENCY_NAME,
    OTHER_C_KIND,
    PREFIXED_KIND,
    RUST_KIND,
    SAMPLE_PLUGINS,
    VENDORED_DEPENDENCY_NAME,
    ChildLoadError,
    FixtureBuildError,
    NativeLibraries,
    SamplePlugin,
    build_c_library,
    load_only_command,
    report_entry_in_child,
)

DF_1_PIE = 0x08000000
SAMPLE_ARTIFACTS = {plugin.plugin_id: plugin.artifact for plugin in SAMPLE_PLUGINS}


class SymbolEntry(NamedTuple):
    name: str
    type: str
    bind: str
    visibility: str
    defined: bool


def symbols(path: Path, section_name: str) -> list[SymbolEntry]:
    with path.open("rb") as stream:
        section = ELFFile(stream).get_section_by_name(section_name)
        if not isinstance(section, SymbolTableSection):
            return []
        return [
            SymbolEntry(
                symbol.name,
                symbol["st_info"]["type"],
                symbol["st_info"]["bind"],
                symbol["st_other"]["visibility"],
                symbol["st_shndx"] != "SHN_UNDEF",
            )
            for symbol in section.iter_symbols()
            if symbol.name
        ]


def entry_symbols(path: Path, section_name: str = ".dynsym") -> list[SymbolEntry]:
    """Every symbol whose name contains the entry name (plain or inside a mangled name)."""
    return [entry for entry in symbols(path, section_name) if ENTRY_SYMBOL in entry.name]


def dynamic_tags(path: Path) -> dict[str, list[object]]:
    tags: dict[str, list[object]] = {}
    with path.open("rb") as stream:
        for section in ELFFile(stream).iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    named = {
                        "DT_NEEDED": "needed",
                        "DT_RPATH": "rpath",
                        "DT_RUNPATH": "runpath",
                        "DT_SONAME": "soname",
                    }.get(tag.entry.d_tag)
                    value = getattr(tag, named) if named else tag.entry.d_val
                    tags.setdefault(tag.entry.d_tag, []).append(value)
    return tags


def elf_header(path: Path) -> tuple[int, str, str]:
    """(ELF class in bits, e_type, e_machine)."""
    with path.open("rb") as stream:
        elf = ELFFile(stream)
        return elf.elfclass, elf.header["e_type"], elf.header["e_machine"]


def stack_is_executable(path: Path) -> bool:
    with path.open("rb") as stream:
        for segment in ELFFile(stream).iter_segments():
            if segment["p_type"] == "PT_GNU_STACK":
                return bool(segment["p_flags"] & 0x1)  # PF_X
    raise AssertionError(f"{path} has no PT_GNU_STACK segment")


# Every variant that exports the plain entry function, defined, GLOBAL, default visibility.
EXPORTING_VARIANTS = [
    "good_c",
    "good_c_other",
    "good_rust",
    "api_v5",
    "api_v10",
    "null_entry",
    "kind_with_colons",
    "kind_prefixed",
    "kind_invalid_utf8",
    "ctor_abort",
    "ctor_hang",
    "ctor_fork",
    "ctor_write_file",
    "execstack",
    "rpath_usr_local",
    "runpath_usr_local",
    "vendored_dep",
    "missing_dep",
    "foreign_arch",
]


@pytest.mark.parametrize("variant", EXPORTING_VARIANTS)
def test_variant_exports_the_entry_function(native_libs: NativeLibraries, variant: str) -> None:
    library = getattr(native_libs, variant)
    assert entry_symbols(library) == [
        SymbolEntry(ENTRY_SYMBOL, "STT_FUNC", "STB_GLOBAL", "STV_DEFAULT", True)
    ]


def test_every_variant_is_a_separate_file_in_its_own_directory(
    native_libs: NativeLibraries,
) -> None:
    paths = native_libs.as_dict()
    assert all(path.is_file() and path.suffix == ".so" for path in paths.values())
    assert len({path.parent for path in paths.values()}) == len(paths)


def test_weak_variant_exports_the_entry_function_as_weak(native_libs: NativeLibraries) -> None:
    assert entry_symbols(native_libs.weak_symbol) == [
        SymbolEntry(ENTRY_SYMBOL, "STT_FUNC", "STB_WEAK", "STV_DEFAULT", True)
    ]


@pytest.mark.parametrize("variant", ["no_symbol", "hidden_symbol", "rust_no_mangle"])
def test_variant_lacks_the_entry_symbol_in_dynsym(
    native_libs: NativeLibraries, variant: str
) -> None:
    library = getattr(native_libs, variant)
    assert symbols(library, ".dynsym"), "the library should still export something"
    assert entry_symbols(library) == []


@pytest.mark.parametrize(
    "variant",
    ["no_symbol", "hidden_symbol", "rust_no_mangle", "mangled_cpp", "mangled_rust_dylib"],
)
def test_dlsym_cannot_find_the_entry_in_variants_that_do_not_export_it(
    native_libs: NativeLibraries, variant: str
) -> None:
    # The dynamic view agrees with the static one: the library loads, the lookup fails.
    with pytest.raises(ChildLoadError, match=f"undefined symbol: {ENTRY_SYMBOL}"):
        report_entry_in_child(getattr(native_libs, variant))


def test_no_symbol_variant_has_no_entry_symbol_at_all(native_libs: NativeLibraries) -> None:
    assert entry_symbols(native_libs.no_symbol, ".symtab") == []


def test_hidden_entry_symbol_survives_only_as_a_local_symbol(native_libs: NativeLibraries) -> None:
    assert entry_symbols(native_libs.hidden_symbol, ".symtab") == [
        SymbolEntry(ENTRY_SYMBOL, "STT_FUNC", "STB_LOCAL", "STV_DEFAULT", True)
    ]


def test_rust_cdylib_without_no_mangle_keeps_only_a_local_mangled_name(
    native_libs: NativeLibraries,
) -> None:
    # rustc does not export a cdylib function that lacks #[no_mangle]; it is just a local.
    (entry,) = entry_symbols(native_libs.rust_no_mangle, ".symtab")
    assert entry.name.startswith("_ZN") and entry.name != ENTRY_SYMBOL
    assert (entry.type, entry.bind) == ("STT_FUNC", "STB_LOCAL")


def test_rust_dylib_without_no_mangle_exports_only_a_mangled_name(
    native_libs: NativeLibraries,
) -> None:
    (entry,) = entry_symbols(native_libs.mangled_rust_dylib)
    assert entry.name.startswith("_ZN") and entry.name != ENTRY_SYMBOL
    assert (entry.type, entry.bind, entry.defined) == ("STT_FUNC", "STB_GLOBAL", True)


def test_cpp_build_exports_only_the_mangled_name(native_libs: NativeLibraries) -> None:
    assert entry_symbols(native_libs.mangled_cpp) == [
        SymbolEntry(
            "_Z27streamkit_native_plugin_apiv", "STT_FUNC", "STB_GLOBAL", "STV_DEFAULT", True
        )
    ]


def test_entry_is_object_variant_exports_data_under_the_entry_name(
    native_libs: NativeLibraries,
) -> None:
    assert entry_symbols(native_libs.entry_is_object) == [
        SymbolEntry(ENTRY_SYMBOL, "STT_OBJECT", "STB_GLOBAL", "STV_DEFAULT", True)
    ]


def test_undefined_symbol_variant_only_references_the_entry_name(
    native_libs: NativeLibraries,
) -> None:
    (entry,) = entry_symbols(native_libs.undefined_symbol)
    assert entry.name == ENTRY_SYMBOL and not entry.defined


def test_execstack_variant_has_an_executable_stack(native_libs: NativeLibraries) -> None:
    assert stack_is_executable(native_libs.execstack)
    assert not stack_is_executable(native_libs.good_c)


def test_rpath_variant_has_dt_rpath_usr_local_and_no_runpath(native_libs: NativeLibraries) -> None:
    tags = dynamic_tags(native_libs.rpath_usr_local)
    assert tags["DT_RPATH"] == ["/usr/local/lib"]
    assert "DT_RUNPATH" not in tags


def test_runpath_variant_has_dt_runpath_usr_local_and_no_rpath(
    native_libs: NativeLibraries,
) -> None:
    tags = dynamic_tags(native_libs.runpath_usr_local)
    assert tags["DT_RUNPATH"] == ["/usr/local/lib"]
    assert "DT_RPATH" not in tags


def test_good_library_has_no_search_path(native_libs: NativeLibraries) -> None:
    tags = dynamic_tags(native_libs.good_c)
    assert "DT_RPATH" not in tags and "DT_RUNPATH" not in tags


def test_vendored_dependency_sits_beside_the_library_and_loads_through_origin(
    native_libs: NativeLibraries,
) -> None:
    tags = dynamic_tags(native_libs.vendored_dep)
    assert VENDORED_DEPENDENCY_NAME in tags["DT_NEEDED"]
    assert tags["DT_RUNPATH"] == ["$ORIGIN"]
    assert sorted(path.name for path in native_libs.vendored_dep.parent.iterdir()) == sorted(
        [native_libs.vendored_dep.name, VENDORED_DEPENDENCY_NAME]
    )
    assert entry_symbols(native_libs.vendored_dep.parent / VENDORED_DEPENDENCY_NAME) == []
    assert report_entry_in_child(native_libs.vendored_dep).kind == GOOD_C_KIND.encode()


def test_missing_dependency_is_needed_but_exists_nowhere(native_libs: NativeLibraries) -> None:
    assert MISSING_DEPENDENCY_NAME in dynamic_tags(native_libs.missing_dep)["DT_NEEDED"]
    build_root = native_libs.missing_dep.parent.parent
    assert not any(build_root.rglob(MISSING_DEPENDENCY_NAME))
    result = subprocess.run(
        load_only_command(native_libs.missing_dep), capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert f"{MISSING_DEPENDENCY_NAME}: cannot open shared object file" in result.stderr


def test_foreign_arch_variant_is_a_32_bit_i386_shared_object(native_libs: NativeLibraries) -> None:
    assert elf_header(native_libs.foreign_arch) == (32, "ET_DYN", "EM_386")
    assert elf_header(native_libs.good_c) == (64, "ET_DYN", "EM_X86_64")


def test_static_archive_variant_is_an_ar_archive_not_elf(native_libs: NativeLibraries) -> None:
    with native_libs.static_archive.open("rb") as stream:
        assert stream.read(8) == b"!<arch>\n"


def test_executable_variants_are_not_plain_shared_objects(native_libs: NativeLibraries) -> None:
    assert elf_header(native_libs.executable)[1] == "ET_EXEC"
    assert elf_header(native_libs.pie_executable)[1] == "ET_DYN"
    assert dynamic_tags(native_libs.pie_executable)["DT_FLAGS_1"][0] & DF_1_PIE
    assert not dynamic_tags(native_libs.good_c).get("DT_FLAGS_1", [0])[0] & DF_1_PIE


@pytest.mark.parametrize(
    ("variant", "kind"),
    [
        ("good_c", GOOD_C_KIND),
        ("good_c_other", OTHER_C_KIND),
        ("good_rust", RUST_KIND),
        ("kind_with_colons", COLON_KIND),
        ("kind_prefixed", PREFIXED_KIND),
    ],
)
def test_loaded_variant_reports_version_9_and_its_kind(
    native_libs: NativeLibraries, variant: str, kind: str
) -> None:
    report = report_entry_in_child(getattr(native_libs, variant))
    assert (report.version, report.kind) == (9, kind.encode())
    assert report.inputs == ("in",) and report.outputs == ("out",)
    assert json.loads(report.param_schema or "")["type"] == "object"


def test_invalid_utf8_kind_reaches_the_host_byte_for_byte(native_libs: NativeLibraries) -> None:
    report = report_entry_in_child(native_libs.kind_invalid_utf8)
    assert report.kind == INVALID_UTF8_KIND
    with pytest.raises(UnicodeDecodeError):
        report.kind.decode("utf-8")


@pytest.mark.parametrize(("variant", "version"), [("api_v5", 5), ("api_v10", 10)])
def test_out_of_range_variant_reports_its_version(
    native_libs: NativeLibraries, variant: str, version: int
) -> None:
    assert report_entry_in_child(getattr(native_libs, variant)).version == version


def test_null_entry_variant_returns_null(native_libs: NativeLibraries) -> None:
    assert report_entry_in_child(native_libs.null_entry).api_is_null


def test_abort_constructor_kills_the_loading_process(native_libs: NativeLibraries) -> None:
    result = subprocess.run(
        load_only_command(native_libs.ctor_abort), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == -signal.SIGABRT
    assert "loaded" not in result.stdout


def test_hanging_constructor_never_returns(native_libs: NativeLibraries) -> None:
    process = subprocess.Popen(
        load_only_command(native_libs.ctor_hang), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        readable, _, _ = select.select([process.stderr], [], [], 60)
        assert readable, "the constructor never announced itself"
        assert CTOR_HANG_MESSAGE.encode() in os.read(process.stderr.fileno(), 4096)
        # The constructor runs `for (;;) sleep(1);`: the load cannot finish.
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.5)
    finally:
        process.kill()
        stdout, _ = process.communicate()
    assert b"loaded" not in stdout


def test_forking_constructor_leaves_a_child_behind(
    native_libs: NativeLibraries, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    # No pipes: the forked child inherits stdout/stderr and would hold them open for
    # CTOR_FORK_CHILD_SECONDS.
    result = subprocess.run(
        load_only_command(native_libs.ctor_fork),
        env={**os.environ, CHILD_PID_FILE_VARIABLE: str(pid_file)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 0
    child = int(pid_file.read_text())
    try:
        # The child is a fork of our loader, so its command line names the library.
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        assert str(native_libs.ctor_fork).encode() in cmdline
    finally:
        os.kill(child, signal.SIGKILL)


def test_file_writing_constructor_writes_into_the_working_directory(
    native_libs: NativeLibraries, tmp_path: Path
) -> None:
    result = subprocess.run(
        load_only_command(native_libs.ctor_write_file),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "loaded"
    assert (tmp_path / CTOR_MARKER_NAME).read_text() == "written by a plugin constructor\n"


@pytest.mark.compiled
def test_compile_error_raises_with_the_compiler_stderr(tmp_path: Path) -> None:
    source = tmp_path / "broken.c"
    source.write_text("int broken(void) { return undeclared_name; }\n")
    with pytest.raises(FixtureBuildError, match="undeclared_name"):
        build_c_library(tmp_path, "libbroken.so", source=source)


def test_missing_compiler_is_an_error_not_a_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FixtureBuildError, match="`cc` is not on PATH"):
        build_c_library(tmp_path, "libgood.so")


# The sample tree ---------------------------------------------------------------------------


@pytest.mark.parametrize("plugin", SAMPLE_PLUGINS, ids=lambda plugin: plugin.plugin_id)
def test_sample_plugin_is_built_where_its_layout_says(
    built_sample_tree: Path, plugin: SamplePlugin
) -> None:
    library = built_sample_tree / plugin.artifact
    assert entry_symbols(library) == [
        SymbolEntry(ENTRY_SYMBOL, "STT_FUNC", "STB_GLOBAL", "STV_DEFAULT", True)
    ]
    report = report_entry_in_child(library)
    assert (report.version, report.kind) == (9, plugin.node_kind.encode())
    assert json.loads(report.param_schema or "")["type"] == "object"


def test_sample_manifests_match_their_plugins(built_sample_tree: Path) -> None:
    for plugin in SAMPLE_PLUGINS:
        if not plugin.has_manifest:
            continue
        source = built_sample_tree / "plugins/native" / plugin.plugin_id / "plugin.yml"
        manifest = yaml.safe_load(source.read_text())
        assert manifest["id"] == plugin.plugin_id
        assert manifest["version"] == plugin.version  # a string, not a YAML float
        assert manifest["node_kind"] == plugin.node_kind
        assert manifest["kind"] == "native"
        assert manifest["artifact"] == plugin.artifact
        assert manifest["entrypoint"] == Path(plugin.artifact).name
        assert manifest["license"] == "MIT" and manifest["description"]


def test_volume_c_manifest_declares_one_asset_type(built_sample_tree: Path) -> None:
    source = built_sample_tree / "plugins/native/volume-c/plugin.yml"
    manifest = yaml.safe_load(source.read_text())
    assert manifest["assets"] == [
        {
            "type_id": "volume-presets",
            "label": "Volume presets",
            "extensions": ["json"],
            "max_size_bytes": 65536,
            "content_type": "text",
        }
    ]


def test_sample_tree_has_the_streamkit_oddities(built_sample_tree: Path) -> None:
    # No manifest for the support crate or the example; the support crate builds an rlib.
    assert not (built_sample_tree / "plugins/native/common/plugin.yml").exists()
    assert not (built_sample_tree / "examples/plugins/gain-native/plugin.yml").exists()
    assert (built_sample_tree / "target/plugins/release/libstreamkit_native_common.rlib").is_file()
    # Cargo leaves a second copy under deps/, which discovery must not pick up.
    assert (built_sample_tree / "target/plugins/release/deps/libtone_gen.so").is_file()
    gitignore = (built_sample_tree / ".gitignore").read_text().split()
    assert {"target/", "build/", ".plugins/"} <= set(gitignore)


def test_sample_tree_copy_keeps_mtimes(built_sample_tree: Path, sample_tree: Path) -> None:
    assert sample_tree != built_sample_tree
    checked = [plugin.artifact for plugin in SAMPLE_PLUGINS]
    checked += ["plugins/native/volume-c/build", "target"]  # directories too
    for relative in checked:
        copied, original = sample_tree / relative, built_sample_tree / relative
        assert copied.stat().st_mtime_ns == original.stat().st_mtime_ns, relative


# Runs in a child: create an instance with the given parameters, then either tick a source or
# push one frame of samples through process_packet, and print the samples.
_PROCESS_SCRIPT = r"""
import ctypes, json, sys
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_float, c_int32, c_size_t, c_uint16, c_uint32
from ctypes import c_void_p

class CAudioFrame(ctypes.Structure):
    _fields_ = [("samples", POINTER(c_float)), ("sample_count", c_size_t),
                ("sample_rate", c_uint32), ("channels", c_uint16)]

class CSourceConfig(ctypes.Structure):
    _fields_ = [("sample_rate", c_uint32), ("channels", c_uint16), ("frame_samples", c_uint32)]

class Api(ctypes.Structure):
    _fields_ = [
        ("version", c_uint32), ("get_metadata", c_void_p),
        ("create_instance", CFUNCTYPE(c_void_p, c_char_p)),
        ("process_packet", CFUNCTYPE(c_int32, c_void_p, c_char_p, POINTER(CAudioFrame))),
        ("update_params", CFUNCTYPE(c_int32, c_void_p, c_char_p)),
        ("flush", CFUNCTYPE(c_int32, c_void_p)),
        ("destroy_instance", CFUNCTYPE(None, c_void_p)),
        ("get_source_config", CFUNCTYPE(c_int32, c_void_p, POINTER(CSourceConfig))),
        ("tick", CFUNCTYPE(c_int32, c_void_p, POINTER(CAudioFrame))),
        ("get_runtime_param_schema", CFUNCTYPE(c_char_p, c_void_p)),
        ("on_upstream_hint", CFUNCTYPE(None, c_void_p, c_char_p)),
    ]

library, params, update, samples = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
entry = ctypes.CDLL(library).streamkit_native_plugin_api
entry.restype = POINTER(Api)
api = entry().contents
instance = api.create_instance(params.encode())
if update:
    assert api.update_params(instance, update.encode()) == 0
buffer = (c_float * len(samples))(*samples)
frame = CAudioFrame(buffer, len(samples), 48000, 1)
if api.tick:
    config = CSourceConfig()
    assert api.get_source_config(instance, ctypes.byref(config)) == 0
    status = api.tick(instance, ctypes.byref(frame))
else:
    config = None
    status = api.process_packet(instance, b"in", ctypes.byref(frame))
api.destroy_instance(instance)
print(json.dumps({"status": status, "source": bool(api.tick), "samples": list(buffer),
                  "sample_rate": None if config is None else config.sample_rate}))
"""


def run_sample_plugin(
    library: Path, params: str, samples: list[float], update: str = ""
) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", _PROCESS_SCRIPT, str(library), params, update, json.dumps(samples)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_gain_plugin_multiplies_samples(built_sample_tree: Path) -> None:
    library = built_sample_tree / SAMPLE_ARTIFACTS["gain-native"]
    out = run_sample_plugin(library, '{"gain_db": -20}', [1.0, -0.5])
    assert out["status"] == 0 and out["source"] is False
    assert out["samples"] == pytest.approx([0.1, -0.05])


def test_volume_c_plugin_scales_and_mutes(built_sample_tree: Path) -> None:
    library = built_sample_tree / SAMPLE_ARTIFACTS["volume-c"]
    assert run_sample_plugin(library, '{"volume": 0.5}', [1.0, -0.5])["samples"] == [0.5, -0.25]
    muted = run_sample_plugin(library, '{"volume": 0.5}', [1.0, -0.5], update='{"mute": true}')
    assert muted["samples"] == [0.0, 0.0]


def test_tone_plugin_generates_a_sine(built_sample_tree: Path) -> None:
    library = built_sample_tree / SAMPLE_ARTIFACTS["tone-generator"]
    out = run_sample_plugin(library, '{"frequency_hz": 1000, "amplitude": 0.25}', [0.0] * 48)
    assert out["status"] == 0 and out["source"] is True and out["sample_rate"] == 48000
    # 1 kHz at 48 kHz: 48 samples per cycle.
    expected = [0.25 * math.sin(2 * math.pi * index / 48) for index in range(48)]
    assert out["samples"] == pytest.approx(expected, abs=1e-6)
