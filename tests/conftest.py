"""Session-wide fixtures: real native libraries and a built StreamKit-shaped tree.

Everything is compiled once per test session into pytest's temporary directory (see
`fixturelib.py` for what each library is). A build failure is an error in every test that uses
the fixture, never a skip. Tests that change the sample tree take `sample_tree`, a private
copy; `built_sample_tree` is shared and must be treated as read-only.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fixturelib import (
    COMPILED_FIXTURES,
    NativeLibraries,
    build_native_libraries,
    build_sample_tree,
    compiled_fixture,
    copy_built_tree,
)

_BUILD_SECONDS = pytest.StashKey[dict[str, float]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_BUILD_SECONDS] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The compiled lane: every test whose fixtures (followed through other fixtures) build code.
    # Tests that run a compiler in their own body carry `@pytest.mark.compiled` themselves.
    for item in items:
        if COMPILED_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.compiled)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    # Shown, never asserted: the build cost of the compiled fixtures is worth seeing in CI logs.
    durations = config.stash.get(_BUILD_SECONDS, {})
    if durations:
        parts = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in durations.items())
        terminalreporter.write_line(f"native fixture builds: {parts}")


@pytest.fixture(scope="session")
@compiled_fixture
def native_libs(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> NativeLibraries:
    """Every fixture library variant, compiled once per session."""
    started = time.monotonic()
    libraries = build_native_libraries(tmp_path_factory.mktemp("native_libs"))
    pytestconfig.stash[_BUILD_SECONDS]["native_libs"] = time.monotonic() - started
    return libraries


@pytest.fixture(scope="session")
@compiled_fixture
def built_sample_tree(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Path:
    """examples/streamkit copied and built once per session; read-only, copy it to change it."""
    started = time.monotonic()
    tree = build_sample_tree(tmp_path_factory.mktemp("sample_tree") / "streamkit")
    pytestconfig.stash[_BUILD_SECONDS]["sample_tree"] = time.monotonic() - started
    return tree


@pytest.fixture
def sample_tree(built_sample_tree: Path, tmp_path: Path) -> Path:
    """A private copy of the built sample tree, with the build's mtimes kept."""
    return copy_built_tree(built_sample_tree, tmp_path / "streamkit")
