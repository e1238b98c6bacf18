"""The edges of a request body (contract §8, promise 3: a precise 4xx, never a 5xx), each
sent to the real ingest app on the real broker:

- a key an event (or the body's own object) names twice is a 422 naming the key and the
  event's index, where the JSON parser kept the last value and said nothing;
- a JSON body declared in a charset other than UTF-8 is a 415 naming it, where a UTF-16
  one was "malformed JSON" and a Latin-1 one of ASCII letters was accepted;
- a gzip body with bytes after its end (junk, zero padding) is a 400 saying so, a
  truncated one a 400 saying that, and two members one after the other are accepted;
- hostile JSON (NaN, Infinity, lone surrogates, deep nesting, huge numbers, a BOM) gets
  its 400 or 422, and nothing of any of them is published.
"""

import asyncio
import gzip
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from devtools.localstack import KafkaBroker
from services.ingest.bodies import CorruptBody, read_body
from tests.ingest.test_ingest_api import batch, event, ingest, read_topic
from tests.support.stack import Topics
from tiendo.event import decode

__all__ = ["ingest"]  # the fixture

JSON = {"Content-Type": "application/json"}
GZIP_JSON = {**JSON, "Content-Encoding": "gzip"}
RAW_ID = "001203004567"
DUPLICATE = "duplicate key: the object names this field more than once"
NOT_A_MEMBER = (
    "not a valid gzip stream: bytes after the end of a gzip member are not another "
    "member (trailing data or padding)"
)
NOT_GZIP = "not a valid gzip stream: it does not begin with gzip's header (1f 8b)"
TRUNCATED = "the gzip stream is truncated"


def written(event: dict[str, Any], *extra: tuple[str, str]) -> bytes:
    """`event` as JSON text, with each (key, JSON literal) of `extra` written after it."""
    text = json.dumps(event)[:-1]
    return (text + "".join(f", {json.dumps(k)}: {v}" for k, v in extra) + "}").encode()


def with_id(text: bytes, event_id: bytes) -> bytes:
    """`text` (written with `event("ID")`) with its event_id as the JSON text `event_id`
    (an escape json.dumps would not write)."""
    return text.replace(b'"e-ID"', b'"' + event_id + b'"')


def errors_of(r: httpx.Response) -> list[tuple[int | None, str, str]]:
    assert r.headers["content-type"] == "application/problem+json", r.text
    return [(e["index"], e["field"], e["message"]) for e in r.json()["errors"]]


async def post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/v1/events", content=body, headers=headers)


# --- duplicate keys -------------------------------------------------------------------


async def test_an_event_naming_value_twice_is_a_422_naming_the_key(
    ingest: httpx.AsyncClient, kafka: KafkaBroker, topics: Topics
) -> None:
    r = await post(ingest, written(event("twice", value=1), ("value", "1000")), JSON)
    assert r.status_code == 422, r.text
    assert errors_of(r) == [(0, "value", DUPLICATE)]
    # the third event of a batch, among good ones: its index, and nothing published
    events = [written(event(f"b{i}")) for i in range(5)]
    events[2] = written(event("b2"), ("unit", '"00007"'), ("unit", '"00010"'))
    body = b'{"events": [' + b", ".join(events) + b"]}"
    r = await post(ingest, body, JSON)
    assert r.status_code == 422, r.text
    assert errors_of(r) == [(2, "unit", DUPLICATE)]
    assert await read_topic(kafka.bootstrap, topics.events, idle_ms=1500) == []


async def test_a_body_naming_events_twice_is_a_422_on_the_body(ingest: httpx.AsyncClient) -> None:
    first, second = orjson.dumps([event("one")]), orjson.dumps([event("two")])
    r = await post(ingest, b'{"events": ' + first + b', "events": ' + second + b"}", JSON)
    assert r.status_code == 422, r.text
    assert errors_of(r) == [(None, "events", DUPLICATE)]


async def test_a_repeat_is_found_when_an_escaped_colon_evens_the_count(
    ingest: httpx.AsyncClient,
) -> None:
    # `\u003a` is one colon once parsed and none as sent: exactly what the repeated key's
    # colon takes away, so only the escape sends the body to be looked at closely
    body = with_id(written(event("ID"), ("value", "1"), ("value", "1")), b"x\\u003ay")
    assert body.count(b":") == orjson.dumps(orjson.loads(body)).count(b":")
    r = await post(ingest, body, JSON)
    assert r.status_code == 422, r.text
    assert errors_of(r) == [(0, "value", DUPLICATE)]
    # and an escaped colon alone is no repeat
    r = await post(ingest, with_id(written(event("ID")), b"x\\u003ay"), JSON)
    assert r.status_code == 202, r.text


async def test_a_repeated_key_that_is_a_raw_id_number_is_not_echoed(
    ingest: httpx.AsyncClient,
) -> None:
    r = await post(ingest, written(event("rid"), (RAW_ID, "1"), (RAW_ID, "2")), JSON)
    assert r.status_code == 422, r.text
    assert (0, "", "duplicate key whose name looks like a raw ID number") in errors_of(r)
    assert RAW_ID not in r.text


async def test_a_deeply_nested_repeat_is_refused_without_a_5xx(ingest: httpx.AsyncClient) -> None:
    # past what orjson writes back (254 levels) and what the standard parser reads (~1,000)
    for depth in (300, 1020):
        nested = "[" * depth + "]" * depth
        body = written(event("deep"), ("extra", nested), ("value", "1"), ("value", "2"))
        r = await post(ingest, body, JSON)
        assert r.status_code == 422, r.text
        assert (0, "extra", "unknown field") in errors_of(r)
        # named when the standard parser can read the body; else the field is refused alone
        assert ((0, "value", DUPLICATE) in errors_of(r)) == (depth == 300)


# --- charsets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "body", "named"),
    [
        ("utf-16", json.dumps(event("u16")).encode("utf-16"), "charset=utf-16"),
        ("UTF-16LE", json.dumps(event("u16")).encode("utf-16-le"), "charset=UTF-16LE"),
        # ASCII only: the very bytes of UTF-8, which were accepted as such
        ("ISO-8859-1", json.dumps(event("l1")).encode("latin-1"), "charset=ISO-8859-1"),
        ('"latin1"', json.dumps(event("l1")).encode("latin-1"), "charset=latin1"),
        (RAW_ID, json.dumps(event("rid")).encode(), "the charset named"),
    ],
    ids=["utf-16", "utf-16le", "latin-1", "quoted-latin1", "raw-id"],
)
async def test_a_json_body_in_another_charset_is_a_415_naming_it(
    ingest: httpx.AsyncClient, charset: str, body: bytes, named: str
) -> None:
    r = await post(ingest, body, {"Content-Type": f"application/json; charset={charset}"})
    assert r.status_code == 415, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == (
        f"{named} is not accepted: JSON is UTF-8 (RFC 8259); send the body in UTF-8, with "
        "charset=utf-8 or no charset"
    )
    assert RAW_ID not in r.text


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",
        'application/json;charset="Utf-8"',
        "application/json; charset=utf8",
        "Application/JSON; foo=bar; charset=utf-8",
    ],
)
async def test_utf8_is_accepted_however_it_is_written(
    ingest: httpx.AsyncClient, content_type: str
) -> None:
    r = await post(ingest, orjson.dumps(event("utf8")), {"Content-Type": content_type})
    assert (r.status_code, r.json()) == (202, {"accepted": 1})


# --- gzip -----------------------------------------------------------------------------


def _gz(body: object) -> bytes:
    return gzip.compress(orjson.dumps(body))


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (_gz(event("g")) + b"trailing junk", NOT_A_MEMBER),
        (_gz(event("g")) + bytes(512), NOT_A_MEMBER),  # zero padding
        (_gz(event("g")) + b"\x00", NOT_A_MEMBER),  # one byte, once "truncated"
        (_gz(event("g")) + b"\x1f\x8c", NOT_A_MEMBER),  # half of gzip's magic
        (_gz(event("g"))[:-4], TRUNCATED),
        (_gz(event("g")) + _gz(event("h"))[:12], TRUNCATED),  # a second member cut short
        (orjson.dumps(event("g")), NOT_GZIP),
        (b"\x78\x9c" + _gz(event("g"))[10:], NOT_GZIP),  # a zlib stream sent as gzip
    ],
    ids=[
        "trailing-junk",
        "zero-padding",
        "one-zero",
        "near-magic",
        "truncated",
        "truncated-second-member",
        "plain-json",
        "zlib",
    ],
)
async def test_a_gzip_body_with_broken_framing_is_a_400_saying_how(
    ingest: httpx.AsyncClient, body: bytes, detail: str
) -> None:
    r = await post(ingest, body, GZIP_JSON)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == detail
    # the same however the bytes arrive (the magic split between pieces too)
    for size in (1, 2, 3, 4096):
        with pytest.raises(CorruptBody, match=re.escape(detail)):
            await read_body(_pieces(body, size), "gzip", 2**20)


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_gzip_members_one_after_another_are_one_body(
    ingest: httpx.AsyncClient, kafka: KafkaBroker, topics: Topics
) -> None:
    text = orjson.dumps(batch(3, "mm"))
    body = b"".join(gzip.compress(text[i : i + 40]) for i in range(0, len(text), 40))
    body += gzip.compress(b"")  # an empty member is a member too
    r = await post(ingest, body, GZIP_JSON)
    assert (r.status_code, r.json()) == (202, {"accepted": 3})
    assert await read_body(_pieces(body, 1), "gzip", 2**20) == text
    records = await asyncio.wait_for(read_topic(kafka.bootstrap, topics.events, at_least=3), 120)
    assert sorted(decode(r.value).event_id for r in records) == ["mm0", "mm1", "mm2"]


# --- hostile JSON ---------------------------------------------------------------------


def _value(literal: str) -> bytes:
    return written(event("v"), ("value", literal))


HOSTILE: list[tuple[str, bytes, int, str | tuple[int | None, str]]] = [
    # (name, body, status, detail's start for a 400, (index, field) of the 422's first error)
    ("NaN", _value("NaN"), 400, "malformed JSON: unexpected character"),
    ("Infinity", _value("Infinity"), 400, "malformed JSON: unexpected character"),
    ("-Infinity", _value("-Infinity"), 400, "malformed JSON: no digit after sign"),
    ("1e400", _value("1e400"), 400, "malformed JSON: number is infinity"),
    ("-1e400", _value("-1e400"), 400, "malformed JSON: number is infinity"),
    ("lone high surrogate", with_id(written(event("ID")), b"\\ud800"), 400, "malformed JSON"),
    ("lone low surrogate", with_id(written(event("ID")), b"\\udc00"), 400, "malformed JSON"),
    ("BOM", b"\xef\xbb\xbf" + written(event("bom")), 400, "malformed JSON: UTF-8 byte order"),
    ("UTF-16 BOM", json.dumps(event("b16")).encode("utf-16"), 400, "malformed JSON"),
    ("nesting 1,025 deep", b"[" * 1025 + b"]" * 1025, 400, "malformed JSON: depth limit"),
    ("nesting 1,024 deep", b"[" * 1024 + b"]" * 1024, 422, (0, "")),
    ("2**64", _value(str(2**64)), 422, (0, "value")),
    ("2**63", _value(str(2**63)), 422, (0, "value")),
    ("-2**63 - 1", _value(str(-(2**63) - 1)), 422, (0, "value")),
    ("1e308", _value("1e308"), 422, (0, "value")),
    ("1.0", _value("1.0"), 422, (0, "value")),
    ("1E2", _value("1E2"), 422, (0, "value")),
    ("-0", _value("-0"), 422, (0, "value")),
    ("a NUL in a key", written(event("nul"), ("a\x00b", "1")), 422, (0, "a\x00b")),
    (
        "a thousand events, each naming value twice",
        b'{"events": ['
        + b", ".join(written(event(f"t{i}"), ("value", "1"), ("value", "2")) for i in range(1000))
        + b"]}",
        422,
        (0, "value"),
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [(body, status, expected) for _, body, status, expected in HOSTILE],
    ids=[name for name, *_ in HOSTILE],
)
async def test_hostile_json_gets_a_precise_4xx(
    ingest: httpx.AsyncClient,
    body: bytes,
    status: int,
    expected: str | tuple[int | None, str],
) -> None:
    for sent, headers in ((body, JSON), (gzip.compress(body), GZIP_JSON)):
        r = await post(ingest, sent, headers)
        assert r.status_code == status, r.text
        problem = r.json()
        if isinstance(expected, str):
            assert problem["detail"].startswith(expected), problem
        else:
            first = problem["errors"][0]
            assert (first["index"], first["field"]) == expected, problem
