"""Court-side adapter for the vehicle registry's Vehicle Registration Service (VRS) v2.

Counterparty: the vehicle registry (车辆管理所), interface VRS v2, REST/JSON under ``/v2`` at a
base URL the registry publishes out of band (``agency.endpoint``). Contract: the ICD
``vehicle-registry-vrs-v2.md`` and its OpenAPI 3.1 file, copied unchanged beside this module.
Operations: vehicle inquiry (asynchronous query, polled), seizure, renewal, release.

Keys: every message in both directions is signed with RFC 9421 (Ed25519, label ``sig1``, tag
``vrs-v2``) and carries ``Content-Digest`` (RFC 9530). The court operator generates its own
Ed25519 key pair (``gateway.security.keys.generate_ed25519_jwk``) and registers the public JWK
with the registry out of band; the registry lists its RFC 7638 thumbprint (the ``keyid``) in its
caller list with the court codes it may act for. The registry hands over its own public key the
same way; it is configured as ``agency_key`` and its thumbprint is the only ``keyid`` accepted
on responses. Configuration: ``signing_key`` (secret: our private key file; never logged),
``agency_key`` (public), ``endpoint``, optional ``ca_file`` / ``client_cert`` for TLS, and
``options`` below.

The adapter is protocol flow only: it never retries (the dispatcher does), and the poll loop of
an inquiry is the protocol's own flow, checkpointed so a later attempt resumes polling.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeVar

from gateway.adapters.base import AgencyCall, Capabilities, before_poll
from gateway.adapters.vrs import codec, problems
from gateway.config import AgencyConfig
from gateway.errors import (
    ConfigError,
    RejectedError,
    ResponseVerificationError,
    ResultPendingError,
)
from gateway.model.types import (
    Action,
    AgencyKind,
    ControlCommand,
    ControlOutcome,
    InquiryCommand,
    InquiryResult,
    Outcome,
)
from gateway.protocols import timers
from gateway.protocols.rest import OutgoingRequest, RestResponse, RestTransport, SentRequest
from gateway.security.digest import content_digest
from gateway.security.httpsig import (
    SignatureCheckError,
    Signer,
    Verifier,
    request_signature_member,
    target_uri,
)
from gateway.security.keys import jwk_thumbprint, load_ed25519_private, load_ed25519_public

__all__ = ["OPTIONS", "VrsAdapter"]

T = TypeVar("T")

# options.<key> → (default, meaning). Unknown keys are configuration errors.
OPTIONS: Final[Mapping[str, tuple[object, str]]] = {
    "poll_deadline_seconds": (600.0, "longest one attempt polls a query before handing back"),
    "max_poll_interval": (30.0, "longest in-process wait between polls; longer waits are handed "
                                "back to the dispatcher as ResultPendingError(retry_after)"),
    "validate_requests": (True, "check each request body against the OpenAPI file before sending"),
}

_AGENCY_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")  # README §4: agency-issued ids
_REQUEST_ID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_JSON: Final = "application/json"  # VRS §1: exactly this, no charset parameter


@dataclass(frozen=True, slots=True)
class _Operation:
    """One VRS operation as the OpenAPI file declares it."""

    operation_id: str
    method: str
    path_template: str
    success: int
    request_schema: str | None
    statuses: frozenset[int]  # every status the contract lists, success included


def _operation(operation_id: str, method: str, path: str, success: int,
               request_schema: str | None) -> _Operation:
    # VRS-01: the statuses an operation may answer come from the agency's own contract.
    responses = codec.openapi_document()["paths"][path][method.lower()]["responses"]
    return _Operation(operation_id, method, path, success, request_schema,
                      frozenset(int(s) for s in responses))


_CREATE_QUERY = _operation("createVehicleQuery", "POST", "/v2/vehicle-queries", 202,
                           "VehicleQueryRequest")
_GET_QUERY = _operation("getVehicleQuery", "GET", "/v2/vehicle-queries/{queryId}", 200, None)
_CREATE_SEIZURE = _operation("createSeizure", "POST", "/v2/seizures", 201, "SeizureRequest")
_RENEW_SEIZURE = _operation("renewSeizure", "POST", "/v2/seizures/{seizureId}/renewals", 200,
                            "SeizureRenewalRequest")
_RELEASE_SEIZURE = _operation("releaseSeizure", "DELETE", "/v2/seizures/{seizureId}", 200,
                              "SeizureReleaseRequest")


def _options(raw: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: default for k, (default, _) in OPTIONS.items()}
    for key, value in raw.items():
        if key not in OPTIONS:
            raise ConfigError(f"options.{key}", f"unknown option (known: {', '.join(OPTIONS)})")
        if isinstance(OPTIONS[key][0], bool):
            if not isinstance(value, bool):
                raise ConfigError(f"options.{key}", "must be a boolean")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"options.{key}", "must be a number greater than 0")
        out[key] = value
    return out


class VrsAdapter:
    """One configured vehicle registry: signs, sends, verifies and maps VRS v2 exchanges."""

    name: ClassVar[str] = "vrs"
    capabilities: ClassVar[Capabilities] = Capabilities(
        kind=AgencyKind.VEHICLE,
        inquiry=True,
        actions=frozenset({Action.SEIZE, Action.RENEW_SEIZURE, Action.RELEASE_SEIZURE}),
    )

    def __init__(
        self,
        agency: AgencyConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = timers.sleep,
    ) -> None:
        self._agency = agency
        options = _options(agency.options)
        self._poll_deadline = float(options["poll_deadline_seconds"])
        self._max_poll_interval = float(options["max_poll_interval"])
        self._validate_requests = bool(options["validate_requests"])
        self._clock, self._sleep = clock, sleep
        try:
            target_uri(agency.endpoint, "/")  # the endpoint must be an origin (VRS §5)
        except ValueError as exc:
            raise ConfigError("endpoint", str(exc)) from exc
        self._endpoint = agency.endpoint
        # Keys are loaded once, here; a missing or unreadable key stops start-up.
        if agency.signing_key is None:
            raise ConfigError("signing_key", "VRS needs our Ed25519 private key (JWK or PEM)")
        try:
            self._signer = Signer(load_ed25519_private(agency.signing_key))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError("signing_key", f"cannot load an Ed25519 private key: {exc}") from exc
        if agency.agency_key is None:
            raise ConfigError("agency_key", "VRS needs the registry's Ed25519 public key")
        try:
            agency_public = load_ed25519_public(agency.agency_key)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError("agency_key", f"cannot load an Ed25519 public key: {exc}") from exc
        self.agency_keyid = jwk_thumbprint(agency_public)
        if self.agency_keyid == self._signer.keyid:
            # Always a configuration mistake: responses must come from the registry's key.
            raise ConfigError("agency_key", "is our own signing key, not the registry's")
        # VRS-08: the registry's registered key is the only trusted responder.
        self._verifier = Verifier({self.agency_keyid: agency_public})
        self._rest = RestTransport(agency, signer=self._sign, clock=clock)

    @property
    def transport(self) -> RestTransport:
        """The HTTP transport (operators' metrics read its throttle)."""
        return self._rest

    @property
    def keyid(self) -> str:
        """Our keyid, as the registry must have it in its caller list."""
        return self._signer.keyid

    # --- the seam ------------------------------------------------------------------------

    async def execute(self, call: AgencyCall) -> Outcome:
        """Run one attempt of ``call.command``; raises ``gateway.errors`` on any failure."""
        command = call.command
        if isinstance(command, InquiryCommand):
            _check_request_id(command.request_id)
            return await self._inquire(call, command)
        _check_request_id(command.request_id)
        if command.action is Action.SEIZE:
            return await self._seize(command)
        if command.action is Action.RENEW_SEIZURE:
            return await self._renew(command)
        if command.action is Action.RELEASE_SEIZURE:
            return await self._release(command)
        raise RejectedError(f"vrs does not support {command.action.value}", code="unsupported")

    async def aclose(self) -> None:
        await self._rest.aclose()

    # --- inquiry -------------------------------------------------------------------------

    async def _inquire(self, call: AgencyCall, command: InquiryCommand) -> InquiryResult:
        query_id = call.resume.get("queryId")
        wait: float
        since: float  # when the answer asking for ``wait`` came
        save: dict[str, Any] | None = None
        if isinstance(query_id, str) and _AGENCY_ID.match(query_id):
            # Resumed: the dispatcher already waited what we last handed back.
            wait, since = 0.0, self._clock()
        else:
            resp, doc = await self._exchange(
                _CREATE_QUERY, "/v2/vehicle-queries", codec.query_request(command),
                command.request_id,
            )
            query_id, wait = self._decode(_CREATE_QUERY, resp, codec.query_accepted, doc)
            since = resp.received
            # Before polling: a crash or a timeout from here on resumes polling this query
            # instead of posting again (stored while we wait out retryAfterSeconds).
            save = {"queryId": query_id}
        path = f"/v2/vehicle-queries/{query_id}"
        deadline = self._clock() + self._poll_deadline
        while True:
            # VRS §3: poll no earlier than retryAfterSeconds. A wait past the deadline or the
            # in-process limit goes back to the dispatcher; the checkpoint stays.
            if wait > 0 and (wait > self._max_poll_interval or self._clock() + wait > deadline):
                if save is not None:
                    await call.checkpoint(save)
                raise ResultPendingError(
                    f"{self._agency.id}: query {query_id} still pending",
                    code="query-pending", retry_after=wait,
                )
            await before_poll(call, save, wait, since=since, clock=self._clock,
                              sleep=self._sleep)
            save = None
            resp, doc = await self._exchange(_GET_QUERY, path, None, None)
            state = self._decode(
                _GET_QUERY, resp, lambda d: codec.query_state(d, command.subject), doc
            )
            if state.result is not None:
                return state.result
            wait, since = float(state.retry_after or 1), resp.received

    # --- control actions -----------------------------------------------------------------

    async def _seize(self, command: ControlCommand) -> ControlOutcome:
        if command.subject is None or command.vin is None or command.days is None:
            raise _invalid_command(command, "subject, vin and days")
        body = codec.seizure_request(
            command.context, command.subject, command.vin, command.plate, command.days
        )
        resp, doc = await self._exchange(_CREATE_SEIZURE, "/v2/seizures", body, command.request_id)
        return self._decode(
            _CREATE_SEIZURE, resp, lambda d: codec.seizure_outcome(d, replayed=_replayed(resp)), doc
        )

    async def _renew(self, command: ControlCommand) -> ControlOutcome:
        seizure_id = _seizure_id(command)
        if command.days is None:
            raise _invalid_command(command, "seizure_id and days")
        body = codec.renewal_request(command.context, command.days)
        resp, doc = await self._exchange(
            _RENEW_SEIZURE, f"/v2/seizures/{seizure_id}/renewals", body, command.request_id
        )
        outcome = self._decode(
            _RENEW_SEIZURE, resp, lambda d: codec.renewal_outcome(d, replayed=_replayed(resp)), doc
        )
        return self._same_measure(_RENEW_SEIZURE, resp, outcome, seizure_id)

    async def _release(self, command: ControlCommand) -> ControlOutcome:
        seizure_id = _seizure_id(command)
        # VRS §2: DELETE with a JSON body (context only).
        body = codec.release_request(command.context)
        resp, doc = await self._exchange(
            _RELEASE_SEIZURE, f"/v2/seizures/{seizure_id}", body, command.request_id
        )
        outcome = self._decode(
            _RELEASE_SEIZURE, resp, lambda d: codec.release_outcome(d, replayed=_replayed(resp)),
            doc,
        )
        return self._same_measure(_RELEASE_SEIZURE, resp, outcome, seizure_id)

    def _same_measure(
        self, op: _Operation, resp: RestResponse, outcome: ControlOutcome, seizure_id: str
    ) -> ControlOutcome:
        if outcome.measure_id != seizure_id:
            raise problems.invalid_response_error(
                resp.status, f"answers for seizure {outcome.measure_id}, not {seizure_id}",
                self._what(op), applied=True,
            )
        return outcome

    # --- one exchange --------------------------------------------------------------------

    def _sign(self, request: OutgoingRequest) -> Mapping[str, str]:
        """Transport hook, run on every send: a resend gets a new created and nonce (VRS-21)."""
        target = target_uri(self._endpoint, request.path_and_query)
        return self._signer.sign_request(request.method, target, request.headers)  # VRS-03

    def _what(self, op: _Operation) -> str:
        return f"{self._agency.id}: {op.operation_id}"

    async def _exchange(
        self, op: _Operation, path: str, body_doc: Mapping[str, Any] | None,
        idempotency_key: str | None,
    ) -> tuple[RestResponse, Any]:
        """Send one request and return the verified success response with its parsed JSON.

        Problems and unexpected statuses are raised as gateway errors; the success body is
        decoded by the caller (``_decode``), which knows its schema.
        """
        headers: dict[str, str] = {}
        body: bytes | None = None
        if body_doc is not None:
            assert op.request_schema is not None
            assert idempotency_key is not None
            if self._validate_requests:
                errors = codec.schema_errors(op.request_schema, body_doc)  # VRS-01
                if errors:
                    # The registry would answer 400 invalid-request; do not spend a call on it.
                    raise RejectedError(
                        f"{self._what(op)}: request does not match {op.request_schema}: "
                        + "; ".join(errors[:5]),
                        code="invalid-request",
                    )
            body = codec.dumps(body_doc)  # deterministic: a retry sends the same bytes (VRS-21)
            headers = {
                "Content-Type": _JSON,
                "Content-Digest": content_digest(body),  # VRS-02
                "Idempotency-Key": idempotency_key,  # VRS §4: bare lowercase UUID
            }
        resp = await self._rest.request(op.method, path, body=body, headers=headers)
        self._verify(op, resp)
        if resp.status not in op.statuses:
            raise problems.unexpected_status_error(
                resp.status, self._what(op), mutating=op.method != "GET"
            )
        applied = resp.status == op.success and op.method != "GET"
        try:
            media = _media_type(resp)
            if resp.status == op.success:
                if media != _JSON:
                    raise codec.InvalidResponse(f"content type {media!r}, not {_JSON}")
                return resp, codec.parse_json(resp.body)
            if media != "application/problem+json":
                raise codec.InvalidResponse(f"problem with content type {media!r}")
            problem = codec.parse_json(resp.body)
            errors = codec.schema_errors("Problem", problem)
            if errors:
                raise codec.InvalidResponse("; ".join(errors[:5]))
        except codec.InvalidResponse as exc:
            # README §8: a body that is not a protocol response counts as transient, even when
            # signed: we cannot act on what we cannot read.
            raise problems.invalid_response_error(
                resp.status, str(exc), self._what(op), applied=applied
            ) from exc
        raise problems.problem_error(
            resp.status, problem, resp.headers.get("Retry-After"), self._what(op)
        )

    def _verify(self, op: _Operation, resp: RestResponse) -> None:
        """VRS-08: signature, keyid, request binding, freshness and digest, or the response is
        discarded. Nothing of an unverified response (status included) is used."""
        sent = resp.request
        try:
            keyid = self._verifier.verify_response(
                resp.status, resp.headers, resp.body,
                request_method=sent.method,
                request_target_uri=target_uri(self._endpoint, sent.path_and_query),
                request_signature=_sent_signature_member(sent),
            )
        except SignatureCheckError as exc:
            raise ResponseVerificationError(
                f"{self._what(op)}: response failed verification: {exc}", code=exc.reason
            ) from exc
        if keyid != self.agency_keyid:  # the Verifier trusts only that key; belt and braces
            raise ResponseVerificationError(
                f"{self._what(op)}: response signed by {keyid}", code="key-untrusted"
            )

    def _decode(self, op: _Operation, resp: RestResponse,
                decode: Callable[[Any], T], doc: Any) -> T:
        try:
            return decode(doc)
        except codec.InvalidResponse as exc:
            raise problems.invalid_response_error(
                resp.status, str(exc), self._what(op), applied=op.method != "GET"
            ) from exc


def _sent_signature_member(sent: SentRequest) -> str | None:
    """``request_signature_member`` of a request we signed: our Signer writes one
    ``sig1=:<base64>:``, whose member is the text after ``sig1=`` when the base64 is canonical.
    Anything else goes through the RFC 8941 parser."""
    values = sent.headers.getall("Signature", ())
    if len(values) == 1:
        value = values[0].strip(" \t")
        if len(value) > 7 and value.startswith("sig1=:") and value.endswith(":"):
            text = value[6:-1]
            try:
                canonical = base64.b64encode(base64.b64decode(text, validate=True)) == text.encode()
            except (binascii.Error, ValueError):
                canonical = False
            if canonical:
                return value[5:]
    return request_signature_member(sent.headers)


def _media_type(resp: RestResponse) -> str:
    return resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def _replayed(resp: RestResponse) -> bool:
    # VRS §4. The header is not covered by the response signature, so it is informational only:
    # nothing but the outcome's ``replayed`` flag depends on it.
    return resp.headers.get("Idempotent-Replayed", "").strip().lower() == "true"


def _check_request_id(request_id: str) -> None:
    if not _REQUEST_ID.match(request_id):
        raise RejectedError(
            f"request id {request_id!r} is not a lowercase UUID (VRS §4 Idempotency-Key)",
            code="invalid-request",
        )


def _seizure_id(command: ControlCommand) -> str:
    # It goes into the path: only an agency-issued id shape may (README §4).
    if command.seizure_id is None or not _AGENCY_ID.match(command.seizure_id):
        raise _invalid_command(command, "a seizure_id of 1-64 [A-Za-z0-9_-]")
    return command.seizure_id


def _invalid_command(command: ControlCommand, needs: str) -> RejectedError:
    return RejectedError(f"{command.action.value} needs {needs}", code="invalid-command")
