"""The `tiendo` command: every service and operator task behind one entry point."""

import argparse
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
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
