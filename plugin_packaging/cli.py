"""The `plugin-packaging` console command: invoke's `Program` over our task collection.

It works from any directory (a StreamKit checkout needs no copy of this code); `--root` on
each task names the checkout.

Start-up is most of what a quick command costs (about 120 of the 160 ms of a no-op
`copy-plugins-native`), so this module imports only invoke and the thin task modules; each task
imports the code it runs. Measured with benchmarks/run.py: the interpreter takes ~22 ms,
`import invoke` ~95 ms more (its `__init__` imports `importlib.metadata` for its version, and
`unittest.mock`, which brings `asyncio`, for `MockContext`), our own modules under 10 ms.
"""

from __future__ import annotations

import gc

# Importing invoke and the tasks creates tens of thousands of objects that live as long as the
# process; the cyclic collector would scan them over and over while they are being created (about
# 5% of the start-up). It is paused for these imports only, and what they built is then frozen
# out of later collections; collection itself stays on for the tasks.
_collecting = gc.isenabled()
gc.disable()
try:
    import errno
    import inspect
    import os
    import re
    import sys
    from pathlib import Path
    from typing import Any

    from invoke.completion.complete import complete, print_completion_script
    from invoke.config import Config
    from invoke.exceptions import Exit, ParseError, UncastableEnvVar, UnexpectedExit
    from invoke.parser.argument import Argument
    from invoke.parser.context import ParserContext
    from invoke.program import Program

    from plugin_packaging import __version__
    from plugin_packaging.errors import PackagingError, did_you_mean
    from plugin_packaging.settings import read_settings_file
    from plugin_packaging.tasks import ns
    from plugin_packaging.tasks.common import EXIT_USAGE
    from plugin_packaging.tasks.options import (
        CORE_SHORT_FLAGS,
        Option,
        OptionArgument,
        flag_name,
    )
finally:
    gc.freeze()
    if _collecting:
        gc.enable()

#: What the tool is for: the first line of `plugin-packaging --help`.
DESCRIPTION = (
    "Find, build, install, check and package StreamKit's native plugins: `<task> --help` shows "
    "a task's options."
)

#: A shell's exit status for a command stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


class PluginPackagingProgram(Program):
    """invoke's `Program`, with the options of this tool only and usage errors that help.

    invoke's own options (`--dry`, `--echo`, `--pty`, `--hide`, `--warn-only`, `--debug`,
    `--prompt-for-sudo-password`, ...) configure `c.run()` and the task runner; no task here uses
    them, and `--dry` silently installing for real is worse than an error. They are left out, so
    the parser refuses them as unknown options (exit status 2).

    Python's bytecode cache stays on (invoke turns it off for a project's `tasks.py`): our tasks
    are an installed package, and without the cache every module a task imports is compiled
    again on every run (about 45 ms of a first install, measured with benchmarks/run.py).
    """

    def core_args(self) -> list[Argument]:
        return [
            OptionArgument(
                names=("help", CORE_SHORT_FLAGS["help"]),
                optional=True,
                option=Option(placeholder="TASK"),
                help="show this help, or a task's options (`--help TASK`, or `TASK --help`)",
            ),
            OptionArgument(
                names=("version", CORE_SHORT_FLAGS["version"]),
                kind=bool,
                default=False,
                help="show the version and exit",
            ),
            OptionArgument(
                names=("list", CORE_SHORT_FLAGS["list"]),
                kind=bool,
                default=False,
                help="list the tasks and exit",
            ),
            OptionArgument(
                names=("config",),
                option=Option(placeholder="FILE"),
                help="a YAML or JSON settings file read after the checkout's invoke.yaml (see the "
                "README's settings section); Python config files are never executed",
            ),
            OptionArgument(
                names=("print-completion-script",),
                option=Option(placeholder="bash|zsh|fish"),
                default="",
                help="print the tab-completion script for bash, zsh or fish",
            ),
            OptionArgument(
                names=("complete",),
                kind=bool,
                default=False,
                help="print completion candidates for the rest of the command line (used by the "
                "completion script)",
            ),
        ]

    def task_args(self) -> list[Argument]:
        return []  # the task collection is built in; there is nothing to search for or load

    def run(self, argv: list[str] | None = None, exit: bool = True) -> None:
        """invoke's `run`, with exit status 2 and a readable message for every usage error."""
        try:
            self.create_config()
            self.parse_core(argv)
            self.parse_collection()
            self.parse_tasks()
            self.parse_cleanup()
            self.update_config()
            self.execute()
        except ParseError as exc:
            self._stop(self.usage_error(exc), EXIT_USAGE, exit)
        except PackagingError as exc:
            self._stop(exc.render(), EXIT_USAGE, exit)
        except UnexpectedExit as exc:  # c.run() without warn=True; not used by our tasks
            self._stop(str(exc) if exc.result.hide else "", exc.result.exited, exit)
        except Exit as exc:
            self._stop(exc.message or "", exc.code, exit)
        except KeyboardInterrupt:
            self._stop("", EXIT_INTERRUPTED, exit)

    @staticmethod
    def _stop(message: str, code: int, exit: bool) -> None:
        if message:
            print(message, file=sys.stderr)
        if exit:
            sys.exit(code)

    def parse_core(self, argv: list[str] | None) -> None:
        self.normalize_argv(argv)
        self.parse_core_args()
        if self.args.version.value:
            self.print_version()
            raise Exit
        shell = self.args["print-completion-script"].value
        if shell:
            if shell not in ("bash", "zsh", "fish"):
                raise ParseError(
                    f"--print-completion-script takes bash, zsh or fish, not {shell!r}"
                )
            print_completion_script(shell=shell, names=self.binary_names)
            raise Exit

    def parse_cleanup(self) -> None:
        wanted = self.args.help.value
        if wanted is True:
            self.print_help()
            raise Exit
        if wanted:
            if wanted not in self.parser.contexts:
                raise ParseError(f"No idea what {wanted!r} is!")
            self.print_task_help(wanted)
            raise Exit
        if self.args.list.value:
            self.list_flat()
            raise Exit
        if self.args.complete.value:
            complete(
                names=self.binary_names,
                core=self.core,
                initial_context=self.initial_context,
                collection=self.collection,
                parser=self._make_parser(),
            )
        if not self.tasks:
            self.print_help()
            raise Exit(code=EXIT_USAGE)

    def update_config(self, merge: bool = True) -> None:
        """Load the `--config` file, if any: the one settings file named on the command line."""
        path = self.args.config.value
        if path is not None:
            if not os.path.lexists(path):
                raise PackagingError(
                    "config-missing",
                    "does not exist",
                    Path(path),
                    hint="--config names a YAML or JSON settings file",
                )
            self.config.set_runtime_path(Path(path).absolute())
            self.config.load_runtime(merge=False)
        if merge:
            self.config.merge()

    def print_help(self) -> None:
        print(DESCRIPTION)
        print()
        print(f"Usage: {self.binary} [--config FILE] TASK [TASK-OPTIONS] [TASK [TASK-OPTIONS]...]")
        print(f"       {self.binary} --help TASK")
        print()
        print("Options:")
        print()
        self.print_columns(help_tuples(self.initial_context))
        self.list_flat()

    def task_list_opener(self, extra: str = "") -> str:
        return "Tasks"

    def print_task_help(self, name: str) -> None:
        context = self.parser.contexts[name]
        print(f"Usage: {self.binary} {name} [OPTIONS]")
        print()
        for line in (inspect.getdoc(self.collection[name]) or "").splitlines():
            print(self.leading_indent + line if line.strip() else "")
        print()
        print("Options:")
        print()
        tuples = help_tuples(context)
        if tuples:
            self.print_columns(tuples)
        else:
            print(self.leading_indent + "none")

    def usage_error(self, exc: ParseError) -> str:
        """A parse error as one message with a did-you-mean: unknown tasks and options, values."""
        text = str(exc)
        unknown = re.fullmatch(r"No idea what '(.*)' is!", text, re.DOTALL)
        missing = re.fullmatch(r"Flag (\S+) needed value and was not given one!", text)
        if unknown:
            word = unknown.group(1)
            context = exc.context if isinstance(exc.context, ParserContext) else None
            if word.startswith("-"):
                flags = list(self.initial_context.flags)
                task = context.name if context is not None and context.name else None
                if context is not None and task is not None:
                    flags += list(context.flags)
                where = f" for {task}" if task else ""
                see = f"{self.binary} {task} --help" if task else f"{self.binary} --help"
                error = PackagingError(
                    "unknown-option",
                    f"unknown option {word}{where}",
                    hint=did_you_mean(word.split("=")[0], flags) or f"`{see}` lists the options",
                )
            else:
                names = list(self.collection.task_names)
                for aliases in self.collection.task_names.values():
                    names.extend(aliases)
                error = PackagingError(
                    "unknown-task",
                    f"no task named {word!r}",
                    hint=did_you_mean(word, names) or f"`{self.binary} --list` lists the tasks",
                )
        elif missing:
            flag = missing.group(1)
            error = PackagingError(
                "missing-value",
                f"{flag} needs a value",
                hint=f"e.g. {_flag_with_value(_flags_of(exc.context), flag) or flag + ' VALUE'}",
            )
        else:
            flag = re.match(r"--[\w-]+", text)
            usage = _flag_with_value(self._all_flags(), flag.group(0)) if flag else None
            error = PackagingError("bad-option", text, hint=f"usage: {usage}" if usage else None)
        return error.render()

    def _all_flags(self) -> dict[str, Argument]:
        """Every option of the program and its tasks (a value error names only the flag)."""
        contexts = [self.initial_context, *self._make_parser().contexts.values()]
        return {name: argument for c in contexts for name, argument in c.flags.items()}


def help_tuples(context: ParserContext) -> list[tuple[str, str]]:
    """(`-j N, --jobs N`, help) for each option of a parser context, with its placeholder."""
    rows: list[tuple[str, str, str]] = []
    for argument in sorted(context.flags.values(), key=lambda a: a.name):
        if argument.name in {row[2] for row in rows}:
            continue  # a short flag is a second key of the same argument
        placeholder = getattr(argument, "placeholder", None)
        if argument.takes_value and placeholder is None:
            placeholder = argument.name.upper()
        if argument.optional and placeholder:
            placeholder = f"[{placeholder}]"
        names = sorted(argument.names, key=len)
        shown = ", ".join(
            (f"-{n}" if len(n) == 1 else flag_name(n)) + (f" {placeholder}" if placeholder else "")
            for n in names
        )
        rows.append((shown, argument.help or "", argument.name))
    return [(shown, help) for shown, help, _ in rows]


def _flags_of(context: Any) -> dict[str, Argument]:
    return dict(getattr(context, "flags", {}) or {})


def _flag_with_value(flags: dict[str, Argument], flag: str) -> str | None:
    """`--only ID[,ID...]` for a flag among `flags`, when it is one of ours."""
    for argument in flags.values():
        if isinstance(argument, OptionArgument) and argument.flag == flag:
            return f"{flag} {argument.placeholder}"
    return None


class PluginPackagingConfig(Config):
    """invoke's config, reading only what a packaging run should depend on, and safely.

    What the `plugin-packaging` command reads (the README's settings section says the same):
    the checkout's `invoke.yaml` (or `.yml`, `.json`), the file named by `--config`, and
    `INVOKE_PLUGINS_*` variables. It never executes Python: invoke runs a checkout's
    `invoke.py` even for a read-only `list` or `check`, so a cloned branch could run code just
    by being looked at; here such a file is skipped with a warning (`--config` refuses one).
    User and system files (`~/.invoke.yaml`, `/etc/invoke.yaml`) are not read either: the same
    checkout and command behave the same on every machine and in CI. Every file is read through
    `read_settings_file` (no FIFO, device, huge file or duplicate key; unknown settings refused),
    so a broken one is one message naming it, exit status 2.

    Run through `invoke` itself (a `tasks.py` in the checkout), invoke's own policy applies.
    """

    def _load_file(self, prefix: str, absolute: bool = False, merge: bool = True) -> None:
        if prefix in ("system", "user"):
            self._set(f"_{prefix}_found", False)
            return
        super()._load_file(prefix, absolute=absolute, merge=merge)

    def _load_yaml(self, path: os.PathLike[Any]) -> Any:
        return read_settings_file(_existing(path))

    def _load_yml(self, path: os.PathLike[Any]) -> Any:
        return read_settings_file(_existing(path))

    def _load_json(self, path: os.PathLike[Any]) -> Any:
        return read_settings_file(_existing(path))

    def _load_py(self, path: str) -> dict[str, Any]:
        file = _existing(path)
        if str(file) == str(getattr(self, "_runtime_path", None)):
            raise PackagingError(
                "config-not-executed",
                "is Python; plugin-packaging reads settings from YAML or JSON only",
                file,
                hint="write the settings as YAML (`plugins: {...}`) and pass that file",
            )
        print(
            PackagingError(
                "config-not-executed",
                "is Python code, which plugin-packaging does not run; its settings are ignored",
                file,
                hint="put the settings in invoke.yaml (`plugins: {...}`)",
            ).render("warning"),
            file=sys.stderr,
        )
        return {}

    def load_shell_env(self) -> None:
        try:
            super().load_shell_env()
        except (UncastableEnvVar, ValueError) as exc:
            # invoke casts INVOKE_* values to the type of the default (int, list...) and raises
            # without naming the variable; name the candidates instead of showing a traceback.
            names = sorted(name for name in os.environ if name.startswith("INVOKE_PLUGINS_"))
            raise Exit(
                f"error[bad-setting]: an environment variable does not fit its setting ({exc})\n"
                f"  hint: check {', '.join(names) or 'the INVOKE_* variables'}: numbers must be "
                "whole numbers, and lists or mappings belong in invoke.yaml",
                2,
            ) from None


def _existing(path: str | os.PathLike[Any]) -> Path:
    """`path`, or FileNotFoundError, which invoke takes as "no such file, try the next name"."""
    if not os.path.lexists(path):
        raise FileNotFoundError(errno.ENOENT, "no such file", path)
    return Path(path)


program = PluginPackagingProgram(
    namespace=ns,
    version=__version__,
    name="plugin-packaging",
    binary="plugin-packaging",
    config_class=PluginPackagingConfig,
)


def main() -> None:
    try:
        program.run()
    except BrokenPipeError:
        # `plugin-packaging ... | head`: the reader left; say nothing more, as cat and grep do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
