"""Text with a NUL in it (U+0000), refused before a route reads it.

PostgreSQL's text cannot hold U+0000, and JSON and URLs can carry it (`"\\u0000"`, `%00`).
Every route that passed one to a query answered 500 (a unit's name, a silence's comment,
the alerts' `campaign` filter, an explanation's text…). Checked here, once, for every
route of a service: the query string, and a JSON or form body; a 422 names each field as
the validation errors do. (ingest refuses control characters field by field already.)
"""

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiendo.web import problem

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
    """422 for a request whose path, query or body holds a NUL; the rest pass untouched
    (the body read here is handed on as it came)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields = ["path"] if NUL in scope.get("path", "") else []
        fields += _pairs_with_nul(scope.get("query_string", b""))
        headers = dict(scope["headers"])
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        # (JSON as FastAPI reads it: its media type, a +json one, or none given)
        if media in (b"", b"application/json", FORM) or media.endswith(b"+json"):
            body, receive = await _buffered(receive)
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
    # (JSON can hold a NUL only as the escape; a raw one is invalid JSON, refused later)
    if b"\\u0000" not in body:
        return []
    try:
        return list(nul_fields(orjson.loads(body)))
    except orjson.JSONDecodeError:
        return []  # the route's parser answers it


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a `receive` that replays it."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"", _repeating(message)  # a disconnect: nothing to check or replay
        chunks.append(message.get("body", b""))
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
