"""`GET /v1/events/{event_id}`: what became of an event, for its sender (docs/ingest.md,
*What became of an event*).

Read from the aggregator's views (`aggregator_read.event_receipts`, `…event_dead_letters`)
and this replica's memory of what it accepted; never on the path of `POST /v1/events`.
A token sees only events of its units and indicators: any other answers 404 exactly like
an unknown id, so a token cannot learn that someone else's event exists.
"""

import time
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from services.ingest import repository, tokens
from services.ingest.catalog import DATABASE_ERRORS, TokensUnavailable
from services.ingest.intake import Intake
from services.ingest.rawids import contains_raw_id
from services.ingest.repository import DeadLetterSeen, StoredEvent
from services.ingest.validation import in_scope, is_event_id
from tiendo.counting.batch import CONFLICT
from tiendo.identity.guard import Guard
from tiendo.web import problem, problem_responses

Status = Literal["accepted", "counted", "duplicate", "conflict", "dead_lettered"]


class Receipt(BaseModel):
    event_id: str
    status: Status = Field(
        description="accepted: answered 202 by this replica, not stored yet; counted: stored "
        "and applied once; duplicate: counted, and later identical deliveries ignored; "
        "conflict: counted as first stored, and deliveries with other content dead-lettered "
        "(`reason: conflict`); dead_lettered: not applicable (`reason`), e.g. its unit was "
        "deleted"
    )
    duplicates: int = Field(0, description="identical deliveries ignored after the first")
    conflicts: int = Field(0, description="deliveries with other content dead-lettered")
    reason: str | None = Field(None, description="why the latest dead letter was not applied")
    applied_at: datetime | None = Field(None, description="when the aggregator stored it")


def receipt(
    event_id: str,
    stored: StoredEvent | None,
    letters: list[DeadLetterSeen],
    accepted_here: bool,
) -> Receipt | None:
    """The sender's view of an event from what its scope lets it see (None: nothing)."""
    conflicts = sum(1 for d in letters if d.reason == CONFLICT)
    if stored is not None or conflicts:
        status: Status = "conflict" if conflicts else "counted"
        if status == "counted" and stored is not None and stored.duplicates:
            status = "duplicate"
        return Receipt(
            event_id=event_id,
            status=status,
            duplicates=stored.duplicates if stored else 0,
            conflicts=conflicts,
            reason=CONFLICT if conflicts else None,
            applied_at=stored.applied_at if stored else None,
        )
    if letters:
        return Receipt(event_id=event_id, status="dead_lettered", reason=letters[-1].reason)
    if accepted_here:
        return Receipt(event_id=event_id, status="accepted")
    return None


def router(intake: Intake, access: Guard) -> APIRouter:
    api = APIRouter()

    @api.get(
        "/v1/events/{event_id}",
        tags=["events"],
        summary="What became of an event sent with this token",
        response_model=Receipt,
        responses={
            **problem_responses(401, 403, 404, 429, 503),
            404: {
                **problem_responses(404)[404],
                "description": "No event of that id within this token's scope: never sent, "
                "not stored yet, another token's, an id `POST /v1/events` would refuse "
                "(too long, or a character other than A-Z a-z 0-9 _ . : -, a NUL for one), "
                "or one that looks like a raw ID number",
            },
        },
        # the ingest role's route: it checks its own tokens, other roles get 403
        dependencies=[Depends(access.refuse_other_roles())],
    )
    async def get_event(event_id: str, request: Request) -> Response:
        cache = intake.cache
        token = tokens.bearer(request.headers.get("authorization"))
        try:
            grant = (
                await cache.grant(tokens.digest(token), datetime.now(UTC))
                if (token is not None and cache.loaded)
                else None
            )
        except TokensUnavailable:
            grant = None
        if grant is None:
            if not cache.loaded or not cache.tokens_fresh():
                return problem(
                    503,
                    "ingest cannot check tokens now; retry shortly",
                    headers={"Retry-After": str(intake.settings.retry_after_seconds)},
                )
            return problem(
                401,
                "a valid bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="tiendo"'},
            )
        # a look-up costs the token one event of its rate, so ids cannot be polled at will
        wait = intake.limiter.known_wait(grant.name, time.monotonic())
        if not wait:
            wait = await intake.limiter.take(intake.pool, grant.name, 1)
        if wait:
            return problem(429, "over this token's rate", headers={"Retry-After": str(wait)})
        not_found = problem(404, "no event of that id within this token's scope")
        # An id validation would refuse (too long, a character outside the pattern: a NUL,
        # which PostgreSQL cannot even compare) was never stored, nor was a raw ID number:
        # nothing to look up, nothing to echo. A 404 like any id never sent, not a 422:
        # the route answers "no such event" for every id it cannot show.
        if not is_event_id(event_id, intake.limits) or contains_raw_id(event_id):
            return not_found

        def visible(unit: str | None, indicator: str | None) -> bool:
            return in_scope(unit, indicator, cache.catalog, grant.units, grant.indicators)

        try:
            async with request.app.state.pool.acquire() as conn:
                stored = await repository.stored_event(conn, event_id)
                letters = await repository.dead_letters_of(conn, event_id)
        except DATABASE_ERRORS:
            return problem(
                503,
                "the aggregator's records cannot be read now; retry shortly",
                headers={"Retry-After": str(intake.settings.retry_after_seconds)},
            )
        letters = [d for d in letters if visible(d.unit, d.indicator)]
        if stored is not None and not visible(stored.unit, stored.indicator):
            stored = None
        recent = intake.recent.get(event_id)
        found = receipt(event_id, stored, letters, recent is not None and visible(*recent))
        if found is None:
            return not_found
        return JSONResponse(found.model_dump(mode="json"))

    return api
