"""Installing built plugins into `P/native/<id>/`: plan, stage, swap, and skip what is unchanged.

Each plugin goes through three steps. *Plan* decides, from cheap facts first: when the
signatures of every input (source manifest, Cargo.toml, library, template) and of the installed
files equal those recorded by the last run, the plugin is up to date and nothing is parsed,
rendered or read. Otherwise the manifest is generated and compared with what is installed.
*Stage* writes the new bundle (the library, byte for byte, and the generated `plugin.yml`) into
the staging area. *Swap* exchanges it with the live directory (see `swap.py`). A failure in one
plugin is reported on its line and never touches another plugin or the old copy of itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from .artifacts import Artifact, locate_artifact
from .errors import PackagingError
from .settings import Settings
from .sources import PluginSource, SourceScan, scan_sources
from .state import InstallState, Signature, file_signature
from .swap import NEW_MARK, park, recover_staging, remove_entry, swap_in

MANIFEST_NAME = "plugin.yml"

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

    @property
    def failed(self) -> bool:
        return bool(self.scan_errors) or any(a.action == "failed" for a in self.actions)


@dataclass
class _Plan:
    """One plugin's plan, before it is carried out."""

    source: PluginSource
    artifact: Artifact
    action: Action
    version: str | None = None
    manifest_text: str | None = None
    inputs: dict[str, Signature] = field(default_factory=dict)
    warnings: tuple[PackagingError, ...] = ()


def install_plugins(
    settings: Settings,
    *,
    only: Sequence[str] = (),
    dry_run: bool = False,
    require_all: bool = False,
) -> InstallReport:
    """Install every built plugin (or those named by `only`) into `settings.native_dir`."""
    if dry_run:
        return _run(settings, only=only, dry_run=True, require_all=require_all)
    from .lock import DirectoryLock

    with DirectoryLock(settings.state_dir):
        return _run(settings, only=only, dry_run=False, require_all=require_all)


def _run(settings: Settings, *, only: Sequence[str], dry_run: bool, require_all: bool) -> InstallReport:
    staging = settings.state_dir / "staging"
    repairs: list[str] = []
    if not dry_run:
        _ensure_plugins_dir(settings)
        repairs = recover_staging(staging, settings.native_dir)
    state = InstallState.load(settings.state_dir)
    scan = scan_sources(settings, cache=state.sources)
    selected = _select(scan, only)
    required = set(only) | ({s.id for s in selected} if require_all else set())
    actions = _carry_out(settings, selected, state, staging, dry_run, required)
    actions += _orphans(settings, scan, state, staging, dry_run) if not only else []
    if not dry_run:
        live = {str(p) for p in _manifest_paths(scan)}
        state.sources = {k: v for k, v in state.sources.items() if k in live}
        state.save(settings.state_dir)
    changed = tuple(a.id for a in actions if a.action in ("install", "update", "remove"))
    return InstallReport(
        actions=tuple(actions),
        scan_errors=scan.errors,
        scan_warnings=scan.warnings,
        repairs=tuple(repairs),
        dry_run=dry_run,
        changed=changed,
    )


def _ensure_plugins_dir(settings: Settings) -> None:
    try:
        settings.native_dir.mkdir(parents=True, exist_ok=True)
        (settings.state_dir / "staging").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(exc, settings.plugins_dir, "create the plugin directory") from None


def _select(scan: SourceScan, only: Sequence[str]) -> list[PluginSource]:
    if not only:
        return list(scan.sources)
    known = {s.id: s for s in scan.sources}
    unknown = [plugin_id for plugin_id in only if plugin_id not in known]
    if unknown:
        raise PackagingError(
            "unknown-plugin",
            f"no plugin source with id {', '.join(map(repr, unknown))}",
            hint="known ids: " + (", ".join(sorted(known)) or "none (is --root a StreamKit checkout?)"),
        )
    return [known[plugin_id] for plugin_id in dict.fromkeys(only)]


def _manifest_paths(scan: SourceScan) -> Iterable[Path]:
    return (s.manifest_path for s in scan.sources if s.manifest_path is not None)


# --- planning --------------------------------------------------------------------------------


def _plan(settings: Settings, source: PluginSource, state: InstallState) -> _Plan:
    artifact = locate_artifact(settings.root, source, settings.platform)
    if not artifact.exists:
        return _Plan(source, artifact, "not-built")
    inputs = _input_signatures(settings, source, artifact)
    recorded = state.plugins.get(source.id)
    target = settings.native_dir / source.id
    if (
        isinstance(recorded, dict)
        and recorded.get("inputs") == inputs
        and recorded.get("installed") == _installed_signatures(target)
    ):
        return _Plan(source, artifact, "up-to-date", version=recorded.get("version"), inputs=inputs)
    return _plan_carefully(settings, source, artifact, inputs, target)


def _plan_carefully(
    settings: Settings, source: PluginSource, artifact: Artifact, inputs: dict[str, Signature], target: Path
) -> _Plan:
    """Generate the manifest and compare the result with what is installed, byte for byte."""
    from .cargo import read_crate
    from .manifest import generate_manifest, render_manifest

    crate = read_crate(source.crate_dir, stop_at=settings.root) if source.crate_dir else None
    manifest = generate_manifest(
        source.data,
        origin=source.origin,
        origin_path=source.manifest_path or Path(source.origin),
        entrypoint=artifact.file_name,
        crate=crate,
    )
    text = render_manifest(manifest, settings.template)
    plan = _Plan(source, artifact, "install", manifest.version, text, inputs, manifest.warnings)
    if os.path.lexists(target):
        plan.action = "up-to-date" if _installed_equals(target, artifact, text) else "update"
    return plan


def _input_signatures(settings: Settings, source: PluginSource, artifact: Artifact) -> dict[str, Signature]:
    """Signatures of everything the installed bundle is made from."""
    inputs: dict[str, Any] = {
        "library": [artifact.stat.st_size, artifact.stat.st_mtime_ns, artifact.stat.st_ino]
        if artifact.stat
        else None,
        "platform": settings.platform,
        "template": file_signature(settings.template or _packaged_template()),
    }
    if source.manifest_path is not None:
        inputs["manifest"] = file_signature(source.manifest_path)
    else:
        inputs["declaration"] = repr(sorted(source.data.items()))
    if source.crate_dir is not None:
        inputs["cargo"] = file_signature(source.crate_dir / "Cargo.toml")
    return inputs


def _packaged_template() -> Path:
    from . import templates
    from .manifest import TEMPLATE_NAME

    return Path(templates.__file__).parent / TEMPLATE_NAME


def _installed_signatures(target: Path) -> dict[str, Signature] | None:
    """Signatures of every entry of an installed bundle, or None when there is no bundle."""
    try:
        names = os.listdir(target)
    except OSError:
        return None
    return {name: file_signature(target / name) for name in sorted(names)}


def _installed_equals(target: Path, artifact: Artifact, manifest_text: str) -> bool:
    """True when `target` holds exactly this library and this manifest, nothing else."""
    if os.path.islink(target):
        return False
    try:
        if sorted(os.listdir(target)) != sorted([artifact.file_name, MANIFEST_NAME]):
            return False
        with open(target / MANIFEST_NAME, encoding="utf-8") as handle:
            if handle.read() != manifest_text:
                return False
        return _same_bytes(artifact.path, target / artifact.file_name)
    except (OSError, UnicodeDecodeError):
        return False


def _same_bytes(first: Path, second: Path) -> bool:
    if os.path.getsize(first) != os.path.getsize(second):
        return False
    chunk = 1 << 20
    with open(first, "rb") as a, open(second, "rb") as b:
        while True:
            block = a.read(chunk)
            if block != b.read(chunk):
                return False
            if not block:
                return True


# --- carrying out ----------------------------------------------------------------------------


def _carry_out(
    settings: Settings,
    sources: list[PluginSource],
    state: InstallState,
    staging: Path,
    dry_run: bool,
    required: set[str],
) -> list[PluginAction]:
    """Plan and carry out every plugin, in parallel; results in the order of `sources`."""

    def one(source: PluginSource) -> PluginAction:
        plan: _Plan | None = None
        try:
            plan = _plan(settings, source, state)
            return _carry_out_one(settings, plan, state, staging, dry_run, required)
        except PackagingError as exc:
            warnings = plan.warnings if plan else ()
            version = plan.version if plan else None
            return PluginAction(source.id, "failed", version, error=exc, warnings=warnings)

    if len(sources) > 1 and settings.jobs > 1:
        with ThreadPoolExecutor(max_workers=settings.jobs) as pool:
            return list(pool.map(one, sources))
    return [one(source) for source in sources]


def _carry_out_one(
    settings: Settings,
    plan: _Plan,
    state: InstallState,
    staging: Path,
    dry_run: bool,
    required: set[str],
) -> PluginAction:
    source, artifact = plan.source, plan.artifact
    base = dict(id=source.id, version=plan.version, library=artifact.file_name, size=artifact.size)
    if plan.action == "not-built":
        return _not_built(settings, plan, required)
    target = settings.native_dir / source.id
    if plan.action == "up-to-date":
        if not dry_run and plan.manifest_text is not None:
            _remember(state, plan, target)
        return PluginAction(action="up-to-date", warnings=plan.warnings, **base)
    if not dry_run:
        staged = _stage(staging, plan)
        try:
            swap_in(staged, target)
        except OSError as exc:
            remove_entry(staged)
            raise _os_error(exc, target, "replace the installed bundle") from None
        _remember(state, plan, target)
    return PluginAction(action=plan.action, warnings=plan.warnings, **base)


def _not_built(settings: Settings, plan: _Plan, required: set[str]) -> PluginAction:
    source, artifact = plan.source, plan.artifact
    looked_for = f"looked for {artifact.declared} (from {source.origin}: artifact)"
    if artifact.problem:
        error = PackagingError(
            "artifact-unusable", f"{artifact.problem} ({looked_for})", artifact.path,
            hint="remove it and rebuild the plugin",
        )
        return PluginAction(source.id, "failed", detail=looked_for, error=error)
    if source.id in required:
        error = PackagingError(
            "artifact-missing",
            f"plugin {source.id} is not built: {looked_for}",
            artifact.path,
            hint=f"build it first (e.g. `plugin-packaging build-plugins-native --only {source.id}`)",
        )
        return PluginAction(source.id, "failed", detail=looked_for, error=error)
    installed = settings.native_dir / source.id
    if os.path.lexists(installed):
        looked_for += "; the installed copy is kept"
    return PluginAction(source.id, "not-built", detail=looked_for)


def _stage(staging: Path, plan: _Plan) -> Path:
    """Write the complete new bundle into the staging area and return its directory."""
    assert plan.manifest_text is not None
    staged = Path(tempfile.mkdtemp(prefix=f"{plan.source.id}{NEW_MARK}", dir=staging))
    try:
        os.chmod(staged, 0o755)
        library = staged / plan.artifact.file_name
        shutil.copyfile(plan.artifact.path, library)
        os.chmod(library, 0o755)
        with open(staged / MANIFEST_NAME, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(plan.manifest_text)
        os.chmod(staged / MANIFEST_NAME, 0o644)
    except OSError as exc:
        remove_entry(staged)
        raise _os_error(exc, plan.artifact.path, f"stage {plan.source.id}") from None
    if file_signature(plan.artifact.path) != plan.inputs.get("library"):
        remove_entry(staged)
        raise PackagingError(
            "artifact-changed-during-copy",
            "changed while it was being copied (is a build still running?)",
            plan.artifact.path,
            hint="wait for the build to finish and run the command again",
        )
    return staged


def _remember(state: InstallState, plan: _Plan, target: Path) -> None:
    state.plugins[plan.source.id] = {
        "inputs": plan.inputs,
        "installed": _installed_signatures(target),
        "version": plan.version,
        "library": plan.artifact.file_name,
    }


def _orphans(
    settings: Settings, scan: SourceScan, state: InstallState, staging: Path, dry_run: bool
) -> list[PluginAction]:
    """Bundles this tool installed earlier whose source is gone: kept, or removed with prune."""
    current = {s.id for s in scan.sources} | {
        e.path.parent.name for e in scan.errors if e.path is not None
    }
    actions = []
    for plugin_id in sorted(set(state.plugins) - current):
        target = settings.native_dir / plugin_id
        if not os.path.lexists(target):
            state.plugins.pop(plugin_id, None)
            continue
        if not settings.prune:
            actions.append(
                PluginAction(plugin_id, "orphaned", state.plugins[plugin_id].get("version"),
                             detail="installed earlier, no source declares it now; --prune removes it")
            )
            continue
        if not dry_run:
            remove_entry(park(target, staging))
            state.plugins.pop(plugin_id, None)
        actions.append(PluginAction(plugin_id, "remove", detail="no source declares it any more"))
    return actions


def _os_error(exc: OSError, path: Path, doing: str) -> PackagingError:
    import errno

    reason = exc.strerror or str(exc)
    hint = None
    if exc.errno == errno.ENOSPC:
        hint = "free some disk space and run again; the installed plugins were not changed"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "make the plugin directory writable (or pass --plugins-dir); nothing was changed"
    return PackagingError("io-error", f"could not {doing}: {reason}", Path(exc.filename or path), hint=hint)
