"""The client kit (clients/python): batches, retries with the same event_ids, refuses to
retry what will never pass, hashes subjects. The server side here is a stand-in (the
client's true boundary); tests/ingest/test_ingest_client.py runs it against real ingest."""

import hashlib
import hmac
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
from tiendo_client import (
    AsyncClient,
    Client,
    Event,
    Rejected,
    RetryPolicy,
    Unavailable,
    subject_hash,
)

KEY = bytes(range(32))
AT = datetime(2023, 6, 1, 8, 15, tzinfo=UTC)
FAST = RetryPolicy(attempts=4, initial_delay=0.001, max_delay=0.001)


class Server:
    """Answers from a script of statuses, then 202; records every request body."""

    def __init__(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.script = list(statuses)
        self.headers = headers or {}
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.auth.append(request.headers.get("authorization"))
        status = self.script.pop(0) if self.script else 202
        if status == 0:
            raise httpx.ConnectError("refused", request=request)
        if status == 202:
            return httpx.Response(202, json={"accepted": len(body["events"])})
        problem = {"status": status, "detail": "no", "errors": [{"index": 0, "field": "unit"}]}
        return httpx.Response(status, json=problem, headers=self.headers)


def client(server: Server, **kwargs: int) -> Client:
    return Client(
        "http://ingest", "tdo_x", retry=FAST, transport=httpx.MockTransport(server), **kwargs
    )


def events(n: int) -> list[Event]:
    return [Event.increment("00004", "cccd_collected", occurred_at=AT) for _ in range(n)]


def test_events_are_sent_in_batches_with_the_token() -> None:
    server = Server()
    with client(server) as c:
        assert c.send(events(2500)) == 2500
    assert [len(b["events"]) for b in server.bodies] == [1000, 1000, 500]
    assert set(server.auth) == {"Bearer tdo_x"}
    first = server.bodies[0]["events"][0]
    assert first["unit"] == "00004"
    assert first["occurred_at"] == "2023-06-01T08:15:00+00:00"
    assert first["value"] == 1


@pytest.mark.parametrize("failure", [503, 429, 502, 0], ids=["503", "429", "502", "no answer"])
def test_a_retry_sends_the_same_event_ids(failure: int) -> None:
    server = Server(failure, failure, headers={"Retry-After": "1"})
    with client(server) as c:
        assert c.send(events(3)) == 3
    assert len(server.bodies) == 3
    assert server.bodies[0] == server.bodies[1] == server.bodies[2]


@pytest.mark.parametrize("status", [400, 401, 403, 413, 415, 422])
def test_a_final_refusal_is_not_retried_and_says_what_was_stored(status: int) -> None:
    server = Server(202, status)
    with client(server, batch_size=2) as c, pytest.raises(Rejected) as caught:
        c.send(events(5))
    assert len(server.bodies) == 2
    assert caught.value.status == status
    assert caught.value.accepted == 2
    assert len(caught.value.events) == 2
    assert caught.value.errors == [{"index": 0, "field": "unit"}]


def test_giving_up_raises_unavailable_with_the_batch_to_resend() -> None:
    server = Server(503, 503, 503, 503)
    with client(server) as c, pytest.raises(Unavailable) as caught:
        c.send(events(2))
    assert len(server.bodies) == 4
    assert caught.value.accepted == 0
    assert [e.to_json() for e in caught.value.events] == server.bodies[0]["events"]


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(max_delay=7.0)
    assert policy.delay(1, "3") == 3.0
    assert policy.delay(1, "3600") == 7.0
    assert 0 <= policy.delay(10, None) <= 7.0


def test_batcher_sends_full_batches_and_the_rest_on_exit() -> None:
    server = Server()
    with client(server, batch_size=10) as c:
        with c.batcher() as batcher:
            for e in events(25):
                batcher.add(e)
            assert len(server.bodies) == 2
        assert batcher.accepted == 25
    assert [len(b["events"]) for b in server.bodies] == [10, 10, 5]


async def test_async_client_retries_the_same_ids() -> None:
    server = Server(503)
    async with AsyncClient(
        "http://ingest", "tdo_x", retry=FAST, transport=httpx.MockTransport(server)
    ) as c:
        assert await c.send(events(3)) == 3
    assert server.bodies[0] == server.bodies[1]


def test_subject_hash_is_hmac_sha256_of_the_normalised_reference() -> None:
    expected = hmac.new(KEY, b"001203004567", hashlib.sha256).hexdigest()
    assert subject_hash(KEY, "001203004567") == expected
    assert subject_hash(KEY, "001 203-004.567") == expected
    assert len(expected) == 64
    assert expected == expected.lower()
    assert subject_hash(bytes(32), "001203004567") != expected


def test_subject_hash_refuses_a_short_key_and_an_empty_reference() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        subject_hash(b"short", "001203004567")
    with pytest.raises(ValueError, match="empty"):
        subject_hash(KEY, " - ")


def test_events_need_aware_times_and_keep_their_id() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Event.increment("00004", "cccd_collected", occurred_at=datetime(2023, 6, 1))
    e = Event.snapshot("00004", "cccd_collected", 40, occurred_at=AT)
    assert e.to_json()["kind"] == "snapshot"
    assert e.to_json() == e.to_json()
    assert len(e.event_id) == 32
    assert Event.increment("001", "x", occurred_at=AT).event_id != e.event_id


def test_batch_size_is_bounded_by_the_server_limit() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Client("http://ingest", "t", batch_size=1001)


def test_conflicts_in_a_202_are_raised_with_the_rest_counted_as_stored() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        conflicts = [{"index": 1, "conflicts_with": 2}, {"index": 2, "conflicts_with": 1}]
        return httpx.Response(202, json={"accepted": 1, "conflicts": conflicts})

    c = Client("http://ingest", "tdo_x", retry=FAST, transport=httpx.MockTransport(answer))
    with c, pytest.raises(Rejected) as refused:
        c.send(events(3))
    assert refused.value.status == 202
    assert refused.value.accepted == 1
    assert [e["index"] for e in refused.value.errors] == [1, 2]
