"""The install state is a cache of facts, never of output: what is installed does not depend on it.

Issue 10, finding 3: a parsed source manifest came back from `state.json` with its keys sorted
(the file was written with `sort_keys`), so a touched manifest plus `--only` of another plugin
made `list-plugins-native` call the first plugin stale and the next copy rewrite its `plugin.yml`
with `models` keys in another order. The property test below drives an install through random
sequences of edits, touches, partial installs and damaged, stale or deleted state files, and
holds every installed file byte-identical to a clean install of the same sources.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from cli import run_in_process
from fixturelib import NativeLibraries
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugin_packaging.install.run import install_plugins
from plugin_packaging.settings import Settings

PLUGINS = ("alpha", "beta")
STATE = Path(".plugins/.plugin-packaging/state.json")

#: A valid `source: url` model whose keys come in any order (the order is what the cache lost).
_model = st.permutations(["id", "name", "sha256", "license", "url", "source"]).map(
    lambda order: {
        key: {"id": "weights", "source": "url", "url": "https://example.com/w.bin"}.get(key, "x")
        for key in order
    }
)
_manifest = st.fixed_dictionaries(
    {
        "description": st.text("abc def", min_size=1, max_size=12),
        "models": st.lists(_model, max_size=2),
        "order": st.permutations(["name", "version", "description", "license", "models"]),
    }
)
_step = st.one_of(
    st.tuples(st.just("edit"), st.sampled_from(PLUGINS), _manifest),
    st.tuples(st.just("touch"), st.sampled_from(PLUGINS)),
    st.tuples(st.just("rebuild"), st.sampled_from(PLUGINS)),
    st.tuples(st.just("install"), st.sampled_from([None, *PLUGINS])),
    st.tuples(st.just("state"), st.sampled_from(["delete", "stale", "junk", "scramble"])),
)


def _write_manifest(root: Path, plugin_id: str, spec: dict) -> None:
    data = {
        "id": plugin_id,
        "name": plugin_id.title(),
        "version": "0.1.0",
        "description": spec["description"],
        "license": "MPL-2.0",
        "models": spec["models"],
    }
    ordered = {"id": plugin_id, **{key: data[key] for key in spec["order"]}}
    ordered.update(
        node_kind=f"{plugin_id}_kind",
        kind="native",
        artifact=f"target/plugins/release/lib{plugin_id}.so",
    )
    if not ordered["models"]:
        del ordered["models"]
    path = root / "plugins" / "native" / plugin_id / "plugin.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(ordered, sort_keys=False))


def _installed(root: Path) -> dict[str, bytes]:
    native = root / ".plugins" / "native"
    return {
        str(path.relative_to(native)): path.read_bytes()
        for path in sorted(native.rglob("*"))
        if path.is_file()
    }


def _settings(root: Path) -> Settings:
    return Settings.from_config({"extras": {"gain-native": None}, "check": False}, root=str(root))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.tuples(_manifest, _manifest),
    steps=st.lists(_step, max_size=8),
)
def test_installed_files_are_the_same_with_the_state_present_absent_or_stale(
    native_libs: NativeLibraries, first: tuple[dict, dict], steps: list[tuple]
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "streamkit"
        release = root / "target" / "plugins" / "release"
        release.mkdir(parents=True)
        libraries = {"alpha": native_libs.good_c, "beta": native_libs.good_c_other}
        for plugin_id, spec in zip(PLUGINS, first, strict=True):
            _write_manifest(root, plugin_id, spec)
            shutil.copyfile(libraries[plugin_id], release / f"lib{plugin_id}.so")
        install_plugins(_settings(root))
        stale = (root / STATE).read_bytes()
        for step in steps:
            kind = step[0]
            if kind == "edit":
                _write_manifest(root, step[1], step[2])
            elif kind == "touch":
                path = root / "plugins" / "native" / step[1] / "plugin.yml"
                os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
            elif kind == "rebuild":
                other = native_libs.good_c_other if step[1] == "alpha" else native_libs.good_c
                libraries[step[1]] = other if libraries[step[1]] != other else native_libs.good_c
                shutil.copyfile(libraries[step[1]], release / f"lib{step[1]}.so")
            elif kind == "install":
                install_plugins(_settings(root), only=(step[1],) if step[1] else ())
            elif step[1] == "delete":
                (root / STATE).unlink(missing_ok=True)
            elif step[1] == "stale":
                (root / STATE).write_bytes(stale)
            elif step[1] == "junk":
                (root / STATE).write_bytes(b'{"format": 4, "owners": 7')
            else:
                try:
                    document = json.loads((root / STATE).read_text())
                except (FileNotFoundError, json.JSONDecodeError):
                    continue  # an earlier step deleted the state or wrote junk: nothing to forge
                for entry in document.get("sources", {}).values():
                    entry["data"] = {"id": "forged"}  # right shape, wrong facts: the signature
                    entry["signature"] = [0, 0, 0, 0]  # no longer matches, so never used
                (root / STATE).write_text(json.dumps(document))
        report = install_plugins(_settings(root), adopt="all")
        assert not report.failed, report
        with_history = _installed(root)
        # The reference: the same sources installed with no state and no bundles at all.
        shutil.rmtree(root / ".plugins")
        install_plugins(_settings(root))
        assert with_history == _installed(root)


def test_a_touched_manifest_with_models_stays_up_to_date_after_another_plugins_install(
    tmp_path: Path, native_libs: NativeLibraries
) -> None:
    """The exact sequence of issue 10, finding 3, through the command line."""
    root = tmp_path / "streamkit"
    release = root / "target" / "plugins" / "release"
    release.mkdir(parents=True)
    spec = {
        "description": "d",
        "models": [{"url": "https://x/w.bin", "source": "url", "id": "weights", "sha256": "ab"}],
        "order": ["name", "version", "description", "license", "models"],
    }
    for plugin_id, library in zip(
        PLUGINS, (native_libs.good_c, native_libs.good_c_other), strict=True
    ):
        _write_manifest(root, plugin_id, spec)
        shutil.copyfile(library, release / f"lib{plugin_id}.so")
    assert run_in_process("copy-plugins-native", "--root", str(root))[0] == 0
    installed = _installed(root)
    manifest = root / "plugins" / "native" / "alpha" / "plugin.yml"
    os.utime(manifest, ns=(manifest.stat().st_mtime_ns + 10**9,) * 2)
    code, out = run_in_process("copy-plugins-native", "--root", str(root), "--only", "beta")
    assert code == 0, out
    code, out = run_in_process("list-plugins-native", "--root", str(root))
    assert code == 0, out
    assert "stale" not in out, out
    code, out = run_in_process("copy-plugins-native", "--root", str(root))
    assert code == 0 and out.count("  up to date ") == 2, out
    assert _installed(root) == installed
