"""Recipient groups and their members: who is to be told of which alert."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from tiendo.database import Connection

# Groups are created ahead of a batch, outside its transaction (a batch takes no group
# lock: it only adds members, level 0).
CREATE_GROUPS = """
INSERT INTO alert_groups (campaign_id, recipient)
SELECT DISTINCT c, r FROM unnest($1::text[], $2::text[]) AS t (c, r)
ORDER BY c, r
ON CONFLICT (campaign_id, recipient) DO NOTHING
"""


SELECT_GROUP_IDS = """
SELECT g.id, g.campaign_id, g.recipient FROM alert_groups g
JOIN unnest($1::text[], $2::text[]) AS t (c, r) ON g.campaign_id = t.c AND g.recipient = t.r
"""


ADD_MEMBERS = """
INSERT INTO alert_group_members (group_id, alert_id, level, state, changed_at)
SELECT g, a, 0, 'firing', $3 FROM unnest($1::bigint[], $2::bigint[]) AS t (g, a)
ON CONFLICT (group_id, alert_id) DO NOTHING
"""


UPSERT_GROUP = """
INSERT INTO alert_groups (campaign_id, recipient) VALUES ($1, $2)
ON CONFLICT (campaign_id, recipient) DO UPDATE SET recipient = EXCLUDED.recipient
RETURNING id
"""


ADD_MEMBER = """
INSERT INTO alert_group_members (group_id, alert_id, level, state, changed_at)
VALUES ($1, $2, $3, 'firing', $4)
ON CONFLICT (group_id, alert_id) DO NOTHING
"""


# A resolution is owed only to recipients told of the firing; the others just forget it.
RESOLVE_MEMBERS = """
UPDATE alert_group_members SET state = 'resolved', changed_at = $2
WHERE alert_id = $1 AND notified
"""


FORGET_MEMBERS = "DELETE FROM alert_group_members WHERE alert_id = $1 AND NOT notified"


# The other firing alerts of member `a`'s (campaign, unit, indicator) that group `g` holds
# too, `f`: the facts inhibition is decided on, not the decision. Which of them outrank
# `a` is `rules.inhibited_by`'s to say, over those no silence mutes (`groups.sketch`, which
# knows the silences); SELECT_UNTOLD_MEMBERS is handed that relation as data. Only the
# group's own: a parent told of an escalated `behind` keeps hearing of it after the unit's
# newer `stale` fires below, until that one escalates too, instead of hearing nothing for
# escalate_after.
CO_FIRING_IN_GROUP = """
f.campaign_id = a.campaign_id AND f.unit = a.unit AND f.indicator = a.indicator
AND f.state = 'firing' AND f.id <> a.id
AND EXISTS (SELECT 1 FROM alert_group_members o WHERE o.group_id = g.id AND o.alert_id = f.id)
"""


# Every group with what decides, besides its untold members (SELECT_UNTOLD_MEMBERS),
# whether planning it can do anything now: a resolved member (news, or a resolution to
# drop) and the repeat anchor.
SELECT_GROUPS = """
SELECT g.id, g.campaign_id, g.anchor_at, g.repeat_slot,
       EXISTS (SELECT 1 FROM alert_group_members m
               WHERE m.group_id = g.id AND m.state = 'resolved') AS has_resolved
FROM alert_groups g
"""


# Members with what silences match on and the rules co-firing on their key in their group
# (no locks: a sketch the planner uses to pick the groups worth locking). `{where}`: which
# members.
_MEMBERS = f"""
SELECT g.id AS group_id, g.campaign_id, g.recipient, g.seq, g.anchor_seq, g.anchor_at,
       g.repeat_slot, m.alert_id, m.level, m.state, m.changed_at, m.notified,
       a.unit, a.indicator, a.rule, coalesce(u.ancestors, '{{{{}}}}') AS ancestors,
       ARRAY(SELECT f.rule FROM alerts f WHERE {CO_FIRING_IN_GROUP}) AS firing_rules
FROM alert_groups g
JOIN alert_group_members m ON m.group_id = g.id
JOIN alerts a ON a.id = m.alert_id
LEFT JOIN units u ON u.code = a.unit
WHERE {{where}}
ORDER BY g.id, m.alert_id
"""


# Members of groups $1.
SELECT_GROUP_MEMBERS = _MEMBERS.format(where="g.id = ANY ($1::bigint[])")


# Members of the groups of campaign $1 whose recipients are among $2 (a digest's chiefs).
SELECT_MEMBERS_OF_RECIPIENTS = _MEMBERS.format(
    where="g.campaign_id = $1 AND g.recipient = ANY ($2::text[])"
)


# The firing members of every group its recipient has not been told of: since when each
# waits decides whether a change message may be due (`groups.may_plan`, which decides on
# them with `groups.sketch`). Left out beforehand, as `sketch` would find them inhibited
# anyway: a member outranked by a rule co-firing in its group that no active silence can
# mute. The relation is data ($1 rules, $2 the rules outranking each: `rules.outranking`)
# and so are the rules a silence may mute ($3): on a national tree most untold members are
# a stale unit's `behind` and `at_risk`, and every planning pass, feed passes included,
# would otherwise read them all.
SELECT_UNTOLD_MEMBERS = _MEMBERS.format(
    where=f"""m.state = 'firing' AND NOT m.notified
  AND NOT EXISTS (
      SELECT 1 FROM alerts f
      JOIN unnest($1::text[], $2::text[]) AS p (rule, over) ON p.over = f.rule
      WHERE p.rule = a.rule AND NOT (f.rule = ANY ($3::text[])) AND {CO_FIRING_IN_GROUP})"""
)


LOCK_GROUP = "SELECT * FROM alert_groups WHERE id = $1 FOR UPDATE SKIP LOCKED"


UPDATE_GROUP = """
UPDATE alert_groups SET seq = $2, anchor_seq = $3, anchor_at = $4, repeat_slot = $5,
                        last_message_at = $6
WHERE id = $1
"""


MARK_NOTIFIED = """
UPDATE alert_group_members SET notified = true WHERE group_id = $1 AND alert_id = ANY ($2)
"""


DROP_MEMBERS = "DELETE FROM alert_group_members WHERE group_id = $1 AND alert_id = ANY ($2)"


# A resolution locks the groups its alert is in, in the planner's order (by id), before it
# touches their members.
LOCK_GROUPS_OF_ALERT = """
SELECT g.id FROM alert_groups g
WHERE g.id IN (SELECT group_id FROM alert_group_members WHERE alert_id = $1)
ORDER BY g.id
FOR UPDATE
"""


SELECT_GROUP_RECIPIENT = "SELECT recipient FROM alert_groups WHERE id = $1"


# The recipients an alert was escalated to (its members above level 0).
SELECT_ESCALATED_TO = """
SELECT g.recipient FROM alert_group_members m JOIN alert_groups g ON g.id = m.group_id
WHERE m.alert_id = $1 AND m.level > 0
"""


async def add_member(
    conn: Connection, campaign_id: str, recipient: str, alert_id: int, level: int, at: datetime
) -> None:
    group_id = await conn.fetchval(UPSERT_GROUP, campaign_id, recipient)
    await conn.execute(ADD_MEMBER, group_id, alert_id, level, at)


async def resolve_members(conn: Connection, alert_id: int, at: datetime) -> None:
    await conn.execute(RESOLVE_MEMBERS, alert_id, at)
    await conn.execute(FORGET_MEMBERS, alert_id)


async def groups(conn: Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_GROUPS))


async def untold_members(
    conn: Connection, outranking: Sequence[tuple[str, str]], mutable: Sequence[str]
) -> list[asyncpg.Record]:
    """Every group's firing members not told yet, as `group_members` reads members, but
    those outranked (`outranking`: (rule, outranking rule) pairs) by a co-firing alert
    whose rule is not among `mutable`, the rules an active silence may mute."""
    rules, over = [p[0] for p in outranking], [p[1] for p in outranking]
    return list(await conn.fetch(SELECT_UNTOLD_MEMBERS, rules, over, list(mutable)))


async def group_members(conn: Connection, group_ids: Sequence[int]) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_GROUP_MEMBERS, list(group_ids)))


async def members_of_recipients(
    conn: Connection, campaign_id: str, recipients: Sequence[str]
) -> list[asyncpg.Record]:
    """The members of the groups of `campaign_id` whose recipients are `recipients`, as
    `group_members` reads them."""
    return list(await conn.fetch(SELECT_MEMBERS_OF_RECIPIENTS, campaign_id, list(recipients)))


async def lock_groups_of(conn: Connection, alert_id: int) -> None:
    await conn.fetch(LOCK_GROUPS_OF_ALERT, alert_id)


async def lock_group(conn: Connection, group_id: int) -> bool:
    """Lock a group for planning; False when another replica holds it."""
    return await conn.fetchrow(LOCK_GROUP, group_id) is not None


async def group_recipient(conn: Connection, group_id: int) -> str:
    recipient: str = await conn.fetchval(SELECT_GROUP_RECIPIENT, group_id)
    return recipient


async def escalated_to(conn: Connection, alert_id: int) -> set[str]:
    """The units whose chiefs the alert was escalated to."""
    return {r["recipient"] for r in await conn.fetch(SELECT_ESCALATED_TO, alert_id)}


async def update_group(conn: Connection, group_id: int, state: Any, at: datetime) -> None:
    await conn.execute(
        UPDATE_GROUP, group_id, state.seq, state.anchor_seq, state.anchor_at, state.repeat_slot, at
    )


async def mark_notified(conn: Connection, group_id: int, alert_ids: Sequence[int]) -> None:
    await conn.execute(MARK_NOTIFIED, group_id, list(alert_ids))


async def drop_members(conn: Connection, group_id: int, alert_ids: Sequence[int]) -> None:
    await conn.execute(DROP_MEMBERS, group_id, list(alert_ids))


async def create_groups(
    conn: Connection, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The groups of (campaign, recipient) pairs, created where missing."""
    if not pairs:
        return {}
    columns = [p[0] for p in pairs], [p[1] for p in pairs]
    await conn.execute(CREATE_GROUPS, *columns)
    rows = await conn.fetch(SELECT_GROUP_IDS, *columns)
    return {(r["campaign_id"], r["recipient"]): r["id"] for r in rows}


async def add_members(conn: Connection, members: Sequence[tuple[int, int]], at: datetime) -> None:
    """(group, alert) at level 0, firing since `at`."""
    if members:
        await conn.execute(ADD_MEMBERS, [m[0] for m in members], [m[1] for m in members], at)
