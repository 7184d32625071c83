"""What the tasks print, for machines (JSON, GitHub annotations and step summaries) and for
people (colour, aligned columns, one line for a no-op, hints once, dry-run wording).

Every test runs the installed `plugin-packaging` command in a child process on a copy of the
built sample tree, and reads its stdout as CI or a terminal would.
"""

from __future__ import annotations

import json
import os
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cli import run_cli
from referencing import Registry, Resource

SCHEMAS = files("plugin_packaging.schemas")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def validator(name: str) -> jsonschema.protocols.Validator:
    """The validator of one report schema, with every schema of the package resolvable by $ref."""
    resources = []
    for entry in SCHEMAS.iterdir():
        if entry.name.endswith(".json"):
            schema = json.loads(entry.read_text())
            resources.append((schema["$id"], Resource.from_contents(schema)))
    schema = json.loads(SCHEMAS.joinpath(name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=Registry().with_resources(resources))


def valid(name: str, stdout: str) -> dict[str, Any]:
    document = json.loads(stdout)
    errors = sorted(validator(name).iter_errors(document), key=str)
    assert not errors, "\n".join(str(e) for e in errors[:3])
    return document


def break_version(tree: Path) -> Path:
    """volume-c's `version: 1.0.0` made a float (line 3, value at column 10)."""
    manifest = tree / "plugins/native/volume-c/plugin.yml"
    text = manifest.read_text()
    assert text.splitlines()[2] == "version: 1.0.0"
    manifest.write_text(text.replace("version: 1.0.0", "version: 1.0", 1))
    return manifest


# --- copy-plugins-native: JSON -------------------------------------------------------------


def test_copy_json_is_one_versioned_document_with_the_check(sample_tree: Path) -> None:
    result = run_cli("copy-plugins-native", "--format", "json", cwd=sample_tree)

    assert result.returncode == 0, result.stderr
    document = valid("install-report.v1.json", result.stdout)
    assert document["version"] == 1 and document["kind"] == "install"
    assert {p["id"]: p["action"] for p in document["plugins"]} == {
        "tone-generator": "install",
        "volume-c": "install",
        "gain-native": "install",
    }
    assert document["summary"] == {
        "counts": {
            "install": 3,
            "update": 0,
            "up-to-date": 0,
            "not-built": 0,
            "failed": 0,
            "orphaned": 0,
            "remove": 0,
        },
        "source_errors": 0,
        "failed": False,
    }
    assert document["check"]["summary"]["loaded"] == 3


def test_copy_json_places_a_source_error_at_its_line_and_column(sample_tree: Path) -> None:
    break_version(sample_tree)

    result = run_cli("copy-plugins-native", "--format", "json", "--dry-run", cwd=sample_tree)

    assert result.returncode == 1
    document = valid("install-report.v1.json", result.stdout)
    assert document["dry_run"] is True and document["check"] is None
    failed = next(p for p in document["plugins"] if p["id"] == "volume-c")
    assert failed["action"] == "failed"
    assert failed["error"] == {
        "code": "manifest-wrong-type",
        "severity": "error",
        "message": failed["error"]["message"],
        "hint": failed["error"]["hint"],
        "path": "plugins/native/volume-c/plugin.yml",
        "line": 3,
        "column": 10,
        "key": "version",
    }
    assert failed["error"]["message"].startswith("`version` must be a string")
    assert document["summary"]["failed"] is True


def test_broken_yaml_in_a_source_is_a_source_error_with_its_place(sample_tree: Path) -> None:
    (sample_tree / "plugins/native/volume-c/plugin.yml").write_text("id: volume-c\nversion: [1\n")

    result = run_cli("copy-plugins-native", "--format", "json", cwd=sample_tree)

    assert result.returncode == 1
    (error,) = valid("install-report.v1.json", result.stdout)["source_errors"]
    assert (error["code"], error["path"], error["line"]) == (
        "manifest-invalid-yaml",
        "plugins/native/volume-c/plugin.yml",
        3,
    )


# --- copy-plugins-native: GitHub ---------------------------------------------------------------


def test_copy_github_annotates_the_source_manifest_line(sample_tree: Path) -> None:
    break_version(sample_tree)

    result = run_cli("copy-plugins-native", "--format", "github", cwd=sample_tree)

    assert result.returncode == 1
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::error")]
    assert len(annotations) == 1, result.stdout
    head, _, message = annotations[0].partition("::`")
    assert head == (
        "::error file=plugins/native/volume-c/plugin.yml,line=3,col=10,title=manifest-wrong-type"
    )
    assert message.startswith("version` must be a string") and "%0Ahint: " in message
    # The report for people follows, for the log.
    assert "FAILED        volume-c" in result.stdout


def test_findings_about_an_installed_bundle_are_annotated_on_its_source_manifest(
    sample_tree: Path,
) -> None:
    assert run_cli("copy-plugins-native", cwd=sample_tree).returncode == 0
    # The installed plugin.yml (under the git-ignored .plugins/) names an asset type the
    # server skips; the annotation goes on the source it was generated from.
    installed = sample_tree / ".plugins/native/volume-c/plugin.yml"
    installed.write_text(
        installed.read_text().replace("type_id: volume-presets", 'type_id: "Volume Presets!"')
    )

    result = run_cli("check-plugins-native", "--format", "github", cwd=sample_tree)

    assert result.returncode == 1
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::error")]
    assert len(annotations) == 1, result.stdout
    assert annotations[0].startswith(
        "::error file=plugins/native/volume-c/plugin.yml,title=asset-type-id-invalid::"
        ".plugins/native/volume-c/plugin.yml: "
    )


def test_copy_refusing_a_source_annotates_the_source_manifest(sample_tree: Path) -> None:
    manifest = sample_tree / "plugins/native/volume-c/plugin.yml"
    manifest.write_text(
        manifest.read_text().replace("type_id: volume-presets", 'type_id: "Volume Presets!"')
    )

    result = run_cli("copy-plugins-native", "--format", "github", cwd=sample_tree)

    assert result.returncode == 1
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::error")]
    assert annotations, result.stdout
    assert all(
        a.startswith("::error file=plugins/native/volume-c/plugin.yml,") for a in annotations
    )


# --- step summary ------------------------------------------------------------------------------


def test_copy_appends_a_markdown_summary_to_the_github_step_summary(
    sample_tree: Path, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")

    result = run_cli(
        "copy-plugins-native", cwd=sample_tree, env={"GITHUB_STEP_SUMMARY": str(summary)}
    )

    assert result.returncode == 0, result.stdout
    text = summary.read_text()
    assert text.startswith("earlier step\n### Native plugins\n")
    assert "| tone-generator | 0.2.0 | installed | libtone_gen.so |" in text
    assert "Load plan, in the server's order:" in text
    assert re.search(r"\| \d \| load \| plugin::native::tone \| tone-generator \| 0\.2\.0 \|", text)


def test_an_unwritable_step_summary_is_a_warning_not_a_failure(sample_tree: Path) -> None:
    result = run_cli(
        "copy-plugins-native",
        cwd=sample_tree,
        env={"GITHUB_STEP_SUMMARY": str(sample_tree / "no/such/dir/summary.md")},
    )

    assert result.returncode == 0
    assert "warning[step-summary-not-written]" in result.stderr


# --- for people ----------------------------------------------------------------------------------


def test_a_no_op_copy_is_one_line_and_verbose_lists_every_plugin(sample_tree: Path) -> None:
    run_cli("copy-plugins-native", cwd=sample_tree)

    quiet = run_cli("copy-plugins-native", "--no-check", cwd=sample_tree)
    verbose = run_cli("copy-plugins-native", "--no-check", "--verbose", cwd=sample_tree)

    assert quiet.stdout == "3 plugins up to date -> .plugins/native\n"
    assert verbose.stdout.count("  up to date    ") == 3


def test_columns_are_aligned_with_sizes_to_the_right(sample_tree: Path) -> None:
    result = run_cli("copy-plugins-native", "--no-check", cwd=sample_tree)

    rows = [line for line in result.stdout.splitlines() if line.startswith("  installed")]
    assert len(rows) == 3
    assert len({len(row) for row in rows}) == 1, rows  # sizes end in one column
    assert len({row.index(".so") for row in rows}) > 1  # library names differ in length ...
    assert len({row.index("lib") for row in rows}) == 1  # ... and start in one column


def test_dry_run_summary_says_would_install(sample_tree: Path) -> None:
    result = run_cli("copy-plugins-native", "--dry-run", cwd=sample_tree)

    summary = result.stdout.splitlines()[-1]
    assert summary == "would install 3 -> .plugins/native (dry run: nothing was changed)"
    assert "installed" not in result.stdout


def test_a_hint_shared_by_several_findings_is_printed_once_with_a_count(
    sample_tree: Path,
) -> None:
    # Three libraries left directly in native/ by the old recipe: three findings, one fix.
    native = sample_tree / ".plugins/native"
    native.mkdir(parents=True)
    library = sample_tree / "plugins/native/volume-c/build/libvolume_c.so"
    for name in ("liba.so", "libb.so", "libc.so"):
        (native / name).write_bytes(library.read_bytes())

    checked = run_cli("check-plugins-native", cwd=sample_tree)
    installed = run_cli("copy-plugins-native", cwd=sample_tree)

    for result in (checked, installed):
        assert result.stdout.count("error[bare-library]") == 3, result.stdout
        hints = [line.strip() for line in result.stdout.splitlines() if "hint" in line]
        assert hints == [
            "hint (3 times): left by the old `just copy-plugins-native` recipe? "
            "`plugin-packaging migrate-plugins-native` moves each bare library into native/<id>/ "
            "with a plugin.yml"
        ]


@pytest.mark.parametrize(
    ("arguments", "env", "coloured"),
    [
        ((), {}, False),  # a pipe: no colour
        ((), {"FORCE_COLOR": "1"}, True),
        ((), {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),  # NO_COLOR wins over FORCE_COLOR
        (("--color", "always"), {"NO_COLOR": "1"}, True),  # the flag wins over both
        (("--color", "never"), {"FORCE_COLOR": "1"}, False),
    ],
)
def test_colour_follows_no_color_force_color_and_the_flag(
    sample_tree: Path, arguments: tuple[str, ...], env: dict[str, str], coloured: bool
) -> None:
    result = run_cli("copy-plugins-native", "--dry-run", *arguments, cwd=sample_tree, env=env)

    assert result.returncode == 0
    assert bool(ANSI.search(result.stdout)) is coloured
    assert (
        ANSI.sub("", result.stdout)
        == run_cli("copy-plugins-native", "--dry-run", cwd=sample_tree).stdout
    )


def test_json_output_is_never_coloured(sample_tree: Path) -> None:
    result = run_cli(
        "copy-plugins-native", "--format", "json", "--color", "always", cwd=sample_tree
    )
    assert not ANSI.search(result.stdout)
    json.loads(result.stdout)


def test_unknown_color_and_format_are_usage_errors(sample_tree: Path) -> None:
    for arguments in (("--color", "sometimes"), ("--format", "yaml")):
        result = run_cli("copy-plugins-native", *arguments, cwd=sample_tree)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "error[bad-option]" in result.stdout + result.stderr


# --- build-plugins-native ------------------------------------------------------------------------


def test_build_json_dry_run_is_a_versioned_document(sample_tree: Path) -> None:
    result = run_cli("build-plugins-native", "--dry-run", "--format", "json", cwd=sample_tree)

    assert result.returncode == 0, result.stderr
    document = valid("build-report.v1.json", result.stdout)
    assert document["kind"] == "build" and document["dry_run"] is True
    assert {p["id"]: p["status"] for p in document["plugins"]} == {
        "tone-generator": "planned",
        "volume-c": "planned",
        "gain-native": "planned",
    }
    # The progress lines go to stderr, so stdout stays one JSON document.
    assert "[1/3]" in result.stderr


def test_a_failed_c_build_is_annotated_at_the_compilers_line(sample_tree: Path) -> None:
    source = sample_tree / "plugins/native/volume-c/volume.c"
    lines = source.read_text().count("\n")
    source.write_text(source.read_text() + "int broken = ;\n")

    github = run_cli(
        "build-plugins-native", "--only", "volume-c", "--format", "github", cwd=sample_tree
    )
    as_json = run_cli(
        "build-plugins-native", "--only", "volume-c", "--format", "json", cwd=sample_tree
    )

    assert github.returncode == 1
    (annotation,) = [line for line in github.stdout.splitlines() if line.startswith("::error")]
    assert annotation.startswith(
        f"::error file=plugins/native/volume-c/volume.c,line={lines + 1},col=14,title=build-failed::"
    )
    assert as_json.returncode == 1
    (plugin,) = valid("build-report.v1.json", as_json.stdout)["plugins"]
    assert plugin["status"] == "failed" and plugin["error"]["code"] == "build-failed"
    assert any("error" in line for line in plugin["excerpt"])
    assert "int broken" in as_json.stderr  # the compiler's own output, on stderr


def test_build_honours_no_color_for_cargo(sample_tree: Path, tmp_path: Path) -> None:
    # A fake cargo that reports what it was asked for, on the terminal-less pipe the tool reads.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "cargo").write_text(
        '#!/bin/sh\necho "CARGO_TERM_COLOR=${CARGO_TERM_COLOR-unset}"\nexit 1\n'
    )
    (fake / "cargo").chmod(0o755)
    path = f"{fake}:{os.environ['PATH']}"

    forced = run_cli(
        "build-plugins-native",
        "--only",
        "tone-generator",
        "--color",
        "always",
        cwd=sample_tree,
        env={"PATH": path},
    )
    refused = run_cli(
        "build-plugins-native",
        "--only",
        "tone-generator",
        "--color",
        "never",
        cwd=sample_tree,
        env={"PATH": path, "FORCE_COLOR": "1"},
    )
    no_color = run_cli(
        "build-plugins-native",
        "--only",
        "tone-generator",
        cwd=sample_tree,
        env={"PATH": path, "NO_COLOR": "1", "FORCE_COLOR": "1"},
    )

    assert "CARGO_TERM_COLOR=always" in forced.stdout
    assert "CARGO_TERM_COLOR=unset" in refused.stdout
    assert "CARGO_TERM_COLOR=unset" in no_color.stdout


# --- package-plugins-native ----------------------------------------------------------------------


def test_package_json_lists_each_bundle_with_its_hash(sample_tree: Path) -> None:
    result = run_cli("package-plugins-native", "--format", "json", cwd=sample_tree)

    assert result.returncode == 0, result.stdout + result.stderr
    document = valid("release-report.v1.json", result.stdout)
    assert document["kind"] == "release" and document["summary"]["failed"] is False
    bundles = {p["id"]: p["bundles"][0] for p in document["plugins"] if p["bundles"]}
    assert set(bundles) == {"tone-generator", "volume-c"}  # gain-native is an example
    written = sample_tree / "dist/bundles" / bundles["volume-c"]["file"]
    assert written.stat().st_size == bundles["volume-c"]["size"]
    assert [w["code"] for w in document["warnings"]] == ["registry-unsigned"]
    # Progress for the slow part, on stderr: one line per bundle, before it is compressed.
    progress = [line for line in result.stderr.splitlines() if "] packaging " in line]
    assert len(progress) == 2 and progress[-1].startswith("[2/2] packaging ")
    assert progress[0].endswith(" library)")


def test_package_github_and_step_summary(sample_tree: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"

    result = run_cli(
        "package-plugins-native",
        "--dry-run",
        "--format",
        "github",
        cwd=sample_tree,
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )

    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("::warning title=registry-unsigned::")
    text = summary.read_text()
    assert text.startswith("### Native plugin release (dry run)\n")
    assert "| volume-c | 1.0.0 | would publish | volume-c-1.0.0-bundle.tar.zst |" in text


def test_install_json_holds_the_build_and_the_install(sample_tree: Path) -> None:
    result = run_cli(
        "install-plugins-native",
        "--dry-run",
        "--format",
        "json",
        "--only",
        "volume-c",
        cwd=sample_tree,
    )

    assert result.returncode == 0, result.stderr
    document = valid("install-report.v1.json", result.stdout)
    assert document["build"]["kind"] == "build"
    assert [p["id"] for p in document["build"]["plugins"]] == ["volume-c"]
    assert [p["action"] for p in document["plugins"]] == ["install"]


# --- hints that lead to the fix ------------------------------------------------------------------


def test_list_shows_an_installed_plugin_with_a_broken_source_as_broken(sample_tree: Path) -> None:
    run_cli("copy-plugins-native", cwd=sample_tree)
    (sample_tree / "plugins/native/volume-c/plugin.yml").write_text("id: volume-c\nversion: [1\n")

    text = run_cli("list-plugins-native", cwd=sample_tree)
    as_json = run_cli("list-plugins-native", "--format", "json", cwd=sample_tree)

    assert text.returncode == 1
    row = next(line for line in text.stdout.splitlines() if line.startswith("volume-c "))
    assert "ERROR" in row and "plugins/native/volume-c/plugin.yml" in row
    assert "no source" not in text.stdout
    assert text.stdout.count("plugins/native/volume-c/plugin.yml:3:1: is not valid YAML") == 1
    listed = next(p for p in json.loads(as_json.stdout)["plugins"] if p["id"] == "volume-c")
    assert listed["status"] == "error"
    assert (listed["error"]["code"], listed["error"]["line"]) == ("manifest-invalid-yaml", 3)


def test_bundle_name_differs_does_not_suggest_renaming_onto_an_existing_bundle(
    sample_tree: Path,
) -> None:
    run_cli("copy-plugins-native", cwd=sample_tree)
    native = sample_tree / ".plugins/native"
    # A copy under another name, as an old upload would have left it.
    (native / "volume").mkdir()
    for name in ("libvolume_c.so", "plugin.yml"):
        (native / "volume" / name).write_bytes((native / "volume-c" / name).read_bytes())
    (native / "gain-native").rename(native / "gain")

    result = run_cli("check-plugins-native", "--format", "json", cwd=sample_tree)

    hints = {
        f["bundle"]: f["hint"]
        for f in json.loads(result.stdout)["findings"]
        if f["code"] == "bundle-name-differs"
    }
    assert set(hints) == {"volume", "gain"}
    assert "rename" not in hints["volume"]
    assert "native/volume-c/ exists as well" in hints["volume"]
    assert "remove native/volume/" in hints["volume"]
    assert hints["gain"].startswith("rename it to native/gain-native/")


def test_a_tampered_bundle_is_not_fixed_by_rewriting_sha256sums(sample_tree: Path) -> None:
    packaged = run_cli("package-plugins-native", cwd=sample_tree)
    assert packaged.returncode == 0, packaged.stdout
    bundle = sample_tree / "dist/bundles/volume-c-1.0.0-bundle.tar.zst"
    data = bytearray(bundle.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the zstd frame's checksum
    bundle.write_bytes(bytes(data))

    result = run_cli("verify-plugin-bundles", "--format", "json", cwd=sample_tree)

    assert result.returncode == 1
    mismatch = next(
        f
        for f in json.loads(result.stdout)["findings"]
        if f["code"] == "bundle-checksum-list-mismatch"
    )
    assert mismatch["hint"].startswith("the archive changed after it was packaged")
    assert not mismatch["hint"].startswith("write SHA256SUMS")


def test_a_run_that_waits_for_the_lock_says_whom_it_waits_for(sample_tree: Path) -> None:
    import fcntl
    import subprocess
    import sys
    import time

    state = sample_tree / ".plugins/.plugin-packaging"
    state.mkdir(parents=True)
    with open(state / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(f"{os.getpid()}\n")
        held.flush()
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "plugin-packaging"), "copy-plugins-native"],
            cwd=sample_tree,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        assert process.poll() is None  # still waiting
        fcntl.flock(held, fcntl.LOCK_UN)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 0, stdout + stderr
    assert stderr.count("waiting for the lock held by pid") == 1
    assert f"waiting for the lock held by pid {os.getpid()} on .plugins (up to 120 s)" in stderr
    assert "3 installed" in stdout
