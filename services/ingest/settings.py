"""Ingest settings (env prefix TIENDO_INGEST_). Every input limit is here; docs/ingest.md
explains each one. Limits the data contract fixes (contract §4.1) may be tightened, not
loosened: their upper bounds are the contract's."""

from datetime import timedelta

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.ingest.validation import Limits
from tiendo.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TIENDO_INGEST_", extra="ignore", frozen=True)

    port: int = Field(8001, ge=0, le=65535, description="HTTP port")
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="ingest processes sharing the port (SO_REUSEPORT); the rate limit is "
        "shared by all of them through PostgreSQL",
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="larger bodies get 413; a gzip body is held to it once decompressed",
    )
    max_batch: int = Field(1000, ge=1, le=10_000, description="most events in one request")
    max_event_id_length: int = Field(
        64, ge=1, le=64, description="longest event_id (the contract allows 64)"
    )
    max_unit_length: int = Field(
        32, ge=1, le=32, description="longest unit code (the unit tree allows 32)"
    )
    max_indicator_length: int = Field(
        48, ge=1, le=48, description="longest indicator code (the catalogue allows 48)"
    )
    max_increment: int = Field(
        1_000_000, ge=1, le=1_000_000, description="largest absolute value of an increment"
    )
    max_snapshot: int = Field(
        1_000_000_000, ge=1, le=10**15, description="largest value of a snapshot"
    )
    future_tolerance_seconds: int = Field(
        300, ge=0, le=86_400, description="how far in the future occurred_at may be"
    )
    past_horizon_days: int = Field(
        366, ge=1, le=36_600, description="how far in the past occurred_at may be"
    )
    rate_limit_events_per_second: float = Field(
        20_000.0, ge=0, description="sustained events per second per token (0: no limit)"
    )
    rate_limit_burst_events: int = Field(
        100_000, ge=1, description="events a token may send at once before the rate applies"
    )
    publish_timeout_seconds: float = Field(
        5.0, gt=0, description="longest wait for Kafka's acknowledgement before answering 503"
    )
    retry_after_seconds: int = Field(5, ge=1, description="Retry-After sent with 503")
    catalog_refresh_seconds: float = Field(
        30.0, gt=0, description="how often units and indicators are re-read"
    )
    token_refresh_seconds: float = Field(
        5.0, gt=0, le=300, description="how often tokens are re-read: the bound on revocation"
    )
    token_max_age_seconds: float = Field(
        60.0,
        gt=0,
        description="tokens not re-read for this long (database down): every request gets 503",
    )

    @model_validator(mode="after")
    def _check_token_age(self) -> "IngestSettings":
        if self.token_max_age_seconds <= self.token_refresh_seconds:
            raise ValueError("token_max_age_seconds must exceed token_refresh_seconds")
        return self

    def limits(self) -> Limits:
        """The validator's view of these settings."""
        return Limits(
            max_batch=self.max_batch,
            max_event_id_length=self.max_event_id_length,
            max_unit_length=self.max_unit_length,
            max_indicator_length=self.max_indicator_length,
            max_increment=self.max_increment,
            max_snapshot=self.max_snapshot,
            future_tolerance=timedelta(seconds=self.future_tolerance_seconds),
            past_horizon=timedelta(days=self.past_horizon_days),
        )
