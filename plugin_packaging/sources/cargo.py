"""What a crate's `Cargo.toml` says about a plugin: version, description, license, library name.

Source manifests may leave these out; the crate is then the truth. Workspace inheritance
(`version.workspace = true`) is followed to the nearest `[workspace.package]` above the crate.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin_packaging._fs.yamlio import number_problem, read_text
from plugin_packaging.errors import PackagingError

_INHERITABLE = ("version", "description", "license", "repository", "homepage")


@dataclass(frozen=True)
class CrateInfo:
    """The `[package]` and `[lib]` facts a plugin manifest can borrow."""

    path: Path
    name: str | None
    version: str | None
    description: str | None
    license: str | None
    repository: str | None
    homepage: str | None
    lib_name: str | None
    #: The names in `[features]`.
    features: tuple[str, ...] = ()

    @property
    def library_stem(self) -> str | None:
        """Cargo's library name: `[lib] name`, else the package name with `-` -> `_`."""
        if self.lib_name:
            return self.lib_name
        return self.name.replace("-", "_") if self.name else None


def _parse_toml(path: Path) -> Mapping[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise PackagingError("cargo-toml-invalid", f"is not valid TOML: {exc}", path) from None
    except ValueError as exc:  # an integer beyond the 4300 digits Python converts
        raise PackagingError(
            "cargo-toml-invalid", f"is not valid TOML: {number_problem(exc)}", path
        ) from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise PackagingError(
            "cargo-toml-invalid", "nests too deeply to be a Cargo.toml", path
        ) from None


def read_crate(crate_dir: Path, *, stop_at: Path | None = None) -> CrateInfo | None:
    """Read `crate_dir/Cargo.toml`, or None when the crate has none."""
    path = crate_dir / "Cargo.toml"
    if not os.path.lexists(path):
        return None
    # Anything else by that name (a directory, a FIFO, a dangling link) is read and refused by
    # `read_text` with a message, rather than quietly taken for "no crate here".
    document = _parse_toml(path)
    package = document.get("package") or {}
    lib = document.get("lib") or {}
    if not isinstance(package, Mapping) or not isinstance(lib, Mapping):
        raise PackagingError("cargo-toml-invalid", "[package] and [lib] must be tables", path)
    values: dict[str, str | None] = {}
    workspace_package: Mapping[str, Any] | None = None
    for key in _INHERITABLE:
        value = package.get(key)
        if isinstance(value, Mapping) and value.get("workspace") is True:
            if workspace_package is None:
                workspace_package = _workspace_package(crate_dir, stop_at)
            value = workspace_package.get(key)
        values[key] = value if isinstance(value, str) else None
    name = package.get("name")
    lib_name = lib.get("name")
    features = document.get("features")
    return CrateInfo(
        path=path,
        name=name if isinstance(name, str) else None,
        lib_name=lib_name if isinstance(lib_name, str) else None,
        features=tuple(str(f) for f in features) if isinstance(features, Mapping) else (),
        **values,
    )


def _workspace_package(crate_dir: Path, stop_at: Path | None) -> Mapping[str, Any]:
    """`[workspace.package]` of the nearest workspace root above `crate_dir`."""
    for directory in crate_dir.resolve().parents:
        candidate = directory / "Cargo.toml"
        if candidate.is_file():
            workspace = _parse_toml(candidate).get("workspace")
            if isinstance(workspace, Mapping):
                package = workspace.get("package")
                return package if isinstance(package, Mapping) else {}
        if stop_at is not None and directory == stop_at.resolve():
            break
    return {}
