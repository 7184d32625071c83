"""The loader's rules as data: a stable code, a severity, what is wrong and how to fix it.

The checks (`layout.py`, `manifest_rules.py`, `library_rules.py`, `records.py`, `loadplan.py`)
only say *which* rule a file breaks and fill in the details, as a `Violation`; the words people
read live here, in one table, so they stay consistent. Severities can be changed or rules ignored
per code in settings (`plugins.rules: {CODE: error|warning|info|ignore}`), like lintian or ruff.

`blocks_load` records what the server does, not how much we mind: a rule that blocks means the
loader skips that library or record. The load plan is computed from it before any severity
override, so ignoring a rule hides its finding but never changes what the plan says will load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from plugin_packaging.errors import PackagingError, display_path

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
IGNORE = "ignore"

#: The exported name every native plugin library must define (native-loader.md, section 5).
ENTRY_SYMBOL = "streamkit_native_plugin_api"

_ENTRY_C = (
    f'in C/C++: `extern "C" __attribute__((visibility("default"))) const CNativePluginAPI '
    f"*{ENTRY_SYMBOL}(void)`"
)
_ENTRY_RUST = (
    f"in Rust: a cdylib using StreamKit's native_plugin_entry! macro, or "
    f'`#[no_mangle] pub extern "C" fn {ENTRY_SYMBOL}()`'
)


@dataclass(frozen=True)
class LoaderRule:
    """One thing the loader does with a layout, and what to do about it."""

    code: str
    severity: Severity
    #: One line; `{placeholders}` are filled from the violation's details.
    message: str
    hint: str
    #: The spec's rule this comes from (native-loader.md), for people who want the why.
    reference: str = ""
    #: True when the server skips the library (or record) that breaks the rule.
    blocks_load: bool = False


def _rules(*rules: LoaderRule) -> dict[str, LoaderRule]:
    return {rule.code: rule for rule in rules}


RULES: dict[str, LoaderRule] = _rules(
    # --- layout of P/native (N1-N5, section 3) ------------------------------------------------
    LoaderRule(
        "bare-library",
        "error",
        "{name} lies directly in native/; the loader skips bare library files",
        "move it into its own directory, native/<id>/{name}, with a plugin.yml beside it "
        "(copy-plugins-native does both)",
        "N1",
        blocks_load=True,
    ),
    LoaderRule(
        "nested-library",
        "warning",
        "{relative} lies in a subdirectory of bundle {bundle}/; the loader only opens a bundle's "
        "direct entries, so it is never loaded as a plugin",
        "move it up to native/{bundle}/ if it is the plugin; a vendored dependency may stay there "
        "only if the plugin's RUNPATH points at it ($ORIGIN/{subdir})",
        "N3",
    ),
    LoaderRule(
        "bundle-unreadable",
        "error",
        "bundle {bundle}/ cannot be listed ({reason}): the loader cannot find any library in it, "
        "so that plugin does not load",
        "make the directory readable and searchable by the user the server runs as (e.g. "
        "`chmod 755` it), or remove it",
        "N2, N11",
        blocks_load=True,
    ),
    LoaderRule(
        "bundle-without-library",
        "warning",
        "bundle {bundle}/ holds no file the loader would open{near}",
        "install the plugin's library into it (copy-plugins-native), or remove the directory",
        "N2, N4",
    ),
    LoaderRule(
        "bundle-several-libraries",
        "error",
        "bundle {bundle}/ holds {count} library files ({names}); the loader opens every one, "
        "and each that is not a plugin fails to load",
        "keep only the plugin's library{entry}; give a vendored dependency its versioned SONAME "
        "(libdep.so.1), which the loader skips, and reach it through RUNPATH $ORIGIN",
        "N4",
    ),
    LoaderRule(
        "library-is-directory",
        "error",
        "{name} is a directory, but its name makes the loader try to open it as a library",
        "rename the directory: inside a bundle, only the plugin's library may end in .so, .dylib or .dll",
        "N4",
        blocks_load=True,
    ),
    LoaderRule(
        "library-name-ignored",
        "warning",
        "{name} is never loaded: {why}",
        "rename it to {suggestion} if it is the plugin's library",
        "section 3",
    ),
    LoaderRule(
        "library-name-unsafe",
        "warning",
        "the library name {name!r} {problem}; an upload would refuse it",
        "rename the library to a plain name such as lib<name>.so and set `entrypoint` to match",
        "section 3",
    ),
    LoaderRule(
        "bundle-name-differs",
        "warning",
        "bundle directory {bundle}/ holds plugin {plugin_id!r}; the build recipe names it "
        "{plugin_id}/ (uploads name it {stem}/)",
        "rename it to native/{plugin_id}/; otherwise copy-plugins-native installs a second copy "
        "beside it and the server loads the one that sorts first",
        "N2",
    ),
    LoaderRule(
        "hidden-bundle",
        "warning",
        "hidden directory {bundle}/ is a bundle like any other: the loader opens its libraries",
        "remove it if it is a backup or a leftover; rename it if it is meant to load",
        "N5",
    ),
    LoaderRule(
        "broken-symlink",
        "warning",
        "{name} is a symbolic link to {target}, which does not exist; the loader skips it",
        "remove the link, or restore what it points to",
        "N2",
    ),
    # --- the manifest (N8, N9, N10, section 4) ------------------------------------------------
    LoaderRule(
        "manifest-missing",
        "warning",
        "bundle {bundle}/ has no plugin.yml (nor any other manifest name the loader reads)",
        "install the plugin with copy-plugins-native, which writes one; without it the server "
        "registers no asset types and release tooling cannot package the bundle",
        "N8",
    ),
    LoaderRule(
        "manifest-unparseable",
        "error",
        "{detail}; the server drops this manifest",
        "fix the file; until then the plugin loads without its asset types",
        "N8",
    ),
    LoaderRule(
        "manifest-key-missing",
        "error",
        "has no `{key}`, which the server requires; it drops the whole manifest",
        "{fix}",
        "N8, section 4",
    ),
    LoaderRule(
        "manifest-wrong-type",
        "error",
        "`{key}` must be {expected}, not {actual}; the server drops the whole manifest",
        "{fix}",
        "N8, section 4",
    ),
    LoaderRule(
        "manifest-kind",
        "error",
        "`kind` is {value!r}; {why}",
        "write `kind: native` (lowercase, exactly)",
        "section 4",
    ),
    LoaderRule(
        "manifest-entrypoint-mismatch",
        "error",
        "`entrypoint` is {value!r}, but the bundle's library is {library!r}",
        "set `entrypoint: {library}`; marketplace installs and release bundles open the "
        "entrypoint, not the file the directory loader finds",
        "section 4",
    ),
    LoaderRule(
        "manifest-entrypoint-unsafe",
        "error",
        "`entrypoint` {value!r} {problem}",
        "write the library's file name as it lies in the bundle, e.g. `entrypoint: libfoo.so`",
        "section 4",
    ),
    LoaderRule(
        "manifest-unsafe-name",
        "error",
        "`{key}` {value!r} {problem}; the marketplace uses it as a directory name",
        "use a plain name such as `my-plugin` (id) or `1.2.3` (version)",
        "section 4",
    ),
    LoaderRule(
        "manifest-version-not-semver",
        "error",
        "`version` {value!r} is not SemVer (MAJOR.MINOR.PATCH[-pre][+build])",
        'write e.g. `version: "0.1.0"`, equal to [package].version in the plugin\'s Cargo.toml',
        "section 4",
    ),
    LoaderRule(
        "manifest-node-kind",
        "error",
        "`node_kind` {value!r} {problem}",
        "write the bare kind the library registers{suggestion}; the server adds `plugin::native::` itself",
        "section 4",
    ),
    LoaderRule(
        "manifest-fallback",
        "warning",
        "the server reads {used} because {reason}",
        "name the manifest plugin.yml, as bundle tooling expects, and remove the other",
        "N9",
    ),
    LoaderRule(
        "manifest-shadowed",
        "info",
        "{name} is never read: {used} comes first in the loader's lookup order",
        "remove {name}, or merge what it holds into {used}",
        "N9",
    ),
    LoaderRule(
        "asset-type-id-invalid",
        "error",
        "assets[{index}].type_id {value!r} must match [A-Za-z0-9_-]+; the server skips this asset type",
        "use letters, digits, '-' and '_' only, e.g. `{suggestion}`",
        "N10",
    ),
    LoaderRule(
        "asset-system-dir-unsafe",
        "error",
        "assets[{index}].system_dir {value!r} {problem}; the server skips this asset type",
        "use a relative directory without '..', e.g. `presets`",
        "N10",
    ),
    LoaderRule(
        "asset-too-large",
        "error",
        "assets[{index}].max_size_bytes is {value} ({shown}), above the server's cap of 100 MiB; "
        "the server skips this asset type",
        "set max_size_bytes to 104857600 or less",
        "N10",
    ),
    LoaderRule(
        "asset-type-taken",
        "error",
        "asset type {type_id!r} already belongs to plugin {owner!r} ({owner_path}); the server "
        "refuses it for {plugin_id!r}",
        "give this plugin's asset type its own type_id, e.g. `{plugin_id}-{type_id}`",
        "N10",
    ),
    # --- the library binary (N6, N11, section 5) ----------------------------------------------
    LoaderRule(
        "library-unreadable",
        "error",
        "{detail}; the loader cannot open it",
        "make it readable by the server's user (chmod 0755); the directory loader does not chmod",
        "N11",
        blocks_load=True,
    ),
    LoaderRule(
        "library-not-binary",
        "error",
        "{detail}",
        "{fix}",
        "N6",
        blocks_load=True,
    ),
    LoaderRule(
        "library-truncated",
        "error",
        "is cut short: {detail}",
        "copy it again from the build output (was a build or a copy interrupted?)",
        "N6",
        blocks_load=True,
    ),
    LoaderRule(
        "library-corrupt",
        "error",
        "is corrupt: {detail}",
        "rebuild the plugin and copy the fresh library",
        "N6",
        blocks_load=True,
    ),
    LoaderRule(
        "library-format-mismatch",
        "warning",
        "is a {format} file but is named .{extension}, the {expected_platform} extension",
        "name it {suggestion}, as a {platform} build would",
        "section 3",
    ),
    LoaderRule(
        "library-wrong-platform",
        "error",
        "is a {format} library, built for {platform}; the target platform is {target}",
        "build the plugin for {target}, or check with --platform {platform}",
        "N6",
        blocks_load=True,
    ),
    LoaderRule(
        "library-wrong-arch",
        "error",
        "is built for {arch}; the target is {target}",
        "build it for {target} (e.g. cargo build --target {triple}), or check with --arch {first_arch}",
        "N6",
        blocks_load=True,
    ),
    LoaderRule(
        "library-not-shared",
        "error",
        "is {what}, not a shared library; the loader cannot open it",
        "{fix}",
        "N6",
        blocks_load=True,
    ),
    LoaderRule(
        "entry-symbol-missing",
        "error",
        'does not export `{symbol}`{also}; the loader skips it ("Plugin does not export '
        "'streamkit_native_plugin_api' symbol\")",
        f"define and export it: {_ENTRY_RUST}; {_ENTRY_C}",
        "N6, section 5",
        blocks_load=True,
    ),
    LoaderRule(
        "entry-symbol-mangled",
        "error",
        "does not export `{symbol}`, only the {language}-mangled {variant}; the loader looks "
        "for the plain name",
        "{fix}",
        "N6, section 5",
        blocks_load=True,
    ),
    LoaderRule(
        "entry-symbol-hidden",
        "error",
        "defines `{symbol}` but hides it (local binding or hidden visibility); the loader cannot find it",
        'give it default visibility: in C/C++ `__attribute__((visibility("default")))` (the build '
        "uses -fvisibility=hidden or a version script that hides it); in Rust "
        '`#[no_mangle] pub extern "C"` in a cdylib',
        "N6, section 5",
        blocks_load=True,
    ),
    LoaderRule(
        "entry-symbol-undefined",
        "error",
        "only refers to `{symbol}` and expects another library to define it; the loader skips it",
        "define the function in this library: is the source file that holds it missing from the link?",
        "N6, section 5",
        blocks_load=True,
    ),
    LoaderRule(
        "entry-symbol-not-function",
        "error",
        "exports `{symbol}` as data, not as a function; the loader calls it and fails",
        f"export the function that returns the API table, not the table itself: {_ENTRY_C}",
        "N6, section 5",
        blocks_load=True,
    ),
    LoaderRule(
        "library-executable-stack",
        "error",
        "asks for an executable stack (PT_GNU_STACK with PF_X, or no PT_GNU_STACK); "
        "glibc 2.41 and later refuse to dlopen it",
        "link with -Wl,-z,noexecstack, and find the object that lacks a .note.GNU-stack section "
        "(often hand-written assembly)",
        "section 5",
        blocks_load=True,
    ),
    LoaderRule(
        "library-search-path",
        "warning",
        "{tag} {entries} {problem}",
        "vendor what it needs inside the bundle and set {tag} to $ORIGIN "
        "(patchelf --set-rpath '$ORIGIN' {name}); StreamKit's bundle verifier refuses /usr/local/lib",
        "section 5",
    ),
    LoaderRule(
        "library-dependency-missing",
        "warning",
        "needs {symbol}, which the dynamic loader does not find on this machine "
        "(searched {searched}); dlopen fails",
        "install the system package that provides {symbol}, or vendor it in the bundle under its "
        "SONAME with RUNPATH $ORIGIN",
        "section 5",
        blocks_load=True,
    ),
    # --- active records (section 6) -----------------------------------------------------------
    LoaderRule(
        "active-record-unparseable",
        "error",
        "{detail}; the server skips this record",
        "reinstall the plugin from the marketplace, or remove the record",
        "section 6",
        blocks_load=True,
    ),
    LoaderRule(
        "active-record-field",
        "error",
        "`{key}` {problem}; the server skips this record",
        "reinstall the plugin from the marketplace, or fix the record",
        "section 6",
        blocks_load=True,
    ),
    LoaderRule(
        "active-record-unsafe-name",
        "error",
        "`{key}` {value!r} {problem}; the server skips this record",
        "reinstall the plugin from the marketplace, or remove the record",
        "section 6",
        blocks_load=True,
    ),
    LoaderRule(
        "active-record-entrypoint-missing",
        "error",
        "`entrypoint` {value!r} does not exist (resolved against the server's working directory "
        "{cwd}); the server skips this record",
        "reinstall the plugin, or remove the record; entrypoints are relative to where the server runs",
        "section 6",
        blocks_load=True,
    ),
    LoaderRule(
        "active-record-outside-plugins-dir",
        "error",
        "`entrypoint` {value!r} resolves to {real}, outside the plugin directory; the server "
        "skips this record",
        "keep marketplace bundles under the plugin directory (bundles/<id>/<version>/)",
        "section 6",
        blocks_load=True,
    ),
    LoaderRule(
        "active-record-ignored",
        "info",
        "{name} is never read: the server reads only active/*.json (extension exactly `json`)",
        "rename it to <plugin_id>.json if it is a record, or remove it",
        "section 6",
    ),
    # --- across plugins (N7) ------------------------------------------------------------------
    LoaderRule(
        "duplicate-node-kind",
        "error",
        "node kind {kind} is already registered by {winner}, which the server loads first; it "
        "skips this one{versions} (after dlopen: its constructors still run)",
        "remove one of the two, or give one a different node kind",
        "N5, N7",
        blocks_load=True,
    ),
    # --- the optional load probe (section 5) --------------------------------------------------
    LoaderRule(
        "probe-api-version",
        "error",
        'reports API version {version}; the server accepts 6 to 9 ("Plugin API version '
        'mismatch: plugin has v{version}, host supports v6-v9")',
        "rebuild it against a current streamkit-plugin-native crate",
        "section 5",
        blocks_load=True,
    ),
    LoaderRule(
        "probe-null-api",
        "error",
        "`{symbol}` returned NULL; the server skips it",
        "return a pointer to a static API table from the entry function",
        "section 5",
        blocks_load=True,
    ),
    LoaderRule(
        "probe-kind-invalid",
        "error",
        "reports an invalid node kind: {problem}; the server refuses it",
        "register a bare, UTF-8 kind (letters, digits, '-', '_'); the server adds `plugin::native::` itself",
        "section 5",
        blocks_load=True,
    ),
    LoaderRule(
        "probe-kind-mismatch",
        "error",
        "registers node kind {kind!r}, but {source} says {declared!r}{consequence}",
        "make `{key}` equal to the kind the library registers ({kind})",
        "N7, section 6",
    ),
    LoaderRule(
        "probe-crashed",
        "error",
        "loading it {detail}; the server would crash the same way at start-up",
        "run the plugin's constructors under a debugger (gdb --args python -c "
        "'import ctypes; ctypes.CDLL(\"{name}\")') and fix the crash",
        "section 5",
        blocks_load=True,
    ),
    LoaderRule(
        "probe-timed-out",
        "error",
        "loading it {detail}; the server would hang the same way at start-up",
        "find what its constructors or entry function wait for; raise --probe-timeout if it is only slow",
        "section 5",
        blocks_load=True,
    ),
    LoaderRule(
        "probe-failed",
        "error",
        "the load probe failed: {detail}",
        "fix the library so that it loads; the static findings above usually say why",
        "section 5",
        blocks_load=True,
    ),
)


def printable(text: str) -> str:
    """`text` with control characters escaped, so a hostile file name cannot break a line."""
    if text.isprintable():
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


class _Printable(dict[str, Any]):
    """Format arguments with every string made printable first."""

    def __init__(self, details: Mapping[str, Any]) -> None:
        super().__init__({k: printable(v) if isinstance(v, str) else v for k, v in details.items()})


@dataclass(frozen=True)
class Finding:
    """One broken rule, about one file (and one symbol or key in it), as people see it."""

    code: str
    severity: Severity
    message: str
    hint: str
    path: Path
    #: The bundle directory name under native/, when the finding is about one.
    bundle: str | None = None
    #: The active record's file name under active/, when the finding is about one.
    record: str | None = None
    #: The symbol (entry function, needed library) the finding is about.
    symbol: str | None = None
    #: The manifest key, record field or dynamic tag the finding is about.
    key: str | None = None
    #: The spec's rule (native-loader.md).
    reference: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "path": display_path(self.path),
            "bundle": self.bundle,
            "record": self.record,
            "symbol": self.symbol,
            "key": self.key,
            "reference": self.reference,
        }


class FindingTally:
    """Counts per severity and the verdict, for a report that holds `findings` (a check of a
    plugin directory, a verification of bundles): both fail on the same terms."""

    findings: tuple[Finding, ...]

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def failed(self, strict: bool = False) -> bool:
        """Any error fails; with `strict`, any warning too."""
        return self.count("error") > 0 or (strict and self.count("warning") > 0)


@dataclass(frozen=True)
class Violation:
    """A rule broken by one file, with the details its message needs; no severity yet."""

    code: str
    path: Path
    details: Mapping[str, Any] = field(default_factory=dict)
    bundle: str | None = None
    record: str | None = None
    symbol: str | None = None
    key: str | None = None
    #: Overrides the rule's `blocks_load` where it depends on the case (see probe-kind-mismatch).
    blocks: bool | None = None

    @property
    def rule(self) -> LoaderRule:
        return RULES[self.code]

    @property
    def blocks_load(self) -> bool:
        return self.rule.blocks_load if self.blocks is None else self.blocks

    @property
    def message(self) -> str:
        return self.rule.message.format_map(self._arguments())

    def _arguments(self) -> _Printable:
        return _Printable(
            {"symbol": self.symbol, "key": self.key, "bundle": self.bundle, **self.details}
        )

    def finding(self, severity: Severity) -> Finding:
        arguments = self._arguments()
        return Finding(
            code=self.code,
            severity=severity,
            message=self.rule.message.format_map(arguments),
            hint=self.rule.hint.format_map(arguments),
            path=self.path,
            bundle=self.bundle,
            record=self.record,
            symbol=self.symbol,
            key=self.key,
            reference=self.rule.reference,
        )


def effective_severity(code: str, overrides: Mapping[str, str]) -> Severity | None:
    """The severity of `code` after settings; None when the rule is ignored."""
    chosen = overrides.get(code, RULES[code].severity)
    if chosen == IGNORE:
        return None
    return chosen if chosen in SEVERITIES else RULES[code].severity


def validate_overrides(overrides: Mapping[str, Any]) -> dict[str, str]:
    """The `plugins.rules` setting, checked: known codes only, a severity or `ignore` each."""
    checked: dict[str, str] = {}
    for code, value in overrides.items():
        if code not in RULES:
            # Other rule tables (bundle_rules.py) join RULES when imported, and the same setting
            # grades them: load them before calling a code unknown.
            from plugin_packaging.rules import bundle  # noqa: F401
        if code not in RULES:
            import difflib

            close = difflib.get_close_matches(str(code), RULES, n=1)
            hint = (
                f"did you mean {', '.join(close)}?"
                if close
                else "`check-plugins-native --list-rules` lists the rule codes"
            )
            raise PackagingError(
                "bad-setting", f"plugins.rules names an unknown rule code {code!r}", hint=hint
            )
        if value not in (*SEVERITIES, IGNORE):
            raise PackagingError(
                "bad-setting",
                f"plugins.rules.{code} is {value!r}",
                hint="use one of: error, warning, info, ignore",
            )
        checked[str(code)] = str(value)
    return checked
