"""The command-line options of every task: one table of short letters, placeholders and checks.

Invoke gives each task automatic short flags from the letters of its parameters, so `-p` meant
`--plugins-dir` in one task and `--public-key` in another. Here every short flag comes from one
table, keyed by parameter name: a letter means the same option in every task (and never one of
the program's own `-h`, `-V`, `-l`). Value options show what they take (`--only ID[,ID...]`), and
numbers are checked while the command line is parsed, so `--jobs abc` is a usage error naming the
option rather than a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from invoke.exceptions import ParseError
from invoke.parser.argument import Argument
from invoke.tasks import Task, task

from plugin_packaging.errors import did_you_mean
from plugin_packaging.settings import PROFILES
from plugin_packaging.target import PLATFORMS

#: Short flags of the program itself (help, version, list); no task option may take them.
CORE_SHORT_FLAGS = {"help": "h", "version": "V", "list": "l"}


@dataclass(frozen=True)
class Option:
    """How one task parameter appears on the command line."""

    #: The one-letter flag, the same in every task that has this parameter.
    short: str | None = None
    #: What the value looks like in help and error messages (value options only).
    placeholder: str | None = None
    #: Turns the text given on the command line into the value, or raises `ParseError`.
    parse: Callable[[str, str], Any] | None = None


def whole_number(minimum: int, maximum: int) -> Callable[[str, str], int]:
    """A parser for a whole number within [minimum, maximum]."""

    def parse(flag: str, text: str) -> int:
        try:
            number = int(text.strip())
        except ValueError:
            raise ParseError(f"{flag} takes a whole number, not {text!r}") from None
        if not minimum <= number <= maximum:
            raise ParseError(f"{flag} must be between {minimum} and {maximum}, not {number}")
        return number

    return parse


def seconds(maximum: float) -> Callable[[str, str], float]:
    """A parser for a positive, finite number of seconds up to `maximum`.

    `nan`, `inf` and `1e300` all parse as floats; none of them is a usable time limit (a NaN
    compares false with everything, an infinite one never fires, a huge one overflows timers).
    """

    def parse(flag: str, text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ParseError(f"{flag} takes a number of seconds, not {text!r}") from None
        if not math.isfinite(value) or not 0 < value <= maximum:
            raise ParseError(
                f"{flag} must be more than 0 and at most {maximum:g} seconds, not {text}"
            )
        return value

    return parse


def one_of(choices: Iterable[str]) -> Callable[[str, str], str]:
    """A parser for one of a few words."""
    allowed = tuple(choices)

    def parse(flag: str, text: str) -> str:
        if text not in allowed:
            raise ParseError(
                f"{flag} takes one of {', '.join(allowed)}, not {text!r}"
                + did_you_mean(text, allowed, prefix="; ")
            )
        return text

    return parse


#: Every task option that is not a plain switch or has a short flag, by parameter name. A value
#: option missing here shows its name in capitals as its placeholder.
OPTIONS: dict[str, Option] = {
    "root": Option(placeholder="DIR"),
    "plugins_dir": Option(placeholder="DIR"),
    "platform": Option(placeholder="|".join(PLATFORMS), parse=one_of(PLATFORMS)),
    "arch": Option(placeholder="ARCH"),
    "only": Option(placeholder="ID[,ID...]"),
    "adopt": Option(placeholder="ID[,ID...]"),
    "jobs": Option(short="j", placeholder="N", parse=whole_number(1, 1024)),
    "dry_run": Option(short="n"),
    "probe_timeout": Option(placeholder="SECONDS", parse=seconds(3600)),
    "profile": Option(placeholder="|".join(PROFILES), parse=one_of(PROFILES)),
    "format": Option(short="f", placeholder="FORMAT"),
    "color": Option(placeholder="auto|always|never"),
    "verbose": Option(short="v"),
    "out": Option(placeholder="DIR"),
    "bundles": Option(placeholder="DIR"),
    "input": Option(placeholder="DIR"),
    "registry": Option(placeholder="DIR"),
    "existing_registry": Option(placeholder="DIR"),
    "signing_key": Option(placeholder="FILE"),
    "public_key": Option(placeholder="FILE"),
    "password_env": Option(placeholder="VARIABLE"),
    "accelerator": Option(placeholder="NAME"),
    "published_at": Option(placeholder="YYYY-MM-DD"),
    "bundle_url_template": Option(placeholder="URL"),
    "registry_base_url": Option(placeholder="URL"),
}


def flag_name(parameter: str) -> str:
    """`plugins_dir` -> `--plugins-dir`."""
    return "--" + parameter.replace("_", "-")


class OptionArgument(Argument):
    """invoke's `Argument`, parsing its value by the table above.

    Lists (`--only`) also take comma-separated values, so `--only a,b` is `--only a --only b`.
    """

    def __init__(self, *args: Any, option: Option | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.option = option or Option()
        if self.kind is list:
            # invoke starts a list's raw value as [], so `--only` given no value passed for "no
            # --only" (= every plugin); None makes the parser ask for the missing value.
            self.raw_value = None

    @property
    def parameter(self) -> str:
        """The task parameter's name (`plugins_dir`)."""
        return str(self.attr_name or self.name)

    @property
    def flag(self) -> str:
        return flag_name(self.parameter)

    @property
    def placeholder(self) -> str | None:
        if not self.takes_value:
            return None
        return self.option.placeholder or self.parameter.upper().replace("_", "-")

    def set_value(self, value: Any, cast: bool = True) -> None:
        if self.kind is list and isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            if not parts:
                raise ParseError(f"{self.flag} needs a value: {self.flag} {self.placeholder}")
            self.raw_value = value
            self._value = [*self.value, *parts]
            return
        if cast and self.option.parse is not None and isinstance(value, str):
            self.raw_value = value
            self._value = self.option.parse(self.flag, value)
            return
        if cast and self.kind in (int, float) and isinstance(value, str):
            try:
                super().set_value(value, cast)
            except ValueError:
                raise ParseError(f"{self.flag} takes a number, not {value!r}") from None
            return
        super().set_value(value, cast)

    def __repr__(self) -> str:
        # invoke's parser names a flag by its repr in "needed value" errors.
        return self.flag


class PluginTask(Task[Any]):
    """A task whose options come from `OPTIONS`: no automatic short flags, placeholders, checks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["auto_shortflags"] = False
        super().__init__(*args, **kwargs)

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        arguments: list[Argument] = []
        for argument in super().get_arguments(ignore_unknown_help):
            option = OPTIONS.get(str(argument.attr_name or argument.name), Option())
            names = tuple(argument.names) + ((option.short,) if option.short else ())
            arguments.append(
                OptionArgument(
                    names=names,
                    kind=argument.kind,
                    default=argument.default,
                    help=argument.help,
                    positional=argument.positional,
                    optional=argument.optional,
                    incrementable=argument.incrementable,
                    attr_name=argument.attr_name,
                    option=option,
                )
            )
        return arguments


def plugin_task(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], PluginTask]:
    """`invoke.task` making a `PluginTask` (use as `@plugin_task(help=...)`)."""
    return task(*args, klass=PluginTask, **kwargs)
