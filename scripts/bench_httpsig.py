#!/usr/bin/env python
"""Measure the VRS signature path against raw Ed25519 and the http_message_signatures library.

The budget is well under 100 µs per sign+verify pair on top of the raw Ed25519 cost; the
"no-crypto" column measures exactly that, with Ed25519 replaced by no-ops. Every path signs and
verifies the same message: a 1289-byte POST /v2/seizures body (the size of the create-seizure
example) and its 201 response. Times are CPU time, best of five runs. From the repository root::

    .venv/bin/python scripts/bench_httpsig.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import sys
import time
import timeit
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, MappingKeyResolver
from http_message_signatures.algorithms import ED25519
from multidict import CIMultiDict, CIMultiDictProxy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.security import ed25519
from gateway.security.digest import content_digest
from gateway.security.httpsig import (
    REQUEST_COMPONENTS_WITH_BODY,
    RESPONSE_COMPONENTS,
    Signer,
    Verifier,
    request_signature_member,
)
from gateway.security.keys import jwk_thumbprint

URI = "https://vrs.registry.example/v2/seizures"
REQUEST_BODY = b'{"court": {"code": "110105"}, "pad": "' + b"x" * 1250 + b'"}'
RESPONSE_BODY = b'{"seizureId": "SZ-20240603-000318", "status": "ACTIVE", "rank": 1}'


@dataclass
class LibRequest:  # the library's message interface is duck-typed; no `requests` needed
    method: str
    url: str
    headers: dict[str, str]


@dataclass
class LibResponse:
    status_code: int
    headers: dict[str, str]
    request: LibRequest


@contextlib.contextmanager
def null_ed25519() -> Iterator[None]:
    """Signers and verifiers made inside cost nothing for Ed25519 itself (a zero signature, every
    signature accepted): isolates the cost of the profile."""
    saved = ed25519.signer, ed25519.verifier
    ed25519.signer = lambda key: lambda data: bytes(64)  # type: ignore[assignment]
    ed25519.verifier = lambda key: lambda signature, data: None  # type: ignore[assignment]
    try:
        yield
    finally:
        ed25519.signer, ed25519.verifier = saved


def per_op(call: Callable[[], object], seconds: float) -> float:
    """Best-of-5 CPU seconds per call, each run lasting about ``seconds``. CPU time, not wall
    time: the numbers stay meaningful on a shared, busy machine."""
    timer = timeit.Timer(call, timer=time.process_time)
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / 0.2))
    return min(timer.repeat(repeat=5, number=number)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="length of each timing run")
    seconds = parser.parse_args().seconds

    court, agency = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    court_id, agency_id = jwk_thumbprint(court.public_key()), jwk_thumbprint(agency.public_key())
    request_headers = {
        "Content-Type": "application/json",
        "Content-Digest": content_digest(REQUEST_BODY),
        "Idempotency-Key": "0bfa8244-bc30-5af3-b58c-cf5b8c976cfc",
    }
    response_headers = {
        "Content-Type": "application/json",
        "Content-Digest": content_digest(RESPONSE_BODY),
    }

    # --- ours -----------------------------------------------------------------------------
    court_signer, agency_signer = Signer(court), Signer(agency)
    signed_request = request_headers | court_signer.sign_request("POST", URI, request_headers)
    as_received = CIMultiDictProxy(CIMultiDict(signed_request))  # what aiohttp hands a handler
    binding = request_signature_member(signed_request)
    signed_response = response_headers | agency_signer.sign_response(
        201,
        response_headers,
        request_method="POST",
        request_target_uri=URI,
        request_signature=binding,
    )
    response_received = CIMultiDictProxy(CIMultiDict(signed_response))
    registry_verifier = Verifier({court_id: court.public_key()})  # nonce cache off: same message
    court_verifier = Verifier({agency_id: agency.public_key()})
    ours: dict[str, Callable[[], Any]] = {
        "sign request": lambda: court_signer.sign_request("POST", URI, request_headers),
        "verify request": lambda: registry_verifier.verify_request(
            "POST", URI, as_received, REQUEST_BODY
        ),
        "sign response": lambda: agency_signer.sign_response(
            201,
            response_headers,
            request_method="POST",
            request_target_uri=URI,
            request_signature=binding,
        ),
        "verify response": lambda: court_verifier.verify_response(
            201,
            response_received,
            RESPONSE_BODY,
            request_method="POST",
            request_target_uri=URI,
            request_signature=binding,
        ),
    }

    # --- http_message_signatures ---------------------------------------------------------------
    resolver = MappingKeyResolver(
        public_keys={court_id: court.public_key(), agency_id: agency.public_key()},
        private_keys={court_id: court, agency_id: agency},
    )
    lib_signer = HTTPMessageSigner(signature_algorithm=ED25519, key_resolver=resolver)
    lib_verifier = HTTPMessageVerifier(signature_algorithm=ED25519, key_resolver=resolver)
    lib_request = LibRequest("POST", URI, dict(request_headers))
    lib_response = LibResponse(201, dict(response_headers), lib_request)

    def lib_sign(message: Any, keyid: str, components: tuple[str, ...], body: bytes) -> None:
        now = datetime.datetime.now(datetime.UTC)
        lib_signer.sign(
            message,
            key_id=keyid,
            created=now,
            expires=now + datetime.timedelta(seconds=300),
            nonce="IsJ-f5gDQz7_X4W8TDwBhQ" if keyid == court_id else None,
            label="sig1",
            tag="vrs-v2",
            covered_component_ids=components,
            body=body,
            use_existing_digest=True,
        )

    lib_sign(lib_request, court_id, REQUEST_COMPONENTS_WITH_BODY, REQUEST_BODY)
    lib_sign(lib_response, agency_id, RESPONSE_COMPONENTS, RESPONSE_BODY)
    library: dict[str, Callable[[], Any]] = {
        "sign request": lambda: lib_sign(
            lib_request, court_id, REQUEST_COMPONENTS_WITH_BODY, REQUEST_BODY
        ),
        "verify request": lambda: lib_verifier.verify(
            lib_request,
            expect_tag="vrs-v2",
            body=REQUEST_BODY,
            require_components=REQUEST_COMPONENTS_WITH_BODY,
        ),
        "sign response": lambda: lib_sign(
            lib_response, agency_id, RESPONSE_COMPONENTS, RESPONSE_BODY
        ),
        "verify response": lambda: lib_verifier.verify(
            lib_response,
            expect_tag="vrs-v2",
            body=RESPONSE_BODY,
            require_components=RESPONSE_COMPONENTS,
        ),
    }
    for run in (*ours.values(), *library.values()):
        run()  # every path works before it is timed

    # The profile's own cost, measured directly rather than as a difference of two noisy
    # timings: the same Signer/Verifier code with Ed25519 replaced by no-ops.
    with null_ed25519():
        null_court, null_agency = Signer(court), Signer(agency)
        null_registry = Verifier({court_id: court.public_key()})
        null_court_verifier = Verifier({agency_id: agency.public_key()})
    null_signed = request_headers | null_court.sign_request("POST", URI, request_headers)
    null_binding = request_signature_member(null_signed)
    null_response = response_headers | null_agency.sign_response(
        201,
        response_headers,
        request_method="POST",
        request_target_uri=URI,
        request_signature=null_binding,
    )
    null_received = CIMultiDictProxy(CIMultiDict(null_signed))
    null_response_received = CIMultiDictProxy(CIMultiDict(null_response))
    profile_only: dict[str, Callable[[], Any]] = {
        "sign request": lambda: null_court.sign_request("POST", URI, request_headers),
        "verify request": lambda: null_registry.verify_request(
            "POST", URI, null_received, REQUEST_BODY
        ),
        "sign response": lambda: null_agency.sign_response(
            201,
            response_headers,
            request_method="POST",
            request_target_uri=URI,
            request_signature=null_binding,
        ),
        "verify response": lambda: null_court_verifier.verify_response(
            201,
            null_response_received,
            RESPONSE_BODY,
            request_method="POST",
            request_target_uri=URI,
            request_signature=null_binding,
        ),
    }
    for run in profile_only.values():
        run()

    print(
        f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}; CPU µs per operation "
        f"(best of 5 runs of ~{seconds} s)"
    )
    header = f"{'operation':<16} {'ours µs':>8} {'ours /s':>8} {'no-crypto µs':>13} "
    print(header + f"{'library µs':>11} {'library /s':>11} {'speed-up':>9}")
    over: dict[str, float] = {}
    for name, run in ours.items():
        mine, theirs = per_op(run, seconds), per_op(library[name], seconds)
        over[name] = per_op(profile_only[name], seconds)
        print(
            f"{name:<16} {mine * 1e6:>8.1f} {1 / mine:>8.0f} {over[name] * 1e6:>13.1f} "
            f"{theirs * 1e6:>11.1f} {1 / theirs:>11.0f} {theirs / mine:>8.1f}x"
        )
    print()
    # The primitive alone, on both libraries (gateway/security/ed25519.py uses libsodium).
    base = REQUEST_BODY[:400]
    signature = court.sign(base)
    fast_sign, fast_verify = ed25519.signer(court), ed25519.verifier(court.public_key())
    public = court.public_key()
    for name, theirs_op, ours_op in (
        ("Ed25519 sign", lambda: court.sign(base), lambda: fast_sign(base)),
        ("Ed25519 verify", lambda: public.verify(signature, base),
         lambda: fast_verify(signature, base)),
    ):
        openssl, sodium = per_op(theirs_op, seconds), per_op(ours_op, seconds)
        print(f"{name:<16} cryptography (OpenSSL) {openssl * 1e6:.1f} µs, "
              f"libsodium {sodium * 1e6:.1f} µs")
    print()
    for kind in ("request", "response"):
        pair = over[f"sign {kind}"] + over[f"verify {kind}"]
        print(f"{kind} sign+verify pair beyond Ed25519: {pair * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
