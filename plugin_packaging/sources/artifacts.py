"""Where the built library of a plugin source is, named for the target platform.

A source's `artifact` is written with Linux naming (`target/plugins/release/libwhisper.so`);
for macOS and Windows the same cargo library name gives `libwhisper.dylib` and `whisper.dll`
in the same directory. The file is looked up, never guessed from the plugin id.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from plugin_packaging.contract import library_file_name, library_stem
from plugin_packaging.errors import PackagingError
from plugin_packaging.settings import PROFILES, Profile
from plugin_packaging.sources.scan import PluginSource
from plugin_packaging.target import Platform

#: The error code and hint for a source file (artifact, extra file) resolving out of the checkout.
OUTSIDE_CODE = "source-outside-checkout"
OUTSIDE_HINT = (
    "build or copy the file into the checkout, or allow its directory in "
    "plugins.allowed_source_dirs (invoke.yaml)"
)


@dataclass(frozen=True)
class Artifact:
    """The built library of one plugin source, found or not."""

    source: PluginSource
    #: Where the library is, or would be, for the target platform.
    path: Path
    #: Its path relative to the root, as a person would type it.
    declared: PurePosixPath
    #: `os.stat` of the file when it exists and is a regular file.
    stat: os.stat_result | None
    #: Why something at `path` is not usable as a library (a directory, a FIFO), else None.
    problem: str | None = None
    #: The real path outside the checkout that `path` resolves to, when it does (refused).
    outside: Path | None = None

    @property
    def exists(self) -> bool:
        return self.stat is not None

    @property
    def file_name(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        return self.stat.st_size if self.stat else 0

    @property
    def looked_for(self) -> str:
        """Where the library was looked for and which declaration says so, for messages."""
        return f"looked for {self.declared} (from {self.source.origin}: artifact)"

    def absence_error(self, required: bool) -> PackagingError | None:
        """Why a plugin whose library is not there fails: something unusable has its name, or
        the plugin was required (`--only`, `--require-all`); None when it is merely not built."""
        if self.problem:
            outside = self.outside is not None
            return PackagingError(
                OUTSIDE_CODE if outside else "artifact-unusable",
                f"{self.problem} ({self.looked_for})",
                self.path,
                hint=OUTSIDE_HINT if outside else "remove it and rebuild the plugin",
            )
        if required:
            plugin_id = self.source.id
            manifest = self.source.manifest_path
            # Said at the declaration (the source manifest's `artifact` line, which a pull
            # request holds), not at the missing build output, which is git-ignored.
            return PackagingError(
                "artifact-missing",
                f"plugin {plugin_id} is not built: {self.looked_for}",
                manifest or self.path,
                hint=f"build it first (e.g. `plugin-packaging build-plugins-native --only {plugin_id}`)",
                key="artifact" if manifest is not None else None,
            )
        return None


def artifact_path(
    source: PluginSource, platform: Platform, profile: Profile = "release"
) -> PurePosixPath:
    """The source's `artifact`, renamed to `platform`'s naming of the same cargo library, in
    `profile`'s directory (see `with_profile`)."""
    stem = library_stem(source.artifact.name)
    return with_profile(source.artifact.with_name(library_file_name(stem, platform)), profile)


def outside_checkout(path: Path, root: Path, allowed: Sequence[Path] = ()) -> Path | None:
    """The real path of `path` when it lies outside `root` and every `allowed` directory (all
    resolved), else None. Sources are read from the checkout: a symlink or `..` leading out of
    it would install or publish a file nobody declared (a private key, another user's file)."""
    real = Path(os.path.realpath(path))
    for directory in (Path(os.path.realpath(root)), *allowed):
        if real == directory or directory in real.parents:
            return None
    return real


def with_profile(path: PurePosixPath, profile: Profile) -> PurePosixPath:
    """`path` with its cargo profile directory (the last `release/` or `debug/`) set to `profile`.

    Artifacts are declared as release builds (`target/plugins/release/libwhisper.so`); a debug
    build of the same crate is beside it under `debug/`. A path without a profile directory (a
    library built by make) is the same for both profiles.
    """
    parts = list(path.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] in PROFILES:
            parts[index] = profile
            return PurePosixPath(*parts)
    return path


def locate_artifact(
    root: Path,
    source: PluginSource,
    platform: Platform,
    allowed: Sequence[Path] = (),
    *,
    profile: Profile = "release",
) -> Artifact:
    """Look the library up on disk; a directory or a FIFO with the right name does not count,
    nor a file that resolves outside the checkout and the `allowed` directories. `profile` picks
    the release build (as declared) or its debug twin (see `with_profile`)."""
    declared = artifact_path(source, platform, profile)
    path = root / declared
    outside = outside_checkout(path, root, allowed)
    if outside is not None and os.path.lexists(path):
        return Artifact(
            source,
            path,
            declared,
            None,
            f"resolves to {outside}, outside the checkout",
            outside=outside,
        )
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return Artifact(source=source, path=path, declared=declared, stat=None)
    except OSError as exc:
        return Artifact(source, path, declared, None, f"cannot be read ({exc.strerror or exc})")
    if not stat.S_ISREG(info.st_mode):
        what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        return Artifact(source, path, declared, None, f"is {what}, not a library file")
    return Artifact(source=source, path=path, declared=declared, stat=info)
