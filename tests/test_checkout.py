"""Where a run happens: the checkout found from the current directory, and what config it reads.

Through the real command line (tests/cli.py: `run_command`), from the directories a person would
run it in: the checkout, a subdirectory of it, and somewhere that is no checkout at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli import run_command


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_run_from_a_subdirectory_works_on_the_checkout_above(sample_tree: Path) -> None:
    subdirectory = sample_tree / "plugins" / "native" / "volume-c"
    before = _entries(subdirectory)
    result = run_command("copy-plugins-native", cwd=subdirectory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (sample_tree / ".plugins/native/volume-c/plugin.yml").is_file()
    assert _entries(subdirectory) == before


@pytest.mark.parametrize(
    "args",
    [
        ["copy-plugins-native"],
        ["install-plugins-native"],
        ["build-plugins-native"],
        ["list-plugins-native"],
        ["migrate-plugins-native"],
        ["package-plugins-native"],
        ["check-plugins-native"],
        ["verify-plugin-bundles"],
    ],
)
def test_outside_a_checkout_a_task_stops_and_creates_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_command(*args, cwd=elsewhere)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error[not-a-checkout]" in result.stderr
    assert "Traceback" not in result.stderr
    assert _entries(elsewhere) == []


def test_a_root_that_is_no_checkout_is_refused_and_left_alone(
    sample_tree: Path, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    result = run_command("copy-plugins-native", "--root", str(wrong), cwd=sample_tree)
    assert result.returncode == 2
    assert "not a StreamKit checkout: it holds neither plugins/native/" in result.stderr
    assert _entries(wrong) == []
    assert not (sample_tree / ".plugins").exists()


def test_an_invoke_yaml_with_a_plugins_section_marks_a_checkout(
    sample_tree: Path, tmp_path: Path
) -> None:
    # A checkout laid out otherwise: sources elsewhere, declared in its settings.
    other = tmp_path / "other"
    (other / "sources").mkdir(parents=True)
    os.rename(sample_tree / "plugins" / "native", other / "sources" / "native")
    (other / "invoke.yaml").write_text(
        "plugins:\n  source_patterns: [sources/native/*/plugin.yml]\n"
        "  extras: {gain-native: {enabled: false}}\n"
    )
    nested = other / "sources" / "native"
    result = run_command("list-plugins-native", cwd=nested)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "volume-c" in result.stdout


def test_command_line_paths_are_relative_to_the_current_directory(
    sample_tree: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = run_command(
        "copy-plugins-native", "--root", str(sample_tree), "--plugins-dir", "mine", cwd=work
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (work / "mine/native/volume-c/plugin.yml").is_file()
    assert not (sample_tree / "mine").exists()


def test_paths_in_invoke_yaml_are_relative_to_the_root(sample_tree: Path) -> None:
    (sample_tree / "invoke.yaml").write_text("plugins:\n  plugins_dir: build/server-plugins\n")
    result = run_command("copy-plugins-native", cwd=sample_tree / "plugins")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (sample_tree / "build/server-plugins/native/volume-c").is_dir()


def test_check_and_verify_work_anywhere_when_their_inputs_are_named(
    sample_tree: Path, tmp_path: Path
) -> None:
    assert run_command("copy-plugins-native", cwd=sample_tree).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "bundles").mkdir()
    plugins_dir = os.path.relpath(sample_tree / ".plugins", elsewhere)
    check = run_command("check-plugins-native", "--plugins-dir", plugins_dir, cwd=elsewhere)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "volume-c" in check.stdout
    verify = run_command("verify-plugin-bundles", "--bundles", "bundles", cwd=elsewhere)
    assert "not-a-checkout" not in verify.stderr
    assert "Traceback" not in verify.stderr
    assert _entries(elsewhere) == ["bundles"]


def test_a_checkouts_invoke_py_is_never_executed(sample_tree: Path) -> None:
    marker = sample_tree / "executed"
    (sample_tree / "invoke.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    for args in (["copy-plugins-native"], ["list-plugins-native"], ["check-plugins-native"]):
        result = run_command(*args, cwd=sample_tree)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "warning[config-not-executed]: invoke.py" in result.stderr
    assert not marker.exists()


def test_user_level_invoke_config_is_not_read(sample_tree: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".invoke.yaml").write_text("plugins:\n  plugins_dir: from-home\n  jobs: [\n")
    result = run_command("copy-plugins-native", cwd=sample_tree, env={"HOME": str(home)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (sample_tree / ".plugins/native/volume-c").is_dir()
    assert not (sample_tree / "from-home").exists()


def test_config_names_a_yaml_settings_file(sample_tree: Path, tmp_path: Path) -> None:
    config = tmp_path / "ci.yaml"
    config.write_text("plugins:\n  plugins_dir: ci-plugins\n")
    result = run_command("--config", str(config), "copy-plugins-native", cwd=sample_tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (sample_tree / "ci-plugins/native/volume-c").is_dir()


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("dup.yaml", "plugins:\n  jobs: 1\n  jobs: 2\n", "error[yaml-duplicate-key]"),
        ("list.yaml", "- plugins\n", "must be a mapping of settings"),
        ("typo.yaml", "plugins:\n  prnue: true\n", "did you mean prune?"),
        ("bad.yaml", "plugins: [\n", "is not valid YAML"),
        ("bad.json", "{", "is not valid JSON"),
        ("settings.py", "x = 1\n", "error[config-not-executed]"),
        ("missing.yaml", None, "error[config-missing]"),
    ],
)
def test_a_broken_config_file_is_a_usage_error_naming_it(
    sample_tree: Path, tmp_path: Path, name: str, text: str | None, expected: str
) -> None:
    config = tmp_path / name
    if text is not None:
        config.write_text(text)
    result = run_command("--config", str(config), "list-plugins-native", cwd=sample_tree)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_a_fifo_as_config_is_refused_without_blocking(sample_tree: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "settings.yaml"
    os.mkfifo(fifo)
    result = run_command("--config", str(fifo), "list-plugins-native", cwd=sample_tree)
    assert result.returncode == 2
    assert "settings.yaml" in result.stderr
