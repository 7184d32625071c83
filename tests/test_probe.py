"""The load probe against real libraries that load, fail, crash, hang, fork, exit and scribble.

Every library is compiled once per session from `tests/native_src/probe/` (C with one -D macro
per fault, and a zero-dependency Rust cdylib). Hangs are probed with a 1 s limit; the only time
asserted is that a hang is bounded.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fixturelib import (
    NATIVE_SRC,
    build_c_library,
    build_rust_cdylib,
    c_string_literal,
    compiled_fixture,
)

from plugin_packaging.check import probe as probe_module
from plugin_packaging.check import probe_child
from plugin_packaging.check.probe import (
    PROBE_BAD_KIND,
    PROBE_CRASHED,
    PROBE_LOAD_FAILED,
    PROBE_NO_SYMBOL,
    PROBE_NULL_API,
    PROBE_NULL_METADATA,
    PROBE_OUTPUT_INVALID,
    PROBE_TIMEOUT,
    PROBE_UNAVAILABLE,
    REPORT_PIPE_LOST,
    ProbeResult,
    probe_libraries,
    probe_library,
)
from plugin_packaging.errors import PackagingError

PROBE_SRC = NATIVE_SRC / "probe"
HANG_TIMEOUT = 1.0
# A hang must end; how fast is not measured, only that the limit holds at all.
HANG_BOUND_SECONDS = HANG_TIMEOUT + 30
MARKER_NAME = "probe-constructor-was-here"


def _c_plugin(**defines: str | None) -> Callable[[Path, str], Path]:
    return lambda out_dir, name: build_c_library(
        out_dir, name, source=PROBE_SRC / "probe_plugin.c", defines=defines
    )


def _missing_dependency(out_dir: Path, name: str) -> Path:
    # Linked against a dependency that is deleted afterwards: dlopen itself must fail.
    scratch = out_dir / "scratch"
    dependency = build_c_library(
        scratch,
        "libprobe_dependency.so",
        source=PROBE_SRC / "probe_dependency.c",
        flags=["-Wl,-soname,libprobe_dependency.so"],
    )
    library = build_c_library(
        out_dir,
        name,
        source=PROBE_SRC / "probe_plugin.c",
        defines={"PROBE_USE_DEPENDENCY": None},
        link_inputs=[dependency],
    )
    dependency.unlink()
    return library


@pytest.fixture(scope="session")
@compiled_fixture
def probe_libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every probe fixture library by variant name, each alone in its own directory."""
    root = tmp_path_factory.mktemp("probe_libs")
    recipes: dict[str, Callable[[Path, str], Path]] = {
        "good": _c_plugin(),
        "api_v5": _c_plugin(PROBE_API_VERSION="5", PROBE_KIND=c_string_literal("probe_v5")),
        "null_api": _c_plugin(PROBE_NULL_API=None),
        "null_metadata": _c_plugin(PROBE_NULL_METADATA=None),
        "invalid_utf8_kind": _c_plugin(PROBE_KIND_INVALID_UTF8=None),
        "no_symbol": _c_plugin(PROBE_NO_ENTRY=None),
        "missing_dependency": _missing_dependency,
        "metadata_crash": _c_plugin(PROBE_METADATA_CRASH=None),
        "metadata_hang": _c_plugin(PROBE_METADATA_HANG=None),
        "ctor_abort": _c_plugin(PROBE_CTOR_ABORT=None),
        "ctor_spin": _c_plugin(PROBE_CTOR_SPIN=None),
        "ctor_exit": _c_plugin(PROBE_CTOR_EXIT="0"),
        "ctor_fork": _c_plugin(PROBE_CTOR_FORK=None),
        "ctor_fork_exit": _c_plugin(PROBE_CTOR_FORK=None, PROBE_CTOR_EXIT="3"),
        "ctor_files": _c_plugin(PROBE_CTOR_WRITE_FILE=None, PROBE_CTOR_REPORT=None),
        "ctor_flood": _c_plugin(PROBE_CTOR_FLOOD=None),
        "ctor_scribble": _c_plugin(PROBE_CTOR_SCRIBBLE=None),
        "ctor_close_fds": _c_plugin(PROBE_CTOR_CLOSE_FDS=None),
        "rust": lambda out_dir, name: build_rust_cdylib(
            out_dir, name, source=PROBE_SRC / "probe_plugin.rs", kind="probe_rust"
        ),
    }
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {
            variant: pool.submit(recipe, root / variant, f"lib{variant}.so")
            for variant, recipe in recipes.items()
        }
    return {variant: future.result() for variant, future in futures.items()}


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A killed process stays a zombie until its new parent (init, which may never) reaps it.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def processes_mapping(library: Path) -> list[int]:
    """Live processes (not zombies) that have `library` mapped: what a probe left running."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and not _process_is_gone(int(entry)):
            try:
                with open(f"/proc/{entry}/maps", encoding="utf-8", errors="replace") as maps:
                    if str(library) in maps.read():
                        found.append(int(entry))
            except OSError:
                continue  # gone, or not ours to read
    return found


def wait_until_unmapped(library: Path, limit: float = 10.0) -> list[int]:
    """The processes still holding `library` after `limit` seconds (none, when all went)."""
    # SIGKILL is delivered asynchronously: give the kernel a moment to finish the processes.
    deadline = time.monotonic() + limit
    while (left := processes_mapping(library)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def constructor_report(result: ProbeResult) -> dict[str, str]:
    """The `name=value;` pairs a reporting constructor put in the kind."""
    assert result.ok and result.kind is not None, result
    return dict(item.split("=", 1) for item in result.kind.split(";") if item)


def test_good_plugin_reports_its_api_version_and_kind(probe_libs: dict[str, Path]) -> None:
    result = probe_library(probe_libs["good"])

    assert result == ProbeResult(True, 9, "probe_ok", None, None, None)
    assert result.to_dict() == {
        "ok": True,
        "api_version": 9,
        "kind": "probe_ok",
        "failure": None,
        "failure_code": None,
        "stage": None,
    }
    assert list(result.to_dict()) == [
        "ok",
        "api_version",
        "kind",
        "failure",
        "failure_code",
        "stage",
    ]


def test_the_library_is_never_mapped_into_the_calling_process(probe_libs: dict[str, Path]) -> None:
    library = probe_libs["good"]

    assert probe_library(library).ok

    assert str(library) not in Path("/proc/self/maps").read_text()


def test_rust_cdylib_reports_its_kind(probe_libs: dict[str, Path]) -> None:
    assert probe_library(probe_libs["rust"]) == ProbeResult(True, 9, "probe_rust", None, None, None)


def test_relative_path_is_resolved_against_the_callers_directory(
    probe_libs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    library = probe_libs["good"]
    monkeypatch.chdir(library.parent)

    assert probe_library(Path(library.name)).kind == "probe_ok"


def test_api_version_outside_the_host_range_is_reported_with_the_kind(
    probe_libs: dict[str, Path],
) -> None:
    # Judging the version is the checker's job; the probe still reads the kind to name the plugin.
    assert probe_library(probe_libs["api_v5"]) == ProbeResult(True, 5, "probe_v5", None, None, None)


def test_entry_function_returning_null_is_reported_at_the_entry_stage(
    probe_libs: dict[str, Path],
) -> None:
    result = probe_library(probe_libs["null_api"])

    assert result == ProbeResult(
        False, None, None, "entry function returned NULL", PROBE_NULL_API, "entry"
    )


def test_null_metadata_keeps_the_api_version(probe_libs: dict[str, Path]) -> None:
    result = probe_library(probe_libs["null_metadata"])

    assert result == ProbeResult(
        False, 9, None, "get_metadata returned NULL", PROBE_NULL_METADATA, "metadata"
    )


def test_kind_that_is_not_utf8_is_a_bad_kind(probe_libs: dict[str, Path]) -> None:
    result = probe_library(probe_libs["invalid_utf8_kind"])

    assert (result.ok, result.api_version, result.kind) == (False, 9, None)
    assert (result.failure_code, result.stage) == (PROBE_BAD_KIND, "metadata")
    assert result.failure == r"kind is not valid UTF-8: b'probe_\xff\xfe'"


def test_library_without_the_entry_symbol(probe_libs: dict[str, Path]) -> None:
    result = probe_library(probe_libs["no_symbol"])

    assert (result.ok, result.failure_code, result.stage) == (False, PROBE_NO_SYMBOL, "entry")
    assert result.failure == "no entry symbol `streamkit_native_plugin_api`"


def test_missing_dependency_fails_the_load_with_the_loaders_message(
    probe_libs: dict[str, Path],
) -> None:
    result = probe_library(probe_libs["missing_dependency"])

    assert (result.ok, result.failure_code, result.stage) == (False, PROBE_LOAD_FAILED, "load")
    assert result.failure is not None
    assert result.failure.startswith("could not be loaded: ")
    assert "libprobe_dependency.so" in result.failure
    assert "\n" not in result.failure


def test_file_that_does_not_exist_fails_the_load(tmp_path: Path) -> None:
    result = probe_library(tmp_path / "libmissing.so")

    assert (result.ok, result.failure_code, result.stage) == (False, PROBE_LOAD_FAILED, "load")


def test_constructor_that_aborts_is_a_crash_while_loading(probe_libs: dict[str, Path]) -> None:
    result = probe_library(probe_libs["ctor_abort"])

    assert result == ProbeResult(
        False, None, None, "crashed with SIGABRT while loading", PROBE_CRASHED, "load"
    )


def test_crash_in_get_metadata_is_placed_at_the_metadata_stage(probe_libs: dict[str, Path]) -> None:
    result = probe_library(probe_libs["metadata_crash"])

    assert result == ProbeResult(
        False, 9, None, "crashed with SIGSEGV in get_metadata", PROBE_CRASHED, "metadata"
    )


def test_constructor_that_spins_for_ever_times_out(probe_libs: dict[str, Path]) -> None:
    started = time.monotonic()
    result = probe_library(probe_libs["ctor_spin"], timeout=HANG_TIMEOUT)

    assert time.monotonic() - started < HANG_BOUND_SECONDS
    assert result == ProbeResult(
        False, None, None, "timed out after 1.0 s while loading", PROBE_TIMEOUT, "load"
    )


def test_get_metadata_that_never_returns_times_out_at_the_metadata_stage(
    probe_libs: dict[str, Path],
) -> None:
    started = time.monotonic()
    result = probe_library(probe_libs["metadata_hang"], timeout=HANG_TIMEOUT)

    assert time.monotonic() - started < HANG_BOUND_SECONDS
    assert result == ProbeResult(
        False, 9, None, "timed out after 1.0 s in get_metadata", PROBE_TIMEOUT, "metadata"
    )


def test_constructor_that_calls_exit_zero_is_reported(probe_libs: dict[str, Path]) -> None:
    # exit() in a constructor would end the server as surely as a crash.
    result = probe_library(probe_libs["ctor_exit"])

    assert result == ProbeResult(
        False, None, None, "exited with status 0 while loading", PROBE_CRASHED, "load"
    )


def test_forked_grandchild_holding_the_pipes_neither_blocks_nor_survives(
    probe_libs: dict[str, Path],
) -> None:
    library = probe_libs["ctor_fork"]

    result = probe_library(library)

    assert result == ProbeResult(True, 9, "probe_ok", None, None, None)
    assert wait_until_unmapped(library) == [], "the grandchild survived the probe"


def test_exit_with_a_grandchild_holding_the_pipes_still_returns(
    probe_libs: dict[str, Path],
) -> None:
    library = probe_libs["ctor_fork_exit"]
    started = time.monotonic()

    result = probe_library(library, timeout=HANG_TIMEOUT)

    assert time.monotonic() - started < HANG_BOUND_SECONDS
    assert result == ProbeResult(
        False, None, None, "exited with status 3 while loading", PROBE_CRASHED, "load"
    )
    assert wait_until_unmapped(library) == [], "the grandchild survived the probe"


def test_constructor_runs_confined_in_a_private_scratch_directory(
    probe_libs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = probe_libs["ctor_files"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBE_TEST_SECRET", "leaked")

    report = constructor_report(probe_library(library, timeout=3.0))

    assert report["marker"] == "1"  # the scratch directory (its /tmp) is writable...
    assert not (tmp_path / MARKER_NAME).exists()  # ...and private
    assert not (Path(tempfile.gettempdir()) / MARKER_NAME).exists()
    assert report["cwd"] == report["home"] == report["tmpdir"] == probe_module.SCRATCH_DIR
    assert report["secret"] == ""  # the caller's environment stays behind
    # In its own PID namespace: its parent is bubblewrap's init there, not this process.
    assert report["ppid"] == "1"
    assert int(report["core"]) == 0
    assert 0 < int(report["data"]) <= 2 << 30
    assert 0 < int(report["cpu"]) <= int(3.0 * (os.cpu_count() or 1)) + 2
    assert 0 < int(report["fsize"]) <= probe_child.FILE_SIZE_LIMIT_BYTES


def test_weaker_mode_still_confines_to_a_scratch_directory_that_is_removed(
    probe_libs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(probe_module.BWRAP_ENVIRONMENT, probe_module.BWRAP_NONE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBE_TEST_SECRET", "leaked")

    report = constructor_report(probe_library(probe_libs["ctor_files"], timeout=3.0))

    scratch = Path(report["cwd"])
    assert report["marker"] == "1"
    assert scratch != tmp_path and not scratch.exists()
    assert report["home"] == report["tmpdir"] == report["cwd"]
    assert report["secret"] == ""
    assert report["ppid"] == str(os.getpid())  # what the namespaces take away
    assert (report["session_leader"], report["group_leader"]) == ("1", "1")
    assert int(report["core"]) == 0


def test_ten_megabytes_on_stdout_and_stderr_do_not_disturb_the_report(
    probe_libs: dict[str, Path],
) -> None:
    assert probe_library(probe_libs["ctor_flood"]) == ProbeResult(
        True, 9, "probe_ok", None, None, None
    )


def test_library_writing_into_the_report_pipe_makes_the_output_invalid(
    probe_libs: dict[str, Path],
) -> None:
    result = probe_library(probe_libs["ctor_scribble"])

    assert (result.ok, result.failure_code, result.stage) == (False, PROBE_OUTPUT_INVALID, "load")
    assert result.failure is not None and "not JSON" in result.failure


def test_library_closing_the_report_pipe_makes_the_output_invalid(
    probe_libs: dict[str, Path],
) -> None:
    result = probe_library(probe_libs["ctor_close_fds"])

    assert result == ProbeResult(
        False,
        None,
        None,
        "the probe's report pipe was closed or broken while loading",
        PROBE_OUTPUT_INVALID,
        "load",
    )


def test_a_probe_process_that_cannot_reach_the_load_is_a_tool_error(
    probe_libs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for a Python that cannot run the probe (no ctypes, a broken installation).
    broken = tmp_path / "probe_child.py"
    broken.write_text("import sys\nsys.stderr.write('no module named _ctypes\\n')\nsys.exit(1)\n")
    monkeypatch.setattr(probe_module, "CHILD_SCRIPT", broken)

    with pytest.raises(PackagingError) as raised:
        probe_library(probe_libs["good"])

    assert raised.value.code == PROBE_UNAVAILABLE
    assert "status 1 before loading anything" in raised.value.message
    assert raised.value.hint == "no module named _ctypes"


def test_probe_libraries_probes_each_path_once_in_parallel(probe_libs: dict[str, Path]) -> None:
    paths = [
        probe_libs["good"],
        probe_libs["rust"],
        probe_libs["null_api"],
        probe_libs["ctor_spin"],
    ]

    results = probe_libraries([*paths, probe_libs["good"]], timeout=HANG_TIMEOUT, jobs=2)

    assert list(results) == paths
    assert results[probe_libs["good"]].kind == "probe_ok"
    assert results[probe_libs["rust"]].kind == "probe_rust"
    assert results[probe_libs["null_api"]].failure_code == PROBE_NULL_API
    assert results[probe_libs["ctor_spin"]].failure_code == PROBE_TIMEOUT


def test_probe_libraries_of_nothing_is_empty() -> None:
    assert probe_libraries([]) == {}


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_timeout_must_be_positive(probe_libs: dict[str, Path], timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        probe_library(probe_libs["good"], timeout=timeout)


def test_jobs_must_be_at_least_one(probe_libs: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="jobs"):
        probe_libraries([probe_libs["good"]], jobs=0)


def test_parent_and_child_agree_on_the_lost_pipe_status() -> None:
    # The child script cannot import the parent, so the constant is written twice.
    assert probe_child.REPORT_PIPE_LOST == REPORT_PIPE_LOST
