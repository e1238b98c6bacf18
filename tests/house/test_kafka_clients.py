"""A Kafka client stopped while it is still starting leaves no connection behind.

aiokafka's bootstrap keeps its first connection in a local until the metadata answer
comes: a client cancelled in between (a service stopped right after it started, as many
tests do) leaks that socket, and the garbage collector reports it in whichever later test
it happens to run (`unclosed <StreamWriter>`, seen in a pure hypothesis test). Every start
of a client goes through `tiendo.kafka.start_whole`; here each kind of client is cancelled
at many points of its start, and no socket may be left for the collector.
"""

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable

from devtools.localstack import KafkaBroker
from services.ingest.publisher import Publisher
from tests.support.stack import Topics
from tiendo.kafka import TopicSpec, ensure_topics

# A connection and a metadata round trip take about a millisecond here: the cancels land
# before, during and after it.
DELAYS = [0.0, *(i / 10_000 for i in range(1, 40, 2)), 0.005, 0.01, 0.02, 0.05]


async def _unclosed_after(start: Callable[[], Awaitable[object]]) -> list[str]:
    leaks: list[str] = []
    for delay in DELAYS:
        task = asyncio.ensure_future(start())
        await asyncio.sleep(delay)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
        leaks += [f"{delay}: {w.message}" for w in caught if w.category is ResourceWarning]
    return leaks


async def test_an_ingest_publisher_stopped_while_connecting_closes_its_socket(
    kafka: KafkaBroker, topics: Topics
) -> None:
    async def run() -> None:
        # as the ingest service runs it: a supervised loop, and close() on the way out
        publisher = Publisher(kafka.bootstrap, topics.events, timeout=5.0)
        try:
            await publisher.run()
        finally:
            await publisher.close()

    assert await _unclosed_after(run) == []


async def test_topics_ensured_while_cancelled_close_their_admin_socket(
    kafka: KafkaBroker, topics: Topics
) -> None:
    def ensure() -> Awaitable[None]:
        return ensure_topics(kafka.bootstrap, [TopicSpec(topics.events, 1)], wait_seconds=5)

    assert await _unclosed_after(ensure) == []
