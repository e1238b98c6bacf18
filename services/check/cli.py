"""`tiendo check`: compare what people act on with the one state; exit 1 on any
disagreement (docs/check.md)."""

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

from services.notifier.settings import NotifierSettings


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser(
        "check",
        help="compare live progress with history, and alerts and the stored board figures "
        "with the board (read only)",
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
    parser.add_argument(
        "--no-boards",
        dest="boards",
        action="store_false",
        help="leave out the stored board figures (board_figures: a deployment whose "
        "aggregator runs no snapshot pass)",
    )
    parser.add_argument(
        "--window-max-age",
        type=float,
        # the aggregator's own setting, when the check runs beside it
        default=float(os.environ.get("TIENDO_AGGREGATOR_METRICS_WINDOW_REFRESH_SECONDS", "300")),
        help="seconds the aggregator's snapshot reuses the values one run-rate window ago "
        "(default: TIENDO_AGGREGATOR_METRICS_WINDOW_REFRESH_SECONDS, else 300)",
    )
    parser.add_argument(
        "--board-wait",
        type=float,
        default=120.0,
        help="longest wait past --settle for a newer snapshot of board_figures, when the "
        "first round disagreed with the stored one",
    )
    parser.set_defaults(func=lambda a: sys.exit(asyncio.run(_check(a))))


async def _check(args: argparse.Namespace) -> int:
    from services.check.run import check

    settings = NotifierSettings()
    result = await check(
        args.dsn or settings.database_url,
        settings,
        args.settle,
        datetime.now(UTC),
        boards=args.boards,
        window_max_age=timedelta(seconds=args.window_max_age),
        board_wait=timedelta(seconds=args.board_wait),
    )
    for d in result.disagreements:
        print(d)  # noqa: T201
    stored = f", {result.board_rows} stored board figures" if args.boards else ""
    print(  # noqa: T201
        f"checked {result.keys} judged keys{stored} and {result.alerts} open alerts: "
        f"{len(result.disagreements)} disagreements"
    )
    return 1 if result.disagreements else 0
