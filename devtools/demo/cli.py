"""`python -m devtools demo …`: the demo world of `make dev` (seed, traffic, a webhook receiver)."""

import argparse
import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from devtools.demo import history, seed, traffic
from services.aggregator import admin
from services.aggregator.settings import AggregatorSettings
from services.ingest import repository as ingest_repository
from services.ingest import tokens
from services.schema import migrate_all
from tiendo.database import Connection, create_pool
from tiendo.identity import manage
from tiendo.identity import repository as identities
from tiendo.identity.model import Role
from tiendo.logs import configure_logging, get_logger

log = get_logger(__name__)


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("demo", help="demo data and traffic for make dev")
    cmds = parser.add_subparsers(dest="command", required=True)
    run = cmds.add_parser("run", help="seed Hà Nội (2025), the demo campaign, then send traffic")
    # defaults from make dev's settings, so a stack on other ports and folders needs none
    ingest_port = os.environ.get("TIENDO_INGEST_PORT", "8001")
    run.add_argument("--ingest-url", default=f"http://127.0.0.1:{ingest_port}/v1/events")
    local = Path(os.environ.get("TIENDO_DEV_LOCAL", ".local"))
    run.add_argument("--token-file", type=Path, default=local / "demo-token")
    run.add_argument(
        "--identities-dir",
        type=Path,
        default=local,
        help="where the demo reader's, admin's and auditor's secrets are written",
    )
    run.add_argument("--rate", type=float, default=20.0, help="live events per second")
    run.add_argument("--no-traffic", action="store_true", help="seed only")
    run.add_argument(
        "--history",
        action="store_true",
        default=os.environ.get("TIENDO_DEMO_HISTORY", "") not in ("", "0"),
        help="a fresh database only: Hà Nội since 2023 (2023 tree, both 2025 cut-overs) and "
        "Mệnh lệnh 01 (2023) counted, to compare with (env TIENDO_DEMO_HISTORY=1)",
    )
    run.set_defaults(func=lambda a: asyncio.run(_run(a)))
    show = cmds.add_parser(
        "showcase",
        help="the README's Units over time figures: a throwaway PostgreSQL, the demo with "
        "history at a fixed now, the leaderboard and the comparison with 2023 as Markdown",
    )
    show.set_defaults(func=lambda a: _showcase())
    sink = cmds.add_parser("webhook-sink", help="a local webhook receiver that checks signatures")
    webhook = urlsplit(os.environ.get("TIENDO_NOTIFIER_WEBHOOK_URL", "http://127.0.0.1:8009"))
    sink.add_argument("--port", type=int, default=webhook.port or 8009)
    sink.set_defaults(func=_sink)


def _demo_token(token_file: Path) -> str:
    """The demo upstream's token, kept in a git-ignored file (stored hashed in the database)."""
    if token_file.exists():
        return token_file.read_text().strip()
    token = tokens.new_token()
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return token


async def _ensure_token(conn: Connection, token: str) -> None:
    digest = tokens.digest(token)
    if await ingest_repository.find_token(conn, digest) is None:
        await ingest_repository.insert_token(conn, f"demo-{digest.hex()[:8]}", digest, [], [])


# The people of the demo, each with a secret in <identities-dir>/demo-<role>-token: HQ
# reads every unit, the administrator changes reference data, the auditor reads the log.
DEMO_IDENTITIES = (Role.reader, Role.admin, Role.auditor)


async def _ensure_identity(conn: Connection, role: Role, folder: Path) -> None:
    """The demo identity of `role`, its secret in a git-ignored file: kept while the
    database knows it, re-issued (or rotated) when the database is new."""
    path = folder / f"demo-{role}-token"
    name = f"demo-{role}"
    if path.exists():
        secret = path.read_text().strip()
        if await identities.find(conn, tokens.digest(secret)) is not None:
            return
    if await identities.exists(conn, name):
        secret = await manage.rotate(conn, name, grace_seconds=0, actor="demo")
    else:
        secret = await manage.issue(
            conn, name, role, [], all_units=role is Role.reader, actor="demo"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secret + "\n")
    path.chmod(0o600)


async def _run(args: argparse.Namespace) -> None:
    configure_logging(os.environ.get("TIENDO_LOG_LEVEL", "INFO"), json=False)
    settings = AggregatorSettings()
    pool = await create_pool(settings.database_url, max_size=2, wait_seconds=120)
    token = _demo_token(args.token_file)
    wards = seed.hanoi_communes()
    campaign = seed.demo_campaign(datetime.now(UTC))
    async with pool.acquire() as conn:
        await migrate_all(conn)
        async with conn.transaction():
            existing = await conn.fetchrow(
                "SELECT starts_at, deadline FROM campaigns WHERE id = $1", seed.CAMPAIGN_ID
            )
            fresh = not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM units)")
            if args.history and fresh:
                await history.load_trees(conn)
            elif not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM unit_transfers)"):
                await admin.upsert_units(conn, seed.hanoi_units_2025(), "demo")
            if existing is None:
                await admin.upsert_campaign(conn, seed.CAMPAIGN_ID, campaign, "demo")
                targets = history.keyed_targets(await history.keys_now(conn))
                await admin.upsert_targets(conn, seed.CAMPAIGN_ID, targets, "demo")
            else:
                # Keep the first run's window so a second `make dev` reuses the history.
                campaign = campaign.model_copy(
                    update={"starts_at": existing["starts_at"], "deadline": existing["deadline"]}
                )
            await _ensure_token(conn, token)
        if args.history and fresh:
            # after the commit: counting's batch tables empty at each commit, and batches
            # nested in one transaction (savepoints) would find the previous batch's keys
            counted = await history.seed_history_campaign(conn)
            log.info("demo_history_seeded", campaign=history.HISTORY_CAMPAIGN, events=counted)
        for role in DEMO_IDENTITIES:
            await _ensure_identity(conn, role, args.identities_dir)
    await pool.close()
    log.info(
        "demo_seeded", campaign=seed.CAMPAIGN_ID, wards=len(wards), token_file=str(args.token_file)
    )
    if not args.no_traffic:
        await traffic.run(
            args.ingest_url, token, wards, campaign.starts_at, campaign.deadline, args.rate
        )


def _showcase() -> None:
    # imported here: the demo's other commands need none of the aggregator's app
    from devtools.demo.showcase import main

    main()


def _sink(args: argparse.Namespace) -> None:
    from devtools.demo.sink import serve_sink

    serve_sink(args.port, os.environ.get("TIENDO_NOTIFIER_WEBHOOK_SECRET", "dev-webhook-secret"))
