"""`tiendo notifier …`: run the service; render a weekly briefing pack."""

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from services.notifier.settings import NotifierSettings

if TYPE_CHECKING:
    from services.notifier.briefing.pack import Document


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("notifier", help="the notifier service")
    cmds = parser.add_subparsers(dest="command", required=True)
    cmds.add_parser("serve", help="run feed consumer, evaluator and delivery").set_defaults(
        func=_serve
    )
    brief = cmds.add_parser(
        "briefing", help="render a weekly briefing pack (docs/briefing.md) to a file"
    )
    brief.add_argument("campaign")
    brief.add_argument("--at", type=datetime.fromisoformat, help="briefing moment (RFC 3339)")
    brief.add_argument("--level", type=int, help="unit level (default: the bottom_rank level)")
    brief.add_argument("--format", choices=("pdf", "xlsx", "html"), default="pdf")
    brief.add_argument("--lang", choices=("vi", "en"), help="default: the campaign's language")
    brief.add_argument("--indicator", action="append", help="only this indicator (repeatable)")
    brief.add_argument("--out", type=Path, help="file to write (default: the pack's name)")
    brief.set_defaults(func=_write_briefing)


def _serve(_: argparse.Namespace) -> None:
    from services.notifier.app import create_app
    from tiendo.serve import serve

    settings = NotifierSettings()
    serve(create_app(settings), settings)


def _write_briefing(args: argparse.Namespace) -> None:
    document = asyncio.run(_briefing(args))
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
