"""Where plugins come from: source manifests in the checkout and extras declared in settings.

A `PluginSource` is what the checkout says about one plugin, before anything is built: its id,
the keys of its source manifest, where its crate lives and where the build puts the library.
Discovery collects every problem it meets instead of stopping at the first one, so one broken
`plugin.yml` never hides the state of the others.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from plugin_packaging.contract import (
    DEPRECATED_SOURCE_MANIFEST_NAME,
    SOURCE_MANIFEST_NAMES,
    is_native_library_name,
    path_component_problem,
    relative_path_problem,
)
from plugin_packaging.contract.manifest import SOURCE_KEYS, unknown_source_keys
from plugin_packaging.errors import PackagingError, did_you_mean, display_path
from plugin_packaging.settings import Settings

#: File names of source manifests, best first; `marketplace.yml` is the deprecated one.


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
    #: Names a declaration that could not be used may stand for: the directory of a manifest (or
    #: of a plugin directory) that could not be read, its id when that much was readable, the id
    #: of a broken extra. An installed bundle of such a name is not an orphan.
    unresolved: frozenset[str] = frozenset()
    #: False when a directory that may hold any number of declarations could not be listed:
    #: then no installed bundle can be called an orphan.
    complete: bool = True


@dataclass(frozen=True)
class ManifestSearch:
    """Where the source patterns led: the manifests, and the directories that could not be read."""

    #: One source manifest per plugin directory (the best name wins), sorted by directory.
    paths: tuple[Path, ...]
    #: A `source-dir-unreadable` error per directory the search could not look into.
    errors: tuple[PackagingError, ...] = ()
    #: Names of the plugin directories among those (the directories a manifest would lie in).
    unreadable_plugin_dirs: frozenset[str] = frozenset()
    #: False when a directory above the plugin directories could not be listed: how many plugins
    #: it holds, and which, is unknown.
    complete: bool = True


def find_source_manifests(settings: Settings) -> ManifestSearch:
    """The source manifests the patterns of `settings` match under the root.

    Unlike `Path.glob`, which silently skips a directory it may not list (the plugin in it would
    vanish, and its installed bundle would look orphaned), the search reports each such directory
    as an error. A path that exists but cannot be followed (a symlink loop, a dangling symlink) is
    returned too, so that reading it reports the problem.
    """
    search = _ManifestSearcher(settings.root)
    by_dir: dict[Path, Path] = {}
    for pattern in settings.source_patterns:
        for path in sorted(search.matches(pattern)):
            current = by_dir.get(path.parent)
            if current is None or _manifest_rank(path) < _manifest_rank(current):
                by_dir[path.parent] = path
    return ManifestSearch(
        paths=tuple(by_dir[d] for d in sorted(by_dir)),
        errors=tuple(search.errors.values()),
        unreadable_plugin_dirs=frozenset(search.unreadable_plugin_dirs),
        complete=search.complete,
    )


def _is_wildcard(part: str) -> bool:
    return any(ch in part for ch in "*?[")


def _may_be_directory(entry: os.DirEntry[str]) -> bool:
    """A directory, or a symlink that may lead to one: a symlink loop is kept, so that listing it
    in turn reports it; a dangling symlink then simply matches nothing."""
    try:
        return entry.is_dir() or entry.is_symlink()
    except OSError:
        return True


class _ManifestSearcher:
    """Expands glob patterns (`*`, `?`, `[...]`, `**`) as `Path.glob` does, one directory listing
    per directory however many patterns share it, and keeps what could not be listed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.errors: dict[Path, PackagingError] = {}
        self.unreadable_plugin_dirs: set[str] = set()
        self.complete = True
        # The default patterns differ only in the file name: their directories are expanded once.
        self._directories: dict[tuple[str, ...], list[Path]] = {}

    def matches(self, pattern: str) -> list[Path]:
        parts = [part for part in pattern.split("/") if part not in ("", ".")]
        if not parts:
            return []
        *parents, name = parts
        directories = self._expand(tuple(parents))
        if name == "**":
            return directories + [d for base in directories for d in self._walk(base)]
        if _is_wildcard(name):
            # The directories listed here are those a manifest would lie in: plugin directories.
            return [
                directory / match
                for directory in directories
                for match in fnmatch.filter(self._names(directory, plugin_dir=True), name)
            ]
        # Looked at as strings, made paths only when present: this runs for every plugin
        # directory and manifest name on every install, nothing changed or not.
        return [
            directory / name
            for directory in directories
            if self._present(os.path.join(directory, name), directory)
        ]

    def _expand(self, parts: tuple[str, ...]) -> list[Path]:
        """The directories matching `parts` (a pattern without its file name), memoised."""
        found = self._directories.get(parts)
        if found is not None:
            return found
        if not parts:
            found = [self.root]
        else:
            bases, part = self._expand(parts[:-1]), parts[-1]
            if part == "**":
                found = [d for base in bases for d in (base, *self._walk(base))]
            elif _is_wildcard(part):
                found = [
                    base / match
                    for base in bases
                    for match in fnmatch.filter(self._names(base, plugin_dir=False), part)
                ]
            else:
                # Checked when looked into: a missing literal directory simply matches nothing.
                found = [base / part for base in bases]
        self._directories[parts] = found
        return found

    def _names(self, directory: Path, *, plugin_dir: bool) -> list[str]:
        """The entry names of `directory`: all of them in a plugin directory, else only those that
        may be directories. An unlistable directory is recorded and yields nothing."""
        try:
            with os.scandir(directory) as listing:
                if plugin_dir:
                    return [entry.name for entry in listing]
                entries = list(listing)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            self._unreadable(directory, exc, plugin_dir=plugin_dir)
            return []
        return [entry.name for entry in entries if _may_be_directory(entry)]

    def _walk(self, base: Path) -> list[Path]:
        """Every directory below `base` (`**`), not following symlinks, as `Path.glob` does."""
        found: list[Path] = []
        pending = [base]
        while pending:
            directory = pending.pop()
            try:
                with os.scandir(directory) as listing:
                    children = [
                        directory / e.name for e in listing if e.is_dir(follow_symlinks=False)
                    ]
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                self._unreadable(directory, exc, plugin_dir=False)
                continue
            children.sort()
            found.extend(children)
            pending.extend(reversed(children))
        return found

    def _present(self, path: str, directory: Path) -> bool:
        """True when `path` (in `directory`) is there, even if it cannot be followed (reading it
        will say why); a plugin directory that may not be entered is recorded instead."""
        try:
            os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except PermissionError as exc:
            self._unreadable(directory, exc, plugin_dir=True)
            return False
        except OSError:
            return True  # a symlink loop on the way, a name too long...: reading it will say so
        return True

    def _unreadable(self, directory: Path, exc: OSError, *, plugin_dir: bool) -> None:
        if plugin_dir:
            self.unreadable_plugin_dirs.add(directory.name)
        else:
            self.complete = False
        self.errors.setdefault(
            directory,
            PackagingError(
                "source-dir-unreadable",
                f"cannot be read ({exc.strerror or exc}): the plugin sources in it are left out of "
                "this run, and their installed bundles are kept",
                directory,
                hint=f"make the directory readable (e.g. `chmod u+rx {display_path(directory)}`), "
                "or move it out of the checkout",
            ),
        )


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
    search = find_source_manifests(settings)
    sources: list[PluginSource] = []
    errors: list[PackagingError] = list(search.errors)
    warnings: list[PackagingError] = []
    unresolved: set[str] = set(search.unreadable_plugin_dirs)
    for path in search.paths:
        data: Any = None
        try:
            data = _parsed_manifest(path, cache)
            source = _source_from_manifest(settings, path, data)
        except PackagingError as exc:
            errors.append(exc)
            unresolved.add(path.parent.name)
            if isinstance(data, Mapping) and isinstance(data.get("id"), str):
                unresolved.add(data["id"])
            continue
        if source is None:
            continue
        if path.name == DEPRECATED_SOURCE_MANIFEST_NAME:
            warnings.append(
                PackagingError(
                    "source-manifest-deprecated",
                    "uses the deprecated name marketplace.yml",
                    path,
                    hint="rename it to plugin.yml and add a `version` key",
                )
            )
        for key in unknown_source_keys(data):
            warnings.append(
                PackagingError(
                    "source-unknown-key",
                    f"has the key {key!r}, which neither StreamKit's server nor its tooling reads",
                    path,
                    hint=did_you_mean(str(key), SOURCE_KEYS) or "remove it, or check its spelling",
                )
            )
        if source.id != path.parent.name:
            warnings.append(
                PackagingError(
                    "source-id-differs-from-directory",
                    f"declares id {source.id!r} in directory {path.parent.name!r}",
                    path,
                    hint="StreamKit's tooling expects the id to equal the directory name",
                    key="id",
                )
            )
        sources.append(source)
    for plugin_id, declaration in sorted(settings.extras.items()):
        try:
            sources.append(_source_from_extra(settings, plugin_id, declaration))
        except PackagingError as exc:
            errors.append(exc)
            unresolved.add(str(plugin_id))
    unique, duplicates = _without_duplicate_ids(sources)
    errors.extend(duplicates)
    if errors or warnings:
        from plugin_packaging._fs.yamlio import placed_at_key

        errors = [placed_at_key(error) for error in errors]
        warnings = [placed_at_key(warning) for warning in warnings]
    return SourceScan(
        tuple(unique),
        tuple(errors),
        tuple(warnings),
        unresolved=frozenset(unresolved),
        complete=search.complete,
    )


def select_sources(scan: SourceScan, only: Sequence[str]) -> list[PluginSource]:
    """The sources named by `only` in the order named (all, in discovery order, when empty);
    an id that no source declares is a usage mistake, reported with the ids that exist."""
    if not only:
        return list(scan.sources)
    known = {s.id: s for s in scan.sources}
    unknown = [plugin_id for plugin_id in only if plugin_id not in known]
    for plugin_id in unknown:
        # Declared, but its manifest could not be used: that error, not "no such plugin".
        broken = _error_about(scan, plugin_id)
        if broken is not None:
            raise broken
    if unknown:
        raise PackagingError(
            "unknown-plugin",
            f"no plugin source with id {', '.join(map(repr, unknown))}",
            hint=did_you_mean(unknown[0], known)
            or "known ids: "
            + (", ".join(sorted(known)) or "none (is --root a StreamKit checkout?)"),
        )
    return [known[plugin_id] for plugin_id in dict.fromkeys(only)]


def _error_about(scan: SourceScan, plugin_id: str) -> PackagingError | None:
    """The scan error about the manifest in directory `plugin_id`, when that is why it is missing."""
    if plugin_id not in scan.unresolved:
        return None
    for error in scan.errors:
        if error.path is not None and Path(error.path).parent.name == plugin_id:
            return error
    return None


def _parsed_manifest(path: Path, cache: dict[str, Any] | None) -> Any:
    """The YAML data of a source manifest, from `cache` when the file is unchanged."""
    from plugin_packaging.install.state import file_signature

    key = str(path)
    signature = file_signature(path)
    if cache is not None and signature is not None:
        entry = cache.get(key)
        if isinstance(entry, dict) and entry.get("signature") == signature:
            return entry["data"]
    from plugin_packaging._fs.yamlio import load_yaml_file

    data = load_yaml_file(path)
    if cache is not None and signature is not None and _is_plain_json(data):
        cache[key] = {"signature": signature, "data": data}
    return data


def _is_plain_json(data: Any) -> bool:
    """True when `data` survives a JSON round trip unchanged (no dates, sets or int keys)."""
    import json

    try:
        same: bool = json.loads(json.dumps(data)) == data
    except (TypeError, ValueError):
        return False
    return same


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
    data = {
        "id": plugin_id,
        "kind": "native",
        **{k: v for k, v in declaration.items() if k != "crate"},
    }
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
        raise PackagingError(
            "source-id-missing", f"has no `{key}`", where, hint="add `id: <plugin-id>`"
        )
    problem = path_component_problem(value)
    if problem or not isinstance(value, str):  # (a non-string always has a problem)
        raise PackagingError(
            "source-id-unsafe",
            f"`{key}` {value!r} {problem}",
            where,
            hint="use a plain name such as `my-plugin` (it becomes a directory name)",
            key=key,
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
            key=key,
        )
    artifact = PurePosixPath(value)
    if not is_native_library_name(artifact.name):
        raise PackagingError(
            "source-artifact-not-library",
            f"`{key}` {value!r} does not name a library (.so, .dylib or .dll)",
            where,
            hint="point it at the cdylib the build produces, e.g. target/release/libfoo.so",
            key=key,
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
                    key="id" if source.manifest_path is not None else None,
                )
            )
    return list(seen.values()), errors


def _relative(settings: Settings, path: Path) -> str:
    try:
        return path.relative_to(settings.root).as_posix()
    except ValueError:
        return path.as_posix()
