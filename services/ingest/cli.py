"""`tiendo ingest …`: run the service, manage upstream tokens.

Token commands write PostgreSQL only; a running ingest picks the change up within
TIENDO_INGEST_TOKEN_REFRESH_SECONDS (a new token on its first use), no restart needed.
Every change is recorded in audit_log with the acting person (--actor, default the OS
user). A token is printed once, on stdout alone, and only its SHA-256 is stored.
"""

import argparse
import functools
import json
import sys
from collections.abc import Awaitable, Callable

from services.ingest import MIGRATIONS, repository, tokens
from services.ingest.settings import IngestSettings
from tiendo import audit
from tiendo.database import Connection
from tiendo.identity.cli import add_actor, add_lifecycle, connected


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("ingest", help="the ingest service and its tokens")
    cmds = parser.add_subparsers(dest="command", required=True)
    cmds.add_parser("serve", help="run the HTTP service").set_defaults(func=_serve)

    create = cmds.add_parser(
        "token-create", help="issue a token for an upstream system (printed once, stored hashed)"
    )
    create.add_argument(
        "name",
        help="the upstream system, e.g. vneid-hanoi (never reused; at most "
        f"{tokens.MAX_TOKEN_NAME_LENGTH} characters)",
    )
    units = create.add_mutually_exclusive_group(required=True)
    units.add_argument("--units", nargs="+", metavar="CODE", help="unit subtrees it may write")
    units.add_argument("--all-units", action="store_true", help="it may write for every unit")
    indicators = create.add_mutually_exclusive_group(required=True)
    indicators.add_argument(
        "--indicators", nargs="+", metavar="CODE", help="indicators it may write"
    )
    indicators.add_argument(
        "--all-indicators", action="store_true", help="it may write every indicator"
    )
    add_actor(create)
    create.set_defaults(func=_runner(_create))

    add_lifecycle(
        cmds,
        rotate=(
            "token-rotate",
            "replace a token's secret (the new one is printed once)",
            _runner(_rotate),
        ),
        revoke=("token-revoke", "revoke a token for good", _runner(_revoke)),
    )

    listing = cmds.add_parser("token-list", help="list tokens (never their secrets)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_runner(_list))


def _serve(_: argparse.Namespace) -> None:
    from services.ingest.app import create_app
    from tiendo.serve import serve_workers

    settings = IngestSettings()
    # each worker builds its own app (and pool, producer, loops) from these settings
    serve_workers(functools.partial(create_app, settings), settings, settings.workers)


def _runner(
    command: Callable[[Connection, argparse.Namespace], Awaitable[None]],
) -> Callable[[argparse.Namespace], None]:
    return connected(lambda: IngestSettings().database_url, MIGRATIONS, command)


def _fail(message: str) -> None:
    raise SystemExit(f"tiendo ingest: {message}")


async def _create(conn: Connection, args: argparse.Namespace) -> None:
    units: list[str] = [] if args.all_units else list(dict.fromkeys(args.units))
    indicators: list[str] = [] if args.all_indicators else list(dict.fromkeys(args.indicators))
    token = tokens.new_token()
    # the name is stored with every event the token sends (`source`), and logged
    if problem := tokens.name_problem(args.name):
        _fail(problem)
    async with conn.transaction():
        if await repository.token_exists(conn, args.name):
            _fail(f"a token named {args.name} already exists (names are never reused)")
        # A typo would make a token that can write nothing; say so now, not at 403 time.
        if missing := await repository.unknown_units(conn, units):
            _fail(f"unknown unit code(s): {', '.join(missing)} (load the unit tree first)")
        if missing := await repository.unknown_indicators(conn, indicators):
            _fail(f"unknown indicator(s): {', '.join(missing)}")
        await repository.insert_token(conn, args.name, tokens.digest(token), units, indicators)
        await audit.record(
            conn,
            actor=args.actor,
            action="ingest.token.create",
            subject=args.name,
            details={"units": units or "all", "indicators": indicators or "all"},
        )
    print(token)  # noqa: T201 - the one time the token is shown


async def _rotate(conn: Connection, args: argparse.Namespace) -> None:
    if args.grace < 0:
        _fail("--grace must be 0 or more seconds")
    token = tokens.new_token()
    async with conn.transaction():
        if not await repository.rotate_token(conn, args.name, tokens.digest(token), args.grace):
            _fail(f"no active token named {args.name}")
        await audit.record(
            conn,
            actor=args.actor,
            action="ingest.token.rotate",
            subject=args.name,
            details={"grace": args.grace},
        )
    print(token)  # noqa: T201 - the one time the token is shown


async def _revoke(conn: Connection, args: argparse.Namespace) -> None:
    async with conn.transaction():
        if not await repository.revoke_token(conn, args.name):
            _fail(f"no active token named {args.name}")
        await audit.record(
            conn, actor=args.actor, action="ingest.token.revoke", subject=args.name, details={}
        )
    print(  # noqa: T201 - CLI output
        f"revoked {args.name}; ingest refuses it within "
        f"{IngestSettings().token_refresh_seconds:g} s",
        file=sys.stderr,
    )


async def _list(conn: Connection, args: argparse.Namespace) -> None:
    for r in await repository.list_tokens(conn):
        if r["revoked_at"]:
            state = "revoked"
        elif r["previous_valid_until"]:
            state = "rotating"  # the old secret still works, until old_secret_valid_until
        else:
            state = "active"
        units = ",".join(r["units"]) or "all"
        indicators = ",".join(r["indicators"]) or "all"
        # enough to tell which token a leaked one is (its sha256), not to use it
        fingerprint = bytes(r["token_sha256"]).hex()[:12]
        if not args.json:
            print(  # noqa: T201 - CLI output
                f"{r['name']}\t{state}\t{fingerprint}\tunits={units}\t"
                f"indicators={indicators}\tcreated={r['created_at']:%Y-%m-%d}"
            )
            continue
        row = {
            "name": r["name"],
            "state": state,
            "fingerprint": fingerprint,
            "units": list(r["units"]) or "all",
            "indicators": list(r["indicators"]) or "all",
            **{
                key: r[column].isoformat() if r[column] else None
                for key, column in (
                    ("created_at", "created_at"),
                    ("rotated_at", "rotated_at"),
                    ("old_secret_valid_until", "previous_valid_until"),
                    ("revoked_at", "revoked_at"),
                )
            },
        }
        print(json.dumps(row))  # noqa: T201 - CLI output
