"""sha256 checksums of release files, in the format `sha256sum -c` reads.

Release pages carry either one `SHA256SUMS` file for all archives or one `<file>.sha256` beside
each; both are lines of `<64 hex digits><two spaces><file name>\\n`, so anyone can check a download
with standard tools and without this project.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from plugin_packaging._fs.files import (
    ARCHIVE,
    CHECKSUMS,
    input_problem,
    open_input,
    read_input,
    write_atomically,
)
from plugin_packaging.errors import PackagingError

SHA256SUMS = "SHA256SUMS"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The hex sha256 of the release file (a bundle archive) at `path`, read in 1 MiB chunks.

    Only a regular file within `files.ARCHIVE`'s cap is read: a FIFO or a device named like a
    bundle is refused, not waited on or read for ever.
    """
    digest = hashlib.sha256()
    try:
        with open_input(path, ARCHIVE) as source:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise PackagingError("checksum-file-missing", "cannot hash a missing file", path) from None
    except OSError as exc:
        raise PackagingError("checksum-file-unreadable", input_problem(exc), path) from None
    return digest.hexdigest()


def write_sha256sums(
    directory: Path, files: Sequence[Path], *, known: Mapping[Path, str] | None = None
) -> Path:
    """Write `directory/SHA256SUMS` listing `files` (which must lie in `directory`), sorted by name.

    Names are written relative to `directory` with `/` separators, so `sha256sum -c SHA256SUMS`
    run inside `directory` checks every file. `known` maps a file to the digest its writer
    already computed while streaming it, so a release's archives are not read a second time.
    """
    lines = []
    # abspath, not resolve: a listed symlink keeps its own name, as sha256sum would show it.
    root = Path(os.path.abspath(directory))
    for file in files:
        absolute = Path(os.path.abspath(directory / file))
        try:
            name = absolute.relative_to(root).as_posix()
        except ValueError:
            raise PackagingError(
                "checksum-outside-directory",
                f"cannot list {file} in {SHA256SUMS}: it is not inside {directory}",
                path=file,
            ) from None
        digest = (known or {}).get(file)
        lines.append((name, _checksum_line(name, absolute, digest)))
    names = [name for name, _ in lines]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PackagingError(
            "checksum-duplicate-file",
            f"{', '.join(duplicates)} listed more than once for {SHA256SUMS}",
            path=directory / SHA256SUMS,
        )
    target = directory / SHA256SUMS
    write_atomically(target, "".join(line for _, line in sorted(lines)).encode("utf-8"))
    return target


def read_sha256sums(path: Path) -> dict[str, str]:
    """Parse a `sha256sum` listing into {file name: hex digest}; for checking what was written."""
    try:
        data = read_input(path, CHECKSUMS)
    except FileNotFoundError:
        raise PackagingError(
            "checksum-file-missing", "the checksum list does not exist", path
        ) from None
    except OSError as exc:
        raise PackagingError(
            "checksum-list-invalid",
            input_problem(exc),
            path,
            hint=f"replace it with the {SHA256SUMS} file written by the release",
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackagingError(
            "checksum-list-invalid",
            f"is not UTF-8 text (bad byte at offset {exc.start})",
            path,
            hint=f"replace it with the {SHA256SUMS} file written by the release",
        ) from None
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        digest, sep, name = line.partition("  ")
        if not sep:
            digest, sep, name = line.partition(" *")  # sha256sum's binary-mode marker
        digest = digest.lower()
        if not sep or len(digest) != 64 or not _is_lower_hex(digest) or not name:
            raise PackagingError(
                "checksum-list-invalid",
                f"line {number} is not `<sha256>  <file name>`: {line[:100]!r}",
                path=path,
            )
        sums[name] = digest
    return sums


def _checksum_line(name: str, path: Path, digest: str | None = None) -> str:
    # sha256sum escapes a name holding a newline or backslash with a leading `\`; our release
    # file names never need that, so refuse rather than write a line only GNU tools can read.
    if "\n" in name or "\\" in name or "\r" in name:
        raise PackagingError(
            "checksum-file-name",
            f"cannot list {name!r}: newlines and backslashes are not allowed in release file names",
            path=path,
        )
    return f"{digest or sha256_file(path)}  {name}\n"


def _is_lower_hex(text: str) -> bool:
    return all(ch in "0123456789abcdef" for ch in text)
