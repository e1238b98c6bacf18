"""Token names are bounded (`tokens.MAX_TOKEN_NAME_LENGTH`, 100): the name is copied into
every event the token sends (`source`), so `token-create` refuses a longer one with a clear
reason, without echoing it, and stores nothing."""

import asyncio
import json

import pytest

from services.cli import main
from services.ingest.tokens import MAX_TOKEN_NAME_LENGTH, name_problem


async def tiendo(*argv: str) -> None:
    await asyncio.to_thread(main, list(argv))


@pytest.mark.parametrize("name", ["", "   ", "x" * (MAX_TOKEN_NAME_LENGTH + 1)])
def test_a_blank_or_over_long_name_has_a_problem(name: str) -> None:
    problem = name_problem(name)
    assert problem is not None
    assert name.strip() == "" or name not in problem


def test_a_name_of_the_bound_is_fine() -> None:
    assert MAX_TOKEN_NAME_LENGTH == 100
    assert name_problem("v" * MAX_TOKEN_NAME_LENGTH) is None
    assert name_problem("vneid-hanoi") is None


async def test_token_create_refuses_an_over_long_name_and_stores_nothing(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIENDO_INGEST_DATABASE_URL", database)
    long_name = "upstream-" + "x" * 10_000
    with pytest.raises(SystemExit, match=f"at most {MAX_TOKEN_NAME_LENGTH} characters") as info:
        await tiendo("ingest", "token-create", long_name, "--all-units", "--all-indicators")
    assert long_name not in str(info.value)
    with pytest.raises(SystemExit, match="blank"):
        await tiendo("ingest", "token-create", " ", "--all-units", "--all-indicators")
    fits = "u" * MAX_TOKEN_NAME_LENGTH
    capsys.readouterr()
    await tiendo("ingest", "token-create", fits, "--all-units", "--all-indicators")
    assert capsys.readouterr().out.strip()
    await tiendo("ingest", "token-list", "--json")
    listing = capsys.readouterr().out
    assert [json.loads(line)["name"] for line in listing.splitlines()] == [fits]
