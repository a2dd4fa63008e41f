"""Ed25519 signing and verification on libsodium, for keys held as ``cryptography`` objects.

Keys are loaded, stored and compared as ``cryptography`` objects everywhere (JWK, thumbprints,
the tests' interop with other libraries); only the two hot operations of the VRS profile run on
libsodium (PyNaCl's bindings), which does the same RFC 8032 computation in less time: on the
machine ``make bench`` last ran on, a verification took 107 µs against OpenSSL's 216 µs and a
signature 48 µs against 70 (``python scripts/bench_httpsig.py`` prints both). Every agency
answer is verified, so this is the largest single cost of a VRS call in the gateway (and of a
request in the mock registry).

The signatures are the same bytes: Ed25519 signing is deterministic. Verification accepts what
RFC 8032 accepts, except inputs no honest signer produces (libsodium also refuses public keys
and R values of small order and non-canonical encodings), so the stricter of the two readings
of "valid" applies to what an agency sends us.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError

SIGNATURE_BYTES = 64


def signer(key: Ed25519PrivateKey) -> Callable[[bytes], bytes]:
    """``sign(data)``: the 64-byte Ed25519 signature of ``data`` with ``key``."""
    public, secret = crypto_sign_seed_keypair(key.private_bytes_raw())
    if public != key.public_key().public_bytes_raw():  # the same key pair, or nothing
        raise ValueError("libsodium derived another public key from this seed")

    def sign(data: bytes) -> bytes:
        return crypto_sign(data, secret)[:SIGNATURE_BYTES]

    return sign


def verifier(key: Ed25519PublicKey) -> Callable[[bytes, bytes], None]:
    """``verify(signature, data)``: returns if ``signature`` is ``key``'s over ``data``, raises
    ``cryptography.exceptions.InvalidSignature`` otherwise (as ``key.verify`` does)."""
    public = key.public_bytes_raw()

    def verify(signature: bytes, data: bytes) -> None:
        if len(signature) != SIGNATURE_BYTES:
            raise InvalidSignature
        try:
            crypto_sign_open(signature + data, public)
        except BadSignatureError:
            raise InvalidSignature from None

    return verify
