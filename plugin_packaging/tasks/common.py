"""What every task does the same way: build `Settings`, and turn user errors into an exit.

Tasks stay thin: read settings, call one plain function, print its report, pick the exit status.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from invoke.context import Context
from invoke.exceptions import Exit

from plugin_packaging.errors import PackagingError
from plugin_packaging.settings import (
    CONFIG_NAMESPACE,
    Settings,
    find_checkout,
    is_checkout,
    project_settings_file,
    read_settings_file,
    unknown_environment_settings,
)

#: Exit status for usage and tool errors (a missing directory, a bad setting), as ruff and
#: lintian use it; 1 is kept for "the check found problems" / "a plugin failed".
EXIT_USAGE = 2

if TYPE_CHECKING:
    from plugin_packaging.check.run import CheckReport
    from plugin_packaging.output import ColorChoice

F = TypeVar("F", bound=Callable[..., Any])
FormatT = TypeVar("FormatT", bound=str)

#: Help texts shared by tasks that take the same options.
COMMON_HELP = {
    "root": "the StreamKit checkout (default: the nearest directory, from the current one up, "
    "holding plugins/native/ or an invoke.yaml with a `plugins` section); its invoke.yaml is read",
    "plugins_dir": "the plugin base directory the server loads (default: <root>/.plugins)",
    "platform": "target platform for library names: linux, macos or windows (default: this host)",
    "only": "act on this plugin id only (repeatable)",
    "dry_run": "print what would happen and change nothing",
    "format": "output: text (default), json (a versioned document, schemas in "
    "plugin_packaging/schemas/) or github (annotations on the files concerned, for GitHub Actions)",
    "color": "colour the text output: auto (default: on a terminal, unless NO_COLOR is set; "
    "FORCE_COLOR forces it), always or never",
    "verbose": "show every plugin, also when nothing changed",
}

#: Help texts of the options of the tasks that install (copy- and install-plugins-native).
INSTALL_HELP = {
    "require_all": "fail when a plugin is not built (for CI); by default it is reported and skipped",
    "no_check": "do not check the result against the loader's rules afterwards",
    "prune": "remove bundles this checkout installed earlier whose source is gone",
    "force": "install a plugin even when the checker finds errors in its new bundle (by default "
    "it is not installed and the installed copy is kept)",
    "adopt": "take over native/ID although this tool did not create it (its content is replaced)",
    "adopt_all": "take over every native/<id>/ of a plugin being installed (see --adopt)",
    "profile": "whose builds to install: release (default: the artifact paths as declared) or "
    "debug (their debug/ twins, as build-plugins-native --debug leaves them)",
}

#: Help texts of the options of the tasks that judge libraries against the loader's rules
#: (check-plugins-native, verify-plugin-bundles).
JUDGING_HELP = {
    "platform": "platform the libraries must load on: linux, macos or windows (default: this host)",
    "arch": "architecture they must load on, e.g. x86_64, aarch64 (default: this host)",
    "strict": "fail on warnings too",
}


def settings_for(
    c: Context, root: str | None = None, *, need_checkout: bool = True, **flags: Any
) -> Settings:
    """Settings from invoke's config, with the checkout's `invoke.yaml` loaded.

    The checkout is `--root` (relative to the current directory), else `plugins.root`, else
    found by walking up from the current directory as git and cargo do. With no checkout a task
    stops with `not-a-checkout` before it creates anything, unless it was given all it needs on
    the command line (`need_checkout=False`): then the current directory stands in for the root.
    Path flags are relative to the current directory; paths in settings files to the root.

    Invoke reads the project's `invoke.yaml` next to the tasks file it found; the installed
    command has none, and the checkout may be elsewhere, so its file is loaded here, at invoke's
    project level (below `INVOKE_*` variables and flags).
    """
    unknown_environment_settings(os.environ)
    root_path = _checkout_root(c, root, need_checkout)
    flags = {
        key: str(Path(value).expanduser().absolute())
        if key in PATH_FLAGS and value is not None
        else value
        for key, value in flags.items()
    }
    config = c.config
    project = getattr(config, "_project_prefix", None)
    wanted = str(root_path.resolve()) + "/"
    if root_path.is_dir() and project != wanted:
        from invoke.config import AmbiguousMergeError

        project_file = _checked_project_file(root_path)
        config.set_project_location(str(root_path.resolve()))
        try:
            config.load_project()
        except PackagingError:
            raise  # plugin-packaging's own reader (cli.py) already named the file
        except AmbiguousMergeError as exc:
            raise PackagingError(
                "bad-setting",
                f"cannot merge a setting with the defaults ({_shortened(exc)})",
                project_file or root_path / "invoke.yaml",
                hint="a setting that is a mapping by default (such as an extra) must stay a mapping; "
                "use `enabled: false` to turn an extra off",
            ) from None
        except Exception as exc:
            # The file was read and parsed above; what invoke still trips over (its own YAML
            # version, an invoke.py that raises) is still about the user's file, never a bug here.
            raise PackagingError(
                "bad-setting",
                f"cannot read the settings ({_shortened(exc)})",
                project_file or root_path,
            ) from None
    namespace = dict(config.get(CONFIG_NAMESPACE, {}) or {})
    return Settings.from_config(namespace, root=str(root_path), **flags)


#: Task flags that name files or directories: relative to the current directory, as a shell user
#: expects, while the same settings in invoke.yaml are relative to the root.
PATH_FLAGS = frozenset(
    {"plugins_dir", "dist_dir", "existing_registry", "signing_key", "public_key", "template"}
)


def _checkout_root(c: Context, root: str | None, need_checkout: bool) -> Path:
    """The checkout a task works on (see `settings_for`)."""
    if root is None:
        configured = (c.config.get(CONFIG_NAMESPACE, {}) or {}).get("root")
        root = str(configured) if configured else None
    if root is not None:
        path = Path(root).expanduser().absolute()
        if not path.is_dir():
            raise PackagingError(
                "root-missing",
                "the StreamKit checkout does not exist or is not a directory",
                path,
                hint="pass --root DIR naming a StreamKit checkout",
            )
        if need_checkout and not is_checkout(path):
            raise _not_a_checkout(
                path,
                ": it holds neither plugins/native/ nor an invoke.yaml with a `plugins` section",
            )
        return path
    here = Path.cwd()
    found = find_checkout(here)
    if found is not None:
        return found
    if need_checkout:
        raise _not_a_checkout(
            here,
            ", nor is any directory above it (none holds plugins/native/ or an invoke.yaml "
            "with a `plugins` section)",
        )
    return here


def _not_a_checkout(path: Path, why: str) -> PackagingError:
    return PackagingError(
        "not-a-checkout",
        f"not a StreamKit checkout{why}",
        path,
        hint="run inside a StreamKit checkout, or pass --root DIR",
    )


def _checked_project_file(root: Path) -> Path | None:
    """Read the settings file invoke is about to load, with the limits manifests get.

    Invoke reads it with a plain `yaml.safe_load`/`json.load` and then merges and copies the
    result: a billion-laughs alias bomb, a 50 MiB file, a FIFO or absurd nesting would cost
    unbounded time or memory there, and a syntax error would surface as a traceback. Reading it
    first through `read_settings_file` turns each of those into one message naming the file.
    """
    path = project_settings_file(root)
    if path is not None:
        read_settings_file(path)
    return path


def _shortened(exc: BaseException, limit: int = 300) -> str:
    """An exception's text on one line, cut short (invoke's merge errors print whole configs)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tolerate_any_file_name_in_output() -> None:
    """Let stdout and stderr print any file name, escaping what their encoding cannot hold.

    A file name that is not UTF-8 reaches Python as surrogate escapes; with a strict UTF-8
    stream (a `*.UTF-8` locale, or PYTHONIOENCODING=utf-8) printing it would raise
    UnicodeEncodeError and lose the whole report. Streams that already cope (surrogateescape in
    Python's UTF-8 mode, or a StringIO in tests) are left alone.
    """
    import sys

    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass  # a closed or detached stream: nothing to protect


def user_errors(function: F) -> F:
    """Turn a `PackagingError` into its one readable message and exit status 2.

    Also makes the output streams able to print any file name first (see
    `_tolerate_any_file_name_in_output`), so that a report is never lost to its own printing.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _tolerate_any_file_name_in_output()
        try:
            return function(*args, **kwargs)
        except PackagingError as exc:
            raise Exit(exc.render(), EXIT_USAGE) from None

    return cast(F, wrapper)  # functools.wraps keeps the signature invoke reads


def checked_format(output_format: str, formats: Sequence[FormatT]) -> FormatT:
    """The one of `formats` that --format names, typed as `formats` is; else a usage error."""
    for known in formats:
        if known == output_format:
            return known
    raise PackagingError(
        "bad-option",
        f"unknown --format {output_format!r}",
        hint="use one of: " + ", ".join(formats),
    )


def install_and_print(
    settings: Settings,
    only: Sequence[str],
    *,
    dry_run: bool,
    force: bool = False,
    adopt: Sequence[str] | Literal["all"] = (),
    output_format: str = "text",
    verbose: bool = False,
    color: ColorChoice = "auto",
    build: Mapping[str, Any] | None = None,
) -> bool:
    """Install (see `install_plugins`), print the report, then the checker's verdict unless
    checking is off or this is a dry run; True when a plugin failed or the check did.

    Text goes out as it is known (the install first, then the check); JSON is one document
    holding both (and `build`, the document of a build that ran first); github adds an
    annotation per problem, on the source manifest.
    """
    from plugin_packaging.install.report import (
        install_annotations,
        install_document,
        render_install,
        render_install_markdown,
    )
    from plugin_packaging.install.run import install_plugins

    report = install_plugins(
        settings,
        only=only,
        dry_run=dry_run,
        require_all=settings.require_all,
        force=force,
        adopt=adopt,
    )
    checking = settings.check and not dry_run
    if output_format == "json":
        check = run_post_install_check(settings, report.to_check) if checking else None
        print_json(install_document(report, settings.native_dir, check, build))
    else:
        if output_format == "github":
            print_lines(install_annotations(report))
        emit(render_install(report, settings.native_dir, verbose=verbose), color)
        check = run_post_install_check(settings, report.to_check) if checking else None
        if check is not None:
            from plugin_packaging.install.report import render_check_summary

            if output_format == "github":
                from plugin_packaging.check.report import github_command

                sources = source_manifests(settings)
                print_lines(
                    github_command(f, sources)
                    for f in check.findings
                    if f.severity in ("error", "warning")
                )
            emit(render_check_summary(check), color)

    def markdown() -> str:
        text = render_install_markdown(report, settings.native_dir)
        if check is not None:
            from plugin_packaging.check.report import render_markdown

            text += "\n" + render_markdown(check)
        return text

    append_step_summary(markdown)
    return report.failed or (check is not None and check.failed())


def run_post_install_check(settings: Settings, bundles: Collection[str] | None) -> CheckReport:
    """The checker's verdict after a task changed the tree.

    The verdict always covers the whole tree. `bundles` names what changed (None: everything);
    the other bundles are judged again only when their files changed since their verdict was
    recorded (see `install/verdicts.py`), so a re-run that changed nothing opens no library. The
    target platform is the one the task installed for, not necessarily the host.
    """
    from plugin_packaging.check.run import check_plugins_dir
    from plugin_packaging.install.verdicts import check_installed_tree
    from plugin_packaging.target import Target

    if bundles is not None:
        return check_installed_tree(settings, bundles)
    return check_plugins_dir(
        settings.plugins_dir,
        rule_overrides=settings.rules,
        root=settings.root,
        target=Target.of(settings.platform),
    )


def check_and_print(
    settings: Settings, bundles: Collection[str] | None, color: ColorChoice = "auto"
) -> bool:
    """The checker's verdict after a task changed the tree; True when the loader would refuse."""
    from plugin_packaging.install.report import render_check_summary

    result = run_post_install_check(settings, bundles)
    emit(render_check_summary(result), color)
    return result.failed()


def source_manifests(settings: Settings) -> dict[str, Path]:
    """Installed plugin id -> the source manifest in the checkout it is made from, so that
    annotations about an installed bundle (under the git-ignored `.plugins/`) can be put on a
    file the pull request holds. Empty where the root holds no sources."""
    from plugin_packaging.sources.scan import scan_sources

    try:
        scan = scan_sources(settings)
    except PackagingError:
        return {}
    return {s.id: s.manifest_path for s in scan.sources if s.manifest_path is not None}


# --- printing -------------------------------------------------------------------------------


def emit(text: str, color: ColorChoice = "auto") -> None:
    """Print a report for people: coloured when `color` says so (see `output.color_enabled`)."""
    import sys

    from plugin_packaging.output import Style, color_enabled

    print(Style(color_enabled(color, sys.stdout)).report(text))


def print_lines(lines: Iterable[str]) -> None:
    text = "\n".join(lines)
    if text:
        print(text)


def print_json(data: Any) -> None:
    """A JSON document on stdout; ASCII-only, so any file name survives any terminal or pipe."""
    import json

    print(json.dumps(data, indent=2, ensure_ascii=True))


#: The file GitHub Actions renders under a job (Markdown), named by this variable.
STEP_SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"


def append_step_summary(markdown: Callable[[], str]) -> None:
    """Append `markdown()` to the job's step summary when running in GitHub Actions.

    The summary is a convenience: a file that cannot be written is reported on stderr and
    never changes the outcome of the task.
    """
    import os
    import sys

    target = os.environ.get(STEP_SUMMARY_VARIABLE)
    if not target:
        return
    try:
        with open(target, "a", encoding="utf-8") as summary:
            summary.write(markdown() + "\n")
    except OSError as exc:
        print(
            f"warning[step-summary-not-written]: {target}: {exc.strerror or exc}", file=sys.stderr
        )


def checked_color(color: str) -> ColorChoice:
    """The --color value, refused as a usage error unless auto, always or never."""
    from plugin_packaging.output import COLOR_CHOICES

    for known in COLOR_CHOICES:
        if known == color:
            return known
    raise PackagingError(
        "bad-option",
        f"unknown --color {color!r}",
        hint="use one of: " + ", ".join(COLOR_CHOICES),
    )
