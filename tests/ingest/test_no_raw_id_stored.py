"""A raw ID number posted in every field, JSON and protobuf, is found afterwards in no
stored table of any schema, no topic, no dead letter and no log line of ingest or the
aggregator (issue 16) — real `tiendo ingest serve` and aggregator processes, at DEBUG."""

from pathlib import Path

import asyncpg

from devtools.localstack import KafkaBroker
from tests.ingest.test_ingest_api import NOW, event, read_topic
from tests.ingest.test_ingest_privacy import LoggedIngest, logged_ingest
from tests.support.stack import Topics, aggregator_process, eventually
from tiendo.events.v1 import events_pb2

__all__ = ["logged_ingest"]  # the fixture

CCCD, CMND = "079188000123", "036094123"
WRITTEN = (CCCD, f"evt-{CCCD}", f"x.{CMND}", CMND)
FIELDS = ("event_id", "unit", "indicator", "kind", "value", "occurred_at", "subject")
PB_FIELDS = ("event_id", "unit", "indicator", "subject", "source")
SCHEMAS = ("public", "ingest", "aggregator", "notifier")


def _pb(**fields: str) -> bytes:
    batch = events_pb2.EventBatch()
    message = batch.events.add(
        **{"event_id": "pb-ok", "unit": "00004", "indicator": "cccd_collected", "value": 1}
    )
    for name, value in fields.items():
        setattr(message, name, value)
    message.occurred_at.FromDatetime(NOW)
    return batch.SerializeToString()


def _leaks(text: str | bytes) -> list[str]:
    blob = text.encode() if isinstance(text, str) else text
    found = []
    for number in (CCCD, CMND):
        # bytea columns print as hex: look for that form too
        if number.encode() in blob or number.encode().hex().encode() in blob:
            found.append(number)
    return found


async def _stored_text(database: str) -> dict[str, str]:
    conn = await asyncpg.connect(database)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE' AND table_schema = ANY($1::text[])",
            list(SCHEMAS),
        )
        out = {}
        for t in tables:
            name = f'"{t["table_schema"]}"."{t["table_name"]}"'
            rows = await conn.fetch(f"SELECT r::text AS line FROM {name} r")
            out[name] = "\n".join(r["line"] for r in rows)
        return out
    finally:
        await conn.close()


async def test_a_raw_id_in_every_field_is_stored_published_and_logged_nowhere(
    logged_ingest: LoggedIngest, database: str, kafka: KafkaBroker, topics: Topics, tmp_path: Path
) -> None:
    client, token, ingest = logged_ingest
    auth = {"Authorization": f"Bearer {token}"}
    aggregator = aggregator_process(
        database,
        kafka.bootstrap,
        topics,
        tmp_path / "aggregator.log",
        log_level="DEBUG",
        environment="production",  # JSON lines, as a log shipper gets them
        admin_token="privacy-test-admin-token",
    )
    aggregator.start()
    try:
        statuses = []
        for written in WRITTEN:
            for field in FIELDS:
                body = event(f"f-{field}", **{field: written})
                r = await client.post("/v1/events", json=body, headers=auth)
                statuses.append((field, written, r.status_code, _leaks(r.text)))
            for body in (
                event("named", **{written: 1}),  # as an unknown field's name
                event("valued", note=written),  # as an unknown field's value
                {"events": [event("enveloped")], written: True},
            ):
                r = await client.post("/v1/events", json=body, headers=auth)
                statuses.append(("other", written, r.status_code, _leaks(r.text)))
            for field in PB_FIELDS:
                r = await client.post(
                    "/v1/events",
                    content=_pb(**{field: written}),
                    headers={**auth, "Content-Type": "application/x-protobuf"},
                )
                statuses.append((f"pb {field}", written, r.status_code, _leaks(r.text)))
            r = await client.get(f"/v1/events/{written}", headers=auth)
            statuses.append(("path", written, r.status_code, _leaks(r.text)))
        assert [(f, w) for f, w, s, leaks in statuses if s not in (404, 422) or leaks] == []

        # good events, one repeated with other content: a conflict in the dead letters
        good = [event(f"good-{i}") for i in range(3)]
        for batch in (good, [event("good-0", value=7)]):
            r = await client.post("/v1/events", json={"events": batch}, headers=auth)
            assert r.status_code == 202, r.text

        async def conflict_dead_lettered() -> None:
            r = await client.get("/v1/events/e-good-0", headers=auth)
            assert (r.status_code, r.json()["status"]) == (200, "conflict")

        await eventually(conflict_dead_lettered, timeout=120)
    finally:
        aggregator.stop()
        ingest.stop()

    stored = await _stored_text(database)
    assert '"aggregator"."dead_letters"' in stored
    assert "conflict" in stored['"aggregator"."dead_letters"']
    assert {name: _leaks(text) for name, text in stored.items() if _leaks(text)} == {}
    for topic in (topics.events, topics.dead_letters, topics.progress):
        records = await read_topic(kafka.bootstrap, topic, idle_ms=1500)
        blobs = [
            (r.key or b"") + (r.value or b"") + b"".join(v for _, v in r.headers or ())
            for r in records
        ]
        assert [b for b in blobs if _leaks(b)] == [], topic
    for log in (ingest.log, aggregator.log):
        lines = log.read_text().splitlines()
        assert lines
        assert [line for line in lines if _leaks(line)] == []
