"""Vendoring shared libraries into release bundles, on a StreamKit-shaped tree.

Six official StreamKit plugins link sherpa-onnx: `NEEDED libsherpa-onnx-c-api.so` and
`libonnxruntime.so`, `RUNPATH /usr/local/lib`. The stand-ins here are compiled with `cc` the
same way: `libonnxruntime.so`, `libsherpa-onnx-c-api.so` (which needs it, with an absolute
RUNPATH of its own, as an installed library may have), both in a temporary "/usr/local/lib",
and a plugin that needs both with RUNPATH to that directory. Packaging must put both libraries
into the bundle, set every RUNPATH to `$ORIGIN` (read back with pyelftools, independently of
the tool's own reader), pass verify-plugin-bundles, and load with an empty LD_LIBRARY_PATH once
the original directory is gone.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cli import run_in_process
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from fixturelib import (
    GOOD_C_KIND,
    PLUGIN_C_SOURCE,
    build_c_library,
    c_string_literal,
    compiled_fixture,
)
from releaselib import (
    install_library,
    no_extras,
    tar_file,
    tar_members,
    tar_stream,
    write_source,
)

from plugin_packaging.release.archive import ArchiveLimits, extract_bundle
from plugin_packaging.release.vendor import SYSTEM_LIBRARIES

SHERPA = "libsherpa-onnx-c-api.so"
ONNXRUNTIME = "libonnxruntime.so"
CODEC = "libstandin-codec.so.2"
FDK_AAC = "libfdk-aac.so.2"
BUNDLE = "sherpa-demo-1.0.0-bundle.tar.zst"
ENTRY = "libsherpa_demo.so"
DATE = "2025-03-04"

_ONNXRUNTIME_C = '__attribute__((visibility("default"))) int onnx_answer(void) { return 40; }\n'
_SHERPA_C = (
    "int onnx_answer(void);\n"
    '__attribute__((visibility("default"))) int fixture_dependency_answer(void)\n'
    "{ return onnx_answer() + 2; }\n"
)


def build_sherpa_stand_ins(lib_dir: Path, scratch: Path) -> None:
    """`libonnxruntime.so` and `libsherpa-onnx-c-api.so` (needing it, RUNPATH `lib_dir`)."""
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "onnxruntime.c").write_text(_ONNXRUNTIME_C)
    (scratch / "sherpa.c").write_text(_SHERPA_C)
    onnxruntime = build_c_library(
        lib_dir, ONNXRUNTIME, source=scratch / "onnxruntime.c", flags=[f"-Wl,-soname,{ONNXRUNTIME}"]
    )
    build_c_library(
        lib_dir,
        SHERPA,
        source=scratch / "sherpa.c",
        flags=[f"-Wl,-soname,{SHERPA}", f"-Wl,-rpath,{lib_dir}", "-Wl,--enable-new-dtags"],
        link_inputs=[onnxruntime],
    )


def build_sherpa_plugin(out_dir: Path, lib_dir: Path, *, runpath: bool = True) -> Path:
    """A plugin needing both libraries (as StreamKit's sherpa plugins do), RUNPATH `lib_dir`."""
    flags = ["-Wl,--no-as-needed"]  # keep DT_NEEDED libonnxruntime.so, as the real ones have it
    if runpath:
        flags += [f"-Wl,-rpath,{lib_dir}", "-Wl,--enable-new-dtags"]
    return build_c_library(
        out_dir,
        ENTRY,
        defines={"PLUGIN_KIND": c_string_literal(GOOD_C_KIND), "PLUGIN_USE_DEPENDENCY": None},
        flags=flags,
        link_inputs=[lib_dir / SHERPA, lib_dir / ONNXRUNTIME],
    )


@pytest.fixture(scope="module")
@compiled_fixture
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Compiled once: the libraries in a "/usr/local/lib", plugins with and without RUNPATH."""
    base = tmp_path_factory.mktemp("sherpa")
    lib_dir = base / "usr" / "local" / "lib"
    build_sherpa_stand_ins(lib_dir, base / "src")
    # A library users' systems might provide, which a plugin leaves to them on purpose.
    (base / "src" / "codec.c").write_text(_ONNXRUNTIME_C.replace("onnx_answer", "codec_answer"))
    codec = build_c_library(
        lib_dir, CODEC, source=base / "src" / "codec.c", flags=[f"-Wl,-soname,{CODEC}"]
    )
    (base / "src" / "fdk.c").write_text(_ONNXRUNTIME_C.replace("onnx_answer", "fdk_answer"))
    fdk_aac = build_c_library(
        lib_dir, FDK_AAC, source=base / "src" / "fdk.c", flags=[f"-Wl,-soname,{FDK_AAC}"]
    )
    return {
        "lib_dir": lib_dir,
        "plugin_with_fdk_aac": build_c_library(
            base / "aac",
            ENTRY,
            defines={"PLUGIN_KIND": c_string_literal(GOOD_C_KIND)},
            flags=["-Wl,--no-as-needed", f"-Wl,-rpath,{lib_dir}", "-Wl,--enable-new-dtags"],
            link_inputs=[fdk_aac],
        ),
        "plugin": build_sherpa_plugin(base / "plugin", lib_dir),
        "plugin_without_runpath": build_sherpa_plugin(base / "bare", lib_dir, runpath=False),
        "plugin_with_codec": build_c_library(
            base / "codec",
            ENTRY,
            defines={"PLUGIN_KIND": c_string_literal(GOOD_C_KIND)},
            flags=["-Wl,--no-as-needed", f"-Wl,-rpath,{lib_dir}", "-Wl,--enable-new-dtags"],
            link_inputs=[codec],
        ),
    }


@pytest.fixture
def tree(tmp_path: Path, stand_ins: dict[str, Path]) -> Path:
    """A checkout with one sherpa-linked plugin, built, and its libraries in a private copy of
    the "/usr/local/lib" its RUNPATH names (so a test may take one away)."""
    root = tmp_path / "streamkit"
    root.mkdir()
    no_extras(root)
    write_source(root, "sherpa-demo", GOOD_C_KIND, "sherpa_demo", "1.0.0")
    install_library(root, stand_ins["plugin"], "sherpa_demo")
    return root


def package(root: Path, *args: str) -> tuple[int, str]:
    # From the root, as a person runs it: relative paths on the command line are taken from there.
    return run_in_process(
        "package-plugins-native", "--root", str(root), "--published-at", DATE, *args, cwd=root
    )


def verify(root: Path, *args: str) -> tuple[int, str]:
    return run_in_process(
        "verify-plugin-bundles",
        "--root",
        str(root),
        "--bundles",
        str(root / "dist/bundles"),
        "--registry",
        str(root / "dist/registry"),
        *args,
    )


def search_paths(library: Path) -> dict[str, list[str]]:
    """DT_RPATH and DT_RUNPATH as pyelftools reads them: tag -> entries."""
    found: dict[str, list[str]] = {}
    with library.open("rb") as stream:
        for section in ELFFile(stream).iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_RPATH":
                        found.setdefault("RPATH", []).extend(tag.rpath.split(":"))
                    elif tag.entry.d_tag == "DT_RUNPATH":
                        found.setdefault("RUNPATH", []).extend(tag.runpath.split(":"))
    return found


def loads_in_clean_child(library: Path) -> subprocess.CompletedProcess[str]:
    """dlopen `library` (and call into its dependencies) in a child with LD_LIBRARY_PATH empty."""
    script = (
        "import ctypes, sys\n"
        "lib = ctypes.CDLL(sys.argv[1])\n"
        "print(ctypes.CDLL(sys.argv[2]).fixture_dependency_answer())\n"
    )
    environment = {key: value for key, value in os.environ.items() if not key.startswith("LD_")}
    environment["LD_LIBRARY_PATH"] = ""
    return subprocess.run(
        [sys.executable, "-c", script, str(library), str(library.parent / SHERPA)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def digests(*directories: Path) -> dict[str, str]:
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for directory in directories
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


# --- the StreamKit case ---------------------------------------------------------------------------


def test_a_sherpa_linked_plugin_is_bundled_with_both_libraries_and_runpath_origin(
    tree: Path, stand_ins: dict[str, Path], tmp_path: Path
) -> None:
    code, out = package(tree)
    assert code == 0, out
    archive = tree / "dist" / "bundles" / BUNDLE
    assert sorted(tar_members(archive)) == sorted(
        [ENTRY, "plugin.yml", "manifest.json", SHERPA, ONNXRUNTIME]
    )
    unpacked = tmp_path / "unpacked"
    extract_bundle(archive, unpacked, ArchiveLimits())
    # What StreamKit's verify_bundles.py checks: the entry's search path leaves /usr/local/lib
    # behind, and both sherpa libraries lie beside it.
    assert search_paths(unpacked / ENTRY) == {"RUNPATH": ["$ORIGIN"]}
    assert search_paths(unpacked / SHERPA) == {"RUNPATH": ["$ORIGIN"]}
    # Every vendored library, even one that needs nothing from the bundle: a library that
    # dlopens a sibling (ONNX Runtime's providers) looks through its own RUNPATH.
    assert search_paths(stand_ins["lib_dir"] / ONNXRUNTIME) == {}
    assert search_paths(unpacked / ONNXRUNTIME) == {"RUNPATH": ["$ORIGIN"]}

    code, out = verify(tree)
    assert code == 0, out
    assert out.splitlines()[-1].startswith("0 errors")

    # The build machine's directory is gone: the bundle alone must be enough.
    moved = tmp_path / "moved-away"
    shutil.copytree(stand_ins["lib_dir"], moved)
    shutil.rmtree(stand_ins["lib_dir"])
    try:
        result = loads_in_clean_child(unpacked / ENTRY)
    finally:
        shutil.copytree(moved, stand_ins["lib_dir"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_the_build_output_is_never_modified(tree: Path, stand_ins: dict[str, Path]) -> None:
    before = digests(tree / "target", stand_ins["lib_dir"])
    assert package(tree)[0] == 0
    assert digests(tree / "target", stand_ins["lib_dir"]) == before
    assert search_paths(tree / "target" / "plugins" / "release" / ENTRY) == {
        "RUNPATH": [str(stand_ins["lib_dir"])]
    }


def test_vendored_bundles_are_byte_identical_from_run_to_run(tree: Path) -> None:
    assert package(tree, "--out", "first")[0] == 0
    assert package(tree, "--out", "second")[0] == 0
    first = (tree / "first" / "bundles" / BUNDLE).read_bytes()
    assert first == (tree / "second" / "bundles" / BUNDLE).read_bytes()
    assert (tree / "first" / "bundles" / "SHA256SUMS").read_bytes() == (
        tree / "second" / "bundles" / "SHA256SUMS"
    ).read_bytes()


def test_a_dependency_that_cannot_be_found_fails_naming_it_and_where_it_looked(
    tree: Path, stand_ins: dict[str, Path], tmp_path: Path
) -> None:
    # The message names the library, who needs it first, and every place looked in.
    lib_dir = tmp_path / "usr" / "local" / "lib"
    build_sherpa_stand_ins(lib_dir, tmp_path / "src")
    library = build_sherpa_plugin(tmp_path / "plugin", lib_dir)
    install_library(tree, library, "sherpa_demo")
    (lib_dir / ONNXRUNTIME).unlink()
    code, out = package(tree)
    assert code == 1, out
    assert "error[vendor-library-missing]" in out
    assert f"{ONNXRUNTIME} (needed by {ENTRY})" in out
    assert f"RUNPATH {lib_dir}" in out
    assert "LD_LIBRARY_PATH" in out and "ld.so.cache" in out and "/usr/lib" in out
    assert "hint: add the directory that holds it to plugins.vendor.search_dirs" in out
    assert not (tree / "dist" / "bundles").exists()


def test_search_dirs_and_ld_library_path_find_what_no_runpath_names(
    tree: Path, stand_ins: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    install_library(tree, stand_ins["plugin_without_runpath"], "sherpa_demo")
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    code, out = package(tree)
    assert code == 1 and f"{SHERPA} (needed by {ENTRY}): looked in LD_LIBRARY_PATH unset" in out

    monkeypatch.setenv("LD_LIBRARY_PATH", str(stand_ins["lib_dir"]))
    assert package(tree, "--out", "from-environment")[0] == 0
    monkeypatch.delenv("LD_LIBRARY_PATH")

    (tree / "invoke.yaml").write_text(
        "plugins:\n  extras:\n    gain-native:\n      enabled: false\n"
        f"  vendor:\n    search_dirs: [{stand_ins['lib_dir']}]\n"
    )
    code, out = package(tree)
    assert code == 0, out
    archive = tree / "dist" / "bundles" / BUNDLE
    assert {SHERPA, ONNXRUNTIME} <= set(tar_members(archive))
    # A RUNPATH is added where there was none.
    assert b"$ORIGIN" in tar_file(archive, ENTRY)
    assert archive.read_bytes() == (tree / "from-environment" / "bundles" / BUNDLE).read_bytes()
    assert verify(tree)[0] == 0


def test_an_excluded_library_is_left_to_the_system_and_verify_agrees(
    tree: Path, stand_ins: dict[str, Path]
) -> None:
    install_library(tree, stand_ins["plugin_with_codec"], "sherpa_demo")
    (tree / "invoke.yaml").write_text(
        "plugins:\n  extras:\n    gain-native:\n      enabled: false\n"
        "  vendor:\n    exclude: [libstandin-codec.so.*]\n"
    )
    code, out = package(tree)
    assert code == 0, out
    members = set(tar_members(tree / "dist" / "bundles" / BUNDLE))
    assert members == {ENTRY, "plugin.yml", "manifest.json"}
    code, out = verify(tree)
    assert code == 0, out
    assert (
        f"info[bundle-dependency-system]: {tree / 'dist' / 'bundles' / BUNDLE / ENTRY}: "
        f"needs {CODEC} from the system (excluded from vendoring by plugins.vendor.exclude)"
    ) in out
    # Without the setting, verify refuses the same bundle: the library is not in it.
    (tree / "invoke.yaml").write_text(
        "plugins:\n  extras:\n    gain-native:\n      enabled: false\n"
    )
    code, out = verify(tree)
    assert code == 1 and "error[bundle-dependency-not-vendored]" in out


def test_libfdk_aac_is_left_to_users_as_streamkits_aac_encoder_asks(
    tree: Path, stand_ins: dict[str, Path]
) -> None:
    # aac-encoder's description says "Requires libfdk-aac.so.2 at runtime": StreamKit does
    # not redistribute FDK AAC, and neither does vendoring.
    install_library(tree, stand_ins["plugin_with_fdk_aac"], "sherpa_demo")
    code, out = package(tree)
    assert code == 0, out
    archive = tree / "dist" / "bundles" / BUNDLE
    assert set(tar_members(archive)) == {ENTRY, "plugin.yml", "manifest.json"}
    code, out = verify(tree)
    assert code == 0, out
    assert (
        f"info[bundle-dependency-system]: {archive / ENTRY}: needs {FDK_AAC} from the system "
        "(never vendored: StreamKit's plugins ask users to install it)"
    ) in out


def test_streamkits_gate_requires_the_sherpa_runtime_even_when_excluded(tree: Path) -> None:
    # StreamKit's verify_bundles.py refuses a sherpa-linked bundle without libonnxruntime.so,
    # whatever the verifying machine has installed; verify-plugin-bundles agrees.
    (tree / "invoke.yaml").write_text(
        "plugins:\n  extras:\n    gain-native:\n      enabled: false\n"
        "  vendor:\n    exclude: [libonnx*]\n"
    )
    code, out = package(tree)
    assert code == 0, out
    members = set(tar_members(tree / "dist" / "bundles" / BUNDLE))
    assert SHERPA in members and ONNXRUNTIME not in members
    code, out = verify(tree)
    assert code == 1, out
    assert (
        f"error[bundle-runtime-missing]: {tree / 'dist' / 'bundles' / BUNDLE / ENTRY}: needs "
        f"{SHERPA}, so StreamKit's bundle gate requires {ONNXRUNTIME} beside it"
    ) in out


@pytest.mark.parametrize(
    "how",
    [
        ("--no-vendor",),
        "  vendor:\n    per_plugin:\n      sherpa-demo: {enabled: false}\n",
        "  vendor:\n    enabled: false\n",
    ],
)
def test_vendoring_can_be_turned_off_and_verify_then_refuses_the_bundle(
    tree: Path, stand_ins: dict[str, Path], how: tuple[str, ...] | str
) -> None:
    if isinstance(how, str):
        (tree / "invoke.yaml").write_text(
            "plugins:\n  extras:\n    gain-native:\n      enabled: false\n" + how
        )
    code, out = package(tree, *(how if isinstance(how, tuple) else ()))
    assert code == 0, out
    archive = tree / "dist" / "bundles" / BUNDLE
    assert sorted(tar_members(archive)) == sorted([ENTRY, "plugin.yml", "manifest.json"])
    assert tar_file(archive, ENTRY) == stand_ins["plugin"].read_bytes()
    code, out = verify(tree)
    assert code == 1
    assert "error[bundle-search-path-absolute]" in out


def test_a_library_already_in_extra_files_is_not_copied_twice_but_followed(
    tree: Path, stand_ins: dict[str, Path]
) -> None:
    (tree / "third_party").mkdir()
    shutil.copyfile(stand_ins["lib_dir"] / SHERPA, tree / "third_party" / SHERPA)
    write_source(
        tree,
        "sherpa-demo",
        GOOD_C_KIND,
        "sherpa_demo",
        "1.0.0",
        extra_files=[f"third_party/{SHERPA}"],
    )
    code, out = package(tree)
    assert code == 0, out
    archive = tree / "dist" / "bundles" / BUNDLE
    with tarfile.open(fileobj=io.BytesIO(tar_stream(archive)), mode="r:") as tar:
        names = tar.getnames()  # every member, duplicates included
    assert names.count(SHERPA) == 1 and ONNXRUNTIME in names
    # The extra file's absolute RUNPATH was replaced in the bundle's copy only.
    assert str(stand_ins["lib_dir"]).encode() not in tar_file(archive, SHERPA)
    assert str(stand_ins["lib_dir"]).encode() in (tree / "third_party" / SHERPA).read_bytes()
    assert verify(tree)[0] == 0


def test_the_report_says_what_was_vendored_from_where(
    tree: Path, stand_ins: dict[str, Path]
) -> None:
    for args in (("--dry-run",), ()):
        code, out = package(tree, *args)
        assert code == 0, out
        assert (
            f"      vendored: {SHERPA} (from {stand_ins['lib_dir'] / SHERPA}), "
            f"{ONNXRUNTIME} (from {stand_ins['lib_dir'] / ONNXRUNTIME})"
        ) in out
        assert (tree / "dist").exists() == (args == ())


def test_a_plugin_needing_only_the_system_is_packaged_untouched(
    tree: Path, stand_ins: dict[str, Path], tmp_path: Path
) -> None:
    plain = build_c_library(
        tmp_path / "plain",
        "libplain.so",
        source=PLUGIN_C_SOURCE,
        defines={"PLUGIN_KIND": c_string_literal(GOOD_C_KIND)},
    )
    install_library(tree, plain, "sherpa_demo")
    assert package(tree)[0] == 0
    archive = tree / "dist" / "bundles" / BUNDLE
    assert sorted(tar_members(archive)) == sorted([ENTRY, "plugin.yml", "manifest.json"])
    assert tar_file(archive, ENTRY) == plain.read_bytes()


def test_the_system_policy_is_auditwheels_baseline() -> None:
    for name in ("libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libpthread.so.0"):
        assert name in SYSTEM_LIBRARIES
    assert "ld-linux-x86-64.so.2" in SYSTEM_LIBRARIES
    assert ONNXRUNTIME not in SYSTEM_LIBRARIES and SHERPA not in SYSTEM_LIBRARIES


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("  vendor:\n    search_dir: [x]\n", "plugins.vendor has unknown key(s) search_dir"),
        ("  vendor:\n    exclude: 3\n", "plugins.vendor.exclude must be a list of strings"),
        ("  vendor:\n    enabled: maybe\n", "plugins.vendor.enabled must be true or false"),
        (
            "  vendor:\n    per_plugin:\n      sherpa-demo: [a]\n",
            "plugins.vendor.per_plugin.sherpa-demo must be a mapping or false",
        ),
    ],
)
def test_bad_vendor_settings_are_one_readable_error(
    tree: Path, setting: str, expected: str
) -> None:
    (tree / "invoke.yaml").write_text(
        "plugins:\n  extras:\n    gain-native:\n      enabled: false\n" + setting
    )
    code, out = package(tree)
    assert code == 2, out
    assert expected in out and "Traceback" not in out
