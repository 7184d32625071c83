"""`check-plugins-native`: say what StreamKit's loader will do with a plugin directory, and what is wrong.

Exit status: 0 when nothing is at error level (nor at warning level with --strict), 1 when the
findings fail the check, 2 for usage and tool errors (a missing directory, a bad setting).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit

from plugin_packaging.errors import PackagingError, did_you_mean
from plugin_packaging.tasks.common import (
    COMMON_HELP,
    JUDGING_HELP,
    append_step_summary,
    checked_color,
    checked_format,
    emit,
    settings_for,
    source_manifests,
    user_errors,
)
from plugin_packaging.tasks.options import plugin_task

if TYPE_CHECKING:
    from plugin_packaging.check.run import CheckReport
    from plugin_packaging.settings import Settings
    from plugin_packaging.target import Target


@plugin_task(
    help={
        "root": COMMON_HELP["root"] + "; also the server's working directory, against which "
        "active records' entrypoints resolve",
        "plugins_dir": COMMON_HELP["plugins_dir"],
        **JUDGING_HELP,
        "format": "output: text (default), json (versioned, see schemas/check-report.v1.json) or "
        "github (workflow commands for annotations)",
        "probe": "also load each library in a throwaway child process, with a time limit, to read "
        "its real node kind and API version (runs the plugins' constructors)",
        "probe_timeout": "seconds each probed library may take (default 5)",
        "list_rules": "print every rule code with its severity (after settings) and exit",
        "color": COMMON_HELP["color"],
        "only": "check these installed plugins only (their directory names under native/); the "
        "load plan still covers the whole directory",
    },
    iterable=["only"],
)
@user_errors
def check_plugins_native(
    c: Context,
    root: str | None = None,
    plugins_dir: str | None = None,
    platform: str | None = None,
    arch: str | None = None,
    format: str = "text",
    strict: bool = False,
    probe: bool = False,
    probe_timeout: float = 5.0,
    list_rules: bool = False,
    color: str = "auto",
    only: list[str] | None = None,
) -> None:
    """Check <plugins-dir> against the server's loader rules and print the load plan.

    Rules can be re-graded or ignored per code in invoke.yaml: `plugins.rules: {CODE: warning}`.
    """
    from plugin_packaging.check.report import FORMATS, render
    from plugin_packaging.target import Target

    output_format = checked_format(format, FORMATS)
    colour = checked_color(color)
    if probe_timeout <= 0:
        raise PackagingError(
            "bad-option",
            f"--probe-timeout must be positive, not {probe_timeout:g}",
            hint="give seconds, e.g. --probe-timeout 5",
        )
    # A named plugin directory, or a named server directory (--root, whose .plugins/ it
    # checks), is all a check needs: it works outside any checkout (--list-rules too).
    named = plugins_dir is not None or root is not None or list_rules
    settings = settings_for(
        c, root, need_checkout=not named, plugins_dir=plugins_dir, platform=platform
    )
    if list_rules:
        from plugin_packaging.check.report import render_rules
        from plugin_packaging.rules.table import validate_overrides

        print(render_rules(validate_overrides(settings.rules)))
        return
    target = Target.of(settings.platform, arch)
    report = run_check(
        settings, target=target, probe=probe, probe_timeout=probe_timeout, only=only or None
    )
    if output_format == "text":
        emit(render(report, "text", strict=strict), colour)
    else:
        # Annotations about installed bundles go on their source manifests, which a pull
        # request holds (`.plugins/` is git-ignored).
        sources = source_manifests(settings) if output_format == "github" else None
        print(render(report, output_format, strict=strict, sources=sources))
    from plugin_packaging.check.report import render_markdown

    append_step_summary(lambda: render_markdown(report, strict=strict))
    if report.failed(strict):
        raise Exit(code=1)


def run_check(
    settings: Settings,
    *,
    target: Target,
    probe: bool = False,
    probe_timeout: float = 5.0,
    only: Sequence[str] | None = None,
) -> CheckReport:
    """The check behind the task, on a plugin directory from settings; `only` names the
    installed bundles whose own rules run (an unknown name is a usage error)."""
    from plugin_packaging.check.run import check_plugins_dir

    report = check_plugins_dir(
        settings.plugins_dir,
        rule_overrides=settings.rules,
        bundles=set(only) if only else None,
        root=settings.root,
        target=target,
        probe=probe,
        probe_timeout=probe_timeout,
    )
    unknown = [name for name in only or () if name not in report.bundles]
    if unknown:
        raise PackagingError(
            "unknown-plugin",
            f"no installed plugin {', '.join(map(repr, unknown))}",
            settings.native_dir,
            hint=did_you_mean(unknown[0], report.bundles)
            or "installed: " + (", ".join(report.bundles) or "none"),
        )
    return report


TASKS = [check_plugins_native]
