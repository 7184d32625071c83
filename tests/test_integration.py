"""The tool where StreamKit uses it: under invoke, under just, and in a GitHub Actions workflow.

Every test runs the real programs in a child process (invoke, just, actionlint and the
`plugin-packaging` console script from this virtual environment) on a copy of the built sample
tree, which carries the same `tasks.py` and `justfile` the README tells StreamKit to add.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
EXAMPLES = REPOSITORY / "examples"
WORKFLOWS = sorted((EXAMPLES / "github").glob("*.yml"))
#: Console scripts of the test extra (invoke, just, actionlint) and of this package live beside
#: the interpreter running the tests.
BIN = Path(sys.executable).parent


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    environment.pop("GITHUB_STEP_SUMMARY", None)  # set by a test that wants it, never inherited
    environment.update(env)
    return subprocess.run(
        command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
    )


def tool(name: str) -> str:
    path = BIN / name
    assert path.is_file(), f"{name} is not installed: pip install -e '.[test]'"
    return str(path)


def installed(tree: Path, plugins_dir: str = ".plugins") -> list[str]:
    return sorted(p.name for p in (tree / plugins_dir / "native").iterdir() if p.is_dir())


ALL_PLUGINS = ["gain-native", "tone-generator", "volume-c"]


# --- invoke ----------------------------------------------------------------------------------


def test_one_line_tasks_py_runs_copy_under_invoke(sample_tree: Path) -> None:
    assert (
        (sample_tree / "tasks.py").read_text().startswith("from plugin_packaging.tasks import ns")
    )
    # The checkout's invoke.yaml is read, as it is by the plugin-packaging command.
    (sample_tree / "invoke.yaml").write_text("plugins:\n  plugins_dir: out\n")

    result = run([tool("invoke"), "copy-plugins-native", "--require-all"], sample_tree)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 installed -> out/native" in result.stdout
    assert installed(sample_tree, "out") == ALL_PLUGINS
    assert not (sample_tree / ".plugins").exists()


def test_tasks_as_a_namespaced_collection_beside_the_checkouts_own(sample_tree: Path) -> None:
    (sample_tree / "tasks.py").write_text(
        "from invoke import Collection, task\n"
        "\n"
        "from plugin_packaging.tasks import ns as native_plugins\n"
        "\n"
        "\n"
        "@task\n"
        "def hello(c):\n"
        "    print('hello from the checkout')\n"
        "\n"
        "\n"
        "ns = Collection(hello)\n"
        "ns.add_collection(native_plugins, 'plugins')\n"
    )
    listing = run([tool("invoke"), "--list"], sample_tree)
    assert listing.returncode == 0, listing.stderr
    assert "hello" in listing.stdout
    assert "plugins.copy-plugins-native" in listing.stdout

    result = run([tool("invoke"), "hello", "plugins.copy-plugins-native"], sample_tree)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "hello from the checkout" in result.stdout
    assert installed(sample_tree) == ALL_PLUGINS


# --- just ------------------------------------------------------------------------------------


def test_justfile_recipe_replaces_just_copy_plugins_native(sample_tree: Path) -> None:
    # From a subdirectory, as people run just; the recipe runs at the justfile's directory.
    result = run(
        [tool("just"), "copy-plugins-native", "--require-all", "--only", "volume-c"],
        sample_tree / "plugins",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(sample_tree) == ["volume-c"]
    # Arguments reach the tool as given (positional arguments, not re-split by a shell).
    failed = run([tool("just"), "copy-plugins-native", "--only", "no such plugin"], sample_tree)
    assert failed.returncode != 0
    assert "no such plugin" in failed.stdout + failed.stderr


def test_justfile_recipe_fails_the_recipe_when_a_plugin_is_missing(sample_tree: Path) -> None:
    (sample_tree / "plugins/native/volume-c/build/libvolume_c.so").unlink()

    result = run([tool("just"), "copy-plugins-native", "--require-all"], sample_tree)

    assert result.returncode != 0
    assert "volume-c" in result.stdout
    assert "not built" in result.stdout


# --- GitHub Actions --------------------------------------------------------------------------


def test_example_workflows_exist() -> None:
    assert EXAMPLES / "github" / "plugins.yml" in WORKFLOWS


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_example_workflow_passes_actionlint(workflow: Path) -> None:
    result = run([tool("actionlint"), "-no-color", str(workflow)], REPOSITORY)

    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_in_this_test_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    text = (EXAMPLES / "github" / "plugins.yml").read_text()
    broken.write_text(text.replace("runs-on: ubuntu-24.04", "runs-on: ${{ matrix.os }}"))

    result = run([tool("actionlint"), "-no-color", str(broken)], tmp_path)

    assert result.returncode == 1
    assert "matrix" in result.stdout


def test_readme_ci_section_does_not_install_from_the_public_index() -> None:
    readme = (REPOSITORY / "README.md").read_text()
    lines = [line.strip() for line in readme.splitlines()]
    assert "pip install plugin-packaging" not in lines
    assert "examples/github/plugins.yml" in readme


def workflow_commands(workflow: Path) -> list[list[str]]:
    """The `plugin-packaging ...` commands of a workflow's run steps, split as a shell would."""
    import shlex

    import yaml

    steps = yaml.safe_load(workflow.read_text())["jobs"]["plugins"]["steps"]
    return [
        shlex.split(line)
        for step in steps
        for line in step.get("run", "").splitlines()
        if line.startswith("plugin-packaging ")
    ]


def test_the_workflows_commands_run_green_on_a_checkout(sample_tree: Path, tmp_path: Path) -> None:
    commands = workflow_commands(EXAMPLES / "github" / "plugins.yml")
    assert [c[1] for c in commands] == [
        "build-plugins-native",
        "copy-plugins-native",
        "check-plugins-native",
        "package-plugins-native",
    ]
    assert "--require-all" in commands[1]
    summary = tmp_path / "step-summary.md"

    for command in commands:
        result = run(
            [tool(command[0]), *command[1:]],
            sample_tree,
            GITHUB_STEP_SUMMARY=str(summary),
            GITHUB_ACTIONS="true",
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        # Nothing went wrong, so no annotation at error level.
        assert "::error" not in result.stdout, command

    assert installed(sample_tree) == ALL_PLUGINS
    # The release holds the official plugins (gain-native is an example, left out).
    assert sorted(p.name for p in (sample_tree / "dist/bundles").glob("*.tar.zst")) == [
        "tone-generator-0.2.0-bundle.tar.zst",
        "volume-c-1.0.0-bundle.tar.zst",
    ]
    text = summary.read_text()
    for heading in (
        "### Native plugin builds",
        "### Native plugins",
        "Load plan, in the server's order:",
        "### Native plugin release",
    ):
        assert heading in text


def test_the_workflows_commands_fail_with_an_annotation_on_the_pull_requests_file(
    sample_tree: Path,
) -> None:
    (sample_tree / "plugins/native/volume-c/build/libvolume_c.so").unlink()
    copy = next(c for c in workflow_commands(EXAMPLES / "github" / "plugins.yml") if "copy" in c[1])

    result = run([tool(copy[0]), *copy[1:]], sample_tree)

    assert result.returncode == 1
    assert "::error file=plugins/native/volume-c/plugin.yml" in result.stdout, result.stdout
