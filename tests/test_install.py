"""copy-plugins-native on real trees with real libraries, called as users call it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from cli import run_in_process
from installlib import STREAMKIT_PLUGINS, bundle, count_lines, streamkit_tree  # noqa: F401  (fixture)

from plugin_packaging.errors import display_path

PLUGIN_PACKAGING = [sys.executable, "-c", "from plugin_packaging.cli import main; main()"]


def snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file below `directory` with its inode, mtime and content."""
    result = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            result[str(path.relative_to(directory))] = (
                info.st_ino,
                info.st_mtime_ns,
                path.read_bytes(),
            )
    return result


def test_streamkit_shaped_tree_installs_every_built_plugin_with_a_generated_manifest(
    streamkit_tree: Path,
) -> None:
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 0, out
    native = streamkit_tree / ".plugins" / "native"
    assert sorted(os.listdir(native)) == ["aac-encoder", "gain-native", "pocket-tts", "servo"]
    for plugin_id, (kind, stem, version) in STREAMKIT_PLUGINS.items():
        assert sorted(os.listdir(native / plugin_id)) == sorted([f"lib{stem}.so", "plugin.yml"])
        built = streamkit_tree / "target" / "plugins" / "release" / f"lib{stem}.so"
        assert (native / plugin_id / f"lib{stem}.so").read_bytes() == built.read_bytes()
        manifest = yaml.safe_load((native / plugin_id / "plugin.yml").read_text())
        assert manifest["id"] == plugin_id
        assert manifest["node_kind"] == kind
        assert manifest["version"] == version
        assert manifest["entrypoint"] == f"lib{stem}.so"
        assert "artifact" not in manifest
    gain = yaml.safe_load((native / "gain-native" / "plugin.yml").read_text())
    assert (gain["id"], gain["node_kind"], gain["version"], gain["entrypoint"]) == (
        "gain-native",
        "gain",
        "0.1.0",
        "libgain_plugin_native.so",
    )
    assert "4 installed" in out
    assert "check: the loader will accept" in out


def test_sample_tree_installs_the_rust_and_c_samples(sample_tree: Path) -> None:
    code, out = run_in_process("copy-plugins-native", "--root", str(sample_tree))
    assert code == 0, out
    native = sample_tree / ".plugins" / "native"
    assert sorted(os.listdir(native)) == ["gain-native", "tone-generator", "volume-c"]
    assert sorted(os.listdir(native / "tone-generator")) == ["libtone_gen.so", "plugin.yml"]
    volume = yaml.safe_load((native / "volume-c" / "plugin.yml").read_text())
    assert volume["assets"][0]["type_id"] == "volume-presets"


def test_rerun_with_nothing_changed_rewrites_nothing(streamkit_tree: Path) -> None:
    run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    before = snapshot(streamkit_tree / ".plugins" / "native")
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 0, out
    assert snapshot(streamkit_tree / ".plugins" / "native") == before
    assert out.splitlines()[0] == "4 plugins up to date -> " + display_path(
        streamkit_tree / ".plugins" / "native"
    )
    assert "installed" not in out.replace("not installed", "")


def test_rerun_without_the_state_file_compares_bytes_and_still_rewrites_nothing(
    streamkit_tree: Path,
) -> None:
    run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    before = snapshot(streamkit_tree / ".plugins" / "native")
    (streamkit_tree / ".plugins" / ".plugin-packaging" / "state.json").unlink()
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree), "--verbose")
    assert code == 0, out
    assert snapshot(streamkit_tree / ".plugins" / "native") == before
    assert count_lines(out, "up to date") == 4


def test_a_rebuilt_library_is_updated_and_only_that_one(streamkit_tree: Path, native_libs) -> None:
    run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    before = snapshot(streamkit_tree / ".plugins" / "native")
    built = streamkit_tree / "target" / "plugins" / "release" / "libservo_web.so"
    shutil.copyfile(native_libs.good_rust, built)
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 0, out
    assert (bundle(streamkit_tree, "servo") / "libservo_web.so").read_bytes() == built.read_bytes()
    after = snapshot(streamkit_tree / ".plugins" / "native")
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {"servo/libservo_web.so", "servo/plugin.yml"}
    assert "updated" in out and count_lines(out, "up to date") == 3


def test_stale_files_in_a_managed_bundle_are_removed(streamkit_tree: Path) -> None:
    run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    aac = bundle(streamkit_tree, "aac-encoder")
    (aac / "libaac_encoder.so.1").write_bytes(b"old versioned copy")
    (aac / "libold_name.so").write_bytes(b"renamed library")
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 0, out
    assert sorted(os.listdir(aac)) == ["libaac_encoder.so", "plugin.yml"]


def test_a_bundle_left_by_the_old_recipe_is_kept_until_adopted_then_cleaned(
    streamkit_tree: Path,
) -> None:
    old = bundle(streamkit_tree, "pocket-tts")
    old.mkdir(parents=True)
    (old / "libpocket_tts.so").write_bytes(b"stale build")
    (old / "libpocket_tts.so.0").write_bytes(b"versioned")
    (old / "plugin.yml").write_text("id: pocket-tts\n")
    before = snapshot(old)
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    # Never created by this tool: its files are the user's, so it is refused, not replaced.
    assert code == 1, out
    assert "bundle-unmanaged" in out and "--adopt pocket-tts" in out
    assert snapshot(old) == before
    code, out = run_in_process(
        "copy-plugins-native", "--root", str(streamkit_tree), "--adopt", "pocket-tts"
    )
    assert code == 0, out
    assert sorted(os.listdir(old)) == ["libpocket_tts.so", "plugin.yml"]
    assert (old / "libpocket_tts.so").read_bytes() != b"stale build"


def test_unbuilt_plugin_is_reported_with_the_path_looked_for_and_gets_no_directory(
    streamkit_tree: Path,
) -> None:
    (streamkit_tree / "target" / "plugins" / "release" / "libpocket_tts.so").unlink()
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 0, out
    assert not bundle(streamkit_tree, "pocket-tts").exists()
    line = next(line for line in out.splitlines() if "pocket-tts" in line)
    assert "not built" in line
    assert "target/plugins/release/libpocket_tts.so" in line
    assert "plugins/native/pocket-tts/plugin.yml" in line


def test_unbuilt_plugin_fails_with_require_all_or_when_named_by_only(streamkit_tree: Path) -> None:
    (streamkit_tree / "target" / "plugins" / "release" / "libpocket_tts.so").unlink()
    code, out = run_in_process(
        "copy-plugins-native", "--root", str(streamkit_tree), "--require-all"
    )
    assert code == 1
    assert "artifact-missing" in out and "libpocket_tts.so" in out
    assert bundle(streamkit_tree, "aac-encoder").is_dir()  # the others still installed
    code, out = run_in_process(
        "copy-plugins-native", "--root", str(streamkit_tree), "--only", "pocket-tts"
    )
    assert code == 1
    assert "Traceback" not in out


def test_only_installs_just_the_named_plugins(streamkit_tree: Path) -> None:
    code, out = run_in_process(
        "copy-plugins-native",
        "--root",
        str(streamkit_tree),
        "--only",
        "servo",
        "--only",
        "gain-native",
    )
    assert code == 0, out
    assert sorted(os.listdir(streamkit_tree / ".plugins" / "native")) == ["gain-native", "servo"]


def test_only_with_an_unknown_id_names_the_known_ones(streamkit_tree: Path) -> None:
    code, out = run_in_process(
        "copy-plugins-native", "--root", str(streamkit_tree), "--only", "whisper"
    )
    assert code == 2
    assert "whisper" in out and "aac-encoder" in out and "Traceback" not in out


def test_dry_run_changes_nothing(streamkit_tree: Path) -> None:
    before = snapshot(streamkit_tree)
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree), "--dry-run")
    assert code == 0, out
    assert not (streamkit_tree / ".plugins").exists()
    assert snapshot(streamkit_tree) == before
    assert count_lines(out, "would install") == 4
    assert "dry run" in out


def test_dry_run_over_an_installed_tree_shows_updates_and_changes_nothing(
    streamkit_tree: Path, native_libs
) -> None:
    run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    shutil.copyfile(
        native_libs.good_rust, streamkit_tree / "target" / "plugins" / "release" / "libservo_web.so"
    )
    before = snapshot(streamkit_tree)
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree), "--dry-run")
    assert code == 0, out
    assert snapshot(streamkit_tree) == before
    assert "would update" in out


def test_a_broken_manifest_fails_that_plugin_only_and_keeps_its_installed_copy(
    streamkit_tree: Path,
) -> None:
    run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    servo_before = snapshot(bundle(streamkit_tree, "servo"))
    manifest = streamkit_tree / "plugins" / "native" / "servo" / "plugin.yml"
    manifest.write_text(manifest.read_text().replace("version: 0.2.0", "version: 0.10"))
    shutil.copyfile(
        streamkit_tree / "target" / "plugins" / "release" / "libaac_encoder.so",
        streamkit_tree / "target" / "plugins" / "release" / "libservo_web.so",
    )
    os.utime(streamkit_tree / "target" / "plugins" / "release" / "libservo_web.so", (1, 1))
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 1
    assert snapshot(bundle(streamkit_tree, "servo")) == servo_before
    assert "plugins/native/servo/plugin.yml" in out
    assert "quote" in out and "0.1" in out  # the hint says what YAML read and how to fix it
    assert "Traceback" not in out
    assert count_lines(out, "up to date") == 3


def test_invalid_yaml_names_the_file_and_line(streamkit_tree: Path) -> None:
    manifest = streamkit_tree / "plugins" / "native" / "servo" / "plugin.yml"
    manifest.write_text("id: servo\nversion: [unclosed\n")
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 1
    assert "plugins/native/servo/plugin.yml:3:1: is not valid YAML" in out
    assert "Traceback" not in out
    assert bundle(streamkit_tree, "aac-encoder").is_dir()


def test_bare_library_in_native_dir_fails_the_post_install_check(
    streamkit_tree: Path, native_libs
) -> None:
    native = streamkit_tree / ".plugins" / "native"
    native.mkdir(parents=True)
    shutil.copyfile(native_libs.good_c, native / "libleftover.so")
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 1
    assert "bare-library" in out and "libleftover.so" in out
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree), "--no-check")
    assert code == 0, out


def test_settings_come_from_invoke_yaml_env_and_flags_in_that_order(
    streamkit_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (streamkit_tree / "invoke.yaml").write_text("plugins:\n  plugins_dir: from-yaml\n")
    assert run_in_process("copy-plugins-native", "--root", str(streamkit_tree))[0] == 0
    assert (streamkit_tree / "from-yaml" / "native" / "servo").is_dir()
    monkeypatch.setenv("INVOKE_PLUGINS_PLUGINS_DIR", "from-env")
    assert run_in_process("copy-plugins-native", "--root", str(streamkit_tree))[0] == 0
    assert (streamkit_tree / "from-env" / "native" / "servo").is_dir()
    flag_dir = streamkit_tree / "from-flag"
    assert (
        run_in_process(
            "copy-plugins-native", "--root", str(streamkit_tree), "--plugins-dir", str(flag_dir)
        )[0]
        == 0
    )
    assert (flag_dir / "native" / "servo").is_dir()


def test_extras_from_invoke_yaml_add_plugins_and_enabled_false_removes_a_default(
    streamkit_tree: Path, native_libs
) -> None:
    shutil.copyfile(native_libs.good_c, streamkit_tree / "libextra_thing.so")
    (streamkit_tree / "invoke.yaml").write_text(
        "plugins:\n"
        "  extras:\n"
        "    gain-native:\n"
        "      enabled: false\n"
        "    extra-thing:\n"
        "      node_kind: extra\n"
        "      version: 1.2.3\n"
        "      artifact: libextra_thing.so\n"
    )
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 0, out
    native = streamkit_tree / ".plugins" / "native"
    assert "gain-native" not in os.listdir(native)
    assert yaml.safe_load((native / "extra-thing" / "plugin.yml").read_text())["version"] == "1.2.3"


@pytest.mark.parametrize(
    ("platform", "name"), [("macos", "libaac_encoder.dylib"), ("windows", "aac_encoder.dll")]
)
def test_platform_selects_the_library_naming(
    streamkit_tree: Path, platform: str, name: str
) -> None:
    release = streamkit_tree / "target" / "plugins" / "release"
    # A Linux library under the other platform's name: the checker refuses it for that platform,
    # so --force installs it anyway; what is tested here is the naming.
    shutil.copyfile(release / "libaac_encoder.so", release / name)
    code, out = run_in_process(
        "copy-plugins-native",
        "--root",
        str(streamkit_tree),
        "--platform",
        platform,
        "--only",
        "aac-encoder",
        "--no-check",
        "--force",
    )
    assert code == 0, out
    assert "installed with --force although the loader will refuse it" in out
    installed = bundle(streamkit_tree, "aac-encoder")
    assert sorted(os.listdir(installed)) == sorted([name, "plugin.yml"])
    assert yaml.safe_load((installed / "plugin.yml").read_text())["entrypoint"] == name


def test_orphaned_bundles_are_reported_and_removed_only_with_prune(streamkit_tree: Path) -> None:
    run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    shutil.rmtree(streamkit_tree / "plugins" / "native" / "servo")
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    assert code == 0, out
    assert "orphaned" in out and bundle(streamkit_tree, "servo").is_dir()
    code, out = run_in_process("copy-plugins-native", "--root", str(streamkit_tree), "--prune")
    assert code == 0, out
    assert not bundle(streamkit_tree, "servo").exists()


def test_killed_mid_copy_leaves_the_old_bundle_and_the_next_run_repairs(
    streamkit_tree: Path,
) -> None:
    """SIGKILL while a big library is being staged: the live bundle stays complete."""
    run_in_process("copy-plugins-native", "--root", str(streamkit_tree))
    old = snapshot(bundle(streamkit_tree, "servo"))
    built = streamkit_tree / "target" / "plugins" / "release" / "libservo_web.so"
    with open(built, "ab") as handle:  # a real library with 512 MiB of padding: slow to copy
        handle.truncate(built.stat().st_size + (512 << 20))
        handle.seek(0, os.SEEK_END)
        handle.write(b"end")
    staging = streamkit_tree / ".plugins" / ".plugin-packaging" / "staging"
    process = subprocess.Popen(
        [
            *PLUGIN_PACKAGING,
            "copy-plugins-native",
            "--root",
            str(streamkit_tree),
            "--only",
            "servo",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            partial = [
                p
                for p in staging.glob("*/*/libservo_web.so")
                if 0 < _size(p) < built.stat().st_size
            ]
            if partial:
                break
            assert process.poll() is None, "the install finished before it could be interrupted"
            time.sleep(0.001)
        else:
            pytest.fail("never saw the library being staged")
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert snapshot(bundle(streamkit_tree, "servo")) == old  # old complete bundle, untouched
    assert os.listdir(staging)  # the leftover is still there ...
    code, out = run_in_process(
        "copy-plugins-native", "--root", str(streamkit_tree), "--only", "servo"
    )
    assert code == 0, out
    assert "repair" in out
    assert os.listdir(staging) == []  # ... until the next run cleans it up
    assert (
        bundle(streamkit_tree, "servo") / "libservo_web.so"
    ).stat().st_size == built.stat().st_size


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def test_the_command_works_from_another_directory(streamkit_tree: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [*PLUGIN_PACKAGING, "copy-plugins-native", "--root", str(streamkit_tree)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert bundle(streamkit_tree, "aac-encoder").is_dir()
    assert not (elsewhere / ".plugins").exists()


def test_installed_wheel_works_outside_the_checkout(streamkit_tree: Path, tmp_path: Path) -> None:
    """Build a wheel, install it to a fresh directory and run it there: templates included."""
    repo = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"  # built from a copy: a build writes into its source tree
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(repo / name, source / name)
    for name in ("plugin_packaging", "templates"):
        shutil.copytree(repo / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    target = tmp_path / "site"
    (wheel,) = wheels.glob("plugin_packaging-*.whl")
    # Every module and data file of the package ships: a subpackage missing from pyproject's
    # list would still import in the run below (the editable install of this checkout finds it).
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    ours = {
        path.relative_to(repo).as_posix()
        for path in (repo / "plugin_packaging").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert ours - shipped == set()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    code = (
        "import sys, pathlib; sys.path.insert(0, sys.argv.pop(1)); import plugin_packaging.templates as t;"
        "assert pathlib.Path(t.__file__).is_relative_to(sys.path[0]), t.__file__;"
        "from plugin_packaging.cli import main; main()"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(target),
            "copy-plugins-native",
            "--root",
            str(streamkit_tree),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = (bundle(streamkit_tree, "servo") / "plugin.yml").read_text()
    assert manifest.startswith("# Generated by plugin-packaging")
