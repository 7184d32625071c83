"""What earlier runs installed: who owns each bundle, and caches that let the next run skip work.

The state file lives in `P/.plugin-packaging/state.json`, beside the lock and the staging area,
where the loader never looks. It holds two kinds of facts:

- **Ownership** (`owners`): for each `native/<id>/` this tool created, the checkout whose run
  installed it (its real root path and the device/inode of that directory). Only a bundle with an
  owner is ever replaced without `--adopt`, and `--prune` removes only bundles this checkout owns.
  Ownership survives tool upgrades; a lost state file forgets it (see `install/run.py`: a bundle
  identical to the build is taken back silently, any other needs `--adopt`).
- **Caches**, valid only for the tool version that wrote them: per plugin the signatures of its
  inputs and installed files and its generated `plugin.yml` text (`plugins`); parsed source
  manifests (`sources`); each bundle's check verdict (`verdicts`). A missing, unreadable or
  foreign cache only means the careful path (compare bytes, check again) is taken once. Nothing
  generated depends on them: the same run without a state file writes the same bytes.

There is one reader (`InstallState.load`) and one writer (`InstallState.save`). Everything read is
validated into typed records: a key that is not one safe path component, a value of the wrong
type, a damaged entry is dropped there (a cache miss), never trusted as a path and never a
traceback further on. Mappings keep their order through the file (no key sorting), so a parsed
manifest read back from the cache is the manifest the file holds.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plugin_packaging import __version__
from plugin_packaging._fs.files import open_regular_file, write_atomically
from plugin_packaging.contract import path_component_problem
from plugin_packaging.errors import PackagingError, display_path
from plugin_packaging.rules.model import SEVERITIES, Finding

STATE_FILE = "state.json"
#: Bumped whenever the layout or the meaning of a record changes; other formats are not read.
STATE_FORMAT = 4
#: Far more than any real state (200 plugins take ~300 KiB); a bigger file is not ours.
MAX_STATE_BYTES = 64 * 1024 * 1024

#: `(size, mtime_ns, inode, mode)` of a file, or None when it is missing: what rsync and make
#: compare, plus the mode, because a `chmod` changes no mtime but can make a library unloadable.
Signature = tuple[int, int, int, int] | None
#: What a bundle is made from: name -> a signature, a list of signatures, or a text.
Inputs = Mapping[str, "Signature | tuple[Signature, ...] | str"]


def file_signature(path: Path | str) -> Signature:
    """The quick-check signature of a file, following symlinks; None when it cannot be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return stat_signature(info)


def entry_signature(path: Path | str) -> Signature:
    """The signature of a directory entry itself (a symlink is not followed); None when missing."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return stat_signature(info)


def stat_signature(info: os.stat_result) -> tuple[int, int, int, int]:
    """The signature of a file already stat'ed."""
    return (info.st_size, info.st_mtime_ns, info.st_ino, info.st_mode)


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    """The StreamKit checkout a run works for: its real root path and that directory's identity.

    Two checkouts may share one plugins directory; each knows its own bundles by this value. A
    checkout deleted and cloned again at the same path is another checkout (another inode).
    """

    root: str
    device: int
    inode: int

    @classmethod
    def of(cls, root: Path) -> Checkout:
        real = os.path.realpath(root)
        try:
            info = os.stat(real)
        except OSError:
            return cls(real, 0, 0)
        return cls(real, info.st_dev, info.st_ino)

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "device": self.device, "inode": self.inode}


@dataclass(frozen=True)
class ManifestRecord:
    """A plugin's generated `plugin.yml` and what it was generated from."""

    inputs: Inputs
    text: str
    version: str
    warnings: tuple[PackagingError, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": dict(self.inputs),
            "text": self.text,
            "version": self.version,
            "warnings": [
                [w.code, w.message, str(w.path) if w.path is not None else None, w.hint]
                for w in self.warnings
            ],
        }


@dataclass(frozen=True)
class PluginRecord:
    """What the last install of one plugin was made from, and the files it left."""

    inputs: Inputs
    #: Entry name in `native/<id>/` -> its signature (lstat), right after the install.
    installed: Mapping[str, Signature]
    version: str
    library: str
    manifest: ManifestRecord

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": dict(self.inputs),
            "installed": dict(self.installed),
            "version": self.version,
            "library": self.library,
            "manifest": self.manifest.to_json(),
        }


@dataclass(frozen=True)
class Verdict:
    """The per-bundle findings of the checker for one `native/<name>/`, with a digest of
    everything they were computed from (see `install/verdicts.py`)."""

    signature: str
    findings: tuple[Finding, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "findings": [
                {**finding.to_dict(), "path": str(finding.path)} for finding in self.findings
            ],
        }


#: A parsed source manifest, cached with the signature of the file it was read from.
SourceEntry = dict[str, Any]


@dataclass
class InstallState:
    """The state read at the start of a run and written back at its end.

    Records are immutable and replaced, never changed in place: `save` finds out whether anything
    changed by comparing the mappings with shallow copies taken at load time, which for an
    unchanged entry is an identity check (serialising 200 plugins just to compare costs more).
    """

    #: Bundle id -> the checkout that installed it.
    owners: dict[str, Checkout] = field(default_factory=dict)
    #: Bundle id -> its install cache.
    plugins: dict[str, PluginRecord] = field(default_factory=dict)
    #: Source manifest path -> {"signature": Signature, "data": the parsed manifest}.
    sources: dict[str, SourceEntry] = field(default_factory=dict)
    #: Bundle directory name -> the checker's last verdict on it.
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    loaded: tuple[dict[str, Any], ...] | None = field(default=None, repr=False, compare=False)

    def _parts(self) -> tuple[dict[str, Any], ...]:
        return (self.owners, self.plugins, self.sources, self.verdicts)

    def owned_by(self, checkout: Checkout) -> set[str]:
        """Ids of the bundles `checkout` installed."""
        return {plugin_id for plugin_id, owner in self.owners.items() if owner == checkout}

    def forget(self, plugin_id: str) -> None:
        """Drop every record of a bundle that is gone."""
        self.owners.pop(plugin_id, None)
        self.plugins.pop(plugin_id, None)
        self.verdicts.pop(plugin_id, None)

    @classmethod
    def load(cls, state_dir: Path) -> InstallState:
        """The state in `state_dir`, validated; an empty state when there is none to trust."""
        try:
            # Never a blocking open: a named pipe or a device put there is just "no state".
            with open_regular_file(state_dir / STATE_FILE) as handle:
                document = json.loads(handle.read(MAX_STATE_BYTES + 1))
        except (OSError, ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            return cls()
        if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
            return cls()
        state = cls(owners=_valid_entries(document.get("owners"), _checkout, _is_component))
        if document.get("tool_version") == __version__:
            state.plugins = _valid_entries(document.get("plugins"), _plugin_record, _is_component)
            state.sources = _valid_entries(document.get("sources"), _source_entry, _is_str)
            state.verdicts = _valid_entries(document.get("verdicts"), _verdict, _is_component)
        # Written back only when something changes, so a damaged file stays until then; what
        # was dropped is simply not used.
        state.loaded = tuple(dict(part) for part in state._parts())
        return state

    def save(self, state_dir: Path) -> None:
        """Write atomically: a crash leaves the old state or the new one, never half of one.

        Nothing is written when nothing changed since `load`. A state that cannot be written (no
        space, no permission, a read-only file system) raises `PackagingError` `state-not-saved`
        and leaves no temporary file behind; the old state file stays as it was.
        """
        if self.loaded == self._parts():
            return
        document = {
            "format": STATE_FORMAT,
            "tool_version": __version__,
            "owners": {k: v.to_json() for k, v in self.owners.items()},
            "plugins": {k: v.to_json() for k, v in self.plugins.items()},
            "sources": self.sources,
            "verdicts": {k: v.to_json() for k, v in self.verdicts.items()},
        }
        target = state_dir / STATE_FILE
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            # No sort_keys: parsed manifests must come back in their file's order.
            write_atomically(target, json.dumps(document).encode("utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: a value JSON cannot hold
            raise PackagingError(
                "state-not-saved",
                f"could not record what was installed ({getattr(exc, 'strerror', None) or exc})",
                target,
                hint=_not_saved_hint(exc, state_dir),
            ) from None
        self.loaded = tuple(dict(part) for part in self._parts())


def _not_saved_hint(exc: Exception, state_dir: Path) -> str:
    """What a lost state means and, where known, how to avoid it."""
    consequence = (
        "a cache is lost (the next run compares the installed files instead), and bundles "
        "installed by this run may need --adopt to be replaced later"
    )
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC:
        return f"free some disk space; {consequence}"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"make {display_path(state_dir)} writable; {consequence}"
    return consequence


# --- validation: every reader of the file goes through these ----------------------------------


class _Invalid(Exception):
    """A record that is not what `save` writes: dropped, as if it were not there."""


def _valid_entries(value: Any, parse: Any, key_ok: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    out = {}
    for key, raw in value.items():
        if not key_ok(key):
            continue
        try:
            out[key] = parse(raw)
        except _Invalid:
            continue
    return out


def _is_component(key: object) -> bool:
    return path_component_problem(key) is None


def _is_str(key: object) -> bool:
    return isinstance(key, str)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Invalid
    return value


def _mapping(value: Any, *keys: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not set(keys) <= set(value):
        raise _Invalid
    return value


def _signature(value: Any) -> Signature:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 4:
        raise _Invalid
    size, mtime, inode, mode = (_integer(part) for part in value)
    return (size, mtime, inode, mode)


#: Input names whose value is a list of signatures, and those whose value is a text.
_SIGNATURE_LISTS = frozenset({"cargo"})
_TEXTS = frozenset({"platform", "declaration", "entrypoint"})


def _inputs(value: Any) -> Inputs:
    out: dict[str, Signature | tuple[Signature, ...] | str] = {}
    for key, raw in _mapping(value).items():
        if key in _TEXTS:
            out[key] = _text(raw)
        elif key in _SIGNATURE_LISTS:
            if not isinstance(raw, list):
                raise _Invalid
            out[key] = tuple(_signature(part) for part in raw)
        else:
            out[key] = _signature(raw)
    return out


def _checkout(value: Any) -> Checkout:
    raw = _mapping(value, "root", "device", "inode")
    root = _text(raw["root"])
    if not os.path.isabs(root):
        raise _Invalid
    return Checkout(root, _integer(raw["device"]), _integer(raw["inode"]))


def _plugin_record(value: Any) -> PluginRecord:
    raw = _mapping(value, "inputs", "installed", "version", "library", "manifest")
    installed = {}
    for name, signature in _mapping(raw["installed"]).items():
        if not _is_component(name):
            raise _Invalid
        installed[name] = _signature(signature)
    library = _text(raw["library"])
    if not _is_component(library):
        raise _Invalid
    return PluginRecord(
        inputs=_inputs(raw["inputs"]),
        installed=installed,
        version=_text(raw["version"]),
        library=library,
        manifest=_manifest_record(raw["manifest"]),
    )


def _manifest_record(value: Any) -> ManifestRecord:
    raw = _mapping(value, "inputs", "text", "version", "warnings")
    if not isinstance(raw["warnings"], list):
        raise _Invalid
    warnings = []
    for entry in raw["warnings"]:
        if not isinstance(entry, list) or len(entry) != 4:
            raise _Invalid
        code, message = _text(entry[0]), _text(entry[1])
        warnings.append(
            PackagingError(code, message, _optional_text(entry[2]), _optional_text(entry[3]))
        )
    return ManifestRecord(
        inputs=_inputs(raw["inputs"]),
        text=_text(raw["text"]),
        version=_text(raw["version"]),
        warnings=tuple(warnings),
    )


def _source_entry(value: Any) -> SourceEntry:
    raw = _mapping(value, "signature", "data")
    signature = _signature(raw["signature"])
    if signature is None:
        raise _Invalid
    return {"signature": signature, "data": raw["data"]}


def _verdict(value: Any) -> Verdict:
    raw = _mapping(value, "signature", "findings")
    if not isinstance(raw["findings"], list):
        raise _Invalid
    return Verdict(_text(raw["signature"]), tuple(_finding(entry) for entry in raw["findings"]))


def _finding(value: Any) -> Finding:
    raw = _mapping(value, "code", "severity", "message", "hint", "path", "reference")
    severity = raw["severity"]
    if severity not in SEVERITIES:
        raise _Invalid
    return Finding(
        code=_text(raw["code"]),
        severity=severity,
        message=_text(raw["message"]),
        hint=_text(raw["hint"]),
        path=Path(_text(raw["path"])),
        bundle=_optional_text(raw.get("bundle")),
        record=_optional_text(raw.get("record")),
        symbol=_optional_text(raw.get("symbol")),
        key=_optional_text(raw.get("key")),
        reference=_text(raw["reference"]),
    )
