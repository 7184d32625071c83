"""migrate-plugins-native: a real pre-#272 flat plugin directory becomes one bundle per plugin."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from cli import run_in_process

from plugin_packaging.install.migrate import migrate_plugins, plan_migration, render_migration_plan
from plugin_packaging.install.run import install_plugins
from plugin_packaging.settings import Settings

TONE = "target/plugins/release/libtone_gen.so"
VOLUME = "plugins/native/volume-c/build/libvolume_c.so"
POCKET_MANIFEST = {
    "id": "pocket-tts",
    "name": "Pocket TTS",
    "version": "0.3.1",
    "node_kind": "pocket-tts",
    "kind": "native",
    "entrypoint": "libpocket_tts.so",
}


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under `root` with inode, size and mtime; our own lock and staging aside.

    Directories are compared by what they hold, not by mtime: creating `.plugin-packaging`
    touches `.plugins`.
    """
    found = {}
    for directory, names, files in os.walk(root):
        names[:] = [n for n in names if n != ".plugin-packaging"]
        for name in names:
            found[str(Path(directory, name).relative_to(root))] = (
                Path(directory, name).lstat().st_ino,
                0,
                0,
            )
        for name in files:
            info = Path(directory, name).lstat()
            found[str(Path(directory, name).relative_to(root))] = (
                info.st_ino,
                info.st_size,
                info.st_mtime_ns,
            )
    return found


@pytest.fixture
def flat_tree(sample_tree: Path, native_libs) -> Path:
    """The sample tree with `.plugins/native/` as the pre-#272 recipe and an upload left it."""
    native = sample_tree / ".plugins/native"
    native.mkdir(parents=True)
    # The old recipe: each built library copied flat (its `.so.N` too), the source manifest as
    # <stem>.plugin.yml.
    shutil.copy2(sample_tree / TONE, native / "libtone_gen.so")
    shutil.copy2(sample_tree / TONE, native / "libtone_gen.so.1")
    shutil.copy2(
        sample_tree / "plugins/native/tone-generator/plugin.yml", native / "tone_gen.plugin.yml"
    )
    shutil.copy2(sample_tree / VOLUME, native / "libvolume_c.so")
    # A plugin uploaded to the server: no source in this checkout, its own manifest.
    shutil.copy2(native_libs.good_c, native / "libpocket_tts.so")
    (native / "pocket_tts.plugin.yml").write_text(yaml.safe_dump(POCKET_MANIFEST, sort_keys=False))
    # A run-time dependency someone dropped there, and a note.
    shutil.copy2(native_libs.good_c_other, native / "libfdk-aac.so.2")
    (native / "README.txt").write_text("plugins go here\n")
    return sample_tree


def test_dry_run_prints_the_plan_and_changes_nothing(flat_tree: Path) -> None:
    before = snapshot(flat_tree)
    code, out = run_in_process("migrate-plugins-native", "--root", str(flat_tree), "--dry-run")
    assert code == 0, out
    assert snapshot(flat_tree) == before
    assert not (flat_tree / ".plugins/.plugin-packaging").exists()
    assert (
        "  move      libtone_gen.so -> tone-generator/libtone_gen.so + plugin.yml generated from "
        "plugins/native/tone-generator/plugin.yml"
    ) in out
    assert "            remove tone_gen.plugin.yml (superseded by the bundle's plugin.yml)" in out
    assert (
        "  move      libpocket_tts.so -> pocket_tts/libpocket_tts.so + plugin.yml (was pocket_tts.plugin.yml)"
        in out
    )
    assert "  leave     libtone_gen.so.1: versioned copy of libtone_gen.so" in out
    assert "  leave     libfdk-aac.so.2: versioned name, never opened by the loader" in out
    assert "README.txt" not in out
    assert out.rstrip().endswith("dry run: nothing was changed")


def test_flat_layout_becomes_one_bundle_per_plugin_and_the_checker_accepts_it(
    flat_tree: Path,
) -> None:
    native = flat_tree / ".plugins/native"
    originals = {
        name: (native / name).read_bytes()
        for name in ("libtone_gen.so", "libvolume_c.so", "libpocket_tts.so")
    }
    old_pocket_manifest = (native / "pocket_tts.plugin.yml").read_bytes()
    code, out = run_in_process("migrate-plugins-native", "--root", str(flat_tree))
    assert code == 0, out
    assert sorted(os.listdir(native)) == [
        "README.txt",
        "libfdk-aac.so.2",
        "libtone_gen.so.1",
        "pocket_tts",
        "tone-generator",
        "volume-c",
    ]
    assert sorted(os.listdir(native / "tone-generator")) == ["libtone_gen.so", "plugin.yml"]
    assert sorted(os.listdir(native / "volume-c")) == ["libvolume_c.so", "plugin.yml"]
    assert sorted(os.listdir(native / "pocket_tts")) == ["libpocket_tts.so", "plugin.yml"]
    assert (native / "tone-generator/libtone_gen.so").read_bytes() == originals["libtone_gen.so"]
    assert (native / "volume-c/libvolume_c.so").read_bytes() == originals["libvolume_c.so"]
    assert (native / "pocket_tts/libpocket_tts.so").read_bytes() == originals["libpocket_tts.so"]
    # Known source: a generated manifest. No source: the old one, byte for byte.
    tone = yaml.safe_load((native / "tone-generator/plugin.yml").read_text())
    assert (tone["id"], tone["node_kind"], tone["entrypoint"]) == (
        "tone-generator",
        "tone",
        "libtone_gen.so",
    )
    assert "artifact" not in tone
    assert (native / "pocket_tts/plugin.yml").read_bytes() == old_pocket_manifest
    # The plan comes first, then what was done, then the checker's verdict.
    assert (
        out.index("migration plan for")
        < out.index("migrated: 3 moved into bundles")
        < out.index("check: ")
    )
    assert "check: the loader will accept" in out
    assert os.listdir(flat_tree / ".plugins/.plugin-packaging/staging") == []


def test_migrated_bundles_are_exactly_what_copy_plugins_native_installs(flat_tree: Path) -> None:
    code, out = run_in_process("migrate-plugins-native", "--root", str(flat_tree))
    assert code == 0, out
    settings = Settings.from_config({}, root=str(flat_tree))
    actions = {a.id: a.action for a in install_plugins(settings, dry_run=True).actions}
    assert actions["tone-generator"] == "up-to-date"
    assert actions["volume-c"] == "up-to-date"


def test_migrated_bundles_are_the_tools_own_so_a_rebuild_updates_them_without_adopt(
    flat_tree: Path, native_libs
) -> None:
    code, out = run_in_process("migrate-plugins-native", "--root", str(flat_tree))
    assert code == 0, out
    settings = Settings.from_config({}, root=str(flat_tree))
    shutil.copyfile(native_libs.good_c_other, flat_tree / VOLUME)  # rebuilt: other bytes
    actions = {a.id: a for a in install_plugins(settings).actions}
    assert actions["volume-c"].action == "update", actions["volume-c"]


def test_an_existing_different_bundle_is_a_conflict_and_nothing_changes(
    flat_tree: Path, native_libs
) -> None:
    bundle = flat_tree / ".plugins/native/tone-generator"
    bundle.mkdir()
    shutil.copy2(native_libs.good_c_other, bundle / "libtone_gen.so")
    (bundle / "plugin.yml").write_text("id: tone-generator\n")
    before = snapshot(flat_tree)
    code, out = run_in_process("migrate-plugins-native", "--root", str(flat_tree))
    assert code == 1
    assert snapshot(flat_tree) == before
    assert "  CONFLICT  libtone_gen.so" in out
    assert "native/tone-generator/ already exists and holds a different libtone_gen.so" in out
    assert "hint: keep one of them: delete libtone_gen.so or move native/tone-generator away" in out
    assert "refused: 1 conflict(s); nothing was changed" in out
    # The other libraries would have moved, but a blocked plan moves none of them.
    assert (flat_tree / ".plugins/native/libvolume_c.so").is_file()
    assert "check: " in out  # the verdict on the tree as it stays


def test_an_identical_installed_copy_makes_the_bare_file_a_leftover(flat_tree: Path) -> None:
    settings = Settings.from_config({}, root=str(flat_tree))
    install_plugins(settings, only=["tone-generator"])
    bundle = flat_tree / ".plugins/native/tone-generator"
    installed = {name: (bundle / name).stat().st_ino for name in os.listdir(bundle)}
    code, out = run_in_process("migrate-plugins-native", "--root", str(flat_tree))
    assert code == 0, out
    assert "  remove    libtone_gen.so: an identical copy is installed in tone-generator/" in out
    assert not (flat_tree / ".plugins/native/libtone_gen.so").exists()
    assert not (flat_tree / ".plugins/native/tone_gen.plugin.yml").exists()
    assert {name: (bundle / name).stat().st_ino for name in os.listdir(bundle)} == installed
    assert "migrated: 2 moved into bundles, 1 leftover copies removed" in out


def test_a_run_killed_while_staging_is_cleaned_up_by_the_next(flat_tree: Path) -> None:
    staging = flat_tree / ".plugins/.plugin-packaging/staging"
    half = staging / "tone-generator..new..x1y2"
    half.mkdir(parents=True)
    os.link(flat_tree / ".plugins/native/libtone_gen.so", half / "libtone_gen.so")
    code, out = run_in_process("migrate-plugins-native", "--root", str(flat_tree))
    assert code == 0, out
    assert "repair: removed leftover tone-generator..new..x1y2" in out
    assert os.listdir(staging) == []
    assert sorted(os.listdir(flat_tree / ".plugins/native/tone-generator")) == [
        "libtone_gen.so",
        "plugin.yml",
    ]


def test_a_library_with_no_source_and_no_manifest_moves_alone(flat_tree: Path, native_libs) -> None:
    native = flat_tree / ".plugins/native"
    shutil.copy2(native_libs.good_c_other, native / "libmystery.so")
    moves = {
        m.library.name: m
        for m in plan_migration(Settings.from_config({}, root=str(flat_tree))).moves
    }
    assert moves["libmystery.so"].id_origin == "library stem"
    code, out = run_in_process("migrate-plugins-native", "--root", str(flat_tree))
    assert code == 0, out  # a bundle without plugin.yml loads: the checker warns, it does not fail
    assert os.listdir(native / "mystery") == ["libmystery.so"]
    assert "  move      libmystery.so -> mystery/libmystery.so (id from the library stem)" in out
    assert "note: no plugin.yml: no source declares this library" in out
    assert "warning[manifest-missing]" in out


def test_two_libraries_headed_for_one_bundle_both_conflict(flat_tree: Path, native_libs) -> None:
    native = flat_tree / ".plugins/native"
    shutil.copy2(native_libs.good_c, native / "libtwin.so")
    shutil.copy2(native_libs.good_c_other, native / "libtwin.dylib")
    plan = plan_migration(Settings.from_config({}, root=str(flat_tree)))
    assert plan.blocked
    conflicts = {m.library.name for m in plan.moves if m.action == "conflict"}
    assert conflicts == {"libtwin.so", "libtwin.dylib"}
    assert "would move into native/twin/ as well" in render_migration_plan(plan)


def test_an_unsafe_library_name_is_refused(flat_tree: Path, native_libs) -> None:
    shutil.copy2(native_libs.good_c, flat_tree / ".plugins/native/lib..so")
    plan = plan_migration(Settings.from_config({}, root=str(flat_tree)))
    (refused,) = [m for m in plan.moves if m.action == "conflict"]
    assert refused.library.name == "lib..so"
    assert refused.problem is not None and "rename the file" in (refused.problem.hint or "")


def test_a_broken_source_declaration_blocks_guessing_ids_from_stems(flat_tree: Path) -> None:
    broken = flat_tree / "plugins/native/broken"
    broken.mkdir()
    (broken / "plugin.yml").write_text("id: broken\nartifact: [unclosed\n")
    plan = plan_migration(Settings.from_config({}, root=str(flat_tree)))
    by_name = {m.library.name: m.action for m in plan.moves}
    # Matched by artifact name: safe. Only a stem guess could collide with the broken one's id.
    assert by_name == {
        "libpocket_tts.so": "conflict",
        "libtone_gen.so": "move",
        "libvolume_c.so": "move",
    }
    assert plan.source_errors


def test_a_relative_symlink_still_names_its_library_after_the_move(sample_tree: Path) -> None:
    native = sample_tree / ".plugins/native"
    native.mkdir(parents=True)
    os.symlink("../../target/plugins/release/libtone_gen.so", native / "libtone_gen.so")
    result = migrate_plugins(Settings.from_config({}, root=str(sample_tree)))
    assert not result.failed
    moved = native / "tone-generator/libtone_gen.so"
    assert moved.is_symlink()
    assert moved.resolve() == (sample_tree / TONE).resolve()


def test_libraries_match_sources_by_any_platform_naming(sample_tree: Path, native_libs) -> None:
    native = sample_tree / ".plugins/native"
    native.mkdir(parents=True)
    shutil.copy2(native_libs.good_c, native / "gain_plugin_native.dll")
    plan = plan_migration(Settings.from_config({}, root=str(sample_tree)))
    (move,) = plan.moves
    assert (move.plugin_id, move.id_origin) == ("gain-native", "plugins.extras.gain-native")


def test_no_native_dir_means_nothing_to_migrate(sample_tree: Path) -> None:
    code, out = run_in_process("migrate-plugins-native", "--root", str(sample_tree))
    assert code == 0, out
    assert "nothing to migrate: " in out and "does not exist" in out
    assert not (sample_tree / ".plugins").exists()
