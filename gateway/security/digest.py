"""Content-Digest (RFC 9530) for VRS messages: the header that binds a body to its signature.

VRS signs the ``Content-Digest`` header, not the body, so the receiver must recompute the digest
over the bytes it actually received (VRS-02, check 6 of VRS §5). Parsing goes through the
RFC 8941 parser of ``http_sfv`` with duplicate keys rejected, which that parser does not do itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from http_sfv.dictionary import Dictionary
from http_sfv.item import Item

__all__ = ["UniqueKeyDictionary", "check_content_digest", "content_digest", "parse_dictionary"]


class UniqueKeyDictionary(Dictionary):
    """An RFC 8941 Dictionary that refuses a key seen twice.

    RFC 8941 §4.2.2 lets the last duplicate win, which would let ``sha-256=:A:, sha-256=:B:`` or
    ``sig1=..., sig1=...`` pass as "one member". ``Dictionary.parse_content`` stores each member
    through ``__setitem__`` and turns any exception into ``ValueError``, so this hook suffices.
    """

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self.data:
            raise ValueError(f"dictionary key {key!r} appears more than once")
        super().__setitem__(key, value)


def parse_dictionary(value: str) -> UniqueKeyDictionary:
    """Parse a Dictionary field value; ``ValueError`` when it is not one (or repeats a key)."""
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError("structured field contains non-ASCII characters") from exc
    parsed = UniqueKeyDictionary()
    parsed.parse(raw)
    return parsed


def content_digest(body: bytes) -> str:
    """``sha-256=:<base64>:`` over the exact body bytes (VRS-02)."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def check_content_digest(value: str | None, body: bytes) -> bool:
    """True only if ``value`` is exactly one member ``sha-256`` whose byte sequence is the
    SHA-256 of ``body`` (VRS §5: "exactly one member"). Anything else, including a parse error,
    an extra algorithm or parameters on the member, is False."""
    if value is None:
        return False
    if value == content_digest(body):
        return True  # exactly one sha-256 member, no parameters, the right bytes: no parse needed
    try:
        parsed = parse_dictionary(value)
    except ValueError:
        return False
    if list(parsed) != ["sha-256"]:
        return False
    member = parsed["sha-256"]
    if not isinstance(member, Item) or type(member.value) is not bytes or member.params:
        return False
    return hmac.compare_digest(member.value, hashlib.sha256(body).digest())
