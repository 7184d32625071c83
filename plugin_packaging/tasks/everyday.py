"""The everyday tasks: build plugins, build and install them, list them, migrate an old layout.

Thin, like every task here: settings in, one plain function from `build.py`, `listing.py` or
`migrate.py`, its report out, an exit status. Those modules are imported inside the tasks, so
`plugin-packaging --list` and shell completion stay fast.
"""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit

from plugin_packaging.settings import Profile
from plugin_packaging.tasks.common import (
    COMMON_HELP,
    EXIT_USAGE,
    INSTALL_HELP,
    append_step_summary,
    check_and_print,
    checked_color,
    checked_format,
    emit,
    install_and_print,
    print_json,
    print_lines,
    settings_for,
    user_errors,
)
from plugin_packaging.tasks.options import plugin_task

#: What a shell reports for a command stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130

_BUILD_HELP = {
    "only": "a plugin id to build (repeat for several: --only a --only b); default: every plugin",
    "release": "build cargo's release profile (the default; what the artifact paths name)",
    "debug": "build cargo's debug profile instead (install it with copy-plugins-native "
    "--profile debug)",
    "jobs": "passed to cargo and make as -j N (default: their own, one per CPU)",
    "dry_run": "print the build command of each plugin and run nothing",
    "accelerator": "build the NAME variants (e.g. cuda, a release's CUDA pass): only plugins that "
    "list NAME in `accelerators`, with --features NAME when the crate has it, into "
    "artifact_NAME when declared",
    "format": COMMON_HELP["format"],
    "color": COMMON_HELP["color"] + "; also asks cargo for colour",
}


@plugin_task(
    iterable=["only"],
    help={
        "root": COMMON_HELP["root"],
        **_BUILD_HELP,
    },
)
@user_errors
def build_plugins_native(
    c: Context,
    root: str | None = None,
    only: list[str] | None = None,
    dry_run: bool = False,
    release: bool = False,
    debug: bool = False,
    jobs: int = 0,
    accelerator: str | None = None,
    format: str = "text",
    color: str = "auto",
) -> None:
    """Build every native plugin source: cargo crates, and C plugins by their declared command.

    Official crates build with CARGO_TARGET_DIR=<root>/target/plugins, examples in their own
    target directory: both read from the `artifact` path (the part before release/ or debug/).
    Crates without Cargo.toml build with plugins.build_commands.<id> (a shell command run at
    the root), else with `make -C <dir>` when the directory has a Makefile. Extra cargo flags
    come from plugins.cargo_args (e.g. ["--offline"]). Exit status 1 when any plugin failed.
    """
    import sys

    from plugin_packaging.output import FORMATS, color_enabled
    from plugin_packaging.sources.build import (
        build_annotations,
        build_document,
        build_plugins,
        render_build_markdown,
        render_build_summary,
    )

    output_format = checked_format(format, FORMATS)
    colour = checked_color(color)
    settings = settings_for(c, root)
    profile = _profile(release, debug, settings.profile)
    # With JSON on stdout, the tools' own output goes to stderr, where the log keeps it.
    tool_output = sys.stderr if output_format == "json" else sys.stdout
    report = build_plugins(
        settings,
        only=only or (),
        profile=profile,
        jobs=jobs or None,
        dry_run=dry_run,
        accelerator=accelerator,
        out=tool_output,
        color=color_enabled(colour, tool_output),
    )
    if output_format == "json":
        print_json(build_document(report, settings.root))
    else:
        if output_format == "github":
            print_lines(build_annotations(report))
        emit(render_build_summary(report, settings.root), colour)
    append_step_summary(lambda: render_build_markdown(report, settings.root))
    if report.interrupted:
        raise Exit(code=EXIT_INTERRUPTED)
    if report.failed:
        raise Exit(code=1)


@plugin_task(
    iterable=["only", "adopt"],
    help={
        "root": COMMON_HELP["root"],
        "plugins_dir": COMMON_HELP["plugins_dir"],
        "only": "a plugin id to build and install (repeat for several); default: every plugin",
        "dry_run": "print the build commands and the install plan; build and change nothing",
        "jobs": "-j N for cargo and make, and the number of plugins copied in parallel",
        **INSTALL_HELP,
        "format": COMMON_HELP["format"] + "; json holds the build too",
        "color": COMMON_HELP["color"],
        "verbose": COMMON_HELP["verbose"],
    },
)
@user_errors
def install_plugins_native(
    c: Context,
    root: str | None = None,
    plugins_dir: str | None = None,
    only: list[str] | None = None,
    dry_run: bool = False,
    jobs: int = 0,
    require_all: bool = False,
    no_check: bool = False,
    prune: bool = False,
    force: bool = False,
    adopt: list[str] | None = None,
    adopt_all: bool = False,
    format: str = "text",
    color: str = "auto",
    verbose: bool = False,
    profile: str | None = None,
) -> None:
    """Build native plugins, then install them as copy-plugins-native does.

    A plugin whose build fails is not installed (its library on disk is from an older build)
    and its installed copy is kept; the others are installed. Exit status 1 when anything failed.
    """
    import sys

    from plugin_packaging.output import FORMATS, color_enabled
    from plugin_packaging.sources.build import (
        build_annotations,
        build_document,
        build_plugins,
        render_build_markdown,
        render_build_summary,
    )

    output_format = checked_format(format, FORMATS)
    colour = checked_color(color)
    settings = settings_for(
        c,
        root,
        plugins_dir=plugins_dir,
        jobs=jobs or None,
        require_all=require_all or None,
        prune=prune or None,
        check=False if no_check else None,
        profile=profile,
    )
    selected = tuple(only or ())
    tool_output = sys.stderr if output_format == "json" else sys.stdout
    built = build_plugins(
        settings,
        only=selected,
        profile=settings.profile,
        jobs=jobs or None,
        dry_run=dry_run,
        out=tool_output,
        color=color_enabled(colour, tool_output),
    )
    if output_format != "json":
        if output_format == "github":
            print_lines(build_annotations(built))
        emit(render_build_summary(built, settings.root), colour)
    append_step_summary(lambda: render_build_markdown(built, settings.root))
    if built.interrupted:
        raise Exit("interrupted: nothing was installed", EXIT_INTERRUPTED)
    failed_builds = {r.plugin_id for r in built.results if r.status == "failed"}
    if failed_builds:
        # Install only what built: an empty selection would mean "everything" to the installer.
        selected = tuple(r.plugin_id for r in built.results if r.status == "built")
        if not selected:
            raise Exit("nothing was installed: no plugin built", 1)
    if dry_run and output_format != "json":
        print("install plan (from the libraries on disk now; the build above did not run):")
    adopting = "all" if adopt_all else (adopt or ())
    if (
        install_and_print(
            settings,
            selected,
            dry_run=dry_run,
            force=force,
            adopt=adopting,
            output_format=output_format,
            verbose=verbose,
            color=colour,
            build=build_document(built, settings.root) if output_format == "json" else None,
        )
        or built.failed
    ):
        raise Exit(code=1)


@plugin_task(
    help={
        "root": COMMON_HELP["root"],
        "plugins_dir": COMMON_HELP["plugins_dir"],
        "platform": COMMON_HELP["platform"],
        "format": "text (an aligned table, the default) or json (versioned, for scripts)",
    },
)
@user_errors
def list_plugins_native(
    c: Context,
    root: str | None = None,
    plugins_dir: str | None = None,
    platform: str | None = None,
    format: str = "text",
) -> None:
    """List every native plugin: id, node kind, version, status, source and library.

    Status is one of: not built, built (not installed), installed and up to date, installed but
    stale (copy-plugins-native would update it), installed with no source here, or a bare file
    the loader skips. Changes nothing. Exit status 1 when a source declaration is broken.
    """
    if format not in ("text", "json"):
        raise Exit(f"error[bad-format]: --format must be text or json, not {format!r}", EXIT_USAGE)
    from plugin_packaging.install.listing import list_plugins, render_plugin_table

    settings = settings_for(c, root, plugins_dir=plugins_dir, platform=platform)
    listing = list_plugins(settings)
    if format == "json":
        import json

        print(json.dumps(listing.to_json(), indent=2))
    else:
        print(render_plugin_table(listing))
    if listing.failed:
        raise Exit(code=1)


@plugin_task(
    help={
        "root": COMMON_HELP["root"],
        "plugins_dir": COMMON_HELP["plugins_dir"],
        "dry_run": "print the migration plan and change nothing",
    },
)
@user_errors
def migrate_plugins_native(
    c: Context,
    root: str | None = None,
    plugins_dir: str | None = None,
    dry_run: bool = False,
) -> None:
    """Move a pre-#272 flat native/ directory into native/<id>/ bundles.

    Each bare library goes into native/<id>/ (the id of the source that builds it, else its
    stem: libpocket_tts.so -> pocket_tts) with a plugin.yml: generated from the source, or its
    old <stem>.plugin.yml renamed. An existing bundle is never overwritten: a conflict refuses
    the whole migration and changes nothing (exit status 1). Versioned files (libfoo.so.1) are
    reported and left in place. Ends with the checker's verdict on the result.
    """
    from plugin_packaging.install.migrate import (
        migrate_plugins,
        render_migration_plan,
        render_migration_result,
    )

    settings = settings_for(c, root, plugins_dir=plugins_dir)
    result = migrate_plugins(
        settings,
        dry_run=dry_run,
        on_plan=lambda plan: print(render_migration_plan(plan), flush=True),
    )
    summary = render_migration_result(result)
    if summary:
        print(summary)
    failed = result.failed
    if not dry_run and settings.native_dir.is_dir():
        failed = check_and_print(settings, None) or failed
    if failed:
        raise Exit(code=1)


def _profile(release: bool, debug: bool, configured: Profile) -> Profile:
    """--release or --debug, else the `plugins.profile` setting."""
    if release and debug:
        raise Exit("error[bad-profile]: give --release or --debug, not both", EXIT_USAGE)
    return "debug" if debug else "release" if release else configured


TASKS = [build_plugins_native, install_plugins_native, list_plugins_native, migrate_plugins_native]
