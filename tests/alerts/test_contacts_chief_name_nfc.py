"""A chief's name set on the notifier is kept in NFC, the one form of every reference text
(`tiendo.sheets.normal_text`, what the units import does with `chief_name`): a name typed
on a Mac (decomposed, NFD) greets the chief as the same name, and compares equal to it.
Until 6 December 2026 the notifier's contacts API stored it as sent."""

import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.notifier.app import create_app
from tests.support.identities import ADMIN
from tests.support.notifier import SmtpReceiver, notifier_settings
from tests.support.stack import Topics, running, until_ready
from tests.support.world import build_world

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
NAME = "Nguyễn Thị Ánh Tuyết"
DECOMPOSED = unicodedata.normalize("NFD", NAME)


@pytest.fixture
async def api(
    database: str, kafka: KafkaBroker, topics: Topics, smtp_receiver: SmtpReceiver
) -> AsyncIterator[httpx.AsyncClient]:
    await build_world(database, starts_at=STARTS)
    role_dsn = database.replace("://tiendo@", "://tiendo_notifier@", 1)
    async with running(create_app(notifier_settings(role_dsn, kafka, topics, smtp_receiver))) as c:
        await until_ready(c)
        yield c


async def test_a_chiefs_name_is_kept_in_nfc(database: str, api: httpx.AsyncClient) -> None:
    assert DECOMPOSED != NAME
    one = {"chief_name": DECOMPOSED, "contacts": []}
    r = await api.put("/v1/contacts/00010", json=one, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["chief_name"] == NAME
    r = await api.put("/v1/contacts", json=[{"unit": "00007", **one}], headers=ADMIN)
    assert r.status_code == 200, r.text
    conn = await asyncpg.connect(database)
    try:
        stored = await conn.fetch("SELECT unit, name FROM notifier.chiefs ORDER BY unit")
    finally:
        await conn.close()
    assert [tuple(s) for s in stored] == [("00007", NAME), ("00010", NAME)]
