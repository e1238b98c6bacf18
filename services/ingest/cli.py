"""`tiendo ingest …`: run the service, manage upstream tokens."""

import argparse
import asyncio
import json

from services.ingest import repository, tokens
from services.ingest.settings import IngestSettings
from tiendo.database import create_pool, migrate


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("ingest", help="the ingest service and its tokens")
    cmds = parser.add_subparsers(dest="command", required=True)
    cmds.add_parser("serve", help="run the HTTP service").set_defaults(func=_serve)
    create = cmds.add_parser("token-create", help="issue a token (printed once, stored hashed)")
    create.add_argument("name")
    create.add_argument("--units", nargs="*", default=[], help="unit subtrees it may write")
    create.add_argument("--indicators", nargs="*", default=[], help="indicators it may write")
    create.add_argument("--actor", default="cli", help="who issues it (audit log)")
    create.set_defaults(func=lambda a: asyncio.run(_create(a)))
    revoke = cmds.add_parser("token-revoke", help="revoke a token by name")
    revoke.add_argument("name")
    revoke.add_argument("--actor", default="cli")
    revoke.set_defaults(func=lambda a: asyncio.run(_revoke(a)))
    cmds.add_parser("token-list", help="list tokens").set_defaults(
        func=lambda a: asyncio.run(_list(a))
    )


def _serve(_: argparse.Namespace) -> None:
    from services.ingest.app import create_app
    from tiendo.serve import serve

    settings = IngestSettings()
    serve(create_app(settings), settings)


async def _create(args: argparse.Namespace) -> None:
    settings = IngestSettings()
    token = tokens.new_token()
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, "tiendo", "tiendo")
            await migrate(conn, "ingest", "services.ingest")
            async with conn.transaction():
                exists = await conn.fetchval(
                    "SELECT 1 FROM ingest_tokens WHERE name = $1", args.name
                )
                if exists:
                    raise SystemExit(f"a token named {args.name} already exists")
                await repository.insert_token(
                    conn, args.name, tokens.digest(token), args.units, args.indicators
                )
                await repository.audit(
                    conn,
                    args.actor,
                    "token.create",
                    args.name,
                    json.dumps({"units": args.units, "indicators": args.indicators}),
                )
    finally:
        await pool.close()
    print(token)  # noqa: T201 - the one time the token is shown


async def _revoke(args: argparse.Namespace) -> None:
    settings = IngestSettings()
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            if not await repository.revoke_token(conn, args.name):
                raise SystemExit(f"no active token named {args.name}")
            await repository.audit(conn, args.actor, "token.revoke", args.name, "{}")
    finally:
        await pool.close()


async def _list(_: argparse.Namespace) -> None:
    settings = IngestSettings()
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            for r in await repository.list_tokens(conn):
                state = "revoked" if r["revoked_at"] else "active"
                print(  # noqa: T201 - CLI output
                    f"{r['name']}\t{state}\tunits={list(r['units'])}\t"
                    f"indicators={list(r['indicators'])}\tcreated={r['created_at']:%Y-%m-%d}"
                )
    finally:
        await pool.close()
