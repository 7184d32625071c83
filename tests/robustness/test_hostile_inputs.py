"""Inputs the tool does not own, made to hang it, exhaust it or crash it, end to end.

Each case runs the real command line as a confined subprocess (wall-clock and address-space
limits, see `confined.py`). What must hold: no traceback; a hang or a read of everything is
impossible (FIFOs, /dev/zero and a 256 GiB sparse file where a bundle, key, signature or
SHA256SUMS is expected finish within a few seconds); the file is named with what it is; a bad
bundle is a finding about that bundle while the good one beside it is still verified; nothing
is written. The families are those of issue 11 (hangs and unbounded memory, tracebacks,
unclear errors).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from confined import changed, run_cli, snapshot, source_manifest, write_checkout
from elfpatch import with_needed_and_runpath
from fixturelib import NativeLibraries
from test_hostile_archives import Member, regular, tar_bytes, valid_members, zst

GOOD = "alpha-1.0.0-bundle.tar.zst"
#: Every case here is refused without reading much: far below the suite's command limit.
FAST = 10.0
BIG_INTEGER = "1" * 5000
#: Deeper than the server's parsers accept (128), shallow enough for Python's to build.
DEEP = 990


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _sparse(path: Path) -> None:
    with open(path, "wb") as out:
        out.truncate(256 << 30)  # 256 GiB of nothing: costs no disk, would take hours to hash


def _loop(path: Path) -> None:
    path.symlink_to(path.name)


@dataclass(frozen=True)
class BundlesCase:
    """A file in dist/bundles/ beside a good bundle, for verify-plugin-bundles."""

    name: str
    make: Callable[[Path], None]  # given dist/bundles/
    code: int
    says: tuple[str, ...]
    args: tuple[str, ...] = ()


def _bundle_named(make: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda bundles: make(bundles / "beta-1.0.0-bundle.tar.zst")


def _sha256sums(data: bytes) -> Callable[[Path], None]:
    return lambda bundles: (bundles / "SHA256SUMS").write_bytes(data)


def _unextractable_member(bundles: Path) -> None:
    # A 300-byte name component: a valid tar name that no Linux file system can create.
    name = "x" * 300 + ".txt"
    members = [*_good_members(), regular(name, b"x")]
    (bundles / "beta-1.0.0-bundle.tar.zst").write_bytes(zst(tar_bytes(members)))


_LIBS: list[NativeLibraries] = []


def _good_members() -> list[Member]:
    return valid_members(_LIBS[0])


BUNDLES_CASES = [
    BundlesCase("bundle-fifo", _bundle_named(_fifo), 1, ("bundle-corrupt", "named pipe (FIFO)")),
    BundlesCase("bundle-dev-zero", _bundle_named(_dev_zero), 1, ("bundle-corrupt", "a device")),
    BundlesCase(
        "bundle-sparse-256-gib", _bundle_named(_sparse), 1, ("bundle-too-large", "256 GiB")
    ),
    BundlesCase(
        "bundle-symlink-loop", _bundle_named(_loop), 1, ("bundle-corrupt", "symbolic link loop")
    ),
    BundlesCase(
        "bundle-zeros-named-zst",
        _bundle_named(lambda path: path.write_bytes(bytes(1 << 20))),
        1,
        ("bundle-corrupt", "does not start like a .zst file"),
    ),
    BundlesCase(
        "bundle-member-unextractable",
        _unextractable_member,
        1,
        ("bundle-unsafe-member", "cannot be unpacked", "File name too long"),
    ),
    BundlesCase(
        "sha256sums-not-utf8",
        _sha256sums(b"\xff\xfe" + b"0" * 64 + b"  " + GOOD.encode() + b"\n"),
        1,
        ("bundle-checksum-list-mismatch", "not UTF-8"),
    ),
    BundlesCase(
        "sha256sums-fifo",
        lambda bundles: _fifo(bundles / "SHA256SUMS"),
        1,
        ("bundle-checksum-list-mismatch", "named pipe (FIFO)"),
    ),
    BundlesCase(
        "sha256sums-dev-zero",
        lambda bundles: _dev_zero(bundles / "SHA256SUMS"),
        1,
        ("bundle-checksum-list-mismatch", "a device"),
    ),
    BundlesCase(
        "public-key-fifo",
        lambda bundles: _fifo(bundles.parent / "key.pub"),
        2,
        ("signing-public-key-invalid", "named pipe (FIFO)"),
        args=("--public-key", "{root}/dist/key.pub"),
    ),
    BundlesCase(
        "public-key-dev-zero",
        lambda bundles: _dev_zero(bundles.parent / "key.pub"),
        2,
        ("signing-public-key-invalid", "a device"),
        args=("--public-key", "{root}/dist/key.pub"),
    ),
]


@pytest.mark.parametrize("case", BUNDLES_CASES, ids=[c.name for c in BUNDLES_CASES])
def test_verify_refuses_what_is_no_bundle_at_once(
    case: BundlesCase, native_libs: NativeLibraries, tmp_path: Path
) -> None:
    _LIBS[:] = [native_libs]
    root = tmp_path / "streamkit"
    bundles = root / "dist" / "bundles"
    bundles.mkdir(parents=True)
    (bundles / GOOD).write_bytes(zst(tar_bytes(valid_members(native_libs))))
    case.make(bundles)
    cwd, scratch = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    # The bundles themselves are not hashed by the snapshot (one is a 256 GiB sparse file).
    before = snapshot(tmp_path, exclude=(bundles,)), sorted(os.listdir(bundles))
    started = time.monotonic()

    args = [a.format(root=root) for a in case.args]
    result = run_cli(
        ["verify-plugin-bundles", "--root", root, *args], cwd=cwd, tmpdir=scratch, timeout=FAST
    )

    report = result.describe()
    assert time.monotonic() - started < FAST, report
    assert "Traceback" not in result.output, report
    assert result.code == case.code, report
    for phrase in case.says:
        assert phrase in result.output, f"missing {phrase!r}\n{report}"
    if case.code == 1:  # a finding about one file: the good bundle was still verified
        assert "alpha 1.0.0" in result.output, report
    assert changed(before[0], snapshot(tmp_path, exclude=(bundles,))) == [], report
    assert sorted(os.listdir(bundles)) == before[1], report
    assert os.listdir(scratch) == [], report


# --- package-plugins-native: the signing key, SOURCE_DATE_EPOCH ----------------------------------


@pytest.mark.parametrize(
    ("name", "make", "env", "says"),
    [
        ("signing-key-fifo", _fifo, {}, ("signing-key-unreadable", "named pipe (FIFO)")),
        ("signing-key-dev-zero", _dev_zero, {}, ("signing-key-unreadable", "a device")),
        (
            "source-date-epoch-5000-digits",
            None,
            {"SOURCE_DATE_EPOCH": BIG_INTEGER},
            ("source-date-epoch-invalid", "past what a tar header can hold"),
        ),
    ],
)
def test_package_refuses_hostile_release_inputs(
    name: str,
    make: Callable[[Path], None] | None,
    env: dict[str, str],
    says: tuple[str, ...],
    native_libs: NativeLibraries,
    tmp_path: Path,
) -> None:
    root = tmp_path / "streamkit"
    write_checkout(root, native_libs)
    args: list[str | Path] = ["package-plugins-native", "--root", root]
    if make is not None:
        key = tmp_path / "release.key"
        make(key)
        args += ["--signing-key", key]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "PYTHON"))}
    environment.update(PYTHONIOENCODING="utf-8", TMPDIR=str(scratch), **env)
    before = snapshot(tmp_path)

    result = run_cli(args, cwd=tmp_path, tmpdir=scratch, env=environment, timeout=60)

    report = result.describe()
    assert "Traceback" not in result.output, report
    assert result.code == 2, report
    for phrase in says:
        assert phrase in result.output, f"missing {phrase!r}\n{report}"
    assert changed(before, snapshot(tmp_path)) == [], report


# --- numbers and nesting in every parsed format ---------------------------------------------------


def _deep(opening: str, closing: str) -> str:
    return opening * DEEP + closing * DEEP


@dataclass(frozen=True)
class ParsedCase:
    name: str
    #: (path relative to the checkout, text or None to remove it); after the checkout is copied.
    files: tuple[tuple[str, str | None], ...]
    command: str
    code: int
    says: tuple[str, ...]


def _source_manifest(extra: str) -> str:
    return yaml.safe_dump(source_manifest("alpha"), sort_keys=False) + extra


_BUNDLE_MANIFEST = {
    "id": "alpha",
    "version": "1.0.0",
    "node_kind": "alpha_kind",
    "kind": "native",
    "entrypoint": "libalpha.so",
}


def _json_with(value: str) -> str:
    return json.dumps(_BUNDLE_MANIFEST)[:-1] + f', "extra": {value}}}'


PARSED_CASES = [
    ParsedCase(
        "plugin-yml-nested-990",
        (
            (
                "plugins/native/alpha/plugin.yml",
                _source_manifest(f"x_deep: {_deep('[', ']')}\n"),
            ),
        ),
        "copy-plugins-native",
        1,
        ("manifest-too-deep", "plugins/native/alpha/plugin.yml"),
    ),
    ParsedCase(
        "plugin-yml-integer-5000-digits",
        (("plugins/native/alpha/plugin.yml", _source_manifest(f"x_big: {BIG_INTEGER}\n")),),
        "copy-plugins-native",
        1,
        ("manifest-invalid-yaml", "plugins/native/alpha/plugin.yml", "more digits"),
    ),
    ParsedCase(
        "cargo-toml-integer-5000-digits",
        (
            (
                "plugins/native/alpha/Cargo.toml",
                f'[package]\nname = "alpha"\nversion = "0.1.0"\nx = {BIG_INTEGER}\n',
            ),
        ),
        "copy-plugins-native",
        1,
        ("cargo-toml-invalid", "plugins/native/alpha/Cargo.toml", "more digits"),
    ),
    ParsedCase(
        "cargo-toml-nested-990",
        (
            (
                "plugins/native/alpha/Cargo.toml",
                f'[package]\nname = "alpha"\nversion = "0.1.0"\nx = {_deep("[", "]")}\n',
            ),
        ),
        "list-plugins-native",
        1,
        ("cargo-toml-invalid", "plugins/native/alpha/Cargo.toml"),
    ),
    ParsedCase(
        "bundle-manifest-json-integer-5000-digits",
        (
            (".plugins/native/alpha/plugin.yml", None),
            (".plugins/native/alpha/manifest.json", _json_with(BIG_INTEGER)),
        ),
        "check-plugins-native",
        1,
        ("manifest-unparseable", "manifest.json", "more digits"),
    ),
    ParsedCase(
        "bundle-manifest-json-nested-990",
        (
            (".plugins/native/alpha/plugin.yml", None),
            (".plugins/native/alpha/manifest.json", _json_with(_deep("[", "]"))),
        ),
        "check-plugins-native",
        1,
        ("manifest-unparseable", "manifest.json"),
    ),
    ParsedCase(
        "bundle-plugin-yml-nested-990",
        (
            (
                ".plugins/native/alpha/plugin.yml",
                yaml.safe_dump(_BUNDLE_MANIFEST) + f"extra: {_deep('[', ']')}\n",
            ),
        ),
        "check-plugins-native",
        1,
        ("manifest-unparseable", "plugin.yml", "128 levels"),
    ),
    ParsedCase(
        "active-record-integer-5000-digits",
        ((".plugins/active/x.json", f'{{"kind": {BIG_INTEGER}}}'),),
        "check-plugins-native",
        1,
        ("active-record-unparseable", "x.json", "more digits"),
    ),
]


@pytest.mark.parametrize("case", PARSED_CASES, ids=[c.name for c in PARSED_CASES])
def test_huge_numbers_and_deep_nesting_are_coded_errors(
    case: ParsedCase, installed_checkout: Path, tmp_path: Path
) -> None:
    root = tmp_path / "streamkit"
    shutil.copytree(installed_checkout, root, symlinks=True)
    for relative, text in case.files:
        target = root / relative
        if text is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    result = run_cli([case.command, "--root", root], cwd=tmp_path, tmpdir=scratch)

    report = result.describe()
    assert "Traceback" not in result.output, report
    assert result.code == case.code, report
    for phrase in case.says:
        assert phrase in result.output, f"missing {phrase!r}\n{report}"
    assert BIG_INTEGER[:200] not in result.output, "the message repeats the whole number"


# --- unclear errors ------------------------------------------------------------------------------


def test_only_a_plugin_whose_manifest_is_broken_shows_the_manifest_error(
    native_libs: NativeLibraries, tmp_path: Path
) -> None:
    root = tmp_path / "streamkit"
    write_checkout(root, native_libs)
    manifest = root / "plugins" / "native" / "alpha" / "plugin.yml"
    manifest.write_text("id: alpha\nversion: [1.0\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    result = run_cli(
        ["copy-plugins-native", "--root", root, "--only", "alpha"], cwd=tmp_path, tmpdir=scratch
    )

    report = result.describe()
    assert result.code == 2, report
    assert "manifest-invalid-yaml" in result.output, report
    assert "plugins/native/alpha/plugin.yml" in result.output, report
    assert "no plugin source" not in result.output, report


# --- binaries whose tables would cost unbounded work ----------------------------------------------


def test_a_library_with_thousands_of_needed_names_and_runpath_entries_is_one_finding(
    installed_checkout: Path, tmp_path: Path
) -> None:
    root = tmp_path / "streamkit"
    shutil.copytree(installed_checkout, root, symlinks=True)
    library = root / ".plugins" / "native" / "alpha" / "libalpha.so"
    library.write_bytes(
        with_needed_and_runpath(
            library.read_bytes(),
            [f"libneeded{i}.so" for i in range(3000)],
            [f"/nonexistent/{i}" for i in range(3000)],
        )
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    started = time.monotonic()

    result = run_cli(["check-plugins-native", "--root", root], cwd=tmp_path, tmpdir=scratch)

    report = result.describe()
    assert time.monotonic() - started < 30, report
    assert "Traceback" not in result.output, report
    assert result.code == 1, report
    assert "library-corrupt" in result.output, report
    assert "lists 3000 needed libraries" in result.output, report
