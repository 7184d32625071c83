"""The installed `plugin.yml`: which keys it holds, where their values come from, how it is written.

A source declaration (a source `plugin.yml` or a settings extra) plus its crate's `Cargo.toml`
become one `GeneratedManifest`: the keys the server knows, in the schema's order, with build-only
keys (`artifact`, `accelerators`, ...) left out and `repo` renamed `repository`. The text is
rendered from `templates/plugin.yml.j2`; every value is written by PyYAML's own emitter, so the
file loads back to exactly the data intended whatever characters it holds.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin_packaging import __version__
from plugin_packaging.contract import (
    is_semver,
    is_unicode_text,
    path_component_problem,
    relative_path_problem,
)
from plugin_packaging.errors import PackagingError
from plugin_packaging.sources.cargo import CrateInfo

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
# Only these keys are copied into an installed manifest, so keys that only StreamKit's build
# tooling reads (`artifact`, `artifact_<accelerator>`, `accelerators`, `extra_files`, `repo`)
# never reach it.
#: What the server's `PluginManifest` parse cannot do without (also a registry manifest's).
REQUIRED_KEYS = ("id", "version", "node_kind", "kind", "entrypoint")
#: Keys whose value the server parses as a string.
STRING_KEYS = (
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
)

TEMPLATE_NAME = "plugin.yml.j2"


@dataclass(frozen=True)
class GeneratedManifest:
    """The data of one installed `plugin.yml` and the notes made while assembling it."""

    data: Mapping[str, Any]
    origin: str
    warnings: tuple[PackagingError, ...] = ()

    @property
    def id(self) -> str:
        value: str = self.data["id"]  # a string: assembling the manifest checked it
        return value

    @property
    def version(self) -> str:
        value: str = self.data["version"]  # a string: assembling the manifest checked it
        return value

    @property
    def node_kind(self) -> str:
        value: str = self.data["node_kind"]  # a string: assembling the manifest checked it
        return value


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
    if declared_entry is not None:
        # The installed file name replaces it, but the same source feeds StreamKit's own tooling,
        # which places the library at this path inside a bundle: an unsafe one is refused here.
        problem = relative_path_problem(declared_entry)
        if problem:
            raise PackagingError(
                "manifest-unsafe-entrypoint",
                f"`entrypoint` {declared_entry!r} {problem}",
                origin_path,
                hint=f"name the library file inside the bundle, e.g. `entrypoint: {entrypoint}`",
            )
    if (
        declared_entry is not None
        and declared_entry != entrypoint
        and Path(declared_entry).stem != Path(entrypoint).stem
    ):
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
            hint = (
                'add `version: "X.Y.Z"` or a [package] version in Cargo.toml'
                if key == "version"
                else None
            )
            raise PackagingError("manifest-key-missing", f"has no `{key}`", path, hint=hint)
    for key in STRING_KEYS:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            hint = None
            if key == "version":
                hint = (
                    f"YAML read the unquoted version as the {type(value).__name__} {value!r}; "
                    'quote a full SemVer version, e.g. `version: "0.10.0"`'
                )
            raise PackagingError(
                "manifest-wrong-type",
                f"`{key}` must be a string, not {type(value).__name__} {value!r}",
                path,
                hint=hint,
            )
    if data["kind"] != "native":
        raise PackagingError(
            "manifest-bad-kind",
            f"`kind` is {data['kind']!r}; this tool installs `native` plugins",
            path,
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
    for key in SERVER_KEYS:
        if key in data:
            _check_writable(data[key], key, path)


#: Deeper than any real manifest (models[].file_checksums is three levels down).
MAX_VALUE_DEPTH = 32


def _check_writable(value: Any, key: str, path: Path, depth: int = 0) -> None:
    """Refuse a value the installed file cannot hold: text with surrogates (a YAML escape such as
    "\\udcff" reads as one, and the server's UTF-8 strings cannot), or absurd nesting."""
    if depth > MAX_VALUE_DEPTH:
        raise PackagingError(
            "manifest-too-deep", f"`{key}` nests too deeply to be a manifest value", path
        )
    if isinstance(value, str):
        if not is_unicode_text(value):
            raise PackagingError(
                "manifest-not-unicode",
                f"`{key}` holds {value!a}, which is not valid Unicode text",
                path,
                hint="write the characters themselves; a \\u escape of a lone surrogate is not text",
            )
    elif isinstance(value, Mapping):
        for item_key, item in value.items():
            _check_writable(item_key, key, path, depth + 1)
            _check_writable(item, key, path, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _check_writable(item, key, path, depth + 1)


def render_manifest(manifest: GeneratedManifest, template_path: Path | None = None) -> str:
    """The text of the installed `plugin.yml`, from the packaged template or `template_path`."""
    template = _load_template(template_path)
    try:
        text: str = template.render(
            manifest=manifest.data,
            origin=_one_line(manifest.origin),
            tool_version=__version__,
        )
    except PackagingError:
        raise
    except Exception as exc:
        # (an undefined variable, a misused filter, a division by zero in an expression).
        raise _template_error(exc, template_path, "cannot be rendered") from None
    return text


@functools.lru_cache(maxsize=8)
def _template_text(template_path: Path | None) -> str:
    if template_path is not None:
        from plugin_packaging._fs.yamlio import read_text

        return read_text(template_path)
    # The file beside the `templates` package, as install.py signs it (importlib.resources would
    # cost more than reading it).
    # `importlib`: the package is the repository's templates/ directory (package-dir in
    # pyproject.toml), which mypy cannot follow from a plain import.
    templates = importlib.import_module("plugin_packaging.templates")
    return (Path(templates.__path__[0]) / TEMPLATE_NAME).read_text(encoding="utf-8")


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
    try:
        return environment.from_string(_template_text(template_path))
    except jinja2.TemplateError as exc:
        raise _template_error(exc, template_path, "is not a valid Jinja template") from None


def _template_error(exc: Exception, template_path: Path | None, what: str) -> PackagingError:
    line = getattr(exc, "lineno", None)
    where = f" (line {line})" if line else ""
    return PackagingError(
        "template-invalid",
        f"{what}{where}: {_one_line(str(exc) or type(exc).__name__)}",
        template_path or Path(TEMPLATE_NAME),
        hint="fix the template (plugins.template), or remove the setting to use the packaged one",
    )


def yaml_entry(data: Mapping[str, Any], key: str) -> str:
    """`key: value` as YAML that loads back to exactly `data[key]`, or '' when the key is absent.

    PyYAML's emitter picks quoting and escapes (`"0.10"`, `'yes'`), which is why the template
    never formats a value itself. Non-ASCII text is written as is for people to read, except
    where PyYAML's own round trip is not exact (it folds a raw NEL, U+0085, into a space); every
    entry is therefore loaded back, and written with ASCII escapes when that differs.

    The emitter is PyYAML's pure-Python one everywhere, so the text is the same on every machine;
    only the reading back may use libyaml (see `_reads_back`).
    """
    if key not in data:
        return ""
    import yaml

    entry = {key: data[key]}
    for allow_unicode in (True, False):
        try:
            text = yaml.safe_dump(
                entry,
                sort_keys=False,
                allow_unicode=allow_unicode,
                default_flow_style=False,
                width=1 << 30,
            )
            if _reads_back(text, entry):
                return text
        except (yaml.YAMLError, RecursionError):
            break  # a value PyYAML cannot write (an object) or nests beyond its recursion
    raise PackagingError(
        "manifest-unrepresentable",
        f"the value of `{key}` cannot be written as YAML that reads back the same",
        hint="remove unusual control characters from it",
    )


def _reads_back(text: str, entry: Mapping[str, Any]) -> bool:
    """Whether PyYAML's pure-Python loader reads `text` back as `entry`.

    libyaml answers first where it reads as PyYAML does (`yamlio.libyaml_reads_as_pyyaml`); only
    its "yes" is taken, and anything else is asked again of the pure-Python loader, so the choice
    of text never depends on whether this machine's PyYAML has libyaml.
    """
    import yaml

    from plugin_packaging._fs.yamlio import libyaml_reads_as_pyyaml, libyaml_safe_loader

    fast = libyaml_safe_loader()
    if fast is not None and libyaml_reads_as_pyyaml(text):
        try:
            if yaml.load(text, Loader=fast) == entry:  # CSafeLoader: the safe loader, in C
                return True
        except Exception:
            pass
    return bool(yaml.safe_load(text) == entry)


def _one_line(text: str) -> str:
    """Text safe to put in a YAML comment: no line breaks or control characters."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
