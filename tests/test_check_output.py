"""check-plugins-native as users call it: text, JSON against its schema, GitHub commands, exit status,
severity settings, and the StreamKit-shaped sample tree end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
from checklib import PluginDir, manifest_for, tree  # noqa: F401 - fixtures
from cli import run_in_process

from plugin_packaging.check.report import escape_data, escape_property, github_command
from plugin_packaging.rules.model import Finding
from plugin_packaging.rules.table import RULES


def check(tree: PluginDir, *args: str) -> tuple[int, str]:
    return run_in_process("check-plugins-native", "--root", str(tree.root), *args, cwd=tree.root)


def schema() -> dict:
    return json.loads(
        files("plugin_packaging.schemas").joinpath("check-report.v1.json").read_text()
    )


def validate(document: dict) -> None:
    jsonschema.Draft202012Validator(schema()).validate(document)


@pytest.fixture
def messy(tree: PluginDir, native_libs) -> PluginDir:
    """One of nearly everything: errors, warnings, infos, skips, an active record."""
    shutil.copyfile(native_libs.good_c, tree.native / "libbare.so")
    tree.bundle("good", native_libs.good_c)
    tree.bundle("twin", native_libs.good_c)
    tree.bundle("hidden", native_libs.hidden_symbol, kind="hidden")
    tree.bundle("nomanifest", native_libs.good_c_other, write_manifest=False)
    directory = tree.bundle("shadow", native_libs.good_rust, kind="fixture_rust")
    (directory / "manifest.json").write_text(
        json.dumps(manifest_for("shadow", "libgood_rust.so", "fixture_rust"))
    )
    (tree.plugins / "active").mkdir()
    (tree.plugins / "active" / "broken.json").write_text("{")
    return tree


def test_text_groups_findings_by_plugin_with_hints_and_ends_with_the_load_plan(
    messy: PluginDir,
) -> None:
    code, out = check(messy)
    assert code == 1
    lines = out.splitlines()
    titles = [
        line
        for line in lines
        if line and not line.startswith(" ") and line.endswith((")", "/", ".json"))
    ]
    assert titles[:2] == ["native/ (top level)", "active/broken.json"]
    assert "native/hidden/  (hidden 1.0.0)" in titles and "native/twin/  (twin 1.0.0)" in titles
    error = next(i for i, line in enumerate(lines) if "error[entry-symbol-hidden]" in line)
    assert lines[error + 1].startswith("    hint: ")
    plan = lines[lines.index("Load plan for linux x86_64, in the server's order:") + 1 : -2]
    steps = [line.split()[:2] for line in plan if line[:3].strip() in ("-", "1", "2", "3")]
    assert steps == [
        ["-", "skip"],
        ["1", "load"],
        ["-", "skip"],
        ["-", "skip"],
        ["2", "load"],
        ["3", "load"],
        ["-", "skip"],
    ]
    assert plan[0].endswith(".plugins/active/broken.json")  # active records come first
    assert any(
        line.startswith("          bare-library: libbare.so lies directly in native/")
        for line in plan
    )
    assert any(
        line.startswith("          duplicate-node-kind: node kind plugin::native::fixture_good")
        for line in plan
    )
    assert (
        lines[-1]
        == "4 errors, 1 warning, 1 info; the server will load 3 plugins and skip 4: check failed."
    )


def test_json_is_versioned_and_matches_its_schema(messy: PluginDir) -> None:
    code, out = check(messy, "--format", "json")
    assert code == 1
    document = json.loads(out)
    validate(document)
    assert document["version"] == 1
    assert document["summary"]["failed"] is True
    found = {f["code"] for f in document["findings"]}
    assert {
        "bare-library",
        "duplicate-node-kind",
        "entry-symbol-hidden",
        "manifest-missing",
        "manifest-shadowed",
        "active-record-unparseable",
    } <= found
    plan = document["load_plan"]
    assert [e["position"] for e in plan if e["outcome"] == "load"] == [1, 2, 3]
    assert [e["source"] for e in plan] == [
        "active",
        "bundle",
        "bundle",
        "bare",
        "bundle",
        "bundle",
        "bundle",
    ]
    assert all(e["reason"] for e in plan if e["outcome"] == "skip")


def test_json_of_a_clean_tree_matches_its_schema(tree: PluginDir, native_libs) -> None:
    tree.bundle("good", native_libs.good_c)
    code, out = check(tree, "--format", "json", "--strict")
    assert code == 0
    document = json.loads(out)
    validate(document)
    assert document["findings"] == [] and document["summary"]["strict"] is True


def test_json_of_a_probed_limited_check_matches_its_schema(tree: PluginDir, native_libs) -> None:
    from plugin_packaging.check.run import check_plugins_dir

    tree.bundle("good", native_libs.good_c)
    tree.bundle("other", native_libs.api_v5)
    report = check_plugins_dir(tree.plugins, root=tree.root, bundles={"other"}, probe=True)
    document = report.to_dict()
    validate(document)
    assert document["probed"] is True and document["checked_bundles"] == ["other"]


def test_schema_is_valid_and_accepts_every_rule_code() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    code = jsonschema.Draft202012Validator(schema()["$defs"]["finding"]["properties"]["code"])
    assert all(code.is_valid(rule) for rule in RULES)
    assert not code.is_valid("Bare Library") and not code.is_valid("")


def test_schema_rejects_a_document_of_another_version(tree: PluginDir, native_libs) -> None:
    tree.bundle("good", native_libs.good_c)
    document = json.loads(check(tree, "--format", "json")[1])
    document["version"] = 2
    with pytest.raises(jsonschema.ValidationError):
        validate(document)


def test_github_format_writes_one_command_per_finding(messy: PluginDir) -> None:
    code, out = check(messy, "--format", "github")
    assert code == 1
    commands = [
        line
        for line in out.splitlines()
        if line.startswith("::")
        and not line.startswith("::group")
        and not line.startswith("::endgroup")
    ]
    assert len(commands) == 6
    assert "::error file=.plugins/native/libbare.so,title=bare-library::" in out
    assert any(
        line.startswith(
            "::notice file=.plugins/native/shadow/manifest.json,title=manifest-shadowed::"
        )
        for line in commands
    )
    assert all("%0Ahint: " in line for line in commands)


def test_github_escaping_follows_the_runners_rules() -> None:
    assert escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert escape_property("a:b,c%d\ne") == "a%3Ab%2Cc%25d%0Ae"
    finding = Finding(
        "bare-library", "warning", "50% of: it", "fix, then: go", Path("native/lib,a:b.so")
    )
    assert github_command(finding) == (
        "::warning file=native/lib%2Ca%3Ab.so,title=bare-library::50%25 of: it%0Ahint: fix, then: go"
    )


def test_hostile_file_name_cannot_break_a_line_or_inject_a_command(
    tree: PluginDir, native_libs
) -> None:
    shutil.copyfile(native_libs.good_c, tree.native / "evil\n::error title=forged::x.so")
    _code, out = check(tree, "--format", "github")
    lines = out.splitlines()
    assert not any(
        "title=forged" in line and line.startswith("::error title=forged") for line in lines
    )
    assert sum(1 for line in lines if line.startswith("::error")) == 1


def test_exit_status_is_0_for_warnings_and_1_with_strict(tree: PluginDir, native_libs) -> None:
    tree.bundle("good", native_libs.good_c, write_manifest=False)  # manifest-missing: a warning
    assert check(tree)[0] == 0
    code, out = check(tree, "--strict")
    assert code == 1 and "(--strict: warnings fail)" in out


@pytest.mark.parametrize(
    "args",
    [
        ("--plugins-dir", "nowhere"),
        ("--format", "xml"),
        ("--arch", "pdp11"),
        ("--platform", "beos"),
        ("--probe-timeout", "0"),
    ],
)
def test_usage_errors_exit_2_with_one_readable_message(
    tree: PluginDir, native_libs, args: tuple[str, ...]
) -> None:
    tree.bundle("good", native_libs.good_c)
    code, out = check(tree, *args)
    assert code == 2 and "Traceback" not in out
    assert out.startswith("error[") and "hint:" in out


def test_settings_regrade_and_ignore_rules_by_code(tree: PluginDir, native_libs) -> None:
    tree.bundle("good", native_libs.good_c, write_manifest=False)
    shutil.copyfile(native_libs.good_c, tree.native / "libbare.so")
    (tree.root / "invoke.yaml").write_text(
        "plugins:\n  rules:\n    manifest-missing: error\n    bare-library: ignore\n"
    )
    code, out = check(tree, "--format", "json")
    document = json.loads(out)
    assert code == 1
    assert [(f["code"], f["severity"]) for f in document["findings"]] == [
        ("manifest-missing", "error")
    ]
    # Ignoring a rule hides its finding; the server still skips the bare library.
    assert [(e["path"], e["outcome"], e["code"]) for e in document["load_plan"]] == [
        (".plugins/native/good/libgood_c.so", "load", None),
        (".plugins/native/libbare.so", "skip", "bare-library"),
    ]


def test_unknown_rule_code_in_settings_is_a_usage_error(tree: PluginDir, native_libs) -> None:
    tree.bundle("good", native_libs.good_c)
    (tree.root / "invoke.yaml").write_text("plugins:\n  rules:\n    bare-libary: ignore\n")
    code, out = check(tree)
    assert code == 2 and "hint: did you mean bare-library?" in out


def test_settings_may_grade_rules_of_other_rule_tables(tree: PluginDir, native_libs) -> None:
    # Bundle verification's rules share `plugins.rules`; naming one must not break the check.
    from plugin_packaging.rules.bundle import BUNDLE_RULES

    tree.bundle("good", native_libs.good_c)
    (tree.root / "invoke.yaml").write_text(
        f"plugins:\n  rules:\n    {next(iter(BUNDLE_RULES))}: warning\n"
    )
    # A fresh interpreter: in this one the import above has already registered the codes.
    command = [
        sys.executable,
        "-c",
        "from plugin_packaging.cli import main; main()",
        "check-plugins-native",
    ]
    result = subprocess.run(
        [*command, "--root", str(tree.root)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_severity_in_settings_is_a_usage_error(tree: PluginDir, native_libs) -> None:
    tree.bundle("good", native_libs.good_c)
    (tree.root / "invoke.yaml").write_text("plugins:\n  rules:\n    bare-library: fatal\n")
    code, out = check(tree)
    assert code == 2 and "error, warning, info, ignore" in out


def test_platform_and_arch_flags_set_the_target(tree: PluginDir, native_libs) -> None:
    tree.bundle("good", native_libs.good_c)
    code, out = check(tree, "--platform", "linux", "--arch", "arm64", "--format", "json")
    document = json.loads(out)
    assert code == 1 and document["target"] == {"platform": "linux", "arch": "aarch64"}
    assert [f["code"] for f in document["findings"]] == ["library-wrong-arch"]


def test_probe_flag_runs_the_probe(tree: PluginDir, native_libs) -> None:
    tree.bundle("good", native_libs.api_v5)
    assert check(tree)[0] == 0
    code, out = check(tree, "--probe", "--probe-timeout", "3")
    assert code == 1 and "probe-api-version" in out


def test_sample_tree_installs_and_checks_clean(sample_tree: Path) -> None:
    code, out = run_in_process("copy-plugins-native", "--root", str(sample_tree))
    assert code == 0, out
    assert "check: the loader will accept" in out
    code, out = run_in_process(
        "check-plugins-native", "--root", str(sample_tree), "--probe", "--format", "json"
    )
    assert code == 0, out
    document = json.loads(out)
    validate(document)
    assert document["findings"] == []
    assert sorted((e["kind"], e["kind_source"]) for e in document["load_plan"]) == [
        ("plugin::native::gain", "probe"),
        ("plugin::native::tone", "probe"),
        ("plugin::native::volume_c", "probe"),
    ]


def test_post_install_check_reports_what_the_install_produced(
    sample_tree: Path, native_libs
) -> None:
    native = sample_tree / ".plugins" / "native"
    native.mkdir(parents=True)
    old = native / "old-tone"
    old.mkdir()
    shutil.copyfile(native_libs.good_c, old / "libtone_gen.so")
    (old / "plugin.yml").write_text(
        'id: tone-generator\nversion: "0.1.0"\nnode_kind: tone\nkind: native\nentrypoint: libtone_gen.so\n'
    )
    code, out = run_in_process("copy-plugins-native", "--root", str(sample_tree))
    assert code == 1
    assert "duplicate-node-kind" in out and "native/tone-generator/libtone_gen.so" in out
    # The verdict covers the whole tree: the old bundle's own findings are reported too, although
    # this run did not change it (issue 10: never "accept" a tree the loader will not).
    assert "bundle-name-differs" in out and "native/old-tone" in out


def test_list_rules_shows_every_code_with_its_severity_after_settings(tree: PluginDir) -> None:
    (tree.root / "invoke.yaml").write_text(
        "plugins:\n  rules:\n    manifest-missing: error\n    hidden-bundle: ignore\n"
    )
    code, out = check(tree, "--list-rules")
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert set(rows) == set(RULES)
    assert rows["manifest-missing"][0] == "error" and "(default warning)" in " ".join(
        rows["manifest-missing"]
    )
    assert rows["hidden-bundle"][0] == "ignore"
    assert rows["bare-library"][:2] == ["error", "N1"]
