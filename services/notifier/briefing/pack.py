"""The briefing pack of a campaign, level and moment, in the format asked for."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from services.notifier.briefing import formats
from services.notifier.briefing.gather import gather
from services.notifier.policy import effective
from services.notifier.ranks import briefing_level, levels_of, on_tree
from services.notifier.repository import reference as reference_sql
from services.notifier.rules import briefing_slot
from services.notifier.settings import NotifierSettings
from tiendo.board import repository as board
from tiendo.board.recount_refusal import refuse_while_recounting
from tiendo.database import Connection, one_state

Format = Literal["html", "pdf", "xlsx"]
MEDIA = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
BOTTOM_N_AT_LEAST = 5  # the room always goes through the bottom five, whatever the rule says


class Unanswered(ValueError):
    """A pack that cannot be made as asked; `field` names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotCounted(Unanswered):
    """An indicator the campaign does not count."""

    def __init__(self, message: str) -> None:
        super().__init__("indicator", message)


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
    """The pack of the briefing at `at` (default: the latest briefing slot by `now`) of
    the units of `level` (default: `ranks.briefing_level`). LookupError for an unknown
    campaign; `Unanswered` for an indicator it does not count (`NotCounted`), a moment
    after `now`, or a level without a unit with a target then; `BeingRecounted` while a
    rebuild is in progress.

    Read in one state (`tiendo.database.one_state`): a report applied while the pack is
    gathered is in every figure of it or in none."""
    async with one_state(conn):
        campaign = await board.campaign(conn, campaign_id)
        if campaign is None:
            raise LookupError(f"no campaign {campaign_id}")
        # The rebuild resets the history too: a pack of any moment, a past briefing's as well,
        # would hold part of its events. Asked once: the pack is read in the state this
        # look sees (`one_state`), so a reset committed while it is gathered is in none of it.
        await refuse_while_recounting(conn)
        unknown = set(indicators or ()) - set(campaign.indicators)
        if unknown:
            raise NotCounted(f"{', '.join(sorted(unknown))} not counted by {campaign_id}")
        policy = effective(settings, await reference_sql.policy(conn, campaign_id) or {})
        rank = policy.bottom_rank

        def slot(moment: datetime) -> datetime:
            return briefing_slot(moment, campaign.timezone, rank.weekday, policy.briefing_time())

        if at is not None and at > now:
            # Refused rather than read as now: a pack states the figures as of its moment, and
            # those of a briefing still to come are not known (the history up to `at` is not
            # complete until `at`). A pack printed under Monday's date with Saturday's figures
            # would be read as Monday's; the read API answers `as_of` now for a later moment.
            raise Unanswered(
                "at",
                f"the briefing at {at.isoformat()} has not come yet (now "
                f"{now.astimezone(at.tzinfo).isoformat()}): its "
                "figures are not known; ask for a moment up to now, or leave `at` out for the "
                "latest briefing",
            )
        moment = at or slot(now)
        # the briefing before this one: a week back from a briefing moment, else this week's
        previous = slot(moment - timedelta(microseconds=1))
        levels = levels_of((await on_tree(conn, campaign, moment))[1])
        ranked = briefing_level(levels, level if level is not None else rank.level)
        # a level without units is said so, not answered with an empty ranking (level 3
        # since the districts went: the communes are level 2)
        if ranked is None:
            raise Unanswered(
                "level", f"no unit has a target in {campaign_id} at {moment.isoformat()}"
            )
        if ranked not in levels:
            whose = "" if level is not None else " (the campaign's bottom_rank level)"
            raise Unanswered(
                "level",
                f"no unit of level {ranked}{whose} has a target in {campaign_id} on the tree "
                f"of {moment.isoformat()}; levels with one then: "
                + ", ".join(str(n) for n in levels),
            )
        pack = await gather(
            conn,
            campaign,
            level=ranked,
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
    # rendered once read: the transaction holds no snapshot for the seconds of a PDF
    local = moment.astimezone(ZoneInfo(campaign.timezone))
    filename = f"giao-ban-{campaign_id}-{local:%Y-%m-%d}-cap{pack.level}.{fmt}"
    if fmt == "xlsx":
        return Document(formats.xlsx(pack, names), MEDIA[fmt], filename)
    page = formats.html(pack, names)
    if fmt == "pdf":
        return Document(formats.pdf(page), MEDIA[fmt], filename)
    return Document(page.encode("utf-8"), MEDIA[fmt], filename)
