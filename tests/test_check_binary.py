"""Library binaries judged statically (N6, N11, section 5): real compiler output, never loaded here."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest
from checklib import PluginDir, codes, extra_libs, only, plan_outcomes, tree  # noqa: F401 - fixtures
from fixturelib import MISSING_DEPENDENCY_NAME

from plugin_packaging.binary.dynlinks import DependencyResolver, read_ldconfig_cache
from plugin_packaging.check.library import check_library, glibc_refuses_executable_stack
from plugin_packaging.target import Target

ENTRY = "streamkit_native_plugin_api"


def single(tree: PluginDir, library: Path, **check_options) -> tuple[list[str], object]:
    tree.bundle(
        library.parent.name.replace("_", "-"),
        library,
        plugin_id=library.parent.name.replace("_", "-"),
        file_name=library.name,
    )
    # The directory is named after the id, so only the library can be at fault.
    report = tree.check(**check_options)
    return codes(report), report


@pytest.mark.parametrize("variant", ["good_c", "good_rust", "weak_symbol", "kind_prefixed"])
def test_loadable_libraries_have_no_findings(tree: PluginDir, native_libs, variant: str) -> None:
    found, report = single(tree, getattr(native_libs, variant))
    assert found == [], [f.message for f in report.findings]


def test_missing_entry_symbol(tree: PluginDir, native_libs) -> None:
    _found, report = single(tree, native_libs.no_symbol)
    finding = only(report, "entry-symbol-missing")
    assert finding.symbol == ENTRY and "native_plugin_entry!" in finding.hint
    assert plan_outcomes(report)[0][0::2] == ("skip", "entry-symbol-missing")


def test_missing_entry_symbol_names_the_near_miss_it_does_export(
    tree: PluginDir, extra_libs
) -> None:
    finding = only(single(tree, extra_libs.renamed_entry)[1], "entry-symbol-missing")
    assert (
        "(only streamkit_native_plugin_api_v2, which the loader does not look up)"
        in finding.message
    )


def test_entry_symbol_with_hidden_visibility(tree: PluginDir, native_libs) -> None:
    finding = only(single(tree, native_libs.hidden_symbol)[1], "entry-symbol-hidden")
    assert 'visibility("default")' in finding.hint


def test_cpp_mangled_entry_symbol_says_extern_c(tree: PluginDir, native_libs) -> None:
    finding = only(single(tree, native_libs.mangled_cpp)[1], "entry-symbol-mangled")
    assert "C++" in finding.message and "_Z27streamkit_native_plugin_apiv" in finding.message
    assert 'extern "C"' in finding.hint


@pytest.mark.parametrize("variant", ["rust_no_mangle", "mangled_rust_dylib"])
def test_rust_mangled_entry_symbol_says_no_mangle(
    tree: PluginDir, native_libs, variant: str
) -> None:
    finding = only(single(tree, getattr(native_libs, variant))[1], "entry-symbol-mangled")
    assert "Rust" in finding.message and "#[no_mangle]" in finding.hint


def test_undefined_entry_symbol(tree: PluginDir, native_libs) -> None:
    assert only(single(tree, native_libs.undefined_symbol)[1], "entry-symbol-undefined")


def test_entry_symbol_that_is_data(tree: PluginDir, native_libs) -> None:
    assert only(single(tree, native_libs.entry_is_object)[1], "entry-symbol-not-function")


def test_executable_stack_is_refused_by_new_glibc(tree: PluginDir, native_libs) -> None:
    _found, report = single(tree, native_libs.execstack)
    finding = only(report, "library-executable-stack")
    assert "noexecstack" in finding.hint and finding.severity == "error"
    # The plan says what this machine's glibc does: older ones still grant the stack.
    expected = "skip" if glibc_refuses_executable_stack() else "load"
    assert report.plan.entries[0].outcome == expected


@pytest.mark.parametrize(
    ("variant", "tag"), [("rpath_usr_local", "RPATH"), ("runpath_usr_local", "RUNPATH")]
)
def test_search_path_into_usr_local_lib(
    tree: PluginDir, native_libs, variant: str, tag: str
) -> None:
    finding = only(single(tree, getattr(native_libs, variant))[1], "library-search-path")
    assert (
        finding.key == tag
        and "`/usr/local/lib`" in finding.message
        and "outside the bundle" in finding.message
    )
    assert finding.severity == "warning"


def test_search_path_into_a_build_directory_and_relative_to_cwd(
    tree: PluginDir, extra_libs
) -> None:
    finding = only(single(tree, extra_libs.runpath_build_dir)[1], "library-search-path")
    assert "`/home/builder/streamkit/target/release`" in finding.message
    assert "`build/lib`" in finding.message and "working directory" in finding.message


def test_dependency_not_found_on_this_machine(tree: PluginDir, native_libs) -> None:
    _found, report = single(tree, native_libs.missing_dep)
    finding = only(report, "library-dependency-missing")
    assert finding.symbol == MISSING_DEPENDENCY_NAME and finding.severity == "warning"
    assert "ld.so.cache" in finding.message and "LD_LIBRARY_PATH" in finding.message
    assert plan_outcomes(report)[0][0::2] == ("skip", "library-dependency-missing")


def test_dependency_found_through_ld_library_path(native_libs, tmp_path: Path) -> None:
    shutil.copyfile(native_libs.good_c, tmp_path / MISSING_DEPENDENCY_NAME)
    resolver = DependencyResolver(environment={"LD_LIBRARY_PATH": str(tmp_path)})
    verdict = check_library(native_libs.missing_dep, target=Target.of("linux"), resolver=resolver)
    assert [v.code for v in verdict.violations] == []
    assert {d.name: d.via for d in verdict.dependencies}[
        MISSING_DEPENDENCY_NAME
    ] == "LD_LIBRARY_PATH"


def test_system_dependencies_resolve_through_the_ld_so_cache(native_libs) -> None:
    verdict = check_library(
        native_libs.good_rust, target=Target.of("linux"), resolver=DependencyResolver()
    )
    vias = {d.name: d.via for d in verdict.dependencies}
    assert vias["libc.so.6"] == "ld.so.cache" and vias["libgcc_s.so.1"] == "ld.so.cache"
    assert "libc.so.6" in read_ldconfig_cache()


def test_dependencies_are_not_resolved_for_another_architecture(
    tree: PluginDir, native_libs
) -> None:
    # For another target this machine's libraries say nothing: no dependency findings at all.
    found, _ = single(tree, native_libs.missing_dep, target=Target.of("linux", "aarch64"))
    assert "library-dependency-missing" not in found and "library-wrong-arch" in found


def test_missing_dependency_of_a_vendored_library_is_found(
    tree: PluginDir, extra_libs, tmp_path: Path
) -> None:
    directory = tree.bundle("versioned", extra_libs.needs_versioned_dep)
    assert tree.check().findings != ()  # without the vendored library beside it
    shutil.copyfile(extra_libs.versioned_dep, directory / extra_libs.versioned_dep.name)
    assert tree.check().findings == ()


def test_foreign_architecture(tree: PluginDir, native_libs) -> None:
    found, report = single(tree, native_libs.foreign_arch)
    finding = only(report, "library-wrong-arch")
    assert (
        "x86 (ELF 32-bit, little-endian)" in finding.message and "x86_64 (64-bit" in finding.message
    )
    assert "--arch x86" in finding.hint
    assert found == ["library-wrong-arch"]


def test_foreign_architecture_is_right_for_its_own_target(tree: PluginDir, native_libs) -> None:
    found, _ = single(tree, native_libs.foreign_arch, target=Target.of("linux", "i686"))
    assert found == []


@pytest.mark.parametrize("variant", ["executable", "pie_executable"])
def test_executables_are_not_shared_libraries(tree: PluginDir, native_libs, variant: str) -> None:
    found, report = single(tree, getattr(native_libs, variant))
    assert "an executable" in only(report, "library-not-shared").message
    assert found == ["library-not-shared"]


def test_static_archive_named_so(tree: PluginDir, native_libs) -> None:
    finding = only(single(tree, native_libs.static_archive)[1], "library-not-binary")
    assert "static archive" in finding.message and "cdylib" in finding.hint


def test_text_file_named_so(tree: PluginDir, tmp_path: Path) -> None:
    fake = tmp_path / "text" / "libtext.so"
    fake.parent.mkdir()
    fake.write_text("INPUT(libreal.so.1)\n")  # a linker script, as /usr/lib/libc.so is
    assert "text file" in only(single(tree, fake)[1], "library-not-binary").message


def test_truncated_library(tree: PluginDir, native_libs, tmp_path: Path) -> None:
    cut = tmp_path / "cut" / "libcut.so"
    cut.parent.mkdir()
    data = native_libs.good_c.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    found, report = single(tree, cut)
    assert found == ["library-truncated"]
    assert plan_outcomes(report)[0][0::2] == ("skip", "library-truncated")


def test_corrupt_header(tree: PluginDir, native_libs, tmp_path: Path) -> None:
    # A real library with one impossible header value: section header entries of 1 byte.
    broken = tmp_path / "corrupt" / "libcorrupt.so"
    broken.parent.mkdir()
    data = bytearray(native_libs.good_c.read_bytes())
    struct.pack_into("<H", data, 0x3A, 1)  # e_shentsize of ELF64
    broken.write_bytes(bytes(data))
    assert single(tree, broken)[0] == ["library-corrupt"]


def test_library_nobody_may_read(tree: PluginDir, native_libs) -> None:
    directory = tree.bundle("locked", native_libs.good_c, plugin_id="locked")
    os.chmod(directory / "libgood_c.so", 0)
    finding = only(tree.check(), "library-unreadable")
    assert "mode 0000" in finding.message and "chmod 0755" in finding.hint


def test_windows_dll_in_a_linux_bundle(tree: PluginDir, extra_libs) -> None:
    _found, report = single(tree, extra_libs.windows_dll)
    assert "windows" in only(report, "library-wrong-platform").message
    tree2 = PluginDir(tree.root.parent / "as-so")
    tree2.bundle("checkplugin", extra_libs.windows_dll, file_name="libcheckplugin.so")
    both = codes(tree2.check())
    assert "library-format-mismatch" in both and "library-wrong-platform" in both


def test_macos_dylib_is_clean_for_its_own_target(tree: PluginDir, extra_libs) -> None:
    found, _ = single(tree, extra_libs.macos_dylib, target=Target.of("macos", "arm64"))
    assert found == []
    found, _report = single(tree, extra_libs.macos_dylib)
    assert "library-wrong-platform" in found


def test_elf_library_checked_for_macos(tree: PluginDir, native_libs) -> None:
    finding = only(
        single(tree, native_libs.good_c, target=Target.of("macos", "aarch64"))[1],
        "library-wrong-platform",
    )
    assert "ELF" in finding.message and "--platform linux" in finding.hint


def test_elf_named_dylib_loads_on_linux_but_is_misnamed(tree: PluginDir, native_libs) -> None:
    tree.bundle("good", native_libs.good_c, file_name="libgood_c.dylib")
    report = tree.check()
    assert "libgood_c.so" in only(report, "library-format-mismatch").hint
    assert [e.outcome for e in report.plan.entries] == ["load"]
