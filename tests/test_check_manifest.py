"""Installed manifests judged as the server reads them (N8, N9, N10, section 4)."""

from __future__ import annotations

import json

import pytest
from checklib import PluginDir, codes, manifest_for, only, tree, write  # noqa: F401 - fixtures

LIBRARY = "libgood_c.so"


@pytest.fixture
def bundle(tree: PluginDir, native_libs):
    """Install good_c as native/good/ with the manifest the test writes; returns a writer."""

    def install(manifest: dict | str | None, **options) -> PluginDir:
        tree.bundle(
            "good",
            native_libs.good_c,
            manifest=manifest,
            write_manifest=manifest is not None,
            **options,
        )
        return tree

    return install


def test_bundle_without_manifest_still_loads_but_is_a_warning(bundle) -> None:
    report = bundle(None).check()
    assert only(report, "manifest-missing").severity == "warning"
    entry = report.plan.entries[0]
    assert (
        entry.outcome == "load"
        and entry.candidate.kind is None
        and entry.candidate.manifest is None
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: good\nversion: [unclosed\n", "plugin.yml:3:1 is not valid YAML"),
        ("- just\n- a list\n", "not a mapping"),
        ("", "empty"),
        (b"id: caf\xe9\n", "not UTF-8"),
    ],
)
def test_manifest_that_does_not_parse_is_dropped_by_the_server(
    tree: PluginDir, native_libs, text, expected
) -> None:
    directory = tree.bundle("good", native_libs.good_c, write_manifest=False)
    (directory / "plugin.yml").write_bytes(text if isinstance(text, bytes) else text.encode())
    report = tree.check()
    finding = only(report, "manifest-unparseable")
    assert expected in finding.message and "drops" in finding.message
    assert (
        report.plan.entries[0].outcome == "load"
        and report.plan.entries[0].candidate.manifest is None
    )


def test_alias_bomb_is_refused_not_expanded(bundle) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    finding = only(bundle(bomb).check(), "manifest-unparseable")
    assert "aliases" in finding.message


@pytest.mark.parametrize("key", ["id", "version", "node_kind", "kind", "entrypoint"])
def test_each_required_key_is_required(bundle, key: str) -> None:
    manifest = manifest_for("good", LIBRARY)
    del manifest[key]
    report = bundle(manifest).check()
    finding = only(report, "manifest-key-missing")
    assert finding.key == key and f"`{key}`" in finding.message
    assert report.plan.entries[0].candidate.manifest is None  # the parse failed: nothing used


def test_unquoted_version_is_a_float_and_fails_the_parse(bundle) -> None:
    text = (
        "id: good\nversion: 0.10\nnode_kind: fixture_good\nkind: native\nentrypoint: libgood_c.so\n"
    )
    finding = only(bundle(text).check(), "manifest-wrong-type")
    assert finding.key == "version" and "a number (0.1)" in finding.message
    assert 'version: "..."' in finding.hint


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"schema_version": "1"}, "schema_version"),
        ({"name": ["a", "list"]}, "name"),
        ({"compatibility": ["linux"]}, "compatibility"),
        ({"compatibility": {"os": "linux"}}, "compatibility.os"),
        ({"models": [{"source": "ftp", "url": "x"}]}, "models[0].source"),
        (
            {"models": [{"source": "huggingface", "repo_id": "a/b", "files": "model.bin"}]},
            "models[0].files",
        ),
        (
            {
                "assets": [
                    {"type_id": "p", "label": "P", "extensions": ["json"], "max_size_bytes": -1}
                ]
            },
            "assets[0].max_size_bytes",
        ),
        (
            {
                "assets": [
                    {"type_id": "p", "label": "P", "extensions": ["json"], "content_type": "html"}
                ]
            },
            "assets[0].content_type",
        ),
    ],
)
def test_wrong_types_anywhere_fail_the_parse(bundle, extra: dict, key: str) -> None:
    report = bundle(manifest_for("good", LIBRARY, **extra)).check()
    finding = only(report, "manifest-wrong-type")
    assert finding.key == key
    assert report.plan.entries[0].candidate.manifest is None


def test_asset_missing_a_required_key_fails_the_parse(bundle) -> None:
    report = bundle(
        manifest_for("good", LIBRARY, assets=[{"type_id": "presets", "extensions": ["json"]}])
    ).check()
    assert only(report, "manifest-key-missing").key == "assets[0].label"


@pytest.mark.parametrize(("value", "fatal"), [("Native", True), ("NATIVE", True), ("wasm", False)])
def test_kind_must_be_exactly_native(bundle, value: str, fatal: bool) -> None:
    report = bundle(manifest_for("good", LIBRARY, kind=value)).check()
    finding = only(report, "manifest-kind")
    assert repr(value) in finding.message
    assert (report.plan.entries[0].candidate.manifest is None) == fatal


def test_entrypoint_must_name_the_bundles_library(bundle) -> None:
    finding = only(
        bundle(manifest_for("good", "libsomething_else.so")).check(), "manifest-entrypoint-mismatch"
    )
    assert "libsomething_else.so" in finding.message and f"entrypoint: {LIBRARY}" in finding.hint


@pytest.mark.parametrize(
    ("entrypoint", "problem"),
    [
        ("../libgood_c.so", "'..'"),
        ("/opt/libgood_c.so", "relative"),
        ("libgood_c.txt", ".so, .dylib or .dll"),
        ("libgood_c.SO", ".so, .dylib or .dll"),
    ],
)
def test_entrypoint_must_be_safe(bundle, entrypoint: str, problem: str) -> None:
    report = bundle(manifest_for("good", entrypoint)).check()
    assert problem in only(report, "manifest-entrypoint-unsafe").message
    assert "manifest-entrypoint-mismatch" not in codes(report)


@pytest.mark.parametrize(
    ("key", "value"), [("id", "a/b"), ("id", " good"), ("version", "1.0.0/../x")]
)
def test_id_and_version_must_be_single_safe_path_components(bundle, key: str, value: str) -> None:
    finding = only(
        bundle(manifest_for("good", LIBRARY, **{key: value})).check(), "manifest-unsafe-name"
    )
    assert finding.key == key


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0.0", "01.0.0"])
def test_version_must_be_semver(bundle, version: str) -> None:
    assert only(
        bundle(manifest_for("good", LIBRARY, version=version)).check(),
        "manifest-version-not-semver",
    )


def test_semver_with_prerelease_and_build_is_fine(bundle) -> None:
    assert (
        bundle(manifest_for("good", LIBRARY, version="1.0.0-rc.1+build.5")).check().findings == ()
    )


def test_node_kind_must_be_bare(bundle) -> None:
    report = bundle(manifest_for("good", LIBRARY, node_kind="plugin::native::fixture_good")).check()
    finding = only(report, "manifest-node-kind")
    assert "`fixture_good`" in finding.hint
    assert report.plan.entries[0].candidate.kind is None  # not trusted for duplicate detection


def test_server_falls_back_to_the_next_manifest_name_when_plugin_yml_is_broken(
    tree: PluginDir, native_libs
) -> None:
    directory = tree.bundle("good", native_libs.good_c, manifest="id: [broken\n")
    write(directory / "plugin.yaml", manifest_for("good", LIBRARY))
    report = tree.check()
    fallback = only(report, "manifest-fallback")
    assert fallback.path == directory / "plugin.yaml"
    assert "plugin.yml does not parse" in fallback.message
    assert "manifest-unparseable" in codes(report)
    assert report.plan.entries[0].candidate.manifest == directory / "plugin.yaml"


def test_stem_named_manifest_is_found_after_the_plain_names(tree: PluginDir, native_libs) -> None:
    directory = tree.bundle("good", native_libs.good_c, write_manifest=False)
    write(directory / "good_c.plugin.yml", manifest_for("good", LIBRARY))  # stem without `lib`
    report = tree.check()
    assert "there is no plugin.yml" in only(report, "manifest-fallback").message
    assert report.plan.entries[0].candidate.kind == "plugin::native::fixture_good"


def test_later_manifest_names_are_shadowed(tree: PluginDir, native_libs) -> None:
    directory = tree.bundle("good", native_libs.good_c)
    (directory / "manifest.json").write_text(
        json.dumps(manifest_for("good", LIBRARY, node_kind="ignored"))
    )
    report = tree.check()
    shadowed = only(report, "manifest-shadowed")
    assert shadowed.severity == "info" and shadowed.path == directory / "manifest.json"
    assert not report.failed(strict=True)
    assert report.plan.entries[0].candidate.kind == "plugin::native::fixture_good"


def test_manifest_json_alone_is_read(tree: PluginDir, native_libs) -> None:
    directory = tree.bundle("good", native_libs.good_c, write_manifest=False)
    (directory / "manifest.json").write_text(json.dumps(manifest_for("good", LIBRARY)))
    report = tree.check()
    assert codes(report) == ["manifest-fallback"]
    assert report.plan.entries[0].candidate.manifest == directory / "manifest.json"


def asset(**fields) -> dict:
    return {"type_id": "presets", "label": "Presets", "extensions": ["json"], **fields}


def test_asset_type_id_must_match_the_servers_pattern(bundle) -> None:
    finding = only(
        bundle(manifest_for("good", LIBRARY, assets=[asset(type_id="my presets!")])).check(),
        "asset-type-id-invalid",
    )
    assert finding.key == "assets[0].type_id" and "`my-presets`" in finding.hint


@pytest.mark.parametrize("system_dir", ["/etc/presets", "../outside", "a/../../b"])
def test_asset_system_dir_must_stay_relative(bundle, system_dir: str) -> None:
    report = bundle(manifest_for("good", LIBRARY, assets=[asset(system_dir=system_dir)])).check()
    assert only(report, "asset-system-dir-unsafe").key == "assets[0].system_dir"


def test_asset_size_is_capped_at_100_mib(bundle) -> None:
    report = bundle(
        manifest_for("good", LIBRARY, assets=[asset(max_size_bytes=200 * 1024 * 1024)])
    ).check()
    assert "200.0 MiB" in only(report, "asset-too-large").message


def test_asset_size_at_the_cap_is_fine(bundle) -> None:
    assert (
        bundle(manifest_for("good", LIBRARY, assets=[asset(max_size_bytes=104857600)]))
        .check()
        .findings
        == ()
    )


def test_asset_type_claimed_by_a_second_plugin_is_refused(tree: PluginDir, native_libs) -> None:
    tree.bundle("aaa", native_libs.good_c, manifest=manifest_for("aaa", LIBRARY, assets=[asset()]))
    tree.bundle(
        "bbb",
        native_libs.good_c_other,
        manifest=manifest_for("bbb", "libgood_c_other.so", "fixture_other", assets=[asset()]),
    )
    finding = only(tree.check(), "asset-type-taken")
    assert finding.bundle == "bbb" and "'aaa'" in finding.message


def test_unknown_and_build_only_keys_are_ignored_like_the_server_does(bundle) -> None:
    manifest = manifest_for(
        "good", LIBRARY, artifact="target/release/libgood_c.so", repo="https://x", extra={"a": 1}
    )
    assert bundle(manifest).check().findings == ()
