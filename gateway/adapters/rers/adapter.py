"""Court-side adapter for the land registry's Real Estate Registration Service (RERS) v1.

Counterparty: a real estate registration centre (不动产登记中心), interface RERS v1: SOAP 1.2,
document/literal wrapped, synchronous, over HTTPS to the endpoint the registry publishes out of
band (``agency.endpoint``; the WSDL address is a placeholder). Contract: the ICD
``land-registry-rers-v1.md`` with its WSDL and XSD, copied unchanged beside this module.
Operations: property inquiry, seal and pre-seal, release, renewal; each answered at once.

Certificates: every request, response and fault detail ends with an enveloped XML Signature
over the whole envelope (exclusive c14n, ECDSA P-256 with SHA-256, ``r || s``) carrying the
signer's X.509 certificate (EC P-256, keyUsage digitalSignature). The court operator has its
certificate issued (by the PKI the registry accepts, or self-signed where the registry pins
certificates: ``gateway.testing.generate_certificate(kind="ec")``) and hands it to the registry
out of band; the registry lists its SHA-256 in its caller list with the court codes it may act
for. The registry hands over its own certificate the same way; it is configured as
``agency_key`` and is the only certificate accepted on answers (RERS-07). Configuration:
``signing_key`` (secret: our EC private key, PEM; never logged), ``signing_cert`` (our
certificate), ``agency_key`` (the registry's certificate), ``endpoint``, optional ``ca_file`` /
``client_cert`` for TLS, and ``options`` below.

Timeouts: RERS §1 fixes the client timeout at 15 s total and 5 s to connect (the registry
answers within 10 s or says BUSY, RERS-20/21). They are part of the contract, so this adapter
uses them whatever ``limits.total_timeout`` / ``limits.connect_timeout`` say: a shorter timeout
would resend requests the registry is still answering, a longer one waits for an answer that
cannot come. The rest of ``limits`` (pool size, rate, retries) applies as configured.

The adapter is protocol flow only: it never retries. The dispatcher resends after a transient
error or a timeout with the same command, and this adapter renders it with the same
``requestId`` and content, a new ``sentAt`` and a new signature (RERS-11, RERS-21).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final

from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.adapters import _soap_common as common
from gateway.adapters.base import AgencyCall, Capabilities
from gateway.adapters.rers import codec, faults
from gateway.config import AgencyConfig
from gateway.errors import (
    AgencyError,
    ConfigError,
    OutcomeUnknownError,
    RejectedError,
    ResponseVerificationError,
    TransientError,
)
from gateway.model.rules import REQUEST_ID_RE
from gateway.model.types import Action, AgencyKind, ControlCommand, Outcome
from gateway.protocols.rest import RestTransport
from gateway.protocols.soap import SOAP12_NS, SoapFault, SoapReply, SoapTransport
from gateway.security.certs import SigningKey, cert_sha256
from gateway.security.enveloped import EnvelopedSigner, EnvelopedVerifier, VerifiedPayload

__all__ = ["OPTIONS", "SPEC_TIMEOUT", "ClientTimeout", "RersAdapter"]

# options.<key> → (default, meaning). Unknown keys are configuration errors.
OPTIONS: Final[Mapping[str, tuple[object, str]]] = {
    "validate_requests": (True, "check each request payload against the XSD before sending"),
}

_RECEIVER: Final = f"{{{SOAP12_NS}}}Receiver"

WallClock = Callable[[], dt.datetime]


@dataclasses.dataclass(frozen=True, slots=True)
class ClientTimeout:
    """Seconds for the whole exchange and for connecting."""

    total: float
    connect: float


SPEC_TIMEOUT: Final = ClientTimeout(total=15.0, connect=5.0)  # RERS §1, RERS-21


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _p256(key: SigningKey) -> str | None:
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return None
    return "RERS §4 signs with an EC P-256 key (ecdsa-sha256)"


class RersAdapter:
    """One configured land registry: signs, sends, verifies and maps RERS v1 exchanges."""

    name: ClassVar[str] = "rers"
    capabilities: ClassVar[Capabilities] = Capabilities(
        kind=AgencyKind.REAL_ESTATE,
        inquiry=True,
        actions=frozenset(
            {Action.SEAL, Action.PRE_SEAL, Action.RELEASE_SEAL, Action.RENEW_SEAL}
        ),
    )

    def __init__(
        self,
        agency: AgencyConfig,
        *,
        now: WallClock = _utcnow,
        timeout: ClientTimeout = SPEC_TIMEOUT,
    ) -> None:
        """Load and check keys, certificates and options once; raises ConfigError naming the key.

        ``now`` (aware UTC) stamps ``sentAt`` and judges ``respondedAt``; ``timeout`` is the
        spec's unless a test shortens it so nothing really waits.
        """
        self._agency = agency
        self._now = now
        options = common.check_options(agency.options, OPTIONS)
        self._validate_requests = bool(options["validate_requests"])
        # Keys and certificates are loaded once, here; anything unusable stops start-up.
        private_key, certificate = common.load_signing_pair(
            agency, protocol="RERS", key_kind="EC P-256", now=now(), accept=_p256
        )
        assert isinstance(private_key, ec.EllipticCurvePrivateKey)  # _p256 said so
        try:
            self._signer = EnvelopedSigner(private_key, certificate, clock=now)
        except (TypeError, ValueError) as exc:
            raise ConfigError("signing_key", f"cannot sign with it: {exc}") from exc
        registry_certificate = common.load_agency_certificate(agency, protocol="RERS", now=now())
        registry_key = registry_certificate.public_key()
        if not (isinstance(registry_key, ec.EllipticCurvePublicKey)
                and isinstance(registry_key.curve, ec.SECP256R1)):
            raise ConfigError("agency_key", "RERS §4: the registry signs with EC P-256")
        self.registry_cert_sha256 = cert_sha256(registry_certificate)
        if self.registry_cert_sha256 == self._signer.cert_sha256:
            # Always a configuration mistake: answers must come from the registry's certificate.
            raise ConfigError("agency_key", "is our own certificate, not the registry's")
        # RERS-07: the configured registry certificate is the only trusted responder, and its
        # respondedAt must be within 300 s of our clock.
        self._verifier = EnvelopedVerifier(
            {self.registry_cert_sha256: registry_certificate}, clock=now,
            time_field="respondedAt",
        )
        limits = dataclasses.replace(
            agency.limits, total_timeout=timeout.total, connect_timeout=timeout.connect
        )
        self._soap: SoapTransport[VerifiedPayload] = SoapTransport(
            dataclasses.replace(agency, limits=limits), version="1.2",
            wsdl_path=codec.wsdl_path(), signer=self._sign,
            verifier=self._verifier.verify, prefixes={"rers": codec.RERS_NS},
        )

    @property
    def cert_sha256(self) -> str:
        """Our certificate's SHA-256, as the registry must have it in its caller list."""
        return self._signer.cert_sha256

    # --- the seam ------------------------------------------------------------------------

    async def execute(self, call: AgencyCall) -> Outcome:
        """Run one attempt of ``call.command``; raises ``gateway.errors`` on any failure."""
        command = call.command
        if not REQUEST_ID_RE.match(command.request_id):
            raise RejectedError(
                f"request id {command.request_id!r} is not a lowercase UUID (README §4)",
                code="invalid-request",
            )
        try:
            # RERS-21: a fresh sentAt on every attempt; everything else is the command's.
            operation, payload = codec.request_payload(command, self._now())
        except codec.InvalidCommand as exc:
            raise RejectedError(f"{self._agency.id}: {exc}", code="invalid-command") from exc
        applied = isinstance(command, ControlCommand)
        reply = await self._exchange(operation, payload, command.request_id)
        doc = self._decode_payload(operation, reply, applied=applied)
        try:
            return codec.decode(doc, command)
        except codec.InvalidResponse as exc:
            raise self._invalid(operation, str(exc), applied=applied) from exc

    @property
    def transport(self) -> RestTransport:
        """The HTTP transport under the SOAP one (operators' metrics read its throttle)."""
        return self._soap.rest

    async def aclose(self) -> None:
        await self._soap.aclose()

    # --- one exchange --------------------------------------------------------------------

    def _what(self, operation: str) -> str:
        return f"{self._agency.id}: {operation}"

    def _sign(self, envelope: etree._Element) -> bytes:
        """Transport hook, run on every send (RERS-02/03): the enveloped signature.

        It fails only when our certificate has expired since start-up: the registry would
        refuse every request (CERTIFICATE_UNTRUSTED), so nothing is sent and the command is
        rejected until an operator installs a new certificate.
        """
        try:
            return self._signer.sign(envelope)
        except ValueError as exc:
            raise RejectedError(f"{self._agency.id}: cannot sign: {exc}",
                                code="signing-certificate") from exc

    async def _exchange(
        self, operation: str, payload: Mapping[str, Any], request_id: str
    ) -> SoapReply[VerifiedPayload]:
        """Build, check, sign and send one request; return the verified, non-fault reply."""
        # RERS-02: a request the registry would answer SCHEMA_INVALID is not sent.
        envelope = common.build_request(
            lambda: codec.wire_envelope(self._soap.build(operation, **payload)),
            what=self._what(operation), soap_ns=SOAP12_NS,
            errors_of=codec.schema_errors if self._validate_requests else None,
        )
        # RERS-01: POST, application/soap+xml with the action; 200, or a fault with 400/500.
        # A timeout after sending surfaces as OutcomeTimeoutError (RERS-21). RERS-07: a body
        # that is not a SOAP 1.2 envelope cannot be verified: discarded, transient.
        reply: SoapReply[VerifiedPayload] = await common.call_verified(
            self._soap.call(operation, envelope)
        )
        self._check_binding(operation, reply, request_id)
        if reply.fault is not None:
            raise self._fault_error(operation, reply.fault, reply.verified)
        return reply

    def _check_binding(
        self, operation: str, reply: SoapReply[VerifiedPayload], request_id: str
    ) -> None:
        """RERS-07: the verified payload is the element we read, and it answers our request.

        The verifier returns the element its signature sits in; the transport found the Body's
        payload (or the fault's detail) on its own. They must be one element, and its requestId
        our request's, or the answer is not ours: discarded as transient.
        """
        verified = reply.verified
        read = reply.payload if reply.fault is None else reply.fault.detail_element
        if read is not verified.payload:
            raise ResponseVerificationError(
                f"{self._what(operation)}: response discarded: the signed element is not the "
                "payload", code="SIGNATURE_INVALID",
            )
        echoed = verified.field("requestId")
        if echoed == request_id:
            return
        # §5: a fault names the requestId "whenever it could be read". Without it the fault
        # cannot be bound to our request: trust it only where that costs nothing (BUSY,
        # RATE_LIMITED: we would resend anyway), never to end a command for good.
        if (echoed is None and reply.fault is not None
                and verified.field("code") in faults.TRANSIENT_CODES):
            return
        raise ResponseVerificationError(
            f"{self._what(operation)}: response discarded: it answers request {echoed}, "
            f"not {request_id}", code="REQUEST_ID_MISMATCH",
        )

    def _decode_payload(
        self, operation: str, reply: SoapReply[VerifiedPayload], *, applied: bool
    ) -> Mapping[str, Any]:
        """The verified payload as plain data, after it passed the XSD (zeep alone is lax)."""
        payload = reply.payload
        assert payload is not None
        errors = codec.schema_errors(payload)
        if errors:
            raise self._invalid(operation, "payload does not match the XSD: "
                                + "; ".join(errors[:5]), applied=applied)
        try:
            parsed = self._soap.parse(operation, payload)
        except TransientError as exc:
            raise self._invalid(operation, str(exc), applied=applied) from exc
        doc = common.plain(parsed)
        if not isinstance(doc, dict):
            raise self._invalid(operation, "payload is not a structure", applied=applied)
        return doc

    def _fault_error(
        self, operation: str, fault: SoapFault, verified: VerifiedPayload
    ) -> AgencyError:
        """§5: a verified fault → the gateway error its signed FaultDetail/code stands for.

        Only the signed FaultDetail is read (§4: the payload with the signature and no other);
        the Subcode is covered by the same signature and must agree (RERS-18).
        """
        detail = verified.payload
        errors = codec.schema_errors(detail)
        if errors:
            return TransientError(f"{self._what(operation)}: fault detail does not match the "
                                  "XSD: " + "; ".join(errors[:5]), code="invalid-response")
        doc = common.plain(self._soap.parse_element(detail))
        code, message = doc["code"], doc["message"] or fault.reason
        if fault.subcode is not None and fault.subcode != f"{{{codec.RERS_NS}}}{code}":
            return TransientError(f"{self._what(operation)}: fault subcode {fault.subcode} "
                                  f"disagrees with code {code}", code="invalid-response")
        return faults.fault_error(
            code, message, retry_after=doc.get("retryAfterSeconds"),
            receiver_fault=fault.code == _RECEIVER, what=self._what(operation),
        )

    def _invalid(self, operation: str, reason: str, *, applied: bool) -> TransientError:
        """A verified answer we cannot use. README §8: not a protocol response, so transient.

        For a control operation the registry may have recorded it (a success we could not
        read), so the outcome is unknown: only the resend with the same requestId is safe, and
        it returns the recorded response marked replayed (README §7, RERS-11).
        """
        message = f"{self._what(operation)}: not a valid RERS answer: {reason}"
        if applied:
            return OutcomeUnknownError(message, code="invalid-response")
        return TransientError(message, code="invalid-response")
