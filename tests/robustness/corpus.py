"""The bad-input corpus: broken trees and manifests, one row each, and what every command must say.

A `Case` builds its damage into a fresh copy of a small installed checkout (plugins alpha and
beta, real libraries, `.plugins/native/` filled by the real command) and names, per command, the
exit status and the phrases the output must hold: the stable error code and the file it is about.
`test_bad_input.py` runs every (case, command) pair as a confined subprocess; `render_table()`
writes the README table from the same rows, so the table cannot drift from what is tested.

Exit statuses follow the tasks: 2 for a tool-level error (a setting, an unusable directory), 1
when a plugin or a source failed or the check found an error, 0 when the input is odd but the
command is right to carry on (a dangling artifact is "not built").

A case that fails because of a file this suite's owner may not change carries `xfail`, the
precise root cause; the test is then marked strict xfail, so fixing the cause turns it red.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from confined import run_cli, source_manifest

if TYPE_CHECKING:
    from fixturelib import NativeLibraries

ALPHA_MANIFEST = "plugins/native/alpha/plugin.yml"
ALPHA_CARGO = "plugins/native/alpha/Cargo.toml"
ALPHA_ARTIFACT = "target/plugins/release/libalpha.so"
#: What a manifest-side source error keeps: both installed bundles exactly as they were.
NATIVE = ("native",)
DELETE = object()

# A billion-laughs document: nine levels of nine aliases, 9**9 strings if expanded.
ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=False)
)
FIFTY_MIB = 50 << 20


@dataclass(frozen=True)
class Scene:
    """One case's world: the checkout to break, a sentinel directory beside it, the libraries."""

    root: Path
    outside: Path
    libs: NativeLibraries

    @property
    def plugins(self) -> Path:
        return self.root / ".plugins"

    @property
    def native(self) -> Path:
        return self.plugins / "native"

    @property
    def state_dir(self) -> Path:
        return self.plugins / ".plugin-packaging"

    def at(self, relative: str) -> Path:
        return self.root / relative

    def bundle(self, plugin_id: str = "alpha") -> Path:
        return self.native / plugin_id

    def manifest(self, plugin_id: str = "alpha", **overrides: object) -> None:
        """Rewrite a source plugin.yml from the standard one; DELETE removes a key."""
        data = source_manifest(plugin_id)
        for key, value in overrides.items():
            if value is DELETE:
                data.pop(key, None)
            else:
                data[key] = value
        self.at(f"plugins/native/{plugin_id}/plugin.yml").write_text(
            yaml.safe_dump(data, sort_keys=False)
        )

    def write(self, relative: str, content: str | bytes) -> Path:
        path = self.at(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(path) and not os.path.isdir(path):
            path.unlink()
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return path

    def replace(self, relative: str, kind: str, target: str | None = None) -> Path:
        """Put a directory, a FIFO or a symlink where a file was."""
        path = self.at(relative)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "symlink":
            assert target is not None
            os.symlink(target, path)
        else:
            raise ValueError(kind)
        return path

    def deny(self, relative: str) -> None:
        """Mode 000: unreadable for the runs that drop CAP_DAC_* (see confined.py)."""
        os.chmod(self.at(relative), 0)

    def invoke_yaml(self, text: str) -> None:
        self.write("invoke.yaml", text)

    def install(self) -> None:
        """Run copy-plugins-native again, so that the recorded install state matches this copy's
        files (a copied tree has new inodes, which the quick check would notice)."""
        scratch = self.root.parent / "install-tmp"
        scratch.mkdir(exist_ok=True)
        result = run_cli(
            ["copy-plugins-native", "--root", self.root, "--no-check"],
            cwd=self.root,
            tmpdir=scratch,
        )
        assert result.code == 0, result.describe()
        scratch.rmdir()


@dataclass(frozen=True)
class Expect:
    """What one command must do with a case."""

    exit: int
    #: Phrases the output must contain: the error code, the file it names, a key word.
    says: tuple[str, ...] = ()
    #: Paths below the plugin directory that must be byte-for-byte unchanged afterwards.
    keeps: tuple[str, ...] = ()
    #: The precise root cause when this pair is a known failure outside the suite's files.
    xfail: str | None = None
    #: Seconds before a run counts as hung (known hangs fail faster than the default).
    timeout: float | None = None


@dataclass(frozen=True)
class Case:
    name: str
    #: One line for the README: what is broken.
    what: str
    build: Callable[[Scene], object]
    expects: dict[str, Expect]
    #: Run without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, so mode-000 entries are really unreadable.
    unreadable: bool = False
    group: str = "sources"


@dataclass
class _Corpus:
    cases: list[Case] = field(default_factory=list)

    def add(
        self,
        name: str,
        what: str,
        build: Callable[[Scene], object],
        unreadable: bool = False,
        group: str = "sources",
        **expects: Expect,
    ) -> None:
        assert name not in {c.name for c in self.cases}, name
        self.cases.append(Case(name, what, build, expects, unreadable, group))


def source_error(*says: str, xfail: str | None = None) -> dict[str, Expect]:
    """A source declaration that cannot be used: every command that reads sources fails (1),
    names the file and the code, and the installed bundles stay exactly as they were."""
    return {
        "copy": Expect(1, says, keeps=NATIVE, xfail=xfail),
        "list": Expect(1, says, xfail=xfail),
        "package": Expect(1, (*says, "nothing was written"), xfail=xfail),
    }


def setting_error(
    *says: str,
    commands: tuple[str, ...] = ("copy", "list", "check", "migrate", "package", "verify"),
) -> dict[str, Expect]:
    """A broken setting: every command refuses to start (2) and names the setting's file."""
    return {command: Expect(2, says, keeps=NATIVE) for command in commands}


def _junk(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return b"\xff\xfe" + rng.randbytes(size)


C = _Corpus()

# --- source manifests: syntax, size, encoding ----------------------------------------------------

C.add(
    "yaml-syntax-error",
    "source plugin.yml is not valid YAML (an unclosed list)",
    lambda s: s.write(ALPHA_MANIFEST, "id: alpha\nversion: [0.1.0\n"),
    **source_error("manifest-invalid-yaml", ALPHA_MANIFEST + ":3:"),
)
C.add(
    "yaml-tab-indent",
    "source plugin.yml indents with a tab",
    lambda s: s.write(ALPHA_MANIFEST, "id: alpha\n\tversion: 0.1.0\n"),
    **source_error("manifest-invalid-yaml", ALPHA_MANIFEST + ":2:"),
)
C.add(
    "yaml-list-not-mapping",
    "source plugin.yml is a list, not a mapping",
    lambda s: s.write(ALPHA_MANIFEST, "- id: alpha\n- version: 0.1.0\n"),
    **source_error("source-manifest-not-mapping", ALPHA_MANIFEST),
)
C.add(
    "yaml-empty",
    "source plugin.yml is empty",
    lambda s: s.write(ALPHA_MANIFEST, ""),
    **source_error("source-manifest-not-mapping", ALPHA_MANIFEST),
)
C.add(
    "yaml-scalar",
    "source plugin.yml is one line of prose",
    lambda s: s.write(ALPHA_MANIFEST, "this plugin is great\n"),
    **source_error("source-manifest-not-mapping", ALPHA_MANIFEST),
)
C.add(
    "binary-junk",
    "source plugin.yml is 4 KiB of random bytes",
    lambda s: s.write(ALPHA_MANIFEST, _junk(4096, 1)),
    **source_error("manifest-not-utf8", ALPHA_MANIFEST),
)
C.add(
    "utf16-manifest",
    "source plugin.yml saved as UTF-16",
    lambda s: s.write(ALPHA_MANIFEST, yaml.safe_dump(source_manifest("alpha")).encode("utf-16")),
    **source_error("manifest-not-utf8", ALPHA_MANIFEST),
)
C.add(
    "nul-byte",
    "source plugin.yml holds a NUL byte",
    lambda s: s.write(ALPHA_MANIFEST, b"id: alpha\x00\nversion: 0.1.0\n"),
    **source_error("manifest-invalid-yaml", ALPHA_MANIFEST),
)
C.add(
    "fifty-mib-manifest",
    "source plugin.yml of 50 MiB",
    lambda s: s.write(ALPHA_MANIFEST, b"# padding\n" * (FIFTY_MIB // 10)),
    **source_error("manifest-too-large", ALPHA_MANIFEST),
)
C.add(
    "alias-bomb",
    "source plugin.yml is a billion-laughs alias bomb",
    lambda s: s.write(ALPHA_MANIFEST, ALIAS_BOMB + "id: alpha\nmodels: *i\n"),
    **source_error("manifest-alias-bomb", ALPHA_MANIFEST),
)
C.add(
    "deep-nesting",
    "source plugin.yml nests 100 000 flow lists",
    lambda s: s.write(ALPHA_MANIFEST, "id: alpha\nmodels: " + "[" * 100_000 + "]" * 100_000 + "\n"),
    **source_error("manifest-too-deep", ALPHA_MANIFEST),
)

# --- source manifests: keys, types and values -----------------------------------------------------

C.add(
    "id-missing",
    "no `id`",
    lambda s: s.manifest(id=DELETE),
    **source_error("source-id-missing", ALPHA_MANIFEST),
)
C.add(
    "id-integer",
    "`id: 42`",
    lambda s: s.manifest(id=42),
    **source_error("source-id-unsafe", "must be a string", ALPHA_MANIFEST),
)
C.add(
    "id-dotdot",
    "`id: ../escape`",
    lambda s: s.manifest(id="../escape"),
    **source_error("source-id-unsafe", ALPHA_MANIFEST),
)
C.add(
    "id-slash",
    "`id: a/b`",
    lambda s: s.manifest(id="nested/alpha"),
    **source_error("source-id-unsafe", "single name", ALPHA_MANIFEST),
)
C.add(
    "id-absolute",
    "`id: /tmp/evil`",
    lambda s: s.manifest(id="/tmp/evil"),
    **source_error("source-id-unsafe", ALPHA_MANIFEST),
)
C.add(
    "id-nul",
    "`id` holds a NUL character",
    lambda s: s.manifest(id="al\x00pha"),
    **source_error("source-id-unsafe", "NUL", ALPHA_MANIFEST),
)
C.add(
    "id-whitespace",
    "`id` with surrounding spaces",
    lambda s: s.manifest(id=" alpha "),
    **source_error("source-id-unsafe", "whitespace", ALPHA_MANIFEST),
)
C.add(
    "id-newline",
    "`id` holds a newline",
    lambda s: s.manifest(id="al\npha"),
    **source_error("source-id-unsafe", "control characters", ALPHA_MANIFEST),
)
C.add(
    "id-very-long",
    "`id` of 300 characters",
    lambda s: s.manifest(id="a" * 300),
    **source_error("source-id-unsafe", "at most 255 bytes", ALPHA_MANIFEST),
)
C.add(
    "id-empty",
    '`id: ""`',
    lambda s: s.manifest(id=""),
    **source_error("source-id-unsafe", "empty", ALPHA_MANIFEST),
)
C.add(
    "id-lone-surrogate",
    '`id: "\\udcff"` (a YAML escape that is no character)',
    lambda s: s.write(
        ALPHA_MANIFEST, 'id: "al\\udcffpha"\nartifact: target/plugins/release/libalpha.so\n'
    ),
    **source_error("source-id-unsafe", "UTF-8", ALPHA_MANIFEST),
)
C.add(
    "version-float",
    "`version: 0.10` unquoted (YAML reads the float 0.1)",
    lambda s: s.write(
        ALPHA_MANIFEST,
        yaml.safe_dump(source_manifest("alpha")).replace("version: 0.1.0", "version: 0.10"),
    ),
    **source_error("manifest-wrong-type", "quote", ALPHA_MANIFEST),
)
C.add(
    "version-not-semver",
    '`version: "1.0"`',
    lambda s: s.manifest(version="1.0"),
    **source_error("manifest-version-not-semver", ALPHA_MANIFEST),
)
C.add(
    "version-dotdot",
    "`version: ../../1.0.0`",
    lambda s: s.manifest(version="../../1.0.0"),
    **source_error("manifest-unsafe-name", ALPHA_MANIFEST),
)
C.add(
    "node-kind-missing",
    "no `node_kind`",
    lambda s: s.manifest(node_kind=DELETE),
    **source_error("manifest-key-missing", "node_kind", ALPHA_MANIFEST),
)
C.add(
    "node-kind-list",
    "`node_kind` is a list",
    lambda s: s.manifest(node_kind=["a", "b"]),
    **source_error("manifest-wrong-type", "node_kind", ALPHA_MANIFEST),
)
C.add(
    "node-kind-colons",
    "`node_kind: plugin::native::x`",
    lambda s: s.manifest(node_kind="plugin::native::x"),
    **source_error("manifest-node-kind", ALPHA_MANIFEST),
)
C.add(
    "kind-uppercase",
    "`kind: NATIVE`",
    lambda s: s.manifest(kind="NATIVE"),
    **source_error("manifest-kind", ALPHA_MANIFEST),
)
C.add(
    "models-not-list",
    "`models: everything`",
    lambda s: s.manifest(models="everything"),
    **source_error("manifest-wrong-type", "models", ALPHA_MANIFEST),
)
C.add(
    "homepage-lone-surrogate",
    '`homepage: "caf\\ud800"` (an escape that is no character)',
    lambda s: s.write(
        ALPHA_MANIFEST,
        yaml.safe_dump(source_manifest("alpha"), sort_keys=False) + 'homepage: "caf\\ud800"\n',
    ),
    **source_error("manifest-not-unicode", "homepage", ALPHA_MANIFEST),
)
C.add(
    "artifact-missing-key",
    "no `artifact`",
    lambda s: s.manifest(artifact=DELETE),
    **source_error("source-artifact-missing", ALPHA_MANIFEST),
)
C.add(
    "artifact-dotdot",
    "`artifact: ../outside/libprecious.so`",
    lambda s: s.manifest(artifact="../outside/libprecious.so"),
    **source_error("source-artifact-unsafe", "..", ALPHA_MANIFEST),
)
C.add(
    "artifact-absolute",
    "`artifact` is an absolute path outside the checkout",
    lambda s: s.manifest(artifact=str(s.outside / "libprecious.so")),
    **source_error("source-artifact-unsafe", "relative", ALPHA_MANIFEST),
)
C.add(
    "artifact-not-library",
    "`artifact` names a .txt file",
    lambda s: s.manifest(artifact="target/plugins/release/alpha.txt"),
    **source_error("source-artifact-not-library", ALPHA_MANIFEST),
)
C.add(
    "artifact-nul",
    "`artifact` holds a NUL",
    lambda s: s.manifest(artifact="target/lib\x00alpha.so"),
    **source_error("source-artifact-unsafe", "NUL", ALPHA_MANIFEST),
)
C.add(
    "entrypoint-dotdot",
    "`entrypoint: ../libalpha.so` (same stem as the artifact)",
    lambda s: s.manifest(entrypoint="../libalpha.so"),
    **source_error("manifest-entrypoint-unsafe", ALPHA_MANIFEST),
)
C.add(
    "entrypoint-absolute",
    "`entrypoint: /usr/lib/libalpha.so`",
    lambda s: s.manifest(entrypoint="/usr/lib/libalpha.so"),
    **source_error("manifest-entrypoint-unsafe", "relative", ALPHA_MANIFEST),
)
C.add(
    "entrypoint-nul",
    "`entrypoint` holds a NUL",
    lambda s: s.manifest(entrypoint="lib\x00alpha.so"),
    **source_error("manifest-entrypoint-unsafe", "NUL", ALPHA_MANIFEST),
)
C.add(
    "entrypoint-whitespace",
    '`entrypoint: " libalpha.so "`: harmless, the installed name replaces it',
    lambda s: s.manifest(entrypoint=" libalpha.so "),
    copy=Expect(0, ("source-entrypoint-differs", ALPHA_MANIFEST), keeps=NATIVE),
    list=Expect(0, ("alpha",)),
    package=Expect(0, ("alpha-0.1.0-bundle.tar.zst",)),
)
C.add(
    "entrypoint-very-long",
    "`entrypoint` of 300 characters: harmless, the installed name replaces it",
    lambda s: s.manifest(entrypoint="lib" + "e" * 300 + ".so"),
    copy=Expect(0, ("source-entrypoint-differs", ALPHA_MANIFEST), keeps=NATIVE),
    list=Expect(0, ("alpha",)),
)
C.add(
    "source-dir-not-utf8",
    "a source directory whose name is not UTF-8, declaring `id: gamma`",
    lambda s: (
        os.mkdir(os.fsencode(s.root) + b"/plugins/native/gam\xe9"),
        s.write(
            "plugins/native/" + os.fsdecode(b"gam\xe9") + "/plugin.yml",
            yaml.safe_dump(source_manifest("gamma", artifact=ALPHA_ARTIFACT)),
        ),
    ),
    copy=Expect(0, ("source-id-differs-from-directory", "gam\\udce9", "installed     gamma")),
    list=Expect(0, ("gamma", "gam\\udce9")),
)
C.add(
    "duplicate-id",
    "beta's plugin.yml also says `id: alpha`",
    lambda s: s.manifest("beta", id="alpha"),
    **source_error("source-id-duplicate", "plugins/native/beta/plugin.yml"),
)

# --- source files that are not files --------------------------------------------------------------

C.add(
    "manifest-is-directory",
    "source plugin.yml is a directory",
    lambda s: s.replace(ALPHA_MANIFEST, "dir"),
    **source_error("not-a-file", "directory", ALPHA_MANIFEST),
)
C.add(
    "manifest-is-fifo",
    "source plugin.yml is a named pipe (would block a reader forever)",
    lambda s: s.replace(ALPHA_MANIFEST, "fifo"),
    **source_error("not-a-file", "named pipe", ALPHA_MANIFEST),
)
C.add(
    "manifest-is-dev-zero",
    "source plugin.yml is a symlink to /dev/zero (endless)",
    lambda s: s.replace(ALPHA_MANIFEST, "symlink", "/dev/zero"),
    **source_error("not-a-file", "device", ALPHA_MANIFEST),
)
C.add(
    "manifest-symlink-loop",
    "source plugin.yml is a symlink to itself",
    lambda s: s.replace(ALPHA_MANIFEST, "symlink", "plugin.yml"),
    **source_error("unreadable", "symbolic links", ALPHA_MANIFEST),
)
C.add(
    "manifest-dangling-symlink",
    "source plugin.yml is a dangling symlink",
    lambda s: s.replace(ALPHA_MANIFEST, "symlink", "gone.yml"),
    **source_error("unreadable", "No such file", ALPHA_MANIFEST),
)
C.add(
    "manifest-unreadable",
    "source plugin.yml is mode 000",
    lambda s: s.deny(ALPHA_MANIFEST),
    unreadable=True,
    **source_error("unreadable", "permission denied", ALPHA_MANIFEST),
)
C.add(
    "source-dir-unreadable",
    "plugins/native/alpha/ is mode 000",
    lambda s: s.deny("plugins/native/alpha"),
    unreadable=True,
    **source_error("source-dir-unreadable", "plugins/native/alpha", "Permission denied"),
)
C.add(
    "manifest-symlink-outside",
    "source plugin.yml is a symlink to a valid manifest outside the checkout",
    lambda s: s.replace(ALPHA_MANIFEST, "symlink", str(s.outside / "alpha.yml")),
    copy=Expect(0, ("up to date", "alpha"), keeps=NATIVE),
    list=Expect(0, ("alpha",)),
    package=Expect(0, ("alpha-0.1.0-bundle.tar.zst",)),
)

# --- Cargo.toml -------------------------------------------------------------------------------------

C.add(
    "cargo-invalid-toml",
    "Cargo.toml is not TOML",
    lambda s: s.write(ALPHA_CARGO, "[package\nname = \n"),
    **source_error("cargo-toml-invalid", ALPHA_CARGO),
)
C.add(
    "cargo-deep-nesting",
    "Cargo.toml nests 100 000 arrays",
    lambda s: s.write(ALPHA_CARGO, "a = " + "[" * 100_000 + "]" * 100_000 + "\n"),
    **source_error("cargo-toml-invalid", "deeply", ALPHA_CARGO),
)
C.add(
    "cargo-binary-junk",
    "Cargo.toml is random bytes",
    lambda s: s.write(ALPHA_CARGO, _junk(2048, 2)),
    **source_error("manifest-not-utf8", ALPHA_CARGO),
)
C.add(
    "cargo-is-fifo",
    "Cargo.toml is a named pipe",
    lambda s: s.replace(ALPHA_CARGO, "fifo"),
    **source_error("not-a-file", "named pipe", ALPHA_CARGO),
)
C.add(
    "cargo-unreadable",
    "Cargo.toml is mode 000",
    lambda s: s.deny(ALPHA_CARGO),
    unreadable=True,
    **source_error("unreadable", ALPHA_CARGO),
)

# --- the built library (artifact) ---------------------------------------------------------------

_ARTIFACT_UNUSABLE = {"list": Expect(1, ("artifact-unusable", ALPHA_ARTIFACT))}
C.add(
    "artifact-is-directory",
    "the built library is a directory",
    lambda s: s.replace(ALPHA_ARTIFACT, "dir"),
    copy=Expect(1, ("artifact-unusable", "directory", ALPHA_ARTIFACT), keeps=NATIVE),
    package=Expect(1, ("artifact-unusable", ALPHA_ARTIFACT)),
    **_ARTIFACT_UNUSABLE,
)
C.add(
    "artifact-is-fifo",
    "the built library is a named pipe",
    lambda s: s.replace(ALPHA_ARTIFACT, "fifo"),
    copy=Expect(1, ("artifact-unusable", "not a regular file", ALPHA_ARTIFACT), keeps=NATIVE),
    package=Expect(1, ("artifact-unusable", ALPHA_ARTIFACT)),
    **_ARTIFACT_UNUSABLE,
)
C.add(
    "artifact-symlink-loop",
    "the built library is a symlink to itself",
    lambda s: s.replace(ALPHA_ARTIFACT, "symlink", "libalpha.so"),
    copy=Expect(1, ("artifact-unusable", "symbolic links", ALPHA_ARTIFACT), keeps=NATIVE),
    package=Expect(1, ("artifact-unusable", ALPHA_ARTIFACT)),
    **_ARTIFACT_UNUSABLE,
)
C.add(
    "artifact-dangling-symlink",
    "the built library is a dangling symlink (not built)",
    lambda s: s.replace(ALPHA_ARTIFACT, "symlink", "libgone.so"),
    copy=Expect(0, ("not built", ALPHA_ARTIFACT, "installed copy is kept"), keeps=NATIVE),
    list=Expect(0, ("not built",)),
    # An official plugin a release should hold is missing: the release fails (--allow-missing).
    package=Expect(1, ("artifact-missing", ALPHA_ARTIFACT, "nothing was written")),
)
C.add(
    "artifact-junk",
    "the built library is random bytes named .so",
    lambda s: s.write(ALPHA_ARTIFACT, _junk(8192, 3)),
    copy=Expect(1, ("library-not-binary", "native/alpha/libalpha.so"), keeps=("native/beta",)),
    list=Expect(0, ("stale",)),
    package=Expect(1, ("alpha", "not a library binary")),
)
C.add(
    "artifact-empty",
    "the built library is an empty file",
    lambda s: s.write(ALPHA_ARTIFACT, b""),
    copy=Expect(
        1, ("library-not-binary", "native/alpha/libalpha.so", "empty"), keeps=("native/beta",)
    ),
    list=Expect(0, ("stale",)),
    package=Expect(1, ("alpha", "empty")),
)
C.add(
    "artifact-unreadable",
    "the built library is mode 000",
    lambda s: s.deny(ALPHA_ARTIFACT),
    unreadable=True,
    copy=Expect(1, ("io-error", "Permission denied", ALPHA_ARTIFACT), keeps=NATIVE),
    list=Expect(0, ("alpha",)),
    package=Expect(1, ("alpha", "Permission denied")),
)
C.add(
    "artifact-symlink-outside",
    "the built library is a symlink to a real library outside the checkout",
    lambda s: s.replace(ALPHA_ARTIFACT, "symlink", str(s.outside / "good" / "libgood.so")),
    # Refused: a symlink in a pull request must not install or publish a file from elsewhere
    # (plugins.allowed_source_dirs allows a directory explicitly).
    copy=Expect(
        1, ("source-outside-checkout", "libalpha.so"), keeps=("native/alpha", "native/beta")
    ),
    list=Expect(1, ("source-outside-checkout", "libalpha.so")),
    package=Expect(1, ("source-outside-checkout", "libalpha.so")),
)

# --- settings (invoke.yaml at the root) ---------------------------------------------------------

C.add(
    "invoke-yaml-syntax",
    "invoke.yaml is not valid YAML",
    lambda s: s.invoke_yaml("plugins: [unclosed\n"),
    group="settings",
    **setting_error("manifest-invalid-yaml", "invoke.yaml:2:"),
)
C.add(
    "invoke-yaml-alias-bomb",
    "invoke.yaml is a billion-laughs alias bomb",
    lambda s: s.invoke_yaml(ALIAS_BOMB + "plugins: {rules: *i}\n"),
    group="settings",
    **setting_error("manifest-alias-bomb", "invoke.yaml"),
)
C.add(
    "invoke-yaml-binary",
    "invoke.yaml is random bytes",
    lambda s: s.write("invoke.yaml", _junk(1024, 4)),
    group="settings",
    **setting_error("manifest-not-utf8", "invoke.yaml"),
)
C.add(
    "invoke-yaml-directory",
    "invoke.yaml is a directory",
    lambda s: s.replace("invoke.yaml", "dir"),
    group="settings",
    **setting_error("not-a-file", "invoke.yaml"),
)
C.add(
    "invoke-yaml-fifo",
    "invoke.yaml is a named pipe",
    lambda s: s.replace("invoke.yaml", "fifo"),
    group="settings",
    **setting_error("not-a-file", "named pipe", "invoke.yaml"),
)
C.add(
    "invoke-plugins-not-mapping",
    "`plugins: hello` in invoke.yaml",
    lambda s: s.invoke_yaml("plugins: hello\n"),
    group="settings",
    **setting_error("bad-setting", "`plugins` must be a mapping", "invoke.yaml"),
)
C.add(
    "invoke-source-patterns-absolute",
    "`source_patterns: [/etc/*.yml]`",
    lambda s: s.invoke_yaml("plugins:\n  source_patterns: ['/etc/*.yml']\n"),
    group="settings",
    **setting_error("bad-setting", "source_patterns", "/etc/*.yml"),
)
C.add(
    "invoke-source-patterns-dotdot",
    "`source_patterns: [../*/plugin.yml]`",
    lambda s: s.invoke_yaml("plugins:\n  source_patterns: ['../*/plugin.yml']\n"),
    group="settings",
    **setting_error("bad-setting", "source_patterns", "'..'"),
)
C.add(
    "invoke-source-patterns-number",
    "`source_patterns: 5`",
    lambda s: s.invoke_yaml("plugins:\n  source_patterns: 5\n"),
    group="settings",
    **setting_error("bad-setting", "source_patterns"),
)
C.add(
    "template-syntax-error",
    "plugins.template is a Jinja file with a syntax error",
    lambda s: (s.write("bad.j2", "{% if %}\n"), s.invoke_yaml("plugins:\n  template: bad.j2\n")),
    group="settings",
    **source_error("template-invalid", "bad.j2", "line 1"),
)
C.add(
    "template-undefined",
    "plugins.template uses an undefined variable",
    lambda s: (
        s.write("bad.j2", "{{ nothing.here }}\n"),
        s.invoke_yaml("plugins:\n  template: bad.j2\n"),
    ),
    group="settings",
    **source_error("template-invalid", "bad.j2", "undefined"),
)
C.add(
    "template-fifo",
    "plugins.template is a named pipe",
    lambda s: (s.replace("bad.j2", "fifo"), s.invoke_yaml("plugins:\n  template: bad.j2\n")),
    group="settings",
    **source_error("not-a-file", "bad.j2"),
)
C.add(
    "plugins-dir-is-file",
    "the plugin directory (.plugins) is a regular file",
    lambda s: (shutil.rmtree(s.plugins), s.write(".plugins", "not a directory\n")),
    group="settings",
    copy=Expect(2, ("io-error", ".plugins")),
    check=Expect(2, ("plugins-dir-missing", "not a directory", ".plugins")),
    migrate=Expect(2, (".plugins",)),
)

# --- the installed tree (.plugins) ------------------------------------------------------------

_P = "plugins dir"
C.add(
    "bare-library",
    "a library directly in native/ (the old flat layout)",
    group=_P,
    build=lambda s: shutil.copyfile(s.libs.good_c, s.native / "libstray.so"),
    check=Expect(1, ("bare-library", "native/libstray.so")),
    list=Expect(0, ("bare",)),
    copy=Expect(1, ("bare-library", "libstray.so"), keeps=NATIVE),
    migrate=Expect(0, ("libstray.so", "stray/")),
)
C.add(
    "library-is-directory",
    "an installed bundle's libalpha.so is a directory",
    group=_P,
    build=lambda s: s.replace(".plugins/native/alpha/libalpha.so", "dir"),
    check=Expect(1, ("library-is-directory", "native/alpha/libalpha.so")),
    list=Expect(0, ("stale",)),
    copy=Expect(0, ("updated", "alpha"), keeps=("native/beta",)),
)
C.add(
    "library-is-fifo",
    "an installed bundle's libalpha.so is a named pipe",
    group=_P,
    build=lambda s: s.replace(".plugins/native/alpha/libalpha.so", "fifo"),
    check=Expect(1, ("library-unreadable", "native/alpha/libalpha.so", "not a regular file")),
    list=Expect(0, ("stale",)),
    copy=Expect(0, ("updated", "alpha"), keeps=("native/beta",)),
)
C.add(
    "bare-fifo",
    "a named pipe called libfifo.so directly in native/",
    group=_P,
    build=lambda s: os.mkfifo(s.native / "libfifo.so"),
    check=Expect(1, ("bare-library", "native/libfifo.so")),
    migrate=Expect(1, ("libfifo.so", "named pipe", "bare-library")),
    list=Expect(0, ("libfifo.so",)),
)
C.add(
    "bundle-manifest-fifo",
    "an installed plugin.yml is a named pipe",
    group=_P,
    build=lambda s: s.replace(".plugins/native/alpha/plugin.yml", "fifo"),
    check=Expect(1, ("manifest-unparseable", "native/alpha/plugin.yml", "named pipe")),
    copy=Expect(0, ("updated", "alpha"), keeps=("native/beta",)),
    list=Expect(0, ("stale",)),
)
C.add(
    "bundle-manifest-alias-bomb",
    "an installed plugin.yml is an alias bomb",
    group=_P,
    build=lambda s: s.write(".plugins/native/alpha/plugin.yml", ALIAS_BOMB),
    check=Expect(1, ("manifest-unparseable", "native/alpha/plugin.yml", "aliases")),
    copy=Expect(0, ("updated", "alpha"), keeps=("native/beta",)),
)
C.add(
    "bundle-manifest-fifty-mib",
    "an installed plugin.yml of 50 MiB",
    group=_P,
    build=lambda s: s.write(".plugins/native/alpha/plugin.yml", b"# padding\n" * (FIFTY_MIB // 10)),
    check=Expect(1, ("manifest-unparseable", "native/alpha/plugin.yml", "larger than")),
    copy=Expect(0, ("updated", "alpha"), keeps=("native/beta",)),
)
C.add(
    "bundle-manifest-junk",
    "an installed plugin.yml is random bytes",
    group=_P,
    build=lambda s: s.write(".plugins/native/alpha/plugin.yml", _junk(4096, 5)),
    check=Expect(1, ("manifest-unparseable", "native/alpha/plugin.yml", "UTF-8")),
)
C.add(
    "bundle-manifest-entrypoint-unsafe",
    "an installed plugin.yml says `entrypoint: ../../../outside/x.so`",
    group=_P,
    build=lambda s: s.write(
        ".plugins/native/alpha/plugin.yml",
        yaml.safe_dump(
            {
                **source_manifest("alpha", artifact=None),
                "entrypoint": "../../../outside/libprecious.so",
            }
        ),
    ),
    check=Expect(1, ("manifest-entrypoint-unsafe", "native/alpha/plugin.yml")),
)
C.add(
    "bundle-manifest-unsafe-id",
    "an installed plugin.yml says `id: ../../x`",
    group=_P,
    build=lambda s: s.write(
        ".plugins/native/alpha/plugin.yml",
        yaml.safe_dump({**source_manifest("alpha"), "id": "../../x"}),
    ),
    check=Expect(1, ("manifest-unsafe-name", "native/alpha/plugin.yml", "../../x")),
)
C.add(
    "bundle-manifest-json-deep",
    "a bundle's only manifest is a manifest.json nested 100 000 deep",
    group=_P,
    build=lambda s: (
        os.unlink(s.bundle() / "plugin.yml"),
        s.write(".plugins/native/alpha/manifest.json", "[" * 100_000 + "]" * 100_000),
    ),
    check=Expect(1, ("manifest-unparseable", "native/alpha/manifest.json", "deeply")),
)
C.add(
    "bundle-symlink-outside",
    "native/alpha is a symlink to a directory outside the tree",
    group=_P,
    build=lambda s: (shutil.rmtree(s.bundle()), os.symlink(s.outside / "victim", s.bundle())),
    check=Expect(1, ("library-not-binary", "native/alpha/libalpha.so")),
    copy=Expect(0, ("updated", "alpha"), keeps=("native/beta",)),
    list=Expect(0, ("stale",)),
)
C.add(
    "library-symlink-outside",
    "native/alpha/libalpha.so is a symlink to a file outside the tree",
    group=_P,
    build=lambda s: s.replace(
        ".plugins/native/alpha/libalpha.so", "symlink", str(s.outside / "libprecious.so")
    ),
    check=Expect(1, ("library-not-binary", "native/alpha/libalpha.so")),
    copy=Expect(0, ("updated", "alpha"), keeps=("native/beta",)),
)
C.add(
    "bare-symlink-loop",
    "native/libloop.so is a symlink to itself",
    group=_P,
    build=lambda s: os.symlink("libloop.so", s.native / "libloop.so"),
    check=Expect(1, ("bare-library", "native/libloop.so")),
    list=Expect(0, ("libloop.so",)),
    copy=Expect(1, ("bare-library", "libloop.so"), keeps=NATIVE),
    migrate=Expect(1, ("libloop.so", "symbolic links", "bare-library")),
)
C.add(
    "library-symlink-loop",
    "native/alpha/libalpha.so is a symlink to itself",
    group=_P,
    build=lambda s: s.replace(".plugins/native/alpha/libalpha.so", "symlink", "libalpha.so"),
    check=Expect(1, ("library-unreadable", "native/alpha/libalpha.so")),
    copy=Expect(0, ("updated", "alpha"), keeps=("native/beta",)),
)
C.add(
    "bundle-unreadable",
    "native/alpha/ is mode 000",
    group=_P,
    unreadable=True,
    build=lambda s: s.deny(".plugins/native/alpha"),
    check=Expect(1, ("bundle-unreadable", "native/alpha", "Permission denied")),
    copy=Expect(1, ("io-error", "native/alpha", "Permission denied"), keeps=NATIVE),
    list=Expect(0, ("alpha",)),
)
C.add(
    "library-unreadable",
    "native/alpha/libalpha.so is mode 000",
    group=_P,
    unreadable=True,
    build=lambda s: (s.install(), s.deny(".plugins/native/alpha/libalpha.so")),
    check=Expect(1, ("library-unreadable", "native/alpha/libalpha.so", "mode 0000")),
    copy=Expect(0, ("updated", "alpha"), keeps=("native/beta",)),
    list=Expect(0, ("alpha",)),
)
C.add(
    "native-unreadable",
    "native/ is mode 000",
    group=_P,
    unreadable=True,
    build=lambda s: s.deny(".plugins/native"),
    check=Expect(2, ("unreadable", ".plugins/native", "Permission denied")),
    copy=Expect(2, (".plugins/native", "Permission denied")),
    list=Expect(2, (".plugins/native", "Permission denied")),
    migrate=Expect(2, ("native-dir-unreadable", ".plugins/native")),
)
C.add(
    "native-is-file",
    ".plugins/native is a regular file",
    group=_P,
    build=lambda s: (shutil.rmtree(s.native), s.write(".plugins/native", "oops\n")),
    check=Expect(2, ("plugins-dir-empty", ".plugins")),
    copy=Expect(2, ("state-dir-unsafe", ".plugins/native")),
    migrate=Expect(2, ("native-dir-not-directory", ".plugins/native")),
)
C.add(
    "bundle-name-not-utf8",
    "a bundle directory and library whose names are not UTF-8",
    group=_P,
    build=lambda s: (
        os.mkdir(os.fsencode(s.native) + b"/caf\xe9"),
        shutil.copyfile(s.libs.good_c, os.fsencode(s.native) + b"/caf\xe9/lib\xff.so"),
    ),
    check=Expect(0, ("library-name-unsafe", "caf\\udce9/lib\\udcff.so", "UTF-8")),
    list=Expect(0, ("caf\\udce9",)),
    copy=Expect(0, ("up to date",), keeps=NATIVE),
)
C.add(
    "bundle-name-newline",
    "a bundle directory whose name holds a newline",
    group=_P,
    build=lambda s: (
        os.mkdir(s.native / "evil\nname"),
        shutil.copyfile(s.libs.good_c, s.native / "evil\nname" / "libevil.so"),
    ),
    check=Expect(0, ("native/evil\\nname/",)),
    list=Expect(0, ("evil\\nname",)),
)
C.add(
    "bundle-name-255-bytes",
    "a bundle and a library with 255-byte names",
    group=_P,
    build=lambda s: (
        os.mkdir(s.native / ("b" * 255)),
        shutil.copyfile(s.libs.good_c, s.native / ("b" * 255) / ("lib" + "l" * 249 + ".so")),
    ),
    check=Expect(0, ("b" * 255,)),
    list=Expect(0, ("b" * 255,)),
)
C.add(
    "bundle-deep-tree",
    "a bundle holding a directory tree 60 levels deep with a library at the bottom",
    group=_P,
    build=lambda s: s.write(".plugins/native/alpha/" + "d/" * 60 + "libdeep.so", b"\x7fELF"),
    check=Expect(0, ("load",)),
    copy=Expect(0, ("updated", "alpha"), keeps=("native/beta",)),
)

# --- our own bookkeeping in .plugins/.plugin-packaging ------------------------------------------

_S = "state"
C.add(
    "state-json-junk",
    "state.json is random bytes",
    group=_S,
    build=lambda s: s.write(".plugins/.plugin-packaging/state.json", _junk(4096, 6)),
    copy=Expect(0, ("up to date",), keeps=NATIVE),
    list=Expect(0, ("up to date",)),
)
C.add(
    "state-json-deep",
    "state.json nests 100 000 lists",
    group=_S,
    build=lambda s: s.write(".plugins/.plugin-packaging/state.json", "[" * 100_000 + "]" * 100_000),
    copy=Expect(0, ("up to date",), keeps=NATIVE),
    list=Expect(0, ("up to date",)),
)
C.add(
    "state-json-wrong-types",
    "state.json has the right format but lists where mappings belong",
    group=_S,
    build=lambda s: _scramble_state(s),
    copy=Expect(0, ("alpha",), keeps=NATIVE),
)
C.add(
    "state-json-fifo",
    "state.json is a named pipe",
    group=_S,
    build=lambda s: s.replace(".plugins/.plugin-packaging/state.json", "fifo"),
    copy=Expect(0, ("up to date",), keeps=NATIVE),
)
C.add(
    "state-dir-symlink-outside",
    ".plugins/.plugin-packaging is a symlink to a directory outside",
    group=_S,
    build=lambda s: (shutil.rmtree(s.state_dir), os.symlink(s.outside / "victim", s.state_dir)),
    copy=Expect(2, ("state-dir-unsafe", ".plugin-packaging", "symlink")),
    migrate=Expect(2, ("state-dir-unsafe", ".plugin-packaging")),
)
C.add(
    "staging-symlink-outside",
    "the staging directory is a symlink to a directory outside (runs empty it)",
    group=_S,
    build=lambda s: (
        shutil.rmtree(s.state_dir / "staging"),
        os.symlink(s.outside / "victim", s.state_dir / "staging"),
    ),
    copy=Expect(2, ("state-dir-unsafe", "staging")),
    migrate=Expect(2, ("state-dir-unsafe", "staging")),
)
C.add(
    "lock-symlink-outside",
    "the lock file is a symlink to a file outside (runs write their pid in it)",
    group=_S,
    build=lambda s: s.replace(
        ".plugins/.plugin-packaging/lock", "symlink", str(s.outside / "precious.txt")
    ),
    copy=Expect(2, ("state-dir-unsafe", "lock", "symlink")),
    migrate=Expect(2, ("state-dir-unsafe", "lock")),
)
C.add(
    "lock-is-directory",
    "the lock file is a directory",
    group=_S,
    build=lambda s: s.replace(".plugins/.plugin-packaging/lock", "dir"),
    copy=Expect(2, ("io-error", "lock", "directory")),
)
C.add(
    "lock-is-fifo",
    "the lock file is a named pipe",
    group=_S,
    build=lambda s: s.replace(".plugins/.plugin-packaging/lock", "fifo"),
    copy=Expect(2, ("state-dir-unsafe", "lock", "not a plain file")),
)

# --- active records --------------------------------------------------------------------------

_A = "active records"
C.add(
    "active-record-fifo",
    "active/x.json is a named pipe",
    group=_A,
    build=lambda s: (os.makedirs(s.plugins / "active"), os.mkfifo(s.plugins / "active" / "x.json")),
    check=Expect(1, ("active-record-unparseable", "x.json", "named pipe")),
)
C.add(
    "active-record-deep",
    "active/x.json nests 100 000 lists",
    group=_A,
    build=lambda s: s.write(".plugins/active/x.json", "[" * 100_000 + "]" * 100_000),
    check=Expect(1, ("active-record-unparseable", "x.json", "deeply")),
)
C.add(
    "active-record-fifty-mib",
    "active/x.json of 50 MiB",
    group=_A,
    build=lambda s: s.write(".plugins/active/x.json", b" " * FIFTY_MIB),
    check=Expect(1, ("active-record-unparseable", "x.json", "larger than")),
)
C.add(
    "active-record-outside",
    "an active record whose entrypoint is a library outside the plugin directory",
    group=_A,
    build=lambda s: s.write(
        ".plugins/active/x.json",
        (
            '{"plugin_id": "x", "version": "1.0.0", "node_kind": "x", "kind": "native", '
            f'"entrypoint": "{s.outside / "good" / "libgood.so"}", "installed_at_ms": 1}}'
        ),
    ),
    check=Expect(1, ("active-record-outside-plugins-dir", "x.json")),
)

# --- migrate: hostile bare files ---------------------------------------------------------------

_M = "migration"
C.add(
    "migrate-dotdot-name",
    "a bare library named lib..so",
    group=_M,
    build=lambda s: shutil.copyfile(s.libs.good_c, s.native / "lib..so"),
    migrate=Expect(1, ("migrate-conflict", "lib..so", "'..'"), keeps=NATIVE),
    check=Expect(1, ("bare-library", "lib..so")),
)
C.add(
    "migrate-newline-name",
    "a bare library whose name holds a newline",
    group=_M,
    build=lambda s: shutil.copyfile(s.libs.good_c, s.native / "lib\nx.so"),
    migrate=Expect(1, ("migrate-conflict", "CONFLICT  lib\\nx.so"), keeps=NATIVE),
    check=Expect(1, ("bare-library", "lib\\nx.so")),
)
C.add(
    "migrate-symlink-outside",
    "a bare library that is a symlink to a library outside the tree",
    group=_M,
    build=lambda s: os.symlink(s.outside / "good" / "libgood.so", s.native / "libout.so"),
    migrate=Expect(0, ("libout.so", "out/")),
    check=Expect(1, ("bare-library", "libout.so")),
)
C.add(
    "migrate-into-fifo-bundle",
    "a bare libalpha.so while native/alpha/libalpha.so is a named pipe",
    group=_M,
    build=lambda s: (
        shutil.copyfile(s.libs.good_c, s.native / "libalpha.so"),
        s.replace(".plugins/native/alpha/libalpha.so", "fifo"),
    ),
    migrate=Expect(1, ("migrate-conflict", "libalpha.so"), keeps=NATIVE),
)
C.add(
    "migrate-unreadable-bare",
    "a bare library of mode 000",
    group=_M,
    unreadable=True,
    build=lambda s: (
        shutil.copyfile(s.libs.good_c, s.native / "libsecret.so"),
        s.deny(".plugins/native/libsecret.so"),
    ),
    migrate=Expect(1, ("libsecret.so", "library-unreadable")),
)


def _scramble_state(scene: Scene) -> None:
    import json

    path = scene.state_dir / "state.json"
    document = json.loads(path.read_text())
    for entry in document["plugins"].values():
        entry["installed"] = ["not", "a", "mapping"]
        entry["manifest"] = ["nor", "this"]
    path.write_text(json.dumps(document))
    # A rebuilt library forces the careful path, where the damaged entries are read.
    os.utime(scene.at(ALPHA_ARTIFACT), (1, 1))


CASES: tuple[Case, ...] = tuple(C.cases)


def render_table(cases: tuple[Case, ...] = CASES) -> str:
    """The README table: one row per case, its commands with the exit expected and the phrases."""
    lines = [
        "| # | group | case | what is broken | command: exit (must say) |",
        "|---|---|---|---|---|",
    ]
    for number, case in enumerate(cases, 1):
        runs = []
        for command, expect in case.expects.items():
            said = ", ".join(f"`{_short(phrase)}`" for phrase in expect.says[:2])
            cell = f"{command}: {expect.exit}" + (f" ({said})" if said else "")
            if expect.xfail:
                cell += " **known failure**"
            runs.append(cell)
        what = case.what.replace("|", "\\|") + (
            " (unreadable: run without CAP_DAC_*)" if case.unreadable else ""
        )
        lines.append(f"| {number} | {case.group} | `{case.name}` | {what} | {'<br>'.join(runs)} |")
    return "\n".join(lines)


def _short(phrase: str, limit: int = 40) -> str:
    return phrase if len(phrase) <= limit else f"{phrase[:12]}...({len(phrase)} characters)"


TABLE_START = (
    "<!-- corpus table: generated by `python tests/robustness/corpus.py`; do not edit by hand -->"
)
TABLE_END = "<!-- end of corpus table -->"


def update_readme(readme: Path) -> None:
    """Replace the table between the markers of `readme` with `render_table()`."""
    text = readme.read_text(encoding="utf-8")
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    readme.write_text(f"{head}{TABLE_START}\n{render_table()}\n{TABLE_END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    update_readme(Path(__file__).with_name("README.md"))
