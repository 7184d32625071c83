"""Release results as people and machines read them: packaging runs and bundle verifications.

Nothing here decides anything or touches the disk. A packaging run is one line per plugin version
(what happened, the bundle, its size and sha256 prefix), the errors with their hints and diffs,
and a summary. A verification is rendered like `check-plugins-native`'s report: findings grouped
per bundle with hints (text), a versioned document (json, `schemas/bundle-report.v1.json`), or
one workflow command per finding (github).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from plugin_packaging.check.report import (
    FORMATS,
    OutputFormat,
    counts_text,
    finding_lines,
    github_command,
    plural,
    verdict_text,
)
from plugin_packaging.errors import display_path
from plugin_packaging.install.report import human_size
from plugin_packaging.output import document, markdown_table, problem_command

if TYPE_CHECKING:
    from plugin_packaging.release.merge import MergeReport
    from plugin_packaging.release.package import BundleFile, ReleaseEntry, ReleaseReport, Status
    from plugin_packaging.release.verify import BundleReport, VerifiedBundle
    from plugin_packaging.release.versions import VersionReport

__all__ = [
    "FORMATS",
    "OutputFormat",
    "render_merge",
    "render_release",
    "render_verification",
    "render_version_check",
]

_LABELS = {
    "publish": ("published", "would publish"),
    "add-variant": ("variant added", "would add variant"),
    "unchanged": ("unchanged", "unchanged"),
    "carried-over": ("carried over", "carried over"),
    "not-built": ("not built", "not built"),
    "skipped": ("skipped", "skipped"),
    "failed": ("FAILED", "FAILED"),
}
_ORDER: tuple[Status, ...] = (
    "publish",
    "add-variant",
    "unchanged",
    "carried-over",
    "not-built",
    "skipped",
    "failed",
)


# --- package-plugins-native ------------------------------------------------------------------------


def render_release(report: ReleaseReport) -> str:
    """Source problems, a line per plugin version and bundle, errors with hints, a summary."""
    lines = [error.render() for error in report.scan_errors]
    lines += [warning.render("warning") for warning in (*report.scan_warnings, *report.notes)]
    width = max((len(e.id) for e in report.entries), default=0)
    version_width = max((len(e.version or "") for e in report.entries), default=0)
    file_width = max((len(b.file_name) for e in report.entries for b in e.bundles), default=0)
    # A failed run wrote nothing: its plan is told like a dry run's.
    tentative = report.dry_run or report.failed
    for entry in report.entries:
        lines.extend(_entry_lines(entry, (width, version_width, file_width), tentative))
    lines.append(_release_summary(report))
    return "\n".join(lines)


def _entry_lines(entry: ReleaseEntry, widths: tuple[int, int, int], dry_run: bool) -> list[str]:
    width, version_width, file_width = widths
    label = _LABELS[entry.status][1 if dry_run else 0]
    head = f"  {label:<17} {entry.id:<{width}}  {entry.version or '':<{version_width}}"
    # A failed version gets one line, whatever bundles it has (its error says the rest).
    shown = entry.bundles if entry.status != "failed" else ()
    lines = []
    for bundle in shown:
        lines.append(f"{head}  {_bundle_text(bundle, file_width)}".rstrip())
        if bundle.vendored:
            lines.append("      vendored: " + ", ".join(bundle.vendored))
    if not lines:
        lines = [f"{head}  {entry.detail or ''}".rstrip() if entry.error is None else head.rstrip()]
    if entry.error is not None:
        lines.extend("      " + line for line in entry.error.render().splitlines())
    if entry.diff:
        lines.extend("      " + line for line in entry.diff.rstrip("\n").splitlines())
    for warning in entry.warnings:
        lines.extend("      " + line for line in warning.render("warning").splitlines())
    return lines


def _bundle_text(bundle: BundleFile, file_width: int) -> str:
    if bundle.sha256 is None:
        return f"{bundle.file_name:<{file_width}}  (library {human_size(bundle.library_size)})"
    size = human_size(bundle.size_bytes) if bundle.size_bytes is not None else "?"
    return f"{bundle.file_name:<{file_width}}  {size:>10}  sha256:{bundle.sha256[:12]}"


def _release_summary(report: ReleaseReport) -> str:
    from plugin_packaging.release.package import release_version_count

    counts = Counter(e.status for e in report.entries)
    tentative = report.dry_run or report.failed
    parts = [
        f"{counts[k]} {_LABELS[k][1 if tentative else 0].lower()}" for k in _ORDER if counts[k]
    ]
    if report.scan_errors:
        parts.append(f"{len(report.scan_errors)} source error(s)")
    text = ", ".join(parts) or "no plugins found"
    plugins, versions = release_version_count(report.entries)
    registry = f"registry: {versions} version{'s' if versions != 1 else ''} of {plugins} plugin{'s' if plugins != 1 else ''}"
    if report.key_id:
        registry += f", new manifests signed by key {report.key_id}"
    out = display_path(report.out_dir)
    if report.dry_run:
        return f"{text}; {registry} (dry run: nothing was written to {out})"
    if report.failed:
        return f"{text}: nothing was written to {out}"
    return f"{text}; {registry} -> {display_path(report.bundles_dir)}, {display_path(report.registry_dir)}"


def release_document(report: ReleaseReport) -> dict[str, Any]:
    """The versioned JSON document of a packaging run (schema: schemas/release-report.v1.json)."""
    counts = Counter(e.status for e in report.entries)
    return document(
        "release",
        out_dir=str(report.out_dir.absolute()),
        dry_run=report.dry_run,
        key_id=report.key_id,
        summary={
            "counts": {status: counts[status] for status in _ORDER},
            "source_errors": len(report.scan_errors),
            "failed": report.failed,
        },
        plugins=[
            {
                "id": e.id,
                "status": e.status,
                "version": e.version,
                "bundles": [
                    {
                        "file": b.file_name,
                        "accelerator": b.accelerator,
                        "url": b.url,
                        "sha256": b.sha256,
                        "size": b.size_bytes,
                    }
                    for b in e.bundles
                ],
                "detail": e.detail,
                "error": e.error.to_dict() if e.error is not None else None,
                "diff": e.diff,
                "warnings": [w.to_dict("warning") for w in e.warnings],
            }
            for e in report.entries
        ],
        source_errors=[e.to_dict() for e in report.scan_errors],
        warnings=[w.to_dict("warning") for w in (*report.scan_warnings, *report.notes)],
    )


def release_annotations(report: ReleaseReport) -> list[str]:
    """An annotation per problem, on the source manifest or file it is about."""
    lines = [problem_command(e) for e in report.scan_errors]
    lines += [problem_command(w, "warning") for w in (*report.scan_warnings, *report.notes)]
    for entry in report.entries:
        if entry.error is not None:
            lines.append(problem_command(entry.error))
        lines += [problem_command(w, "warning") for w in entry.warnings]
    return lines


def render_release_markdown(report: ReleaseReport) -> str:
    """The packaging run for a job's step summary: a row per bundle, and the summary."""
    tentative = report.dry_run or report.failed
    rows: list[tuple[object, ...]] = []
    for entry in report.entries:
        label = _LABELS[entry.status][1 if tentative else 0]
        for bundle in entry.bundles or (None,):
            rows.append(
                (
                    entry.id,
                    entry.version or "",
                    label,
                    bundle.file_name if bundle else entry.detail or "",
                    human_size(bundle.size_bytes) if bundle and bundle.size_bytes else "",
                    f"`{bundle.sha256[:12]}`" if bundle and bundle.sha256 else "",
                )
            )
    lines = ["### Native plugin release" + (" (dry run)" if report.dry_run else ""), ""]
    lines += [_release_summary(report), ""]
    if rows:
        lines += markdown_table(("plugin", "version", "status", "bundle", "size", "sha256"), rows)
    return "\n".join(lines) + "\n"


# --- merge-plugin-registries ---------------------------------------------------------------------


def render_merge(report: MergeReport) -> str:
    """A line per plugin version (kept from which input, or written anew), errors with hints
    and diffs, and a summary."""
    lines = [error.render() for error in report.errors]
    lines += [note.render("warning") for note in report.notes]
    width = max((len(v.plugin_id) for v in report.versions), default=0)
    version_width = max((len(v.version) for v in report.versions), default=0)
    for item in report.versions:
        head = f"  {item.status if item.status != 'failed' else 'FAILED':<8}"
        head += f"{item.plugin_id:<{width}}  {item.version:<{version_width}}"
        variants = f"variants: {', '.join(item.accelerators)}" if item.accelerators else "cpu only"
        if item.status == "kept":
            source = display_path(item.source) if item.source is not None else "?"
            lines.append(f"{head}  {variants}  (signature kept, from {source})")
        elif item.status == "written":
            if report.failed:
                signed = "would be signed"
            else:
                signed = "signed" if report.key_id else "NOT signed"
            lines.append(f"{head}  {variants}  ({signed})")
        else:
            lines.append(head.rstrip())
        if item.error is not None:
            lines.extend("      " + line for line in item.error.render().splitlines())
        if item.diff:
            lines.extend("      " + line for line in item.diff.rstrip("\n").splitlines())
    written = sum(1 for v in report.versions if v.status == "written")
    summary = (
        f"{plural(len(report.versions), 'version')} from {plural(len(report.inputs), 'input')}, "
        f"{written} written anew, {plural(report.bundles, 'bundle')}"
    )
    out = display_path(report.out_dir)
    if report.failed:
        lines.append(f"{summary}: merge failed, nothing was written to {out}")
    else:
        if report.key_id:
            summary += f", signed by key {report.key_id}"
        lines.append(f"{summary} -> {out}/bundles, {out}/registry")
    return "\n".join(lines)


# --- check-registry-versions ---------------------------------------------------------------------

_CHECK_LABELS = {
    "published": "published, unchanged",
    "new": "not published yet",
    "changed": "CHANGED",
    "failed": "FAILED",
}


def render_version_check(report: VersionReport) -> str:
    """A line per plugin, errors with their hints and diffs, and the verdict."""
    lines = [error.render() for error in report.scan_errors]
    width = max((len(c.plugin_id) for c in report.checks), default=0)
    version_width = max((len(c.version or "") for c in report.checks), default=0)
    for check in report.checks:
        head = f"  {check.plugin_id:<{width}}  {check.version or '':<{version_width}}"
        lines.append(f"{head}  {_CHECK_LABELS[check.status]}")
        if check.error is not None:
            lines.extend("      " + line for line in check.error.render().splitlines())
        if check.diff:
            lines.extend("      " + line for line in check.diff.rstrip("\n").splitlines())
    counts = Counter(c.status for c in report.checks)
    broken = counts["changed"] + counts["failed"] + len(report.scan_errors)
    registry = display_path(report.registry)
    if broken:
        lines.append(
            f"{plural(broken, 'problem')} against {registry}: check failed (a published version "
            "never changes; bump `version` in plugin.yml and Cargo.toml)"
        )
    else:
        lines.append(
            f"{plural(len(report.checks), 'plugin')} checked against {registry}: "
            f"{counts['published']} published and unchanged, {counts['new']} new"
        )
    return "\n".join(lines)


# --- verify-plugin-bundles ------------------------------------------------------------------------


def render_verification(
    report: BundleReport, output_format: OutputFormat, *, strict: bool = False
) -> str:
    if output_format == "json":
        return json.dumps(report.to_dict(strict=strict), indent=2, ensure_ascii=True)
    if output_format == "github":
        lines = [github_command(finding) for finding in report.findings]
        lines.append(_verification_summary(report, strict))
        return "\n".join(lines)
    return _verification_text(report, strict)


def _verification_text(report: BundleReport, strict: bool) -> str:
    lines: list[str] = []
    general = [f for f in report.findings if f.bundle is None]
    for finding in general:
        lines.extend(finding_lines(finding))
    if general:
        lines.append("")
    for bundle in report.bundles:
        own = [f for f in report.findings if f.bundle == bundle.path.name]
        lines.append(f"{display_path(bundle.path)}  {_bundle_facts(bundle)}")
        if not own:
            lines.append("  ok: safe to unpack, entry library and dependencies in order")
        for finding in own:
            lines.extend("  " + line for line in finding_lines(finding))
        lines.append("")
    lines.append(_verification_summary(report, strict))
    return "\n".join(lines)


def _bundle_facts(bundle: VerifiedBundle) -> str:
    what = (
        f"{bundle.plugin_id} {bundle.version}, {bundle.accelerator or 'cpu'}, "
        if bundle.plugin_id
        else ""
    )
    if bundle.sha256 is None:  # refused before it was read
        return "(not read)"
    return f"({what}{human_size(bundle.size_bytes)}, sha256:{bundle.sha256[:12]})"


def _verification_summary(report: BundleReport, strict: bool) -> str:
    bundles = plural(len(report.bundles), "bundle")
    return f"{counts_text(report)} in {bundles}: {verdict_text(report, strict, 'verification')}."
