"""`tiendo notifier …`: run the service, import chiefs' contacts, manage webhook secrets,
send failed messages again, render a weekly briefing pack.

Webhook secret commands write PostgreSQL only; the notifier reads an endpoint's secrets at
every send, so a new, rotated or retired secret applies from the next message, no restart
needed. A secret is printed once, on stdout alone; every change is audited without it.
"""

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from services.notifier import MIGRATIONS, webhook_secrets
from services.notifier.languages import LANGUAGES
from services.notifier.repository import deliveries as delivery_sql
from services.notifier.repository import secrets as secret_sql
from services.notifier.settings import NotifierSettings
from tiendo import audit
from tiendo.database import Connection, create_pool
from tiendo.identity.cli import add_actor
from tiendo.identity.token_file import add_token_file, token_of

if TYPE_CHECKING:
    from services.notifier.briefing.pack import Document


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("notifier", help="the notifier service and its contacts")
    cmds = parser.add_subparsers(dest="command", required=True)
    cmds.add_parser("serve", help="run feed consumer, evaluator and delivery").set_defaults(
        func=_serve
    )
    _add_webhook_secret_commands(cmds)
    _add_redrive_command(cmds)
    imp = cmds.add_parser("import", help="import chiefs' contacts from CSV/XLSX via the API")
    imp.add_argument("what", choices=["contacts"])
    imp.add_argument("file", type=Path)
    imp.add_argument(
        "--url", default=os.environ.get("TIENDO_NOTIFIER_URL", "http://127.0.0.1:8003")
    )
    add_token_file(imp)
    imp.set_defaults(func=lambda a: sys.exit(asyncio.run(_import(a))))
    brief = cmds.add_parser(
        "briefing", help="render a weekly briefing pack (docs/briefing.md) to a file"
    )
    brief.add_argument("campaign")
    brief.add_argument("--at", type=datetime.fromisoformat, help="briefing moment (RFC 3339)")
    brief.add_argument(
        "--level",
        type=int,
        help="unit level (default: the bottom_rank level, or the deepest with a target)",
    )
    brief.add_argument("--format", choices=("pdf", "xlsx", "html"), default="pdf")
    brief.add_argument("--lang", choices=LANGUAGES, help="default: the campaign's language")
    brief.add_argument("--indicator", action="append", help="only this indicator (repeatable)")
    brief.add_argument("--out", type=Path, help="file to write (default: the pack's name)")
    brief.set_defaults(func=_write_briefing)


def _serve(_: argparse.Namespace) -> None:
    from services.notifier.app import create_app
    from tiendo.serve import serve

    settings = NotifierSettings()
    serve(create_app(settings), settings)


def _add_webhook_secret_commands(
    cmds: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> None:
    parser = cmds.add_parser(
        "webhook-secret", help="signing secrets of webhook endpoints (Standard Webhooks)"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create", help="issue an endpoint's first secret (printed once, on stdout)"
    )
    rotate = actions.add_parser(
        "rotate", help="issue a new secret; the old one also signs for --overlap"
    )
    rotate.add_argument(
        "--overlap",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="how long messages carry the old secret's signature too (default 1 day)",
    )
    retire = actions.add_parser("retire", help="end the overlap now: only the new secret signs")
    listing = actions.add_parser("list", help="endpoints and their secrets' dates (not secrets)")
    for command, run in ((create, _create), (rotate, _rotate), (retire, _retire)):
        endpoint = command.add_mutually_exclusive_group(required=True)
        endpoint.add_argument("--unit", metavar="CODE", help="the unit chief's webhook")
        endpoint.add_argument("--url", help="a webhook URL, e.g. TIENDO_NOTIFIER_WEBHOOK_URL")
        add_actor(command)
        command.set_defaults(func=_with_database(run))
    listing.add_argument("--url", help="only this endpoint")
    listing.set_defaults(func=_with_database(_list))


def _add_redrive_command(cmds: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    redrive = cmds.add_parser(
        "redrive",
        help="send failed messages again, each with the full number of attempts",
        description="Queue `failed` messages again, due now, to the recipient's contact as "
        "it is now; each gets TIENDO_NOTIFIER_DELIVERY_ATTEMPTS attempts again. Messages "
        "that never had an address (channel `none`) stay as they are. Audited.",
    )
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--id", type=int, action="append", dest="ids", metavar="ID", help="this one (repeatable)"
    )
    which.add_argument(
        "--since",
        type=_moment,
        metavar="MOMENT",
        help="those failed at or after MOMENT (RFC 3339 with an offset), e.g. an outage's start",
    )
    which.add_argument("--all", action="store_true", help="every failed message")
    add_actor(redrive)
    redrive.set_defaults(func=_with_database(_redrive))


def _moment(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 moment: {text!r}") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset (say +07:00 or Z)")
    return at


async def _redrive(conn: Connection, args: argparse.Namespace) -> None:
    """Queue the chosen failed messages again and audit it, in one transaction."""
    async with conn.transaction():
        taken = await delivery_sql.redrive(conn, args.ids, args.since)
        if taken:
            changes = [
                {"id": r["id"], "delivery_id": r["dedup_key"], "channel": r["channel"]}
                for r in taken
            ]
            await audit.record(
                conn,
                actor=args.actor,
                action="notifications.redrive",
                subject="notifications",
                details={
                    "ids": args.ids,
                    "since": args.since,
                    "all": args.all,
                    **audit.bounded(changes),
                },
            )
    print(f"{len(taken)} failed message(s) queued again", file=sys.stderr)  # noqa: T201
    missing = sorted(set(args.ids or ()) - {r["id"] for r in taken})
    if missing:
        print(  # noqa: T201
            "not failed (or no such message, or no address): " + ", ".join(str(i) for i in missing),
            file=sys.stderr,
        )


def _with_database(
    command: Callable[[Connection, argparse.Namespace], Awaitable[None]],
) -> Callable[[argparse.Namespace], None]:
    async def run(args: argparse.Namespace) -> None:
        pool = await create_pool(NotifierSettings().database_url, max_size=1)
        try:
            async with pool.acquire() as conn:
                await MIGRATIONS.apply(conn)
                await command(conn, args)
        except webhook_secrets.SecretError as exc:
            raise SystemExit(f"tiendo notifier webhook-secret: {exc}") from None
        finally:
            await pool.close()

    return lambda args: asyncio.run(run(args))


async def _endpoint(conn: Connection, args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    url = await secret_sql.webhook_of_unit(conn, args.unit)
    if url is None:
        raise webhook_secrets.SecretError(f"unit {args.unit} has no webhook contact")
    return url


def _show_once(endpoint: str, secret: str) -> None:
    print(secret)  # noqa: T201 - the one time the secret is shown
    print(f"secret for {endpoint}: give it to its receiver now", file=sys.stderr)  # noqa: T201


async def _create(conn: Connection, args: argparse.Namespace) -> None:
    endpoint = await _endpoint(conn, args)
    _show_once(endpoint, await webhook_secrets.create(conn, endpoint, args.actor))


async def _rotate(conn: Connection, args: argparse.Namespace) -> None:
    if args.overlap < 0:
        raise webhook_secrets.SecretError("--overlap must be 0 or more seconds")
    endpoint = await _endpoint(conn, args)
    overlap = timedelta(seconds=args.overlap)
    _show_once(endpoint, await webhook_secrets.rotate(conn, endpoint, overlap, args.actor))


async def _retire(conn: Connection, args: argparse.Namespace) -> None:
    endpoint = await _endpoint(conn, args)
    retired = await webhook_secrets.retire(conn, endpoint, args.actor)
    print(f"{endpoint}: {retired} old secret(s) retired", file=sys.stderr)  # noqa: T201


async def _list(conn: Connection, args: argparse.Namespace) -> None:
    for s in await secret_sql.listing(conn, args.url):
        state = f"retires {s.retires_at:%Y-%m-%dT%H:%M:%S%z}" if s.retires_at else "current"
        print(  # noqa: T201 - CLI output
            f"{s.endpoint}\t{s.id}\t{state}\tcreated={s.created_at:%Y-%m-%d} by {s.created_by}"
        )


async def import_contacts(client: httpx.AsyncClient, path: Path, admin_token: str) -> list[str]:
    """Check every row, then send the whole file in one request (all or nothing).
    Returns the problems (empty when imported)."""
    from services.notifier.importing import parse_contacts
    from tiendo.sheets import read_rows

    parsed, errors = parse_contacts(read_rows(path))
    if errors:
        return [str(e) for e in errors] + [f"{len(errors)} problem(s); nothing was imported"]
    response = await client.put(
        "/v1/contacts",
        json=[u.model_dump(mode="json") for u in parsed.units],
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    if response.status_code == 200:
        return []
    try:
        problems = response.json().get("errors") or []
    except ValueError:
        problems = []
    if not problems:
        return [f"the server refused the file ({response.status_code}): {response.text}"]
    located = sorted((parsed.line_of(p) or 0, str(p.get("message"))) for p in problems)
    return [f"line {line or '?'}: {message}" for line, message in located] + [
        "nothing was imported"
    ]


async def _import(args: argparse.Namespace) -> int:
    async with httpx.AsyncClient(base_url=args.url, timeout=300) as client:
        problems = await import_contacts(client, args.file, token_of(args))
    for p in problems:
        print(p, file=sys.stderr)  # noqa: T201
    if not problems:
        print(f"imported {args.file}")  # noqa: T201
    return 1 if problems else 0


def _write_briefing(args: argparse.Namespace) -> None:
    from services.notifier.briefing.pack import Unanswered
    from services.notifier.recounting import BeingRecounted

    try:
        document = asyncio.run(_briefing(args))
    except (LookupError, Unanswered, BeingRecounted) as exc:
        # what the route answers 404, 422 or 503, said without a traceback
        raise SystemExit(f"tiendo notifier briefing: {exc}") from None
    out: Path = args.out or Path(document.filename)
    out.write_bytes(document.body)
    print(f"{out} ({len(document.body):,} bytes)")  # noqa: T201


async def _briefing(args: argparse.Namespace) -> "Document":
    import asyncpg

    from services.notifier.briefing.pack import briefing_pack

    settings = NotifierSettings()
    conn = await asyncpg.connect(settings.database_url)
    try:
        document = await briefing_pack(
            conn,
            settings,
            args.campaign,
            at=args.at,
            now=datetime.now(UTC),
            level=args.level,
            language=args.lang,
            fmt=args.format,
            indicators=args.indicator,
        )
    finally:
        await conn.close()
    return document
