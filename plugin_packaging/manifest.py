"""The installed `plugin.yml`: which keys it holds, where their values come from, how it is written.

A source declaration (a source `plugin.yml` or a settings extra) plus its crate's `Cargo.toml`
become one `GeneratedManifest`: the keys the server knows, in the schema's order, with build-only
keys (`artifact`, `accelerators`, ...) left out and `repo` renamed `repository`. The text is
rendered from `templates/plugin.yml.j2`; every value is written by PyYAML's own emitter, so the
file loads back to exactly the data intended whatever characters it holds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import __version__
from .cargo import CrateInfo
from .errors import PackagingError
from .names import is_semver, path_component_problem, relative_path_problem

#: Keys of the server's `PluginManifest`, in the order the generated file lists them.
SERVER_KEYS = (
    "schema_version",
    "id",
    "name",
    "version",
    "node_kind",
    "kind",
    "entrypoint",
    "description",
    "license",
    "license_url",
    "homepage",
    "repository",
    "compatibility",
    "models",
    "assets",
)
#: Keys only StreamKit's build tooling reads; never copied into an installed manifest.
BUILD_ONLY_KEYS = ("artifact", "accelerators", "extra_files", "repo")
REQUIRED_KEYS = ("id", "version", "node_kind", "kind", "entrypoint")
_STRING_KEYS = ("id", "name", "version", "node_kind", "kind", "entrypoint", "description",
                "license", "license_url", "homepage", "repository")

TEMPLATE_NAME = "plugin.yml.j2"


@dataclass(frozen=True)
class GeneratedManifest:
    """The data of one installed `plugin.yml` and the notes made while assembling it."""

    data: Mapping[str, Any]
    origin: str
    warnings: tuple[PackagingError, ...] = ()

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def version(self) -> str:
        return self.data["version"]

    @property
    def node_kind(self) -> str:
        return self.data["node_kind"]


def generate_manifest(
    source_data: Mapping[str, Any],
    *,
    origin: str,
    origin_path: Path,
    entrypoint: str,
    crate: CrateInfo | None,
) -> GeneratedManifest:
    """Assemble the installed manifest for one plugin; raise on anything the server would refuse."""
    warnings: list[PackagingError] = []
    data: dict[str, Any] = {k: v for k, v in source_data.items() if v is not None}
    if "repository" not in data and "repo" in data:
        data["repository"] = data["repo"]
    if crate is not None:
        _fill_from_crate(data, crate, origin_path, warnings)
    declared_entry = data.get("entrypoint")
    if declared_entry is not None and declared_entry != entrypoint:
        if Path(str(declared_entry)).stem != Path(entrypoint).stem:
            warnings.append(
                PackagingError(
                    "source-entrypoint-differs",
                    f"declares entrypoint {declared_entry!r} but the library installed is {entrypoint!r}",
                    origin_path,
                    hint="the generated plugin.yml uses the installed file name; fix `entrypoint` to match `artifact`",
                )
            )
    data["entrypoint"] = entrypoint
    data.setdefault("kind", "native")
    data.setdefault("schema_version", 1)
    manifest = {key: data[key] for key in SERVER_KEYS if key in data}
    validate_manifest(manifest, origin_path)
    return GeneratedManifest(manifest, origin, tuple(warnings))


def _fill_from_crate(
    data: dict[str, Any], crate: CrateInfo, origin_path: Path, warnings: list[PackagingError]
) -> None:
    for key in ("version", "description", "license", "repository", "homepage"):
        crate_value = getattr(crate, key)
        if key not in data and crate_value is not None:
            data[key] = crate_value
    declared = data.get("version")
    if crate.version is not None and isinstance(declared, str) and declared != crate.version:
        warnings.append(
            PackagingError(
                "source-version-differs-from-crate",
                f"declares version {declared} but {crate.path.name} has {crate.version}",
                origin_path,
                hint=f"make them equal (StreamKit's tooling requires it); {declared} is used",
            )
        )


def validate_manifest(data: Mapping[str, Any], path: Path) -> None:
    """Refuse a manifest the server's `PluginManifest` parse would refuse, or that is unsafe on disk."""
    for key in REQUIRED_KEYS:
        if key not in data:
            hint = "add `version: \"X.Y.Z\"` or a [package] version in Cargo.toml" if key == "version" else None
            raise PackagingError("manifest-key-missing", f"has no `{key}`", path, hint=hint)
    for key in _STRING_KEYS:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            hint = None
            if key == "version":
                hint = (
                    f"YAML read the unquoted version as the {type(value).__name__} {value!r}; "
                    'quote a full SemVer version, e.g. `version: "0.10.0"`'
                )
            raise PackagingError(
                "manifest-wrong-type", f"`{key}` must be a string, not {type(value).__name__} {value!r}", path, hint=hint
            )
    if data["kind"] != "native":
        raise PackagingError(
            "manifest-bad-kind", f"`kind` is {data['kind']!r}; this tool installs `native` plugins", path
        )
    for key in ("id", "version"):
        problem = path_component_problem(data[key])
        if problem:
            raise PackagingError("manifest-unsafe-name", f"`{key}` {data[key]!r} {problem}", path)
    if not is_semver(data["version"]):
        raise PackagingError(
            "manifest-bad-version",
            f"`version` {data['version']!r} is not SemVer (MAJOR.MINOR.PATCH[-pre][+build])",
            path,
            hint='write e.g. version: "0.1.0"',
        )
    if not data["node_kind"] or "::" in data["node_kind"]:
        raise PackagingError(
            "manifest-bad-node-kind",
            f"`node_kind` {data['node_kind']!r} must be a bare kind, not empty and without '::'",
            path,
            hint="the server adds the `plugin::native::` prefix itself",
        )
    problem = relative_path_problem(data["entrypoint"])
    if problem:
        raise PackagingError("manifest-unsafe-entrypoint", f"`entrypoint` {problem}", path)
    if "schema_version" in data and (
        not isinstance(data["schema_version"], int) or isinstance(data["schema_version"], bool)
    ):
        raise PackagingError("manifest-wrong-type", "`schema_version` must be an integer", path)
    for key in ("models", "assets"):
        if key in data and not isinstance(data[key], list):
            raise PackagingError("manifest-wrong-type", f"`{key}` must be a list", path)
    if "compatibility" in data and not isinstance(data["compatibility"], Mapping):
        raise PackagingError("manifest-wrong-type", "`compatibility` must be a mapping", path)


def render_manifest(manifest: GeneratedManifest, template_path: Path | None = None) -> str:
    """The text of the installed `plugin.yml`, from the packaged template or `template_path`."""
    template = _load_template(template_path)
    return template.render(
        manifest=manifest.data,
        origin=_one_line(manifest.origin),
        tool_version=__version__,
    )


@functools.lru_cache(maxsize=8)
def _load_template(template_path: Path | None) -> Any:
    """The compiled template; compiled once per run, whatever the number of plugins."""
    import jinja2

    environment = jinja2.Environment(
        autoescape=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["yaml_entry"] = yaml_entry
    if template_path is not None:
        from .yamlio import read_text

        return environment.from_string(read_text(template_path))
    from importlib.resources import files

    text = files("plugin_packaging.templates").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")
    return environment.from_string(text)


def yaml_entry(data: Mapping[str, Any], key: str) -> str:
    """`key: value` as YAML that loads back to exactly `data[key]`, or '' when the key is absent.

    PyYAML's emitter picks quoting and escapes (`"0.10"`, `'yes'`), which is why the template
    never formats a value itself. Non-ASCII text is written as is for people to read, except
    where PyYAML's own round trip is not exact (it folds a raw NEL, U+0085, into a space); every
    entry is therefore loaded back, and written with ASCII escapes when that differs.
    """
    if key not in data:
        return ""
    import yaml

    entry = {key: data[key]}
    for allow_unicode in (True, False):
        text = yaml.safe_dump(
            entry, sort_keys=False, allow_unicode=allow_unicode, default_flow_style=False, width=1 << 30
        )
        if yaml.safe_load(text) == entry:
            return text
    raise PackagingError(
        "manifest-unrepresentable",
        f"the value of `{key}` cannot be written as YAML that reads back the same",
        hint="remove unusual control characters from it",
    )


def _one_line(text: str) -> str:
    """Text safe to put in a YAML comment: no line breaks or control characters."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
