"""Turning results into text for people: one line per plugin, a summary, hints under errors.

Nothing here decides anything or touches the disk; it renders values made elsewhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugin_packaging.errors import display_path
from plugin_packaging.output import (
    document,
    fold_repeated_hints,
    markdown_table,
    problem_command,
    workflow_command,
)

if TYPE_CHECKING:  # the checker is imported only by runs that check
    from plugin_packaging.check.run import CheckReport
    from plugin_packaging.install.run import Action, InstallReport, PluginAction

_LABELS = {
    "install": ("installed", "would install"),
    "update": ("updated", "would update"),
    "up-to-date": ("up to date", "up to date"),
    "not-built": ("not built", "not built"),
    "failed": ("FAILED", "FAILED"),
    "orphaned": ("orphaned", "orphaned"),
    "remove": ("removed", "would remove"),
}


def human_size(size: int) -> str:
    """A byte count as people read it: `812 B`, `3.4 KiB`, `150.2 MiB`, `1.1 GiB`."""
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def render_install(report: InstallReport, native_dir: Path, *, verbose: bool = False) -> str:
    """The report of `copy-plugins-native`: repairs, a line per plugin, problems, a summary.

    A run that found everything up to date is one line; `verbose` lists the plugins anyway.
    Columns are aligned (sizes to the right), and a hint that many plugins share is printed
    once with their number.
    """
    lines = [f"repair: {line}" for line in report.repairs]
    for error in report.scan_errors:
        lines.append(error.render())
    for warning in report.scan_warnings:
        lines.append(warning.render("warning"))
    if verbose or not _is_no_op(report):
        widths = _widths(report.actions)
        for action in report.actions:
            lines.extend(_action_lines(action, widths, report.dry_run))
    lines.append(_summary(report, native_dir))
    return fold_repeated_hints("\n".join(lines))


def _is_no_op(report: InstallReport) -> bool:
    return bool(report.actions) and all(
        a.action == "up-to-date" and not a.warnings for a in report.actions
    )


def _widths(actions: tuple[PluginAction, ...]) -> tuple[int, int, int, int]:
    """Widths of the id, version, library and size columns."""
    shown = [a for a in actions if a.action in ("install", "update", "up-to-date")]
    return (
        max((len(a.id) for a in actions), default=0),
        max((len(a.version or "") for a in actions), default=0),
        max((len(a.library or "") for a in shown), default=0),
        max((len(human_size(a.size)) for a in shown), default=0),
    )


def _action_lines(
    action: PluginAction, widths: tuple[int, int, int, int], dry_run: bool
) -> list[str]:
    id_width, version_width, library_width, size_width = widths
    label = _LABELS[action.action][1 if dry_run else 0]
    head = f"  {label:<13} {action.id:<{id_width}}  {action.version or '':<{version_width}}"
    if action.action in ("install", "update", "up-to-date"):
        head += (
            f"  {action.library or '':<{library_width}}  {human_size(action.size):>{size_width}}"
        )
    elif action.detail and action.error is None:
        head += f"  {action.detail}"
    lines = [head.rstrip()]
    if action.error is not None:
        lines.extend("      " + line for line in action.error.render().splitlines())
    for warning in action.warnings:
        lines.extend("      " + line for line in warning.render("warning").splitlines())
    return lines


_ORDER: tuple[Action, ...] = (
    "install",
    "update",
    "up-to-date",
    "not-built",
    "orphaned",
    "remove",
    "failed",
)


def _summary(report: InstallReport, native_dir: Path) -> str:
    counts = Counter(a.action for a in report.actions)
    if report.dry_run:
        # What a dry run would do is said as such: "would install 2", never "2 installed".
        parts = [
            f"{_LABELS[k][1]} {counts[k]}"
            if _LABELS[k][1].startswith("would ")
            else f"{counts[k]} {_LABELS[k][1]}"
            for k in _ORDER
            if counts[k]
        ]
    else:
        parts = [f"{counts[k]} {_LABELS[k][0].lower()}" for k in _ORDER if counts[k]]
    if report.scan_errors:
        parts.append(f"{len(report.scan_errors)} source error(s)")
    text = ", ".join(parts) or "no plugins found"
    if _is_no_op(report):
        text = f"{plural(len(report.actions), 'plugin')} up to date"
    suffix = " (dry run: nothing was changed)" if report.dry_run else ""
    return f"{text} -> {display_path(native_dir)}{suffix}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --- json -----------------------------------------------------------------------------------


def install_document(
    report: InstallReport,
    native_dir: Path,
    check: CheckReport | None,
    build: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The versioned JSON document of an install (schema: schemas/install-report.v1.json)."""
    counts = Counter(a.action for a in report.actions)
    return document(
        "install",
        native_dir=str(native_dir.absolute()),
        dry_run=report.dry_run,
        summary={
            "counts": {key: counts[key] for key in _ORDER},
            "source_errors": len(report.scan_errors),
            "failed": report.failed or (check is not None and check.failed()),
        },
        plugins=[
            {
                "id": a.id,
                "action": a.action,
                "version": a.version,
                "library": a.library,
                "size": a.size if a.action in ("install", "update", "up-to-date") else None,
                "detail": a.detail,
                "error": a.error.to_dict() if a.error is not None else None,
                "warnings": [w.to_dict("warning") for w in a.warnings],
            }
            for a in report.actions
        ],
        source_errors=[e.to_dict() for e in report.scan_errors],
        warnings=[w.to_dict("warning") for w in report.scan_warnings],
        repairs=list(report.repairs),
        check=check.to_dict() if check is not None else None,
        build=build,
    )


# --- GitHub Actions -------------------------------------------------------------------------


def install_annotations(report: InstallReport) -> list[str]:
    """An annotation per problem, on the source manifest (line and column when known)."""
    lines = [problem_command(e) for e in report.scan_errors]
    lines += [problem_command(w, "warning") for w in report.scan_warnings]
    for action in report.actions:
        if action.error is not None:
            lines.append(problem_command(action.error))
        lines += [problem_command(w, "warning") for w in action.warnings]
        if action.action == "not-built" and action.detail:
            # --require-all turns this into a failure with an error; otherwise it is news.
            lines.append(
                workflow_command("warning", f"{action.id}: {action.detail}", title="not-built")
            )
    return lines


# --- Markdown -------------------------------------------------------------------------------


def render_install_markdown(report: InstallReport, native_dir: Path) -> str:
    """The install for a job's step summary: one row per plugin, problems, the summary."""
    heading = "Native plugins" + (" (dry run)" if report.dry_run else "")
    lines = [f"### {heading}", "", f"{_summary(report, native_dir)}", ""]
    rows: list[tuple[object, ...]] = [
        (
            a.id,
            a.version or "",
            _LABELS[a.action][1 if report.dry_run else 0],
            a.library or "",
            human_size(a.size) if a.action in ("install", "update", "up-to-date") else "",
            (a.error.render() if a.error is not None else a.detail or ""),
        )
        for a in report.actions
    ]
    if rows:
        lines += markdown_table(("plugin", "version", "status", "library", "size", "note"), rows)
        lines.append("")
    for problem in report.scan_errors:
        lines.append(f"- error: `{problem.location or ''}` {problem.message}")
    return "\n".join(lines) + "\n"


def render_check_summary(report: CheckReport) -> str:
    """The check after an install: one line when clean, else errors and warnings with hints."""
    from plugin_packaging.check.report import render_summary

    return render_summary(report)
