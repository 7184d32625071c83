"""Bounded work in the binary readers: hand-made ELF files (tests/elfpatch.py, a real library
patched) whose tables would cost unbounded time later are refused with a coded error at once,
and the largest allowed ones resolve quickly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from elfpatch import with_endless_gnu_hash_chain, with_needed_and_runpath
from fixturelib import NativeLibraries

from plugin_packaging.binary import CORRUPT, BinaryFormatError, read_library
from plugin_packaging.binary.bounded import MAX_DYNAMIC_SYMBOLS, MAX_NEEDED, MAX_SEARCH_PATH
from plugin_packaging.binary.dynlinks import DependencyResolver

#: Generous for a shared machine; the unbounded versions of these took minutes.
QUICK = 5.0


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "libpatched.so"
    path.write_bytes(data)
    return path


def _needed(count: int) -> list[str]:
    return [f"libneeded{i}.so" for i in range(count)]


def _runpath(count: int) -> list[str]:
    return [f"/nonexistent/runpath/{i}" for i in range(count)]


def test_the_patch_itself_keeps_a_readable_library(
    native_libs: NativeLibraries, tmp_path: Path
) -> None:
    path = _write(
        tmp_path,
        with_needed_and_runpath(native_libs.good_c.read_bytes(), ["libc.so.6"], ["$ORIGIN"]),
    )

    info = read_library(path)

    assert info.needed == ("libc.so.6",)
    assert info.runpath == ("$ORIGIN",)
    assert info.entry.state == "exported"  # the symbol names still resolve


@pytest.mark.parametrize(
    ("needed", "runpath", "says"),
    [
        (
            3000,
            3000,
            f"lists 3000 needed libraries (DT_NEEDED), more than any real library does (at most {MAX_NEEDED})",
        ),
        (MAX_NEEDED + 1, 1, f"lists {MAX_NEEDED + 1} needed libraries"),
        (1, MAX_SEARCH_PATH + 1, f"lists {MAX_SEARCH_PATH + 1} RPATH/RUNPATH entries"),
    ],
)
def test_thousands_of_needed_names_or_search_directories_are_refused_at_once(
    native_libs: NativeLibraries, tmp_path: Path, needed: int, runpath: int, says: str
) -> None:
    path = _write(
        tmp_path,
        with_needed_and_runpath(
            native_libs.good_c.read_bytes(), _needed(needed), _runpath(runpath)
        ),
    )
    assert path.stat().st_size < 256 << 10  # a few KiB on disk
    started = time.monotonic()

    with pytest.raises(BinaryFormatError) as raised:
        read_library(path)

    assert time.monotonic() - started < QUICK
    assert raised.value.code == CORRUPT
    assert says in str(raised.value)


def test_the_most_needed_names_times_search_directories_allowed_resolve_quickly(
    native_libs: NativeLibraries, tmp_path: Path
) -> None:
    path = _write(
        tmp_path,
        with_needed_and_runpath(
            native_libs.good_c.read_bytes(), _needed(MAX_NEEDED), _runpath(MAX_SEARCH_PATH)
        ),
    )
    info = read_library(path)
    started = time.monotonic()

    dependencies = DependencyResolver(read_cache=dict).resolve(info, path)

    assert time.monotonic() - started < QUICK
    assert len(dependencies) == MAX_NEEDED
    assert all(dependency.path is None for dependency in dependencies)


def test_a_gnu_hash_chain_that_never_ends_stops_at_the_cap(
    native_libs: NativeLibraries, tmp_path: Path
) -> None:
    # 16 MiB of zeros: a chain longer than the cap, in a file far below the library size cap.
    path = _write(tmp_path, with_endless_gnu_hash_chain(native_libs.good_c.read_bytes(), 16 << 20))
    started = time.monotonic()

    with pytest.raises(BinaryFormatError) as raised:
        read_library(path)

    assert time.monotonic() - started < QUICK
    assert raised.value.code == CORRUPT
    assert "dynamic symbols (DT_GNU_HASH chains)" in str(raised.value)
    assert f"at most {MAX_DYNAMIC_SYMBOLS}" in str(raised.value)
