"""The findings model: rules, the violations checks find, and the findings people read.

A check (layout, manifest, library, records, load plan, bundle verification) only says *which*
rule a file breaks and fills in the details, as a `Violation`; the rule tables (`rules/loader.py`,
`rules/bundle.py`, joined in `rules/table.py`) hold the words; `LoaderRule.finding` puts the two
together with a severity into a `Finding`, which the renderers (`check/report.py`,
`release/report.py`) print.

`blocks_load` records what the server does, not how much we mind: a rule that blocks means the
loader skips that library or record. The load plan is computed from it before any severity
override, so ignoring a rule hides its finding but never changes what the plan says will load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from plugin_packaging.errors import display_path, printable

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
#: The setting that hides a rule's findings (`plugins.rules: {CODE: ignore}`).
IGNORE = "ignore"


@dataclass(frozen=True)
class LoaderRule:
    """One thing the loader (or the installer, for a release bundle) does, and what to do about it."""

    code: str
    severity: Severity
    #: One line; `{placeholders}` are filled from the violation's details.
    message: str
    hint: str
    #: The spec's rule this comes from (native-loader.md), for people who want the why.
    reference: str = ""
    #: True when the server skips the library (or record) that breaks the rule.
    blocks_load: bool = False

    def message_for(self, violation: Violation) -> str:
        return self.message.format_map(violation.arguments())

    def blocks(self, violation: Violation) -> bool:
        """Whether the server skips what `violation` is about."""
        return self.blocks_load if violation.blocks is None else violation.blocks

    def finding(self, violation: Violation, severity: Severity) -> Finding:
        arguments = violation.arguments()
        return Finding(
            code=violation.code,
            severity=severity,
            message=self.message.format_map(arguments),
            hint=self.hint.format_map(arguments),
            path=violation.path,
            bundle=violation.bundle,
            record=violation.record,
            symbol=violation.symbol,
            key=violation.key,
            reference=self.reference,
        )


@dataclass(frozen=True)
class Finding:
    """One broken rule, about one file (and one symbol or key in it), as people see it."""

    code: str
    severity: Severity
    message: str
    hint: str
    path: Path
    #: The bundle directory name under native/, when the finding is about one.
    bundle: str | None = None
    #: The active record's file name under active/, when the finding is about one.
    record: str | None = None
    #: The symbol (entry function, needed library) the finding is about.
    symbol: str | None = None
    #: The manifest key, record field or dynamic tag the finding is about.
    key: str | None = None
    #: The spec's rule (native-loader.md).
    reference: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "path": display_path(self.path),
            "bundle": self.bundle,
            "record": self.record,
            "symbol": self.symbol,
            "key": self.key,
            "reference": self.reference,
        }


class FindingTally:
    """Counts per severity and the verdict, for a report that holds `findings` (a check of a
    plugin directory, a verification of bundles): both fail on the same terms."""

    findings: tuple[Finding, ...]

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def failed(self, strict: bool = False) -> bool:
        """Any error fails; with `strict`, any warning too."""
        return self.count("error") > 0 or (strict and self.count("warning") > 0)


@dataclass(frozen=True)
class Violation:
    """A rule broken by one file, with the details its message needs; no severity yet."""

    code: str
    path: Path
    details: Mapping[str, Any] = field(default_factory=dict)
    bundle: str | None = None
    record: str | None = None
    symbol: str | None = None
    key: str | None = None
    #: Overrides the rule's `blocks_load` where it depends on the case (see probe-kind-mismatch).
    blocks: bool | None = None

    def arguments(self) -> Mapping[str, Any]:
        """What a rule's message and hint are formatted with, every string made printable."""
        values = {"symbol": self.symbol, "key": self.key, "bundle": self.bundle, **self.details}
        return {k: printable(v) if isinstance(v, str) else v for k, v in values.items()}
