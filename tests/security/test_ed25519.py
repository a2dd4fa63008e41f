"""Ed25519 on libsodium (``gateway.security.ed25519``): the same signatures as ``cryptography``
makes, every one of them verified, and nothing else."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.security import ed25519

# RFC 8032 §7.1, TEST 2 (one-byte message).
RFC_SECRET = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
RFC_PUBLIC = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
RFC_MESSAGE = bytes.fromhex("72")
RFC_SIGNATURE = bytes.fromhex(
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
)


def test_the_rfc_8032_vector() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC_SECRET)
    assert ed25519.signer(key)(RFC_MESSAGE) == RFC_SIGNATURE
    ed25519.verifier(Ed25519PublicKey.from_public_bytes(RFC_PUBLIC))(RFC_SIGNATURE, RFC_MESSAGE)


@pytest.mark.parametrize("size", [0, 1, 300, 5000])
def test_signatures_are_cryptographys_and_verify_both_ways(size: int) -> None:
    key = Ed25519PrivateKey.generate()
    data = os.urandom(size)
    ours = ed25519.signer(key)(data)
    assert ours == key.sign(data)  # deterministic: the same bytes
    key.public_key().verify(ours, data)
    ed25519.verifier(key.public_key())(key.sign(data), data)


def test_anything_else_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    verify = ed25519.verifier(key.public_key())
    data = b"the signature base"
    signature = key.sign(data)
    forged = [
        (bytes([signature[0] ^ 1]) + signature[1:], data),  # R changed
        (signature[:40] + bytes([signature[40] ^ 1]) + signature[41:], data),  # S changed
        (signature, data + b" "),  # another message
        (signature[:63], data),  # short
        (signature + b"\0", data),  # long
        (Ed25519PrivateKey.generate().sign(data), data),  # another key
    ]
    for bad, message in forged:
        with pytest.raises(InvalidSignature):
            verify(bad, message)


def test_a_small_order_public_key_proves_nothing() -> None:
    """The identity point as a public key, with the identity as R and S = 0, "signs" every
    message under RFC 8032's cofactorless equation; OpenSSL accepts it, libsodium does not.
    No trusted key is such a point, but the stricter reading costs nothing."""
    identity = bytes([1]) + bytes(31)
    key = Ed25519PublicKey.from_public_bytes(identity)
    with pytest.raises(InvalidSignature):
        ed25519.verifier(key)(identity + bytes(32), b"pay the bearer")
