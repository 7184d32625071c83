"""verify-plugin-bundles on real bundles (made by package-plugins-native from compiled fixtures)
and on hand-made hostile archives, called as users call it."""

from __future__ import annotations

import json
import shutil
import tarfile
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
from cli import run_in_process
from fixturelib import (
    DEPENDENCY_C_SOURCE,
    GOOD_C_KIND,
    MISSING_DEPENDENCY_NAME,
    VENDORED_DEPENDENCY_NAME,
    NativeLibraries,
    build_c_library,
    c_string_literal,
    compiled_fixture,
)
from releaselib import (
    cli_key_pair,
    file_info,
    hand_made_tar,
    install_library,
    no_extras,
    sign_file,
    write_source,
    zst,
)

from plugin_packaging.release.archive import (
    ArchiveLimits,
    ArchiveMember,
    extract_bundle,
    write_bundle,
)

FAKE_CUDART = "libcudart.so.12"


@pytest.fixture(scope="module")
@compiled_fixture
def cuda_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin linked against a fake CUDA runtime (`libcudart.so.12`, beside it), RUNPATH $ORIGIN."""
    directory = tmp_path_factory.mktemp("cuda_plugin")
    runtime = build_c_library(
        directory, FAKE_CUDART, source=DEPENDENCY_C_SOURCE, flags=[f"-Wl,-soname,{FAKE_CUDART}"]
    )
    return build_c_library(
        directory,
        "libcuda_plugin.so",
        defines={"PLUGIN_KIND": c_string_literal(GOOD_C_KIND), "PLUGIN_USE_DEPENDENCY": None},
        flags=["-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"],
        link_inputs=[runtime],
    )


def packaged(
    tmp_path: Path,
    library: Path,
    *,
    extras: dict[str, Path] | None = None,
    args: tuple[str, ...] = (),
    cuda: Path | None = None,
    vendor: bool = True,
) -> Path:
    """Package `library` as plugin `demo` 1.0.0 (with `extras`: bundle name -> file); return <out>.

    `vendor=False` packages with --no-vendor, as StreamKit's builder did for plugins it did not
    know: the way to get the unportable bundles the portability rules are there to refuse.
    """
    root = tmp_path / "tree"
    root.mkdir()
    no_extras(root)
    extra_files = []
    for dest, source in (extras or {}).items():
        copy = root / "third_party" / dest
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(source, copy)
        extra_files.append({"source": f"third_party/{dest}", "dest": dest})
    more: dict = {"extra_files": extra_files} if extra_files else {}
    if cuda is not None:
        more["artifact_cuda"] = "target/cuda/libdemo.so"
        (root / "target" / "cuda").mkdir(parents=True)
        shutil.copyfile(cuda, root / "target" / "cuda" / "libdemo.so")
    write_source(root, "demo", GOOD_C_KIND, "demo", "1.0.0", **more)
    install_library(root, library, "demo")
    if not vendor:
        args = (*args, "--no-vendor")
    code, out = run_in_process("package-plugins-native", "--root", str(root), *args)
    assert code == 0, out
    return root / "dist"


def verify(*args: str) -> tuple[int, str]:
    return run_in_process("verify-plugin-bundles", *args)


def verify_json(*args: str) -> tuple[int, dict]:
    code, out = verify(*args, "--format", "json")
    document = json.loads(out)
    schema = json.loads(
        files("plugin_packaging.schemas").joinpath("bundle-report.v1.json").read_text()
    )
    jsonschema.validate(document, schema)
    return code, document


def codes(document: dict) -> list[str]:
    return [finding["code"] for finding in document["findings"]]


# --- a good release --------------------------------------------------------------------------------


def test_a_packaged_release_verifies_with_its_registry_and_key(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    secret, public = cli_key_pair(tmp_path / "keys")
    dist = packaged(
        tmp_path,
        native_libs.vendored_dep,
        extras={
            VENDORED_DEPENDENCY_NAME: native_libs.vendored_dep.parent / VENDORED_DEPENDENCY_NAME
        },
        args=("--signing-key", str(secret)),
    )
    code, out = verify(
        "--bundles",
        str(dist / "bundles"),
        "--registry",
        str(dist / "registry"),
        "--public-key",
        str(public),
    )
    assert code == 0, out
    assert "demo-1.0.0-bundle.tar.zst  (demo 1.0.0, cpu," in out
    assert out.splitlines()[-1] == "0 errors, 0 warnings, 0 info in 1 bundle: verification passed."
    code, document = verify_json(
        "--bundles", str(dist / "bundles"), "--registry", str(dist / "registry")
    )
    assert code == 0 and document["findings"] == []  # the registry's own streamkit.pub is used
    assert document["bundles"][0]["members"] == [
        "libdemo.so",
        VENDORED_DEPENDENCY_NAME,
        "manifest.json",
        "plugin.yml",
    ]
    assert document["public_key"].endswith("streamkit.pub")


def test_without_a_key_signatures_are_reported_unchecked(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    dist = packaged(tmp_path, native_libs.good_c)
    code, document = verify_json(
        "--bundles", str(dist / "bundles"), "--registry", str(dist / "registry")
    )
    assert code == 0
    assert codes(document) == ["registry-signature-unchecked"]


# --- hostile archives -----------------------------------------------------------------------------


def ok(name: str = "plugin.yml", data: bytes = b"id: demo\n") -> tuple[tarfile.TarInfo, bytes]:
    return file_info(name, len(data)), data


def hostile(tmp_path: Path, tar_bytes: bytes) -> Path:
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    (bundles / "demo-1.0.0-bundle.tar.zst").write_bytes(zst(tar_bytes))
    return bundles


@pytest.mark.parametrize(
    ("member", "rule", "key"),
    [
        (ok("/etc/cron.d/evil", b"x"), "bundle-unsafe-member", "archive-absolute-path"),
        (ok("../evil.so", b"x"), "bundle-unsafe-member", "archive-parent-path"),
        (ok("lib/../../evil.so", b"x"), "bundle-unsafe-member", "archive-parent-path"),
        (
            (file_info("libdemo.so", 0, type=tarfile.SYMTYPE, linkname="/lib/libc.so.6"), None),
            "bundle-unsafe-member",
            "archive-link",
        ),
        (
            (file_info("libdemo.so", 0, type=tarfile.LNKTYPE, linkname="plugin.yml"), None),
            "bundle-unsafe-member",
            "archive-link",
        ),
        (
            (file_info("null", 0, type=tarfile.CHRTYPE, devmajor=1, devminor=3), None),
            "bundle-unsafe-member",
            "archive-special-file",
        ),
        (
            (file_info("fifo", 0, type=tarfile.FIFOTYPE), None),
            "bundle-unsafe-member",
            "archive-special-file",
        ),
        (ok("plugin.yml", b"id: other\n"), "bundle-unsafe-member", "archive-duplicate-member"),
        (ok("./plugin.yml", b"id: other\n"), "bundle-unsafe-member", "archive-duplicate-member"),
        # A header that promises 5 GiB: refused before a byte of it is read.
        ((file_info("bomb.bin", 5 << 30), b""), "bundle-too-large", "archive-too-large"),
    ],
)
def test_every_unsafe_member_is_refused_as_the_installer_would(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], rule: str, key: str
) -> None:
    bundles = hostile(tmp_path, hand_made_tar(ok(), member))
    code, document = verify_json("--bundles", str(bundles))
    assert code == 1
    finding = document["findings"][0]
    assert (finding["code"], finding["key"], finding["severity"]) == (rule, key, "error")
    assert finding["bundle"] == "demo-1.0.0-bundle.tar.zst"
    assert document["bundles"][0]["members"] == []
    assert len(document["findings"]) == 1  # nothing else is judged in a refused archive
    assert not list(tmp_path.glob("**/*.partial"))


def test_a_tar_bomb_of_many_members_is_refused(tmp_path: Path) -> None:
    members = [ok(f"f{i:05}.txt", b"") for i in range(10_001)]
    code, document = verify_json(
        "--bundles", str(hostile(tmp_path, hand_made_tar(ok("plugin.yml"), *members)))
    )
    assert code == 1
    assert (document["findings"][0]["code"], document["findings"][0]["key"]) == (
        "bundle-too-large",
        "archive-too-many-members",
    )


def test_a_zero_filled_bomb_is_stopped_by_the_configured_unpacked_size(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "invoke.yaml").write_text("plugins:\n  bundle_max_unpacked_bytes: 1048576\n")
    bundles = hostile(tmp_path, hand_made_tar(ok(), ok("zeros.bin", bytes(2 << 20))))
    code, out = verify("--root", str(root), "--bundles", str(bundles))
    assert code == 1
    assert "error[bundle-too-large]" in out and "exceed 1048576 bytes" in out


def test_a_truncated_zstd_frame_is_corrupt(tmp_path: Path, native_libs: NativeLibraries) -> None:
    dist = packaged(tmp_path, native_libs.good_c)
    archive = dist / "bundles" / "demo-1.0.0-bundle.tar.zst"
    archive.write_bytes(archive.read_bytes()[:-4])  # only the frame checksum is cut
    code, out = verify("--bundles", str(dist / "bundles"))
    assert code == 1
    assert "error[bundle-corrupt]" in out and "truncated or corrupt" in out
    # SHA256SUMS, written with the release, no longer matches either.
    assert "error[bundle-checksum-list-mismatch]" in out


def test_a_bundle_without_its_entry_library_is_refused(tmp_path: Path) -> None:
    manifest = json.dumps(
        {
            "schema_version": 1,
            "id": "demo",
            "version": "1.0.0",
            "node_kind": "demo",
            "kind": "native",
            "entrypoint": "libdemo.so",
            "models": [],
        }
    ).encode()
    plugin_yml = (
        b"id: demo\nversion: 1.0.0\nnode_kind: demo\nkind: native\nentrypoint: libdemo.so\n"
    )
    bundles = hostile(
        tmp_path, hand_made_tar(ok("plugin.yml", plugin_yml), ok("manifest.json", manifest))
    )
    code, out = verify("--bundles", str(bundles))
    assert code == 1
    assert "error[bundle-entrypoint-missing]" in out and "'libdemo.so' is not in the bundle" in out


# --- against the registry -------------------------------------------------------------------------


def test_a_bundle_that_is_not_the_published_one_fails_its_sha256(
    tmp_path: Path, native_libs: NativeLibraries, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = packaged(tmp_path, native_libs.good_c)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the same content, other bytes
    tree = tmp_path / "tree"
    run_in_process("package-plugins-native", "--root", str(tree), "--out", "rebuilt", cwd=tree)
    name = "demo-1.0.0-bundle.tar.zst"
    shutil.copyfile(tmp_path / "tree" / "rebuilt" / "bundles" / name, dist / "bundles" / name)
    code, document = verify_json(
        "--bundles", str(dist / "bundles"), "--registry", str(dist / "registry")
    )
    assert code == 1
    mismatch = next(f for f in document["findings"] if f["code"] == "bundle-checksum-mismatch")
    assert (
        mismatch["key"] == "sha256" and "the installer refuses the download" in mismatch["message"]
    )
    assert "bundle-checksum-list-mismatch" in codes(document)


@pytest.mark.parametrize("fault", ["other key", "changed manifest", "no signature"])
def test_a_bad_signature_fails_the_registry_manifest(
    tmp_path: Path, native_libs: NativeLibraries, fault: str
) -> None:
    secret, public = cli_key_pair(tmp_path / "keys")
    dist = packaged(tmp_path, native_libs.good_c, args=("--signing-key", str(secret)))
    manifest = dist / "registry" / "plugins" / "demo" / "1.0.0" / "manifest.json"
    if fault == "other key":
        other_secret, _ = cli_key_pair(tmp_path / "other", "other")
        sign_file(
            other_secret, manifest, signature_path=manifest.with_name("manifest.minisig"), env={}
        )
        expected = "signature-wrong-key"
    elif fault == "changed manifest":
        manifest.write_text(manifest.read_text().replace('"name": "Demo"', '"name": "Demo!"'))
        expected = "signature-mismatch"
    else:
        manifest.with_name("manifest.minisig").unlink()
        expected = "signature-missing"
    code, document = verify_json(
        "--bundles",
        str(dist / "bundles"),
        "--registry",
        str(dist / "registry"),
        "--public-key",
        str(public),
    )
    assert code == 1
    signature = next(f for f in document["findings"] if f["code"] == "registry-signature-invalid")
    assert signature["key"] == expected


def test_a_bundle_missing_from_the_registry_or_its_index_is_an_error(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    dist = packaged(tmp_path, native_libs.good_c)
    index = dist / "registry" / "index.json"
    index.write_text(json.dumps({"schema_version": 1, "plugins": []}))
    code, document = verify_json(
        "--bundles", str(dist / "bundles"), "--registry", str(dist / "registry")
    )
    assert code == 1 and "registry-index-missing-version" in codes(document)
    shutil.rmtree(dist / "registry" / "plugins" / "demo")
    code, document = verify_json(
        "--bundles", str(dist / "bundles"), "--registry", str(dist / "registry")
    )
    assert code == 1 and "bundle-not-in-registry" in codes(document)


def repacked(
    archive: Path, scratch: Path, swap: dict[str, Path] | None = None, **manifest_changes: object
) -> None:
    """Unpack a packaged bundle, change keys of its manifest.json or swap members for other files,
    and pack it again in place (package-plugins-native itself refuses to publish a broken library)."""
    unpacked = scratch / "unpacked"
    files = extract_bundle(archive, unpacked, ArchiveLimits())
    manifest = json.loads((unpacked / "manifest.json").read_text())
    manifest.update(manifest_changes)
    (unpacked / "manifest.json").write_text(json.dumps(manifest, indent=2))
    for name, source in (swap or {}).items():
        shutil.copyfile(source, unpacked / name)
    write_bundle(
        archive,
        [ArchiveMember(f.relative_to(unpacked).as_posix(), source=f) for f in files],
        mtime=0,
    )


def test_manifests_that_disagree_inside_or_with_the_registry_are_errors(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    dist = packaged(tmp_path, native_libs.good_c)
    repacked(dist / "bundles" / "demo-1.0.0-bundle.tar.zst", tmp_path, node_kind="something_else")
    code, document = verify_json(
        "--bundles", str(dist / "bundles"), "--registry", str(dist / "registry")
    )
    assert code == 1
    found = {(f["code"], f.get("key")) for f in document["findings"]}
    assert {
        ("bundle-manifests-disagree", None),
        ("bundle-manifest-differs", None),
        ("bundle-checksum-mismatch", "sha256"),
        ("bundle-checksum-list-mismatch", None),
    } <= found
    disagree = next(f for f in document["findings"] if f["code"] == "bundle-manifests-disagree")
    assert "disagree on node_kind" in disagree["message"]


def test_a_renamed_bundle_is_named_back(tmp_path: Path, native_libs: NativeLibraries) -> None:
    dist = packaged(tmp_path, native_libs.good_c)
    (dist / "bundles" / "SHA256SUMS").unlink()
    (dist / "bundles" / "demo-1.0.0-bundle.tar.zst").rename(
        dist / "bundles" / "demo-latest.tar.zst"
    )
    code, out = verify("--bundles", str(dist / "bundles"))
    assert code == 0, out
    assert "warning[bundle-name-mismatch]" in out and "expected demo-1.0.0-bundle.tar.zst" in out


# --- portability ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "tag"), [("rpath_usr_local", "RPATH"), ("runpath_usr_local", "RUNPATH")]
)
def test_a_search_path_into_usr_local_lib_is_an_error(
    tmp_path: Path, native_libs: NativeLibraries, variant: str, tag: str
) -> None:
    dist = packaged(tmp_path, getattr(native_libs, variant), vendor=False)
    code, document = verify_json("--bundles", str(dist / "bundles"))
    assert code == 1
    assert codes(document) == ["bundle-search-path-absolute"]  # not twice, as the loader rule too
    finding = document["findings"][0]
    assert finding["key"] == tag and "`/usr/local/lib`" in finding["message"]
    assert finding["path"].endswith("demo-1.0.0-bundle.tar.zst/libdemo.so")


def test_a_dependency_that_is_not_vendored_is_an_error(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    dist = packaged(
        tmp_path, native_libs.vendored_dep, vendor=False
    )  # its dependency left out of the bundle
    code, document = verify_json("--bundles", str(dist / "bundles"))
    assert code == 1
    finding = next(f for f in document["findings"] if f["code"] == "bundle-dependency-not-vendored")
    assert finding["symbol"] == VENDORED_DEPENDENCY_NAME
    assert "not found on this machine either" in finding["message"]


def test_a_vendored_dependency_the_runpath_does_not_reach_is_an_error(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    # missing_dep has no RUNPATH: a copy of its dependency in the bundle is never found.
    dist = packaged(
        tmp_path,
        native_libs.missing_dep,
        extras={
            MISSING_DEPENDENCY_NAME: native_libs.vendored_dep.parent / VENDORED_DEPENDENCY_NAME
        },
        vendor=False,  # vendoring would set the RUNPATH that reaches it
    )
    code, out = verify("--bundles", str(dist / "bundles"))
    assert code == 1
    assert "error[bundle-dependency-unreachable]" in out
    assert f"the bundle holds {MISSING_DEPENDENCY_NAME}" in out
    assert "set RUNPATH to $ORIGIN" in out


def test_a_cuda_dependency_in_a_cpu_bundle_is_an_error_but_not_in_a_cuda_variant(
    tmp_path: Path, cuda_plugin: Path, native_libs: NativeLibraries
) -> None:
    runtime = {FAKE_CUDART: cuda_plugin.parent / FAKE_CUDART}
    dist = packaged(
        tmp_path, cuda_plugin, extras=runtime, cuda=cuda_plugin, args=("--accelerator", "cuda")
    )
    code, document = verify_json(
        "--bundles", str(dist / "bundles"), "--registry", str(dist / "registry")
    )
    assert code == 1
    by_bundle = {b["file"]: b["accelerator"] for b in document["bundles"]}
    assert by_bundle == {
        "demo-1.0.0-bundle.tar.zst": "cpu",
        "demo-1.0.0-cuda-bundle.tar.zst": "cuda",
    }
    cuda_findings = [
        (f["bundle"], f["symbol"], f["message"].split()[0])
        for f in document["findings"]
        if f["code"] == "bundle-cuda-in-cpu-bundle"
    ]
    assert cuda_findings == [
        ("demo-1.0.0-bundle.tar.zst", FAKE_CUDART, "holds"),
        ("demo-1.0.0-bundle.tar.zst", FAKE_CUDART, "needs"),
    ]
    # The variant's name alone tells a CUDA bundle, without the registry too.
    code, document = verify_json("--bundles", str(dist / "bundles"))
    assert [f["bundle"] for f in document["findings"]] == ["demo-1.0.0-bundle.tar.zst"] * 2


def test_the_entry_library_meets_the_checkers_library_rules(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    dist = packaged(tmp_path, native_libs.good_c)
    (dist / "bundles" / "SHA256SUMS").unlink()
    repacked(
        dist / "bundles" / "demo-1.0.0-bundle.tar.zst",
        tmp_path,
        swap={"libdemo.so": native_libs.no_symbol},
    )
    code, out = verify("--bundles", str(dist / "bundles"))
    assert code == 1
    assert (
        "error[entry-symbol-missing]" in out
        and "demo-1.0.0-bundle.tar.zst/libdemo.so: does not export" in out
    )


def test_rules_can_be_regraded_in_invoke_yaml(tmp_path: Path, native_libs: NativeLibraries) -> None:
    dist = packaged(tmp_path, native_libs.runpath_usr_local, vendor=False)
    root = tmp_path / "tree"
    (root / "invoke.yaml").write_text(
        "plugins:\n  extras:\n    gain-native:\n      enabled: false\n"
        "  rules:\n    bundle-search-path-absolute: warning\n"
    )
    code, out = verify("--root", str(root), "--bundles", str(root / "dist/bundles"))
    assert code == 0, out
    assert "warning[bundle-search-path-absolute]" in out
    assert verify("--root", str(root), "--bundles", str(root / "dist/bundles"), "--strict")[0] == 1
    assert dist.is_dir()


# --- formats and usage --------------------------------------------------------------------------


def test_github_format_annotates_each_finding(tmp_path: Path, native_libs: NativeLibraries) -> None:
    dist = packaged(tmp_path, native_libs.rpath_usr_local, vendor=False)
    code, out = verify("--bundles", str(dist / "bundles"), "--format", "github")
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith("::error file=") and "title=bundle-search-path-absolute::" in first
    assert out.splitlines()[-1].endswith("verification failed.")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bundles", "nowhere"], "the bundles directory does not exist"),
        (["--bundles", "."], "holds no bundle archive"),
        (["--bundles", ".", "--format", "xml"], "unknown --format 'xml'"),
        (["--bundles", ".", "--registry", "nowhere"], "the published registry does not exist"),
        (["--bundles", ".", "--public-key", "nokey.pub"], "the minisign public key does not exist"),
        (["--bundles", ".", "--public-key", "."], "the minisign public key is a directory"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    code, out = verify("--root", str(tmp_path), *args)
    assert code == 2, out
    assert message in out and "Traceback" not in out


def test_a_mistyped_limit_in_the_environment_is_a_plain_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVOKE_PLUGINS_BUNDLE_MAX_MEMBERS", "lots")
    code, out = verify("--root", str(tmp_path), "--bundles", ".")
    assert code == 2
    assert "plugins.bundle_max_members must be a positive integer, not 'lots'" in out
