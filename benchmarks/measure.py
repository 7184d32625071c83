"""Timing commands fairly: alternate each command with its baseline, take medians, record peak RSS.

A benchmark figure here is a set of series (the tool's command, its baseline, sometimes a
reference such as "copy one library") run round by round, in a rotating order, in this one
process: whatever the machine does meanwhile (writeback, another job, frequency changes) falls on
all of them alike, and the ratio of the medians is what the targets are about.

Every run goes through `launch`, a few lines of C compiled on first use: it forks, execs the
command, and reports the wall time from fork to exit and the child's peak resident size from
`wait4`. A small launcher is needed for the memory figure: a child forked straight from this
Python process would inherit its resident size as its own high-water mark, and bash's would
read ~20 MiB where it uses 3.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_LAUNCHER_SOURCE = r"""
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* launch RESULT_FILE COMMAND [ARGS...]: run COMMAND, write "<seconds> <peak RSS KiB> <CPU seconds>". */
int main(int argc, char **argv)
{
    struct timespec start, end;
    struct rusage usage;
    int status;
    pid_t pid;
    FILE *result;

    if (argc < 3)
        return 125;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pid = fork();
    if (pid < 0)
        return 126;
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        _exit(127);
    }
    if (wait4(pid, &status, 0, &usage) < 0)
        return 126;
    clock_gettime(CLOCK_MONOTONIC, &end);
    result = fopen(argv[1], "w");
    if (result == NULL)
        return 126;
    fprintf(result, "%.9f %ld %.6f\n",
            (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9,
            usage.ru_maxrss,
            (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
                + (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6);
    fclose(result);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}
"""


class CommandFailed(RuntimeError):
    """A benchmarked command exited with an error: its figure would mean nothing."""


@dataclass(frozen=True)
class Sample:
    seconds: float
    #: Peak resident set size of the child (and of its children, for bash), in bytes.
    peak_rss: int
    #: User plus system CPU time of the child and its children: less disturbed than the wall
    #: time by other work on the machine, and it shows how much of a run is parallel.
    cpu_seconds: float


@dataclass(frozen=True)
class Series:
    """One command measured repeatedly; `prepare` runs untimed before every run."""

    label: str
    argv: Sequence[str]
    cwd: Path
    prepare: Callable[[], None] = lambda: None
    env: dict[str, str] | None = None


@dataclass
class SeriesResult:
    label: str
    argv: Sequence[str]
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def spread(self) -> tuple[float, float]:
        """The lower and upper quartile (the middle half of the runs), to show how noisy it was."""
        times = sorted(s.seconds for s in self.samples)
        if len(times) < 4:
            return times[0], times[-1]
        quartiles = statistics.quantiles(times, n=4)
        return quartiles[0], quartiles[2]

    @property
    def peak_rss(self) -> int:
        return max(s.peak_rss for s in self.samples)

    @property
    def cpu_median(self) -> float:
        return statistics.median(s.cpu_seconds for s in self.samples)


class Runner:
    """Runs commands under the launcher compiled into `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.launcher = workdir / "launch"
        source = workdir / "launch.c"
        if (
            not self.launcher.exists()
            or not source.exists()
            or source.read_text() != _LAUNCHER_SOURCE
        ):
            source.write_text(_LAUNCHER_SOURCE)
            subprocess.run(["cc", "-O2", "-o", str(self.launcher), str(source)], check=True)

    def run_once(self, series: Series) -> Sample:
        """Run the command once; raise `CommandFailed` with its output when it fails."""
        with tempfile.TemporaryFile() as output, tempfile.NamedTemporaryFile("r") as result:
            code = subprocess.run(
                [str(self.launcher), result.name, *series.argv],
                cwd=series.cwd,
                env=series.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            ).returncode
            if code != 0:
                output.seek(0)
                text = output.read().decode("utf-8", "replace")
                raise CommandFailed(
                    f"`{' '.join(series.argv)}` (in {series.cwd}) exited with {code}:\n{text}"
                )
            seconds, peak_kib, cpu = result.read().split()
        return Sample(float(seconds), int(peak_kib) * 1024, float(cpu))  # ru_maxrss is in KiB

    def measure(
        self, series: Sequence[Series], runs: int, *, warmup: int = 1
    ) -> list[SeriesResult]:
        """Run every series `runs` times, alternating; the first `warmup` rounds are not kept.

        The order rotates every round (A B C, B C A, C A B...), so no series always runs right
        after a particular other one, whose leftovers (dirty pages being written back) it would
        inherit.
        """
        results = [SeriesResult(s.label, s.argv) for s in series]
        for round_number in range(warmup + runs):
            shift = round_number % len(series)
            order = list(range(len(series)))[shift:] + list(range(len(series)))[:shift]
            for index in order:
                series[index].prepare()
                sample = self.run_once(series[index])
                if round_number >= warmup:
                    results[index].samples.append(sample)
        return results


def python_environment(pycache: Path) -> dict[str, str]:
    """The environment for Python commands: bytecode cached, as in an installed tool.

    With PYTHONDONTWRITEBYTECODE set (common in containers) an editable install would compile
    every module on every run; the bytecode goes to `pycache` instead of the source tree.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env
