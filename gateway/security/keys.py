"""Ed25519 key files and identifiers for the VRS signature profile.

VRS names a key by the RFC 7638 thumbprint of its RFC 8037 JWK (the ``keyid``), and agencies
publish keys as JWKs while operators often hold PEM files, so both forms load here into
``cryptography`` key objects. Load keys once at start-up and reuse the objects: never per request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "b64url_decode",
    "b64url_encode",
    "generate_ed25519_jwk",
    "jwk_thumbprint",
    "load_ed25519_private",
    "load_ed25519_public",
    "private_key_from_jwk",
    "public_jwk",
    "public_key_from_jwk",
]

_KEY_BYTES = 32  # RFC 8032: Ed25519 public keys and seeds are 32 bytes


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2), as JWK members and thumbprints use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict inverse of :func:`b64url_encode`: no padding, no stray characters, canonical bits."""
    if not isinstance(text, str) or "=" in text:
        raise ValueError("expected base64url without padding")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64url: {exc}") from exc
    if b64url_encode(raw) != text:  # rejects non-zero trailing bits: one key, one spelling
        raise ValueError("non-canonical base64url")
    return raw


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ValueError(f'JWK member "{name}" is missing or not a string')
    try:
        raw = b64url_decode(value)
    except ValueError as exc:
        raise ValueError(f'JWK member "{name}": {exc}') from exc
    if len(raw) != _KEY_BYTES:
        raise ValueError(f'JWK member "{name}" must decode to {_KEY_BYTES} bytes, not {len(raw)}')
    return raw


def _check_okp_ed25519(jwk: Mapping[str, Any]) -> None:
    if not isinstance(jwk, Mapping):
        raise ValueError("a JWK must be a JSON object")
    if jwk.get("kty") != "OKP":
        raise ValueError(f'JWK "kty" must be "OKP" for Ed25519 (RFC 8037), got {jwk.get("kty")!r}')
    if jwk.get("crv") != "Ed25519":
        raise ValueError(f'JWK "crv" must be "Ed25519", got {jwk.get("crv")!r}')


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """The RFC 8037 public JWK, members in the lexicographic order RFC 7638 hashes them in."""
    return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(_raw_public(key))}


def public_key_from_jwk(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    """Build a public key from an OKP/Ed25519 JWK; a private JWK works too (``x`` is used)."""
    _check_okp_ed25519(jwk)
    if "x" not in jwk and "d" in jwk:
        return private_key_from_jwk(jwk).public_key()
    return Ed25519PublicKey.from_public_bytes(_member(jwk, "x"))


def private_key_from_jwk(jwk: Mapping[str, Any]) -> Ed25519PrivateKey:
    """Build a private key from a JWK with ``d``; a present ``x`` must belong to it."""
    _check_okp_ed25519(jwk)
    if "d" not in jwk:
        raise ValueError('JWK has no private member "d"')
    key = Ed25519PrivateKey.from_private_bytes(_member(jwk, "d"))
    if "x" in jwk and _member(jwk, "x") != _raw_public(key.public_key()):
        raise ValueError('JWK members "x" and "d" do not belong to the same key')
    return key


def jwk_thumbprint(key: Ed25519PublicKey) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url without padding: the VRS ``keyid`` (§5)."""
    # RFC 7638 §3: required members only, sorted, no whitespace; public_jwk() is already sorted.
    canonical = json.dumps(public_jwk(key), separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def _read(path: str | Path) -> tuple[bytes, dict[str, Any] | None]:
    """The file's bytes, and its JSON object when it is a JWK (first non-blank byte ``{``)."""
    data = Path(path).read_bytes()
    if not data.lstrip().startswith(b"{"):
        return data, None
    try:
        jwk = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JWK JSON: {exc}") from exc
    if not isinstance(jwk, dict):
        raise ValueError(f"{path}: a JWK must be a JSON object")
    return data, jwk


def load_ed25519_private(path: str | Path) -> Ed25519PrivateKey:
    """Load a private key from an RFC 8037 JWK with ``d`` or an unencrypted PKCS#8 PEM."""
    data, jwk = _read(path)
    try:
        if jwk is not None:
            return private_key_from_jwk(jwk)
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an Ed25519 private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_ed25519_public(path: str | Path) -> Ed25519PublicKey:
    """Load a public key from a JWK (public or private), a SubjectPublicKeyInfo PEM, or a
    private PEM (its public half)."""
    data, jwk = _read(path)
    try:
        if jwk is not None:
            return public_key_from_jwk(jwk)
        if b"PRIVATE KEY-----" in data:
            return load_ed25519_private(path).public_key()
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an Ed25519 public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def generate_ed25519_jwk(private_path: str | Path, public_path: str | Path | None = None) -> str:
    """Write a new private JWK (mode 0600, ``kid`` = thumbprint) and optionally its public JWK.

    Refuses to overwrite an existing private key file (``FileExistsError``): replacing a key by
    accident would lock the gateway out of every agency that registered the old ``keyid``.
    Returns the ``keyid``.
    """
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    keyid = jwk_thumbprint(pub)
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    private = {**public_jwk(pub), "d": b64url_encode(seed), "kid": keyid}
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        os.fchmod(out.fileno(), 0o600)  # whatever the umask allowed, never more than 0600
        out.write(json.dumps(private, indent=2) + "\n")
    if public_path is not None:
        public = {**public_jwk(pub), "kid": keyid}
        Path(public_path).write_text(json.dumps(public, indent=2) + "\n", encoding="ascii")
    return keyid
