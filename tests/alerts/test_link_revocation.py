"""A chief's link is withdrawn before it expires (docs/briefing.md, "Withdrawn links"): when
an address its message was sent to is no longer the unit's contact (replaced through the
contacts API or the units import), or when an administrator revokes the unit's links (a
link forwarded). Its page then answers 410 saying why and takes nothing more; what was
acknowledged and explained through it stays; the next message's link, sent to the new
contact, works. Until 7 December 2026 a replaced chief, or whoever a link was forwarded
to, could act as the unit's chief until the link expired (7 days, up to 60).

A snooze made through a withdrawn link ends with it (docs/alerts.md, "Withdrawn links and
snoozes"), audited as `snoozes.end`: the next repeat slot sends as usual, and a snooze
made through another link that still holds goes on. Until 7 December 2026 such a snooze
held the reminders back until it ran out (up to 3 days)."""

import html
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.admin import upsert_units
from services.notifier.repository import explanations as explanations_sql
from services.notifier.repository import links as link_sql
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.reference import Contact
from tests.support.identities import ADMIN, READER
from tests.support.notifier import (
    Harness,
    HttpReceiver,
    SmtpReceiver,
    delivered_link,
    email_of,
    harness_from,
    progress,
    queue,
    tree_with_contacts,
)
from tests.support.stack import Topics, eventually
from tests.support.world import TREE, build_world

NEW_EMAIL = "chief-moi-00004@test.invalid"
WITHDRAWN_VI = "thông tin liên lạc của đơn vị đã thay đổi"
WITHDRAWN_EN = "the unit's contact changed"
KEPT = "trước khi thu hồi vẫn được giữ nguyên"
SNOOZED_HOURS = 72  # the default policy's longest: three repeat slots


@pytest.fixture
async def live(
    database: str,
    kafka: KafkaBroker,
    topics: Topics,
    http_receiver: HttpReceiver,
    smtp_receiver: SmtpReceiver,
) -> AsyncIterator[Harness]:
    """The harness on the wall clock's days (day 10 of 50): its links expire after the
    database's `now()`, the moment the units import revokes links as of."""
    starts_at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=10)
    async with harness_from(starts_at, database, kafka, topics, http_receiver, smtp_receiver) as h:
        yield h


def _nonce(page: str, action: str) -> str:
    found = re.search(
        rf'action="[^"]*/{action}"[^>]*>\s*<input type="hidden" name="nonce" value="([^"]+)"', page
    )
    assert found, page[:2000]
    return found.group(1)


def _link_id(path: str) -> str:
    return path.removeprefix("/l/").split(".")[0]


async def _latest_link(h: Harness, unit: str = "00004") -> str:
    links = [r.json()["link"] for r in h.http.at(f"hook/{unit}") if r.json().get("link")]
    assert links, f"no link to {unit}"
    return "/l/" + str(links[-1]).split("/l/")[1]


async def _new_link(h: Harness, than: str) -> str:
    """The latest link to 00004, once it is another than `than`."""
    path = await _latest_link(h)
    assert path != than
    return path


async def _fetch(database: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def _acknowledge_and_explain(h: Harness, path: str) -> None:
    page = (await h.api.get(path)).text
    r = await h.api.post(f"{path}/acknowledge", data={"nonce": _nonce(page, "acknowledge")})
    assert r.status_code == 303, r.text[:500]
    await _explain(h, path)


async def _explain(h: Harness, path: str) -> None:
    page = (await h.api.get(path)).text
    r = await h.api.post(
        f"{path}/explain",
        data={
            "nonce": _nonce(page, "explain"),
            "key": "00004|cccd_collected",
            "cause": "thieu_may",
            "detail": "máy cấp CCCD hỏng",
            "committed_date": (h.clock.now() + timedelta(days=5)).date().isoformat(),
        },
    )
    assert r.status_code == 303, r.text[:500]


async def _import_a_new_email(h: Harness) -> None:
    """A units import that gives 00004's chief a new email, every other contact as it was."""
    units = [
        u.model_copy(update={"chief_email": NEW_EMAIL}) if u.code == "00004" else u
        for u in tree_with_contacts(h.http)
    ]
    conn = await asyncpg.connect(h.database)
    try:
        async with conn.transaction():
            await upsert_units(conn, units, "importer")
    finally:
        await conn.close()


def _withdrawn(r: Any, reason: str) -> None:
    assert r.status_code == 410, (r.status_code, r.text[:500])
    assert f'data-reason="{reason}"' in r.text
    assert KEPT in r.text  # what was done before stays, the page says so
    assert "no-store" in r.headers["cache-control"]


async def test_a_replaced_contact_withdraws_the_old_link_and_the_new_contacts_link_works(
    live: Harness,
) -> None:
    h = live
    old = await delivered_link(h)
    assert (await h.api.get(old)).status_code == 200
    await _acknowledge_and_explain(h, old)
    # a form opened before the change, sent after it
    late_form = _nonce((await h.api.get(old)).text, "snooze")
    old_mails = len(h.smtp.to(email_of("00004")))
    assert old_mails >= 1  # the link went to the old address too

    # a new chief: the email is theirs now; webhook and chat stay the unit's
    current = (await h.api.get("/v1/contacts/00004", headers=ADMIN)).json()
    contacts = [
        {**c, "address": NEW_EMAIL} if c["channel"] == "email" else c for c in current["contacts"]
    ]
    r = await h.api.put(
        "/v1/contacts/00004",
        json={"chief_name": "Chief mới", "contacts": contacts},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text

    r = await h.api.get(old)
    _withdrawn(r, "contact_changed")
    assert WITHDRAWN_VI in r.text
    assert WITHDRAWN_EN in html.unescape(r.text)
    r = await h.api.post(f"{old}/snooze", data={"nonce": late_form, "hours": "24"})
    _withdrawn(r, "contact_changed")

    link_id = _link_id(old)
    (row,) = await _fetch(
        h.database,
        "SELECT revoked_at, revoked_because, revoked_by FROM links WHERE id = $1",
        link_id,
    )
    assert (row["revoked_because"], row["revoked_by"]) == ("contact_changed", "test-admin")
    assert row["revoked_at"] == h.clock.now()
    # nothing taken after the change, everything before it kept
    assert await _fetch(h.database, "SELECT 1 FROM snoozes WHERE link_id = $1", link_id) == []
    acks = await _fetch(h.database, "SELECT 1 FROM acknowledgements WHERE link_id = $1", link_id)
    assert acks
    said = await _fetch(
        h.database, "SELECT unit, detail FROM explanations WHERE link_id = $1", link_id
    )
    assert [tuple(s) for s in said] == [("00004", "máy cấp CCCD hỏng")]
    (audited,) = await _fetch(
        h.database,
        "SELECT actor, subject, details FROM audit_log WHERE action = 'links.revoke'",
    )
    assert (audited["actor"], audited["subject"]) == ("test-admin", "00004")
    assert '"because": "contact_changed"' in audited["details"]

    # the unit catches up on one indicator: a change message, with a new link, goes to the
    # contacts of now (the new email, the webhook)
    await h.feed.send(progress("00004", 400, at=h.clock.now()))
    await h.advance(timedelta(minutes=1))
    await h.advance(timedelta(seconds=61))
    await h.settled()

    new = await eventually(lambda: _new_link(h, old), timeout=30)
    assert (await h.api.get(new)).status_code == 200
    new_mail = h.smtp.to(NEW_EMAIL)
    assert new_mail
    assert new.split("/l/")[1] in new_mail[-1].get_content()
    assert len(h.smtp.to(email_of("00004"))) == old_mails  # the old address: nothing more

    # an administrator's revocation: a reader may not
    r = await h.api.post("/v1/links/revoke", json={"unit": "00004"}, headers=READER)
    assert r.status_code == 403, r.text
    assert (await h.api.get(new)).status_code == 200
    r = await h.api.post(
        "/v1/links/revoke",
        json={"unit": "00004", "campaign": "c1", "reason": "forwarded to a group chat"},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["unit"] == "00004"
    assert answer["revoked"] == len(answer["links"]) >= 1
    new_row = await _fetch(h.database, "SELECT message_key FROM links WHERE id = $1", _link_id(new))
    assert new_row[0]["message_key"] in [x["message_id"] for x in answer["links"]]
    r = await h.api.get(new)
    _withdrawn(r, "revoked")
    assert "forwarded" not in r.text  # the administrator's reason stays theirs
    assert "quản trị viên" in r.text
    # again: nothing left to revoke, the old link still says why it was withdrawn
    r = await h.api.post("/v1/links/revoke", json={"unit": "00004"}, headers=ADMIN)
    assert r.json()["revoked"] == 0
    _withdrawn(await h.api.get(old), "contact_changed")
    both = await _fetch(
        h.database,
        "SELECT actor, details FROM audit_log WHERE action = 'links.revoke' ORDER BY id",
    )
    assert [a["actor"] for a in both] == ["test-admin", "test-admin"]
    assert "forwarded to a group chat" in both[-1]["details"]
    # what the chief of before acknowledged and explained is still there
    assert await _fetch(h.database, "SELECT 1 FROM explanations WHERE link_id = $1", link_id)


async def test_the_revocation_route_names_what_exists(live: Harness) -> None:
    h = live
    for body, field in (
        ({"unit": "99999"}, "unit"),
        ({"unit": "00004", "campaign": "c9"}, "campaign"),
    ):
        r = await h.api.post("/v1/links/revoke", json=body, headers=ADMIN)
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == [field]
    r = await h.api.post("/v1/links/revoke", json={"unit": "00004"})
    assert r.status_code == 401


async def test_the_units_import_withdraws_the_links_sent_to_a_contact_it_replaced(
    live: Harness,
) -> None:
    h = live
    ward = await delivered_link(h, "00004")
    other = await delivered_link(h, "00007")
    await _import_a_new_email(h)
    _withdrawn(await h.api.get(ward), "contact_changed")
    # the same addresses imported again withdraw nothing
    assert (await h.api.get(other)).status_code == 200
    (row,) = await _fetch(
        h.database, "SELECT revoked_because, revoked_by FROM links WHERE id = $1", _link_id(ward)
    )
    assert tuple(row) == ("contact_changed", "units import")
    audited = await _fetch(
        h.database, "SELECT actor, subject FROM audit_log WHERE action = 'links.revoke'"
    )
    assert [tuple(a) for a in audited] == [("units import", "00004")]


async def test_a_link_found_sent_to_an_address_no_longer_the_units_is_refused_and_recorded(
    live: Harness,
) -> None:
    """An attempt that read the old address just before the change and wrote it down just
    after: no contact change saw it, the page does."""
    h = live
    path = await delivered_link(h)
    await _late_attempt_elsewhere(h, path)
    _withdrawn(await h.api.get(path), "contact_changed")
    (row,) = await _fetch(
        h.database, "SELECT revoked_because, revoked_by FROM links WHERE id = $1", _link_id(path)
    )
    assert tuple(row) == ("contact_changed", "notifier")


async def _late_attempt_elsewhere(h: Harness, path: str) -> None:
    """An attempt of the link's email that wrote down another address than the unit's."""
    (message,) = await _fetch(
        h.database, "SELECT message_key FROM links WHERE id = $1", _link_id(path)
    )
    await _fetch(
        h.database,
        """
        INSERT INTO delivery_attempts (notification_id, attempt, replica, address)
        SELECT id, 99, 'late', 'somebody-else@test.invalid' FROM notifications
        WHERE dedup_key = $1
        """,
        f"{message['message_key']}/email",
    )


async def test_sent_to_means_an_attempt_went_there_not_that_a_message_waited_for_it(
    database: str,
) -> None:
    """A message still waiting when the contact changed goes to the new address (every
    attempt reads the contact of now): its link stays good. The operators' copy carries no
    link: where it went withdraws nothing."""
    await build_world(database, starts_at=datetime(2023, 5, 10, 3, tzinfo=UTC), units=TREE)
    at = datetime.now(UTC)
    old, new = "http://127.0.0.1:9/hook/00010", "http://127.0.0.1:9/hook/new-chief"
    conn = await asyncpg.connect(database)
    try:
        await reference_sql.replace_contacts(
            conn, "00010", None, [Contact("webhook", old, None)], "test"
        )
        link = await explanations_sql.create_link(
            conn, "c1", "00010", [], "c1/00010/1", at, timedelta(days=7)
        )
        waiting = await queue(conn, "c1/00010/1/webhook", old)
        # the operators' copy of a unit without a webhook of its own went to their URL
        ops = await explanations_sql.create_link(
            conn, "c1", "00007", [], "c1/00007/1", at, timedelta(days=7)
        )
        copy = await queue(
            conn, "c1/00007/1/webhook", "http://ops/hook", recipient="00007", fallback=True
        )
        await _attempt(conn, copy, "http://ops/hook")

        await reference_sql.replace_contacts(
            conn, "00010", None, [Contact("webhook", new, None)], "test"
        )
        assert await link_sql.revoke_to_former_contacts(conn, ["00010", "00007"], at, "t") == []
        await _attempt(conn, waiting, new)  # the next attempt: to the contact of now
        assert await link_sql.withdrawn(conn, link.id, at) is None
        assert await link_sql.withdrawn(conn, ops.id, at) is None
        # had an attempt gone to the old address, the link would be withdrawn
        await _attempt(conn, waiting, old)
        revoked = await link_sql.revoke_to_former_contacts(conn, ["00010", "00007"], at, "t")
        assert [r.id for r in revoked] == [link.id]
    finally:
        await conn.close()


async def _attempt(conn: asyncpg.Connection, notification_id: int, address: str) -> None:
    await conn.execute(
        "INSERT INTO delivery_attempts (notification_id, attempt, replica, address) "
        "VALUES ($1, 1, 'test', $2)",
        notification_id,
        address,
    )


async def _snooze(h: Harness, path: str, hours: int = SNOOZED_HOURS) -> None:
    page = (await h.api.get(path)).text
    r = await h.api.post(
        f"{path}/snooze", data={"nonce": _nonce(page, "snooze"), "hours": str(hours)}
    )
    assert r.status_code == 303, r.text[:500]


async def _kinds(h: Harness, unit: str = "00004") -> list[str]:
    """The kinds of the messages queued for the unit's chief, oldest first."""
    return [n["kind"] for n in reversed(await h.log(recipient=unit, channel="webhook"))]


async def _snoozes(h: Harness, link_id: str) -> list[asyncpg.Record]:
    return await _fetch(
        h.database,
        "SELECT alert_id, starts_at, ends_at, asked_ends_at FROM snoozes WHERE link_id = $1 "
        "ORDER BY alert_id",
        link_id,
    )


async def _ended_audits(h: Harness) -> list[dict[str, Any]]:
    rows = await _fetch(
        h.database,
        "SELECT actor, subject, details FROM audit_log WHERE action = 'snoozes.end' ORDER BY id",
    )
    return [{**dict(r), "details": json.loads(r["details"])} for r in rows]


async def test_a_snooze_made_through_a_link_an_administrator_withdrew_ends_with_it(
    live: Harness,
) -> None:
    h = live
    path = await delivered_link(h)
    await _explain(h, path)
    await _snooze(h, path)
    snoozed_at = h.clock.now()
    # the snooze holds: the first repeat slot passes unsent
    await h.advance(timedelta(hours=24))
    assert await _kinds(h) == ["firing"]

    # the link was forwarded to the wrong person: withdrawn, and the snooze made through
    # it with it
    r = await h.api.post(
        "/v1/links/revoke",
        json={"unit": "00004", "reason": "forwarded to the wrong person"},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    assert r.json()["revoked"] >= 1
    withdrawn_at = h.clock.now()

    # the next repeat slot, still inside what was asked for: the repeat goes, as usual
    await h.advance(timedelta(hours=24))
    assert h.clock.now() < snoozed_at + timedelta(hours=SNOOZED_HOURS)
    assert await _kinds(h) == ["firing", "repeat"]
    await h.settled()

    async def repeated() -> None:
        assert [r.json()["kind"] for r in h.http.at("hook/00004")] == ["firing", "repeat"]

    await eventually(repeated, timeout=30)

    link_id = _link_id(path)
    snoozes = await _snoozes(h, link_id)
    assert snoozes  # kept, ended at the withdrawal, the end asked for kept with it
    for s in snoozes:
        assert (s["starts_at"], s["ends_at"]) == (snoozed_at, withdrawn_at)
        assert s["asked_ends_at"] == snoozed_at + timedelta(hours=SNOOZED_HOURS)
    (audited,) = await _ended_audits(h)
    assert (audited["actor"], audited["subject"]) == ("test-admin", "00004")
    assert audited["details"]["because"] == "admin"
    assert sorted(s["alert_id"] for s in audited["details"]["snoozes"]) == sorted(
        s["alert_id"] for s in snoozes
    )
    # what was explained through the link stays
    said = await _fetch(h.database, "SELECT detail FROM explanations WHERE link_id = $1", link_id)
    assert [s["detail"] for s in said] == ["máy cấp CCCD hỏng"]


async def test_a_snooze_made_through_another_link_that_still_holds_goes_on(
    live: Harness,
) -> None:
    """Two messages, two links to the unit's chief, a snooze through each: only the
    withdrawn one's ends, and the other still holds the repeats back."""
    h = live
    first = await delivered_link(h)
    # a change (one indicator caught up): a second message, with a link of its own
    await h.feed.send(progress("00004", 400, at=h.clock.now()))
    await h.advance(timedelta(minutes=1))
    await h.advance(timedelta(seconds=61))
    await h.settled()
    second = await eventually(lambda: _new_link(h, first), timeout=30)
    await _snooze(h, first)
    await _snooze(h, second)
    kept = await _snoozes(h, _link_id(second))

    # the page finds the first link sent to an address no longer the unit's (as above), and
    # records it withdrawn
    await _late_attempt_elsewhere(h, first)
    assert (await h.api.get(first)).status_code == 410
    assert (await h.api.get(second)).status_code == 200
    ended = await _snoozes(h, _link_id(first))
    assert ended
    assert all(s["asked_ends_at"] is not None for s in ended)
    assert await _snoozes(h, _link_id(second)) == kept  # untouched
    (audited,) = await _ended_audits(h)
    assert (audited["actor"], audited["details"]["because"]) == ("notifier", "contact_changed")

    # the second link's snooze still holds the repeat back
    before = await _kinds(h)
    await h.advance(timedelta(hours=24))
    assert await _kinds(h) == before


async def test_the_units_import_that_withdraws_a_link_ends_its_snoozes(live: Harness) -> None:
    h = live
    ward = await delivered_link(h, "00004")
    other = await delivered_link(h, "00007")
    await _snooze(h, ward)
    await _snooze(h, other)
    await _import_a_new_email(h)
    (revoked,) = await _fetch(
        h.database, "SELECT revoked_at FROM links WHERE id = $1", _link_id(ward)
    )
    ended = await _snoozes(h, _link_id(ward))
    assert ended
    # as of the import (the database's clock), or at its start for one the harness's
    # clock puts after it: no longer in force either way
    assert all(s["ends_at"] == max(s["starts_at"], revoked["revoked_at"]) for s in ended)
    assert all(s["asked_ends_at"] > s["ends_at"] for s in ended)
    # the other unit's link, its addresses imported again, withdraws nothing
    assert all(s["asked_ends_at"] is None for s in await _snoozes(h, _link_id(other)))
    (audited,) = await _ended_audits(h)
    assert (audited["actor"], audited["subject"]) == ("units import", "00004")
    assert audited["details"]["because"] == "contact_changed"
