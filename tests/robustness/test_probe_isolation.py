"""check-plugins-native --probe, end to end, against libraries whose constructors misbehave.

The libraries abort, hang, fork a child that outlives them, and write a file into their working
directory (fixturelib's ctor_* variants), next to a good one. The checker itself must stay up and
report each, within its time limit (the confined run's wall-clock limit is the bound: a probe that
waited for the hanging constructor would exceed it), leave no process of theirs behind, and no file
the constructors wrote anywhere in the checkout, the working directory or TMPDIR.
(tests/test_probe.py covers probe.py itself.)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml
from confined import changed, run_cli, snapshot
from fixturelib import CTOR_MARKER_NAME, NativeLibraries

PROBE_TIMEOUT = "2"
#: Generous for five probes of at most 2 s each run side by side, far below a hang.
RUN_LIMIT = 60.0
MISBEHAVING = ("ctor_abort", "ctor_hang", "ctor_fork", "ctor_write_file")


def _bundle(native: Path, variant: str, library: Path) -> None:
    bundle = native / variant
    bundle.mkdir(parents=True)
    shutil.copyfile(library, bundle / library.name)
    (bundle / "plugin.yml").write_text(
        yaml.safe_dump(
            {
                "id": variant.replace("_", "-"),
                "version": "1.0.0",
                "node_kind": "fixture_good",
                "kind": "native",
                "entrypoint": library.name,
            }
        )
    )


def _processes_mapping(fragment: str) -> list[int]:
    """Pids of live processes that have a file whose path holds `fragment` mapped."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/maps", encoding="utf-8", errors="replace") as maps:
                    if fragment in maps.read():
                        pids.append(int(entry))
            except OSError:
                continue  # gone, or not ours to read
    return pids


def test_probe_survives_aborting_hanging_forking_and_scribbling_constructors(
    native_libs: NativeLibraries, tmp_path: Path
) -> None:
    root = tmp_path / "streamkit"
    native = root / ".plugins" / "native"
    libraries = native_libs.as_dict()
    for variant in ("good_c", *MISBEHAVING):
        _bundle(native, variant, libraries[variant])
    cwd, scratch = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    before = snapshot(tmp_path)

    result = run_cli(
        ["check-plugins-native", "--root", root, "--probe", "--probe-timeout", PROBE_TIMEOUT],
        cwd=cwd,
        tmpdir=scratch,
        timeout=RUN_LIMIT,
    )

    report = result.describe()
    assert "Traceback" not in result.output, report
    assert result.code == 1, report
    lines = result.output.splitlines()

    def finding(code: str, library: str) -> bool:
        return any(f"error[{code}]" in line and library in line for line in lines)

    assert finding("probe-crashed", "libctor_abort.so"), report
    assert "SIGABRT" in result.output, report
    assert finding("probe-timed-out", "libctor_hang.so"), report
    # The others load in the probe and report their real kind (all share fixture_good, so the
    # loader keeps the first in its order and skips the rest as duplicates).
    probed = [line for line in lines if "(probed)" in line]
    for variant in ("good_c", "ctor_fork", "ctor_write_file"):
        assert any(f"lib{variant}.so" in line for line in probed), report
    # Nothing of theirs is left running, and nothing they wrote is left anywhere of ours.
    for variant in MISBEHAVING:
        library = (
            native / variant / f"lib{variant}.so"
        )  # this test's own copy: no other run maps it
        assert _processes_mapping(str(library)) == [], f"a process of {library.name} survived"
    assert changed(before, snapshot(tmp_path)) == [], report
    assert os.listdir(scratch) == [], f"the probe left {os.listdir(scratch)} in TMPDIR"
    assert not list(tmp_path.rglob(CTOR_MARKER_NAME)), "a constructor's file escaped the probe"
