"""What a re-run of copy-plugins-native does, and does not do, for each kind of change.

The quick path decides from signatures; these tests pin that it neither misses a change (a
workspace version bump) nor does work a change does not need (rendering for a rebuilt library,
copying a library whose bytes did not change, rewriting the state file).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from cli import run_in_process
from installlib import bundle, count_lines, streamkit_tree  # noqa: F401  (fixture)

STATE = Path(".plugins") / ".plugin-packaging" / "state.json"


def test_a_rebuilt_library_is_reinstalled_without_rendering_the_manifest_again(
    streamkit_tree: Path,
    native_libs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run_in_process("copy-plugins-native", "--root", str(streamkit_tree))[0] == 0
    manifest_before = (bundle(streamkit_tree, "servo") / "plugin.yml").read_text()
    built = streamkit_tree / "target" / "plugins" / "release" / "libservo_web.so"
    shutil.copyfile(native_libs.good_rust, built)

    def no_rendering(*args: object, **kwargs: object) -> str:
        raise AssertionError("the manifest was rendered although only the library changed")

    monkeypatch.setattr("plugin_packaging.sources.plugin_yml.render_manifest", no_rendering)
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 0, out
    assert (bundle(streamkit_tree, "servo") / "libservo_web.so").read_bytes() == built.read_bytes()
    assert (bundle(streamkit_tree, "servo") / "plugin.yml").read_text() == manifest_before
    assert count_lines(out, "updated") == 1


def test_an_edited_source_manifest_updates_plugin_yml_and_keeps_the_library_file(
    streamkit_tree: Path,
) -> None:
    assert run_in_process("copy-plugins-native", "--root", str(streamkit_tree))[0] == 0
    library = bundle(streamkit_tree, "servo") / "libservo_web.so"
    inode = library.stat().st_ino
    source = streamkit_tree / "plugins" / "native" / "servo" / "plugin.yml"
    source.write_text(source.read_text().replace("servo plugin", "servo, described anew"))
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 0, out
    installed = yaml.safe_load((bundle(streamkit_tree, "servo") / "plugin.yml").read_text())
    assert installed["description"] == "servo, described anew"
    # The unchanged library is linked into the new bundle, not copied again.
    assert library.stat().st_ino == inode
    assert os.stat(library).st_mode & 0o777 == 0o755
    assert count_lines(out, "updated") == 1 and count_lines(out, "up to date") == 3


def test_a_version_bump_in_the_workspace_cargo_toml_is_noticed(streamkit_tree: Path) -> None:
    source = streamkit_tree / "plugins" / "native" / "servo"
    manifest = yaml.safe_load((source / "plugin.yml").read_text())
    del manifest["version"]
    (source / "plugin.yml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (source / "Cargo.toml").write_text(
        '[package]\nname = "servo"\nversion.workspace = true\n\n[lib]\nname = "servo_web"\n'
    )
    workspace = streamkit_tree / "plugins" / "native" / "Cargo.toml"
    workspace.write_text(
        '[workspace]\nmembers = ["servo"]\n\n[workspace.package]\nversion = "0.2.0"\n'
    )
    assert run_in_process("copy-plugins-native", "--root", str(streamkit_tree))[0] == 0
    workspace.write_text(workspace.read_text().replace('"0.2.0"', '"0.3.0"'))
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 0, out
    installed = yaml.safe_load((bundle(streamkit_tree, "servo") / "plugin.yml").read_text())
    assert installed["version"] == "0.3.0"


def test_a_run_that_changes_nothing_does_not_rewrite_the_state_file(streamkit_tree: Path) -> None:
    assert run_in_process("copy-plugins-native", "--root", str(streamkit_tree))[0] == 0
    state = streamkit_tree / STATE
    before = state.stat()
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 0, out
    after = state.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_damaged_manifest_cache_renders_again(streamkit_tree: Path, native_libs) -> None:
    assert run_in_process("copy-plugins-native", "--root", str(streamkit_tree))[0] == 0
    state = streamkit_tree / STATE
    document = yaml.safe_load(state.read_text())  # JSON is YAML
    document["plugins"]["servo"]["manifest"]["text"] = None
    import json

    state.write_text(json.dumps(document))
    shutil.copyfile(
        native_libs.good_rust, streamkit_tree / "target" / "plugins" / "release" / "libservo_web.so"
    )
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 0, out
    installed = yaml.safe_load((bundle(streamkit_tree, "servo") / "plugin.yml").read_text())
    assert installed["id"] == "servo" and installed["entrypoint"] == "libservo_web.so"


def test_the_template_name_the_quick_check_signs_is_the_one_rendered() -> None:
    from plugin_packaging.install import run as install
    from plugin_packaging.sources import plugin_yml as manifest

    assert install._TEMPLATE_FILE == manifest.TEMPLATE_NAME
    assert install._packaged_template().is_file()


def test_the_check_after_a_first_install_reuses_the_staged_check_and_equals_a_full_check(
    streamkit_tree: Path, native_libs
) -> None:
    # Each new bundle was checked in staging; the same files are renamed into native/, so the
    # check afterwards takes those findings as their verdicts instead of reading the libraries
    # again, and still reports exactly what a full check of the tree reports.
    from plugin_packaging.check.run import check_plugins_dir
    from plugin_packaging.install.run import install_plugins
    from plugin_packaging.settings import Settings
    from plugin_packaging.target import Target
    from plugin_packaging.tasks.common import run_post_install_check

    release = streamkit_tree / "target" / "plugins" / "release"
    shutil.copyfile(native_libs.runpath_usr_local, release / "libservo_web.so")  # a warning
    shutil.copyfile(native_libs.no_symbol, release / "libpocket_tts.so")  # an error, forced
    settings = Settings.from_config({}, root=str(streamkit_tree))
    report = install_plugins(settings, force=True)
    assert sorted(report.changed) == sorted(report.prechecked) != []
    assert report.to_check == ()
    after = run_post_install_check(settings, report.to_check)
    full = check_plugins_dir(
        settings.plugins_dir,
        rule_overrides=settings.rules,
        root=settings.root,
        target=Target.of(settings.platform),
    )
    found = {(f.bundle, f.code) for f in after.findings}
    assert ("pocket-tts", "entry-symbol-missing") in found, found
    assert ("servo", "library-search-path") in found, found
    assert after.findings == full.findings
    assert after.failed() and full.failed()
