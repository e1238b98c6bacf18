"""`tiendo aggregator …`: run the service, import spreadsheets, rebuild, dead letters.
A rebuild and a re-drive change the counters outside the admin API: each is recorded in the
audit log under `--actor` (default the OS user)."""

import argparse
import asyncio
import os
import sys
from datetime import date, datetime
from pathlib import Path

import httpx
from tqdm import tqdm

from services.aggregator.settings import AggregatorSettings
from tiendo import eventloop
from tiendo.identity.cli import add_actor
from tiendo.identity.token_file import add_token_file, token_of


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("aggregator", help="the aggregator service and its admin tasks")
    cmds = parser.add_subparsers(dest="command", required=True)
    cmds.add_parser("serve", help="run consumer and HTTP API").set_defaults(func=_serve)

    imp = cmds.add_parser("import", help="import units or targets from CSV/XLSX via the API")
    imp.add_argument("what", choices=["units", "targets"])
    imp.add_argument("file", type=Path)
    imp.add_argument("--campaign", help="campaign id (targets)")
    imp.add_argument(
        "--valid-from",
        type=date.fromisoformat,
        help="units: the file is the whole tree in force from this day (YYYY-MM-DD), a new "
        "version of the tree; without it, corrections to the tree in force",
    )
    imp.add_argument(
        "--crosswalk",
        type=Path,
        help="with --valid-from: old_code,new_code,transfer[,share] for every unit closed",
    )
    imp.add_argument(
        "--grace-days",
        type=int,
        default=90,
        help="with --valid-from: days a retired code that went whole is still accepted",
    )
    imp.add_argument(
        "--url", default=os.environ.get("TIENDO_AGGREGATOR_URL", "http://127.0.0.1:8002")
    )
    add_token_file(imp)
    imp.set_defaults(func=lambda a: sys.exit(_run_import(a)))

    reb = cmds.add_parser("rebuild", help="recompute every counter from the events topic")
    reb.add_argument(
        "--since",
        type=datetime.fromisoformat,
        help="RFC 3339: replay from this moment only (default: from the start)",
    )
    add_actor(reb)
    reb.set_defaults(func=lambda a: eventloop.run(_rebuild(a)))

    dl = cmds.add_parser("dead-letters", help="list events that could not be applied")
    dl.add_argument("--all", action="store_true", help="include re-driven ones")
    dl.add_argument("--limit", type=int, default=100)
    dl.set_defaults(func=lambda a: asyncio.run(_dead_letters(a)))
    rd = cmds.add_parser("redrive", help="publish dead letters again once the cause is fixed")
    rd.add_argument("--limit", type=int, default=10_000)
    add_actor(rd)
    rd.set_defaults(func=lambda a: asyncio.run(_redrive(a)))


def _serve(_: argparse.Namespace) -> None:
    from services.aggregator.app import create_app
    from tiendo.serve import serve

    settings = AggregatorSettings()
    serve(create_app(settings), settings)


async def import_file(
    client: httpx.AsyncClient, what: str, path: Path, campaign: str | None, admin_token: str
) -> list[str]:
    """Validate every row, then send the whole file in one request (all or nothing).
    Returns the problems (empty when imported); a file that cannot be read is one."""
    from services.aggregator import importing

    auth = {"Authorization": f"Bearer {admin_token}"}
    if what != "units" and not campaign:
        return ["--campaign is required to import targets"]
    try:
        rows = list(importing.read_rows(path))
    except importing.SheetError as exc:
        return [f"{exc}; nothing was imported"]
    with tqdm(
        total=len(rows), desc=f"checking {path.name}", unit="row", disable=len(rows) < 2000
    ) as bar:
        if what == "units":
            units, errors = importing.parse_units(rows, bar.update)
            body: list[dict[str, object]] = [u.model_dump(mode="json") for u in units]
            url = "/v1/units"
        else:
            # a date cell of `deadline` is a day in the campaign's time zone
            zone = await _campaign_zone(client, str(campaign), auth)
            targets, errors = importing.parse_targets(rows, bar.update, zone=zone)
            # only the columns the file has: the others keep their stored values
            body = [t.model_dump(mode="json", exclude_unset=True) for t in targets]
            url = f"/v1/campaigns/{campaign}/targets"
    if errors:
        return [str(e) for e in errors] + [f"{len(errors)} problem(s); nothing was imported"]
    response = await client.put(url, json=body, headers=auth)
    if response.status_code != 200:
        lines = [line for line, _ in rows]
        return [*server_problems(response, what, lines), "nothing was imported"]
    return []


async def _campaign_zone(
    client: httpx.AsyncClient, campaign: str, auth: dict[str, str]
) -> str | None:
    """The campaign's time zone, or None when it cannot be read (no such campaign yet:
    the server refuses the file then; date cells are refused meanwhile)."""
    response = await client.get(f"/v1/campaigns/{campaign}", headers=auth)
    if response.status_code != 200:
        return None
    zone = response.json().get("timezone")
    return zone if isinstance(zone, str) else None


def server_problems(response: httpx.Response, what: str, lines: list[int]) -> list[str]:
    """The server's refusal, one line per problem it listed; a problem of the i-th item
    sent names that row's line in the file."""
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        errors = []
    if not errors:
        return [f"the server refused the file ({response.status_code}): {response.text}"]
    return [
        (f"line {lines[e['index']]}: " if e.get("index") is not None else f"{what}: ")
        + (f"{e['field']}: " if e.get("field") else "")
        + str(e.get("message"))
        for e in errors
    ]


async def import_tree_version(
    client: httpx.AsyncClient,
    path: Path,
    crosswalk: Path | None,
    valid_from: date,
    grace_days: int,
    admin_token: str,
) -> list[str]:
    """Check both files row by row, then send them in one request: the server loads the
    tree version whole or refuses it, naming every bad row. Returns the problems."""
    from services.aggregator import importing

    try:
        unit_rows = list(importing.read_rows(path))
        cross_rows = list(importing.read_rows(crosswalk)) if crosswalk else []
    except importing.SheetError as exc:
        return [f"{exc}; nothing was imported"]
    units, errors = importing.parse_tree_units(unit_rows)
    moves, cross_errors = importing.parse_crosswalk(cross_rows)
    problems = [f"{path.name}: {e}" for e in errors]
    problems += [f"{crosswalk.name if crosswalk else ''}: {e}" for e in cross_errors]
    if problems:
        return [*problems, f"{len(problems)} problem(s); nothing was imported"]
    response = await client.put(
        f"/v1/admin/tree-versions/{valid_from.isoformat()}",
        json={
            "units": [u.model_dump(mode="json") for u in units],
            "crosswalk": [m.model_dump(mode="json") for m in moves],
            "grace_days": grace_days,
        },
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    if response.status_code == 200:
        return []
    files = {
        "units": (path.name, [line for line, _ in unit_rows]),
        "crosswalk": (
            crosswalk.name if crosswalk else "crosswalk",
            [line for line, _ in cross_rows],
        ),
    }
    try:
        listed = response.json().get("errors") or []
    except ValueError:
        listed = []
    if not listed:
        return [f"the server refused the files ({response.status_code}): {response.text}"]
    out = []
    for e in listed:
        name, lines = files.get(e.get("field"), ("", []))
        index = e.get("index")
        where = f"{name} line {lines[index]}" if index is not None and index < len(lines) else name
        out.append(f"{where}: {e.get('message')}")
    return [*out, "nothing was imported"]


def _run_import(args: argparse.Namespace) -> int:
    try:
        token = token_of(args)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read the token file {args.token_file}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return asyncio.run(_import(args, token))


async def _import(args: argparse.Namespace, token: str) -> int:
    """The import command: its problems one a line on stderr, and 1; never a traceback
    for a file it cannot read or a server it cannot reach."""
    try:
        problems = await _import_problems(args, token)
    except httpx.HTTPError as exc:
        problems = [f"cannot reach the aggregator at {args.url}: {exc or type(exc).__name__}"]
    for p in problems:
        print(p, file=sys.stderr)  # noqa: T201
    if not problems:
        print(f"imported {args.file}")  # noqa: T201
    return 1 if problems else 0


async def _import_problems(args: argparse.Namespace, token: str) -> list[str]:
    async with httpx.AsyncClient(base_url=args.url, timeout=300) as client:
        if args.valid_from is not None and args.what == "units":
            return await import_tree_version(
                client, args.file, args.crosswalk, args.valid_from, args.grace_days, token
            )
        if args.valid_from is not None or args.crosswalk is not None:
            return [
                "--valid-from and --crosswalk are for a units file; --crosswalk needs --valid-from"
            ]
        return await import_file(client, args.what, args.file, args.campaign, token)


async def _rebuild(args: argparse.Namespace) -> None:
    from services.aggregator.rebuild import rebuild
    from tiendo.logs import configure_logging

    settings = AggregatorSettings()
    configure_logging(settings.log_level, json=settings.environment == "production")
    report = await rebuild(settings, args.since, actor=args.actor)
    print(  # noqa: T201 - CLI output
        f"rebuilt {report.events} events from {report.records} records "
        f"in {report.seconds:.1f} s ({report.events_per_second:,.0f} records/s)"
    )


async def _dead_letters(args: argparse.Namespace) -> None:
    from services.aggregator import deadletters
    from tiendo.database import create_pool

    pool = await create_pool(AggregatorSettings().database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            letters = await deadletters.pending(conn, include_redriven=args.all, limit=args.limit)
    finally:
        await pool.close()
    for d in letters:
        print(  # noqa: T201 - CLI output
            f"{d.partition}:{d.offset}\t{d.created_at:%Y-%m-%d %H:%M}\t"
            f"{d.event_id or '-'}\t{d.reason}"
            + (f"\tre-driven {d.redriven_at:%Y-%m-%d %H:%M}" if d.redriven_at else "")
        )


async def _redrive(args: argparse.Namespace) -> None:
    from services.aggregator import deadletters
    from tiendo.database import create_pool
    from tiendo.kafka import reliable_producer

    settings = AggregatorSettings()
    pool = await create_pool(settings.database_url, max_size=1)
    producer = reliable_producer(settings.kafka_bootstrap, client_id="tiendo-redrive")
    await producer.start()
    try:
        async with pool.acquire() as conn, conn.transaction():
            letters = await deadletters.pending(conn, limit=args.limit)
            sent, skipped = await deadletters.redrive(
                conn, producer, settings.topic_events, letters, actor=args.actor
            )
    finally:
        await producer.stop()
        await pool.close()
    print(f"re-driven {sent}; skipped {len(skipped)}")  # noqa: T201
    for s in skipped:
        print(f"  skipped {s}")  # noqa: T201
