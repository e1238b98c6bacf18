"""A small client for tiendo's ingest API: batches events, retries safely, hashes subjects.

    from tiendo_client import Client, Event, subject_hash

    with Client("http://127.0.0.1:8001", token=os.environ["TIENDO_TOKEN"]) as client:
        client.send([Event.increment("00004", "cccd_collected", occurred_at=now)])

Every Event gets its `event_id` when it is created, so a retry — after a 503, a 429, a
timeout or a dropped connection — sends the same ids and ingest counts each event once.
A 4xx other than 429 is not retried: it raises `Rejected` with the server's problem
details (`errors` lists each bad event by index within the batch). Only httpx is needed;
`tiendo_client.webhooks` verifies the notifier's webhooks (with standardwebhooks).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import httpx

__all__ = [
    "AsyncClient",
    "Batcher",
    "Client",
    "Event",
    "Rejected",
    "RetryPolicy",
    "Unavailable",
    "new_event_id",
    "subject_hash",
]
__version__ = "1.1.0"

MAX_BATCH = 1000
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
_SEPARATORS = re.compile(r"[\s.\-_/]")
MIN_KEY_BYTES = 16


def new_event_id() -> str:
    """A fresh event id: 32 hex characters (a random UUID)."""
    return uuid.uuid4().hex


def subject_hash(key: bytes, reference: str) -> str:
    """The `subject` of a citizen reference: HMAC-SHA256 under the deployment's subject key,
    64 lowercase hex characters.

    The reference (e.g. a CCCD number) is normalised first — spaces, dots, dashes,
    underscores and slashes removed — so "001 203 004567" and "001203004567" agree. Every
    upstream system of a deployment must use the same key, or one citizen counted by two
    systems would count twice. The key stays with the upstream systems: without it a
    12-digit ID number could be recovered from its hash by trying them all.
    """
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the subject key must be at least {MIN_KEY_BYTES} bytes")
    normalised = _SEPARATORS.sub("", reference)
    if not normalised:
        raise ValueError("empty citizen reference")
    return hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()


def _rfc3339(at: datetime | str) -> str:
    if isinstance(at, str):
        return at
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("occurred_at must be timezone-aware (tiendo counts by local day)")
    return at.isoformat()


@dataclass(frozen=True)
class Event:
    """One progress event (contract §4.1). Build it with `increment` or `snapshot`."""

    unit: str
    indicator: str
    occurred_at: str
    kind: Literal["increment", "snapshot"] = "increment"
    value: int = 1
    subject: str | None = None
    event_id: str = field(default_factory=new_event_id)

    @classmethod
    def increment(
        cls,
        unit: str,
        indicator: str,
        value: int = 1,
        *,
        occurred_at: datetime | str,
        subject: str | None = None,
        event_id: str | None = None,
    ) -> Event:
        """`value` more done (negative to correct an over-count); `subject` only with 1."""
        return cls(
            unit=unit,
            indicator=indicator,
            occurred_at=_rfc3339(occurred_at),
            value=value,
            subject=subject,
            event_id=event_id or new_event_id(),
        )

    @classmethod
    def snapshot(
        cls,
        unit: str,
        indicator: str,
        total: int,
        *,
        occurred_at: datetime | str,
        event_id: str | None = None,
    ) -> Event:
        """The unit's own cumulative total as of `occurred_at`, baseline included."""
        return cls(
            unit=unit,
            indicator=indicator,
            occurred_at=_rfc3339(occurred_at),
            kind="snapshot",
            value=total,
            event_id=event_id or new_event_id(),
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "event_id": self.event_id,
            "unit": self.unit,
            "indicator": self.indicator,
            "kind": self.kind,
            "value": self.value,
            "occurred_at": self.occurred_at,
        }
        if self.subject is not None:
            body["subject"] = self.subject
        return body


class Rejected(Exception):
    """Ingest refused a batch for good (400, 401, 403, 413, 415, 422), or some of its
    events (202 with `conflicts`: the others were stored): fix, don't retry.

    `accepted` events of earlier batches of the same `send` were stored; `events` is the
    refused batch, and `errors[i]["index"]` points into it.
    """

    def __init__(
        self, status: int, problem: dict[str, Any], events: Sequence[Event], accepted: int
    ) -> None:
        self.status = status
        self.problem = problem
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        self.events = list(events)
        self.accepted = accepted
        super().__init__(f"{status}: {problem.get('detail', '')}")


class Unavailable(Exception):
    """Ingest could not take a batch within the retry policy; send it again later (the
    same Event objects, so the same ids). `accepted` events before it were stored."""

    def __init__(self, message: str, events: Sequence[Event], accepted: int) -> None:
        self.events = list(events)
        self.accepted = accepted
        super().__init__(message)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After is honoured (capped)."""

    attempts: int = 10
    initial_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_delay)
        ceiling = min(self.max_delay, self.initial_delay * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret


def _batches(events: Iterable[Event], size: int) -> Iterator[list[Event]]:
    batch: list[Event] = []
    for event in events:
        batch.append(event)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"status": response.status_code, "detail": response.text[:500]}
    return body if isinstance(body, dict) else {"status": response.status_code}


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "User-Agent": f"tiendo-client/{__version__}"}


# The sync and async clients differ only in their httpx client (and its transport).
_Transport = TypeVar("_Transport", httpx.BaseTransport, httpx.AsyncBaseTransport)
_Http = TypeVar("_Http", httpx.Client, httpx.AsyncClient)


class _Base(Generic[_Transport, _Http]):
    _http_class: Callable[..., _Http]

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        batch_size: int = MAX_BATCH,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: _Transport | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self._http: _Http = self._http_class(
            base_url=base_url, headers=_headers(token), timeout=timeout, transport=transport
        )

    def _outcome(
        self, response: httpx.Response, batch: Sequence[Event], accepted: int
    ) -> int | None:
        """Events accepted, or None to retry; raises Rejected for a final refusal."""
        if response.status_code == 202:
            return _accepted(response, batch, accepted)
        if response.status_code in _RETRIED_STATUSES:
            return None
        raise Rejected(response.status_code, _problem(response), batch, accepted)


class _Tries:
    """One batch's retries without their I/O, so that the sync and async clients share
    them and differ only in how they post and sleep: each attempt's response (or transport
    error) goes to `settle`, which returns the wait before the next attempt, or None once
    the batch is done (`accepted`), and raises when the policy gives up."""

    def __init__(self, client: _Base[Any, Any], batch: list[Event], accepted: int) -> None:
        self.body = {"events": [e.to_json() for e in batch]}
        self.accepted = accepted
        self._client = client
        self._batch = batch
        self._attempt = 0

    def settle(self, result: httpx.Response | httpx.TransportError) -> float | None:
        self._attempt += 1
        retry_after = None
        if isinstance(result, httpx.TransportError):
            last = f"{type(result).__name__}: {result}"
        else:
            done = self._client._outcome(result, self._batch, self.accepted)
            if done is not None:
                self.accepted = done
                return None
            last = f"HTTP {result.status_code}"
            retry_after = result.headers.get("retry-after")
        policy = self._client.retry
        if self._attempt >= policy.attempts:
            raise Unavailable(
                f"gave up after {policy.attempts} attempts ({last})", self._batch, self.accepted
            )
        return policy.delay(self._attempt, retry_after)


def _accepted(response: httpx.Response, batch: Sequence[Event], accepted: int) -> int:
    """A 202's count; its `conflicts` (events sharing an event_id with different content,
    none of them stored) are a refusal of those events, raised after the rest was stored."""
    conflicts = response.json().get("conflicts") or []
    if not conflicts:
        return len(batch)
    errors = [
        {
            "index": c["index"],
            "field": "event_id",
            "message": f"same event_id as events[{c['conflicts_with']}], other content",
        }
        for c in conflicts
    ]
    problem = {"detail": f"{len(conflicts)} conflicting event(s) not accepted", "errors": errors}
    raise Rejected(202, problem, batch, accepted + len(batch) - len(conflicts))


class Client(_Base[httpx.BaseTransport, httpx.Client]):
    """Synchronous client. Thread-safe as httpx.Client is; reuse one per process."""

    _http_class = httpx.Client

    def send(self, events: Iterable[Event]) -> int:
        """Send every event, in batches, retrying each until accepted; return how many."""
        accepted = 0
        for batch in _batches(events, self.batch_size):
            accepted += self._send_batch(batch, accepted)
        return accepted

    def _send_batch(self, batch: list[Event], accepted: int) -> int:
        tries = _Tries(self, batch, accepted)
        while (pause := tries.settle(self._post(tries.body))) is not None:
            time.sleep(pause)
        return tries.accepted

    def _post(self, body: dict[str, Any]) -> httpx.Response | httpx.TransportError:
        try:
            return self._http.post("/v1/events", json=body)
        except httpx.TransportError as exc:
            return exc

    def batcher(self) -> Batcher:
        """Collect events and send them a full batch at a time (and the rest on exit)."""
        return Batcher(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Batcher:
    """`with client.batcher() as b: b.add(event)` — sends whenever a batch is full."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._pending: list[Event] = []
        self.accepted = 0

    def add(self, event: Event) -> None:
        self._pending.append(event)
        if len(self._pending) >= self._client.batch_size:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self.accepted += self._client.send(pending)

    def __enter__(self) -> Batcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.flush()


class AsyncClient(_Base[httpx.AsyncBaseTransport, httpx.AsyncClient]):
    """The same client for asyncio programs."""

    _http_class = httpx.AsyncClient

    async def send(self, events: Iterable[Event]) -> int:
        """Send every event, in batches, retrying each until accepted; return how many."""
        accepted = 0
        for batch in _batches(events, self.batch_size):
            accepted += await self._send_batch(batch, accepted)
        return accepted

    async def _send_batch(self, batch: list[Event], accepted: int) -> int:
        tries = _Tries(self, batch, accepted)
        while True:
            pause = tries.settle(await self._post(tries.body))
            if pause is None:
                return tries.accepted
            await asyncio.sleep(pause)

    async def _post(self, body: dict[str, Any]) -> httpx.Response | httpx.TransportError:
        try:
            return await self._http.post("/v1/events", json=body)
        except httpx.TransportError as exc:
            return exc

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
