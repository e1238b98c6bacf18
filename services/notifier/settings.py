"""Notifier settings (env prefix TIENDO_NOTIFIER_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tiendo.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TIENDO_NOTIFIER_", extra="ignore", frozen=True)

    port: int = Field(8003, ge=0, le=65535, description="HTTP port")
    group_id: str = Field("tiendo-notifier", description="Kafka consumer group")
    evaluate_every_seconds: float = Field(
        30.0, gt=0, description="clock re-evaluation period (silent units fall behind too)"
    )
    behind_for_seconds: int = Field(
        0, ge=0, description="how long `behind` must hold before the alert fires"
    )
    webhook_url: str | None = Field(
        None, description="webhook for units whose chief has none (e.g. an ops channel)"
    )
    webhook_secret: str = Field(
        "dev-webhook-secret", description="HMAC-SHA256 key of X-Tiendo-Signature"
    )
    delivery_attempts: int = Field(8, ge=1, description="attempts before a message is failed")
    delivery_poll_seconds: float = Field(1.0, gt=0, description="outbox poll period")

    def secrets(self) -> dict[str, str]:
        return {"webhook_secret": self.webhook_secret}
