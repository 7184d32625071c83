"""Helpers shared by the install and release tests: minisign keys, small source trees, archives.

Plain functions, no fixtures: `test_install.py`, `test_package.py`, `test_verify.py` and
`test_archive.py` build what they need from the session's compiled libraries
(`conftest.native_libs`) with these.
"""

from __future__ import annotations

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
from fixturelib import GOOD_C_KIND, OTHER_C_KIND, NativeLibraries

from plugin_packaging.release.signing import DEFAULT_PASSWORD_ENV, load_secret_key, sign_with


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
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return secret, public


def encrypted_key_pair(
    directory: Path, password: str, name: str = "encrypted"
) -> tuple[Path, Path]:
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
        [
            minisign_cli(),
            "-V",
            "-p",
            str(public_key),
            "-m",
            str(manifest),
            "-x",
            str(manifest.with_name("manifest.minisig")),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )


def write_source(
    root: Path, plugin_id: str, node_kind: str, stem: str, version: str, **extra: Any
) -> Path:
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


def edit_source(path: Path, *, crate_too: bool = True, **changes: Any) -> None:
    """Change keys of a source plugin.yml (a value of None removes the key); a new `version`
    goes into the crate's Cargo.toml as well (as a release requires), unless `crate_too` is False."""
    data = yaml.safe_load(path.read_text())
    old_version = data.get("version")
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    cargo = path.with_name("Cargo.toml")
    if crate_too and "version" in changes and cargo.is_file():
        text = cargo.read_text()
        cargo.write_text(
            text.replace(f'version = "{old_version}"', f'version = "{changes["version"]}"', 1)
        )


def install_library(root: Path, library: Path, stem: str) -> Path:
    """Copy a compiled fixture to where the source's `artifact` says the build puts it."""
    target = root / "target" / "plugins" / "release" / f"lib{stem}.so"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(library, target)
    os.chmod(target, 0o755)
    return target


def no_extras(root: Path) -> None:
    """Turn off the default gain-native extra, which these small trees do not build."""
    (root / "invoke.yaml").write_text(
        "plugins:\n  extras:\n    gain-native:\n      enabled: false\n"
    )


def tar_stream(archive: Path) -> bytes:
    """The uncompressed tar stream inside a `.tar.zst` (small test archives only)."""
    import zstandard

    with open(archive, "rb") as raw:
        return zstandard.ZstdDecompressor().stream_reader(raw).read()


def tar_members(archive: Path) -> dict[str, tarfile.TarInfo]:
    """The members of a .tar.zst, read with the standard library and zstandard."""
    with tarfile.open(fileobj=io.BytesIO(tar_stream(archive)), mode="r:") as tar:
        return {member.name: member for member in tar.getmembers()}


def tar_file(archive: Path, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tar_stream(archive)), mode="r:") as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read()


def zst(data: bytes) -> bytes:
    """`data` as one zstd frame with its checksum, as bundles are compressed."""
    import zstandard

    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)


def file_info(name: str, size: int, **fields: object) -> tarfile.TarInfo:
    """A tar header for a hand-made archive: a 0644 regular file unless `fields` say otherwise."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def hand_made_tar(*members: tuple[tarfile.TarInfo, bytes | None], end: bool = True) -> bytes:
    """A tar stream built member by member, for faults no well-behaved tool would write."""
    out = io.BytesIO()
    for info, data in members:
        out.write(info.tobuf(format=tarfile.PAX_FORMAT))
        if data is not None:
            out.write(data)
            out.write(bytes(-len(data) % 512))
    if end:
        out.write(bytes(1024))
    return out.getvalue()


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file below `directory` (but our lock) with its content."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != "lock"
    }


def streamkit_tree(root: Path, native_libs: NativeLibraries) -> Path:
    """Official plugins as StreamKit declares them: whisper lists cuda without artifact_cuda (the
    cuda pass rebuilds it in place), helsinki has its own artifact_cuda, parakeet is CPU only;
    plugins/native/common is a support crate without plugin.yml; gain-native stays the default
    extra (an example: installed by copy, never built here, not released)."""
    root.mkdir(parents=True)
    write_source(
        root,
        "whisper",
        GOOD_C_KIND,
        "whisper",
        "0.3.0",
        accelerators=["cpu", "cuda"],
        repo="https://github.com/streamer45/streamkit",
        models=[
            {
                "id": "whisper-tiny-en-q5_1",
                "name": "Whisper tiny.en (q5_1)",
                "default": True,
                "source": "huggingface",
                "repo_id": "streamkit/whisper-models",
                "revision": "main",
                "files": ["ggml-tiny.en-q5_1.bin"],
                "expected_size_bytes": 32166155,
                "license": "MIT",
            }
        ],
    )
    write_source(
        root,
        "helsinki",
        OTHER_C_KIND,
        "helsinki",
        "0.2.0",
        accelerators=["cpu", "cuda"],
        artifact_cuda="target/plugins-cuda/release/libhelsinki.so",
    )
    write_source(root, "parakeet", GOOD_C_KIND, "parakeet", "0.1.0")
    common = root / "plugins" / "native" / "common"
    common.mkdir()
    (common / "Cargo.toml").write_text('[package]\nname = "common"\nversion = "0.1.0"\n')
    install_library(root, native_libs.good_c, "whisper")
    install_library(root, native_libs.good_c_other, "helsinki")
    install_library(root, native_libs.good_c, "parakeet")
    cuda = root / "target" / "plugins-cuda" / "release" / "libhelsinki.so"
    cuda.parent.mkdir(parents=True)
    shutil.copyfile(native_libs.good_c, cuda)
    return root


def manifest_of(registry: Path, plugin_id: str, version: str) -> dict[str, Any]:
    """A registry manifest, parsed."""
    import json

    data: dict[str, Any] = json.loads(
        (registry / "plugins" / plugin_id / version / "manifest.json").read_text()
    )
    return data


def sign_file(
    secret_key_path: Path,
    path: Path,
    *,
    signature_path: Path,
    password_env: str = DEFAULT_PASSWORD_ENV,
    trusted_comment: str | None = None,
    env: dict[str, str] | None = None,
) -> Path:
    """Sign as package-plugins-native does: open the key once, then sign with it."""
    with load_secret_key(secret_key_path, password_env=password_env, env=env) as key:
        return sign_with(key, path, signature_path=signature_path, trusted_comment=trusted_comment)
