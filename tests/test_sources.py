"""Source discovery: the patterns find what `Path.glob` finds, and a source that could not be read
never makes its installed bundle look orphaned.

An unlistable source directory needs a process without CAP_DAC_* when the suite runs as root; the
robustness corpus plays that case (`source-dir-unreadable`) for copy, list and package.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from plugin_packaging.contract import SOURCE_MANIFEST_NAMES
from plugin_packaging.install.run import install_plugins
from plugin_packaging.settings import Settings
from plugin_packaging.sources.scan import find_source_manifests, scan_sources


def _touch(path: Path, text: str = "id: x\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def patterned_tree(tmp_path: Path) -> Path:
    """Manifests at several depths, hidden directories, a symlinked plugin directory, files
    where directories are expected, and names that only some patterns match."""
    root = tmp_path / "checkout"
    for relative in (
        "plugins/native/alpha/plugin.yml",
        "plugins/native/beta/plugin.yaml",
        "plugins/native/.hidden/plugin.yml",
        "plugins/native/old/marketplace.yml",
        "plugins/wasm/gamma/plugin.yml",
        "plugins/native/group/deep/plugin.yml",
        "examples/plugins/delta/plugin.yml",
        "plugin.yml",
    ):
        _touch(root / relative)
    _touch(
        root / "plugins" / "native" / "not-a-directory"
    )  # a file where a plugin directory would be
    (root / "elsewhere" / "linked").mkdir(parents=True)
    _touch(root / "elsewhere" / "linked" / "plugin.yml")
    os.symlink(root / "elsewhere" / "linked", root / "plugins" / "native" / "linked")
    os.symlink("gone", root / "plugins" / "native" / "dangling")
    return root


@pytest.mark.parametrize(
    "pattern",
    [
        "plugins/native/*/plugin.yml",
        "plugins/native/*/plugin.y*ml",
        "plugins/*/*/plugin.yml",
        "plugins/native/[ab]*/plugin.*",
        "plugins/native/?eta/plugin.yaml",
        "plugins/**/plugin.yml",
        "**/plugin.yml",
        "*/plugins/*/plugin.yml",
        "plugins/native/alpha/plugin.yml",
        "no/such/*/plugin.yml",
    ],
)
def test_a_pattern_finds_what_path_glob_finds(patterned_tree: Path, pattern: str) -> None:
    settings = Settings.from_config(
        {"source_patterns": [pattern], "extras": {}}, root=str(patterned_tree)
    )
    search = find_source_manifests(settings)
    best: dict[Path, Path] = {}
    for path in sorted(patterned_tree.glob(pattern)):
        current = best.get(path.parent)
        if current is None or _rank(path) < _rank(current):
            best[path.parent] = path
    assert search.paths == tuple(best[d] for d in sorted(best))
    assert search.errors == () and search.complete


def _rank(path: Path) -> int:
    names = SOURCE_MANIFEST_NAMES
    return names.index(path.name) if path.name in names else len(names)


def test_the_default_patterns_take_the_best_manifest_name_per_plugin(patterned_tree: Path) -> None:
    _touch(patterned_tree / "plugins" / "native" / "alpha" / "marketplace.yml")
    settings = Settings.from_config({}, root=str(patterned_tree))
    names = {p.parent.name: p.name for p in find_source_manifests(settings).paths}
    assert names == {
        "alpha": "plugin.yml",
        "beta": "plugin.yaml",
        ".hidden": "plugin.yml",
        "old": "marketplace.yml",
        "linked": "plugin.yml",
    }


# --- what an unusable source leaves alone ------------------------------------------------------


def _source(root: Path, directory: str, plugin_id: str, library: Path) -> Path:
    manifest = root / "plugins" / "native" / directory / "plugin.yml"
    _touch(
        manifest,
        yaml.safe_dump(
            {
                "id": plugin_id,
                "name": plugin_id,
                "version": "0.1.0",
                "node_kind": plugin_id.replace("-", "_"),
                "kind": "native",
                "entrypoint": f"lib{plugin_id}.so",
                "artifact": f"target/release/lib{plugin_id}.so",
            },
            sort_keys=False,
        ),
    )
    (root / "target" / "release").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(library, root / "target" / "release" / f"lib{plugin_id}.so")
    return manifest


def test_a_source_that_cannot_be_used_keeps_its_bundle_even_with_prune(
    tmp_path: Path, native_libs
) -> None:
    """A broken manifest whose id differs from its directory, and a broken extra: both bundles
    stay, because `--prune` must only remove what no source declares, not what failed to read."""
    root = tmp_path / "checkout"
    manifest = _source(root, "renamed-dir", "alpha", native_libs.good_c)
    _source(root, "gone", "gone", native_libs.good_c_other)
    shutil.copyfile(native_libs.good_c_other, root / "target" / "release" / "libextra.so")
    extra = {"artifact": "target/release/libextra.so", "node_kind": "extra", "version": "0.1.0"}
    settings = Settings.from_config(
        {"extras": {"extra-one": extra, "gain-native": None}}, root=str(root)
    )
    first = install_plugins(settings)
    installed = {a.id: a.action for a in first.actions}
    assert installed == {"alpha": "install", "gone": "install", "extra-one": "install"}

    data = yaml.safe_load(manifest.read_text())
    del data["artifact"]  # alpha's source now fails, though its id is still readable
    manifest.write_text(yaml.safe_dump(data))
    shutil.rmtree(root / "plugins" / "native" / "gone")  # really gone: an orphan
    broken_extra = {"artifact": "target/release/libextra.so", "version": "0.1.0"}  # no node_kind
    pruning = Settings.from_config(
        {"extras": {"extra-one": broken_extra, "gain-native": None}, "prune": True}, root=str(root)
    )
    scan = scan_sources(pruning)
    assert {e.code for e in scan.errors} == {"source-artifact-missing", "extra-key-missing"}
    assert {"renamed-dir", "alpha", "extra-one"} <= scan.unresolved and scan.complete

    second = install_plugins(pruning)
    assert [(a.id, a.action) for a in second.actions] == [("gone", "remove")]
    assert sorted(os.listdir(settings.native_dir)) == ["alpha", "extra-one"]
