"""The child half of the load probe: dlopen one plugin library and report on a private pipe.

This is the only code in the tool that runs plugin code, and it only ever runs in a throwaway
process. `plugin_packaging.check.probe` starts it as a standalone script:

    python -I -S probe_child.py LIBRARY REPORT_FD CPU_SECONDS PARENT_PID ENTRY_SYMBOL

`-I -S` keep the caller's environment variables, user site and site-packages out of the process,
so the script imports nothing but the standard library and never this package (which may not be
importable from an isolated interpreter); the entry symbol's name therefore comes from the parent
(`contract.ENTRY_SYMBOL`). Importing this module does nothing.

Protocol: one JSON object per line, written to the inherited file descriptor REPORT_FD (never to
stdout, which a library may flood and which the parent discards):

    {"event": "begin", "stage": "load" | "entry" | "metadata"}   before each stage starts
    {"event": "api", "version": N}                                 the entry function's table
    {"event": "kind", "hex": "..."}                                the kind's raw bytes
    {"event": "fail", "stage": S, "code": C, "detail": D}          a stage failed in a way the
                                                                   child could observe
    {"event": "done"}                                              every stage finished

A line is written before the work it announces, so when a library crashes, hangs or exits, the
last "begin" tells the parent where. The child judges nothing beyond what it must to carry on
(a NULL pointer cannot be followed); the parent decodes and judges the bytes.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

# A kind longer than this is not a node kind but a missing terminator; stop reading there.
MAX_KIND_BYTES = 4096

# Private writable memory (heap, anonymous mappings) a library may take while loading. Generous
# for real plugins, and RLIMIT_DATA rather than RLIMIT_AS so that large read-only mappings and
# address-space reservations (runtimes that reserve but do not touch) are not refused.
DATA_LIMIT_BYTES = 2 << 30
# Files the library writes land in the throwaway working directory; keep them bounded too.
FILE_SIZE_LIMIT_BYTES = 256 << 20

# Exit status when the report pipe itself is gone (the library closed or broke it).
REPORT_PIPE_LOST = 125

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


class ReportPipe:
    """The write end of the protocol pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        # Processes the library may exec must not hold the pipe open.
        os.set_inheritable(fd, False)

    def send(self, **fields: object) -> None:
        data = (json.dumps(fields, ensure_ascii=True) + "\n").encode("ascii")
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            os._exit(REPORT_PIPE_LOST)

    def fail(self, stage: str, code: str, detail: str = "") -> None:
        self.send(event="fail", stage=stage, code=code, detail=detail)


def confine(cpu_seconds: int, parent_pid: int) -> None:
    """Limits set before any plugin code runs; the parent's wall-clock limit is the main one."""
    import resource

    def lower(which: int, hard: int, soft: int | None = None) -> None:
        # Only ever lower a limit: an unprivileged process cannot raise its hard limit.
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY and current_hard < hard:
            hard = current_hard
        resource.setrlimit(which, (min(hard if soft is None else soft, hard), hard))

    # Aborting plugins must leave no core files behind.
    lower(resource.RLIMIT_CORE, 0)
    lower(resource.RLIMIT_DATA, DATA_LIMIT_BYTES)
    lower(resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT_BYTES)
    # A CPU limit still ends a spinning library if the parent is killed before its timer fires:
    # SIGXCPU at the soft limit, SIGKILL one second later.
    lower(resource.RLIMIT_CPU, cpu_seconds + 1, soft=cpu_seconds)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        # A sleeping library outlives no parent: the kernel kills us when the parent goes.
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # Some core_pattern pipes ignore RLIMIT_CORE; a non-dumpable process dumps nothing.
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before PDEATHSIG was armed
        os._exit(REPORT_PIPE_LOST)


def read_c_string(address: int, limit: int) -> bytes | None:
    """The bytes of the NUL-terminated string at `address`, or None without a NUL in `limit`."""
    out = bytearray()
    for offset in range(limit):
        byte = ctypes.c_ubyte.from_address(address + offset).value
        if byte == 0:
            return bytes(out)
        out.append(byte)
    return None


def probe(library: str, entry_symbol: str, report: ReportPipe) -> None:
    pointer_size = ctypes.sizeof(ctypes.c_void_p)

    report.send(event="begin", stage="load")
    try:
        # RTLD_NOW: unresolved symbols fail here, at load, not later inside a call.
        handle = ctypes.CDLL(library, mode=os.RTLD_NOW | os.RTLD_LOCAL)
    except OSError as error:
        report.fail("load", "probe-load-failed", str(error))
        return

    report.send(event="begin", stage="entry")
    try:
        entry = handle[entry_symbol]  # dlsym adds Mach-O's leading underscore itself
    except AttributeError:
        report.fail("entry", "probe-no-symbol")
        return
    entry.argtypes = []
    entry.restype = ctypes.c_void_p
    api = entry()
    if not api:
        report.fail("entry", "probe-null-api")
        return
    # CNativePluginAPI: u32 version, padded to pointer size, then get_metadata.
    report.send(event="api", version=ctypes.c_uint32.from_address(api).value)

    # get_metadata sits at the same place in every table version the spec knows, so it is read
    # whatever the version says: the kind names the plugin even when its version is refused.
    report.send(event="begin", stage="metadata")
    function = ctypes.c_void_p.from_address(api + pointer_size).value
    if not function:
        report.fail(
            "metadata", "probe-null-metadata", "the API table's get_metadata pointer is NULL"
        )
        return
    metadata = ctypes.CFUNCTYPE(ctypes.c_void_p)(function)()
    if not metadata:
        report.fail("metadata", "probe-null-metadata", "get_metadata returned NULL")
        return
    kind_address = ctypes.c_void_p.from_address(metadata).value  # CNodeMetadata.kind
    if not kind_address:
        report.fail("metadata", "probe-bad-kind", "kind is NULL")
        return
    kind = read_c_string(kind_address, MAX_KIND_BYTES)
    if kind is None:
        report.fail(
            "metadata", "probe-bad-kind", f"kind has no NUL terminator in {MAX_KIND_BYTES} bytes"
        )
        return
    report.send(event="kind", hex=kind.hex())
    report.send(event="done")


def main(argv: list[str]) -> None:
    library, report_fd, cpu_seconds, parent_pid, entry_symbol = argv[1:6]
    report = ReportPipe(int(report_fd))
    confine(int(cpu_seconds), int(parent_pid))
    probe(library, entry_symbol, report)
    # Leave without running the library's destructors or atexit handlers: the probe has its
    # answer, and what a library does on unload is not part of the question.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
