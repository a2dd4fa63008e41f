"""What the two SOAP adapters (bank CBAS v1, land registry RERS v1) share, written once.

Both carry the agency's WSDL/XSD beside their code, load an X.509 signing certificate, its key
and the agency's certificate at start-up, render the README §6 request context the same way,
check each request against the XSD before spending a call, map a non-SOAP answer to a
discarded, unverifiable response, and decode verified answers from zeep's plain mappings with
the same strict readers. The protocol flows, signature profiles and fault tables differ and stay
in each adapter's package.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final, TypeVar

from cryptography import x509
from lxml import etree
from zeep.helpers import serialize_object

from gateway.config import AgencyConfig
from gateway.errors import (
    AgencyError,
    ConfigError,
    RejectedError,
    ResponseVerificationError,
    SignatureRejectedError,
    TransientError,
)
from gateway.model.rules import format_money, parse_money
from gateway.model.types import DocumentRef, Money, Subject
from gateway.security.certs import (
    SigningKey,
    check_key_pair,
    check_signing_certificate,
    load_certificate,
    load_private_key,
)

__all__ = [
    "SECURITY_CODES",
    "InvalidCommand",
    "InvalidResponse",
    "build_request",
    "call_verified",
    "check_options",
    "contract_path",
    "contract_schema",
    "date_field",
    "document",
    "elements",
    "fault_error",
    "field",
    "integer",
    "load_agency_certificate",
    "load_signing_pair",
    "money",
    "money_value",
    "opt_text",
    "plain",
    "same",
    "schema_errors",
    "subject",
    "text",
    "timestamp",
]

_T = TypeVar("_T")

# README §8 / both ICDs' §4 receiver checks (1), (2) and (4) on the agency's side: it refused
# our signature, certificate or timestamp. Resending the same thing cannot help and an operator
# must look (CBAS-22, RERS-21).
SECURITY_CODES: Final = frozenset(
    {"SIGNATURE_INVALID", "CERTIFICATE_UNTRUSTED", "TIMESTAMP_EXPIRED"}
)


class InvalidCommand(Exception):
    """The command lacks what its agency operation needs; the agency could only refuse it."""


class InvalidResponse(Exception):
    """A verified answer that is not a usable answer to our request."""


# --- the agency's contract ------------------------------------------------------------------


def contract_path(package: str, filename: str) -> Path:
    """A contract file (WSDL, XSD) shipped unchanged inside an adapter package."""
    return Path(str(resources.files(package).joinpath(filename)))


@functools.cache
def contract_schema(package: str, filename: str) -> etree.XMLSchema:
    """The package's XSD, compiled once (no network: the agencies' XSDs import nothing)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(contract_path(package, filename)), parser))


def schema_errors(xsd: etree.XMLSchema, element: etree._Element) -> list[str]:
    """Every way a payload element (a Body child) breaks ``xsd``; empty when it conforms.

    A copy is validated as a document root: the XSDs declare the payload elements globally.
    """
    if xsd.validate(etree.ElementTree(copy.deepcopy(element))):
        return []
    log: Any = xsd.error_log  # lxml-stubs declare _ErrorLog without its iterator
    return [f"line {e.line}: {e.message}" for e in log]


# --- one exchange ---------------------------------------------------------------------------


def build_request(
    build: Callable[[], etree._Element],
    *,
    what: str,
    soap_ns: str,
    errors_of: Callable[[etree._Element], list[str]] | None,
) -> etree._Element:
    """The request envelope ``build()`` renders, checked against the XSD when ``errors_of``.

    A command the operation cannot carry, or a payload the agency would answer with
    SCHEMA_INVALID (CBAS-01, RERS-02), is a ``RejectedError("invalid-request")``: no call is
    spent on it.
    """
    try:
        envelope = build()
    except ValueError as exc:
        raise RejectedError(f"{what}: {exc}", code="invalid-request") from exc
    if errors_of is not None:
        body = envelope.find(f"{{{soap_ns}}}Body")
        errors = errors_of(body[0]) if body is not None and len(body) else ["no Body"]
        if errors:
            raise RejectedError(
                f"{what}: request does not match the XSD: " + "; ".join(errors[:5]),
                code="invalid-request",
            )
    return envelope


async def call_verified(call: Awaitable[_T]) -> _T:
    """Await the SOAP call; an answer whose body is not a SOAP envelope fails verification.

    CBAS-07 / RERS-07: such an answer (whatever its status) fails the first check of §4 like
    any other unverifiable answer: discarded, transient, and recorded as a security event (the
    endpoint answered with something it must not).
    """
    try:
        return await call
    except ResponseVerificationError:
        raise
    except TransientError as exc:
        if exc.code == "not-soap":
            raise ResponseVerificationError(str(exc), code="not-soap") from exc
        raise


# --- configuration --------------------------------------------------------------------------


def check_options(
    raw: Mapping[str, Any],
    table: Mapping[str, tuple[object, str]],
    *,
    special: Callable[[str, Any], None] | None = None,
) -> dict[str, Any]:
    """``options`` with defaults filled in; unknown keys and ill-typed values are ConfigErrors.

    A boolean default takes booleans only, a numeric one numbers > 0; keys whose default is
    None are checked by ``special(key, value)``, which raises ConfigError itself.
    """
    out = {k: default for k, (default, _) in table.items()}
    for key, value in raw.items():
        if key not in table:
            raise ConfigError(f"options.{key}", f"unknown option (known: {', '.join(table)})")
        default = table[key][0]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"options.{key}", "must be a boolean")
        elif default is None:
            if special is None:
                raise ConfigError(f"options.{key}", "cannot be checked")
            special(key, value)
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"options.{key}", "must be a number greater than 0")
        out[key] = value
    return out


def _certificate(
    agency: AgencyConfig, key: str, now: dt.datetime, protocol: str
) -> x509.Certificate:
    path = getattr(agency, key)
    if path is None:
        raise ConfigError(key, f"{protocol} needs this X.509 certificate (PEM)")
    try:
        cert = load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(key, f"cannot load a certificate: {exc}") from exc
    # Validity, keyUsage digitalSignature and key strength (CBAS §4, RERS §4).
    reason = check_signing_certificate(cert, now=now)
    if reason is not None:
        raise ConfigError(key, f"cannot sign {protocol} messages: {reason}")
    return cert


def load_signing_pair(
    agency: AgencyConfig,
    *,
    protocol: str,
    key_kind: str,
    now: dt.datetime,
    accept: Callable[[SigningKey], str | None] | None = None,
) -> tuple[SigningKey, x509.Certificate]:
    """Our private key (``signing_key``) and certificate (``signing_cert``), loaded and paired.

    ``accept(key)`` returns why the key cannot sign this protocol, or None. Every failure is a
    ConfigError naming the key that is wrong.
    """
    if agency.signing_key is None:
        raise ConfigError("signing_key", f"{protocol} needs our {key_kind} private key (PEM)")
    try:
        private_key = load_private_key(agency.signing_key)
    except (OSError, ValueError) as exc:
        raise ConfigError("signing_key", f"cannot load a private key: {exc}") from exc
    reason = accept(private_key) if accept is not None else None
    if reason is not None:
        raise ConfigError("signing_key", f"cannot sign {protocol} messages: {reason}")
    certificate = _certificate(agency, "signing_cert", now, protocol)
    try:
        check_key_pair(private_key, certificate)
    except ValueError as exc:
        raise ConfigError("signing_key", f"cannot sign with it: {exc}") from exc
    return private_key, certificate


def load_agency_certificate(
    agency: AgencyConfig, *, protocol: str, now: dt.datetime
) -> x509.Certificate:
    """The agency's certificate (``agency_key``): the only one trusted on its answers."""
    return _certificate(agency, "agency_key", now, protocol)


# --- requests: README §6 values as zeep keyword arguments -----------------------------------


def money(m: Money) -> dict[str, str]:
    # zeep renders simpleContent as _value_1 plus the attribute; the currency is always
    # stated, even when CNY, so equal commands render equal payloads.
    return {"_value_1": format_money(m.amount), "currency": m.currency}


def document(d: DocumentRef) -> dict[str, Any]:
    out: dict[str, Any] = {"documentId": d.document_id, "sha256": d.sha256}
    if d.content is not None:
        out["content"] = d.content  # zeep writes xs:base64Binary (RFC 4648 §4, padded)
    return out


def subject(s: Subject) -> dict[str, str]:
    return {"idType": s.id_type.value, "idNumber": s.id_number, "name": s.name}


# --- answers: strict readers over zeep's plain mappings -------------------------------------


def plain(parsed: Any) -> Any:
    """zeep's objects as plain dicts and lists (scalars stay as zeep typed them)."""
    return serialize_object(parsed, dict)  # type: ignore[no-untyped-call]


def field(doc: Mapping[str, Any], name: str) -> Any:
    value = doc.get(name)
    if value is None:
        raise InvalidResponse(f"missing {name}")
    return value


def text(doc: Mapping[str, Any], name: str) -> str:
    value = field(doc, name)
    if not isinstance(value, str):
        raise InvalidResponse(f"{name} is not text")
    return value


def opt_text(doc: Mapping[str, Any], name: str) -> str | None:
    return None if doc.get(name) is None else text(doc, name)


def integer(doc: Mapping[str, Any], name: str) -> int:
    value = field(doc, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidResponse(f"{name} is not an integer")
    return value


def timestamp(doc: Mapping[str, Any], name: str) -> dt.datetime:
    value = field(doc, name)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidResponse(f"{name}: {exc}") from exc
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise InvalidResponse(f"{name} is not a UTC timestamp")
    if value.utcoffset() != dt.timedelta(0):
        raise InvalidResponse(f"{name} is not in UTC (README §4)")
    return value.astimezone(dt.UTC)


def date_field(doc: Mapping[str, Any], name: str) -> dt.date | None:
    """A LocalDate: the CST calendar date as sent, no offset, no conversion (README §4)."""
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError as exc:
            raise InvalidResponse(f"{name}: {exc}") from exc
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise InvalidResponse(f"{name} is not a local date")
    return value


def money_value(doc: Mapping[str, Any], name: str) -> Money:
    value = field(doc, name)
    if not isinstance(value, Mapping):
        raise InvalidResponse(f"{name} is not a Money element")
    amount, currency = value.get("_value_1"), value.get("currency") or "CNY"  # XSD default
    if not isinstance(amount, str) or not isinstance(currency, str):
        raise InvalidResponse(f"{name} is not an amount with a currency")
    try:
        return Money(parse_money(amount), currency)  # a decimal string, never through float
    except ValueError as exc:
        raise InvalidResponse(f"{name}: {exc}") from exc


def elements(doc: Mapping[str, Any], name: str) -> Sequence[Mapping[str, Any]]:
    value = doc.get(name)
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, Mapping) for v in value):
        raise InvalidResponse(f"{name} is not a list of elements")
    return value


def same(what: str, got: str | None, sent: str | None) -> None:
    if got != sent:
        raise InvalidResponse(f"{what} {got}, not the {sent} we sent")


# --- faults ---------------------------------------------------------------------------------


def fault_error(
    code: str | None,
    message: str,
    *,
    transient_codes: frozenset[str],
    retry_after: int | None = None,
    receiver_fault: bool = False,
    receiver_name: str,
    sender_name: str,
    what: str,
) -> AgencyError:
    """The error for a verified SOAP fault whose detail carried ``code`` (None: no detail).

    * transient codes → ``TransientError(retry_after=retryAfterSeconds)``;
    * the agency refusing our own signature, certificate or timestamp → ``SignatureRejectedError``;
    * a fault without a readable detail: the receiver/server fault code says the agency failed
      (transient), the sender/client code that our message was at fault (permanent);
    * every other code → ``RejectedError(code)``.
    """
    text_ = f"{what}: fault {code or (receiver_name if receiver_fault else sender_name)}: {message}"
    if code is None:
        if receiver_fault:
            return TransientError(text_, code="SERVER_FAULT", retry_after=retry_after)
        return RejectedError(text_, code="CLIENT_FAULT")
    if code in transient_codes:
        return TransientError(
            text_, code=code, retry_after=float(retry_after) if retry_after is not None else None
        )
    if code in SECURITY_CODES:
        return SignatureRejectedError(text_, code=code)
    return RejectedError(text_, code=code)
