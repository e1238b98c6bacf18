"""A record on `unit-progress` the notifier cannot read (a tombstone, bytes that are no
update, a time out of range) is passed over and counted, and the feed goes on: raised, it
restarted the feed loop on the same record forever, and every later update waited behind
it (only the clock's full pass still judged, minutes apart)."""

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from devtools.localstack import KafkaBroker
from tests.support.notifier import Harness
from tests.support.stack import Topics, eventually
from tiendo.events import unit_progress
from tiendo.events.v1 import events_pb2
from tiendo.kafka import reliable_producer


def _update(at: datetime) -> unit_progress.UnitProgress:
    return unit_progress.UnitProgress(
        campaign_id="c1",
        unit="00004",
        indicator="cccd_collected",
        value=10,
        baseline=0,
        target=1000,
        starts_at=at - timedelta(days=10),
        deadline=at + timedelta(days=40),
        last_event_at=None,
        computed_at=at,
        behind_threshold=0.9,
        stale_after=timedelta(hours=24),
        level=3,
        parent="001",
        unit_name="Phường Phúc Xá",
        timezone="Asia/Ho_Chi_Minh",
    )


async def _counted(h: Harness) -> tuple[float, float]:
    """(feed evaluations, records skipped)"""
    text = (await h.api.get("/metrics")).text
    feed = skipped = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "tiendo_notifier_evaluations_total" and s.labels["trigger"] == "feed":
                feed += s.value
            elif s.name == "tiendo_notifier_feed_records_skipped_total":
                skipped += s.value
    return feed, skipped


async def test_unreadable_records_are_passed_over_and_the_feed_goes_on(
    harness: Harness, kafka: KafkaBroker, topics: Topics
) -> None:
    h = harness
    before, _ = await _counted(h)
    out_of_range = events_pb2.UnitProgress(campaign_id="c1", unit="00004", indicator="x")
    out_of_range.computed_at.seconds = 2**62  # past datetime's years
    key = b"c1/00004/cccd_collected"
    producer = reliable_producer(kafka.bootstrap, client_id="test-feed-skips")
    await producer.start()
    try:
        for value in (None, b"\xff\xff\xff", out_of_range.SerializeToString()):
            await producer.send_and_wait(topics.progress, value, key=key)
        good = unit_progress.encode(_update(datetime.now(UTC)))
        await producer.send_and_wait(topics.progress, good, key=key)
    finally:
        await producer.stop()

    async def went_on() -> None:
        feed, skipped = await _counted(h)
        assert skipped == 3
        assert feed > before

    await eventually(went_on, timeout=60)
    ready = await h.api.get("/readyz")
    assert ready.status_code == 200, ready.text
