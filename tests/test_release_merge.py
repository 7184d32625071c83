"""The distributed release end to end: a CPU pass and a CUDA pass on different machines (here:
different copies of a StreamKit-shaped tree), one merge, and the registry StreamKit's own
build_registry.py would have written from the same inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli import run_in_process
from fixturelib import NativeLibraries
from releaselib import (
    cli_key_pair,
    cli_verifies,
    edit_source,
    manifest_of,
    snapshot,
    streamkit_tree,
    tar_file,
)

DATE = "2025-03-04"
LATER = "2025-06-07"
TEMPLATE = "https://example.invalid/releases/plugin-{plugin_id}-v{version}"
REGISTRY_URL = "https://example.invalid/registry"


def package(root: Path, *args: str, date: str = LATER) -> tuple[int, str]:
    return run_in_process(
        "package-plugins-native",
        "--root",
        str(root),
        "--published-at",
        date,
        "--bundle-url-template",
        TEMPLATE,
        "--registry-base-url",
        REGISTRY_URL,
        *args,
        cwd=root,
    )


def merge(root: Path, *args: str) -> tuple[int, str]:
    return run_in_process(
        "merge-plugin-registries",
        "--root",
        str(root),
        "--registry-base-url",
        REGISTRY_URL,
        "--published-at",
        LATER,
        *args,
        cwd=root,
    )


class Release:
    """A published registry (whisper 0.3.0, helsinki 0.2.0, parakeet 0.1.0, CPU only), then
    whisper bumped to 0.4.0 in the sources; the CPU and CUDA runners each have a checkout."""

    def __init__(self, tmp_path: Path, native_libs: NativeLibraries) -> None:
        self.tmp = tmp_path
        self.secret, self.public = cli_key_pair(tmp_path / "keys")
        self.cpu = streamkit_tree(tmp_path / "cpu" / "streamkit", native_libs)
        code, out = package(
            self.cpu, "--signing-key", str(self.secret), "--public-key", str(self.public), date=DATE
        )
        assert code == 0, out
        self.published = tmp_path / "published"
        shutil.copytree(self.cpu / "dist" / "registry", self.published)
        shutil.rmtree(self.cpu / "dist")
        edit_source(self.cpu / "plugins" / "native" / "whisper" / "plugin.yml", version="0.4.0")
        # The CUDA runner: the same sources; its build of whisper (no artifact_cuda) lands at
        # `artifact`, and helsinki's at artifact_cuda. Other bytes than the CPU runner's.
        self.cuda = tmp_path / "cuda" / "streamkit"
        shutil.copytree(self.cpu, self.cuda)
        shutil.copyfile(
            native_libs.good_c_other, self.cuda / "target/plugins/release/libwhisper.so"
        )
        shutil.copyfile(
            native_libs.good_c_other, self.cuda / "target/plugins-cuda/release/libhelsinki.so"
        )
        self.dist = tmp_path / "dist"

    def key(self, signed: bool) -> tuple[str, ...]:
        return ("--signing-key", str(self.secret)) if signed else ()

    def cpu_pass(self, *args: str, signed: bool = True) -> Path:
        out = self.tmp / "dist-cpu"
        code, text = package(
            self.cpu,
            "--existing-registry",
            str(self.published),
            *self.key(signed),
            "--out",
            str(out),
            *args,
        )
        assert code == 0, text
        return out

    def cuda_pass(self, *args: str, signed: bool = True) -> Path:
        out = self.tmp / "dist-cuda"
        code, text = package(
            self.cuda,
            "--existing-registry",
            str(self.published),
            "--variants-only",
            "--accelerator",
            "cuda",
            *self.key(signed),
            "--out",
            str(out),
            *args,
        )
        assert code == 0, text
        return out


@pytest.fixture
def release(tmp_path: Path, native_libs: NativeLibraries) -> Release:
    return Release(tmp_path, native_libs)


def test_a_cpu_pass_and_a_cuda_pass_merge_into_one_signed_append_only_registry(
    release: Release,
) -> None:
    cpu = release.cpu_pass()
    cuda = release.cuda_pass()
    cuda_registry = cuda / "registry"
    # The CUDA pass holds the variants only: no CPU bundle, and a bundle-less, unsigned manifest
    # for the version not published yet.
    assert sorted(p.name for p in (cuda / "bundles").glob("*.tar.zst")) == [
        "helsinki-0.2.0-cuda-bundle.tar.zst",
        "whisper-0.4.0-cuda-bundle.tar.zst",
    ]
    assert "bundle" not in manifest_of(cuda_registry, "whisper", "0.4.0")
    assert not (cuda_registry / "plugins/whisper/0.4.0/manifest.minisig").exists()

    code, out = merge(
        release.tmp,
        "--input",
        str(cpu),
        "--input",
        str(cuda),
        "--out",
        str(release.dist),
        "--signing-key",
        str(release.secret),
    )
    assert code == 0, out
    registry = release.dist / "registry"
    bundles = release.dist / "bundles"
    assert sorted(p.name for p in bundles.iterdir()) == [
        "SHA256SUMS",
        "helsinki-0.2.0-cuda-bundle.tar.zst",
        "whisper-0.4.0-bundle.tar.zst",
        "whisper-0.4.0-cuda-bundle.tar.zst",
    ]
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=bundles, capture_output=True, check=False
    )
    assert check.returncode == 0, check.stdout
    # The CPU bundle from the CPU runner, the variant from the CUDA runner.
    whisper = manifest_of(registry, "whisper", "0.4.0")
    assert whisper["bundle"] == manifest_of(cpu / "registry", "whisper", "0.4.0")["bundle"]
    assert whisper["variants"] == manifest_of(cuda_registry, "whisper", "0.4.0")["variants"]
    assert (
        tar_file(bundles / "whisper-0.4.0-cuda-bundle.tar.zst", "libwhisper.so")
        == (release.cuda / "target/plugins/release/libwhisper.so").read_bytes()
    )
    assert "written whisper   0.4.0  variants: cuda  (signed)" in out
    assert "kept    parakeet  0.1.0  cpu only  (signature kept, from " in out
    # Published versions: nothing changed but variants, signatures kept byte for byte.
    for plugin_id, version in (("whisper", "0.3.0"), ("parakeet", "0.1.0")):
        files = registry / "plugins" / plugin_id / version
        published = release.published / "plugins" / plugin_id / version
        assert (files / "manifest.json").read_bytes() == (published / "manifest.json").read_bytes()
        assert (files / "manifest.minisig").read_bytes() == (
            published / "manifest.minisig"
        ).read_bytes()
    helsinki = manifest_of(registry, "helsinki", "0.2.0")
    assert {k: v for k, v in helsinki.items() if k != "variants"} == manifest_of(
        release.published, "helsinki", "0.2.0"
    )
    assert [v["accelerator"] for v in helsinki["variants"]] == ["cuda"]
    # helsinki's grown manifest is the CUDA pass's, kept with the signature made there.
    assert (registry / "plugins/helsinki/0.2.0/manifest.minisig").read_bytes() == (
        cuda_registry / "plugins/helsinki/0.2.0/manifest.minisig"
    ).read_bytes()
    for manifest in registry.glob("plugins/*/*/manifest.json"):
        assert cli_verifies(release.public, manifest).returncode == 0, manifest
    index = json.loads((registry / "index.json").read_text())
    dates = {
        (p["id"], v["version"]): v["published_at"] for p in index["plugins"] for v in p["versions"]
    }
    assert dates[("whisper", "0.3.0")] == DATE and dates[("whisper", "0.4.0")] == LATER
    assert (registry / "streamkit.pub").read_bytes() == release.public.read_bytes()
    assert (release.dist / "official-plugins.json").read_bytes() == (
        cpu / "official-plugins.json"
    ).read_bytes()
    # The merged release passes the bundle gate against its own registry.
    code, out = run_in_process(
        "verify-plugin-bundles",
        "--root",
        str(release.tmp),
        "--bundles",
        str(bundles),
        "--registry",
        str(registry),
    )
    assert code == 0, out


def test_only_the_merge_needs_the_secret_key(release: Release) -> None:
    cpu, cuda = release.cpu_pass(signed=False), release.cuda_pass(signed=False)
    args = ("--input", str(cpu), "--input", str(cuda), "--out", str(release.dist))
    code, out = merge(release.tmp, *args)
    assert code == 0, out
    assert "warning[registry-unsigned]" in out and "NOT signed" in out
    code, out = merge(release.tmp, *args, "--signing-key", str(release.secret))
    assert code == 0, out
    registry = release.dist / "registry"
    assert "written helsinki  0.2.0  variants: cuda  (signed)" in out
    assert "written whisper   0.4.0  variants: cuda  (signed)" in out
    assert "kept    whisper   0.3.0  cpu only" in out
    for manifest in registry.glob("plugins/*/*/manifest.json"):
        assert cli_verifies(release.public, manifest).returncode == 0, manifest


def test_passes_built_from_different_sources_do_not_merge(release: Release) -> None:
    cpu = release.cpu_pass()
    edit_source(release.cuda / "plugins" / "native" / "whisper" / "plugin.yml", license="MIT")
    cuda = release.cuda_pass()
    code, out = merge(
        release.tmp, "--input", str(cpu), "--input", str(cuda), "--out", str(release.dist)
    )
    assert code == 1, out
    assert "error[merge-inputs-disagree]" in out and "whisper 0.4.0" in out
    assert '-  "license": "MPL-2.0",' in out and '+  "license": "MIT",' in out
    assert "nothing was written" in out and not release.dist.exists()


def test_a_variant_pass_alone_cannot_publish_a_new_version(release: Release) -> None:
    cuda = release.cuda_pass()
    code, out = merge(release.tmp, "--input", str(cuda), "--out", str(release.dist))
    assert code == 1, out
    assert "error[merge-cpu-bundle-missing]" in out
    assert "no input holds the CPU bundle of whisper 0.4.0" in out


def test_merging_twice_gives_the_same_output_and_a_tampered_signature_is_refused(
    release: Release,
) -> None:
    cpu, cuda = release.cpu_pass(), release.cuda_pass()
    args = ("--input", str(cpu), "--input", str(cuda), "--out", str(release.dist))
    assert merge(release.tmp, *args, "--signing-key", str(release.secret))[0] == 0
    first = snapshot(release.dist / "registry")
    assert merge(release.tmp, *args, "--signing-key", str(release.secret))[0] == 0
    second = snapshot(release.dist / "registry")
    # The same bytes, signatures aside.
    assert {k: v for k, v in first.items() if "minisig" not in k} == {
        k: v for k, v in second.items() if "minisig" not in k
    }
    signature = cpu / "registry/plugins/parakeet/0.1.0/manifest.minisig"
    lines = signature.read_bytes().split(b"\n")
    lines[1] = lines[1][:20] + (b"A" if lines[1][20:21] != b"A" else b"B") + lines[1][21:]
    signature.write_bytes(b"\n".join(lines))
    code, out = merge(release.tmp, *args, "--signing-key", str(release.secret))
    assert code == 1, out
    assert "parakeet" in out and "FAILED" in out


def test_merge_usage_errors_are_one_message(release: Release, tmp_path: Path) -> None:
    code, out = merge(release.tmp, "--out", str(release.dist))
    assert code == 2 and "no pass outputs to merge" in out
    code, out = merge(release.tmp, "--input", str(tmp_path / "nowhere"))
    assert code == 2 and "error[merge-input-invalid]" in out
    assert "Traceback" not in out


# --- the same registry as StreamKit's build_registry.py -----------------------------------------


def strip_none(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if value is not None}


def build_manifest_oracle(
    plugin: dict[str, Any], bundle: dict[str, Any] | None, variants: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """build_registry.py's manifest, from its observable output (and its tests' assertions):
    fields in this order, `repository` from `repo`, `models` defaulting to [], `assets` only
    when non-empty, `None`s dropped, `variants` right after `bundle` when non-empty."""
    manifest = strip_none(
        {
            "schema_version": 1,
            "id": plugin["id"],
            "name": plugin.get("name"),
            "version": plugin["version"],
            "node_kind": plugin["node_kind"],
            "kind": plugin["kind"],
            "description": plugin.get("description"),
            "license": plugin.get("license"),
            "license_url": plugin.get("license_url"),
            "homepage": plugin.get("homepage"),
            "repository": plugin.get("repo"),
            "entrypoint": plugin["entrypoint"],
            "bundle": bundle,
            "compatibility": plugin.get("compatibility"),
            "models": plugin.get("models", []),
            "assets": plugin.get("assets") or None,
        }
    )
    if variants:
        ordered: dict[str, Any] = {}
        for key, value in manifest.items():
            ordered[key] = value
            if key == "bundle":
                ordered["variants"] = variants
        manifest = ordered
    return manifest


def block(plugin: dict[str, Any], accelerator: str | None) -> dict[str, Any]:
    suffix = f"-{accelerator}" if accelerator else ""
    name = f"{plugin['id']}-{plugin['version']}{suffix}-bundle.tar.zst"
    base = TEMPLATE.format(plugin_id=plugin["id"], version=plugin["version"])
    out = {"url": f"{base}/{name}", "sha256": "*", "size_bytes": "*"}
    return {"accelerator": accelerator, **out} if accelerator else out


def build_registry_oracle(
    plugins: list[dict[str, Any]], existing: dict[tuple[str, str], dict[str, Any]], accelerator: str
) -> dict[tuple[str, str], dict[str, Any]]:
    """The manifests build_registry.py --accelerator ACCELERATOR writes with
    --existing-registry: published versions carried over; on the CPU pass new versions built;
    on another pass the variant appended to the manifests of the plugins that list it."""
    out = {key: masked(manifest) for key, manifest in existing.items()}
    for plugin in plugins:
        key = (plugin["id"], plugin["version"])
        if accelerator == "cpu":
            out.setdefault(key, build_manifest_oracle(plugin, block(plugin, None), None))
            continue
        if accelerator not in plugin.get("accelerators", ["cpu"]):
            continue
        variants = out[key].get("variants", [])
        if any(v["accelerator"] == accelerator for v in variants):
            continue
        out[key] = build_manifest_oracle(
            plugin, out[key]["bundle"], [*variants, block(plugin, accelerator)]
        )
    return out


def masked(value: Any) -> Any:
    """sha256 and size_bytes replaced: the only values the two builders may disagree on."""
    if isinstance(value, dict):
        return {
            k: "*" if k in ("sha256", "size_bytes") else masked(item) for k, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def registry_manifests(registry: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path.parent.parent.name, path.parent.name): json.loads(path.read_text())
        for path in registry.glob("plugins/*/*/manifest.json")
    }


def index_oracle(
    manifests: dict[tuple[str, str], dict[str, Any]],
    plugins: list[dict[str, Any]],
    dates: dict[tuple[str, str], str],
    today: str,
) -> dict[str, Any]:
    """build_registry.py's index.json: plugins by id, versions by SemVer highest first (plain
    x.y.z here), latest the highest stable, name and description from the plugin metadata."""
    metadata = {p["id"]: p for p in plugins}
    entries = []
    for plugin_id in sorted({key[0] for key in manifests}):
        versions = sorted(
            (v for (i, v) in manifests if i == plugin_id),
            key=lambda v: tuple(int(n) for n in v.split(".")),
            reverse=True,
        )
        meta = metadata.get(plugin_id) or manifests[(plugin_id, versions[0])]
        entries.append(
            {
                "id": plugin_id,
                "name": meta.get("name", plugin_id),
                "description": meta.get("description"),
                "latest": versions[0],
                "versions": [
                    {
                        "version": v,
                        "manifest_url": f"{REGISTRY_URL}/plugins/{plugin_id}/{v}/manifest.json",
                        "signature_url": f"{REGISTRY_URL}/plugins/{plugin_id}/{v}/manifest.minisig",
                        "published_at": dates.get((plugin_id, v), today),
                    }
                    for v in versions
                ],
            }
        )
    return {"schema_version": 1, "plugins": entries}


def test_the_registry_is_the_one_build_registry_py_writes_cpu_and_cuda_passes(
    release: Release,
) -> None:
    cpu = release.cpu_pass()
    # build_registry.py reads the plugins from official-plugins.json, which the tool writes as
    # generate_official_plugins.py does (test_release_flow checks that).
    plugins = json.loads((cpu / "official-plugins.json").read_text())["plugins"]
    published = registry_manifests(release.published)
    dates = dict.fromkeys(published, DATE)

    expected_cpu = build_registry_oracle(plugins, published, "cpu")
    cpu_manifests = registry_manifests(cpu / "registry")
    assert {k: masked(v) for k, v in cpu_manifests.items()} == expected_cpu
    for key, manifest in cpu_manifests.items():  # the same key order, not only the same keys
        assert list(manifest) == list(expected_cpu[key]), key
    assert json.loads((cpu / "registry/index.json").read_text()) == index_oracle(
        cpu_manifests, plugins, dates, LATER
    )

    # StreamKit's CUDA pass runs on the published CPU pass; so does ours, and so does the merge
    # of the two passes run side by side: all three give its registry.
    expected_cuda = build_registry_oracle(plugins, cpu_manifests, "cuda")
    sequential = release.tmp / "dist-cuda-after-cpu"
    code, out = package(
        release.cuda,
        "--existing-registry",
        str(cpu / "registry"),
        "--variants-only",
        "--accelerator",
        "cuda",
        "--signing-key",
        str(release.secret),
        "--out",
        str(sequential),
    )
    assert code == 0, out
    cuda = release.cuda_pass()
    code, out = merge(
        release.tmp,
        "--input",
        str(cpu),
        "--input",
        str(cuda),
        "--out",
        str(release.dist),
        "--signing-key",
        str(release.secret),
    )
    assert code == 0, out
    for registry in (sequential / "registry", release.dist / "registry"):
        manifests = registry_manifests(registry)
        assert {k: masked(v) for k, v in manifests.items()} == expected_cuda, registry
        for key, manifest in manifests.items():
            assert list(manifest) == list(expected_cuda[key]), (registry, key)
        assert json.loads((registry / "index.json").read_text()) == index_oracle(
            manifests, plugins, dates, LATER
        )
