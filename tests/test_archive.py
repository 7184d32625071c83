"""Bundle archives: reproducible writing, safe reading, and checksums of the results."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import stat
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest
import zstandard
from fixturelib import VENDORED_DEPENDENCY_NAME, NativeLibraries
from releaselib import file_info, hand_made_tar, tar_stream, zst

from plugin_packaging.errors import PackagingError
from plugin_packaging.release.archive import (
    DEFAULT_SOURCE_DATE_EPOCH,
    ArchiveEntry,
    ArchiveLimits,
    ArchiveMember,
    UnsafeArchiveError,
    check_member_name,
    extract_bundle,
    inspect_bundle,
    source_date_epoch,
    write_bundle,
)
from plugin_packaging.release.checksums import (
    read_sha256sums,
    sha256_file,
    write_sha256sums,
)

MTIME = 1_700_000_000
LIMITS = ArchiveLimits(max_total_bytes=1 << 30, max_members=100)


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def real_library(native_libs: NativeLibraries) -> Path:
    """A real plugin library from the session's compiled fixtures."""
    return native_libs.good_c


def semi_compressible(size: int, seed: int = 1) -> bytes:
    """Bytes that compress like a binary: a random vocabulary, repeated in random order."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(2, 16)) for _ in range(4096)]
    out = bytearray()
    while len(out) < size:
        out += b"".join(rng.choices(words, k=4096))
    return bytes(out[:size])


@pytest.fixture
def plugin_members(native_libs: NativeLibraries) -> list[ArchiveMember]:
    """A bundle as release packaging builds one: an entry library that needs a vendored
    dependency (RUNPATH $ORIGIN), its dependency, the manifests and a license file."""
    entry = native_libs.vendored_dep
    return [
        ArchiveMember("plugin.yml", data=b"id: demo\nversion: 1.0.0\n"),
        ArchiveMember(entry.name, source=entry, executable=True),
        ArchiveMember(
            VENDORED_DEPENDENCY_NAME,
            source=entry.with_name(VENDORED_DEPENDENCY_NAME),
            executable=True,
        ),
        ArchiveMember("manifest.json", data=b'{"id": "demo"}\n'),
        ArchiveMember("LICENSES/MIT.txt", data=b"MIT License\n"),
    ]


def write_archive(tmp_path: Path, tar_bytes: bytes, name: str = "bad.tar.zst") -> Path:
    path = tmp_path / name
    path.write_bytes(zst(tar_bytes) if name.endswith(".zst") else tar_bytes)
    return path


# --------------------------------------------------------------------------------------------
# Writing: reproducibility


def test_bundle_bytes_do_not_depend_on_the_thread_count(tmp_path: Path) -> None:
    # Large enough that libzstd's multi-threaded mode splits it into several jobs.
    big = tmp_path / "libbig.so"
    big.write_bytes(semi_compressible(12 << 20))
    members = [ArchiveMember("libbig.so", source=big, executable=True)]
    digests = {
        threads: write_bundle(
            tmp_path / f"t{threads}.tar.zst", members, mtime=MTIME, threads=threads
        )
        for threads in (0, 1, 2, 4, -1)
    }
    assert len(set(digests.values())) == 1, digests


def test_bundle_bytes_do_not_depend_on_member_order_or_source_file_metadata(
    tmp_path: Path, plugin_members: list[ArchiveMember]
) -> None:
    first = write_bundle(tmp_path / "a.tar.zst", plugin_members, mtime=MTIME)

    # The same content from another directory, other mtimes and permissions, in another order.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = []
    for member in reversed(plugin_members):
        if member.source is not None:
            copy = elsewhere / member.source.name
            shutil.copyfile(member.source, copy)
            os.chmod(copy, 0o600)
            os.utime(copy, (1, 1))
            member = ArchiveMember(member.name, source=copy, executable=member.executable)
        moved.append(member)
    second = write_bundle(tmp_path / "b.tar.zst", moved, mtime=MTIME)

    assert first == second
    assert (tmp_path / "a.tar.zst").read_bytes() == (tmp_path / "b.tar.zst").read_bytes()


def test_digest_is_the_sha256_and_size_of_the_written_file(
    tmp_path: Path, plugin_members: list[ArchiveMember]
) -> None:
    path = tmp_path / "demo-1.0.0-bundle.tar.zst"
    digest = write_bundle(path, plugin_members, mtime=MTIME)
    assert digest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest.size_bytes == path.stat().st_size
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_tar_stream_is_pinned(tmp_path: Path) -> None:
    # Our own header encoding makes the tar stream independent of the Python version; this pins
    # it. If it changes, every published bundle would be rebuilt with a new sha256.
    members = [
        ArchiveMember("plugin.yml", data=b"id: demo\n"),
        ArchiveMember("libdemo.so", data=b"\x7fELF" + bytes(100), executable=True),
        ArchiveMember("LICENSES/" + "x" * 120 + ".txt", data=b"long name\n"),
        ArchiveMember("LICENSES/Lizenz-für-alle.txt", data=b"non-ascii name\n"),
    ]
    path = tmp_path / "pinned.tar.zst"
    write_bundle(path, members, mtime=MTIME)
    stream = tar_stream(path)
    assert len(stream) % 10240 == 0
    assert hashlib.sha256(stream).hexdigest() == (
        "dae556cc10ff30225627f7759212fb3fb285eb7d344bb781ce8761937c88ad99"
    )


def test_headers_carry_only_fixed_metadata(
    tmp_path: Path, plugin_members: list[ArchiveMember]
) -> None:
    path = tmp_path / "bundle.tar.zst"
    write_bundle(path, plugin_members, mtime=MTIME)
    with tarfile.open(fileobj=io.BytesIO(tar_stream(path)), mode="r:") as tar:
        members = tar.getmembers()
        pax_headers = [m.pax_headers for m in members]
    assert [m.name for m in members] == [
        "LICENSES/MIT.txt",
        "libstreamkit_fixture_vendored.so",
        "libvendored_dep.so",
        "manifest.json",
        "plugin.yml",
    ]
    assert all(m.isreg() for m in members), "no directory entries"
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", MTIME)}
    assert {m.name: m.mode for m in members} == {
        "LICENSES/MIT.txt": 0o644,
        "libstreamkit_fixture_vendored.so": 0o755,
        "libvendored_dep.so": 0o755,
        "manifest.json": 0o644,
        "plugin.yml": 0o644,
    }
    assert pax_headers == [{}] * 5, "short ASCII names need no pax header"


def test_long_and_non_ascii_names_use_a_pax_path_record_without_timestamps(tmp_path: Path) -> None:
    long_name = "LICENSES/" + "a" * 150 + ".txt"
    members = [
        ArchiveMember(long_name, data=b"1"),
        ArchiveMember("Lizenz-für-alle.txt", data=b"2"),
    ]
    path = tmp_path / "names.tar.zst"
    write_bundle(path, members, mtime=MTIME)
    stream = tar_stream(path)
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
        assert [(m.name, m.pax_headers) for m in tar.getmembers()] == [
            (long_name, {"path": long_name}),
            ("Lizenz-für-alle.txt", {"path": "Lizenz-für-alle.txt"}),
        ]
    # GNU tar writes atime/ctime records and a PID into pax header names; we must not.
    assert b"atime=" not in stream and b"ctime=" not in stream and b"mtime=" not in stream
    assert stream.count(b"././@PaxHeader") == 2


def test_gnu_tar_unpacks_the_bundle_with_the_same_content_and_modes(
    tmp_path: Path, plugin_members: list[ArchiveMember]
) -> None:
    path = tmp_path / "bundle.tar.zst"
    write_bundle(path, plugin_members, mtime=MTIME)
    listing = subprocess.run(
        ["tar", "--zstd", "-tvf", path, "--numeric-owner", "--full-time"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "0/0" in listing and "2023-11-14 22:13:20" in listing
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", path, "-C", out], check=True)
    for member in plugin_members:
        unpacked = out / member.name
        expected = member.data if member.data is not None else member.source.read_bytes()
        assert unpacked.read_bytes() == expected
        assert bool(unpacked.stat().st_mode & 0o100) == member.executable
        assert int(unpacked.stat().st_mtime) == MTIME


def test_writer_streams_large_files_without_holding_them(tmp_path: Path) -> None:
    big = tmp_path / "libhuge.so"
    with open(big, "wb") as out:
        chunk = semi_compressible(1 << 20)
        for _ in range(48):
            out.write(chunk)
    tracemalloc.start()
    try:
        write_bundle(tmp_path / "huge.tar.zst", [ArchiveMember("libhuge.so", source=big)], mtime=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak Python allocation {peak} bytes for a 48 MiB file"


def test_a_failed_write_leaves_the_previous_archive_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "bundle.tar.zst"
    path.write_bytes(b"previous")
    members = [
        ArchiveMember("a.txt", data=b"a"),
        ArchiveMember("b.so", source=tmp_path / "missing.so"),
    ]
    with pytest.raises(PackagingError) as caught:
        write_bundle(path, members, mtime=MTIME)
    assert caught.value.code == "bundle-source-missing"
    assert caught.value.path == tmp_path / "missing.so"
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.tar.zst"]


@pytest.mark.parametrize(
    "name",
    ["", "/etc/passwd", "../x", "a/../b", "..", "a//b", "./a", "a/", "a\\b", "a\0b", "a\nb", "."],
)
def test_writer_refuses_names_that_are_not_plain_relative_paths(tmp_path: Path, name: str) -> None:
    with pytest.raises(PackagingError) as caught:
        write_bundle(tmp_path / "x.tar.zst", [ArchiveMember(name, data=b"")], mtime=MTIME)
    assert caught.value.code == "bundle-member-name"
    with pytest.raises(PackagingError):
        check_member_name(name)
    assert not (tmp_path / "x.tar.zst").exists()


@pytest.mark.parametrize(
    ("first", "second"),
    [("plugin.yml", "plugin.yml"), ("LICENSE", "license"), ("lib", "lib/libx.so")],
)
def test_writer_refuses_members_that_would_land_on_the_same_file(
    tmp_path: Path, first: str, second: str
) -> None:
    members = [ArchiveMember(first, data=b"1"), ArchiveMember(second, data=b"2")]
    with pytest.raises(PackagingError) as caught:
        write_bundle(tmp_path / "x.tar.zst", members, mtime=MTIME)
    assert caught.value.code == "bundle-member-duplicate"


def test_a_member_needs_exactly_one_source_of_bytes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ArchiveMember("a")
    with pytest.raises(ValueError):
        ArchiveMember("a", source=tmp_path / "a", data=b"a")


def test_writer_refuses_a_directory_as_source(tmp_path: Path) -> None:
    with pytest.raises(PackagingError) as caught:
        write_bundle(tmp_path / "x.tar.zst", [ArchiveMember("d", source=tmp_path)], mtime=MTIME)
    assert caught.value.code == "bundle-source-not-file"


# --------------------------------------------------------------------------------------------
# SOURCE_DATE_EPOCH


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, DEFAULT_SOURCE_DATE_EPOCH),
        ({"SOURCE_DATE_EPOCH": ""}, DEFAULT_SOURCE_DATE_EPOCH),
        ({"SOURCE_DATE_EPOCH": "0"}, 0),
        ({"SOURCE_DATE_EPOCH": "1700000000"}, 1_700_000_000),
        ({"SOURCE_DATE_EPOCH": "1700000000\n"}, 1_700_000_000),
    ],
)
def test_source_date_epoch_reads_the_environment(env: dict[str, str], expected: int) -> None:
    assert source_date_epoch(env) == expected


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "1e9", "0x10", "１２", str(8**11)])
def test_source_date_epoch_rejects_what_is_not_a_plain_integer(value: str) -> None:
    with pytest.raises(PackagingError) as caught:
        source_date_epoch({"SOURCE_DATE_EPOCH": value})
    assert caught.value.code == "source-date-epoch-invalid"
    assert "SOURCE_DATE_EPOCH" in caught.value.message


def test_default_epoch_is_1980() -> None:
    assert DEFAULT_SOURCE_DATE_EPOCH == 315532800


# --------------------------------------------------------------------------------------------
# Reading what we wrote, and what StreamKit's builder writes


def test_inspect_lists_what_write_bundle_wrote(
    tmp_path: Path, plugin_members: list[ArchiveMember]
) -> None:
    path = tmp_path / "bundle.tar.zst"
    write_bundle(path, plugin_members, mtime=MTIME)
    entries = inspect_bundle(path, max_total_bytes=1 << 30, max_members=10)
    expected = []
    for member in sorted(plugin_members, key=lambda m: m.name):
        data = member.data if member.data is not None else member.source.read_bytes()
        expected.append(
            ArchiveEntry(
                member.name, "file", len(data), member.executable, hashlib.sha256(data).hexdigest()
            )
        )
    assert entries == expected


def test_extract_writes_the_files_with_normalised_modes(
    tmp_path: Path, plugin_members: list[ArchiveMember], native_libs: NativeLibraries
) -> None:
    path = tmp_path / "bundle.tar.zst"
    write_bundle(path, plugin_members, mtime=MTIME)
    dest = tmp_path / "out"
    files = extract_bundle(path, dest, LIMITS)
    assert files == [
        dest / "LICENSES" / "MIT.txt",
        dest / "libstreamkit_fixture_vendored.so",
        dest / "libvendored_dep.so",
        dest / "manifest.json",
        dest / "plugin.yml",
    ]
    entry = dest / "libvendored_dep.so"
    assert entry.read_bytes() == native_libs.vendored_dep.read_bytes()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "plugin.yml").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "LICENSES").stat().st_mode) == 0o755
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    # The unpacked bundle still works as one: the entry library finds its vendored dependency.
    ldd = subprocess.run(["ldd", entry], capture_output=True, text=True, check=True).stdout
    assert f"{VENDORED_DEPENDENCY_NAME} => {dest / VENDORED_DEPENDENCY_NAME}" in ldd


@pytest.mark.parametrize("compression", ["zstd", "gzip", None])
def test_reads_bundles_made_the_streamkit_way(
    tmp_path: Path, real_library: Path, compression: str | None
) -> None:
    # StreamKit's builder runs `tar --zstd -C work .`: `./` names, a root entry, directories.
    work = tmp_path / "work"
    (work / "LICENSES").mkdir(parents=True)
    shutil.copy(real_library, work / "libdemo.so")
    (work / "plugin.yml").write_text("id: demo\n")
    (work / "LICENSES" / "MIT.txt").write_text("MIT\n")
    suffix = {"zstd": ".tar.zst", "gzip": ".tar.gz", None: ".tar"}[compression]
    path = tmp_path / f"demo-1.0.0-bundle{suffix}"
    flags = {"zstd": ["--zstd"], "gzip": ["--gzip"], None: []}[compression]
    subprocess.run(["tar", *flags, "-C", work, "-cf", path, "."], check=True)

    entries = inspect_bundle(path, max_total_bytes=1 << 30, max_members=10)
    assert sorted(entries, key=lambda e: e.name) == [
        ArchiveEntry("LICENSES", "directory", 0, False, None),
        ArchiveEntry("LICENSES/MIT.txt", "file", 4, False, sha256_file(work / "LICENSES/MIT.txt")),
        ArchiveEntry("libdemo.so", "file", real_library.stat().st_size, True,
                     sha256_file(real_library)),
        ArchiveEntry("plugin.yml", "file", 9, False, sha256_file(work / "plugin.yml")),
    ]  # fmt: skip
    dest = tmp_path / "out"
    extract_bundle(path, dest, LIMITS)
    assert (dest / "libdemo.so").read_bytes() == real_library.read_bytes()
    assert (dest / "LICENSES" / "MIT.txt").read_text() == "MIT\n"


def test_reader_streams_large_members_without_holding_them(tmp_path: Path) -> None:
    big = tmp_path / "libhuge.so"
    with open(big, "wb") as out:
        chunk = semi_compressible(1 << 20, seed=3)
        for _ in range(48):
            out.write(chunk)
    path = tmp_path / "huge.tar.zst"
    write_bundle(path, [ArchiveMember("libhuge.so", source=big)], mtime=0)
    tracemalloc.start()
    try:
        extract_bundle(path, tmp_path / "out", LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak Python allocation {peak} bytes for a 48 MiB member"
    assert sha256_file(tmp_path / "out" / "libhuge.so") == sha256_file(big)


# --------------------------------------------------------------------------------------------
# Reading: refusals


def refusal(path: Path, limits: ArchiveLimits = LIMITS) -> UnsafeArchiveError:
    """Inspect and extract `path`; both must refuse it with the same error."""
    with pytest.raises(UnsafeArchiveError) as inspected:
        inspect_bundle(path, max_total_bytes=limits.max_total_bytes, max_members=limits.max_members)
    dest = path.parent / "extracted"
    with pytest.raises(UnsafeArchiveError) as extracted:
        extract_bundle(path, dest, limits)
    assert (extracted.value.code, extracted.value.member) == (
        inspected.value.code,
        inspected.value.member,
    )
    assert not dest.exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".partial")]
    assert inspected.value.path == path
    return inspected.value


def ok_member(
    name: str = "plugin.yml", data: bytes = b"id: demo\n"
) -> tuple[tarfile.TarInfo, bytes]:
    return file_info(name, len(data)), data


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("/etc/cron.d/evil", "archive-absolute-path"),
        ("C:/evil.dll", "archive-absolute-path"),
        ("../evil.so", "archive-parent-path"),
        ("./lib/../../evil.so", "archive-parent-path"),
        ("lib\\..\\evil.so", "archive-bad-name"),
        ("evil\x01.so", "archive-bad-name"),
    ],
)
def test_reader_refuses_names_that_leave_the_destination(
    tmp_path: Path, name: str, code: str
) -> None:
    path = write_archive(tmp_path, hand_made_tar(ok_member(), ok_member(name, b"x")))
    error = refusal(path)
    assert error.code == code
    assert error.member == name


@pytest.mark.parametrize(
    ("info", "code"),
    [
        (file_info("libx.so", 0, type=tarfile.SYMTYPE, linkname="/lib/libc.so.6"), "archive-link"),
        (file_info("libx.so", 0, type=tarfile.LNKTYPE, linkname="plugin.yml"), "archive-link"),
        (file_info("dev", 0, type=tarfile.CHRTYPE, devmajor=1, devminor=3), "archive-special-file"),
        (file_info("blk", 0, type=tarfile.BLKTYPE, devmajor=8, devminor=0), "archive-special-file"),
        (file_info("fifo", 0, type=tarfile.FIFOTYPE), "archive-special-file"),
        (file_info("vol", 0, type=b"V"), "archive-unsupported-member"),
    ],
)
def test_reader_refuses_links_and_special_files(
    tmp_path: Path, info: tarfile.TarInfo, code: str
) -> None:
    path = write_archive(tmp_path, hand_made_tar(ok_member(), (info, None)))
    error = refusal(path)
    assert (error.code, error.member) == (code, info.name)


@pytest.mark.parametrize(
    ("first", "second", "code"),
    [
        ("plugin.yml", "plugin.yml", "archive-duplicate-member"),
        ("plugin.yml", "./plugin.yml", "archive-duplicate-member"),
        ("lib/libx.so", "lib//libx.so", "archive-duplicate-member"),
        ("LICENSE", "license", "archive-name-collision"),
        ("Lizenz-fu\u0308r.txt", "Lizenz-f\u00fcr.txt", "archive-name-collision"),
        ("lib", "lib/libx.so", "archive-name-collision"),
        ("lib/libx.so", "lib", "archive-name-collision"),
    ],
)
def test_reader_refuses_members_that_land_on_the_same_path(
    tmp_path: Path, first: str, second: str, code: str
) -> None:
    path = write_archive(tmp_path, hand_made_tar(ok_member(first), ok_member(second, b"other")))
    error = refusal(path)
    assert (error.code, error.member) == (code, second)


def test_a_directory_entry_may_not_reuse_a_file_name(tmp_path: Path) -> None:
    directory = file_info("plugin.yml", 0, type=tarfile.DIRTYPE, mode=0o755)
    path = write_archive(tmp_path, hand_made_tar(ok_member(), (directory, None)))
    assert refusal(path).code == "archive-duplicate-member"


def test_reader_refuses_too_many_members(tmp_path: Path) -> None:
    members = [ok_member(f"f{i}.txt", b"x") for i in range(6)]
    path = write_archive(tmp_path, hand_made_tar(*members))
    error = refusal(path, ArchiveLimits(max_total_bytes=1 << 20, max_members=5))
    assert (error.code, error.member) == ("archive-too-many-members", "f5.txt")
    assert len(inspect_bundle(path, max_total_bytes=1 << 20, max_members=6)) == 6


def test_reader_refuses_more_unpacked_bytes_than_allowed(tmp_path: Path) -> None:
    path = write_archive(
        tmp_path, hand_made_tar(ok_member("a.bin", bytes(600)), ok_member("b.bin", bytes(600)))
    )
    error = refusal(path, ArchiveLimits(max_total_bytes=1000, max_members=10))
    assert (error.code, error.member) == ("archive-too-large", "b.bin")


def test_a_zero_filled_bomb_is_stopped_by_the_byte_limit(tmp_path: Path) -> None:
    # 64 MiB of zeros compress to a few KiB; the header tells the truth here, so the size check
    # fires before a byte is unpacked.
    size = 64 << 20
    compressor = zstandard.ZstdCompressor(level=19)
    path = tmp_path / "bomb.tar.zst"
    with open(path, "wb") as raw, compressor.stream_writer(raw) as out:
        out.write(file_info("zeros.bin", size).tobuf(format=tarfile.PAX_FORMAT))
        for _ in range(64):
            out.write(bytes(1 << 20))
        out.write(bytes(1024))
    assert path.stat().st_size < 64 * 1024
    error = refusal(path, ArchiveLimits(max_total_bytes=32 << 20, max_members=10))
    assert error.code == "archive-too-large"


def test_a_member_shorter_than_its_header_is_corrupt(tmp_path: Path) -> None:
    # The header promises 4096 bytes; the stream ends after 100 (and no end marker follows).
    tar = file_info("libx.so", 4096).tobuf(format=tarfile.PAX_FORMAT) + b"\x7fELF" * 25
    path = write_archive(tmp_path, tar)
    assert refusal(path).code == "archive-corrupt"


def test_an_oversized_pax_header_is_refused_before_it_is_buffered(tmp_path: Path) -> None:
    info = file_info("plugin.yml", 3)
    info.pax_headers = {"comment": "x" * (2 << 20)}
    path = write_archive(tmp_path, hand_made_tar((info, b"id\n")))
    assert refusal(path).code == "archive-too-large"


def test_a_truncated_zstd_frame_is_refused(
    tmp_path: Path, plugin_members: list[ArchiveMember]
) -> None:
    good = tmp_path / "good.tar.zst"
    write_bundle(good, plugin_members, mtime=MTIME)
    data = good.read_bytes()
    # Cut only the frame's 4-byte checksum: every tar byte is still there.
    for cut, name in ((len(data) - 4, "nochecksum.tar.zst"), (len(data) // 2, "half.tar.zst")):
        path = tmp_path / name
        path.write_bytes(data[:cut])
        error = refusal(path)
        assert error.code == "archive-corrupt", name


def test_a_flipped_byte_in_the_zstd_stream_is_refused(
    tmp_path: Path, plugin_members: list[ArchiveMember]
) -> None:
    good = tmp_path / "good.tar.zst"
    write_bundle(good, plugin_members, mtime=MTIME)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x55
    path = tmp_path / "flipped.tar.zst"
    path.write_bytes(bytes(data))
    assert refusal(path).code == "archive-corrupt"


def test_a_truncated_gzip_stream_is_refused(tmp_path: Path, real_library: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(real_library, work / "libdemo.so")
    good = tmp_path / "good.tar.gz"
    subprocess.run(["tar", "--gzip", "-C", work, "-cf", good, "."], check=True)
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(good.read_bytes()[:-6])
    assert refusal(path).code == "archive-corrupt"


def test_a_tar_missing_its_end_marker_is_refused(tmp_path: Path) -> None:
    # Truncated exactly at a member boundary: tarfile alone would call this a complete archive.
    path = write_archive(tmp_path, hand_made_tar(ok_member(), end=False), name="cut.tar")
    assert refusal(path).code == "archive-corrupt"


def test_a_damaged_header_in_the_middle_is_refused(tmp_path: Path) -> None:
    tar = bytearray(hand_made_tar(ok_member("a.txt"), ok_member("b.txt")))
    tar[1024 + 148] ^= 0x01  # the second header's checksum field
    path = write_archive(tmp_path, bytes(tar))
    assert refusal(path).code == "archive-corrupt"


def test_data_hidden_after_the_end_marker_is_refused(tmp_path: Path) -> None:
    hidden = hand_made_tar(ok_member("evil.so", b"payload"))
    path = write_archive(tmp_path, hand_made_tar(ok_member()) + hidden)
    assert refusal(path).code == "archive-trailing-data"


def test_the_decompressor_is_chosen_by_file_name(tmp_path: Path) -> None:
    tar = hand_made_tar(ok_member())
    assert inspect_bundle(write_archive(tmp_path, tar, "x.tar"), max_total_bytes=99, max_members=9)
    # zstd bytes under a .gz name are not sniffed and accepted: they are refused.
    wrong = tmp_path / "x.tar.gz"
    wrong.write_bytes(zst(tar))
    assert refusal(wrong).code == "archive-corrupt"
    unknown = tmp_path / "x.zip"
    unknown.write_bytes(tar)
    assert refusal(unknown).code == "archive-unknown-format"


def test_extract_refuses_a_destination_that_is_not_empty(tmp_path: Path) -> None:
    path = write_archive(tmp_path, hand_made_tar(ok_member()))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(PackagingError) as caught:
        extract_bundle(path, dest, LIMITS)
    assert caught.value.code == "extract-destination-not-empty"
    assert (dest / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert extract_bundle(path, empty, LIMITS) == [empty / "plugin.yml"]


def test_missing_archive_is_a_plain_error(tmp_path: Path) -> None:
    with pytest.raises(PackagingError) as caught:
        inspect_bundle(tmp_path / "nope.tar.zst", max_total_bytes=1, max_members=1)
    assert caught.value.code == "archive-missing"
    assert not isinstance(caught.value, UnsafeArchiveError)


def test_unsafe_archive_errors_render_with_member_and_archive(tmp_path: Path) -> None:
    path = write_archive(tmp_path, hand_made_tar(ok_member("../x", b"x")))
    text = refusal(path).render()
    assert text.startswith(f"error[archive-parent-path]: {path}: member '../x': ")


# --------------------------------------------------------------------------------------------
# Checksums


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    data = semi_compressible(3 << 20)
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_sha256sums_is_accepted_by_sha256sum_check(tmp_path: Path) -> None:
    (tmp_path / "cuda").mkdir()
    files = [
        tmp_path / "whisper-0.3.0-bundle.tar.zst",
        tmp_path / "cuda" / "whisper-0.3.0-cuda-bundle.tar.zst",
        tmp_path / "asr-1.0.0-bundle.tar.zst",
    ]
    for index, file in enumerate(files):
        file.write_bytes(semi_compressible(1000 + index, seed=index))
    relative = Path("cuda/whisper-0.3.0-cuda-bundle.tar.zst")
    listing = write_sha256sums(tmp_path, [files[0], relative, files[2]])
    assert listing == tmp_path / "SHA256SUMS"
    lines = listing.read_bytes().split(b"\n")
    assert lines[-1] == b"" and b"\r" not in listing.read_bytes()
    assert [line.split(b"  ", 1)[1] for line in lines[:-1]] == [
        b"asr-1.0.0-bundle.tar.zst",
        b"cuda/whisper-0.3.0-cuda-bundle.tar.zst",
        b"whisper-0.3.0-bundle.tar.zst",
    ]
    check = subprocess.run(
        ["sha256sum", "--check", "--strict", "SHA256SUMS"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert read_sha256sums(listing) == {
        name: sha256_file(tmp_path / name)
        for name in (
            "asr-1.0.0-bundle.tar.zst",
            "cuda/whisper-0.3.0-cuda-bundle.tar.zst",
            "whisper-0.3.0-bundle.tar.zst",
        )
    }

    files[2].write_bytes(b"tampered")
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True)
    assert check.returncode != 0


def test_sha256sums_refuses_files_outside_the_directory(tmp_path: Path) -> None:
    inside = tmp_path / "dist"
    inside.mkdir()
    outside = tmp_path / "elsewhere.tar.zst"
    outside.write_bytes(b"x")
    with pytest.raises(PackagingError) as caught:
        write_sha256sums(inside, [outside])
    assert caught.value.code == "checksum-outside-directory"


def test_read_sha256sums_rejects_lines_sha256sum_would_not_read(tmp_path: Path) -> None:
    listing = tmp_path / "SHA256SUMS"
    listing.write_text(f"{'a' * 64} one-space-only\n")
    with pytest.raises(PackagingError) as caught:
        read_sha256sums(listing)
    assert caught.value.code == "checksum-list-invalid"
