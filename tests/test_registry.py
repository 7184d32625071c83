"""The registry: manifests in StreamKit's shape, names, URLs, SemVer order, index, append-only."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugin_packaging.contract.semver import (
    compare_versions,
    latest_version,
    parse_semver,
    sort_versions_descending,
)
from plugin_packaging.errors import PackagingError
from plugin_packaging.release.registry import (
    MANIFEST_KEYS,
    BundleRef,
    Variant,
    build_index,
    bundle_file_name,
    bundle_url,
    compare_published,
    manifest_json_bytes,
    merge_published,
    registry_manifest,
)

TEMPLATE = "https://github.com/streamer45/streamkit/releases/download/plugin-{plugin_id}-v{version}"
RELEASE = "https://github.com/streamer45/streamkit/releases/download/plugin-whisper-v0.3.0"
REGISTRY = "https://streamer45.github.io/streamkit-registry/"


def plugin_yml() -> dict[str, Any]:
    """Generated plugin.yml data, keys in source order, with tooling-only keys and nulls."""
    return {
        "schema_version": 1,
        "id": "whisper",
        "name": "Whisper",
        "version": "0.3.0",
        "node_kind": "whisper",
        "kind": "native",
        "entrypoint": "libwhisper.so",
        "description": "Speech to text (Sprache \u2192 Text) with whisper.cpp",
        "license": "MIT",
        "license_url": None,
        "homepage": None,
        "repository": "https://github.com/streamer45/streamkit",
        "artifact": "target/plugins/release/libwhisper.so",
        "artifact_cuda": "target/plugins/cuda/libwhisper.so",
        "accelerators": ["cpu", "cuda", "vulkan"],
        "extra_files": ["LICENSES/MIT.txt"],
        "compatibility": {"streamkit": ">=0.2.0", "os": ["linux"], "arch": ["x86_64"]},
        "models": [
            {
                "id": "tiny",
                "name": None,
                "default": True,
                "source": "huggingface",
                "repo_id": "ggerganov/whisper.cpp",
                "revision": None,
                "files": ["ggml-tiny.bin"],
                "expected_size_bytes": 77691713,
                "sha256": None,
                "file_checksums": {},
                "license": "MIT",
                "license_url": None,
                "gated": False,
            }
        ],
        "assets": [],
    }


BUNDLE = BundleRef(url=f"{RELEASE}/whisper-0.3.0-bundle.tar.zst", sha256="a" * 64, size_bytes=48213)
CUDA = Variant("cuda", f"{RELEASE}/whisper-0.3.0-cuda-bundle.tar.zst", "b" * 64, 913377)
VULKAN = Variant("vulkan", f"{RELEASE}/whisper-0.3.0-vulkan-bundle.tar.zst", "c" * 64, 51002)


# --------------------------------------------------------------------------------------------
# Manifests


def test_registry_manifest_matches_the_golden_file(datadir: Path) -> None:
    manifest = registry_manifest(plugin_yml(), bundle=BUNDLE, variants=[VULKAN, CUDA])
    assert manifest_json_bytes(manifest) == (datadir / "registry_manifest.json").read_bytes()


def test_bundle_manifest_is_the_registry_manifest_without_bundle(datadir: Path) -> None:
    manifest = registry_manifest(plugin_yml(), bundle=None, variants=())
    assert "bundle" not in manifest and "variants" not in manifest
    assert manifest_json_bytes(manifest) == (datadir / "bundle_manifest.json").read_bytes()


def test_keys_follow_streamkit_order() -> None:
    data = plugin_yml()
    data.update(license_url="https://opensource.org/licenses/MIT", homepage="https://x.org")
    data["assets"] = [{"type_id": "voice", "label": "Voice", "extensions": ["bin"]}]
    manifest = registry_manifest(data, bundle=BUNDLE, variants=[CUDA])
    assert list(manifest) == list(MANIFEST_KEYS)
    assert MANIFEST_KEYS == (
        "schema_version", "id", "name", "version", "node_kind", "kind", "description",
        "license", "license_url", "homepage", "repository", "entrypoint", "bundle", "variants",
        "compatibility", "models", "assets",
    )  # fmt: skip


def test_models_are_always_present_and_empty_assets_left_out() -> None:
    data = plugin_yml()
    del data["models"], data["assets"]
    manifest = registry_manifest(data, bundle=None)
    assert manifest["models"] == []
    assert "assets" not in manifest


def test_repo_is_read_as_repository_when_repository_is_absent() -> None:
    data = plugin_yml()
    del data["repository"]
    data["repo"] = "https://example.org/repo"
    assert registry_manifest(data, bundle=None)["repository"] == "https://example.org/repo"


def test_schema_version_defaults_to_one() -> None:
    data = plugin_yml()
    del data["schema_version"]
    assert next(iter(registry_manifest(data, bundle=None).items())) == ("schema_version", 1)


def test_a_manifest_missing_what_the_server_needs_is_refused() -> None:
    data = plugin_yml()
    del data["entrypoint"]
    data["node_kind"] = None
    with pytest.raises(PackagingError) as caught:
        registry_manifest(data, bundle=None)
    assert caught.value.code == "registry-manifest-incomplete"
    assert "node_kind, entrypoint" in caught.value.message


def test_two_variants_for_one_accelerator_are_refused() -> None:
    with pytest.raises(PackagingError) as caught:
        registry_manifest(plugin_yml(), bundle=BUNDLE, variants=[CUDA, CUDA])
    assert caught.value.code == "registry-variant-duplicate"


def test_the_input_is_not_changed() -> None:
    data = plugin_yml()
    before = copy.deepcopy(data)
    manifest = registry_manifest(data, bundle=BUNDLE, variants=[CUDA])
    manifest["models"][0]["id"] = "changed"
    assert data == before


def test_manifest_json_is_indented_ascii_with_one_final_newline() -> None:
    data = {"id": "x", "description": "für", "models": []}
    text = manifest_json_bytes(data)
    assert text == b'{\n  "id": "x",\n  "description": "f\\u00fcr",\n  "models": []\n}\n'
    assert json.loads(text) == data


# --------------------------------------------------------------------------------------------
# Names, URLs, tags


@pytest.mark.parametrize(
    ("accelerator", "expected"),
    [
        (None, "whisper-0.3.0-bundle.tar.zst"),
        ("cpu", "whisper-0.3.0-bundle.tar.zst"),
        ("cuda", "whisper-0.3.0-cuda-bundle.tar.zst"),
    ],
)
def test_bundle_file_names(accelerator: str | None, expected: str) -> None:
    assert bundle_file_name("whisper", "0.3.0", accelerator) == expected


@pytest.mark.parametrize(
    ("plugin_id", "version", "accelerator"),
    [("../x", "1.0.0", None), ("a/b", "1.0.0", None), ("x", "1.0", None), ("x", "1.0.0", "CUDA")],
)
def test_bundle_file_name_refuses_unsafe_parts(
    plugin_id: str, version: str, accelerator: str | None
) -> None:
    with pytest.raises(PackagingError):
        bundle_file_name(plugin_id, version, accelerator)


def test_bundle_url_fills_the_template() -> None:
    url = bundle_url(TEMPLATE, "whisper", "0.3.0", "whisper-0.3.0-bundle.tar.zst")
    assert url == f"{RELEASE}/whisper-0.3.0-bundle.tar.zst"
    assert bundle_url(TEMPLATE + "/", "whisper", "0.3.0", "f") == f"{RELEASE}/f"
    assert bundle_url("https://x.org/{{raw}}/{version}", "p", "1.0.0", "f") == (
        "https://x.org/{raw}/1.0.0/f"
    )


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("https://x.org/{owner}/{plugin_id}", "{owner}"),
        ("https://x.org/{}", "{}"),
        ("https://x.org/{version!r}", "{version}"),
        ("https://x.org/{version:>9}", "{version}"),
        ("https://x.org/{version", "not a valid template"),
    ],
)
def test_bundle_url_refuses_unknown_placeholders_by_name(template: str, named: str) -> None:
    with pytest.raises(PackagingError) as caught:
        bundle_url(template, "whisper", "0.3.0", "f")
    assert caught.value.code == "bundle-url-template-invalid"
    assert named in caught.value.message


# --------------------------------------------------------------------------------------------
# SemVer


SPEC_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "2.0.0",
    "2.1.0",
    "2.1.1",
]


def test_the_spec_examples_are_in_order() -> None:
    for lower, higher in itertools.pairwise(SPEC_ORDER):
        assert compare_versions(lower, higher) == -1, (lower, higher)
        assert compare_versions(higher, lower) == 1, (lower, higher)
    shuffled = SPEC_ORDER[::2] + SPEC_ORDER[1::2]
    assert sort_versions_descending(reversed(shuffled)) == SPEC_ORDER[::-1]


def test_build_metadata_is_ignored_for_precedence() -> None:
    assert compare_versions("1.0.0+build.1", "1.0.0+build.2") == 0
    assert compare_versions("1.0.0-rc.1+x", "1.0.0-rc.1") == 0
    # Equal precedence, but the order still does not depend on the input order.
    assert sort_versions_descending(["1.0.0+a", "1.0.0+b"]) == sort_versions_descending(
        ["1.0.0+b", "1.0.0+a"]
    )


@pytest.mark.parametrize(
    "text",
    ["1.0", "1.0.0.0", "01.0.0", "1.00.0", "1.0.0-01", "1.0.0-", "1.0.0+", "v1.0.0", "1.0.0-a..b",
     "1.0.0 ", "1.0.0-ä", "1.0.0+b+c", "", "0.10"],
)  # fmt: skip
def test_what_is_not_semver_is_refused(text: str) -> None:
    with pytest.raises(PackagingError) as caught:
        parse_semver(text)
    assert caught.value.code == "version-not-semver"


def test_latest_prefers_stable_then_highest_pre_release() -> None:
    assert latest_version(["0.3.0", "0.4.0-rc.1", "0.2.0"]) == "0.3.0"
    assert latest_version(["1.0.0-beta.2", "1.0.0-beta.11"]) == "1.0.0-beta.11"
    assert latest_version([]) is None


def spec_compare(a: str, b: str) -> int:
    """SemVer 2.0 item 11, written out step by step as the reference for the property tests."""

    def split(version: str) -> tuple[list[int], list[str]]:
        core, _, pre = version.split("+")[0].partition("-")
        return [int(n) for n in core.split(".")], pre.split(".") if pre else []

    (core_a, pre_a), (core_b, pre_b) = split(a), split(b)
    if core_a != core_b:
        return -1 if core_a < core_b else 1
    if not pre_a or not pre_b:
        return (not pre_a) - (not pre_b)
    for x, y in zip(pre_a, pre_b, strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1
        return -1 if x < y else 1
    return (len(pre_a) > len(pre_b)) - (len(pre_a) < len(pre_b))


numbers = st.integers(min_value=0, max_value=12).map(str) | st.integers(0, 10**12).map(str)
words = st.sampled_from(["alpha", "beta", "rc", "a", "B", "x-y", "-", "0a", "1-", "zz"]) | (
    st.from_regex(r"[0-9A-Za-z-]{1,6}", fullmatch=True).filter(lambda s: not s.isdigit())
)
identifiers = st.lists(numbers | words, min_size=1, max_size=4).map(".".join)
builds = st.from_regex(r"[0-9A-Za-z-]{1,5}(\.[0-9A-Za-z-]{1,5}){0,2}", fullmatch=True)


@st.composite
def versions(draw: st.DrawFn) -> str:
    core = ".".join(draw(st.integers(0, 3).map(str)) for _ in range(3))
    pre = draw(st.none() | identifiers)
    build = draw(st.none() | builds)
    return core + (f"-{pre}" if pre else "") + (f"+{build}" if build else "")


@given(versions())
def test_parsing_round_trips(version: str) -> None:
    assert str(parse_semver(version)) == version


@given(versions(), versions())
def test_comparison_follows_the_spec_and_is_antisymmetric(a: str, b: str) -> None:
    assert compare_versions(a, b) == spec_compare(a, b)
    assert compare_versions(a, b) == -compare_versions(b, a)
    assert compare_versions(a, a) == 0


@given(versions(), versions(), versions())
def test_comparison_is_transitive(a: str, b: str, c: str) -> None:
    for x, y, z in itertools.permutations((a, b, c)):
        if compare_versions(x, y) <= 0 and compare_versions(y, z) <= 0:
            assert compare_versions(x, z) <= 0, (x, y, z)


@given(st.lists(versions(), max_size=8))
def test_sorting_puts_the_highest_first(candidates: list[str]) -> None:
    ordered = sort_versions_descending(candidates)
    assert sorted(ordered) == sorted(candidates)
    assert all(compare_versions(x, y) >= 0 for x, y in itertools.pairwise(ordered))


@given(versions(), builds)
def test_build_metadata_never_changes_precedence(version: str, build: str) -> None:
    bare = version.split("+")[0]
    assert compare_versions(bare, f"{bare}+{build}") == 0


@given(st.lists(versions(), min_size=1, max_size=8))
def test_latest_is_the_highest_stable_else_the_highest(candidates: list[str]) -> None:
    latest = latest_version(candidates)
    assert latest in candidates
    stable = [v for v in candidates if not parse_semver(v).is_prerelease]
    pool = stable or candidates
    assert latest in pool
    assert all(compare_versions(latest, other) >= 0 for other in pool)


# --------------------------------------------------------------------------------------------
# Index


def published_manifests() -> list[dict[str, Any]]:
    def manifest(plugin_id: str, version: str, **fields: Any) -> dict[str, Any]:
        data = {"id": plugin_id, "version": version, "node_kind": plugin_id, "kind": "native",
                "entrypoint": f"lib{plugin_id}.so", **fields}  # fmt: skip
        return registry_manifest(data, bundle=None)

    return [
        manifest("whisper", "0.2.0", name="Whisper", description="Old text"),
        manifest("whisper", "0.4.0-rc.1", name="Whisper NG", description="Next"),
        manifest("kokoro", "1.0.0-beta.2", name="Kokoro TTS"),
        manifest("whisper", "0.3.0", name="Whisper", description="Speech to text"),
        manifest("kokoro", "1.0.0-beta.11", name="Kokoro TTS"),
    ]


def test_index_matches_the_golden_file(datadir: Path) -> None:
    previous = json.loads((datadir / "previous_index.json").read_text())
    index = build_index(
        published_manifests(), previous, registry_base_url=REGISTRY, today="2025-06-01"
    )
    assert manifest_json_bytes(index) == (datadir / "index.json").read_bytes()


def test_a_first_index_dates_every_version_today() -> None:
    index = build_index(published_manifests(), None, registry_base_url=REGISTRY, today="2025-06-01")
    dates = {v["published_at"] for p in index["plugins"] for v in p["versions"]}
    assert dates == {"2025-06-01"}


def test_index_refuses_a_version_listed_twice() -> None:
    entries = published_manifests()
    entries.append(entries[0])
    with pytest.raises(PackagingError) as caught:
        build_index(entries, None, registry_base_url=REGISTRY, today="2025-06-01")
    assert caught.value.code == "registry-version-duplicate"


@pytest.mark.parametrize("today", ["2025-6-1", "2025-02-30", "20250601", "today"])
def test_index_refuses_a_date_that_is_not_yyyy_mm_dd(today: str) -> None:
    with pytest.raises(PackagingError) as caught:
        build_index(published_manifests(), None, registry_base_url=REGISTRY, today=today)
    assert caught.value.code == "registry-date-invalid"


def test_index_refuses_a_previous_index_of_another_shape() -> None:
    with pytest.raises(PackagingError) as caught:
        build_index(
            published_manifests(),
            {"plugins": [{"id": "whisper", "versions": [{"version": "0.3.0"}]}]},
            registry_base_url=REGISTRY,
            today="2025-06-01",
        )
    assert caught.value.code == "registry-index-invalid"


# --------------------------------------------------------------------------------------------
# Append-only


def published() -> dict[str, Any]:
    return registry_manifest(plugin_yml(), bundle=BUNDLE, variants=[CUDA])


def test_an_unchanged_manifest_may_be_published_again() -> None:
    assert compare_published(published(), published()) is None
    assert merge_published(published(), published()) == published()


def test_a_new_variant_may_be_added_to_a_published_version() -> None:
    new = registry_manifest(plugin_yml(), bundle=BUNDLE, variants=[CUDA, VULKAN])
    assert compare_published(published(), new) is None
    merged = merge_published(published(), new)
    assert [v["accelerator"] for v in merged["variants"]] == ["cuda", "vulkan"]
    assert list(merged) == [key for key in MANIFEST_KEYS if key in merged]


def test_a_run_that_did_not_rebuild_keeps_the_published_bundle_and_variants() -> None:
    new = registry_manifest(plugin_yml(), bundle=None, variants=[VULKAN])
    assert compare_published(published(), new) is None
    merged = merge_published(published(), new)
    assert merged["bundle"] == BUNDLE.as_dict()
    assert [v["accelerator"] for v in merged["variants"]] == ["cuda", "vulkan"]


def test_a_changed_description_needs_a_version_bump_and_shows_a_diff() -> None:
    data = plugin_yml()
    data["description"] = "Speech to text, now faster"
    new = registry_manifest(data, bundle=BUNDLE, variants=[CUDA])
    diff = compare_published(
        published(),
        new,
        published_label="registry/plugins/whisper/0.3.0/manifest.json",
        new_label="plugins/native/whisper/plugin.yml",
    )
    assert diff is not None
    lines = diff.splitlines()
    assert lines[0] == "--- registry/plugins/whisper/0.3.0/manifest.json"
    assert lines[1] == "+++ plugins/native/whisper/plugin.yml"
    assert '-  "description": "Speech to text (Sprache \\u2192 Text) with whisper.cpp",' in lines
    assert '+  "description": "Speech to text, now faster",' in lines
    assert sum(line[:1] in "+-" for line in lines[2:]) == 2
    with pytest.raises(PackagingError) as caught:
        merge_published(published(), new)
    assert caught.value.code == "registry-published-changed"
    assert "bump the version" in (caught.value.hint or "")


def test_a_rebuilt_variant_with_another_sha256_is_a_change() -> None:
    rebuilt = Variant("cuda", CUDA.url, "d" * 64, CUDA.size_bytes)
    new = registry_manifest(plugin_yml(), bundle=BUNDLE, variants=[rebuilt])
    diff = compare_published(published(), new)
    assert diff is not None and '+      "sha256": "' + "d" * 64 + '",' in diff


def test_a_rebuilt_bundle_with_another_sha256_is_a_change() -> None:
    other = BundleRef(BUNDLE.url, "e" * 64, BUNDLE.size_bytes)
    new = registry_manifest(plugin_yml(), bundle=other, variants=[CUDA])
    assert compare_published(published(), new) is not None


def test_dropping_a_key_is_a_change() -> None:
    data = plugin_yml()
    data["license"] = None
    new = registry_manifest(data, bundle=BUNDLE, variants=[CUDA])
    diff = compare_published(published(), new)
    assert diff is not None and '-  "license": "MIT",' in diff.splitlines()
