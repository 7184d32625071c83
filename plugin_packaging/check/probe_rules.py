"""What a load probe's answer means for the loader: API version, NULL table, kind, crash or hang.

`probe.probe_library` loads a library in a throwaway child process (never in ours) and returns a
`ProbeResult`; this module only judges that result, so it never runs plugin code itself. The
failure of a probe is classified by the result's `code` when it has one, else by its text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from plugin_packaging.check.loadplan import NATIVE_PREFIX, native_kind
from plugin_packaging.contract import ENTRY_SYMBOL
from plugin_packaging.rules.model import Violation

#: API versions the server accepts (section 5).
API_VERSIONS = range(6, 10)


class ProbeSandbox(Protocol):
    """The part of `probe.Sandbox` this module reads."""

    @property
    def mode(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def confined(self) -> bool: ...


def sandbox_violations(box: ProbeSandbox, where: Path) -> list[Violation]:
    """`probe-not-sandboxed` when the probes ran without namespaces; `where` is the tree probed."""
    if box.confined:
        return []
    return [
        Violation(
            "probe-not-sandboxed",
            where,
            {"mode": box.mode, "reason": box.reason or "namespaces are not available"},
        )
    ]


class ProbeAnswer(Protocol):
    """The part of `probe.ProbeResult` this module reads."""

    # Read-only properties, so the frozen `ProbeResult` dataclass satisfies the protocol.
    @property
    def ok(self) -> bool: ...
    @property
    def api_version(self) -> int | None: ...
    @property
    def kind(self) -> str | None: ...
    @property
    def failure(self) -> str | None: ...
    @property
    def failure_code(self) -> str | None: ...


#: `probe.ProbeResult.failure_code` -> the rule it breaks; other codes break `probe-failed`.
FAILURE_RULES = {
    "probe-timeout": "probe-timed-out",
    "probe-crashed": "probe-crashed",
    "probe-null-api": "probe-null-api",
    "probe-bad-kind": "probe-kind-invalid",
}


def probe_violations(
    result: ProbeAnswer,
    library: Path,
    *,
    declared_kind: str | None,
    declared_in: str,
    declared_key: str,
    bundle: str | None = None,
    record: str | None = None,
) -> tuple[list[Violation], str | None]:
    """Violations from one probe, and the namespaced kind the library registers (None if unknown).

    `declared_kind` is the bare kind the manifest (or the active record) claims; `declared_in`
    names that file for the message. For an active record a differing kind makes the server skip
    the record, for a bundle it does not (the manifest is only metadata there).
    """
    out: list[Violation] = []

    def add(
        code: str, *, blocks: bool | None = None, key: str | None = None, **details: Any
    ) -> None:
        symbol = ENTRY_SYMBOL if code == "probe-null-api" else None
        out.append(
            Violation(code, library, details, bundle, record, symbol=symbol, key=key, blocks=blocks)
        )

    # The version is kept even when a later stage failed: report it whatever else went wrong.
    version = result.api_version
    if version is not None and version not in API_VERSIONS:
        add("probe-api-version", version=version)
    if not result.ok:
        failure = result.failure or "the library did not load"
        code = FAILURE_RULES.get(result.failure_code or "", "probe-failed")
        if code == "probe-kind-invalid":
            add(code, problem=failure)
        else:
            add(code, detail=failure, name=str(library))
        return out, None
    kind = result.kind
    if kind is None:
        return out, None
    problem = _kind_problem(kind)
    if problem:
        add("probe-kind-invalid", problem=f"{kind!r} {problem}")
        return out, None
    registered = native_kind(kind)
    if declared_kind is not None and native_kind(declared_kind) != registered:
        consequence = (
            '; the server skips the record ("Active plugin kind does not match record")'
            if record
            else "; duplicate detection and the marketplace go by the manifest"
        )
        add(
            "probe-kind-mismatch",
            blocks=record is not None,
            key=declared_key,
            kind=kind,
            source=declared_in,
            declared=declared_kind,
            consequence=consequence,
        )
    return out, registered


def _kind_problem(kind: str) -> str | None:
    if kind == "":
        return "is empty"
    if "::" in kind and not kind.startswith(NATIVE_PREFIX):
        return "contains '::' without starting with plugin::native::"
    return None
