"""Targets imported again: a column the file (or the JSON body) does not carry keeps the
stored value (before, a file of targets alone reset every baseline to 0 and every unit
deadline to none), and the audit row lists what changed, old → new, bounded."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from openpyxl import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.cli import import_file
from services.cli import main
from tests.support.identities import ADMIN_SECRET as ADMIN
from tests.support.identities import bearer
from tests.support.stack import Topics, aggregator_settings, running
from tests.support.world import build_world
from tiendo import audit

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=5)


async def _stored(conn: asyncpg.Connection, unit: str) -> tuple[Any, ...]:
    row = await conn.fetchrow(
        "SELECT target, baseline, deadline FROM targets WHERE campaign_id = 'c1' AND unit = $1",
        unit,
    )
    assert row is not None
    return tuple(row)


async def _last_targets_audit(conn: asyncpg.Connection) -> dict[str, Any]:
    details = await conn.fetchval(
        "SELECT details FROM audit_log WHERE action = 'targets.upsert' ORDER BY id DESC LIMIT 1"
    )
    document: dict[str, Any] = json.loads(details)
    return document


async def test_a_column_left_out_keeps_the_stored_values(
    database: str, kafka: KafkaBroker, topics: Topics, tmp_path: Path
) -> None:
    await build_world(database, starts_at=START, days=30)
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    conn = await asyncpg.connect(database)
    deadline = (START + timedelta(days=20)).astimezone(UTC)
    try:
        async with running(create_aggregator(settings)) as client:
            client.headers.update(bearer(ADMIN))
            full = tmp_path / "full.csv"
            full.write_text(
                "unit,indicator,target,baseline,deadline\n"
                f"00004,cccd_collected,1000,400,{deadline.isoformat()}\n",
                encoding="utf-8",
            )
            assert await import_file(client, "targets", full, "c1", ADMIN) == []
            assert await _stored(conn, "00004") == (1000, 400, deadline)
            change = await _last_targets_audit(conn)
            assert change["changes"] == [
                {
                    "unit": "00004",
                    "indicator": "cccd_collected",
                    "baseline": [0, 400],
                    "deadline": [None, deadline.isoformat()],
                }
            ]

            # a correction of the target alone: the baseline and the deadline stay
            only = tmp_path / "only.csv"
            only.write_text("unit,indicator,target\n00004,cccd_collected,1100\n", encoding="utf-8")
            assert await import_file(client, "targets", only, "c1", ADMIN) == []
            assert await _stored(conn, "00004") == (1100, 400, deadline)
            ind = (await client.get("/v1/campaigns/c1/progress/00004")).json()["indicators"][0]
            assert (ind["target"], ind["baseline"]) == (1100, 400)
            change = await _last_targets_audit(conn)
            assert (change["count"], change["changed"], change["created"]) == (1, 1, 0)
            assert change["changes"] == [
                {"unit": "00004", "indicator": "cccd_collected", "target": [1000, 1100]}
            ]
            # the same file again changes nothing, and says so
            assert await import_file(client, "targets", only, "c1", ADMIN) == []
            change = await _last_targets_audit(conn)
            assert (change["changed"], change["changes"]) == (0, [])

            # the JSON body alike; an explicit null clears the unit's deadline
            r = await client.put(
                "/v1/campaigns/c1/targets",
                json=[{"unit": "00004", "indicator": "cccd_collected", "target": 1200}],
            )
            assert r.status_code == 200, r.text
            assert await _stored(conn, "00004") == (1200, 400, deadline)
            r = await client.put(
                "/v1/campaigns/c1/targets",
                json=[{"unit": "00004", "indicator": "cccd_collected", "deadline": None}],
            )
            assert r.status_code == 200, r.text
            assert await _stored(conn, "00004") == (1200, 400, None)

            # a column the file carries states every row: a blank cell is the default
            blank = tmp_path / "blank.csv"
            blank.write_text(
                "unit,indicator,target,baseline\n00004,cccd_collected,1200,\n", encoding="utf-8"
            )
            assert await import_file(client, "targets", blank, "c1", ADMIN) == []
            assert await _stored(conn, "00004") == (1200, 0, None)

            # a date cell of the deadline column: that day in the campaign's zone, to its end
            book = Workbook()
            sheet = book.active
            assert isinstance(sheet, Worksheet)
            sheet.append(["unit", "indicator", "target", "deadline"])
            day = (START + timedelta(days=10)).date()
            sheet.append(["00007", "cccd_collected", 700, day])
            sheet["D2"].number_format = "dd/mm/yyyy"
            book.save(tmp_path / "dated.xlsx")
            assert await import_file(client, "targets", tmp_path / "dated.xlsx", "c1", ADMIN) == []
            stored_deadline = (await _stored(conn, "00007"))[2]
            assert (
                stored_deadline.isoformat()
                == (
                    datetime.fromisoformat(f"{day.isoformat()}T23:59:59+07:00").astimezone(UTC)
                ).isoformat()
            )
    finally:
        await conn.close()


def test_an_audit_list_of_changes_is_bounded() -> None:
    changes = [{"unit": f"{i:05d}", "target": [i, i + 1]} for i in range(2500)]
    details = audit.bounded(changes, limit=1000)
    assert details["changed"] == 2500
    assert details["changes"] == changes[:1000]
    assert details["changes_left_out"] == 1500
    assert details["changes_sha256"] == audit.bounded(changes)["changes_sha256"]
    assert details["changes_sha256"] != audit.bounded(changes[:-1])["changes_sha256"]
    assert len(json.dumps(details, default=str)) < 60_000


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("missing.csv", None, "missing.csv: No such file or directory"),
        ("cp1258.csv", "code,name\n01,Hà Nam\n".encode("cp1258"), "not UTF-8 text"),
        ("fake.xlsx", b"code,name\n01,x\n", "not an Excel workbook (.xlsx)"),
        ("semi.csv", b"code;name;level\n01;x;1\n", "separated by semicolons"),
    ],
)
def test_the_import_command_says_one_line_for_a_file_it_cannot_read(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | None,
    said: str,
) -> None:
    token = tmp_path / "token"
    token.write_text("tdo_x", encoding="utf-8")
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    argv = ["aggregator", "import", "units", str(path), "--token-file", str(token)]
    # (an address nothing listens on: the file is refused before any request)
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--url", "http://127.0.0.1:9"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert said in err
    assert "Traceback" not in err
    assert err.startswith(str(path))


def test_the_import_command_says_one_line_for_a_missing_token_or_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "u.csv"
    path.write_text("code,name,level\n01,Hà Nội,1\n", encoding="utf-8")
    argv = ["aggregator", "import", "units", str(path), "--url", "http://127.0.0.1:9"]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--token-file", str(tmp_path / "nope")])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("cannot read the token file"), err
    assert err.count("\n") == 1, err
    token = tmp_path / "token"
    token.write_text("tdo_x", encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--token-file", str(token)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("cannot reach the aggregator at http://127.0.0.1:9"), err
    assert err.count("\n") == 1, err
