"""OpenAPI models of the ingest API. Requests are parsed by `validation`, not by these:
the models document the contract for clients (and for schemathesis)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="client-generated idempotency key: the same id twice is counted once",
    )
    unit: str = Field(min_length=1, max_length=32, description="unit code from the unit tree")
    indicator: str = Field(min_length=1, max_length=48, description="indicator code")
    kind: Literal["increment", "snapshot"] = Field(
        "increment", description="increment: n more done; snapshot: the unit's own total"
    )
    value: int = Field(
        1,
        ge=-1_000_000,
        le=1_000_000_000,
        description="increment: non-zero, -1,000,000..1,000,000; snapshot: >= 0",
    )
    occurred_at: str = Field(
        description="RFC 3339 with offset, at most 5 minutes in the future",
        examples=["2023-05-10T08:15:00+07:00"],
    )
    subject: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="keyed hash of a citizen reference; only on increments of value 1",
    )


class EventBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=1000)


class Accepted(BaseModel):
    accepted: int = Field(description="events acknowledged by Kafka")


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    kafka: bool
    catalog: bool
