"""The server's start-up, replayed: what it loads, in which order, and what it skips and why.

The loader takes active records first (in directory order), then every library candidate of
`P/native`, sorted component by component (N5). A candidate that breaks a blocking rule fails to
load; one whose node kind is already registered is skipped (N7), after it was opened. The rules
that need this order live here too: duplicate node kinds, and asset types claimed by a second
plugin (N10).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from plugin_packaging.check.layout import loader_order
from plugin_packaging.errors import display_path
from plugin_packaging.rules.model import Violation
from plugin_packaging.rules.table import blocks_load, message_of

#: Where a candidate comes from: an active record, a bundle of native/, or a bare file in native/.
Source = Literal["active", "bundle", "bare"]
KindSource = Literal["probe", "manifest", "record"]
Outcome = Literal["load", "skip"]

NATIVE_PREFIX = "plugin::native::"


def native_kind(kind: str) -> str:
    """The name the server registers a native kind under (section 5)."""
    return kind if kind.startswith(NATIVE_PREFIX) else NATIVE_PREFIX + kind


@dataclass(frozen=True)
class Candidate:
    """One thing the server tries to load: an active record, a library in a bundle, or a bare one."""

    source: Source
    #: The library the server opens (for a record, its entrypoint; None when that is unusable,
    #: or for a bundle that cannot be listed).
    library: Path | None
    #: The record file, for an active record.
    record_path: Path | None = None
    #: The bundle directory, for a bundle the server cannot list (there is no library to name).
    directory: Path | None = None
    bundle: str | None = None
    record: str | None = None
    #: The namespaced node kind (`plugin::native::gain`), when known.
    kind: str | None = None
    kind_source: KindSource | None = None
    plugin_id: str | None = None
    version: str | None = None
    #: The manifest the server reads next to the library (N9).
    manifest: Path | None = None
    asset_types: tuple[str, ...] = ()
    #: The first rule that makes the server skip it, if any.
    blocked_by: Violation | None = None
    #: False for a bundle left out of a check limited to some bundles: nothing was read.
    checked: bool = True

    @property
    def path(self) -> Path:
        """What a person should look at: the library, else the record or the unlistable bundle."""
        for shown in (self.library, self.record_path, self.directory):
            if shown is not None:
                return shown
        raise ValueError("a candidate names a library, a record or a bundle directory")

    def label(self) -> str:
        shown = display_path(self.path)
        return (
            f"{shown} (active record {self.record})"
            if self.source == "active" and self.library
            else shown
        )


@dataclass(frozen=True)
class PlannedLoad:
    """A candidate and what the server does with it."""

    candidate: Candidate
    outcome: Outcome
    #: 1, 2, ... among the plugins that load; None for a skip.
    position: int | None = None
    reason: str | None = None
    code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "position": self.position,
            "outcome": self.outcome,
            "source": c.source,
            "path": display_path(c.path),
            "record": c.record,
            "bundle": c.bundle,
            "kind": c.kind,
            "kind_source": c.kind_source,
            "plugin_id": c.plugin_id,
            "version": c.version,
            "manifest": display_path(c.manifest) if c.manifest else None,
            "checked": c.checked,
            "reason": self.reason,
            "code": self.code,
        }


@dataclass(frozen=True)
class LoadPlan:
    """Every candidate in the server's order, with its outcome."""

    entries: tuple[PlannedLoad, ...] = field(default=())

    @property
    def loaded(self) -> tuple[PlannedLoad, ...]:
        return tuple(e for e in self.entries if e.outcome == "load")

    @property
    def skipped(self) -> tuple[PlannedLoad, ...]:
        return tuple(e for e in self.entries if e.outcome == "skip")

    def to_list(self) -> list[dict[str, Any]]:
        return [entry.to_dict() for entry in self.entries]


def loader_sequence(active: Iterable[Candidate], bundled: Iterable[Candidate]) -> list[Candidate]:
    """Active records as given (directory order), then bundle libraries in `PathBuf` order."""
    return [*active, *sorted(bundled, key=lambda c: loader_order(c.path))]


def plan_loads(candidates: list[Candidate]) -> tuple[LoadPlan, list[Violation]]:
    """Replay the loader over `candidates` (already in its order): the plan and N7/N10 violations."""
    entries: list[PlannedLoad] = []
    violations: list[Violation] = []
    registered: dict[str, Candidate] = {}
    asset_owners: dict[str, Candidate] = {}
    position = 0
    for candidate in candidates:
        if candidate.blocked_by is not None:
            blocking = candidate.blocked_by
            entries.append(
                PlannedLoad(candidate, "skip", reason=message_of(blocking), code=blocking.code)
            )
            continue
        if candidate.kind is not None and candidate.kind in registered:
            winner = registered[candidate.kind]
            duplicate = _duplicate(candidate, winner)
            violations.append(duplicate)
            entries.append(
                PlannedLoad(candidate, "skip", reason=message_of(duplicate), code=duplicate.code)
            )
            continue
        if candidate.kind is not None:
            registered[candidate.kind] = candidate
        position += 1
        entries.append(PlannedLoad(candidate, "load", position=position))
        violations.extend(_claim_asset_types(candidate, asset_owners))
    return LoadPlan(tuple(entries)), violations


def _duplicate(candidate: Candidate, winner: Candidate) -> Violation:
    versions = ""
    if candidate.version or winner.version:
        versions = (
            f" (version {candidate.version or '?'}; the loaded one is {winner.version or '?'})"
        )
    if candidate.source == "active" and winner.source == "active":
        versions += "; which record wins depends on the order the file system lists active/ in"
    details = {"kind": candidate.kind, "winner": winner.label(), "versions": versions}
    return Violation(
        "duplicate-node-kind", candidate.path, details, candidate.bundle, candidate.record
    )


def _claim_asset_types(candidate: Candidate, owners: dict[str, Candidate]) -> list[Violation]:
    out = []
    for type_id in candidate.asset_types:
        owner = owners.get(type_id)
        if owner is None:
            owners[type_id] = candidate
        elif owner.plugin_id != candidate.plugin_id:
            details = {
                "type_id": type_id,
                "owner": owner.plugin_id,
                "owner_path": display_path(owner.manifest or owner.path),
                "plugin_id": candidate.plugin_id,
            }
            path = candidate.manifest or candidate.path
            out.append(
                Violation(
                    "asset-type-taken",
                    path,
                    details,
                    candidate.bundle,
                    candidate.record,
                    key="assets",
                )
            )
    return out


def with_blocking(candidate: Candidate, violations: Iterable[Violation]) -> Candidate:
    """`candidate` marked with the first of `violations` that makes the server skip it."""
    blocking = next((v for v in violations if blocks_load(v)), None)
    return replace(candidate, blocked_by=blocking) if blocking is not None else candidate
