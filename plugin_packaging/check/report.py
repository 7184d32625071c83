"""A `CheckReport` as people and machines read it: text, versioned JSON, GitHub workflow commands.

Nothing here decides anything or touches the disk; it renders a report made by `run.py`.
The pieces that fit any findings (a finding with its hint, the counts, the verdict, a workflow
command) render `verify-plugin-bundles`' report too (`release/report.py`).
Text groups findings by plugin (top of native/, active records, bundles, in the loader's order),
puts the hint under each finding, and ends with the load plan and a summary. JSON is the
document described by `schemas/check-report.v1.json`. GitHub output is one `::error` /
`::warning` / `::notice` command per finding, escaped as the runner requires.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from plugin_packaging.errors import display_path
from plugin_packaging.output import (
    FORMATS,
    OutputFormat,
    escape_data,
    escape_property,
    fold_repeated_hints,
    markdown_table,
    workflow_command,
)
from plugin_packaging.rules.model import Finding, FindingTally
from plugin_packaging.rules.table import RULES, effective_severity

if TYPE_CHECKING:
    from plugin_packaging.check.loadplan import PlannedLoad
    from plugin_packaging.check.run import CheckReport

__all__ = ["FORMATS", "OutputFormat", "escape_data", "escape_property", "render"]


def render(
    report: CheckReport,
    output_format: OutputFormat,
    *,
    strict: bool = False,
    sources: Mapping[str, Path] | None = None,
) -> str:
    """The report in `output_format`; `sources` maps installed bundles to the source manifests
    they were made from, so annotations land on files of the checkout (see `github_command`)."""
    if output_format == "json":
        return render_json(report, strict=strict)
    if output_format == "github":
        return render_github(report, strict=strict, sources=sources)
    return render_text(report, strict=strict)


# --- text ----------------------------------------------------------------------------------------


def render_text(report: CheckReport, *, strict: bool = False) -> str:
    """Findings grouped by plugin with their hints, then the load plan, then one summary line."""
    lines: list[str] = []
    for title, findings in _groups(report):
        lines.append(title)
        for finding in findings:
            lines.extend("  " + line for line in finding_lines(finding))
        lines.append("")
    if not report.findings:
        lines.append(f"No findings in {display_path(report.plugins_dir)}.")
        lines.append("")
    lines.extend(_plan_lines(report))
    lines.append("")
    lines.append(_summary_line(report, strict))
    return fold_repeated_hints("\n".join(lines))


def finding_lines(finding: Finding) -> list[str]:
    """What is wrong and where, then how to fix it."""
    return [
        f"{finding.severity}[{finding.code}]: {display_path(finding.path)}: {finding.message}",
        f"  hint: {finding.hint}",
    ]


def _groups(report: CheckReport) -> list[tuple[str, list[Finding]]]:
    """(title, findings) per plugin, in the order the findings come (the loader's order)."""
    about: dict[str, str] = {}
    for entry in report.plan.entries:
        c = entry.candidate
        key = f"b:{c.bundle}" if c.source == "bundle" else f"r:{c.record}"
        if c.plugin_id and key not in about:
            about[key] = f"  ({c.plugin_id}{' ' + c.version if c.version else ''})"
    groups: dict[str, tuple[str, list[Finding]]] = {}
    for finding in report.findings:
        if finding.record is not None:
            key, title = f"r:{finding.record}", f"active/{finding.record}"
        elif finding.bundle is not None:
            key, title = f"b:{finding.bundle}", f"native/{finding.bundle}/"
        else:
            key, title = "top", "native/ (top level)"
        if key not in groups:
            groups[key] = (title + about.get(key, ""), [])
        groups[key][1].append(finding)
    return list(groups.values())


def _plan_lines(report: CheckReport) -> list[str]:
    target = f" for {report.target.describe()}" if report.target else ""
    if not report.plan.entries:
        return [f"Load plan{target}: the server finds nothing to load."]
    lines = [f"Load plan{target}, in the server's order:"]
    width = max(len(_kind_text(e)) for e in report.plan.entries)
    for entry in report.plan.entries:
        c = entry.candidate
        number = f"{entry.position:>3}" if entry.position is not None else "  -"
        action = "load" if entry.outcome == "load" else "skip"
        line = f"{number}  {action}  {_kind_text(entry):<{width}}  {c.label()}"
        notes = []
        if c.manifest is not None:
            notes.append(f"manifest {c.manifest.name}")
        if not c.checked:
            notes.append("not checked")
        if notes:
            line += f"  [{', '.join(notes)}]"
        lines.append(line)
        if entry.reason:
            lines.append(f"          {entry.code}: {entry.reason}")
    if (
        any(e.candidate.kind is None and e.outcome == "load" for e in report.plan.entries)
        and not report.probed
    ):
        lines.append("  (kind ?: no usable plugin.yml says it; --probe reads it from the library)")
    return lines


def _kind_text(entry: PlannedLoad) -> str:
    c = entry.candidate
    if c.kind is None:
        return "kind ?"
    return c.kind + (" (probed)" if c.kind_source == "probe" else "")


def _summary_line(report: CheckReport, strict: bool) -> str:
    loads = (
        f"the server will load {plural(len(report.plan.loaded), 'plugin')}"
        f" and skip {len(report.plan.skipped)}"
    )
    return f"{counts_text(report)}; {loads}: {verdict_text(report, strict, 'check')}."


def counts_text(report: FindingTally) -> str:
    """The findings per severity: `2 errors, 1 warning, 0 info`."""
    return (
        f"{plural(report.count('error'), 'error')}, {plural(report.count('warning'), 'warning')}, "
        f"{report.count('info')} info"
    )


def verdict_text(report: FindingTally, strict: bool, what: str) -> str:
    """`<what> passed` or `<what> failed`, saying so when only --strict made warnings fail."""
    verdict = f"{what} failed" if report.failed(strict) else f"{what} passed"
    if strict and report.count("warning") and not report.count("error"):
        verdict += " (--strict: warnings fail)"
    return verdict


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def render_summary(report: CheckReport) -> str:
    """A short report for after an install: errors and warnings with hints, or one line."""
    errors, warnings = report.count("error"), report.count("warning")
    if not errors and not warnings:
        return f"check: the loader will accept {display_path(report.plugins_dir)}"
    lines = [
        f"check: {plural(errors, 'error')}, {plural(warnings, 'warning')} in {display_path(report.plugins_dir)}"
    ]
    for finding in report.findings:
        if finding.severity in ("error", "warning"):
            lines.extend("  " + line for line in finding_lines(finding))
    lines.append("  (check-plugins-native shows the whole load plan)")
    return fold_repeated_hints("\n".join(lines))


def render_rules(overrides: Mapping[str, str]) -> str:
    """Every rule: code, severity (after settings), the loader rule behind it, what it reports."""
    width = max(len(code) for code in RULES)
    lines = []
    for code, rule in RULES.items():
        severity = effective_severity(code, overrides) or "ignore"
        changed = f" (default {rule.severity})" if severity != rule.severity else ""
        lines.append(f"{code:<{width}}  {severity:<7} {rule.reference}{changed}")
    return "\n".join(lines)


# --- json ----------------------------------------------------------------------------------------


def render_json(report: CheckReport, *, strict: bool = False) -> str:
    """The versioned document; ASCII-only, so any file name survives any terminal or pipe."""
    return json.dumps(report.to_dict(strict=strict), indent=2, ensure_ascii=True)


# --- GitHub Actions ------------------------------------------------------------------------------


def github_command(finding: Finding, sources: Mapping[str, Path] | None = None) -> str:
    """The annotation of one finding.

    An installed bundle lives under `.plugins/`, which StreamKit's `.gitignore` leaves out of
    every pull request, so an annotation there would show nowhere. When the bundle was made from
    a source manifest of the checkout (`sources`), the annotation goes on that file, and the
    message says which installed file the finding is about.
    """
    message = f"{finding.message}\nhint: {finding.hint}"
    path = finding.path
    source = sources.get(finding.bundle) if sources and finding.bundle else None
    if source is not None:
        message = f"{display_path(finding.path)}: {message}"
        path = source
    return workflow_command(finding.severity, message, path=path, title=finding.code)


def render_github(
    report: CheckReport, *, strict: bool = False, sources: Mapping[str, Path] | None = None
) -> str:
    """One workflow command per finding, the load plan in a collapsed group, a summary line."""
    lines = [github_command(finding, sources) for finding in report.findings]
    lines.append("::group::Load plan")
    lines.extend(_plan_lines(report))
    lines.append("::endgroup::")
    lines.append(_summary_line(report, strict))
    return "\n".join(lines)


# --- Markdown (GitHub's step summary) -------------------------------------------------------------


def render_markdown(report: CheckReport, *, strict: bool = False) -> str:
    """The check for a job's step summary: the verdict, the findings, the load plan."""
    lines = [
        f"**Check of `{display_path(report.plugins_dir)}`**: {_summary_line(report, strict)}",
        "",
    ]
    if report.findings:
        lines += markdown_table(
            ("severity", "code", "file", "message"),
            [(f.severity, f.code, display_path(f.path), f.message) for f in report.findings],
        )
        lines.append("")
    plan = [
        (
            entry.position if entry.position is not None else "-",
            entry.outcome,
            _kind_text(entry),
            entry.candidate.plugin_id or "",
            entry.candidate.version or "",
            entry.candidate.label(),
            entry.reason or "",
        )
        for entry in report.plan.entries
    ]
    if plan:
        lines.append("Load plan, in the server's order:")
        lines.append("")
        lines += markdown_table(
            ("#", "outcome", "kind", "plugin", "version", "library", "why"), plan
        )
    else:
        lines.append("Load plan: the server finds nothing to load.")
    return "\n".join(lines) + "\n"
