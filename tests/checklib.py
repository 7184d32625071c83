"""Builders shared by the checker's tests: plugin directories laid out file by file, and the few
libraries the shared fixtures do not have (compiled here, once per session).

No tests live here; the `test_check_*` modules import it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixturelib import (
    DEPENDENCY_C_SOURCE,
    FixtureBuildError,
    build_c_library,
    c_string_literal,
    compiled_fixture,
)

from plugin_packaging.check.run import CheckReport, check_plugins_dir
from plugin_packaging.rules.model import Finding

GOOD_KIND = "fixture_good"  # the kind compiled into native_libs.good_c
OTHER_KIND = "fixture_other"  # native_libs.good_c_other


def manifest_for(
    plugin_id: str, library: str, node_kind: str = GOOD_KIND, **extra: Any
) -> dict[str, Any]:
    """A plugin.yml as copy-plugins-native writes it."""
    return {
        "schema_version": 1,
        "id": plugin_id,
        "name": plugin_id.title(),
        "version": "1.0.0",
        "node_kind": node_kind,
        "kind": "native",
        "entrypoint": library,
        "description": f"{plugin_id} plugin",
        "license": "MIT",
        **extra,
    }


class PluginDir:
    """A plugin base directory under a StreamKit-like root, built entry by entry."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.plugins = root / ".plugins"
        self.native = self.plugins / "native"
        self.native.mkdir(parents=True, exist_ok=True)

    def bundle(
        self,
        name: str,
        library: Path | None = None,
        *,
        file_name: str | None = None,
        manifest: dict[str, Any] | str | None = None,
        kind: str = GOOD_KIND,
        plugin_id: str | None = None,
        write_manifest: bool = True,
    ) -> Path:
        """`native/<name>/` with `library` copied in (as `file_name`) and a plugin.yml.

        The manifest defaults to a correct one for the library (id = `plugin_id` or `name`);
        pass a dict or raw text to write something else, or `write_manifest=False` for none.
        """
        directory = self.native / name
        directory.mkdir(parents=True, exist_ok=True)
        target_name = file_name or (library.name if library else None)
        if library is not None and target_name is not None:
            shutil.copyfile(library, directory / target_name)
            (directory / target_name).chmod(0o755)
        if write_manifest:
            if manifest is None:
                manifest = manifest_for(plugin_id or name, target_name or "libmissing.so", kind)
            write(directory / "plugin.yml", manifest)
        return directory

    def check(self, **options: Any) -> CheckReport:
        return check_plugins_dir(self.plugins, root=self.root, **options)


def write(path: Path, content: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
    )
    return path


def codes(report: CheckReport) -> list[str]:
    return [finding.code for finding in report.findings]


def only(report: CheckReport, code: str) -> Finding:
    """The one finding with `code`; fails listing every finding otherwise."""
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, (
        f"expected one {code}, got: {[(f.code, str(f.path), f.message) for f in report.findings]}"
    )
    return found[0]


def plan_outcomes(report: CheckReport) -> list[tuple[str, str, str | None]]:
    """(outcome, library path relative to P, rule code) for each plan entry, in order."""
    out = []
    for entry in report.plan.entries:
        path = entry.candidate.path
        shown = (
            str(path.relative_to(report.plugins_dir))
            if path.is_relative_to(report.plugins_dir)
            else str(path)
        )
        out.append((entry.outcome, shown, entry.code))
    return out


@dataclass(frozen=True)
class ExtraLibraries:
    """Libraries compiled for the checker's tests only."""

    #: Needs `libcheckdep.so.1` (its SONAME) with RUNPATH $ORIGIN; `versioned_dep` sits beside it.
    needs_versioned_dep: Path
    versioned_dep: Path
    #: Needs `libchecknested.so` with RUNPATH $ORIGIN/lib; `nested_dep` is lib/libchecknested.so.
    needs_nested_dep: Path
    nested_dep: Path
    #: RUNPATH with a relative entry and one into a build directory.
    runpath_build_dir: Path
    #: Exports only `streamkit_native_plugin_api_v2`: a near miss that is not mangled.
    renamed_entry: Path
    #: A Windows DLL (PE, x86_64) and a macOS dylib (Mach-O, arm64), from clang and lld.
    windows_dll: Path
    macos_dylib: Path


FOREIGN_SOURCE = r"""
#if defined(_WIN32)
#define API __declspec(dllexport)
#else
#define API __attribute__((visibility("default")))
#endif
static const int table = 9;
API const void *streamkit_native_plugin_api(void) { return &table; }
"""


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FixtureBuildError("a checker fixture failed to build", command, result.stderr)


def build_extra_libraries(out: Path) -> ExtraLibraries:
    kind = {"PLUGIN_KIND": c_string_literal(GOOD_KIND), "PLUGIN_USE_DEPENDENCY": None}
    versioned = build_c_library(
        out / "versioned",
        "libcheckdep.so.1",
        source=DEPENDENCY_C_SOURCE,
        flags=["-Wl,-soname,libcheckdep.so.1"],
    )
    needs_versioned = build_c_library(
        out / "versioned",
        "libneeds_versioned.so",
        defines=kind,
        flags=["-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"],
        link_inputs=[versioned],
    )
    nested = build_c_library(
        out / "nested" / "lib",
        "libchecknested.so",
        source=DEPENDENCY_C_SOURCE,
        flags=["-Wl,-soname,libchecknested.so"],
    )
    needs_nested = build_c_library(
        out / "nested",
        "libneeds_nested.so",
        defines=kind,
        flags=["-Wl,-rpath,$ORIGIN/lib", "-Wl,--enable-new-dtags"],
        link_inputs=[nested],
    )
    build_dir = build_c_library(
        out / "build_dir",
        "librunpath_build.so",
        defines={"PLUGIN_KIND": c_string_literal(GOOD_KIND)},
        flags=[
            "-Wl,-rpath,build/lib:/home/builder/streamkit/target/release",
            "-Wl,--enable-new-dtags",
        ],
    )
    (out / "renamed").mkdir(parents=True, exist_ok=True)
    (out / "renamed" / "renamed.c").write_text(
        '__attribute__((visibility("default"))) const void *streamkit_native_plugin_api_v2(void) { return 0; }\n'
    )
    renamed = build_c_library(
        out / "renamed", "librenamed.so", source=out / "renamed" / "renamed.c"
    )
    foreign = out / "foreign"
    foreign.mkdir(parents=True, exist_ok=True)
    (foreign / "plugin.c").write_text(FOREIGN_SOURCE)
    clang = shutil.which("clang")
    if clang is None:
        raise FixtureBuildError(
            "clang is not installed; the checker's foreign-format fixtures need clang and lld"
        )
    _run(
        [
            clang,
            "--target=x86_64-pc-windows-msvc",
            "-nostdlib",
            "-fuse-ld=lld",
            "-shared",
            "-Wl,/noentry",
            "-o",
            "checkplugin.dll",
            "plugin.c",
        ],
        foreign,
    )
    _run(
        [
            clang,
            "--target=arm64-apple-macos11",
            "-nostdlib",
            "-fuse-ld=lld",
            "-shared",
            "-o",
            "libcheckplugin.dylib",
            "plugin.c",
        ],
        foreign,
    )
    return ExtraLibraries(
        needs_versioned_dep=needs_versioned,
        versioned_dep=versioned,
        needs_nested_dep=needs_nested,
        nested_dep=nested,
        runpath_build_dir=build_dir,
        renamed_entry=renamed,
        windows_dll=foreign / "checkplugin.dll",
        macos_dylib=foreign / "libcheckplugin.dylib",
    )


@pytest.fixture(scope="session")
@compiled_fixture
def extra_libs(tmp_path_factory: pytest.TempPathFactory) -> ExtraLibraries:
    return build_extra_libraries(tmp_path_factory.mktemp("check_libs"))


@pytest.fixture
def tree(tmp_path: Path) -> PluginDir:
    return PluginDir(tmp_path / "streamkit")
