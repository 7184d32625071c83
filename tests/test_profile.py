"""`--profile debug|release`: debug builds can be installed; releases are made of release builds.

Real cargo builds of the sample tree's tone-generator crate, through the real command line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli import run_command

#: cargo must not reach the network in tests; the sample crates have no dependencies.
OFFLINE = {"INVOKE_PLUGINS_CARGO_ARGS": "--offline"}
RELEASE = Path("target/plugins/release/libtone_gen.so")
DEBUG = Path("target/plugins/debug/libtone_gen.so")
INSTALLED = Path(".plugins/native/tone-generator/libtone_gen.so")


def _output(result: object) -> str:
    return getattr(result, "stdout", "") + getattr(result, "stderr", "")


def test_copy_with_the_debug_profile_installs_the_debug_build(sample_tree: Path) -> None:
    missing = run_command(
        "copy-plugins-native", "--profile", "debug", "--only", "tone-generator", cwd=sample_tree
    )
    assert missing.returncode == 1, _output(missing)
    assert "target/plugins/debug/libtone_gen.so" in missing.stdout

    built = run_command(
        "build-plugins-native", "--debug", "--only", "tone-generator", cwd=sample_tree, env=OFFLINE
    )
    assert built.returncode == 0, _output(built)
    assert (sample_tree / DEBUG).read_bytes() != (sample_tree / RELEASE).read_bytes()

    debug = run_command(
        "copy-plugins-native", "--profile", "debug", "--only", "tone-generator", cwd=sample_tree
    )
    assert debug.returncode == 0, _output(debug)
    assert (sample_tree / INSTALLED).read_bytes() == (sample_tree / DEBUG).read_bytes()

    release = run_command("copy-plugins-native", "--only", "tone-generator", cwd=sample_tree)
    assert release.returncode == 0, _output(release)
    assert (sample_tree / INSTALLED).read_bytes() == (sample_tree / RELEASE).read_bytes()


def test_install_with_the_debug_profile_builds_and_installs_debug(sample_tree: Path) -> None:
    result = run_command(
        "install-plugins-native",
        "--profile",
        "debug",
        "--only",
        "tone-generator",
        cwd=sample_tree,
        env=OFFLINE,
    )
    assert result.returncode == 0, _output(result)
    assert (sample_tree / INSTALLED).read_bytes() == (sample_tree / DEBUG).read_bytes()


def test_release_packaging_refuses_the_debug_profile(sample_tree: Path) -> None:
    result = run_command(
        "package-plugins-native", cwd=sample_tree, env={"INVOKE_PLUGINS_PROFILE": "debug"}
    )
    assert result.returncode == 2, _output(result)
    assert "error[release-needs-release-build]" in result.stderr
    assert not (sample_tree / "dist").exists()


@pytest.mark.parametrize("task", ["copy-plugins-native", "install-plugins-native"])
def test_an_unknown_profile_is_a_usage_error(sample_tree: Path, task: str) -> None:
    result = run_command(task, "--profile", "debgu", cwd=sample_tree)
    assert result.returncode == 2
    assert "--profile takes one of release, debug, not 'debgu'; did you mean debug?" in (
        result.stderr
    )
