"""Response models of the ingest API. The request body is described by `openapi` (it
depends on the limits in the settings) and parsed by `validation`."""

from typing import Any, Literal

from pydantic import BaseModel, Field


class Accepted(BaseModel):
    accepted: int = Field(ge=1, description="events acknowledged by Kafka")


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    kafka: bool = Field(description="the producer is connected and the broker answers")
    catalog: bool = Field(
        description="units, indicators and tokens are loaded, and tokens recently re-read"
    )
    loops: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="each background loop: state, last heartbeat, restarts, last error",
    )
