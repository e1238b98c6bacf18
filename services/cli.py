"""The `tiendo` command: every service and operator task behind one entry point."""

import argparse
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from services.aggregator import MIGRATIONS as AGGREGATOR_MIGRATIONS
from services.aggregator import cli as aggregator_cli
from services.aggregator.settings import AggregatorSettings
from services.check import cli as check_cli
from services.ingest import cli as ingest_cli
from services.notifier import cli as notifier_cli
from tiendo.identity import cli as identity_cli
from tiendo.logs import configure_logging, get_logger


def add_identity_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    # Identities are checked by every service; they are written where the admin API lives,
    # on the aggregator's database (its migrations also hold the unit tree scopes name).
    identity_cli.add_commands(sub, lambda: AggregatorSettings().database_url, AGGREGATOR_MIGRATIONS)


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
    add_identity_commands(sub)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except ValidationError as exc:
        # settings the environment gets wrong: one line that names each, not a traceback
        configure_logging("INFO", json=False)
        problems = [
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        ]
        get_logger(__name__).error("unsafe_settings", problems=problems)
        sys.exit(1)


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
