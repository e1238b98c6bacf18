"""`tiendo notifier …`: run the service."""

import argparse

from services.notifier.settings import NotifierSettings


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("notifier", help="the notifier service")
    cmds = parser.add_subparsers(dest="command", required=True)
    cmds.add_parser("serve", help="run feed consumer, evaluator and delivery").set_defaults(
        func=_serve
    )


def _serve(_: argparse.Namespace) -> None:
    from services.notifier.app import create_app
    from tiendo.serve import serve

    settings = NotifierSettings()
    serve(create_app(settings), settings)
