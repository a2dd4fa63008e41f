"""The VRS v2 profile of RFC 9421 HTTP message signatures (Ed25519, label ``sig1``, tag ``vrs-v2``).

Both ends of the VRS link use it: the court gateway signs requests and verifies responses, the
mock registry verifies requests and signs responses. The profile is fixed (VRS §5), so the
signature base is built here directly with string joins (2-13 times faster than a general
RFC 9421 engine: scripts/bench_httpsig.py); the ``Signature`` and ``Signature-Input`` structured
fields are still parsed and serialised by ``http_sfv``, never by hand or by regular expressions.
The tests cross-check every message against the independent ``http_message_signatures``.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_sfv.byteseq import ser_byteseq
from http_sfv.integer import ser_integer
from http_sfv.item import InnerList, Item
from http_sfv.string import ser_string

from gateway.security import ed25519
from gateway.security.digest import check_content_digest, parse_dictionary
from gateway.security.keys import jwk_thumbprint

LABEL: Final = "sig1"
ALG: Final = "ed25519"
TAG: Final = "vrs-v2"
MAX_VALIDITY: Final = 300  # VRS §5: 0 < expires - created <= 300
CLOCK_SKEW: Final = 300  # README §8: receivers allow 300 s of clock skew
NONCE_WINDOW: Final = 900  # VRS §5 check 5
SIGNATURE_BYTES: Final = ed25519.SIGNATURE_BYTES  # RFC 8032 §5.1.6
NONCE_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{22,64}")  # VRS §5, used with fullmatch()

# Covered components. Parameterless ones are plain names, the others serialised RFC 8941 Items:
# the convention of http_message_signatures' covered_component_ids, so both accept these tuples.
REQUEST_COMPONENTS_WITH_BODY: Final = (
    "@method", "@target-uri", "content-digest", "content-type", "idempotency-key",
)  # fmt: skip
REQUEST_COMPONENTS_GET: Final = ("@method", "@target-uri")
RESPONSE_COMPONENTS: Final = (
    "@status", "content-digest", "content-type",
    '"@method";req', '"@target-uri";req', '"signature";req;key="sig1"',
)  # fmt: skip
RESPONSE_COMPONENTS_UNBOUND: Final = RESPONSE_COMPONENTS[:-1]  # the request had no parsable sig1

REQUEST_PARAMS: Final = ("created", "expires", "keyid", "nonce", "alg", "tag")
RESPONSE_PARAMS: Final = ("created", "expires", "keyid", "alg", "tag")

Reason = Literal[
    "signature-invalid", "key-untrusted", "signature-expired", "nonce-replayed", "digest-mismatch"
]


class SignatureCheckError(Exception):
    """A message failed one of the VRS §5 checks; ``reason`` is the VRS problem name.

    Callers translate it once: the registry into a 401 problem ``urn:vrs:problem:<reason>``, the
    court side into ``ResponseVerificationError`` (transient, VRS-08).
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: Reason = reason
        self.message = message


class _MalformedError(ValueError):
    """A message cannot even be put into a signature base (duplicate, missing or bad field)."""


@dataclass(frozen=True, slots=True)
class _Profile:
    """One covered-component list, pre-serialised once at import."""

    prefixes: tuple[str, ...]  # '"@method": ', ... one per component, in order
    inner: str  # '("@method" "@target-uri" ...)' as http_sfv serialises it
    shape: tuple[tuple[object, tuple[tuple[str, object], ...]], ...]  # (value, params) per item
    fields: tuple[str, ...]  # header fields read from the message itself, lowercase, in order
    params: frozenset[str]
    wanted: frozenset[str]  # fields plus the two signature fields


def _profile(components: tuple[str, ...], params: tuple[str, ...]) -> _Profile:
    items = []
    for component in components:
        item = Item()
        if component.startswith('"'):
            item.parse(component.encode("ascii"))
        else:
            item.value = component
        items.append(item)
    fields = tuple(
        str(i.value) for i in items if not str(i.value).startswith("@") and "req" not in i.params
    )
    return _Profile(
        prefixes=tuple(f"{item}: " for item in items),
        inner=str(InnerList(items)),  # type: ignore[arg-type]  # http_sfv's hint is too narrow
        shape=tuple((i.value, tuple(i.params.items())) for i in items),
        fields=fields,
        params=frozenset(params),
        wanted=frozenset((*fields, "signature", "signature-input")),
    )


_WITH_BODY = _profile(REQUEST_COMPONENTS_WITH_BODY, REQUEST_PARAMS)
_GET = _profile(REQUEST_COMPONENTS_GET, REQUEST_PARAMS)
_REQUEST_PROFILES: Final = {"GET": _GET, "POST": _WITH_BODY, "DELETE": _WITH_BODY}  # VRS-03
_RESPONSE = _profile(RESPONSE_COMPONENTS, RESPONSE_PARAMS)
_RESPONSE_UNBOUND = _profile(RESPONSE_COMPONENTS_UNBOUND, RESPONSE_PARAMS)
_ALG_TAG: Final = f";alg={ser_string(ALG)};tag={ser_string(TAG)}"


def _pick(headers: Mapping[str, str], names: frozenset[str]) -> dict[str, str]:
    """The wanted fields, by lowercase name, values trimmed as RFC 9421 §2.1 does.

    A field given more than once (two lines, or two keys differing in case in a plain dict)
    is malformed: combining lines would sign a value no single header carries.
    """
    found: dict[str, str] = {}
    getall = getattr(headers, "getall", None)  # multidict: C lookup beats scanning every field
    if getall is not None:
        for name in names:
            values = getall(name, ())
            if len(values) > 1:
                raise _MalformedError(f"header {name} appears more than once")
            if values:
                found[name] = values[0].strip(" \t")
        return found
    for name, value in headers.items():
        key = name.lower()
        if key in names:
            if key in found:
                raise _MalformedError(f"header {name} appears more than once")
            found[key] = value.strip(" \t")
    return found


def _fields(profile: _Profile, found: Mapping[str, str]) -> list[str]:
    try:
        return [found[name] for name in profile.fields]
    except KeyError as exc:
        raise _MalformedError(f"covered header {exc.args[0]} is missing") from None


def _base(profile: _Profile, values: list[str], signature_params: str) -> bytes:
    """RFC 9421 §2.5: one ``"<component>": <value>`` line each, then ``@signature-params``."""
    lines = [prefix + value for prefix, value in zip(profile.prefixes, values, strict=True)]
    lines.append('"@signature-params": ' + signature_params)
    base = "\n".join(lines)
    # A CR or LF inside a value would forge extra lines; exactly one LF per component is allowed.
    if base.count("\n") != len(values) or "\r" in base:
        raise _MalformedError("a covered value contains CR or LF")
    try:
        return base.encode("ascii")
    except UnicodeEncodeError:
        raise _MalformedError("a covered value is not ASCII") from None


def _response_values(
    status: int,
    profile: _Profile,
    found: Mapping[str, str],
    request_method: str,
    request_target_uri: str,
    request_signature: str | None,
) -> list[str]:
    if type(status) is not int or not 100 <= status <= 999:
        raise _MalformedError(f"bad status {status!r}")
    values = [str(status), *_fields(profile, found), request_method, request_target_uri]
    if request_signature is not None:
        values.append(request_signature)
    return values


@functools.lru_cache(maxsize=64)
def _origin(base_url: str) -> str:
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    if default_port is None:
        raise ValueError(f"base URL {base_url!r} must be http or https")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"base URL {base_url!r} must be an origin: scheme, host and port only")
    host = parts.hostname
    if not host:
        raise ValueError(f"base URL {base_url!r} has no host")
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal: urlsplit drops the brackets
    port = parts.port  # raises ValueError on a bad port
    return f"{scheme}://{host}" if port in (None, default_port) else f"{scheme}://{host}:{port}"


def target_uri(base_url: str, path_and_query: str) -> str:
    """``@target-uri`` per VRS §5: scheme and host lowercase, no default port, then the path
    and query exactly as on the request line (on aiohttp servers, ``request.raw_path``).

    ``base_url`` must be an origin (``https://host[:port]``, optionally with a trailing ``/``).
    """
    if not path_and_query.startswith("/"):
        raise ValueError(f"path {path_and_query!r} must start with /")
    return _origin(base_url) + path_and_query


def request_signature_member(headers: Mapping[str, str]) -> str | None:
    """The request's ``sig1`` member of ``Signature`` as serialised RFC 8941 (``:base64:``), or
    None when there is no parsable one: the value a response binds to (VRS §5, VRS-04)."""
    try:
        value = _pick(headers, frozenset(("signature",))).get("signature")
        member = parse_dictionary(value).get(LABEL) if value is not None else None
    except ValueError:
        return None
    if not isinstance(member, Item) or type(member.value) is not bytes:
        return None
    return str(member)


class NonceCache:
    """In-memory replay window of (keyid, nonce) pairs (VRS §5 check 5, VRS-07).

    Memory stays bounded: entries expire after ``window`` seconds, and past ``max_entries`` the
    oldest go first. Only signatures that verified reach the cache, so its size follows the
    trusted callers' rate (50/s per key, VRS §1), not an attacker's. Not shared between processes:
    a registry running several workers needs a shared store behind the same ``seen`` method.
    """

    def __init__(self, window: float = NONCE_WINDOW, *, max_entries: int = 1_000_000) -> None:
        if window <= 0 or max_entries <= 0:
            raise ValueError("window and max_entries must be positive")
        self.window = window
        self.max_entries = max_entries
        self._expiry: dict[tuple[str, str], float] = {}
        self._order: deque[tuple[float, tuple[str, str]]] = deque()

    def __len__(self) -> int:
        return len(self._expiry)

    def _expire(self, now: float) -> None:
        order, expiry = self._order, self._expiry
        while order and (order[0][0] <= now or len(order) > self.max_entries):
            deadline, key = order.popleft()
            if expiry.get(key) == deadline:
                del expiry[key]

    def seen(self, keyid: str, nonce: str, now: float) -> bool:
        """Record (keyid, nonce) at ``now``; True if it was already recorded within the window."""
        self._expire(now)
        key = (keyid, nonce)
        deadline = self._expiry.get(key)
        if deadline is not None and deadline > now:
            return True
        deadline = now + self.window
        self._expiry[key] = deadline
        self._order.append((deadline, key))
        self._expire(now)
        return False


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """What a verified request proved. ``signature`` is its ``sig1`` member as an RFC 8941
    byte sequence (``:base64:``): exactly the value the response binds to (VRS-04)."""

    keyid: str
    nonce: str
    created: int
    expires: int
    signature: str


class Signer:
    """Signs VRS requests (court side) and responses (registry side) with one Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey, *, validity: int = MAX_VALIDITY) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("Signer needs an Ed25519PrivateKey")
        if type(validity) is not int or not 0 < validity <= MAX_VALIDITY:
            raise ValueError(f"validity must be an integer in (0, {MAX_VALIDITY}] (VRS §5)")
        self._sign = ed25519.signer(private_key)  # libsodium: gateway/security/ed25519.py
        self._validity = validity
        self.keyid = jwk_thumbprint(private_key.public_key())  # VRS §5: RFC 7638 thumbprint
        self._keyid_param = ";keyid=" + ser_string(self.keyid)

    def _times(self, created: int | None) -> str:
        if created is None:
            created = int(time.time())
        elif type(created) is not int:
            raise TypeError("created must be an int (seconds since the epoch)")
        return f";created={ser_integer(created)};expires={ser_integer(created + self._validity)}"

    def _signed(
        self, profile: _Profile, values: list[str], signature_params: str
    ) -> dict[str, str]:
        signature = self._sign(_base(profile, values, signature_params))
        return {
            "Signature-Input": f"{LABEL}={signature_params}",
            "Signature": f"{LABEL}={ser_byteseq(signature)}",
        }

    def sign_request(
        self,
        method: str,
        target_uri: str,
        headers: Mapping[str, str],
        *,
        created: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """``Signature-Input`` and ``Signature`` for a request (VRS-03).

        POST and DELETE cover content-digest, content-type and idempotency-key from ``headers``
        (any case); GET covers only the method and target URI. ``nonce`` defaults to 128 fresh
        random bits; pass one only to reproduce a known signature.
        """
        profile = _REQUEST_PROFILES.get(method)
        if profile is None:
            raise ValueError(f"method {method!r} is not in the VRS profile")
        values = [method, target_uri, *_fields(profile, _pick(headers, profile.wanted))]
        if nonce is None:
            nonce = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")
        elif not NONCE_PATTERN.fullmatch(nonce):
            raise ValueError("nonce must match ^[A-Za-z0-9_-]{22,64}$ (VRS §5)")
        # VRS-03: parameters in the order created, expires, keyid, nonce, alg, tag.
        params = f"{self._times(created)}{self._keyid_param};nonce={ser_string(nonce)}{_ALG_TAG}"
        return self._signed(profile, values, profile.inner + params)

    def sign_response(
        self,
        status: int,
        headers: Mapping[str, str],
        *,
        request_method: str,
        request_target_uri: str,
        request_signature: str | None,
        created: int | None = None,
    ) -> dict[str, str]:
        """``Signature-Input`` and ``Signature`` for a response (VRS-04).

        ``request_signature`` is ``VerifiedRequest.signature``, or
        :func:`request_signature_member` for a request that failed verification; None (no
        parsable ``sig1``) leaves ``"signature";req;key="sig1"`` out, as VRS §5 says.
        """
        if request_signature is not None and not (
            len(request_signature) > 2 and request_signature[0] == ":" == request_signature[-1]
        ):
            raise ValueError("request_signature must be an RFC 8941 byte sequence (:base64:)")
        profile = _RESPONSE if request_signature is not None else _RESPONSE_UNBOUND
        found = _pick(headers, profile.wanted)
        values = _response_values(
            status, profile, found, request_method, request_target_uri, request_signature
        )
        params = f"{self._times(created)}{self._keyid_param}{_ALG_TAG}"
        return self._signed(profile, values, profile.inner + params)


class _Parsed(NamedTuple):
    """What check 1 extracted: built per message, so a NamedTuple (cheaper than a dataclass)."""

    keyid: str
    nonce: str
    created: int
    expires: int
    signature: bytes
    signature_params: str  # the sig1 member of Signature-Input, serialised
    signature_text: str  # the sig1 member of Signature, serialised (":base64:")


def _invalid(message: str) -> SignatureCheckError:
    return SignatureCheckError("signature-invalid", message)


class _Input(NamedTuple):
    """What the Signature-Input field says, checked against a profile."""

    keyid: str
    nonce: str
    created: int
    expires: int
    signature_params: str


# One signature, its 64 bytes in base64 (88 characters, the last two "=="): the form every
# RFC 8941 serialiser writes for a VRS signature; anything else goes through the parser.
_SIGNATURE_FIELD = re.compile(rf"{re.escape(LABEL)}=:([A-Za-z0-9+/]{{86}}==):")


def _parse(found: Mapping[str, str], profile: _Profile, other: _Profile | None) -> _Parsed:
    """Check 1 of VRS §5 (VRS-05): everything about the two fields short of cryptography."""
    input_text, signature_field = found.get("signature-input"), found.get("signature")
    if input_text is None or signature_field is None:
        raise _invalid("Signature and Signature-Input are both required")
    given = _parse_input(input_text, profile, other)
    signature, signature_text = _parse_signature(signature_field)
    return _Parsed(given.keyid, given.nonce, given.created, given.expires, signature,
                   given.signature_params, signature_text)


@functools.lru_cache(maxsize=64)
def _parse_input(input_text: str, profile: _Profile, other: _Profile | None) -> _Input:
    """The Signature-Input part of ``_parse``, remembered: a signer's value repeats for every
    message it signs within the same second (a response's has no nonce). It depends on nothing
    else, and an error is not remembered: it is raised again each time."""
    member = _only_member(input_text, "Signature-Input")
    if not isinstance(member, InnerList):
        raise _invalid(f"Signature-Input member {LABEL} must be an Inner List")
    params = member.params
    # Decision: the parameter SET must be exactly the profile's, each once, typed right; their
    # ORDER is not enforced on receipt. VRS §5 says "Parameters, senders in this order" but
    # components "in exactly this order": order is a sender duty (tested as VRS-03). It is
    # signed anyway (part of @signature-params), and generic RFC 9421 signers use other orders
    # (http_message_signatures: created, keyid, alg, expires, nonce, tag).
    if params.keys() != profile.params:
        raise _invalid(f"signature parameters must be exactly {', '.join(sorted(profile.params))}")
    created, expires, keyid, alg, tag = (params[n] for n in RESPONSE_PARAMS)
    nonce = params.get("nonce", "")
    # type(), not isinstance(): a Boolean is an int and a Token a str, and neither belongs here.
    if type(created) is not int or type(expires) is not int or type(keyid) is not str:
        raise _invalid("created and expires must be Integers, keyid a String")
    if (alg, type(alg), tag, type(tag)) != (ALG, str, TAG, str):
        raise _invalid(f'alg must be "{ALG}" and tag "{TAG}"')  # VRS-05
    if "nonce" in profile.params and not (type(nonce) is str and NONCE_PATTERN.fullmatch(nonce)):
        raise _invalid("nonce must be a String matching ^[A-Za-z0-9_-]{22,64}$")
    # The types are checked, so http_sfv's per-type serialisers suffice (twice as fast as str()).
    signature_params = profile.inner + "".join(
        f";{name}={ser_integer(value) if type(value) is int else ser_string(value)}"
        for name, value in params.items()
    )
    # http_sfv silently collapses repeated parameters and tolerates stray whitespace, so insist
    # on the canonical serialisation every RFC 8941 serialiser produces. That also proves the
    # components are exactly the profile's (profile.inner is part of the string compared), and
    # the result is the @signature-params value, so nothing is serialised twice.
    if input_text != f"{LABEL}={signature_params}":
        shape = tuple((i.value, tuple(i.params.items())) for i in member)
        if other is not None and shape == other.shape:  # VRS-08
            if profile is _RESPONSE:
                raise _invalid("wrong request binding: the response does not cover our signature")
            raise _invalid("wrong request binding: the response covers a signature we did not send")
        if shape != profile.shape:
            raise _invalid(f"covered components must be exactly {profile.inner}")
        raise _invalid("Signature-Input is not in canonical RFC 8941 form")
    return _Input(keyid, nonce, created, expires, signature_params)


def _only_member(value: str, field: str) -> Any:
    """The one member, labelled ``sig1``, of a Signature or Signature-Input value."""
    try:
        members = parse_dictionary(value)
    except ValueError as exc:
        raise _invalid(f"{field} is not a Dictionary: {exc}") from None
    if list(members) != [LABEL]:
        raise _invalid(f"exactly one signature labelled {LABEL} is required")
    return members[LABEL]


def _parse_signature(signature_field: str) -> tuple[bytes, str]:
    """The Signature field's one signature and its serialisation (``:base64:``)."""
    canonical = _SIGNATURE_FIELD.fullmatch(signature_field)
    if canonical is not None:
        # The parser's answer without the parser (it reads a byte sequence a character at a
        # time): one member, a bare byte sequence of 64 bytes, written canonically (base64
        # that decodes and encodes back to itself).
        text = canonical.group(1)
        signature = base64.b64decode(text)
        if base64.b64encode(signature).decode("ascii") == text:
            return signature, f":{text}:"
    signature_item = _only_member(signature_field, "Signature")
    if (not isinstance(signature_item, Item) or type(signature_item.value) is not bytes
            or signature_item.params):
        raise _invalid(f"Signature member {LABEL} must be a bare byte sequence")
    if len(signature_item.value) != SIGNATURE_BYTES:
        raise _invalid(f"an Ed25519 signature has {SIGNATURE_BYTES} bytes")
    signature_text = ser_byteseq(signature_item.value)
    if signature_field != f"{LABEL}={signature_text}":  # one signature, one spelling (VRS-04)
        raise _invalid("Signature is not in canonical RFC 8941 form")
    return signature_item.value, signature_text


class Verifier:
    """Applies the VRS §5 checks, in order, to requests (registry) or responses (court).

    ``trusted`` maps keyid to public key: the caller list on the registry, the registry's
    registered key on the court side. ``check_freshness=False`` (for the historical examples)
    drops only the comparisons with the clock; the (0, 300] validity rule always applies.
    ``nonce_cache=None`` skips the replay check.
    """

    def __init__(
        self,
        trusted: Mapping[str, Ed25519PublicKey],
        *,
        skew: int = CLOCK_SKEW,
        check_freshness: bool = True,
        nonce_cache: NonceCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for keyid, key in trusted.items():
            if not isinstance(key, Ed25519PublicKey):
                raise TypeError(f"trusted key {keyid} is not an Ed25519PublicKey")
        # keyid -> verify(signature, base), on libsodium (gateway/security/ed25519.py)
        self._trusted = {keyid: ed25519.verifier(key) for keyid, key in trusted.items()}
        self._skew = skew
        self._check_freshness = check_freshness
        self._nonce_cache = nonce_cache
        self._clock = clock

    def _key(self, parsed: _Parsed) -> Callable[[bytes, bytes], None]:
        key = self._trusted.get(parsed.keyid)  # check 2, VRS-06
        if key is None:
            raise SignatureCheckError("key-untrusted", f"keyid {parsed.keyid} is not trusted")
        return key

    def _check(
        self, verify: Callable[[bytes, bytes], None], parsed: _Parsed, base: bytes, what: str
    ) -> float | None:
        """Checks 3 and 4; returns the clock reading, if one was taken, for check 5."""
        try:
            verify(parsed.signature, base)  # check 3
        except InvalidSignature:
            raise _invalid(f"{what} signature does not verify") from None
        lifetime = parsed.expires - parsed.created  # check 4, VRS-07
        if not 0 < lifetime <= MAX_VALIDITY:
            raise SignatureCheckError(
                "signature-expired", f"expires - created = {lifetime}, outside (0, {MAX_VALIDITY}]"
            )
        if not self._check_freshness:
            return None
        now = self._clock()
        if parsed.created > now + self._skew:
            raise SignatureCheckError("signature-expired", "created is in the future")
        if parsed.expires < now - self._skew:
            raise SignatureCheckError("signature-expired", "the signature has expired")
        return now

    def verify_request(
        self, method: str, target_uri: str, headers: Mapping[str, str], body: bytes | None
    ) -> VerifiedRequest:
        """Registry side: checks 1-6 of VRS §5 in order; raises SignatureCheckError.

        ``target_uri`` is rebuilt from the registry's public base URL (:func:`target_uri`).
        ``body`` is ignored for GET; for POST and DELETE None counts as empty.
        """
        profile = _REQUEST_PROFILES.get(method)
        if profile is None:  # check 1: no component list exists for this method
            raise _invalid(f"method {method!r} is not in the VRS profile")
        try:
            found = _pick(headers, profile.wanted)
            parsed = _parse(found, profile, None)
            values = [method, target_uri, *_fields(profile, found)]
            base = _base(profile, values, parsed.signature_params)
            key = self._key(parsed)
        except _MalformedError as exc:  # still check 1 (VRS-05)
            raise _invalid(str(exc)) from None
        now = self._check(key, parsed, base, "request")
        if self._nonce_cache is not None:  # check 5, VRS-07
            if now is None:  # freshness off, but the replay window still needs a clock
                now = self._clock()
            if self._nonce_cache.seen(parsed.keyid, parsed.nonce, now):
                raise SignatureCheckError("nonce-replayed", "this nonce was already used")
        if profile is _WITH_BODY and not check_content_digest(found["content-digest"], body or b""):
            raise SignatureCheckError("digest-mismatch", "Content-Digest does not match the body")
        return VerifiedRequest(
            parsed.keyid, parsed.nonce, parsed.created, parsed.expires, parsed.signature_text
        )

    def verify_response(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        request_method: str,
        request_target_uri: str,
        request_signature: str | None,
    ) -> str:
        """Court side: checks 1-4 and 6 of VRS §5; returns the agency's keyid (VRS-08).

        ``request_signature`` is our request's ``sig1`` member (:func:`request_signature_member`
        of the headers we sent): the response must be bound to exactly that value.
        """
        profile, other = (
            (_RESPONSE, _RESPONSE_UNBOUND)
            if request_signature is not None
            else (_RESPONSE_UNBOUND, _RESPONSE)
        )
        try:
            found = _pick(headers, profile.wanted)
            parsed = _parse(found, profile, other)
            values = _response_values(
                status, profile, found, request_method, request_target_uri, request_signature
            )
            base = _base(profile, values, parsed.signature_params)
            key = self._key(parsed)
        except _MalformedError as exc:
            raise _invalid(str(exc)) from None
        self._check(key, parsed, base, "response (or its request binding)")
        if not check_content_digest(found["content-digest"], body):  # check 6
            raise SignatureCheckError("digest-mismatch", "Content-Digest does not match the body")
        return parsed.keyid
