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
from plugin_packaging.contract import relative_path_problem
from plugin_packaging.contract.manifest import SERVER_KEYS, manifest_problems
from plugin_packaging.errors import PackagingError
from plugin_packaging.rules.model import Violation
from plugin_packaging.rules.table import RULES, effective_severity
from plugin_packaging.sources.cargo import CrateInfo

TEMPLATE_NAME = "plugin.yml.j2"
#: The warning for a `version` that differs from the crate's (an error for a release).
VERSION_DIFFERS_FROM_CRATE = "source-version-differs-from-crate"


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
    rule_overrides: Mapping[str, str] | None = None,
) -> GeneratedManifest:
    """Assemble the installed manifest for one plugin; raise on anything the checker would grade
    an error (after `rule_overrides`, the `plugins.rules` setting) or the server cannot parse."""
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
                "manifest-entrypoint-unsafe",
                f"`entrypoint` {declared_entry!r} {problem}",
                origin_path,
                hint=f"name the library file inside the bundle, e.g. `entrypoint: {entrypoint}`",
                key="entrypoint",
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
                key="entrypoint",
            )
        )
    data["entrypoint"] = entrypoint
    data.setdefault("kind", "native")
    data.setdefault("schema_version", 1)
    manifest = {key: data[key] for key in SERVER_KEYS if key in data}
    refuse_invalid_manifest(manifest, origin_path, rule_overrides or {})
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
                VERSION_DIFFERS_FROM_CRATE,
                f"declares version {declared} but {crate.path.name} has {crate.version}",
                origin_path,
                hint=f"make them equal (StreamKit's tooling requires it); {declared} is used",
                key="version",
            )
        )


def refuse_invalid_manifest(
    data: Mapping[str, Any], path: Path, rule_overrides: Mapping[str, str]
) -> None:
    """Raise one error naming every problem of `data` that the checker grades an error, or that
    makes the server's parse drop the file (no setting makes such a manifest load)."""
    refused = [
        RULES[problem.code].finding(
            Violation(problem.code, path, problem.details, key=problem.key), "error"
        )
        for problem in manifest_problems(data)
        if problem.fatal or effective_severity(problem.code, rule_overrides) == "error"
    ]
    if len(refused) == 1:
        raise PackagingError(
            refused[0].code, refused[0].message, path, hint=refused[0].hint, key=refused[0].key
        )
    if refused:
        listed = "; ".join(f"({n}) {f.message}" for n, f in enumerate(refused, 1))
        hints = "; ".join(f"({n}) {f.hint}" for n, f in enumerate(refused, 1))
        # Placed (for `path:line:col` and annotations) at the first problem's key.
        raise PackagingError(
            "manifest-invalid",
            f"has {len(refused)} problems: {listed}",
            path,
            hint=hints,
            key=refused[0].key,
        )


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
    # The file beside the `templates` package, as install/run.py signs it (importlib.resources would
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
