"""What every task does the same way: build `Settings`, and turn user errors into an exit.

Tasks stay thin: read settings, call one plain function, print its report, pick the exit status.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from invoke.context import Context
from invoke.exceptions import Exit

from plugin_packaging.errors import PackagingError
from plugin_packaging.settings import CONFIG_NAMESPACE, Settings

#: Exit status for usage and tool errors (a missing directory, a bad setting), as ruff and
#: lintian use it; 1 is kept for "the check found problems" / "a plugin failed".
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])
FormatT = TypeVar("FormatT", bound=str)

#: Help texts shared by tasks that take the same options.
COMMON_HELP = {
    "root": "the StreamKit checkout (default: the current directory); its invoke.yaml is read",
    "plugins_dir": "the plugin base directory the server loads (default: <root>/.plugins)",
    "platform": "target platform for library names: linux, macos or windows (default: this host)",
    "only": "act on this plugin id only (repeatable)",
    "dry_run": "print what would happen and change nothing",
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
}

#: Help texts of the options of the tasks that judge libraries against the loader's rules
#: (check-plugins-native, verify-plugin-bundles).
JUDGING_HELP = {
    "platform": "platform the libraries must load on: linux, macos or windows (default: this host)",
    "arch": "architecture they must load on, e.g. x86_64, aarch64 (default: this host)",
    "strict": "fail on warnings too",
}


def settings_for(c: Context, root: str | None = None, **flags: Any) -> Settings:
    """Settings from invoke's config, with `<root>/invoke.yaml` loaded when --root moves away.

    Invoke reads the project's `invoke.yaml` next to the tasks file it found; the installed
    command has none, and `--root` may name another checkout, so its file is loaded here, at
    invoke's project level (below `INVOKE_*` variables and flags).
    """
    root_path = Path(
        root if root is not None else c.config.get(CONFIG_NAMESPACE, {}).get("root", ".")
    )
    config = c.config
    project = getattr(config, "_project_prefix", None)
    wanted = str(root_path.resolve()) + "/"
    if root_path.is_dir() and project != wanted:
        from invoke.config import AmbiguousMergeError

        project_file = _checked_project_file(root_path)
        config.set_project_location(str(root_path.resolve()))
        try:
            config.load_project()
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


#: The project files invoke reads at a root, in its order; it takes the first that exists.
#: (An invoke.py is Python code that invoke runs: there is nothing to check in it beforehand.)
PROJECT_FILES = ("invoke.yaml", "invoke.yml", "invoke.json")


def _checked_project_file(root: Path) -> Path | None:
    """Read the settings file invoke is about to load, with the limits manifests get.

    Invoke reads it with a plain `yaml.safe_load`/`json.load` and then merges and copies the
    result: a billion-laughs alias bomb, a 50 MiB file, a FIFO or absurd nesting would cost
    unbounded time or memory there, and a syntax error would surface as a traceback. Reading it
    first through `yamlio` turns each of those into one message naming the file.
    """
    import os

    for name in PROJECT_FILES:
        path = root / name
        try:
            os.stat(path)
        except FileNotFoundError:
            continue  # invoke skips a missing (or dangling) file too
        except OSError:
            pass  # a symlink loop, no permission: read_text below says which
        from plugin_packaging._fs.yamlio import load_json, load_yaml, read_text

        text = read_text(path)
        if name.endswith(".json"):
            data = load_json(text, path, code="bad-setting", what="a settings file")
        else:
            data = load_yaml(text, path)
        if data is not None and not isinstance(data, dict):
            raise PackagingError(
                "bad-setting",
                f"must be a mapping of settings, not a {type(data).__name__}",
                path,
                hint=f"put the settings under `{CONFIG_NAMESPACE}:`",
            )
        section = (data or {}).get(CONFIG_NAMESPACE)
        if section is not None and not isinstance(section, dict):
            raise PackagingError(
                "bad-setting",
                f"`{CONFIG_NAMESPACE}` must be a mapping of settings, not a {type(section).__name__}",
                path,
                hint=f"e.g. `{CONFIG_NAMESPACE}: {{plugins_dir: .plugins}}`",
            )
        return path
    return None


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
) -> bool:
    """Install (see `install_plugins`), print the report, then the checker's verdict unless
    checking is off or this is a dry run; True when a plugin failed or the check did."""
    from plugin_packaging.install.report import render_install
    from plugin_packaging.install.run import install_plugins

    report = install_plugins(
        settings,
        only=only,
        dry_run=dry_run,
        require_all=settings.require_all,
        force=force,
        adopt=adopt,
    )
    print(render_install(report, settings.native_dir))
    failed = report.failed
    if settings.check and not dry_run:
        failed = check_and_print(settings, report.changed) or failed
    return failed


def check_and_print(settings: Settings, bundles: Collection[str] | None) -> bool:
    """The checker's verdict after a task changed the tree; True when the loader would refuse.

    The verdict always covers the whole tree. `bundles` names what changed (None: everything);
    the other bundles are judged again only when their files changed since their verdict was
    recorded (see `install/verdicts.py`), so a re-run that changed nothing opens no library. The
    target platform is the one the task installed for, not necessarily the host.
    """
    from plugin_packaging.check.run import check_plugins_dir
    from plugin_packaging.install.report import render_check_summary
    from plugin_packaging.install.verdicts import check_installed_tree
    from plugin_packaging.target import Target

    if bundles is not None:
        result = check_installed_tree(settings, bundles)
    else:
        result = check_plugins_dir(
            settings.plugins_dir,
            rule_overrides=settings.rules,
            root=settings.root,
            target=Target.of(settings.platform),
        )
    print(render_check_summary(result))
    return result.failed()
