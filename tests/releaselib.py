"""Helpers shared by the release tests: the real command line, minisign keys, small source trees.

Plain functions, no fixtures: `test_package.py` and `test_verify.py` build what they need from
the session's compiled libraries (`conftest.native_libs`) with these.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import minisign
import pytest
import yaml

from plugin_packaging.cli import program


def run(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    """Run the real command line (in this process); return its exit status and all output."""
    out = io.StringIO()
    previous = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                program.run(["plugin-packaging", *args], exit=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(previous)
    return code, out.getvalue()


def minisign_cli() -> str:
    """The `minisign` program: the independent verifier of our signatures."""
    path = shutil.which("minisign")
    if path is None:
        message = "the minisign CLI is the independent verifier: apt-get install -y minisign"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def cli_key_pair(directory: Path, name: str = "release") -> tuple[Path, Path]:
    """An unencrypted key pair made by the minisign CLI: (secret, public)."""
    directory.mkdir(parents=True, exist_ok=True)
    secret, public = directory / f"{name}.key", directory / f"{name}.pub"
    result = subprocess.run(
        [minisign_cli(), "-G", "-W", "-p", str(public), "-s", str(secret)],
        capture_output=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    return secret, public


def encrypted_key_pair(directory: Path, password: str, name: str = "encrypted") -> tuple[Path, Path]:
    """A password-protected key pair made by py-minisign, with cheap scrypt limits for speed."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = minisign.KeyPair.generate()
    pair.secret_key.encrypt(password, opslimit=32768, memlimit=16 << 20)
    secret, public = directory / f"{name}.key", directory / f"{name}.pub"
    secret.write_bytes(bytes(pair.secret_key) + b"\n")
    public.write_bytes(bytes(pair.public_key) + b"\n")
    return secret, public


def cli_verifies(public_key: Path, manifest: Path) -> subprocess.CompletedProcess[bytes]:
    """`minisign -V` on a registry manifest and the `manifest.minisig` beside it."""
    return subprocess.run(
        [minisign_cli(), "-V", "-p", str(public_key), "-m", str(manifest),
         "-x", str(manifest.with_name("manifest.minisig"))],
        capture_output=True, timeout=60, check=False,
    )


def write_source(root: Path, plugin_id: str, node_kind: str, stem: str, version: str, **extra: Any) -> Path:
    """A StreamKit-style source: plugins/native/<id>/plugin.yml (+ Cargo.toml); returns the manifest."""
    directory = root / "plugins" / "native" / plugin_id
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "id": plugin_id,
        "name": plugin_id.replace("-", " ").title(),
        "version": version,
        "node_kind": node_kind,
        "kind": "native",
        "entrypoint": f"lib{stem}.so",
        "artifact": f"target/plugins/release/lib{stem}.so",
        "description": f"{plugin_id} plugin",
        "license": "MPL-2.0",
        **extra,
    }
    path = directory / "plugin.yml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    (directory / "Cargo.toml").write_text(
        f'[package]\nname = "{plugin_id}"\nversion = "{version}"\n\n[lib]\nname = "{stem}"\ncrate-type = ["cdylib"]\n'
    )
    return path


def edit_source(path: Path, **changes: Any) -> None:
    """Change keys of a source plugin.yml (a value of None removes the key)."""
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def install_library(root: Path, library: Path, stem: str) -> Path:
    """Copy a compiled fixture to where the source's `artifact` says the build puts it."""
    target = root / "target" / "plugins" / "release" / f"lib{stem}.so"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(library, target)
    os.chmod(target, 0o755)
    return target


def no_extras(root: Path) -> None:
    """Turn off the default gain-native extra, which these small trees do not build."""
    (root / "invoke.yaml").write_text("plugins:\n  extras:\n    gain-native:\n      enabled: false\n")


def tar_members(archive: Path) -> dict[str, tarfile.TarInfo]:
    """The members of a .tar.zst, read with the standard library and zstandard."""
    import zstandard

    with open(archive, "rb") as raw:
        data = zstandard.ZstdDecompressor().stream_reader(raw).read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {member.name: member for member in tar.getmembers()}


def tar_file(archive: Path, name: str) -> bytes:
    import zstandard

    with open(archive, "rb") as raw:
        data = zstandard.ZstdDecompressor().stream_reader(raw).read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read()


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file below `directory` (but our lock) with its content."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != "lock"
    }
