"""`tiendo identity …`: issue, list, rotate and revoke the identities of people and systems
that read and administer tiendo. Writes PostgreSQL only; running services pick a change up
within TIENDO_<SERVICE>_IDENTITY_REFRESH_SECONDS (a new identity on its first use). A secret
is printed once, on stdout alone; only its SHA-256 is stored."""

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tiendo import audit
from tiendo.database import Connection, Migrations, create_pool
from tiendo.identity import manage, repository
from tiendo.identity.model import Role

Command = Callable[[Connection, argparse.Namespace], Awaitable[None]]
T = TypeVar("T")


def add_commands(
    sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
    database_url: Callable[[], str],
    migrations: Migrations,
) -> None:
    """The `identity` command group, on the database `database_url()` names."""
    parser = sub.add_parser("identity", help="people and systems that read and administer")
    cmds = parser.add_subparsers(dest="command", required=True)

    def runner(command: Command) -> Callable[[argparse.Namespace], None]:
        return connected(database_url, migrations, command)

    create = cmds.add_parser("create", help="issue an identity (its secret printed once)")
    create.add_argument("name", help="the person or system, e.g. chief-00004 (never reused)")
    create.add_argument("--role", required=True, choices=["reader", "admin", "auditor"])
    scope = create.add_mutually_exclusive_group()
    scope.add_argument(
        "--units",
        nargs="+",
        default=[],
        metavar="CODE",
        help="subtrees it reads: official codes in force now, or version keys CODE@DAY",
    )
    scope.add_argument("--all-units", action="store_true", help="a reader of every unit (HQ)")
    add_actor(create)
    create.set_defaults(func=runner(_create))

    add_lifecycle(
        cmds,
        rotate=("rotate", "replace a secret (the new one printed once)", runner(_rotate)),
        revoke=("revoke", "revoke an identity for good", runner(_revoke)),
    )

    listing = cmds.add_parser("list", help="list identities (never their secrets)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=runner(_list))


def connected(
    database_url: Callable[[], str], migrations: Migrations, command: Command
) -> Callable[[argparse.Namespace], None]:
    """A command run on one connection to `database_url()`, its migrations applied first."""

    async def with_connection(args: argparse.Namespace) -> None:
        pool = await create_pool(database_url(), max_size=1)
        try:
            async with pool.acquire() as conn:
                await migrations.apply(conn)
                await command(conn, args)
        finally:
            await pool.close()

    return lambda args: asyncio.run(with_connection(args))


Subcommand = tuple[str, str, Callable[[argparse.Namespace], None]]


def add_lifecycle(
    cmds: "argparse._SubParsersAction[argparse.ArgumentParser]",
    *,
    rotate: Subcommand,
    revoke: Subcommand,
) -> None:
    """The rotate and revoke commands (name, help, function) of a kind of secret: identities
    and ingest's tokens rotate with the same grace and record the same actor."""
    name, help_text, func = rotate
    parser = cmds.add_parser(name, help=help_text)
    parser.add_argument("name")
    parser.add_argument(
        "--grace",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long the old secret keeps working (default 0: refused at once)",
    )
    add_actor(parser)
    parser.set_defaults(func=func)
    name, help_text, func = revoke
    parser = cmds.add_parser(name, help=help_text)
    parser.add_argument("name")
    add_actor(parser)
    parser.set_defaults(func=func)


def add_actor(parser: argparse.ArgumentParser) -> None:
    """`--actor`: who does this, for the audit log (default the OS user, never empty)."""
    parser.add_argument(
        "--actor",
        type=_actor,
        default=audit.default_actor(),
        help="who does this, for the audit log (default: the OS user, or SUDO_USER)",
    )


def _actor(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("name who does this (the audit log keeps it)")
    return text


async def _refusing(call: Awaitable[T]) -> T:
    try:
        return await call
    except manage.IdentityRefused as exc:
        raise SystemExit(f"tiendo identity: {exc}") from exc


async def _create(conn: Connection, args: argparse.Namespace) -> None:
    issued = await _refusing(
        manage.create(
            conn, args.name, Role(args.role), args.units, all_units=args.all_units, actor=args.actor
        )
    )
    # stdout holds the secret alone (scripts capture it); the scope stored goes to stderr,
    # so the operator sees which version each code became
    scope = ", ".join(f"{key} ({unit})" for key, unit in issued.units.items())
    print(f"{args.name}: {args.role} of {scope or 'every unit'}", file=sys.stderr)  # noqa: T201
    print(issued.secret)  # noqa: T201 - the one time the secret is shown


async def _rotate(conn: Connection, args: argparse.Namespace) -> None:
    secret = await _refusing(
        manage.rotate(conn, args.name, grace_seconds=args.grace, actor=args.actor)
    )
    print(secret)  # noqa: T201 - the one time the secret is shown


async def _revoke(conn: Connection, args: argparse.Namespace) -> None:
    await _refusing(manage.revoke(conn, args.name, actor=args.actor))


async def _list(conn: Connection, args: argparse.Namespace) -> None:
    for r in await repository.listing(conn):
        units = ",".join(r.units) or "all"
        if args.json:
            row = {**dataclasses.asdict(r), "units": r.units or "all"}
            print(json.dumps(row, default=str))  # noqa: T201 - CLI output
        else:
            print(  # noqa: T201 - CLI output
                f"{r.name}\t{r.role}\t{r.state}\t{r.fingerprint}\tunits={units}\t"
                f"created={r.created_at:%Y-%m-%d}"
            )
