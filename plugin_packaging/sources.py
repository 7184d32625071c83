"""Where plugins come from: source manifests in the checkout and extras declared in settings.

A `PluginSource` is what the checkout says about one plugin, before anything is built: its id,
the keys of its source manifest, where its crate lives and where the build puts the library.
Discovery collects every problem it meets instead of stopping at the first one, so one broken
`plugin.yml` never hides the state of the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from .errors import PackagingError
from .names import is_native_library_name, path_component_problem, relative_path_problem
from .settings import Settings

#: File names of source manifests, best first; `marketplace.yml` is the deprecated one.
SOURCE_MANIFEST_NAMES = ("plugin.yml", "plugin.yaml", "marketplace.yml")
DEPRECATED_MANIFEST_NAME = "marketplace.yml"


@dataclass(frozen=True)
class PluginSource:
    """One plugin as the checkout declares it."""

    id: str
    #: The file the declaration comes from (a source manifest, or None for a settings extra).
    manifest_path: Path | None
    #: How to point a person at the declaration: a relative path or `plugins.extras.<id>`.
    origin: str
    #: The declaration's keys, as written (build-only keys included).
    data: Mapping[str, Any]
    #: The crate directory holding `Cargo.toml`, when there is one.
    crate_dir: Path | None
    #: The build output for the host naming, relative to the root (`artifact` key).
    artifact: PurePosixPath

    @property
    def is_extra(self) -> bool:
        return self.manifest_path is None


@dataclass(frozen=True)
class SourceScan:
    """Everything discovery found: usable sources, and problems with the rest."""

    sources: tuple[PluginSource, ...]
    errors: tuple[PackagingError, ...] = ()
    warnings: tuple[PackagingError, ...] = ()
    #: Every file whose content decided the scan, for the incremental quick check.
    inputs: tuple[Path, ...] = field(default=())


def source_manifest_paths(settings: Settings) -> list[Path]:
    """The source manifests under the root, one per plugin directory (best name wins).

    A path that exists but cannot be read (a symlink loop, a dangling symlink, a directory we
    may not enter) is returned too, so that reading it reports the problem: `Path.glob` would
    drop it silently, and the plugin would vanish (and its installed bundle look orphaned).
    """
    by_dir: dict[Path, Path] = {}
    directories: dict[str, list[Path]] = {}  # the default patterns share one directory pattern
    for pattern in settings.source_patterns:
        for path in sorted(_matches(settings.root, pattern, directories)):
            current = by_dir.get(path.parent)
            if current is None or _manifest_rank(path) < _manifest_rank(current):
                by_dir[path.parent] = path
    return [by_dir[d] for d in sorted(by_dir)]


def _matches(root: Path, pattern: str, directories: dict[str, list[Path]]) -> list[Path]:
    parent, _, name = pattern.rpartition("/")
    if any(ch in name for ch in "*?["):
        return list(root.glob(pattern))
    if parent not in directories:
        directories[parent] = list(root.glob(parent)) if parent else [root]
    return [directory / name for directory in directories[parent] if _present(directory / name)]


def _present(path: Path) -> bool:
    """True when `path` is there, even if it cannot be followed or we may not look at it."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # permission denied, name too long...: reading it will say so
    return True


def _manifest_rank(path: Path) -> int:
    try:
        return SOURCE_MANIFEST_NAMES.index(path.name)
    except ValueError:
        return len(SOURCE_MANIFEST_NAMES)


def scan_sources(settings: Settings, cache: dict[str, Any] | None = None) -> SourceScan:
    """Find every plugin source: manifests on disk, then extras from settings.

    `cache` maps a manifest path to its last signature and parsed data; a manifest whose
    signature is unchanged is not parsed again (and YAML is not even imported when none changed).
    """
    sources: list[PluginSource] = []
    errors: list[PackagingError] = []
    warnings: list[PackagingError] = []
    for path in source_manifest_paths(settings):
        try:
            data = _parsed_manifest(path, cache)
            source = _source_from_manifest(settings, path, data)
        except PackagingError as exc:
            errors.append(exc)
            continue
        if source is None:
            continue
        if path.name == DEPRECATED_MANIFEST_NAME:
            warnings.append(
                PackagingError(
                    "source-manifest-deprecated",
                    "uses the deprecated name marketplace.yml",
                    path,
                    hint="rename it to plugin.yml and add a `version` key",
                )
            )
        if source.id != path.parent.name:
            warnings.append(
                PackagingError(
                    "source-id-differs-from-directory",
                    f"declares id {source.id!r} in directory {path.parent.name!r}",
                    path,
                    hint="StreamKit's tooling expects the id to equal the directory name",
                )
            )
        sources.append(source)
    for plugin_id, declaration in sorted(settings.extras.items()):
        try:
            sources.append(_source_from_extra(settings, plugin_id, declaration))
        except PackagingError as exc:
            errors.append(exc)
    unique, duplicates = _without_duplicate_ids(sources)
    errors.extend(duplicates)
    return SourceScan(tuple(unique), tuple(errors), tuple(warnings))


def _parsed_manifest(path: Path, cache: dict[str, Any] | None) -> Any:
    """The YAML data of a source manifest, from `cache` when the file is unchanged."""
    from .state import file_signature

    key = str(path)
    signature = file_signature(path)
    if cache is not None and signature is not None:
        entry = cache.get(key)
        if isinstance(entry, dict) and entry.get("signature") == signature:
            return entry["data"]
    from .yamlio import load_yaml_file

    data = load_yaml_file(path)
    if cache is not None and signature is not None and _is_plain_json(data):
        cache[key] = {"signature": signature, "data": data}
    return data


def _is_plain_json(data: Any) -> bool:
    """True when `data` survives a JSON round trip unchanged (no dates, sets or int keys)."""
    import json

    try:
        return json.loads(json.dumps(data)) == data
    except (TypeError, ValueError):
        return False


def _source_from_manifest(settings: Settings, path: Path, data: Any) -> PluginSource | None:
    if not isinstance(data, Mapping):
        raise PackagingError(
            "source-manifest-not-mapping",
            "must be a YAML mapping of keys to values (id, version, artifact, ...)",
            path,
        )
    kind = data.get("kind", "native")
    if kind == "wasm":
        return None  # WASM plugins live in P/wasm and are out of this tool's scope.
    plugin_id = _checked_id(data.get("id"), path, "id")
    artifact = data.get("artifact")
    if artifact is None:
        raise PackagingError(
            "source-artifact-missing",
            "has no `artifact` key, so the built library cannot be found",
            path,
            hint="add e.g. `artifact: target/plugins/release/lib<name>.so` (relative to the root)",
        )
    return PluginSource(
        id=plugin_id,
        manifest_path=path,
        origin=_relative(settings, path),
        data=dict(data),
        crate_dir=path.parent,
        artifact=_checked_artifact(artifact, path, "artifact"),
    )


def _source_from_extra(settings: Settings, plugin_id: str, declaration: Any) -> PluginSource:
    origin = f"plugins.extras.{plugin_id}"
    where = Path(f"settings ({origin})")
    if not isinstance(declaration, Mapping):
        raise PackagingError(
            "extra-not-mapping",
            "must be a mapping with at least `artifact` and `node_kind`",
            where,
        )
    _checked_id(plugin_id, where, "id")
    for key in ("artifact", "node_kind"):
        if not declaration.get(key):
            raise PackagingError(
                "extra-key-missing",
                f"has no `{key}`",
                where,
                hint="declare artifact (the built library, relative to the root) and node_kind",
            )
    crate = declaration.get("crate")
    crate_dir = None
    if crate is not None:
        problem = relative_path_problem(crate)
        if problem:
            raise PackagingError("extra-bad-crate", f"crate path {crate!r} {problem}", where)
        crate_dir = settings.root / crate
    data = {"id": plugin_id, "kind": "native", **{k: v for k, v in declaration.items() if k != "crate"}}
    return PluginSource(
        id=plugin_id,
        manifest_path=None,
        origin=origin,
        data=data,
        crate_dir=crate_dir,
        artifact=_checked_artifact(declaration["artifact"], where, "artifact"),
    )


def _checked_id(value: Any, where: Path, key: str) -> str:
    if value is None:
        raise PackagingError("source-id-missing", f"has no `{key}`", where, hint="add `id: <plugin-id>`")
    problem = path_component_problem(value)
    if problem:
        raise PackagingError(
            "source-id-unsafe",
            f"`{key}` {value!r} {problem}",
            where,
            hint="use a plain name such as `my-plugin` (it becomes a directory name)",
        )
    return value


def _checked_artifact(value: Any, where: Path, key: str) -> PurePosixPath:
    problem = relative_path_problem(value)
    if problem:
        raise PackagingError(
            "source-artifact-unsafe",
            f"`{key}` {value!r} {problem}",
            where,
            hint="give the build output relative to the checkout root",
        )
    artifact = PurePosixPath(value)
    if not is_native_library_name(artifact.name):
        raise PackagingError(
            "source-artifact-not-library",
            f"`{key}` {value!r} does not name a library (.so, .dylib or .dll)",
            where,
            hint="point it at the cdylib the build produces, e.g. target/release/libfoo.so",
        )
    return artifact


def _without_duplicate_ids(
    sources: list[PluginSource],
) -> tuple[list[PluginSource], list[PackagingError]]:
    """Keep the first declaration of each id; a second one is an error, never a silent winner."""
    seen: dict[str, PluginSource] = {}
    errors = []
    for source in sources:
        first = seen.setdefault(source.id, source)
        if first is not source:
            errors.append(
                PackagingError(
                    "source-id-duplicate",
                    f"plugin id {source.id!r} is declared twice: by {first.origin} and by {source.origin}",
                    source.manifest_path or Path(source.origin),
                    hint="give each plugin its own id, or remove one declaration",
                )
            )
    return list(seen.values()), errors


def _relative(settings: Settings, path: Path) -> str:
    try:
        return path.relative_to(settings.root).as_posix()
    except ValueError:
        return path.as_posix()
