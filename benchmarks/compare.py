"""Two checkouts of plugin-packaging side by side: did a change make any figure slower?

    python benchmarks/compare.py --before /work/before/.venv/bin/plugin-packaging \
        [--after .venv/bin/plugin-packaging] [--runs 9] [--limit 1.10]

Both tools run on the same trees (those of run.py), in one process, round by round in a
rotating order (`measure.Runner`): whatever else the machine does falls on both alike. Each tool
installs into and packages to its own directories, so neither ever reads the other's state.
Prints one line per figure (first install, nothing changed, check, package) with both medians
and the ratio after/before; exits 1 when a ratio is above `--limit`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run.py, trees.py and measure.py

from measure import Runner, Series, SeriesResult, python_environment
from run import MIB, remove_and_sync, sync
from trees import STREAMKIT_PLUGINS, Tree, build_tree, wide_plugins


@dataclass(frozen=True)
class Tool:
    label: str  # "before" or "after"
    executable: Path

    def plugins_dir(self, tree: Tree) -> Path:
        return tree.root / f".plugins-{self.label}"

    def out_dir(self, tree: Tree) -> Path:
        return tree.root / f"dist-{self.label}"


@dataclass(frozen=True)
class Comparison:
    figure: str
    before: SeriesResult
    after: SeriesResult

    @property
    def ratio(self) -> float:
        return self.after.median / self.before.median


#: One figure: its name, and for a tool and a tree the arguments and the untimed preparation.
Case = tuple[str, Callable[[Tool, Tree], tuple[list[str], Callable[[], None]]]]


def first_install(tool: Tool, tree: Tree) -> tuple[list[str], Callable[[], None]]:
    target = tool.plugins_dir(tree)
    return ["copy-plugins-native", "--plugins-dir", str(target)], remove_and_sync(target)


def nothing_changed(tool: Tool, tree: Tree) -> tuple[list[str], Callable[[], None]]:
    return ["copy-plugins-native", "--plugins-dir", str(tool.plugins_dir(tree))], sync


def check(tool: Tool, tree: Tree) -> tuple[list[str], Callable[[], None]]:
    args = ["check-plugins-native", "--root", str(tree.root)]
    return [*args, "--plugins-dir", str(tool.plugins_dir(tree))], sync


def package(tool: Tool, tree: Tree) -> tuple[list[str], Callable[[], None]]:
    out = tool.out_dir(tree)
    return ["package-plugins-native", "--root", str(tree.root), "--out", str(out)], (
        remove_and_sync(out)
    )


def compare(
    runner: Runner,
    tools: Sequence[Tool],
    tree: Tree,
    name: str,
    case: Callable[[Tool, Tree], tuple[list[str], Callable[[], None]]],
    runs: int,
    env: dict[str, str],
) -> Comparison:
    series = []
    for tool in tools:
        args, prepare = case(tool, tree)
        series.append(Series(tool.label, [str(tool.executable), *args], tree.root, prepare, env))
    before, after = runner.measure(series, runs)
    return Comparison(f"{name} ({tree.name})", before, after)


def installed(tools: Sequence[Tool], tree: Tree, env: dict[str, str]) -> None:
    """Each tool's own copy in place (untimed), for the figures that start from one."""
    for tool in tools:
        args, _ = nothing_changed(tool, tree)
        subprocess.run(
            [str(tool.executable), *args], cwd=tree.root, env=env, check=True, capture_output=True
        )


def render(comparisons: Sequence[Comparison], limit: float) -> list[str]:
    width = max(len(c.figure) for c in comparisons)
    lines = [
        f"{'figure':<{width}}  {'before':>10}  {'after':>10}  {'after/before':>12}  "
        f"{'peak RSS before/after':>21}"
    ]
    for c in comparisons:
        verdict = "" if c.ratio <= limit else f"  SLOWER than {limit:.2f}x"
        rss = f"{c.before.peak_rss / MIB:.0f} / {c.after.peak_rss / MIB:.0f} MiB"
        lines.append(
            f"{c.figure:<{width}}  {c.before.median * 1000:8.1f}ms  {c.after.median * 1000:8.1f}ms"
            f"  {c.ratio:11.2f}x  {rss:>21}{verdict}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the old plugin-packaging")
    parser.add_argument(
        "--after",
        type=Path,
        default=Path(sys.executable).parent / "plugin-packaging",
        help="the new plugin-packaging (default: the one beside this Python)",
    )
    parser.add_argument("--runs", type=int, default=9, help="timed runs per command (default 9)")
    parser.add_argument(
        "--limit", type=float, default=1.10, help="largest allowed after/before (default 1.10)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "plugin-packaging-benchmarks",
        help="where the trees are built and kept between runs (shared with run.py)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only figures whose name contains this text (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    tools = [Tool("before", args.before.absolute()), Tool("after", args.after.absolute())]
    for tool in tools:
        if not tool.executable.exists():
            parser.error(f"--{tool.label} {tool.executable} does not exist")

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"building the benchmark trees in {workdir} (reused when already built)...", flush=True)
    trees = [
        build_tree("streamkit", workdir / "streamkit", STREAMKIT_PLUGINS, rebuild=False),
        build_tree("wide", workdir / "wide", wide_plugins(), rebuild=False),
    ]
    runner = Runner(workdir)
    env = python_environment(workdir / "pycache")
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load}; "
        f"{args.runs} runs each, medians\n  before: {tools[0].executable}\n  after:  "
        f"{tools[1].executable}\n",
        flush=True,
    )

    cases: list[tuple[Tree, Case, bool]] = []
    for tree in trees:
        cases.append((tree, ("copy-plugins-native, first install", first_install), False))
        cases.append((tree, ("copy-plugins-native, nothing changed", nothing_changed), True))
        cases.append((tree, ("check-plugins-native", check), True))
    cases.append((trees[0], ("package-plugins-native", package), True))

    comparisons = []
    for tree, (name, case), needs_install in cases:
        if args.only and not any(text in f"{name} ({tree.name})" for text in args.only):
            continue
        if needs_install:
            installed(tools, tree, env)
        comparison = compare(runner, tools, tree, name, case, args.runs, env)
        comparisons.append(comparison)
        print(render([comparison], args.limit)[-1], flush=True)

    print()
    print("\n".join(render(comparisons, args.limit)))
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "figure": c.figure,
                        "before_median_s": c.before.median,
                        "after_median_s": c.after.median,
                        "ratio": c.ratio,
                        "before_runs_s": [s.seconds for s in c.before.samples],
                        "after_runs_s": [s.seconds for s in c.after.samples],
                    }
                    for c in comparisons
                ],
                indent=2,
            )
            + "\n"
        )
    slower = [c.figure for c in comparisons if c.ratio > args.limit]
    if slower:
        print(f"slower than {args.limit:.2f}x: " + "; ".join(slower))
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
