"""The checker's verdict on a whole plugin tree after an install, without reading it all again.

After `copy-plugins-native` the checker judges every bundle, not only those the run changed: a
broken bundle installed earlier (with `--force`, or by hand) must keep failing the run, and the
last line must never say the loader will accept a tree it will not. Reading every library on
every no-op run would cost what the incremental install saves, so each bundle's findings are kept
in the install state with a digest of everything they were computed from:

- the lstat signature (size, mtime, inode, mode) of every entry in the bundle, recursively, and of
  what a symlink in it points to;
- the target platform and architecture, the severity settings, the tool's version;
- what dependency resolution reads outside the bundle: `LD_LIBRARY_PATH`, the signature of
  `/etc/ld.so.cache`, the directory the server would run in, and where the plugins directory is
  (findings name files by their path).

A bundle whose digest is unchanged gets its recorded findings again; any other is checked. Rules
across plugins (duplicate node kinds, bare libraries, asset types) are always recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Collection, Mapping
from contextlib import ExitStack
from pathlib import Path

from plugin_packaging import __version__
from plugin_packaging.check.run import CheckReport, check_plugins_dir
from plugin_packaging.contract import path_component_problem
from plugin_packaging.errors import PackagingError
from plugin_packaging.install.state import (
    InstallState,
    Verdict,
    entry_signature,
    file_signature,
)
from plugin_packaging.rules.model import Finding
from plugin_packaging.settings import Settings
from plugin_packaging.target import Target

#: A bundle with more entries than this is checked every time rather than walked for a digest.
MAX_DIGEST_ENTRIES = 2000
_LD_SO_CACHE = "/etc/ld.so.cache"


def check_installed_tree(settings: Settings, changed: Collection[str]) -> CheckReport:
    """Check `settings.plugins_dir` after an install that changed the bundles `changed`.

    Takes the plugin directory's lock to update the recorded verdicts; without it (read-only,
    held too long) every bundle is checked. A state that cannot be saved only costs a full check
    next time.
    """
    from plugin_packaging._fs.lock import DirectoryLock

    target = Target.of(settings.platform)
    with ExitStack() as held:
        try:
            held.enter_context(DirectoryLock(settings.state_dir))
        except PackagingError:
            # No lock, no recorded verdicts (a read-only or busy plugin directory): check it all.
            return check_plugins_dir(
                settings.plugins_dir,
                rule_overrides=settings.rules,
                root=settings.root,
                target=target,
            )
        state = InstallState.load(settings.state_dir)
        context = _context(settings, target)
        digests = {
            name: bundle_digest(settings.native_dir / name, context)
            for name in _bundles(settings.native_dir)
        }
        known = {
            name: verdict.findings
            for name, verdict in state.verdicts.items()
            if name not in changed and digests.get(name) == verdict.signature
        }
        report = check_plugins_dir(
            settings.plugins_dir,
            rule_overrides=settings.rules,
            bundles={name for name in digests if name not in known},
            root=settings.root,
            target=target,
            known=known,
        )
        verdicts = {name: state.verdicts[name] for name in known}
        _record(verdicts, report.bundle_findings, digests)
        state.verdicts = verdicts
        try:
            state.save(settings.state_dir)
        except PackagingError:
            pass  # only the verdict cache is lost: the next run checks every bundle
    return report


def record_verdicts(
    settings: Settings, state: InstallState, findings: Mapping[str, tuple[Finding, ...]]
) -> tuple[str, ...]:
    """Record `findings` (from the check of each staged bundle, now swapped into native/ under
    its name) as those bundles' verdicts in `state`; return the names recorded. A bundle whose
    digest cannot be taken is left out, and the check afterwards reads it as usual."""
    context = _context(settings, Target.of(settings.platform))
    digests = {name: bundle_digest(settings.native_dir / name, context) for name in findings}
    return _record(state.verdicts, findings, digests)


def _record(
    verdicts: dict[str, Verdict],
    findings: Mapping[str, tuple[Finding, ...]],
    digests: Mapping[str, str | None],
) -> tuple[str, ...]:
    """Put each bundle's `findings` into `verdicts` with its digest; return the names recorded.
    Only a bundle with a digest and a name that is a single safe path component is recorded
    (the state's reader refuses any other name)."""
    recorded = []
    for name, found in findings.items():
        digest = digests.get(name)
        if digest is not None and path_component_problem(name) is None:
            verdicts[name] = Verdict(digest, found)
            recorded.append(name)
    return tuple(recorded)


def _bundles(native_dir: Path) -> list[str]:
    try:
        return sorted(os.listdir(native_dir))
    except OSError:
        return []


def _context(settings: Settings, target: Target) -> str:
    """What every bundle's verdict depends on besides its own files."""
    return json.dumps(
        [
            __version__,
            target.platform,
            target.arch,
            sorted(settings.rules.items()),
            str(settings.root),
            str(settings.plugins_dir),
            os.environ.get("LD_LIBRARY_PATH", ""),
            file_signature(_LD_SO_CACHE),
        ]
    )


def bundle_digest(bundle: Path, context: str) -> str | None:
    """A digest of `bundle`'s entries (see the module docstring), or None when it cannot be
    taken (unreadable, too many entries): such a bundle is checked every time."""
    digest = hashlib.sha256(context.encode("utf-8"))
    digest.update(repr((entry_signature(bundle), file_signature(bundle))).encode())
    count = 0
    pending = [bundle]
    while pending:
        directory = pending.pop()
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return None
        for name in names:
            count += 1
            if count > MAX_DIGEST_ENTRIES:
                return None
            path = directory / name
            signature = entry_signature(path)
            digest.update(os.fsencode(str(path.relative_to(bundle))) + b"\0")
            digest.update(repr(signature).encode())
            if signature is None:
                continue
            if stat.S_ISLNK(signature[3]):
                digest.update(repr(file_signature(path)).encode())
            elif stat.S_ISDIR(signature[3]):
                pending.append(path)
    return digest.hexdigest()
