"""Active records (P/active/*.json, section 6): read first, judged as the server judges them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from checklib import (  # noqa: F401
    PluginDir,
    codes,
    manifest_for,
    only,
    plan_outcomes,
    tree,
    write,
)

ENTRYPOINT = ".plugins/bundles/good/1.0.0/cpu/libgood_c.so"  # relative to the server's working dir


def marketplace_install(
    tree: PluginDir, library: Path, *, record: dict | None = None, name: str = "good.json"
) -> Path:
    """What the marketplace leaves behind: a bundle under bundles/ and a record under active/."""
    bundle = tree.plugins / "bundles" / "good" / "1.0.0" / "cpu"
    bundle.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(library, bundle / "libgood_c.so")
    write(bundle / "plugin.yml", manifest_for("good", "libgood_c.so"))
    data = {
        "plugin_id": "good",
        "version": "1.0.0",
        "node_kind": "fixture_good",
        "kind": "native",
        "entrypoint": ENTRYPOINT,
        "installed_at_ms": 1767225600000,
        "accelerator": "cpu",
    }
    if record is not None:
        data.update(record)
        data = {k: v for k, v in data.items() if v is not ...}
    path = tree.plugins / "active" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_active_record_loads_first_and_wins_over_a_local_bundle(
    tree: PluginDir, native_libs
) -> None:
    marketplace_install(tree, native_libs.good_c)
    tree.bundle("good", native_libs.good_c)
    report = tree.check()
    duplicate = only(report, "duplicate-node-kind")
    assert duplicate.bundle == "good" and "active record good.json" in duplicate.message
    assert plan_outcomes(report) == [
        ("load", "bundles/good/1.0.0/cpu/libgood_c.so", None),
        ("skip", "native/good/libgood_c.so", "duplicate-node-kind"),
    ]
    assert report.plan.entries[0].candidate.kind_source == "record"
    assert report.plan.entries[0].candidate.manifest.name == "plugin.yml"


def test_a_good_record_alone_has_no_findings(tree: PluginDir, native_libs) -> None:
    marketplace_install(tree, native_libs.good_c)
    report = tree.check()
    assert report.findings == ()
    assert [e.outcome for e in report.plan.entries] == ["load"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("{not json", "not valid JSON"), ("[1, 2]", "JSON list"), ("", "not valid JSON")],
)
def test_record_that_does_not_parse_is_skipped(tree: PluginDir, text: str, expected: str) -> None:
    (tree.plugins / "active").mkdir()
    (tree.plugins / "active" / "broken.json").write_text(text)
    report = tree.check()
    assert expected in only(report, "active-record-unparseable").message
    assert plan_outcomes(report)[0][0::2] == ("skip", "active-record-unparseable")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"installed_at_ms": "yesterday"}, "installed_at_ms"),
        ({"installed_at_ms": 1.5}, "installed_at_ms"),
        ({"installed_at_ms": ...}, "installed_at_ms"),
        ({"kind": "Native"}, "kind"),
        ({"node_kind": 7}, "node_kind"),
        ({"accelerator": "rocm"}, "accelerator"),
    ],
)
def test_record_fields_have_types(tree: PluginDir, native_libs, change: dict, key: str) -> None:
    marketplace_install(tree, native_libs.good_c, record=change)
    assert only(tree.check(), "active-record-field").key == key


@pytest.mark.parametrize(
    ("key", "value"), [("plugin_id", "../good"), ("version", "1.0.0/x"), ("plugin_id", "")]
)
def test_record_id_and_version_must_be_safe(
    tree: PluginDir, native_libs, key: str, value: str
) -> None:
    marketplace_install(tree, native_libs.good_c, record={key: value})
    assert only(tree.check(), "active-record-unsafe-name").key == key


def test_entrypoint_resolves_against_the_servers_working_directory(
    tree: PluginDir, native_libs
) -> None:
    # Relative to the record it would exist; the server resolves it against its working directory.
    marketplace_install(
        tree, native_libs.good_c, record={"entrypoint": "../bundles/good/1.0.0/cpu/libgood_c.so"}
    )
    report = tree.check()
    finding = only(report, "active-record-entrypoint-missing")
    assert str(tree.root) in finding.message


def test_entrypoint_outside_the_plugin_directory_is_refused(
    tree: PluginDir, native_libs, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "libgood_c.so"
    outside.parent.mkdir()
    shutil.copyfile(native_libs.good_c, outside)
    marketplace_install(tree, native_libs.good_c, record={"entrypoint": str(outside)})
    assert only(tree.check(), "active-record-outside-plugins-dir").key == "entrypoint"


def test_entrypoint_symlinked_out_of_the_plugin_directory_is_refused(
    tree: PluginDir, native_libs, tmp_path: Path
) -> None:
    marketplace_install(tree, native_libs.good_c)
    library = tree.root / ENTRYPOINT
    outside = tmp_path / "real.so"
    shutil.move(library, outside)
    os.symlink(outside, library)
    assert only(tree.check(), "active-record-outside-plugins-dir")


def test_files_in_active_that_the_server_never_reads(tree: PluginDir, native_libs) -> None:
    record = marketplace_install(tree, native_libs.good_c)
    shutil.copyfile(record, record.with_name("good.JSON"))
    shutil.copyfile(record, record.with_name("good.json.bak"))
    report = tree.check()
    assert sorted(f.path.name for f in report.findings if f.code == "active-record-ignored") == [
        "good.JSON",
        "good.json.bak",
    ]
    assert all(f.severity == "info" for f in report.findings)
    assert len(report.plan.entries) == 1


def test_record_library_is_checked_like_a_bundle_library(tree: PluginDir, native_libs) -> None:
    marketplace_install(tree, native_libs.hidden_symbol)
    report = tree.check()
    finding = only(report, "entry-symbol-hidden")
    assert finding.record == "good.json"
    assert plan_outcomes(report)[0][0::2] == ("skip", "entry-symbol-hidden")


def test_two_records_with_one_kind(tree: PluginDir, native_libs) -> None:
    marketplace_install(tree, native_libs.good_c)
    marketplace_install(tree, native_libs.good_c, name="again.json")
    assert "depends on the order" in only(tree.check(), "duplicate-node-kind").message


def test_records_are_not_judged_by_a_check_limited_to_bundles(tree: PluginDir, native_libs) -> None:
    marketplace_install(tree, native_libs.good_c, record={"installed_at_ms": "yesterday"})
    tree.bundle("good", native_libs.good_c)
    assert "active-record-field" not in codes(tree.check(bundles={"good"}))
    assert "active-record-field" in codes(tree.check())
