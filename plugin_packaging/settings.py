"""One frozen `Settings` value, built from invoke's config (defaults, invoke.yaml, env) and flags.

Tasks never read invoke's config directly: they call `Settings.from_config` once and hand the
value to plain functions, so the logic is testable without invoke and the precedence (defaults <
`invoke.yaml` < `INVOKE_PLUGINS_*` < command-line flags) lives in one place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from plugin_packaging.errors import PackagingError, did_you_mean
from plugin_packaging.target import PLATFORMS, Platform, host_platform

#: Cargo's build profiles, named as its directories under target/.
Profile = Literal["release", "debug"]
PROFILES: tuple[Profile, ...] = ("release", "debug")

#: The settings namespace in invoke's config: `plugins.<key>` in invoke.yaml,
#: `INVOKE_PLUGINS_<KEY>` in the environment.
CONFIG_NAMESPACE = "plugins"

#: Defaults registered with `ns.configure`. Extras are plugins without a source `plugin.yml`;
#: StreamKit's gain-native example is one, so it is declared here and works out of the box.
DEFAULTS: dict[str, Any] = {
    # None: found from the current directory upwards (tasks/common.py: settings_for).
    "root": None,
    "plugins_dir": None,
    "platform": None,
    "source_patterns": [
        "plugins/native/*/plugin.yml",
        "plugins/native/*/plugin.yaml",
        "plugins/native/*/marketplace.yml",
    ],
    "extras": {
        "gain-native": {
            "name": "Gain (native example)",
            "node_kind": "gain",
            "crate": "examples/plugins/gain-native",
            "artifact": "examples/plugins/gain-native/target/release/libgain_plugin_native.so",
            "description": "Example native gain filter",
        },
    },
    "template": None,
    # Numbers and booleans are None here (their real defaults are `Settings`' own), so that
    # invoke passes INVOKE_PLUGINS_* values on as text: it would read any non-empty text as
    # true (`INVOKE_PLUGINS_PRUNE=false` turned pruning on) and crash on a number that is not one.
    "jobs": None,
    "check": None,
    "require_all": None,
    "prune": None,
    # Which cargo profile's artifacts copy and install take: release (default) or debug.
    "profile": None,
    # Directories outside the checkout that artifacts and extra_files may resolve into (through
    # a symlink or `..`); everything else outside the checkout is refused.
    "allowed_source_dirs": [],
    "rules": {},
    # How plugins are built (build-plugins-native): a command per plugin id for sources that are
    # not plain cargo crates (a string runs in the shell at the root, a list runs as is), and
    # extra arguments for every `cargo build` (a list, or one string split like a shell would,
    # so that INVOKE_PLUGINS_CARGO_ARGS="--offline --locked" works; invoke cannot cast a list).
    "build_commands": {},
    "cargo_args": None,
    # Environment variables set for one plugin's build, by plugin id; `VAR: null` unsets one
    # given here. StreamKit's release builds (scripts/marketplace/build_official_plugins.sh) pin
    # whisper to a portable x86-64 baseline: whisper.cpp's ggml otherwise compiles for the build
    # machine's CPU (-march=native), and the published library would crash with SIGILL on older
    # ones; SOURCE_DATE_EPOCH also turns ggml's native default off.
    "build_env": {
        "whisper": {
            "SOURCE_DATE_EPOCH": "1",
            "CFLAGS": "-O3 -pipe -fPIC -march=x86-64 -mtune=generic",
            "CXXFLAGS": "-O3 -pipe -fPIC -march=x86-64 -mtune=generic",
        },
    },
    # Releases (package-plugins-native, verify-plugin-bundles). Paths are relative to the root.
    # The URLs are StreamKit's own: its release tags and the registry its docs site serves.
    "dist_dir": "dist",
    "bundle_url_template": "https://github.com/streamer45/streamkit/releases/download/plugin-{plugin_id}-v{version}",
    "registry_base_url": "https://streamkit.dev/registry",
    "existing_registry": None,
    "signing_key": None,
    "public_key": None,
    "signing_password_env": "MINISIGN_PASSWORD",
    "accelerators": None,
    # A release fails when an official plugin (or variant) it should hold is not built, unless
    # this is set (`--allow-missing`): then the built ones are released on purpose.
    "allow_missing": False,
    # A variant pass of a distributed release (`--variants-only`): package only the
    # `--accelerator` builds, no CPU bundles; `merge-plugin-registries` joins it with the CPU pass.
    "variants_only": False,
    # YYYY-MM-DD for new registry versions; default: today in UTC.
    "published_at": None,
    # What verify-plugin-bundles lets one bundle unpack to before refusing it (default 4 GiB and
    # 10000 members). None here, so that invoke passes INVOKE_PLUGINS_* values on as text and a
    # typo gets our message rather than invoke's ValueError.
    "bundle_max_unpacked_bytes": None,
    "bundle_max_members": None,
    # Release bundles bring the shared libraries their plugin needs (release/vendor.py):
    # `search_dirs` are looked in first, `exclude` (file name patterns) are left to the target
    # system, `per_plugin: {id: {enabled, search_dirs, exclude}}` adds to or turns off the rest.
    # `enabled: false` turns it off everywhere (so does --no-vendor). Lists default to None, for
    # the same reason as cargo_args: INVOKE_PLUGINS_VENDOR_* values then arrive as text.
    "vendor": {"enabled": True, "search_dirs": None, "exclude": None, "per_plugin": {}},
}
_BUNDLE_LIMITS = {"bundle_max_unpacked_bytes": 4 << 30, "bundle_max_members": 10_000}


#: The project settings files invoke reads at a root, in its order; it takes the first that
#: exists. (invoke also runs an invoke.py there; plugin-packaging does not, see cli.py.)
PROJECT_FILES = ("invoke.yaml", "invoke.yml", "invoke.json")


def project_settings_file(root: Path) -> Path | None:
    """The settings file of a checkout, as invoke picks it: the first of `PROJECT_FILES`."""
    for name in PROJECT_FILES:
        path = root / name
        try:
            os.stat(path)
        except FileNotFoundError:
            continue  # invoke skips a missing (or dangling) file too
        except OSError:
            pass  # a symlink loop, no permission: reading it says which
        return path
    return None


def read_settings_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON settings file, read safely (`yamlio`: no FIFO, device or huge file, no
    duplicate key), whose `plugins` section holds known settings only."""
    from plugin_packaging._fs.yamlio import load_json, load_yaml, read_text

    text = read_text(path)
    if path.suffix == ".json":
        data = load_json(text, path, code="bad-setting", what="a settings file")
    else:
        data = load_yaml(text, path)
    if data is not None and not isinstance(data, dict):
        raise PackagingError(
            "bad-setting",
            f"must be a mapping of settings, not a {type(data).__name__}",
            path,
            hint=f"put the settings under `{CONFIG_NAMESPACE}:`",
        )
    section = (data or {}).get(CONFIG_NAMESPACE)
    if section is not None and not isinstance(section, dict):
        raise PackagingError(
            "bad-setting",
            f"`{CONFIG_NAMESPACE}` must be a mapping of settings, not a {type(section).__name__}",
            path,
            hint=f"e.g. `{CONFIG_NAMESPACE}: {{plugins_dir: .plugins}}`",
        )
    unknown_settings(section or {}, path)
    return data or {}


def is_checkout(directory: Path) -> bool:
    """True for the root of a StreamKit checkout: it holds `plugins/native/`, or a settings file
    with a `plugins` section (a checkout laid out otherwise, configured for this tool)."""
    if (directory / "plugins" / "native").is_dir():
        return True
    settings_file = project_settings_file(directory)
    return settings_file is not None and CONFIG_NAMESPACE in read_settings_file(settings_file)


def find_checkout(start: Path) -> Path | None:
    """The nearest checkout root at or above `start`, as git and cargo find theirs."""
    for directory in (start, *start.parents):
        if is_checkout(directory):
            return directory
    return None


@dataclass(frozen=True)
class VendorSettings:
    """How release bundles vendor shared-library dependencies (`plugins.vendor`)."""

    enabled: bool = True
    #: Searched before the loader's own search path (absolute, or taken from the root).
    search_dirs: tuple[Path, ...] = ()
    #: fnmatch patterns of needed library names never vendored: the target system provides them.
    exclude: tuple[str, ...] = ()
    #: plugin id -> its own settings, already merged with the ones above.
    per_plugin: Mapping[str, VendorSettings] = field(default_factory=dict)

    def for_plugin(self, plugin_id: str) -> VendorSettings:
        """The settings that apply to one plugin."""
        return self.per_plugin.get(plugin_id, self)


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know about where things are and what to do."""

    root: Path
    plugins_dir: Path
    platform: Platform
    source_patterns: tuple[str, ...]
    extras: Mapping[str, Mapping[str, Any]]
    template: Path | None = None
    jobs: int = 4
    check: bool = True
    require_all: bool = False
    prune: bool = False
    #: Real paths outside the checkout that artifacts and extra_files may resolve into.
    allowed_source_dirs: tuple[Path, ...] = ()
    #: The cargo profile whose artifacts are installed: `release/` in the artifact path, or
    #: `debug/` in its place.
    profile: Profile = "release"
    rules: Mapping[str, str] = field(default_factory=dict)
    #: plugin id -> build command: a string for the shell, or an argument list; run at the root.
    build_commands: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    #: Appended to every `cargo build` (e.g. `--offline`, `--locked`).
    cargo_args: tuple[str, ...] = ()
    #: plugin id -> environment variables for its build (None unsets a variable).
    build_env: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    #: Where package-plugins-native writes `bundles/` and `registry/`.
    dist_dir: Path | None = None
    bundle_url_template: str = DEFAULTS["bundle_url_template"]
    registry_base_url: str = DEFAULTS["registry_base_url"]
    #: A published registry to append to (append-only: published versions never change).
    existing_registry: Path | None = None
    #: minisign secret key, its password's environment variable, and the public key.
    signing_key: Path | None = None
    public_key: Path | None = None
    signing_password_env: str = DEFAULTS["signing_password_env"]
    #: Accelerator variants to package besides the CPU bundle (`artifact_<name>`).
    accelerators: tuple[str, ...] = ()
    allow_missing: bool = False
    variants_only: bool = False
    published_at: str | None = None
    bundle_max_unpacked_bytes: int = _BUNDLE_LIMITS["bundle_max_unpacked_bytes"]
    bundle_max_members: int = _BUNDLE_LIMITS["bundle_max_members"]
    vendor: VendorSettings = field(default_factory=VendorSettings)

    @property
    def native_dir(self) -> Path:
        return self.plugins_dir / "native"

    @property
    def state_dir(self) -> Path:
        """Our own bookkeeping: lock, state and staging, under `P/` where the loader never looks."""
        return self.plugins_dir / ".plugin-packaging"

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, **flags: Any) -> Settings:
        """Merge defaults, the `plugins` config namespace and flags (a flag of None is unset)."""
        merged: dict[str, Any] = dict(DEFAULTS)
        merged["extras"] = dict(DEFAULTS["extras"])
        merged["build_env"] = dict(DEFAULTS["build_env"])
        if config:
            unknown_settings(config)
            for key, value in dict(config).items():
                if key in ("extras", "build_env") and isinstance(value, Mapping):
                    merged[key].update(value)
                else:
                    merged[key] = value
        for key, value in flags.items():
            if value is not None:
                merged[key] = value
        return cls._validated(merged)

    @classmethod
    def _validated(cls, values: Mapping[str, Any]) -> Settings:
        root = Path(str(values.get("root") or ".")).expanduser()
        if not root.is_dir():
            raise PackagingError(
                "root-missing",
                "the StreamKit checkout does not exist or is not a directory",
                root,
                hint="run at the root of a StreamKit checkout or pass --root PATH",
            )
        root = root.resolve()
        plugins_dir = values.get("plugins_dir")
        plugins_path = root / ".plugins" if not plugins_dir else root / Path(str(plugins_dir))
        platform = values.get("platform") or host_platform()
        if platform not in PLATFORMS:
            raise PackagingError(
                "bad-platform",
                f"unknown platform {platform!r}",
                hint="use one of: " + ", ".join(PLATFORMS),
            )
        extras = values.get("extras") or {}
        if not isinstance(extras, Mapping):
            raise PackagingError(
                "bad-setting",
                "plugins.extras must be a mapping of plugin id to its declaration",
                hint="see the README's settings section",
            )
        # `gain-native: {enabled: false}` in invoke.yaml turns a default extra off (invoke's
        # config merge cannot replace a mapping with null).
        extras = {
            k: {key: value for key, value in v.items() if key != "enabled"}
            if isinstance(v, Mapping)
            else v
            for k, v in extras.items()
            if v is not None and not (isinstance(v, Mapping) and v.get("enabled") is False)
        }
        jobs = _positive_int(4 if values.get("jobs") is None else values["jobs"], "plugins.jobs")
        profile = values.get("profile") or "release"
        if profile not in PROFILES:
            raise PackagingError(
                "bad-setting",
                f"plugins.profile must be one of {', '.join(PROFILES)}, not {profile!r}",
                hint=did_you_mean(str(profile), PROFILES) or None,
            )
        rules = values.get("rules") or {}
        if not isinstance(rules, Mapping):
            raise PackagingError(
                "bad-setting", "plugins.rules must map rule codes to a severity or 'ignore'"
            )
        template = values.get("template")
        build_commands = _build_commands(values.get("build_commands"))
        cargo_args = _argument_list(values.get("cargo_args"), "plugins.cargo_args")
        build_env = _build_env(values.get("build_env"))
        limits = {
            key: _positive_int(
                default if values.get(key) is None else values[key], f"plugins.{key}"
            )
            for key, default in _BUNDLE_LIMITS.items()
        }
        return cls(
            root=root,
            plugins_dir=plugins_path.absolute(),
            platform=platform,
            source_patterns=_source_patterns(values.get("source_patterns")),
            extras=extras,
            template=(root / Path(str(template))) if template else None,
            jobs=jobs,
            allowed_source_dirs=_allowed_dirs(root, values.get("allowed_source_dirs")),
            check=_boolean(values.get("check"), "check", default=True),
            require_all=_boolean(values.get("require_all"), "require_all", default=False),
            prune=_boolean(values.get("prune"), "prune", default=False),
            profile=profile,
            rules=dict(rules),
            build_commands=build_commands,
            cargo_args=cargo_args,
            build_env=build_env,
            dist_dir=root / Path(str(values.get("dist_dir") or "dist")),
            bundle_url_template=str(
                values.get("bundle_url_template") or DEFAULTS["bundle_url_template"]
            ),
            registry_base_url=str(values.get("registry_base_url") or DEFAULTS["registry_base_url"]),
            existing_registry=_optional_path(root, values.get("existing_registry")),
            signing_key=_optional_path(root, values.get("signing_key")),
            public_key=_optional_path(root, values.get("public_key")),
            signing_password_env=str(
                values.get("signing_password_env") or DEFAULTS["signing_password_env"]
            ),
            accelerators=_argument_list(values.get("accelerators"), "plugins.accelerators"),
            allow_missing=bool(values.get("allow_missing", False)),
            variants_only=bool(values.get("variants_only", False)),
            published_at=str(values["published_at"]) if values.get("published_at") else None,
            **limits,
            vendor=_vendor_settings(root, values.get("vendor", DEFAULTS["vendor"])),
        )


def _source_patterns(value: Any) -> tuple[str, ...]:
    """`plugins.source_patterns`: glob patterns relative to the root, never reaching out of it."""
    if not value:
        return ()
    patterns = (value,) if isinstance(value, str) else value
    if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
        raise PackagingError(
            "bad-setting",
            f"plugins.source_patterns must be a list of glob patterns, not {value!r}",
            hint='e.g. source_patterns: ["plugins/native/*/plugin.yml"]',
        )
    for pattern in patterns:
        parts = pattern.replace("\\", "/").split("/")
        if (
            not pattern
            or pattern.startswith(("/", "\\", "~"))
            or ":" in parts[0]
            or ".." in parts
            or "\0" in pattern
        ):
            raise PackagingError(
                "bad-setting",
                f"plugins.source_patterns entry {pattern!r} must be a pattern relative to the root, "
                "without '..'",
                hint='e.g. "plugins/native/*/plugin.yml"; sources outside the checkout are not looked at',
            )
    return tuple(patterns)


def _allowed_dirs(root: Path, value: Any) -> tuple[Path, ...]:
    """`plugins.allowed_source_dirs`: a list of directories (relative to the root), resolved."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(item, str) and item and "\x00" not in item for item in value
    ):
        raise PackagingError(
            "bad-setting",
            "plugins.allowed_source_dirs must be a list of directory paths",
            hint="e.g. allowed_source_dirs: [/opt/streamkit-plugins/build]",
        )
    return tuple(Path(os.path.realpath(root / Path(item).expanduser())) for item in value)


def _optional_path(root: Path, value: Any) -> Path | None:
    """A path setting, relative to the root; None when unset or empty."""
    return root / Path(str(value)).expanduser() if value else None


#: How people write yes and no, in invoke.yaml (where YAML already made most of them booleans)
#: and in the environment: any case.
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


def _boolean(value: Any, key: str, *, default: bool) -> bool:
    """A yes/no setting: a YAML boolean, or a word from `_TRUE_WORDS`/`_FALSE_WORDS`."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    variable = environment_variable(key)
    where = variable if os.environ.get(variable) == value else f"plugins.{key}"
    raise PackagingError(
        "bad-setting",
        f"{where} must be true or false, not {value!r}",
        hint=f"write one of: {', '.join(_TRUE_WORDS)} / {', '.join(_FALSE_WORDS)}",
    )


def environment_variable(key: str) -> str:
    """The environment variable invoke reads for a setting: `prune` -> INVOKE_PLUGINS_PRUNE."""
    return f"INVOKE_{CONFIG_NAMESPACE}_{key}".upper()


#: Settings whose value is a mapping: their environment variables name a key inside
#: (INVOKE_PLUGINS_EXTRAS_GAIN-NATIVE_ENABLED).
_MAPPING_SETTINGS = tuple(key for key, value in DEFAULTS.items() if isinstance(value, dict))


def unknown_settings(config: Mapping[str, Any], path: Path | None = None) -> None:
    """Refuse a key of the `plugins` section that is no setting, with the nearest one."""
    for key in config:
        if key not in DEFAULTS:
            raise PackagingError(
                "unknown-setting",
                f"unknown setting plugins.{key}",
                path,
                hint=did_you_mean(str(key), DEFAULTS, prefix="")
                or "the README's settings section lists them",
            )


def unknown_environment_settings(environ: Mapping[str, str]) -> None:
    """Refuse an INVOKE_PLUGINS_* variable that names no setting (invoke ignores it silently)."""
    prefix = environment_variable("")
    known = [environment_variable(key) for key in DEFAULTS]
    for name in sorted(environ):
        if not name.startswith(prefix) or name in known:
            continue
        if any(name.startswith(environment_variable(key) + "_") for key in _MAPPING_SETTINGS):
            continue
        raise PackagingError(
            "unknown-setting",
            f"the environment variable {name} names no setting",
            hint=did_you_mean(name, known, prefix="") or "the README's settings section lists them",
        )


def _positive_int(value: Any, key: str) -> int:
    # Environment variables arrive as strings (invoke casts them to the default's type).
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1:
        raise PackagingError("bad-setting", f"{key} must be a positive integer, not {value!r}")
    return number


def _argument_list(value: Any, key: str) -> tuple[str, ...]:
    """A list of command-line arguments from a YAML list or one shell-quoted string."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        import shlex

        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise PackagingError(
                "bad-setting", f"{key} cannot be split into arguments: {exc}"
            ) from None
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise PackagingError(
        "bad-setting",
        f"{key} must be a list of strings or one string, not {value!r}",
        hint='e.g. cargo_args: ["--offline"]',
    )


def _build_commands(value: Any) -> dict[str, str | tuple[str, ...]]:
    """`plugins.build_commands`: id -> a shell command string, or an argument list."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise PackagingError(
            "bad-setting",
            "plugins.build_commands must map plugin ids to build commands",
            hint='e.g. build_commands: {volume-c: "make -C plugins/native/volume-c"}',
        )
    commands: dict[str, str | tuple[str, ...]] = {}
    for plugin_id, command in value.items():
        if command is None:
            continue  # `id: null` in invoke.yaml removes a command set elsewhere
        if isinstance(command, str) and command.strip():
            commands[str(plugin_id)] = command
        elif (
            isinstance(command, (list, tuple))
            and command
            and all(isinstance(a, str) for a in command)
        ):
            commands[str(plugin_id)] = tuple(command)
        else:
            raise PackagingError(
                "bad-setting",
                f"plugins.build_commands.{plugin_id} must be a command string or a non-empty list of "
                f"arguments, not {command!r}",
            )
    return commands


def _build_env(value: Any) -> dict[str, dict[str, str | None]]:
    """`plugins.build_env`: plugin id -> {VARIABLE: value}; a value of null unsets the variable."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise PackagingError(
            "bad-setting",
            "plugins.build_env must map plugin ids to environment variables",
            hint='e.g. build_env: {whisper: {CFLAGS: "-O3 -march=x86-64"}}',
        )
    out: dict[str, dict[str, str | None]] = {}
    for plugin_id, variables in value.items():
        if variables is None:
            continue  # nothing to set for that plugin
        if not isinstance(variables, Mapping) or not all(
            isinstance(name, str) and name and "=" not in name and "\0" not in name
            for name in variables
        ):
            raise PackagingError(
                "bad-setting",
                f"plugins.build_env.{plugin_id} must map variable names to values, not {variables!r}",
                hint='e.g. {SOURCE_DATE_EPOCH: "1"}',
            )
        out[str(plugin_id)] = {
            name: None if item is None else str(item) for name, item in variables.items()
        }
    return out


_VENDOR_KEYS = ("enabled", "search_dirs", "exclude")


def _vendor_settings(root: Path, value: Any) -> VendorSettings:
    """`plugins.vendor`: a mapping, or `false` to turn vendoring off for every plugin."""
    if value is False or value is None:
        return VendorSettings(enabled=value is None)
    if not isinstance(value, Mapping):
        raise PackagingError(
            "bad-setting",
            f"plugins.vendor must be a mapping or false, not {value!r}",
            hint="e.g. vendor: {search_dirs: [/opt/sherpa/lib], exclude: [libcuda.so.*]}",
        )
    defaults = _vendor_section(root, value, "plugins.vendor", VendorSettings(), ("per_plugin",))
    per_plugin = value.get("per_plugin") or {}
    if not isinstance(per_plugin, Mapping):
        raise PackagingError(
            "bad-setting",
            "plugins.vendor.per_plugin must map plugin ids to vendor settings",
            hint="e.g. per_plugin: {whisper: {enabled: false}}",
        )
    plugins = {}
    for plugin_id, own in per_plugin.items():
        key = f"plugins.vendor.per_plugin.{plugin_id}"
        if own is False:
            own = {"enabled": False}
        if not isinstance(own, Mapping):
            raise PackagingError("bad-setting", f"{key} must be a mapping or false, not {own!r}")
        plugins[str(plugin_id)] = _vendor_section(root, own, key, defaults, ())
    return VendorSettings(defaults.enabled, defaults.search_dirs, defaults.exclude, plugins)


def _vendor_section(
    root: Path, value: Mapping[str, Any], key: str, base: VendorSettings, more: tuple[str, ...]
) -> VendorSettings:
    """One level of vendor settings: its own directories and patterns come before `base`'s."""
    unknown = sorted(str(k) for k in value if k not in (*_VENDOR_KEYS, *more))
    if unknown:
        raise PackagingError(
            "bad-setting",
            f"{key} has unknown key(s) {', '.join(unknown)}",
            hint="known keys: " + ", ".join((*_VENDOR_KEYS, *more)),
        )
    enabled = value.get("enabled")
    if enabled is None:
        enabled = base.enabled
    elif isinstance(enabled, str) and enabled.lower() in ("true", "false", "1", "0", "yes", "no"):
        enabled = enabled.lower() in ("true", "1", "yes")  # from INVOKE_PLUGINS_VENDOR_ENABLED
    elif not isinstance(enabled, bool):
        raise PackagingError("bad-setting", f"{key}.enabled must be true or false, not {enabled!r}")
    directories = _path_list(value.get("search_dirs"), f"{key}.search_dirs")
    exclude = _path_list(value.get("exclude"), f"{key}.exclude")
    return VendorSettings(
        enabled=enabled,
        search_dirs=tuple(root / Path(d).expanduser() for d in directories) + base.search_dirs,
        exclude=exclude + base.exclude,
    )


def _path_list(value: Any, key: str) -> tuple[str, ...]:
    """A list of strings, or one string of entries separated by `:` (as in an environment)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(part for part in value.split(":") if part)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise PackagingError(
        "bad-setting",
        f"{key} must be a list of strings, not {value!r}",
        hint='e.g. ["/opt/sherpa-onnx/lib"]',
    )
