"""`copy-plugins-native`: install every built plugin into `.plugins/native/<id>/`."""

from __future__ import annotations

from invoke import Context, Exit, task

from .common import COMMON_HELP, check_and_print, settings_for, user_errors


@task(
    iterable=["only"],
    help={
        **COMMON_HELP,
        "require_all": "fail when a plugin is not built (for CI); by default it is reported and skipped",
        "no_check": "do not check the result against the loader's rules afterwards",
        "prune": "remove bundles this tool installed earlier whose source is gone",
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
    jobs: int = 0,
) -> None:
    """Install built native plugins into <plugins-dir>/native/<id>/ with a generated plugin.yml.

    Atomic per plugin, idempotent (unchanged plugins are not copied again), stale files removed.
    """
    from ..install import install_plugins
    from ..report import render_install

    settings = settings_for(
        c,
        root,
        plugins_dir=plugins_dir,
        platform=platform,
        jobs=jobs or None,
        require_all=require_all or None,
        prune=prune or None,
        check=False if no_check else None,
    )
    report = install_plugins(
        settings, only=only or (), dry_run=dry_run, require_all=settings.require_all
    )
    print(render_install(report, settings.native_dir))
    failed = report.failed
    if settings.check and not dry_run:
        failed = check_and_print(settings, report.changed) or failed
    if failed:
        raise Exit(code=1)


TASKS = [copy_plugins_native]
