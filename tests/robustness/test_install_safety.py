"""What an install may write and delete, tried as an attacker would (issue 11, family 1, and the
install-side cases of families 4 and 5).

Who may write what (the threat model, also in the README): the checkout comes from a pull
request, so its manifests, artifacts (and symlinks among them) are hostile; the plugins directory
and its `state.json` may have been written by another checkout, an older tool, or damaged; only
the user writes outside both. Every test hashes the whole case directory (the checkout, a
sentinel directory `outside/` beside it) before and after, and names exactly what may change.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from confined import RunResult, changed, run_cli, snapshot, source_manifest
from fixturelib import NativeLibraries

from plugin_packaging.install.state import Checkout

STATE = Path(".plugins/.plugin-packaging/state.json")
#: The tool's own bookkeeping (state, lock, staging), which every writing run may change.
BOOKKEEPING = "streamkit/.plugins/.plugin-packaging"


class Case:
    """A copy of the installed checkout, a sentinel directory beside it, and a way to run."""

    def __init__(self, base: Path, template: Path, libs: NativeLibraries) -> None:
        self.base = base
        self.root = base / "streamkit"
        shutil.copytree(template, self.root, symlinks=True)
        self.outside = base / "outside"
        self.outside.mkdir()
        secret = self.outside / "secret.so"
        secret.write_bytes(libs.good_c.read_bytes())
        os.chmod(secret, 0o600)
        self.secret = secret
        self.libs = libs
        self.tmp = base / "tmp"
        self.tmp.mkdir()
        # The copy has new inodes and another root: install once so that the state is this
        # checkout's own, as after a real run.
        assert self.run("copy-plugins-native").code == 0

    @property
    def native(self) -> Path:
        return self.root / ".plugins" / "native"

    def run(self, *args: str | Path, drop_dac: bool = False) -> RunResult:
        result = run_cli(
            [*args, "--root", self.root], cwd=self.base, tmpdir=self.tmp, drop_dac=drop_dac
        )
        assert "Traceback" not in result.output, result.describe()
        assert os.listdir(self.tmp) == [], "a run left files in TMPDIR"
        return result

    def snapshot(self) -> dict[str, tuple[object, ...]]:
        return snapshot(self.base, exclude=(self.tmp,))

    def state(self) -> dict:
        return json.loads((self.root / STATE).read_text())

    def write_state(self, document: dict) -> None:
        (self.root / STATE).write_text(json.dumps(document))

    def checkout(self) -> dict:
        return Checkout.of(self.root).to_json()

    def drop_source(self, plugin_id: str) -> None:
        shutil.rmtree(self.root / "plugins" / "native" / plugin_id)


@pytest.fixture
def case(tmp_path: Path, installed_checkout: Path, native_libs: NativeLibraries) -> Case:
    return Case(tmp_path, installed_checkout, native_libs)


def only_changed(before: dict, after: dict, *allowed: str) -> list[str]:
    """Paths changed between two snapshots that are not below one of `allowed`."""
    return [
        path
        for path in changed(before, after)
        if not any(path == a or path.startswith(a.rstrip("/") + "/") for a in allowed)
    ]


# --- prune: only what validated records prove this checkout installed --------------------------


@pytest.mark.parametrize(
    "key",
    ["..", ".", "../outside", "../../outside", "/", "/tmp", "native/../..", "alpha/..", "", " "],
)
def test_prune_never_turns_a_forged_state_key_into_a_path(case: Case, key: str) -> None:
    document = case.state()
    owner = case.checkout()
    document["owners"][key] = owner
    document["plugins"][key] = document["plugins"]["alpha"]
    case.write_state(document)
    before = case.snapshot()
    result = case.run("copy-plugins-native", "--prune")
    assert result.code == 0, result.describe()
    assert only_changed(before, case.snapshot(), BOOKKEEPING) == []


def test_prune_removes_only_what_this_checkout_installed_and_no_longer_declares(
    case: Case, tmp_path: Path, installed_checkout: Path, native_libs: NativeLibraries
) -> None:
    # A second checkout shares the first one's plugins directory and installs gamma into it.
    other = Case(tmp_path / "other", installed_checkout, native_libs)
    for plugin_id in ("alpha", "beta"):
        other.drop_source(plugin_id)
    gamma = other.root / "plugins" / "native" / "gamma"
    gamma.mkdir(parents=True)
    (gamma / "plugin.yml").write_text(
        yaml.safe_dump(source_manifest("gamma", artifact="target/plugins/release/libalpha.so"))
    )
    shared = case.root / ".plugins"
    result = other.run("copy-plugins-native", "--plugins-dir", shared, "--prune")
    assert result.code == 0, result.describe()
    assert sorted(os.listdir(case.native)) == ["alpha", "beta", "gamma"]  # alpha, beta kept
    # The first checkout does not declare gamma: it is not its own, so prune leaves it.
    result = case.run("copy-plugins-native", "--prune")
    assert result.code == 0, result.describe()
    assert "gamma" not in result.output
    assert sorted(os.listdir(case.native)) == ["alpha", "beta", "gamma"]
    # Its own orphan goes; the other checkout's bundle stays.
    case.drop_source("beta")
    result = case.run("copy-plugins-native", "--prune")
    assert result.code == 0, result.describe()
    assert sorted(os.listdir(case.native)) == ["alpha", "gamma"]
    # And the other checkout still knows gamma as its own: up to date, not reinstalled.
    result = other.run("copy-plugins-native", "--plugins-dir", shared)
    assert result.code == 0 and "up to date" in result.output, result.describe()


def test_prune_leaves_a_directory_the_tool_never_created(case: Case) -> None:
    user = case.native / "my-upload"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    before = case.snapshot()
    result = case.run("copy-plugins-native", "--prune")
    assert result.code == 0, result.describe()
    assert only_changed(before, case.snapshot(), BOOKKEEPING) == []


def test_prune_into_a_read_only_native_dir_is_a_clear_error(case: Case) -> None:
    case.drop_source("beta")
    os.chmod(case.native, 0o555)
    try:
        result = case.run("copy-plugins-native", "--prune", drop_dac=True)
    finally:
        os.chmod(case.native, 0o755)
    assert result.code == 1, result.describe()
    assert "io-error" in result.output and "hint:" in result.output
    assert (case.native / "beta").is_dir()


# --- never write through a link -----------------------------------------------------------------


def test_an_installed_library_replaced_by_a_symlink_never_gets_a_mode_through_it(
    case: Case,
) -> None:
    library = case.native / "alpha" / "libalpha.so"
    library.unlink()
    os.symlink(case.secret, library)
    # Forge the record so that the link's own signature is "what was installed", and change the
    # manifest so that the run reuses the "unchanged" installed library.
    document = case.state()
    info = os.lstat(library)
    document["plugins"]["alpha"]["installed"]["libalpha.so"] = [
        info.st_size,
        info.st_mtime_ns,
        info.st_ino,
        info.st_mode,
    ]
    case.write_state(document)
    manifest = case.root / "plugins" / "native" / "alpha" / "plugin.yml"
    manifest.write_text(yaml.safe_dump(source_manifest("alpha", description="changed")))
    before = snapshot(case.outside)
    result = case.run("copy-plugins-native")
    assert result.code in (0, 1), result.describe()
    assert snapshot(case.outside) == before
    assert stat.S_IMODE(os.stat(case.secret).st_mode) == 0o600


def test_a_hard_linked_lock_file_is_refused_before_anything_is_written(case: Case) -> None:
    lock = case.root / ".plugins" / ".plugin-packaging" / "lock"
    lock.unlink()
    os.link(case.secret, lock)
    before = case.snapshot()
    result = case.run("copy-plugins-native")
    assert result.code == 2, result.describe()
    assert "state-dir-unsafe" in result.output and "hard links" in result.output
    assert changed(before, case.snapshot()) == []


def test_a_symlinked_native_dir_is_refused(case: Case) -> None:
    shutil.move(case.native, case.outside / "native")
    os.symlink(case.outside / "native", case.native)
    before = case.snapshot()
    for command in ("copy-plugins-native", "migrate-plugins-native"):
        result = case.run(command)
        assert result.code == 2, result.describe()
        assert "state-dir-unsafe" in result.output and "native" in result.output
    assert changed(before, case.snapshot()) == []


def test_an_artifact_resolving_outside_the_checkout_is_refused_unless_allowed(
    case: Case,
) -> None:
    artifact = case.root / "target" / "plugins" / "release" / "libalpha.so"
    artifact.unlink()
    os.symlink(case.secret, artifact)
    before = case.snapshot()
    result = case.run("copy-plugins-native")
    assert result.code == 1, result.describe()
    assert "outside the checkout" in result.output and "libalpha.so" in result.output
    assert only_changed(before, case.snapshot(), BOOKKEEPING) == []
    (case.root / "invoke.yaml").write_text(
        yaml.safe_dump({"plugins": {"allowed_source_dirs": [str(case.outside)]}})
    )
    result = case.run("copy-plugins-native")
    assert result.code == 0, result.describe()
    installed = case.native / "alpha" / "libalpha.so"
    assert installed.read_bytes() == case.secret.read_bytes()
    assert stat.S_IMODE(os.stat(case.secret).st_mode) == 0o600


# --- a native/<id>/ the tool never created ----------------------------------------------------


def test_an_unmanaged_bundle_is_never_emptied_and_can_be_adopted(case: Case) -> None:
    document = case.state()
    del document["owners"]["alpha"]  # as if a marketplace install had put it there
    case.write_state(document)
    bundle = case.native / "alpha"
    (bundle / "libalpha.so").write_bytes(b"the user's own build")
    (bundle / "notes.txt").write_text("keep me")
    before = case.snapshot()
    result = case.run("copy-plugins-native")
    assert result.code == 1, result.describe()
    assert "bundle-unmanaged" in result.output and "--adopt alpha" in result.output
    assert only_changed(before, case.snapshot(), BOOKKEEPING) == []
    result = case.run("copy-plugins-native", "--adopt", "alpha")
    assert result.code == 0, result.describe()
    assert sorted(os.listdir(bundle)) == ["libalpha.so", "plugin.yml"]


def test_a_bundle_identical_to_the_build_is_recognised_without_a_state(case: Case) -> None:
    (case.root / STATE).unlink()
    before = snapshot(case.native)
    result = case.run("copy-plugins-native")
    assert result.code == 0 and result.output.count("  up to date ") == 2, result.describe()
    assert snapshot(case.native) == before


# --- odd values in state.json, odd staging, long ids ----------------------------------------------


ODD_STATES = {
    "owners-not-mapping": lambda d: d.update(owners=[1, 2]),
    "owner-relative-root": lambda d: d["owners"]["alpha"].update(root="streamkit"),
    "owner-bool-inode": lambda d: d["owners"]["alpha"].update(inode=True),
    "signature-negative": lambda d: d["plugins"]["alpha"]["installed"].update(
        {"libalpha.so": [-1, 0, 0, 0]}
    ),
    "signature-float": lambda d: d["plugins"]["alpha"]["inputs"].update(library=[1.5, 2, 3, 4]),
    "installed-key-dotdot": lambda d: d["plugins"]["alpha"]["installed"].update({"../x": None}),
    "manifest-text-number": lambda d: d["plugins"]["alpha"]["manifest"].update(text=5),
    "warnings-bad": lambda d: d["plugins"]["alpha"]["manifest"].update(warnings=[[1, 2, 3, 4]]),
    "verdict-bad-severity": lambda d: d.update(
        verdicts={"alpha": {"signature": "x", "findings": [{"severity": "fatal"}]}}
    ),
    "sources-junk": lambda d: d.update(sources={"/x": {"signature": "no", "data": 1}}),
    "format-string": lambda d: d.update(format="4"),
}


@pytest.mark.parametrize("name", sorted(ODD_STATES))
def test_odd_values_in_the_state_are_a_cache_miss(case: Case, name: str) -> None:
    document = case.state()
    ODD_STATES[name](document)
    case.write_state(document)
    os.utime(case.root / "target" / "plugins" / "release" / "libalpha.so", (1, 1))
    before = snapshot(case.native)
    result = case.run("copy-plugins-native")
    assert result.code in (0, 1), result.describe()
    if name not in (
        "owners-not-mapping",
        "owner-relative-root",
        "owner-bool-inode",
        "format-string",
    ):
        assert result.code == 0, result.describe()
        assert snapshot(case.native) == before
    else:  # ownership forgotten: identical bundles are recognised, nothing is lost
        assert snapshot(case.native) == before


def test_a_huge_integer_in_the_state_is_no_state(case: Case) -> None:
    text = (case.root / STATE).read_text().replace('"format": 4', '"format": ' + "9" * 5000)
    (case.root / STATE).write_text(text)
    result = case.run("copy-plugins-native")
    assert result.code == 0, result.describe()


def test_a_read_only_staging_leftover_is_cleared(case: Case) -> None:
    staging = case.root / ".plugins" / ".plugin-packaging" / "staging"
    leftover = staging / "op-killed1" / "bundle"
    leftover.mkdir(parents=True)
    (leftover / "libalpha.so").write_bytes(b"half")
    os.chmod(leftover, 0o555)
    os.chmod(leftover.parent, 0o555)
    result = case.run("copy-plugins-native", drop_dac=True)
    assert result.code == 0, result.describe()
    assert "repair" in result.output
    assert os.listdir(staging) == []


def test_a_parked_bundle_with_a_forged_id_is_never_restored_outside(case: Case) -> None:
    staging = case.root / ".plugins" / ".plugin-packaging" / "staging"
    operation = staging / "op-forged"
    (operation / "old").mkdir(parents=True)
    (operation / "old" / "payload").write_text("x")
    (operation / "id").write_text("../../outside/restored")
    before = snapshot(case.outside)
    result = case.run("copy-plugins-native")
    assert result.code == 0, result.describe()
    assert snapshot(case.outside) == before and os.listdir(staging) == []


def test_a_250_byte_id_installs(case: Case) -> None:
    long_id = "p" * 250
    source = case.root / "plugins" / "native" / long_id
    source.mkdir()
    (source / "plugin.yml").write_text(
        yaml.safe_dump(
            source_manifest(long_id, artifact="target/plugins/release/libalpha.so"),
            sort_keys=False,
        )
    )
    result = case.run("copy-plugins-native")
    assert result.code == 0, result.describe()
    assert (case.native / long_id / "libalpha.so").is_file()
    assert case.run("copy-plugins-native").output.count("  up to date ") == 3


# --- the post-install verdict covers the whole tree -------------------------------------------


def test_a_broken_bundle_fails_every_run_not_only_the_one_that_installed_it(case: Case) -> None:
    broken = case.native / "broken"
    broken.mkdir()
    shutil.copyfile(case.libs.good_c, broken / "libbroken.so")
    (broken / "plugin.yml").write_text("id: broken\nkind: native\nmodels: [{id: weights}]\n")
    for _ in range(2):
        result = case.run("copy-plugins-native")
        assert result.code == 1, result.describe()
        assert "will accept" not in result.output
        assert "native/broken" in result.output
    shutil.rmtree(broken)
    result = case.run("copy-plugins-native")
    assert result.code == 0 and "will accept" in result.output, result.describe()
