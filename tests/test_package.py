"""package-plugins-native on real trees with real libraries, called as users call it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from cli import run_in_process
from fixturelib import (
    GOOD_C_KIND,
    OTHER_C_KIND,
    VENDORED_DEPENDENCY_NAME,
    NativeLibraries,
    report_entry_in_child,
)
from releaselib import (
    cli_key_pair,
    cli_verifies,
    edit_source,
    encrypted_key_pair,
    install_library,
    no_extras,
    snapshot,
    tar_file,
    tar_members,
    write_source,
)

from plugin_packaging.release.archive import ArchiveLimits, extract_bundle
from plugin_packaging.release.registry import MANIFEST_KEYS

DATE = "2025-03-04"
LATER = "2025-06-07"


@pytest.fixture
def release_tree(tmp_path: Path, native_libs: NativeLibraries) -> Path:
    """A checkout with two built plugins: `vendored` (a dependency and licenses as extra files)
    and `other` (a plain C plugin)."""
    root = tmp_path / "streamkit"
    root.mkdir()
    no_extras(root)
    write_source(
        root,
        "vendored",
        GOOD_C_KIND,
        "vendored",
        "1.0.0",
        extra_files=[
            {"source": f"third_party/{VENDORED_DEPENDENCY_NAME}"},
            {"source": "LICENSES", "dest": "LICENSES"},
        ],
    )
    install_library(root, native_libs.vendored_dep, "vendored")
    (root / "third_party").mkdir()
    shutil.copyfile(
        native_libs.vendored_dep.parent / VENDORED_DEPENDENCY_NAME,
        root / "third_party" / VENDORED_DEPENDENCY_NAME,
    )
    (root / "LICENSES").mkdir()
    (root / "LICENSES" / "MIT.txt").write_text("MIT License\n")
    (root / "LICENSES" / "Apache-2.0.txt").write_text("Apache License 2.0\n")
    write_source(
        root, "other", OTHER_C_KIND, "other", "0.3.0", repo="https://example.invalid/other"
    )
    install_library(root, native_libs.good_c_other, "other")
    return root


def package(root: Path, *args: str) -> tuple[int, str]:
    # From the root, as a person would run it: relative `--out` paths are taken from there.
    return run_in_process(
        "package-plugins-native", "--root", str(root), "--published-at", DATE, *args, cwd=root
    )


def manifest_of(registry: Path, plugin_id: str, version: str) -> dict:
    return json.loads((registry / "plugins" / plugin_id / version / "manifest.json").read_text())


# --- the bundle ----------------------------------------------------------------------------------


def test_each_built_plugin_gets_a_bundle_with_library_manifests_and_extra_files(
    release_tree: Path,
) -> None:
    code, out = package(release_tree)
    assert code == 0, out
    bundles = release_tree / "dist" / "bundles"
    assert sorted(os.listdir(bundles)) == [
        "SHA256SUMS",
        "other-0.3.0-bundle.tar.zst",
        "vendored-1.0.0-bundle.tar.zst",
    ]
    members = tar_members(bundles / "vendored-1.0.0-bundle.tar.zst")
    assert sorted(members) == [
        "LICENSES/Apache-2.0.txt",
        "LICENSES/MIT.txt",
        VENDORED_DEPENDENCY_NAME,
        "libvendored.so",
        "manifest.json",
        "plugin.yml",
    ]
    assert stat.S_IMODE(members["libvendored.so"].mode) == 0o755
    assert stat.S_IMODE(members["plugin.yml"].mode) == 0o644
    assert all(
        m.uid == 0 and m.gid == 0 and m.uname == "" and m.mtime == 315532800
        for m in members.values()
    )
    inside = json.loads(tar_file(bundles / "vendored-1.0.0-bundle.tar.zst", "manifest.json"))
    published = manifest_of(release_tree / "dist" / "registry", "vendored", "1.0.0")
    assert inside == {key: value for key, value in published.items() if key != "bundle"}


def test_the_bundled_plugin_yml_is_the_one_copy_plugins_native_installs(release_tree: Path) -> None:
    assert package(release_tree)[0] == 0
    assert run_in_process("copy-plugins-native", "--root", str(release_tree), "--no-check")[0] == 0
    installed = (release_tree / ".plugins" / "native" / "other" / "plugin.yml").read_bytes()
    assert (
        tar_file(release_tree / "dist" / "bundles" / "other-0.3.0-bundle.tar.zst", "plugin.yml")
        == installed
    )


def test_bundles_are_byte_identical_whatever_mtimes_owners_umask_and_directory_order(
    release_tree: Path, native_libs: NativeLibraries, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert package(release_tree, "--out", "first")[0] == 0

    # Rebuild every input: new mtimes, other modes and owners, licenses created in reverse order.
    previous = os.umask(0o077)
    try:
        shutil.rmtree(release_tree / "LICENSES")
        (release_tree / "LICENSES").mkdir()
        (release_tree / "LICENSES" / "MIT.txt").write_text("MIT License\n")
        (release_tree / "LICENSES" / "Apache-2.0.txt").write_text("Apache License 2.0\n")
        library = release_tree / "target" / "plugins" / "release" / "libvendored.so"
        library.unlink()
        shutil.copyfile(native_libs.vendored_dep, library)
        os.chmod(library, 0o700)
        later = time.time() + 86400
        for path in release_tree.rglob("*"):
            os.utime(path, (later, later), follow_symlinks=False)
            if os.geteuid() == 0:
                os.chown(path, 4321, 4321, follow_symlinks=False)
        code, out = package(release_tree, "--out", "second")
    finally:
        os.umask(previous)
    assert code == 0, out
    first, second = release_tree / "first", release_tree / "second"
    assert snapshot(first / "bundles") == snapshot(second / "bundles")
    assert snapshot(first / "registry") == snapshot(second / "registry")
    # The epoch is what the archive carries: another epoch gives other bytes.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000001")
    assert package(release_tree, "--out", "third")[0] == 0
    name = "vendored-1.0.0-bundle.tar.zst"
    assert (release_tree / "third" / "bundles" / name).read_bytes() != (
        first / "bundles" / name
    ).read_bytes()
    assert {m.mtime for m in tar_members(first / "bundles" / name).values()} == {1700000000}


def test_sample_tree_bundles_are_reproducible_across_two_checkouts(
    sample_tree: Path, tmp_path: Path
) -> None:
    other = tmp_path / "elsewhere"
    shutil.copytree(sample_tree, other, symlinks=True)
    assert package(sample_tree)[0] == 0
    code, out = package(other)
    assert code == 0, out
    assert snapshot(sample_tree / "dist" / "bundles") == snapshot(other / "dist" / "bundles")
    assert sorted(os.listdir(sample_tree / "dist" / "bundles")) == [
        "SHA256SUMS",
        "tone-generator-0.2.0-bundle.tar.zst",
        "volume-c-1.0.0-bundle.tar.zst",
    ]


def test_sha256sums_is_accepted_by_sha256sum(release_tree: Path) -> None:
    assert package(release_tree)[0] == 0
    bundles = release_tree / "dist" / "bundles"
    result = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=bundles, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == 2


def test_output_names_each_bundle_with_size_and_sha256_prefix(release_tree: Path) -> None:
    code, out = package(release_tree)
    assert code == 0, out
    sums = dict(
        line.split("  ")[::-1]
        for line in (release_tree / "dist" / "bundles" / "SHA256SUMS").read_text().splitlines()
    )
    # (The progress lines, `[2/2] packaging <file> ...`, come first, on stderr.)
    line = next(
        line
        for line in out.splitlines()
        if "vendored-1.0.0-bundle.tar.zst" in line and not line.startswith("[")
    )
    assert line.split()[:3] == ["published", "vendored", "1.0.0"]
    assert f"sha256:{sums['vendored-1.0.0-bundle.tar.zst'][:12]}" in line
    assert "KiB" in line
    assert out.splitlines()[-1].startswith("2 published; registry: 2 versions of 2 plugins")


# --- the registry --------------------------------------------------------------------------------


def test_registry_manifest_and_index_follow_streamkit_formats(release_tree: Path) -> None:
    code, out = package(
        release_tree,
        "--bundle-url-template",
        "https://downloads.example/{plugin_id}/v{version}/",
        "--registry-base-url",
        "https://registry.example/r/",
    )
    assert code == 0, out
    registry = release_tree / "dist" / "registry"
    archive = release_tree / "dist" / "bundles" / "other-0.3.0-bundle.tar.zst"
    manifest = manifest_of(registry, "other", "0.3.0")
    assert list(manifest) == [k for k in MANIFEST_KEYS if k in manifest]
    assert manifest["repository"] == "https://example.invalid/other"
    assert manifest["bundle"] == {
        "url": "https://downloads.example/other/v0.3.0/other-0.3.0-bundle.tar.zst",
        "sha256": subprocess.run(
            ["sha256sum", str(archive)], capture_output=True, text=True, check=False
        ).stdout.split()[0],
        "size_bytes": archive.stat().st_size,
    }
    text = (registry / "plugins" / "other" / "0.3.0" / "manifest.json").read_text()
    assert text == json.dumps(manifest, indent=2) + "\n"
    index = json.loads((registry / "index.json").read_text())
    assert [p["id"] for p in index["plugins"]] == ["other", "vendored"]
    assert index["plugins"][0]["versions"] == [
        {
            "version": "0.3.0",
            "manifest_url": "https://registry.example/r/plugins/other/0.3.0/manifest.json",
            "signature_url": "https://registry.example/r/plugins/other/0.3.0/manifest.minisig",
            "published_at": DATE,
        }
    ]


def test_default_urls_are_streamkits(release_tree: Path) -> None:
    assert run_in_process("package-plugins-native", "--root", str(release_tree))[0] == 0
    manifest = manifest_of(release_tree / "dist" / "registry", "other", "0.3.0")
    assert manifest["bundle"]["url"] == (
        "https://github.com/streamer45/streamkit/releases/download/plugin-other-v0.3.0/other-0.3.0-bundle.tar.zst"
    )
    index = json.loads((release_tree / "dist" / "registry" / "index.json").read_text())
    entry = index["plugins"][0]["versions"][0]
    assert (
        entry["manifest_url"] == "https://streamkit.dev/registry/plugins/other/0.3.0/manifest.json"
    )
    assert entry["published_at"] == time.strftime("%Y-%m-%d", time.gmtime())


def test_manifests_are_signed_and_the_minisign_cli_verifies_them(
    release_tree: Path, tmp_path: Path
) -> None:
    secret, public = cli_key_pair(tmp_path / "keys")
    code, out = package(release_tree, "--signing-key", str(secret), "--public-key", str(public))
    assert code == 0, out
    registry = release_tree / "dist" / "registry"
    assert (registry / "streamkit.pub").read_bytes() == public.read_bytes()
    for plugin_id, version in (("other", "0.3.0"), ("vendored", "1.0.0")):
        result = cli_verifies(public, registry / "plugins" / plugin_id / version / "manifest.json")
        assert result.returncode == 0, result.stderr


def test_an_encrypted_key_is_opened_with_the_password_variable_and_its_public_key_published(
    release_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret, public = encrypted_key_pair(tmp_path / "keys", "correct horse")
    code, out = package(release_tree, "--signing-key", str(secret))
    assert code == 2
    assert "MINISIGN_PASSWORD is not set" in out and "Traceback" not in out
    assert not (release_tree / "dist" / "registry").exists()
    monkeypatch.setenv("RELEASE_PASSWORD", "correct horse")
    code, out = package(
        release_tree, "--signing-key", str(secret), "--password-env", "RELEASE_PASSWORD"
    )
    assert code == 0, out
    registry = release_tree / "dist" / "registry"
    # No public key given: the signing key's own is published, and it verifies.
    published_key = registry / "streamkit.pub"
    assert published_key.read_text().split()[-1] == public.read_text().split()[-1]
    assert (
        cli_verifies(
            published_key, registry / "plugins" / "other" / "0.3.0" / "manifest.json"
        ).returncode
        == 0
    )


def test_a_signing_key_that_is_not_the_public_keys_is_refused(
    release_tree: Path, tmp_path: Path
) -> None:
    secret, _ = cli_key_pair(tmp_path / "a", "one")
    _, other_public = cli_key_pair(tmp_path / "b", "two")
    code, out = package(
        release_tree, "--signing-key", str(secret), "--public-key", str(other_public)
    )
    assert code == 2
    assert "error[signing-key-mismatch]" in out
    assert not (release_tree / "dist" / "bundles").exists()


# --- append-only ---------------------------------------------------------------------------------


def publish_once(root: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Publish the tree signed, and keep a copy as 'the published registry'."""
    secret, public = cli_key_pair(tmp_path / "keys")
    code, out = package(root, "--signing-key", str(secret), "--public-key", str(public))
    assert code == 0, out
    published = tmp_path / "published"
    shutil.copytree(root / "dist" / "registry", published)
    return published, secret, public


def test_a_changed_published_version_fails_with_a_diff_and_writes_nothing(
    release_tree: Path, tmp_path: Path
) -> None:
    published, secret, _ = publish_once(release_tree, tmp_path)
    edit_source(
        release_tree / "plugins" / "native" / "other" / "plugin.yml",
        description="a better description",
    )
    before = snapshot(release_tree / "dist")
    code, out = run_in_process(
        "package-plugins-native",
        "--root",
        str(release_tree),
        "--published-at",
        LATER,
        "--existing-registry",
        str(published),
        "--signing-key",
        str(secret),
    )
    assert code == 1
    assert "error[registry-published-changed]" in out and "other 0.3.0 is already published" in out
    assert '-  "description": "other plugin",' in out
    assert '+  "description": "a better description",' in out
    assert "bump `version` in plugins/native/other/plugin.yml" in out
    assert "nothing was written" in out
    assert snapshot(release_tree / "dist") == before


def test_unchanged_versions_are_carried_over_with_signature_and_date(
    release_tree: Path, tmp_path: Path
) -> None:
    published, secret, public = publish_once(release_tree, tmp_path)
    source = release_tree / "plugins" / "native" / "other" / "plugin.yml"
    edit_source(source, version="0.4.0", description="a better description")
    code, out = run_in_process(
        "package-plugins-native",
        "--root",
        str(release_tree),
        "--published-at",
        LATER,
        "--existing-registry",
        str(published),
        "--signing-key",
        str(secret),
        "--out",
        "next",
        cwd=release_tree,
    )
    assert code == 0, out
    registry = release_tree / "next" / "registry"
    for plugin_id, version in (("vendored", "1.0.0"), ("other", "0.3.0")):
        for name in ("manifest.json", "manifest.minisig"):
            assert (registry / "plugins" / plugin_id / version / name).read_bytes() == (
                published / "plugins" / plugin_id / version / name
            ).read_bytes()
    # Only the new version's bundle is written; the published ones are on their release pages.
    assert sorted(os.listdir(release_tree / "next" / "bundles")) == [
        "SHA256SUMS",
        "other-0.4.0-bundle.tar.zst",
    ]
    lines = {tuple(line.split()[:3]) for line in out.splitlines()}
    assert {
        ("unchanged", "vendored", "1.0.0"),
        ("published", "other", "0.4.0"),
        ("carried", "over", "other"),
    } <= lines
    index = json.loads((registry / "index.json").read_text())
    other = next(p for p in index["plugins"] if p["id"] == "other")
    assert other["latest"] == "0.4.0" and other["description"] == "a better description"
    assert [(v["version"], v["published_at"]) for v in other["versions"]] == [
        ("0.4.0", LATER),
        ("0.3.0", DATE),
    ]
    assert (
        registry / "streamkit.pub"
    ).read_bytes() == public.read_bytes()  # carried from the registry
    assert (
        cli_verifies(public, registry / "plugins" / "other" / "0.4.0" / "manifest.json").returncode
        == 0
    )


def test_a_tampered_published_manifest_fails_its_signature_check(
    release_tree: Path, tmp_path: Path
) -> None:
    published, secret, _ = publish_once(release_tree, tmp_path)
    manifest = published / "plugins" / "other" / "0.3.0" / "manifest.json"
    manifest.write_text(manifest.read_text().replace("other plugin", "other plugin!"))
    edit_source(release_tree / "plugins" / "native" / "other" / "plugin.yml", version="0.4.0")
    code, out = run_in_process(
        "package-plugins-native",
        "--root",
        str(release_tree),
        "--existing-registry",
        str(published),
        "--signing-key",
        str(secret),
    )
    assert code == 1
    assert "error[signature-mismatch]" in out


def test_dry_run_shows_the_plan_and_writes_nothing(release_tree: Path, tmp_path: Path) -> None:
    published, _, _ = publish_once(release_tree, tmp_path)
    shutil.rmtree(release_tree / "dist")
    edit_source(release_tree / "plugins" / "native" / "other" / "plugin.yml", version="0.4.0")
    code, out = run_in_process(
        "package-plugins-native",
        "--root",
        str(release_tree),
        "--dry-run",
        "--existing-registry",
        str(published),
    )
    assert code == 0, out
    assert not (release_tree / "dist").exists()
    assert "would publish     other     0.4.0  other-0.4.0-bundle.tar.zst" in out
    assert "(dry run: nothing was written to" in out


# --- variants, unbuilt plugins, extra files --------------------------------------------------------


def test_an_accelerator_variant_is_packaged_and_can_be_added_to_a_published_version(
    release_tree: Path, tmp_path: Path, native_libs: NativeLibraries
) -> None:
    source = release_tree / "plugins" / "native" / "other" / "plugin.yml"
    edit_source(
        source, accelerators=["cpu", "cuda"], artifact_cuda="target/cuda/release/libother.so"
    )
    published, secret, public = publish_once(
        release_tree, tmp_path
    )  # cuda not built, not asked for
    assert "variants" not in manifest_of(published, "other", "0.3.0")

    cuda = release_tree / "target" / "cuda" / "release" / "libother.so"
    cuda.parent.mkdir(parents=True)
    shutil.copyfile(native_libs.good_c, cuda)
    code, out = run_in_process(
        "package-plugins-native",
        "--root",
        str(release_tree),
        "--accelerator",
        "cuda",
        "--existing-registry",
        str(published),
        "--signing-key",
        str(secret),
        "--only",
        "other",
    )
    assert code == 0, out
    assert "variant added     other     0.3.0  other-0.3.0-cuda-bundle.tar.zst" in out
    registry = release_tree / "dist" / "registry"
    manifest = manifest_of(registry, "other", "0.3.0")
    archive = release_tree / "dist" / "bundles" / "other-0.3.0-cuda-bundle.tar.zst"
    assert manifest["bundle"] == manifest_of(published, "other", "0.3.0")["bundle"]
    assert manifest["variants"] == [
        {
            "accelerator": "cuda",
            "url": "https://github.com/streamer45/streamkit/releases/download/plugin-other-v0.3.0/"
            "other-0.3.0-cuda-bundle.tar.zst",
            "sha256": manifest["variants"][0]["sha256"],
            "size_bytes": archive.stat().st_size,
        }
    ]
    # The variant holds the cuda build at the same entrypoint, and its manifest was signed again.
    assert tar_file(archive, "libother.so") == native_libs.good_c.read_bytes()
    assert (
        cli_verifies(public, registry / "plugins" / "other" / "0.3.0" / "manifest.json").returncode
        == 0
    )


def test_an_official_plugin_that_is_not_built_fails_the_release_unless_allowed(
    release_tree: Path,
) -> None:
    (release_tree / "target" / "plugins" / "release" / "libother.so").unlink()
    code, out = package(release_tree)
    assert code == 1, out
    assert "error[artifact-missing]" in out and "plugin other is not built" in out
    assert "pass --allow-missing to release the others without it" in out
    assert not (release_tree / "dist").exists()

    code, out = package(release_tree, "--allow-missing")
    assert code == 0, out
    assert (
        "not built         other     0.3.0" in out
        and "looked for target/plugins/release/libother.so" in out
    )
    assert (release_tree / "dist" / "registry" / "plugins" / "vendored").is_dir()
    assert not (release_tree / "dist" / "registry" / "plugins" / "other").exists()
    # A plugin named with --only is required even with --allow-missing.
    code, out = package(release_tree, "--only", "other", "--allow-missing", "--out", "named")
    assert code == 1
    assert "error[artifact-missing]" in out and "plugin other is not built" in out
    assert not (release_tree / "named" / "bundles").exists()


def test_a_version_that_differs_from_cargo_toml_fails_a_release_but_only_warns_on_copy(
    release_tree: Path,
) -> None:
    edit_source(
        release_tree / "plugins" / "native" / "other" / "plugin.yml",
        crate_too=False,
        version="0.4.0",
    )
    code, out = package(release_tree)
    assert code == 1, out
    assert "error[release-version-differs-from-crate]" in out
    assert "declares version 0.4.0 but Cargo.toml has 0.3.0" in out
    assert not (release_tree / "dist").exists()
    code, out = run_in_process("copy-plugins-native", "--root", str(release_tree), "--no-check")
    assert code == 0, out
    assert "warning[source-version-differs-from-crate]" in out


def test_examples_are_installed_but_released_only_when_settings_say_so(
    sample_tree: Path,
) -> None:
    code, out = package(sample_tree)
    assert code == 0, out
    assert "gain-native" not in out
    assert not list((sample_tree / "dist" / "bundles").glob("gain-native-*"))
    code, out = run_in_process("copy-plugins-native", "--root", str(sample_tree), "--no-check")
    assert code == 0 and "installed     gain-native" in out, out

    (sample_tree / "invoke.yaml").write_text(
        "plugins:\n  extras:\n    gain-native:\n      release: true\n"
    )
    code, out = package(sample_tree)
    assert code == 0, out
    assert (sample_tree / "dist" / "bundles" / "gain-native-0.1.0-bundle.tar.zst").is_file()
    # Named on the command line, an extra is packaged as asked.
    (sample_tree / "invoke.yaml").unlink()
    code, out = package(sample_tree, "--only", "gain-native", "--out", "named")
    assert code == 0, out
    assert (sample_tree / "named" / "bundles" / "gain-native-0.1.0-bundle.tar.zst").is_file()


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("no_symbol", "error[entry-symbol-missing]"),
        ("static_archive", "is a static archive (ar)"),
        ("execstack", "error[library-executable-stack]"),
    ],
)
def test_a_library_the_loader_would_skip_is_not_published(
    release_tree: Path, native_libs: NativeLibraries, variant: str, message: str
) -> None:
    install_library(release_tree, getattr(native_libs, variant), "other")
    code, out = package(release_tree)
    assert code == 1
    assert message in out and "target/plugins/release/libother.so" in out and "not published" in out
    assert not (release_tree / "dist" / "bundles").exists()


@pytest.mark.parametrize(
    ("extra_files", "message"),
    [
        ([{"source": "LICENSES/MIT.txt", "dest": "../MIT.txt"}], "it has a `..` component"),
        ([{"source": "LICENSES/MIT.txt", "dest": "/etc/MIT.txt"}], "it is an absolute path"),
        (["../outside.txt"], "must not contain '..'"),
        (["LICENSES/GPL.txt"], "`extra_files[0]` 'LICENSES/GPL.txt' does not exist"),
        (
            [{"source": "LICENSES/MIT.txt", "dest": "plugin.yml"}],
            "where the bundle's own plugin.yml already is",
        ),
        ([{"dest": "x"}], "must be a path or a mapping with `source`"),
    ],
)
def test_bad_extra_files_fail_that_plugin_naming_its_manifest(
    release_tree: Path, extra_files: list, message: str
) -> None:
    edit_source(
        release_tree / "plugins" / "native" / "other" / "plugin.yml", extra_files=extra_files
    )
    code, out = package(release_tree)
    assert code == 1
    assert "plugins/native/other/plugin.yml" in out and message in out, out
    assert "Traceback" not in out
    assert not (release_tree / "dist" / "bundles").exists()


@pytest.mark.parametrize("inside_a_directory", [False, True])
def test_an_extra_file_resolving_outside_the_checkout_is_refused_unless_allowed(
    release_tree: Path, tmp_path: Path, inside_a_directory: bool
) -> None:
    """A symlink in a pull request must not publish a private file from elsewhere (0600 here)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "id_ed25519"
    secret.write_text("private")
    os.chmod(secret, 0o600)
    if inside_a_directory:
        (release_tree / "docs").mkdir()
        os.symlink(secret, release_tree / "docs" / "key.txt")
        declared = "docs"
    else:
        os.symlink(secret, release_tree / "key.txt")
        declared = "key.txt"
    manifest = release_tree / "plugins" / "native" / "other" / "plugin.yml"
    edit_source(manifest, extra_files=[declared])
    code, out = package(release_tree)
    assert code == 1 and "source-outside-checkout" in out and "plugins.allowed_source_dirs" in out
    assert not (release_tree / "dist" / "bundles").exists()
    (release_tree / "invoke.yaml").write_text(
        yaml.safe_dump({"plugins": {"allowed_source_dirs": [str(outside)]}})
    )
    code, out = package(release_tree)
    assert code == 0, out


def test_a_failed_run_leaves_the_previous_output_untouched(release_tree: Path) -> None:
    assert package(release_tree)[0] == 0
    before = snapshot(release_tree / "dist")
    (release_tree / "third_party" / VENDORED_DEPENDENCY_NAME).unlink()
    edit_source(release_tree / "plugins" / "native" / "other" / "plugin.yml", version="0.4.0")
    code, out = package(release_tree)
    assert code == 1 and "error[extra-file-missing]" in out
    assert snapshot(release_tree / "dist") == before
    assert not (release_tree / "dist" / ".plugin-packaging").exists()


# --- the installer's view ----------------------------------------------------------------------------


def test_a_bundle_installs_and_loads_the_way_the_marketplace_installs_it(
    release_tree: Path, tmp_path: Path
) -> None:
    assert package(release_tree)[0] == 0
    archive = release_tree / "dist" / "bundles" / "vendored-1.0.0-bundle.tar.zst"
    manifest = manifest_of(release_tree / "dist" / "registry", "vendored", "1.0.0")
    # The installer's steps: check the download's sha256, unpack into bundles/<id>/<version>/,
    # make sure the entrypoint is there, write the active record.
    digest = subprocess.run(
        ["sha256sum", str(archive)], capture_output=True, text=True, check=False
    ).stdout.split()[0]
    assert digest == manifest["bundle"]["sha256"]
    server = tmp_path / "server"
    target = server / ".plugins" / "bundles" / "vendored" / "1.0.0"
    extract_bundle(archive, target, ArchiveLimits())
    entrypoint = target / manifest["entrypoint"]
    assert entrypoint.is_file()
    record = {
        "plugin_id": "vendored",
        "version": "1.0.0",
        "node_kind": manifest["node_kind"],
        "kind": "native",
        "entrypoint": str(entrypoint.relative_to(server)),
        "installed_at_ms": 1_700_000_000_000,
    }
    (server / ".plugins" / "active").mkdir()
    (server / ".plugins" / "active" / "vendored.json").write_text(json.dumps(record))

    code, out = run_in_process("check-plugins-native", "--root", str(server))
    assert code == 0, out
    assert f"load  plugin::native::{GOOD_C_KIND}" in out
    # Loaded for real in a child process: the vendored dependency is found through $ORIGIN.
    assert report_entry_in_child(entrypoint).kind == GOOD_C_KIND.encode()
    assert yaml.safe_load((target / "plugin.yml").read_text())["entrypoint"] == "libvendored.so"


# --- settings and usage errors -----------------------------------------------------------------------


def test_settings_come_from_invoke_yaml_and_the_environment(
    release_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (release_tree / "invoke.yaml").write_text(
        "plugins:\n"
        "  extras:\n    gain-native:\n      enabled: false\n"
        "  dist_dir: release-out\n"
        "  bundle_url_template: https://cdn.example/{plugin_id}/{version}\n"
        "  published_at: 2024-12-25\n"
    )
    monkeypatch.setenv("INVOKE_PLUGINS_REGISTRY_BASE_URL", "https://env.example/registry")
    code, out = run_in_process("package-plugins-native", "--root", str(release_tree))
    assert code == 0, out
    registry = release_tree / "release-out" / "registry"
    assert (
        manifest_of(registry, "other", "0.3.0")["bundle"]["url"]
        == "https://cdn.example/other/0.3.0/other-0.3.0-bundle.tar.zst"
    )
    version = json.loads((registry / "index.json").read_text())["plugins"][0]["versions"][0]
    assert version["published_at"] == "2024-12-25"
    assert version["manifest_url"].startswith("https://env.example/registry/plugins/")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bundle-url-template", "https://x.example/{name}"], "unknown placeholder {name}"),
        (["--registry-base-url", "registry"], "is not an http(s) URL"),
        (["--published-at", "25/12/2024"], "is not a YYYY-MM-DD date"),
        (["--accelerator", "cpu"], "the CPU bundle is always built"),
        (["--only", "nope"], "no plugin source with id 'nope'"),
        (["--existing-registry", "missing"], "the published registry does not exist"),
        (["--signing-key", "missing.key"], "the minisign secret key file does not exist"),
    ],
)
def test_usage_errors_are_one_message_and_exit_2(
    release_tree: Path, args: list[str], message: str
) -> None:
    code, out = run_in_process("package-plugins-native", "--root", str(release_tree), *args)
    assert code == 2, out
    assert message in out and "Traceback" not in out
    assert not (release_tree / "dist" / "registry").exists()


def test_a_malformed_published_manifest_is_named_not_carried_over(
    release_tree: Path, tmp_path: Path
) -> None:
    published, secret, _ = publish_once(release_tree, tmp_path)
    manifest = published / "plugins" / "other" / "0.3.0" / "manifest.json"
    manifest.write_text(
        manifest.read_text().replace('"models": []', '"variants": 5,\n  "models": []')
    )
    code, out = run_in_process(
        "package-plugins-native",
        "--root",
        str(release_tree),
        "--out",
        "next",
        "--existing-registry",
        str(published),
        "--signing-key",
        str(secret),
        cwd=release_tree,
    )
    assert code == 2
    assert "error[registry-manifest-invalid]" in out and "plugins/other/0.3.0/manifest.json" in out
    assert "Traceback" not in out and not (release_tree / "next" / "registry").exists()
