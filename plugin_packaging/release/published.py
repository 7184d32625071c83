"""A registry directory on disk: what has been published, for a release to append to or check.

The layout is StreamKit's: `plugins/<id>/<version>/manifest.json` with `manifest.minisig` beside
it, `index.json` at the top, and the public key `streamkit.pub`. Reading is strict: a manifest
that is not JSON, or whose id or version differs from its directory, is an error naming the file,
because a release that carried it over would publish the mistake again under a new signature
date. Nothing here writes; `package.py` builds the next registry and `verify.py` checks bundles
against one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plugin_packaging._fs.files import REGISTRY_DOCUMENT, require_directory
from plugin_packaging._fs.yamlio import load_json, read_text
from plugin_packaging.errors import PackagingError
from plugin_packaging.release.registry import INDEX_FILE, MANIFEST_FILE, SIGNATURE_FILE

#: The public key file StreamKit's registry carries (`[plugins].trusted_pubkeys` holds its key).
PUBLIC_KEY_FILE = "streamkit.pub"
#: The top-level directory of per-version manifests.
PLUGINS_DIR = "plugins"
#: Where a StreamKit checkout commits its published registry (served by its docs site).
COMMITTED_REGISTRY = "docs/public/registry"


@dataclass(frozen=True)
class PublishedVersion:
    """One published `(id, version)`: its registry manifest and where its files are."""

    plugin_id: str
    version: str
    manifest: Mapping[str, Any]
    manifest_path: Path
    #: `manifest.minisig`, or None when the version was published unsigned.
    signature_path: Path | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.plugin_id, self.version)


@dataclass(frozen=True)
class PublishedRegistry:
    """Everything a registry directory holds that a release carries over."""

    path: Path
    versions: Mapping[tuple[str, str], PublishedVersion] = field(default_factory=dict)
    #: The parsed `index.json`, or None when there is none (its dates are then unknown).
    index: Mapping[str, Any] | None = None
    #: `streamkit.pub`, when the registry has one.
    public_key: Path | None = None

    def get(self, plugin_id: str, version: str) -> PublishedVersion | None:
        return self.versions.get((plugin_id, version))


def manifest_location(registry_dir: Path, plugin_id: str, version: str) -> Path:
    """Where the manifest of `(plugin_id, version)` lives in a registry directory."""
    return registry_dir / PLUGINS_DIR / plugin_id / version / MANIFEST_FILE


def read_registry(path: Path) -> PublishedRegistry:
    """Read the registry at `path`; raise a `PackagingError` naming the first broken file."""
    require_directory(
        path,
        "registry-missing",
        "the published registry",
        hint="point --existing-registry at the published registry (e.g. docs/public/registry), "
        "or leave it out for a first release",
    )
    versions: dict[tuple[str, str], PublishedVersion] = {}
    plugins_dir = path / PLUGINS_DIR
    for plugin_dir in _subdirectories(plugins_dir):
        for version_dir in _subdirectories(plugin_dir):
            published = _read_version(plugin_dir.name, version_dir)
            versions[published.key] = published
    index_path = path / INDEX_FILE
    index = read_json(index_path) if index_path.is_file() else None
    if index is not None and not isinstance(index, Mapping):
        raise PackagingError("registry-index-invalid", "is not a JSON object", index_path)
    public_key = path / PUBLIC_KEY_FILE
    return PublishedRegistry(
        path=path,
        versions=versions,
        index=index,
        public_key=public_key if public_key.is_file() else None,
    )


def _subdirectories(directory: Path) -> list[Path]:
    """Direct subdirectories, sorted, without hidden ones (`.DS_Store`, editors' leftovers)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise PackagingError(
            "registry-unreadable", f"cannot be listed ({exc.strerror or exc})", directory
        ) from None
    return [
        Path(e.path)
        for e in entries
        if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
    ]


def _read_version(plugin_id: str, version_dir: Path) -> PublishedVersion:
    manifest_path = version_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise PackagingError(
            "registry-version-incomplete",
            f"published version directory without {MANIFEST_FILE}",
            version_dir,
            hint="restore the file from the published registry, or remove the directory",
        )
    manifest = read_json(manifest_path)
    if not isinstance(manifest, Mapping):
        raise PackagingError("registry-manifest-invalid", "is not a JSON object", manifest_path)
    for key, expected in (("id", plugin_id), ("version", version_dir.name)):
        if manifest.get(key) != expected:
            raise PackagingError(
                "registry-manifest-misplaced",
                f"says {key} {manifest.get(key)!r} but lies in the directory for {expected!r}",
                manifest_path,
                hint="a manifest lives at plugins/<id>/<version>/manifest.json; restore the published one",
            )
    _check_blocks(manifest, manifest_path)
    signature = version_dir / SIGNATURE_FILE
    return PublishedVersion(
        plugin_id=plugin_id,
        version=version_dir.name,
        manifest=manifest,
        manifest_path=manifest_path,
        signature_path=signature if signature.is_file() else None,
    )


def _check_blocks(manifest: Mapping[str, Any], path: Path) -> None:
    """`bundle` and `variants` have the shapes the rest of the tool relies on."""
    variants = manifest.get("variants", [])
    blocks = [("bundle", manifest["bundle"])] if "bundle" in manifest else []
    if not isinstance(variants, list):
        blocks.append(("variants", variants))
    else:
        blocks += [(f"variants[{i}]", v) for i, v in enumerate(variants)]
    for label, block in blocks:
        fine = isinstance(block, Mapping) and isinstance(block.get("url"), str)
        if fine and label.startswith("variants"):
            fine = isinstance(block.get("accelerator"), str)
        if not fine:
            raise PackagingError(
                "registry-manifest-invalid",
                f"`{label}` is not an object with a `url`"
                + (" and an `accelerator`" if "variants" in label else ""),
                path,
                hint="restore the file from the published registry",
            )


def read_json(path: Path) -> Any:
    """A small JSON file, parsed; errors name the line."""
    return load_json(
        read_text(path, kind=REGISTRY_DOCUMENT),
        path,
        code="registry-json-invalid",
        what="a registry file",
        hint="restore the file from the published registry",
    )
