"""The robustness suite's machinery: the real command line run as a confined subprocess, a small
checkout to break, and snapshots that prove what a run did not touch.

Every command runs as `python -c "...main()" <task> ...` in a child process with:

- a wall-clock limit (`subprocess.run(timeout=...)`): a hang fails the test instead of the suite;
- an address-space limit (RLIMIT_AS, 1 GiB): reading a 50 MiB manifest or expanding an alias bomb
  into memory fails the run instead of the machine;
- a strict UTF-8 stdout (PYTHONIOENCODING=utf-8): a file name that is not UTF-8 must be escaped
  by the tool, or printing it raises, as it would for a user with a UTF-8 locale;
- its own empty working directory and TMPDIR beside the tree, so stray writes are seen.

"Unreadable" needs care because the suite runs as root, and root ignores permission bits. The
runs that test it drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the child's capability
bounding set before exec (prctl PR_CAPBSET_DROP): the child keeps uid 0 and owns the whole tree,
but a mode-000 file or directory is then denied to it exactly as to its owner. That really denies
access (the test of the mechanism below proves it), and needs neither another user with access to
the interpreter nor a copy of the tree. As a non-root user nothing needs dropping.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from fixturelib import NativeLibraries

#: How each command of the corpus is spelled on the command line (`--root` is added).
COMMANDS = {
    "copy": "copy-plugins-native",
    "check": "check-plugins-native",
    "list": "list-plugins-native",
    "migrate": "migrate-plugins-native",
    "package": "package-plugins-native",
    "verify": "verify-plugin-bundles",
}
#: Commands that must write nothing at all; the others may write only below their own area.
READ_ONLY_COMMANDS = ("check", "list", "verify")

#: The child's address-space limit: generous for Python with a thread pool, far below a bomb.
ADDRESS_SPACE_LIMIT = 1 << 30
#: Wall-clock limit of one command; every case here finishes in well under a second or two.
COMMAND_TIMEOUT = 30.0

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2

_ENTRY = "from plugin_packaging.cli import main; main()"


@dataclass(frozen=True)
class RunResult:
    """What one command printed and how it ended."""

    args: tuple[str, ...]
    code: int
    output: str

    def describe(self) -> str:
        return f"$ plugin-packaging {' '.join(self.args)}\n(exit {self.code})\n{self.output}"


# Runs first in every child, as `python -I -S -c LAUNCHER <limit> <drop> <python> <args...>`: it sets
# the limits and execs the real command, so no Python code runs between fork and exec in this
# (multi-threaded) test process; limits and the capability bounding set survive the exec.
LAUNCHER = f"""
import os, resource, sys
limit, drop = int(sys.argv[1]), sys.argv[2] == "1"
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if drop and os.geteuid() == 0:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in ({_CAP_DAC_OVERRIDE}, {_CAP_DAC_READ_SEARCH}):
        if libc.prctl({_PR_CAPBSET_DROP}, capability, 0, 0, 0) != 0:
            raise SystemExit("launcher: prctl: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[3], sys.argv[3:])
"""


def confined(
    argv: list[str], *, drop_dac: bool = False, address_space: int = ADDRESS_SPACE_LIMIT
) -> list[str]:
    """`argv` (a program and its arguments) behind the launcher that limits it."""
    return [
        sys.executable,
        "-I",
        "-S",
        "-c",
        LAUNCHER,
        str(address_space),
        "1" if drop_dac else "0",
        *argv,
    ]


class CommandHung(AssertionError):
    """A command outlived its time limit; carries what it printed until it was killed."""


def child_environment(tmpdir: Path) -> dict[str, str]:
    """The environment of a command: ours, minus settings that would steer it, strict UTF-8 out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "PYTHON"))}
    env.update(PYTHONIOENCODING="utf-8", PYTHONDONTWRITEBYTECODE="1", TMPDIR=str(tmpdir))
    return env


def run_cli(
    args: list[str] | tuple[str, ...],
    *,
    cwd: Path,
    tmpdir: Path,
    drop_dac: bool = False,
    timeout: float = COMMAND_TIMEOUT,
    env: dict[str, str] | None = None,
) -> RunResult:
    """Run `plugin-packaging <args>` in a confined child process (see the module docstring)."""
    args = tuple(str(a) for a in args)
    try:
        completed = subprocess.run(
            confined([sys.executable, "-c", _ENTRY, *args], drop_dac=drop_dac),
            cwd=cwd,
            env=env if env is not None else child_environment(tmpdir),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        partial = (exc.stdout or b"") + (exc.stderr or b"")
        raise CommandHung(
            f"`plugin-packaging {' '.join(args)}` ran longer than {timeout}s:\n"
            + partial.decode("utf-8", "replace")[-3000:]
        ) from None
    output = (completed.stdout + completed.stderr).decode("utf-8", "replace")
    return RunResult(args, completed.returncode, output)


def available_tasks() -> frozenset[str]:
    """The task names `plugin-packaging --list` shows right now."""
    result = subprocess.run(
        [sys.executable, "-c", _ENTRY, "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return frozenset(
        line.split()[0]
        for line in result.stdout.splitlines()
        if line.startswith("  ") and line.split()
    )


# --- snapshots --------------------------------------------------------------------------------


Snapshot = dict[str, tuple[object, ...]]


def snapshot(top: Path, *, exclude: tuple[Path, ...] = ()) -> Snapshot:
    """Every entry below `top` (not following symlinks) with its type, mode and content.

    Regular files are hashed (content, not just mtime); symlinks record their target; FIFOs and
    devices are never opened. Subtrees in `exclude` are left out.
    """
    excluded = {os.fsencode(p) for p in exclude}
    result: Snapshot = {}
    base = os.fsencode(top)

    def walk(directory: bytes) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            result[_rel(directory, base)] = ("unlistable", exc.errno)
            return
        for entry in entries:
            path = entry.path
            if path in excluded:
                continue
            info = os.lstat(path)
            key = _rel(path, base)
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                result[key] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                result[key] = ("dir", mode)
                walk(path)
            elif stat.S_ISREG(info.st_mode):
                result[key] = ("file", mode, info.st_size, _digest(path))
            else:
                result[key] = ("special", stat.S_IFMT(info.st_mode), mode)

    walk(base)
    return result


def _rel(path: bytes, base: bytes) -> str:
    return os.fsdecode(os.path.relpath(path, base))


def _digest(path: bytes) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    """Paths that appeared, disappeared or changed between two snapshots."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# --- a small installed checkout -----------------------------------------------------------------


PLUGINS = ("alpha", "beta")


def source_manifest(plugin_id: str, **overrides: object) -> dict[str, object]:
    """A StreamKit-style source plugin.yml for one of the checkout's plugins."""
    data: dict[str, object] = {
        "id": plugin_id,
        "name": plugin_id.title(),
        "version": "0.1.0",
        "node_kind": f"{plugin_id}_kind",
        "kind": "native",
        "entrypoint": f"lib{plugin_id}.so",
        "artifact": f"target/plugins/release/lib{plugin_id}.so",
        "description": f"the {plugin_id} plugin",
        "license": "MPL-2.0",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def write_checkout(root: Path, libs: NativeLibraries) -> None:
    """Two plugins, alpha and beta, declared, built (real libraries) but not installed."""
    release = root / "target" / "plugins" / "release"
    release.mkdir(parents=True)
    for plugin_id, library in zip(PLUGINS, (libs.good_c, libs.good_c_other), strict=False):
        source = root / "plugins" / "native" / plugin_id
        source.mkdir(parents=True)
        (source / "plugin.yml").write_text(
            yaml.safe_dump(source_manifest(plugin_id), sort_keys=False)
        )
        (source / "Cargo.toml").write_text(
            f'[package]\nname = "{plugin_id}"\nversion = "0.1.0"\n\n[lib]\nname = "{plugin_id}"\n'
        )
        shutil.copyfile(library, release / f"lib{plugin_id}.so")
