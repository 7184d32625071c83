"""The `streamkit_tree` fixture and its helpers, shared by test_install*.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from releaselib import write_source

# StreamKit's own layout: the stem differs from the id for pocket-tts, aac-encoder and servo,
# and gain-native has no plugin.yml at all (it comes from the built-in extras).
STREAMKIT_PLUGINS = {
    "aac-encoder": ("aac_encoder", "aac_encoder", "0.1.0"),
    "pocket-tts": ("pocket-tts", "pocket_tts", "0.3.1"),
    "servo": ("servo", "servo_web", "0.2.0"),
}


@pytest.fixture
def streamkit_tree(tmp_path: Path, native_libs) -> Path:
    """A StreamKit-shaped checkout with aac-encoder, pocket-tts, servo and gain-native built."""
    root = tmp_path / "streamkit"
    release = root / "target" / "plugins" / "release"
    release.mkdir(parents=True)
    for plugin_id, (kind, stem, version) in STREAMKIT_PLUGINS.items():
        write_source(root, plugin_id, kind, stem, version)
        shutil.copyfile(native_libs.good_c, release / f"lib{stem}.so")
    (release / "libaac_encoder.so.d").write_text("cargo dep-info, never copied\n")
    gain = root / "examples" / "plugins" / "gain-native"
    (gain / "target" / "release").mkdir(parents=True)
    (gain / "Cargo.toml").write_text('[package]\nname = "gain-plugin-native"\nversion = "0.1.0"\n')
    shutil.copyfile(
        native_libs.good_c_other, gain / "target" / "release" / "libgain_plugin_native.so"
    )
    common = root / "plugins" / "native" / "common"
    common.mkdir(parents=True)
    (common / "Cargo.toml").write_text('[package]\nname = "common"\nversion = "0.1.0"\n')
    return root


def count_lines(out: str, label: str) -> int:
    """How many plugin lines carry `label` (the summary line does not count)."""
    return sum(1 for line in out.splitlines() if line.startswith(f"  {label} "))


def bundle(root: Path, plugin_id: str) -> Path:
    return root / ".plugins" / "native" / plugin_id
