"""Ed25519 key loading and VRS keyids (RFC 8037 JWK, RFC 7638 thumbprint, PEM)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.security.keys import (
    b64url_decode,
    generate_ed25519_jwk,
    jwk_thumbprint,
    load_ed25519_private,
    load_ed25519_public,
    public_jwk,
    public_key_from_jwk,
)
from tests.security.helpers import AGENCY_KEYID, COURT_KEYID, KEYS

RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def raw_public(key: object) -> bytes:
    return key.public_bytes(*RAW)  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize(
    ("file", "keyid"),
    [("vrs-court.jwk.json", COURT_KEYID), ("vrs-agency.jwk.json", AGENCY_KEYID)],
)
def test_vrs03_example_key_thumbprints_match_examples_readme(file: str, keyid: str) -> None:
    path = KEYS / file
    assert jwk_thumbprint(load_ed25519_public(path)) == keyid
    assert jwk_thumbprint(load_ed25519_private(path).public_key()) == keyid
    assert json.loads(path.read_text())["kid"] == keyid


def test_court_key_is_rfc8037_appendix_a() -> None:
    # RFC 8037 A.1 key; A.3 gives its RFC 7638 thumbprint.
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(public_key_from_jwk(jwk)) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_public_jwk_round_trip() -> None:
    file_jwk = json.loads((KEYS / "vrs-agency.jwk.json").read_text())
    key = load_ed25519_public(KEYS / "vrs-agency.jwk.json")
    jwk = public_jwk(key)
    assert jwk == {"crv": "Ed25519", "kty": "OKP", "x": file_jwk["x"]}
    assert list(jwk) == ["crv", "kty", "x"]
    assert raw_public(public_key_from_jwk(jwk)) == raw_public(key)


def test_public_key_from_private_jwk_takes_public_half() -> None:
    file_jwk = json.loads((KEYS / "vrs-court.jwk.json").read_text())
    assert public_jwk(public_key_from_jwk(file_jwk))["x"] == file_jwk["x"]
    without_x = {k: v for k, v in file_jwk.items() if k != "x"}
    assert public_jwk(public_key_from_jwk(without_x))["x"] == file_jwk["x"]


def test_pem_round_trips(tmp_path: Path) -> None:
    key = load_ed25519_private(KEYS / "vrs-court.jwk.json")
    private_pem = tmp_path / "court.key.pem"
    private_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_pem = tmp_path / "court.pub.pem"
    public_pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    again = load_ed25519_private(private_pem)
    assert again.sign(b"x") == key.sign(b"x")  # Ed25519 is deterministic: same key
    for path in (public_pem, private_pem):
        assert jwk_thumbprint(load_ed25519_public(path)) == COURT_KEYID


@pytest.mark.parametrize("file", ["rers-court.key.pem", "cbas-court.key.pem"])
def test_other_key_types_are_refused(file: str) -> None:
    with pytest.raises(ValueError, match="not an Ed25519"):
        load_ed25519_private(KEYS / file)
    with pytest.raises(ValueError, match="not an Ed25519"):
        load_ed25519_public(KEYS / file)


def test_certificate_is_not_a_public_key() -> None:
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        load_ed25519_public(KEYS / "rers-court.cert.pem")


def test_private_loader_needs_d(tmp_path: Path) -> None:
    path = tmp_path / "pub.jwk.json"
    path.write_text(json.dumps(public_jwk(load_ed25519_public(KEYS / "vrs-court.jwk.json"))))
    with pytest.raises(ValueError, match='"d"'):
        load_ed25519_private(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kty": "EC"}, "kty"),
        ({"kty": None}, "kty"),
        ({"crv": "X25519"}, "crv"),
        ({"crv": "P-256"}, "crv"),
        ({"x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo="}, "padding"),
        ({"x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHUR"}, "x"),
        ({"x": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo"}, "x"),
        ({"x": "AAAA"}, "32 bytes"),
        ({"x": None}, "missing"),
        ({"x": 5}, "missing"),
    ],
)
def test_public_key_from_jwk_validates(change: dict[str, object], message: str) -> None:
    jwk: dict[str, object] = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    }
    jwk.update(change)
    jwk = {k: v for k, v in jwk.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        public_key_from_jwk(jwk)


def test_mismatched_x_and_d_are_refused(tmp_path: Path) -> None:
    court = json.loads((KEYS / "vrs-court.jwk.json").read_text())
    agency = json.loads((KEYS / "vrs-agency.jwk.json").read_text())
    path = tmp_path / "mixed.jwk.json"
    path.write_text(json.dumps({**court, "x": agency["x"]}))
    with pytest.raises(ValueError, match="same key"):
        load_ed25519_private(path)


def test_b64url_is_strict() -> None:
    assert b64url_decode("AQ") == b"\x01"
    for bad in ("AQ==", "AR", "A", "A+", "A/", " AQ"):
        with pytest.raises(ValueError, match="base64url"):
            b64url_decode(bad)


def test_generate_writes_0600_private_and_public(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask the private key stays 0600
    try:
        keyid = generate_ed25519_jwk(tmp_path / "k.jwk.json", tmp_path / "k.pub.jwk.json")
    finally:
        os.umask(old)
    private_path = tmp_path / "k.jwk.json"
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    private = json.loads(private_path.read_text())
    public = json.loads((tmp_path / "k.pub.jwk.json").read_text())
    assert private["kid"] == public["kid"] == keyid
    assert "d" not in public
    assert set(private) == {"crv", "kty", "x", "d", "kid"}
    assert isinstance(load_ed25519_private(private_path), Ed25519PrivateKey)
    assert jwk_thumbprint(load_ed25519_private(private_path).public_key()) == keyid
    assert jwk_thumbprint(load_ed25519_public(tmp_path / "k.pub.jwk.json")) == keyid


def test_generate_never_overwrites_a_key(tmp_path: Path) -> None:
    path = tmp_path / "k.jwk.json"
    first = generate_ed25519_jwk(path)
    with pytest.raises(FileExistsError):
        generate_ed25519_jwk(path)
    assert jwk_thumbprint(load_ed25519_public(path)) == first
    assert generate_ed25519_jwk(tmp_path / "other.jwk.json") != first
