"""A request body over the service's limit, and text with a NUL in it (U+0000), refused
before a route reads them.

The limit (the aggregator's and the notifier's `max_body_bytes`, 32 MiB by default) holds
for every body, whoever sends it: a `Content-Length` over it is a 413 at once, unread, and
a body without one is counted as it arrives and refused as soon as it passes the limit, so
no more than the limit (and the one chunk that crossed it) is ever held. Ingest has its
own, smaller limit, gzip included (services/ingest/bodies.py).

PostgreSQL's text cannot hold U+0000, and JSON and URLs can carry it (`"\\u0000"`, `%00`).
Every route that passed one to a query answered 500 (a unit's name, a silence's comment,
the alerts' `campaign` filter, an explanation's text…). Checked here, once, for every
route of a service: the path, the query string, and a JSON or form body; a 422 names each
field as the validation errors do. (ingest refuses control characters field by field
already.) A JSON body sent without an `Authorization` header is not searched: every route
that reads JSON requires a bearer credential (docs/access.md), so its answer is the 401,
not a 422 about a body nobody may send. The chiefs' link pages, the only routes that take
no credential, post forms: those are always searched.
"""

import json
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from pydantic import Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiendo.web import body_too_large, problem

# The aggregator's and the notifier's body limit (their `max_body_bytes`): 32 MiB holds a
# national target upload (10,600 communes x 8 indicators, about 11 MiB as JSON) twice over.
BodyLimit = Annotated[
    int,
    Field(
        ge=1024,
        description="largest request body; a larger one gets 413 unread (tiendo/nul_guard.py)",
    ),
]
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024

NUL = "\x00"
FORM = b"application/x-www-form-urlencoded"
MESSAGE = "text may not contain NUL (U+0000)"


def nul_fields(value: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """The dotted path of every string (or key) under `value` that holds a NUL."""
    if isinstance(value, str):
        if NUL in value:
            yield ".".join(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                yield ".".join((*path, key))
            yield from nul_fields(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nul_fields(item, (*path, str(index)))


def _pairs_with_nul(encoded: bytes) -> list[str]:
    pairs = parse_qsl(encoded.decode("latin-1"), keep_blank_values=True, encoding="utf-8")
    return [key for key, value in pairs if NUL in key or NUL in value]


class NulGuardMiddleware:
    """413 for a body over `max_body_bytes`, 422 for a request whose path, query or body
    holds a NUL; the rest pass untouched (the body read here is handed on as it came)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # the first of a repeated header, as the framework reads it (`dict` kept the last:
        # a second Content-Type hid a JSON body from the search)
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await body_too_large(self.max_body_bytes)(scope, receive, send)
            return
        body, receive = await _buffered(receive, self.max_body_bytes)
        if body is None:
            await body_too_large(self.max_body_bytes)(scope, receive, send)
            return
        fields = ["path"] if NUL in scope.get("path", "") else []
        fields += _pairs_with_nul(scope.get("query_string", b""))
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        # (JSON as FastAPI reads it: its media type, a +json one, or none given)
        is_json = media in (b"", b"application/json") or media.endswith(b"+json")
        if media == FORM or (is_json and b"authorization" in headers):
            fields += _body_fields(media, body)
        if fields:
            response = problem(
                422,
                MESSAGE,
                slug="invalid-parameters",
                errors=[{"index": None, "field": f, "message": MESSAGE} for f in fields],
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _body_fields(media: bytes, body: bytes) -> list[str]:
    if media == FORM:
        return _pairs_with_nul(body)
    # JSON can hold a NUL only as the escape (a raw one is invalid JSON, refused later).
    # A body with a zero byte is UTF-16 or 32, whose escape is spelled with zero bytes
    # between its characters: searched whatever it spells.
    if b"\\u0000" not in body and b"\x00" not in body:
        return []
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        # read as the routes read it (the standard library's `json`): UTF-16 and 32,
        # NaN, integers past 64 bits, all of which orjson refuses; a NUL in any of them
        # reached PostgreSQL, a 500
        try:
            value = json.loads(body)
        except ValueError:
            return []  # the route's parser answers it
    return list(nul_fields(value))


async def _buffered(receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
    """The whole body (None once it passes `limit` bytes: the rest is left unread), and a
    `receive` that replays it."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"", _repeating(message)  # a disconnect: nothing to check or replay
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _repeating(message: Message) -> Receive:
    async def receive() -> Message:
        return message

    return receive
