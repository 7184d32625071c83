"""minisign signatures for registry manifests, through py-minisign (no `minisign` binary needed).

StreamKit signs each `manifest.json`, not the archive: the archive is bound by the sha256 inside
the signed manifest. The signature is the default prehashed `ED` form, written as
`manifest.minisig` beside the manifest (the suffix is replaced, not appended as the minisign CLI
does), so `sign_with` takes the signature path explicitly.

Ed25519 signatures are deterministic, and our default trusted comment carries no timestamp, so the
same key and the same manifest give the same `.minisig` byte for byte: re-running a release does
not churn the registry.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from plugin_packaging._fs.files import (
    KEY,
    REGISTRY_DOCUMENT,
    SIGNATURE,
    input_problem,
    open_input,
    read_input,
    write_atomically,
)
from plugin_packaging.errors import PackagingError

if TYPE_CHECKING:
    import minisign

DEFAULT_PASSWORD_ENV = "MINISIGN_PASSWORD"


def load_secret_key(
    path: Path,
    *,
    password_env: str = DEFAULT_PASSWORD_ENV,
    env: Mapping[str, str] | None = None,
) -> minisign.SecretKey:
    """Read a minisign secret key file, decrypting it with the password in `env[password_env]`.

    `env` defaults to the process environment. An unencrypted key (`minisign -G -W`) needs no
    password. The caller should wipe the key when done (`with key:` does).
    """
    import minisign

    environ = os.environ if env is None else env
    try:
        data = read_input(path, KEY)
    except FileNotFoundError:
        raise PackagingError(
            "signing-key-missing",
            "the minisign secret key file does not exist",
            path=path,
            hint="create one with `minisign -G`, or point the signing key setting at it",
        ) from None
    except OSError as exc:
        raise key_unreadable(path, exc) from None
    try:
        key = minisign.SecretKey.from_bytes(data)
    except minisign.Error as exc:
        looks_public = b"public key" in data.split(b"\n", 1)[0]
        raise PackagingError(
            "signing-key-invalid",
            f"not a minisign secret key ({exc})",
            path=path,
            hint="this looks like the public key; sign with the secret one"
            if looks_public
            else "give the file written by `minisign -G` (the `.key`, not the `.pub`)",
        ) from None
    if not key.is_encrypted():
        return key
    password = environ.get(password_env)
    if password is None:
        key.wipe()
        raise PackagingError(
            "signing-password-missing",
            f"the secret key is encrypted and ${password_env} is not set",
            path=path,
            hint=f"export {password_env} with the key's password",
        )
    try:
        key.decrypt(password)
    except minisign.Error as exc:
        key.wipe()
        wrong = "wrong password" in str(exc)
        raise PackagingError(
            "signing-password-wrong" if wrong else "signing-key-invalid",
            f"cannot decrypt the secret key with ${password_env}"
            if wrong
            else f"cannot decrypt the secret key ({exc})",
            path=path,
            hint=f"check the password in {password_env}" if wrong else None,
        ) from None
    return key


def sign_with(
    key: minisign.SecretKey,
    path: Path,
    *,
    signature_path: Path,
    trusted_comment: str | None = None,
) -> Path:
    """Sign `path` with a key already loaded by `load_secret_key`; write `signature_path`.

    For signing many manifests in one run: an encrypted key is decrypted once, not per file.
    """
    import minisign

    comment = trusted_comment if trusted_comment is not None else f"file:{path.name}\thashed"
    try:
        with open(path, "rb") as data:
            signature = key.sign(data, prehash=True, trusted_comment=comment)
    except FileNotFoundError:
        raise PackagingError(
            "signing-file-missing", "cannot sign a file that does not exist", path=path
        ) from None
    except minisign.Error as exc:
        raise PackagingError(
            "signing-comment-invalid",
            f"cannot use the trusted comment {comment!r}: {exc}",
            path=path,
            hint="use printable ASCII on one line, at most 8 KiB",
        ) from None
    signature_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(signature_path, bytes(signature) + b"\n")
    return signature_path


def public_key_of(key: minisign.SecretKey) -> tuple[str, bytes]:
    """The key id and the public key file (as `minisign -G` writes it) of a loaded secret key."""
    public_key = key.get_public_key()
    return _public_key_id(public_key), bytes(public_key) + b"\n"


def verify_file(public_key_path: Path, path: Path, signature_path: Path) -> None:
    """Raise a PackagingError unless `signature_path` is a valid signature of `path` by the key.

    Accepts the prehashed `ED` form and the legacy `Ed` form, as the server does. Unlike the
    server, it also checks the signature over the trusted comment, as `minisign -V` does.
    """
    import minisign

    public_key = _read_public_key(public_key_path)
    try:
        signature = minisign.Signature.from_bytes(read_input(signature_path, SIGNATURE))
    except FileNotFoundError:
        raise PackagingError(
            "signature-missing",
            f"no signature for {path.name}",
            path=signature_path,
            hint="sign the manifest again",
        ) from None
    except OSError as exc:
        raise PackagingError(
            "signature-invalid", input_problem(exc), signature_path, hint="sign the manifest again"
        ) from None
    except (minisign.Error, ValueError) as exc:
        raise PackagingError(
            "signature-invalid", f"not a minisign signature ({exc})", signature_path
        ) from None
    wanted = _public_key_id(public_key)
    signed_by = _signature_key_id(signature)
    if signed_by != wanted:
        raise PackagingError(
            "signature-wrong-key",
            f"signed by key {signed_by}, not by {wanted} from {public_key_path}",
            path=signature_path,
            hint="sign with the secret key that belongs to this public key",
        )
    try:
        with open_input(path, REGISTRY_DOCUMENT) as signed:
            public_key.verify(signed, signature)
    except FileNotFoundError:
        raise PackagingError(
            "signed-file-missing", "the signed file does not exist", path=path
        ) from None
    except OSError as exc:
        raise PackagingError("signed-file-unreadable", input_problem(exc), path=path) from None
    except minisign.Error:
        raise PackagingError(
            "signature-mismatch",
            f"{signature_path.name} does not match the file: it changed after signing",
            path=path,
            hint="sign the manifest again, or restore the published one",
        ) from None


def public_key_id(public_key_path: Path) -> str:
    """The key id as `minisign` prints it (upper-case hex, no leading zeros), for messages and docs."""
    return _public_key_id(_read_public_key(public_key_path))


def key_unreadable(path: Path, error: OSError, *, public: bool = False) -> PackagingError:
    """The error for a key file that exists but cannot be read: a FIFO, a directory, too big..."""
    return PackagingError(
        "signing-public-key-invalid" if public else "signing-key-unreadable",
        f"the minisign {'public' if public else 'secret'} key {input_problem(error)}",
        path,
        hint=f"point at the {'.pub' if public else '.key'} file written by `minisign -G`",
    )


def _read_public_key(public_key_path: Path) -> minisign.PublicKey:
    import minisign

    try:
        return minisign.PublicKey.from_bytes(read_input(public_key_path, KEY))
    except FileNotFoundError:
        raise PackagingError(
            "signing-public-key-missing",
            "the minisign public key does not exist",
            public_key_path,
            hint="pass the .pub file written by `minisign -G`",
        ) from None
    except OSError as exc:
        raise key_unreadable(public_key_path, exc, public=True) from None
    except (minisign.Error, ValueError) as exc:
        raise PackagingError(
            "signing-public-key-invalid",
            f"not a minisign public key ({exc})",
            public_key_path,
            hint="pass the .pub file written by `minisign -G`, not the secret key",
        ) from None


# py-minisign has no accessor for key ids, so we read them from the documented encodings:
# a public key is base64(algorithm[2] key_id[8] key[32]), a signature's second line is
# base64(algorithm[2] key_id[8] signature[64]). The id is a little-endian 64-bit number, which is
# why minisign prints the bytes reversed.
def _public_key_id(public_key: minisign.PublicKey) -> str:
    return _key_id_text(base64.b64decode(public_key.to_base64()))


def _signature_key_id(signature: minisign.Signature) -> str:
    return _key_id_text(base64.b64decode(bytes(signature).split(b"\n")[1]))


def _key_id_text(decoded: bytes) -> str:
    # minisign prints the number with `%llX`: upper-case hex without leading zeros.
    return format(int.from_bytes(decoded[2:10], "little"), "X")
