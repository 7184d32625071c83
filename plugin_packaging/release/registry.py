"""The marketplace registry StreamKit's server reads: manifests, index, names, URLs and versions.

Pure functions over plain dicts; nothing here touches the disk. The formats are StreamKit's
(`registry/plugins/<id>/<version>/manifest.json`, `registry/index.json`, bundle file names and
release tags); the rules that make the registry trustworthy over time are ours to keep:

- a registry manifest's keys come in StreamKit's order and `null`s are left out, so a manifest we
  write is the byte-for-byte twin of one StreamKit's builder would write;
- versions are ordered by SemVer 2.0 precedence, never as strings;
- the registry is append-only: a published `(id, version)` never changes, except that variants
  (builds for other accelerators) may be added later (`compare_published`, `merge_published`).
"""

from __future__ import annotations

import datetime
import json
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plugin_packaging.contract.manifest import REQUIRED_KEYS
from plugin_packaging.contract.semver import (
    latest_version,
    parse_semver,
    sort_versions_descending,
)
from plugin_packaging.errors import PackagingError

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.minisig"
INDEX_FILE = "index.json"

# StreamKit's key order for a registry manifest.
MANIFEST_KEYS = (
    "schema_version",
    "id",
    "name",
    "version",
    "node_kind",
    "kind",
    "description",
    "license",
    "license_url",
    "homepage",
    "repository",
    "entrypoint",
    "bundle",
    "variants",
    "compatibility",
    "models",
    "assets",
)

_URL_PLACEHOLDERS = ("plugin_id", "version")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ACCELERATOR = re.compile(r"[a-z0-9][a-z0-9_]*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class BundleRef:
    """Where a bundle archive is published and what it must hash to."""

    url: str
    sha256: str
    size_bytes: int

    def __post_init__(self) -> None:
        _check_archive_fields(self.sha256, self.size_bytes)

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "sha256": self.sha256, "size_bytes": self.size_bytes}


@dataclass(frozen=True)
class Variant:
    """A bundle built for another accelerator (e.g. `cuda`) of the same plugin version."""

    accelerator: str
    url: str
    sha256: str
    size_bytes: int

    def __post_init__(self) -> None:
        _check_archive_fields(self.sha256, self.size_bytes)
        _check_accelerator(self.accelerator)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accelerator": self.accelerator,
            "url": self.url,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
        }


def _check_archive_fields(sha256: str, size_bytes: int) -> None:
    # Programming errors, not user mistakes: these values come from `write_bundle`.
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"sha256 must be 64 lower-case hex digits, not {sha256!r}")
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 0:
        raise ValueError(f"size_bytes must be a non-negative integer, not {size_bytes!r}")


def _check_accelerator(accelerator: str) -> None:
    if not _ACCELERATOR.fullmatch(accelerator):
        raise PackagingError(
            "accelerator-invalid",
            f"accelerator {accelerator!r} is not a lower-case name such as `cpu` or `cuda`",
        )


# --------------------------------------------------------------------------------------------
# Manifests


def registry_manifest(
    manifest: Mapping[str, Any],
    *,
    bundle: BundleRef | None,
    variants: Sequence[Variant] = (),
) -> dict[str, Any]:
    """The registry manifest for a plugin version, from its generated `plugin.yml` data.

    Keys in StreamKit's order, `None` left out at every depth, `models` always present,
    `variants` and `assets` only when non-empty. Keys only build tooling reads (`artifact`,
    `accelerators`, `extra_files`, ...) are dropped; `repo` is read as `repository` when the
    latter is absent, as StreamKit's builder does. With `bundle=None` this is the
    `manifest.json` that goes inside the bundle itself.
    """
    missing = [key for key in REQUIRED_KEYS if manifest.get(key) in (None, "")]
    if missing:
        raise PackagingError(
            "registry-manifest-incomplete",
            f"plugin {manifest.get('id', '?')!r} has no {', '.join(missing)}",
            hint="add the missing keys to the plugin's plugin.yml",
        )
    parse_semver(str(manifest["version"]))
    accelerators = [variant.accelerator for variant in variants]
    duplicated = sorted({a for a in accelerators if accelerators.count(a) > 1})
    if duplicated:
        raise PackagingError(
            "registry-variant-duplicate",
            f"more than one {', '.join(duplicated)} variant for {manifest['id']}",
        )
    values: dict[str, Any] = {key: manifest.get(key) for key in MANIFEST_KEYS}
    values["schema_version"] = manifest.get("schema_version", SCHEMA_VERSION)
    if values["repository"] is None:
        values["repository"] = manifest.get("repo")
    values["bundle"] = bundle.as_dict() if bundle is not None else None
    values["variants"] = [
        variant.as_dict() for variant in sorted(variants, key=lambda v: v.accelerator)
    ] or None
    values["models"] = list(manifest.get("models") or [])
    values["assets"] = list(manifest.get("assets") or []) or None
    cleaned: dict[str, Any] = _without_none(values)
    return cleaned


def _without_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(item) for item in value]
    return value


def manifest_json_bytes(data: Mapping[str, Any]) -> bytes:
    """`data` as StreamKit writes JSON: two-space indent, non-ASCII escaped, one final newline.

    The trailing newline is ours (POSIX text files end with one); it does not matter to any JSON
    reader, but these bytes are what gets signed and hashed, so it is fixed here once.
    """
    return (json.dumps(data, indent=2, ensure_ascii=True) + "\n").encode("ascii")


# --------------------------------------------------------------------------------------------
# File names, URLs and tags


def bundle_file_name(plugin_id: str, version: str, accelerator: str | None = None) -> str:
    """`<id>-<version>-bundle.tar.zst`, or `<id>-<version>-<accelerator>-bundle.tar.zst`.

    The CPU build (`accelerator` None or `cpu`) carries no accelerator in its name.
    """
    _check_path_component("plugin id", plugin_id)
    parse_semver(version)
    if accelerator is None or accelerator == "cpu":
        return f"{plugin_id}-{version}-bundle.tar.zst"
    _check_accelerator(accelerator)
    return f"{plugin_id}-{version}-{accelerator}-bundle.tar.zst"


def bundle_url(template: str, plugin_id: str, version: str, file_name: str) -> str:
    """The download URL of a bundle: `template` with `{plugin_id}` and `{version}` filled in, then
    `/<file_name>`.

    Only those two placeholders are known; anything else in braces is an error rather than a
    `KeyError` or a URL with `{...}` left in it. Write `{{` and `}}` for literal braces.
    """
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        raise _template_error(template, f"it is not a valid template ({exc})") from None
    for name, spec, conversion in fields:
        if name not in _URL_PLACEHOLDERS:
            raise _template_error(template, f"unknown placeholder {{{name}}}")
        if spec or conversion:
            raise _template_error(template, f"placeholder {{{name}}} takes no format or `!`")
    base = template.format(plugin_id=plugin_id, version=version)
    return f"{base.rstrip('/')}/{file_name}"


def _template_error(template: str, problem: str) -> PackagingError:
    return PackagingError(
        "bundle-url-template-invalid",
        f"bundle URL template {template!r}: {problem}",
        hint="use only {plugin_id} and {version}, e.g. "
        "https://github.com/OWNER/REPO/releases/download/plugin-{plugin_id}-v{version}",
    )


def manifest_url(registry_base_url: str, plugin_id: str, version: str) -> str:
    return f"{registry_base_url.rstrip('/')}/plugins/{plugin_id}/{version}/{MANIFEST_FILE}"


def signature_url(registry_base_url: str, plugin_id: str, version: str) -> str:
    return f"{registry_base_url.rstrip('/')}/plugins/{plugin_id}/{version}/{SIGNATURE_FILE}"


def _check_path_component(what: str, value: str) -> None:
    # The server uses ids and versions as directory names (`bundles/<id>/<version>/`).
    if (
        not value
        or value != value.strip()
        or any(ch in value for ch in "/\\\0")
        or ".." in value
        or value == "."
    ):
        raise PackagingError(
            "registry-name-invalid",
            f"{what} {value!r} is not a single plain path component",
            hint="use letters, digits, `-`, `_` and `.`, without `..`",
        )


# --------------------------------------------------------------------------------------------
# Index


def build_index(
    entries: Iterable[Mapping[str, Any]],
    previous_index: Mapping[str, Any] | None,
    *,
    registry_base_url: str,
    today: str,
) -> dict[str, Any]:
    """`registry/index.json` from every published registry manifest.

    `entries` are the manifests of all versions in the registry (old and new); the index lists
    exactly those. A version already in `previous_index` keeps its `published_at`; a new one gets
    `today` (`YYYY-MM-DD`). A plugin's `name` and `description` come from its `latest` version.
    """
    if not _DATE.fullmatch(today) or not _is_date(today):
        raise PackagingError("registry-date-invalid", f"{today!r} is not a YYYY-MM-DD date")
    published_at = _published_dates(previous_index)
    by_plugin: dict[str, dict[str, Mapping[str, Any]]] = {}
    for manifest in entries:
        plugin_id, version = manifest.get("id"), manifest.get("version")
        if not isinstance(plugin_id, str) or not isinstance(version, str):
            raise PackagingError(
                "registry-manifest-incomplete",
                f"a registry manifest without a string id and version: {dict(manifest)!r:.200}",
            )
        _check_path_component("plugin id", plugin_id)
        parse_semver(version)
        versions = by_plugin.setdefault(plugin_id, {})
        if version in versions:
            raise PackagingError(
                "registry-version-duplicate",
                f"{plugin_id} {version} appears twice among the registry manifests",
            )
        versions[version] = manifest

    plugins = []
    for plugin_id in sorted(by_plugin):
        versions = by_plugin[plugin_id]
        latest = latest_version(versions)
        assert latest is not None  # every plugin here has at least one version
        described = versions[latest]
        plugin = {
            "id": plugin_id,
            "name": described.get("name"),
            "description": described.get("description"),
            "latest": latest,
            "versions": [
                {
                    "version": version,
                    "manifest_url": manifest_url(registry_base_url, plugin_id, version),
                    "signature_url": signature_url(registry_base_url, plugin_id, version),
                    "published_at": published_at.get((plugin_id, version), today),
                }
                for version in sort_versions_descending(versions)
            ],
        }
        plugins.append(_without_none(plugin))
    return {"schema_version": SCHEMA_VERSION, "plugins": plugins}


def _is_date(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _published_dates(previous_index: Mapping[str, Any] | None) -> dict[tuple[str, str], str]:
    if previous_index is None:
        return {}
    dates: dict[tuple[str, str], str] = {}
    try:
        for plugin in previous_index["plugins"]:
            for entry in plugin["versions"]:
                date = entry["published_at"]
                if not isinstance(date, str) or not _DATE.fullmatch(date):
                    raise TypeError(f"published_at {date!r}")
                dates[(plugin["id"], entry["version"])] = date
    except (KeyError, TypeError) as exc:
        raise PackagingError(
            "registry-index-invalid",
            f"the previous index is not a registry index ({exc.__class__.__name__}: {exc})",
            hint="restore index.json from the published registry",
        ) from None
    return dates


# --------------------------------------------------------------------------------------------
# Append-only


def compare_published(
    published: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    published_label: str = "published",
    new_label: str = "new",
) -> str | None:
    """None when `new` may be published over `published`; else a unified diff of what changed.

    Allowed: no change at all; variants for accelerators not published yet; and leaving out
    `bundle` or published variants (a run that did not rebuild them keeps the published ones).
    Anything else, including a different sha256 for an already published variant, needs a
    version bump. The diff is of the pretty JSON, limited to the parts that must not change.
    """
    import difflib

    published_view, new_view = _comparable(published, new)
    if published_view == new_view:
        return None
    diff = difflib.unified_diff(
        manifest_json_bytes(published_view).decode("ascii").splitlines(keepends=True),
        manifest_json_bytes(new_view).decode("ascii").splitlines(keepends=True),
        fromfile=published_label,
        tofile=new_label,
    )
    return "".join(diff)


def merge_published(published: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest to publish for a version that may already be published.

    `published` plus the variants only `new` has, appended in accelerator order. Raises a
    PackagingError when `compare_published` finds a change that needs a version bump; the
    caller that wants to show the diff calls `compare_published` first.
    """
    diff = compare_published(published, new)
    if diff is not None:
        raise PackagingError(
            "registry-published-changed",
            f"{published.get('id')} {published.get('version')} is already published with "
            "different content",
            hint="bump the version in plugin.yml; a published version never changes",
        )
    known = {variant["accelerator"] for variant in published.get("variants", [])}
    added = sorted(
        (variant for variant in new.get("variants", []) if variant["accelerator"] not in known),
        key=lambda variant: variant["accelerator"],
    )
    merged = dict(published)
    if added:
        merged["variants"] = [*published.get("variants", []), *added]
    return _in_manifest_order(merged)


def _comparable(
    published: Mapping[str, Any], new: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both manifests without the parts that may differ: new variants, omitted builds."""
    published_view = dict(published)
    new_view = dict(new)
    if "bundle" not in new_view and "bundle" in published_view:
        new_view["bundle"] = published_view["bundle"]
    published_variants = {v["accelerator"]: v for v in published_view.pop("variants", [])}
    new_variants = {v["accelerator"]: v for v in new_view.pop("variants", [])}
    common = sorted(published_variants.keys() & new_variants.keys())
    if common:
        published_view["variants"] = [published_variants[a] for a in common]
        new_view["variants"] = [new_variants[a] for a in common]
    return _in_manifest_order(published_view), _in_manifest_order(new_view)


def _in_manifest_order(manifest: Mapping[str, Any]) -> dict[str, Any]:
    known = {key: manifest[key] for key in MANIFEST_KEYS if key in manifest}
    others = {key: value for key, value in manifest.items() if key not in known}
    return {**known, **others}
