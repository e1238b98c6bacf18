"""`tiendo aggregator …`: run the service."""

import argparse

from services.aggregator.settings import AggregatorSettings


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("aggregator", help="the aggregator service")
    cmds = parser.add_subparsers(dest="command", required=True)
    cmds.add_parser("serve", help="run consumer and HTTP API").set_defaults(func=_serve)


def _serve(_: argparse.Namespace) -> None:
    from services.aggregator.app import create_app
    from tiendo.serve import serve

    settings = AggregatorSettings()
    serve(create_app(settings), settings)
