"""--probe: each library loaded in a throwaway child process (plugin_packaging.check.probe), its answer judged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from checklib import PluginDir, codes, manifest_for, only, plan_outcomes, tree  # noqa: F401 - fixtures
from fixturelib import COLON_KIND, GOOD_C_KIND, OTHER_C_KIND

from plugin_packaging.check.probe import ProbeResult
from plugin_packaging.check.probe_rules import probe_violations
from plugin_packaging.errors import PackagingError
from plugin_packaging.target import Target


def probed(tree: PluginDir, library: Path, *, kind: str = GOOD_C_KIND, timeout: float = 5.0):
    name = library.parent.name.replace("_", "-")
    tree.bundle(name, library, manifest=manifest_for(name, library.name, kind))
    return tree.check(probe=True, probe_timeout=timeout)


def test_probe_of_a_good_library_confirms_its_kind(tree: PluginDir, native_libs) -> None:
    report = probed(tree, native_libs.good_c)
    assert report.findings == () and report.probed
    candidate = report.plan.entries[0].candidate
    assert (candidate.kind, candidate.kind_source) == (f"plugin::native::{GOOD_C_KIND}", "probe")


def test_api_version_below_the_hosts_range(tree: PluginDir, native_libs) -> None:
    report = probed(tree, native_libs.api_v5)
    assert "v5, host supports v6-v9" in only(report, "probe-api-version").message
    assert plan_outcomes(report)[0][0::2] == ("skip", "probe-api-version")


def test_api_version_above_the_hosts_range(tree: PluginDir, native_libs) -> None:
    assert "version 10" in only(probed(tree, native_libs.api_v10), "probe-api-version").message


def test_entry_function_returning_null(tree: PluginDir, native_libs) -> None:
    assert (
        only(probed(tree, native_libs.null_entry), "probe-null-api").symbol
        == "streamkit_native_plugin_api"
    )


def test_kind_with_colons_is_refused(tree: PluginDir, native_libs) -> None:
    finding = only(probed(tree, native_libs.kind_with_colons, kind="bad"), "probe-kind-invalid")
    assert repr(COLON_KIND) in finding.message


def test_already_namespaced_kind_is_accepted(tree: PluginDir, native_libs) -> None:
    report = probed(tree, native_libs.kind_prefixed, kind="fixture_prefixed")
    assert report.findings == ()
    assert report.plan.entries[0].candidate.kind == "plugin::native::fixture_prefixed"


def test_kind_that_is_not_utf8_is_refused(tree: PluginDir, native_libs) -> None:
    assert (
        "UTF-8" in only(probed(tree, native_libs.kind_invalid_utf8), "probe-kind-invalid").message
    )


def test_kind_differing_from_the_manifest(tree: PluginDir, native_libs) -> None:
    report = probed(tree, native_libs.good_c, kind="something_else")
    finding = only(report, "probe-kind-mismatch")
    assert "'fixture_good'" in finding.message and "'something_else'" in finding.message
    assert finding.key == "node_kind"
    assert report.plan.entries[0].outcome == "load"  # a bundle's manifest is only metadata


def test_constructor_that_aborts(tree: PluginDir, native_libs) -> None:
    report = probed(tree, native_libs.ctor_abort)
    assert "SIGABRT" in only(report, "probe-crashed").message
    assert plan_outcomes(report)[0][0::2] == ("skip", "probe-crashed")


def test_constructor_that_hangs(tree: PluginDir, native_libs) -> None:
    report = probed(tree, native_libs.ctor_hang, timeout=1.0)
    assert "timed out" in only(report, "probe-timed-out").message


def test_probed_kind_finds_duplicates_the_manifests_hide(tree: PluginDir, native_libs) -> None:
    # Two manifests claim different kinds; both libraries register the same one.
    tree.bundle(
        "first", native_libs.good_c, manifest=manifest_for("first", "libgood_c.so", "kind_a")
    )
    tree.bundle(
        "second", native_libs.good_c, manifest=manifest_for("second", "libgood_c.so", "kind_b")
    )
    assert "duplicate-node-kind" not in codes(tree.check())
    report = tree.check(probe=True)
    duplicate = only(report, "duplicate-node-kind")
    assert duplicate.bundle == "second" and f"plugin::native::{GOOD_C_KIND}" in duplicate.message


def test_libraries_that_fail_statically_are_not_probed(tree: PluginDir, native_libs) -> None:
    report = probed(tree, native_libs.no_symbol)
    assert codes(report) == ["entry-symbol-missing"]


def test_active_record_whose_library_registers_another_kind_is_skipped(
    tree: PluginDir, native_libs
) -> None:
    import json

    bundle = tree.plugins / "bundles" / "other" / "1.0.0"
    bundle.mkdir(parents=True)
    shutil.copyfile(native_libs.good_c_other, bundle / "libother.so")
    (tree.plugins / "active").mkdir()
    (tree.plugins / "active" / "other.json").write_text(
        json.dumps(
            {
                "plugin_id": "other",
                "version": "1.0.0",
                "node_kind": "not_what_it_says",
                "kind": "native",
                "entrypoint": ".plugins/bundles/other/1.0.0/libother.so",
                "installed_at_ms": 1,
            }
        )
    )
    report = tree.check(probe=True)
    finding = only(report, "probe-kind-mismatch")
    assert (
        finding.record == "other.json"
        and "Active plugin kind does not match record" in finding.message
    )
    assert report.plan.entries[0].outcome == "skip"
    assert OTHER_C_KIND in finding.message


def test_probe_cannot_run_for_another_platform(tree: PluginDir, native_libs) -> None:
    tree.bundle("good", native_libs.good_c)
    with pytest.raises(PackagingError) as raised:
        tree.check(probe=True, target=Target.of("linux", "aarch64"))
    assert raised.value.code == "probe-foreign-target"


@pytest.mark.parametrize(
    ("failure_code", "rule"),
    [
        ("probe-load-failed", "probe-failed"),
        ("probe-no-symbol", "probe-failed"),
        ("probe-null-metadata", "probe-failed"),
        ("probe-output-invalid", "probe-failed"),
    ],
)
def test_other_probe_failures_are_reported_with_their_text(failure_code: str, rule: str) -> None:
    # These need libraries no fixture builds (a get_metadata pointer of NULL, a library that
    # scribbles on the probe's pipe); the mapping is checked on the probe's own result type.
    result = ProbeResult(False, 9, None, f"the {failure_code} text", failure_code, "metadata")
    found, kind = probe_violations(
        result,
        Path("libx.so"),
        declared_kind="x",
        declared_in="plugin.yml",
        declared_key="node_kind",
        bundle="x",
    )
    assert [(v.code, v.details["detail"]) for v in found] == [(rule, f"the {failure_code} text")]
    assert kind is None
