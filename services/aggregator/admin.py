"""Admin changes to reference data (contract §4.3): units, campaigns, targets. Each change is
audited and re-plans the affected campaigns (targets, baselines and rollups) in the same
transaction, so readers never see a tree and counters that disagree."""

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.aggregator import guard
from services.aggregator.repository import apply as apply_sql
from services.aggregator.repository import recount as recount_sql
from services.aggregator.repository import reference as reference_sql
from services.aggregator.repository import tree as tree_sql
from services.aggregator.validation import (
    Problem,
    TargetRef,
    campaign_problems,
    parent_loops,
    repeats,
)
from tiendo import audit
from tiendo.addresses import address_problem
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.isolation import CampaignIsolation
from tiendo.board.plans import plan_on_tree
from tiendo.counting import rollups
from tiendo.database import Connection
from tiendo.logs import get_logger
from tiendo.moments import Moment
from tiendo.pace import Milestone, Thresholds
from tiendo.sheets import normal_text
from tiendo.unit_keys import CODE_PATTERN, KEY_PATTERN, TREE_ZONE

log = get_logger(__name__)

# The catalogue's own bound on a code (its CHECK): whatever names an indicator, so that a
# longer text is refused by its length, never stored nor echoed back in a problem.
INDICATOR_CODE_LENGTH = 48
IndicatorCode = Annotated[str, Field(min_length=1, max_length=INDICATOR_CODE_LENGTH)]
# Columns of a unit that are its chief's contacts: the notifier's, handed over to it.
CONTACT_COLUMNS = ("chief_name", "chief_email", "chief_phone", "chief_webhook", "chief_chat")
# The notifier's channel each address column fills: that channel's rule checks it.
CHIEF_CHANNELS = {
    "chief_email": "email",
    "chief_phone": "sms",
    "chief_webhook": "webhook",
    "chief_chat": "chat",
}


def _normal(value: object) -> object:
    return normal_text(value) if isinstance(value, str) else value


# The text of reference data people read and compare (names, types): NFC, however it was
# typed or saved (`tiendo.sheets.normal_text`, the sheets' rule), before its length is
# checked. A tree reloaded from a Mac (NFD) then continues its versions.
Text = Annotated[str, BeforeValidator(_normal)]

# The numbers of the admin bodies are strict (`StrictInt`, `StrictFloat`): `true` is no
# target of 1, nor "500" or 500.0 a level or a count, and a float takes an integer but no
# text. Per field, not the models' `strict`: that would refuse RFC 3339 text for a moment.
# The CLI reads its sheets' text cells as numbers itself (`importing`).


class UnitPlace(BaseModel):
    """A unit's place in the tree: what the units import and a tree version both carry."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    name: Text = Field(min_length=1, max_length=200)
    type: Text = Field("", max_length=64)
    level: StrictInt = Field(ge=1, le=6)
    parent_code: str | None = Field(None, pattern=CODE_PATTERN)


class UnitIn(UnitPlace):
    chief_name: Text | None = Field(None, max_length=200)
    chief_email: str | None = Field(None, max_length=254)
    chief_phone: str | None = Field(None, max_length=32)
    chief_webhook: str | None = Field(None, max_length=2000)
    chief_chat: str | None = Field(None, max_length=2000, description="an apprise URL")

    @field_validator(*CHIEF_CHANNELS)
    @classmethod
    def _address_fits(cls, address: str | None, info: ValidationInfo) -> str | None:
        """The notifier's rule, as its own `PUT /v1/contacts` applies it (blank: none)."""
        assert info.field_name is not None
        if address and (problem := address_problem(CHIEF_CHANNELS[info.field_name], address)):
            raise ValueError(problem)
        return address

    @model_validator(mode="after")
    def _root_has_no_parent(self) -> "UnitIn":
        if (self.level == 1) != (self.parent_code is None):
            raise ValueError("level 1 units have no parent; every other unit has one")
        return self


class MilestoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Moment
    fraction: StrictFloat


class CampaignIn(BaseModel):
    """A campaign as sent. Only shapes are checked here; what makes a campaign usable
    (zone, window, milestones, thresholds, indicators) is `validation.campaign_problems`,
    the one check the aggregator also runs over stored campaigns."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=200)
    starts_at: Moment
    deadline: Moment
    timezone: str = Field("Asia/Ho_Chi_Minh", max_length=64)
    indicators: list[IndicatorCode] = Field(min_length=1, max_length=32)
    behind_threshold: StrictFloat = 0.9
    # (bounded here so that it is a duration at all: validation says what else it must be)
    stale_after_seconds: StrictInt = Field(12 * 3600, ge=0, le=366 * 86400)
    milestones: list[MilestoneIn] = Field(default_factory=list, max_length=100)

    def campaign(self, campaign_id: str) -> Campaign:
        return Campaign(
            id=campaign_id,
            name=self.name,
            starts_at=self.starts_at,
            deadline=self.deadline,
            timezone=self.timezone,
            indicators=tuple(dict.fromkeys(self.indicators)),
            thresholds=Thresholds(
                behind=self.behind_threshold,
                stale_after=timedelta(seconds=self.stale_after_seconds),
            ),
            milestones=tuple(Milestone(at=m.at, fraction=m.fraction) for m in self.milestones),
        )


# A target's or baseline's largest value: a snapshot's largest possible (ingest's
# `max_snapshot` at most), so that the sums up any tree stay far inside a bigint.
MAX_FIGURE = 10**15


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: str = Field(
        pattern=KEY_PATTERN,
        description="an official code, read on the tree in force at the campaign's start, "
        "or a version's key (`<code>@<day>`: a unit of a later tree the campaign runs into)",
    )
    indicator: IndicatorCode
    target: StrictInt | None = Field(
        None,
        ge=0,
        le=MAX_FIGURE,
        description="null: the sum of the children's. Left out: the stored target stays "
        "(a new target is then the sum of the children's)",
    )
    baseline: StrictInt = Field(
        0,
        ge=0,
        le=MAX_FIGURE,
        description="already achieved before the start. Left out: the stored baseline "
        "stays (a new target's is 0)",
    )
    deadline: Moment | None = Field(
        None,
        description="the unit's own deadline; null: the campaign's. Left out: the stored "
        "deadline stays (a new target has none)",
    )

    def sets(self, field: str) -> bool:
        """Whether the body gave `field` (a field left out leaves the stored value)."""
        return field in self.model_fields_set


class ReferenceError(ValueError):
    """An admin change that would break the tree, refer to something missing or make a
    campaign unusable; every problem found is listed."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = list(problems)


async def check_campaign(
    conn: Connection, campaign: Campaign, target_deadlines: dict[TargetRef, datetime]
) -> None:
    """Refuse a campaign (with its targets' deadlines) that `campaign_problems` faults."""
    problems = campaign_problems(
        campaign,
        timezones=await guard.known_timezones(conn),
        indicators=await guard.known_indicators(conn),
        target_deadlines=target_deadlines,
    )
    if problems:
        raise ReferenceError(problems)


async def upsert_units(
    conn: Connection, units: Sequence[UnitIn], actor: str, *, now: datetime | None = None
) -> int:
    """Insert or update units (parents may come after children in the list); their
    contact columns go to the notifier. Codes are read in the tree in force: a correction
    never rewrites a version a later one replaced (docs/units-over-time.md). `now`: the
    caller's clock, which the campaigns are re-planned at (None: the database's)."""
    await conn.execute(apply_sql.LOCK_REPLAN)
    units = await _in_force(conn, units, now)
    await _refuse_repeats_and_unknown_parents(conn, units)
    rows = [reference_sql.Unit(u.code, u.name, u.type, u.level, u.parent_code) for u in units]
    await reference_sql.upsert_units(
        conn, [u for u in rows if not tree_sql.is_later_version(u.code)]
    )
    await tree_sql.correct_versions(conn, [u for u in rows if tree_sql.is_later_version(u.code)])
    await reference_sql.hand_over_contacts(
        conn, [u.model_dump(include={"code", *CONTACT_COLUMNS}) for u in units]
    )
    await refuse_parent_loops(conn, {u.code: i for i, u in enumerate(units)}, "parent_code")
    if await reference_sql.check_tree(conn):
        raise ReferenceError(
            [Problem("level", "a unit's level does not match its depth in the tree (or a cycle)")]
        )
    if await tree_sql.parents_out_of_period(conn):
        # a unit of before a cut-over moved under a unit that began at it would gain, in
        # the past, ancestors it never had: that is a change over time, not a correction
        raise ReferenceError(
            [Problem("parent_code", "the parent began after the unit; load a tree version")]
        )
    left_out = await replan_every(conn, now=now)
    await audit.record(
        conn,
        actor=actor,
        action="units.upsert",
        subject=f"{len(units)} units",
        details={"codes": [u.code for u in units][:100], **left_out_details(left_out)},
    )
    return len(units)


async def _refuse_repeats_and_unknown_parents(conn: Connection, units: Sequence[UnitIn]) -> None:
    """ReferenceError for a code listed twice (which row would win?) or a parent neither
    listed nor stored: both reached the database's constraints as a 500 before."""
    problems = [
        Problem("code", f"{units[i].code} is listed more than once (first at [{first}])", i)
        for i, first in repeats([u.code for u in units])
    ]
    known = {u.code for u in units} | (await board.tree(conn)).keys()
    problems += [
        Problem("parent_code", f"unknown parent {u.parent_code}", i)
        for i, u in enumerate(units)
        if u.parent_code is not None and u.parent_code not in known
    ]
    if problems:
        raise ReferenceError(problems[:50])


async def refuse_parent_loops(conn: Connection, listed: Mapping[str, int], field: str) -> None:
    """ReferenceError naming every loop of parent links in the tree as this transaction
    has written it (the caller's rollback undoes the writes): the ancestors' refresh starts
    from the roots, so a loop's units would keep stale ancestors and drop off the boards.
    `listed`: the position of each key in the request (the problems' `index`)."""
    problems: list[Problem] = []
    for loop in parent_loops(await reference_sql.unrooted(conn)):
        chain = " → ".join([*loop, loop[0]])
        problems += [
            Problem(field, f"{code}: the parent chain loops ({chain})", listed[code])
            for code in loop
            if code in listed
        ] or [Problem(field, f"the parent chain loops ({chain})")]
    if problems:
        raise ReferenceError(problems[:50])


async def _in_force(conn: Connection, units: Sequence[UnitIn], at: datetime | None) -> list[UnitIn]:
    """The rows with each official code (and parent) as the key of its version in force at
    `at` (None: the database's clock); ReferenceError for a retired code, which the tree
    in force no longer has."""
    now = await tree_sql.codes_now(
        conn,
        sorted({u.code for u in units} | {u.parent_code for u in units if u.parent_code}),
        at,
    )
    retired = [
        Problem(field, f"{code} was retired on {_day(now[code][1])}; load a tree version", i)
        for i, u in enumerate(units)
        for field, code in (("code", u.code), ("parent_code", u.parent_code))
        if code is not None and now.get(code, ("", None))[1] is not None
    ]
    if retired:
        raise ReferenceError(retired[:50])

    def key(code: str) -> str:
        return now[code][0] if code in now else code

    return [
        u.model_copy(
            update={"code": key(u.code), "parent_code": u.parent_code and key(u.parent_code)}
        )
        for u in units
    ]


def _day(moment: datetime | None) -> str:
    return moment.astimezone(TREE_ZONE).date().isoformat() if moment else ""


async def upsert_campaign(
    conn: Connection,
    campaign_id: str,
    c: CampaignIn,
    actor: str,
    *,
    now: datetime | None = None,
) -> None:
    """Create or change a campaign, re-planned and recounted on the tree it reports on at
    `now` (the caller's clock; None: the database's)."""
    await conn.execute(apply_sql.LOCK_REPLAN)
    stored = await guard.target_deadlines(conn, campaign_id)
    campaign = c.campaign(campaign_id)
    await check_campaign(conn, campaign, stored.get(campaign_id, {}))
    await reference_sql.upsert_campaign(conn, campaign)
    await audit.record(
        conn,
        actor=actor,
        action="campaign.upsert",
        subject=campaign_id,
        details=c.model_dump(mode="json"),
    )
    await replan(conn, campaign_id, recount=True, now=now)


async def upsert_targets(
    conn: Connection,
    campaign_id: str,
    targets: Sequence[TargetIn],
    actor: str,
    *,
    now: datetime | None = None,
) -> int:
    """Insert or update targets, the campaign re-planned at `now` (as `upsert_campaign`)."""
    await conn.execute(apply_sql.LOCK_REPLAN)
    indicators = await reference_sql.campaign_indicators(conn, campaign_id)
    if indicators is None:
        raise LookupError(f"no campaign {campaign_id}")
    units = await board.tree(conn)
    campaign = await reference_sql.campaign(conn, campaign_id)
    assert campaign is not None  # under the re-plan lock since its indicators were read
    # official codes as the tree at the start reads them (00004 is Ba Đình from July 2025)
    keys = await tree_sql.keys_at(conn, [t.unit for t in targets], campaign.starts_at)
    targets = [t.model_copy(update={"unit": keys.get(t.unit, t.unit)}) for t in targets]
    # (after the keys: a code and its version's key name one unit)
    problems = (
        [
            Problem(
                "unit",
                f"{targets[i].unit}/{targets[i].indicator} is listed more than once "
                f"(first at [{first}])",
                i,
            )
            for i, first in repeats([(t.unit, t.indicator) for t in targets])
        ]
        + [
            Problem("unit", f"unknown unit {t.unit}", i)
            for i, t in enumerate(targets)
            if t.unit not in units
        ]
        + [
            Problem("indicator", f"indicator {t.indicator} is not one of the campaign's", i)
            for i, t in enumerate(targets)
            if t.indicator not in indicators
        ]
    )
    if problems:
        raise ReferenceError(sorted(problems, key=lambda p: p.index or 0)[:50])
    deadlines = (await guard.target_deadlines(conn, campaign_id)).get(campaign_id, {})
    for i, t in enumerate(targets):
        if not t.sets("deadline"):
            continue  # the stored deadline stays, and is checked as it is
        deadlines.pop(guard.stored_target(t.unit, t.indicator), None)
        if t.deadline is not None:
            deadlines[i, "deadline"] = t.deadline
    await check_campaign(conn, campaign, deadlines)
    changes = [
        reference_sql.TargetChange(
            t.unit,
            t.indicator,
            t.target,
            t.baseline if t.sets("baseline") else None,
            t.deadline,
            frozenset(f for f in TARGET_FIELDS if t.sets(f)),
        )
        for t in targets
    ]
    stored = await reference_sql.stored_targets(
        conn, campaign_id, [(t.unit, t.indicator) for t in targets]
    )
    await reference_sql.upsert_targets(conn, campaign_id, changes)
    changed = target_changes(stored, changes)
    await audit.record(
        conn,
        actor=actor,
        action="targets.upsert",
        subject=campaign_id,
        details={
            "count": len(targets),
            "created": sum(1 for c in changed if c.get("new")),
            **audit.bounded(changed),
        },
    )
    await replan(conn, campaign_id, recount=True, now=now)
    return len(targets)


# The columns of a target a change may leave out (keeping the stored values).
TARGET_FIELDS = ("target", "baseline", "deadline")


def target_changes(
    stored: Mapping[tuple[str, str], board.Target],
    changes: Sequence[reference_sql.TargetChange],
) -> list[dict[str, object]]:
    """What an upsert of targets changed, for the audit log: per (unit, indicator) whose
    values moved, each moved field as [old, new] (`new`: true for a target created, its
    old values null); a row sent unchanged is not listed."""
    out: list[dict[str, object]] = []
    for c in changes:
        old = stored.get((c.unit, c.indicator))
        before: dict[str, object] = (
            {"target": old.target, "baseline": old.baseline, "deadline": old.deadline}
            if old is not None
            else dict.fromkeys(TARGET_FIELDS)
        )
        given = {"target": c.target, "baseline": c.baseline, "deadline": c.deadline}
        defaults: dict[str, object] = {"target": None, "baseline": 0, "deadline": None}
        after = {
            f: given[f] if f in c.sets else (before[f] if old is not None else defaults[f])
            for f in TARGET_FIELDS
        }
        moved = {f: [before[f], after[f]] for f in TARGET_FIELDS if before[f] != after[f]}
        if old is None:
            out.append({"unit": c.unit, "indicator": c.indicator, "new": True, **moved})
        elif moved:
            out.append({"unit": c.unit, "indicator": c.indicator, **moved})
    return out


async def replan_every(
    conn: Connection, *, now: datetime | None = None, recount: bool = False
) -> dict[str, str]:
    """Every campaign re-planned on the tree as this transaction leaves it (after a change
    of the tree), each apart, as the counting and the boards take them: a bad campaign
    never fails the change for the others (contract §7). `recount`: each also recounted
    from the stored events (`replan`), when the change moved events between versions.

    - One the guard's check finds unusable (a zone a newer tzdata dropped, a row edited
      with SQL) is not re-planned: its figures stay as they were, and it stays flagged
      (`/readyz`, `tiendo_aggregator_campaign_unusable`) until `PUT /v1/campaigns/{id}`
      fixes it, which re-plans and recounts it on the tree as it then is.
    - One whose re-plan raises (a bug its data meets) is rolled back to its savepoint and
      left as it was, logged with the traceback (`campaign_judging_failed`, work
      `replan`); its next re-plan (its own change, the next tree change, the move at a
      cut-over) tries again.

    Returns each campaign left out, with why (the change's audit row names them). An
    error that is not the campaign's (the connection lost) fails the change."""
    stored = await reference_sql.stored_campaigns(conn)
    unusable = await guard.check_stored(conn, stored)
    left_out = {c: "; ".join(str(p) for p in problems) for c, problems in unusable.items()}
    for campaign_id in sorted(left_out):
        log.warning("campaign_not_replanned", campaign=campaign_id, why=left_out[campaign_id])
    isolation = CampaignIsolation(work="replan")
    usable = [s.campaign for s in stored if s.id not in unusable and s.campaign is not None]

    async def work(campaign: Campaign) -> None:
        await replan(conn, campaign.id, recount=recount, now=now)

    done = await isolation.each(conn, usable, work, whole=False)
    for campaign in usable:
        if campaign.id not in done:
            left_out[campaign.id] = "its re-plan failed (logged as campaign_judging_failed)"
    return dict(sorted(left_out.items()))


def left_out_details(left_out: Mapping[str, str]) -> dict[str, object]:
    """The campaigns a tree change did not re-plan, for its audit row (none: nothing)."""
    return {"campaigns_not_replanned": dict(left_out)} if left_out else {}


async def replan(
    conn: Connection, campaign_id: str, *, recount: bool = False, now: datetime | None = None
) -> None:
    """Recompute a campaign's targets, baselines and subtree values from scratch, on the
    tree it reports on at `now` (None: the database's clock; docs/units-over-time.md).

    `recount`: also recount its own values and daily counts from the stored events (contract §5
    "Live equals history"): the live apply counted each event only for the campaigns and
    windows that existed when it arrived. The caller holds `LOCK_REPLAN`, so no batch
    applies meanwhile, and readers see the old figures until the transaction commits.
    """
    indicators = await reference_sql.campaign_indicators(conn, campaign_id)
    if indicators is None:
        return
    moment = await reference_sql.set_tree_at(conn, campaign_id, now)
    await reference_sql.ensure_campaign_rows(conn, campaign_id)
    plan = await plan_on_tree(conn, campaign_id, indicators, moment)
    await reference_sql.apply_plan(conn, campaign_id, plan)
    if recount:
        await recount_sql.recount(conn, campaign_id)
    await reference_sql.recompute_values(conn, campaign_id)
    await rollups.recount_days(conn, campaign_id)
