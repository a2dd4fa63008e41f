#!/usr/bin/env python
"""Measure the CBAS WS-Security path: signs and verifications per second for FreezeFunds.

The message is ``tests/data/cbas/FreezeFunds.request.xml`` (5.7 KiB signed, two embedded PDF
documents), signed with the example court key (RSA-2048). "sign" covers copying the envelope,
building the header, c14n, two digests, the RSA signature and serialisation; "verify" covers
the hardened parse, every §4 check in order, the certificate checks and the RSA verification.
The raw RSA columns show how much of each is the RSA operation alone. Times are wall clock on
one thread, best of five runs. From the repository root::

    .venv/bin/python scripts/bench_wssec.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.security.certs import cert_sha256, load_certificate, load_private_key
from gateway.security.wssec import WsSecuritySigner, WsSecurityVerifier
from gateway.security.xmlsafe import parse_xml

ROOT = Path(__file__).resolve().parents[1] / "tests" / "data"
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second, best of five runs of about ``seconds`` each."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / 0.2))
    best = min(timer.repeat(repeat=5, number=number))
    return number / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()

    key = load_private_key(ROOT / "keys" / "cbas-court.key.pem")
    cert = load_certificate(ROOT / "keys" / "cbas-court.cert.pem")
    assert isinstance(key, rsa.RSAPrivateKey)
    example = (ROOT / "cbas" / "FreezeFunds.request.xml").read_bytes()
    envelope = parse_xml(example)
    envelope.remove(envelope.find(f"{SOAP}Header"))

    signer = WsSecuritySigner(key, cert)
    verifier = WsSecurityVerifier({cert_sha256(cert): ["*"]})
    signed = signer.sign(envelope)
    verifier.verify(signed)  # warm the key cache; also proves the pair round-trips

    data = b"x" * 32
    raw_sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    public = key.public_key()

    rows = [
        ("sign (WsSecuritySigner.sign)", rate(lambda: signer.sign(envelope), args.seconds)),
        ("verify (WsSecurityVerifier.verify)", rate(lambda: verifier.verify(signed),
                                                    args.seconds)),
        ("raw RSA-2048 PKCS#1 v1.5 sign", rate(
            lambda: key.sign(data, padding.PKCS1v15(), hashes.SHA256()), args.seconds)),
        ("raw RSA-2048 PKCS#1 v1.5 verify", rate(
            lambda: public.verify(raw_sig, data, padding.PKCS1v15(), hashes.SHA256()),
            args.seconds)),
    ]
    print(f"FreezeFunds request: {len(signed)} bytes signed")
    for name, per_second in rows:
        print(f"{name:38s} {per_second:10,.0f} /s  {1e6 / per_second:8.1f} µs")


if __name__ == "__main__":
    main()
