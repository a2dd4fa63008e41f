"""Court-side adapter for a bank's Court–Bank Assistance Service (CBAS) v1.

Counterparty: a bank (银行), interface CBAS v1: SOAP 1.1, document/literal wrapped, over HTTPS
to the endpoint the bank publishes out of band (``agency.endpoint``; the WSDL address is a
placeholder). Contract: the ICD ``bank-cbas-v1.md`` with its WSDL and XSD, copied unchanged
beside this module. Operations: account inquiry, freeze, unfreeze, renewal and deduction, each
answered by a Receipt whose ticket is polled with ``FetchResult`` (asynchronous ticket pattern).

Certificates: every message in both directions carries a WS-Security 1.1 header signed with
RSA-SHA256 under an X.509 v3 certificate (RSA >= 2048 bits, keyUsage digitalSignature). The
court operator has its certificate issued (by the PKI the bank accepts, or self-signed where the
bank pins certificates) and hands it to the bank out of band; the bank lists the certificate's
SHA-256 in its caller list with the court codes it may act for. The bank hands over its own
certificate the same way; it is configured as ``agency_key`` and is the only certificate
accepted on responses (CBAS-07). Configuration: ``signing_key`` (secret: our RSA private key,
PEM; never logged), ``signing_cert`` (our certificate), ``agency_key`` (the bank's certificate),
``endpoint``, optional ``ca_file`` / ``client_cert`` for TLS, and ``options`` below.

The court's own receiving account for deductions is configuration too: CBAS's ``payeeAccount``
is ``{accountName, accountNo, bankName}``, and a canonical command carries only the account
number, so ``options.payee_account_name`` and ``options.payee_bank_name`` complete it.

The adapter is protocol flow only: it never retries (the dispatcher does, with the same
``requestId`` and content, CBAS-22). The Receipt's ticket is checkpointed before any poll, so a
later attempt, or the same item after a restart, polls the ticket instead of submitting again.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Final

from lxml import etree

from gateway.adapters import _soap_common as common
from gateway.adapters.base import AgencyCall, Capabilities, before_poll
from gateway.adapters.cbas import codec, faults
from gateway.config import AgencyConfig
from gateway.errors import (
    AgencyError,
    ConfigError,
    OutcomeUnknownError,
    RejectedError,
    ResultPendingError,
    TransientError,
)
from gateway.model.rules import AGENCY_ID_RE, REQUEST_ID_RE
from gateway.model.serial import to_json
from gateway.model.types import (
    Action,
    AgencyKind,
    ControlCommand,
    InquiryCommand,
    Outcome,
)
from gateway.protocols import timers
from gateway.protocols.rest import RestTransport
from gateway.protocols.soap import SOAP11_NS, SoapFault, SoapReply, SoapTransport
from gateway.security.certs import cert_sha256
from gateway.security.wssec import VerifiedEnvelope, WsSecuritySigner, WsSecurityVerifier

__all__ = ["OPTIONS", "CbasAdapter"]

# options.<key> → (default, meaning). Unknown keys are configuration errors.
OPTIONS: Final[Mapping[str, tuple[object, str]]] = {
    "poll_deadline_seconds": (600.0, "longest one attempt polls a ticket before handing back"),
    "max_poll_interval": (30.0, ("longest in-process wait between polls; longer waits are "
                                 "handed back to the dispatcher as ResultPendingError")),
    "validate_requests": (True, "check each request payload against the XSD before sending"),
    "payee_account_name": (None, "holder name of the court's receiving account (DeductFunds)"),
    "payee_bank_name": (None, "name of the bank holding the court's receiving account"),
}

_FAULT_DETAIL: Final = f"{{{codec.CBAS_NS}}}FaultDetail"
_SERVER_FAULT: Final = f"{{{SOAP11_NS}}}Server"

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
WallClock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_request_id() -> str:
    return str(uuid.uuid4())


def _payee_name(key: str, value: Any) -> None:
    # The payee names: the XSD's Name type, 1-100 characters.
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= len(value) <= 100:
        raise ConfigError(f"options.{key}", "must be a name of 1-100 characters")


def _options(raw: Mapping[str, Any]) -> dict[str, Any]:
    out = common.check_options(raw, OPTIONS, special=_payee_name)
    if (out["payee_account_name"] is None) != (out["payee_bank_name"] is None):
        missing = "payee_bank_name" if out["payee_bank_name"] is None else "payee_account_name"
        raise ConfigError(f"options.{missing}", "payee_account_name and payee_bank_name go "
                                                "together")
    return out


class CbasAdapter:
    """One configured bank: signs, sends, verifies and maps CBAS v1 exchanges."""

    name: ClassVar[str] = "cbas"
    capabilities: ClassVar[Capabilities] = Capabilities(
        kind=AgencyKind.BANK,
        inquiry=True,
        actions=frozenset({Action.FREEZE, Action.UNFREEZE, Action.RENEW_FREEZE, Action.DEDUCT}),
    )

    def __init__(
        self,
        agency: AgencyConfig,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = timers.sleep,
        now: WallClock = _utcnow,
        new_request_id: Callable[[], str] = _new_request_id,
    ) -> None:
        """Load and check keys, certificates and options once; raises ConfigError naming the key.

        ``clock``/``sleep`` (monotonic seconds) time the in-process poll waits, ``now`` (aware
        UTC) stamps and checks WS-Security timestamps and the checkpointed ``nextPollAt``, and
        ``new_request_id`` names each poll; tests inject all four so nothing really waits.
        """
        self._agency = agency
        options = _options(agency.options)
        self._poll_deadline = float(options["poll_deadline_seconds"])
        self._max_poll_interval = float(options["max_poll_interval"])
        self._validate_requests = bool(options["validate_requests"])
        self._payee = (
            codec.Payee(options["payee_account_name"], options["payee_bank_name"])
            if options["payee_account_name"] is not None else None
        )
        self._clock, self._sleep, self._now = clock, sleep, now
        self._new_request_id = new_request_id
        # Keys and certificates are loaded once, here; anything unusable stops start-up.
        private_key, certificate = common.load_signing_pair(
            agency, protocol="CBAS", key_kind="RSA", now=now()
        )
        try:
            self._signer = WsSecuritySigner(private_key, certificate)
        except (TypeError, ValueError) as exc:
            raise ConfigError("signing_key", f"cannot sign with it: {exc}") from exc
        bank_certificate = common.load_agency_certificate(agency, protocol="CBAS", now=now())
        self.bank_cert_sha256 = cert_sha256(bank_certificate)
        if self.bank_cert_sha256 == self._signer.cert_sha256:
            # Always a configuration mistake: responses must come from the bank's certificate.
            raise ConfigError("agency_key", "is our own certificate, not the bank's")
        # CBAS-07: the configured bank certificate is the only trusted responder.
        self._verifier = WsSecurityVerifier({self.bank_cert_sha256: bank_certificate}, clock=now)
        self._soap: SoapTransport[VerifiedEnvelope] = SoapTransport(
            agency, version="1.1", wsdl_path=codec.wsdl_path(), signer=self._sign,
            verifier=self._verifier.verify, prefixes={"cbas": codec.CBAS_NS}, clock=clock,
        )

    @property
    def cert_sha256(self) -> str:
        """Our certificate's SHA-256, as the bank must have it in its caller list."""
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
            operation = codec.operation_for(command)
        except codec.InvalidCommand as exc:
            raise RejectedError(f"{self._agency.id}: {exc}", code="unsupported") from exc
        state = _resumed(call.resume)
        wait: float
        if state is None:
            receipt, since = await self._submit(command, operation)
            wait = float(receipt.retry_after)
            state = {
                "ticketId": receipt.ticket_id,
                "acceptedAt": to_json(receipt.accepted_at),
                "pollAfter": receipt.retry_after,
                "replayed": receipt.replayed,
                "nextPollAt": to_json(self._now() + dt.timedelta(seconds=wait)),
            }
            # Before polling: a crash, a timeout or a pending hand-back from here on resumes
            # polling this ticket instead of submitting again (stored while we wait out
            # retryAfterSeconds).
            return await self._poll(call, command, operation, state, wait, since, save=True)
        # Resumed: wait out what is left of the last retryAfterSeconds (CBAS-23), e.g. when
        # the dispatcher capped the delay it parked the item for.
        wait = _remaining(state, self._now())
        return await self._poll(call, command, operation, state, wait, self._clock())

    @property
    def transport(self) -> RestTransport:
        """The HTTP transport under the SOAP one (operators' metrics read its throttle)."""
        return self._soap.rest

    async def aclose(self) -> None:
        await self._soap.aclose()

    # --- submit and poll -----------------------------------------------------------------

    async def _submit(
        self, command: InquiryCommand | ControlCommand, operation: str
    ) -> tuple[codec.Receipt, float]:
        """The bank's Receipt, and when it was received (``before_poll``'s ``since``)."""
        try:
            _, payload = codec.request_payload(command, self._payee)
        except codec.InvalidCommand as exc:
            raise RejectedError(f"{self._what(operation)}: {exc}", code="invalid-command") from exc
        # CBAS-22: the payload is a pure function of the command, so the dispatcher's resend
        # after a lost Receipt carries the same requestId and content; only the Security header
        # (Timestamp, ids, signature) is new on each send.
        reply = await self._exchange(operation, payload)
        doc = self._decode_payload(operation, reply, applied=True)
        try:
            return codec.decode_receipt(doc, command.request_id), reply.http.received
        except codec.InvalidResponse as exc:
            raise self._invalid(operation, str(exc), applied=True) from exc

    async def _poll(
        self,
        call: AgencyCall,
        command: InquiryCommand | ControlCommand,
        operation: str,
        state: dict[str, Any],
        wait: float,
        since: float,
        *,
        save: bool = False,
    ) -> Outcome:
        """Poll the ticket in ``state`` until it is final, the first time ``wait`` seconds after
        ``since`` (the monotonic clock's); ``save``: checkpoint ``state`` before that poll."""
        ticket_id: str = state["ticketId"]
        replayed = state.get("replayed") is True
        deadline = self._clock() + self._poll_deadline
        while True:
            # CBAS-23: poll no earlier than retryAfterSeconds. A wait past the in-process limit
            # or the deadline goes back to the dispatcher; the checkpoint stays and remembers
            # when the next poll may go out.
            if wait > 0 and (wait > self._max_poll_interval or self._clock() + wait > deadline):
                state = {**state,
                         "nextPollAt": to_json(self._now() + dt.timedelta(seconds=wait))}
                await call.checkpoint(state)
                raise ResultPendingError(
                    f"{self._agency.id}: ticket {ticket_id} ({operation}) still pending",
                    code="PENDING", retry_after=wait,
                )
            await before_poll(call, state if save else None, wait, since=since,
                              clock=self._clock, sleep=self._sleep)
            save = False
            answer, since = await self._fetch(command, ticket_id, replayed)
            if answer.status == "PENDING":
                wait = float(answer.retry_after or 1)
                continue
            if answer.rejection is not None:
                code, message = answer.rejection
                # CBAS-23: a REJECTED ticket is final, whatever its code.
                raise faults.rejection_error(code, message, ticket_id=ticket_id,
                                             what=self._what(operation))
            assert answer.outcome is not None
            return answer.outcome

    async def _fetch(
        self, command: InquiryCommand | ControlCommand, ticket_id: str, replayed: bool
    ) -> tuple[codec.FetchAnswer, float]:
        """One FetchResult answer, and when it was received."""
        # CBAS-23 / README §7: every poll has a new requestId (tracing only, never deduplicated).
        payload = codec.fetch_payload(self._new_request_id(), ticket_id)
        reply = await self._exchange("FetchResult", payload)
        doc = self._decode_payload("FetchResult", reply, applied=False)
        try:
            return (codec.decode_fetch(doc, command, ticket_id, replayed=replayed),
                    reply.http.received)
        except codec.InvalidResponse as exc:
            # Not an answer to our question (another ticket, request or operation): transient;
            # the checkpoint keeps the ticket, so the next attempt asks again.
            raise self._invalid("FetchResult", str(exc), applied=False) from exc

    # --- one exchange --------------------------------------------------------------------

    def _sign(self, envelope: etree._Element) -> bytes:
        """Transport hook, run on every send: a resend gets a new Timestamp and ids (CBAS-02)."""
        return self._signer.sign(envelope, created=self._now())

    def _what(self, operation: str) -> str:
        return f"{self._agency.id}: {operation}"

    async def _exchange(self, operation: str, payload: Mapping[str, Any]) -> SoapReply[Any]:
        """Build, check, sign and send one request; return the verified, non-fault reply."""
        # CBAS-01: a request the bank would answer SCHEMA_INVALID is not sent.
        envelope = common.build_request(
            lambda: self._soap.build(operation, **payload), what=self._what(operation),
            soap_ns=SOAP11_NS, errors_of=codec.schema_errors if self._validate_requests else None,
        )
        # CBAS-07: a 200 or 500 whose body is not a SOAP envelope is a discarded answer.
        reply: SoapReply[Any] = await common.call_verified(self._soap.call(operation, envelope))
        if reply.fault is not None:
            raise self._fault_error(operation, reply.fault)
        return reply

    def _decode_payload(
        self, operation: str, reply: SoapReply[Any], *, applied: bool
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

    def _fault_error(self, operation: str, fault: SoapFault) -> AgencyError:
        """§5: a verified fault → the gateway error its code stands for."""
        code: str | None = None
        message, retry_after = fault.reason, None
        detail = fault.detail_element
        if detail is not None and detail.tag == _FAULT_DETAIL and not codec.schema_errors(detail):
            doc = common.plain(self._soap.parse_element(detail))
            code, message = doc["code"], doc["message"] or fault.reason
            retry_after = doc.get("retryAfterSeconds")
        return faults.fault_error(
            code, message, retry_after=retry_after,
            server_fault=fault.code == _SERVER_FAULT, what=self._what(operation),
        )

    def _invalid(self, operation: str, reason: str, *, applied: bool) -> TransientError:
        """A verified answer we cannot use. README §8: not a protocol response, so transient.

        For a submit the bank may have recorded the request (a Receipt we could not read), so
        the outcome is unknown: only the resend with the same requestId is safe, and it returns
        the recorded Receipt (README §7).
        """
        message = f"{self._what(operation)}: not a valid CBAS answer: {reason}"
        if applied:
            return OutcomeUnknownError(message, code="invalid-response")
        return TransientError(message, code="invalid-response")


def _resumed(resume: Mapping[str, Any]) -> dict[str, Any] | None:
    """The checkpointed ticket state, or None to submit (again, with the same requestId)."""
    ticket_id = resume.get("ticketId")
    if not isinstance(ticket_id, str) or not AGENCY_ID_RE.match(ticket_id):
        return None
    return dict(resume)


def _remaining(state: Mapping[str, Any], now: dt.datetime) -> float:
    """Seconds until the checkpointed ``nextPollAt`` (0 when absent, unreadable or past)."""
    raw = state.get("nextPollAt")
    if not isinstance(raw, str):
        return 0.0
    try:
        at = dt.datetime.fromisoformat(raw)
    except ValueError:
        return 0.0
    if at.tzinfo is None:
        return 0.0
    seconds = (at - now).total_seconds()
    return 0.0 if seconds <= 0 else math.ceil(seconds * 1000) / 1000
