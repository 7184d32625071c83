"""Checking a plugin base directory against the loader's rules, without starting a server.

Inspect, then decide, then report: `layout.py` lists the tree, the rule modules judge each bundle
(`manifest.py`, `library.py`), each active record (`records.py`) and, with a probe,
what each library says when loaded in a child process (`probe_rules.py`); `loadplan.py` replays
the server's start-up over the result. This module wires them together, applies the severity
settings and returns one `CheckReport`. Nothing here loads plugin code.

Limited to some bundles (`bundles=`, as after an install), per-bundle rules look only at those
and no other library is opened; rules across plugins (duplicate kinds, bare libraries, asset
types) still look at the whole tree, from the manifests alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any

from plugin_packaging import __version__
from plugin_packaging.binary.dynlinks import DependencyResolver
from plugin_packaging.check.layout import (
    Bundle,
    Entry,
    PluginTree,
    loader_order,
    near_miss,
    read_bundle,
    read_plugin_tree,
)
from plugin_packaging.check.library import LibraryVerdict, check_library
from plugin_packaging.check.loadplan import (
    Candidate,
    LoadPlan,
    loader_sequence,
    native_kind,
    plan_loads,
    with_blocking,
)
from plugin_packaging.check.manifest import (
    ManifestLookup,
    ManifestRead,
    look_up_manifest,
    read_manifest,
)
from plugin_packaging.check.records import ActiveRecord, is_record_name, read_active_record
from plugin_packaging.contract import MANIFEST_NAME, manifest_names, path_component_problem
from plugin_packaging.errors import PackagingError, display_path
from plugin_packaging.rules.model import Finding, FindingTally, Violation
from plugin_packaging.rules.table import graded, validate_overrides
from plugin_packaging.target import Target

__all__ = ["REPORT_VERSION", "CheckReport", "Finding", "check_plugins_dir"]

#: Version of the JSON document (`plugin_packaging/schemas/check-report.v1.json`).
REPORT_VERSION = 1
DEFAULT_PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class CheckReport(FindingTally):
    """All findings for one plugin base directory, and the load plan they imply."""

    plugins_dir: Path
    findings: tuple[Finding, ...] = ()
    bundles: tuple[str, ...] = field(default=())
    plan: LoadPlan = field(default_factory=LoadPlan)
    target: Target | None = None
    probed: bool = False
    #: The bundles per-bundle rules looked at; None when they looked at all of them.
    checked_bundles: tuple[str, ...] | None = None
    #: The findings of the per-bundle rules, per bundle they looked at (for a verdict cache).
    bundle_findings: Mapping[str, tuple[Finding, ...]] = field(default_factory=dict)

    def to_dict(self, *, strict: bool = False) -> dict[str, Any]:
        """The versioned JSON document (schema: schemas/check-report.v1.json)."""
        return {
            "version": REPORT_VERSION,
            "tool": {"name": "plugin-packaging", "version": __version__},
            "plugins_dir": str(self.plugins_dir.absolute()),
            "target": {"platform": self.target.platform, "arch": self.target.arch}
            if self.target
            else None,
            "probed": self.probed,
            "checked_bundles": list(self.checked_bundles)
            if self.checked_bundles is not None
            else None,
            "summary": {
                "errors": self.count("error"),
                "warnings": self.count("warning"),
                "info": self.count("info"),
                "loaded": len(self.plan.loaded),
                "skipped": len(self.plan.skipped),
                "strict": strict,
                "failed": self.failed(strict),
            },
            "findings": [finding.to_dict() for finding in self.findings],
            "load_plan": self.plan.to_list(),
        }


def check_plugins_dir(
    plugins_dir: Path,
    *,
    rule_overrides: Mapping[str, str] | None = None,
    bundles: Collection[str] | None = None,
    root: Path | None = None,
    target: Target | None = None,
    probe: bool = False,
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
    known: Mapping[str, tuple[Finding, ...]] | None = None,
) -> CheckReport:
    """Check `plugins_dir` as the server at `root` (its working directory) would load it.

    `bundles` limits the per-bundle rules to those directory names of native/; `known` gives the
    per-bundle findings of bundles outside that scope, found earlier on the very same files (see
    `install/verdicts.py`), which the report then includes as if found now. `target` is the
    platform and architecture the libraries must load on (default: this host); `probe` loads each
    library in a child process to read its real kind and API version.
    """
    overrides = validate_overrides(rule_overrides or {})
    if target is None:
        target = Target.host()
    if probe and not target.is_host:
        raise PackagingError(
            "probe-foreign-target",
            f"cannot probe libraries for {target.describe()} on this machine",
            hint="drop --probe, or check on a machine of the target platform and architecture",
        )
    cwd = (root or plugins_dir.parent).absolute()
    tree = read_plugin_tree(plugins_dir)
    scope = set(bundles) if bundles is not None else None
    resolver = DependencyResolver(cwd=cwd)
    run = _CheckRun(tree, target, resolver, cwd, full=scope is None)

    violations: list[Violation] = _top_level_violations(tree)
    # Bare libraries are seen and skipped by the scan (N1): they belong in the plan as skips.
    bare = [
        Candidate(source="bare", library=v.path, blocked_by=v)
        for v in violations
        if v.code == "bare-library"
    ]
    # One thread: reading headers is Python work under the GIL, and a pool measured slower
    # (benchmarks/check_bench.py). Probes, which wait on child processes, do run in parallel.
    inspections = [_inspect_bundle(b, run, scope is None or b.name in scope) for b in tree.bundles]
    records = [_inspect_record(entry, run) for entry in tree.active]
    for inspection in (*records, *inspections):
        violations.extend(inspection.violations)

    active = [c for inspection in records for c in inspection.candidates]
    bundled = [c for inspection in inspections for c in inspection.candidates] + bare
    if probe:
        active, bundled, probe_found = _probe(active, bundled, probe_timeout, plugins_dir)
        violations.extend(probe_found)
    plan, across = plan_loads(loader_sequence(active, bundled))
    violations.extend(across)

    known = {
        name: found
        for name, found in (known or {}).items()
        if scope is not None and name not in scope
    }
    findings = _findings(violations, overrides, tree, known)
    per_bundle = {
        bundle.name: _findings(list(inspection.violations), overrides, tree)
        for bundle, inspection in zip(tree.bundles, inspections, strict=True)
        if scope is None or bundle.name in scope
    }
    checked = (
        tuple(sorted(b.name for b in tree.bundles if b.name in scope))
        if scope is not None
        else None
    )
    return CheckReport(
        plugins_dir=plugins_dir,
        findings=findings,
        bundles=tuple(b.name for b in tree.bundles),
        plan=plan,
        target=target,
        probed=probe,
        checked_bundles=checked,
        bundle_findings=per_bundle,
    )


def check_bundle_directory(
    directory: Path,
    name: str,
    *,
    target: Target,
    root: Path,
    rule_overrides: Mapping[str, str] | None = None,
    shown_as: Path | None = None,
    resolver: DependencyResolver | None = None,
) -> tuple[Finding, ...]:
    """The per-bundle rules (layout inside it, manifest, library) over one bundle directory that
    is not in native/ yet: a staged install, or a release bundle before it is packed.

    `name` is the directory name it will have under native/; findings name their files under
    `shown_as` (where they will be) instead of `directory` when given. Rules across plugins
    (duplicate kinds, asset types) need the whole tree and are left to `check_plugins_dir`.
    Checking several bundles, pass one `resolver`: it reads the system's library cache once.
    """
    overrides = validate_overrides(rule_overrides or {})
    bundle = read_bundle(directory, name)
    tree = PluginTree(directory.parent, (), (bundle,), (), has_native=True, has_active=False)
    cwd = root.absolute()
    run = _CheckRun(tree, target, resolver or DependencyResolver(cwd=cwd), cwd, full=True)
    findings = graded(list(_inspect_bundle(bundle, run, True).violations), overrides)
    if shown_as is None:
        return findings
    return tuple(replace(f, path=_moved(f.path, directory, shown_as)) for f in findings)


def _moved(path: Path, old: Path, new: Path) -> Path:
    try:
        return new / path.relative_to(old)
    except ValueError:
        return path


@dataclass(frozen=True)
class _CheckRun:
    """What every inspection of one run shares."""

    tree: PluginTree
    target: Target
    resolver: DependencyResolver
    cwd: Path
    #: False when the check is limited to some bundles: records are read, not judged.
    full: bool


@dataclass(frozen=True)
class _Inspection:
    """The candidates one bundle or record contributes, and the violations found in it."""

    candidates: tuple[Candidate, ...]
    violations: tuple[Violation, ...] = ()


# --- the top of native/ ------------------------------------------------------------------------


def _top_level_violations(tree: PluginTree) -> list[Violation]:
    out = []
    for entry in tree.top_level:
        if entry.is_library_name:
            out.append(Violation("bare-library", entry.path, {"name": entry.name}))
        elif entry.broken_target is not None:
            out.append(
                Violation(
                    "broken-symlink",
                    entry.path,
                    {"name": entry.name, "target": entry.broken_target},
                )
            )
    return out


# --- one bundle --------------------------------------------------------------------------------


def _inspect_bundle(bundle: Bundle, run: _CheckRun, in_scope: bool) -> _Inspection:
    if bundle.unreadable:
        return _unreadable_bundle(bundle, in_scope)
    names = {entry.name for entry in bundle.entries}
    libraries = bundle.candidates
    reads: dict[str, ManifestRead] = {}

    def lookup(library_name: str) -> ManifestLookup:
        """N9 next to one library; each file is parsed once however many libraries share it."""
        found = []
        for name in manifest_names(library_name):
            if name in names:
                if name not in reads:
                    reads[name] = read_manifest(bundle.path / name, bundle.name)
                found.append(reads[name])
        return ManifestLookup(library_name, tuple(found))

    main_name = _main_library(libraries, lookup)
    main_lookup = lookup(main_name)
    manifest = main_lookup.used
    node_kind = manifest.text("node_kind") if manifest else None
    if node_kind is not None and (not node_kind or "::" in node_kind):
        node_kind = None
    plugin_id = manifest.text("id") if manifest else None
    version = manifest.text("version") if manifest else None
    asset_types = _registered_asset_types(manifest)

    violations: list[Violation] = []
    verdicts: dict[str, LibraryVerdict] = {}
    if in_scope:
        for entry in libraries:
            if entry.is_dir:
                continue
            verdicts[entry.name] = check_library(
                entry.path, target=run.target, resolver=run.resolver, bundle=bundle.name
            )
        violations = _bundle_violations(bundle, main_lookup, verdicts)

    candidates = []
    for entry in libraries:
        own_lookup = main_lookup if entry.name == main_name else lookup(entry.name)
        is_main = entry.name == main_name
        candidate = Candidate(
            source="bundle",
            library=entry.path,
            bundle=bundle.name,
            kind=native_kind(node_kind) if is_main and node_kind else None,
            kind_source="manifest" if is_main and node_kind else None,
            plugin_id=plugin_id if is_main else None,
            version=version if is_main else None,
            manifest=own_lookup.used.path if own_lookup.used else None,
            asset_types=asset_types if is_main else (),
            checked=in_scope,
        )
        own = [v for v in violations if v.path == entry.path]
        if entry.is_dir:
            own = [Violation("library-is-directory", entry.path, {"name": entry.name}, bundle.name)]
        candidates.append(with_blocking(candidate, own))
    return _Inspection(tuple(candidates), tuple(violations))


def _unreadable_bundle(bundle: Bundle, in_scope: bool) -> _Inspection:
    """A bundle directory that cannot be listed: the loader finds no library in it, so the plan
    shows the bundle itself as skipped (the scan already knows, without opening anything)."""
    violation = Violation(
        "bundle-unreadable", bundle.path, {"reason": bundle.unreadable}, bundle.name
    )
    candidate = Candidate(
        source="bundle", library=None, directory=bundle.path, bundle=bundle.name, checked=in_scope
    )
    return _Inspection((with_blocking(candidate, [violation]),), (violation,) if in_scope else ())


def _main_library(libraries: tuple[Entry, ...], lookup: Callable[[str], ManifestLookup]) -> str:
    """The library the bundle's manifest describes: the only one, or the one its entrypoint names."""
    if len(libraries) == 1:
        return libraries[0].name
    if not libraries:
        return ""
    for entry in libraries:
        used = lookup(entry.name).used
        if used is not None and used.text("entrypoint") == entry.name:
            return entry.name
    return libraries[0].name


def _registered_asset_types(manifest: ManifestRead | None) -> tuple[str, ...]:
    """The asset types the server registers for this manifest: those that break no N10 rule."""
    if manifest is None:
        return ()
    refused = {
        v.key.split(".")[0] for v in manifest.violations if v.code.startswith("asset-") and v.key
    }
    out = []
    for index, asset in enumerate(manifest.assets):
        type_id = asset.get("type_id")
        if isinstance(type_id, str) and f"assets[{index}]" not in refused:
            out.append(type_id)
    return tuple(out)


def _bundle_violations(
    bundle: Bundle, lookup: ManifestLookup, verdicts: dict[str, LibraryVerdict]
) -> list[Violation]:
    out: list[Violation] = []
    name = bundle.name
    libraries = bundle.candidates
    if name.startswith("."):
        out.append(Violation("hidden-bundle", bundle.path, {}, name))
    needed = {
        dep
        for verdict in verdicts.values()
        for dep in (verdict.info.needed if verdict.info else ())
    }
    resolved = {
        str(dep.path.resolve())
        for verdict in verdicts.values()
        for dep in verdict.dependencies
        if dep.path
    }

    candidates = [(entry, near_miss(entry.name)) for entry in bundle.entries if not entry.is_dir]
    near = [
        (entry, miss) for entry, miss in candidates if miss is not None and entry.name not in needed
    ]
    if not libraries:
        shown = (
            f" ({', '.join(e.name for e, _ in near)} {'is' if len(near) == 1 else 'are'} skipped)"
            if near
            else ""
        )
        out.append(Violation("bundle-without-library", bundle.path, {"near": shown}, name))
    for entry, (why, suggestion) in near:
        out.append(
            Violation(
                "library-name-ignored",
                entry.path,
                {"name": entry.name, "why": why, "suggestion": suggestion},
                name,
            )
        )

    manifest = lookup.used
    entrypoint = manifest.text("entrypoint") if manifest else None
    if len(libraries) > 1:
        names = ", ".join(e.name for e in libraries)
        entry_text = f" ({entrypoint})" if entrypoint in {e.name for e in libraries} else ""
        out.append(
            Violation(
                "bundle-several-libraries",
                bundle.path,
                {"count": len(libraries), "names": names, "entry": entry_text},
                name,
            )
        )
    for entry in libraries:
        if entry.is_dir:
            out.append(Violation("library-is-directory", entry.path, {"name": entry.name}, name))
            continue
        problem = path_component_problem(entry.name)
        if problem:
            out.append(
                Violation(
                    "library-name-unsafe",
                    entry.path,
                    {"name": entry.name, "problem": problem},
                    name,
                )
            )
        verdict = verdicts.get(entry.name)
        if verdict is not None:
            out.extend(verdict.violations)

    for relative in bundle.nested_libraries:
        absolute = str((bundle.path / relative).resolve())
        if absolute in resolved:
            continue
        out.append(
            Violation(
                "nested-library",
                bundle.path / relative,
                {
                    "relative": f"native/{name}/{relative.as_posix()}",
                    "subdir": relative.parent.as_posix(),
                },
                name,
            )
        )

    out.extend(_manifest_violations(bundle, lookup))
    if manifest is not None:
        out.extend(_manifest_fits_bundle(bundle, manifest))
    return out


def _manifest_violations(bundle: Bundle, lookup: ManifestLookup) -> list[Violation]:
    """N8/N9: the manifest the server reads, what is wrong in it, and in those it reads before."""
    out: list[Violation] = []
    if not lookup.found:
        return [Violation("manifest-missing", bundle.path, {}, bundle.name)]
    used = lookup.used
    for read in lookup.found:
        out.extend(read.violations)
        if read is used:
            break
    if used is None:
        return out
    position = lookup.found.index(used)
    if used.path.name != MANIFEST_NAME:
        failed = [read.path.name for read in lookup.found[:position]]
        reason = (
            f"{MANIFEST_NAME} does not parse"
            if MANIFEST_NAME in failed
            else f"there is no {MANIFEST_NAME}"
        )
        others = [name for name in failed if name != MANIFEST_NAME]
        if others:
            reason += f", and {', '.join(others)} {'does' if len(others) == 1 else 'do'} not parse"
        out.append(
            Violation(
                "manifest-fallback",
                used.path,
                {"used": used.path.name, "reason": reason},
                bundle.name,
            )
        )
    for shadowed in lookup.found[position + 1 :]:
        out.append(
            Violation(
                "manifest-shadowed",
                shadowed.path,
                {"name": shadowed.path.name, "used": used.path.name},
                bundle.name,
            )
        )
    return out


def _manifest_fits_bundle(bundle: Bundle, manifest: ManifestRead) -> list[Violation]:
    """The manifest against the bundle it lies in: entrypoint and directory name."""
    out: list[Violation] = []
    libraries = [e.name for e in bundle.candidates if not e.is_dir]
    entrypoint = manifest.text("entrypoint")
    entry_is_safe = not any(v.code == "manifest-entrypoint-unsafe" for v in manifest.violations)
    if entrypoint is not None and entry_is_safe and libraries and entrypoint not in libraries:
        library = libraries[0] if len(libraries) == 1 else " or ".join(libraries)
        out.append(
            Violation(
                "manifest-entrypoint-mismatch",
                manifest.path,
                {"value": entrypoint, "library": library},
                bundle.name,
                key="entrypoint",
            )
        )
    plugin_id = manifest.text("id")
    if plugin_id and not path_component_problem(plugin_id) and bundle.name != plugin_id:
        stems = {_upload_stem(name) for name in libraries}
        if bundle.name not in stems:
            stem = next(iter(sorted(stems)), plugin_id)
            out.append(
                Violation(
                    "bundle-name-differs",
                    bundle.path,
                    {"plugin_id": plugin_id, "stem": stem, "fix": _rename_fix(bundle, plugin_id)},
                    bundle.name,
                )
            )
    return out


def _rename_fix(bundle: Bundle, plugin_id: str) -> str:
    """How to fix a bundle named otherwise than its plugin: rename it, unless a directory of
    that name is already there (the copy an install made), in which case this one is the extra."""
    if os.path.lexists(bundle.path.parent / plugin_id):
        return (
            f"native/{plugin_id}/ exists as well, so the server sees {plugin_id!r} twice and loads "
            f"the one that sorts first: remove native/{bundle.name}/ if it is the older copy"
        )
    return (
        f"rename it to native/{plugin_id}/; otherwise copy-plugins-native installs a second copy "
        "beside it and the server loads the one that sorts first"
    )


def _upload_stem(library_name: str) -> str:
    """The directory an HTTP upload puts a library in: its stem without one leading `lib`."""
    stem = PurePath(library_name).stem
    return stem[3:] if stem.startswith("lib") and len(stem) > 3 else stem


# --- one active record ---------------------------------------------------------------------------


def _inspect_record(entry: Entry, run: _CheckRun) -> _Inspection:
    """One file of active/: the record the server would load, or a note that it never reads it."""
    if not is_record_name(entry.name):
        if run.full:
            return _Inspection(
                (),
                (
                    Violation(
                        "active-record-ignored", entry.path, {"name": entry.name}, record=entry.name
                    ),
                ),
            )
        return _Inspection(())
    record: ActiveRecord = read_active_record(entry, run.tree.plugins_dir, run.cwd)
    violations = list(record.violations)
    manifest: ManifestRead | None = None
    if record.library is not None and record.is_native:
        directory = record.library.parent
        try:
            existing = set(os.listdir(directory))
        except OSError:
            existing = set()
        manifest = look_up_manifest(directory, record.library.name, existing, None).used
        if run.full:
            verdict = check_library(
                record.library, target=run.target, resolver=run.resolver, record=record.name
            )
            violations.extend(verdict.violations)
    candidate = Candidate(
        source="active",
        library=record.library,
        record_path=record.path,
        record=record.name,
        kind=record.kind,
        kind_source="record" if record.kind else None,
        plugin_id=record.text("plugin_id"),
        version=record.text("version"),
        manifest=manifest.path if manifest else None,
        asset_types=_registered_asset_types(manifest),
        checked=run.full,
    )
    candidate = with_blocking(candidate, violations)
    return _Inspection((candidate,), tuple(violations) if run.full else ())


# --- the probe ---------------------------------------------------------------------------------


def _probe(
    active: list[Candidate], bundled: list[Candidate], timeout: float, plugins_dir: Path
) -> tuple[list[Candidate], list[Candidate], list[Violation]]:
    """Probe every checked native library that the static rules let through, in parallel."""
    from plugin_packaging.check.probe import probe_libraries, sandbox
    from plugin_packaging.check.probe_rules import probe_violations, sandbox_violations

    def wanted(candidate: Candidate) -> bool:
        native = candidate.source == "bundle" or (candidate.kind or "").startswith(
            "plugin::native::"
        )
        return (
            candidate.checked
            and candidate.blocked_by is None
            and candidate.library is not None
            and native
        )

    libraries = [c.library for c in (*active, *bundled) if wanted(c) and c.library is not None]
    if not libraries:
        return active, bundled, []

    # Probes wait on child processes (a hanging one for its whole timeout): run them side by side.
    results = probe_libraries(libraries, timeout=timeout, jobs=max(2, min(os.cpu_count() or 2, 8)))

    # Never silent: a probe without namespaces is a finding, naming the weaker mode and why.
    violations: list[Violation] = sandbox_violations(sandbox(), plugins_dir)

    def apply(candidate: Candidate) -> Candidate:
        library = candidate.library
        result = results.get(library) if wanted(candidate) and library else None
        if library is None or result is None:
            return candidate
        declared = (
            candidate.kind.split("::")[-1] if candidate.kind and candidate.kind_source else None
        )
        if candidate.source == "active":
            declared_in, key = f"active record {candidate.record}", "node_kind"
        else:
            shown = display_path(candidate.manifest) if candidate.manifest else MANIFEST_NAME
            declared_in, key = shown, "node_kind"
        found, kind = probe_violations(
            result,
            library,
            declared_kind=declared,
            declared_in=declared_in,
            declared_key=key,
            bundle=candidate.bundle,
            record=candidate.record,
        )
        violations.extend(found)
        if kind is not None:
            # The library's own kind decides duplicates (N7), whatever the manifest says.
            candidate = replace(candidate, kind=kind, kind_source="probe")
        return with_blocking(candidate, found)

    return [apply(c) for c in active], [apply(c) for c in bundled], violations


# --- severities and order -------------------------------------------------------------------------


def _findings(
    violations: list[Violation],
    overrides: Mapping[str, str],
    tree: PluginTree,
    known: Mapping[str, tuple[Finding, ...]] | None = None,
) -> tuple[Finding, ...]:
    """Apply the severity settings, drop ignored rules, add the `known` findings of bundles not
    looked at again, and order by plugin as the loader would."""
    record_order = {entry.name: index for index, entry in enumerate(tree.active)}

    def group(finding: Finding) -> tuple[Any, ...]:
        if finding.record is not None:
            return (1, record_order.get(finding.record, 0))
        if finding.bundle is not None:
            return (2, loader_order(tree.native_dir / finding.bundle))
        return (0,)

    findings = [*graded(violations, overrides)]
    for found in (known or {}).values():
        findings.extend(found)
    # `sorted` is stable: within a plugin, findings keep the order the rules found them in.
    return tuple(sorted(findings, key=group))
