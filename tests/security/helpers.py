"""Shared test helpers for gateway.security: the VRS example exchanges and keys, read from
tests/data (copies of the agency examples), and an independent signer for crafted messages."""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, MappingKeyResolver
from http_message_signatures.algorithms import ED25519
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.security.keys import jwk_thumbprint, load_ed25519_private

DATA = Path(__file__).resolve().parents[1] / "data"
VRS = DATA / "vrs"
KEYS = DATA / "keys"
BASE_URL = "https://vrs.registry.example"
COURT_KEYID = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
AGENCY_KEYID = "-zTo9w69QNpzykGmtgHpZKiL3wEZxZI5EGgUB5JEyZ0"


@cache
def court_key() -> Ed25519PrivateKey:
    return load_ed25519_private(KEYS / "vrs-court.jwk.json")


@cache
def agency_key() -> Ed25519PrivateKey:
    return load_ed25519_private(KEYS / "vrs-agency.jwk.json")


@dataclass(frozen=True)
class Message:
    """One HTTP message as it travels: start line split up, header lines in order, body bytes."""

    start: tuple[str, str, str]
    fields: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The header lines as aiohttp shows them to handlers."""
        return CIMultiDictProxy(CIMultiDict(self.fields))

    def with_field(self, name: str, value: str | None) -> Message:
        """This message with every ``name`` line replaced by one with ``value`` (None: removed)."""
        fields = [(n, v) for n, v in self.fields if n.lower() != name.lower()]
        if value is not None:
            fields.append((name, value))
        return Message(self.start, tuple(fields), self.body)

    def field(self, name: str) -> str:
        (value,) = [v for n, v in self.fields if n.lower() == name.lower()]
        return value


def wire_bytes(http_file: Path) -> bytes:
    """The message as sent: the .http file's LF line ends become CRLF; the body is the .json
    file next to it, byte for byte (examples/README.md, "Byte exactness")."""
    text = http_file.read_bytes()
    head, sep, shown_body = text.partition(b"\n\n")
    assert sep, f"{http_file}: no empty line after the header block"
    json_file = http_file.with_suffix(".json")
    body = json_file.read_bytes() if json_file.exists() else b""
    assert shown_body == body, f"{http_file}: body differs from {json_file.name}"
    assert b"\r" not in head
    return head.replace(b"\n", b"\r\n") + b"\r\n\r\n" + body


def parse_wire(wire: bytes) -> Message:
    head, sep, body = wire.partition(b"\r\n\r\n")
    assert sep
    start_line, *lines = head.decode("ascii").split("\r\n")
    first, second, third = start_line.split(" ", 2)
    fields = []
    for line in lines:
        name, colon, value = line.partition(":")
        assert colon and name == name.strip(), line
        fields.append((name, value.strip(" \t")))
    return Message((first, second, third), tuple(fields), body)


@dataclass(frozen=True)
class Exchange:
    name: str
    request: Message
    response: Message

    @property
    def method(self) -> str:
        return self.request.start[0]

    @property
    def target_uri(self) -> str:
        return BASE_URL + self.request.start[1]

    @property
    def status(self) -> int:
        return int(self.response.start[1])


def exchanges() -> list[Exchange]:
    found = []
    for request_file in sorted(VRS.glob("*.request.http")):
        name = request_file.name.removesuffix(".request.http")
        found.append(
            Exchange(
                name,
                parse_wire(wire_bytes(request_file)),
                parse_wire(wire_bytes(VRS / f"{name}.response.http")),
            )
        )
    return found


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sign_raw(
    key: Ed25519PrivateKey,
    lines: Iterable[tuple[str, str]],
    signature_params: str,
    *,
    label: str = "sig1",
) -> dict[str, str]:
    """Sign any base, written out by hand: for crafted messages the Signer refuses to make.

    Independent of gateway.security.httpsig on purpose: ``lines`` are (component id, value).
    """
    body = "".join(f"{component}: {value}\n" for component, value in lines)
    base = f'{body}"@signature-params": {signature_params}'.encode("ascii")
    return {
        "Signature-Input": f"{label}={signature_params}",
        "Signature": f"{label}=:{b64(key.sign(base))}:",
    }


def keyid_of(key: Ed25519PrivateKey) -> str:
    return jwk_thumbprint(key.public_key())


# --- crafted messages ----------------------------------------------------------------------

NOW = 1_800_000_000
URI = BASE_URL + "/v2/seizures"
BODY = b'{\n  "seizureDays": 730\n}'
NONCE = "IsJ-f5gDQz7_X4W8TDwBhQ"
POST_HEADERS = {
    "Content-Type": "application/json",
    "Content-Digest": "sha-256=:" + b64(hashlib.sha256(BODY).digest()) + ":",
    "Idempotency-Key": "0bfa8244-bc30-5af3-b58c-cf5b8c976cfc",
}
POST_COMPONENTS = ("@method", "@target-uri", "content-digest", "content-type", "idempotency-key")
REQUEST_PARAMS = ["created", "expires", "keyid", "nonce", "alg", "tag"]
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


class Raw(str):
    """A parameter value written as is (a Token, a Boolean), not as a quoted String."""


def params(order: list[str] | None = None, **given: object) -> str:
    """Signature parameters: by default the valid request set, in the VRS order.

    A value of None leaves the parameter out; ints and Raw values go unquoted."""
    values: dict[str, object] = {
        "created": NOW, "expires": NOW + 300, "keyid": COURT_KEYID, "nonce": NONCE,
        "alg": "ed25519", "tag": "vrs-v2",
    }
    values.update(given)
    out = []
    for name in order or REQUEST_PARAMS:
        value = values[name]
        if isinstance(value, (int, Raw)):
            out.append(f";{name}={value}")
        elif value is not None:
            out.append(f';{name}="{value}"')
    return "".join(out)


def crafted(
    *,
    components: tuple[str, ...] = POST_COMPONENTS,
    key: Ed25519PrivateKey | None = None,
    label: str = "sig1",
    headers: dict[str, str] | None = None,
    order: list[str] | None = None,
    **param_values: object,
) -> dict[str, str]:
    """The headers of a POST to URI signed by hand (sign_raw), so any rule can be broken."""
    headers = POST_HEADERS if headers is None else headers
    values = {"@method": "POST", "@target-uri": URI, **{k.lower(): v for k, v in headers.items()}}
    if key is not None:
        param_values.setdefault("keyid", keyid_of(key))
    inner = "(" + " ".join(f'"{c}"' for c in components) + ")"
    lines = [(f'"{c}"', values[c]) for c in components]
    signed = sign_raw(key or court_key(), lines, inner + params(order, **param_values), label=label)
    return {**headers, **signed}


def with_header(headers: Mapping[str, str], name: str, value: str | None) -> dict[str, str]:
    """``headers`` with ``name`` (any case) replaced by ``value``, or removed when None."""
    out = {k: v for k, v in headers.items() if k.lower() != name.lower()}
    if value is not None:
        out[name] = value
    return out


def two_lines(headers: Mapping[str, str], name: str, extra: str) -> CIMultiDictProxy[str]:
    """``headers`` as aiohttp would show them with a second ``name`` line."""
    multi = CIMultiDict(headers)
    multi.add(name, extra)
    return CIMultiDictProxy(multi)


def flips(text: str) -> Iterator[tuple[int, str]]:
    """Every one-character change of ``text`` (bit 0 flipped, so it stays ASCII)."""
    for i, char in enumerate(text):
        yield i, text[:i] + chr(ord(char) ^ 1) + text[i + 1 :]


# --- http_message_signatures (pyauth) stand-ins ---------------------------------------------
# The library's message interface is duck-typed (method/url/headers for a request,
# status_code/headers/request for a response): these stand-ins are all it needs, no `requests`.


@dataclass
class LibRequest:
    method: str
    url: str
    headers: dict[str, str]


@dataclass
class LibResponse:
    status_code: int
    headers: dict[str, str]
    request: LibRequest


class HistoricalVerifier(HTTPMessageVerifier):
    """The library with its clock checks off, for the historical examples."""

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        return None


def lib_verifier(
    key: Ed25519PrivateKey, cls: type[HTTPMessageVerifier] = HTTPMessageVerifier
) -> HTTPMessageVerifier:
    resolver = MappingKeyResolver(public_keys={keyid_of(key): key.public_key()}, private_keys={})
    return cls(signature_algorithm=ED25519, key_resolver=resolver)


def lib_signer(key: Ed25519PrivateKey) -> HTTPMessageSigner:
    resolver = MappingKeyResolver(public_keys={}, private_keys={keyid_of(key): key})
    return HTTPMessageSigner(signature_algorithm=ED25519, key_resolver=resolver)


def as_datetime(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)
