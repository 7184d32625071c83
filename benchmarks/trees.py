"""The checkouts the benchmarks run on: StreamKit-shaped trees of real, compiled plugin libraries.

Two trees are built on disk, once per work directory (a stamp records what was built, so a
second benchmark run starts measuring at once):

- `streamkit`: StreamKit's 16 plugins as they sit in a checkout (see
  shared/spec/streamkit-tree.md): 15 official sources under `plugins/native/<id>/` building into
  `target/plugins`, moonshine in its older per-plugin target directory, gain-native as an example
  without a `plugin.yml`, and the `common` support crate. Library sizes run from 0.3 MiB to
  150 MiB, about 300 MiB in all, as a developer with every plugin built has.
- `wide`: 200 small plugins, for the per-plugin fixed costs.

Every library is the project's C fixture plugin (tests/native_src/plugin.c, which exports
`streamkit_native_plugin_api` with its own node kind) linked with a `.rodata` section that
`.incbin`s generated filler up to the wanted size. So each one is a genuine ELF shared object whose
size is mostly read-only data, like the model tables and engines of the real plugins, and the
checker and packager see what they would see in StreamKit.

The filler is seeded per plugin and compresses to about 60% of its size with zstd, so that the
packaging benchmark spends its time compressing, not skipping incompressible blocks.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
PLUGIN_C_SOURCE = REPOSITORY / "tests" / "native_src" / "plugin.c"

MIB = 1024 * 1024
#: Bumped when the trees change shape, so a stale work directory is rebuilt instead of reused.
TREE_FORMAT = 1
STAMP = ".benchmark-tree.json"


@dataclass(frozen=True)
class PluginSpec:
    """One plugin of a benchmark tree: what its source declares and how big its library is."""

    id: str
    node_kind: str
    stem: str
    version: str
    size: int
    #: The cargo target directory the library builds into, relative to the root.
    target_dir: str = "target/plugins"
    #: False for gain-native, which StreamKit declares without a source plugin.yml.
    has_manifest: bool = True
    #: Keys beyond the usual ones, as StreamKit's sources have them (accelerators, assets).
    extra_yaml: str = ""

    @property
    def library(self) -> str:
        return f"lib{self.stem}.so"

    @property
    def artifact(self) -> str:
        return f"{self.target_dir}/release/{self.library}"

    @property
    def crate_dir(self) -> str:
        if not self.has_manifest:
            return "examples/plugins/gain-native"
        return f"plugins/native/{self.id}"


def _mib(value: float) -> int:
    return int(value * MIB)


#: StreamKit's plugin table (streamkit-tree.md) with sizes in the range the real builds have:
#: browser and UI engines and speech models are large, codecs and filters small.
STREAMKIT_PLUGINS: tuple[PluginSpec, ...] = (
    PluginSpec("aac-encoder", "aac_encoder", "aac_encoder", "0.1.0", _mib(1)),
    PluginSpec(
        "gain-native",
        "gain",
        "gain_plugin_native",
        "0.1.0",
        _mib(0.3),
        target_dir="examples/plugins/gain-native/target",
        has_manifest=False,
    ),
    PluginSpec("helsinki", "helsinki", "helsinki", "0.2.0", _mib(8)),
    PluginSpec("kokoro", "kokoro", "kokoro", "0.3.0", _mib(16)),
    PluginSpec("matcha", "matcha", "matcha", "0.1.2", _mib(7)),
    PluginSpec(
        "moonshine",
        "moonshine",
        "moonshine",
        "0.1.0",
        _mib(5),
        target_dir="plugins/native/moonshine/target",
    ),
    PluginSpec("nllb", "nllb", "nllb", "0.2.1", _mib(10)),
    PluginSpec("parakeet", "parakeet", "parakeet", "0.4.0", _mib(12)),
    PluginSpec("piper", "piper", "piper", "0.2.0", _mib(14)),
    PluginSpec("pocket-tts", "pocket-tts", "pocket_tts", "0.3.1", _mib(9)),
    PluginSpec("sensevoice", "sensevoice", "sensevoice", "0.1.0", _mib(10)),
    PluginSpec("servo", "servo", "servo_web", "0.2.0", _mib(150)),
    PluginSpec(
        "slint",
        "slint",
        "slint",
        "0.2.0",
        _mib(30),
        extra_yaml=(
            "assets:\n"
            "  - type_id: slint-ui\n"
            "    label: Slint UI file\n"
            "    extensions: [slint]\n"
            "    content_type: text\n"
        ),
    ),
    PluginSpec("supertonic", "supertonic", "supertonic", "0.1.0", _mib(6)),
    PluginSpec("vad", "vad", "vad", "0.2.0", _mib(3)),
    PluginSpec(
        "whisper",
        "whisper",
        "whisper",
        "0.3.0",
        _mib(24),
        extra_yaml="accelerators: [cpu, cuda]\n",
    ),
)


def wide_plugins(count: int = 200) -> tuple[PluginSpec, ...]:
    """`count` small plugins of 64 KiB to 512 KiB: many bundles, few bytes."""
    return tuple(
        PluginSpec(
            f"wide-{index:03d}",
            f"wide_{index:03d}",
            f"wide_{index:03d}",
            "1.0.0",
            (64 + 64 * (index % 8)) * 1024,
        )
        for index in range(count)
    )


@dataclass(frozen=True)
class Tree:
    """A built benchmark checkout."""

    name: str
    root: Path
    plugins: tuple[PluginSpec, ...]

    @property
    def total_size(self) -> int:
        return sum((self.root / p.artifact).stat().st_size for p in self.plugins)

    def library(self, plugin_id: str) -> Path:
        spec = next(p for p in self.plugins if p.id == plugin_id)
        return self.root / spec.artifact


def build_tree(
    name: str, root: Path, plugins: tuple[PluginSpec, ...], *, rebuild: bool = False
) -> Tree:
    """Build (or reuse) the checkout at `root`; libraries are compiled in parallel."""
    tree = Tree(name, root, plugins)
    wanted = {
        "format": TREE_FORMAT,
        "plugins": [[p.id, p.size] for p in plugins],
        "source": PLUGIN_C_SOURCE.stat().st_mtime_ns,
    }
    stamp = root / STAMP
    if not rebuild and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return tree
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for spec in plugins:
        _write_sources(root, spec)
    common = root / "plugins" / "native" / "common"
    common.mkdir(parents=True, exist_ok=True)
    (common / "Cargo.toml").write_text(
        '[package]\nname = "streamkit-plugin-common"\nversion = "0.1.0"\n'
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-build-") as scratch,
        ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool,
    ):
        list(pool.map(lambda spec: _build_library(root, spec, Path(scratch)), plugins))
    write_recipe(root, plugins)
    stamp.write_text(json.dumps(wanted))
    return tree


def _write_sources(root: Path, spec: PluginSpec) -> None:
    crate = root / spec.crate_dir
    crate.mkdir(parents=True, exist_ok=True)
    (crate / "Cargo.toml").write_text(
        f'[package]\nname = "{spec.id}"\nversion = "{spec.version}"\nedition = "2021"\n'
        f'license = "MPL-2.0"\n\n[lib]\nname = "{spec.stem}"\ncrate-type = ["cdylib"]\n'
    )
    (crate / "src").mkdir(exist_ok=True)
    (crate / "src" / "lib.rs").write_text("// built elsewhere: the benchmark links a C plugin\n")
    if spec.has_manifest:
        (crate / "plugin.yml").write_text(
            f"id: {spec.id}\n"
            f"name: {spec.id.replace('-', ' ').title()}\n"
            f'version: "{spec.version}"\n'
            f"node_kind: {spec.node_kind}\n"
            "kind: native\n"
            f"entrypoint: {spec.library}\n"
            f"artifact: {spec.artifact}\n"
            f"description: {spec.id} plugin for the benchmarks\n"
            "license: MPL-2.0\n"
            "repo: https://github.com/streamer45/streamkit\n" + spec.extra_yaml
        )


def _build_library(root: Path, spec: PluginSpec, scratch: Path) -> None:
    """Compile the fixture plugin with this node kind, linked with filler up to `spec.size`."""
    release = root / spec.target_dir / "release"
    release.mkdir(parents=True, exist_ok=True)
    filler = scratch / f"{spec.stem}.bin"
    # The compiled plugin alone is about 16 KiB; the filler brings the file to its size.
    write_filler(filler, max(0, spec.size - 16 * 1024), seed=spec.id)
    assembly = scratch / f"{spec.stem}.S"
    assembly.write_text(
        '.section .rodata.benchmark_filler,"a"\n'
        ".balign 64\n"
        f'.incbin "{filler}"\n'
        '.section .note.GNU-stack,"",@progbits\n'
    )
    subprocess.run(
        [
            "cc",
            "-shared",
            "-fPIC",
            "-O2",
            f'-DPLUGIN_KIND="{spec.node_kind}"',
            "-o",
            str(release / spec.library),
            str(PLUGIN_C_SOURCE),
            str(assembly),
        ],
        check=True,
    )
    filler.unlink()
    # cargo leaves dep-info beside every library; the recipe's `lib<stem>.so.*` glob must skip it.
    (release / f"lib{spec.stem}.d").write_text(f"{release / spec.library}: src/lib.rs\n")


def write_filler(path: Path, size: int, *, seed: str) -> None:
    """`size` bytes that zstd compresses to about 60%: skewed bytes, some zero runs.

    Written in chunks, so building a 150 MiB library never holds it in memory.
    """
    generator = random.Random(seed)
    # Map uniform random bytes onto 32 symbols, a few of them frequent: entropy near 4.5 bits
    # per byte, like machine code and quantised weights, rather than 8 (incompressible).
    skew = bytes(([0x00] * 64 + [0xFF] * 24 + [0x48] * 16 + list(range(1, 152, 5)) * 5)[:256])
    chunk = 1 << 20
    with open(path, "wb") as handle:
        remaining = size
        while remaining > 0:
            length = min(chunk, remaining)
            data = bytearray(generator.randbytes(length).translate(skew))
            # Alignment padding and zeroed tables: one zero run of a few KiB per chunk.
            start = generator.randrange(0, max(1, length - 8192))
            data[start : start + 4096] = bytes(min(4096, length - start))
            handle.write(data)
            remaining -= length


def write_recipe(root: Path, plugins: tuple[PluginSpec, ...]) -> Path:
    """The `just copy-plugins-native` recipe as the bash script it is, for this tree's plugins.

    The baseline of the copy benchmarks: a `mkdir -p` and one `cp` per file, the loop StreamKit
    runs today. The destination is the first argument (default `.plugins`), so the benchmark can
    keep the recipe's copy apart from the tool's.
    """
    lines = [
        "#!/usr/bin/env bash",
        "# Equivalent of StreamKit's `just copy-plugins-native` (see streamkit-tree.md).",
        "set -euo pipefail",
        'dest="${1:-.plugins}/native"',
        'mkdir -p "$dest"',
        "copy_plugin() {",
        '    local id="$1" stem="$2" target="$3"',
        '    mkdir -p "$dest/$id"',
        '    for file in "$target/release/lib$stem.so" "$target/release/lib$stem.so".*'
        ' "$target/release/lib$stem.dylib" "$target/release/$stem.dll"; do',
        '        if [ -f "$file" ]; then cp "$file" "$dest/$id/"; fi',
        "    done",
        '    if [ -f "plugins/native/$id/plugin.yml" ]; then cp "plugins/native/$id/plugin.yml" "$dest/$id/"; fi',
        "}",
    ]
    for spec in plugins:
        lines.append(f"copy_plugin {spec.id} {spec.stem} {spec.target_dir}")
    script = root / "copy-plugins-native.sh"
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    return script
