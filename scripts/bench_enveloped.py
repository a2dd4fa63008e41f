#!/usr/bin/env python
"""Measure the RERS enveloped-signature path: signs and verifications per second for SealProperty.

The message is ``tests/data/rers/SealProperty.request.xml`` (3.7 KiB signed, two embedded PDF
documents), signed with the example court key (EC P-256). "sign" covers copying the envelope,
laying out the signature, exclusive c14n of the whole envelope, the digest, ECDSA and
serialisation; "verify" covers the hardened parse, every §4 check in order (structure,
certificate, digest and signature, freshness) and the ECDSA verification. The raw ECDSA columns
show how much of each is the P-256 operation alone. Times are wall clock on one thread, best of
five runs. From the repository root::

    .venv/bin/python scripts/bench_enveloped.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.security.certs import cert_sha256, load_certificate, load_private_key
from gateway.security.enveloped import EnvelopedSigner, EnvelopedVerifier, find_payload
from gateway.security.xmlsafe import parse_xml

ROOT = Path(__file__).resolve().parents[1] / "tests" / "data"
DS = "{http://www.w3.org/2000/09/xmldsig#}"


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

    key = load_private_key(ROOT / "keys" / "rers-court.key.pem")
    cert = load_certificate(ROOT / "keys" / "rers-court.cert.pem")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    example = (ROOT / "rers" / "SealProperty.request.xml").read_bytes()
    envelope = parse_xml(example)
    payload = find_payload(envelope)
    signature = payload.find(f"{DS}Signature")
    assert signature is not None
    payload[-2].tail = signature.tail  # the unsigned envelope, as the application builds it
    payload.remove(signature)

    signer = EnvelopedSigner(key, cert)
    # Freshness off: the example's sentAt is historical (the comparison itself costs nothing).
    verifier = EnvelopedVerifier({cert_sha256(cert): ["*"]}, check_freshness=False)
    signed = signer.sign(envelope)
    verifier.verify(signed)  # warm the key cache; also proves the pair round-trips

    data = b"x" * 32
    raw_sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()

    rows = [
        ("sign (EnvelopedSigner.sign)", rate(lambda: signer.sign(envelope), args.seconds)),
        ("verify (EnvelopedVerifier.verify)", rate(lambda: verifier.verify(signed),
                                                   args.seconds)),
        ("raw ECDSA P-256 sign", rate(
            lambda: key.sign(data, ec.ECDSA(hashes.SHA256())), args.seconds)),
        ("raw ECDSA P-256 verify", rate(
            lambda: public.verify(raw_sig, data, ec.ECDSA(hashes.SHA256())), args.seconds)),
    ]
    print(f"SealProperty request: {len(signed)} bytes signed")
    for name, per_second in rows:
        print(f"{name:38s} {per_second:10,.0f} /s  {1e6 / per_second:8.1f} µs")


if __name__ == "__main__":
    main()
