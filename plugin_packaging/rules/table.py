"""The one rule table, built here from the loader's and the release bundle's, and the settings
that re-grade it (`plugins.rules: {CODE: error|warning|info|ignore}`, like lintian or ruff).

Built explicitly, once, at import: whichever module asks first, `RULES` holds every rule, so
`--list-rules` and the validation of settings see the same table whatever was imported before.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from plugin_packaging.errors import PackagingError
from plugin_packaging.rules.bundle import BUNDLE_RULES
from plugin_packaging.rules.loader import LOADER_RULES
from plugin_packaging.rules.model import (
    IGNORE,
    SEVERITIES,
    Finding,
    LoaderRule,
    Severity,
    Violation,
)


def _join(*tables: Mapping[str, LoaderRule]) -> dict[str, LoaderRule]:
    """The tables in order, refusing a code that would mean two things."""
    joined: dict[str, LoaderRule] = {}
    for table in tables:
        for code, rule in table.items():
            if code in joined:
                raise RuntimeError(f"rule code {code!r} is defined twice")
            joined[code] = rule
    return joined


RULES: Mapping[str, LoaderRule] = _join(LOADER_RULES, BUNDLE_RULES)


def blocks_load(violation: Violation) -> bool:
    """Whether the server skips the library or record `violation` is about."""
    return RULES[violation.code].blocks(violation)


def message_of(violation: Violation) -> str:
    return RULES[violation.code].message_for(violation)


def effective_severity(code: str, overrides: Mapping[str, str]) -> Severity | None:
    """The severity of `code` after settings; None when the rule is ignored."""
    chosen = overrides.get(code, RULES[code].severity)
    if chosen == IGNORE:
        return None
    return chosen if chosen in SEVERITIES else RULES[code].severity


def graded(violations: list[Violation], overrides: Mapping[str, str]) -> tuple[Finding, ...]:
    """Each violation as a finding at its severity after settings; ignored rules left out."""
    findings = []
    for violation in violations:
        severity = effective_severity(violation.code, overrides)
        if severity is not None:
            findings.append(RULES[violation.code].finding(violation, severity))
    return tuple(findings)


def validate_overrides(overrides: Mapping[str, Any]) -> dict[str, str]:
    """The `plugins.rules` setting, checked: known codes only, a severity or `ignore` each."""
    checked: dict[str, str] = {}
    for code, value in overrides.items():
        if code not in RULES:
            close = difflib.get_close_matches(str(code), RULES, n=1)
            hint = (
                f"did you mean {', '.join(close)}?"
                if close
                else "`check-plugins-native --list-rules` lists the rule codes"
            )
            raise PackagingError(
                "bad-setting", f"plugins.rules names an unknown rule code {code!r}", hint=hint
            )
        if value not in (*SEVERITIES, IGNORE):
            raise PackagingError(
                "bad-setting",
                f"plugins.rules.{code} is {value!r}",
                hint="use one of: error, warning, info, ignore",
            )
        checked[str(code)] = str(value)
    return checked
