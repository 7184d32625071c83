"""Compile the real native libraries the test suite runs against.

Plain functions, no pytest: `conftest.py` calls them once per session, and they can be run by
hand to look at a fixture. Sources live in `tests/native_src/` (one C plugin driven by -D
macros, a dependency library, one Rust plugin driven by --cfg) and in `examples/streamkit/`
(a StreamKit-shaped tree built with the same commands StreamKit's recipes use).

A missing compiler or a failed build raises `FixtureBuildError` with the command and its
stderr: compiled fixtures must never be skipped quietly, or the tests that need them would
prove nothing.

Assumes an x86_64 Linux host with gcc/g++, binutils, rustc and cargo (the foreign-architecture
fixture is built with `cc -m32`, which needs no 32-bit C library because it links nothing).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

TESTS_DIR = Path(__file__).resolve().parent
NATIVE_SRC = TESTS_DIR / "native_src"
PLUGIN_C_SOURCE = NATIVE_SRC / "plugin.c"
DEPENDENCY_C_SOURCE = NATIVE_SRC / "dependency.c"
RUST_PLUGIN_SOURCE = NATIVE_SRC / "rust_plugin.rs"
SAMPLE_TREE_SOURCE = TESTS_DIR.parent / "examples" / "streamkit"

ENTRY_SYMBOL = "streamkit_native_plugin_api"

# Node kinds compiled into the fixture libraries.
GOOD_C_KIND = "fixture_good"
OTHER_C_KIND = "fixture_other"
RUST_KIND = "fixture_rust"
COLON_KIND = "bad::kind"
PREFIXED_KIND = "plugin::native::fixture_prefixed"
INVALID_UTF8_KIND = b"fixture_\xff\xfe"

# What the constructor variants do.
CTOR_MARKER_NAME = "streamkit-fixture-ctor-ran"
CTOR_FORK_CHILD_SECONDS = 30
CTOR_HANG_MESSAGE = "streamkit fixture: constructor hanging"
CHILD_PID_FILE_VARIABLE = "FIXTURE_CHILD_PID_FILE"

# Dependencies of the linking variants; the "missing" one is deleted after linking.
MISSING_DEPENDENCY_NAME = "libstreamkit_fixture_missing.so"
VENDORED_DEPENDENCY_NAME = "libstreamkit_fixture_vendored.so"

# Generous: a compile that takes this long is stuck, not slow.
BUILD_TIMEOUT_SECONDS = 600

#: Names of the fixtures that run a compiler (cc, clang, rustc or cargo). conftest.py marks every
#: test that uses one, directly or through another fixture, `compiled`; `pytest -m "not compiled"`
#: is the fast lane that runs without any compiler installed.
COMPILED_FIXTURES: set[str] = set()

_Builder = TypeVar("_Builder", bound=Callable[..., object])


def compiled_fixture(function: _Builder) -> _Builder:
    """Record a fixture (put it under `@pytest.fixture`) as one that compiles code."""
    COMPILED_FIXTURES.add(function.__name__)
    return function


# Variables that would move cargo's output away from where StreamKit's recipes expect it.
_CARGO_OUTPUT_VARIABLES = ("CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR", "CARGO_BUILD_TARGET")


class FixtureBuildError(RuntimeError):
    """A fixture could not be built; carries the command and what the tool printed."""

    def __init__(self, message: str, command: Sequence[str] = (), output: str = "") -> None:
        text = message
        if command:
            text += "\n  command: " + " ".join(str(part) for part in command)
        if output.strip():
            text += "\n" + output.rstrip()
        super().__init__(text)
        self.command = tuple(str(part) for part in command)
        self.output = output


class ChildLoadError(RuntimeError):
    """Loading a fixture library in a child process failed; carries the child's stderr."""


@dataclass(frozen=True)
class SamplePlugin:
    """A plugin of the sample tree, as StreamKit's layout describes it."""

    plugin_id: str
    node_kind: str
    version: str
    artifact: str  # build output, relative to the tree root
    has_manifest: bool  # whether a source plugin.yml exists


SAMPLE_PLUGINS: tuple[SamplePlugin, ...] = (
    SamplePlugin("tone-generator", "tone", "0.2.0", "target/plugins/release/libtone_gen.so", True),
    SamplePlugin(
        "volume-c", "volume_c", "1.0.0", "plugins/native/volume-c/build/libvolume_c.so", True
    ),
    SamplePlugin(
        "gain-native",
        "gain",
        "0.1.0",
        "examples/plugins/gain-native/target/release/libgain_plugin_native.so",
        False,
    ),
)


@dataclass(frozen=True)
class NativeLibraries:
    """Paths of the compiled fixture libraries, one directory per variant.

    Each library sits alone in its own directory (`<variant>/lib<variant>.so`), except
    `vendored_dep`, whose dependency sits next to it as a bundle would hold it.
    """

    good_c: Path  # kind GOOD_C_KIND, API version 9
    good_c_other: Path  # kind OTHER_C_KIND
    good_rust: Path  # Rust cdylib, kind RUST_KIND
    api_v5: Path  # below the host's range 6..=9
    api_v10: Path  # above it
    null_entry: Path  # entry function returns NULL
    kind_with_colons: Path  # COLON_KIND
    kind_prefixed: Path  # PREFIXED_KIND: already namespaced, allowed
    kind_invalid_utf8: Path  # INVALID_UTF8_KIND
    no_symbol: Path  # no entry symbol anywhere
    hidden_symbol: Path  # defined with hidden visibility: LOCAL in .symtab, absent from .dynsym
    weak_symbol: Path  # exported WEAK: still loadable
    entry_is_object: Path  # the entry name is a data OBJECT, not a FUNC
    undefined_symbol: Path  # referenced, not defined: UND in .dynsym
    mangled_cpp: Path  # built as C++ without extern "C": _Z27streamkit_native_plugin_apiv
    rust_no_mangle: Path  # cdylib without #[no_mangle]: not exported at all (LOCAL in .symtab)
    mangled_rust_dylib: Path  # Rust `dylib` without #[no_mangle]: exported, mangled only
    ctor_abort: Path
    ctor_hang: Path
    ctor_fork: Path  # child sleeps CTOR_FORK_CHILD_SECONDS; pid to $FIXTURE_CHILD_PID_FILE
    ctor_write_file: Path  # writes CTOR_MARKER_NAME into the working directory
    execstack: Path  # PT_GNU_STACK with PF_X
    rpath_usr_local: Path  # DT_RPATH /usr/local/lib
    runpath_usr_local: Path  # DT_RUNPATH /usr/local/lib
    vendored_dep: Path  # DT_NEEDED VENDORED_DEPENDENCY_NAME, DT_RUNPATH $ORIGIN, dep beside it
    missing_dep: Path  # DT_NEEDED MISSING_DEPENDENCY_NAME, which exists nowhere
    foreign_arch: Path  # ELF32, EM_386
    static_archive: Path  # an ar archive named .so
    executable: Path  # ET_EXEC named .so
    pie_executable: Path  # ET_DYN with DF_1_PIE, named .so

    def as_dict(self) -> dict[str, Path]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def c_string_literal(text: str | bytes) -> str:
    """Spell `text` as a C string literal for a -D value, e.g. `"foo"` -> `"\\"foo\\""`.

    Anything but plain printable ASCII becomes an octal escape, so bytes that are not valid
    UTF-8 survive the trip through argv and the compiler unchanged.
    """
    raw = text.encode() if isinstance(text, str) else text
    body = "".join(
        chr(byte) if 0x20 <= byte < 0x7F and byte not in b'"\\?' else f"\\{byte:03o}"
        for byte in raw
    )
    return f'"{body}"'


def build_c_library(
    out_dir: Path,
    name: str,
    *,
    source: Path = PLUGIN_C_SOURCE,
    defines: Mapping[str, str | None] | None = None,
    flags: Sequence[str] = (),
    link_inputs: Sequence[str | Path] = (),
    cxx: bool = False,
) -> Path:
    """Compile `source` into the shared library `out_dir/name` (`name` is the file name).

    `defines` become -D options (`None` for a bare -DNAME); `flags` go to the compiler driver
    before the source, `link_inputs` (libraries to link) after it. With `cxx` the source is
    compiled as C++ by g++, so functions get C++ linkage and mangled names.
    """
    compiler = _require_tool("g++" if cxx else "cc")
    language = ["-x", "c++"] if cxx else []
    return _compile(
        [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", *_define_options(defines)],
        out_dir / name,
        [*flags],
        [*language, str(source), *(str(item) for item in link_inputs)],
    )


def build_c_executable(
    out_dir: Path,
    name: str,
    *,
    pie: bool,
    source: Path = PLUGIN_C_SOURCE,
    defines: Mapping[str, str | None] | None = None,
) -> Path:
    """Compile `source` (with PLUGIN_WITH_MAIN) into an executable at `out_dir/name`.

    `pie=False` gives an ET_EXEC file, `pie=True` an ET_DYN one marked DF_1_PIE: the latter
    looks like a shared object by its ELF type alone.
    """
    compiler = _require_tool("cc")
    all_defines = {"PLUGIN_WITH_MAIN": None, **(defines or {})}
    position = ["-fPIE", "-pie"] if pie else ["-fno-PIE", "-no-pie"]
    return _compile(
        [compiler, "-O2", "-Wall", "-Wextra", *_define_options(all_defines)],
        out_dir / name,
        position,
        [str(source)],
    )


def build_static_archive(
    out_dir: Path,
    name: str,
    *,
    source: Path = PLUGIN_C_SOURCE,
    defines: Mapping[str, str | None] | None = None,
) -> Path:
    """Compile `source` to an object file and archive it with `ar` as `out_dir/name`."""
    compiler = _require_tool("cc")
    archiver = _require_tool("ar")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    obj = out_dir / (name + ".o")
    _run([compiler, "-c", "-fPIC", "-O2", *_define_options(defines), "-o", str(obj), str(source)])
    target.unlink(missing_ok=True)
    _run([archiver, "rcs", str(target), str(obj)])
    obj.unlink()
    return target


def build_rust_cdylib(
    out_dir: Path,
    name: str,
    *,
    source: Path = RUST_PLUGIN_SOURCE,
    kind: str = RUST_KIND,
    cfgs: Sequence[str] = (),
    crate_type: str = "cdylib",
) -> Path:
    """Compile the single-file Rust crate `source` with rustc into `out_dir/name`.

    The node kind reaches the source as the compile-time variable FIXTURE_PLUGIN_KIND; `cfgs`
    become --cfg options. `crate_type="dylib"` builds a Rust dylib instead, which exports
    every reachable public function under its mangled name.
    """
    rustc = _require_tool("rustc")
    target = out_dir / name
    out_dir.mkdir(parents=True, exist_ok=True)
    crate_name = target.stem.removeprefix("lib").replace("-", "_")
    command = [rustc, "--edition", "2021", "--crate-type", crate_type, "--crate-name", crate_name]
    for cfg in cfgs:
        command += ["--cfg", cfg]
    # The same code generation as cargo's release profile (which strips debug info).
    command += ["-C", "opt-level=2", "-C", "strip=debuginfo", "-o", str(target), str(source)]
    _run(command, env={**os.environ, "FIXTURE_PLUGIN_KIND": kind}, cwd=out_dir)
    return target


def build_native_libraries(out_dir: Path, *, jobs: int | None = None) -> NativeLibraries:
    """Build every fixture library into `out_dir`, in parallel, and return their paths.

    All failures are collected and raised together in one `FixtureBuildError`.
    """
    if platform.machine() not in ("x86_64", "AMD64"):
        raise FixtureBuildError(
            f"the fixtures assume an x86_64 host (foreign_arch is built as i386); "
            f"this one is {platform.machine()}"
        )
    recipes = _native_recipes()
    if recipes.keys() != {field.name for field in fields(NativeLibraries)}:
        raise RuntimeError("fixturelib bug: the recipes and NativeLibraries fields differ")
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = jobs or os.cpu_count() or 2
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            variant: pool.submit(recipe, out_dir / variant, f"lib{variant}.so")
            for variant, recipe in recipes.items()
        }
    built: dict[str, Path] = {}
    failures: list[str] = []
    for variant, future in futures.items():
        error = future.exception()
        if error is None:
            built[variant] = future.result()
        else:
            failures.append(f"[{variant}] {error}")
    if failures:
        raise FixtureBuildError(
            f"{len(failures)} fixture libraries failed to build:\n" + "\n\n".join(failures)
        )
    return NativeLibraries(**built)


def build_sample_tree(dest: Path, *, source: Path = SAMPLE_TREE_SOURCE) -> Path:
    """Copy the sample StreamKit tree to `dest` and build it with StreamKit's commands.

    Official crates under plugins/native/ build one after another into the shared
    `target/plugins` (they would queue on cargo's lock anyway); each example crate under
    examples/plugins/ builds into its own `target/`; every Makefile runs with `make -C`.
    Those three groups run in parallel. Returns `dest`.
    """
    cargo = _require_tool("cargo")
    make = _require_tool("make")
    _require_tool("cc")
    shutil.copytree(source, dest, symlinks=True, ignore=_ignore_build_outputs, dirs_exist_ok=True)

    env = {key: value for key, value in os.environ.items() if key not in _CARGO_OUTPUT_VARIABLES}
    env["CARGO_TERM_COLOR"] = "never"
    shared_target = dest / "target" / "plugins"
    official = sorted(dest.glob("plugins/native/*/Cargo.toml"))
    examples = sorted(dest.glob("examples/plugins/*/Cargo.toml"))
    makefiles = sorted(
        [*dest.glob("plugins/native/*/Makefile"), *dest.glob("examples/plugins/*/Makefile")]
    )

    def cargo_build(manifest: Path, target_dir: Path) -> None:
        _run(
            [cargo, "build", "--release", "--offline", "--manifest-path", str(manifest)],
            env={**env, "CARGO_TARGET_DIR": str(target_dir)},
            cwd=manifest.parent,
        )

    def build_official() -> None:
        for manifest in official:
            cargo_build(manifest, shared_target)

    jobs: list[Callable[[], None]] = [build_official]
    jobs += [lambda m=manifest: cargo_build(m, m.parent / "target") for manifest in examples]
    jobs += [
        lambda m=makefile: _run([make, "-C", str(m.parent)], cwd=dest) for makefile in makefiles
    ]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
    failures = [str(future.exception()) for future in futures if future.exception() is not None]
    if failures:
        raise FixtureBuildError("the sample tree failed to build:\n" + "\n\n".join(failures))

    # The layout is what other tests rely on: fail here, not in a confusing test later.
    absent = [
        plugin.artifact for plugin in SAMPLE_PLUGINS if not (dest / plugin.artifact).is_file()
    ]
    if absent:
        raise FixtureBuildError(f"the sample tree built, but these artifacts are missing: {absent}")
    return dest


def copy_built_tree(source: Path, dest: Path) -> Path:
    """Copy a built tree, keeping symlinks and file and directory mtimes, and return `dest`.

    Incremental-install logic compares mtimes, so a copy must not look freshly built.
    """
    # copytree copies files with copy2 (mtime kept) and calls copystat on each directory after
    # filling it, so directory mtimes survive as well.
    shutil.copytree(source, dest, symlinks=True)
    return dest


@dataclass(frozen=True)
class EntryReport:
    """What a library's entry point reported when loaded in a child process."""

    api_is_null: bool
    version: int | None
    kind: bytes | None
    description: str | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    param_schema: str | None
    categories: tuple[str, ...]


# Runs in a child Python: loading a plugin runs its code, which must never happen in the
# pytest process. The struct layouts are the ABI's (native-loader spec, section 5).
_ENTRY_REPORT_SCRIPT = r"""
import ctypes, json, sys

class CPin(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("packet_type", ctypes.c_char_p)]

class CNodeMetadata(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_char_p), ("description", ctypes.c_char_p),
        ("inputs", ctypes.POINTER(CPin)), ("inputs_count", ctypes.c_size_t),
        ("outputs", ctypes.POINTER(CPin)), ("outputs_count", ctypes.c_size_t),
        ("param_schema", ctypes.c_char_p),
        ("categories", ctypes.POINTER(ctypes.c_char_p)), ("categories_count", ctypes.c_size_t),
    ]

class ApiHead(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32),
                ("get_metadata", ctypes.CFUNCTYPE(ctypes.POINTER(CNodeMetadata)))]

library = ctypes.CDLL(sys.argv[1])
entry = library.streamkit_native_plugin_api
entry.restype = ctypes.POINTER(ApiHead)
entry.argtypes = []
api = entry()
if not api:
    print(json.dumps({"api_is_null": True}))
    sys.exit(0)
meta = api.contents.get_metadata().contents
text = lambda raw: None if raw is None else raw.decode("utf-8", "replace")
print(json.dumps({
    "api_is_null": False,
    "version": api.contents.version,
    "kind_hex": None if meta.kind is None else meta.kind.hex(),
    "description": text(meta.description),
    "inputs": [text(meta.inputs[i].name) for i in range(meta.inputs_count)],
    "outputs": [text(meta.outputs[i].name) for i in range(meta.outputs_count)],
    "param_schema": text(meta.param_schema),
    "categories": [text(meta.categories[i]) for i in range(meta.categories_count)],
}))
"""


def report_entry_in_child(library: Path, *, timeout: float = 60.0) -> EntryReport:
    """Load `library` in a child Python with ctypes and return what its entry point reports.

    The child reads the metadata whatever the version field says: every fixture shares one
    layout. Raises `ChildLoadError` with the child's stderr when the load fails.
    """
    import json

    result = subprocess.run(
        [sys.executable, "-c", _ENTRY_REPORT_SCRIPT, str(library)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise ChildLoadError(
            f"loading {library} in a child process failed (exit {result.returncode}):\n"
            + result.stderr.rstrip()
        )
    data = json.loads(result.stdout)
    if data["api_is_null"]:
        return EntryReport(True, None, None, None, (), (), None, ())
    return EntryReport(
        api_is_null=False,
        version=data["version"],
        kind=None if data["kind_hex"] is None else bytes.fromhex(data["kind_hex"]),
        description=data["description"],
        inputs=tuple(data["inputs"]),
        outputs=tuple(data["outputs"]),
        param_schema=data["param_schema"],
        categories=tuple(data["categories"]),
    )


def load_only_command(library: Path) -> list[str]:
    """A command that dlopens `library` in a fresh Python and prints `loaded` if that returns."""
    script = "import ctypes, sys; ctypes.CDLL(sys.argv[1]); print('loaded')"
    return [sys.executable, "-c", script, str(library)]


def _native_recipes() -> dict[str, Callable[[Path, str], Path]]:
    """How each variant of NativeLibraries is built: `recipe(variant_dir, file_name)`."""

    def plugin(
        kind: str | bytes = GOOD_C_KIND, **defines: str | None
    ) -> Callable[[Path, str], Path]:
        all_defines = {"PLUGIN_KIND": c_string_literal(kind), **defines}
        return lambda out_dir, name: build_c_library(out_dir, name, defines=all_defines)

    def linked(*linker_options: str) -> Callable[[Path, str], Path]:
        defines = {"PLUGIN_KIND": c_string_literal(GOOD_C_KIND)}
        flags = [f"-Wl,{option}" for option in linker_options]
        return lambda out_dir, name: build_c_library(out_dir, name, defines=defines, flags=flags)

    def rust(*cfgs: str, crate_type: str = "cdylib") -> Callable[[Path, str], Path]:
        return lambda out_dir, name: build_rust_cdylib(
            out_dir, name, cfgs=cfgs, crate_type=crate_type
        )

    return {
        "good_c": plugin(),
        "good_c_other": plugin(OTHER_C_KIND),
        "good_rust": rust(),
        "api_v5": plugin(PLUGIN_API_VERSION="5"),
        "api_v10": plugin(PLUGIN_API_VERSION="10"),
        "null_entry": plugin(PLUGIN_ENTRY_RETURNS_NULL=None),
        "kind_with_colons": plugin(COLON_KIND),
        "kind_prefixed": plugin(PREFIXED_KIND),
        "kind_invalid_utf8": plugin(INVALID_UTF8_KIND),
        "no_symbol": plugin(PLUGIN_NO_ENTRY=None),
        "hidden_symbol": plugin(PLUGIN_ENTRY_HIDDEN=None),
        "weak_symbol": plugin(PLUGIN_ENTRY_WEAK=None),
        "entry_is_object": plugin(PLUGIN_ENTRY_AS_OBJECT=None),
        "undefined_symbol": plugin(PLUGIN_ENTRY_UNDEFINED=None),
        "mangled_cpp": lambda out_dir, name: build_c_library(
            out_dir, name, defines={"PLUGIN_KIND": c_string_literal(GOOD_C_KIND)}, cxx=True
        ),
        "rust_no_mangle": rust("fixture_entry_mangled"),
        "mangled_rust_dylib": rust("fixture_entry_mangled", crate_type="dylib"),
        "ctor_abort": plugin(CTOR_ABORT=None),
        "ctor_hang": plugin(CTOR_HANG=None),
        "ctor_fork": plugin(CTOR_FORK=None, CTOR_FORK_CHILD_SECONDS=str(CTOR_FORK_CHILD_SECONDS)),
        "ctor_write_file": plugin(
            CTOR_WRITE_FILE=None, CTOR_MARKER_NAME=c_string_literal(CTOR_MARKER_NAME)
        ),
        "execstack": linked("-z,execstack"),
        "rpath_usr_local": linked("-rpath,/usr/local/lib", "--disable-new-dtags"),
        "runpath_usr_local": linked("-rpath,/usr/local/lib", "--enable-new-dtags"),
        "vendored_dep": _build_vendored_dep,
        "missing_dep": _build_missing_dep,
        "foreign_arch": lambda out_dir, name: build_c_library(
            out_dir,
            name,
            defines={"PLUGIN_KIND": c_string_literal(GOOD_C_KIND), "PLUGIN_FREESTANDING": None},
            # No 32-bit C library is needed: the freestanding build links nothing.
            flags=["-m32", "-ffreestanding", "-nostdlib"],
        ),
        "static_archive": lambda out_dir, name: build_static_archive(
            out_dir, name, defines={"PLUGIN_KIND": c_string_literal(GOOD_C_KIND)}
        ),
        "executable": lambda out_dir, name: build_c_executable(out_dir, name, pie=False),
        "pie_executable": lambda out_dir, name: build_c_executable(out_dir, name, pie=True),
    }


def _build_dependency(out_dir: Path, name: str) -> Path:
    # The soname is what the plugin's DT_NEEDED will record.
    return build_c_library(out_dir, name, source=DEPENDENCY_C_SOURCE, flags=[f"-Wl,-soname,{name}"])


def _build_vendored_dep(out_dir: Path, name: str) -> Path:
    dependency = _build_dependency(out_dir, VENDORED_DEPENDENCY_NAME)
    return build_c_library(
        out_dir,
        name,
        defines={"PLUGIN_KIND": c_string_literal(GOOD_C_KIND), "PLUGIN_USE_DEPENDENCY": None},
        # A literal $ORIGIN (no shell involved): the loader resolves it to the library's directory.
        flags=["-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"],
        link_inputs=[dependency],
    )


def _build_missing_dep(out_dir: Path, name: str) -> Path:
    scratch = out_dir.parent / f"{out_dir.name}.dependency-scratch"
    dependency = _build_dependency(scratch, MISSING_DEPENDENCY_NAME)
    try:
        return build_c_library(
            out_dir,
            name,
            defines={"PLUGIN_KIND": c_string_literal(GOOD_C_KIND), "PLUGIN_USE_DEPENDENCY": None},
            link_inputs=[dependency],
        )
    finally:
        shutil.rmtree(scratch)


def _define_options(defines: Mapping[str, str | None] | None) -> list[str]:
    return [
        f"-D{key}" if value is None else f"-D{key}={value}"
        for key, value in (defines or {}).items()
    ]


def _compile(driver: list[str], target: Path, flags: list[str], inputs: list[str]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    _run([*driver, *flags, "-o", str(target), *inputs])
    return target


def _require_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise FixtureBuildError(
            f"`{name}` is not on PATH; the native fixtures need it (a missing compiler fails the "
            f"suite instead of skipping compiled-fixture tests). In the fast lane "
            f"(-m 'not compiled') it means a test or fixture that builds code is not marked: "
            f"put @compiled_fixture on the fixture, or @pytest.mark.compiled on the test"
        )
    return found


def _run(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> None:
    try:
        result = subprocess.run(
            [str(part) for part in command],
            capture_output=True,
            text=True,
            errors="replace",
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise FixtureBuildError(f"timed out after {BUILD_TIMEOUT_SECONDS}s", command) from error
    if result.returncode != 0:
        raise FixtureBuildError(
            f"exit status {result.returncode}", command, result.stderr + result.stdout
        )


def _ignore_build_outputs(directory: str, names: list[str]) -> list[str]:
    # Outputs of an in-place build of the sample tree must not leak into the copy.
    return [
        name
        for name in names
        if name in ("target", "build", ".plugins") and os.path.isdir(os.path.join(directory, name))
    ]


if __name__ == "__main__":
    # Build everything into a directory to look at by hand:
    #   python tests/fixturelib.py /tmp/fixtures
    destination = Path(sys.argv[1]).resolve()
    libraries = build_native_libraries(destination / "native_libs")
    for variant, path in libraries.as_dict().items():
        print(f"{variant:20} {path}")
    print(f"{'sample tree':20} {build_sample_tree(destination / 'streamkit')}")
