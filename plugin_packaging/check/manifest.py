"""An installed manifest read as the server reads it: which file it uses (N9), whether it parses,
and what is wrong with it (section 4, N10).

The judging is `contract.manifest.manifest_problems`, the validator the generator, `copy` and
`package` use too; this module reads the files, follows the N9 lookup (a manifest whose parse
fails is dropped and the next file name is tried) and turns each problem into a `Violation` of
that file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin_packaging._fs.yamlio import load_json, load_yaml, read_text
from plugin_packaging.contract import manifest_names
from plugin_packaging.contract.manifest import manifest_problems, parses
from plugin_packaging.errors import PackagingError
from plugin_packaging.rules.model import Violation


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
        place = f":{exc.line}:{exc.column}" if exc.line is not None else ""
        detail = f"{path.name}{place} {exc.message}"
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
    problems = manifest_problems(data)
    violations = tuple(Violation(p.code, path, p.details, bundle, key=p.key) for p in problems)
    return ManifestRead(path, data, violations, parses(problems))


def _load(path: Path) -> Any:
    text = read_text(path)  # capped at yamlio.MAX_MANIFEST_BYTES
    if path.name.endswith(".json"):
        return load_json(text, path, code="manifest-invalid-json", what="a manifest")
    return load_yaml(text, path)
