"""`package-plugins-native` and `verify-plugin-bundles`: release bundles, the registry, and the gate.

Thin, like every task here: settings in (invoke.yaml `plugins:` keys, `INVOKE_PLUGINS_*`, flags
last), one plain function from `package.py` or `verify.py`, its report out, an exit status:
0 success, 1 a plugin failed or a bundle has findings at error level, 2 usage and tool errors.
"""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit

from plugin_packaging.errors import PackagingError
from plugin_packaging.tasks.common import (
    COMMON_HELP,
    JUDGING_HELP,
    append_step_summary,
    checked_color,
    checked_format,
    emit,
    print_json,
    print_lines,
    settings_for,
    user_errors,
)
from plugin_packaging.tasks.options import plugin_task

_PATHS = " (relative to the current directory)"


@plugin_task(
    iterable=["only", "accelerator"],
    help={
        "root": COMMON_HELP["root"],
        "platform": COMMON_HELP["platform"],
        "only": COMMON_HELP["only"] + "; a named plugin that is not built is an error",
        "out": "output directory: bundles/ and registry/ are written inside (default: plugins.dist_dir, "
        "dist)" + _PATHS,
        "bundle_url_template": "where bundles are downloaded from, with {plugin_id} and {version}; the "
        "file name is appended (default: StreamKit's GitHub releases)",
        "registry_base_url": "URL the registry/ directory is served from, for index.json (default: "
        "https://streamkit.dev/registry)",
        "existing_registry": "the published registry to append to: published versions are carried over "
        "and must not change" + _PATHS,
        "signing_key": "minisign secret key that signs each new manifest.json; an encrypted key's "
        "password comes from $MINISIGN_PASSWORD (see --password-env)" + _PATHS,
        "password_env": "environment variable holding the signing key's password (default MINISIGN_PASSWORD)",
        "public_key": "minisign public key: copied into the registry as streamkit.pub and used to check "
        "carried-over signatures" + _PATHS,
        "accelerator": "also package the NAME variant (e.g. cuda) of the plugins that list NAME in "
        "`accelerators`: built from artifact_<NAME>, else from `artifact`; repeatable",
        "variants_only": "a variant pass of a distributed release: package only the --accelerator "
        "variants, no CPU bundles (merge-plugin-registries joins it with the CPU pass)",
        "allow_missing": "release the built plugins even when official ones (or their variants) are "
        "not built; without it a missing one fails the release",
        "published_at": "date for new versions in index.json, YYYY-MM-DD (default: today, UTC)",
        "dry_run": "show what would be built and published; write nothing",
        "no_vendor": "do not vendor shared-library dependencies into the bundles (plugins.vendor)",
        "format": COMMON_HELP["format"],
        "color": COMMON_HELP["color"],
    },
)
@user_errors
def package_plugins_native(
    c: Context,
    root: str | None = None,
    platform: str | None = None,
    only: list[str] | None = None,
    out: str | None = None,
    bundle_url_template: str | None = None,
    registry_base_url: str | None = None,
    existing_registry: str | None = None,
    signing_key: str | None = None,
    password_env: str | None = None,
    public_key: str | None = None,
    accelerator: list[str] | None = None,
    published_at: str | None = None,
    variants_only: bool = False,
    allow_missing: bool = False,
    dry_run: bool = False,
    no_vendor: bool = False,
    format: str = "text",
    color: str = "auto",
) -> None:
    """Package built native plugins as reproducible .tar.zst bundles plus a signed registry.

    Writes <out>/bundles/<id>-<version>-bundle.tar.zst with SHA256SUMS, and <out>/registry/
    (plugins/<id>/<version>/manifest.json + manifest.minisig, index.json, streamkit.pub) in
    StreamKit's formats, and <out>/official-plugins.json. The release set is every official
    plugin (plugins/native/*) plus the extras declared with `release: true`; one that is not
    built fails the release unless --allow-missing. Archive timestamps come from
    SOURCE_DATE_EPOCH. Shared libraries a plugin needs beyond the base system are vendored
    next to it with RUNPATH $ORIGIN (see plugins.vendor). Nothing is written unless every
    plugin succeeds.
    """
    from plugin_packaging.output import FORMATS
    from plugin_packaging.release.package import package_plugins
    from plugin_packaging.release.report import (
        release_annotations,
        release_document,
        render_release,
        render_release_markdown,
    )

    output_format = checked_format(format, FORMATS)
    colour = checked_color(color)
    settings = settings_for(
        c,
        root,
        platform=platform,
        dist_dir=out,
        bundle_url_template=bundle_url_template,
        registry_base_url=registry_base_url,
        existing_registry=existing_registry,
        signing_key=signing_key,
        signing_password_env=password_env,
        public_key=public_key,
        accelerators=accelerator or None,
        published_at=published_at,
        # Unset unless given: invoke.yaml may turn them on.
        variants_only=variants_only or None,
        allow_missing=allow_missing or None,
        vendor=False if no_vendor else None,
    )
    if settings.profile != "release":
        raise PackagingError(
            "release-needs-release-build",
            f"release bundles are made of release builds, but plugins.profile is {settings.profile}",
            hint="unset plugins.profile (INVOKE_PLUGINS_PROFILE) for packaging; debug builds are "
            "for local installs (copy-plugins-native --profile debug)",
        )
    from plugin_packaging.output import tell_on_stderr

    report = package_plugins(settings, only=only or (), dry_run=dry_run, progress=tell_on_stderr)
    if output_format == "json":
        print_json(release_document(report))
    else:
        if output_format == "github":
            print_lines(release_annotations(report))
        emit(render_release(report), colour)
    append_step_summary(lambda: render_release_markdown(report))
    if report.failed:
        raise Exit(code=1)


@plugin_task(
    help={
        "root": COMMON_HELP["root"],
        "bundles": "directory of bundle archives to check (default: <plugins.dist_dir>/bundles)"
        + _PATHS,
        "registry": "the registry the bundles are published in: checks hashes, sizes, signatures and "
        "the index against it" + _PATHS,
        "public_key": "minisign public key the server trusts (default: plugins.public_key, else the "
        "registry's streamkit.pub)" + _PATHS,
        **JUDGING_HELP,
        "format": "output: text (default), json (versioned, see schemas/bundle-report.v1.json) or "
        "github (workflow commands for annotations)",
        "color": COMMON_HELP["color"],
    },
)
@user_errors
def verify_plugin_bundles(
    c: Context,
    root: str | None = None,
    bundles: str | None = None,
    registry: str | None = None,
    public_key: str | None = None,
    platform: str | None = None,
    arch: str | None = None,
    format: str = "text",
    strict: bool = False,
    color: str = "auto",
) -> None:
    """Check bundle archives as the server's installer and StreamKit's portability gate would.

    Safe extraction (no absolute or .. names, no links or devices, size and member caps), sha256
    and size against SHA256SUMS and the registry, manifest signatures, the entry library against
    the loader's rules, RUNPATH, vendored dependencies, and no CUDA in a CPU bundle. Exit status
    0 when nothing is at error level, 1 when something is, 2 for usage errors.
    """
    from plugin_packaging.release.archive import ArchiveLimits
    from plugin_packaging.release.report import FORMATS, render_verification
    from plugin_packaging.release.verify import verify_bundles
    from plugin_packaging.target import Target

    output_format = checked_format(format, FORMATS)
    colour = checked_color(color)
    # Named bundles (--bundles, or --root whose dist/bundles it reads) are all a verification
    # needs: it works outside any checkout.
    named = bundles is not None or root is not None
    settings = settings_for(
        c, root, need_checkout=not named, platform=platform, public_key=public_key
    )
    assert settings.dist_dir is not None
    report = verify_bundles(
        Path(bundles).absolute() if bundles else settings.dist_dir / "bundles",
        registry_dir=Path(registry).absolute() if registry else None,
        public_key=settings.public_key,
        rule_overrides=settings.rules,
        target=Target.of(settings.platform, arch),
        limits=ArchiveLimits(
            max_total_bytes=settings.bundle_max_unpacked_bytes,
            max_members=settings.bundle_max_members,
        ),
        vendor=settings.vendor,
    )
    if output_format == "text":
        emit(render_verification(report, "text", strict=strict), colour)
    else:
        print(render_verification(report, output_format, strict=strict))
    if report.failed(strict):
        raise Exit(code=1)


@plugin_task(
    iterable=["only"],
    help={
        "root": COMMON_HELP["root"],
        "only": COMMON_HELP["only"],
        "platform": COMMON_HELP["platform"],
        "registry": "the published registry to check against (default: plugins.existing_registry, "
        "else the checkout's docs/public/registry)" + _PATHS,
    },
)
@user_errors
def check_registry_versions(
    c: Context,
    root: str | None = None,
    only: list[str] | None = None,
    platform: str | None = None,
    registry: str | None = None,
) -> None:
    """Fail when the sources would change a published plugin version (for pull requests).

    For each released plugin whose current version is in the registry, the manifest the
    sources give now is compared with the published one, as package-plugins-native does; a
    difference is shown as a diff with the advice to bump the version. Reads no library and no
    signature and builds nothing. Exit status 0 when nothing would change, 1 when something
    would (or a version differs from Cargo.toml), 2 for usage errors.
    """
    from plugin_packaging.release.report import render_version_check
    from plugin_packaging.release.versions import check_registry_versions as check

    settings = settings_for(c, root, platform=platform, existing_registry=registry)
    report = check(settings, only=only or ())
    print(render_version_check(report))
    if report.failed:
        raise Exit(code=1)


@plugin_task(
    iterable=["input"],
    help={
        "root": COMMON_HELP["root"],
        "input": "the --out directory of one package-plugins-native pass (the CPU pass, a "
        "--variants-only pass...); repeatable, at least one" + _PATHS,
        "out": "where the merged bundles/ and registry/ are written (default: plugins.dist_dir, "
        "dist)" + _PATHS,
        "signing_key": "minisign secret key that signs the manifests whose variants grew; an "
        "encrypted key's password comes from $MINISIGN_PASSWORD (see --password-env)" + _PATHS,
        "password_env": "environment variable holding the signing key's password (default "
        "MINISIGN_PASSWORD)",
        "public_key": "minisign public key: checks the signatures kept and goes into the registry "
        "(default: the inputs' streamkit.pub)" + _PATHS,
        "registry_base_url": "URL the registry/ directory is served from, for index.json (as given "
        "to package-plugins-native)",
        "published_at": "date for versions no input dates, YYYY-MM-DD (default: today, UTC)",
    },
)
@user_errors
def merge_plugin_registries(
    c: Context,
    root: str | None = None,
    input: list[str] | None = None,
    out: str | None = None,
    signing_key: str | None = None,
    password_env: str | None = None,
    public_key: str | None = None,
    registry_base_url: str | None = None,
    published_at: str | None = None,
) -> None:
    """Merge the outputs of the passes of a distributed release into one registry, append-only.

    Each version's manifest is the CPU pass's plus the variants the other passes add; anything
    else that differs between the passes fails the merge with a diff. Manifests equal to an
    input's keep their signature; only those whose variants grew are signed again. Bundles are
    copied with one SHA256SUMS, index.json is rebuilt. Exit status 0 on success, 1 when the
    passes disagree, 2 for usage errors.
    """
    from plugin_packaging.release.merge import merge_registries
    from plugin_packaging.release.report import render_merge

    # The passes' outputs are all a merge reads: it works outside a checkout when they are named.
    settings = settings_for(
        c,
        root,
        need_checkout=not (input or root),
        dist_dir=out,
        signing_key=signing_key,
        signing_password_env=password_env,
        public_key=public_key,
        registry_base_url=registry_base_url,
        published_at=published_at,
    )
    report = merge_registries(settings, [Path(path).absolute() for path in input or ()])
    print(render_merge(report))
    if report.failed:
        raise Exit(code=1)


TASKS = [
    package_plugins_native,
    verify_plugin_bundles,
    check_registry_versions,
    merge_plugin_registries,
]
