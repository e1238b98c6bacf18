"""The languages the notifier writes in: a template folder each (`templates/<language>/`),
and what a contact, a policy, a briefing or the CLI may ask for."""

from typing import Literal, get_args

Language = Literal["vi", "en"]
LANGUAGES: tuple[str, ...] = get_args(Language)
