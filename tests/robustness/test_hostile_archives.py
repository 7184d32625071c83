"""verify-plugin-bundles against hostile archives, end to end, as a confined subprocess.

Each case is one `.tar.zst` (or a file posing as one) in an otherwise empty `dist/bundles/`. The
command must refuse it (exit 1) with the rule code and the archive's name, print no traceback,
stay within its time and memory limits, write nothing in the checkout or beside it (a traversal
target outside must not appear), and leave its TMPDIR empty (its extraction directory is removed).
The archive module's functions are tested on their own in tests/test_archive.py; this is the task.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
import zstandard
from confined import changed, run_cli, snapshot
from fixturelib import NativeLibraries

ARCHIVE = "alpha-1.0.0-bundle.tar.zst"
MANIFEST = {
    "id": "alpha",
    "name": "Alpha",
    "version": "1.0.0",
    "node_kind": "alpha_kind",
    "kind": "native",
    "entrypoint": "libalpha.so",
}

Member = tuple[tarfile.TarInfo, bytes | None]


def regular(name: str, data: bytes, mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def special(name: str, kind: bytes, **fields: object) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info, None


def tar_bytes(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def zst(raw: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(raw)


def valid_members(libs: NativeLibraries) -> list[Member]:
    return [
        regular("plugin.yml", yaml.safe_dump(MANIFEST).encode()),
        regular(
            "manifest.json",
            json.dumps({"schema_version": 1, **MANIFEST, "models": []}, indent=2).encode(),
        ),
        regular("libalpha.so", libs.good_c.read_bytes(), 0o755),
    ]


def _zero_bomb(size: int) -> bytes:
    """A tar of one `size`-byte member of zeros, compressed as a stream (never held whole)."""
    out = io.BytesIO()
    info = tarfile.TarInfo("libalpha.so")
    info.size = size
    with zstandard.ZstdCompressor(level=1).stream_writer(out, closefd=False) as writer:
        writer.write(info.tobuf(tarfile.PAX_FORMAT))
        chunk = bytes(1 << 20)
        for _ in range(size // len(chunk)):
            writer.write(chunk)
        writer.write(bytes(1024))  # end-of-archive blocks
    return out.getvalue()


def _lying_header(libs: NativeLibraries) -> bytes:
    """A member whose header claims 8 GiB, followed by nothing: the frame ends first."""
    info = tarfile.TarInfo("libalpha.so")
    info.size = 8 << 30
    return zst(info.tobuf(tarfile.PAX_FORMAT) + libs.good_c.read_bytes()[:4096])


@dataclass(frozen=True)
class ArchiveCase:
    name: str
    what: str
    content: Callable[[NativeLibraries], bytes]
    says: tuple[str, ...]
    settings: str = ""
    xfail: str | None = None


CASES = [
    ArchiveCase(
        "unpacked-size-bomb",
        "one member of 64 MiB of zeros (a few KiB compressed), cap 8 MiB",
        lambda libs: _zero_bomb(64 << 20),
        ("bundle-too-large", "8388608 bytes"),
        settings="plugins:\n  bundle_max_unpacked_bytes: 8388608\n",
    ),
    ArchiveCase(
        "lying-size-header",
        "a member header claiming 8 GiB, and a stream that ends",
        _lying_header,
        ("bundle-too-large", "libalpha.so"),
    ),
    ArchiveCase(
        "many-members",
        "2 000 empty members, cap 100",
        lambda libs: zst(
            tar_bytes([regular(f"junk/{i}", b"") for i in range(2000)] + valid_members(libs))
        ),
        ("bundle-too-large", "more than 100 members"),
        settings="plugins:\n  bundle_max_members: 100\n",
    ),
    ArchiveCase(
        "path-traversal",
        "a member named ../../outside/pwned.so",
        lambda libs: zst(
            tar_bytes([*valid_members(libs), regular("../../outside/pwned.so", b"x")])
        ),
        ("bundle-unsafe-member", "../../outside/pwned.so"),
    ),
    ArchiveCase(
        "absolute-name",
        "a member named /tmp/pwned.so",
        lambda libs: zst(tar_bytes([*valid_members(libs), regular("/tmp/pwned.so", b"x")])),
        ("bundle-unsafe-member", "/tmp/pwned.so"),
    ),
    ArchiveCase(
        "traversal-in-pax-path",
        "a member whose PAX `path` record climbs out",
        lambda libs: zst(
            tar_bytes([*valid_members(libs), _pax_renamed("ok.txt", "a/../../pwned.so")])
        ),
        ("bundle-unsafe-member", "pwned.so"),
    ),
    ArchiveCase(
        "symlink",
        "the entry library is a symlink to /etc/passwd",
        lambda libs: zst(
            tar_bytes(
                [
                    *valid_members(libs)[:2],
                    special("libalpha.so", tarfile.SYMTYPE, linkname="/etc/passwd"),
                ]
            )
        ),
        ("bundle-unsafe-member", "libalpha.so", "symbolic link"),
    ),
    ArchiveCase(
        "hardlink",
        "a hard link to a file outside the archive",
        lambda libs: zst(
            tar_bytes(
                [
                    *valid_members(libs),
                    special("libextra.so", tarfile.LNKTYPE, linkname="../../etc/passwd"),
                ]
            )
        ),
        ("bundle-unsafe-member", "libextra.so", "hard link"),
    ),
    ArchiveCase(
        "device",
        "a character device member (/dev/null's numbers)",
        lambda libs: zst(
            tar_bytes(
                [*valid_members(libs), special("null", tarfile.CHRTYPE, devmajor=1, devminor=3)]
            )
        ),
        ("bundle-unsafe-member", "null"),
    ),
    ArchiveCase(
        "fifo",
        "a FIFO member",
        lambda libs: zst(tar_bytes([*valid_members(libs), special("pipe", tarfile.FIFOTYPE)])),
        ("bundle-unsafe-member", "pipe"),
    ),
    ArchiveCase(
        "duplicate-members",
        "plugin.yml twice, with different contents",
        lambda libs: zst(
            tar_bytes([*valid_members(libs), regular("plugin.yml", b"id: impostor\n")])
        ),
        ("bundle-unsafe-member", "plugin.yml", "appears twice"),
    ),
    ArchiveCase(
        "case-duplicate-members",
        "libalpha.so and LIBALPHA.SO (one file on a case-insensitive disk)",
        lambda libs: zst(tar_bytes([*valid_members(libs), regular("LIBALPHA.SO", b"x")])),
        ("bundle-unsafe-member", "LIBALPHA.SO", "case-insensitive"),
    ),
    ArchiveCase(
        "truncated-zstd",
        "a valid bundle cut in the middle of its zstd frame",
        lambda libs: _first_half(zst(tar_bytes(valid_members(libs)))),
        ("bundle-corrupt", "cut short"),
    ),
    ArchiveCase(
        "not-zstd",
        "random bytes named .tar.zst",
        lambda libs: b"\x89PNG\r\n" + os.urandom(4096),
        ("bundle-corrupt",),
    ),
    ArchiveCase(
        "gzip-named-zst",
        "a gzip-compressed tar named .tar.zst",
        lambda libs: gzip.compress(tar_bytes(valid_members(libs))),
        ("bundle-corrupt",),
    ),
    ArchiveCase("empty-file", "an empty .tar.zst", lambda libs: b"", ("bundle-corrupt", "empty")),
    ArchiveCase(
        "zstd-of-junk",
        "a good zstd frame holding no tar",
        lambda libs: zst(os.urandom(8192)),
        ("bundle-corrupt",),
    ),
    ArchiveCase(
        "newline-member-name",
        "a member whose name holds a newline",
        lambda libs: zst(tar_bytes([*valid_members(libs), regular("evil\nname.txt", b"x")])),
        ("bundle-unsafe-member", "evil\\nname.txt"),
    ),
]


def _first_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _pax_renamed(name: str, pax_path: str) -> Member:
    info, data = regular(name, b"x")
    info.pax_headers = {"path": pax_path}
    return info, data


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        )
        for c in CASES
    ],
)
def test_verify_refuses_a_hostile_archive_clearly_and_writes_nothing(
    case: ArchiveCase, native_libs: NativeLibraries, tmp_path: Path, tasks_available: frozenset[str]
) -> None:
    assert "verify-plugin-bundles" in tasks_available
    root = tmp_path / "streamkit"
    bundles = root / "dist" / "bundles"
    bundles.mkdir(parents=True)
    (bundles / ARCHIVE).write_bytes(case.content(native_libs))
    if case.settings:
        (root / "invoke.yaml").write_text(case.settings)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("untouched\n")
    cwd, scratch = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    before = snapshot(tmp_path)

    result = run_cli(["verify-plugin-bundles", "--root", root], cwd=cwd, tmpdir=scratch)

    report = result.describe()
    assert "Traceback" not in result.output, report
    assert result.code == 1, report
    assert ARCHIVE in result.output, report
    for phrase in case.says:
        assert phrase in result.output, f"missing {phrase!r}\n{report}"
    assert changed(before, snapshot(tmp_path)) == [], report
    assert os.listdir(scratch) == [], f"extraction left {os.listdir(scratch)} in TMPDIR"
    assert not any(p.name == "pwned.so" for p in tmp_path.rglob("*")), report


def test_a_valid_bundle_passes_the_same_harness(
    native_libs: NativeLibraries, tmp_path: Path
) -> None:
    """The control: the harness's own valid archive verifies, so the refusals above are earned."""
    root = tmp_path / "streamkit"
    bundles = root / "dist" / "bundles"
    bundles.mkdir(parents=True)
    (bundles / ARCHIVE).write_bytes(zst(tar_bytes(valid_members(native_libs))))
    (tmp_path / "tmp").mkdir()
    result = run_cli(
        ["verify-plugin-bundles", "--root", root], cwd=tmp_path, tmpdir=tmp_path / "tmp"
    )
    assert result.code == 0 and "verification passed" in result.output, result.describe()
