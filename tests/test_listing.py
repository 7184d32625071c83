"""list-plugins-native: every plugin and where it stands, from the same planner as the install."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from cli import run_in_process

from plugin_packaging.install.listing import JSON_FORMAT_VERSION, list_plugins, render_plugin_table
from plugin_packaging.install.run import install_plugins
from plugin_packaging.settings import Settings


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and mtime: what "changes nothing" compares."""
    found = {}
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = Path(directory, name)
            info = path.lstat()
            found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture
def every_status(sample_tree: Path, native_libs) -> Path:
    """The sample tree with one plugin in each state the listing knows."""
    settings = Settings.from_config({}, root=str(sample_tree))
    install_plugins(settings, only=["tone-generator", "volume-c"])
    # volume-c: rebuilt differently after installing -> stale.
    library = sample_tree / "plugins/native/volume-c/build/libvolume_c.so"
    shutil.copyfile(native_libs.good_c, library)
    # ghost: declared, never built.
    ghost = sample_tree / "plugins/native/ghost"
    ghost.mkdir()
    (ghost / "plugin.yml").write_text(
        yaml.safe_dump(
            {
                "id": "ghost",
                "version": "0.3.0",
                "node_kind": "ghost",
                "kind": "native",
                "entrypoint": "libghost.so",
                "artifact": "target/plugins/release/libghost.so",
            }
        )
    )
    native = sample_tree / ".plugins/native"
    # foreign: a bundle uploaded to the server, with its own manifest, no source here.
    (native / "foreign").mkdir()
    shutil.copyfile(native_libs.good_c_other, native / "foreign/libforeign.so")
    (native / "foreign/plugin.yml").write_text(
        yaml.safe_dump(
            {
                "id": "foreign",
                "version": "2.0.0",
                "node_kind": "fixture_other",
                "kind": "native",
                "entrypoint": "libforeign.so",
            }
        )
    )
    # A bare library from the flat layout.
    shutil.copyfile(native_libs.good_c, native / "libold_flat.so")
    # gain-native stays built and not installed.
    return sample_tree


def test_every_status_is_listed_as_json(every_status: Path) -> None:
    code, out = run_in_process(
        "list-plugins-native", "--root", str(every_status), "--format", "json"
    )
    assert code == 0, out
    document = json.loads(out)
    assert document["version"] == JSON_FORMAT_VERSION
    rows = {row["id"]: row for row in document["plugins"]}
    assert {k: r["status"] for k, r in rows.items()} == {
        "tone-generator": "up-to-date",
        "volume-c": "stale",
        "ghost": "not-built",
        "gain-native": "built",
        "foreign": "no-source",
        "old_flat": "bare",
    }
    tone = rows["tone-generator"]
    assert (tone["node_kind"], tone["version"], tone["source"]) == (
        "tone",
        "0.2.0",
        "plugins/native/tone-generator/plugin.yml",
    )
    assert tone["artifact"] == "target/plugins/release/libtone_gen.so"
    assert tone["installed"] == str(every_status / ".plugins/native/tone-generator")
    assert tone["library"] == "libtone_gen.so"
    # gain-native has no plugin.yml: kind from the built-in extra, version from its Cargo.toml.
    gain = rows["gain-native"]
    assert (gain["node_kind"], gain["version"], gain["source"]) == (
        "gain",
        "0.1.0",
        "plugins.extras.gain-native",
    )
    assert gain["installed"] is None
    assert (rows["ghost"]["version"], rows["ghost"]["installed"]) == ("0.3.0", None)
    foreign = rows["foreign"]
    assert (foreign["node_kind"], foreign["version"], foreign["library"]) == (
        "fixture_other",
        "2.0.0",
        "libforeign.so",
    )
    assert foreign["source"] is None
    assert rows["old_flat"]["installed"] == str(every_status / ".plugins/native/libold_flat.so")
    assert document["errors"] == []


def test_the_table_has_a_row_per_plugin_and_says_what_to_do(every_status: Path) -> None:
    code, out = run_in_process("list-plugins-native", "--root", str(every_status))
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "KIND", "VERSION", "STATUS", "SOURCE", "LIBRARY"]
    by_id = {line.split()[0]: line for line in lines[1:7]}
    assert "installed, up to date" in by_id["tone-generator"]
    assert "installed, stale" in by_id["volume-c"]
    assert "built, not installed" in by_id["gain-native"]
    assert "not built" in by_id["ghost"]
    assert "installed, no source here" in by_id["foreign"]
    assert "bare file, not loaded" in by_id["old_flat"]
    assert (
        "  old_flat: the loader skips libraries directly in native/; run migrate-plugins-native"
        in lines
    )
    assert any(
        line.startswith("  volume-c: ") and "copy-plugins-native updates it" in line
        for line in lines
    )
    # Columns line up: every row starts its status where the header's STATUS starts.
    column = lines[0].index("STATUS")
    assert all(line[column - 2 : column] == "  " for line in lines[1:7])


def test_stale_means_exactly_what_copy_would_update(every_status: Path) -> None:
    settings = Settings.from_config({}, root=str(every_status))
    listing = list_plugins(settings)
    planned = {a.id: a.action for a in install_plugins(settings, dry_run=True).actions}
    listed = {p.id: p.status for p in listing.plugins}
    assert [i for i, action in planned.items() if action == "update"] == [
        i for i, s in listed.items() if s == "stale"
    ]
    # (The bare file fails copy's post-install check; that is not what this test is about.)
    code, out = run_in_process(
        "copy-plugins-native", "--root", str(every_status), "--only", "volume-c", "--no-check"
    )
    assert code == 0, out
    assert {p.id: p.status for p in list_plugins(settings).plugins}["volume-c"] == "up-to-date"


def test_listing_changes_nothing_on_disk(every_status: Path) -> None:
    before = snapshot(every_status)
    code, out = run_in_process("list-plugins-native", "--root", str(every_status))
    assert code == 0, out
    assert snapshot(every_status) == before


def test_a_not_built_plugin_with_an_installed_copy_says_so(sample_tree: Path) -> None:
    settings = Settings.from_config({}, root=str(sample_tree))
    install_plugins(settings, only=["tone-generator"])
    shutil.rmtree(sample_tree / "target")
    row = {p.id: p for p in list_plugins(settings).plugins}["tone-generator"]
    assert row.status == "not-built"
    assert row.installed == sample_tree / ".plugins/native/tone-generator"
    assert "not built, installed" in render_plugin_table(list_plugins(settings))


def test_a_broken_source_manifest_is_reported_the_rest_listed_and_the_exit_is_1(
    sample_tree: Path,
) -> None:
    broken = sample_tree / "plugins/native/broken"
    broken.mkdir()
    (broken / "plugin.yml").write_text("id: broken\nversion: [unclosed\n")
    code, out = run_in_process("list-plugins-native", "--root", str(sample_tree))
    assert code == 1
    assert "plugins/native/broken/plugin.yml" in out
    assert "tone-generator" in out and "gain-native" in out
    code, out = run_in_process(
        "list-plugins-native", "--root", str(sample_tree), "--format", "json"
    )
    document = json.loads(out)
    assert code == 1
    assert [e["path"] for e in document["errors"]] == [str(broken / "plugin.yml")]


def test_an_empty_checkout_lists_nothing_and_succeeds(tmp_path: Path) -> None:
    (tmp_path / "plugins" / "native").mkdir(parents=True)
    code, out = run_in_process("list-plugins-native", "--root", str(tmp_path), "--format", "json")
    assert code == 0, out
    # gain-native is a built-in extra: declared even where its crate does not exist.
    assert [(r["id"], r["status"]) for r in json.loads(out)["plugins"]] == [
        ("gain-native", "not-built")
    ]


def test_an_unknown_format_is_a_usage_error(sample_tree: Path) -> None:
    code, out = run_in_process(
        "list-plugins-native", "--root", str(sample_tree), "--format", "yaml"
    )
    assert code == 2
    assert "--format must be text or json" in out
