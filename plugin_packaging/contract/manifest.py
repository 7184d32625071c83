"""The `plugin.yml` schema as StreamKit's server reads it, and the one validator of it.

`manifest_problems` returns every problem of one manifest's data, each a `ManifestProblem` named
by its rule code (the words people read live in the rule table, `rules/loader.py`). The
generator refuses to write a manifest with problems, `copy` and `package` refuse to install or
publish one, and the checker reports them on installed bundles: all through this function.

A problem is *fatal* when the server's parse into its `PluginManifest` struct fails on it (a
missing required key, a value of the wrong type, an invalid `kind`, text that is not Unicode):
the server then drops the whole file. The others (unsafe ids, a version that is not SemVer, a
`::` in `node_kind`, asset rules) pass the parse but are wrong for the marketplace, release
tooling or the asset registry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, TypeGuard

from plugin_packaging.contract import (
    LIBRARY_EXTENSIONS,
    is_unicode_text,
    path_component_problem,
    relative_path_problem,
)
from plugin_packaging.contract.semver import is_semver

#: The keys of the server's `PluginManifest`, in the order the generated file lists them, and
#: what each holds. Only these are copied into an installed manifest, so keys that only
#: StreamKit's build tooling reads (`artifact`, `artifact_<accelerator>`, `accelerators`,
#: `extra_files`, `repo`) never reach it.
SERVER_SCHEMA: dict[str, str] = {
    "schema_version": "integer",
    "id": "string",
    "name": "string",
    "version": "string",
    "node_kind": "string",
    "kind": "string",
    "entrypoint": "string",
    "description": "string",
    "license": "string",
    "license_url": "string",
    "homepage": "string",
    "repository": "string",
    "compatibility": "mapping",
    "models": "list of models",
    "assets": "list of asset types",
}
SERVER_KEYS = tuple(SERVER_SCHEMA)
#: Top-level keys whose value the server parses as a string.
STRING_KEYS = tuple(key for key, holds in SERVER_SCHEMA.items() if holds == "string")
#: Keys of a source plugin.yml that only StreamKit's build and release tooling reads.
SOURCE_ONLY_KEYS = ("artifact", "accelerators", "extra_files", "repo")
#: `artifact_<accelerator>`: the library of an accelerator variant (`artifact_cuda`).
ACCELERATOR_ARTIFACT_PREFIX = "artifact_"
#: Every key a source plugin.yml may hold.
SOURCE_KEYS = (*SERVER_KEYS, *SOURCE_ONLY_KEYS)


def unknown_source_keys(data: Mapping[str, Any]) -> list[str]:
    """Keys of a source manifest that neither the server nor StreamKit's tooling knows: a typo
    (`descripton:`) would otherwise vanish from the installed manifest without a word."""
    return [
        key
        for key in data
        if not (
            key in SOURCE_KEYS
            or (isinstance(key, str) and key.startswith(ACCELERATOR_ARTIFACT_PREFIX))
        )
    ]


#: What the server's `PluginManifest` parse cannot do without (also a registry manifest's), and
#: how to add each.
_REQUIRED_FIXES = {
    "id": "add `id: <plugin-id>` (the plugin's source directory name)",
    "version": 'add `version: "X.Y.Z"` (the plugin crate\'s [package].version)',
    "node_kind": "add `node_kind: <kind>`, the bare kind the library registers",
    "kind": "add `kind: native`",
    "entrypoint": "add `entrypoint: <library file name>`",
}
REQUIRED_KEYS = tuple(_REQUIRED_FIXES)
#: The `kind` values the server's parse accepts; only `native` belongs in native/.
KINDS = ("native", "wasm")
#: Where a model comes from; each source requires its own keys beside it.
MODEL_SOURCES = ("huggingface", "url")

#: The server's cap on one asset type's `max_size_bytes` (N10).
MAX_ASSET_BYTES = 100 * 1024 * 1024
ASSET_TYPE_ID = re.compile(r"[A-Za-z0-9_-]+")
#: Deeper than any real manifest (models[].file_checksums is three levels down).
MAX_VALUE_DEPTH = 32


@dataclass(frozen=True)
class ManifestProblem:
    """One rule a manifest breaks: the rule's code, the key it is about, the message's details."""

    code: str
    key: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    #: True when the server's parse fails on it and the whole file is dropped.
    fatal: bool = False


def manifest_problems(data: Mapping[str, Any]) -> tuple[ManifestProblem, ...]:
    """Every problem of one native plugin's manifest data, parse problems first."""
    out: list[ManifestProblem] = []
    _parse_problems(data, out)
    _policy_problems(data, out)
    return tuple(out)


def parses(problems: tuple[ManifestProblem, ...]) -> bool:
    """True when the server's parse accepts a manifest with these problems."""
    return not any(problem.fatal for problem in problems)


# --- what the server's parse refuses ------------------------------------------------------------

# `kind` has its own rule (`manifest-kind`), which also covers a value that is not a string.
_STRINGS = tuple(key for key in STRING_KEYS if key != "kind")


def _type_name(value: Any) -> str:
    """A value's type as a person reads YAML: `a number (0.1)`, `a boolean (true)`, `null`."""
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

    def __init__(self, out: list[ManifestProblem]) -> None:
        self.out = out

    def missing(self, key: str, fix: str) -> None:
        self.out.append(ManifestProblem("manifest-key-missing", key, {"fix": fix}, fatal=True))

    def wrong(self, key: str, expected: str, value: Any, fix: str | None = None) -> None:
        if fix is None:
            fix = f"write `{key}` as {expected}"
            if expected == "a string" and isinstance(value, (int, float, bool)):
                leaf = key.rsplit(".", 1)[-1]
                fix = (
                    f'quote it, with the characters you meant: `{leaf}: "..."`; unquoted, YAML reads '
                    f"it as {_type_name(value)}"
                )
        details = {"expected": expected, "actual": _type_name(value), "fix": fix}
        self.out.append(ManifestProblem("manifest-wrong-type", key, details, fatal=True))

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


def _parse_problems(data: Mapping[str, Any], out: list[ManifestProblem]) -> None:
    """Add what makes the server's `PluginManifest` parse fail."""
    shape = _Shape(out)
    for key in REQUIRED_KEYS:
        if key not in data or data[key] is None:
            shape.missing(key, _REQUIRED_FIXES[key])
    for key in _STRINGS:
        if data.get(key) is not None:
            shape.string(data, key, "")
    if "schema_version" in data:
        shape.integer(data, "schema_version", "")
    kind = data.get("kind")
    if kind is not None and kind not in KINDS:
        why = "the server accepts only `native` or `wasm`, exactly, and drops the whole manifest"
        out.append(ManifestProblem("manifest-kind", "kind", {"value": kind, "why": why}, True))
    compatibility = shape.mapping(data, "compatibility")
    if compatibility is not None:
        shape.string(compatibility, "streamkit", "compatibility.")
        shape.string_list(compatibility, "os", "compatibility.")
        shape.string_list(compatibility, "arch", "compatibility.")
    for index, model in shape.entries(data, "models"):
        _model_shape(shape, index, model)
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
    for key, value in data.items():
        _text_problems(value, str(key), out)


def _model_shape(shape: _Shape, index: int, model: Mapping[str, Any]) -> None:
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
        expected = " or ".join(f"`{name}`" for name in MODEL_SOURCES)
        shape.wrong(f"{where}source", expected, source)


def _text_problems(value: Any, key: str, out: list[ManifestProblem], depth: int = 0) -> bool:
    """Add a problem for text the server's UTF-8 strings cannot hold (a YAML escape such as
    "\\udcff" reads as a lone surrogate), or absurd nesting; True when one was added."""
    if depth > MAX_VALUE_DEPTH:
        out.append(ManifestProblem("manifest-too-deep", key, {}, fatal=True))
        return True
    if isinstance(value, str):
        if not is_unicode_text(value):
            out.append(ManifestProblem("manifest-not-unicode", key, {"value": value}, fatal=True))
            return True
    elif isinstance(value, Mapping):
        for item_key, item in value.items():
            if _text_problems(item_key, key, out, depth + 1):
                return True
            if _text_problems(item, key, out, depth + 1):
                return True
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            if _text_problems(item, key, out, depth + 1):
                return True
    return False


# --- what the parse accepts but is still wrong --------------------------------------------------


def _policy_problems(data: Mapping[str, Any], out: list[ManifestProblem]) -> None:
    if data.get("kind") == "wasm":
        why = "a native plugin's manifest must say `native` (wasm plugins live in wasm/)"
        out.append(ManifestProblem("manifest-kind", "kind", {"value": "wasm", "why": why}))
    for key in ("id", "version"):
        value = data.get(key)
        if isinstance(value, str):
            problem = path_component_problem(value)
            if problem:
                details = {"value": value, "problem": problem}
                out.append(ManifestProblem("manifest-unsafe-name", key, details))
    version = data.get("version")
    if isinstance(version, str) and not path_component_problem(version) and not is_semver(version):
        out.append(ManifestProblem("manifest-version-not-semver", "version", {"value": version}))
    node_kind = data.get("node_kind")
    if isinstance(node_kind, str):
        problem, suggestion = _node_kind_problem(node_kind)
        if problem:
            details = {"value": node_kind, "problem": problem, "suggestion": suggestion}
            out.append(ManifestProblem("manifest-node-kind", "node_kind", details))
    entrypoint = data.get("entrypoint")
    if isinstance(entrypoint, str):
        problem = _entrypoint_problem(entrypoint)
        if problem:
            details = {"value": entrypoint, "problem": problem}
            out.append(ManifestProblem("manifest-entrypoint-unsafe", "entrypoint", details))
    assets = data.get("assets")
    if isinstance(assets, list):
        for index, asset in enumerate(assets):
            if isinstance(asset, Mapping):
                _asset_problems(index, asset, out)


def _entrypoint_problem(entrypoint: str) -> str | None:
    """Why `entrypoint` cannot name a native library inside a bundle, or None when it can."""
    problem = relative_path_problem(entrypoint)
    if problem is None and PurePosixPath(entrypoint).suffix[1:] not in LIBRARY_EXTENSIONS:
        problem = "must end in .so, .dylib or .dll (exactly, lowercase) for a native plugin"
    return problem


def _node_kind_problem(kind: str) -> tuple[str | None, str]:
    if kind == "":
        return "must not be empty", ""
    if kind != kind.strip():
        return "must not start or end with whitespace", f" (`{kind.strip()}`)"
    if "::" in kind:
        bare = kind.rsplit("::", 1)[-1]
        return "must be a bare kind, without '::'", f" (`{bare}`)" if bare else ""
    return None, ""


def _asset_problems(index: int, asset: Mapping[str, Any], out: list[ManifestProblem]) -> None:
    where = f"assets[{index}]"
    type_id = asset.get("type_id")
    if isinstance(type_id, str) and not ASSET_TYPE_ID.fullmatch(type_id):
        suggestion = re.sub(r"[^A-Za-z0-9_-]+", "-", type_id).strip("-") or "my-asset"
        details = {"index": index, "value": type_id, "suggestion": suggestion}
        out.append(ManifestProblem("asset-type-id-invalid", f"{where}.type_id", details))
    system_dir = asset.get("system_dir")
    if isinstance(system_dir, str):
        problem = relative_path_problem(system_dir)
        if problem:
            details = {"index": index, "value": system_dir, "problem": problem}
            out.append(ManifestProblem("asset-system-dir-unsafe", f"{where}.system_dir", details))
    size = asset.get("max_size_bytes")
    if _is_int(size) and size > MAX_ASSET_BYTES:
        details = {"index": index, "value": size, "shown": f"{size / (1024 * 1024):.1f} MiB"}
        out.append(ManifestProblem("asset-too-large", f"{where}.max_size_bytes", details))
