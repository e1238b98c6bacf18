"""Receivers and a harness for the notifier's end-to-end tests (no tests of its own).

Real everything except the unit chiefs: a real SMTP server (aiosmtpd) and real HTTP
receivers on loopback stand in for their mailboxes, webhooks and chat service, and count
what they get by delivery id, as a receiver that dedupes redeliveries would."""

import asyncio
import contextlib
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as email_policy
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import orjson
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse
from tiendo_client.webhooks import Refused, Replayed, WebhookVerifier

from devtools.localstack import KafkaBroker, free_port
from services.aggregator.admin import UnitIn
from services.notifier.app import create_app
from services.notifier.channels import DELIVERY_ID_HEADER, Channel
from services.notifier.metrics import NotifierMetrics
from services.notifier.outbox import Outbox
from services.notifier.repository import deliveries as delivery_sql
from services.notifier.settings import NotifierSettings
from tests.support.identities import ADMIN
from tests.support.stack import Topics, eventually, running
from tests.support.world import TREE, build_world
from tiendo.clock import ManualClock
from tiendo.counting import apply_events
from tiendo.database import create_pool
from tiendo.event import Event, Kind

if TYPE_CHECKING:
    from services.notifier.evaluator import Evaluator

SECRET = "test-webhook-secret"


@dataclass
class Received:
    path: str
    body: bytes
    headers: dict[str, str]
    verdict: str | None = None  # where the receiver verifies: "verified", "replayed", why not

    @property
    def delivery_id(self) -> str:
        return self.headers.get(DELIVERY_ID_HEADER.lower(), "")

    def json(self) -> Any:
        return orjson.loads(self.body)


class HttpReceiver:
    """Webhooks and apprise `json://` chat posts on loopback; may fail or stall on demand."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        # answer 503 to this many of the next requests whose path starts with the key
        self.fail_next: dict[str, int] = {}
        # answer every request whose path starts with the key with that status (a receiver
        # that refuses: 404, 410, or asks to come back: 429)
        self.status: dict[str, int] = {}
        self.delay = 0.0  # seconds to wait after recording, before answering
        # verify posts under these path prefixes as a real receiver does: 401 if refused
        self.verifiers: dict[str, WebhookVerifier] = {}
        app = FastAPI()

        @app.post("/{path:path}")
        async def receive(path: str, request: Request) -> JSONResponse:
            got = Received(path, await request.body(), dict(request.headers))
            self.received.append(got)
            if refused := self._verify(got):
                return refused
            for prefix, status in self.status.items():
                if path.startswith(prefix):
                    return JSONResponse({"error": "refused"}, status_code=status)
            for prefix, left in self.fail_next.items():
                if path.startswith(prefix) and left > 0:
                    self.fail_next[prefix] = left - 1
                    # not acted on: the redelivery is new to a verifying receiver
                    for verifier in self.verifiers.values():
                        verifier.forget(got.headers.get("webhook-id", ""))
                    return JSONResponse({"error": "try later"}, status_code=503)
            if self.delay:
                await asyncio.sleep(self.delay)
            return JSONResponse({"ok": True})

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        )

    def _verify(self, got: Received) -> JSONResponse | None:
        """Set the verdict of a post under a verified prefix; the answer if refused."""
        for prefix, verifier in self.verifiers.items():
            if got.path.startswith(prefix):
                try:
                    verifier.verify(got.body, got.headers)
                except Replayed:
                    got.verdict = "replayed"  # answered as usual: acted on once
                except Refused as exc:
                    got.verdict = str(exc)
                    return JSONResponse({"error": "bad signature"}, status_code=401)
                else:
                    got.verdict = "verified"
        return None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def at(self, prefix: str) -> list[Received]:
        return [r for r in self.received if r.path.startswith(prefix)]

    def distinct(self, prefix: str = "") -> dict[str, Received]:
        """One per delivery id: what a deduplicating receiver keeps."""
        out: dict[str, Received] = {}
        for r in self.at(prefix):
            out.setdefault(r.delivery_id, r)
        return out


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.delay = 0.0
        # refuse a recipient whose address starts with the key with that SMTP reply
        # ("550 5.1.1 no such user", "452 4.2.2 mailbox full"); a refusal counts in `refused`
        self.refuse: dict[str, str] = {}
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        for prefix, reply in self.refuse.items():
            if address.startswith(prefix):
                with self._lock:
                    self.refused.append(address)
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=email_policy)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def distinct(self) -> dict[str, EmailMessage]:
        with self._lock:
            out: dict[str, EmailMessage] = {}
            for m in self.messages:
                out.setdefault(str(m["Message-ID"]), m)
            return out


@pytest.fixture
async def http_receiver() -> AsyncIterator[HttpReceiver]:
    r = HttpReceiver()
    task = asyncio.create_task(r.server.serve())
    while not r.server.started:
        await asyncio.sleep(0.05)
    yield r
    r.server.should_exit = True
    await task


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    r = SmtpReceiver()
    r.controller.start()
    yield r
    r.controller.stop()


def email_of(code: str) -> str:
    return f"chief-{code}@test.invalid"


def tree_with_contacts(receiver: HttpReceiver, chat: bool = True) -> list[UnitIn]:
    """The test tree; every chief has an email, a webhook and (optionally) a chat URL."""
    return [
        u.model_copy(
            update={
                "chief_name": f"Chief {u.code}",
                "chief_email": email_of(u.code),
                "chief_webhook": receiver.url(f"hook/{u.code}"),
                "chief_chat": (f"json://127.0.0.1:{receiver.port}/chat/{u.code}" if chat else None),
            }
        )
        for u in TREE
    ]


@dataclass(frozen=True)
class Report:
    """A unit's cumulative total at a moment, as an upstream system reports it."""

    unit: str
    indicator: str
    value: int
    at: datetime
    campaign: str


def progress(
    unit: str,
    value: int,
    *,
    at: datetime,
    indicator: str = "cccd_collected",
    campaign: str = "c1",
) -> Report:
    return Report(unit, indicator, value, at, campaign)


class Feed:
    """Moves the board as the aggregator would: each report is a snapshot event counted by
    the aggregator's own apply (no consumer needed), so the counters, their rollup and
    the history behind `as_of` all agree; the notifier then reads the board."""

    def __init__(self, database: str) -> None:
        self.database = database

    async def send(self, *reports: Report) -> None:
        conn = await asyncpg.connect(self.database)
        try:
            await apply_events(
                conn,
                [
                    Event(
                        event_id=f"report-{uuid.uuid4().hex}",
                        unit=r.unit,
                        indicator=r.indicator,
                        kind=Kind.SNAPSHOT,
                        value=r.value,
                        occurred_at=r.at,
                    )
                    for r in reports
                ],
            )
        finally:
            await conn.close()


# Only `behind`, so the scenarios follow one rule; digests and bottom_rank off.
BEHIND_ONLY: dict[str, Any] = {
    "behind": {"enabled": True, "for_seconds": 0},
    "at_risk": {"enabled": False},
    "stale": {"enabled": False},
    "bottom_rank": {"enabled": False},
    "group_wait_seconds": 60,
    "repeat_interval_seconds": 86400,
    "escalate_after_seconds": 172800,
    "digest_times": [],
}


async def behind_only_evaluator(
    conn: asyncpg.Connection, database: str, campaign_id: str
) -> "Evaluator":
    """The campaign under `BEHIND_ONLY`, and an evaluator of it driven by hand
    (`evaluate_at`), sending by webhook."""
    return await policy_evaluator(conn, database, campaign_id, BEHIND_ONLY)


async def policy_evaluator(
    conn: asyncpg.Connection, database: str, campaign_id: str, policy: dict[str, Any]
) -> "Evaluator":
    """The campaign under `policy`, and an evaluator of it driven by hand (`evaluate_at`),
    queueing for webhooks (nothing delivers them: the tests read the queue)."""
    from services.notifier.evaluator import Evaluator
    from services.notifier.render import Renderer

    await conn.execute(
        "INSERT INTO alert_policies (campaign_id, config) VALUES ($1, $2)",
        campaign_id,
        orjson.dumps(policy).decode(),
    )
    return Evaluator(NotifierSettings(database_url=database), Renderer(), ("webhook",))


def tree_with_webhooks(without: tuple[str, ...] = ()) -> list[UnitIn]:
    """The test tree; every chief but those of the units `without` has a webhook (on a
    port nobody listens on: a hand-driven evaluator only queues)."""
    return [
        u
        if u.code in without
        else u.model_copy(
            update={
                "chief_name": f"Chief {u.code}",
                "chief_webhook": f"http://127.0.0.1:9/hook/{u.code}",
            }
        )
        for u in TREE
    ]


@dataclass(frozen=True)
class Queued:
    """A queued notification as the tests read it: its delivery id and kind, its firing
    alerts (unit, rule, value, target, escalation level) and its resolved ones (unit,
    rule), and the body itself."""

    delivery_id: str
    kind: str
    recipient: str
    firing: list[tuple[str, str, int, int, int]]
    resolved: list[tuple[str, str]]
    body: dict[str, Any]


async def queued(conn: asyncpg.Connection) -> list[Queued]:
    """Every notification queued, in order."""
    rows = await conn.fetch(
        "SELECT dedup_key, kind, recipient, body FROM notifications ORDER BY id"
    )
    out = []
    for r in rows:
        body = orjson.loads(r["body"])
        out.append(
            Queued(
                r["dedup_key"],
                r["kind"],
                r["recipient"],
                [
                    (a["unit"], a["rule"], a["value"], a["target"], a["escalation_level"])
                    for a in body.get("firing", [])
                ],
                [(a["unit"], a["rule"]) for a in body.get("resolved", [])],
                body,
            )
        )
    return out


@dataclass
class Harness:
    clock: ManualClock
    api: httpx.AsyncClient
    app: FastAPI
    feed: Feed
    http: HttpReceiver
    smtp: SmtpReceiver
    starts_at: datetime
    database: str
    notes: dict[str, Any] = field(default_factory=dict)

    async def policy(self, override: dict[str, Any]) -> None:
        r = await self.api.put("/v1/campaigns/c1/alert-policy", json=override, headers=ADMIN)
        assert r.status_code == 200, r.text

    async def advance(self, by: timedelta) -> None:
        """Move simulated time and run one evaluation at the new time."""
        self.clock.advance(by)
        await self.app.state.evaluate_at()

    async def alerts(self, **params: str) -> list[dict[str, Any]]:
        r = await self.api.get("/v1/alerts", params=params, headers=ADMIN)
        assert r.status_code == 200, r.text
        result: list[dict[str, Any]] = r.json()
        return result

    async def log(self, **params: str) -> list[dict[str, Any]]:
        r = await self.api.get(
            "/v1/notifications", params={"limit": "1000", **params}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        result: list[dict[str, Any]] = r.json()
        return result

    async def settled(self) -> None:
        """Everything queued has been delivered or failed."""

        async def check() -> None:
            pending = [n for n in await self.log() if n["status"] in ("pending", "sending")]
            assert not pending, pending

        await eventually(check, timeout=90)


def notifier_settings(
    database: str, kafka: KafkaBroker, topics: Topics, smtp: SmtpReceiver, **extra: Any
) -> NotifierSettings:
    values: dict[str, Any] = {
        "database_url": database,
        "kafka_bootstrap": kafka.bootstrap,
        **topics.kwargs(),
        "group_id": f"ntf-{topics.progress}",
        "webhook_secret": SECRET,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        # the clock loop runs often; what it sees is the ManualClock's time
        "evaluate_every_seconds": 0.3,
        "delivery_poll_seconds": 0.1,
        # a failing channel gives up within seconds (the default window is hours)
        "delivery_attempts": 8,
        "delivery_backoff_seconds": 0.05,
        "delivery_backoff_max_seconds": 0.2,
        "delivery_timeout_seconds": 5.0,
        "delivery_lease_seconds": 30.0,
        "digest_times": "",
        "bottom_rank_n": 0,
        **extra,
    }
    return NotifierSettings(**values)


@pytest.fixture
async def harness(
    database: str,
    kafka: KafkaBroker,
    topics: Topics,
    http_receiver: HttpReceiver,
    smtp_receiver: SmtpReceiver,
) -> AsyncIterator[Harness]:
    # Day 10 of 50 at 10:00 local: every ward is expected at 200 of 1000.
    starts_at = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
    async with harness_from(starts_at, database, kafka, topics, http_receiver, smtp_receiver) as h:
        yield h


@contextlib.asynccontextmanager
async def harness_from(
    starts_at: datetime,
    database: str,
    kafka: KafkaBroker,
    topics: Topics,
    http_receiver: HttpReceiver,
    smtp_receiver: SmtpReceiver,
) -> AsyncIterator["Harness"]:
    """The harness's world and notifier on a campaign started at `starts_at`, its clock at
    day 10 of 50, alerting on `behind` only."""
    clock = ManualClock(starts_at + timedelta(days=10))
    await build_world(
        database,
        starts_at=starts_at,
        units=tree_with_contacts(http_receiver),
        indicators=("cccd_collected", "eid_activated_l2"),
    )
    app = create_app(notifier_settings(database, kafka, topics, smtp_receiver), clock=clock)
    async with running(app) as api:
        h = Harness(
            clock, api, app, Feed(database), http_receiver, smtp_receiver, starts_at, database
        )
        await h.policy(BEHIND_ONLY)
        yield h


async def delivered_link(h: "Harness", ward: str = "00004") -> str:
    """The path of the signed link the ward's chief receives once every ward is behind
    (nobody reported): the harness's clock moved past the group wait, the link read from
    the ward's webhook."""
    await h.advance(timedelta(minutes=1))
    await h.advance(timedelta(seconds=61))
    await h.settled()

    async def delivered() -> str:
        links = [r.json()["link"] for r in h.http.at(f"hook/{ward}") if r.json().get("link")]
        assert links
        return "/l/" + str(links[-1]).split("/l/")[1]

    return await eventually(delivered, timeout=30)


def counts_by_delivery(received: list[Received]) -> Counter[str]:
    return Counter(r.delivery_id for r in received)


async def queue(
    conn: asyncpg.Connection,
    key: str,
    address: str,
    *,
    recipient: str = "00010",
    fallback: bool = False,
) -> int:
    """Queue a webhook message straight into the outbox (as the planner does)."""
    found = await delivery_sql.insert_notification(
        conn,
        dedup_key=key,
        kind="firing",
        recipient=recipient,
        channel="webhook",
        address=address,
        body={"subject": "s", "text": "t", "chat": "t"},
        group_id=None,
        campaign_id="c1",
        subject="s",
        language="vi",
        alert_ids=[],
        fallback=fallback,
    )
    assert found is not None
    return found


@contextlib.asynccontextmanager
async def outbox(
    database: str, channels: dict[str, Channel], **kw: object
) -> AsyncIterator[Outbox]:
    """An outbox delivering on `channels` (`kw`: its settings) while the block runs."""
    pool = await create_pool(database, max_size=6)
    box = Outbox(
        pool,
        channels,
        NotifierMetrics(),
        poll_seconds=0.05,
        lease_seconds=60,
        **kw,  # type: ignore[arg-type]
    )
    task = asyncio.create_task(box.run())
    try:
        yield box
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()


async def settled(conn: asyncpg.Connection, notification_id: int) -> asyncpg.Record:
    """The message once delivered or failed (for `eventually`)."""
    row = await conn.fetchrow(
        "SELECT status, attempts, address, last_error FROM notifications WHERE id = $1",
        notification_id,
    )
    assert row is not None
    assert row["status"] in ("delivered", "failed"), row
    return row
