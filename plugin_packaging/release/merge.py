"""`merge-plugin-registries`: the passes of a distributed release joined into one registry.

A release runs as a CI matrix: the CPU runner packages the CPU bundles (`package-plugins-native`),
the CUDA runner the `cuda` variants (`package-plugins-native --variants-only --accelerator cuda`),
each from the same published registry into its own output directory. This step joins those
directories, append-only, into the registry that gets published:

- every `(id, version)` of any input is in the result. Its manifest is the one input manifest
  that holds the CPU `bundle`, plus the variants the other inputs add; apart from variants not
  known yet, the inputs must agree exactly (the same sources, the same published bundle, the
  same sha256 for a variant two passes both hold), else the merge fails with a diff;
- a manifest equal to one of the inputs' is copied byte for byte with its signature (checked
  against the public key when one is known): published versions and the passes' own signed
  manifests keep their signatures. Only a manifest whose variants grew beyond every input's is
  written anew and signed with the key given;
- bundles of all inputs are copied (the same file name twice must be the same bytes, and a
  manifest's sha256 must be its bundle's), with one `SHA256SUMS`; `index.json` is rebuilt with
  the inputs' `published_at` dates; `streamkit.pub` and `official-plugins.json` must agree.

Like `package-plugins-native`, everything is staged inside `--out` and swapped in only when the
whole merge succeeded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from plugin_packaging.errors import PackagingError, display_path
from plugin_packaging.release.package import (
    BUNDLES_DIR,
    OFFICIAL_PLUGINS_FILE,
    REGISTRY_DIR,
    checked_key_id,
    io_error,
    open_signing_key,
    output_directory,
    published_date,
    staged_output,
    swap_release,
)
from plugin_packaging.release.published import (
    PLUGINS_DIR,
    PUBLIC_KEY_FILE,
    PublishedRegistry,
    PublishedVersion,
    read_registry,
)
from plugin_packaging.release.registry import (
    INDEX_FILE,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    build_index,
    compare_published,
    manifest_json_bytes,
    merge_published,
)
from plugin_packaging.settings import Settings

if TYPE_CHECKING:
    from minisign import SecretKey

#: kept: an input's manifest and signature, byte for byte; written: the merged manifest, new
#: (its variants grew beyond every input's, or no input had it signed), signed with the key.
MergeStatus = Literal["kept", "written", "failed"]
_BUNDLE_SUFFIX = ".tar.zst"


@dataclass(frozen=True)
class MergedVersion:
    """What the merge did with one plugin version."""

    plugin_id: str
    version: str
    status: MergeStatus
    #: The accelerators of the variants in the merged manifest.
    accelerators: tuple[str, ...] = ()
    #: kept: the input whose manifest (and signature) was copied.
    source: Path | None = None
    error: PackagingError | None = None
    diff: str | None = None


@dataclass(frozen=True)
class MergeReport:
    out_dir: Path
    inputs: tuple[Path, ...]
    versions: tuple[MergedVersion, ...]
    bundles: int = 0
    errors: tuple[PackagingError, ...] = ()
    notes: tuple[PackagingError, ...] = ()
    key_id: str | None = None

    @property
    def failed(self) -> bool:
        return bool(self.errors) or any(v.status == "failed" for v in self.versions)


@dataclass(frozen=True)
class _Input:
    """One pass's output directory."""

    path: Path
    registry: PublishedRegistry
    #: bundle file name -> its path.
    bundles: Mapping[str, Path]
    official: bytes | None


@dataclass
class _Merged:
    """The merge of one version, before anything is written."""

    plugin_id: str
    version: str
    manifest: dict[str, Any]
    #: The input version whose manifest equals the result, if any (copied with its signature).
    same_as: PublishedVersion | None
    source: Path | None = None
    errors: list[PackagingError] = field(default_factory=list)
    diff: str | None = None


def merge_registries(
    settings: Settings, inputs: Sequence[Path], *, environ: Mapping[str, str] | None = None
) -> MergeReport:
    """Merge the outputs of `package-plugins-native` passes into `settings.dist_dir`."""
    env = os.environ if environ is None else environ
    out_dir = output_directory(settings)
    if len(inputs) < 1:
        raise PackagingError(
            "bad-option",
            "no pass outputs to merge",
            hint="name each pass's output directory: --input dist-cpu --input dist-cuda",
        )
    resolved_out = out_dir.resolve()
    for path in inputs:
        if path.resolve() == resolved_out:
            raise PackagingError(
                "bad-option",
                "the output directory is also an input",
                path,
                hint="merge into a new directory, e.g. --out dist",
            )
    passes = [_read_input(path) for path in inputs]
    today = published_date(settings.published_at)
    public_key = settings.public_key or _public_key(passes)
    if public_key is not None:
        from plugin_packaging.release.signing import public_key_id

        public_key_id(public_key)
    errors: list[PackagingError] = []
    official = _official(passes, errors)
    merged = [_merge_version(key, passes) for key in _all_versions(passes)]
    if public_key is not None:
        for item in merged:
            if item.same_as is not None and not item.errors:
                _check_signature(public_key, item)
    bundles = _bundles(passes, errors)
    _check_bundle_hashes(merged, bundles)
    report = MergeReport(
        out_dir,
        tuple(inputs),
        tuple(_result(item) for item in merged),
        len(bundles),
        tuple(errors),
        _notes(settings, merged),
    )
    if report.failed:
        return report
    with staged_output(out_dir) as staging:
        try:
            with open_signing_key(settings, env) as key:
                key_id = checked_key_id(settings, public_key, key)
                _write(staging, merged, bundles, passes, key, public_key, settings, today)
            swap_release(staging, out_dir, official)
        except OSError as exc:
            raise io_error(exc, out_dir, "write the merged release") from None
    return MergeReport(
        report.out_dir,
        report.inputs,
        report.versions,
        report.bundles,
        notes=report.notes,
        key_id=key_id,
    )


def _read_input(path: Path) -> _Input:
    registry_dir = path / REGISTRY_DIR
    if not registry_dir.is_dir():
        raise PackagingError(
            "merge-input-invalid",
            "is not the output of package-plugins-native: it has no registry/ directory",
            path,
            hint="pass the --out directory of each package-plugins-native run",
        )
    bundles_dir = path / BUNDLES_DIR
    bundles = (
        {p.name: p for p in sorted(bundles_dir.iterdir()) if p.name.endswith(_BUNDLE_SUFFIX)}
        if bundles_dir.is_dir()
        else {}
    )
    official_path = path / OFFICIAL_PLUGINS_FILE
    official = official_path.read_bytes() if official_path.is_file() else None
    return _Input(path, read_registry(registry_dir), bundles, official)


def _public_key(passes: Sequence[_Input]) -> Path | None:
    keys = [p.registry.public_key for p in passes if p.registry.public_key is not None]
    for key in keys[1:]:
        if key.read_bytes() != keys[0].read_bytes():
            raise PackagingError(
                "merge-public-key-differs",
                f"holds another public key than {display_path(keys[0])}",
                key,
                hint="every pass of one release signs with the same key; pass --public-key",
            )
    return keys[0] if keys else None


def _official(passes: Sequence[_Input], errors: list[PackagingError]) -> bytes | None:
    documents = [(p.path, p.official) for p in passes if p.official is not None]
    for path, document in documents[1:]:
        if document != documents[0][1]:
            errors.append(
                PackagingError(
                    "merge-inputs-disagree",
                    f"{OFFICIAL_PLUGINS_FILE} differs from the one in {display_path(documents[0][0])}",
                    path / OFFICIAL_PLUGINS_FILE,
                    hint="the passes of one release must package the same sources (the same commit)",
                )
            )
    return documents[0][1] if documents else None


def _all_versions(passes: Sequence[_Input]) -> list[tuple[str, str]]:
    return sorted({key for p in passes for key in p.registry.versions})


def _merge_version(key: tuple[str, str], passes: Sequence[_Input]) -> _Merged:
    plugin_id, version = key
    held = [(p.path, p.registry.versions[key]) for p in passes if key in p.registry.versions]
    with_bundle = [(path, v) for path, v in held if "bundle" in v.manifest]
    if not with_bundle:
        item = _Merged(plugin_id, version, dict(held[0][1].manifest), None)
        item.errors.append(
            PackagingError(
                "merge-cpu-bundle-missing",
                f"no input holds the CPU bundle of {plugin_id} {version}, only variants",
                held[0][1].manifest_path,
                hint="merge the CPU pass's output too (package-plugins-native without "
                "--variants-only)",
            )
        )
        return item
    base_path, base = with_bundle[0]
    manifest: dict[str, Any] = dict(base.manifest)
    item = _Merged(plugin_id, version, manifest, None, base_path)
    for _, other in held:
        if other is base:
            continue
        diff = compare_published(
            manifest,
            other.manifest,
            published_label=str(display_path(base.manifest_path)),
            new_label=str(display_path(other.manifest_path)),
        )
        if diff is not None:
            item.errors.append(
                PackagingError(
                    "merge-inputs-disagree",
                    f"{plugin_id} {version}: the inputs differ in more than new variants",
                    other.manifest_path,
                    hint="the passes of one release must package the same sources from the same "
                    "published registry; only variants may be added",
                )
            )
            item.diff = diff
            return item
        manifest = merge_published(manifest, other.manifest)
    item.manifest = manifest
    # Kept byte for byte only with a signature to keep; an unsigned equal one is signed anew.
    for path, candidate in held:
        if dict(candidate.manifest) == manifest and candidate.signature_path is not None:
            item.same_as, item.source = candidate, path
            break
    return item


def _check_signature(public_key: Path, item: _Merged) -> None:
    from plugin_packaging.release.signing import verify_file

    assert item.same_as is not None
    signature = item.same_as.signature_path or item.same_as.manifest_path.with_name(SIGNATURE_FILE)
    try:
        verify_file(public_key, item.same_as.manifest_path, signature)
    except PackagingError as exc:
        item.errors.append(exc)


def _bundles(passes: Sequence[_Input], errors: list[PackagingError]) -> dict[str, tuple[Path, str]]:
    """Every input's bundle by file name, with its sha256; a name held twice must be one file."""
    from plugin_packaging.release.checksums import sha256_file

    out: dict[str, tuple[Path, str]] = {}
    for p in passes:
        for name, path in p.bundles.items():
            digest = sha256_file(path)
            if name in out and out[name][1] != digest:
                errors.append(
                    PackagingError(
                        "merge-bundle-conflict",
                        f"{name} differs from the file of the same name in "
                        f"{display_path(out[name][0].parent)}",
                        path,
                        hint="two passes built the same bundle differently: only one pass may "
                        "build each bundle (the CPU pass the CPU bundles, a variant pass its variants)",
                    )
                )
                continue
            out.setdefault(name, (path, digest))
    return out


def _check_bundle_hashes(
    merged: Sequence[_Merged], bundles: Mapping[str, tuple[Path, str]]
) -> None:
    """A manifest that points at a bundle of this release must carry that bundle's sha256."""
    for item in merged:
        blocks = [item.manifest.get("bundle"), *item.manifest.get("variants", [])]
        for block in blocks:
            if not isinstance(block, Mapping) or not isinstance(block.get("url"), str):
                continue
            name = block["url"].rsplit("/", 1)[-1]
            if name in bundles and bundles[name][1] != block.get("sha256"):
                item.errors.append(
                    PackagingError(
                        "merge-bundle-mismatch",
                        f"{item.plugin_id} {item.version} says {name} has sha256 "
                        f"{block.get('sha256')}, but the file has {bundles[name][1]}",
                        bundles[name][0],
                        hint="merge the bundles/ and registry/ of the same runs",
                    )
                )


def _result(item: _Merged) -> MergedVersion:
    accelerators = tuple(v.get("accelerator", "?") for v in item.manifest.get("variants", []))
    if item.errors:
        error, *_ = item.errors
        return MergedVersion(
            item.plugin_id, item.version, "failed", accelerators, error=error, diff=item.diff
        )
    status: MergeStatus = "kept" if item.same_as is not None else "written"
    return MergedVersion(item.plugin_id, item.version, status, accelerators, source=item.source)


def _notes(settings: Settings, merged: Sequence[_Merged]) -> tuple[PackagingError, ...]:
    if settings.signing_key is None and any(item.same_as is None for item in merged):
        return (
            PackagingError(
                "registry-unsigned",
                "manifests whose variants grew are written anew and not signed: the server's "
                "marketplace refuses a manifest without a valid manifest.minisig",
                hint="pass --signing-key FILE (the release's minisign secret key)",
            ),
        )
    return ()


def _write(
    staging: Path,
    merged: Sequence[_Merged],
    bundles: Mapping[str, tuple[Path, str]],
    passes: Sequence[_Input],
    key: SecretKey | None,
    public_key: Path | None,
    settings: Settings,
    today: str,
) -> None:
    from plugin_packaging.release.checksums import write_sha256sums

    bundles_dir = staging / BUNDLES_DIR
    registry_dir = staging / REGISTRY_DIR
    bundles_dir.mkdir()
    registry_dir.mkdir()
    copied = {}
    for name, (path, digest) in sorted(bundles.items()):
        shutil.copyfile(path, bundles_dir / name)
        copied[bundles_dir / name] = digest
    write_sha256sums(bundles_dir, list(copied), known=copied)
    for item in merged:
        directory = registry_dir / PLUGINS_DIR / item.plugin_id / item.version
        directory.mkdir(parents=True)
        if item.same_as is not None:
            shutil.copyfile(item.same_as.manifest_path, directory / MANIFEST_FILE)
            if item.same_as.signature_path is not None:
                shutil.copyfile(item.same_as.signature_path, directory / SIGNATURE_FILE)
            continue
        path = directory / MANIFEST_FILE
        path.write_bytes(manifest_json_bytes(item.manifest))
        if key is not None:
            from plugin_packaging.release.signing import sign_with

            sign_with(key, path, signature_path=directory / SIGNATURE_FILE)
    if public_key is not None:
        shutil.copyfile(public_key, registry_dir / PUBLIC_KEY_FILE)
    # published_at dates: the passes' indexes (each kept the published ones and gave new
    # versions the day it ran); the first pass that lists a version wins.
    plugins = [
        plugin
        for p in reversed(passes)
        if p.registry.index is not None
        for plugin in p.registry.index.get("plugins", [])
    ]
    index = build_index(
        [item.manifest for item in merged],
        {"schema_version": 1, "plugins": plugins},
        registry_base_url=settings.registry_base_url,
        today=today,
    )
    (registry_dir / INDEX_FILE).write_bytes(manifest_json_bytes(index))
