"""`check-registry-versions`: would the current sources change a version that is published?

The registry is append-only: once `(id, version)` is published its manifest never changes. A
pull request that edits a plugin's `plugin.yml` (its description, its models...) without
bumping the version would only fail at release time, after everything was built. This check
runs first and fast: it reads the source manifests, the crates' `Cargo.toml` and the committed
registry manifests (never a library, never a signature) and compares each plugin's would-be
manifest with the published one, exactly as `package-plugins-native` does before it builds
anything. A `plugin.yml` version that differs from `Cargo.toml` fails here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from plugin_packaging.errors import PackagingError
from plugin_packaging.release.package import (
    is_released,
    published_changed_error,
    published_difference,
    release_manifest,
    version_mismatch,
)
from plugin_packaging.release.published import COMMITTED_REGISTRY, read_registry
from plugin_packaging.settings import Settings
from plugin_packaging.sources.artifacts import artifact_path
from plugin_packaging.sources.scan import scan_sources, select_sources

#: published: the sources give the published manifest; new: not published yet.
CheckStatus = Literal["published", "new", "changed", "failed"]


@dataclass(frozen=True)
class VersionCheck:
    """One plugin's current version against the registry."""

    plugin_id: str
    status: CheckStatus
    version: str | None = None
    error: PackagingError | None = None
    #: For a changed published version: the unified diff of the manifests.
    diff: str | None = None


@dataclass(frozen=True)
class VersionReport:
    registry: Path
    checks: tuple[VersionCheck, ...]
    scan_errors: tuple[PackagingError, ...] = ()

    @property
    def failed(self) -> bool:
        return bool(self.scan_errors) or any(c.status in ("changed", "failed") for c in self.checks)


def registry_to_check(settings: Settings) -> Path:
    """`--registry`/`plugins.existing_registry`, else the checkout's committed registry."""
    return settings.existing_registry or settings.root / COMMITTED_REGISTRY


def check_registry_versions(settings: Settings, *, only: Sequence[str] = ()) -> VersionReport:
    """Compare every released plugin's (or those in `only`) would-be manifest with the registry."""
    registry_dir = registry_to_check(settings)
    try:
        registry = read_registry(registry_dir)
    except PackagingError as exc:
        if exc.code != "registry-missing":
            raise
        raise PackagingError(
            exc.code,
            exc.message,
            exc.path,
            hint="pass --registry DIR (the published registry; StreamKit commits it in "
            f"{COMMITTED_REGISTRY})",
        ) from None
    scan = scan_sources(settings)
    selected = select_sources(scan, only)
    if not only:
        selected = [source for source in selected if is_released(settings, source)]
    checks = []
    for source in selected:
        try:
            entrypoint = artifact_path(source, settings.platform).name
            generated, manifest = release_manifest(settings, source, entrypoint)
        except PackagingError as exc:
            checks.append(VersionCheck(source.id, "failed", error=exc))
            continue
        version = generated.version
        mismatch = version_mismatch(generated)
        if mismatch is not None:
            checks.append(VersionCheck(source.id, "failed", version, error=mismatch))
            continue
        published = registry.get(source.id, version)
        if published is None:
            checks.append(VersionCheck(source.id, "new", version))
            continue
        diff = published_difference(published, manifest, source)
        if diff is None:
            checks.append(VersionCheck(source.id, "published", version))
        else:
            error = published_changed_error(source, version, published)
            checks.append(VersionCheck(source.id, "changed", version, error=error, diff=diff))
    return VersionReport(registry_dir, tuple(checks), scan.errors)
