"""Privacy (contract §4.1, §7): a raw ID number is refused wherever a client puts it, and
neither a raw ID number, nor a token, nor an event body ever reaches ingest's log —
checked on a real `tiendo ingest serve` process logging at DEBUG, its most verbose."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from devtools.localstack import KafkaBroker, free_port
from tests.ingest.test_ingest_api import NOW, event
from tests.support.stack import ServiceProcess, Topics, eventually, service_env
from tests.support.world import build_world, issue_token
from tiendo.events.v1 import events_pb2

RAW_IDS = ("001203004567", "079188000123", "036094001234", "012345678")
SUBJECT = "ab" * 32
# a running ingest process, a client of it and a token
LoggedIngest = tuple[httpx.AsyncClient, str, ServiceProcess]


@pytest.fixture
async def logged_ingest(
    database: str, kafka: KafkaBroker, topics: Topics, tmp_path: Path
) -> AsyncIterator[LoggedIngest]:
    await build_world(database, starts_at=NOW)
    token = await issue_token(database, units=["001"], indicators=["cccd_collected"])
    port = free_port()
    process = ServiceProcess(
        "ingest",
        {
            **service_env(
                "TIENDO_INGEST_",
                database_url=database,
                kafka_bootstrap=kafka.bootstrap,
                port=port,
                log_level="DEBUG",
                environment="production",  # JSON lines, as a log shipper gets them
            ),
            **topics.env("TIENDO_INGEST_"),
        },
        tmp_path / "ingest.log",
    )
    process.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:

            async def ready() -> None:
                try:
                    assert (await client.get("/readyz")).status_code == 200
                except httpx.TransportError as exc:
                    raise AssertionError(str(exc)) from exc

            await eventually(ready, timeout=120)
            yield client, token, process
    finally:
        process.stop()


async def test_logs_hold_no_token_no_raw_id_and_no_event_body(logged_ingest: LoggedIngest) -> None:
    client, token, process = logged_ingest
    good = {"Authorization": f"Bearer {token}"}
    wrong_token = "tdo_" + "Q" * 43
    first, second, third, fourth = RAW_IDS
    accepted_ids = [f"visible-event-{i}" for i in range(3)]
    pb = events_pb2.EventBatch()
    e = pb.events.add(event_id="pb-1", unit="00004", indicator="cccd_collected", value=1)
    e.subject = second
    e.occurred_at.FromDatetime(NOW)
    requests = [
        # accepted events, one with a proper keyed-hash subject
        ({"events": [event(i, event_id=i) for i in accepted_ids]}, good),
        (event("with-subject", subject=SUBJECT), good),
        # raw ID numbers where a client might put them by mistake
        (event(1, subject=first), good),
        (event(2, subject=f"{first[:3]} {first[3:6]} {first[6:]}"), good),
        (event(3, unit=first), good),
        (event(4, **{first: 1}), good),
        (event(5, indicator=third), good),
        ({"events": [event(6, subject=fourth)], third: True}, good),
        (event(7, unit="00010", subject=SUBJECT), good),
        # bad and good tokens where they do not belong
        (event(8), {"Authorization": f"Bearer {wrong_token}"}),
        (event(9), {"Authorization": f"Basic {token}"}),
    ]
    statuses = []
    for body, headers in requests:
        r = await client.post("/v1/events", json=body, headers=headers)
        statuses.append(r.status_code)
    r = await client.post(
        "/v1/events",
        content=b'{"subject": "' + first.encode() + b'", ',
        headers={**good, "Content-Type": "application/json"},
    )
    statuses.append(r.status_code)
    r = await client.post(
        "/v1/events",
        content=pb.SerializeToString(),
        headers={**good, "Content-Type": "application/x-protobuf"},
    )
    statuses.append(r.status_code)
    assert statuses == [202, 202, 422, 422, 422, 422, 422, 422, 403, 401, 401, 400, 422]

    process.stop()
    log = process.log.read_text()
    assert "events_rejected" in log  # refusals are logged, at info, without the body
    assert "request_handled" in log
    for raw_id in RAW_IDS:
        assert raw_id not in log
    assert token not in log
    assert wrong_token not in log
    assert token[4:20] not in log  # not even a piece of it
    for event_id in [*accepted_ids, "with-subject"]:
        assert event_id not in log
    assert SUBJECT not in log
