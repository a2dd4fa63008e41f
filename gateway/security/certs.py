"""X.509 signing certificates and their keys for the XML signature profiles (CBAS, RERS).

Both SOAP agencies name a party by the SHA-256 of its certificate's DER (README §8) and accept a
signature only from a certificate that is inside its validity window, allows digitalSignature,
and carries a strong enough key (CBAS §4: RSA >= 2048; RERS §4: EC P-256). Those rules live here
once, so the court side, the mock agencies and the start-up checks apply the same ones. Load keys
and certificates once at start-up and reuse the objects.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Final, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = [
    "MIN_RSA_BITS",
    "SigningKey",
    "cert_sha256",
    "certificate_from_der",
    "check_key_pair",
    "check_signing_certificate",
    "load_certificate",
    "load_private_key",
]

SigningKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

MIN_RSA_BITS: Final = 2048  # CBAS §4
# XML Signature 1.1 names ECDSA for these curves; RERS §4 uses P-256.
_EC_CURVES: Final = frozenset({"secp256r1", "secp384r1", "secp521r1"})


def load_private_key(path: str | Path, password: bytes | None = None) -> SigningKey:
    """An RSA or EC private key from a PEM file (PKCS#8 or traditional); others are refused."""
    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a PEM private key: {exc}") from exc
    if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        return key
    raise ValueError(f"{path}: holds a {type(key).__name__}, not an RSA or EC private key")


def load_certificate(path: str | Path) -> x509.Certificate:
    """The first certificate of a PEM file (a DER file is accepted too)."""
    data = Path(path).read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ValueError(f"{path}: not an X.509 certificate: {exc}") from exc


def certificate_from_der(der: bytes) -> x509.Certificate:
    """A certificate from DER bytes, as carried in a BinarySecurityToken or X509Certificate."""
    return x509.load_der_x509_certificate(der)


def cert_sha256(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, lowercase hex: how callers and agencies are listed."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def check_signing_certificate(cert: x509.Certificate, *, now: datetime) -> str | None:
    """None if ``cert`` may sign agency messages at ``now``, else the reason it may not.

    A reason rather than an exception: the callers map it onto their own error (CBAS
    ``CERTIFICATE_UNTRUSTED``, a start-up ``ConfigError``) and keep the text for the log.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if cert.version is not x509.Version.v3:
        return "not an X.509 v3 certificate"
    if now < cert.not_valid_before_utc:
        return f"not yet valid (notBefore {cert.not_valid_before_utc.isoformat()})"
    if now > cert.not_valid_after_utc:
        return f"expired (notAfter {cert.not_valid_after_utc.isoformat()})"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "no keyUsage extension (digitalSignature is required)"
    if not usage.digital_signature:
        return "keyUsage does not allow digitalSignature"
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are required"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_CURVES:
            return f"EC curve {key.curve.name} is not accepted"
    else:
        return f"{type(key).__name__} keys are not accepted"
    return None


def check_key_pair(key: SigningKey, cert: x509.Certificate) -> None:
    """Raise ValueError unless ``key`` is the private half of ``cert``'s public key.

    Caught at start-up, a mismatched pair is a configuration error; caught by the agency, it
    would be a stream of SIGNATURE_INVALID faults that never heal.
    """
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    mine = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    theirs = cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    if mine != theirs:
        raise ValueError("the private key does not belong to the certificate")
