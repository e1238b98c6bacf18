"""Response models of the ingest API. The request body is described by `openapi` (it
depends on the limits in the settings) and parsed by `validation`."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.ingest.repeats import Sorted


class DuplicateOut(BaseModel):
    index: int = Field(description="position in `events` of an exact repeat, not published again")
    duplicate_of: int = Field(description="position of the event it repeats, the one published")


class ConflictOut(BaseModel):
    index: int = Field(description="position in `events` of an event refused as a conflict")
    conflicts_with: int = Field(
        description="position of another event of the same event_id with different content"
    )


class Accepted(BaseModel):
    accepted: int = Field(ge=0, description="events acknowledged by Kafka")
    duplicates: list[DuplicateOut] = Field(
        default_factory=list,
        description="exact repeats of an event of the request, accepted once (absent if none)",
    )
    conflicts: list[ConflictOut] = Field(
        default_factory=list,
        description="events sharing an event_id with different content: none of them was "
        "accepted (absent if none)",
    )


def accepted_body(repeats: Sorted) -> dict[str, Any]:
    """The 202 body: `{"accepted": n}`, plus the repeats left out if there were any."""
    body: dict[str, Any] = {"accepted": len(repeats.publish)}
    if repeats.duplicates:
        body["duplicates"] = [
            {"index": d.index, "duplicate_of": d.duplicate_of} for d in repeats.duplicates
        ]
    if repeats.conflicts:
        body["conflicts"] = [
            {"index": c.index, "conflicts_with": c.conflicts_with} for c in repeats.conflicts
        ]
    return body


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    kafka: bool = Field(description="the producer is connected and the broker answers")
    catalog: bool = Field(
        description="units, indicators and tokens are loaded, and tokens recently re-read"
    )
    loops: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="each background loop: state, last heartbeat, restarts, failures in a "
        "row, last error",
    )
