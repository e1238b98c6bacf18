"""Settings every service shares; each service subclasses with its own env prefix."""

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]


class ServiceSettings(BaseSettings):
    """Connection and runtime settings common to ingest, aggregator and notifier."""

    model_config = SettingsConfigDict(env_prefix="TIENDO_", extra="ignore", frozen=True)

    environment: Environment = Field(
        "development", description="development logs to the console; production logs JSON"
    )
    log_level: str = Field("INFO", description="minimum level of log lines")
    database_url: str = Field(
        "postgresql://tiendo@127.0.0.1:5433/tiendo", description="PostgreSQL DSN"
    )
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    topic_events: str = Field("progress-events", description="topic of accepted events")
    topic_progress: str = Field("unit-progress", description="compacted topic of unit progress")
    topic_dead_letters: str = Field(
        "progress-events-dlq", description="events that can never be applied"
    )
    topic_partitions: int = Field(3, ge=1, description="partitions when tiendo creates a topic")
    host: str = Field("127.0.0.1", description="HTTP bind address")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port")
    dependency_timeout_seconds: float = Field(
        120.0,
        gt=0,
        description="how long a starting service waits for PostgreSQL and Kafka before it "
        "stops with an error (ingest keeps serving 503 and waiting for Kafka)",
    )

    @model_validator(mode="after")
    def _check_production(self) -> "ServiceSettings":
        for name, value in self.secrets().items():
            if self.environment == "production" and value.startswith("dev-"):
                raise ValueError(
                    f"{name} still has its development default; set it outside development"
                )
        return self

    def secrets(self) -> dict[str, str]:
        """Secret settings by name; subclasses add theirs so production refuses defaults."""
        return {}
