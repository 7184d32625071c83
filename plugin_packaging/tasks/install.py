"""`copy-plugins-native`: install every built plugin into `.plugins/native/<id>/`."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit

from plugin_packaging.tasks.common import (
    COMMON_HELP,
    INSTALL_HELP,
    checked_color,
    checked_format,
    install_and_print,
    settings_for,
    user_errors,
)
from plugin_packaging.tasks.options import plugin_task


@plugin_task(
    iterable=["only", "adopt"],
    help={
        **COMMON_HELP,
        **INSTALL_HELP,
        "jobs": "plugins copied in parallel (default: plugins.jobs, 4)",
    },
)
@user_errors
def copy_plugins_native(
    c: Context,
    root: str | None = None,
    plugins_dir: str | None = None,
    platform: str | None = None,
    only: list[str] | None = None,
    dry_run: bool = False,
    require_all: bool = False,
    no_check: bool = False,
    prune: bool = False,
    adopt: list[str] | None = None,
    adopt_all: bool = False,
    jobs: int = 0,
    force: bool = False,
    format: str = "text",
    color: str = "auto",
    verbose: bool = False,
    profile: str | None = None,
) -> None:
    """Install built native plugins into <plugins-dir>/native/<id>/ with a generated plugin.yml.

    Atomic per plugin, idempotent (unchanged plugins are not copied again), stale files removed.
    A new bundle the loader would refuse is not installed and the old copy is kept (--force).
    """
    from plugin_packaging.output import FORMATS

    output_format = checked_format(format, FORMATS)
    colour = checked_color(color)
    settings = settings_for(
        c,
        root,
        plugins_dir=plugins_dir,
        platform=platform,
        jobs=jobs or None,
        require_all=require_all or None,
        prune=prune or None,
        check=False if no_check else None,
        profile=profile,
    )
    adopting = "all" if adopt_all else (adopt or ())
    if install_and_print(
        settings,
        only or (),
        dry_run=dry_run,
        force=force,
        adopt=adopting,
        output_format=output_format,
        verbose=verbose,
        color=colour,
    ):
        raise Exit(code=1)


TASKS = [copy_plugins_native]
