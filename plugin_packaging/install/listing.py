"""What plugins there are and where each one stands: not built, built, installed, stale, foreign.

The status of a plugin that has a source comes from the install planner itself (a dry run of
`install_plugins`), so "stale" here means exactly "copy-plugins-native would update it". Bundles
in `P/native` that no source declares, and bare libraries left from the flat layout, are listed
from the directory. Nothing is written; the listing is cheap when the install state is current.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from plugin_packaging.contract import MANIFEST_NAME, is_native_library_name, library_stem
from plugin_packaging.errors import PackagingError
from plugin_packaging.settings import Settings

#: Version of the `--format json` document; bumped when a field changes meaning or goes away.
JSON_FORMAT_VERSION = 1

ListedStatus = Literal["not-built", "built", "up-to-date", "stale", "no-source", "bare", "error"]

#: How each status reads in the table.
STATUS_TEXT: dict[str, str] = {
    "not-built": "not built",
    "built": "built, not installed",
    "up-to-date": "installed, up to date",
    "stale": "installed, stale",
    "no-source": "installed, no source here",
    "bare": "bare file, not loaded",
    "error": "ERROR",
}

# The install planner's action for a source -> the status listed.
_STATUS_OF_ACTION: dict[str, ListedStatus] = {
    "not-built": "not-built",
    "install": "built",
    "update": "stale",
    "up-to-date": "up-to-date",
    "failed": "error",
}


@dataclass(frozen=True)
class ListedPlugin:
    """One row of the listing."""

    id: str
    status: ListedStatus
    node_kind: str | None = None
    version: str | None = None
    #: Where it is declared (`plugins/native/x/plugin.yml`, `plugins.extras.x`), None without source.
    source: str | None = None
    #: The build output, relative to the root, when a source declares one.
    artifact: str | None = None
    #: The installed bundle directory (or bare file), when there is one.
    installed: Path | None = None
    #: The library file inside the bundle, or the bare file's name.
    library: str | None = None
    detail: str | None = None
    #: Why the plugin cannot be installed, with the file it is about (status "error").
    error: PackagingError | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "node_kind": self.node_kind,
            "version": self.version,
            "source": self.source,
            "artifact": self.artifact,
            "installed": str(self.installed) if self.installed is not None else None,
            "library": self.library,
            "detail": self.detail,
            "error": _error_dict(self.error) if self.error is not None else None,
        }


@dataclass(frozen=True)
class PluginList:
    """Every plugin found, sources first (in discovery order), then what only the disk holds."""

    root: Path
    plugins_dir: Path
    plugins: tuple[ListedPlugin, ...]
    errors: tuple[PackagingError, ...] = ()
    warnings: tuple[PackagingError, ...] = ()

    @property
    def failed(self) -> bool:
        return bool(self.errors) or any(p.status == "error" for p in self.plugins)

    def to_json(self) -> dict[str, Any]:
        """The `--format json` document (keys in a fixed order; `version` says its format)."""
        return {
            "version": JSON_FORMAT_VERSION,
            "root": str(self.root),
            "plugins_dir": str(self.plugins_dir),
            "plugins": [plugin.to_dict() for plugin in self.plugins],
            "errors": [_error_dict(error) for error in self.errors],
            "warnings": [_error_dict(warning) for warning in self.warnings],
        }


def list_plugins(settings: Settings) -> PluginList:
    """List every plugin source and everything installed in `settings.native_dir`."""
    from plugin_packaging.install.run import install_plugins
    from plugin_packaging.install.state import InstallState
    from plugin_packaging.sources.artifacts import artifact_path
    from plugin_packaging.sources.scan import scan_sources

    # The planner's dry run decides the status; a second scan (cached by the install state, so
    # usually no YAML is parsed) gives the declarations it does not report.
    report = install_plugins(settings, dry_run=True)
    scan = scan_sources(settings, cache=InstallState.load(settings.state_dir).sources)
    sources = {source.id: source for source in scan.sources}
    rows: list[ListedPlugin] = []
    for action in report.actions:
        source = sources.get(action.id)
        if source is None:
            continue  # an orphan: listed below with what its bundle says
        bundle = settings.native_dir / source.id
        installed = bundle if os.path.lexists(bundle) else None
        status = _STATUS_OF_ACTION.get(action.action, "error")
        detail = action.detail
        if action.error is not None:
            detail = action.error.message
        elif status == "not-built" and installed is not None:
            detail = "not built here; an installed copy is kept"
        elif status == "stale":
            detail = "the build differs from the installed copy; copy-plugins-native updates it"
        rows.append(
            ListedPlugin(
                id=source.id,
                status=status,
                node_kind=_text(source.data.get("node_kind")),
                version=action.version or _declared_version(settings, source),
                source=source.origin,
                artifact=str(artifact_path(source, settings.platform, settings.profile)),
                installed=installed,
                library=action.library if installed is not None else None,
                detail=detail,
                error=action.error,
            )
        )
    orphans = {a.id for a in report.actions if a.action == "orphaned"}
    rows.extend(_installed_without_source(settings, set(sources), orphans, _broken_sources(scan)))
    return PluginList(
        root=settings.root,
        plugins_dir=settings.plugins_dir,
        plugins=tuple(rows),
        errors=report.scan_errors,
        warnings=report.scan_warnings,
    )


def _declared_version(settings: Settings, source: Any) -> str | None:
    """The version a source declares, else its crate's (read only when the source has none)."""
    version = source.data.get("version")
    if version is not None:
        return str(version)
    if source.crate_dir is None:
        return None
    from plugin_packaging.sources.cargo import read_crate

    try:
        crate = read_crate(source.crate_dir, stop_at=settings.root)
    except PackagingError:
        return None
    return crate.version if crate is not None else None


def _broken_sources(scan: Any) -> dict[str, PackagingError]:
    """Plugin (directory) name -> the error of its source manifest, for the sources that could
    not be read: their installed bundles have a source here, a broken one."""
    broken: dict[str, PackagingError] = {}
    for error in scan.errors:
        if error.path is not None and error.path.parent.name in scan.unresolved:
            broken.setdefault(error.path.parent.name, error)
    return broken


def _installed_without_source(
    settings: Settings,
    source_ids: set[str],
    orphans: set[str],
    broken: Mapping[str, PackagingError],
) -> list[ListedPlugin]:
    """Bundles no source declares, and bare libraries the loader skips, from `P/native`."""
    try:
        entries = sorted(os.scandir(settings.native_dir), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise PackagingError(
            "plugins-dir-unreadable",
            f"cannot be listed ({exc.strerror or exc})",
            settings.native_dir,
        ) from None
    rows: list[ListedPlugin] = []
    for entry in entries:
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = (
                False  # a symlink loop: not a bundle for the loader either (its is_dir() is false)
            )
        if is_dir:
            # Hidden directories count: the loader does not skip them either.
            if entry.name in broken:
                rows.append(_bundle_with_broken_source(settings, path, broken[entry.name]))
            elif entry.name not in source_ids:
                rows.append(_foreign_bundle(path, entry.name in orphans))
        elif is_native_library_name(entry.name):
            rows.append(
                ListedPlugin(
                    id=library_stem(entry.name),
                    status="bare",
                    installed=path,
                    library=entry.name,
                    detail="the loader skips libraries directly in native/; run migrate-plugins-native",
                )
            )
    return rows


def _foreign_bundle(bundle: Path, orphaned: bool) -> ListedPlugin:
    """A bundle no source here declares: what its own plugin.yml says, if anything."""
    try:
        libraries = sorted(name for name in os.listdir(bundle) if is_native_library_name(name))
    except OSError:
        libraries = []
    manifest: Mapping[str, Any] = {}
    detail = "no source in this checkout declares it"
    if orphaned:
        detail = "installed earlier by copy-plugins-native; its source is gone (--prune removes it)"
    if (bundle / MANIFEST_NAME).is_file():
        from plugin_packaging._fs.yamlio import load_yaml_file

        try:
            loaded = load_yaml_file(bundle / MANIFEST_NAME)
            manifest = loaded if isinstance(loaded, Mapping) else {}
        except PackagingError as exc:
            detail = f"its plugin.yml {exc.message}"
    return ListedPlugin(
        id=bundle.name,
        status="no-source",
        node_kind=_text(manifest.get("node_kind")),
        version=_text(manifest.get("version")),
        installed=bundle,
        library=", ".join(libraries) or None,
        detail=detail,
    )


def _bundle_with_broken_source(
    settings: Settings, bundle: Path, error: PackagingError
) -> ListedPlugin:
    """An installed plugin whose source manifest is there but cannot be read: an error, with
    the source's own message (the installed copy is kept until the source is fixed)."""
    from plugin_packaging.errors import display_path

    listed = _foreign_bundle(bundle, orphaned=False)
    source = display_path(error.path) if error.path is not None else None
    return ListedPlugin(
        id=listed.id,
        status="error",
        node_kind=listed.node_kind,
        version=listed.version,
        source=source,
        installed=bundle,
        library=listed.library,
        detail=f"its source is broken ({error.location}: {error.message}); the installed copy is kept",
        error=error,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _error_dict(error: PackagingError) -> dict[str, Any]:
    return {
        "code": error.code,
        "message": error.message,
        "path": str(error.path) if error.path is not None else None,
        "hint": error.hint,
        "line": error.line,
        "column": error.column,
    }


# --- rendering -------------------------------------------------------------------------------


def _status_text(plugin: ListedPlugin) -> str:
    if plugin.status == "not-built" and plugin.installed is not None:
        return "not built, installed"
    return STATUS_TEXT[plugin.status]


def render_plugin_table(listing: PluginList) -> str:
    """The listing as an aligned table, then source errors and warnings under it."""
    from plugin_packaging.errors import display_path

    header = ("ID", "KIND", "VERSION", "STATUS", "SOURCE", "LIBRARY")
    rows = []
    for plugin in listing.plugins:
        if plugin.artifact is not None:
            library = plugin.artifact
        elif plugin.installed is not None:
            library = display_path(
                plugin.installed
                if plugin.status == "bare"
                else plugin.installed / (plugin.library or "")
            )
        else:
            library = "-"
        rows.append(
            (
                plugin.id,
                plugin.node_kind or "-",
                plugin.version or "-",
                _status_text(plugin),
                plugin.source or "-",
                library,
            )
        )
    lines: list[str] = []
    if rows:
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            lines.append(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=False)
                ).rstrip()
            )
    else:
        lines.append(f"no plugins found under {display_path(listing.root)}")
    for plugin in listing.plugins:
        if plugin.error is not None:
            # The whole error: its code, the file it is about and the hint, as the install says it.
            lines.append(f"  {plugin.id}:")
            lines.extend("    " + line for line in plugin.error.render().splitlines())
        elif plugin.detail and plugin.status in ("error", "bare", "stale", "no-source"):
            lines.append(f"  {plugin.id}: {plugin.detail}")
    # A broken source with an installed bundle was told on its row already.
    shown = {plugin.error.render() for plugin in listing.plugins if plugin.error is not None}
    lines += [text for text in (error.render() for error in listing.errors) if text not in shown]
    lines += [warning.render("warning") for warning in listing.warnings]
    return "\n".join(lines)
