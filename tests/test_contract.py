"""StreamKit's contract written once: names, the plugin.yml validator, SemVer, the rule table.

No compilers needed: these tests read data and the package's own source.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import plugin_packaging
from plugin_packaging.contract import ENTRY_SYMBOL, MANIFEST_NAME, manifest_names
from plugin_packaging.contract.manifest import manifest_problems, parses
from plugin_packaging.contract.semver import is_semver, parse_semver
from plugin_packaging.errors import PackagingError
from plugin_packaging.rules.bundle import BUNDLE_RULES
from plugin_packaging.rules.loader import LOADER_RULES
from plugin_packaging.rules.model import Violation
from plugin_packaging.rules.table import RULES
from plugin_packaging.sources.plugin_yml import generate_manifest

PACKAGE = Path(plugin_packaging.__file__).parent

GOOD = {
    "id": "whisper",
    "version": "0.3.0",
    "node_kind": "whisper",
    "kind": "native",
    "entrypoint": "libwhisper.so",
}


def _generate(data: dict, overrides: dict | None = None):
    return generate_manifest(
        data,
        origin="plugins/native/whisper/plugin.yml",
        origin_path=Path("plugins/native/whisper/plugin.yml"),
        entrypoint="libwhisper.so",
        crate=None,
        rule_overrides=overrides,
    )


# --- one validator, every problem -----------------------------------------------------------------


def test_the_validator_returns_every_problem_not_only_the_first() -> None:
    data = {
        **GOOD,
        "version": "1.0",
        "node_kind": "plugin::native::whisper",
        "models": [{"id": "weights"}],
        "assets": [{"type_id": "bad id", "label": "x", "extensions": ["txt"]}],
    }
    codes = [problem.code for problem in manifest_problems(data)]
    assert codes.count("manifest-key-missing") == 1  # models[0].source
    assert {
        "manifest-version-not-semver",
        "manifest-node-kind",
        "asset-type-id-invalid",
    } <= set(codes)
    assert not parses(manifest_problems(data))


def test_a_model_without_source_is_refused_by_the_generator() -> None:
    # Finding 1: the generator's validator never looked at `models`, so copy installed and
    # package published a manifest the server drops.
    with pytest.raises(PackagingError) as raised:
        _generate({**GOOD, "models": [{"id": "weights"}]})
    assert raised.value.code == "manifest-key-missing"
    assert "models[0].source" in raised.value.message
    assert "source: huggingface" in (raised.value.hint or "")


def test_the_generator_names_every_problem_in_one_error() -> None:
    with pytest.raises(PackagingError) as raised:
        _generate({**GOOD, "version": "1.0", "models": [{"id": "weights"}]})
    error = raised.value
    assert error.code == "manifest-invalid"
    assert "2 problems" in error.message
    assert "models[0].source" in error.message and "'1.0' is not SemVer" in error.message


def test_a_rule_graded_down_in_settings_no_longer_stops_the_generator() -> None:
    # Nothing the checker grades an error is installed; what settings make a warning may be.
    data = {**GOOD, "version": "1.0"}
    with pytest.raises(PackagingError):
        _generate(data)
    assert _generate(data, {"manifest-version-not-semver": "warning"}).version == "1.0"
    # A problem the server's parse fails on is refused whatever the settings say.
    with pytest.raises(PackagingError):
        _generate({**GOOD, "models": [{"id": "w"}]}, {"manifest-key-missing": "ignore"})


def test_every_manifest_problem_code_is_a_rule() -> None:
    data = {
        "id": "../x",
        "version": 0.1,
        "kind": "wasm",
        "node_kind": " k ",
        "entrypoint": "/abs",
        "homepage": "caf\ud800",
        "models": [{"source": "ftp"}, 3],
        "assets": [{"type_id": "a b", "system_dir": "..", "max_size_bytes": 1 << 40}],
        "compatibility": [],
    }
    problems = manifest_problems(data)
    assert problems and all(problem.code in LOADER_RULES for problem in problems)


def test_there_is_one_plugin_yml_validator() -> None:
    # The generator, copy, package and the checker all call `manifest_problems`.
    defining = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef)
        and node.name in ("manifest_problems", "validate_manifest", "manifest_rules")
    ]
    assert defining == ["contract/manifest.py"]


# --- names ----------------------------------------------------------------------------------------


def test_the_entry_symbol_is_spelled_once_in_the_package() -> None:
    spelled = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if ENTRY_SYMBOL in path.read_text(encoding="utf-8")
        and any(
            isinstance(node, ast.Constant) and node.value == ENTRY_SYMBOL
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    ]
    assert spelled == ["contract/__init__.py"]


def test_the_n9_lookup_order_starts_with_plugin_yml() -> None:
    assert manifest_names("libwhisper.so") == (
        MANIFEST_NAME,
        "plugin.yaml",
        "whisper.plugin.yml",
        "whisper.plugin.yaml",
        "manifest.json",
    )


# --- SemVer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "1.0.0\n",  # `$` in a regular expression matches before a final newline
        "\u0661.\u0662.\u0663",  # Arabic-Indic digits: `\d` matches them, SemVer does not
        "1.0.0-\u0661",
        "01.0.0",
        "1.0",
        "1.0.0-",
        "1.0.0+",
        "1.0.0-01",
    ],
)
def test_what_is_not_semver_is_refused_by_the_checker_and_the_registry_alike(text: str) -> None:
    assert not is_semver(text)
    with pytest.raises(PackagingError):
        parse_semver(text)


@pytest.mark.parametrize("text", ["0.1.0", "1.0.0-rc.1", "1.0.0-0a", "1.0.0+build.01", "10.20.30"])
def test_semver_accepted_everywhere(text: str) -> None:
    assert is_semver(text) and str(parse_semver(text)) == text


# --- the rule table -------------------------------------------------------------------------------


def test_the_rule_table_holds_both_tables_once() -> None:
    assert set(RULES) == set(LOADER_RULES) | set(BUNDLE_RULES)
    assert not set(LOADER_RULES) & set(BUNDLE_RULES)


def _console(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`plugin-packaging *args` in a fresh interpreter: nothing imported by other tests."""
    script = Path(sys.executable).parent / "plugin-packaging"
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
        check=False,
    )


def _listed_codes(cwd: Path) -> list[str]:
    result = _console(cwd, "check-plugins-native", "--list-rules")
    assert result.returncode == 0, result.stdout + result.stderr
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def test_list_rules_lists_every_rule_whatever_the_settings(tmp_path: Path) -> None:
    # Finding 2: the release-bundle rules joined the table only when a setting named one.
    plain = tmp_path / "plain"
    graded = tmp_path / "graded"
    plain.mkdir()
    graded.mkdir()
    bundle_rule = next(iter(BUNDLE_RULES))
    (graded / "invoke.yaml").write_text(f"plugins:\n  rules:\n    {bundle_rule}: warning\n")
    listed_plain, listed_graded = _listed_codes(plain), _listed_codes(graded)
    assert listed_plain == listed_graded
    assert sorted(listed_plain) == sorted(RULES)


# --- the import graph -----------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The package's modules `path` imports anywhere (functions too), except under TYPE_CHECKING;
    importing `a.b.c` also runs `a` and `a.b`."""
    is_package = path.name == "__init__.py"
    named: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            if getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == (
                "TYPE_CHECKING"
            ):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            named.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            named.add(module)
            named.update(f"{module}.{alias.name}" for alias in node.names)

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    found = set()
    for module in named:
        while module and module not in modules:
            module = module.rpartition(".")[0]
        while module:
            if module != name and not name.startswith(module + "."):
                found.add(module)
            module = module.rpartition(".")[0]
    return found & modules


def test_the_package_has_no_import_circles() -> None:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    graph = {name: _imports(path, name, modules) for name, path in paths.items()}
    circles = []
    for start in sorted(graph):
        # Depth-first from each module: a path that comes back to it is a circle.
        stack = [(start, (start,))]
        seen = set()
        while stack:
            module, trail = stack.pop()
            for target in graph[module]:
                if target == start:
                    circles.append(" -> ".join((*trail, start)))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, (*trail, target)))
    assert circles == []


def test_findings_show_non_ascii_names_as_they_are_and_escape_control_characters() -> None:
    # Finding 5: the findings' own `printable` escaped every non-ASCII character, unlike errors'.
    name = "libcafé\n.so"
    finding = RULES["bare-library"].finding(
        Violation("bare-library", Path("native") / name, {"name": name}), "error"
    )
    assert finding.message.startswith("libcafé\\n.so lies directly in native/")
    assert PackagingError("x", name).render() == "error[x]: libcafé\\n.so"
