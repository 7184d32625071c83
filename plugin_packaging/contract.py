"""Names the loader and the marketplace care about: library files, safe path components, SemVer.

Everything here is pure string logic, shared by discovery, installation, checking and packaging,
so that "is this a library?" or "is this id safe on disk?" has exactly one answer in the tool.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Literal

Platform = Literal["linux", "macos", "windows"]
PLATFORMS: tuple[Platform, ...] = ("linux", "macos", "windows")

#: Extensions the server's `is_native_lib` accepts; compared case-sensitively, like Rust's.
LIBRARY_EXTENSIONS = ("so", "dylib", "dll")

_PLATFORM_EXTENSION: dict[str, str] = {"linux": "so", "macos": "dylib", "windows": "dll"}

# SemVer 2.0.0, the regular expression the specification itself recommends.
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)

#: Longest file name an upload accepts; also a sane cap for ids and versions on disk.
MAX_NAME_BYTES = 255


def library_extension(name: str) -> str:
    """The extension as Rust's `Path::extension()` sees it ('' when there is none).

    Python's `PurePath.suffix` agrees with Rust on every case the loader cares about
    (`.so` has none, `.hidden.so` has `so`, `libfoo.so.1` has `1`).
    """
    return PurePosixPath(name).suffix[1:]


def is_native_library_name(name: str) -> bool:
    """True when the server's directory scan treats a file of this name as a library."""
    return library_extension(name) in LIBRARY_EXTENSIONS


def library_file_name(stem: str, platform: Platform) -> str:
    """Platform naming of a cdylib: `lib<stem>.so`, `lib<stem>.dylib`, `<stem>.dll`."""
    extension = _PLATFORM_EXTENSION[platform]
    prefix = "" if platform == "windows" else "lib"
    return f"{prefix}{stem}.{extension}"


def library_stem(file_name: str) -> str:
    """The cargo library name behind a file name: `libaac_encoder.so` -> `aac_encoder`."""
    stem = PurePosixPath(file_name).stem
    return stem[3:] if stem.startswith("lib") and len(stem) > 3 else stem


def path_component_problem(value: object) -> str | None:
    """Why `value` cannot be used as one directory or file name, or None when it can.

    The marketplace uses ids and versions as path components (`active/<id>.json`,
    `bundles/<id>/<version>/`), so the same rules guard everything we write to disk.
    """
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if value == "":
        return "must not be empty"
    if value != value.strip():
        return "must not start or end with whitespace"
    if "\x00" in value:
        return "must not contain a NUL character"
    if "/" in value or "\\" in value:
        return "must be a single name, without '/' or '\\'"
    if value in (".", "..") or ".." in value:
        return "must not contain '..'"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "must not contain control characters"
    if not is_unicode_text(value):
        return NOT_UNICODE_PROBLEM
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        return f"must be at most {MAX_NAME_BYTES} bytes long"
    return None


def relative_path_problem(value: object) -> str | None:
    """Why `value` is not a safe relative path inside a bundle, or None when it is."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if value == "":
        return "must not be empty"
    if "\x00" in value:
        return "must not contain a NUL character"
    if not is_unicode_text(value):
        return NOT_UNICODE_PROBLEM
    if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
        return "must be relative, not absolute"
    parts = value.replace("\\", "/").split("/")
    if any(part == ".." for part in parts):
        return "must not contain '..'"
    if any(part in ("", ".") for part in parts):
        return "must not contain empty or '.' components"
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")
#: Why a string holding surrogates cannot be a name (see `is_unicode_text`).
NOT_UNICODE_PROBLEM = "must be valid UTF-8 text (it holds bytes or escapes that are not characters)"


def is_unicode_text(value: str) -> bool:
    """True when `value` can be written as UTF-8: it holds no surrogate code points.

    Surrogates reach a string two ways: a file name that is not UTF-8 (Python decodes its bytes
    as U+DC80..U+DCFF) and a YAML escape such as "\\udcff". Neither is text the server's
    UTF-8 strings can hold, nor can it be written into a UTF-8 file.
    """
    return _SURROGATE.search(value) is None


def is_semver(value: object) -> bool:
    """True for a SemVer 2.0.0 version string (`MAJOR.MINOR.PATCH[-pre][+build]`)."""
    return isinstance(value, str) and SEMVER.match(value) is not None
