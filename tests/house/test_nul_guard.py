"""A NUL (U+0000) anywhere in a request's text is a 422 naming the field, before a route
can hand it to PostgreSQL; a body over the limit is a 413, read no further than the
limit; everything else reaches the route as it was sent. (The services' fuzz tests,
tests/boards/test_aggregator_fuzz.py and tests/alerts/test_notifier_fuzz.py, hold the
real routes to it; tests/house/test_body_limit.py the real services' limit.)"""

from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request

from tiendo.nul_guard import NulGuardMiddleware
from tiendo.web import install_problem_handlers

LIMIT = 4096
AUTH = {"Authorization": "Bearer x"}  # a credential offered: the body is searched


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        return {"body": (await request.body()).decode(), "query": dict(request.query_params)}

    install_problem_handlers(app)
    app.add_middleware(NulGuardMiddleware, max_body_bytes=LIMIT)
    return app


async def _send(**kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/echo", **kwargs)


def _fields(r: httpx.Response) -> list[str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return [e["field"] for e in r.json()["errors"]]


async def test_a_nul_is_refused_by_field_wherever_it_is() -> None:
    body = {"units": [{"code": "x", "name": "a\0b"}, {"code": "y\0"}], "k\0": 1, "ok": "x"}
    assert _fields(await _send(json=body, headers=AUTH)) == [
        "units.0.name",
        "units.1.code",
        "k\x00",
    ]
    assert _fields(await _send(params={"campaign": "\0", "unit": "x"})) == ["campaign"]
    form = {"detail": "mưa\0", "cause": "mat_dien"}
    assert _fields(await _send(data=form)) == ["detail"]


async def test_a_nul_is_found_in_json_however_the_route_would_read_it() -> None:
    # the routes read JSON with the standard library: UTF-16 and 32, NaN and integers
    # past 64 bits are JSON to them, and each got a NUL past a guard that read it with
    # orjson alone (a 500 from PostgreSQL)
    text = '{"name": "a\\u0000b", "x": %s}'
    for body in (
        (text % 1).encode("utf-16"),
        (text % 1).encode("utf-32-le"),
        (text % "NaN").encode(),
        (text % ("1" + "0" * 30)).encode(),
    ):
        json = {"content-type": "application/json", **AUTH}
        assert _fields(await _send(content=body, headers=json)) == ["name"], body
    # a second Content-Type does not hide the body: the first is the one read
    two = [("content-type", "application/json"), ("content-type", "text/plain"), *AUTH.items()]
    assert _fields(await _send(content=(text % 1).encode(), headers=two)) == ["name"]


async def test_what_holds_no_nul_reaches_the_route_as_sent() -> None:
    # an escaped backslash before "u0000" is text, not a NUL
    raw = '{"name": "\\\\u0000 is how JSON writes it", "n": 1}'
    json = {"content-type": "application/json", **AUTH}
    r = await _send(content=raw, headers=json, params={"q": "é"})
    assert r.status_code == 200, r.text
    assert r.json() == {"body": raw, "query": {"q": "é"}}
    # not JSON at all: left to the route's own parsing
    r = await _send(content=b"\\u0000{", headers=json)
    assert r.status_code == 200, r.text


async def test_a_json_body_without_a_credential_is_left_to_the_route() -> None:
    # every JSON route needs a bearer credential: its 401 comes first, not this 422
    r = await _send(json={"name": "a\0b"})
    assert r.status_code == 200, r.text
    # the path, the query and a form are searched for everyone (the link pages' forms)
    assert _fields(await _send(json={}, params={"q": "\0"})) == ["q"]
    assert _fields(await _send(data={"detail": "\0"})) == ["detail"]


def _too_large(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == f"the body is larger than {LIMIT} bytes"


async def test_a_body_declared_over_the_limit_is_refused_unread() -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(4):
            pulled += 1
            yield b" " * LIMIT

    headers = {"content-type": "application/json", "content-length": str(4 * LIMIT)}
    _too_large(await _send(content=body(), headers=headers))
    assert pulled == 0
    # with a credential or without, NUL or not: the size is the first thing checked
    _too_large(await _send(content=b'"\\u0000"' + b" " * LIMIT, headers=AUTH))


async def test_a_body_without_a_length_is_cut_off_at_the_limit() -> None:
    pulled = 0

    async def body(size: int) -> AsyncIterator[bytes]:
        nonlocal pulled
        for start in range(0, size, 1000):
            pulled += 1
            yield b" " * min(1000, size - start)

    # 1 MB in chunks of 1,000 bytes: refused at the chunk that passes the limit
    _too_large(await _send(content=body(1_000_000), headers=AUTH))
    assert pulled == LIMIT // 1000 + 1
    # exactly the limit passes, as sent
    r = await _send(content=body(LIMIT), headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.json()["body"] == " " * LIMIT
