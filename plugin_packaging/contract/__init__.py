"""StreamKit's contract with a native plugin: the names its loader and marketplace look for.

The bottom of the stack: discovery, installation, checking and packaging all ask here, so that
"is this a library?", "which manifest does the loader read?" or "is this id safe on disk?" has
exactly one answer in the tool. Beside it: `contract.manifest` (the `plugin.yml` schema and its
one validator) and `contract.semver` (versions). Pure string logic; nothing here touches disk.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from plugin_packaging.target import Platform

#: The exported function every native plugin library must define (native-loader.md, section 5).
ENTRY_SYMBOL = "streamkit_native_plugin_api"
#: How C and C++ declare it so that the loader finds it (C name, default visibility).
ENTRY_DECLARATION_C = (
    f'extern "C" __attribute__((visibility("default"))) const CNativePluginAPI *{ENTRY_SYMBOL}'
    "(void)"
)

#: The manifest installed beside a library, and the name bundle and release tooling expect (N9).
MANIFEST_NAME = "plugin.yml"
#: Where a plugin's source declares it, in the order discovery prefers them (`marketplace.yml`
#: is StreamKit's deprecated name, still read with a warning).
DEPRECATED_SOURCE_MANIFEST_NAME = "marketplace.yml"
SOURCE_MANIFEST_NAMES = (MANIFEST_NAME, "plugin.yaml", DEPRECATED_SOURCE_MANIFEST_NAME)

#: Extensions the server's `is_native_lib` accepts; compared case-sensitively, like Rust's.
LIBRARY_EXTENSIONS = ("so", "dylib", "dll")

#: The extension a cdylib gets on each platform.
PLATFORM_LIBRARY_EXTENSION: dict[Platform, str] = {
    "linux": "so",
    "macos": "dylib",
    "windows": "dll",
}

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
    extension = PLATFORM_LIBRARY_EXTENSION[platform]
    prefix = "" if platform == "windows" else "lib"
    return f"{prefix}{stem}.{extension}"


def library_stem(file_name: str) -> str:
    """The cargo library name behind a file name: `libaac_encoder.so` -> `aac_encoder`."""
    stem = PurePosixPath(file_name).stem
    return stem[3:] if stem.startswith("lib") and len(stem) > 3 else stem


def manifest_names(library_name: str) -> tuple[str, ...]:
    """The loader's N9 lookup order next to a library, first found and parsed wins.

    `<stem>` is the library's stem with one leading `lib` removed (`libfoo.so` -> `foo`; the
    loader strips `lib` even when nothing follows it, unlike `library_stem`).
    """
    stem = PurePosixPath(library_name).stem
    stem = stem[3:] if stem.startswith("lib") else stem
    return (
        MANIFEST_NAME,
        "plugin.yaml",
        f"{stem}.plugin.yml",
        f"{stem}.plugin.yaml",
        "manifest.json",
    )


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
