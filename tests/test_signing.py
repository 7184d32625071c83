"""Manifest signatures: ours must satisfy the real `minisign` tool, and its must satisfy ours."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import minisign
import pytest
from releaselib import minisign_cli, sign_file

from plugin_packaging.errors import PackagingError
from plugin_packaging.release.signing import (
    DEFAULT_PASSWORD_ENV,
    load_secret_key,
    public_key_id,
    verify_file,
)

MANIFEST = b'{\n  "schema_version": 1,\n  "id": "whisper",\n  "version": "0.3.0"\n}\n'


def run_cli(*args: object, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [minisign_cli(), *map(str, args)], input=input, capture_output=True, timeout=120
    )


def cli_verifies(public_key: Path, path: Path, signature: Path) -> bool:
    result = run_cli("-V", "-p", public_key, "-m", path, "-x", signature)
    return result.returncode == 0


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "registry" / "plugins" / "whisper" / "0.3.0" / "manifest.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(MANIFEST)
    return path


@pytest.fixture
def cli_keys(tmp_path: Path) -> tuple[Path, Path]:
    """An unencrypted key pair made by the minisign CLI: (secret, public)."""
    secret, public = tmp_path / "cli.key", tmp_path / "cli.pub"
    result = run_cli("-G", "-W", "-p", public, "-s", secret)
    assert result.returncode == 0, result.stderr
    return secret, public


def write_key_pair(directory: Path, name: str, password: str | None = None) -> tuple[Path, Path]:
    """A key pair made by py-minisign, optionally encrypted (with cheap scrypt limits)."""
    pair = minisign.KeyPair.generate()
    if password is not None:
        pair.secret_key.encrypt(password, opslimit=32768, memlimit=16 << 20)
    secret, public = directory / f"{name}.key", directory / f"{name}.pub"
    secret.write_bytes(bytes(pair.secret_key) + b"\n")
    public.write_bytes(bytes(pair.public_key) + b"\n")
    return secret, public


@pytest.fixture
def library_keys(tmp_path: Path) -> tuple[Path, Path]:
    return write_key_pair(tmp_path, "lib")


def signature_algorithm(signature: Path) -> bytes:
    return base64.b64decode(signature.read_bytes().splitlines()[1])[:2]


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", ["cli_keys", "library_keys"])
def test_our_signature_verifies_with_the_minisign_cli(
    request: pytest.FixtureRequest, manifest: Path, keys: str
) -> None:
    secret, public = request.getfixturevalue(keys)
    signature = manifest.with_name("manifest.minisig")
    assert sign_file(secret, manifest, signature_path=signature, env={}) == signature
    assert cli_verifies(public, manifest, signature)
    verify_file(public, manifest, signature)


def test_the_signature_is_prehashed_and_written_where_asked(
    manifest: Path, cli_keys: tuple[Path, Path]
) -> None:
    secret, _ = cli_keys
    signature = manifest.with_name("manifest.minisig")
    sign_file(secret, manifest, signature_path=signature, env={})
    assert signature_algorithm(signature) == b"ED"
    assert not manifest.with_name("manifest.json.minisig").exists()
    lines = signature.read_bytes().split(b"\n")
    assert lines[2] == b"trusted comment: file:manifest.json\thashed"
    assert lines[-1] == b"" and len(lines) == 5


def test_signing_the_same_manifest_twice_gives_the_same_bytes(
    tmp_path: Path, manifest: Path, cli_keys: tuple[Path, Path]
) -> None:
    secret, _ = cli_keys
    first = sign_file(secret, manifest, signature_path=tmp_path / "a.minisig", env={})
    second = sign_file(secret, manifest, signature_path=tmp_path / "b.minisig", env={})
    assert first.read_bytes() == second.read_bytes()


def test_a_manifest_changed_after_signing_fails_both_verifiers(
    manifest: Path, cli_keys: tuple[Path, Path]
) -> None:
    secret, public = cli_keys
    signature = manifest.with_name("manifest.minisig")
    sign_file(secret, manifest, signature_path=signature, env={})
    manifest.write_bytes(MANIFEST.replace(b"0.3.0", b"0.3.1"))
    assert not cli_verifies(public, manifest, signature)
    with pytest.raises(PackagingError) as caught:
        verify_file(public, manifest, signature)
    assert caught.value.code == "signature-mismatch"


@pytest.mark.parametrize("legacy", [False, True], ids=["prehashed", "legacy"])
def test_a_cli_signature_verifies_with_our_code(
    manifest: Path, cli_keys: tuple[Path, Path], legacy: bool
) -> None:
    secret, public = cli_keys
    signature = manifest.with_name("manifest.minisig")
    legacy_flag = ["-l"] if legacy else []
    result = run_cli("-S", *legacy_flag, "-s", secret, "-m", manifest, "-x", signature)
    assert result.returncode == 0, result.stderr
    assert signature_algorithm(signature) == (b"Ed" if legacy else b"ED")
    verify_file(public, manifest, signature)


def test_a_signature_by_another_key_names_both_key_ids(
    tmp_path: Path, manifest: Path, cli_keys: tuple[Path, Path], library_keys: tuple[Path, Path]
) -> None:
    secret, _ = library_keys
    _, other_public = cli_keys
    signature = manifest.with_name("manifest.minisig")
    sign_file(secret, manifest, signature_path=signature, env={})
    with pytest.raises(PackagingError) as caught:
        verify_file(other_public, manifest, signature)
    assert caught.value.code == "signature-wrong-key"
    assert public_key_id(library_keys[1]) in caught.value.message
    assert public_key_id(other_public) in caught.value.message


def test_public_key_id_is_printed_as_minisign_prints_it(cli_keys: tuple[Path, Path]) -> None:
    _, public = cli_keys
    comment = public.read_text().splitlines()[0]
    assert comment == f"untrusted comment: minisign public key {public_key_id(public)}"


# --------------------------------------------------------------------------------------------
# Encrypted keys


def test_an_encrypted_key_is_opened_with_the_password_from_the_named_variable(
    tmp_path: Path, manifest: Path
) -> None:
    secret, public = write_key_pair(tmp_path, "enc", password="correct horse")
    signature = manifest.with_name("manifest.minisig")
    sign_file(
        secret,
        manifest,
        signature_path=signature,
        password_env="RELEASE_KEY_PASSWORD",
        env={"RELEASE_KEY_PASSWORD": "correct horse"},
    )
    assert cli_verifies(public, manifest, signature)


def test_an_encrypted_key_without_its_password_variable_says_which_variable(
    tmp_path: Path, manifest: Path
) -> None:
    secret, _ = write_key_pair(tmp_path, "enc", password="correct horse")
    with pytest.raises(PackagingError) as caught:
        sign_file(secret, manifest, signature_path=tmp_path / "s.minisig", env={})
    assert caught.value.code == "signing-password-missing"
    assert f"${DEFAULT_PASSWORD_ENV}" in caught.value.message
    assert caught.value.path == secret
    assert not (tmp_path / "s.minisig").exists()


def test_a_wrong_password_is_a_plain_error(tmp_path: Path, manifest: Path) -> None:
    secret, _ = write_key_pair(tmp_path, "enc", password="correct horse")
    with pytest.raises(PackagingError) as caught:
        load_secret_key(secret, env={DEFAULT_PASSWORD_ENV: "battery staple"})
    assert caught.value.code == "signing-password-wrong"


def test_a_password_protected_key_made_by_the_cli_signs(tmp_path: Path, manifest: Path) -> None:
    # The CLI derives the key with scrypt's "sensitive" limits (1 GiB, a few seconds): the real
    # shape of a release key.
    secret, public = tmp_path / "release.key", tmp_path / "release.pub"
    result = run_cli("-G", "-p", public, "-s", secret, input=b"s3cret\ns3cret\n")
    assert result.returncode == 0, result.stderr
    signature = manifest.with_name("manifest.minisig")
    sign_file(secret, manifest, signature_path=signature, env={DEFAULT_PASSWORD_ENV: "s3cret"})
    assert cli_verifies(public, manifest, signature)


# --------------------------------------------------------------------------------------------
# Mistakes with files


def test_giving_the_public_key_to_sign_hints_at_the_mix_up(
    tmp_path: Path, manifest: Path, cli_keys: tuple[Path, Path]
) -> None:
    _, public = cli_keys
    with pytest.raises(PackagingError) as caught:
        sign_file(public, manifest, signature_path=tmp_path / "s.minisig", env={})
    assert caught.value.code == "signing-key-invalid"
    assert "public key" in (caught.value.hint or "")


def test_a_missing_secret_key_is_a_plain_error(tmp_path: Path, manifest: Path) -> None:
    with pytest.raises(PackagingError) as caught:
        sign_file(tmp_path / "none.key", manifest, signature_path=tmp_path / "s.minisig", env={})
    assert caught.value.code == "signing-key-missing"


def test_a_missing_signature_is_a_plain_error(manifest: Path, cli_keys: tuple[Path, Path]) -> None:
    with pytest.raises(PackagingError) as caught:
        verify_file(cli_keys[1], manifest, manifest.with_name("manifest.minisig"))
    assert caught.value.code == "signature-missing"


def test_a_trusted_comment_minisign_cannot_carry_is_refused(
    tmp_path: Path, manifest: Path, cli_keys: tuple[Path, Path]
) -> None:
    with pytest.raises(PackagingError) as caught:
        sign_file(
            cli_keys[0],
            manifest,
            signature_path=tmp_path / "s.minisig",
            trusted_comment="line one\nline two",
            env={},
        )
    assert caught.value.code == "signing-comment-invalid"


def test_signing_a_missing_file_is_a_plain_error(
    tmp_path: Path, cli_keys: tuple[Path, Path]
) -> None:
    with pytest.raises(PackagingError) as caught:
        sign_file(cli_keys[0], tmp_path / "manifest.json", signature_path=tmp_path / "s", env={})
    assert caught.value.code == "signing-file-missing"
