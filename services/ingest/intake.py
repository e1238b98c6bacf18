"""POST /v1/events, from the raw request to the response.

A request goes size → token → content type, charset and coding → rate as this process
knows it → body (gzip inflated under the size limit) → decode → rate (the shared bucket, one
PostgreSQL round trip, charged the events it carries) → validate → scope → publish → 202,
and each step refuses with its own status before a costlier one runs. No line of the body
is ever logged: a refusal is logged with field names and messages only (messages never
echo values), at most once a second per token and status.
"""

import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import structlog
from fastapi import Request
from starlette.datastructures import State
from starlette.responses import JSONResponse, Response

from services.ingest import bodies, tokens
from services.ingest.catalog import CatalogCache, TokensUnavailable
from services.ingest.charsets import refused_charset
from services.ingest.duplicates import duplicate_key_errors
from services.ingest.metrics import IngestMetrics
from services.ingest.openapi import PROTOBUF_ALIASES
from services.ingest.protobuf import MalformedProtobuf, decode_batch
from services.ingest.publisher import KafkaUnavailable, Publisher
from services.ingest.ratelimit import SharedRateLimit
from services.ingest.recent import RecentlyAccepted
from services.ingest.repeats import sort_repeats
from services.ingest.repository import TokenGrant
from services.ingest.schemas import accepted_body
from services.ingest.settings import IngestSettings
from services.ingest.validation import (
    EVENT_FIELDS,
    MAX_ERRORS_LISTED,
    UNKNOWN_INDICATOR,
    UNKNOWN_UNIT,
    FieldError,
    batch_size_errors,
    envelope,
    scope_errors,
    validate_items,
)
from tiendo.logs import get_logger
from tiendo.web import problem

log = get_logger(__name__)

_JSON = "application/json"
# Field names that may appear in a log line; any other (a client's unknown key) may be
# anything at all, a raw identity number included.
_LOGGABLE_FIELDS = EVENT_FIELDS | {
    "",
    "events",
    "occurred_at_offset_seconds",
    "received_at",
    "source",
}
_LOG_EVERY_SECONDS = 1.0


class _ThrottledLog:
    """At most one line a second per (token, status): a client stuck in a loop of bad
    requests must not flood the logs (the counts are in the metrics anyway)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], tuple[float, int]] = {}

    def __call__(
        self, source: str, status: int, event: str, *, expected: bool = False, **fields: Any
    ) -> None:
        now = time.monotonic()
        last, suppressed = self._last.get((source, status), (-_LOG_EVERY_SECONDS, 0))
        if now - last < _LOG_EVERY_SECONDS:
            self._last[source, status] = (last, suppressed + 1)
            return
        self._last[source, status] = (now, 0)
        level = "warning" if status >= 500 and not expected else "info"
        getattr(log, level)(event, status=status, suppressed=suppressed, **fields)


def _error_dicts(errors: list[FieldError]) -> list[dict[str, Any]]:
    return [
        {"index": e.index, "field": e.field, "message": e.message}
        | ({"successors": [s.as_dict() for s in e.successors]} if e.successors else {})
        for e in errors[:MAX_ERRORS_LISTED]
    ]


def _loggable_fields(errors: list[FieldError]) -> list[str]:
    return sorted({e.field if e.field in _LOGGABLE_FIELDS else "<unknown>" for e in errors})


def _in_order(*lists: list[FieldError]) -> list[FieldError]:
    """The errors of the body first, then those of each event by index (stable)."""
    merged = [e for errors in lists for e in errors]
    return sorted(merged, key=lambda e: -1 if e.index is None else e.index)


def _problem_count(errors: list[FieldError]) -> str:
    listed = "" if len(errors) <= MAX_ERRORS_LISTED else f" (the first {MAX_ERRORS_LISTED} listed)"
    return f"{len(errors)} problem(s) in the request{listed}; nothing was accepted"


class Intake:
    """POST /v1/events, from the raw request to the response."""

    def __init__(self, settings: IngestSettings, metrics: IngestMetrics, state: State) -> None:
        self.settings = settings
        self.limits = settings.limits()
        self.metrics = metrics
        self._state = state
        self.limiter = SharedRateLimit(
            settings.rate_limit_events_per_second,
            settings.rate_limit_burst_events,
            settings.workers,
            on_alone=metrics.rate_limit_alone.inc,
        )
        self.log_refusal = _ThrottledLog()
        self.recent = RecentlyAccepted()

    # Read from the app's state on each use: that is where the lifespan puts them (and
    # where the benchmark's stub swaps in a publisher that acknowledges at once).
    @property
    def cache(self) -> CatalogCache:
        cache: CatalogCache = self._state.cache
        return cache

    @property
    def pool(self) -> asyncpg.Pool:
        pool: asyncpg.Pool = self._state.pool
        return pool

    @property
    def publisher(self) -> Publisher:
        publisher: Publisher = self._state.publisher
        return publisher

    @property
    def _starting(self) -> bool:
        # A 503 before ingest has first reached PostgreSQL and Kafka is its start, not an
        # outage: logged at info, so a healthy start prints no warning.
        return not (self.cache.loaded and self.publisher.has_connected)

    def _reject(
        self,
        reason: str,
        status: int,
        detail: str,
        *,
        count: int = 1,
        source: str = "",
        slug: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        self.metrics.events_rejected.labels(reason).inc(count)
        if status == 401:
            log.debug("request_unauthorized")
        else:
            self.log_refusal(
                source,
                status,
                "events_rejected",
                expected=self._starting,
                reason=reason,
                events=count,
                fields=_loggable_fields(errors or []),
            )
        return problem(
            status,
            detail,
            slug=slug,
            errors=_error_dicts(errors) if errors is not None else None,
            headers=headers,
        )

    def _unavailable(self, reason: str, detail: str, count: int = 1, source: str = "") -> Response:
        return self._reject(
            reason,
            503,
            detail,
            count=count,
            source=source,
            headers={"Retry-After": str(self.settings.retry_after_seconds)},
        )

    def _too_large(self, detail: str | None = None) -> Response:
        return self._reject(
            "body_too_large",
            413,
            detail or f"the body is larger than {self.settings.max_body_bytes} bytes",
        )

    def _rate_limited(self, source: str, wait: int) -> Response:
        self.metrics.rate_limited.labels(source).inc()
        return self._reject(
            "rate_limited",
            429,
            f"over this token's rate of {self.settings.rate_limit_events_per_second:g} events/s",
            source=source,
            headers={"Retry-After": str(wait)},
        )

    async def _charge(self, source: str, events: int) -> Response | None:
        """Take `events` from the token's shared bucket: None when let in, else the 429."""
        wait = await self.limiter.take(self.pool, source, events)
        return self._rate_limited(source, wait) if wait else None

    async def handle(self, request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.settings.max_body_bytes:
            return self._too_large()
        if not self.cache.loaded:
            return self._unavailable("starting", "ingest is starting; retry shortly")
        token = tokens.bearer(request.headers.get("authorization"))
        grant: TokenGrant | None = None
        if token is not None:
            try:
                grant = await self.cache.grant(tokens.digest(token), datetime.now(UTC))
            except TokensUnavailable:
                return self._unavailable(
                    "tokens_unavailable", "ingest cannot check tokens now; retry shortly"
                )
        if grant is None:
            return self._reject(
                "unauthorized",
                401,
                "a valid bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="tiendo"'},
            )
        with structlog.contextvars.bound_contextvars(source=grant.name):
            return await self._handle_authorised(request, grant)

    async def _handle_authorised(self, request: Request, grant: TokenGrant) -> Response:
        settings, source = self.settings, grant.name
        content_header = request.headers.get("content-type", "")
        content_type = content_header.split(";")[0].strip().lower()
        if content_type not in (_JSON, *PROTOBUF_ALIASES):
            return self._reject(
                "unsupported_media_type",
                415,
                "send application/json or application/x-protobuf",
                source=source,
            )
        if content_type == _JSON and (wrong_charset := refused_charset(content_header)):
            return self._reject("unsupported_media_type", 415, wrong_charset, source=source)
        encoding = bodies.encoding_of(request.headers.get("content-encoding"))
        if encoding is None:
            # the header's value is not echoed: it is the client's, and may be anything
            return self._reject(
                "unsupported_media_type",
                415,
                "unsupported Content-Encoding: send the body as is or with Content-Encoding: gzip",
                source=source,
                headers={"Accept-Encoding": ", ".join(bodies.SUPPORTED)},
            )
        # A token this process knows to be over its rate is refused before its body is
        # read, without asking PostgreSQL (see ratelimit.py).
        if wait := self.limiter.known_wait(source, time.monotonic()):
            return self._rate_limited(source, wait)
        try:
            raw = await bodies.read_body(request.stream(), encoding, settings.max_body_bytes)
        except bodies.BodyTooLarge as exc:
            return await self._charge(source, 1) or self._too_large(str(exc))
        except bodies.CorruptBody as exc:
            return await self._charge(source, 1) or self._reject(
                "malformed_gzip", 400, str(exc), source=source
            )

        decode_errors: list[FieldError] = []
        if content_type == _JSON:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                return await self._charge(source, 1) or self._reject(
                    "malformed_json", 400, f"malformed JSON: {exc}", source=source
                )
            decode_errors = duplicate_key_errors(raw, body)
            items, envelope_errors = envelope(body, self.limits)
        else:
            try:
                decoded = decode_batch(raw)
            except MalformedProtobuf as exc:
                return await self._charge(source, 1) or self._reject(
                    "malformed_protobuf",
                    400,
                    f"not a serialised EventBatch: {exc}",
                    source=source,
                )
            items, decode_errors = decoded.items, decoded.errors
            envelope_errors = batch_size_errors(len(items), self.limits)
        count = max(1, min(len(items), settings.max_batch))
        if refused := await self._charge(source, count):
            return refused
        if envelope_errors:
            return self._invalid(_in_order(envelope_errors, decode_errors), count, source)

        now = datetime.now(UTC)
        events, errors = validate_items(items, self.cache.catalog, now, self.limits)
        if errors and await self._found_new_codes(items, errors):
            # A unit created seconds ago was not in the cache yet; it is now.
            events, errors = validate_items(items, self.cache.catalog, now, self.limits)
        if decode_errors or errors:
            return self._invalid(_in_order(decode_errors, errors), count, source)

        outside = scope_errors(events, self.cache.catalog, grant.units, grant.indicators)
        if outside:
            named = sorted({e.message.split(" is outside")[0] for e in outside})
            listed = ", ".join(named[:10]) + (", …" if len(named) > 10 else "")
            return self._reject(
                "forbidden",
                403,
                f"outside this token's scope: {listed}; nothing was accepted",
                count=count,
                source=source,
                slug="out-of-scope",
                errors=outside,
            )

        repeats = sort_repeats(events)
        events = repeats.publish
        try:
            await self.publisher.publish(events, source)
        except KafkaUnavailable as exc:
            self.log_refusal(
                source,
                503,
                "kafka_unavailable",
                expected=self._starting,
                error=str(exc),
                events=count,
            )
            self.metrics.events_rejected.labels("kafka_unavailable").inc(count)
            return problem(
                503,
                "Kafka could not take the events; retry with the same event_ids",
                headers={"Retry-After": str(settings.retry_after_seconds)},
            )
        self.metrics.batch_size.observe(len(events))
        by_indicator: dict[str, int] = {}
        for event in events:
            by_indicator[event.indicator] = by_indicator.get(event.indicator, 0) + 1
        for indicator, n in by_indicator.items():
            self.metrics.events_accepted.labels(indicator).inc(n)
        self.recent.remember(events)
        log.debug(
            "events_accepted",
            events=len(events),
            duplicates=len(repeats.duplicates),
            conflicts=len(repeats.conflicts),
        )
        return JSONResponse(accepted_body(repeats), status_code=202)

    async def _found_new_codes(self, items: list[Any], errors: list[FieldError]) -> bool:
        units: set[str] = set()
        indicators: set[str] = set()
        for e in errors:
            if e.index is not None and e.message in (UNKNOWN_UNIT, UNKNOWN_INDICATOR):
                # the validator checked the code's format: a string of a known field
                codes = units if e.field == "unit" else indicators
                codes.add(items[e.index][e.field])
        if not (units or indicators):
            return False
        return await self.cache.find_new_codes(units, indicators)

    def _invalid(self, errors: list[FieldError], count: int, source: str) -> Response:
        return self._reject(
            "invalid",
            422,
            _problem_count(errors),
            count=count,
            source=source,
            slug="invalid-event",
            errors=errors,
        )
