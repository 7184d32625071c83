"""The program surface, through the real command line: options, short flags, usage errors.

Every run here is a separate `plugin-packaging` process (tests/cli.py: `run_command`), so the exit
status, stdout and stderr are exactly what a shell or a CI step sees.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli import run_command

from plugin_packaging.tasks import ns
from plugin_packaging.tasks.options import CORE_SHORT_FLAGS, OptionArgument

#: invoke's own core options, which configure `c.run()` and its task runner: none is ours.
INVOKE_CORE_OPTIONS = [
    ["--dry"],
    ["-R"],
    ["--echo"],
    ["-e"],
    ["--pty"],
    ["-p"],
    ["--hide", "both"],
    ["--warn-only"],
    ["-w"],
    ["--prompt-for-sudo-password"],
    ["--debug"],
    ["-d"],
    ["--command-timeout", "5"],
    ["--write-pyc"],
    ["--list-format", "json"],
    ["--search-root", "."],
    ["--collection", "x"],
]


def _no_traceback(output: str) -> None:
    assert "Traceback" not in output
    assert "invoke" not in output.lower().replace("invoke.yaml", "")


def test_invoke_core_options_are_refused_and_nothing_is_installed(sample_tree: Path) -> None:
    for option in INVOKE_CORE_OPTIONS:
        for args in ([*option, "copy-plugins-native"], ["copy-plugins-native", *option]):
            result = run_command(*args, cwd=sample_tree)
            assert result.returncode == 2, (args, result.stdout + result.stderr)
            assert "error[unknown-option]" in result.stderr
            assert option[0] in result.stderr
            _no_traceback(result.stderr)
            assert not (sample_tree / ".plugins").exists(), args


def test_top_level_help_says_what_the_tool_does_and_lists_every_task() -> None:
    result = run_command("--help")
    assert result.returncode == 0
    first = result.stdout.splitlines()[0]
    assert "StreamKit" in first and "native plugins" in first
    for name in ns.task_names:
        assert name in result.stdout
    for dropped in ("--dry", "--echo", "--pty", "--hide", "--warn-only", "--debug", "sudo"):
        assert dropped not in result.stdout
    assert "-V, --version" in result.stdout and "--config FILE" in result.stdout


def test_version_prints_the_version() -> None:
    from plugin_packaging import __version__

    result = run_command("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"plugin-packaging {__version__}")


def _task_arguments() -> dict[str, list[OptionArgument]]:
    return {name: ns[name].get_arguments() for name in ns.task_names}


def test_a_short_flag_means_one_option_in_every_task_and_never_a_program_option() -> None:
    meaning: dict[str, set[str]] = {}
    for arguments in _task_arguments().values():
        for argument in arguments:
            for name in argument.names:
                if len(name) == 1:
                    meaning.setdefault(name, set()).add(argument.parameter)
    assert meaning, "no task has a short flag"
    assert all(len(options) == 1 for options in meaning.values()), meaning
    assert not set(meaning) & set(CORE_SHORT_FLAGS.values())
    # invoke's automatic flags (`-p` for --plugins-dir, --platform or --public-key) are gone.
    assert "p" not in meaning and "o" not in meaning


def test_automatic_short_flags_are_refused(sample_tree: Path) -> None:
    result = run_command("copy-plugins-native", "-p", "elsewhere", cwd=sample_tree)
    assert result.returncode == 2
    assert "unknown option -p for copy-plugins-native" in result.stderr
    assert not (sample_tree / "elsewhere").exists()


def test_every_value_option_shows_a_placeholder_in_help() -> None:
    for task, arguments in _task_arguments().items():
        help_text = run_command("--help", task).stdout
        for argument in arguments:
            if argument.takes_value:
                assert f"{argument.flag} {argument.placeholder}" in help_text, (task, argument)
                assert argument.placeholder and not argument.placeholder.startswith("-")
    copy_help = run_command("copy-plugins-native", "--help").stdout
    assert "--only ID[,ID...]" in copy_help
    assert "-j N, --jobs N" in copy_help
    assert "-n, --dry-run" in copy_help


def test_every_task_that_acts_per_plugin_takes_only() -> None:
    per_plugin = {
        "build-plugins-native",
        "install-plugins-native",
        "copy-plugins-native",
        "check-plugins-native",
        "package-plugins-native",
    }
    for task in per_plugin:
        assert "only" in {a.parameter for a in _task_arguments()[task]}, task


def test_only_takes_comma_separated_ids(sample_tree: Path) -> None:
    result = run_command(
        "copy-plugins-native", "--dry-run", "--only", "gain-native,volume-c", cwd=sample_tree
    )
    assert result.returncode == 0, result.stderr
    assert "gain-native" in result.stdout and "volume-c" in result.stdout
    assert "whisper" not in result.stdout


def test_check_only_checks_the_named_installed_plugins(sample_tree: Path) -> None:
    assert run_command("copy-plugins-native", cwd=sample_tree).returncode == 0
    result = run_command("check-plugins-native", "--only", "gain-native", cwd=sample_tree)
    assert result.returncode == 0, result.stdout + result.stderr
    typo = run_command("check-plugins-native", "--only", "gain-natve", cwd=sample_tree)
    assert typo.returncode == 2
    assert "no installed plugin 'gain-natve'" in typo.stderr
    assert "did you mean gain-native?" in typo.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["copy-plugin-native"], "did you mean copy-plugins-native?"),
        (["--help", "check-plugin-native"], "did you mean check-plugins-native?"),
        (["copy-plugins-native", "--dryrun"], "did you mean --dry-run?"),
        (["check-plugins-native", "--formt", "json"], "did you mean --format?"),
        (["copy-plugins-native", "--only", "gain-natve"], "did you mean gain-native?"),
        (["copy-plugins-native", "--platform", "linx"], "did you mean linux?"),
    ],
)
def test_a_typo_is_a_usage_error_with_a_suggestion(
    sample_tree: Path, args: list[str], expected: str
) -> None:
    result = run_command(*args, cwd=sample_tree)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert re.match(r"error\[[a-z-]+\]: ", result.stderr)
    _no_traceback(result.stderr)
    assert not (sample_tree / ".plugins").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["copy-plugins-native", "--jobs", "abc"], "--jobs takes a whole number, not 'abc'"),
        (["copy-plugins-native", "-j", "0"], "--jobs must be between 1 and"),
        (["build-plugins-native", "--jobs=-3"], "--jobs must be between 1 and"),
        (["check-plugins-native", "--probe-timeout", "abc"], "--probe-timeout takes a number"),
        (["check-plugins-native", "--probe-timeout", "nan"], "--probe-timeout must be more"),
        (["check-plugins-native", "--probe-timeout", "inf"], "--probe-timeout must be more"),
        (["check-plugins-native", "--probe-timeout", "1e300"], "--probe-timeout must be more"),
        (["check-plugins-native", "--probe-timeout", "-1"], "--probe-timeout must be more"),
        (["check-plugins-native", "--probe-timeout", "0"], "--probe-timeout must be more"),
    ],
)
def test_numeric_options_are_checked_naming_the_option(
    sample_tree: Path, args: list[str], expected: str
) -> None:
    result = run_command(*args, cwd=sample_tree)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    _no_traceback(result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["copy-plugins-native", "--only"],
        ["copy-plugins-native", "--only", "--dry-run"],
        ["copy-plugins-native", "--only="],
        ["check-plugins-native", "--plugins-dir"],
        ["copy-plugins-native", "--jobs"],
        ["--config"],
    ],
)
def test_a_missing_flag_value_is_a_readable_usage_error(sample_tree: Path, args: list[str]) -> None:
    result = run_command(*args, cwd=sample_tree)
    assert result.returncode == 2, result.stdout + result.stderr
    flag = next(a for a in args if a.startswith("--") and a != "--dry-run").rstrip("=")
    assert f"{flag} needs a value" in result.stderr
    assert "Argument" not in result.stderr and "<" not in result.stderr
    assert not (sample_tree / ".plugins").exists()


def test_no_task_prints_help_and_is_a_usage_error() -> None:
    result = run_command()
    assert result.returncode == 2
    assert "Tasks:" in result.stdout
