"""The response models of the read API."""

from datetime import datetime, timedelta

from pydantic import BaseModel, Field, computed_field

from tiendo.board.campaign import Campaign
from tiendo.unit_keys import admin_code_of


class UnitRef(BaseModel):
    code: str = Field(description="the version's key: the official code, or `<code>@<day>`")
    name: str
    level: int

    @computed_field(description="the official code (what upstream systems send)")  # type: ignore[prop-decorator]
    @property
    def admin_code(self) -> str:
        return admin_code_of(self.code)


class UnitOut(BaseModel):
    code: str
    name: str
    type: str
    level: int
    parent: str | None
    ancestors: list[UnitRef] = Field(description="parent chain, root first")
    children: list[UnitRef]


# What a figure that judges a unit says of one the campaign does not judge.
NOT_JUDGED = "; null for a unit without a target, which is not judged"


class Figures(BaseModel):
    """Every figure of contract §4.3 for one unit and indicator at a moment. A unit without
    a target (0: outside a push limited to some units, say) is not judged: it has no
    status, and no plan, pace, required rate or projection; its value, run rate and last
    report are shown. The leaderboard ranks judged units only."""

    value: int
    baseline: int
    target: int = Field(description="0: none, and the unit is not judged")
    pct: float | None = Field(description="100 × value / target; null for a zero target")
    expected: float | None = Field(description="plan value at as_of" + NOT_JUDGED)
    expected_pct: float | None = Field(description="100 × expected / target" + NOT_JUDGED)
    pace: float | None = Field(
        description="value / expected; null while expected is 0" + NOT_JUDGED
    )
    run_rate_7d: float | None = Field(description="per day, over min(7 days, since start)")
    required_daily_rate: float | None = Field(
        description="per day to finish on time; null at or after the deadline" + NOT_JUDGED
    )
    projected_completion: datetime | None = Field(
        description="when the run rate reaches the target; null when done, when the run "
        "rate is not positive" + NOT_JUDGED
    )
    status: str | None = Field(
        description="done, stale, behind, at_risk or on_track" + NOT_JUDGED + " (no status)"
    )
    last_event_at: datetime | None
    children_total: int = Field(
        description=(
            "direct children the campaign judges: with a positive target on the tree it "
            "reports on at that moment"
        )
    )
    children_done: int = Field(description="of children_total, those whose status is done")


class IndicatorProgress(Figures):
    indicator: str


class LeaderboardRow(Figures):
    rank: int = Field(description="1 = highest pct; ties by higher pace, then by code")
    previous_rank: int | None = Field(
        description="rank as of the previous briefing (previous_at); null: not ranked then"
    )
    rank_change: int | None = Field(
        description="places gained since the previous briefing (negative: lost); null: new"
    )
    movement: str = Field(description="▲3, ▼12, = or new")
    days_behind: int = Field(
        description="days in a row, today counted, at whose end the unit was behind "
        "(pace below the campaign's behind threshold, target not reached)"
    )
    unit: UnitRef
    parent: str | None


class LeaderboardOut(BaseModel):
    campaign: str
    indicator: str
    level: int
    as_of: datetime
    previous_at: datetime | None = Field(
        description="the previous briefing the movement is measured from"
    )
    total: int = Field(description="units of that level")
    offset: int
    limit: int
    rows: list[LeaderboardRow]


class UnitProgressOut(BaseModel):
    campaign: str
    unit: UnitRef
    as_of: datetime
    indicators: list[IndicatorProgress]


class CampaignOut(BaseModel):
    id: str
    name: str
    starts_at: datetime
    deadline: datetime
    timezone: str
    indicators: list[str]
    behind_threshold: float
    stale_after_seconds: int
    milestones: list[dict[str, str | float]]


def campaign_out(c: Campaign) -> CampaignOut:
    return CampaignOut(
        id=c.id,
        name=c.name,
        starts_at=c.starts_at,
        deadline=c.deadline,
        timezone=c.timezone,
        indicators=list(c.indicators),
        behind_threshold=c.thresholds.behind,
        stale_after_seconds=int(c.thresholds.stale_after / timedelta(seconds=1)),
        milestones=[{"at": m.at.isoformat(), "fraction": m.fraction} for m in c.milestones],
    )
