"""An installed manifest judged as the server reads it: which file it uses (N9), whether it parses, and
what is wrong with it (section 4, N10).

The server parses a manifest into its `PluginManifest` struct: a missing required key, a value of
the wrong type or an invalid `kind` fails the whole parse and the file is dropped ("fatal" below);
the N9 lookup then falls through to the next file name. Everything else here (unsafe ids, a
version that is not SemVer, a `::` in `node_kind`, asset rules) is accepted by the parse but wrong
for the marketplace, release tooling or the asset registry.

Unlike `manifest.validate_manifest`, which stops at the first problem of a manifest we are about
to write, this module reports every problem of a manifest someone else wrote, each as its own
`Violation`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, TypeGuard

from plugin_packaging.contract import (
    LIBRARY_EXTENSIONS,
    is_semver,
    path_component_problem,
    relative_path_problem,
)
from plugin_packaging.errors import PackagingError
from plugin_packaging.rules.loader import Violation
from plugin_packaging.sources.plugin_yml import REQUIRED_KEYS, STRING_KEYS

#: The server's cap on one asset type's `max_size_bytes` (N10).
MAX_ASSET_BYTES = 100 * 1024 * 1024
ASSET_TYPE_ID = re.compile(r"[A-Za-z0-9_-]+")


def manifest_names(library_name: str) -> tuple[str, ...]:
    """The N9 lookup order next to a library: `<stem>` is its stem with one leading `lib` removed."""
    stem = PurePath(library_name).stem
    stem = stem[3:] if stem.startswith("lib") else stem
    return (
        "plugin.yml",
        "plugin.yaml",
        f"{stem}.plugin.yml",
        f"{stem}.plugin.yaml",
        "manifest.json",
    )


@dataclass(frozen=True)
class ManifestRead:
    """One manifest file read and judged."""

    path: Path
    #: The parsed mapping, or None when the file could not be read as a mapping at all.
    data: Mapping[str, Any] | None
    violations: tuple[Violation, ...]
    #: True when the server's parse accepts it (the N9 lookup stops here).
    parses: bool

    def text(self, key: str) -> str | None:
        """A string value of the manifest, or None when absent or not a string."""
        value = self.data.get(key) if self.data is not None else None
        return value if isinstance(value, str) else None

    @property
    def assets(self) -> list[Mapping[str, Any]]:
        value = self.data.get("assets") if self.data is not None else None
        return [a for a in value if isinstance(a, Mapping)] if isinstance(value, list) else []


@dataclass(frozen=True)
class ManifestLookup:
    """The N9 lookup next to one library: every candidate that exists, in order, and the one used."""

    library: str
    found: tuple[ManifestRead, ...]

    @property
    def used(self) -> ManifestRead | None:
        return next((m for m in self.found if m.parses), None)


def look_up_manifest(
    directory: Path, library_name: str, existing: set[str], bundle: str | None
) -> ManifestLookup:
    """Read every manifest name of N9 that exists in `directory` (`existing`: its file names)."""
    found = []
    for name in manifest_names(library_name):
        if name in existing:
            found.append(read_manifest(directory / name, bundle))
    return ManifestLookup(library_name, tuple(found))


def read_manifest(path: Path, bundle: str | None) -> ManifestRead:
    """Parse one manifest (YAML, or JSON for `manifest.json`) and judge every key the server reads."""
    try:
        data = _load(path)
    except PackagingError as exc:
        detail = f"{path.name} {exc.message}"
        return ManifestRead(
            path,
            None,
            (Violation("manifest-unparseable", path, {"detail": detail}, bundle),),
            False,
        )
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else f"a {type(data).__name__}, not a mapping of keys"
        detail = f"{path.name} is {kind}"
        return ManifestRead(
            path,
            None,
            (Violation("manifest-unparseable", path, {"detail": detail}, bundle),),
            False,
        )
    violations: list[Violation] = []
    fatal = _parse_problems(data, path, bundle, violations)
    _policy_problems(data, path, bundle, violations)
    return ManifestRead(path, data, tuple(violations), not fatal)


def _load(path: Path) -> Any:
    from plugin_packaging._fs.yamlio import load_json, load_yaml, read_text

    text = read_text(path)  # capped at yamlio.MAX_MANIFEST_BYTES
    if path.name.endswith(".json"):
        return load_json(text, path, code="manifest-invalid-json", what="a manifest")
    return load_yaml(text, path)


# --- what the server's parse refuses ------------------------------------------------------------

# `kind` has its own rule (`manifest-kind`), which also covers a value that is not a string.
_STRINGS = tuple(key for key in STRING_KEYS if key != "kind")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class _Shape:
    """Collects type problems of one manifest; each one fails the server's parse."""

    def __init__(self, path: Path, bundle: str | None, out: list[Violation]) -> None:
        self.path, self.bundle, self.out = path, bundle, out
        self.fatal = False

    def missing(self, key: str, fix: str) -> None:
        self.fatal = True
        self.out.append(
            Violation("manifest-key-missing", self.path, {"fix": fix}, self.bundle, key=key)
        )

    def wrong(self, key: str, expected: str, value: Any, fix: str | None = None) -> None:
        self.fatal = True
        if fix is None:
            fix = f"write `{key}` as {expected}"
            if expected == "a string" and isinstance(value, (int, float, bool)):
                leaf = key.rsplit(".", 1)[-1]
                fix = (
                    f'quote it, with the characters you meant: `{leaf}: "..."`; unquoted, YAML reads '
                    f"it as {_type_name(value)}"
                )
        details = {"expected": expected, "actual": _type_name(value), "fix": fix}
        self.out.append(Violation("manifest-wrong-type", self.path, details, self.bundle, key=key))

    def string(self, data: Mapping[str, Any], key: str, where: str, required: bool = False) -> None:
        if key not in data:
            if required:
                self.missing(
                    f"{where}{key}", f"add `{key}` to {where.rstrip('.') or 'the manifest'}"
                )
            return
        value = data[key]
        if value is None and not required:
            return
        if not isinstance(value, str):
            self.wrong(f"{where}{key}", "a string", value)

    def integer(self, data: Mapping[str, Any], key: str, where: str, unsigned: bool = True) -> None:
        value = data.get(key)
        if value is None:
            return
        if not _is_int(value) or (unsigned and value < 0):
            self.wrong(
                f"{where}{key}", "a non-negative integer" if unsigned else "an integer", value
            )

    def boolean(self, data: Mapping[str, Any], key: str, where: str) -> None:
        value = data.get(key)
        if value is not None and not isinstance(value, bool):
            self.wrong(f"{where}{key}", "true or false", value)

    def string_list(
        self, data: Mapping[str, Any], key: str, where: str, required: bool = False
    ) -> None:
        if key not in data or data[key] is None:
            if required:
                self.missing(f"{where}{key}", f"add `{key}: [...]` to {where.rstrip('.')}")
            return
        value = data[key]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.wrong(f"{where}{key}", "a list of strings", value)

    def mapping(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.wrong(key, "a mapping", value)
            return None
        return value

    def entries(self, data: Mapping[str, Any], key: str) -> list[tuple[int, Mapping[str, Any]]]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.wrong(key, "a list", value)
            return []
        out = []
        for index, item in enumerate(value):
            if isinstance(item, Mapping):
                out.append((index, item))
            else:
                self.wrong(f"{key}[{index}]", "a mapping", item)
        return out


def _parse_problems(
    data: Mapping[str, Any], path: Path, bundle: str | None, out: list[Violation]
) -> bool:
    """Add what makes the server's `PluginManifest` parse fail; True when anything does."""
    shape = _Shape(path, bundle, out)
    fixes = {
        "id": "add `id: <plugin-id>` (the plugin's source directory name)",
        "version": 'add `version: "X.Y.Z"` (the plugin crate\'s [package].version)',
        "node_kind": "add `node_kind: <kind>`, the bare kind the library registers",
        "kind": "add `kind: native`",
        "entrypoint": "add `entrypoint: <library file name>`",
    }
    for key in REQUIRED_KEYS:
        if key not in data or data[key] is None:
            shape.missing(key, fixes[key])
    for key in _STRINGS:
        if data.get(key) is not None:
            shape.string(data, key, "")
    if "schema_version" in data:
        shape.integer(data, "schema_version", "")
    kind = data.get("kind")
    if kind is not None and kind not in ("native", "wasm"):
        shape.fatal = True
        why = "the server accepts only `native` or `wasm`, exactly, and drops the whole manifest"
        out.append(
            Violation("manifest-kind", path, {"value": kind, "why": why}, bundle, key="kind")
        )
    compatibility = shape.mapping(data, "compatibility")
    if compatibility is not None:
        shape.string(compatibility, "streamkit", "compatibility.")
        shape.string_list(compatibility, "os", "compatibility.")
        shape.string_list(compatibility, "arch", "compatibility.")
    for index, model in shape.entries(data, "models"):
        where = f"models[{index}]."
        for key in ("id", "name", "sha256", "license", "license_url"):
            shape.string(model, key, where)
        shape.boolean(model, "default", where)
        shape.boolean(model, "gated", where)
        shape.integer(model, "expected_size_bytes", where)
        checksums = model.get("file_checksums")
        if checksums is not None and not (
            isinstance(checksums, Mapping) and all(isinstance(v, str) for v in checksums.values())
        ):
            shape.wrong(f"{where}file_checksums", "a mapping of file name to checksum", checksums)
        source = model.get("source")
        if source == "huggingface":
            shape.string(model, "repo_id", where, required=True)
            shape.string(model, "revision", where)
            shape.string_list(model, "files", where, required=True)
        elif source == "url":
            shape.string(model, "url", where, required=True)
        elif source is None:
            shape.missing(
                f"{where}source", "add `source: huggingface` (with repo_id, files) or `source: url`"
            )
        else:
            shape.wrong(f"{where}source", "`huggingface` or `url`", source)
    for index, asset in shape.entries(data, "assets"):
        where = f"assets[{index}]."
        for key in ("type_id", "label"):
            shape.string(asset, key, where, required=True)
        shape.string_list(asset, "extensions", where, required=True)
        shape.integer(asset, "max_size_bytes", where)
        for key in ("icon_hint", "node_param", "system_dir"):
            shape.string(asset, key, where)
        content_type = asset.get("content_type")
        if content_type is not None and content_type not in ("text", "binary"):
            shape.wrong(f"{where}content_type", "`text` or `binary`", content_type)
    bundle_info = shape.mapping(data, "bundle")
    if bundle_info is not None:
        shape.string(bundle_info, "url", "bundle.", required=True)
        shape.string(bundle_info, "sha256", "bundle.", required=True)
        shape.integer(bundle_info, "size_bytes", "bundle.")
    return shape.fatal


# --- what the parse accepts but is still wrong --------------------------------------------------


def _policy_problems(
    data: Mapping[str, Any], path: Path, bundle: str | None, out: list[Violation]
) -> None:
    if data.get("kind") == "wasm":
        why = "this bundle is in native/, where only `native` plugins belong"
        out.append(
            Violation("manifest-kind", path, {"value": "wasm", "why": why}, bundle, key="kind")
        )
    for key in ("id", "version"):
        value = data.get(key)
        if isinstance(value, str):
            problem = path_component_problem(value)
            if problem:
                out.append(
                    Violation(
                        "manifest-unsafe-name",
                        path,
                        {"value": value, "problem": problem},
                        bundle,
                        key=key,
                    )
                )
    version = data.get("version")
    if isinstance(version, str) and not path_component_problem(version) and not is_semver(version):
        out.append(
            Violation(
                "manifest-version-not-semver", path, {"value": version}, bundle, key="version"
            )
        )
    node_kind = data.get("node_kind")
    if isinstance(node_kind, str):
        problem, suggestion = _node_kind_problem(node_kind)
        if problem:
            details = {"value": node_kind, "problem": problem, "suggestion": suggestion}
            out.append(Violation("manifest-node-kind", path, details, bundle, key="node_kind"))
    entrypoint = data.get("entrypoint")
    if isinstance(entrypoint, str):
        problem = relative_path_problem(entrypoint)
        if problem is None and PurePath(entrypoint).suffix[1:] not in LIBRARY_EXTENSIONS:
            problem = "must end in .so, .dylib or .dll (exactly, lowercase) for a native plugin"
        if problem:
            details = {"value": entrypoint, "problem": problem}
            out.append(
                Violation("manifest-entrypoint-unsafe", path, details, bundle, key="entrypoint")
            )
    assets = data.get("assets")
    if isinstance(assets, list):
        for index, asset in enumerate(assets):
            if isinstance(asset, Mapping):
                _asset_problems(index, asset, path, bundle, out)


def _node_kind_problem(kind: str) -> tuple[str | None, str]:
    if kind == "":
        return "must not be empty", ""
    if kind != kind.strip():
        return "must not start or end with whitespace", f" (`{kind.strip()}`)"
    if "::" in kind:
        bare = kind.rsplit("::", 1)[-1]
        return "must be a bare kind, without '::'", f" (`{bare}`)" if bare else ""
    return None, ""


def _asset_problems(
    index: int, asset: Mapping[str, Any], path: Path, bundle: str | None, out: list[Violation]
) -> None:
    where = f"assets[{index}]"
    type_id = asset.get("type_id")
    if isinstance(type_id, str) and not ASSET_TYPE_ID.fullmatch(type_id):
        suggestion = re.sub(r"[^A-Za-z0-9_-]+", "-", type_id).strip("-") or "my-asset"
        details = {"index": index, "value": type_id, "suggestion": suggestion}
        out.append(
            Violation("asset-type-id-invalid", path, details, bundle, key=f"{where}.type_id")
        )
    system_dir = asset.get("system_dir")
    if isinstance(system_dir, str):
        problem = relative_path_problem(system_dir)
        if problem:
            details = {"index": index, "value": system_dir, "problem": problem}
            out.append(
                Violation(
                    "asset-system-dir-unsafe", path, details, bundle, key=f"{where}.system_dir"
                )
            )
    size = asset.get("max_size_bytes")
    if _is_int(size) and size > MAX_ASSET_BYTES:
        details = {"index": index, "value": size, "shown": f"{size / (1024 * 1024):.1f} MiB"}
        out.append(
            Violation("asset-too-large", path, details, bundle, key=f"{where}.max_size_bytes")
        )
