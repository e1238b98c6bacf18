"""`tiendo notifier …`: run the service, import chiefs' contacts."""

import argparse
import asyncio
import os
import sys
from pathlib import Path

import httpx

from services.notifier.settings import NotifierSettings


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("notifier", help="the notifier service and its contacts")
    cmds = parser.add_subparsers(dest="command", required=True)
    cmds.add_parser("serve", help="run feed consumer, evaluator and delivery").set_defaults(
        func=_serve
    )
    imp = cmds.add_parser("import", help="import chiefs' contacts from CSV/XLSX via the API")
    imp.add_argument("what", choices=["contacts"])
    imp.add_argument("file", type=Path)
    imp.add_argument(
        "--url", default=os.environ.get("TIENDO_NOTIFIER_URL", "http://127.0.0.1:8003")
    )
    imp.set_defaults(func=lambda a: sys.exit(asyncio.run(_import(a))))


def _serve(_: argparse.Namespace) -> None:
    from services.notifier.app import create_app
    from tiendo.serve import serve

    settings = NotifierSettings()
    serve(create_app(settings), settings)


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
    settings = NotifierSettings()
    async with httpx.AsyncClient(base_url=args.url, timeout=300) as client:
        problems = await import_contacts(client, args.file, settings.admin_token)
    for p in problems:
        print(p, file=sys.stderr)  # noqa: T201
    if not problems:
        print(f"imported {args.file}")  # noqa: T201
    return 1 if problems else 0
