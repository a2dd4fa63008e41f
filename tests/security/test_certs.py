"""Signing certificates: loading, the SHA-256 identifiers of the examples, and the CBAS-05 rules
(validity window, digitalSignature, RSA >= 2048). ``make_cert`` makes throwaway certificates for
the WS-Security tests too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from gateway.security.certs import (
    SigningKey,
    cert_sha256,
    certificate_from_der,
    check_key_pair,
    check_signing_certificate,
    load_certificate,
    load_private_key,
)

KEYS = Path(__file__).resolve().parents[1] / "data" / "keys"
COURT_SHA256 = "cbe83eb2e398b56cfdb8e0431973f3e6ba12e8de868f7048ef8de02a8a9c010c"
BANK_SHA256 = "2124e4cbce3e69938ec5ad97eb8d18d6b1e1336e259afa4af639c7f68bbd6f92"
NOW = datetime(2026, 1, 1, tzinfo=UTC)

_RSA_KEYS: dict[int, rsa.RSAPrivateKey] = {}


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """One generated key per size for the whole run: generating RSA keys is slow."""
    if bits not in _RSA_KEYS:
        _RSA_KEYS[bits] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _RSA_KEYS[bits]


def make_cert(
    key: SigningKey | None = None,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    digital_signature: bool | None = True,
    name: str = "Throwaway (TEST)",
) -> tuple[SigningKey, x509.Certificate]:
    """A self-signed test certificate; ``digital_signature=None`` leaves out keyUsage."""
    key = key if key is not None else rsa_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(not_after or datetime.now(UTC) + timedelta(days=365))
    )
    if digital_signature is not None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature, content_commitment=not digital_signature,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    return key, builder.sign(key, hashes.SHA256())


def test_example_certificates_have_the_published_sha256() -> None:
    assert cert_sha256(load_certificate(KEYS / "cbas-court.cert.pem")) == COURT_SHA256
    assert cert_sha256(load_certificate(KEYS / "cbas-bank.cert.pem")) == BANK_SHA256


@pytest.mark.parametrize("name", ["cbas-court", "cbas-bank", "rers-court", "rers-registry"])
def test_example_pairs_load_match_and_may_sign(name: str) -> None:
    key = load_private_key(KEYS / f"{name}.key.pem")
    cert = load_certificate(KEYS / f"{name}.cert.pem")
    check_key_pair(key, cert)
    assert check_signing_certificate(cert, now=NOW) is None
    der = cert.public_bytes(serialization.Encoding.DER)
    assert certificate_from_der(der) == cert


def test_der_certificate_file_loads(tmp_path: Path) -> None:
    cert = load_certificate(KEYS / "cbas-bank.cert.pem")
    (tmp_path / "c.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    assert load_certificate(tmp_path / "c.der") == cert


def test_mismatched_pair_is_refused() -> None:
    with pytest.raises(ValueError, match="does not belong"):
        check_key_pair(
            load_private_key(KEYS / "cbas-court.key.pem"),
            load_certificate(KEYS / "cbas-bank.cert.pem"),
        )


def test_non_rsa_ec_private_key_is_refused(tmp_path: Path) -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "k.pem").write_bytes(pem)
    with pytest.raises(ValueError, match="not an RSA or EC"):
        load_private_key(tmp_path / "k.pem")


def test_garbage_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x.pem").write_bytes(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match=r"not an X\.509"):
        load_certificate(tmp_path / "x.pem")
    with pytest.raises(ValueError, match="not a PEM private key"):
        load_private_key(tmp_path / "x.pem")


# CBAS-05: the reasons a certificate may not sign.


def test_cbas05_expired_and_not_yet_valid() -> None:
    _, cert = make_cert(not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))
    assert "expired" in (check_signing_certificate(cert, now=NOW) or "")
    _, cert = make_cert(not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=30))
    assert "not yet valid" in (check_signing_certificate(cert, now=NOW) or "")
    assert check_signing_certificate(cert, now=NOW + timedelta(days=2)) is None


def test_cbas05_key_usage_must_allow_digital_signature() -> None:
    _, cert = make_cert(digital_signature=False)
    assert "digitalSignature" in (check_signing_certificate(cert, now=datetime.now(UTC)) or "")
    _, cert = make_cert(digital_signature=None)
    assert "no keyUsage" in (check_signing_certificate(cert, now=datetime.now(UTC)) or "")


def test_cbas05_rsa_below_2048_bits_is_refused() -> None:
    _, cert = make_cert(rsa_key(1024))
    assert "1024 bits" in (check_signing_certificate(cert, now=datetime.now(UTC)) or "")


def test_ec_curves() -> None:
    _, cert = make_cert(ec.generate_private_key(ec.SECP256R1()))
    assert check_signing_certificate(cert, now=datetime.now(UTC)) is None
    _, cert = make_cert(ec.generate_private_key(ec.SECP256K1()))
    assert "secp256k1" in (check_signing_certificate(cert, now=datetime.now(UTC)) or "")


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_signing_certificate(load_certificate(KEYS / "cbas-bank.cert.pem"),
                                  now=datetime(2026, 1, 1))
