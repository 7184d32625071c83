"""The real `plugin-packaging` command line, run in the test's own process.

In-process runs are fast and see the tool exactly as a user's shell does: the same argument
parsing, settings, messages and exit status. Tests that need a separate process (signals,
confinement, an installed wheel) start one with `subprocess` instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from plugin_packaging.cli import program


def run_in_process(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    """Run `plugin-packaging *args` (in `cwd` when given); return its exit status and all it
    printed, stdout and stderr together as a terminal shows them."""
    out = io.StringIO()
    previous = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                program.run(["plugin-packaging", *args], exit=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(previous)
    return code, out.getvalue()


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed `plugin-packaging` console script in a child process, as a shell or a
    CI runner does: its own stdout (a pipe, not a terminal) and stderr, its exit status.

    The environment is this one without the variables that change output (colour, GitHub's
    step summary) unless `env` sets them.
    """
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("NO_COLOR", "FORCE_COLOR", "GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS")
    }
    environment.update(env or {})
    command = Path(sys.executable).parent / "plugin-packaging"
    return subprocess.run(
        [str(command), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


#: The name the program-surface tests use for `run_cli`.
run_command = run_cli
