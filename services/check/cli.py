"""`tiendo check`: compare what people act on with the one state; exit 1 on any
disagreement (docs/check.md)."""

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime

from services.notifier.settings import NotifierSettings


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser(
        "check",
        help="compare live progress with history, and alerts with the board (read only)",
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("TIENDO_AGGREGATOR_DATABASE_URL"),
        help="PostgreSQL DSN (default: TIENDO_AGGREGATOR_DATABASE_URL, else the notifier's)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="seconds between the two rounds (a notifier pass happens in between)",
    )
    parser.set_defaults(func=lambda a: sys.exit(asyncio.run(_check(a))))


async def _check(args: argparse.Namespace) -> int:
    from services.check.run import check

    settings = NotifierSettings()
    result = await check(
        args.dsn or settings.database_url, settings, args.settle, datetime.now(UTC)
    )
    for d in result.disagreements:
        print(d)  # noqa: T201
    print(  # noqa: T201
        f"checked {result.keys} judged keys and {result.alerts} open alerts: "
        f"{len(result.disagreements)} disagreements"
    )
    return 1 if result.disagreements else 0
