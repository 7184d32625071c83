"""The one way files are opened for reading and written in place: never blocking on what was put
where a file should be, never leaving a temporary file behind."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugin_packaging._fs.files import NotRegularFile, open_regular_file, write_atomically
from plugin_packaging.errors import PackagingError
from plugin_packaging.install.state import STATE_FILE, Checkout, InstallState


@pytest.fixture
def watchdog() -> Iterator[None]:
    """Fails the test instead of hanging it, should an open block after all."""

    def hung(signum: int, frame: object) -> None:
        raise AssertionError("the open blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_regular_file_and_a_symlink_to_one_are_read(tmp_path: Path) -> None:
    (tmp_path / "record.json").write_bytes(b"{}")
    os.symlink("record.json", tmp_path / "link.json")
    for name in ("record.json", "link.json"):
        with open_regular_file(tmp_path / name) as handle:
            assert handle.read() == b"{}"


def test_a_named_pipe_is_refused_at_once_without_a_writer(tmp_path: Path, watchdog: None) -> None:
    os.mkfifo(tmp_path / "x.json")
    with pytest.raises(NotRegularFile) as raised:
        open_regular_file(tmp_path / "x.json")
    assert str(raised.value) == "is a named pipe (FIFO), not a regular file"
    assert raised.value.filename == str(tmp_path / "x.json") and not raised.value.is_directory


@pytest.mark.parametrize(
    ("path", "kind", "is_directory"), [("/dev/zero", "a device", False), ("/", "a directory", True)]
)
def test_devices_and_directories_are_refused_by_kind(
    path: str, kind: str, is_directory: bool
) -> None:
    with pytest.raises(NotRegularFile) as raised:
        open_regular_file(path)
    assert raised.value.kind == kind and raised.value.is_directory == is_directory
    assert isinstance(
        raised.value, OSError
    )  # callers that only want "readable or not" catch OSError


def test_a_missing_file_raises_the_open_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_regular_file(tmp_path / "missing")


def test_a_failed_atomic_write_leaves_the_target_and_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "SHA256SUMS").mkdir()  # the rename onto a directory fails after the data is written
    with pytest.raises(IsADirectoryError):
        write_atomically(tmp_path / "SHA256SUMS", b"data\n")
    assert os.listdir(tmp_path) == ["SHA256SUMS"] and (tmp_path / "SHA256SUMS").is_dir()


def test_a_state_that_cannot_be_saved_is_one_clear_error_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / ".plugin-packaging"
    (state_dir / STATE_FILE).mkdir(parents=True)  # something in the way of the rename
    state = InstallState(owners={"alpha": Checkout("/streamkit", 1, 2)})
    with pytest.raises(PackagingError) as raised:
        state.save(state_dir)
    error = raised.value
    assert error.code == "state-not-saved" and error.path == state_dir / STATE_FILE
    assert "could not record what was installed" in error.message and "cache" in (error.hint or "")
    assert os.listdir(state_dir) == [STATE_FILE]  # no temporary file


def test_a_saved_state_is_read_back_and_a_fifo_in_its_place_is_no_state(
    tmp_path: Path, watchdog: None
) -> None:
    state_dir = tmp_path / ".plugin-packaging"
    InstallState(owners={"alpha": Checkout("/streamkit", 1, 2)}).save(state_dir)
    assert InstallState.load(state_dir).owners == {"alpha": Checkout("/streamkit", 1, 2)}
    assert os.listdir(state_dir) == [STATE_FILE]
    (state_dir / STATE_FILE).unlink()
    os.mkfifo(state_dir / STATE_FILE)
    assert InstallState.load(state_dir).owners == {}
