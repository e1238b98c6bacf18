"""A NUL (U+0000) anywhere in a request's text is a 422 naming the field, before a route
can hand it to PostgreSQL; everything else reaches the route as it was sent. (The
services' fuzz tests, tests/boards/test_aggregator_fuzz.py and
tests/alerts/test_notifier_fuzz.py, hold the real routes to it.)"""

from typing import Any

import httpx
from fastapi import FastAPI, Request

from tiendo.nul_guard import NulGuardMiddleware
from tiendo.web import install_problem_handlers


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        return {"body": (await request.body()).decode(), "query": dict(request.query_params)}

    install_problem_handlers(app)
    app.add_middleware(NulGuardMiddleware)
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
    assert _fields(await _send(json=body)) == ["units.0.name", "units.1.code", "k\x00"]
    assert _fields(await _send(params={"campaign": "\0", "unit": "x"})) == ["campaign"]
    form = {"detail": "mưa\0", "cause": "mat_dien"}
    assert _fields(await _send(data=form)) == ["detail"]


async def test_what_holds_no_nul_reaches_the_route_as_sent() -> None:
    # an escaped backslash before "u0000" is text, not a NUL
    raw = '{"name": "\\\\u0000 is how JSON writes it", "n": 1}'
    r = await _send(content=raw, headers={"content-type": "application/json"}, params={"q": "é"})
    assert r.status_code == 200, r.text
    assert r.json() == {"body": raw, "query": {"q": "é"}}
    # not JSON at all: left to the route's own parsing
    r = await _send(content=b"\\u0000{", headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
