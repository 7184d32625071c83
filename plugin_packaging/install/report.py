"""Turning results into text for people: one line per plugin, a summary, hints under errors.

Nothing here decides anything or touches the disk; it renders values made elsewhere.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from plugin_packaging.errors import display_path

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


def render_install(report: InstallReport, native_dir: Path) -> str:
    """The report of `copy-plugins-native`: repairs, a line per plugin, problems, a summary."""
    lines = [f"repair: {line}" for line in report.repairs]
    for error in report.scan_errors:
        lines.append(error.render())
    for warning in report.scan_warnings:
        lines.append(warning.render("warning"))
    width = max((len(a.id) for a in report.actions), default=0)
    for action in report.actions:
        lines.extend(_action_lines(action, width, report.dry_run))
    lines.append(_summary(report, native_dir))
    return "\n".join(lines)


def _action_lines(action: PluginAction, width: int, dry_run: bool) -> list[str]:
    label = _LABELS[action.action][1 if dry_run else 0]
    head = f"  {label:<13} {action.id:<{width}}  {action.version or '':<9}"
    if action.action in ("install", "update", "up-to-date"):
        head += f" {action.library}  {human_size(action.size)}"
    elif action.detail and action.error is None:
        head += f" {action.detail}"
    lines = [head.rstrip()]
    if action.error is not None:
        lines.extend("      " + line for line in action.error.render().splitlines())
    for warning in action.warnings:
        lines.extend("      " + line for line in warning.render("warning").splitlines())
    return lines


def _summary(report: InstallReport, native_dir: Path) -> str:
    counts = Counter(a.action for a in report.actions)
    order: tuple[Action, ...] = (
        "install",
        "update",
        "up-to-date",
        "not-built",
        "orphaned",
        "remove",
        "failed",
    )
    parts = [f"{counts[k]} {_LABELS[k][0].lower()}" for k in order if counts[k]]
    if report.scan_errors:
        parts.append(f"{len(report.scan_errors)} source error(s)")
    text = ", ".join(parts) or "no plugins found"
    suffix = " (dry run: nothing was changed)" if report.dry_run else ""
    return f"{text} -> {display_path(native_dir)}{suffix}"


def render_check_summary(report: CheckReport) -> str:
    """The check after an install: one line when clean, else errors and warnings with hints."""
    from plugin_packaging.check.report import render_summary

    return render_summary(report)
