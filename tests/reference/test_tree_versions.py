"""Loading tree versions against PostgreSQL with Hà Nội's real files: the chain 2023 →
1 January 2025 → 1 July 2025 loads; bad files are refused whole, naming every bad row by
its line; nothing that was true before a change is rewritten."""

import csv
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.cli import import_file, import_tree_version
from services.aggregator.repository import tree as tree_sql
from services.ingest import repository as ingest_sql
from services.ingest.validation import Catalog
from tests.support.identities import ADMIN_SECRET as ADMIN
from tests.support.identities import READER, bearer
from tests.support.stack import Topics, aggregator_settings, running
from tiendo.unit_keys import cut_over

DATA = Path(str(resources.files("devtools.demo") / "data"))
JANUARY = date(2025, 1, 1)
JULY = date(2025, 7, 1)
# what a version is, apart from when it ends (and the bookkeeping of that change)
VERSION_COLUMNS = "code, admin_code, name, type, level, parent_code, ancestors, valid_from"


@pytest.fixture
async def client(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    async with running(create_aggregator(settings)) as c:
        c.headers.update(bearer(ADMIN))
        yield c


async def load_2023(client: httpx.AsyncClient) -> None:
    assert await import_file(client, "units", DATA / "hanoi_units.csv", None, ADMIN) == []


async def load(
    client: httpx.AsyncClient, units: Path, crosswalk: Path, day: date, grace: int = 90
) -> list[str]:
    return await import_tree_version(client, units, crosswalk, day, grace, ADMIN)


async def versions(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        f"SELECT {VERSION_COLUMNS}, valid_to, grace_until FROM aggregator.units"
    )
    return {r["code"]: r for r in rows}


def at(day: date, hours: int = 10) -> datetime:
    return cut_over(day) + timedelta(hours=hours)


async def add_event(conn: asyncpg.Connection, event_id: str, unit: str, when: datetime) -> None:
    await conn.execute(
        "INSERT INTO aggregator.events (event_id, unit, indicator, kind, value, occurred_at)"
        " VALUES ($1, $2, 'cccd_collected', 'increment', 1, $3)",
        event_id,
        unit,
        when,
    )


async def test_hanoi_2025_chain_loads_and_keeps_every_earlier_version(
    client: httpx.AsyncClient, database: str
) -> None:
    await load_2023(client)
    conn = await asyncpg.connect(database)
    try:
        before = await versions(conn)
        january = DATA / "hanoi_crosswalk_2025-01_inferred.csv"
        assert await load(client, DATA / "hanoi_units_2025-01.csv", january, JANUARY) == []
        # events stored before July's tree: sent codes as upstream sends them
        await add_event(conn, "june", "00004", at(JULY) - timedelta(days=1))
        await add_event(conn, "july-reused", "00004", at(JULY))
        await add_event(conn, "july-retired-whole", "00013", at(JULY))
        await add_event(conn, "july-retired-late", "00013", at(JULY) + timedelta(days=91))
        await add_event(conn, "july-split", "00016", at(JULY))
        after_january = await versions(conn)
        july = DATA / "hanoi_crosswalk_2025.csv"
        assert await load(client, DATA / "hanoi_units_2025.csv", july, JULY) == []
        after = await versions(conn)
        events = {
            r["event_id"]: (r["unit"], r["sent_unit"])
            for r in await conn.fetch("SELECT event_id, unit, sent_unit FROM aggregator.events")
        }
        audit = await conn.fetch(
            "SELECT action, subject FROM audit_log WHERE action = 'units.version' ORDER BY id"
        )
    finally:
        await conn.close()

    # nothing true before a change is rewritten: a version's every column but its end
    for key, old in after_january.items():
        new = after[key]
        assert {k: new[k] for k in VERSION_COLUMNS.split(", ")} == {
            k: old[k] for k in VERSION_COLUMNS.split(", ")
        }, key
        assert old["valid_to"] is None or new["valid_to"] == old["valid_to"], key
    for key, old in before.items():
        assert after[key]["name"] == old["name"]
        assert after[key]["parent_code"] == old["parent_code"]

    in_force = {k: v for k, v in after.items() if v["valid_to"] is None}
    assert len(in_force) == 127  # the city and its 126 communes
    assert all(v["parent_code"] in (None, "01") for v in in_force.values())
    assert after["00004@2025-07-01"]["ancestors"] == ["01"]
    assert after["00004"]["ancestors"] == ["01", "001"]  # Trúc Bạch keeps its district
    assert after["00004"]["valid_to"] == cut_over(JULY)
    # 33 wards renamed on 1 January (new versions), 53 merged into them or others
    assert after["00181@2025-01-01"]["name"] == "Phường Văn Miếu - Quốc Tử Giám"
    assert after["00181"]["valid_to"] == cut_over(JANUARY)
    assert after["00010"]["valid_to"] == cut_over(JANUARY)
    # grace only where the version went whole
    assert after["00013"]["grace_until"] == cut_over(JULY) + timedelta(days=90)
    assert after["00016"]["grace_until"] is None
    assert after["001"]["valid_to"] == cut_over(JULY)  # an abolished district
    assert [a["subject"] for a in audit] == ["2025-01-01", "2025-07-01"]

    # events follow the version their code meant when they happened
    assert events["june"] == ("00004", None)
    assert events["july-reused"] == ("00004@2025-07-01", "00004")
    assert events["july-retired-whole"] == ("00004@2025-07-01", "00013")
    assert events["july-retired-late"] == ("00013", None)  # past grace: left where it was
    assert events["july-split"] == ("00016", None)  # split: no one successor to take it

    listed = (await client.get("/v1/units/00004/versions", headers=READER)).json()
    assert [(v["key"], v["name"]) for v in listed] == [
        ("00004", "Phường Trúc Bạch"),
        ("00004@2025-07-01", "Phường Ba Đình"),
    ]
    assert {t["old_code"] for t in listed[1]["came_from"]} >= {"00004", "00013", "00016"}
    assert [t["new_key"] for t in listed[0]["went_to"]] == ["00004@2025-07-01"]
    assert {t["old_key"] for t in listed[0]["came_from"]} == {"00010"}


async def test_a_tree_for_an_earlier_day_than_the_latest_is_refused(
    client: httpx.AsyncClient, database: str
) -> None:
    await load_2023(client)
    july = DATA / "hanoi_crosswalk_2025.csv"
    january = DATA / "hanoi_crosswalk_2025-01_inferred.csv"
    assert await load(client, DATA / "hanoi_units_2025-01.csv", january, JANUARY) == []
    assert await load(client, DATA / "hanoi_units_2025.csv", july, JULY) == []
    again = await load(client, DATA / "hanoi_units_2025-01.csv", january, JANUARY)
    assert again[-1] == "nothing was imported"
    assert any("already has a version from 2025-07-01" in p for p in again)
    same_day = await load(client, DATA / "hanoi_units_2025.csv", july, JULY)
    assert same_day[-1] == "nothing was imported"


BAD_CROSSWALK_ROWS = {
    # line in the file -> (row, what the refusal must say)
    2: ("00099,00004,whole", "old code 00099 is not a unit the day before"),
    3: ("00028,99999,whole", "new code 99999 is not a unit of the new tree"),
    4: ("00016,00004,part,0.5", "shares sum to 0.8"),
    5: ("00016,00008,part,0.3", "shares sum to 0.8"),
    6: ("00019,00004,part,0.5", "mix given and empty"),
    7: ("00019,00008,part,", "mix given and empty"),
    8: ("00022,00004,whole", "goes whole to 2 successors"),
    9: ("00022,00008,whole", "goes whole to 2 successors"),
}


async def test_every_bad_row_is_named_by_line_and_nothing_is_loaded(
    client: httpx.AsyncClient, database: str, tmp_path: Path
) -> None:
    await load_2023(client)
    january = DATA / "hanoi_crosswalk_2025-01_inferred.csv"
    assert await load(client, DATA / "hanoi_units_2025-01.csv", january, JANUARY) == []
    # 00040 is left out: a closed version no row covers (00025, also a code of the new
    # tree, would read as its continued identity: an implicit whole)
    left_out = {"00016", "00019", "00022", "00028", "00040"}
    with (DATA / "hanoi_crosswalk_2025.csv").open(encoding="utf-8") as f:
        july = [
            f"{r['old_code']},{r['new_code']},{r['transfer']},"
            for r in csv.DictReader(f)
            if r["old_code"] not in left_out
        ]
    crosswalk = tmp_path / "crosswalk.csv"
    rows = [row for row, _ in BAD_CROSSWALK_ROWS.values()]
    crosswalk.write_text(
        "\n".join(["old_code,new_code,transfer,share", *rows, *july]) + "\n", encoding="utf-8"
    )
    units = tmp_path / "units.csv"
    tree = (DATA / "hanoi_units_2025.csv").read_text(encoding="utf-8").splitlines()
    units.write_text(
        "\n".join([*tree, "77777,Xã mồ côi,xã,2,88888", "66666,Xã vòng,xã,2,66666"]) + "\n",
        encoding="utf-8",
    )
    conn = await asyncpg.connect(database)
    try:
        before = await versions(conn)
        problems = await load(client, units, crosswalk, JULY)
        assert await versions(conn) == before
        transfers = await conn.fetchval("SELECT count(*) FROM aggregator.unit_transfers")
    finally:
        await conn.close()
    assert transfers == 53 + 33  # January's only: its merges, and its renames' implicit wholes
    assert problems[-1] == "nothing was imported"
    for line, (_, message) in BAD_CROSSWALK_ROWS.items():
        assert any(
            p.startswith(f"crosswalk.csv line {line}:") and message in p for p in problems
        ), (
            line,
            problems,
        )
    n = len(tree)
    assert any(p.startswith(f"units.csv line {n + 1}:") and "parent 88888" in p for p in problems)
    assert any(p.startswith(f"units.csv line {n + 2}:") and "cycle" in p for p in problems)
    # 00040 closes with no row saying where it went
    assert any(p.startswith("crosswalk.csv: 00040") for p in problems), problems
    # the abolished districts need no row: their wards' rows say where their people went
    assert not any(p.startswith("crosswalk.csv: 001 ") for p in problems)
    # every refusal names a bad row: none of the good rows is blamed
    bad_lines = {f"crosswalk.csv line {line}:" for line in BAD_CROSSWALK_ROWS}
    blamed = {p.split(": ")[0] + ":" for p in problems if p.startswith("crosswalk.csv line")}
    assert blamed == bad_lines


async def test_loading_needs_an_admin(client: httpx.AsyncClient) -> None:
    body = {"units": [{"code": "01", "name": "Hà Nội", "level": 1}], "crosswalk": []}
    r = await client.put("/v1/admin/tree-versions/2025-07-01", json=body, headers=READER)
    assert r.status_code == 403
    r = await client.put(
        "/v1/admin/tree-versions/2025-07-01",
        json={"units": [{"code": "01", "name": "Hà Nội", "level": 1, "parent_code": "x"}]},
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "units"


async def test_the_aggregator_and_ingest_attribute_every_code_alike(
    client: httpx.AsyncClient, database: str
) -> None:
    """The one rule of attribution has two forms, the aggregator's SQL (re-attributing
    stored events) and ingest's catalogue: every code of both trees, at the edges of both
    cut-overs and of the grace period, lands on the same key."""
    await load_2023(client)
    january = DATA / "hanoi_crosswalk_2025-01_inferred.csv"
    assert await load(client, DATA / "hanoi_units_2025-01.csv", january, JANUARY) == []
    july = DATA / "hanoi_crosswalk_2025.csv"
    assert await load(client, DATA / "hanoi_units_2025.csv", july, JULY) == []
    second = timedelta(seconds=1)
    moments = [
        cut_over(JANUARY) - second,
        cut_over(JANUARY),
        cut_over(JULY) - second,
        cut_over(JULY),
        cut_over(JULY) + timedelta(days=90) - second,
        cut_over(JULY) + timedelta(days=90),
    ]
    conn = await asyncpg.connect(database)
    try:
        codes = [r["admin_code"] for r in await conn.fetch(
            "SELECT DISTINCT admin_code FROM aggregator.units ORDER BY 1"
        )]  # fmt: skip
        sent = [(f"{c}-{i}", c, m) for c in codes for i, m in enumerate(moments)]
        for event_id, code, when in sent:
            await add_event(conn, event_id, code, when)
        async with conn.transaction():
            await tree_sql.after_tree_change(conn)
        stored = {
            r["event_id"]: (r["unit"], r["sent_unit"])
            for r in await conn.fetch("SELECT event_id, unit, sent_unit FROM aggregator.events")
        }
        catalog = Catalog(
            units=await ingest_sql.load_units(conn),
            indicators=frozenset(),
            versions=await ingest_sql.load_versions(conn),
        )
    finally:
        await conn.close()
    differ = []
    for event_id, code, when in sent:
        key = catalog.attribute(code, when).key
        want = (key, None if key == code else code) if key is not None else (code, None)
        if stored[event_id] != want:
            differ.append((event_id, stored[event_id], want))
    assert differ == []
    assert stored["00013-3"] == ("00004@2025-07-01", "00013")  # Quán Thánh, whole, in grace


async def test_a_correction_without_a_day_changes_the_tree_in_force_only(
    client: httpx.AsyncClient, database: str, tmp_path: Path
) -> None:
    await load_2023(client)
    july = DATA / "hanoi_crosswalk_2025.csv"
    january = DATA / "hanoi_crosswalk_2025-01_inferred.csv"
    assert await load(client, DATA / "hanoi_units_2025-01.csv", january, JANUARY) == []
    assert await load(client, DATA / "hanoi_units_2025.csv", july, JULY) == []
    fix = tmp_path / "fix.csv"
    fix.write_text(
        "code,name,type,level,parent_code\n00004,Phường Ba Đình (sửa),phường,2,01\n",
        encoding="utf-8",
    )
    assert await import_file(client, "units", fix, None, ADMIN) == []
    retired = tmp_path / "retired.csv"
    retired.write_text(
        "code,name,type,level,parent_code\n00013,Phường Quán Thánh,phường,3,001\n",
        encoding="utf-8",
    )
    problems = await import_file(client, "units", retired, None, ADMIN)
    assert problems[0].startswith("line 2: code: 00013 was retired on 2025-07-01")
    assert problems[1].startswith("line 2: parent_code: 001 was retired")
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT code, name FROM aggregator.units WHERE admin_code IN ('00004', '00013')"
        )
        names = {r["code"]: r["name"] for r in rows}
    finally:
        await conn.close()
    assert names == {
        "00004": "Phường Trúc Bạch",
        "00004@2025-07-01": "Phường Ba Đình (sửa)",
        "00013": "Phường Quán Thánh",
    }


async def test_moving_an_older_unit_under_a_newer_one_needs_a_tree_version(
    client: httpx.AsyncClient,
) -> None:
    await load_2023(client)
    january = DATA / "hanoi_crosswalk_2025-01_inferred.csv"
    assert await load(client, DATA / "hanoi_units_2025-01.csv", january, JANUARY) == []
    # 00181 is Văn Miếu - Quốc Tử Giám from 1 January (a new version); 00004 Trúc Bạch is
    # the same ward since before 2023: under 00181 it would gain a parent in 2023
    moved = [{"code": "00004", "name": "Phường Trúc Bạch", "level": 4, "parent_code": "00181"}]
    r = await client.put("/v1/units", json=moved)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "parent_code"


async def test_a_grace_period_ends_when_the_unit_it_leads_to_closes(
    client: httpx.AsyncClient, database: str
) -> None:
    """Nguyễn Trung Trực (00010) went whole into Trúc Bạch on 1 January with a year of
    grace; Trúc Bạch itself closed on 1 July, so from then 00010 must not lead to it."""
    await load_2023(client)
    january = DATA / "hanoi_crosswalk_2025-01_inferred.csv"
    assert await load(client, DATA / "hanoi_units_2025-01.csv", january, JANUARY, 365) == []
    july = DATA / "hanoi_crosswalk_2025.csv"
    assert await load(client, DATA / "hanoi_units_2025.csv", july, JULY) == []
    conn = await asyncpg.connect(database)
    try:
        after = await versions(conn)
    finally:
        await conn.close()
    assert after["00010"]["grace_until"] == cut_over(JULY)
    assert after["00013"]["grace_until"] == cut_over(JULY) + timedelta(days=90)


async def test_a_day_far_from_today_is_refused_before_anything_is_written(
    client: httpx.AsyncClient, database: str
) -> None:
    await load_2023(client)
    july = DATA / "hanoi_crosswalk_2025.csv"
    for day in (date(2052, 7, 1), date(1999, 12, 31)):
        problems = await load(client, DATA / "hanoi_units_2025.csv", july, day)
        assert f"{day} is outside" in problems[0], problems
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM aggregator.units") == 610
    finally:
        await conn.close()
