"""Load whose every 202 is written down: clients that post batches of events and retry a
batch with the same event_ids until ingest answers 202 (contract §8 promise 2), and the
counters those 202s make owed (promise 1), worked out by the reference model of what counts
(`tests/counting/model.py`).

Every plain increment carries a value never used before in the run, so one event lost or
counted twice moves its unit's total by an amount no other single event could make up for.
A `mixed` load also sends snapshots (each a value never used before either) and
increments of 1 for citizens (`subject`) drawn from a small pool, dated over the last
hours in no order: a snapshot absorbs the increments dated before it, and the citizen's
earliest event is the one that counts, so an event applied twice, lost, or applied in
another order than the model's rules allow shows in the counters too."""

import asyncio
import hashlib
import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from tests.counting.model import Window, own_values
from tests.support.world import TREE
from tiendo.event import Event, Kind, to_json

PARENT = {u.code: u.parent_code for u in TREE}

Key = tuple[str, str]  # (unit, indicator)

# Every event a load sends is dated inside the campaign's window: the last hours of a
# campaign that started days ago.
EVERYTHING = Window(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
# A mixed load's citizens per indicator: few, so the same one comes back across batches,
# clients and restarts.
CITIZENS = 40
# A mixed load's events are dated up to this long before they are sent.
SPREAD = timedelta(hours=6)


def rolled_up(own: Counter[Key], indicators: tuple[str, ...]) -> dict[Key, int]:
    """Every unit's value per indicator: its own increments plus its descendants'."""
    totals: Counter[Key] = Counter()
    for (unit, indicator), value in own.items():
        code: str | None = unit
        while code is not None:
            totals[code, indicator] += value
            code = PARENT[code]
    return {(code, i): totals[code, i] for code in PARENT for i in indicators}


async def counters(conn: asyncpg.Connection, campaign: str = "c1") -> dict[Key, int]:
    """The aggregator's live counters of `campaign`."""
    rows = await conn.fetch(
        "SELECT unit, indicator, value FROM progress WHERE campaign_id = $1", campaign
    )
    return {(r["unit"], r["indicator"]): int(r["value"]) for r in rows}


def increment(event_id: str, unit: str, indicator: str, value: int, occurred: datetime) -> Event:
    return Event(event_id, unit, indicator, Kind.INCREMENT, value, occurred)


def citizen(n: int) -> str:
    """A subject as upstream sends one: a keyed hash, 64 lowercase hex characters."""
    return hashlib.sha256(f"citizen-{n}".encode()).hexdigest()


@dataclass
class Ledger:
    """What ingest acknowledged, and how it answered along the way."""

    indicators: tuple[str, ...]
    accepted: dict[str, Event] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)  # "202", "503", "transport error"

    def expected(self) -> dict[Key, int]:
        own = own_values(self.accepted.values(), EVERYTHING, {}, datetime.now(UTC))
        return rolled_up(Counter(own), self.indicators)


class Load:
    """`clients` concurrent upstream systems, each posting batches of `batch` events back
    to back until stopped; a batch without 202 (503, a connection cut, a timeout) is sent
    again unchanged until it gets one. Increments only, unless `mixed` (the module's
    docstring)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        units: tuple[str, ...],
        indicators: tuple[str, ...],
        *,
        clients: int = 3,
        batch: int = 100,
        pause: float = 0.02,
        mixed: bool = False,
    ) -> None:
        self._client = client
        self._units = units
        self._indicators = indicators
        self._clients = clients
        self._batch = batch
        self._pause = pause
        self._mixed = mixed
        self._values = itertools.count(1)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ledger = Ledger(indicators)
        self.in_flight = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(n)) for n in range(self._clients)]

    async def stop(self, timeout: float = 120.0) -> None:
        """Let each client finish (get 202 for) the batch it is on, then return."""
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), timeout)

    async def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def accepted_at_least(self, n: int, timeout: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.ledger.accepted) < n:
            for task in self._tasks:
                if task.done():
                    task.result()  # a client that failed says why
            assert loop.time() < deadline, f"only {len(self.ledger.accepted)} accepted of {n}"
            await asyncio.sleep(0.05)

    def _events(self, prefix: str) -> list[Event]:
        now = datetime.now(UTC)
        out = []
        for i in range(self._batch):
            event_id = f"{prefix}-{i}"
            unit = self._units[(i + len(prefix)) % len(self._units)]
            indicator = self._indicators[i % len(self._indicators)]
            n = next(self._values)
            if not self._mixed:
                out.append(increment(event_id, unit, indicator, n, now - timedelta(hours=1)))
                continue
            # dated over the last hours, in no order; n's digits spread them
            occurred = now - timedelta(minutes=5) - (n * 7919 % 360) * SPREAD / 360
            if n % 10 == 3:
                out.append(Event(event_id, unit, indicator, Kind.SNAPSHOT, 1_000_000 + n, occurred))
            elif n % 10 in (1, 6):
                who = citizen(n * 31 % CITIZENS)
                out.append(Event(event_id, unit, indicator, Kind.INCREMENT, 1, occurred, who))
            else:
                out.append(increment(event_id, unit, indicator, n, occurred))
        return out

    async def _run(self, number: int) -> None:
        for b in itertools.count():
            if self._stop.is_set():
                return
            await self.send(self._events(f"c{number}-b{b}"))
            await asyncio.sleep(self._pause)

    async def send(self, events: list[Event]) -> None:
        """Post `events` as one batch until ingest answers 202, then record them."""
        body = {"events": [to_json(e) for e in events]}
        while True:
            self.in_flight += 1
            try:
                r = await self._client.post("/v1/events", json=body)
            except httpx.TransportError:
                self.ledger.answers["transport error"] += 1
                await asyncio.sleep(0.1)
                continue
            finally:
                self.in_flight -= 1
            self.ledger.answers[str(r.status_code)] += 1
            if r.status_code == 202:
                self.ledger.accepted.update((e.event_id, e) for e in events)
                return
            # only "not now" may be answered to valid events; anything else is a bug
            assert r.status_code == 503, r.text
            await asyncio.sleep(0.2)
