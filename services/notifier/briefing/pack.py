"""The briefing pack of a campaign, level and moment, in the format asked for."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from services.notifier.briefing import formats
from services.notifier.briefing.gather import gather
from services.notifier.policy import effective
from services.notifier.repository import reference as reference_sql
from services.notifier.rules import briefing_slot
from services.notifier.settings import NotifierSettings
from tiendo.board import repository as board
from tiendo.database import Connection

Format = Literal["html", "pdf", "xlsx"]
MEDIA = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
BOTTOM_N_AT_LEAST = 5  # the room always goes through the bottom five, whatever the rule says


class NotCounted(ValueError):
    """An indicator the campaign does not count."""


@dataclass(frozen=True, slots=True)
class Document:
    body: bytes
    media_type: str
    filename: str


async def briefing_pack(
    conn: Connection,
    settings: NotifierSettings,
    campaign_id: str,
    *,
    at: datetime | None,
    now: datetime,
    level: int | None,
    language: str | None,
    fmt: Format,
    indicators: list[str] | None = None,
) -> Document:
    """The pack of the briefing at `at` (default: the latest briefing slot by `now`);
    LookupError for an unknown campaign, NotCounted for an indicator it does not count."""
    campaign = await board.campaign(conn, campaign_id)
    if campaign is None:
        raise LookupError(f"no campaign {campaign_id}")
    unknown = set(indicators or ()) - set(campaign.indicators)
    if unknown:
        raise NotCounted(f"{', '.join(sorted(unknown))} not counted by {campaign_id}")
    policy = effective(settings, await reference_sql.policy(conn, campaign_id) or {})
    rank = policy.bottom_rank

    def slot(moment: datetime) -> datetime:
        return briefing_slot(moment, campaign.timezone, rank.weekday, policy.briefing_time())

    moment = at or slot(now)
    # the briefing before this one: a week back from a briefing moment, else this week's
    previous = slot(moment - timedelta(microseconds=1))
    pack = await gather(
        conn,
        campaign,
        level=level or rank.level,
        at=moment,
        previous_at=previous,
        language=language or policy.language,
        bottom_n=max(rank.n, BOTTOM_N_AT_LEAST),
        indicators=indicators,
    )
    names = {
        code: n.in_language(pack.language)
        for code, n in (await reference_sql.indicator_names(conn)).items()
    }
    local = moment.astimezone(ZoneInfo(campaign.timezone))
    filename = f"giao-ban-{campaign_id}-{local:%Y-%m-%d}-cap{pack.level}.{fmt}"
    if fmt == "xlsx":
        return Document(formats.xlsx(pack, names), MEDIA[fmt], filename)
    page = formats.html(pack, names)
    if fmt == "pdf":
        return Document(formats.pdf(page), MEDIA[fmt], filename)
    return Document(page.encode("utf-8"), MEDIA[fmt], filename)
