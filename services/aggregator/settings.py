"""Aggregator settings (env prefix TIENDO_AGGREGATOR_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tiendo.nul_guard import DEFAULT_MAX_BODY_BYTES, BodyLimit
from tiendo.settings import ServiceSettings


class AggregatorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TIENDO_AGGREGATOR_", extra="ignore", frozen=True)

    port: int = Field(8002, ge=0, le=65535, description="HTTP port")
    group_id: str = Field("tiendo-aggregator", description="Kafka consumer group")
    max_body_bytes: BodyLimit = DEFAULT_MAX_BODY_BYTES
    batch_max_records: int = Field(
        20_000, ge=1, description="most records applied in one database transaction"
    )
    apply_connections: int = Field(
        3,
        ge=1,
        le=16,
        description=(
            "database connections a replica applies on side by side, each a transaction of "
            "whole partitions (docs/capacity.md): one uses one PostgreSQL core; more than "
            "the partitions a replica holds are left idle"
        ),
    )
    poll_timeout_ms: int = Field(200, ge=1, description="longest wait for a batch to fill")
    held_check_seconds: float = Field(
        0.5,
        gt=0,
        description=(
            "how often the events consumed ahead of the clock are looked at, and those whose "
            'moment has come applied (docs/semantics.md "Events ahead of the clock")'
        ),
    )
    metrics_unit_level: int = Field(
        2, ge=1, le=6, description="deepest unit level exported as per-unit metric series"
    )
    metrics_refresh_seconds: float = Field(
        10.0, gt=0, description="how often the per-unit metric snapshot is recomputed"
    )
    metrics_window_refresh_seconds: float = Field(
        300.0,
        ge=0,
        description=(
            "how long the metric snapshot reuses each unit's value one run-rate window ago "
            "(read from the day rollups, the snapshot's costly part); a report dated before "
            "the window's start, a re-plan or a rebuild drops them at the next pass"
        ),
    )
    campaign_check_seconds: float = Field(
        30.0,
        gt=0,
        description=(
            "how often the stored campaigns are validated again (also after every admin "
            "change); an unusable one is left out of counting"
        ),
    )
    move_retry_seconds: float = Field(
        300.0,
        ge=0,
        description=(
            "how often `tree_check` tries again to move a campaign whose move onto a new "
            "tree failed (each try holds the counters' lock until it fails)"
        ),
    )
    consume: bool = Field(True, description="run the consumer (false: read API only)")
    consumer_stale_after_seconds: float = Field(
        60.0,
        ge=5,
        description=(
            "a consumer that has not polled for this long is stuck: /readyz answers 503, "
            "and it is cancelled (its transaction rolled back) and started again"
        ),
    )
