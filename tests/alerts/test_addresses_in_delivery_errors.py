"""A chief's address is masked for every role but admin wherever the delivery log shows it:
in `address`, and inside the error texts (`last_error`, each attempt's `error`) that quote
it, as a mail server's refusal does (docs/access.md). The log lines of failed attempts and
failed messages never carry it whole either."""

from datetime import UTC, datetime, timedelta
from typing import Any

from aiosmtpd.controller import Controller
from structlog.testing import capture_logs

from devtools.localstack import KafkaBroker, free_port
from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from tests.support.identities import ADMIN, bearer, issue_identity
from tests.support.stack import Topics, eventually, running
from tests.support.world import TREE, build_world
from tiendo.identity.model import Role

START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)


def email_of(code: str) -> str:
    return f"nguyen.van.a.{code}@police.vn"


class Refusing:
    """An SMTP server that refuses every recipient, quoting it upper-cased as some do."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return f"550 5.1.1 <{address.upper()}>: mailbox unavailable"


def texts(n: dict[str, Any]) -> list[str]:
    """Every text of a delivery-log entry that could quote its address."""
    errors = [a["error"] for a in n["attempt_log"] if a["error"]]
    return [n["address"], n["last_error"] or "", *errors]


async def test_a_reader_sees_no_address_whole_in_the_delivery_errors_nor_do_the_logs(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    units = [
        u.model_copy(update={"chief_name": f"Chief {u.code}", "chief_email": email_of(u.code)})
        for u in TREE
    ]
    await build_world(database, starts_at=START, units=units)
    port = free_port()
    smtp = Controller(Refusing(), hostname="127.0.0.1", port=port)
    smtp.start()
    settings = NotifierSettings(
        database_url=database,
        kafka_bootstrap=kafka.bootstrap,
        **topics.kwargs(),
        group_id=f"ntf-{topics.progress}",
        webhook_secret="test-webhook-secret",
        smtp_host="127.0.0.1",
        smtp_port=port,
        evaluate_every_seconds=0.5,
        group_wait_seconds=0,
        digest_times="",
        bottom_rank_n=0,
        delivery_attempts=2,
        delivery_backoff_seconds=0.05,
        delivery_poll_seconds=0.1,
    )
    reader = bearer(await issue_identity(database, "chief-001", Role.reader, ["001"]))
    try:
        with capture_logs() as logs:
            async with running(create_app(settings)) as api:

                async def failed(headers: dict[str, str]) -> list[dict[str, Any]]:
                    r = await api.get(
                        "/v1/notifications", headers=headers, params={"status": "failed"}
                    )
                    assert r.status_code == 200, r.text
                    rows: list[dict[str, Any]] = r.json()
                    assert rows
                    assert all(n["attempt_log"] for n in rows)
                    return rows

                as_admin = await eventually(lambda: failed(ADMIN), timeout=60)
                as_reader = await failed(reader)
    finally:
        smtp.stop()

    # the administrator reads the refusal as the server wrote it
    for n in as_admin:
        assert n["address"] in n["last_error"]
        assert n["address"].upper() in n["last_error"]
    assert as_reader
    for n in as_reader:
        full = email_of(n["recipient"])
        assert not [t for t in texts(n) if full.lower() in t.lower()], n
        # masked as `address` is
        masked = "n***@police.vn"
        assert n["address"] == masked
        assert masked in n["last_error"]
        assert "mailbox unavailable" in n["last_error"]

    logged = [
        e for e in logs if e["event"] in ("notification_attempt_failed", "notification_failed")
    ]
    assert {e["event"] for e in logged} == {"notification_attempt_failed", "notification_failed"}
    addresses = [email_of(u.code) for u in TREE]
    for e in logged:
        assert not [a for a in addresses if a in e["error"].lower()], e
        assert "***@police.vn" in e["error"]
