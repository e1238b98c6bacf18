"""Per-campaign alert policy: which rules, their `for` durations and parameters, grouping and
escalation timing, digests and language. Stored per campaign as partial overrides of the
settings' defaults (`PUT /v1/campaigns/{id}/alert-policy`)."""

import re
from datetime import time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.notifier.languages import Language
from services.notifier.rules import Rule
from services.notifier.settings import NotifierSettings

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def parse_hhmm(text: str) -> time:
    hours, _, minutes = text.strip().partition(":")
    return time(int(hours), int(minutes or 0))


class RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    for_seconds: int = Field(0, ge=0, le=90 * 86400, description="how long it must hold")

    @property
    def for_(self) -> timedelta:
        return timedelta(seconds=self.for_seconds)


class BottomRankConfig(RuleConfig):
    n: int = Field(5, ge=0, le=1000, description="how many of the lowest are alerted")
    level: int | None = Field(
        None,
        ge=1,
        le=6,
        description="unit level that is ranked (None: the deepest with a target on the tree "
        "of the briefing, `ranks.briefing_level`)",
    )
    weekday: int = Field(0, ge=0, le=6, description="briefing day, 0 = Monday")
    time: str = Field("08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="local time")


class Policy(BaseModel):
    """The effective policy of one campaign."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    behind: RuleConfig
    at_risk: RuleConfig
    stale: RuleConfig
    bottom_rank: BottomRankConfig
    group_wait_seconds: int = Field(ge=0, le=86400)
    repeat_interval_seconds: int = Field(ge=0, le=30 * 86400, description="0: never repeat")
    escalate_after_seconds: int = Field(ge=0, le=90 * 86400, description="0: never escalate")
    escalation_levels: int = Field(ge=0, le=5)
    digest_times: list[str] = Field(description="local HH:MM of the daily digests")
    language: Language

    @field_validator("digest_times")
    @classmethod
    def _times(cls, value: list[str]) -> list[str]:
        for t in value:
            if not _HHMM.match(t):
                raise ValueError(f"{t!r} is not a local time HH:MM")
        return value

    def rule(self, rule: Rule) -> RuleConfig:
        config: RuleConfig = getattr(self, rule.value)
        return config

    def enabled(self) -> frozenset[Rule]:
        return frozenset(r for r in Rule if self.rule(r).enabled)

    @property
    def group_wait(self) -> timedelta:
        return timedelta(seconds=self.group_wait_seconds)

    @property
    def repeat_interval(self) -> timedelta:
        return timedelta(seconds=self.repeat_interval_seconds)

    @property
    def escalate_after(self) -> timedelta:
        return timedelta(seconds=self.escalate_after_seconds)

    def digest_clock(self) -> tuple[time, ...]:
        return tuple(sorted(parse_hhmm(t) for t in self.digest_times))

    def briefing_time(self) -> time:
        return parse_hhmm(self.bottom_rank.time)


def defaults(settings: NotifierSettings) -> dict[str, Any]:
    """The policy every campaign has unless it overrides some of it."""
    return {
        "behind": {"enabled": True, "for_seconds": settings.behind_for_seconds},
        "at_risk": {"enabled": True, "for_seconds": settings.at_risk_for_seconds},
        "stale": {"enabled": True, "for_seconds": settings.stale_for_seconds},
        "bottom_rank": {
            "enabled": settings.bottom_rank_n > 0,
            "for_seconds": 0,
            "n": settings.bottom_rank_n,
            "level": settings.bottom_rank_level,
            "weekday": settings.briefing_weekday,
            "time": settings.briefing_time,
        },
        "group_wait_seconds": settings.group_wait_seconds,
        "repeat_interval_seconds": settings.repeat_interval_seconds,
        "escalate_after_seconds": settings.escalate_after_seconds,
        "escalation_levels": settings.escalation_levels,
        "digest_times": [t.strip() for t in settings.digest_times.split(",") if t.strip()],
        "language": settings.language,
    }


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` laid over it, nested dictionaries merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def effective(settings: NotifierSettings, override: dict[str, Any]) -> Policy:
    return Policy.model_validate(merge(defaults(settings), override))


class RuleOverride(BaseModel):
    # (strict, as the override is what an admin sends: false is not 0, nor 1 true)
    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool | None = None
    for_seconds: int | None = Field(None, ge=0, le=90 * 86400)


class BottomRankOverride(RuleOverride):
    n: int | None = Field(None, ge=0, le=1000)
    level: int | None = Field(None, ge=1, le=6)
    weekday: int | None = Field(None, ge=0, le=6)
    time: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class PolicyOverride(BaseModel):
    """A campaign's changes to the default policy; what is left out keeps the default."""

    model_config = ConfigDict(extra="forbid", strict=True)

    behind: RuleOverride | None = None
    at_risk: RuleOverride | None = None
    stale: RuleOverride | None = None
    bottom_rank: BottomRankOverride | None = None
    group_wait_seconds: int | None = Field(None, ge=0, le=86400)
    repeat_interval_seconds: int | None = Field(None, ge=0, le=30 * 86400)
    escalate_after_seconds: int | None = Field(None, ge=0, le=90 * 86400)
    escalation_levels: int | None = Field(None, ge=0, le=5)
    digest_times: list[str] | None = Field(None, max_length=24)
    language: Language | None = None

    @field_validator("digest_times")
    @classmethod
    def _times(cls, value: list[str] | None) -> list[str] | None:
        for t in value or []:
            if not _HHMM.match(t):
                raise ValueError(f"{t!r} is not a local time HH:MM")
        return value

    def config(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)
