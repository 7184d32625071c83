"""Checking a plugin base directory against the loader's rules, without starting a server.

Inspect, then decide: the layout of `P/native` is read into plain facts, each rule of
`rules.py` turns facts into `Finding`s, and `report.py` prints them. Nothing here loads plugin
code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Mapping

from .errors import PackagingError
from .names import is_native_library_name
from .rules import RULES, Severity, effective_severity


@dataclass(frozen=True)
class Finding:
    """One broken rule, about one file."""

    code: str
    severity: Severity
    message: str
    hint: str
    path: Path
    #: The bundle directory name under native/, when the finding is about one.
    bundle: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "path": str(self.path),
            "bundle": self.bundle,
        }


@dataclass(frozen=True)
class CheckReport:
    """All findings for one plugin base directory."""

    plugins_dir: Path
    findings: tuple[Finding, ...] = ()
    bundles: tuple[str, ...] = field(default=())

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def failed(self, strict: bool = False) -> bool:
        return self.count("error") > 0 or (strict and self.count("warning") > 0)


class _Findings:
    """Collects findings, applying the severity overrides from settings."""

    def __init__(self, overrides: Mapping[str, str]) -> None:
        self.overrides = overrides
        self.items: list[Finding] = []

    def add(self, code: str, path: Path, bundle: str | None = None, **details: Any) -> None:
        severity = effective_severity(code, self.overrides)
        if severity is None:
            return
        rule = RULES[code]
        self.items.append(
            Finding(
                code,
                severity,
                rule.message.format(bundle=bundle, **details),
                rule.hint.format(bundle=bundle, **details),
                path,
                bundle,
            )
        )


def check_plugins_dir(
    plugins_dir: Path,
    *,
    rule_overrides: Mapping[str, str] | None = None,
    bundles: Collection[str] | None = None,
) -> CheckReport:
    """Check `plugins_dir/native`; `bundles` limits the per-bundle rules to those names."""
    native = plugins_dir / "native"
    if not native.is_dir():
        raise PackagingError(
            "plugins-dir-missing",
            "has no native/ directory to check",
            plugins_dir,
            hint="pass --plugins-dir, or install plugins first with copy-plugins-native",
        )
    findings = _Findings(rule_overrides or {})
    bundle_names: list[str] = []
    for entry in sorted(os.scandir(native), key=lambda e: e.name):
        if entry.is_dir():
            bundle_names.append(entry.name)
            if bundles is None or entry.name in bundles:
                _check_bundle(Path(entry.path), entry.name, findings)
        elif is_native_library_name(entry.name):
            findings.add("bare-library", Path(entry.path), name=entry.name)
    return CheckReport(plugins_dir, tuple(findings.items), tuple(bundle_names))


def _check_bundle(bundle: Path, name: str, findings: _Findings) -> None:
    libraries = sorted(n for n in os.listdir(bundle) if is_native_library_name(n))
    if not libraries:
        findings.add("bundle-without-library", bundle, name)
    elif len(libraries) > 1:
        findings.add(
            "bundle-several-libraries", bundle, name, count=len(libraries), names=", ".join(libraries)
        )
    manifest = bundle / "plugin.yml"
    if not manifest.is_file():
        findings.add("manifest-missing", bundle, name)
        return
    from .manifest import validate_manifest
    from .yamlio import load_yaml_file

    try:
        data = load_yaml_file(manifest)
        if not isinstance(data, Mapping):
            raise PackagingError("manifest-not-mapping", "is not a YAML mapping", manifest)
        validate_manifest(data, manifest)
    except PackagingError as exc:
        findings.add("manifest-invalid", manifest, name, detail=f"plugin.yml {exc.message}")
