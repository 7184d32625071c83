"""Every broken tree and manifest of the corpus, against every command it concerns, as users run it.

Each (case, command) pair gets its own copy of the installed checkout, breaks it, runs the real
command line in a confined child process (time and memory limits, strict UTF-8 output; see
confined.py) and holds it to the same promises:

- it ends with the exit status the corpus names (never by a signal, never hung);
- it prints no traceback, and the message carries the error code and names the file;
- it writes nothing outside its own area (the plugin directory for copy and migrate, `dist/` for
  package, nothing at all for check, list and verify): the checkout, a sentinel directory beside
  it, the working directory and TMPDIR are compared before and after;
- the installed plugins the case names are byte-for-byte what they were.

The pairs are independent, so the selected ones are played side by side (one child process per
core, plus one for the time children spend on I/O) by a session fixture; each test then judges
its own pair, so a failure still reads as that pair's failure.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from confined import (
    COMMANDS,
    READ_ONLY_COMMANDS,
    CommandHung,
    RunResult,
    changed,
    run_cli,
    snapshot,
    source_manifest,
)
from corpus import CASES, Case, Scene, render_table
from fixturelib import NativeLibraries

README = Path(__file__).with_name("README.md")
ROOT_NAME = "streamkit"
TEST_NAME = "test_bad_input_ends_in_a_clear_message_and_touches_nothing_else"


def _pairs() -> list[object]:
    params = []
    for case in CASES:
        for command, expect in case.expects.items():
            marks = [pytest.mark.xfail(strict=True, reason=expect.xfail)] if expect.xfail else []
            params.append(pytest.param(case, command, id=f"{case.name}-{command}", marks=marks))
    return params


def make_scene(case_dir: Path, checkout: Path, libs: NativeLibraries) -> Scene:
    """A private copy of the installed checkout, and a sentinel directory beside it."""
    root = case_dir / ROOT_NAME
    shutil.copytree(checkout, root, symlinks=True)
    outside = case_dir / "outside"
    (outside / "good").mkdir(parents=True)
    (outside / "victim").mkdir()
    (outside / "precious.txt").write_text("must never change\n")
    (outside / "libprecious.so").write_bytes(b"not a library, and not ours to touch\n")
    shutil.copyfile(libs.good_c, outside / "good" / "libgood.so")
    (outside / "victim" / "libalpha.so").write_bytes(b"someone else's file\n")
    (outside / "victim" / "plugin.yml").write_text("id: victim\n")
    (outside / "alpha.yml").write_text(yaml.safe_dump(source_manifest("alpha"), sort_keys=False))
    return Scene(root, outside, libs)


def writable_area(command: str) -> str | None:
    """The only part of the case directory a command may change, relative to it."""
    if command in ("copy", "migrate"):
        return f"{ROOT_NAME}/.plugins"
    if command == "package":
        return f"{ROOT_NAME}/dist"
    assert command in READ_ONLY_COMMANDS
    return None


def _below(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


@dataclass(frozen=True)
class Played:
    """One pair played: what the command did, and what changed on disk around it."""

    result: RunResult | None
    hung: str | None
    changed: tuple[str, ...]
    leftovers: tuple[str, ...]


def play(case: Case, command: str, case_dir: Path, checkout: Path, libs: NativeLibraries) -> Played:
    scene = make_scene(case_dir, checkout, libs)
    cwd, scratch = case_dir / "cwd", case_dir / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    case.build(scene)
    before = snapshot(case_dir)
    expect = case.expects[command]
    try:
        result = run_cli(
            [COMMANDS[command], "--root", scene.root],
            cwd=cwd,
            tmpdir=scratch,
            drop_dac=case.unreadable,
            **({"timeout": expect.timeout} if expect.timeout else {}),
        )
        hung = None
    except CommandHung as exc:
        result, hung = None, str(exc)
    return Played(
        result, hung, tuple(changed(before, snapshot(case_dir))), tuple(os.listdir(scratch))
    )


@pytest.fixture(scope="session")
def corpus_played(
    request: pytest.FixtureRequest,
    installed_checkout: Path,
    native_libs: NativeLibraries,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Played]:
    """Every selected pair of this module's corpus test, played in parallel, keyed by test id."""
    selected = [
        item
        for item in request.session.items
        if getattr(item, "originalname", None) == TEST_NAME and hasattr(item, "callspec")
    ]
    jobs = {
        item.callspec.id: (item.callspec.params["case"], item.callspec.params["command"])
        for item in selected
    }
    directories = {key: tmp_path_factory.mktemp(f"pair-{key[:40]}") for key in jobs}
    workers = (os.cpu_count() or 2) + 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            key: pool.submit(play, case, command, directories[key], installed_checkout, native_libs)
            for key, (case, command) in jobs.items()
        }
    return {key: future.result() for key, future in futures.items()}


@pytest.mark.parametrize(("case", "command"), _pairs())
def test_bad_input_ends_in_a_clear_message_and_touches_nothing_else(
    case: Case,
    command: str,
    corpus_played: dict[str, Played],
    tasks_available: frozenset[str],
    request: pytest.FixtureRequest,
) -> None:
    assert COMMANDS[command] in tasks_available, f"{COMMANDS[command]} is not a task any more"
    expect = case.expects[command]
    played = corpus_played[request.node.callspec.id]
    if played.hung is not None:
        pytest.fail(played.hung)
    assert played.result is not None
    report = played.result.describe()
    output = played.result.output
    assert "Traceback" not in output, report
    assert played.result.code == expect.exit, report
    assert output.strip(), report
    for phrase in expect.says:
        assert phrase in output, f"missing {phrase!r}\n{report}"
    area = writable_area(command)
    outside_area = [p for p in played.changed if area is None or not _below(p, area)]
    assert outside_area == [], f"{command} changed files outside its area: {outside_area}\n{report}"
    for kept in expect.keeps:
        top = f"{ROOT_NAME}/.plugins/{kept}"
        assert [p for p in played.changed if _below(p, top)] == [], f"{kept} changed\n{report}"
    assert played.leftovers == (), f"left temporary files behind: {played.leftovers}"


def test_the_corpus_is_big_enough_and_covers_every_command(tasks_available: frozenset[str]) -> None:
    commands = {command for case in CASES for command in case.expects}
    assert len(CASES) >= 50
    assert {"copy", "check", "list", "migrate", "package"} <= commands
    assert {COMMANDS[c] for c in commands} <= tasks_available


def test_the_readme_table_is_the_corpus() -> None:
    """The table in README.md is generated from the corpus (`python corpus.py`): it must match."""
    text = README.read_text(encoding="utf-8")
    assert render_table() in text, (
        "README.md is out of date: run `python tests/robustness/corpus.py`"
    )
