"""The loader's rules as data: a stable code, a severity, what is wrong and how to fix it.

Checks in `check.py` only say *which* rule a file breaks and fill in the details; the words
people read live here, in one table, so they stay consistent and can be overridden per code
in settings (`plugins.rules: {CODE: warning|error|info|ignore}`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
IGNORE = "ignore"


@dataclass(frozen=True)
class LoaderRule:
    """One thing the loader does with a layout, and what to do about it."""

    code: str
    severity: Severity
    #: One line; `{placeholders}` are filled from the finding's details.
    message: str
    hint: str
    #: The spec's rule this comes from (native-loader.md), for people who want the why.
    reference: str = ""


RULES: dict[str, LoaderRule] = {
    rule.code: rule
    for rule in (
        LoaderRule(
            "bare-library",
            "error",
            "library {name} lies directly in native/; the loader skips it",
            "move it into its own directory: native/<id>/{name} with a plugin.yml beside it",
            "N1",
        ),
        LoaderRule(
            "bundle-without-library",
            "warning",
            "bundle {bundle} holds no library the loader would open",
            "install the plugin's library into it, or remove the directory",
            "N2, N4",
        ),
        LoaderRule(
            "bundle-several-libraries",
            "error",
            "bundle {bundle} holds {count} libraries ({names}); the loader opens every one",
            "keep only the plugin's entry library; vendored dependencies need another extension or RUNPATH",
            "N4",
        ),
        LoaderRule(
            "manifest-missing",
            "warning",
            "bundle {bundle} has no plugin.yml",
            "install it with copy-plugins-native, which generates one",
            "N8",
        ),
        LoaderRule(
            "manifest-invalid",
            "error",
            "{detail}",
            "fix the manifest; the server drops a manifest it cannot parse",
            "N8, section 4",
        ),
    )
}


def effective_severity(code: str, overrides: Mapping[str, str]) -> Severity | None:
    """The severity of `code` after settings; None when the rule is ignored."""
    chosen = overrides.get(code, RULES[code].severity)
    if chosen == IGNORE:
        return None
    return chosen if chosen in SEVERITIES else RULES[code].severity  # type: ignore[return-value]
