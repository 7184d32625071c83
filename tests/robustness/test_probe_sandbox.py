"""check-plugins-native --probe against constructors that attack the checker itself.

Each hostile library (tests/native_src/probe/probe_plugin.c, one -D per attack) lies in its own
bundle of one checkout, and the real command line probes them all in one run. The checker must
come through: it finishes (killed or stopped, it would not print its summary), its output holds
no line a constructor forged, nothing is written outside the sandbox's scratch space, and no
process of theirs outlives the run. The constructors report what they managed through the node
kind (`wrote=N;`: how many of the absolute paths could be created), which the checker prints in
its kind findings.

The same checkout, probed in the weaker process-group mode on purpose, must say so in a finding.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from confined import changed, run_cli, snapshot
from fixturelib import NATIVE_SRC, build_c_library, c_string_literal, compiled_fixture

from plugin_packaging.check import probe as probe_module

PROBE_SOURCE = NATIVE_SRC / "probe" / "probe_plugin.c"
RUN_LIMIT = 120.0
#: The bounded fork bomb: processes one constructor forks in all (each sleeping for ever).
FORK_BOMB_PROCESSES = 64


def _hostile_defines(outside: Path, shared_tmp: Path) -> dict[str, dict[str, str | None]]:
    """Attack name -> the defines that build it. `outside` lies beside the checkout."""
    targets = ":".join(
        [
            str(outside / "pwned"),  # beside the checkout
            str(shared_tmp),  # the machine's /tmp, which the sandbox replaces
            "/var/tmp/streamkit-probe-pwned",
            str(Path.home() / ".streamkit-probe-pwned"),
        ]
    )
    return {
        "kill_parent": {"PROBE_CTOR_KILL_PARENT": None},
        "kill_everything": {"PROBE_CTOR_KILL_PARENT": None, "PROBE_CTOR_KILL_ALL": None},
        "stop_parent": {"PROBE_CTOR_STOP_PARENT": None},
        "forge_output": {"PROBE_CTOR_FORGE": None},
        "write_absolute": {"PROBE_CTOR_WRITE_ABSOLUTE": c_string_literal(targets)},
        "fork_bomb": {"PROBE_CTOR_FORK_MANY": str(FORK_BOMB_PROCESSES)},
        "fork_and_sleep": {"PROBE_CTOR_FORK": None},
    }


def _bundle(native: Path, name: str, library: Path) -> Path:
    bundle = native / name
    bundle.mkdir(parents=True)
    shutil.copyfile(library, bundle / library.name)
    (bundle / "plugin.yml").write_text(
        yaml.safe_dump(
            {
                "id": name.replace("_", "-"),
                "version": "1.0.0",
                "node_kind": name,
                "kind": "native",
                "entrypoint": library.name,
            }
        )
    )
    return bundle / library.name


def _mapping(libraries: list[Path]) -> list[tuple[int, str]]:
    """Live processes that have one of `libraries` mapped."""
    found = []
    names = [str(library) for library in libraries]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                continue
            maps = Path(f"/proc/{entry}/maps").read_text(errors="replace")
        except (OSError, IndexError):
            continue
        found += [(int(entry), name) for name in names if name in maps]
    return found


@pytest.fixture(scope="module")
@compiled_fixture
def hostile_checkout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A checkout with one bundle per attack; the attacks' absolute targets lie in `outside/`."""
    top = tmp_path_factory.mktemp("probe-sandbox")
    outside = top / "outside"
    outside.mkdir()
    shared_tmp = Path("/tmp") / f"streamkit-probe-pwned-{os.getpid()}"
    build = top / "build"
    native = top / "streamkit" / ".plugins" / "native"
    libraries = {}
    for name, defines in _hostile_defines(outside, shared_tmp).items():
        built = build_c_library(build / name, f"lib{name}.so", source=PROBE_SOURCE, defines=defines)
        libraries[name] = _bundle(native, name, built)
    shutil.rmtree(build)
    return top, libraries


def test_hostile_constructors_cannot_touch_the_checker_or_the_machine(
    hostile_checkout: tuple[Path, dict[str, Path]],
) -> None:
    assert probe_module.sandbox().confined, probe_module.sandbox()
    top, libraries = hostile_checkout
    cwd, scratch = top / "cwd", top / "tmp"
    cwd.mkdir(exist_ok=True)
    scratch.mkdir(exist_ok=True)
    shared_tmp = Path("/tmp") / f"streamkit-probe-pwned-{os.getpid()}"
    elsewhere = [
        shared_tmp,
        Path("/var/tmp/streamkit-probe-pwned"),
        Path.home() / ".streamkit-probe-pwned",
    ]
    before = snapshot(top)
    started = time.monotonic()

    result = run_cli(
        ["check-plugins-native", "--root", top / "streamkit", "--probe", "--probe-timeout", "3"],
        cwd=cwd,
        tmpdir=scratch,
        timeout=RUN_LIMIT,
    )

    report = result.describe()
    elapsed = time.monotonic() - started
    # The checker was neither killed (-9) nor stopped (the run would hit its time limit).
    assert result.code == 1, report
    assert "Traceback" not in result.output, report
    assert "check failed" in result.output.splitlines()[-1], report
    # Their parent is bubblewrap's init in the namespace: the kernel ignores SIGKILL and SIGSTOP
    # sent to a namespace's init from inside, and kill(-1) reaches only the namespace. So even
    # the library that tried to kill everything loaded, and reports its kind.
    lines = result.output.splitlines()
    for name in ("kill_parent", "kill_everything", "stop_parent"):
        assert any(f"lib{name}.so" in line and "(probed)" in line for line in lines), report
    # Nothing forged reached our output (what the constructor could open were init's /dev/null
    # and the stderr pipe we read only a tail of).
    assert "forged by a plugin constructor" not in result.output, report
    assert "check passed" not in result.output, report
    assert "::error" not in result.output, report
    # Of the absolute paths, only the one in /tmp could be written: in the private scratch tmpfs.
    assert "'wrote=1;'" in result.output, report
    assert changed(before, snapshot(top)) == [], report
    assert os.listdir(scratch) == [], report
    leaked = [path for path in elsewhere if os.path.lexists(path)]
    for path in leaked:
        path.unlink()
    assert leaked == [], report
    # Nothing they forked survives, not even the fork bomb's sessions.
    deadline = time.monotonic() + 10
    while (left := _mapping(list(libraries.values()))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"processes survived the probe: {left}"
    assert "probe-not-sandboxed" not in result.output, report
    assert elapsed < RUN_LIMIT


@pytest.mark.parametrize(
    ("choice", "reason"),
    [
        (probe_module.BWRAP_NONE, f"{probe_module.BWRAP_ENVIRONMENT}=none asks for it"),
        ("/bin/false", "/bin/false: exited with status 1"),
    ],
)
@pytest.mark.compiled
def test_the_weaker_mode_is_a_finding_that_names_it(
    tmp_path: Path, choice: str, reason: str
) -> None:
    # Only a harmless library: in this mode the attacks above would reach the test run.
    root = tmp_path / "streamkit"
    good = build_c_library(tmp_path / "build", "libgood.so", source=PROBE_SOURCE)
    _bundle(root / ".plugins" / "native", "probe_ok", good)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "PYTHON"))}
    env.update(PYTHONIOENCODING="utf-8", TMPDIR=str(scratch))
    env[probe_module.BWRAP_ENVIRONMENT] = choice

    result = run_cli(
        ["check-plugins-native", "--root", root, "--probe"],
        cwd=tmp_path,
        tmpdir=scratch,
        env=env,
        timeout=RUN_LIMIT,
    )

    report = result.describe()
    assert result.code == 0, report
    assert "warning[probe-not-sandboxed]" in result.output, report
    assert "weaker process-group mode" in result.output, report
    assert reason in result.output, report
