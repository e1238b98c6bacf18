"""Ingest settings (env prefix TIENDO_INGEST_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tiendo.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TIENDO_INGEST_", extra="ignore", frozen=True)

    port: int = Field(8001, ge=0, le=65535, description="HTTP port")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger bodies get 413")
    max_batch: int = Field(1000, ge=1, description="most events in one request")
    future_tolerance_seconds: int = Field(
        300, ge=0, description="how far in the future occurred_at may be"
    )
    publish_timeout_seconds: float = Field(
        5.0, gt=0, description="longest wait for Kafka's acknowledgement before answering 503"
    )
    retry_after_seconds: int = Field(5, ge=1, description="Retry-After sent with 503")
    catalog_refresh_seconds: float = Field(
        30.0, gt=0, description="how often units, indicators and tokens are re-read"
    )
