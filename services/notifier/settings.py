"""Notifier settings (env prefix TIENDO_NOTIFIER_)."""

import hmac
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from tiendo.nul_guard import DEFAULT_MAX_BODY_BYTES, BodyLimit
from tiendo.settings import ServiceSettings

# Signs webhooks to endpoints without a secret of their own, outside production only: one
# secret shared by every receiver lets each forge messages to all the others.
DEV_WEBHOOK_SECRET = "dev-webhook-secret"  # noqa: S105 - refused in production


class NotifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TIENDO_NOTIFIER_", extra="ignore", frozen=True)

    port: int = Field(8003, ge=0, le=65535, description="HTTP port")
    group_id: str = Field("tiendo-notifier", description="Kafka consumer group")
    max_body_bytes: BodyLimit = DEFAULT_MAX_BODY_BYTES
    evaluate_every_seconds: float = Field(
        10.0,
        gt=0,
        description="full pass over every targeted key (silent units, admin changes, repair)",
    )
    admin_watch_seconds: float = Field(
        1.0, gt=0, description="how often the audit log is checked for admin changes"
    )
    run_rate_cache_seconds: float = Field(
        300.0,
        ge=0,
        description=(
            "reuse values one run-rate window ago (from the day rollups) this long, unless a "
            "report dated before the window's start, a re-plan or a rebuild came since"
        ),
    )
    feed_coalesce_seconds: float = Field(
        1.0,
        ge=0,
        description="progress updates taken in together before judging (each key once)",
    )
    # Defaults of the per-campaign policy (docs/alerts.md); a campaign may override each.
    behind_for_seconds: int = Field(
        0, ge=0, description="how long `behind` must hold before the alert fires"
    )
    at_risk_for_seconds: int = Field(
        21600, ge=0, description="how long `at_risk` must hold before the alert fires"
    )
    stale_for_seconds: int = Field(
        0, ge=0, description="how long `stale` must hold (beyond stale_after) before it fires"
    )
    bottom_rank_n: int = Field(
        5, ge=0, description="how many lowest units of a level are alerted at the briefing"
    )
    bottom_rank_level: int | None = Field(
        None,
        ge=1,
        le=6,
        description="the level ranked at the briefing (default: the deepest level with a "
        "target on the tree the campaign reports on then: wards, communes since July 2025)",
    )
    briefing_weekday: int = Field(0, ge=0, le=6, description="weekly briefing day, 0 = Monday")
    briefing_time: str = Field(
        "08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="local briefing time"
    )
    group_wait_seconds: int = Field(
        30, ge=0, description="wait for more changes before a chief's message goes out"
    )
    repeat_interval_seconds: int = Field(
        86400, ge=0, description="resend a chief's firing alerts this often (0: never)"
    )
    escalate_after_seconds: int = Field(
        172800, ge=0, description="firing this long goes to the parent unit's chief (0: never)"
    )
    escalation_levels: int = Field(2, ge=0, le=5, description="how many levels up at most")
    digest_times: str = Field(
        "07:00,17:00", description="local times of the daily digest per chief (empty: none)"
    )
    digest_grace_seconds: int = Field(
        3600, ge=1, description="a digest more than this late (notifier down) is skipped"
    )
    language: str = Field("vi", pattern="^(vi|en)$", description="message language")
    templates_dir: str | None = Field(
        None, description="folder of Jinja2 templates overriding the built-in ones"
    )
    webhook_url: str | None = Field(
        None, description="webhook for units whose chief has none (e.g. an ops channel)"
    )
    webhook_secret: str | None = Field(
        None,
        description="development only: signs webhooks to endpoints without a secret of "
        "their own (default dev-webhook-secret outside production; refused in production)",
    )
    public_url: str = Field(
        "http://127.0.0.1:8003",
        description="the notifier's address as chiefs' phones reach it: the base of the "
        "personal link in every alert message (docs/briefing.md)",
    )
    link_secret: str | None = Field(
        None,
        description="HMAC-SHA256 key of the links in alert messages (default: derived "
        "from the development webhook secret; required in production)",
    )
    smtp_host: str | None = Field(None, description="SMTP server for email (none: no email)")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port")
    smtp_username: str | None = Field(None, description="SMTP login")
    smtp_password: str | None = Field(None, description="SMTP password")
    smtp_starttls: bool = Field(False, description="upgrade the SMTP connection with STARTTLS")
    smtp_sender: str = Field("tiendo <alerts@tiendo.invalid>", description="From: of alert emails")
    # The retry window: 2 s doubling to 15 min, then every 15 min, 56 attempts in all: about
    # 11 h 47 min from the first attempt to the last (`outbox.retry_window_seconds`). An SMTP server
    # down for an hour, or through a night, still delivers every message within 15 min of
    # coming back; past half a day the next digest (at most 14 h apart by default) and the
    # group's repeat tell the chief what still holds, and `tiendo notifier redrive` sends
    # what failed. A retry waits outside the delivery slots: the window costs no sending.
    delivery_attempts: int = Field(
        56, ge=1, description="attempts before a message is failed (see the retry window)"
    )
    delivery_poll_seconds: float = Field(1.0, gt=0, description="outbox poll period")
    delivery_backoff_seconds: float = Field(
        2.0, gt=0, description="first retry delay; doubles each attempt"
    )
    delivery_backoff_max_seconds: float = Field(900.0, gt=0, description="longest retry delay")
    delivery_timeout_seconds: float = Field(10.0, gt=0, description="longest single send")
    delivery_lease_seconds: float = Field(
        120.0, gt=0, description="a sender's hold on a message; a crashed sender's is taken over"
    )
    delivery_concurrency: int = Field(8, ge=1, description="messages sent at once per replica")

    def link_key(self) -> str:
        """The links' signing key: its own, or one derived from the webhook secret (so a
        production deployment, which must set that, never signs with a development key)."""
        if self.link_secret:
            return self.link_secret
        if self.webhook_secret:
            return hmac.new(self.webhook_secret.encode(), b"tiendo-links", "sha256").hexdigest()
        # production has no shared webhook secret: the start check asks for a link secret
        return ""

    def secrets(self) -> dict[str, str]:
        # no shared webhook secret is a valid production setup (every endpoint has its own);
        # the links' key is always needed
        shared = {} if self.webhook_secret is None else {"webhook_secret": self.webhook_secret}
        return {**shared, "link_secret": self.link_key()}

    @model_validator(mode="before")
    @classmethod
    def _development_webhook_secret(cls, values: Any) -> Any:
        if (
            isinstance(values, dict)
            # outside production the shared default is there, and the start check lets it
            # through only in the explicit development mode (make dev)
            and values.get("environment") != "production"
            and "webhook_secret" not in values
        ):
            return {**values, "webhook_secret": DEV_WEBHOOK_SECRET}
        return values

    @model_validator(mode="after")
    def _no_shared_webhook_secret_in_production(self) -> "NotifierSettings":
        if self.environment == "production" and self.webhook_secret:
            raise ValueError(
                "webhook_secret is a development fallback shared by every receiver; in "
                "production leave it unset and give each webhook endpoint its own secret "
                "(tiendo notifier webhook-secret create)"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlives_an_attempt(self) -> "NotifierSettings":
        # A claim is one attempt (a retry waits as a pending row, holding nothing): the lease
        # must outlast one send, or a slow sender loses its message to another replica.
        if self.delivery_lease_seconds <= self.delivery_timeout_seconds:
            raise ValueError(
                "delivery_lease_seconds must exceed delivery_timeout_seconds, or a slow "
                "sender loses its message to another"
            )
        return self
