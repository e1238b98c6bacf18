"""`Content-Encoding: gzip` bodies: accepted like plain ones (JSON and protobuf), the size
limit applied to what they decompress to, with never more than the limit held: a zip
bomb is a precise 413, a corrupt stream a 400, another coding a 415 naming gzip."""

import asyncio
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from devtools.localstack import KafkaBroker
from services.ingest.bodies import BodyTooLarge, CorruptBody, read_body
from tests.ingest.test_ingest_api import batch, read_topic, serving, settings_for
from tests.support.stack import Topics
from tests.support.world import build_world, issue_token
from tiendo.event import decode
from tiendo.events.v1 import events_pb2

MiB = 2**20
GZIP_JSON = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


def zeros_gzipped(total: int, piece: int = MiB) -> Iterator[bytes]:
    """A gzip stream of `total` zero bytes, compressed as it is read (never held whole)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(piece)
    for _ in range(total // piece):
        if out := compressor.compress(block):
            yield out
    yield compressor.flush()


async def chunks_of(data: bytes | Iterator[bytes], size: int = 4096) -> AsyncIterator[bytes]:
    """A request body as the server receives it: pieces of `size` bytes."""
    for part in [data] if isinstance(data, bytes) else data:
        for i in range(0, len(part), size):
            yield part[i : i + size]


@pytest.fixture
async def ingest(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    await build_world(database, starts_at=datetime.now(UTC) - timedelta(days=1))
    token = await issue_token(database, units=["001"], indicators=["cccd_collected"])
    async with serving(settings_for(database, kafka.bootstrap, topics), token) as client:
        yield client


async def test_gzip_json_and_protobuf_bodies_are_accepted_and_published(
    ingest: httpx.AsyncClient, kafka: KafkaBroker, topics: Topics
) -> None:
    r = await ingest.post(
        "/v1/events", content=gzip.compress(orjson.dumps(batch(3, "gz"))), headers=GZIP_JSON
    )
    assert (r.status_code, r.json()) == (202, {"accepted": 3})
    message = events_pb2.EventBatch()
    e = message.events.add(event_id="pb-gz", unit="00007", indicator="cccd_collected", value=2)
    e.occurred_at.FromDatetime(datetime.now(UTC))
    # two gzip members one after the other are one gzip stream (RFC 1952)
    raw = message.SerializeToString()
    body = gzip.compress(raw[:5]) + gzip.compress(raw[5:])
    r = await ingest.post(
        "/v1/events",
        content=body,
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "x-gzip"},
    )
    assert (r.status_code, r.json()) == (202, {"accepted": 1})
    records = await asyncio.wait_for(read_topic(kafka.bootstrap, topics.events, at_least=4), 120)
    assert sorted(decode(r.value).event_id for r in records) == ["gz0", "gz1", "gz2", "pb-gz"]


async def test_ten_megabytes_of_zeros_in_ten_kilobytes_of_gzip_is_a_precise_413(
    ingest: httpx.AsyncClient,
) -> None:
    bomb = gzip.compress(bytes(10 * MiB), 9)
    assert len(bomb) < 12_000  # well under the 1 MiB limit as sent
    r = await ingest.post("/v1/events", content=bomb, headers=GZIP_JSON)
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["detail"] == "the decompressed body is larger than 1048576 bytes"
    assert body["status"] == 413
    metrics = (await ingest.get("/metrics")).text
    assert 'tiendo_ingest_events_rejected_total{reason="body_too_large"} 1.0' in metrics


async def test_a_gzip_stream_expanding_to_gigabytes_is_refused_as_it_arrives(
    ingest: httpx.AsyncClient,
) -> None:
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        async for chunk in chunks_of(zeros_gzipped(8 * 2**30)):
            sent += len(chunk)
            yield chunk

    r = await ingest.post("/v1/events", content=stream(), headers=GZIP_JSON)
    assert r.status_code == 413
    assert r.json()["detail"] == "the decompressed body is larger than 1048576 bytes"
    # refused after about 1 MiB inflated: the 8 GiB stream was read for a few kilobytes
    assert sent < 64 * 1024


async def test_inflating_a_bomb_never_holds_more_than_the_limit() -> None:
    limit = 4 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge) as refused:
            await read_body(chunks_of(zeros_gzipped(2 * 2**30)), "gzip", limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.decoded
    # the inflated bytes kept (at most the limit), one more piece being inflated, and the
    # compressor's own state: nowhere near the 2 GiB the stream expands to
    assert peak < limit + 2 * MiB


async def test_the_limit_holds_to_the_byte_after_decompression() -> None:
    limit = 1024
    exact = await read_body(chunks_of(gzip.compress(b"x" * limit), 7), "gzip", limit)
    assert exact == b"x" * limit
    with pytest.raises(BodyTooLarge, match="decompressed body is larger than 1024 bytes"):
        await read_body(chunks_of(gzip.compress(b"x" * (limit + 1)), 7), "gzip", limit)
    # the bytes sent are held to the limit too, whatever they decompress to
    with pytest.raises(BodyTooLarge, match=r"^the body is larger than 1024 bytes"):
        await read_body(chunks_of(b"y" * (limit + 1)), "identity", limit)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (gzip.compress(b'{"events": []}')[:-6], "the gzip stream is truncated"),
        (b'{"events": []}', "not a valid gzip stream"),
        (gzip.compress(b"{}")[:10] + b"\xff" * 40, "not a valid gzip stream: Error -3"),
        (gzip.compress(b"{}") + b"trailing junk", "not a valid gzip stream"),
        (b"", "the gzip stream is truncated"),
    ],
    ids=["truncated", "not-gzip", "corrupt-deflate", "trailing-junk", "empty"],
)
async def test_a_corrupt_gzip_stream_is_a_400_problem(
    ingest: httpx.AsyncClient, body: bytes, detail: str
) -> None:
    r = await ingest.post("/v1/events", content=body, headers=GZIP_JSON)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].startswith(detail)
    with pytest.raises(CorruptBody):
        await read_body(chunks_of(body), "gzip", MiB)


@pytest.mark.parametrize("coding", ["br", "deflate", "zstd", "gzip, gzip", "compress"])
async def test_another_content_coding_is_a_415_naming_gzip(
    ingest: httpx.AsyncClient, coding: str
) -> None:
    r = await ingest.post(
        "/v1/events",
        content=orjson.dumps(batch(1)),
        headers={"Content-Type": "application/json", "Content-Encoding": coding},
    )
    assert r.status_code == 415
    assert r.headers["content-type"] == "application/problem+json"
    assert "Content-Encoding: gzip" in r.json()["detail"]
    assert r.headers["accept-encoding"] == "gzip, identity"


async def test_the_openapi_description_states_gzip_and_its_limit(
    ingest: httpx.AsyncClient,
) -> None:
    operation = (await ingest.get("/openapi.json")).json()["paths"]["/v1/events"]["post"]
    assert "Content-Encoding: gzip" in operation["description"]
    assert "decompressed" in operation["responses"]["413"]["description"]
    assert "gzip" in operation["responses"]["415"]["description"]
