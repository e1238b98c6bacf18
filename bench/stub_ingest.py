"""Ingest with Kafka taken out of the request: the HTTP, auth and validation cost alone,
as the ceiling the real ingest is compared with. Benchmark-only; production code has no
switch for it — the publisher is swapped after the app's own start-up."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.ingest.app import create_app
from services.ingest.publisher import records_of
from services.ingest.settings import IngestSettings
from tiendo.event import Event
from tiendo.serve import serve


class AckingPublisher:
    """Encodes like the real publisher (that cost stays in), acknowledges at once."""

    ready = True
    has_connected = True

    async def reachable(self, wait: float = 2.0) -> bool:
        return True

    async def publish(self, events: Sequence[Event], source: str = "") -> None:
        records_of(events, source)

    async def close(self) -> None:
        return None


def main() -> None:
    settings = IngestSettings()
    app = create_app(settings)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[None]:
        async with inner(a):
            a.state.publisher = AckingPublisher()
            yield

    app.router.lifespan_context = lifespan
    serve(app, settings)


if __name__ == "__main__":
    main()
