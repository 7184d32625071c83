"""Building plugin sources: which command builds each one, running it, and saying what built.

Each plugin source gets one `BuildStep`, decided in this order:

1. `plugins.build_commands.<id>` in settings: a string runs in the shell at the root (so
   `cmake -B build && cmake --build build` works), a list runs as an argument vector.
2. A `Cargo.toml` in the source's crate directory: `cargo build --manifest-path ...` with
   `CARGO_TARGET_DIR` set to the part of the `artifact` path before its `release/` or `debug/`
   component, so the library lands where the declaration says (`target/plugins` for official
   plugins, the crate's own `target` for examples).
3. A Makefile (`GNUmakefile`, `makefile`, `Makefile`) in that directory: `make -C <dir>`.

With an accelerator (`--accelerator cuda`, a release's CUDA pass), only the plugins that list it
in `accelerators` (or declare `artifact_<accelerator>`) are built, as StreamKit's
build_official_plugins_cuda.sh does: cargo with `--features <accelerator>` when the crate has
that feature, into `artifact_<accelerator>` when declared, else in place of `artifact`.

Steps run one after another (cargo parallelises inside a build, and the official plugins share
one target directory and its lock anyway). The tool's output is streamed as it comes; the end of
a failed build's output is kept for the summary, so that the error is visible after 16 plugins
have scrolled by. One failed plugin never stops the others.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TextIO

from plugin_packaging.errors import PackagingError
from plugin_packaging.settings import PROFILES, Profile, Settings
from plugin_packaging.sources.artifacts import artifact_path, with_profile
from plugin_packaging.sources.scan import PluginSource, SourceScan, scan_sources, select_sources

Recipe = Literal["cargo", "make", "command"]
BuildStatus = Literal["built", "failed", "planned"]

#: GNU make's own lookup order for a makefile in a directory.
MAKEFILE_NAMES = ("GNUmakefile", "makefile", "Makefile")
#: Lines of a failed build's output kept for the summary.
ERROR_EXCERPT_LINES = 6

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# What compilers and build tools print on the line that matters: `error[E0425]: ...`,
# `volume.c:3:1: error: ...`, `make: *** [Makefile:9: build/libx.so] Error 1`.
_ERROR_LINE = re.compile(r"(^|\s|:)(error|fatal error)(\[[A-Z0-9]+\])?:|\*\*\*", re.IGNORECASE)


@dataclass(frozen=True)
class BuildStep:
    """How one plugin is built: the command, where it runs, and what it must produce."""

    plugin_id: str
    recipe: Recipe
    #: An argument vector, or one string that the shell runs (a declared build command).
    command: tuple[str, ...] | str
    cwd: Path
    #: Variables set on top of the inherited environment (CARGO_TARGET_DIR for cargo, and
    #: `plugins.build_env.<id>`); None removes an inherited one.
    env: Mapping[str, str | None]
    #: The library the step must leave behind, for the profile built.
    output: Path
    #: Why this command: the declaration a person would edit to change it.
    origin: str

    def display(self, root: Path) -> str:
        """The command as a person would type it at the root."""
        if isinstance(self.command, str):
            return self.command
        import shlex

        words = [shlex.quote(_shown(root, word)) for word in self.command]
        prefix = [
            f"{name}={shlex.quote(_shown(root, value))}"
            for name, value in sorted(self.env.items())
            if value is not None
        ]
        unset = [f"-u {name}" for name, value in sorted(self.env.items()) if value is None]
        if unset:
            prefix = ["env", *unset, *prefix]
        return " ".join(prefix + words)


@dataclass(frozen=True)
class BuildResult:
    """What happened to one plugin."""

    plugin_id: str
    status: BuildStatus
    step: BuildStep | None = None
    #: The tool's exit status, when it ran.
    returncode: int | None = None
    error: PackagingError | None = None
    #: The lines of the tool's output that explain a failure.
    excerpt: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildPlan:
    """Every step to run, and the plugins that cannot be built at all (with why)."""

    profile: Profile
    steps: tuple[BuildStep, ...]
    unbuildable: tuple[BuildResult, ...] = ()
    scan_errors: tuple[PackagingError, ...] = ()
    warnings: tuple[PackagingError, ...] = ()
    #: The selected plugin ids in discovery order, which the report keeps.
    order: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildReport:
    """Everything a build run did, one result per selected plugin in discovery order."""

    profile: Profile
    results: tuple[BuildResult, ...]
    scan_errors: tuple[PackagingError, ...] = ()
    warnings: tuple[PackagingError, ...] = ()
    dry_run: bool = False
    #: Stopped by Ctrl-C: the steps after the interrupted one did not run.
    interrupted: bool = False

    @property
    def built(self) -> tuple[str, ...]:
        return tuple(r.plugin_id for r in self.results if r.status == "built")

    @property
    def failed(self) -> bool:
        return bool(self.scan_errors) or any(r.status == "failed" for r in self.results)


# --- planning --------------------------------------------------------------------------------


def plan_builds(
    settings: Settings,
    *,
    only: Sequence[str] = (),
    profile: Profile = "release",
    jobs: int | None = None,
    scan: SourceScan | None = None,
    accelerator: str | None = None,
) -> BuildPlan:
    """Decide how every plugin source (or those named by `only`) is built; run nothing.

    With `accelerator`, the plugins that declare it, built for it (see the module's doc).
    """
    if profile not in PROFILES:
        raise PackagingError(
            "bad-profile", f"unknown build profile {profile!r}", hint="use release or debug"
        )
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise PackagingError("bad-jobs", f"--jobs must be a positive integer, not {jobs!r}")
    scan = scan if scan is not None else scan_sources(settings)
    selected = select_sources(scan, only)
    if accelerator is not None:
        selected = [source for source in selected if declares_accelerator(source, accelerator)]
    steps: list[BuildStep] = []
    unbuildable: list[BuildResult] = []
    for source in selected:
        try:
            steps.append(
                build_step(settings, source, profile=profile, jobs=jobs, accelerator=accelerator)
            )
        except PackagingError as exc:
            unbuildable.append(BuildResult(source.id, "failed", error=exc))
    known = {s.id for s in scan.sources}
    warnings = [
        PackagingError(
            "build-command-unknown-plugin",
            f"plugins.build_commands names {plugin_id!r}, which no plugin source declares",
            hint="known ids: " + (", ".join(sorted(known)) or "none"),
        )
        for plugin_id in sorted(settings.build_commands)
        if plugin_id not in known
    ]
    return BuildPlan(
        profile,
        tuple(steps),
        tuple(unbuildable),
        scan.errors,
        (*scan.warnings, *warnings),
        tuple(s.id for s in selected),
    )


def declares_accelerator(source: PluginSource, accelerator: str) -> bool:
    """The plugin has a build for `accelerator`: listed in `accelerators`, or `artifact_<name>`."""
    listed = source.data.get("accelerators")
    return f"artifact_{accelerator}" in source.data or (
        isinstance(listed, list) and accelerator in listed
    )


def build_step(
    settings: Settings,
    source: PluginSource,
    *,
    profile: Profile,
    jobs: int | None,
    accelerator: str | None = None,
) -> BuildStep:
    """The one command that builds `source`; raises when nothing says how to build it."""
    if accelerator is not None:
        declared = source.data.get(f"artifact_{accelerator}")
        if isinstance(declared, str):
            # The accelerator's build goes where the release looks for it.
            source = replace(source, artifact=PurePosixPath(declared))
    step = _recipe_step(settings, source, profile=profile, jobs=jobs, accelerator=accelerator)
    extra_env = settings.build_env.get(source.id)
    if extra_env:
        return replace(step, env={**step.env, **extra_env})
    return step


def _recipe_step(
    settings: Settings,
    source: PluginSource,
    *,
    profile: Profile,
    jobs: int | None,
    accelerator: str | None,
) -> BuildStep:
    declared = artifact_path(source, settings.platform)
    command = settings.build_commands.get(source.id)
    if command is not None:
        return BuildStep(
            plugin_id=source.id,
            recipe="command",
            command=command,
            cwd=settings.root,
            env={},
            output=settings.root / declared,
            origin=f"plugins.build_commands.{source.id}",
        )
    crate_dir = source.crate_dir
    if crate_dir is not None and (crate_dir / "Cargo.toml").is_file():
        return _cargo_step(settings, source, declared, profile, jobs, accelerator)
    makefile = _makefile(crate_dir) if crate_dir is not None else None
    if makefile is not None and crate_dir is not None:
        argv = ["make", "-C", str(crate_dir)]
        if jobs is not None:
            argv += ["-j", str(jobs)]
        return BuildStep(
            plugin_id=source.id,
            recipe="make",
            command=tuple(argv),
            cwd=settings.root,
            env={},
            output=settings.root / declared,
            origin=_shown(settings.root, str(makefile)),
        )
    where = _shown(settings.root, str(crate_dir)) if crate_dir is not None else None
    looked = (
        f"{where} has no Cargo.toml or Makefile"
        if where
        else f"{source.origin} names no crate directory"
    )
    raise PackagingError(
        "build-recipe-missing",
        f"cannot tell how to build {source.id}: {looked}",
        source.manifest_path or Path(source.origin),
        hint=f'declare a command in invoke.yaml: plugins.build_commands: {{{source.id}: "make -C <dir>"}}',
    )


def cargo_target_dir(artifact: PurePosixPath) -> PurePosixPath | None:
    """The cargo target directory an artifact path implies: the part before `release/`/`debug/`.

    `target/plugins/release/libwhisper.so` -> `target/plugins`. None when the path has no such
    component (then the build output cannot have been laid out by cargo's profiles).
    """
    parents = artifact.parts[:-1]
    for index in range(len(parents) - 1, -1, -1):
        if parents[index] in PROFILES:
            return PurePosixPath(*parents[:index]) if index else PurePosixPath(".")
    return None


def _cargo_step(
    settings: Settings,
    source: PluginSource,
    declared: PurePosixPath,
    profile: Profile,
    jobs: int | None,
    accelerator: str | None = None,
) -> BuildStep:
    assert source.crate_dir is not None
    target = cargo_target_dir(declared)
    if target is None:
        raise PackagingError(
            "build-target-dir-unknown",
            f"cannot tell cargo's target directory from artifact {declared}: it has no `release/` "
            f"or `debug/` component",
            source.manifest_path or Path(source.origin),
            hint="point `artifact` at <target-dir>/release/<library>, or declare "
            f"plugins.build_commands.{source.id}",
        )
    manifest = source.crate_dir / "Cargo.toml"
    argv = ["cargo", "build", "--manifest-path", str(manifest)]
    if profile == "release":
        argv.append("--release")
    if jobs is not None:
        argv += ["-j", str(jobs)]
    if accelerator is not None:
        from plugin_packaging.sources.cargo import read_crate

        crate = read_crate(source.crate_dir, stop_at=settings.root)
        if crate is not None and accelerator in crate.features:
            argv += ["--features", accelerator]
    argv += settings.cargo_args
    return BuildStep(
        plugin_id=source.id,
        recipe="cargo",
        command=tuple(argv),
        cwd=source.crate_dir,
        env={"CARGO_TARGET_DIR": str(settings.root / target)},
        output=settings.root / with_profile(declared, profile),
        origin=_shown(settings.root, str(manifest)),
    )


def _makefile(directory: Path) -> Path | None:
    for name in MAKEFILE_NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


# --- running ---------------------------------------------------------------------------------


def build_plugins(
    settings: Settings,
    *,
    only: Sequence[str] = (),
    profile: Profile = "release",
    jobs: int | None = None,
    dry_run: bool = False,
    out: TextIO | None = None,
    accelerator: str | None = None,
    color: bool | None = None,
) -> BuildReport:
    """Build every plugin source (or those in `only`), streaming the tools' output to `out`.

    `color` asks the tools for coloured output (None: when `out` is a terminal and NO_COLOR is
    not set)."""
    out = out if out is not None else sys.stdout
    plan = plan_builds(settings, only=only, profile=profile, jobs=jobs, accelerator=accelerator)
    return run_plan(settings, plan, dry_run=dry_run, out=out, color=color)


def run_plan(
    settings: Settings,
    plan: BuildPlan,
    *,
    dry_run: bool = False,
    out: TextIO,
    color: bool | None = None,
) -> BuildReport:
    """Run the steps of `plan` in order; a failure is recorded and the next step runs."""
    results: list[BuildResult] = list(plan.unbuildable)
    total = len(plan.steps)
    interrupted = False
    for number, step in enumerate(plan.steps, 1):
        out.write(f"[{number}/{total}] {step.plugin_id}: {step.display(settings.root)}\n")
        out.flush()
        if dry_run:
            results.append(BuildResult(step.plugin_id, "planned", step))
            continue
        result = run_step(settings, step, out, color=color)
        results.append(result)
        if result.error is not None and result.error.code == "build-interrupted":
            interrupted = True
            break
    position = {plugin_id: index for index, plugin_id in enumerate(plan.order)}
    results.sort(key=lambda r: position.get(r.plugin_id, len(position)))
    return BuildReport(
        plan.profile, tuple(results), plan.scan_errors, plan.warnings, dry_run, interrupted
    )


def run_step(
    settings: Settings, step: BuildStep, out: TextIO, *, color: bool | None = None
) -> BuildResult:
    """Run one build step, copying its output to `out` as it arrives; check what it produced."""
    import subprocess

    env = {**os.environ}
    for name, value in step.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    if color is None:
        color = _is_terminal(out) and not os.environ.get("NO_COLOR")
    if color:
        # The output goes through a pipe; keep cargo's colours for a person at a terminal. A
        # CARGO_TERM_COLOR the user set, or NO_COLOR (which cargo honours), is left to cargo.
        env.setdefault("CARGO_TERM_COLOR", "always")
    shell = isinstance(step.command, str)
    try:
        process = subprocess.Popen(
            step.command,
            shell=shell,
            cwd=step.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except FileNotFoundError:
        tool = step.command.split()[0] if isinstance(step.command, str) else step.command[0]
        return BuildResult(
            step.plugin_id,
            "failed",
            step,
            error=PackagingError(
                "build-tool-missing",
                f"`{tool}` is not on PATH (needed to build {step.plugin_id}, from {step.origin})",
                hint=_install_hint(tool),
            ),
        )
    except OSError as exc:
        return BuildResult(
            step.plugin_id,
            "failed",
            step,
            error=PackagingError(
                "build-not-started", f"could not start the build: {exc.strerror or exc}", step.cwd
            ),
        )
    try:
        lines = _stream(process, out)
    except KeyboardInterrupt:
        # The tool got the same Ctrl-C from the terminal; make sure it is gone, then stop here.
        _stop(process)
        error = PackagingError(
            "build-interrupted", "interrupted (Ctrl-C); the plugins after it were not built"
        )
        return BuildResult(step.plugin_id, "failed", step, process.returncode, error)
    returncode = process.returncode
    if returncode != 0:
        reason = (
            f"exit status {returncode}" if returncode > 0 else f"killed by signal {-returncode}"
        )
        return BuildResult(
            step.plugin_id,
            "failed",
            step,
            returncode,
            PackagingError("build-failed", f"{reason}: {step.display(settings.root)}", hint=None),
            _excerpt(lines),
        )
    if not os.path.isfile(step.output):
        return BuildResult(
            step.plugin_id,
            "failed",
            step,
            returncode,
            PackagingError(
                "build-output-missing",
                f"the build succeeded but left no {_shown(settings.root, str(step.output))}",
                step.output,
                hint=_output_hint(settings, step),
            ),
        )
    return BuildResult(step.plugin_id, "built", step, returncode)


def _stream(process: Any, out: TextIO) -> deque[str]:
    """Copy the process's output to `out` chunk by chunk; return the lines worth showing later.

    Chunks, not lines: cargo rewrites its progress line in place, which a line reader would hold
    back until the build ends.
    """
    import codecs

    assert process.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    kept: deque[str] = deque(maxlen=200)
    partial = ""
    fd = process.stdout.fileno()
    while True:
        chunk = os.read(fd, 1 << 16)
        text = decoder.decode(chunk, final=not chunk)
        if text:
            out.write(text)
            out.flush()
            partial += text
            *complete, partial = re.split(r"\r\n|\n|\r", partial)
            kept.extend(complete)
        if not chunk:
            break
    process.stdout.close()
    process.wait()
    if partial:
        kept.append(partial)
    return kept


def _stop(process: Any) -> None:
    import subprocess

    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _excerpt(lines: deque[str]) -> tuple[str, ...]:
    """The error lines of a failed build's output, else its last lines."""
    plain = [_ANSI_ESCAPE.sub("", line).rstrip() for line in lines]
    errors = [line for line in plain if _ERROR_LINE.search(line)]
    chosen = (
        errors[:ERROR_EXCERPT_LINES]
        if errors
        else [line for line in plain if line][-ERROR_EXCERPT_LINES:]
    )
    return tuple(chosen)


def _output_hint(settings: Settings, step: BuildStep) -> str:
    if step.recipe == "cargo":
        from plugin_packaging.sources.cargo import read_crate

        try:
            crate = read_crate(step.cwd, stop_at=settings.root)
        except PackagingError:
            crate = None
        stem = crate.library_stem if crate is not None else None
        if stem is not None and stem not in step.output.name:
            return f"the crate's library is named {stem!r}; make `artifact` name it (or set [lib] name)"
        return "is CARGO_BUILD_TARGET set, or a [build] target in .cargo/config.toml? fix `artifact` to match"
    return "make the build write its library to the `artifact` path, or fix `artifact`"


def _install_hint(tool: str) -> str:
    if tool == "cargo":
        return "install Rust (https://rustup.rs) or put cargo on PATH"
    return f"install {tool} or put it on PATH"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _shown(root: Path, value: str) -> str:
    """A path inside the root as a relative path, anything else unchanged."""
    try:
        relative = Path(value).relative_to(root)
    except ValueError:
        return value
    return relative.as_posix() or "."


# --- rendering -------------------------------------------------------------------------------


def render_build_summary(report: BuildReport, root: Path) -> str:
    """The end of a build: a line per plugin, the error lines of each failure, and the counts."""
    lines = [error.render() for error in report.scan_errors]
    lines += [warning.render("warning") for warning in report.warnings]
    if report.dry_run:
        planned = sum(1 for r in report.results if r.status == "planned")
        lines.append(f"dry run: {planned} plugin(s) would be built ({report.profile} profile)")
        lines += [
            f"  cannot build {r.plugin_id}: {r.error.message}" for r in report.results if r.error
        ]
        return "\n".join(lines)
    lines.append(f"build summary ({report.profile} profile):")
    width = max((len(r.plugin_id) for r in report.results), default=0)
    for result in report.results:
        if result.status == "built" and result.step is not None:
            lines.append(
                f"  built   {result.plugin_id:<{width}}  {_shown(root, str(result.step.output))}"
            )
            continue
        lines.append(f"  FAILED  {result.plugin_id}")
        if result.error is not None:
            lines.extend("          " + line for line in result.error.render().splitlines())
        lines.extend("          | " + line for line in result.excerpt)
    built = sum(1 for r in report.results if r.status == "built")
    failed = sum(1 for r in report.results if r.status == "failed")
    counts = f"{built} built, {failed} failed" if failed else f"{built} built"
    if report.scan_errors:
        counts += f", {len(report.scan_errors)} source error(s)"
    if report.interrupted:
        counts += "; interrupted, the rest were not built"
    lines.append(counts if report.results or report.scan_errors else "no plugin sources found")
    return "\n".join(lines)


def build_document(report: BuildReport, root: Path) -> dict[str, Any]:
    """The versioned JSON document of a build (schema: schemas/build-report.v1.json)."""
    from plugin_packaging.output import document

    return document(
        "build",
        profile=report.profile,
        dry_run=report.dry_run,
        interrupted=report.interrupted,
        summary={
            "built": sum(1 for r in report.results if r.status == "built"),
            "failed": sum(1 for r in report.results if r.status == "failed"),
            "planned": sum(1 for r in report.results if r.status == "planned"),
            "source_errors": len(report.scan_errors),
        },
        plugins=[
            {
                "id": r.plugin_id,
                "status": r.status,
                "command": r.step.display(root) if r.step is not None else None,
                "output": _shown(root, str(r.step.output)) if r.step is not None else None,
                "returncode": r.returncode,
                "error": r.error.to_dict() if r.error is not None else None,
                "excerpt": list(r.excerpt),
            }
            for r in report.results
        ],
        source_errors=[e.to_dict() for e in report.scan_errors],
        warnings=[w.to_dict("warning") for w in report.warnings],
        failed=report.failed,
    )


def build_annotations(report: BuildReport) -> list[str]:
    """An annotation per problem: source errors on their manifests, each failed build with the
    compiler's error lines (on the file a compiler names, `volume.c:3:1: error: ...`)."""
    from plugin_packaging.output import problem_command, workflow_command

    lines = [problem_command(e) for e in report.scan_errors]
    lines += [problem_command(w, "warning") for w in report.warnings]
    for result in report.results:
        if result.status != "failed" or result.error is None:
            continue
        message = "\n".join((f"{result.plugin_id}: {result.error.message}", *result.excerpt))
        place = _compiler_place(result.excerpt, _tool_directories(result.step))
        if place is not None:
            path, line, column = place
            lines.append(
                workflow_command(
                    "error", message, path=path, line=line, column=column, title=result.error.code
                )
            )
        else:
            lines.append(
                workflow_command("error", message, path=result.error.path, title=result.error.code)
            )
    return lines


_COMPILER_PLACE = re.compile(r"^(?:\s*--> )?([^\s:][^:]*):(\d+):(\d+):?")


def _tool_directories(step: BuildStep | None) -> tuple[Path, ...]:
    """Where a build's compiler may have run: the step's directory, and `make -C DIR`'s."""
    if step is None:
        return ()
    directories = [step.cwd]
    words = step.command if isinstance(step.command, tuple) else ()
    for flag, value in itertools.pairwise(words):
        if flag == "-C":
            directories.append(step.cwd / value)
    return tuple(directories)


def _compiler_place(
    excerpt: tuple[str, ...], directories: tuple[Path, ...]
) -> tuple[Path, int, int] | None:
    """The first `file:line:column` a compiler printed (gcc `f.c:3:1: error`, rustc
    `  --> src/lib.rs:3:5`) that names an existing file, relative to where the tool ran."""
    for text in excerpt:
        match = _COMPILER_PLACE.match(text)
        if match is None:
            continue
        name = Path(match.group(1))
        candidates = [name] if name.is_absolute() else [d / name for d in directories]
        for path in candidates:
            if path.is_file():
                return path, int(match.group(2)), int(match.group(3))
    return None


def render_build_markdown(report: BuildReport, root: Path) -> str:
    """The build for a job's step summary: a row per plugin and the counts."""
    from plugin_packaging.output import markdown_table

    rows = [
        (
            r.plugin_id,
            r.status,
            _shown(root, str(r.step.output)) if r.step is not None else "",
            r.error.message if r.error is not None else "",
        )
        for r in report.results
    ]
    lines = [f"### Native plugin builds ({report.profile})", ""]
    lines += markdown_table(("plugin", "status", "library", "error"), rows)
    return "\n".join(lines) + "\n"
