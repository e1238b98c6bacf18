"""Settings every service shares; each service subclasses with its own env prefix."""

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]
# A key shorter than this can be guessed or was typed by hand; tiendo's own are 256 bits.
MIN_SECRET_LENGTH = 16
DEV_SECRET_PREFIX = "dev-"  # noqa: S105 - a prefix, not a secret


def secret_problems(dev_mode: bool, secrets: Mapping[str, str]) -> list[str]:
    """Why these secrets may not be used (empty: they may). Development defaults work only
    in the explicit development mode `make dev` sets."""
    problems = []
    for name, value in secrets.items():
        if len(value) < MIN_SECRET_LENGTH:
            problems.append(
                f"{name} is {'empty' if not value else 'too short'}: "
                f"set at least {MIN_SECRET_LENGTH} characters"
            )
        elif value.startswith(DEV_SECRET_PREFIX) and not dev_mode:
            problems.append(
                f"{name} is a development default, which works only where ENVIRONMENT="
                "development is set (make dev sets it): set a secret of your own"
            )
    return problems


class ServiceSettings(BaseSettings):
    """Connection and runtime settings common to ingest, aggregator and notifier."""

    model_config = SettingsConfigDict(env_prefix="TIENDO_", extra="ignore", frozen=True)

    environment: Environment = Field(
        "development",
        description="production logs JSON; development logs to the console, and only "
        "where it is set explicitly (make dev does) do the development default secrets work",
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

    identity_refresh_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description="how often identities are re-read: the bound on a revocation's delay",
    )
    identity_max_age_seconds: float = Field(
        60.0,
        gt=0,
        description="identities not re-read for this long (database down): requests get 503",
    )

    oidc_issuer: str | None = Field(
        None,
        description="issuer (`iss`) of OIDC bearer tokens to accept besides tiendo's own "
        "secrets, e.g. https://sso.example/realms/police (none: OIDC off)",
    )
    oidc_jwks_url: str | None = Field(
        None, description="the issuer's JWKS (Keycloak: <issuer>/protocol/openid-connect/certs)"
    )
    oidc_audience: str = Field("tiendo", description="what a token's `aud` must hold")
    oidc_role_claim: str = Field(
        "tiendo_role", description="claim naming the role: reader, admin or auditor"
    )
    oidc_units_claim: str = Field(
        "tiendo_units", description='claim listing a reader\'s unit subtrees (["*"]: all)'
    )

    @model_validator(mode="after")
    def _check_identity_age(self) -> "ServiceSettings":
        if self.identity_max_age_seconds <= self.identity_refresh_seconds:
            raise ValueError("identity_max_age_seconds must exceed identity_refresh_seconds")
        if self.oidc_issuer and not self.oidc_jwks_url:
            raise ValueError("oidc_issuer needs oidc_jwks_url")
        return self

    def secrets(self) -> dict[str, str]:
        """Secret settings by name; subclasses add theirs so a start refuses weak ones."""
        return {}

    def unsafe(self) -> list[str]:
        """What stops this service from starting: its secrets' problems, each named by
        the environment variable that sets it."""
        prefix = str(self.model_config.get("env_prefix", ""))
        named = {f"{prefix}{k}".upper(): v for k, v in self.secrets().items()}
        # dev mode is a choice: the default environment never lets a default secret through
        dev_mode = self.environment == "development" and "environment" in self.model_fields_set
        return secret_problems(dev_mode, named)
