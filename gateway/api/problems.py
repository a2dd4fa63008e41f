"""RFC 9457 problem details: the one shape every error of the northbound API takes.

Handlers raise (``ValidationError``, ``NotFoundError``, ``ConflictError`` from the error tree, or
``Problem`` for HTTP-only failures such as 401, 403 and 415) and ``error_middleware`` turns each
into ``application/problem+json`` in one place, so no handler formats an error body itself and
an unexpected exception never shows internals to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from gateway.errors import ConflictError, FieldError, NotFoundError, ValidationError

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://agency-gateway.dev/problems/"
PROBLEM_JSON = "application/problem+json"
MAX_LISTED_ERRORS = 1000  # a 1,000,000-item batch must not answer with a 100 MB problem

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
    """An HTTP failure that is not a domain error (authentication, content type, syntax, ...).

    ``name`` becomes the last segment of the problem ``type`` URI.
    """

    def __init__(
        self,
        status: int,
        name: str,
        title: str,
        detail: str,
        *,
        errors: Sequence[FieldError] = (),
        error_count: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.name, self.title, self.detail = status, name, title, detail
        self.errors = tuple(errors)
        self.error_count = len(self.errors) if error_count is None else error_count
        self.headers = dict(headers or {})


class BatchValidationError(ValidationError):
    """A ValidationError whose list was capped: ``total`` counts every error that was found.

    ``malformed`` is set when some of them were syntax errors (NDJSON lines that are not JSON),
    which turns the answer into a 400 instead of a 422.
    """

    def __init__(self, errors: Sequence[FieldError], total: int, *, malformed: bool) -> None:
        super().__init__(errors)
        self.total = total
        self.malformed = malformed


class ErrorCollector:
    """Keeps the first MAX_LISTED_ERRORS field errors and counts the rest, in document order."""

    def __init__(self, limit: int = MAX_LISTED_ERRORS) -> None:
        self.limit = limit
        self.listed: list[FieldError] = []
        self.total = 0
        self.malformed = False

    def add(self, errors: Iterable[FieldError]) -> None:
        for e in errors:
            self.total += 1
            if len(self.listed) < self.limit:
                self.listed.append(e)

    def add_syntax(self, error: FieldError) -> None:
        self.malformed = True
        self.add((error,))

    def __bool__(self) -> bool:
        return self.total > 0

    def error(self) -> BatchValidationError:
        return BatchValidationError(self.listed, self.total, malformed=self.malformed)


def problem_response(
    status: int,
    name: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    errors: Sequence[FieldError] = (),
    error_count: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """Build an ``application/problem+json`` response (RFC 9457 §3)."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + name,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors or error_count:
        body["errors"] = [{"pointer": e.pointer, "detail": e.message} for e in errors]
        body["errorCount"] = len(errors) if error_count is None else error_count
    return web.json_response(body, status=status, content_type=PROBLEM_JSON, headers=headers)


def _validation_problem(exc: ValidationError, instance: str) -> web.Response:
    total = exc.total if isinstance(exc, BatchValidationError) else len(exc.errors)
    listed = len(exc.errors)
    more = f" ({total - listed} more not listed)" if total > listed else ""
    if isinstance(exc, BatchValidationError) and exc.malformed:
        return problem_response(
            400, "malformed-body", "Malformed request body",
            f"the body is not well-formed; {total} error(s) found{more}",
            instance=instance, errors=exc.errors, error_count=total,
        )
    return problem_response(
        422, "validation-failed", "Validation failed",
        f"{total} field(s) break the API's rules{more}; see errors",
        instance=instance, errors=exc.errors, error_count=total,
    )


# aiohttp's own HTTP exceptions (routing, method, size) become problems with these names.
_HTTP_NAMES: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Payload too large"),
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Translate every exception into a problem; the only place error bodies are written."""
    instance = request.path
    try:
        return await handler(request)
    except Problem as p:
        return problem_response(
            p.status, p.name, p.title, p.detail, instance=instance,
            errors=p.errors, error_count=p.error_count or None, headers=p.headers,
        )
    except ValidationError as exc:
        return _validation_problem(exc, instance)
    except NotFoundError as exc:
        return problem_response(404, "not-found", "Not found", str(exc) or "no such resource",
                                instance=instance)
    except ConflictError as exc:
        return problem_response(409, "conflict", "Conflict", str(exc) or "id already used",
                                instance=instance)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are answers, not errors
        name, title = _HTTP_NAMES.get(exc.status, ("http-error", exc.reason))
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        detail = {404: f"no resource at {request.path}",
                  405: f"{request.method} is not allowed on {request.path}"}.get(
            exc.status, exc.text or exc.reason)
        return problem_response(exc.status, name, title, detail, instance=instance,
                                headers=headers)
    except Exception:
        # The caller learns nothing of internals; operators find it in the log by path.
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return problem_response(500, "internal-error", "Internal server error",
                                "the gateway failed unexpectedly; the request was not completed",
                                instance=instance)
