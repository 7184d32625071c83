"""Session fixtures of the robustness suite (the machinery itself is in `confined.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from confined import available_tasks, run_cli, write_checkout
from fixturelib import NativeLibraries


@pytest.fixture(scope="session")
def installed_checkout(
    native_libs: NativeLibraries, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The checkout with both plugins installed by the real command; copy it, never change it."""
    root = tmp_path_factory.mktemp("robustness-template") / "streamkit"
    write_checkout(root, native_libs)
    scratch = root.parent / "tmp"
    scratch.mkdir()
    result = run_cli(["copy-plugins-native", "--root", root], cwd=root.parent, tmpdir=scratch)
    assert result.code == 0, result.describe()
    return root


@pytest.fixture(scope="session")
def tasks_available() -> frozenset[str]:
    return available_tasks()
