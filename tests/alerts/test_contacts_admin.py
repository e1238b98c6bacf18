"""Administrators set chiefs' contacts on the notifier itself: one unit through the API, a
whole file through `tiendo notifier import contacts`; bad input is refused precisely and
changes nothing. The notifier runs logged in as its own role."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from openpyxl import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from devtools.localstack import KafkaBroker
from services.aggregator.admin import upsert_units
from services.notifier.app import create_app
from services.notifier.cli import import_contacts
from services.notifier.importing import parse_contacts
from tests.alerts.test_contacts import ZaloChannel
from tests.support.identities import ADMIN, ADMIN_SECRET
from tests.support.notifier import SmtpReceiver, notifier_settings
from tests.support.stack import Topics, running, until_ready
from tests.support.world import TREE, build_world
from tiendo.sheets import read_rows

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
WARD = {
    "chief_name": "Chief Phúc Xá",
    "contacts": [
        {"channel": "email", "address": "phucxa@test.invalid", "language": "en"},
        {"channel": "sms", "address": "+84900000004"},
        {"channel": "zalo", "address": "zalo:4"},
    ],
}


@pytest.fixture
async def api(
    database: str, kafka: KafkaBroker, topics: Topics, smtp_receiver: SmtpReceiver
) -> AsyncIterator[httpx.AsyncClient]:
    await build_world(database, starts_at=STARTS)
    role_dsn = database.replace("://tiendo@", "://tiendo_notifier@", 1)
    settings = notifier_settings(role_dsn, kafka, topics, smtp_receiver)
    # zalo: a channel only this deployment sends on, which has no address rule
    async with running(create_app(settings, channels={"zalo": ZaloChannel()})) as client:
        # its consumer connected: one stopped while still connecting leaks its connection
        await until_ready(client)
        yield client


async def _stored(database: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT unit, channel, address, language FROM notifier.contacts ORDER BY 1, 2"
        )
        return [tuple(r) for r in rows]
    finally:
        await conn.close()


async def test_an_admin_replaces_and_reads_a_units_contacts(
    api: httpx.AsyncClient, database: str
) -> None:
    r = await api.put("/v1/contacts/00004", json=WARD, headers=ADMIN)
    assert r.status_code == 200, r.text
    r = await api.get("/v1/contacts/00004", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "unit": "00004",
        "unit_name": r.json()["unit_name"],
        "chief_name": "Chief Phúc Xá",
        "contacts": [
            {"channel": "email", "address": "phucxa@test.invalid", "language": "en"},
            {"channel": "sms", "address": "+84900000004", "language": None},
            {"channel": "zalo", "address": "zalo:4", "language": None},
        ],
    }
    # a replacement: what is left out goes
    r = await api.put("/v1/contacts/00004", json={"contacts": [WARD["contacts"][1]]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["chief_name"] is None
    assert await _stored(database) == [("00004", "sms", "+84900000004", None)]


@pytest.mark.parametrize(
    ("contact", "field", "message"),
    [
        ({"channel": "fax", "address": "024 1234"}, "contacts.0.channel", "unknown channel fax"),
        ({"channel": "email", "address": "not-an-email"}, "contacts.0", "email address"),
        ({"channel": "sms", "address": "call me"}, "contacts.0", "phone number"),
        ({"channel": "webhook", "address": "ftp://x.invalid/a"}, "contacts.0", "http(s) URL"),
        (
            {"channel": "email", "address": "a@b.invalid", "language": "fr"},
            "contacts.0.language",
            "",
        ),
    ],
)
async def test_a_bad_contact_is_refused_with_what_is_wrong_and_nothing_changes(
    api: httpx.AsyncClient, database: str, contact: dict[str, str], field: str, message: str
) -> None:
    r = await api.put("/v1/contacts/00004", json={"contacts": [contact]}, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    [error] = r.json()["errors"]
    assert error["field"] == field
    assert message in error["message"]
    assert await _stored(database) == []


async def test_unknown_units_missing_tokens_and_repeated_channels(api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/contacts/99999", headers=ADMIN)).status_code == 404
    assert (await api.put("/v1/contacts/99999", json=WARD, headers=ADMIN)).status_code == 404
    assert (await api.get("/v1/contacts/00004")).status_code == 401
    assert (await api.put("/v1/contacts/00004", json=WARD)).status_code == 401
    twice = {"contacts": [WARD["contacts"][0], WARD["contacts"][0]]}
    r = await api.put("/v1/contacts/00004", json=twice, headers=ADMIN)
    assert r.status_code == 422
    assert "email repeated" in r.text
    spec = (await api.get("/openapi.json")).json()["paths"]["/v1/contacts/{unit}"]["put"]
    assert {"401", "404", "422"} <= set(spec["responses"])
    assert "does not know" in spec["responses"]["422"]["description"]


CONTACTS_CSV = """unit,chief_name,channel,address,language
00004,Chief Phúc Xá,email,phucxa@test.invalid,en
00004,,sms,+84900000004,
00007,Chief Trúc Bạch,,,
00010,Chief Hàng Buồm,webhook,https://hooks.test.invalid/10,vi
"""


async def test_a_contacts_file_is_imported_whole(
    api: httpx.AsyncClient, database: str, tmp_path: Path
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(CONTACTS_CSV, encoding="utf-8")
    assert await import_contacts(api, path, ADMIN_SECRET) == []
    assert await _stored(database) == [
        ("00004", "email", "phucxa@test.invalid", "en"),
        ("00004", "sms", "+84900000004", None),
        ("00010", "webhook", "https://hooks.test.invalid/10", "vi"),
    ]
    r = await api.get("/v1/contacts/00007", headers=ADMIN)
    assert (r.json()["chief_name"], r.json()["contacts"]) == ("Chief Trúc Bạch", [])


def test_every_bad_row_of_a_contacts_file_is_reported_by_its_line(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert isinstance(sheet, Worksheet)
    sheet.append(["unit", "chief_name", "channel", "address", "language"])
    sheet.append(["00004", "Chief A", "email", "a@test.invalid", "en"])
    sheet.append(["00004", "Chief B", "sms", "+84900000004", None])  # another chief name
    sheet.append(["00004", None, "email", "b@test.invalid", None])  # email again
    sheet.append(["00007", None, "email", "no-at-sign", None])
    sheet.append(["00010", None, "sms", None, None])  # no address
    sheet.append(["00010", None, None, None, "de"])
    sheet.append(["0 0 1", None, None, None, None])
    path = tmp_path / "contacts.xlsx"
    book.save(path)
    _, errors = parse_contacts(read_rows(path))
    assert [e.line for e in errors] == [3, 4, 5, 6, 7, 8]
    assert "chief_name differs from line 2" in str(errors[0])
    assert "00004/email repeats line 2" in str(errors[1])
    assert "email address" in str(errors[2])
    assert "channel and address go together" in str(errors[3])
    assert "language" in str(errors[4])
    assert "unit" in str(errors[5])


async def test_a_file_naming_an_unknown_unit_imports_nothing_and_names_the_line(
    api: httpx.AsyncClient, database: str, tmp_path: Path
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        CONTACTS_CSV + "99999,Chief Nowhere,email,nowhere@test.invalid,\n00007,,fax,024 1234,\n",
        encoding="utf-8",
    )
    problems = await import_contacts(api, path, ADMIN_SECRET)
    assert problems == [
        "line 6: no unit 99999",
        "line 7: unknown channel fax",
        "nothing was imported",
    ]
    assert await _stored(database) == []


async def test_a_language_set_on_the_notifier_survives_a_units_import(
    api: httpx.AsyncClient, database: str
) -> None:
    r = await api.put("/v1/contacts/00004", json=WARD, headers=ADMIN)
    assert r.status_code == 200, r.text
    ward = next(u for u in TREE if u.code == "00004")
    moved = ward.model_copy(update={"chief_name": "Chief", "chief_email": "new@test.invalid"})
    conn = await asyncpg.connect(database.replace("://tiendo@", "://tiendo_aggregator@", 1))
    try:
        async with conn.transaction():
            await upsert_units(conn, [moved], "test")
    finally:
        await conn.close()
    # the import's columns: email updated in place (its language kept), sms gone (blank);
    # zalo, which the import has no column for, untouched
    assert await _stored(database) == [
        ("00004", "email", "new@test.invalid", "en"),
        ("00004", "zalo", "zalo:4", None),
    ]
