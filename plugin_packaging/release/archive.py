"""Bundle archives: write reproducible `.tar.zst` files, and read untrusted ones safely.

Writing. `write_bundle` turns a list of `ArchiveMember`s into a tar stream compressed with zstd,
byte for byte the same for the same inputs, wherever and however often it runs:

- members sorted by name, written without a `./` prefix (StreamKit's builder writes `./name`, its
  installer accepts both; plain names are what a manifest's `entrypoint` says, so the verifier can
  compare the two without normalising, and there is no `./` root entry to explain);
- regular files only, no directory entries: every extractor we care about creates missing
  parents (GNU tar, bsdtar, Python's tarfile, and the server's installer, which creates each
  file's parent directory before unpacking it), and a directory entry would only add a mode
  that the extractor's umask overrides anyway;
- fixed mtime (`SOURCE_DATE_EPOCH`), uid/gid 0, empty user and group names, mode 0o755 for
  executables and 0o644 otherwise;
- POSIX ustar headers that this module encodes itself, with a pax `path` record only for a name
  that ustar cannot hold. We do not let `tarfile` write them because its header bytes have changed
  between Python patch releases (device number fields), which would give a different sha256 on a
  developer's 3.10 than on CI's 3.12;
- zstd frames carry no timestamp or host data; we always compress with at least one worker
  thread, because libzstd's output with one or more workers is identical for any worker count but
  differs from its single-threaded mode. So `threads` changes speed, never bytes.

Reading. `inspect_bundle` and `extract_bundle` read an archive made by anyone, as the server's
installer would, and refuse what it would refuse and more (see `UnsafeArchiveError`). They stream
through `tarfile` in `r|` mode over a decompressor picked by file name, count what they unpack as
it arrives, and never let `tarfile` write to disk.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, Literal, NoReturn, Protocol, cast

from plugin_packaging._fs.files import ARCHIVE, InputTooLarge, input_problem, open_input
from plugin_packaging.errors import PackagingError

if TYPE_CHECKING:
    import tarfile

# Used when SOURCE_DATE_EPOCH is unset: 1980-01-01T00:00:00Z, the earliest time a zip entry can
# carry, which keeps the same date valid if a bundle is ever repacked as zip, and which extractors
# show as a plausible date rather than the "no date" that 0 often means.
DEFAULT_SOURCE_DATE_EPOCH = 315532800

# The largest value an 11-digit octal ustar field can hold; mtimes and sizes beyond it need
# extensions that we have no reason to emit (8 GiB per file, or a date after the year 2242).
_USTAR_MAX = 8**11 - 1

_BLOCK = 512
_RECORD = 20 * _BLOCK  # tar's default blocking factor; GNU tar and tarfile pad to it too
_COPY_CHUNK = 1 << 20

_MODE_EXECUTABLE = 0o755
_MODE_REGULAR = 0o644


@dataclass(frozen=True)
class ArchiveMember:
    """One file to put into a bundle: its name inside the archive and where its bytes come from.

    `source` is read when the archive is written (a symlink is followed: the archive stores the
    content); `data` is for small generated files such as `plugin.yml` and `manifest.json`.
    """

    name: str
    source: Path | None = None
    data: bytes | None = None
    executable: bool = False

    def __post_init__(self) -> None:
        if (self.source is None) == (self.data is None):
            raise ValueError(f"ArchiveMember {self.name!r}: give exactly one of source and data")


@dataclass(frozen=True)
class ArchiveDigest:
    """What a release manifest says about an archive: the sha256 of the whole file and its size."""

    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class ArchiveLimits:
    """How much an untrusted archive may unpack to before we stop reading it."""

    max_total_bytes: int = 4 << 30
    max_members: int = 10_000


@dataclass(frozen=True)
class ArchiveEntry:
    """One member of an archive as read: normalised name (no `./`), kind, size and content hash."""

    name: str
    kind: Literal["file", "directory"]
    size: int
    executable: bool
    sha256: str | None  # None for directories


class UnsafeArchiveError(PackagingError):
    """An archive we refuse to unpack, with the member that made us stop.

    A subclass of `PackagingError`, so the task layer renders it like any other user-facing error,
    while the bundle verifier can catch it on its own and report it as a finding about one bundle.
    """

    def __init__(
        self,
        code: str,
        member: str | None,
        message: str,
        path: Path | str | None = None,
        hint: str | None = None,
    ) -> None:
        if member is not None:
            message = f"member {member!r}: {message}"
        super().__init__(code, message, path, hint)
        self.member = member


# --------------------------------------------------------------------------------------------
# Names


def check_member_name(name: str) -> None:
    """Raise a PackagingError unless `name` is a name we write into an archive.

    A plain relative posix path: no leading `/`, no empty, `.` or `..` component, no backslash,
    no control character, valid UTF-8. Callers that take a destination from a user's manifest
    (`extra_files: {dest: ...}`) can call this early to name the manifest in the error.
    """
    problem = _strict_name_problem(name)
    if problem is not None:
        raise PackagingError(
            "bundle-member-name",
            f"cannot put {name!r} into a bundle: {problem}",
            hint="use a relative path with `/` separators, such as `LICENSES/MIT.txt`",
        )


def _strict_name_problem(name: str) -> str | None:
    if not name:
        return "the name is empty"
    if _has_bad_characters(name):
        return "it contains a backslash, a control character or invalid UTF-8"
    if name.startswith("/"):
        return "it is an absolute path"
    parts = name.split("/")
    if any(part in ("", ".") for part in parts):
        return "it has an empty or `.` component"
    if ".." in parts:
        return "it has a `..` component"
    if any(len(part.encode("utf-8")) > 255 for part in parts):
        return "a component is longer than 255 bytes"
    return None


def _has_bad_characters(name: str) -> bool:
    if "\\" in name or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # tarfile decodes undecodable bytes as lone surrogates
        return True
    return False


def _collision_key(name: str) -> str:
    # Two names that a case-insensitive or normalising file system (macOS, Windows) would store
    # as one file: a bundle is built once and installed everywhere, so we treat them as one.
    return unicodedata.normalize("NFC", name).casefold()


# --------------------------------------------------------------------------------------------
# Writing


def source_date_epoch(env: Mapping[str, str]) -> int:
    """The archive mtime: `SOURCE_DATE_EPOCH` from `env`, or `DEFAULT_SOURCE_DATE_EPOCH`.

    An empty value counts as unset (CI systems often define a variable and leave it empty). Any
    other value must be a plain non-negative decimal integer, as reproducible-builds.org asks.
    """
    raw = env.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return DEFAULT_SOURCE_DATE_EPOCH
    if not (raw.isascii() and raw.isdigit()):
        raise PackagingError(
            "source-date-epoch-invalid",
            f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds since 1970",
            hint="set it to e.g. `$(git log -1 --format=%ct)`, or unset it",
        )
    # Compared by length first: int() refuses more than 4300 digits with a ValueError.
    digits = raw.lstrip("0") or "0"
    if len(digits) > len(str(_USTAR_MAX)) or int(digits) > _USTAR_MAX:
        raise PackagingError(
            "source-date-epoch-invalid",
            f"SOURCE_DATE_EPOCH={raw[:40]}{'...' if len(raw) > 40 else ''} is past what a tar "
            f"header can hold ({_USTAR_MAX})",
            hint="set it to e.g. `$(git log -1 --format=%ct)`, or unset it",
        )
    return int(digits)


def write_bundle(
    path: Path,
    members: Sequence[ArchiveMember],
    *,
    mtime: int,
    level: int = 3,
    threads: int = 0,
) -> ArchiveDigest:
    """Write `members` to `path` as a reproducible `.tar.zst` and return its sha256 and size.

    `threads` is the number of zstd worker threads (0 means one; -1 one per CPU): it changes only
    the speed. The file appears at `path` complete or not at all (temporary file and rename).
    """
    if not 0 <= mtime <= _USTAR_MAX:
        raise PackagingError(
            "bundle-mtime-invalid", f"mtime {mtime} does not fit a tar header", path=path
        )
    ordered = _checked_members(path, members)

    import zstandard

    compressor = zstandard.ZstdCompressor(
        level=level,
        threads=-1 if threads < 0 else max(1, threads),
        write_checksum=True,  # lets a reader tell a corrupt bundle from a valid one
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise PackagingError(
            "bundle-write-failed", f"cannot create the archive: {exc.strerror or exc}", path=path
        ) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            # zstandard's stubs ask for a whole binary file; its writer calls write and flush only.
            sink = _DigestingWriter(raw)
            with compressor.stream_writer(cast(BinaryIO, sink), closefd=False) as compressed:
                tar = _CountingWriter(compressed)
                for member in ordered:
                    _write_member(tar, member, mtime)
                # End of archive: two zero blocks, then padding to a whole record as tar does.
                tar.write(bytes(2 * _BLOCK))
                tar.write(bytes(-tar.count % _RECORD))
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a release file is meant to be read by all
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PackagingError(
            "bundle-write-failed", f"cannot write the archive: {exc.strerror or exc}", path=path
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ArchiveDigest(sha256=sink.sha256.hexdigest(), size_bytes=sink.size)


def _checked_members(path: Path, members: Sequence[ArchiveMember]) -> list[ArchiveMember]:
    seen: dict[str, str] = {}
    for member in members:
        problem = _strict_name_problem(member.name)
        if problem is not None:
            raise PackagingError(
                "bundle-member-name",
                f"cannot put {member.name!r} into a bundle: {problem}",
                path=path,
                hint="use a relative path with `/` separators, such as `LICENSES/MIT.txt`",
            )
        key = _collision_key(member.name)
        if key in seen:
            raise PackagingError(
                "bundle-member-duplicate",
                f"two members would be the same file once unpacked: {seen[key]!r} and "
                f"{member.name!r}",
                path=path,
                hint="give each bundled file its own name (names are compared ignoring case)",
            )
        seen[key] = member.name
    ordered = sorted(members, key=lambda m: m.name.encode("utf-8"))
    # A name that is also the parent directory of another name cannot be unpacked.
    keys = {_collision_key(m.name) for m in ordered}
    for member in ordered:
        parts = _collision_key(member.name).split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in keys:
                raise PackagingError(
                    "bundle-member-duplicate",
                    f"{member.name!r} would be unpacked inside the file "
                    f"{'/'.join(member.name.split('/')[:depth])!r}",
                    path=path,
                    hint="a bundled file cannot also be a directory",
                )
    return ordered


def _write_member(out: _CountingWriter, member: ArchiveMember, mtime: int) -> None:
    mode = _MODE_EXECUTABLE if member.executable else _MODE_REGULAR
    if member.data is not None:
        out.write(_member_header(member.name, len(member.data), mode, mtime))
        out.write(member.data)
        out.write(bytes(_padding_to_block(len(member.data))))
        return
    assert member.source is not None
    try:
        # Check the type before opening: opening a FIFO would block until someone writes to it.
        if not stat.S_ISREG(os.stat(member.source).st_mode):
            raise PackagingError(
                "bundle-source-not-file",
                f"cannot bundle {member.name!r}: not a regular file",
                path=member.source,
            )
        source = open(member.source, "rb")  # noqa: SIM115  (closed by the caller's `with`)
    except FileNotFoundError:
        raise PackagingError(
            "bundle-source-missing",
            f"cannot bundle {member.name!r}: the file does not exist",
            path=member.source,
        ) from None
    except OSError as exc:
        raise PackagingError(
            "bundle-source-unreadable",
            f"cannot bundle {member.name!r}: {exc.strerror}",
            path=member.source,
        ) from None
    with source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PackagingError(
                "bundle-source-not-file",
                f"cannot bundle {member.name!r}: not a regular file",
                path=member.source,
            )
        size = info.st_size
        if size > _USTAR_MAX:
            raise PackagingError(
                "bundle-member-too-large",
                f"cannot bundle {member.name!r}: {size} bytes is more than a tar header holds",
                path=member.source,
            )
        out.write(_member_header(member.name, size, mode, mtime))
        remaining = size
        while remaining:
            chunk = source.read(min(_COPY_CHUNK, remaining))
            if not chunk:
                raise PackagingError(
                    "bundle-source-changed",
                    f"cannot bundle {member.name!r}: the file shrank while it was being read",
                    path=member.source,
                    hint="do not rebuild plugins while packaging them",
                )
            out.write(chunk)
            remaining -= len(chunk)
        # The header promised `size` bytes; later growth of the file is not ours to copy.
        out.write(bytes(_padding_to_block(size)))


def _member_header(name: str, size: int, mode: int, mtime: int) -> bytes:
    encoded = name.encode("utf-8")
    if len(encoded) <= 100 and encoded.isascii():
        return _ustar_block(encoded, size, mode, mtime, b"0")
    # ustar cannot hold this name: a pax extended header carries it, and the ustar name field gets
    # an ASCII stand-in that only readers without pax support would ever show.
    records = _pax_record("path", encoded)
    pax = _ustar_block(b"././@PaxHeader", len(records), _MODE_REGULAR, mtime, b"x")
    pax += records + bytes(_padding_to_block(len(records)))
    stand_in = name.encode("ascii", "replace")[-100:]
    return pax + _ustar_block(stand_in, size, mode, mtime, b"0")


def _pax_record(keyword: str, value: bytes) -> bytes:
    # "<length> <keyword>=<value>\n", where <length> counts the whole record including itself.
    body = b" " + keyword.encode("ascii") + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode("ascii") + body


def _ustar_block(name: bytes, size: int, mode: int, mtime: int, typeflag: bytes) -> bytes:
    header = bytearray(_BLOCK)
    header[0 : len(name)] = name
    header[100:108] = b"%07o\0" % mode
    header[108:116] = b"%07o\0" % 0  # uid
    header[116:124] = b"%07o\0" % 0  # gid
    header[124:136] = b"%011o\0" % size
    header[136:148] = b"%011o\0" % mtime
    header[148:156] = b" " * 8  # the checksum is computed with its own field as spaces
    header[156:157] = typeflag
    header[257:263] = b"ustar\0"
    header[263:265] = b"00"
    # linkname, uname, gname, devmajor, devminor and prefix stay NUL-filled.
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _padding_to_block(size: int) -> int:
    return -size % _BLOCK


class _DigestingWriter:
    """The file under the compressor: hashes and counts the compressed bytes on their way out."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


class _CountingWriter:
    """The tar stream on its way into the compressor, counted so the end can be padded."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        self._out.write(data)
        return len(data)


# --------------------------------------------------------------------------------------------
# Reading


# Compressed bytes handed to the zstd decompressor per step. zstd can expand 4 bytes (an RLE
# block) into 128 KiB, so this bounds what one step can produce to about 32 MiB. On a 150 MiB
# library, 4 KiB steps were only about 10% faster.
_ZSTD_STEP = 1024
# What tarfile asks of the stream per read in `r|` mode; it may read this much past a header.
_TAR_BUFSIZE = 64 * 1024
# Tar stream bytes allowed per member beyond its data: its header, pax or GNU long-name headers
# (a legitimate one is well under 1 KiB), block padding and tarfile's read-ahead.
_HEADER_ALLOWANCE = 256 * 1024
# Zero bytes allowed after the end-of-archive marker (GNU tar pads to 10 KiB records).
_MAX_TRAILING = 1 << 20
_READ_CHUNK = 1 << 20

_FileSink = Callable[[str, Iterator[bytes]], str]


def inspect_bundle(path: Path, *, max_total_bytes: int, max_members: int) -> list[ArchiveEntry]:
    """Read every member of the archive at `path`, write nothing, and list what it holds.

    Refuses (`UnsafeArchiveError`) exactly what `extract_bundle` refuses, so a clean inspection
    means a clean extraction.
    """
    limits = ArchiveLimits(max_total_bytes=max_total_bytes, max_members=max_members)

    def hash_only(name: str, chunks: Iterator[bytes]) -> str:
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        return digest.hexdigest()

    return _read_archive(path, limits, hash_only, lambda name: None)


#: The first bytes of each compressed format the installer picks by name.
_MAGIC = {".zst": b"\x28\xb5\x2f\xfd", ".gz": b"\x1f\x8b"}
#: What an archive may hold besides its members' data: a header block (plus a PAX one) each.
_OVERHEAD_PER_MEMBER = 3 * 512


def check_plausible(path: Path, limits: ArchiveLimits) -> int:
    """Refuse what cannot be a bundle before anything reads it whole; return its size.

    A regular file (never a FIFO or a device named like a bundle), no bigger than its members
    could be unpacked (compression only makes it smaller), starting with the magic of the format
    its name promises: a 256 GiB sparse file or a zero-filled one is refused here in microseconds
    instead of being hashed or decompressed.
    """
    try:
        with open_input(path, ARCHIVE) as raw:
            size = os.fstat(raw.fileno()).st_size
            head = raw.read(4)
    except InputTooLarge as exc:
        raise UnsafeArchiveError(
            "archive-too-large", None, f"the archive {exc}", path=path
        ) from None
    except OSError as exc:
        raise UnsafeArchiveError(
            "archive-unreadable",
            None,
            f"the archive {input_problem(exc)}",
            path=path,
            hint="give the bundle file itself (a regular file)",
        ) from None
    most = limits.max_total_bytes + limits.max_members * _OVERHEAD_PER_MEMBER + 2 * 512
    if size > most:
        raise UnsafeArchiveError(
            "archive-too-large",
            None,
            f"the archive is {size} bytes, more than it could unpack to "
            f"({limits.max_total_bytes} bytes in at most {limits.max_members} members)",
            path=path,
        )
    if size == 0:
        raise _corrupt(path, "the file is empty")
    for suffix, magic in _MAGIC.items():
        if path.name.endswith(suffix) and not head.startswith(magic):
            shown = "nothing" if not head else head.hex(" ")
            raise _corrupt(path, f"it does not start like a {suffix} file ({shown})")
    return size


def extract_bundle(path: Path, dest: Path, limits: ArchiveLimits) -> list[Path]:
    """Unpack the archive at `path` into the new directory `dest`; return the files written.

    `dest` must not exist or be an empty directory. The archive is unpacked into a temporary
    directory beside `dest` and renamed into place at the end, so after a refusal nothing is left
    at `dest`. Files get mode 0o755 when the archive gives them any execute bit, else 0o644;
    directories 0o755. The returned paths are in archive order.
    """
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise PackagingError(
            "extract-destination-not-empty",
            "cannot unpack a bundle here: it exists and is not an empty directory",
            path=dest,
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial"))

    def write_file(name: str, chunks: Iterator[bytes]) -> str:
        target = staging.joinpath(*name.split("/"))
        digest = hashlib.sha256()
        try:
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            # O_EXCL: never reuse or follow anything already there. Every name was checked
            # before we got here, so this is the second line of defence, not the first.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
            with os.fdopen(os.open(target, flags, 0o600), "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
        except OSError as exc:
            raise _unwritable(name, exc, target) from None
        return digest.hexdigest()

    def make_directory(name: str) -> None:
        target = staging.joinpath(*name.split("/"))
        try:
            target.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise _unwritable(name, exc, target) from None

    try:
        entries = _read_archive(path, limits, write_file, make_directory)
        files = [entry for entry in entries if entry.kind == "file"]
        for entry in files:
            mode = _MODE_EXECUTABLE if entry.executable else _MODE_REGULAR
            os.chmod(staging.joinpath(*entry.name.split("/")), mode)
        os.chmod(staging, 0o755)  # mkdtemp creates 0700
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [dest.joinpath(*entry.name.split("/")) for entry in files]


def _read_archive(
    path: Path,
    limits: ArchiveLimits,
    on_file: _FileSink,
    on_directory: Callable[[str], None],
) -> list[ArchiveEntry]:
    """Walk the archive member by member, checking each one before handing its data on.

    `on_file(name, chunks)` must consume all of `chunks` and return the sha256 of what it saw.
    """
    # Imported here: only bundle verification reads archives, and start-up time counts.
    import gzip
    import tarfile
    import zlib

    import zstandard

    try:
        raw = open_input(path, ARCHIVE)
    except FileNotFoundError:
        raise PackagingError("archive-missing", "the archive does not exist", path=path) from None
    except OSError as exc:
        raise UnsafeArchiveError(
            "archive-unreadable", None, f"the archive {input_problem(exc)}", path=path
        ) from None
    entries: list[ArchiveEntry] = []
    with raw:
        stream = _TarStream(path, _decompressor_for(path, raw))
        walk = _ArchiveWalk(path, limits)
        try:
            # typeshed asks for a seekable file; in stream mode ("r|") tarfile only calls read.
            tar_input = cast(BinaryIO, stream)
            tar = tarfile.open(fileobj=tar_input, mode="r|", bufsize=_TAR_BUFSIZE, encoding="utf-8")  # noqa: SIM115  (raw is closed)
            for member in tar:
                admitted = walk.admit(member)
                data_size = member.size if admitted is not None and admitted.kind == "file" else 0
                stream.allow(data_size + _padding_to_block(data_size) + _HEADER_ALLOWANCE)
                if admitted is None:
                    continue  # the root directory entry `./` that `tar -C dir .` writes
                if admitted.kind == "directory":
                    on_directory(admitted.name)
                    entries.append(ArchiveEntry(admitted.name, "directory", 0, False, None))
                    continue
                source = tar.extractfile(member)
                assert source is not None  # tarfile gives a reader for every regular file
                sha256 = on_file(admitted.name, walk.counted(admitted.name, source, member.size))
                entries.append(
                    ArchiveEntry(admitted.name, "file", member.size, admitted.executable, sha256)
                )
            _check_end(path, stream, tar.offset)
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise _corrupt(path, str(exc) or type(exc).__name__) from None
        except zstandard.ZstdError as exc:
            raise _corrupt(path, str(exc)) from None
    return entries


def _decompressor_for(path: Path, raw: BinaryIO) -> _ByteSource:
    # Like the server's installer: the file name decides, not the content.
    if path.name.endswith(".zst"):
        return _ZstdReader(path, raw)
    if path.name.endswith(".gz"):
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    if path.name.endswith(".tar"):
        return raw
    raise UnsafeArchiveError(
        "archive-unknown-format",
        None,
        "cannot tell from its name how the archive is compressed",
        path=path,
        hint="name it `.tar.zst`, `.tar.gz` or `.tar`",
    )


def _unwritable(member: str, error: OSError, target: Path) -> UnsafeArchiveError:
    # About this member (a name too long for the file system, say), so a verification reports it
    # for this bundle and goes on with the next.
    return UnsafeArchiveError(
        "extract-write-failed",
        member,
        f"cannot be unpacked: {error.strerror or error}",
        path=target,
        hint="check the member names and the free space where bundles are unpacked",
    )


def _corrupt(path: Path, detail: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        "archive-corrupt",
        None,
        f"the archive is truncated or corrupt: {detail}",
        path=path,
        hint="download or build the bundle again",
    )


class _ByteSource(Protocol):
    """Anything with `read(size) -> bytes` that returns `size` bytes unless the data ends."""

    def read(self, size: int = -1, /) -> bytes: ...


class _ZstdReader:
    """Decompresses zstd frames a small step at a time, and notices when the last one is cut.

    python-zstandard's `stream_reader` ends quietly at a truncated frame, so we drive
    `decompressobj` ourselves and ask it at the end of the input whether the frame was complete.
    """

    def __init__(self, path: Path, raw: BinaryIO) -> None:
        import zstandard

        self._path = path
        self._raw = raw
        self._context = zstandard.ZstdDecompressor()
        self._frame = self._context.decompressobj()
        self._in_frame = False
        self._buffer = bytearray()
        self._done = False

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            raise ValueError("read the zstd stream in bounded steps")
        while len(self._buffer) < size and not self._done:
            self._step()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]  # cheap: bytearray drops from the front without moving the rest
        return data

    def _step(self) -> None:
        compressed = self._raw.read(_ZSTD_STEP)
        if not compressed:
            if self._in_frame:
                raise _corrupt(self._path, "the last zstd frame is cut short")
            self._done = True
            return
        while compressed:
            self._in_frame = True
            self._buffer += self._frame.decompress(compressed)
            if not self._frame.eof:
                return
            # A file may hold several frames (pzstd, `cat a.zst b.zst`); start on the next one.
            compressed = self._frame.unused_data
            self._frame = self._context.decompressobj()
            self._in_frame = False


class _TarStream:
    """The decompressed tar stream as `tarfile` reads it, metered.

    Member data is allowed as each member is admitted; everything else (headers, padding,
    read-ahead) gets a fixed allowance per member, so a huge pax header cannot make `tarfile`
    buffer gigabytes. The last bytes read are kept so the end of the archive can be checked.
    """

    def __init__(self, path: Path, source: _ByteSource) -> None:
        self._path = path
        self._source = source
        self.position = 0
        self._allowed = _HEADER_ALLOWANCE
        self._tail = bytearray()
        self._tail_start = 0

    def allow(self, size: int) -> None:
        self._allowed += size

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            size = _TAR_BUFSIZE
        room = self._allowed - self.position
        want = min(size, room)
        data = self._source.read(want) if want > 0 else b""
        if want < size and len(data) == want and self._source.read(1):
            raise UnsafeArchiveError(
                "archive-too-large",
                None,
                f"more tar header data than {self._allowed} bytes allow at offset {self.position}"
                " (an oversized pax or long-name header)",
                path=self._path,
            )
        self.position += len(data)
        self._tail += data
        if len(self._tail) > 4 * _TAR_BUFSIZE:
            cut = len(self._tail) - 2 * _TAR_BUFSIZE
            del self._tail[:cut]
            self._tail_start += cut
        return data

    def rest_from(self, offset: int) -> bytes:
        """The bytes already read from `offset` on (tarfile reads ahead of where it stopped)."""
        if offset < self._tail_start:  # pragma: no cover - tarfile reads ahead < _TAR_BUFSIZE
            raise AssertionError("tar stream tail no longer held")
        return bytes(self._tail[offset - self._tail_start :])

    def read_unmetered(self, size: int) -> bytes:
        data = self._source.read(size)
        self.position += len(data)
        return data


def _check_end(path: Path, stream: _TarStream, end: int) -> None:
    """After the last member: the end-of-archive marker, then only zero padding, then nothing.

    tarfile stops quietly at the first header it cannot read, so a damaged header in the middle
    would otherwise look like the end of a shorter archive; and data after the marker would be
    invisible to us but not to `tar --ignore-zeros`.
    """
    after = stream.rest_from(end)
    if len(after) >= _BLOCK and after[:_BLOCK].count(0) != _BLOCK:
        raise _corrupt(path, f"unreadable tar header at offset {end}")
    zeros = 0
    while True:
        if after.count(0) != len(after):
            raise UnsafeArchiveError(
                "archive-trailing-data",
                None,
                f"data after the end-of-archive marker (offset {end + zeros})",
                path=path,
            )
        zeros += len(after)
        if zeros > _MAX_TRAILING:
            raise UnsafeArchiveError(
                "archive-trailing-data",
                None,
                f"more than {_MAX_TRAILING} bytes of padding after the end of the archive",
                path=path,
            )
        after = stream.read_unmetered(_TAR_BUFSIZE)
        if not after:
            break
    if zeros < 2 * _BLOCK:
        raise _corrupt(path, "no end-of-archive marker after the last member")


@dataclass(frozen=True)
class _Admitted:
    name: str
    kind: Literal["file", "directory"]
    executable: bool


class _ArchiveWalk:
    """The checks on each member as it comes: name, type, collisions, counts and sizes."""

    def __init__(self, path: Path, limits: ArchiveLimits) -> None:
        self._path = path
        self._limits = limits
        self._members = 0
        self._unpacked = 0
        self._seen: dict[str, tuple[str, str]] = {}  # collision key -> (name, kind)
        self._parents: set[str] = set()  # collision keys of directories that files live in

    def _refuse(self, code: str, member: str, message: str, hint: str | None = None) -> NoReturn:
        raise UnsafeArchiveError(code, member, message, path=self._path, hint=hint)

    def admit(self, member: tarfile.TarInfo) -> _Admitted | None:
        self._members += 1
        if self._members > self._limits.max_members:
            self._refuse(
                "archive-too-many-members",
                member.name,
                f"the archive has more than {self._limits.max_members} members",
            )
        name = self._normalised(member.name)
        kind = self._kind(member)
        if name == "":
            if kind == "directory":
                return None
            self._refuse("archive-bad-name", member.name, "a file without a name")
        self._check_collisions(member.name, name, kind)
        if kind == "file" and member.size > self._limits.max_total_bytes - self._unpacked:
            self._refuse(
                "archive-too-large",
                member.name,
                f"unpacking it would exceed {self._limits.max_total_bytes} bytes in total",
            )
        return _Admitted(name, kind, kind == "file" and bool(member.mode & 0o111))

    def _normalised(self, raw: str) -> str:
        if _has_bad_characters(raw):
            self._refuse(
                "archive-bad-name",
                raw,
                "the name contains a backslash, a control character or invalid UTF-8",
            )
        if raw.startswith("/") or (len(raw) >= 2 and raw[1] == ":" and raw[0].isalpha()):
            self._refuse("archive-absolute-path", raw, "an absolute path")
        parts = [part for part in raw.split("/") if part not in ("", ".")]
        if ".." in parts:
            self._refuse("archive-parent-path", raw, "the name climbs out with `..`")
        return "/".join(parts)

    def _kind(self, member: tarfile.TarInfo) -> Literal["file", "directory"]:
        if member.issym() or member.islnk():
            kind = "symbolic" if member.issym() else "hard"
            self._refuse(
                "archive-link",
                member.name,
                f"a {kind} link (to {member.linkname!r}); bundles may hold only files",
                hint="copy the file the link points to into the bundle instead",
            )
        if member.ischr() or member.isblk() or member.isfifo():
            self._refuse("archive-special-file", member.name, "a device file or FIFO")
        if member.isdir():
            return "directory"
        if member.isreg() and not member.issparse():
            return "file"
        self._refuse(
            "archive-unsupported-member",
            member.name,
            f"a member of tar type {member.type!r}, which is neither a file nor a directory",
        )

    def _check_collisions(self, raw: str, name: str, kind: str) -> None:
        key = _collision_key(name)
        earlier = self._seen.get(key)
        if earlier is not None:
            if earlier[0] == name:
                self._refuse("archive-duplicate-member", raw, f"{name!r} appears twice")
            self._refuse(
                "archive-name-collision",
                raw,
                f"it would be the same file as {earlier[0]!r} on a case-insensitive system",
            )
        if kind == "file" and key in self._parents:
            self._refuse("archive-name-collision", raw, "it is also a directory of other members")
        parts = key.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if self._seen.get(parent, ("", "directory"))[1] == "file":
                self._refuse(
                    "archive-name-collision",
                    raw,
                    f"it lies inside {self._seen[parent][0]!r}, which is a file",
                )
            self._parents.add(parent)
        self._seen[key] = (name, kind)

    def counted(self, name: str, source: IO[bytes], size: int) -> Iterator[bytes]:
        """The member's data in chunks, counted as it arrives rather than trusted from headers."""
        received = 0
        while chunk := source.read(_READ_CHUNK):
            received += len(chunk)
            self._unpacked += len(chunk)
            if received > size or self._unpacked > self._limits.max_total_bytes:
                self._refuse(
                    "archive-too-large",
                    name,
                    f"it unpacks to more than its header says ({size} bytes)"
                    if received > size
                    else f"unpacking it exceeds {self._limits.max_total_bytes} bytes in total",
                )
            yield chunk
        if received != size:
            raise _corrupt(self._path, f"member {name!r} ends after {received} of {size} bytes")
