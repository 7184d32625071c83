"""Installing built plugins into `P/native/<id>/`: plan, stage, swap, and skip what is unchanged.

Each plugin goes through three steps. *Plan* decides from cheap facts first: when the signatures
(size, mtime, inode) of every input (source manifest, Cargo.toml files, library, template) and of
the installed files equal those recorded by the last run, the plugin is up to date and nothing is
parsed, rendered or read. Otherwise the library and the manifest are looked at separately:

- the library is compared with the installed copy (or known equal from the recorded signatures)
  and, when it differs, copied into the staging area at once, on a worker thread;
- meanwhile this thread produces the `plugin.yml` text: the one recorded last time when none of
  its inputs changed (a rebuilt library needs no template rendering), else freshly rendered.

*Stage* completes the new bundle (the library, byte for byte, and the generated `plugin.yml`) in
the staging area, and *swap* exchanges it with the live directory (see `swap.py`). A failure in
one plugin is reported on its line and never touches another plugin or the old copy of itself.

The order is chosen for speed: the copies are the expensive part and release the GIL, so they
start before the template engine is imported, largest library first, and overlap with the
rendering; a run that finds nothing changed parses no YAML, renders nothing and reads no library.
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from plugin_packaging._fs.files import (
    LIBRARY,
    copy_new_file,
    open_input,
    open_regular_file,
    write_new_file,
)
from plugin_packaging._fs.swap import discard, new_bundle_dir, park, recover_staging, swap_in
from plugin_packaging.contract import MANIFEST_NAME
from plugin_packaging.errors import PackagingError, display_path, from_os_error
from plugin_packaging.install.state import (
    Checkout,
    InstallState,
    ManifestRecord,
    PluginRecord,
    Signature,
    entry_signature,
    file_signature,
    stat_signature,
)
from plugin_packaging.rules.model import Finding
from plugin_packaging.settings import Settings
from plugin_packaging.sources.artifacts import Artifact, locate_artifact
from plugin_packaging.sources.scan import PluginSource, SourceScan, scan_sources, select_sources
from plugin_packaging.target import Target

if TYPE_CHECKING:
    from concurrent.futures import Future

    from plugin_packaging.binary.dynlinks import DependencyResolver

#: The packaged template's file name (`manifest.TEMPLATE_NAME`), repeated here so that a run with
#: nothing to render does not import the manifest module.
_TEMPLATE_FILE = "plugin.yml.j2"

Action = Literal["install", "update", "up-to-date", "not-built", "failed", "orphaned", "remove"]


@dataclass(frozen=True)
class PluginAction:
    """What happens (or, in a dry run, would happen) to one plugin."""

    id: str
    action: Action
    version: str | None = None
    library: str | None = None
    size: int = 0
    #: A line for the person: what was looked for, why it was skipped, what failed.
    detail: str | None = None
    error: PackagingError | None = None
    warnings: tuple[PackagingError, ...] = ()


@dataclass(frozen=True)
class InstallReport:
    """Everything a run did, for the report and the exit status."""

    actions: tuple[PluginAction, ...]
    scan_errors: tuple[PackagingError, ...] = ()
    scan_warnings: tuple[PackagingError, ...] = ()
    repairs: tuple[str, ...] = ()
    dry_run: bool = False
    #: Ids whose bundle changed in this run, for a check that looks only at what changed.
    changed: tuple[str, ...] = ()
    #: Changed bundles whose verdict this run already recorded from the check of the staged
    #: bundle (the same files, renamed into place): the check afterwards need not read them.
    prechecked: tuple[str, ...] = ()

    @property
    def to_check(self) -> tuple[str, ...]:
        """The changed bundles the check after the install still has to read."""
        return tuple(name for name in self.changed if name not in self.prechecked)

    @property
    def failed(self) -> bool:
        return bool(self.scan_errors) or any(a.action == "failed" for a in self.actions)


@dataclass(frozen=True)
class _ManifestText:
    """The generated `plugin.yml` of one plugin, and what was noticed while generating it."""

    text: str
    version: str
    warnings: tuple[PackagingError, ...] = ()


@dataclass
class _Work:
    """One plugin the quick check could not clear: what is known about it so far."""

    source: PluginSource
    artifact: Artifact
    target: Path
    inputs: dict[str, Any]
    recorded: PluginRecord | None
    #: Signatures of the installed bundle's entries, None when there is no bundle.
    installed: dict[str, Signature] | None
    manifest: _ManifestText | None = None
    #: True when the installed library already holds the built bytes.
    library_same: bool = False
    #: The staging directory holding the copied library, when it had to be copied.
    staged: Path | None = None
    error: PackagingError | None = None
    library_job: Future[None] | None = None


@dataclass
class _RunInputs:
    """Signatures every plugin of one run shares, taken once instead of once per plugin."""

    template: Signature
    #: The checkout this run installs for: the owner of what it installs.
    checkout: Checkout
    #: Ids whose existing `native/<id>/` this run may take over although no run installed it.
    adopt: frozenset[str] | Literal["all"] = frozenset()
    #: Install bundles the checker refuses anyway (`--force`).
    force: bool = False
    #: Cargo.toml signatures by directory, filled as crates are met (workspace inheritance
    #: makes every Cargo.toml between a crate and the root an input).
    cargo: dict[str, Signature] = field(default_factory=dict)


def install_plugins(
    settings: Settings,
    *,
    only: Sequence[str] = (),
    dry_run: bool = False,
    require_all: bool = False,
    force: bool = False,
    adopt: Sequence[str] | Literal["all"] = (),
) -> InstallReport:
    """Install every built plugin (or those named by `only`) into `settings.native_dir`.

    Each new bundle is checked in staging before it is swapped in: one the checker grades an
    error (the loader would refuse it) is not installed and the installed copy is kept, unless
    `force`, which installs it anyway with a warning saying so. `adopt` names ids (or "all")
    whose `native/<id>/` this tool did not create and may replace.
    """
    adopting: frozenset[str] | Literal["all"] = adopt if adopt == "all" else frozenset(adopt)
    if dry_run:
        return _placed(_run(settings, only, True, require_all, force, adopting))
    if only:
        # A mistyped id is a usage error: found before the lock creates the plugin directory.
        select_sources(scan_sources(settings), only)
    from plugin_packaging._fs.lock import DirectoryLock
    from plugin_packaging.output import tell_on_stderr

    with DirectoryLock(settings.state_dir, on_wait=tell_on_stderr):
        report = _run(settings, only, False, require_all, force, adopting)
    return _placed(report)


def _placed(report: InstallReport) -> InstallReport:
    """Give each plugin's manifest errors and warnings the line of the key they are about, so
    messages say `plugin.yml:3:10` and annotations land on that line (only when there are any)."""
    problems = [p for a in report.actions for p in (a.error, *a.warnings) if p is not None]
    if any(p.key is not None for p in problems):
        from plugin_packaging._fs.yamlio import placed_at_key

        for problem in problems:
            placed_at_key(problem)
    return report


def _run(
    settings: Settings,
    only: Sequence[str],
    dry_run: bool,
    require_all: bool,
    force: bool,
    adopt: frozenset[str] | Literal["all"],
) -> InstallReport:
    staging = settings.state_dir / "staging"
    repairs: list[str] = []
    if not dry_run:
        _ensure_plugins_dir(settings)
        try:
            repairs = recover_staging(staging, settings.native_dir)
        except OSError as exc:
            raise PackagingError(
                "staging-unusable",
                f"could not clear what an interrupted run left: {exc.strerror or exc}",
                Path(exc.filename) if exc.filename else staging,
                hint=f"remove {display_path(staging)} by hand (`rm -rf`); it holds only "
                "leftovers of this tool, and no installed plugin",
            ) from None
    state = InstallState.load(settings.state_dir)
    scan = scan_sources(settings, cache=state.sources)
    selected = select_sources(scan, only)
    required = set(only) | ({s.id for s in selected} if require_all else set())
    run_inputs = _RunInputs(
        template=file_signature(settings.template or _packaged_template()),
        checkout=Checkout.of(settings.root),
        adopt=adopt,
        force=force,
    )
    check = _StagedCheck(settings)
    actions = _carry_out(settings, selected, state, staging, dry_run, required, run_inputs, check)
    if not only:
        actions += _orphans(settings, scan, state, staging, dry_run, run_inputs.checkout)
    warnings = list(scan.warnings)
    changed = tuple(a.id for a in actions if a.action in ("install", "update", "remove"))
    prechecked: tuple[str, ...] = ()
    if not dry_run and check.findings:
        # Imported here, as the checker is: a run that swapped nothing in never loads it.
        from plugin_packaging.install.verdicts import record_verdicts

        swapped = {name: check.findings[name] for name in changed if name in check.findings}
        prechecked = record_verdicts(settings, state, swapped)
    if not dry_run:
        # Only this checkout's manifests are dropped when gone: another checkout sharing the
        # plugins directory keeps its cache.
        live = {str(p) for p in _manifest_paths(scan)}
        inside = str(settings.root) + os.sep
        state.sources = {
            k: v for k, v in state.sources.items() if k in live or not k.startswith(inside)
        }
        try:
            state.save(settings.state_dir)
        except PackagingError as problem:
            # Only a cache is lost (`state-not-saved`): the plugins are installed or failed on
            # their own lines, and the next run compares bytes instead of signatures.
            warnings.append(problem)
    return InstallReport(
        actions=tuple(actions),
        scan_errors=scan.errors,
        scan_warnings=tuple(warnings),
        repairs=tuple(repairs),
        dry_run=dry_run,
        changed=changed,
        prechecked=prechecked,
    )


def _ensure_plugins_dir(settings: Settings) -> None:
    try:
        settings.native_dir.mkdir(parents=True, exist_ok=True)
        (settings.state_dir / "staging").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise from_os_error(
            exc,
            settings.plugins_dir,
            "create the plugin directory",
            kept="the installed plugins were not changed",
        ) from None


def _manifest_paths(scan: SourceScan) -> Iterable[Path]:
    return (s.manifest_path for s in scan.sources if s.manifest_path is not None)


# --- carrying out ----------------------------------------------------------------------------


def _carry_out(
    settings: Settings,
    sources: list[PluginSource],
    state: InstallState,
    staging: Path,
    dry_run: bool,
    required: set[str],
    run_inputs: _RunInputs,
    check: _StagedCheck,
) -> list[PluginAction]:
    """Plan every plugin, do the work the plan leaves, and return the actions in source order."""
    actions: dict[str, PluginAction] = {}
    work: list[_Work] = []
    for source in sources:
        try:
            outcome = _quick_plan(settings, source, state, run_inputs, required)
        except PackagingError as exc:
            outcome = PluginAction(source.id, "failed", error=exc)
        if isinstance(outcome, _Work):
            work.append(outcome)
        else:
            actions[source.id] = outcome
    if work:
        _do_work(settings, work, staging, dry_run)
        actions.update(
            (w.source.id, _finish(check, w, state, staging, dry_run, run_inputs)) for w in work
        )
    return [actions[source.id] for source in sources]


def _quick_plan(
    settings: Settings,
    source: PluginSource,
    state: InstallState,
    run_inputs: _RunInputs,
    required: set[str],
) -> PluginAction | _Work:
    """Settle a plugin from signatures alone (not built, up to date) or hand it on as work."""
    artifact = locate_artifact(
        settings.root,
        source,
        settings.platform,
        settings.allowed_source_dirs,
        profile=settings.profile,
    )
    if not artifact.exists:
        return _not_built(settings, source, artifact, required)
    inputs = _input_signatures(settings, source, artifact, run_inputs)
    # Another checkout's record of this id describes its own files: never a shortcut here.
    ours = state.owners.get(source.id) == run_inputs.checkout
    recorded = state.plugins.get(source.id) if ours else None
    target = settings.native_dir / source.id
    installed = _installed_signatures(target)
    if recorded is not None and recorded.inputs == inputs and recorded.installed == installed:
        return PluginAction(
            source.id, "up-to-date", recorded.version, artifact.file_name, artifact.size
        )
    return _Work(source, artifact, target, inputs, recorded, installed)


def _do_work(settings: Settings, work: list[_Work], staging: Path, dry_run: bool) -> None:
    """Look at (and copy) the libraries on worker threads while this one makes the manifests."""
    from concurrent.futures import ThreadPoolExecutor

    # Largest first: the biggest copy bounds the run, so it must not start last.
    by_size = sorted(work, key=lambda w: w.artifact.size, reverse=True)
    with ThreadPoolExecutor(max_workers=max(1, min(settings.jobs, len(work)))) as pool:
        for item in by_size:
            item.library_job = pool.submit(_prepare_library, item, staging, dry_run)
        for item in work:
            try:
                item.manifest = _manifest_for(settings, item)
            except PackagingError as exc:
                item.error = exc
        for item in work:
            assert item.library_job is not None
            try:
                item.library_job.result()
            except PackagingError as exc:
                item.error = item.error or exc


def _finish(
    check: _StagedCheck,
    item: _Work,
    state: InstallState,
    staging: Path,
    dry_run: bool,
    run_inputs: _RunInputs,
) -> PluginAction:
    """Decide what the work came to, and swap the new bundle in when there is one and the
    checker accepts it (or `--force`)."""
    source, artifact, manifest = item.source, item.artifact, item.manifest
    if item.error is None and manifest is not None:
        item.error = _unmanaged(item, state, manifest, run_inputs)
    if item.error is not None or manifest is None:
        if item.staged is not None:
            discard(item.staged)
        warnings = manifest.warnings if manifest else ()
        version = manifest.version if manifest else None
        return PluginAction(source.id, "failed", version, error=item.error, warnings=warnings)
    base: dict[str, Any] = {
        "id": source.id,
        "version": manifest.version,
        "library": artifact.file_name,
        "size": artifact.size,
        "warnings": manifest.warnings,
    }
    if item.library_same and _installed_matches(item, manifest):
        if not dry_run:
            _remember(state, item, manifest, run_inputs.checkout)
        return PluginAction(action="up-to-date", **base)
    action: Action = "update" if os.path.lexists(item.target) else "install"
    if dry_run:
        return PluginAction(action=action, **base)
    try:
        staged = _complete_bundle(item, manifest, staging)
        errors = check.errors(item, staged)
        if errors and not run_inputs.force:
            discard(staged)
            raise _refusal(errors, item.target, forced=False)
        if errors:
            base["warnings"] = (*manifest.warnings, _refusal(errors, item.target, forced=True))
        try:
            swap_in(staged, item.target)
        except OSError as exc:
            discard(staged)
            raise from_os_error(
                exc,
                item.target,
                "replace the installed bundle",
                kept="the installed plugins were not changed",
            ) from None
    except PackagingError as exc:
        return PluginAction(
            source.id, "failed", manifest.version, error=exc, warnings=manifest.warnings
        )
    _remember(state, item, manifest, run_inputs.checkout)
    return PluginAction(action=action, **base)


class _StagedCheck:
    """The checker's per-bundle rules over each staged bundle of one run, as `native/<id>/` will
    be (findings name the files there); the system's library cache is read once per run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.resolver: DependencyResolver | None = None
        #: Every finding of each staged bundle, by the name it is swapped in under: the checker
        #: would find the same in `native/<id>/` (same files, renamed), so the check after the
        #: install takes them as that bundle's verdict instead of reading its library again.
        self.findings: dict[str, tuple[Finding, ...]] = {}

    def errors(self, item: _Work, staged: Path) -> list[Finding]:
        """What the checker grades an error in the staged bundle, after the settings."""
        # Imported here: a run with nothing to install never loads the checker.
        from plugin_packaging.binary.dynlinks import DependencyResolver
        from plugin_packaging.check.run import check_bundle_directory

        if self.resolver is None:
            self.resolver = DependencyResolver(cwd=self.settings.root)
        findings = check_bundle_directory(
            staged,
            item.source.id,
            target=Target.of(self.settings.platform),
            root=self.settings.root,
            rule_overrides=self.settings.rules,
            shown_as=item.target,
            resolver=self.resolver,
        )
        self.findings[item.target.name] = findings
        return [f for f in findings if f.severity == "error"]


def _refusal(errors: list[Finding], target: Path, *, forced: bool) -> PackagingError:
    """The checker's errors on a new bundle as one message: why it was not installed (the old
    copy kept), or, with --force, that it was installed anyway."""
    listed = "; ".join(f"[{f.code}] {f.message}" for f in errors)
    if forced:
        return PackagingError(
            "installed-despite-errors",
            f"installed with --force although the loader will refuse it: {listed}",
            errors[0].path,
            hint=errors[0].hint,
        )
    kept = "the installed copy is kept" if os.path.lexists(target) else "nothing was installed"
    return PackagingError(
        "bundle-refused",
        f"not installed, the loader would refuse it: {listed}; {kept}",
        errors[0].path,
        hint=f"{errors[0].hint} (or pass --force to install it anyway)",
    )


def _unmanaged(
    item: _Work, state: InstallState, manifest: _ManifestText, run_inputs: _RunInputs
) -> PackagingError | None:
    """The refusal to replace a `native/<id>/` that no run of this tool created, or None.

    Such a directory may hold a marketplace install or the user's own files: it is never emptied
    or deleted unless `--adopt` says so. One that already holds exactly what would be installed
    is taken over silently (nothing in it is lost): that is how bundles are recognised again
    after the state file was deleted.
    """
    plugin_id = item.source.id
    if (
        plugin_id in state.owners
        or not os.path.lexists(item.target)
        or run_inputs.adopt == "all"
        or plugin_id in run_inputs.adopt
        or (item.library_same and _installed_matches(item, manifest))
    ):
        return None
    return PackagingError(
        "bundle-unmanaged",
        f"native/{plugin_id} was not created by this tool (no install recorded it), and "
        "installing would replace what it holds; it was left untouched",
        item.target,
        hint=f"move it away to keep its files, or take it over with `--adopt {plugin_id}` "
        "(its content is replaced by the built plugin)",
    )


def _not_built(
    settings: Settings, source: PluginSource, artifact: Artifact, required: set[str]
) -> PluginAction:
    looked_for = artifact.looked_for
    error = artifact.absence_error(required=source.id in required)
    if error is not None:
        return PluginAction(source.id, "failed", detail=looked_for, error=error)
    installed = settings.native_dir / source.id
    if os.path.lexists(installed):
        looked_for += "; the installed copy is kept"
    return PluginAction(source.id, "not-built", detail=looked_for)


# --- the library -----------------------------------------------------------------------------


def _prepare_library(item: _Work, staging: Path, dry_run: bool) -> None:
    """On a worker: find out whether the installed library has the built bytes; copy when not."""
    item.library_same = _library_known_same(item) or _installed_library_same(item)
    if item.library_same or dry_run:
        return
    try:
        item.staged = new_bundle_dir(staging, item.source.id)
        copy_new_file(item.artifact.path, item.staged / item.artifact.file_name, 0o755)
    except OSError as exc:
        raise from_os_error(
            exc,
            item.artifact.path,
            f"stage {item.source.id}",
            kept="the installed plugins were not changed",
        ) from None
    if file_signature(item.artifact.path) != item.inputs["library"]:
        raise PackagingError(
            "artifact-changed-during-copy",
            "changed while it was being copied (is a build still running?)",
            item.artifact.path,
            hint="wait for the build to finish and run the command again",
        )


def _library_known_same(item: _Work) -> bool:
    """True when the signatures prove it: the built library and the installed copy are both
    exactly as they were when the last run copied one to the other (only the manifest side
    changed, e.g. an edited plugin.yml)."""
    recorded, installed = item.recorded, item.installed
    name = item.artifact.file_name
    if (
        recorded is None
        or installed is None
        or installed.get(name) is None
        or os.path.islink(item.target)
    ):
        return False
    return (
        recorded.library == name
        and recorded.inputs.get("library") == item.inputs["library"]
        and recorded.installed.get(name) == installed[name]
    )


def _installed_library_same(item: _Work) -> bool:
    """Compare the bytes; only when the installed file could be equal (same name and size, and
    the mode every library we install has: a `chmod 000` one must be replaced)."""
    if item.installed is None or os.path.islink(item.target):
        return False
    signature = item.installed.get(item.artifact.file_name)
    if signature is None or signature[0] != item.artifact.size or not _has_mode(signature, 0o755):
        return False
    try:
        return _same_bytes(item.artifact.path, item.target / item.artifact.file_name)
    except OSError:
        return False


def _same_bytes(built: Path, installed: Path) -> bool:
    """Compare two files block by block; stops at the first difference (a relinked library's
    build-id sits in its first page, so a rebuild is usually told apart after one block)."""
    chunk = 1 << 20
    # Never wait on a named pipe put where the library was: not a regular file raises OSError.
    with open_input(built, LIBRARY) as a, open_regular_file(installed) as b:
        while True:
            block = a.read(chunk)
            if block != b.read(chunk):
                return False
            if not block:
                return True


def _has_mode(signature: Signature, permissions: int) -> bool:
    """True for the signature of a regular file with exactly these permission bits."""
    return (
        signature is not None
        and stat.S_ISREG(signature[3])
        and stat.S_IMODE(signature[3]) == permissions
    )


# --- the manifest ----------------------------------------------------------------------------


def _manifest_for(settings: Settings, item: _Work) -> _ManifestText:
    """The `plugin.yml` text: recorded by the last run when its inputs are unchanged, else rendered."""
    recorded = item.recorded.manifest if item.recorded is not None else None
    if recorded is not None and recorded.inputs == _manifest_inputs(item):
        return _ManifestText(recorded.text, recorded.version, recorded.warnings)
    return _render_manifest(settings, item)


def _render_manifest(settings: Settings, item: _Work) -> _ManifestText:
    from plugin_packaging.sources.cargo import read_crate
    from plugin_packaging.sources.plugin_yml import generate_manifest, render_manifest

    source = item.source
    crate = read_crate(source.crate_dir, stop_at=settings.root) if source.crate_dir else None
    manifest = generate_manifest(
        source.data,
        origin=source.origin,
        origin_path=source.manifest_path or Path(source.origin),
        entrypoint=item.artifact.file_name,
        crate=crate,
        rule_overrides=settings.rules,
    )
    text = render_manifest(manifest, settings.template)
    return _ManifestText(text, manifest.version, manifest.warnings)


def _manifest_inputs(item: _Work) -> dict[str, Any]:
    """What the generated manifest depends on: every input but the library's bytes, and its name."""
    inputs = {key: value for key, value in item.inputs.items() if key != "library"}
    inputs["entrypoint"] = item.artifact.file_name
    return inputs


def _installed_matches(item: _Work, manifest: _ManifestText) -> bool:
    """True when the bundle holds exactly the library and this manifest, nothing else."""
    expected = sorted([item.artifact.file_name, MANIFEST_NAME])
    if item.installed is None or sorted(item.installed) != expected or os.path.islink(item.target):
        return False
    signature = item.installed[MANIFEST_NAME]
    if not _has_mode(signature, 0o644):
        return False
    recorded = item.recorded
    if (
        recorded is not None
        and recorded.installed.get(MANIFEST_NAME) == signature
        and recorded.manifest.text == manifest.text
    ):
        return True  # the installed file is the one the last run wrote with this very text
    wanted = manifest.text.encode("utf-8")
    try:
        with open_regular_file(item.target / MANIFEST_NAME) as handle:
            return handle.read(len(wanted) + 1) == wanted
    except OSError:  # missing, unreadable, or not a regular file: rewrite it
        return False


# --- staging and the state -------------------------------------------------------------------


def _complete_bundle(item: _Work, manifest: _ManifestText, staging: Path) -> Path:
    """The staged bundle: the copied library (or a link to the unchanged installed one) and the
    manifest."""
    staged = item.staged
    try:
        if staged is None:
            # The library is unchanged (only the manifest or a stray file differs): link the
            # installed copy instead of copying it again. It is never written in place, so
            # sharing its inode is safe; a file system without hard links gets a copy.
            staged = new_bundle_dir(staging, item.source.id)
            _reuse_installed_library(item.target / item.artifact.file_name, staged)
        write_new_file(staged / MANIFEST_NAME, manifest.text.encode("utf-8"), 0o644)
    except OSError as exc:
        if staged is not None:
            discard(staged)
        raise from_os_error(
            exc,
            item.target,
            f"stage {item.source.id}",
            kept="the installed plugins were not changed",
        ) from None
    return staged


def _reuse_installed_library(installed: Path, staged: Path) -> None:
    """Put the unchanged installed library into the staged bundle: a hard link when it is a
    plain file of ours (one link, mode 0755 already), else a copy given mode 0755.

    Nothing is ever done through what the bundle holds: a symlink there is refused (ELOOP), never
    followed, and a file with other links (one that is also a file elsewhere) is copied, not
    linked and chmodded, so no mode change can reach a file outside the bundle.
    """
    placed = staged / installed.name
    info = os.lstat(installed)
    if stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and stat.S_IMODE(info.st_mode) == 0o755:
        try:
            os.link(installed, placed, follow_symlinks=False)
            linked = os.lstat(placed)
            if (linked.st_ino, linked.st_dev) == (info.st_ino, info.st_dev):
                return
            os.unlink(placed)  # replaced between the two looks: copy what is there instead
        except OSError:
            pass  # no hard links on this file system
    copy_new_file(installed, placed, 0o755, follow_symlinks=False)


def _remember(
    state: InstallState, item: _Work, manifest: _ManifestText, checkout: Checkout
) -> None:
    state.owners[item.source.id] = checkout
    state.plugins[item.source.id] = PluginRecord(
        inputs=item.inputs,
        installed=_installed_signatures(item.target) or {},
        version=manifest.version,
        library=item.artifact.file_name,
        manifest=ManifestRecord(
            inputs=_manifest_inputs(item),
            text=manifest.text,
            version=manifest.version,
            warnings=manifest.warnings,
        ),
    )


def _input_signatures(
    settings: Settings, source: PluginSource, artifact: Artifact, run_inputs: _RunInputs
) -> dict[str, Any]:
    """Signatures of everything the installed bundle is made from."""
    inputs: dict[str, Any] = {
        "library": stat_signature(artifact.stat) if artifact.stat else None,
        "platform": settings.platform,
        "template": run_inputs.template,
    }
    if source.manifest_path is not None:
        inputs["manifest"] = file_signature(source.manifest_path)
    else:
        inputs["declaration"] = repr(sorted(source.data.items()))
    if source.crate_dir is not None:
        inputs["cargo"] = tuple(_cargo_signatures(settings, source.crate_dir, run_inputs))
    return inputs


def _cargo_signatures(
    settings: Settings, crate_dir: Path, run_inputs: _RunInputs
) -> list[Signature]:
    """The crate's Cargo.toml and every one above it up to the root, where an inherited
    `version.workspace = true` may be resolved; directories shared by many crates are
    looked at once per run. (Plain strings: pathlib's parents and comparisons cost more than
    the stat calls on a tree of 200 plugins.)"""
    root = str(settings.root)
    directory = str(crate_dir)
    signatures = []
    while True:
        if directory not in run_inputs.cargo:
            run_inputs.cargo[directory] = file_signature(os.path.join(directory, "Cargo.toml"))
        signatures.append(run_inputs.cargo[directory])
        if directory == root or not directory.startswith(root + os.sep):
            return signatures
        directory = os.path.dirname(directory)


def _packaged_template() -> Path:
    # The `templates` package is the repository's templates/ directory (package-dir in
    # pyproject.toml), which mypy cannot follow from a plain import.
    templates = importlib.import_module("plugin_packaging.templates")
    return Path(templates.__path__[0]) / _TEMPLATE_FILE


def _installed_signatures(target: Path) -> dict[str, Signature] | None:
    """Signatures of every entry of an installed bundle (symlinks not followed: a library
    replaced by a link has another signature), or None when there is no bundle."""
    try:
        names = os.listdir(target)
    except OSError:
        return None
    directory = str(target)
    return {name: entry_signature(os.path.join(directory, name)) for name in sorted(names)}


# --- orphans ---------------------------------------------------------------------------------


def _orphans(
    settings: Settings,
    scan: SourceScan,
    state: InstallState,
    staging: Path,
    dry_run: bool,
    checkout: Checkout,
) -> list[PluginAction]:
    """Bundles this checkout installed whose source it no longer declares: kept, or removed with
    prune.

    Only the state's validated records say what is ours (each id one safe name, so
    `native/<id>` is a directory entry right below native/), and only this checkout's: a bundle
    another checkout installed into a shared plugins directory is its business. A source that
    could not be read is not gone: the bundle of each name it may stand for (`scan.unresolved`)
    is left alone, and when a directory that may hold any number of sources could not be listed,
    no bundle is called an orphan (`--prune` would delete live plugins).
    """
    current = {s.id for s in scan.sources} | scan.unresolved
    actions = []
    for plugin_id in sorted(state.owned_by(checkout) - current):
        target = settings.native_dir / plugin_id
        if not os.path.lexists(target):
            if not dry_run:
                state.forget(plugin_id)
            continue
        if not scan.complete:
            continue
        record = state.plugins.get(plugin_id)
        version = record.version if record is not None else None
        if not settings.prune:
            actions.append(
                PluginAction(
                    plugin_id,
                    "orphaned",
                    version,
                    detail="installed earlier, no source declares it now; --prune removes it",
                )
            )
            continue
        if not dry_run:
            try:
                discard(park(target, staging))
            except OSError as exc:
                error = from_os_error(exc, target, f"remove the orphaned bundle {plugin_id}")
                actions.append(PluginAction(plugin_id, "failed", version, error=error))
                continue
            state.forget(plugin_id)
        actions.append(PluginAction(plugin_id, "remove", detail="no source declares it any more"))
    return actions
