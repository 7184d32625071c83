"""The release flow on a StreamKit-shaped tree: CUDA variants, immutability without builds,
official-plugins.json, the output directory, and release builds."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from cli import run_in_process
from fixturelib import GOOD_C_KIND, NativeLibraries
from releaselib import (
    edit_source,
    manifest_of,
    no_extras,
    streamkit_tree,
    tar_file,
    tar_members,
    write_source,
)

DATE = "2025-03-04"
TEMPLATE = "https://example.invalid/releases/plugin-{plugin_id}-v{version}"


@pytest.fixture
def tree(tmp_path: Path, native_libs: NativeLibraries) -> Path:
    return streamkit_tree(tmp_path / "streamkit", native_libs)


def package(root: Path, *args: str) -> tuple[int, str]:
    return run_in_process(
        "package-plugins-native",
        "--root",
        str(root),
        "--published-at",
        DATE,
        "--bundle-url-template",
        TEMPLATE,
        *args,
        cwd=root,
    )


# --- item 2: CUDA variants from the real manifests ----------------------------------------------


def test_cuda_variants_come_from_accelerators_falling_back_to_artifact(tree: Path) -> None:
    code, out = package(tree, "--accelerator", "cuda")
    assert code == 0, out
    assert "warning" not in out.replace("warning[registry-unsigned]", "")
    bundles = tree / "dist" / "bundles"
    assert sorted(p.name for p in bundles.glob("*.tar.zst")) == [
        "helsinki-0.2.0-bundle.tar.zst",
        "helsinki-0.2.0-cuda-bundle.tar.zst",
        "parakeet-0.1.0-bundle.tar.zst",
        "whisper-0.3.0-bundle.tar.zst",
        "whisper-0.3.0-cuda-bundle.tar.zst",
    ]
    registry = tree / "dist" / "registry"
    whisper = manifest_of(registry, "whisper", "0.3.0")
    assert [v["accelerator"] for v in whisper["variants"]] == ["cuda"]
    assert whisper["variants"][0]["url"] == (
        "https://example.invalid/releases/plugin-whisper-v0.3.0/whisper-0.3.0-cuda-bundle.tar.zst"
    )
    # No artifact_cuda: the cuda bundle holds `artifact` (the cuda pass rebuilt it in place).
    library = (tree / "target" / "plugins" / "release" / "libwhisper.so").read_bytes()
    assert tar_file(bundles / "whisper-0.3.0-cuda-bundle.tar.zst", "libwhisper.so") == library
    # artifact_cuda, when declared, is what the cuda bundle holds.
    cuda = (tree / "target" / "plugins-cuda" / "release" / "libhelsinki.so").read_bytes()
    assert tar_file(bundles / "helsinki-0.2.0-cuda-bundle.tar.zst", "libhelsinki.so") == cuda
    assert "variants" not in manifest_of(registry, "parakeet", "0.1.0")


def test_a_missing_cuda_build_fails_the_pass_unless_allowed(tree: Path) -> None:
    (tree / "target" / "plugins-cuda" / "release" / "libhelsinki.so").unlink()
    code, out = package(tree, "--accelerator", "cuda")
    assert code == 1, out
    assert "error[artifact-missing]" in out and "the cuda build of helsinki is not built" in out
    assert "from plugins/native/helsinki/plugin.yml: artifact_cuda" in out
    code, out = package(tree, "--accelerator", "cuda", "--allow-missing")
    assert code == 0, out
    assert "warning[variant-not-built]" in out
    assert "variants" not in manifest_of(tree / "dist" / "registry", "helsinki", "0.2.0")


# --- item 3: immutability without builds --------------------------------------------------------


def publish(tree: Path, tmp_path: Path, *args: str) -> Path:
    code, out = package(tree, *args)
    assert code == 0, out
    published = tmp_path / "published"
    shutil.copytree(tree / "dist" / "registry", published)
    shutil.rmtree(tree / "dist")
    return published


def remove_libraries(tree: Path) -> None:
    shutil.rmtree(tree / "target")


def test_a_changed_published_version_fails_even_when_nothing_is_built(
    tree: Path, tmp_path: Path
) -> None:
    published = publish(tree, tmp_path)
    remove_libraries(tree)
    edit_source(tree / "plugins" / "native" / "whisper" / "plugin.yml", description="better")
    code, out = package(tree, "--existing-registry", str(published), "--allow-missing")
    assert code == 1, out
    assert "error[registry-published-changed]" in out
    assert "whisper 0.3.0 is already published" in out
    assert '-  "description": "whisper plugin",' in out
    assert '+  "description": "better",' in out
    assert "bump `version` in plugins/native/whisper/plugin.yml" in out
    assert not (tree / "dist").exists()


def test_an_unchanged_published_version_needs_no_build(tree: Path, tmp_path: Path) -> None:
    published = publish(tree, tmp_path)
    remove_libraries(tree)
    code, out = package(tree, "--existing-registry", str(published))
    assert code == 0, out
    assert "unchanged         whisper   0.3.0" in out
    assert manifest_of(tree / "dist" / "registry", "whisper", "0.3.0") == manifest_of(
        published, "whisper", "0.3.0"
    )


def test_check_registry_versions_finds_a_change_without_reading_any_library(
    tree: Path, tmp_path: Path
) -> None:
    published = publish(tree, tmp_path)
    shutil.copytree(published, tree / "docs" / "public" / "registry")
    remove_libraries(tree)
    code, out = run_in_process("check-registry-versions", "--root", str(tree))
    assert code == 0, out
    assert "whisper   0.3.0  published, unchanged" in out
    assert "3 plugins checked against" in out

    source = tree / "plugins" / "native" / "whisper" / "plugin.yml"
    edit_source(source, description="better")
    code, out = run_in_process("check-registry-versions", "--root", str(tree))
    assert code == 1, out
    assert "whisper   0.3.0  CHANGED" in out and '+  "description": "better",' in out
    assert "bump `version` in plugins/native/whisper/plugin.yml" in out

    edit_source(source, version="0.3.1")
    code, out = run_in_process(
        "check-registry-versions", "--root", str(tree), "--registry", str(published)
    )
    assert code == 0, out
    assert "whisper   0.3.1  not published yet" in out

    edit_source(source, crate_too=False, version="0.3.2")
    code, out = run_in_process("check-registry-versions", "--root", str(tree))
    assert code == 1, out
    assert "error[release-version-differs-from-crate]" in out


def test_check_registry_versions_without_a_registry_is_a_usage_error(tree: Path) -> None:
    code, out = run_in_process("check-registry-versions", "--root", str(tree))
    assert code == 2
    assert "error[registry-missing]" in out and "docs/public/registry" in out


# --- item 6: official-plugins.json ----------------------------------------------------------------


def generate_official_plugins_oracle(root: Path) -> bytes:
    """What StreamKit's generate_official_plugins.py writes for a tree, from its observable
    behaviour: every plugins/native/<dir> but `common`, its plugin.yml loaded as written, keys
    in its fixed order first and the others after in file order, sorted by id, two-space JSON
    with a final newline."""
    order = [
        "id", "name", "version", "node_kind", "kind", "entrypoint", "artifact", "accelerators",
        "description", "license", "license_url", "homepage", "repository", "compatibility",
        "models",
    ]  # fmt: skip
    plugins = []
    for directory in sorted((root / "plugins" / "native").iterdir()):
        if directory.name == "common":
            continue
        data = yaml.safe_load((directory / "plugin.yml").read_text())
        ordered = {key: data[key] for key in order if key in data}
        ordered.update({key: value for key, value in data.items() if key not in ordered})
        plugins.append(ordered)
    plugins.sort(key=lambda plugin: plugin["id"])
    return (json.dumps({"plugins": plugins}, indent=2, sort_keys=False) + "\n").encode()


def test_official_plugins_json_is_what_streamkits_generator_writes(tree: Path) -> None:
    # Keys deliberately out of StreamKit's order in one source, and an unknown key.
    source = tree / "plugins" / "native" / "parakeet" / "plugin.yml"
    data = yaml.safe_load(source.read_text())
    source.write_text(yaml.safe_dump({"x-notes": "é", **dict(reversed(data.items()))}))
    code, out = package(tree)
    assert code == 0, out
    written = (tree / "dist" / "official-plugins.json").read_bytes()
    assert written == generate_official_plugins_oracle(tree)
    document = json.loads(written)
    assert [p["id"] for p in document["plugins"]] == ["helsinki", "parakeet", "whisper"]
    assert list(document["plugins"][1])[:3] == ["id", "name", "version"]
    assert list(document["plugins"][1])[-1] == "x-notes"


# --- item 8: the output directory holds the release and nothing else ---------------------------


def test_the_output_directory_holds_only_the_release(tree: Path) -> None:
    for _ in range(2):
        code, out = package(tree)
        assert code == 0, out
        assert sorted(os.listdir(tree / "dist")) == ["bundles", "official-plugins.json", "registry"]


def test_a_failed_plugin_is_listed_once(tree: Path, tmp_path: Path) -> None:
    published = publish(tree, tmp_path, "--accelerator", "cuda")  # whisper: bundle and variant
    # parakeet's manifest cannot even be read now; whisper's would change a published version.
    edit_source(tree / "plugins" / "native" / "parakeet" / "plugin.yml", node_kind="bad::kind")
    edit_source(tree / "plugins" / "native" / "whisper" / "plugin.yml", description="better")
    code, out = package(tree, "--existing-registry", str(published))
    assert code == 1, out
    for plugin_id in ("parakeet", "whisper"):
        lines = [line for line in out.splitlines() if re.match(rf"  \S.* {plugin_id}( |$)", line)]
        assert len(lines) == 1 and "FAILED" in lines[0], out


# --- item 5: release builds ---------------------------------------------------------------------

BUILD_RS = """
fn main() {
    for name in ["SOURCE_DATE_EPOCH", "CFLAGS", "CXXFLAGS"] {
        println!("cargo:rerun-if-env-changed={name}");
    }
    let epoch = std::env::var("SOURCE_DATE_EPOCH").unwrap_or_default();
    let cflags = std::env::var("CFLAGS").unwrap_or_default();
    let cxxflags = std::env::var("CXXFLAGS").unwrap_or_default();
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_default();
    if epoch != "1" || !cflags.contains("-march=x86-64") || !cxxflags.contains("-mtune=generic") {
        panic!("not a portable release build: SOURCE_DATE_EPOCH={epoch:?} CFLAGS={cflags:?}");
    }
    println!("cargo:warning=portable build into {target}");
}
"""


def whisper_crate(root: Path) -> Path:
    """A crate named like StreamKit's whisper whose build script refuses a non-portable build."""
    directory = root / "plugins" / "native" / "whisper"
    write_source(root, "whisper", GOOD_C_KIND, "whisper", "0.3.0")
    (directory / "build.rs").write_text(BUILD_RS)
    (directory / "src").mkdir()
    (directory / "src" / "lib.rs").write_text('#[no_mangle]\npub extern "C" fn f() {}\n')
    (directory / "Cargo.toml").write_text(
        '[package]\nname = "whisper"\nversion = "0.3.0"\nedition = "2021"\n\n'
        '[lib]\nname = "whisper"\ncrate-type = ["cdylib"]\n\n[workspace]\n'
    )
    return directory


@pytest.mark.compiled  # runs cargo
def test_whisper_is_built_as_streamkits_release_script_builds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARGO_NET_OFFLINE", "true")
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)
    monkeypatch.setenv("CFLAGS", "-march=native")  # what a developer's shell may hold
    root = tmp_path / "streamkit"
    whisper_crate(root)
    no_extras(root)
    code, out = run_in_process("build-plugins-native", "--root", str(root), "--dry-run")
    assert code == 0, out
    assert (
        "CARGO_TARGET_DIR=target/plugins CFLAGS='-O3 -pipe -fPIC -march=x86-64 -mtune=generic' "
        "CXXFLAGS='-O3 -pipe -fPIC -march=x86-64 -mtune=generic' SOURCE_DATE_EPOCH=1 "
        "cargo build --manifest-path plugins/native/whisper/Cargo.toml --release"
    ) in out
    code, out = run_in_process("build-plugins-native", "--root", str(root), "--only", "whisper")
    assert code == 0, out
    assert (root / "target" / "plugins" / "release" / "libwhisper.so").is_file()

    # Settings override the data: without the portable flags the build script refuses.
    (root / "invoke.yaml").write_text(
        "plugins:\n  extras:\n    gain-native:\n      enabled: false\n"
        "  build_env:\n    whisper:\n      CFLAGS: null\n      SOURCE_DATE_EPOCH: '0'\n"
    )
    code, out = run_in_process("build-plugins-native", "--root", str(root), "--only", "whisper")
    assert code == 1, out
    assert "not a portable release build" in out
    assert 'CFLAGS=""' in out  # `null` removed the CFLAGS the shell had


def test_bad_build_env_settings_are_one_message(tmp_path: Path) -> None:
    root = tmp_path / "streamkit"
    whisper_crate(root)
    (root / "invoke.yaml").write_text("plugins:\n  build_env:\n    other: [CFLAGS]\n")
    code, out = run_in_process("build-plugins-native", "--root", str(root), "--dry-run")
    assert code == 2
    assert "plugins.build_env.other must map variable names to values" in out
    assert "Traceback" not in out


def test_bundled_plugin_yml_and_manifest_are_in_every_cuda_bundle(tree: Path) -> None:
    code, out = package(tree, "--accelerator", "cuda", "--only", "whisper")
    assert code == 0, out
    members = tar_members(tree / "dist" / "bundles" / "whisper-0.3.0-cuda-bundle.tar.zst")
    assert sorted(members) == ["libwhisper.so", "manifest.json", "plugin.yml"]


def exports(library: Path, symbol: str) -> bool:
    from elftools.elf.elffile import ELFFile

    with open(library, "rb") as handle:
        table = ELFFile(handle).get_section_by_name(".dynsym")
        return any(s.name == symbol for s in table.iter_symbols())


@pytest.mark.compiled  # runs cargo
def test_a_cuda_pass_builds_the_plugins_that_declare_cuda_with_their_cuda_feature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARGO_NET_OFFLINE", "true")
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)
    root = tmp_path / "streamkit"
    whisper = whisper_crate(root)
    edit_source(whisper / "plugin.yml", accelerators=["cpu", "cuda"])
    with open(whisper / "Cargo.toml", "a") as cargo:
        cargo.write("\n[features]\ndefault = []\ncuda = []\n")
    (whisper / "src" / "lib.rs").write_text(
        '#[cfg(feature = "cuda")]\n#[no_mangle]\npub extern "C" fn built_for_cuda() {}\n'
    )
    write_source(
        root,
        "helsinki",
        GOOD_C_KIND,
        "helsinki",
        "0.2.0",
        accelerators=["cpu", "cuda"],
        artifact_cuda="target/plugins-cuda/release/libhelsinki.so",
    )
    write_source(root, "parakeet", GOOD_C_KIND, "parakeet", "0.1.0")
    no_extras(root)
    code, out = run_in_process(
        "build-plugins-native", "--root", str(root), "--accelerator", "cuda", "--dry-run"
    )
    assert code == 0, out
    assert "whisper/Cargo.toml --release --features cuda" in out
    assert (
        "CARGO_TARGET_DIR=target/plugins-cuda cargo build --manifest-path "
        "plugins/native/helsinki/Cargo.toml --release\n"
    ) in out
    assert "parakeet" not in out and "2 plugin(s) would be built" in out

    code, out = run_in_process(
        "build-plugins-native", "--root", str(root), "--accelerator", "cuda", "--only", "whisper"
    )
    assert code == 0, out
    library = root / "target" / "plugins" / "release" / "libwhisper.so"
    assert exports(library, "built_for_cuda")
    code, out = run_in_process("build-plugins-native", "--root", str(root), "--only", "whisper")
    assert code == 0, out
    assert not exports(library, "built_for_cuda")


def test_the_output_lock_is_on_the_directory_itself_and_excludes_a_second_writer(
    tmp_path: Path,
) -> None:
    from plugin_packaging._fs.lock import DirectoryLock
    from plugin_packaging.errors import PackagingError

    out = tmp_path / "dist"
    out.mkdir()
    state = out / ".plugin-packaging"
    with DirectoryLock(state, on_parent=True):
        with (
            pytest.raises(PackagingError) as refused,
            DirectoryLock(state, on_parent=True, timeout=0.2),
        ):
            pass
        assert refused.value.code == "plugins-dir-locked"
        assert not (state / "lock").exists()
    with DirectoryLock(state, on_parent=True, timeout=0.2):
        pass  # released with the first holder
