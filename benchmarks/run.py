"""Benchmarks of plugin-packaging against the recipe and the tools it replaces.

    python benchmarks/run.py [--runs 9] [--workdir DIR] [--json results.json]

Builds its own checkouts (see trees.py), then measures, each as the median of `--runs` runs
alternated with its baseline in this process:

- copy-plugins-native, first install (post-install check included), against the recipe;
- copy-plugins-native with nothing changed, against the recipe's own re-run (it copies all again);
- copy-plugins-native after one plugin was rebuilt, against the no-op run plus one `cp`;
- check-plugins-native and package-plugins-native, when those tasks exist;
- `plugin-packaging --list` and the start-up costs under every command.

Each figure prints its median, the middle half of its runs, the ratio against its baseline, the
target, and the peak resident size of the tool and of the baseline. Run it with the Python of the
environment the tool is installed in; `--tool` names another `plugin-packaging` executable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # trees.py and measure.py

from measure import Runner, Series, SeriesResult, python_environment
from trees import STREAMKIT_PLUGINS, Tree, build_tree, wide_plugins

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024
#: The plugin rebuilt in the "one plugin rebuilt" figure: a mid-sized speech plugin.
REBUILT_PLUGIN = "whisper"


@dataclass(frozen=True)
class Target:
    """What a figure must meet, and a check of the measured medians against it."""

    text: str
    met: Callable[[dict[str, float]], bool]


@dataclass
class Figure:
    """One line of the report: a command, its baseline, the ratio, the target."""

    name: str
    results: list[SeriesResult]
    target: Target | None
    note: str = ""

    @property
    def medians(self) -> dict[str, float]:
        return {r.label: r.median for r in self.results}

    @property
    def ratio(self) -> float | None:
        if len(self.results) < 2:
            return None
        return self.results[0].median / self.results[1].median


# --- preparing each run (untimed) -------------------------------------------------------------


def remove_and_sync(*paths: Path) -> Callable[[], None]:
    """Start from nothing installed, with earlier writes flushed so they do not bill this run."""

    def prepare() -> None:
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
        os.sync()

    return prepare


def sync() -> None:
    os.sync()


def relink(library: Path) -> Callable[[], None]:
    """Simulate a rebuild: a new file (new inode and mtime) whose ELF build-id differs.

    A linker writes a new output file, and the build-id note near its start changes with any
    change of content; flipping a byte there, in a fresh copy renamed over the old file, is what
    the tool sees after `cargo build` relinked the plugin.
    """
    offset = _build_id_offset(library)

    def prepare() -> None:
        fresh = library.with_name(library.name + ".relink")
        shutil.copyfile(library, fresh)
        os.chmod(fresh, 0o755)
        with open(fresh, "r+b") as handle:
            handle.seek(offset)
            byte = handle.read(1)
            handle.seek(offset)
            handle.write(bytes([byte[0] ^ 0xFF]))
        os.replace(fresh, library)
        os.sync()

    return prepare


def _build_id_offset(library: Path) -> int:
    from elftools.elf.elffile import ELFFile

    with open(library, "rb") as handle:
        section = ELFFile(handle).get_section_by_name(".note.gnu.build-id")
        # The note: namesz, descsz, type (4 bytes each), then "GNU\0", then the id itself.
        return section["sh_offset"] + 16


# --- the figures ------------------------------------------------------------------------------


class Bench:
    """The trees, the commands and the settings shared by every figure."""

    def __init__(self, executable: Path, workdir: Path, runs: int, rebuild: bool) -> None:
        self.executable = str(executable)
        self.python = str(_python_of(executable))
        self.runs = runs
        print(
            f"building the benchmark trees in {workdir} (reused when already built)...", flush=True
        )
        self.streamkit = build_tree(
            "streamkit", workdir / "streamkit", STREAMKIT_PLUGINS, rebuild=rebuild
        )
        self.wide = build_tree("wide", workdir / "wide", wide_plugins(), rebuild=rebuild)
        self.scratch = workdir / "scratch"
        self.scratch.mkdir(exist_ok=True)
        self.runner = Runner(workdir)
        self.env = python_environment(workdir / "pycache")
        self.tasks = self._task_names()

    def _task_names(self) -> set[str]:
        listing = subprocess.run(
            [self.executable, "--list"], capture_output=True, text=True, check=True, env=self.env
        ).stdout
        return {
            line.split()[0]
            for line in listing.splitlines()
            if line.startswith("  ") and line.split()
        }

    def tool(
        self, label: str, args: Sequence[str], cwd: Path, prepare: Callable[[], None] = sync
    ) -> Series:
        """A series running `plugin-packaging ARGS`."""
        return Series(label, [self.executable, *args], cwd, prepare, self.env)

    def interpreter(self, label: str = "python", code: str = "pass") -> Series:
        """A series running `python -c CODE` with the tool's interpreter."""
        return Series(label, [self.python, "-c", code], self.scratch, sync, self.env)

    def recipe(self, tree: Tree, prepare: Callable[[], None] = sync) -> Series:
        """The recipe, into `.plugins-recipe` so that it never meets the tool's copy."""
        argv = ["bash", str(tree.root / "copy-plugins-native.sh"), ".plugins-recipe"]
        return Series("recipe", argv, tree.root, prepare)

    def set_up(self, *args: str, cwd: Path) -> None:
        """Run the tool untimed, to put a tree in the state a figure starts from."""
        subprocess.run(
            [self.executable, *args], cwd=cwd, env=self.env, check=True, capture_output=True
        )

    def run(self, series: Sequence[Series]) -> list[SeriesResult]:
        return self.runner.measure(series, self.runs)

    # Copying -----------------------------------------------------------------------------------

    def install_first(self, tree: Tree) -> Figure:
        ours, theirs, floor = (
            tree.root / name for name in (".plugins", ".plugins-recipe", ".plugins-floor")
        )
        libraries = [str(tree.root / spec.artifact) for spec in tree.plugins]
        results = self.run(
            [
                self.tool("tool", ["copy-plugins-native"], tree.root, remove_and_sync(ours)),
                self.recipe(tree, remove_and_sync(theirs)),
                self.tool(
                    "tool --no-check",
                    ["copy-plugins-native", "--no-check"],
                    tree.root,
                    remove_and_sync(ours),
                ),
                Series(
                    "floor",
                    [self.python, str(HERE / "floor.py"), str(floor), *libraries],
                    tree.root,
                    remove_and_sync(floor),
                    self.env,
                ),
            ]
        )
        target = Target("<= 1.5x the recipe", lambda m: m["tool"] <= 1.5 * m["recipe"])
        return Figure(
            f"copy-plugins-native, first install ({tree.name})",
            results,
            target,
            "post-install check included",
        )

    def install_noop(self, tree: Tree) -> Figure:
        self._installed(tree)
        results = self.run(
            [
                self.tool("tool", ["copy-plugins-native"], tree.root),
                self.recipe(tree),
                self.tool("tool --no-check", ["copy-plugins-native", "--no-check"], tree.root),
            ]
        )
        target = Target("<= 0.75x the recipe's re-run", lambda m: m["tool"] <= 0.75 * m["recipe"])
        return Figure(
            f"copy-plugins-native, nothing changed ({tree.name})",
            results,
            target,
            "the recipe's re-run copies everything again",
        )

    def install_one_rebuilt(self, tree: Tree, plugin_id: str) -> Figure:
        self._installed(tree)
        library = tree.library(plugin_id)
        old_copy = self.scratch / "one-library" / library.name
        results = self.run(
            [
                self.tool("tool", ["copy-plugins-native"], tree.root, relink(library)),
                self.recipe(tree),
                self.tool(
                    "tool --no-check",
                    ["copy-plugins-native", "--no-check"],
                    tree.root,
                    relink(library),
                ),
                # The two parts of the target, measured in the same rounds: a run with nothing to
                # do (every relink above is installed by the run right after it), and `cp` replacing
                # an older copy of the library.
                self.tool("no-op", ["copy-plugins-native"], tree.root),
                Series(
                    "cp one",
                    ["cp", str(library), str(old_copy)],
                    tree.root,
                    _old_copy_of(library, old_copy),
                ),
            ]
        )
        target = Target("<= no-op + cp one", lambda m: m["tool"] <= m["no-op"] + m["cp one"])
        size = library.stat().st_size / MIB
        return Figure(
            f"copy-plugins-native, {plugin_id} rebuilt ({tree.name})",
            results,
            target,
            f"{plugin_id} is {size:.0f} MiB",
        )

    def _installed(self, tree: Tree) -> None:
        """Both copies in place, so that a re-run finds them."""
        self.set_up("copy-plugins-native", cwd=tree.root)
        subprocess.run(self.recipe(tree).argv, cwd=tree.root, check=True, capture_output=True)

    # Checking and packaging ------------------------------------------------------------------

    def check(self, tree: Tree, limit: float) -> Figure:
        self._installed(tree)
        results = self.run(
            [
                self.tool("tool", ["check-plugins-native", "--root", str(tree.root)], tree.root),
                self.interpreter(),
            ]
        )
        target = Target(f"< {limit:g} s", lambda m: m["tool"] < limit)
        return Figure(
            f"check-plugins-native ({tree.name})",
            results,
            target,
            "baseline: the interpreter starting and exiting",
        )

    def package(self, tree: Tree, level: int) -> Figure:
        self._installed(tree)
        ours = self.scratch / "bundles-tool"
        theirs = self.scratch / "bundles-tar"
        script = self._tar_script(tree, theirs, level)
        package = ["package-plugins-native", "--root", str(tree.root), "--out", str(ours)]
        results = self.run(
            [
                self.tool("tool", package, tree.root, remove_and_sync(ours)),
                Series("tar --zstd", ["bash", str(script)], tree.root, remove_and_sync(theirs)),
            ]
        )
        first = _digests(ours)
        remove_and_sync(ours)()
        self.set_up(*package, cwd=tree.root)
        reproducible = first == _digests(ours) and bool(first)
        target = Target(
            "<= tar --zstd at the same level, reproducible",
            lambda m: m["tool"] <= m["tar --zstd"] and reproducible,
        )
        return Figure(
            f"package-plugins-native ({tree.name})",
            results,
            target,
            f"zstd level {level}; two runs give identical archives: {'yes' if reproducible else 'NO'}",
        )

    def _tar_script(self, tree: Tree, dest: Path, level: int) -> Path:
        """One reproducible `tar --zstd` per installed bundle, as StreamKit's builder runs it."""
        native = tree.root / ".plugins" / "native"
        lines = ["set -euo pipefail", f'mkdir -p "{dest}"']
        for spec in tree.plugins:
            lines.append(
                f"tar --sort=name --mtime=@315532800 --owner=0 --group=0 --numeric-owner "
                f'-I "zstd -{level}" -cf "{dest}/{spec.id}-{spec.version}-bundle.tar.zst" '
                f'-C "{native / spec.id}" .'
            )
        script = self.scratch / f"tar-{tree.name}.sh"
        script.write_text("\n".join(lines) + "\n")
        return script

    # Start-up --------------------------------------------------------------------------------

    def listing(self) -> Figure:
        results = self.run([self.tool("tool", ["--list"], self.scratch), self.interpreter()])
        return Figure(
            "plugin-packaging --list",
            results,
            Target("< 0.2 s", lambda m: m["tool"] < 0.2),
            "baseline: the interpreter starting and exiting",
        )

    def startup(self) -> Figure:
        """Where start-up goes: the interpreter, invoke alone, and what each task imports."""
        results = self.run(
            [
                self.interpreter("python"),
                self.interpreter("import invoke", "import invoke"),
                self.interpreter("+ yaml, jinja2", "import invoke, yaml, jinja2"),
                self.interpreter("cli module", "import plugin_packaging.cli"),
            ]
        )
        return Figure(
            "start-up (python -c ...)",
            results,
            None,
            "what each command pays before doing anything",
        )


def _old_copy_of(library: Path, copy: Path) -> Callable[[], None]:
    """An installed copy from before the rebuild, for `cp` to replace."""

    def prepare() -> None:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(library, copy)
        os.sync()

    return prepare


def _digests(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        return {}
    digests = {}
    for path in sorted(directory.rglob("*.tar.zst")):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digests[str(path.relative_to(directory))] = digest.hexdigest()
    return digests


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _python_of(tool: Path) -> Path:
    """The interpreter a console script runs with (its `#!` line), for the start-up baselines."""
    with open(tool, "rb") as handle:
        first = handle.readline().decode().strip()
    if first.startswith("#!"):
        return Path(first[2:].split()[0])
    return Path(sys.executable)


# --- report -----------------------------------------------------------------------------------


def render(figure: Figure) -> list[str]:
    lines = [figure.name + (f"  ({figure.note})" if figure.note else "")]
    for result in figure.results:
        low, high = result.spread
        lines.append(
            f"    {result.label:<16} {result.median * 1000:8.1f} ms   [{low * 1000:.0f}-{high * 1000:.0f}]"
            f"   CPU {result.cpu_median * 1000:6.1f} ms   peak RSS {result.peak_rss / MIB:6.1f} MiB"
        )
    verdict = ""
    if figure.target is not None:
        verdict = f"target {figure.target.text}: {'met' if figure.target.met(figure.medians) else 'MISSED'}"
    ratio = (
        f"ratio {figure.ratio:.2f}x {figure.results[1].label}" if figure.ratio is not None else ""
    )
    lines.append("    " + "   ".join(part for part in (ratio, verdict) if part))
    return lines


def as_json(figure: Figure) -> dict[str, object]:
    return {
        "name": figure.name,
        "note": figure.note,
        "ratio": figure.ratio,
        "target": figure.target.text if figure.target else None,
        "met": figure.target.met(figure.medians) if figure.target else None,
        "series": [
            {
                "label": r.label,
                "argv": list(r.argv),
                "median_s": r.median,
                "quartiles_s": list(r.spread),
                "peak_rss_bytes": r.peak_rss,
                "cpu_median_s": r.cpu_median,
                "runs_s": [s.seconds for s in r.samples],
            }
            for r in figure.results
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="timed runs per command (default 9)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "plugin-packaging-benchmarks",
        help="where the trees are built and kept between runs",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild the trees even when they exist"
    )
    parser.add_argument(
        "--tool",
        type=Path,
        default=Path(sys.executable).parent / "plugin-packaging",
        help="the plugin-packaging executable to measure",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only figures whose name contains this text (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--level", type=int, default=3, help="zstd level of the package figure (default 3)"
    )
    args = parser.parse_args(argv)
    if not args.tool.exists():
        parser.error(
            f"{args.tool} does not exist; install the project (pip install -e .) or pass --tool"
        )

    bench = Bench(args.tool, args.workdir.resolve(), args.runs, args.rebuild)
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"load average {_load()} (other work on the machine inflates every figure; ratios suffer less)"
    )
    print(
        f"streamkit tree: {len(bench.streamkit.plugins)} plugins, {bench.streamkit.total_size / MIB:.0f} MiB; "
        f"wide tree: {len(bench.wide.plugins)} plugins, {bench.wide.total_size / MIB:.0f} MiB; "
        f"{args.runs} runs each, medians\n",
        flush=True,
    )

    def wanted(name: str) -> bool:
        return not args.only or any(text in name for text in args.only)

    plan: list[tuple[str, Callable[[], Figure]]] = []
    for tree in (bench.streamkit, bench.wide):
        plan.append(
            (
                f"copy-plugins-native, first install ({tree.name})",
                lambda t=tree: bench.install_first(t),
            )
        )
        plan.append(
            (
                f"copy-plugins-native, nothing changed ({tree.name})",
                lambda t=tree: bench.install_noop(t),
            )
        )
    plan.append(
        (
            f"copy-plugins-native, {REBUILT_PLUGIN} rebuilt (streamkit)",
            lambda: bench.install_one_rebuilt(bench.streamkit, REBUILT_PLUGIN),
        )
    )
    if "check-plugins-native" in bench.tasks:
        plan.append(("check-plugins-native (streamkit)", lambda: bench.check(bench.streamkit, 0.4)))
        plan.append(("check-plugins-native (wide)", lambda: bench.check(bench.wide, 1.0)))
    else:
        print("check-plugins-native: no such task yet, not measured\n")
    if "package-plugins-native" in bench.tasks:
        plan.append(
            (
                "package-plugins-native (streamkit)",
                lambda: bench.package(bench.streamkit, args.level),
            )
        )
    else:
        print("package-plugins-native: no such task yet, not measured\n")
    plan.append(("plugin-packaging --list", bench.listing))
    plan.append(("start-up (python -c ...)", bench.startup))

    figures = []
    for name, make in plan:
        if not wanted(name):
            continue
        figure = make()
        figures.append(figure)
        print("\n".join(render(figure)) + "\n", flush=True)
    print(f"load average at the end: {_load()}")
    if args.json:
        args.json.write_text(json.dumps([as_json(f) for f in figures], indent=2) + "\n")
    missed = [f.name for f in figures if f.target is not None and not f.target.met(f.medians)]
    if missed:
        print("targets missed: " + "; ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
