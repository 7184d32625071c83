"""Release packaging: a reproducible bundle archive per built plugin, and the registry that lists it.

The same discovery and the same generated `plugin.yml` as `copy-plugins-native` (sources ->
artifacts -> manifest), for the release set (the official plugins, and extras declared with
`release: true`), then, per plugin version:

- *plan* (read-only, also what `--dry-run` shows): the manifest from the sources alone, what the
  published registry already says about this version, which libraries the release needs (the
  CPU build of a new version, unless this is a variants-only pass; the build of each requested
  accelerator the plugin declares) and whether they are built (a missing one fails the release
  unless `--allow-missing`), and what goes into each bundle (library at its `entrypoint`,
  `plugin.yml`, `manifest.json`, declared `extra_files`);
- *append-only*: a version that is already published is never rebuilt. Its manifest is compared
  with the one the sources give now (without the `bundle` block, as StreamKit's builder does),
  built or not; a difference fails the run with a unified diff and the advice to bump the
  version, no difference carries the published manifest and signature over byte for byte. Only
  variants for accelerators not published yet may be added, which re-signs that manifest;
- *write*: bundles (`write_bundle`: sorted members, fixed mtime from SOURCE_DATE_EPOCH, no owner)
  and the whole registry are built in a staging directory inside `<out>`, signed, checksummed,
  and swapped into `<out>/bundles` and `<out>/registry` only when everything succeeded. A failed
  or interrupted run leaves the previous output as it was.

Every problem of every plugin is collected before anything is written, so one run shows them all.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from plugin_packaging._fs.files import KEY, open_input
from plugin_packaging.contract import MANIFEST_NAME
from plugin_packaging.errors import PackagingError, from_os_error
from plugin_packaging.release.signing import key_unreadable
from plugin_packaging.settings import Settings
from plugin_packaging.sources.plugin_yml import VERSION_DIFFERS_FROM_CRATE

if TYPE_CHECKING:
    from minisign import SecretKey

    from plugin_packaging.release.archive import ArchiveMember
    from plugin_packaging.release.published import PublishedRegistry, PublishedVersion
    from plugin_packaging.release.vendor import VendorPlan
    from plugin_packaging.sources.artifacts import Artifact
    from plugin_packaging.sources.plugin_yml import GeneratedManifest
    from plugin_packaging.sources.scan import PluginSource

#: What a release does with one plugin version.
Status = Literal[
    "publish", "add-variant", "unchanged", "carried-over", "not-built", "skipped", "failed"
]

BUNDLES_DIR = "bundles"
REGISTRY_DIR = "registry"
#: Our staging area inside `<out>`, removed after each run (the lock is on `<out>` itself).
STATE_DIR = ".plugin-packaging"
BUNDLE_MANIFEST = "manifest.json"
#: StreamKit's list of its official plugins (`marketplace/official-plugins.json` there).
OFFICIAL_PLUGINS_FILE = "official-plugins.json"
#: Its key order (generate_official_plugins.py); other keys follow in the source's order.
OFFICIAL_PLUGIN_KEYS = (
    "id",
    "name",
    "version",
    "node_kind",
    "kind",
    "entrypoint",
    "artifact",
    "accelerators",
    "description",
    "license",
    "license_url",
    "homepage",
    "repository",
    "compatibility",
    "models",
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Two zstd workers: faster than tar --zstd on two cores, and each worker holds its own window
# buffers, so more would raise peak memory (over 100 MiB with four for a 150 MiB library) for
# little gain. archive.py guarantees the bytes do not depend on the count.
_ZSTD_WORKERS = 2
#: Plan statuses whose bundles this run compresses.
_WRITTEN = ("publish", "add-variant")


@dataclass(frozen=True)
class BundleFile:
    """One archive of a release (or, in a dry run, one that would be written)."""

    file_name: str
    #: None for the CPU bundle, else the accelerator of the variant (`cuda`).
    accelerator: str | None
    url: str
    #: None in a dry run, where nothing is compressed.
    sha256: str | None = None
    size_bytes: int | None = None
    #: Member names in archive order.
    members: tuple[str, ...] = ()
    #: The library it holds, for the dry-run report.
    library_size: int = 0
    #: Shared libraries vendored into it, as `name (from where it was found)`.
    vendored: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReleaseEntry:
    """What the release does with one plugin version, and why."""

    id: str
    status: Status
    version: str | None = None
    #: Bundles written by this run (publish, add-variant), or the published one (unchanged,
    #: carried-over), with its URL, sha256 and size from the registry.
    bundles: tuple[BundleFile, ...] = ()
    detail: str | None = None
    error: PackagingError | None = None
    #: For a published version this build would change: the unified diff of the manifests.
    diff: str | None = None
    warnings: tuple[PackagingError, ...] = ()


@dataclass(frozen=True)
class ReleaseReport:
    """Everything a packaging run did (or would do), for the report and the exit status."""

    entries: tuple[ReleaseEntry, ...]
    out_dir: Path
    dry_run: bool = False
    scan_errors: tuple[PackagingError, ...] = ()
    scan_warnings: tuple[PackagingError, ...] = ()
    #: Run-wide notes, such as "manifests are not signed".
    notes: tuple[PackagingError, ...] = ()
    #: The key id new manifests were signed with, when signed.
    key_id: str | None = None

    @property
    def bundles_dir(self) -> Path:
        return self.out_dir / BUNDLES_DIR

    @property
    def registry_dir(self) -> Path:
        return self.out_dir / REGISTRY_DIR

    @property
    def failed(self) -> bool:
        return bool(self.scan_errors) or any(e.status == "failed" for e in self.entries)


# --- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BundleSpec:
    """The archive to write for one plugin version: name, URL and members."""

    file_name: str
    accelerator: str | None
    url: str
    library: Artifact
    members: tuple[ArchiveMember, ...]
    #: The shared libraries vendored into it, and whose RUNPATH changes (release/vendor.py).
    vendoring: VendorPlan | None = None


@dataclass(frozen=True)
class _Plan:
    """One plugin version, decided but not yet carried out."""

    id: str
    status: Status
    #: None for a published version no source of this run declares.
    source: PluginSource | None = None
    version: str | None = None
    #: The generated plugin.yml data (server keys only).
    manifest: Mapping[str, Any] | None = None
    #: The CPU bundle (publish only) and the variants to write.
    specs: tuple[_BundleSpec, ...] = ()
    published: PublishedVersion | None = None
    detail: str | None = None
    error: PackagingError | None = None
    diff: str | None = None
    warnings: tuple[PackagingError, ...] = ()


@dataclass(frozen=True)
class _Context:
    """What every plugin's plan shares."""

    settings: Settings
    existing: PublishedRegistry | None
    accelerators: tuple[str, ...]
    required: frozenset[str]
    public_key: Path | None


def package_plugins(
    settings: Settings,
    *,
    only: Sequence[str] = (),
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReleaseReport:
    """Package every built plugin (or those named by `only`) into `settings.dist_dir`.

    `progress` is told about each bundle before it is compressed (a large library takes
    seconds), as `[n/N] packaging <file> (<size> library)`.

    `environ` (default: the process environment) provides SOURCE_DATE_EPOCH and the signing
    key's password. Raises `PackagingError` for a usage mistake (a bad setting, an unknown id,
    a key that does not fit); problems of single plugins are reported in their entries.
    """
    from plugin_packaging.release.archive import source_date_epoch
    from plugin_packaging.sources.scan import scan_sources, select_sources

    env = os.environ if environ is None else environ
    out_dir = output_directory(settings)
    today = published_date(settings.published_at)
    mtime = source_date_epoch(env)
    accelerators = _checked_accelerators(settings.accelerators)
    _check_urls(settings)
    existing = None
    if settings.existing_registry is not None:
        from plugin_packaging.release.published import read_registry

        existing = read_registry(settings.existing_registry)
    public_key = _public_key(settings, existing)
    if settings.signing_key is not None:
        # Checked now so that a dry run catches it; the key itself is read only to sign.
        _check_signing_key(settings.signing_key)

    if settings.variants_only and not accelerators:
        raise PackagingError(
            "bad-option",
            "--variants-only packages accelerator variants, but no --accelerator was given",
            hint="name the pass's accelerator, e.g. --variants-only --accelerator cuda",
        )
    scan = scan_sources(settings)
    selected = select_sources(scan, only)
    if not only:
        # Named plugins are packaged as asked; otherwise the release set: official plugins and
        # the extras declared with `release: true`.
        selected = [source for source in selected if is_released(settings, source)]
    context = _Context(settings, existing, accelerators, frozenset(only), public_key)
    plans = [_plan_safely(context, source) for source in selected]
    plans += _carried_over(context, plans)
    notes = _notes(settings)
    report = ReleaseReport(
        entries=tuple(_entry(plan) for plan in plans),
        out_dir=out_dir,
        dry_run=dry_run,
        scan_errors=scan.errors,
        scan_warnings=scan.warnings,
        notes=notes,
    )
    if dry_run or report.failed:
        return report

    official = official_plugins_document(scan.sources)
    with staged_output(out_dir) as staging:
        return _carry_out(
            context,
            plans,
            report,
            out_dir,
            staging,
            mtime=mtime,
            today=today,
            env=env,
            official=official,
            progress=progress,
        )


@contextlib.contextmanager
def staged_output(out_dir: Path) -> Iterator[Path]:
    """A fresh staging directory inside `out_dir`, with `out_dir` locked for the block.

    The lock is on `out_dir` itself, and the bookkeeping directory holding the staging area is
    removed afterwards: `<out>` is uploaded as it is, so it must hold the release and nothing
    else. Leftovers of a killed run are removed first (we hold the lock: no one else uses them).
    """
    from plugin_packaging._fs.lock import DirectoryLock
    from plugin_packaging._fs.swap import remove_entry
    from plugin_packaging.output import tell_on_stderr

    state = out_dir / STATE_DIR
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io_error(exc, out_dir, "create the output directory") from None
    with DirectoryLock(state, on_parent=True, on_wait=tell_on_stderr):
        try:
            for leftover in state.glob("staging-*"):
                remove_entry(leftover)
            staging = Path(tempfile.mkdtemp(prefix="staging-", dir=state))
        except OSError as exc:
            raise io_error(exc, out_dir, "prepare the release output") from None
        try:
            yield staging
        finally:
            remove_entry(staging)
            with contextlib.suppress(OSError):
                state.rmdir()


def swap_release(staging: Path, out_dir: Path, official: bytes | None) -> None:
    """Put a staged release in place: bundles first (a registry must never point at bundles that
    are not there yet), then the registry, then official-plugins.json."""
    from plugin_packaging._fs.files import write_atomically
    from plugin_packaging._fs.swap import swap_in

    swap_in(staging / BUNDLES_DIR, out_dir / BUNDLES_DIR)
    swap_in(staging / REGISTRY_DIR, out_dir / REGISTRY_DIR)
    if official is not None:
        write_atomically(out_dir / OFFICIAL_PLUGINS_FILE, official)


def published_date(value: str | None) -> str:
    """The `published_at` date of new versions: `value` checked, or today in UTC."""
    if value is None:
        return datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        datetime.date.fromisoformat(value)
    except ValueError:
        raise PackagingError(
            "bad-setting",
            f"published_at {value!r} is not a YYYY-MM-DD date",
            hint="pass e.g. --published-at 2025-01-31, or leave it out for today's date (UTC)",
        ) from None
    return value


def output_directory(settings: Settings) -> Path:
    out_dir = settings.dist_dir or settings.root / "dist"
    if out_dir.exists() and not out_dir.is_dir():
        raise PackagingError(
            "out-not-directory",
            "the output path exists and is not a directory",
            out_dir,
            hint="pass --out DIR naming a directory",
        )
    return out_dir


def _checked_accelerators(names: Sequence[str]) -> tuple[str, ...]:
    from plugin_packaging.release.registry import bundle_file_name

    out = []
    for name in dict.fromkeys(names):
        if name == "cpu":
            raise PackagingError(
                "bad-option",
                "--accelerator cpu: the CPU bundle is always built",
                hint="name another accelerator, such as --accelerator cuda",
            )
        bundle_file_name("plugin", "0.0.0", name)  # refuses a name that cannot be in a file name
        out.append(name)
    return tuple(out)


def _check_urls(settings: Settings) -> None:
    from plugin_packaging.release.registry import bundle_url

    bundle_url(settings.bundle_url_template, "plugin", "0.0.0", "plugin-0.0.0-bundle.tar.zst")
    if not re.match(r"^https?://[^/\s]+", settings.registry_base_url):
        raise PackagingError(
            "bad-setting",
            f"registry base URL {settings.registry_base_url!r} is not an http(s) URL",
            hint="pass --registry-base-url https://HOST/PATH (where registry/ will be served)",
        )


def _public_key(settings: Settings, existing: PublishedRegistry | None) -> Path | None:
    """The public key that checks carried-over signatures and goes into the registry."""
    key = settings.public_key or (existing.public_key if existing is not None else None)
    if key is not None:
        from plugin_packaging.release.signing import public_key_id

        public_key_id(key)  # refuses a missing or broken key file before anything is built
    return key


def _notes(settings: Settings) -> tuple[PackagingError, ...]:
    notes = []
    if settings.signing_key is None:
        notes.append(
            PackagingError(
                "registry-unsigned",
                "new manifests are not signed: the server's marketplace refuses a manifest "
                "without a valid manifest.minisig",
                hint="pass --signing-key FILE (a minisign secret key) for a release",
            )
        )
    if settings.variants_only:
        notes.append(
            PackagingError(
                "registry-variants-only",
                "a variants-only pass: the manifests of versions not published yet have no CPU "
                "bundle and are not signed",
                hint="merge this output with the CPU pass's (merge-plugin-registries) and publish "
                "the merged registry",
            )
        )
    return tuple(notes)


def _plan_safely(context: _Context, source: PluginSource) -> _Plan:
    try:
        return _plan(context, source)
    except PackagingError as exc:
        return _Plan(source.id, "failed", source=source, error=exc)


def _plan(context: _Context, source: PluginSource) -> _Plan:
    from plugin_packaging.release.registry import bundle_file_name, manifest_json_bytes
    from plugin_packaging.sources.artifacts import locate_artifact
    from plugin_packaging.sources.plugin_yml import render_manifest

    settings = context.settings
    artifact = locate_artifact(
        settings.root, source, settings.platform, settings.allowed_source_dirs
    )
    if artifact.problem:
        error = artifact.absence_error(required=False)
        return _Plan(source.id, "failed", source, error=error)
    # The manifest comes from the sources alone: a published version is checked against it
    # whether or not anything is built (the registry is append-only either way).
    generated, bundle_manifest = release_manifest(settings, source, artifact.file_name)
    data = generated.data
    version = generated.version
    warnings = [w for w in generated.warnings if w.code != VERSION_DIFFERS_FROM_CRATE]
    mismatch = version_mismatch(generated)
    if mismatch is not None:
        return _Plan(
            source.id, "failed", source, version, data, error=mismatch, warnings=tuple(warnings)
        )
    published = context.existing.get(source.id, version) if context.existing else None
    if published is not None:
        diff = published_difference(published, bundle_manifest, source)
        if diff is not None:
            return _Plan(
                source.id,
                "failed",
                source,
                version,
                data,
                published=published,
                error=published_changed_error(source, version, published),
                diff=diff,
                warnings=tuple(warnings),
            )
        _check_signature(context, published)

    # Which archives to write: the CPU bundle of a new version (not in a variants-only pass),
    # and the variants it declares that are not published yet.
    published_variants = (
        {v.get("accelerator") for v in published.manifest.get("variants", [])}
        if published
        else set()
    )
    wanted: list[tuple[str | None, Artifact]] = []
    missing: list[PackagingError] = []
    if published is None and not settings.variants_only:
        if artifact.exists:
            wanted.append((None, artifact))
        else:
            missing.append(_missing_error(source, artifact, None, "artifact"))
    declares_variant = False
    for requested in context.accelerators:
        found = _variant_artifact(context, source, requested)
        if found is None:
            continue
        declares_variant = True
        if requested in published_variants:
            continue
        key, variant = found
        if variant.exists:
            wanted.append((requested, variant))
        else:
            missing.append(_missing_error(source, variant, requested, key))
    if missing:
        if not settings.allow_missing or source.id in context.required:
            return _Plan(
                source.id,
                "failed",
                source,
                version,
                data,
                published=published,
                error=missing[0],
                warnings=(*warnings, *missing[1:]),
            )
        cpu_missing = (
            published is None
            and not settings.variants_only
            and not any(kind is None for kind, _ in wanted)
        )
        if cpu_missing:
            # --allow-missing: left out of this release on purpose, variants and all.
            return _Plan(
                source.id,
                "not-built",
                source,
                version,
                data,
                detail=missing[0].message,
                warnings=tuple(warnings),
            )
        warnings.extend(
            PackagingError("variant-not-built", error.message, error.path, hint=error.hint)
            for error in missing
        )
    if published is None and settings.variants_only and not declares_variant:
        return _Plan(
            source.id,
            "skipped",
            source,
            version,
            data,
            detail=f"declares no {' or '.join(context.accelerators)} build (variants-only pass)",
            warnings=tuple(warnings),
        )
    for _, library in wanted:
        _check_loadable(settings, library)
    specs: list[_BundleSpec] = []
    if wanted:
        # Read only for what is built: a published version's extra files need not exist any more.
        members = _members(
            settings,
            source,
            artifact,
            render_manifest(generated, settings.template),
            manifest_json_bytes(bundle_manifest),
        )
        for accelerator, library in wanted:
            name = bundle_file_name(source.id, version, accelerator)
            # The library member comes first; a variant puts its own build at the same entrypoint.
            own = (replace(members[0], source=library.path), *members[1:])
            vendoring = _vendoring(settings, source, own)
            specs.append(
                _BundleSpec(
                    name,
                    accelerator,
                    _url(settings, source.id, version, name),
                    library,
                    vendoring.members,
                    vendoring,
                )
            )
    status: Status
    if published is None:
        status = "add-variant" if settings.variants_only else "publish"
    elif specs:
        status = "add-variant"
    else:
        status = "unchanged"
    return _Plan(
        source.id, status, source, version, data, tuple(specs), published, warnings=tuple(warnings)
    )


def official_plugins_document(sources: Sequence[PluginSource]) -> bytes:
    """`official-plugins.json`: every official plugin's source manifest, as written, by id.

    The same bytes as StreamKit's generate_official_plugins.py writes for the same sources (its
    docs and scripts read the file): `{"plugins": [...]}`, keys in its order, two-space JSON.
    """
    import json

    plugins = []
    for source in sorted((s for s in sources if not s.is_extra), key=lambda s: s.id):
        ordered = {key: source.data[key] for key in OFFICIAL_PLUGIN_KEYS if key in source.data}
        ordered.update((key, value) for key, value in source.data.items() if key not in ordered)
        plugins.append(ordered)
    try:
        return (json.dumps({"plugins": plugins}, indent=2) + "\n").encode("ascii")
    except (TypeError, ValueError) as exc:
        raise PackagingError(
            "official-plugins-not-json",
            f"a source manifest holds a value JSON cannot hold ({exc})",
            hint="quote dates and other special YAML values in plugin.yml",
        ) from None


def release_manifest(
    settings: Settings, source: PluginSource, entrypoint: str
) -> tuple[GeneratedManifest, dict[str, Any]]:
    """The generated `plugin.yml` of a source and its registry manifest without `bundle`.

    From the sources only (the source manifest, `Cargo.toml`, the library's file name
    `entrypoint`): nothing needs to be built, so `check-registry-versions` uses it too.
    """
    from plugin_packaging.release.registry import registry_manifest
    from plugin_packaging.sources.cargo import read_crate
    from plugin_packaging.sources.plugin_yml import generate_manifest

    crate = read_crate(source.crate_dir, stop_at=settings.root) if source.crate_dir else None
    generated = generate_manifest(
        source.data,
        origin=source.origin,
        origin_path=source.manifest_path or Path(source.origin),
        entrypoint=entrypoint,
        crate=crate,
        # The checker's manifest rules, graded as settings say: nothing it calls an error is
        # published (the registry may only be appended to).
        rule_overrides=settings.rules,
    )
    return generated, registry_manifest(generated.data, bundle=None)


def version_mismatch(generated: GeneratedManifest) -> PackagingError | None:
    """A release refuses a `version` that differs from the crate's, as StreamKit's tooling does
    (for `copy-plugins-native` it is only a warning)."""
    for warning in generated.warnings:
        if warning.code == VERSION_DIFFERS_FROM_CRATE:
            return PackagingError(
                "release-version-differs-from-crate",
                warning.message,
                warning.path,
                hint="make plugin.yml's `version` and Cargo.toml's [package].version equal: "
                "a release publishes one version of each plugin",
            )
    return None


def published_changed_error(
    source: PluginSource, version: str, published: PublishedVersion
) -> PackagingError:
    return PackagingError(
        "registry-published-changed",
        f"{source.id} {version} is already published, and the current sources would change its "
        "manifest",
        published.manifest_path,
        hint=f"bump `version` in {source.origin}{_crate_note(source)}: a published version never "
        "changes",
    )


def is_released(settings: Settings, source: PluginSource) -> bool:
    """Official plugins (the source manifests, StreamKit's `plugins/native/*`) are released;
    an extra such as the gain-native example only with `release: true` in its declaration."""
    if not source.is_extra:
        return True
    declaration = settings.extras.get(source.id)
    return isinstance(declaration, Mapping) and declaration.get("release") is True


#: Blocking checker rules that say nothing about a published bundle: its modes are normalised
#: (an unreadable file fails when it is read, with the system's own message), and the
#: architecture is the builder's choice (cross builds; verify-plugin-bundles --arch checks it).
_NOT_FOR_RELEASES = frozenset({"library-unreadable", "library-wrong-arch"})


def _check_loadable(settings: Settings, library: Artifact) -> None:
    """Refuse to publish a library the server's loader would skip, or that the checker's library
    rules grade an error after the settings.

    Dependencies are left to verify-plugin-bundles, which sees the whole bundle.
    """
    from plugin_packaging.check.library import check_library
    from plugin_packaging.rules.table import RULES, effective_severity
    from plugin_packaging.target import Target

    verdict = check_library(library.path, target=Target.of(settings.platform), resolver=None)
    for violation in verdict.violations:
        if violation.code in _NOT_FOR_RELEASES:
            continue
        # The rule's own verdict, not this host's: an executable stack that an older glibc here
        # still grants is refused by the glibc of many users (2.41 and later).
        rule = RULES[violation.code]
        if rule.blocks_load:
            why = "the server would not load it"
        elif effective_severity(violation.code, settings.rules) == "error":
            why = "the checker grades it an error"
        else:
            continue
        finding = rule.finding(violation, "error")
        raise PackagingError(
            violation.code,
            f"{finding.message}; {why}, so it is not published",
            library.path,
            hint=finding.hint,
        )


def _vendoring(
    settings: Settings, source: PluginSource, members: tuple[ArchiveMember, ...]
) -> VendorPlan:
    """The bundle's members plus the shared libraries it must bring (Linux releases only)."""
    from plugin_packaging.release.vendor import VendorPlan, plan_vendoring

    if settings.platform != "linux":
        return VendorPlan(members)
    return plan_vendoring(members, settings.vendor.for_plugin(source.id))


def _crate_note(source: PluginSource) -> str:
    if source.crate_dir is not None and (source.crate_dir / "Cargo.toml").is_file():
        return " (and [package].version in its Cargo.toml)"
    return ""


def _missing_error(
    source: PluginSource, library: Artifact, accelerator: str | None, key: str
) -> PackagingError:
    """A library this release needs is not built: an error, unless --allow-missing."""
    allow = "or pass --allow-missing to release the others without it"
    if accelerator is None:
        error = library.absence_error(required=True)
        assert error is not None  # required: never None
        hint = f"{error.hint}, {allow}" if error.code == "artifact-missing" else error.hint
        return PackagingError(error.code, error.message, error.path, hint=hint)
    looked_for = f"looked for {library.declared} (from {source.origin}: {key})"
    if library.problem:
        return PackagingError(
            "artifact-unusable",
            f"{library.problem} ({looked_for})",
            library.path,
            hint="remove it and rebuild the plugin",
        )
    build = f"plugin-packaging build-plugins-native --accelerator {accelerator} --only {source.id}"
    return PackagingError(
        "artifact-missing",
        f"the {accelerator} build of {source.id} is not built: {looked_for}",
        library.path,
        hint=f"build it first on the {accelerator} machine (`{build}`), {allow}",
    )


def _variant_artifact(
    context: _Context, source: PluginSource, accelerator: str
) -> tuple[str, Artifact] | None:
    """(the key it comes from, the library) of `accelerator`'s build, or None when the plugin
    has none.

    `artifact_<accelerator>` when declared; else, for a plugin that lists the accelerator in
    `accelerators`, its `artifact`: as in StreamKit's releases, the accelerator's pass rebuilds
    such a plugin (with the accelerator's runtime) into the same path.
    """
    from plugin_packaging.contract import is_native_library_name, relative_path_problem
    from plugin_packaging.sources.artifacts import locate_artifact

    key = f"artifact_{accelerator}"
    where = source.manifest_path or Path(source.origin)
    declared = source.data.get(key)
    if declared is None:
        listed = source.data.get("accelerators")
        if isinstance(listed, list) and accelerator in listed:
            return "artifact", locate_artifact(
                context.settings.root, source, context.settings.platform
            )
        return None
    problem = relative_path_problem(declared) if isinstance(declared, str) else "is not a path"
    if problem is None and not is_native_library_name(PurePosixPath(declared).name):
        problem = "does not name a library (.so, .dylib or .dll)"
    if problem is not None:
        raise PackagingError(
            "source-artifact-unsafe",
            f"`{key}` {declared!r} {problem}",
            where,
            hint="give the variant's build output relative to the checkout root",
        )
    return key, locate_artifact(
        context.settings.root,
        replace(source, artifact=PurePosixPath(declared)),
        context.settings.platform,
        context.settings.allowed_source_dirs,
    )


def published_difference(
    published: PublishedVersion, new: Mapping[str, Any], source: PluginSource
) -> str | None:
    """The unified diff between a published manifest and the one the sources give, or None."""
    from plugin_packaging.errors import display_path
    from plugin_packaging.release.registry import compare_published

    return compare_published(
        published.manifest,
        new,
        published_label=f"published {display_path(published.manifest_path)}",
        new_label=f"this build (from {source.origin})",
    )


def _check_signature(context: _Context, published: PublishedVersion) -> None:
    """A carried-over manifest must carry a valid signature by the registry's key, when one is known."""
    if context.public_key is None:
        return
    from plugin_packaging.release.registry import SIGNATURE_FILE
    from plugin_packaging.release.signing import verify_file

    signature = published.signature_path or published.manifest_path.with_name(SIGNATURE_FILE)
    verify_file(context.public_key, published.manifest_path, signature)


def _members(
    settings: Settings,
    source: PluginSource,
    artifact: Artifact,
    manifest_text: str,
    bundle_manifest: bytes,
) -> tuple[ArchiveMember, ...]:
    """The library first (variants swap it), then plugin.yml, manifest.json and the extra files."""
    from plugin_packaging.release.archive import ArchiveMember, check_member_name

    where = source.manifest_path or Path(source.origin)
    entrypoint = artifact.file_name
    try:
        check_member_name(entrypoint)
    except PackagingError as exc:
        raise PackagingError(
            exc.code, exc.message, artifact.path, hint="rename the library"
        ) from None
    members = [
        ArchiveMember(entrypoint, source=artifact.path, executable=True),
        ArchiveMember(MANIFEST_NAME, data=manifest_text.encode("utf-8")),
        ArchiveMember(BUNDLE_MANIFEST, data=bundle_manifest),
    ]
    taken = {member.name.casefold(): "the bundle's own " + member.name for member in members}
    taken[entrypoint.casefold()] = f"the entry library {entrypoint}"
    for member in extra_file_members(
        settings.root,
        source.data.get("extra_files"),
        where,
        source.origin,
        allowed=settings.allowed_source_dirs,
    ):
        clash = taken.get(member.name.casefold())
        if clash is not None:
            raise PackagingError(
                "extra-file-clash",
                f"extra_files puts {member.name!r} into the bundle, where {clash} already is",
                where,
                hint="give it another `dest`",
            )
        taken[member.name.casefold()] = f"the extra file {member.name}"
        members.append(member)
    return tuple(members)


def extra_file_members(
    root: Path, declared: Any, where: Path, origin: str, *, allowed: Sequence[Path] = ()
) -> list[ArchiveMember]:
    """The bundle members of a source's `extra_files`.

    Each item is a path, or `{source, dest}`; sources are relative to the checkout root (like
    `artifact`, and like StreamKit's builder, which runs at the root), and `dest` defaults to
    the source's file name, at the top of the bundle. A directory brings every file below it.
    """
    from plugin_packaging.contract import relative_path_problem
    from plugin_packaging.release.archive import ArchiveMember, check_member_name

    if declared is None:
        return []
    if not isinstance(declared, list):
        raise PackagingError(
            "extra-files-invalid",
            "`extra_files` must be a list of paths or {source, dest} mappings",
            where,
            hint="e.g. extra_files: [LICENSES/MIT.txt, {source: third_party/libdep.so.1, dest: libdep.so.1}]",
        )
    members: list[ArchiveMember] = []
    for index, item in enumerate(declared):
        label = f"extra_files[{index}]"
        if isinstance(item, str):
            source_text, dest = item, None
        elif isinstance(item, Mapping) and isinstance(item.get("source"), str):
            source_text, dest = item["source"], item.get("dest")
            if dest is not None and not isinstance(dest, str):
                raise PackagingError(
                    "extra-files-invalid", f"`{label}.dest` must be a string", where
                )
        else:
            raise PackagingError(
                "extra-files-invalid", f"`{label}` must be a path or a mapping with `source`", where
            )
        problem = relative_path_problem(source_text)
        if problem:
            raise PackagingError(
                "extra-file-unsafe",
                f"`{label}` source {source_text!r} {problem}",
                where,
                hint="give the file relative to the checkout root",
            )
        dest = dest if dest is not None else PurePosixPath(source_text.replace("\\", "/")).name
        try:
            check_member_name(dest)
        except PackagingError as exc:
            raise PackagingError(
                "extra-file-unsafe", f"`{label}`: {exc.message}", where, hint=exc.hint
            ) from None
        path = root / source_text
        _refuse_outside(path, root, allowed, where, label)
        if path.is_dir() and not path.is_symlink():
            members.extend(_directory_members(path, dest, where, label))
            for member in members:
                if member.source is not None:
                    _refuse_outside(member.source, root, allowed, where, label)
        elif path.is_file():
            members.append(ArchiveMember(dest, source=path, executable=_is_executable(path)))
        else:
            what = (
                "is not a regular file or directory" if os.path.lexists(path) else "does not exist"
            )
            raise PackagingError(
                "extra-file-missing",
                f"`{label}` {source_text!r} {what} (looked for {path}, from {origin}: extra_files)",
                where,
                hint="extra_files sources are relative to the checkout root; build or add the file first",
            )
    return members


def _refuse_outside(
    path: Path, root: Path, allowed: Sequence[Path], where: Path, label: str
) -> None:
    """Refuse an extra file that resolves outside the checkout (see `outside_checkout`)."""
    from plugin_packaging.sources.artifacts import OUTSIDE_CODE, OUTSIDE_HINT, outside_checkout

    outside = outside_checkout(path, root, allowed)
    if outside is not None:
        raise PackagingError(
            OUTSIDE_CODE,
            f"`{label}` {path} resolves to {outside}, outside the checkout",
            where,
            hint=OUTSIDE_HINT,
        )


def _directory_members(directory: Path, dest: str, where: Path, label: str) -> list[ArchiveMember]:
    from plugin_packaging.release.archive import ArchiveMember

    members = []
    for current, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        base = Path(current)
        for name in dirnames:
            if (base / name).is_symlink():
                raise PackagingError(
                    "extra-file-unsafe",
                    f"`{label}` holds {base / name}, a symbolic link to a directory",
                    where,
                    hint="bundles hold files only: copy the directory's files instead of linking them",
                )
        for name in sorted(filenames):
            path = base / name
            if not path.is_file():
                raise PackagingError(
                    "extra-file-unsafe",
                    f"`{label}` holds {path}, which is not a regular file (a broken link, a pipe?)",
                    where,
                )
            relative = path.relative_to(directory).as_posix()
            members.append(
                ArchiveMember(f"{dest}/{relative}", source=path, executable=_is_executable(path))
            )
    return members


def _is_executable(path: Path) -> bool:
    # Only the execute bits of the source count (a vendored library stays 0755); the umask at
    # build time removes bits but never adds them, so this is stable across machines.
    return bool(os.stat(path).st_mode & 0o111)


def _url(settings: Settings, plugin_id: str, version: str, file_name: str) -> str:
    from plugin_packaging.release.registry import bundle_url

    return bundle_url(settings.bundle_url_template, plugin_id, version, file_name)


def _carried_over(context: _Context, plans: Sequence[_Plan]) -> list[_Plan]:
    """Published versions this run does not touch: into the new registry as they are."""
    if context.existing is None:
        return []
    touched = {(p.id, p.version) for p in plans if p.version is not None}
    # A plugin whose sources could not even be read already has its line (failed); listing its
    # published versions too would name it twice, and a failed run writes nothing anyway.
    unreadable = {p.id for p in plans if p.version is None}
    out = []
    for key in sorted(context.existing.versions):
        if key in touched or key[0] in unreadable:
            continue
        published = context.existing.versions[key]
        try:
            _check_signature(context, published)
        except PackagingError as exc:
            out.append(
                _Plan(
                    published.plugin_id,
                    "failed",
                    version=published.version,
                    published=published,
                    error=exc,
                )
            )
            continue
        out.append(
            _Plan(
                published.plugin_id, "carried-over", version=published.version, published=published
            )
        )
    return out


def _entry(plan: _Plan, written: Sequence[BundleFile] | None = None) -> ReleaseEntry:
    bundles: tuple[BundleFile, ...]
    if written is not None:
        bundles = tuple(written)
    elif plan.specs:
        bundles = tuple(
            BundleFile(
                spec.file_name,
                spec.accelerator,
                spec.url,
                members=tuple(m.name for m in spec.members),
                library_size=spec.library.size,
                vendored=_vendored_text(spec),
            )
            for spec in plan.specs
        )
    elif plan.published is not None:
        bundles = _published_bundles(plan.published.manifest)
    else:
        bundles = ()
    return ReleaseEntry(
        id=plan.id,
        status=plan.status,
        version=plan.version,
        bundles=bundles,
        detail=plan.detail,
        error=plan.error,
        diff=plan.diff,
        warnings=plan.warnings,
    )


def _vendored_text(spec: _BundleSpec) -> tuple[str, ...]:
    from plugin_packaging.errors import display_path

    vendored = spec.vendoring.vendored if spec.vendoring is not None else ()
    return tuple(f"{v.name} (from {display_path(v.source)})" for v in vendored)


def _published_bundles(manifest: Mapping[str, Any]) -> tuple[BundleFile, ...]:
    """The bundles a published manifest points at, as the report lists them."""
    out = []
    blocks = [(None, manifest.get("bundle"))] + [
        (v.get("accelerator"), v) for v in manifest.get("variants", [])
    ]
    for accelerator, block in blocks:
        if isinstance(block, Mapping) and isinstance(block.get("url"), str):
            out.append(
                BundleFile(
                    file_name=block["url"].rsplit("/", 1)[-1],
                    accelerator=accelerator,
                    url=block["url"],
                    sha256=block.get("sha256"),
                    size_bytes=block.get("size_bytes"),
                )
            )
    return tuple(out)


# --- carrying out ----------------------------------------------------------------------------------


@dataclass
class _Output:
    """The staged output: what was written where, for the swap and the report."""

    staging: Path
    #: Every archive written, with the sha256 computed while writing it.
    bundle_files: dict[Path, str] = field(default_factory=dict)
    manifests: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def bundles(self) -> Path:
        return self.staging / BUNDLES_DIR

    @property
    def registry(self) -> Path:
        return self.staging / REGISTRY_DIR

    @property
    def vendor_scratch(self) -> Path:
        return self.staging / "vendor"


def _carry_out(
    context: _Context,
    plans: Sequence[_Plan],
    report: ReleaseReport,
    out_dir: Path,
    staging: Path,
    *,
    mtime: int,
    today: str,
    env: Mapping[str, str],
    official: bytes,
    progress: Callable[[str], None] | None = None,
) -> ReleaseReport:
    """Write everything into `staging`; swap it into `out_dir` only when all succeeded."""
    output = _Output(staging)
    try:
        with open_signing_key(context.settings, env) as key:
            key_id = checked_key_id(context.settings, context.public_key, key)
            output.bundles.mkdir()
            output.registry.mkdir()
            entries = []
            told = _Progress(plans, progress)
            for plan in plans:
                told.before(plan)
                entries.append(_write_plan_safely(context, plan, output, mtime, key))
            written = replace(report, entries=tuple(entries), key_id=key_id)
            if written.failed:
                return written
            _write_registry_files(context, output, today, key)
        from plugin_packaging.release.checksums import write_sha256sums

        write_sha256sums(output.bundles, list(output.bundle_files), known=output.bundle_files)
        swap_release(staging, out_dir, official)
    except OSError as exc:
        raise io_error(exc, out_dir, "write the release output") from None
    return written


class _Progress:
    """Tells `progress` about the bundles of each plan just before they are compressed (a large
    library takes seconds): `[n/N] packaging <file> (<size> library)`."""

    def __init__(self, plans: Sequence[_Plan], progress: Callable[[str], None] | None) -> None:
        self.progress = progress
        self.total = sum(len(plan.specs) for plan in plans if plan.status in _WRITTEN)
        self.number = 0

    def before(self, plan: _Plan) -> None:
        if self.progress is None or plan.status not in _WRITTEN:
            return
        from plugin_packaging.install.report import human_size

        for spec in plan.specs:
            self.number += 1
            self.progress(
                f"[{self.number}/{self.total}] packaging {spec.file_name} "
                f"({human_size(spec.library.size)} library)"
            )


def release_version_count(entries: Sequence[ReleaseEntry]) -> tuple[int, int]:
    """(plugins, versions) the registry lists after this release, from the report's entries."""
    listed = [
        e for e in entries if e.status in ("publish", "add-variant", "unchanged", "carried-over")
    ]
    return len({e.id for e in listed}), len(listed)


def _check_signing_key(path: Path) -> None:
    """Refuse a signing key that is missing or is no regular file (a FIFO must not be waited on)."""
    try:
        open_input(path, KEY).close()
    except FileNotFoundError:
        raise PackagingError(
            "signing-key-missing",
            "the minisign secret key file does not exist",
            path,
            hint="create one with `minisign -G`, or point --signing-key at it",
        ) from None
    except OSError as exc:
        raise key_unreadable(path, exc) from None


@contextlib.contextmanager
def open_signing_key(settings: Settings, env: Mapping[str, str]) -> Iterator[SecretKey | None]:
    """The loaded secret key for the block, or None when the release is unsigned.

    Opened once per run (a password-protected key takes seconds to decrypt), wiped afterwards.
    """
    if settings.signing_key is None:
        yield None
        return
    from plugin_packaging.release.signing import load_secret_key

    with load_secret_key(
        settings.signing_key, password_env=settings.signing_password_env, env=env
    ) as key:
        yield key


def checked_key_id(
    settings: Settings, public_key: Path | None, key: SecretKey | None
) -> str | None:
    """The signing key's id; it must be the key of the registry's public key, when one is known."""
    if key is None:
        return None
    from plugin_packaging.release.signing import public_key_id, public_key_of

    key_id, _ = public_key_of(key)
    if public_key is not None:
        expected = public_key_id(public_key)
        if expected != key_id:
            raise PackagingError(
                "signing-key-mismatch",
                f"the signing key is key {key_id}, but the public key {public_key.name} is key {expected}",
                settings.signing_key,
                hint="sign with the secret key that belongs to the registry's public key "
                "(or pass the matching --public-key)",
            )
    return key_id


def _write_plan_safely(
    context: _Context, plan: _Plan, output: _Output, mtime: int, key: SecretKey | None
) -> ReleaseEntry:
    try:
        return _write_plan(plan, output, mtime, key)
    except PackagingError as exc:
        # A library that vanished or shrank mid-run: this plugin fails, nothing is swapped in.
        return _entry(replace(plan, status="failed", error=exc))


def _write_plan(plan: _Plan, output: _Output, mtime: int, key: SecretKey | None) -> ReleaseEntry:
    from plugin_packaging.release.archive import write_bundle
    from plugin_packaging.release.registry import (
        BundleRef,
        Variant,
        merge_published,
        registry_manifest,
    )

    if plan.status in ("not-built", "failed"):
        return _entry(plan)
    if plan.status in ("unchanged", "carried-over"):
        assert plan.published is not None
        _copy_published(plan.published, output)
        return _entry(plan)
    assert plan.manifest is not None and plan.version is not None
    written: list[BundleFile] = []
    bundle: BundleRef | None = None
    variants: list[Variant] = []
    for spec in plan.specs:
        path = output.bundles / spec.file_name
        members = spec.members
        if spec.vendoring is not None:
            from plugin_packaging.release.vendor import vendored_members

            # Patched copies live in the staging area, removed with it: never the build output.
            members = vendored_members(spec.vendoring, output.vendor_scratch / spec.file_name)
        digest = write_bundle(path, members, mtime=mtime, threads=_ZSTD_WORKERS)
        output.bundle_files[path] = digest.sha256
        written.append(
            BundleFile(
                spec.file_name,
                spec.accelerator,
                spec.url,
                digest.sha256,
                digest.size_bytes,
                tuple(sorted(m.name for m in spec.members)),
                spec.library.size,
                _vendored_text(spec),
            )
        )
        if spec.accelerator is None:
            bundle = BundleRef(spec.url, digest.sha256, digest.size_bytes)
        else:
            variants.append(Variant(spec.accelerator, spec.url, digest.sha256, digest.size_bytes))
    manifest = registry_manifest(plan.manifest, bundle=bundle, variants=variants)
    if plan.published is not None:
        # add-variant: the published manifest plus the new variants; nothing else changes.
        manifest = merge_published(plan.published.manifest, manifest)
    _write_manifest(output, plan.id, plan.version, manifest, key)
    return _entry(plan, written)


def _copy_published(published: PublishedVersion, output: _Output) -> None:
    """A published version into the new registry, byte for byte, with its signature."""
    from plugin_packaging.release.registry import MANIFEST_FILE, SIGNATURE_FILE

    directory = output.registry / "plugins" / published.plugin_id / published.version
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(published.manifest_path, directory / MANIFEST_FILE)
    if published.signature_path is not None:
        shutil.copyfile(published.signature_path, directory / SIGNATURE_FILE)
    output.manifests.append(published.manifest)


def _write_manifest(
    output: _Output,
    plugin_id: str,
    version: str,
    manifest: Mapping[str, Any],
    key: SecretKey | None,
) -> None:
    from plugin_packaging.release.registry import MANIFEST_FILE, SIGNATURE_FILE, manifest_json_bytes

    directory = output.registry / "plugins" / plugin_id / version
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MANIFEST_FILE
    path.write_bytes(manifest_json_bytes(manifest))
    output.manifests.append(manifest)
    # A variants-only pass writes manifests without a CPU bundle for versions not published
    # yet; they are halves for merge-plugin-registries, which signs the whole.
    if key is not None and "bundle" in manifest:
        from plugin_packaging.release.signing import sign_with

        sign_with(key, path, signature_path=path.with_name(SIGNATURE_FILE))


def _write_registry_files(
    context: _Context, output: _Output, today: str, key: SecretKey | None
) -> None:
    """The public key and the index, once every manifest is in place."""
    from plugin_packaging.release.published import PUBLIC_KEY_FILE
    from plugin_packaging.release.registry import INDEX_FILE, build_index, manifest_json_bytes

    settings = context.settings
    if context.public_key is not None:
        shutil.copyfile(context.public_key, output.registry / PUBLIC_KEY_FILE)
    elif key is not None:
        from plugin_packaging.release.signing import public_key_of

        # No public key given or published: the signing key's own, so clients can verify.
        (output.registry / PUBLIC_KEY_FILE).write_bytes(public_key_of(key)[1])
    previous = context.existing.index if context.existing is not None else None
    index = build_index(
        output.manifests, previous, registry_base_url=settings.registry_base_url, today=today
    )
    (output.registry / INDEX_FILE).write_bytes(manifest_json_bytes(index))


def io_error(exc: OSError, path: Path, doing: str) -> PackagingError:
    """An operating system failure on the release output, said as a user error."""
    return from_os_error(
        exc,
        path,
        doing,
        writable="the output directory (or pass --out DIR)",
        kept="the previous output was not changed",
    )
