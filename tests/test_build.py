"""build-plugins-native and install-plugins-native on the sample tree, compiled for real."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path, PurePosixPath

import pytest
import yaml
from cli import run_in_process
from elftools.elf.elffile import ELFFile
from fixturelib import ENTRY_SYMBOL, SAMPLE_PLUGINS

from plugin_packaging.errors import PackagingError
from plugin_packaging.settings import Settings
from plugin_packaging.sources.build import build_plugins, cargo_target_dir, plan_builds

BUILD_OUTPUTS = ("target", "plugins/native/volume-c/build", "examples/plugins/gain-native/target")


def offline(tree: Path, **settings: object) -> None:
    """An invoke.yaml in the tree: cargo must never reach the network, as a user's CI would say."""
    (tree / "invoke.yaml").write_text(
        yaml.safe_dump({"plugins": {"cargo_args": ["--offline"], **settings}})
    )


def clean(tree: Path) -> Path:
    for output in BUILD_OUTPUTS:
        shutil.rmtree(tree / output, ignore_errors=True)
    return tree


def exports_entry(library: Path) -> bool:
    with open(library, "rb") as handle:
        symbols = ELFFile(handle).get_section_by_name(".dynsym")
        return any(
            s.name == ENTRY_SYMBOL and s["st_shndx"] != "SHN_UNDEF" for s in symbols.iter_symbols()
        )


def break_c_plugin(tree: Path) -> None:
    with open(tree / "plugins/native/volume-c/volume.c", "a") as handle:
        handle.write("\nint broken_on_purpose(void) { return undeclared_on_purpose; }\n")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARGO_NET_OFFLINE", "true")
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)


def test_builds_every_plugin_from_clean_where_its_artifact_path_says(sample_tree: Path) -> None:
    offline(clean(sample_tree))
    code, out = run_in_process("build-plugins-native", "--root", str(sample_tree))
    assert code == 0, out
    for plugin in SAMPLE_PLUGINS:
        assert exports_entry(sample_tree / plugin.artifact), plugin.artifact
    # Progress per plugin, the compilers' own output streamed through, then the summary.
    assert "[1/3] tone-generator: CARGO_TARGET_DIR=target/plugins cargo build" in out
    assert "[2/3] volume-c: make -C plugins/native/volume-c" in out
    assert (
        "[3/3] gain-native: CARGO_TARGET_DIR=examples/plugins/gain-native/target cargo build" in out
    )
    assert "Compiling tone-generator v0.2.0" in out
    assert "-o build/libvolume_c.so volume.c" in out
    assert out.rstrip().endswith("3 built")
    # The support crate is built as a dependency into the shared target, never as a plugin.
    assert not (sample_tree / "plugins/native/common/target").exists()


def test_a_failing_plugin_is_reported_with_its_error_and_the_others_still_build(
    sample_tree: Path,
) -> None:
    offline(clean(sample_tree))
    break_c_plugin(sample_tree)
    code, out = run_in_process("build-plugins-native", "--root", str(sample_tree))
    assert code == 1
    summary = out[out.index("build summary") :]
    assert "  built   tone-generator" in summary
    assert "  FAILED  volume-c" in summary
    assert "  built   gain-native" in summary  # built after the failure
    assert "exit status 2: make -C plugins/native/volume-c" in summary
    assert "undeclared_on_purpose" in summary  # the compiler's error line, repeated at the end
    assert summary.rstrip().endswith("2 built, 1 failed")
    assert exports_entry(
        sample_tree / "examples/plugins/gain-native/target/release/libgain_plugin_native.so"
    )
    assert not (sample_tree / "plugins/native/volume-c/build/libvolume_c.so").exists()


def test_a_rust_compile_error_shows_rustc_error_in_the_summary(sample_tree: Path) -> None:
    offline(sample_tree)
    with open(sample_tree / "examples/plugins/gain-native/src/lib.rs", "a") as handle:
        handle.write("\nfn broken_on_purpose() -> u32 { missing_on_purpose }\n")
    code, out = run_in_process(
        "build-plugins-native", "--root", str(sample_tree), "--only", "gain-native"
    )
    assert code == 1
    summary = out[out.index("build summary") :]
    assert "error[E0425]: cannot find value `missing_on_purpose`" in summary
    assert "exit status 101" in summary


def test_only_builds_just_the_named_plugins(sample_tree: Path) -> None:
    offline(clean(sample_tree))
    code, out = run_in_process(
        "build-plugins-native", "--root", str(sample_tree), "--only", "volume-c"
    )
    assert code == 0, out
    assert "[1/1] volume-c" in out
    assert (sample_tree / "plugins/native/volume-c/build/libvolume_c.so").is_file()
    assert not (sample_tree / "target").exists()


def test_only_with_an_unknown_id_is_a_usage_error_naming_the_known_ones(sample_tree: Path) -> None:
    code, out = run_in_process(
        "build-plugins-native", "--root", str(sample_tree), "--only", "whisper"
    )
    assert code == 2
    assert "error[unknown-plugin]: no plugin source with id 'whisper'" in out
    assert "known ids: gain-native, tone-generator, volume-c" in out
    assert "Traceback" not in out


def test_debug_builds_the_debug_profile_and_leaves_the_release_artifact_alone(
    sample_tree: Path,
) -> None:
    offline(sample_tree)
    release = sample_tree / "target/plugins/release/libtone_gen.so"
    before = release.stat().st_mtime_ns
    code, out = run_in_process(
        "build-plugins-native", "--root", str(sample_tree), "--only", "tone-generator", "--debug"
    )
    assert code == 0, out
    assert exports_entry(sample_tree / "target/plugins/debug/libtone_gen.so")
    assert "--release" not in out.splitlines()[0]
    assert "built   tone-generator  target/plugins/debug/libtone_gen.so" in out
    assert release.stat().st_mtime_ns == before


def test_release_and_debug_together_are_refused(sample_tree: Path) -> None:
    code, out = run_in_process(
        "build-plugins-native", "--root", str(sample_tree), "--release", "--debug"
    )
    assert code == 2
    assert "--release or --debug, not both" in out


def test_dry_run_prints_the_commands_and_builds_nothing(sample_tree: Path) -> None:
    clean(sample_tree)
    code, out = run_in_process(
        "build-plugins-native", "--root", str(sample_tree), "--dry-run", "--jobs", "3"
    )
    assert code == 0, out
    assert (
        "cargo build --manifest-path plugins/native/tone-generator/Cargo.toml --release -j 3" in out
    )
    assert "make -C plugins/native/volume-c -j 3" in out
    assert "dry run: 3 plugin(s) would be built" in out
    assert not (sample_tree / "target").exists()
    assert not (sample_tree / "plugins/native/volume-c/build").exists()


def test_declared_build_command_runs_in_the_shell_at_the_root(sample_tree: Path) -> None:
    clean(sample_tree)
    command = "make -C plugins/native/volume-c CFLAGS=-O1 && touch built-by-declared-command"
    offline(sample_tree, build_commands={"volume-c": command})
    code, out = run_in_process(
        "build-plugins-native", "--root", str(sample_tree), "--only", "volume-c"
    )
    assert code == 0, out
    assert f"[1/1] volume-c: {command}" in out
    assert (sample_tree / "built-by-declared-command").is_file()
    assert exports_entry(sample_tree / "plugins/native/volume-c/build/libvolume_c.so")


def test_a_build_that_succeeds_without_its_artifact_fails(sample_tree: Path) -> None:
    clean(sample_tree)
    offline(sample_tree, build_commands={"volume-c": ["true"]})
    code, out = run_in_process(
        "build-plugins-native", "--root", str(sample_tree), "--only", "volume-c"
    )
    assert code == 1
    assert "error[build-output-missing]" in out
    assert "left no plugins/native/volume-c/build/libvolume_c.so" in out


def test_a_missing_build_tool_is_named_with_a_hint(sample_tree: Path) -> None:
    offline(sample_tree, build_commands={"volume-c": ["no-such-compiler-for-tests", "--version"]})
    code, out = run_in_process(
        "build-plugins-native", "--root", str(sample_tree), "--only", "volume-c"
    )
    assert code == 1
    assert "error[build-tool-missing]: `no-such-compiler-for-tests` is not on PATH" in out
    assert "from plugins.build_commands.volume-c" in out


def test_cargo_args_from_the_environment_reach_cargo(
    sample_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVOKE_PLUGINS_CARGO_ARGS", "--offline --locked")
    code, out = run_in_process(
        "build-plugins-native", "--root", str(sample_tree), "--only", "gain-native", "--dry-run"
    )
    assert code == 0, out
    assert "--release --offline --locked" in out


# --- the plan, as plain functions ------------------------------------------------------------


def test_plan_derives_each_target_dir_from_the_artifact_path(built_sample_tree: Path) -> None:
    settings = Settings.from_config({"cargo_args": ["--offline"]}, root=str(built_sample_tree))
    plan = plan_builds(settings, jobs=2)
    steps = {step.plugin_id: step for step in plan.steps}
    assert set(steps) == {"tone-generator", "volume-c", "gain-native"}
    tone, volume, gain = steps["tone-generator"], steps["volume-c"], steps["gain-native"]
    assert tone.recipe == "cargo" and gain.recipe == "cargo" and volume.recipe == "make"
    assert tone.env == {"CARGO_TARGET_DIR": str(built_sample_tree / "target/plugins")}
    assert gain.env == {
        "CARGO_TARGET_DIR": str(built_sample_tree / "examples/plugins/gain-native/target")
    }
    assert tone.cwd == built_sample_tree / "plugins/native/tone-generator"
    assert tone.command[-4:] == ("--release", "-j", "2", "--offline")
    assert volume.command == (
        "make",
        "-C",
        str(built_sample_tree / "plugins/native/volume-c"),
        "-j",
        "2",
    )
    assert volume.env == {}


def test_debug_plan_expects_the_debug_output(built_sample_tree: Path) -> None:
    settings = Settings.from_config({}, root=str(built_sample_tree))
    plan = plan_builds(settings, only=["gain-native"], profile="debug")
    (step,) = plan.steps
    assert "--release" not in step.command
    assert (
        step.output
        == built_sample_tree / "examples/plugins/gain-native/target/debug/libgain_plugin_native.so"
    )


@pytest.mark.parametrize(
    ("artifact", "target"),
    [
        ("target/plugins/release/libwhisper.so", "target/plugins"),
        (
            "examples/plugins/gain-native/target/release/libgain_plugin_native.so",
            "examples/plugins/gain-native/target",
        ),
        (
            "plugins/native/moonshine/target/release/libmoonshine.so",
            "plugins/native/moonshine/target",
        ),
        ("out/debug/libx.so", "out"),
        ("release/libx.so", "."),
        ("plugins/native/volume-c/build/libvolume_c.so", None),
    ],
)
def test_cargo_target_dir_is_the_part_before_the_profile(artifact: str, target: str | None) -> None:
    found = cargo_target_dir(PurePosixPath(artifact))
    assert (str(found) if found is not None else None) == target


def test_a_source_with_no_way_to_build_it_fails_alone(
    built_sample_tree: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(built_sample_tree / "plugins", tree / "plugins")
    (tree / "prebuilt").mkdir()
    extras = {
        "gain-native": None,
        "prebuilt": {
            "node_kind": "prebuilt",
            "crate": "prebuilt",
            "artifact": "prebuilt/libprebuilt.so",
        },
    }
    settings = Settings.from_config({"extras": extras}, root=str(tree))
    plan = plan_builds(settings)
    (unbuildable,) = plan.unbuildable
    assert unbuildable.plugin_id == "prebuilt"
    assert unbuildable.error is not None and unbuildable.error.code == "build-recipe-missing"
    assert "prebuilt has no Cargo.toml or Makefile" in unbuildable.error.message
    assert {s.plugin_id for s in plan.steps} == {"tone-generator", "volume-c"}


def test_a_cargo_artifact_without_a_profile_component_is_refused_with_a_hint(
    sample_tree: Path,
) -> None:
    manifest = sample_tree / "plugins/native/tone-generator/plugin.yml"
    manifest.write_text(manifest.read_text().replace("target/plugins/release/", "out/"))
    settings = Settings.from_config({}, root=str(sample_tree))
    plan = plan_builds(settings, only=["tone-generator"])
    (unbuildable,) = plan.unbuildable
    assert unbuildable.error is not None and unbuildable.error.code == "build-target-dir-unknown"
    assert "plugins.build_commands.tone-generator" in (unbuildable.error.hint or "")


def test_build_plugins_streams_to_the_given_stream(sample_tree: Path) -> None:
    settings = Settings.from_config({"cargo_args": ["--offline"]}, root=str(sample_tree))
    stream = io.StringIO()
    report = build_plugins(settings, only=["tone-generator", "volume-c"], out=stream)
    assert report.built == ("tone-generator", "volume-c")
    assert not report.failed
    assert stream.getvalue().startswith("[1/2] tone-generator: ")
    assert "Finished `release` profile" in stream.getvalue()


def test_bad_jobs_and_bad_settings_are_refused(built_sample_tree: Path) -> None:
    settings = Settings.from_config({}, root=str(built_sample_tree))
    with pytest.raises(PackagingError, match="positive integer"):
        plan_builds(settings, jobs=0)
    with pytest.raises(PackagingError, match=r"build_commands\.volume-c"):
        Settings.from_config({"build_commands": {"volume-c": 3}}, root=str(built_sample_tree))
    with pytest.raises(PackagingError, match="cargo_args"):
        Settings.from_config({"cargo_args": {"offline": True}}, root=str(built_sample_tree))


# --- install-plugins-native ------------------------------------------------------------------


def test_install_builds_then_installs_every_plugin(sample_tree: Path) -> None:
    offline(clean(sample_tree))
    code, out = run_in_process("install-plugins-native", "--root", str(sample_tree))
    assert code == 0, out
    native = sample_tree / ".plugins/native"
    for plugin in SAMPLE_PLUGINS:
        bundle = native / plugin.plugin_id
        library = PurePosixPath(plugin.artifact).name
        assert sorted(os.listdir(bundle)) == sorted([library, "plugin.yml"])
        assert exports_entry(bundle / library)
        manifest = yaml.safe_load((bundle / "plugin.yml").read_text())
        assert (manifest["node_kind"], manifest["version"]) == (plugin.node_kind, plugin.version)
    assert out.index("build summary") < out.index("3 installed")
    assert "check: the loader will accept" in out


def test_install_skips_a_plugin_whose_build_failed_and_keeps_its_installed_copy(
    sample_tree: Path,
) -> None:
    offline(sample_tree)
    code, out = run_in_process("install-plugins-native", "--root", str(sample_tree))
    assert code == 0, out
    installed = sample_tree / ".plugins/native/volume-c/libvolume_c.so"
    before = installed.read_bytes()
    # A library left by an older build differs from the installed one; the source is then
    # broken, so make must rebuild (the library is older than volume.c) and fails.
    built = sample_tree / "plugins/native/volume-c/build/libvolume_c.so"
    built.write_bytes(b"\x7fELF left by an older build")
    os.utime(built, (1_000_000_000, 1_000_000_000))
    break_c_plugin(sample_tree)
    code, out = run_in_process("install-plugins-native", "--root", str(sample_tree), "--verbose")
    assert code == 1
    assert "  FAILED  volume-c" in out
    assert installed.read_bytes() == before
    install_part = out.split("2 built, 1 failed", 1)[1]
    assert "tone-generator" in install_part and "gain-native" in install_part
    assert "volume-c" not in install_part


def test_install_dry_run_builds_nothing_and_changes_nothing(sample_tree: Path) -> None:
    clean(sample_tree)
    code, out = run_in_process("install-plugins-native", "--root", str(sample_tree), "--dry-run")
    assert code == 0, out
    assert "dry run: 3 plugin(s) would be built" in out
    assert "3 not built" in out
    assert not (sample_tree / "target").exists()
    assert not (sample_tree / ".plugins").exists()


def test_ctrl_c_stops_the_build_reports_what_ran_and_exits_130(sample_tree: Path) -> None:
    import signal
    import subprocess
    import sys

    offline(
        sample_tree,
        build_commands={
            "volume-c": "echo compiling-volume; exec sleep 60",
            "gain-native": "touch gain-was-built",
        },
    )
    command = [
        sys.executable,
        "-c",
        "from plugin_packaging.cli import main; main()",
        "build-plugins-native",
        "--root",
        str(sample_tree),
        "--only",
        "volume-c",
        "--only",
        "gain-native",
    ]
    # Its own session: Ctrl-C goes to the whole process group, as a terminal sends it.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.strip() == "compiling-volume":
                os.killpg(process.pid, signal.SIGINT)
                break
        rest = process.stdout.read()
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    out = "".join(seen) + rest
    assert code == 130, out
    assert "error[build-interrupted]" in out
    assert "interrupted, the rest were not built" in out
    assert "Traceback" not in out
    assert not (sample_tree / "gain-was-built").exists()


# --- help and completion of the everyday tasks ------------------------------------------------


@pytest.mark.parametrize(
    "task_name",
    [
        "build-plugins-native",
        "install-plugins-native",
        "list-plugins-native",
        "migrate-plugins-native",
    ],
)
def test_every_option_of_every_everyday_task_has_help(task_name: str) -> None:
    import re
    import subprocess
    import sys

    # A fresh process: invoke's Task.get_arguments pops the help texts it hands out, so a task
    # already parsed in this process would show none.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from plugin_packaging.cli import main; main()",
            "--help",
            task_name,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"Usage: plugin-packaging {task_name} [OPTIONS]" in result.stdout
    options = result.stdout.split("Options:", 1)[1].splitlines()
    flag_lines = [line for line in options if line.startswith("  -")]
    assert len(flag_lines) >= 3
    undocumented = [line.strip() for line in flag_lines if not re.match(r"  -\S.*?\s{2,}\S", line)]
    assert undocumented == []


def test_shell_completion_knows_the_tasks_and_their_options() -> None:
    code, script = run_in_process("--print-completion-script", "bash")
    assert code == 0
    assert "complete -F _complete_plugin-packaging" in script
    code, names = run_in_process("--complete", "--", "plugin-packaging", "mi")
    assert "migrate-plugins-native" in names.split()
    code, options = run_in_process(
        "--complete", "--", "plugin-packaging", "build-plugins-native", "--"
    )
    assert {"--only", "--debug", "--release", "--jobs", "--dry-run", "--root"} <= set(
        options.split()
    )
