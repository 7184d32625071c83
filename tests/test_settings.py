"""Settings as people write them, through the real command line: booleans, typos, duplicates.

Each run is a separate `plugin-packaging` process with its own environment (tests/cli.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli import run_command

#: The line copy-plugins-native prints when it checked the result.
CHECKED = "check: "


@pytest.mark.parametrize("word", ["false", "False", "FALSE", "no", "No", "off", "OFF", "0"])
def test_a_false_word_in_the_environment_turns_a_setting_off(sample_tree: Path, word: str) -> None:
    result = run_command(
        "copy-plugins-native",
        cwd=sample_tree,
        env={
            "INVOKE_PLUGINS_CHECK": word,
            "INVOKE_PLUGINS_PRUNE": word,
            "INVOKE_PLUGINS_REQUIRE_ALL": word,
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert CHECKED not in result.stdout


@pytest.mark.parametrize("word", ["true", "True", "yes", "ON", "1"])
def test_a_true_word_in_the_environment_turns_a_setting_on(sample_tree: Path, word: str) -> None:
    result = run_command("copy-plugins-native", cwd=sample_tree, env={"INVOKE_PLUGINS_CHECK": word})
    assert result.returncode == 0, result.stdout + result.stderr
    assert CHECKED in result.stdout


def test_prune_false_in_the_environment_keeps_a_plugin_whose_source_is_gone(
    sample_tree: Path,
) -> None:
    assert run_command("copy-plugins-native", cwd=sample_tree).returncode == 0
    (sample_tree / "plugins/native/volume-c/plugin.yml").unlink()
    result = run_command(
        "copy-plugins-native", cwd=sample_tree, env={"INVOKE_PLUGINS_PRUNE": "false"}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (sample_tree / ".plugins/native/volume-c").is_dir()


@pytest.mark.parametrize("variable", ["INVOKE_PLUGINS_PRUNE", "INVOKE_PLUGINS_CHECK"])
def test_a_boolean_that_is_no_word_for_yes_or_no_is_a_usage_error(
    sample_tree: Path, variable: str
) -> None:
    result = run_command("copy-plugins-native", cwd=sample_tree, env={variable: "maybe"})
    assert result.returncode == 2
    assert f"{variable} must be true or false, not 'maybe'" in result.stderr
    assert not (sample_tree / ".plugins").exists()


def test_jobs_in_the_environment_is_checked(sample_tree: Path) -> None:
    result = run_command("copy-plugins-native", cwd=sample_tree, env={"INVOKE_PLUGINS_JOBS": "x"})
    assert result.returncode == 2
    assert "plugins.jobs must be a positive integer" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("plugin_dir", "plugins_dir"), ("extra", "extras"), ("require_al", "require_all")],
)
def test_an_unknown_key_in_invoke_yaml_is_a_usage_error_with_the_nearest_key(
    sample_tree: Path, typo: str, meant: str
) -> None:
    (sample_tree / "invoke.yaml").write_text(f"plugins:\n  {typo}: x\n")
    result = run_command("copy-plugins-native", cwd=sample_tree)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "invoke.yaml" in result.stderr
    assert f"unknown setting plugins.{typo}" in result.stderr
    assert f"did you mean {meant}?" in result.stderr
    assert not (sample_tree / ".plugins").exists()


def test_an_unknown_settings_variable_is_a_usage_error(sample_tree: Path) -> None:
    result = run_command(
        "copy-plugins-native", cwd=sample_tree, env={"INVOKE_PLUGINS_PLUGIN_DIR": "elsewhere"}
    )
    assert result.returncode == 2
    assert "INVOKE_PLUGINS_PLUGIN_DIR names no setting" in result.stderr
    assert "did you mean INVOKE_PLUGINS_PLUGINS_DIR?" in result.stderr
    assert not (sample_tree / "elsewhere").exists()


def test_a_duplicate_key_in_invoke_yaml_is_an_error_naming_the_line(sample_tree: Path) -> None:
    (sample_tree / "invoke.yaml").write_text("plugins:\n  jobs: 2\n  jobs: 3\n")
    result = run_command("copy-plugins-native", cwd=sample_tree)
    assert result.returncode == 2
    assert "error[yaml-duplicate-key]: invoke.yaml: line 3, column 3: the key 'jobs'" in (
        result.stderr
    )


def test_a_duplicate_key_in_a_source_manifest_is_an_error_naming_the_line(
    sample_tree: Path,
) -> None:
    manifest = sample_tree / "plugins/native/volume-c/plugin.yml"
    manifest.write_text(manifest.read_text() + "id: volume-c-again\n")
    result = run_command("copy-plugins-native", cwd=sample_tree)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "plugins/native/volume-c/plugin.yml: line" in output
    assert "the key 'id' appears twice (first at line" in output
    assert not (sample_tree / ".plugins/native/volume-c").exists()


def test_an_unknown_key_in_a_source_manifest_is_a_warning_with_the_nearest_key(
    sample_tree: Path,
) -> None:
    manifest = sample_tree / "plugins/native/volume-c/plugin.yml"
    text = manifest.read_text()
    assert "\ndescription:" in text
    manifest.write_text(
        text.replace("\ndescription:", "\ndescripton:").replace("license:", "licence:")
    )
    result = run_command("copy-plugins-native", cwd=sample_tree)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning[source-unknown-key]: plugins/native/volume-c/plugin.yml" in output
    assert "'descripton'" in output and "did you mean description?" in output
    assert "'licence'" in output and "did you mean license?" in output
