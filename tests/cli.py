"""The real `plugin-packaging` command line, run in the test's own process.

In-process runs are fast and see the tool exactly as a user's shell does: the same argument
parsing, settings, messages and exit status. Tests that need a separate process (signals,
confinement, an installed wheel) start one with `subprocess` instead.
"""

from __future__ import annotations

import contextlib
import io
import os
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
