"""The layout of P/native against the loader (N1-N5, section 3), on real trees with real libraries."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from checklib import (  # noqa: F401 - fixtures
    GOOD_KIND,
    OTHER_KIND,
    PluginDir,
    codes,
    extra_libs,
    manifest_for,
    only,
    plan_outcomes,
    tree,
)

from plugin_packaging.check.run import check_plugins_dir
from plugin_packaging.errors import PackagingError


def test_a_clean_tree_has_no_findings_and_loads_every_plugin(tree: PluginDir, native_libs) -> None:
    tree.bundle("good", native_libs.good_c)
    tree.bundle("other", native_libs.good_c_other, kind=OTHER_KIND)
    tree.bundle("rusty", native_libs.good_rust, kind="fixture_rust")
    report = tree.check()
    assert report.findings == ()
    assert not report.failed(strict=True)
    assert [(e.outcome, e.position, e.candidate.kind) for e in report.plan.entries] == [
        ("load", 1, f"plugin::native::{GOOD_KIND}"),
        ("load", 2, f"plugin::native::{OTHER_KIND}"),
        ("load", 3, "plugin::native::fixture_rust"),
    ]
    assert all(e.candidate.manifest.name == "plugin.yml" for e in report.plan.entries)


def test_bare_library_in_native_dir_is_an_error_and_is_skipped(
    tree: PluginDir, native_libs
) -> None:
    shutil.copyfile(native_libs.good_c, tree.native / "libleftover.so")
    (tree.native / "README.txt").write_text("other top-level files are ignored silently\n")
    report = tree.check()
    finding = only(report, "bare-library")
    assert finding.severity == "error" and finding.path == tree.native / "libleftover.so"
    # Left by the old copy recipe: the tool that moves it into a bundle is named.
    assert "migrate-plugins-native" in finding.hint
    assert codes(report) == ["bare-library"]
    assert report.failed()


def test_library_nested_below_a_bundle_is_never_found(tree: PluginDir, native_libs) -> None:
    bundle = tree.bundle("deep", None, manifest=manifest_for("deep", "libgood_c.so"))
    (bundle / "lib").mkdir()
    shutil.copyfile(native_libs.good_c, bundle / "lib" / "libgood_c.so")
    report = tree.check()
    nested = only(report, "nested-library")
    assert nested.path == bundle / "lib" / "libgood_c.so"
    assert "native/deep/lib/libgood_c.so" in nested.message
    assert "bundle-without-library" in codes(report)
    assert report.plan.entries == ()


def test_nested_dependency_reached_through_runpath_is_fine(tree: PluginDir, extra_libs) -> None:
    bundle = tree.bundle("nested-dep", extra_libs.needs_nested_dep)
    (bundle / "lib").mkdir()
    shutil.copyfile(extra_libs.nested_dep, bundle / "lib" / extra_libs.nested_dep.name)
    report = tree.check()
    assert report.findings == (), [f.message for f in report.findings]


def test_bundle_without_any_library_is_a_warning(tree: PluginDir) -> None:
    tree.bundle("empty", None, manifest=manifest_for("empty", "libempty.so"))
    report = tree.check()
    finding = only(report, "bundle-without-library")
    assert finding.severity == "warning" and finding.bundle == "empty"
    assert not report.failed() and report.failed(strict=True)


def test_several_libraries_in_one_bundle_are_all_opened(tree: PluginDir, native_libs) -> None:
    # A vendored dependency next to the plugin: the loader opens it too, and it has no entry symbol.
    bundle = tree.bundle("vendored", native_libs.vendored_dep)
    dependency = next(
        p
        for p in native_libs.vendored_dep.parent.iterdir()
        if p.name != native_libs.vendored_dep.name
    )
    shutil.copyfile(dependency, bundle / dependency.name)
    report = tree.check()
    several = only(report, "bundle-several-libraries")
    assert several.severity == "error"
    assert "2 library files" in several.message and dependency.name in several.message
    assert "(libvendored_dep.so)" in several.hint
    assert only(report, "entry-symbol-missing").path == bundle / dependency.name
    outcomes = {Path(p).name: (o, c) for o, p, c in plan_outcomes(report)}
    assert outcomes == {
        dependency.name: ("skip", "entry-symbol-missing"),
        "libvendored_dep.so": ("load", None),
    }


def test_directory_named_like_a_library_is_opened_and_fails(tree: PluginDir, native_libs) -> None:
    bundle = tree.bundle("with-dir", native_libs.good_c)
    (bundle / "models.so").mkdir()
    report = tree.check()
    assert only(report, "library-is-directory").path == bundle / "models.so"
    assert "bundle-several-libraries" in codes(report)
    assert ("skip", "native/with-dir/models.so", "library-is-directory") in plan_outcomes(report)


@pytest.mark.parametrize(
    ("file_name", "suggestion", "why"),
    [
        ("libgood.so.1", "libgood.so", "versioned names are never loaded"),
        ("libgood.SO", "libgood.so", "case-sensitively"),
        ("libgood.so.1.2.3", "libgood.so", "versioned names are never loaded"),
    ],
)
def test_names_the_loader_ignores_are_reported_with_the_name_it_would_load(
    tree: PluginDir, native_libs, file_name: str, suggestion: str, why: str
) -> None:
    tree.bundle("renamed", native_libs.good_c, file_name=file_name)
    report = tree.check()
    finding = only(report, "library-name-ignored")
    assert finding.path.name == file_name and why in finding.message
    assert f"rename it to {suggestion}" in finding.hint
    assert "bundle-without-library" in codes(report)


def test_cargo_dep_info_is_not_mistaken_for_a_library(tree: PluginDir, native_libs) -> None:
    bundle = tree.bundle("good", native_libs.good_c)
    (bundle / "libgood_c.so.d").write_text("cargo dep-info\n")
    assert tree.check().findings == ()


def test_versioned_dependency_beside_the_plugin_is_not_reported(
    tree: PluginDir, extra_libs
) -> None:
    # The right way to vendor: under its SONAME, which the loader skips, found through $ORIGIN.
    bundle = tree.bundle("versioned", extra_libs.needs_versioned_dep)
    shutil.copyfile(extra_libs.versioned_dep, bundle / extra_libs.versioned_dep.name)
    report = tree.check()
    assert report.findings == (), [f.message for f in report.findings]


@pytest.mark.parametrize("file_name", ["lib..so", "..so", " libspace.so"])
def test_library_names_an_upload_would_refuse_are_a_warning(
    tree: PluginDir, native_libs, file_name: str
) -> None:
    tree.bundle("odd", native_libs.good_c, file_name=file_name)
    report = tree.check()
    finding = only(report, "library-name-unsafe")
    assert finding.severity == "warning"
    assert [e.outcome for e in report.plan.entries] == ["load"]  # on disk it still loads


def test_bundle_named_neither_after_its_id_nor_its_library(tree: PluginDir, native_libs) -> None:
    tree.bundle("old-copy", native_libs.good_c, plugin_id="good")
    report = tree.check()
    finding = only(report, "bundle-name-differs")
    assert "native/good/" in finding.hint and finding.bundle == "old-copy"


def test_bundle_named_after_the_library_stem_is_an_upload_and_fine(
    tree: PluginDir, native_libs
) -> None:
    tree.bundle("good_c", native_libs.good_c, plugin_id="good")
    assert tree.check().findings == ()


def test_hidden_bundle_directory_is_loaded_like_any_other(tree: PluginDir, native_libs) -> None:
    tree.bundle(".good.bak", native_libs.good_c, plugin_id="good")
    report = tree.check()
    assert only(report, "hidden-bundle").severity == "warning"
    assert [e.outcome for e in report.plan.entries] == ["load"]


def test_broken_symlink_in_native_is_reported(tree: PluginDir) -> None:
    os.symlink("/nonexistent/streamkit-plugin", tree.native / "gone")
    finding = only(tree.check(), "broken-symlink")
    assert "/nonexistent/streamkit-plugin" in finding.message


def test_symlinked_bundle_directory_counts(tree: PluginDir, native_libs, tmp_path: Path) -> None:
    elsewhere = PluginDir(tmp_path / "elsewhere").bundle(
        "real", native_libs.good_c, plugin_id="linked"
    )
    os.symlink(elsewhere, tree.native / "linked")
    report = tree.check()
    assert report.findings == ()
    assert [e.outcome for e in report.plan.entries] == ["load"]


def test_duplicate_kinds_are_resolved_component_by_component(tree: PluginDir, native_libs) -> None:
    # A string sort puts "a.b/..." before "a/..." ('.' < '/'); Rust's PathBuf order does not.
    tree.bundle("a.b", native_libs.good_c, plugin_id="a.b")
    tree.bundle("a", native_libs.good_c, plugin_id="a")
    report = tree.check()
    duplicate = only(report, "duplicate-node-kind")
    assert duplicate.path == tree.native / "a.b" / "libgood_c.so"
    assert (
        "native/a/libgood_c.so" in duplicate.message
        and "constructors still run" in duplicate.message
    )
    assert [(o, p) for o, p, _ in plan_outcomes(report)] == [
        ("load", "native/a/libgood_c.so"),
        ("skip", "native/a.b/libgood_c.so"),
    ]


def test_duplicate_message_gives_both_versions(tree: PluginDir, native_libs) -> None:
    tree.bundle(
        "first", native_libs.good_c, manifest=manifest_for("first", "libgood_c.so", version="2.0.0")
    )
    tree.bundle(
        "second",
        native_libs.good_c,
        manifest=manifest_for("second", "libgood_c.so", version="1.5.0"),
    )
    assert (
        "(version 1.5.0; the loaded one is 2.0.0)"
        in only(tree.check(), "duplicate-node-kind").message
    )


def test_missing_plugins_dir_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(PackagingError) as raised:
        check_plugins_dir(tmp_path / "nowhere")
    assert raised.value.code == "plugins-dir-missing"
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackagingError) as raised:
        check_plugins_dir(tmp_path / "empty")
    assert raised.value.code == "plugins-dir-empty"


def test_limited_check_reads_only_the_named_bundles_but_the_whole_tree_for_duplicates(
    tree: PluginDir, native_libs
) -> None:
    broken = tree.bundle("broken", native_libs.good_c_other, kind=OTHER_KIND)
    (broken / "libgood_c_other.so").write_bytes(b"\x7fELF truncated")
    tree.bundle("changed", native_libs.good_c)
    tree.bundle("unchanged-twin", native_libs.good_c, plugin_id="twin")
    shutil.copyfile(native_libs.good_c, tree.native / "libbare.so")

    limited = tree.check(bundles={"changed"})
    # The broken library is in a bundle that did not change: not opened, not reported.
    assert "library-truncated" not in codes(limited) and "library-corrupt" not in codes(limited)
    assert "bare-library" in codes(limited)
    assert "duplicate-node-kind" in codes(limited)  # across plugins: always the whole tree
    assert "bundle-name-differs" not in codes(limited)  # per bundle: only for "changed"
    assert limited.checked_bundles == ("changed",)
    assert {
        e.candidate.bundle: e.candidate.checked for e in limited.plan.entries if e.candidate.bundle
    } == {
        "broken": False,
        "changed": True,
        "unchanged-twin": False,
    }

    full = tree.check()
    assert "bundle-name-differs" in codes(full)
    assert any(
        code in codes(full)
        for code in ("library-truncated", "library-corrupt", "library-not-binary")
    )


def test_limited_check_with_nothing_changed_still_sees_bare_libraries(
    tree: PluginDir, native_libs
) -> None:
    tree.bundle("good", native_libs.good_c)
    shutil.copyfile(native_libs.good_c, tree.native / "libbare.so")
    assert codes(tree.check(bundles=set())) == ["bare-library"]
