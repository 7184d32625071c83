"""Checking release bundles the way the server's installer and StreamKit's portability gate would.

For each archive in a directory (`*.tar.zst`, `*.tar.gz`, `*.tar`, as the installer accepts):

1. its sha256 and size, against `SHA256SUMS` when the directory has one, and against its registry
   manifest (`bundle` or the matching `variants` entry) when a registry is given, whose signature
   is checked with the public key;
2. a safe extraction into a temporary directory (`archive.extract_bundle`: no absolute or `..`
   names, no links or devices, no duplicates, a cap on members and unpacked bytes);
3. what it holds: `plugin.yml` and `manifest.json` that agree, the entry library at `entrypoint`,
   judged by the checker's own library rules (`check.library.check_library`) and manifest rules;
4. portability: no absolute RPATH/RUNPATH, every needed library vendored in the bundle and found
   there by the loader, or a system library; no CUDA library in a CPU bundle.

Inspect, then decide, then report: this module produces `Violation`s (rules in `rules/bundle.py`
and `rules/loader.py`), applies the severity settings and returns one `BundleReport`; rendering
lives in `release/report.py`. Nothing here loads plugin code.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from plugin_packaging import __version__
from plugin_packaging._fs.files import require_directory
from plugin_packaging.contract import MANIFEST_NAME
from plugin_packaging.errors import PackagingError
from plugin_packaging.release.vendor import EXCLUDED, USER_INSTALLED_REASON, left_to_system
from plugin_packaging.rules.bundle import CUDA_LIBRARY
from plugin_packaging.rules.model import Finding, FindingTally, Violation
from plugin_packaging.rules.table import graded, validate_overrides
from plugin_packaging.settings import VendorSettings
from plugin_packaging.target import Target

if TYPE_CHECKING:
    from plugin_packaging.binary import LibraryInfo
    from plugin_packaging.release.archive import ArchiveLimits, UnsafeArchiveError
    from plugin_packaging.release.published import PublishedRegistry

#: Version of the JSON document (`plugin_packaging/schemas/bundle-report.v1.json`).
REPORT_VERSION = 1
#: What the installer accepts, by file name.
BUNDLE_SUFFIXES = (".tar.zst", ".tar.gz", ".tar")
_BUNDLE_TAIL = "-bundle"
_LIBRARY_EXTENSIONS = (".so", ".dylib", ".dll")


@dataclass(frozen=True)
class VerifiedBundle:
    """The facts read from one archive (as far as it could be read)."""

    path: Path
    #: None when the file was refused before hashing (not a regular file, absurdly big, no magic).
    sha256: str | None
    size_bytes: int
    plugin_id: str | None = None
    version: str | None = None
    #: None for a CPU bundle.
    accelerator: str | None = None
    entrypoint: str | None = None
    members: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path.name,
            "plugin_id": self.plugin_id,
            "version": self.version,
            "accelerator": self.accelerator or "cpu",
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "entrypoint": self.entrypoint,
            "members": list(self.members),
        }


@dataclass(frozen=True)
class BundleReport(FindingTally):
    """All findings for one directory of bundles (and, given one, its registry)."""

    bundles_dir: Path
    bundles: tuple[VerifiedBundle, ...]
    findings: tuple[Finding, ...] = ()
    registry_dir: Path | None = None
    public_key: Path | None = None
    target: Target | None = None

    def to_dict(self, *, strict: bool = False) -> dict[str, Any]:
        """The versioned JSON document (schema: schemas/bundle-report.v1.json)."""
        return {
            "version": REPORT_VERSION,
            "tool": {"name": "plugin-packaging", "version": __version__},
            "bundles_dir": str(self.bundles_dir),
            "registry": str(self.registry_dir) if self.registry_dir is not None else None,
            "public_key": str(self.public_key) if self.public_key is not None else None,
            "target": {"platform": self.target.platform, "arch": self.target.arch}
            if self.target
            else None,
            "summary": {
                "bundles": len(self.bundles),
                "errors": self.count("error"),
                "warnings": self.count("warning"),
                "info": self.count("info"),
                "strict": strict,
                "failed": self.failed(strict),
            },
            "bundles": [bundle.to_dict() for bundle in self.bundles],
            "findings": [finding.to_dict() for finding in self.findings],
        }


def is_bundle_name(name: str) -> bool:
    """True for a file name the installer would unpack (it picks the decompressor by name)."""
    return not name.startswith(".") and name.endswith(BUNDLE_SUFFIXES)


def verify_bundles(
    bundles_dir: Path,
    *,
    registry_dir: Path | None = None,
    public_key: Path | None = None,
    rule_overrides: Mapping[str, str] | None = None,
    target: Target | None = None,
    limits: ArchiveLimits | None = None,
    vendor: VendorSettings | None = None,
) -> BundleReport:
    """Verify every bundle in `bundles_dir`; raise `PackagingError` only for usage mistakes.

    `vendor` (the settings package-plugins-native vendored with) says which needed libraries a
    plugin leaves to the target system on purpose (`plugins.vendor.exclude`).
    """
    from plugin_packaging.release.archive import ArchiveLimits

    overrides = validate_overrides(rule_overrides or {})
    if target is None:
        target = Target.host()
    registry = None
    if registry_dir is not None:
        from plugin_packaging.release.published import read_registry

        registry = read_registry(registry_dir)
    key = public_key or (registry.public_key if registry is not None else None)
    if key is not None:
        from plugin_packaging.release.signing import public_key_id

        public_key_id(
            key
        )  # a missing or broken key file is a usage error, not a finding per bundle
    archives = _archives(bundles_dir)
    violations: list[Violation] = []
    checksums = _checksum_list(bundles_dir, violations)
    run = _Run(
        registry=registry,
        public_key=key,
        target=target,
        limits=limits or ArchiveLimits(),
        checksums=checksums,
        vendor=vendor,
    )
    if registry is not None and key is None:
        violations.append(Violation("registry-signature-unchecked", registry.path))
    bundles = []
    for archive in archives:
        bundle, found = _verify_one(archive, run)
        bundles.append(bundle)
        violations.extend(found)
    return BundleReport(
        bundles_dir=bundles_dir,
        bundles=tuple(bundles),
        findings=graded(violations, overrides),
        registry_dir=registry_dir,
        public_key=key,
        target=target,
    )


@dataclass
class _Run:
    """What every bundle's check shares; `signatures` remembers each manifest already checked."""

    registry: PublishedRegistry | None
    public_key: Path | None
    target: Target
    limits: ArchiveLimits
    #: SHA256SUMS beside the bundles, parsed; None when there is none (or it is unreadable).
    checksums: Mapping[str, str] | None
    vendor: VendorSettings | None = None
    signatures: dict[Path, bool] = field(default_factory=dict)


def _archives(bundles_dir: Path) -> list[Path]:
    require_directory(
        bundles_dir,
        "bundles-dir-missing",
        "the bundles directory",
        hint="pass --bundles DIR (package-plugins-native writes <out>/bundles)",
    )
    archives = sorted(p for p in bundles_dir.iterdir() if is_bundle_name(p.name) and not p.is_dir())
    if not archives:
        raise PackagingError(
            "bundles-dir-empty",
            f"holds no bundle archive ({', '.join('*' + s for s in BUNDLE_SUFFIXES)})",
            bundles_dir,
            hint="package plugins first (package-plugins-native), or pass the right --bundles",
        )
    return archives


def _checksum_list(bundles_dir: Path, out: list[Violation]) -> Mapping[str, str] | None:
    """SHA256SUMS beside the bundles, parsed; None when absent or unreadable (then a violation)."""
    from plugin_packaging.release.checksums import SHA256SUMS, read_sha256sums

    path = bundles_dir / SHA256SUMS
    if not os.path.lexists(path):
        return None  # a FIFO or a dangling link by that name is read, and reported, below
    try:
        return read_sha256sums(path)
    except PackagingError as exc:
        out.append(
            Violation(
                "bundle-checksum-list-mismatch",
                path,
                {
                    "detail": f"{SHA256SUMS} {exc.message}",
                    "fix": "write SHA256SUMS again (package-plugins-native writes it with the "
                    "bundles)",
                },
            )
        )
        return None


# --- one bundle --------------------------------------------------------------------------------


def _verify_one(archive: Path, run: _Run) -> tuple[VerifiedBundle, list[Violation]]:
    from plugin_packaging.release.archive import (
        UnsafeArchiveError,
        check_plausible,
        extract_bundle,
    )
    from plugin_packaging.release.checksums import sha256_file

    # Cheap checks first: a FIFO, a device or a huge sparse file named like a bundle is one
    # finding about it, not a hang or hours of hashing.
    try:
        size = check_plausible(archive, run.limits)
    except UnsafeArchiveError as exc:
        return VerifiedBundle(archive, None, 0), [_unsafe(archive, exc)]
    try:
        sha256 = sha256_file(archive)
    except PackagingError as exc:  # replaced or made unreadable since the check above
        return VerifiedBundle(archive, None, size), [
            _unsafe(archive, UnsafeArchiveError("archive-unreadable", None, exc.message))
        ]
    bundle = VerifiedBundle(archive, sha256, size)
    out: list[Violation] = _checksum_list_violations(archive, sha256, run)
    with tempfile.TemporaryDirectory(prefix="verify-bundle-") as scratch:
        unpacked = Path(scratch) / "bundle"
        try:
            files = extract_bundle(archive, unpacked, run.limits)
        except UnsafeArchiveError as exc:
            out.append(_unsafe(archive, exc))
            return bundle, out
        subject = _Subject(
            archive, unpacked, tuple(sorted(f.relative_to(unpacked).as_posix() for f in files))
        )
        bundle = replace(bundle, members=subject.members)
        contents = _contents(subject, out)
        if contents is None:
            return bundle, out
        bundle = replace(
            bundle,
            plugin_id=contents.plugin_id,
            version=contents.version,
            entrypoint=contents.entrypoint,
        )
        accelerator = _accelerator(subject, contents, run, bundle, out)
        bundle = replace(bundle, accelerator=accelerator)
        _check_libraries(subject, contents, accelerator, run, out)
    return bundle, out


@dataclass(frozen=True)
class _Subject:
    """One unpacked archive: where it came from, where it lies now, what it holds."""

    archive: Path
    unpacked: Path
    members: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.archive.name

    def shown(self, member: str) -> Path:
        """How a member is named in findings: `<archive>/<member>` (the scratch copy is gone)."""
        return self.archive / member

    def member_of(self, path: Path) -> str | None:
        try:
            return Path(os.path.abspath(path)).relative_to(self.unpacked).as_posix()
        except ValueError:
            return None

    def violation(
        self,
        code: str,
        member: str | None = None,
        *,
        symbol: str | None = None,
        key: str | None = None,
        **details: Any,
    ) -> Violation:

        path = self.shown(member) if member else self.archive
        return Violation(code, path, details, self.name, symbol=symbol, key=key)

    def moved(self, violation: Violation) -> Violation:
        """A checker violation about a scratch file, renamed to the archive member."""
        member = self.member_of(violation.path)
        return replace(
            violation, path=self.shown(member) if member else self.archive, bundle=self.name
        )


@dataclass(frozen=True)
class _Contents:
    """What the bundle's own manifests say."""

    plugin_id: str | None
    version: str | None
    entrypoint: str | None
    #: manifest.json, parsed (the registry manifest without `bundle`).
    bundle_manifest: Mapping[str, Any] | None


def _unsafe(archive: Path, exc: UnsafeArchiveError) -> Violation:

    if exc.code in ("archive-too-large", "archive-too-many-members"):
        code = "bundle-too-large"
    elif exc.code in (
        "archive-corrupt",
        "archive-trailing-data",
        "archive-unknown-format",
        "archive-unreadable",
    ):
        code = "bundle-corrupt"
    else:
        code = "bundle-unsafe-member"
    return Violation(
        code, archive, {"detail": exc.message}, archive.name, symbol=exc.member, key=exc.code
    )


def _checksum_list_violations(archive: Path, sha256: str, run: _Run) -> list[Violation]:
    from plugin_packaging.release.checksums import SHA256SUMS

    listed = run.checksums
    if listed is None:
        return []
    expected = listed.get(archive.name)
    if expected is None:
        detail = f"{SHA256SUMS} does not list {archive.name}"
        fix = (
            "remove the stray archive, or package it with the others (package-plugins-native "
            "writes the bundles and SHA256SUMS in one run)"
        )
    elif expected != sha256:
        detail = f"{SHA256SUMS} says {expected} for {archive.name}, but it hashes to {sha256}"
        # A hash that no longer matches means the archive changed after packaging (a damaged
        # download, or tampering): the bundle is suspect, not the list.
        fix = (
            "the archive changed after it was packaged: replace it with the bundle that was "
            "published, or package again; do not rewrite SHA256SUMS to match an archive you did "
            "not build"
        )
    else:
        return []
    return [
        Violation(
            "bundle-checksum-list-mismatch",
            archive,
            {"detail": detail, "fix": fix},
            archive.name,
        )
    ]


def _contents(subject: _Subject, out: list[Violation]) -> _Contents | None:
    """Read plugin.yml (with the checker's manifest rules) and manifest.json; None if unusable."""
    from plugin_packaging.check.manifest import read_manifest
    from plugin_packaging.release.published import read_json

    members = set(subject.members)
    plugin_yml = None
    if MANIFEST_NAME in members:
        plugin_yml = read_manifest(subject.unpacked / MANIFEST_NAME, subject.name)
        out.extend(subject.moved(v) for v in plugin_yml.violations)
    else:
        out.append(
            subject.violation(
                "bundle-manifest-missing",
                name=MANIFEST_NAME,
                why=" next to the entry library; the installer writes it from the registry "
                "manifest, but a bundle installed by hand has no asset types",
            )
        )
    bundle_manifest: Mapping[str, Any] | None = None
    if "manifest.json" in members:
        try:
            parsed = read_json(subject.unpacked / "manifest.json")
        except PackagingError as exc:
            out.append(
                subject.violation(
                    "bundle-corrupt", "manifest.json", detail=f"manifest.json {exc.message}"
                )
            )
        else:
            if isinstance(parsed, Mapping):
                bundle_manifest = parsed
            else:
                out.append(
                    subject.violation(
                        "bundle-corrupt",
                        "manifest.json",
                        detail="manifest.json is not a JSON object",
                    )
                )
    else:
        out.append(
            subject.violation(
                "bundle-manifest-missing",
                name="manifest.json",
                why=" (the registry manifest without its bundle block)",
            )
        )

    def value(key: str) -> str | None:
        for source in (plugin_yml.data if plugin_yml is not None else None, bundle_manifest):
            found = source.get(key) if source is not None else None
            if isinstance(found, str):
                return found
        return None

    if plugin_yml is not None and plugin_yml.data is not None and bundle_manifest is not None:
        keys = [
            k
            for k in ("id", "version", "node_kind", "kind", "entrypoint")
            if plugin_yml.data.get(k) != bundle_manifest.get(k)
        ]
        if keys:
            out.append(
                subject.violation(
                    "bundle-manifests-disagree", "manifest.json", keys=", ".join(keys)
                )
            )
    if (plugin_yml is None or plugin_yml.data is None) and bundle_manifest is None:
        return None  # nothing says what the bundle is; the findings above say why
    return _Contents(value("id"), value("version"), value("entrypoint"), bundle_manifest)


def _accelerator(
    subject: _Subject, contents: _Contents, run: _Run, bundle: VerifiedBundle, out: list[Violation]
) -> str | None:
    """CPU (None) or the accelerator, from the registry manifest when given, else the file name."""
    plugin_id, version = contents.plugin_id, contents.version
    if plugin_id is None or version is None:
        return None
    if run.registry is not None:
        return _against_registry(subject, contents, run, bundle, out)
    stem = _stem(subject.name)
    prefix = f"{plugin_id}-{version}"
    if stem == prefix + _BUNDLE_TAIL:
        return None
    middle = ""
    if stem.startswith(prefix + "-") and stem.endswith(_BUNDLE_TAIL):
        middle = stem[len(prefix) + 1 : -len(_BUNDLE_TAIL)]
    if middle and all(ch.isalnum() or ch == "_" for ch in middle):
        return middle
    out.append(
        subject.violation(
            "bundle-name-mismatch",
            plugin_id=plugin_id,
            version=version,
            expected=f"{prefix}{_BUNDLE_TAIL}{_suffix(subject.name)}",
        )
    )
    return None


def _stem(name: str) -> str:
    suffix = _suffix(name)
    return name[: -len(suffix)] if suffix else name


def _suffix(name: str) -> str:
    return next((s for s in BUNDLE_SUFFIXES if name.endswith(s)), "")


def _against_registry(
    subject: _Subject, contents: _Contents, run: _Run, bundle: VerifiedBundle, out: list[Violation]
) -> str | None:
    """Find the bundle's block in its registry manifest; check hash, size, signature, index."""
    from plugin_packaging.release.published import manifest_location
    from plugin_packaging.release.registry import INDEX_FILE

    assert (
        run.registry is not None and contents.plugin_id is not None and contents.version is not None
    )
    plugin_id, version = contents.plugin_id, contents.version
    published = run.registry.get(plugin_id, version)
    if published is None:
        expected = manifest_location(run.registry.path, plugin_id, version)
        out.append(
            subject.violation(
                "bundle-not-in-registry",
                plugin_id=plugin_id,
                version=version,
                expected=str(expected),
            )
        )
        return None
    manifest = published.manifest
    blocks: list[tuple[str | None, Any]] = [(None, manifest.get("bundle"))]
    blocks += [
        (v.get("accelerator"), v) for v in manifest.get("variants", []) if isinstance(v, Mapping)
    ]
    listed = {
        block["url"].rsplit("/", 1)[-1]: (accelerator, block)
        for accelerator, block in blocks
        if isinstance(block, Mapping) and isinstance(block.get("url"), str)
    }
    from plugin_packaging.errors import display_path

    shown_manifest = display_path(published.manifest_path)
    if subject.name not in listed:
        out.append(
            subject.violation(
                "bundle-not-listed",
                plugin_id=plugin_id,
                version=version,
                listed=", ".join(sorted(listed)) or "none",
            )
        )
        accelerator = None
    else:
        accelerator, block = listed[subject.name]
        facts = (
            ("its sha256", bundle.sha256, "sha256"),
            ("its size", bundle.size_bytes, "size_bytes"),
        )
        for what, actual, key in facts:
            if block.get(key) != actual:
                out.append(
                    subject.violation(
                        "bundle-checksum-mismatch",
                        key=key,
                        what=what,
                        actual=actual,
                        manifest=shown_manifest,
                        expected=block.get(key),
                    )
                )
    if contents.bundle_manifest is not None:
        keys = [
            k
            for k in set(manifest) | set(contents.bundle_manifest)
            if k not in ("bundle", "variants")
            and manifest.get(k) != contents.bundle_manifest.get(k)
        ]
        if keys:
            out.append(
                subject.violation(
                    "bundle-manifest-differs",
                    "manifest.json",
                    manifest=shown_manifest,
                    keys=", ".join(sorted(keys)),
                )
            )
    _check_signature(subject, published, run, out)
    index = run.registry.index
    if index is not None and (plugin_id, version) not in _indexed(index):
        out.append(
            subject.violation(
                "registry-index-missing-version",
                plugin_id=plugin_id,
                version=version,
                index=display_path(run.registry.path / INDEX_FILE),
            )
        )
    return accelerator


def _indexed(index: Mapping[str, Any]) -> set[tuple[Any, Any]]:
    """(id, version) of every entry of a registry index, as written there (any JSON types)."""
    found = set()
    for plugin in index.get("plugins", []) if isinstance(index.get("plugins"), list) else []:
        if isinstance(plugin, Mapping):
            for entry in (
                plugin.get("versions", []) if isinstance(plugin.get("versions"), list) else []
            ):
                if isinstance(entry, Mapping):
                    found.add((plugin.get("id"), entry.get("version")))
    return found


def _check_signature(subject: _Subject, published: Any, run: _Run, out: list[Violation]) -> None:
    """Each manifest once (a CPU bundle and its variants share one)."""
    if run.public_key is None or published.manifest_path in run.signatures:
        return
    from plugin_packaging.release.registry import SIGNATURE_FILE
    from plugin_packaging.release.signing import verify_file

    signature = published.signature_path or published.manifest_path.with_name(SIGNATURE_FILE)
    try:
        verify_file(run.public_key, published.manifest_path, signature)
    except PackagingError as exc:
        run.signatures[published.manifest_path] = False
        out.append(
            Violation(
                "registry-signature-invalid",
                exc.path or published.manifest_path,
                {"detail": exc.message, "fix": exc.hint or "sign the manifest again"},
                subject.name,
                key=exc.code,
            )
        )
        return
    run.signatures[published.manifest_path] = True


# --- the libraries ------------------------------------------------------------------------------


def _check_libraries(
    subject: _Subject, contents: _Contents, accelerator: str | None, run: _Run, out: list[Violation]
) -> None:
    from plugin_packaging.binary import BinaryFormatError, read_library
    from plugin_packaging.check.library import check_library
    from plugin_packaging.contract import relative_path_problem

    cpu = accelerator is None
    if cpu:
        for member in subject.members:
            if CUDA_LIBRARY.match(PurePosixPath(member).name):
                out.append(
                    subject.violation(
                        "bundle-cuda-in-cpu-bundle",
                        member,
                        symbol=PurePosixPath(member).name,
                        what="holds",
                    )
                )
    entrypoint = contents.entrypoint
    if entrypoint is None or relative_path_problem(entrypoint):
        return  # the manifest rules have said why
    if entrypoint not in subject.members:
        shown = ", ".join(subject.members[:8]) + (", ..." if len(subject.members) > 8 else "")
        out.append(
            subject.violation(
                "bundle-entrypoint-missing", entrypoint=entrypoint, members=shown or "nothing"
            )
        )
        return
    entry = subject.unpacked / entrypoint
    verdict = check_library(entry, target=run.target, resolver=None, bundle=subject.name)
    absolute = {}
    libraries: list[tuple[Path, LibraryInfo]] = []
    for member in subject.members:
        if member != entrypoint and not _looks_like_library(member):
            continue
        path = subject.unpacked / member
        try:
            info = (
                verdict.info
                if member == entrypoint and verdict.info is not None
                else read_library(path)
            )
        except BinaryFormatError:
            continue  # a text file named .so is the checker's business only for the entry library
        libraries.append((path, info))
        for tag, found in _absolute_search_paths(info).items():
            absolute[(member, tag)] = found
            out.append(
                subject.violation(
                    "bundle-search-path-absolute",
                    member,
                    key=tag,
                    tag=tag,
                    entries=", ".join(f"`{e}`" for e in found),
                    name=PurePosixPath(member).name,
                )
            )
    for violation in verdict.violations:
        moved = subject.moved(violation)
        if violation.code == "library-search-path" and (entrypoint, violation.key) in absolute:
            continue  # said more strongly by bundle-search-path-absolute
        out.append(moved)
    entry_info = next((info for path, info in libraries if path == entry), None)
    if entry_info is not None:
        _check_dependencies(subject, entry, entry_info, cpu, run, out, contents.plugin_id)
        _check_gate_runtime(subject, entrypoint, entry_info, out)


def _looks_like_library(member: str) -> bool:
    name = PurePosixPath(member).name
    return name.endswith(_LIBRARY_EXTENSIONS) or ".so." in name


def _absolute_search_paths(info: LibraryInfo) -> dict[str, list[str]]:
    """RPATH/RUNPATH entries that name a directory of the build machine, per tag."""
    found: dict[str, list[str]] = {}
    for part in info.every_slice():
        for tag, entries in (("RPATH", part.rpath), ("RUNPATH", part.runpath)):
            absolute = [e for e in entries if e.startswith("/")]
            if absolute:
                found.setdefault(tag, []).extend(e for e in absolute if e not in found.get(tag, []))
    return found


def _check_dependencies(
    subject: _Subject,
    entry: Path,
    info: LibraryInfo,
    cpu: bool,
    run: _Run,
    out: list[Violation],
    plugin_id: str | None,
) -> None:
    """Every needed library: vendored and reachable, or a system library; none CUDA's in a CPU bundle.

    Resolved like ld.so would on this machine, with an empty LD_LIBRARY_PATH (the server's
    environment is not this shell's), starting from the entry library and following the
    vendored libraries it reaches. Without a host target only the names can be judged. What
    the system provides is the policy vendoring uses (`vendor.left_to_system`).
    """
    from plugin_packaging.binary import BinaryFormatError, read_library
    from plugin_packaging.binary.dynlinks import DependencyResolver, system_directories

    vendor = (run.vendor or VendorSettings()).for_plugin(plugin_id or "")

    by_name: dict[str, str] = {}
    for listed in subject.members:
        by_name.setdefault(PurePosixPath(listed).name, listed)
    resolve = run.target.is_host and info.format == "elf"
    resolver = DependencyResolver(environment={}, cwd=subject.unpacked) if resolve else None
    seen = {os.path.abspath(entry)}
    pending: list[tuple[Path, LibraryInfo]] = [(entry, info)]
    while pending:
        path, library = pending.pop(0)
        member = subject.member_of(path)
        dependencies = resolver.resolve(library, path) if resolver is not None else ()
        located = {d.name: d.path for d in dependencies}
        for name in library.needed:
            if cpu and CUDA_LIBRARY.match(name):
                out.append(
                    subject.violation(
                        "bundle-cuda-in-cpu-bundle", member, symbol=name, what="needs"
                    )
                )
                continue
            found = located.get(name)
            inside = subject.member_of(found) if found is not None else None
            if found is not None and inside is not None:
                absolute = os.path.abspath(found)
                if absolute not in seen:
                    seen.add(absolute)
                    try:
                        pending.append((Path(absolute), read_library(Path(absolute))))
                    except BinaryFormatError:
                        pass  # vendored but unreadable: ld.so would fail on it; not ours to diagnose
                continue
            system = left_to_system(name, vendor)
            if system in (EXCLUDED, USER_INSTALLED_REASON):
                found_text = (
                    f"excluded from vendoring by {EXCLUDED}"
                    if system == EXCLUDED
                    else f"never vendored: {USER_INSTALLED_REASON}"
                )
                out.append(
                    subject.violation(
                        "bundle-dependency-system", member, symbol=name, found=found_text
                    )
                )
                continue
            if system is not None:
                continue  # CUDA's libraries too: a CPU bundle needing one was refused above
            if resolver is None:
                continue  # another platform: the search cannot be replayed here
            bundled = by_name.get(name)
            if bundled is not None:
                directory = PurePosixPath(bundled).parent.as_posix()
                suggestion = "$ORIGIN" if directory == "." else f"$ORIGIN/{directory}"
                out.append(
                    subject.violation(
                        "bundle-dependency-unreachable",
                        member,
                        symbol=name,
                        bundled=bundled,
                        searched=resolver.searched(library, path),
                        suggestion=suggestion,
                        name=PurePosixPath(member or "").name,
                    )
                )
                continue
            if found is not None and _in_system_directory(found, library, system_directories):
                out.append(
                    subject.violation(
                        "bundle-dependency-system", member, symbol=name, found=str(found)
                    )
                )
                continue
            where = (
                f"found only at {found} on this machine"
                if found is not None
                else "not found on this machine either"
            )
            out.append(
                subject.violation(
                    "bundle-dependency-not-vendored", member, symbol=name, found=where
                )
            )


def _check_gate_runtime(
    subject: _Subject, entrypoint: str, info: LibraryInfo, out: list[Violation]
) -> None:
    """The libraries StreamKit's gate requires beside the entry library, unless said already."""
    from plugin_packaging.rules.bundle import GATE_REQUIRED_VENDORED

    said = {
        v.symbol
        for v in out
        if v.code in ("bundle-dependency-not-vendored", "bundle-dependency-unreachable")
    }
    for needed, required in GATE_REQUIRED_VENDORED.items():
        if needed not in info.needed:
            continue
        for name in required:
            if name not in subject.members and name not in said:
                out.append(
                    subject.violation(
                        "bundle-runtime-missing", entrypoint, symbol=name, needed=needed
                    )
                )


def _in_system_directory(path: Path, info: LibraryInfo, system_directories: Any) -> bool:
    text = os.path.abspath(path)
    return any(
        text.startswith(directory.rstrip("/") + "/") for directory in system_directories(info)
    )
