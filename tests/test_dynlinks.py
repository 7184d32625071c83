"""The loader's cache read straight from `ld.so.cache` says what `ldconfig -p` says, without a process.

The caches are real: this machine's, and ones `ldconfig` writes in each of its three formats for a
directory holding a compiled library and a glibc-hwcaps copy of it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fixturelib import compiled_fixture

from plugin_packaging.binary import dynlinks
from plugin_packaging.binary.dynlinks import (
    DependencyResolver,
    read_ld_so_cache,
    read_ldconfig_cache,
)
from plugin_packaging.check.library import check_library
from plugin_packaging.target import Target

LDCONFIG = shutil.which("ldconfig") or next(
    (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if Path(p).exists()), None
)
needs_glibc = pytest.mark.skipif(
    LDCONFIG is None or not dynlinks.LD_SO_CACHE.is_file(),
    reason="a glibc system with ldconfig and its cache",
)


@pytest.fixture(scope="module")
@compiled_fixture
def written_caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`ldconfig -C` caches in the old, compat and new formats of a directory we control."""
    root = tmp_path_factory.mktemp("ldcache")
    library = root / "lib" / "libppcache.so.1"
    hwcaps = root / "lib" / "glibc-hwcaps" / "x86-64-v2"
    hwcaps.mkdir(parents=True)
    source = root / "cache.c"
    source.write_text("int ppcache_value(void) { return 1; }\n")
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-Wl,-soname,libppcache.so.1", "-o", str(library), str(source)],
        check=True,
        capture_output=True,
    )
    shutil.copyfile(library, hwcaps / library.name)
    config = root / "ld.so.conf"
    config.write_text(f"{library.parent}\n")
    caches = {}
    for form in ("old", "compat", "new"):
        cache = root / f"ld.so.cache.{form}"
        subprocess.run(
            [LDCONFIG, "-X", "-i", "-c", form, "-C", str(cache), "-f", str(config)],
            check=True,
            capture_output=True,
        )
        caches[form] = cache
    return caches


@needs_glibc
def test_this_machines_cache_reads_as_ldconfig_prints_it() -> None:
    cache = read_ld_so_cache()
    assert cache is not None and "libc.so.6" in cache
    assert cache == read_ldconfig_cache()


@needs_glibc
@pytest.mark.parametrize("form", ["old", "compat", "new"])
def test_every_cache_format_reads_as_ldconfig_prints_it(
    written_caches: dict[str, Path], form: str
) -> None:
    cache = read_ld_so_cache(written_caches[form])
    assert cache is not None
    assert cache == read_ldconfig_cache(written_caches[form])
    assert len(cache["libppcache.so.1"]) == 2  # the library and its glibc-hwcaps copy


@needs_glibc
def test_the_new_format_names_the_hwcaps_subdirectory(written_caches: dict[str, Path]) -> None:
    flags = [
        flags
        for flags, path in read_ld_so_cache(written_caches["new"])["libppcache.so.1"]
        if "glibc-hwcaps" in path
    ]
    assert flags and 'hwcap: "x86-64-v2"' in flags[0]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a cache at all",
        b"glibc-ld.so.cache1.1" + b"\xff" * 28,
        b"ld.so-1.7.0\x00\xff\xff\xff\x7f",
    ],
)
def test_a_file_that_is_no_cache_we_know_is_left_to_ldconfig(
    content: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "ld.so.cache"
    path.write_bytes(content)
    assert read_ld_so_cache(path) is None
    assert read_ld_so_cache(tmp_path / "missing") is None


@needs_glibc
def test_resolving_system_libraries_starts_no_process(
    native_libs, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    verdict = check_library(
        native_libs.good_rust, target=Target.of("linux"), resolver=DependencyResolver()
    )
    vias = {d.name: d.via for d in verdict.dependencies}
    assert vias["libc.so.6"] == "ld.so.cache"
    assert verdict.violations == ()
