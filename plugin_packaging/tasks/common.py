"""What every task does the same way: build `Settings`, and turn user errors into an exit.

Tasks stay thin: read settings, call one plain function, print its report, pick the exit status.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Collection, TypeVar

from invoke import Context, Exit

from ..errors import PackagingError
from ..settings import CONFIG_NAMESPACE, Settings

#: Exit status for usage and tool errors (a missing directory, a bad setting), as ruff and
#: lintian use it; 1 is kept for "the check found problems" / "a plugin failed".
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])

#: Help texts shared by tasks that take the same options.
COMMON_HELP = {
    "root": "the StreamKit checkout (default: the current directory); its invoke.yaml is read",
    "plugins_dir": "the plugin base directory the server loads (default: <root>/.plugins)",
    "platform": "target platform for library names: linux, macos or windows (default: this host)",
    "only": "act on this plugin id only (repeatable)",
    "dry_run": "print what would happen and change nothing",
}


def settings_for(c: Context, root: str | None = None, **flags: Any) -> Settings:
    """Settings from invoke's config, with `<root>/invoke.yaml` loaded when --root moves away.

    Invoke reads the project's `invoke.yaml` next to the tasks file it found; the installed
    command has none, and `--root` may name another checkout, so its file is loaded here, at
    invoke's project level (below `INVOKE_*` variables and flags).
    """
    root_path = Path(root if root is not None else c.config.get(CONFIG_NAMESPACE, {}).get("root", "."))
    config = c.config
    project = getattr(config, "_project_prefix", None)
    wanted = str(root_path.resolve()) + "/"
    if root_path.is_dir() and project != wanted:
        from invoke.config import AmbiguousMergeError
        from invoke.exceptions import UnknownFileType

        config.set_project_location(str(root_path.resolve()))
        try:
            config.load_project()
        except AmbiguousMergeError as exc:
            raise PackagingError(
                "bad-setting",
                f"cannot merge a setting with the defaults ({exc})",
                root_path / "invoke.yaml",
                hint="a setting that is a mapping by default (such as an extra) must stay a mapping; "
                "use `enabled: false` to turn an extra off",
            ) from None
        except (UnknownFileType, ValueError, OSError) as exc:
            raise PackagingError("bad-setting", f"cannot read the settings ({exc})", root_path) from None
    namespace = dict(config.get(CONFIG_NAMESPACE, {}) or {})
    return Settings.from_config(namespace, root=str(root_path), **flags)


def user_errors(function: F) -> F:
    """Turn a `PackagingError` into its one readable message and exit status 2."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except PackagingError as exc:
            raise Exit(exc.render(), EXIT_USAGE) from None

    return wrapper  # type: ignore[return-value]


def check_and_print(settings: Settings, bundles: Collection[str] | None) -> bool:
    """The checker's verdict after a task changed the tree; True when the loader would refuse.

    `bundles` names what changed (None: everything), so a re-run that changed nothing opens no
    library. The target platform is the one the task installed for, not necessarily the host.
    """
    from ..check import check_plugins_dir
    from ..library_rules import Target
    from ..report import render_check_summary

    result = check_plugins_dir(
        settings.plugins_dir,
        rule_overrides=settings.rules,
        bundles=set(bundles) if bundles is not None else None,
        root=settings.root,
        target=Target.of(settings.platform),
    )
    print(render_check_summary(result))
    return result.failed()
