"""Nothing the checker grades an error is installed or published (issue 10, findings 1 and 4).

Through the real command line, on trees with real compiled libraries: `copy-plugins-native`
checks the staged bundle before the swap and keeps the working copy; `--force` installs anyway
and says so; `package-plugins-native` publishes nothing for such a plugin.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from cli import run_in_process
from fixturelib import GOOD_C_KIND, NativeLibraries
from releaselib import install_library, no_extras, write_source


def _tree(tmp_path: Path, native_libs: NativeLibraries) -> Path:
    root = tmp_path / "streamkit"
    root.mkdir()
    no_extras(root)
    write_source(root, "alpha", GOOD_C_KIND, "alpha", "1.0.0")
    install_library(root, native_libs.good_c, "alpha")
    return root


def _copy(root: Path, *args: str) -> tuple[int, str]:
    return run_in_process("copy-plugins-native", "--root", str(root), *args)


def _installed(root: Path) -> Path:
    return root / ".plugins" / "native" / "alpha"


def _add_model_without_source(root: Path) -> None:
    source = root / "plugins" / "native" / "alpha" / "plugin.yml"
    data = yaml.safe_load(source.read_text())
    data["models"] = [{"id": "weights"}]
    source.write_text(yaml.safe_dump(data, sort_keys=False))


# --- finding 4: a library without the entry symbol ------------------------------------------------


def test_a_rebuilt_library_without_the_entry_symbol_does_not_replace_the_working_one(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    root = _tree(tmp_path, native_libs)
    assert _copy(root)[0] == 0
    working = (_installed(root) / "libalpha.so").read_bytes()
    manifest = (_installed(root) / "plugin.yml").read_bytes()

    install_library(root, native_libs.no_symbol, "alpha")  # "rebuilt" without the entry symbol
    code, out = _copy(root)
    assert code == 1, out
    assert "bundle-refused" in out and "entry-symbol-missing" in out
    assert "the installed copy is kept" in out and "--force" in out
    assert ".plugins/native/alpha/libalpha.so" in out  # named where it would have been
    assert (_installed(root) / "libalpha.so").read_bytes() == working
    assert (_installed(root) / "plugin.yml").read_bytes() == manifest
    # Nothing is left in staging, and a second run says the same instead of "up to date".
    staging = root / ".plugins" / ".plugin-packaging" / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []
    code, again = _copy(root)
    assert code == 1 and "bundle-refused" in again
    assert (_installed(root) / "libalpha.so").read_bytes() == working


def test_a_first_install_the_loader_would_refuse_installs_nothing(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    root = _tree(tmp_path, native_libs)
    install_library(root, native_libs.no_symbol, "alpha")
    code, out = _copy(root)
    assert code == 1 and "bundle-refused" in out and "nothing was installed" in out
    assert not _installed(root).exists()


def test_force_installs_the_refused_bundle_and_says_so(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    root = _tree(tmp_path, native_libs)
    assert _copy(root)[0] == 0
    install_library(root, native_libs.no_symbol, "alpha")
    code, out = _copy(root, "--force")
    assert "installed with --force although the loader will refuse it" in out
    assert "entry-symbol-missing" in out
    assert (_installed(root) / "libalpha.so").read_bytes() == native_libs.no_symbol.read_bytes()
    assert code == 1  # the post-install check still reports the error


def test_a_rule_ignored_in_settings_does_not_refuse_the_install(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    root = _tree(tmp_path, native_libs)
    with (root / "invoke.yaml").open("a") as settings:
        settings.write("  rules:\n    entry-symbol-missing: ignore\n")
    install_library(root, native_libs.no_symbol, "alpha")
    code, out = _copy(root)
    assert code == 0 and "bundle-refused" not in out, out
    assert (_installed(root) / "libalpha.so").read_bytes() == native_libs.no_symbol.read_bytes()


# --- finding 1: a model without `source` ----------------------------------------------------------


def test_a_manifest_the_server_drops_is_not_installed_on_the_first_run_or_the_next(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    root = _tree(tmp_path, native_libs)
    assert _copy(root)[0] == 0
    manifest = (_installed(root) / "plugin.yml").read_bytes()
    _add_model_without_source(root)
    for _ in range(2):  # the second run used to exit 0, as if all was well
        code, out = _copy(root)
        assert code == 1, out
        assert "manifest-key-missing" in out and "models[0].source" in out
        assert "plugins/native/alpha/plugin.yml" in out
        # The working copy stays, so the tree itself is still one the loader accepts.
        assert (_installed(root) / "plugin.yml").read_bytes() == manifest


def test_package_publishes_nothing_for_a_manifest_the_server_drops(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    root = _tree(tmp_path, native_libs)
    _add_model_without_source(root)
    code, out = run_in_process(
        "package-plugins-native", "--root", str(root), "--published-at", "2026-12-01"
    )
    assert code == 1, out
    assert "manifest-key-missing" in out and "models[0].source" in out
    dist = root / "dist"
    assert not (dist / "bundles").exists() or list((dist / "bundles").rglob("*alpha*")) == []
    assert not (dist / "registry" / "plugins" / "alpha").exists()


def test_the_generator_and_the_checker_agree_on_an_installed_manifest(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    # What copy writes, check-plugins-native accepts: one validator on both sides.
    root = _tree(tmp_path, native_libs)
    shutil.copyfile(native_libs.good_c, root / "target" / "plugins" / "release" / "libalpha.so")
    assert _copy(root)[0] == 0
    code, out = run_in_process("check-plugins-native", "--root", str(root))
    assert code == 0, out
