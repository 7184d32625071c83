"""SemVer 2.0.0, once: what a valid plugin version is, and how versions are ordered.

The manifest validator asks `is_semver`; the registry orders versions by `precedence_key` and
picks `latest_version`. One parser answers both, so a version the checker accepts is one the
registry can order (an earlier regular expression let `"1.0.0\\n"` and Unicode digits through).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from plugin_packaging.errors import PackagingError

#: What SemVer's own wording asks of a number and an identifier: ASCII only, no leading zeros.
_NUMBER = re.compile(r"0|[1-9][0-9]*")
_IDENTIFIER = re.compile(r"[0-9A-Za-z-]+")


@dataclass(frozen=True)
class SemVer:
    """A SemVer 2.0 version. Compare with `precedence_key`, which ignores build metadata."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text


def semver_or_none(text: object) -> SemVer | None:
    """`text` parsed strictly as `MAJOR.MINOR.PATCH[-pre][+build]`, or None when it is not one."""
    if not isinstance(text, str):
        return None
    core, plus, build = text.partition("+")
    core, dash, prerelease = core.partition("-")
    numbers = core.split(".")
    pre_ids = tuple(prerelease.split(".")) if dash else ()
    build_ids = tuple(build.split(".")) if plus else ()
    valid = (
        len(numbers) == 3
        and all(_NUMBER.fullmatch(number) for number in numbers)
        and all(
            _IDENTIFIER.fullmatch(ident) and not (ident.isdigit() and not _NUMBER.fullmatch(ident))
            for ident in pre_ids
        )
        and all(_IDENTIFIER.fullmatch(ident) for ident in build_ids)
    )
    if not valid:
        return None
    major, minor, patch = (int(number) for number in numbers)
    return SemVer(major, minor, patch, pre_ids, build_ids)


def is_semver(value: object) -> bool:
    """True for a SemVer 2.0.0 version string (`MAJOR.MINOR.PATCH[-pre][+build]`)."""
    return semver_or_none(value) is not None


def parse_semver(text: str) -> SemVer:
    """Parse `MAJOR.MINOR.PATCH[-pre][+build]` strictly (no `v`, no leading zeros), or raise."""
    version = semver_or_none(text)
    if version is None:
        raise PackagingError(
            "version-not-semver",
            f"version {text!r} is not SemVer (MAJOR.MINOR.PATCH[-pre][+build])",
            hint="write it like 1.2.3 or 1.2.3-rc.1, quoted in YAML",
        )
    return version


def precedence_key(version: SemVer) -> tuple[Any, ...]:
    """A sort key that orders versions by SemVer 2.0 precedence (spec item 11).

    A release sorts after its pre-releases; pre-release identifiers compare numerically when
    numeric, in ASCII order otherwise, numeric before alphanumeric, and a longer list after its
    own prefix. Build metadata is ignored, so `1.0.0+a` and `1.0.0+b` have equal keys.
    """
    identifiers = tuple(
        (0, int(ident), "") if ident.isdigit() else (1, 0, ident) for ident in version.prerelease
    )
    return (version.major, version.minor, version.patch, not version.prerelease, identifiers)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as `a` has lower, equal or higher precedence than `b`."""
    key_a, key_b = precedence_key(parse_semver(a)), precedence_key(parse_semver(b))
    return (key_a > key_b) - (key_a < key_b)


def sort_versions_descending(versions: Iterable[str]) -> list[str]:
    """Highest precedence first; versions equal but for build metadata by their text, so the
    order never depends on input order."""
    return sorted(versions, key=lambda v: (precedence_key(parse_semver(v)), v), reverse=True)


def latest_version(versions: Iterable[str]) -> str | None:
    """The highest stable version, or the highest pre-release when none is stable."""
    ordered = sort_versions_descending(versions)
    stable = [v for v in ordered if not parse_semver(v).is_prerelease]
    found = stable or ordered
    return found[0] if found else None
