"""The `tiendo` command: every service and operator task behind one entry point."""

import argparse
import os
import sys
from collections.abc import Sequence

from services.aggregator import cli as aggregator_cli
from services.check import cli as check_cli
from services.ingest import cli as ingest_cli
from services.notifier import cli as notifier_cli


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tiendo", description=__doc__)
    sub = parser.add_subparsers(dest="area", required=True)
    for module in (ingest_cli, aggregator_cli, notifier_cli, check_cli):
        module.add_commands(sub)
    migrate = sub.add_parser(
        "migrate", help="apply every service's pending migrations, as the database owner"
    )
    migrate.add_argument(
        "--database-url",
        default=os.environ.get("TIENDO_MIGRATE_DATABASE_URL"),
        help="the database owner's DSN (default: TIENDO_MIGRATE_DATABASE_URL)",
    )
    migrate.set_defaults(func=_migrate)
    args = parser.parse_args(argv)
    args.func(args)


def _migrate(args: argparse.Namespace) -> None:
    from services.schema import migrate_database
    from tiendo import eventloop
    from tiendo.logs import configure_logging
    from tiendo.startup import DependencyUnavailable

    if not args.database_url:
        sys.exit("tiendo migrate: give --database-url or TIENDO_MIGRATE_DATABASE_URL")
    configure_logging(os.environ.get("TIENDO_LOG_LEVEL", "INFO"), json=False)
    try:
        eventloop.run(migrate_database(args.database_url))
    except DependencyUnavailable as exc:
        sys.exit(f"tiendo migrate: {exc}")


if __name__ == "__main__":
    main()
