"""Streaming ingestion of inquiry batches: the body is parsed, checked and handed on item by item.

A batch may hold a million items, so the body is never held whole: JSON is read with an ijson
push parser, NDJSON line by line, and each checked item goes straight to ``Store.create_batch``
(which spools it and inserts the lot in one transaction). Every bad field of the whole batch must
still be reported, and a rejected batch must leave nothing behind; both follow from raising at
the *end* of the item iterator the store consumes: by then every item has been checked, and the
store stores nothing when its iterator raises.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ijson  # type: ignore[import-untyped]
from aiohttp import StreamReader

from gateway.adapters.registry import AdapterRegistry
from gateway.api.auth import require_court
from gateway.api.problems import ErrorCollector, Problem
from gateway.config import CallerConfig
from gateway.errors import FieldError
from gateway.model import (
    AgencyKind,
    BatchHeader,
    Court,
    Officer,
    canonical_json,
    court_code_ok,
    json_pointer,
    parse_batch_header,
    parse_inquiry_item,
)
from gateway.model.wire import Reader, read_court, read_officer
from gateway.store.base import BatchRecord, NewBatch, NewItem, Store

CHUNK = 64 * 1024
_HEADER_MEMBERS = ("batchId", "court", "officer", "agencies", "kinds", "deadlineSeconds")


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_items: int = 1_000_000  # per batch; the store keeps them all in one transaction
    max_line_bytes: int = 16 * 1024 * 1024  # one NDJSON line: two 5 MiB documents in base64


UNPAIRED_SURROGATE = "contains an unpaired surrogate escape (\\ud800-\\udfff): not Unicode text"


def is_unicode(text: str) -> bool:
    """False if ``text`` holds a lone surrogate, which json.loads lets through from a ``\\ud800``
    escape but which no UTF-8 store or agency can take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class AgencyResolver:
    """Turns an item's ``agencies`` / ``kinds`` into configured agency ids, once per combination.

    Explicit ids must be configured and answer inquiries; a kind fans out to every configured
    agency of that kind that answers inquiries (every bank); both together are their union.
    """

    def __init__(self, registry: AdapterRegistry) -> None:
        self._registry = registry
        self._cache: dict[Any, tuple[tuple[str, ...], tuple[FieldError, ...]]] = {}
        self.inquiry_ids = tuple(a for a in registry if registry[a].capabilities.inquiry)

    def resolve(
        self,
        agencies: Sequence[str] | None,
        kinds: Sequence[AgencyKind] | None,
        base: str,
    ) -> tuple[tuple[str, ...], list[FieldError]]:
        key = (tuple(agencies or ()), tuple(kinds or ()), agencies is None and kinds is None)
        if key not in self._cache:
            self._cache[key] = self._resolve(agencies, kinds)
        ids, rel = self._cache[key]
        return ids, [FieldError(base + e.pointer, e.message) for e in rel]

    def _resolve(
        self, agencies: Sequence[str] | None, kinds: Sequence[AgencyKind] | None
    ) -> tuple[tuple[str, ...], tuple[FieldError, ...]]:
        if agencies is None and kinds is None:
            if not self.inquiry_ids:
                return (), (FieldError("", "no configured agency answers inquiries"),)
            return self.inquiry_ids, ()
        out: list[str] = []
        errors: list[FieldError] = []
        for i, agency_id in enumerate(agencies or ()):
            if agency_id not in self._registry:
                errors.append(FieldError(f"/agencies/{i}",
                                         f"no agency {agency_id!r} is configured"))
            elif not self._registry[agency_id].capabilities.inquiry:
                errors.append(FieldError(f"/agencies/{i}",
                                         f"agency {agency_id!r} does not answer inquiries"))
            elif agency_id not in out:
                out.append(agency_id)
        for i, kind in enumerate(kinds or ()):
            of_kind = [a for a in self.inquiry_ids if self._registry.config(a).kind == kind]
            if not of_kind:
                errors.append(FieldError(
                    f"/kinds/{i}",
                    f"no configured agency of kind {kind.value!r} answers inquiries"))
            out.extend(a for a in of_kind if a not in out)
        return tuple(out), tuple(errors)


# --- body readers ------------------------------------------------------------------------


class NdjsonBody:
    """``application/x-ndjson``: the first non-blank line is the header, each further non-blank
    line one item; item n (0-based, blank lines not counted) is reported as ``/items/n``."""

    def __init__(self, stream: StreamReader, errors: ErrorCollector, limits: IngestLimits) -> None:
        self._lines = self._read_lines(stream, limits.max_line_bytes)
        self._errors = errors
        self.items_reported = False

    @staticmethod
    async def _read_lines(stream: StreamReader, max_bytes: int) -> AsyncIterator[tuple[int, bytes]]:
        # Our own splitting: aiohttp's readline() refuses lines above its 128 KiB buffer, and an
        # item may carry documents of several MiB.
        pending = bytearray()
        number = 0
        async for chunk in stream.iter_chunked(CHUNK):
            pending += chunk
            start = 0
            while (nl := pending.find(b"\n", start)) >= 0:
                number += 1
                if nl - start > max_bytes:
                    raise _line_too_long(number, max_bytes)
                line = bytes(pending[start:nl]).strip()
                start = nl + 1
                if line:
                    yield number, line
            del pending[:start]
            if len(pending) > max_bytes:
                raise _line_too_long(number + 1, max_bytes)
        if pending.strip():
            yield number + 1, bytes(pending).strip()

    @staticmethod
    def _decode(line: bytes) -> Any:
        # json.loads makes the same values ijson(use_float=True) does for a JSON body, so both
        # forms of one batch give the same canonical JSON and the same content hash.
        return json.loads(line.decode("utf-8"), parse_constant=_no_constant)

    async def header(self) -> Any:
        async for number, line in self._lines:
            try:
                return self._decode(line)
            except ValueError as exc:
                raise Problem(400, "malformed-body", "Malformed request body",
                              f"line {number} (the batch header) is not JSON: {exc}",
                              errors=[FieldError("", f"line {number}: not JSON: {exc}")]) from None
        raise Problem(400, "malformed-body", "Malformed request body", "the body is empty",
                      errors=[FieldError("", "expected a header line and item lines")])

    async def items(self) -> AsyncIterator[tuple[int, Any]]:
        n = 0
        async for number, line in self._lines:
            try:
                yield n, self._decode(line)
            except ValueError as exc:
                self._errors.add_syntax(FieldError(f"/items/{n}",
                                                   f"line {number}: not JSON: {exc}"))
            n += 1

    async def finish(self) -> None:
        return None


def _line_too_long(number: int, max_bytes: int) -> Problem:
    return Problem(413, "line-too-long", "Line too long",
                   f"line {number} exceeds {max_bytes} bytes")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _Value:
    """Builds one JSON value from ijson events; ``feed`` is True once it is complete."""

    __slots__ = ("builder", "depth", "value")

    def __init__(self) -> None:
        self.builder: Any = None
        self.depth = 0
        self.value: Any = None

    def feed(self, event: str, value: Any) -> bool:
        if self.builder is None and event not in ("start_map", "start_array"):
            self.value = value
            return True
        if self.builder is None:
            self.builder = ijson.ObjectBuilder()
        self.builder.event(event, value)
        if event in ("start_map", "start_array"):
            self.depth += 1
        elif event in ("end_map", "end_array"):
            self.depth -= 1
            if self.depth == 0:
                self.value = self.builder.value
                return True
        return False


class JsonBody:
    """``application/json``: one object whose header members must all come before ``items``.

    Items go to the store while they are read, so a header member after ``items`` would come
    too late to apply; it is an error at its pointer (send it earlier, or use NDJSON). A syntax
    error ends the parse: it is reported (400) with the errors found before it.
    """

    def __init__(self, stream: StreamReader, errors: ErrorCollector) -> None:
        self._stream = stream
        self._errors = errors
        self._events = ijson.sendable_list()
        self._parser = ijson.parse_coro(self._events, use_float=True)
        self._out: deque[tuple[str, Any]] = deque()
        self._state = "start"
        self._key = ""
        self._members: dict[str, Any] = {}
        self._items_seen = False
        self._building: _Value | None = None
        self._n = 0
        self._eof = False
        self._syntax: str | None = None  # a syntax error, raised once the items before it are out
        self.items_reported = False  # an error about /items itself was already recorded

    def _event(self, event: str, value: Any) -> None:
        if self._building is not None:
            if self._building.feed(event, value):
                built, self._building = self._building.value, None
                if self._state == "items":
                    self._out.append(("item", built))
                else:
                    self._member_done(built)
            return
        if self._state == "start":
            if event != "start_map":
                raise Problem(422, "validation-failed", "Validation failed",
                              "the body must be a JSON object",
                              errors=[FieldError("", "must be an object")])
            self._state = "top"
        elif self._state == "top":
            if event == "end_map":
                self._state = "end"
                if not self._items_seen:
                    self._out.append(("header", self._members))
            else:  # map_key
                self._key = value
                self._state = "member"
        elif self._state == "member":
            if self._key == "items" and not self._items_seen and event == "start_array":
                self._items_seen = True
                self._out.append(("header", self._members))
                self._state = "items"
            else:
                self._building = _Value()
                if self._building.feed(event, value):
                    built, self._building = self._building.value, None
                    self._member_done(built)
        elif self._state == "items":
            if event == "end_array":
                self._state = "top"
            else:
                self._building = _Value()
                if self._building.feed(event, value):
                    self._building = None
                    self._out.append(("item", value))

    def _member_done(self, value: Any) -> None:
        key, self._state = self._key, "top"
        pointer = json_pointer("", key)
        if self._items_seen:
            message = ("must come before /items: a JSON batch is read as a stream (or send NDJSON)"
                       if key in _HEADER_MEMBERS or key == "items" else f"unknown member {key!r}")
            self._errors.add((FieldError(pointer, message),))
        elif key == "items":
            self.items_reported = True
            self._errors.add((FieldError("/items", "must be an array"),))
        else:
            self._members[key] = value

    async def _next(self) -> tuple[str, Any] | None:
        while not self._out:
            if self._syntax is not None:
                # Every item before the error has been handed out (and checked) by now, so
                # _n is the item the error is in.
                pointer = f"/items/{self._n}" if self._state == "items" else ""
                self._errors.add_syntax(FieldError(pointer, self._syntax))
                raise self._errors.error()
            if self._eof:
                return None
            chunk = await self._stream.read(CHUNK)
            try:
                if chunk:
                    self._parser.send(chunk)
                else:
                    self._eof = True
                    self._parser.close()
            except ijson.JSONError as exc:
                self._syntax = str(exc).splitlines()[0] if str(exc) else "not JSON"
            for event in self._events:  # those parsed before any error still count
                self._event(event[1], event[2])
            del self._events[:]
        return self._out.popleft()

    async def header(self) -> Any:
        got = await self._next()
        if got is None:  # pragma: no cover - the parser reports an empty body as premature EOF
            raise Problem(400, "malformed-body", "Malformed request body", "the body is empty")
        return got[1]

    async def items(self) -> AsyncIterator[tuple[int, Any]]:
        if not self._items_seen:
            if not self.items_reported:
                self.items_reported = True
                self._errors.add((FieldError("/items", "is required"),))
            return
        while (got := await self._next()) is not None:
            yield self._n, got[1]
            self._n += 1

    async def finish(self) -> None:
        while await self._next() is not None:
            pass


Body = NdjsonBody | JsonBody


# --- the batch -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Defaults:
    """What items inherit from the header, as far as the header could be read."""

    header: BatchHeader | None
    court: Court | None
    officer: Officer | None
    targets: tuple[str, ...] | None  # resolved header-level agencies; None: unusable
    unreadable: frozenset[str] = frozenset()  # header members present but in error


class BatchIngest:
    """One POST /v1/inquiry-batches: header, authorization, then items streamed into the store."""

    def __init__(
        self,
        body: Body,
        errors: ErrorCollector,
        *,
        caller: CallerConfig,
        store: Store,
        resolver: AgencyResolver,
        limits: IngestLimits,
        default_deadline_seconds: int,
    ) -> None:
        self.body, self.errors, self.caller, self.store = body, errors, caller, store
        self.resolver, self.limits = resolver, limits
        self.default_deadline_seconds = default_deadline_seconds
        self.work_by_agency: Counter[str] = Counter()  # work items stored, per agency

    async def run(self) -> tuple[BatchRecord, bool]:
        raw = await self.body.header()
        defaults = self._defaults(raw)
        header = defaults.header
        header_json = canonical_json(header) if header is not None else ""
        if not is_unicode(header_json):
            self.errors.add((FieldError("", UNPAIRED_SURROGATE),))
        items = self._items(defaults)
        if header is None or self.errors:
            async for _ in items:  # check everything for the report; store nothing
                pass
            raise self.errors.error()  # pragma: no cover - _items raises at its end
        batch = NewBatch(owner=self.caller.id, batch_id=header.batch_id,
                         court_code=header.court.code, header_json=header_json)
        seconds = header.deadline_seconds or self.default_deadline_seconds
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
        return await self.store.create_batch(batch, items, deadline_at=deadline)

    def _defaults(self, raw: Any) -> _Defaults:
        if isinstance(raw, Mapping):
            court_raw = raw.get("court")
            code = court_raw.get("code") if isinstance(court_raw, Mapping) else None
            if isinstance(code, str) and court_code_ok(code):
                require_court(self.caller, code)  # 403 before a single item is read
        header, errors = parse_batch_header(raw)
        self.errors.add(errors)
        if header is not None:
            targets: tuple[str, ...] | None = self.resolver.inquiry_ids or None
            if header.agencies is not None or header.kinds is not None:
                targets, t_errors = self.resolver.resolve(header.agencies, header.kinds, "")
                self.errors.add(t_errors)
            return _Defaults(header, header.court, header.officer, targets)
        # The header is bad: keep what can be read of it so that items are still checked, and
        # remember which members failed so their errors are not repeated for every item.
        r = Reader()
        court = officer = None
        if isinstance(raw, Mapping):
            court = read_court(r, raw["court"], "/court") if "court" in raw else None
            officer = read_officer(r, raw["officer"], "/officer") if "officer" in raw else None
        unreadable = {"court"} if court is None else set()
        if officer is None and isinstance(raw, Mapping) and "officer" in raw:
            unreadable.add("officer")
        return _Defaults(None, court, officer, None, frozenset(unreadable))

    async def _items(self, d: _Defaults) -> AsyncIterator[NewItem]:
        count = 0
        no_default_reported = False
        async for n, raw in self.body.items():
            if n >= self.limits.max_items:
                raise Problem(413, "batch-too-large", "Batch too large",
                              f"a batch holds at most {self.limits.max_items} items",
                              errors=[FieldError(f"/items/{n}", "one item too many")])
            count += 1
            base = f"/items/{n}"
            item, errors = parse_inquiry_item(raw, base, court=d.court, officer=d.officer)
            if d.unreadable and isinstance(raw, Mapping):
                repeats = {f"{base}/{m}" for m in d.unreadable if m not in raw}
                errors = [e for e in errors if e.pointer not in repeats]
            if item is None:
                self.errors.add(errors)
                continue
            if item.agencies is not None or item.kinds is not None:
                targets, t_errors = self.resolver.resolve(item.agencies, item.kinds, base)
                self.errors.add(t_errors)
            elif d.targets is not None:
                targets = d.targets
            else:
                if d.header is not None and not no_default_reported:
                    no_default_reported = True  # a configuration gap, reported once
                    self.errors.add((FieldError("", "no configured agency answers inquiries"),))
                continue
            item_json = canonical_json(item)
            if not is_unicode(item_json):
                self.errors.add((FieldError(base, UNPAIRED_SURROGATE),))
            if self.errors:
                continue  # keep checking for the report; nothing will be stored
            self.work_by_agency.update(targets)
            yield NewItem(seq=n, item_json=item_json, agency_ids=targets)
        await self.body.finish()
        if count == 0 and not self.errors.malformed and not self.body.items_reported:
            self.errors.add((FieldError("/items", "must contain at least one item"),))
        if self.errors:
            raise self.errors.error()  # inside create_batch: rolls the whole batch back


def make_body(content_type: str, stream: StreamReader, errors: ErrorCollector,
              limits: IngestLimits) -> Body:
    if content_type == "application/x-ndjson":
        return NdjsonBody(stream, errors, limits)
    return JsonBody(stream, errors)

