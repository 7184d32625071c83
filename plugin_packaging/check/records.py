"""Active records (`P/active/<plugin_id>.json`): marketplace installs, which the server loads first.

Each record is read and judged as the server does (section 6): a JSON object with every required
field of the right type, `plugin_id` and `version` single safe path components, an `entrypoint`
that exists when resolved against the server's working directory (not against the record), and
whose real path lies inside `P`. A record failing any of these is skipped by the server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from plugin_packaging._fs.files import ACTIVE_RECORD, input_problem, read_input
from plugin_packaging._fs.yamlio import number_problem
from plugin_packaging.check.layout import Entry
from plugin_packaging.contract import path_component_problem
from plugin_packaging.rules.model import Violation
from plugin_packaging.rules.table import blocks_load

_FIELDS: tuple[tuple[str, str, bool], ...] = (
    # name, expected type, required
    ("plugin_id", "string", True),
    ("version", "string", True),
    ("node_kind", "string", True),
    ("kind", "string", True),
    ("entrypoint", "string", True),
    ("installed_at_ms", "integer", True),
    ("accelerator", "string", False),
)


@dataclass(frozen=True)
class ActiveRecord:
    """One file of `P/active` the server reads, and what it says."""

    path: Path
    data: Mapping[str, Any] | None
    #: The entrypoint as the server resolves it (against its working directory), when usable.
    library: Path | None
    violations: tuple[Violation, ...]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def kind(self) -> str | None:
        """The namespaced kind the server registers: `plugin::<kind>::<node_kind>`."""
        if self.data is None:
            return None
        node_kind, kind = self.data.get("node_kind"), self.data.get("kind")
        if isinstance(node_kind, str) and kind in ("native", "wasm"):
            return f"plugin::{kind}::{node_kind}"
        return None

    @property
    def is_native(self) -> bool:
        return self.data is not None and self.data.get("kind") == "native"

    @property
    def skipped(self) -> bool:
        return any(blocks_load(v) for v in self.violations)

    def text(self, key: str) -> str | None:
        value = self.data.get(key) if self.data is not None else None
        return value if isinstance(value, str) else None


def is_record_name(name: str) -> bool:
    """True when the server reads this file of P/active (Rust `extension() == "json"`)."""
    return PurePath(name).suffix == ".json"


def read_active_record(entry: Entry, plugins_dir: Path, cwd: Path) -> ActiveRecord:
    """Read and judge one record; `cwd` is the server's working directory."""
    path = entry.path
    name = entry.name
    violations: list[Violation] = []

    def unparseable(detail: str) -> ActiveRecord:
        violation = Violation("active-record-unparseable", path, {"detail": detail}, record=name)
        return ActiveRecord(path, None, None, (violation,))

    try:
        # Never a blocking open: a named pipe put here would hang the check.
        raw = read_input(path, ACTIVE_RECORD)
    except OSError as exc:
        return unparseable(f"{name} {input_problem(exc)}")
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return unparseable(f"{name} is not UTF-8 (bad byte at offset {exc.start})")
    except json.JSONDecodeError as exc:
        return unparseable(
            f"{name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        )
    except ValueError as exc:
        return unparseable(f"{name} is not valid JSON: {number_problem(exc)}")
    except RecursionError:
        return unparseable(f"{name} nests too deeply")
    if not isinstance(parsed, dict):
        return unparseable(f"{name} holds a JSON {type(parsed).__name__}, not an object")
    data: Mapping[str, Any] = parsed

    for field_name, expected, required in _FIELDS:
        problem = _field_problem(data, field_name, expected, required)
        if problem:
            violations.append(
                Violation(
                    "active-record-field", path, {"problem": problem}, record=name, key=field_name
                )
            )
    if data.get("kind") not in (None, "native", "wasm") and isinstance(data.get("kind"), str):
        violations.append(
            Violation(
                "active-record-field",
                path,
                {"problem": f"is {data['kind']!r}, not `native` or `wasm`"},
                record=name,
                key="kind",
            )
        )
    if isinstance(data.get("accelerator"), str) and data["accelerator"] not in ("cpu", "cuda"):
        violations.append(
            Violation(
                "active-record-field",
                path,
                {"problem": f"is {data['accelerator']!r}, not `cpu` or `cuda`"},
                record=name,
                key="accelerator",
            )
        )
    if violations:
        return ActiveRecord(path, data, None, tuple(violations))

    for key in ("plugin_id", "version"):
        problem = path_component_problem(data[key])
        if problem:
            violations.append(
                Violation(
                    "active-record-unsafe-name",
                    path,
                    {"value": data[key], "problem": problem},
                    record=name,
                    key=key,
                )
            )
    if violations:
        return ActiveRecord(path, data, None, tuple(violations))

    entrypoint = data["entrypoint"]
    library = Path(entrypoint) if os.path.isabs(entrypoint) else cwd / entrypoint
    if not os.path.exists(library):
        violations.append(
            Violation(
                "active-record-entrypoint-missing",
                path,
                {"value": entrypoint, "cwd": str(cwd)},
                record=name,
                key="entrypoint",
            )
        )
        return ActiveRecord(path, data, None, tuple(violations))
    real = os.path.realpath(library)
    base = os.path.realpath(plugins_dir)
    if os.path.commonpath([real, base]) != base:
        violations.append(
            Violation(
                "active-record-outside-plugins-dir",
                path,
                {"value": entrypoint, "real": real},
                record=name,
                key="entrypoint",
            )
        )
        return ActiveRecord(path, data, None, tuple(violations))
    return ActiveRecord(path, data, library, ())


def _field_problem(data: Mapping[str, Any], name: str, expected: str, required: bool) -> str | None:
    if name not in data or data[name] is None:
        return "is missing" if required else None
    value = data[name]
    if expected == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer (milliseconds since 1970), not {json.dumps(value)}"
        return None
    if not isinstance(value, str):
        return f"must be a string, not {json.dumps(value)}"
    return None
