"""Message texts from Jinja2 template files (templates/<language>/*.j2; Vietnamese by
default, English available). An operator may override any file from `templates_dir`."""

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from services.notifier.languages import LANGUAGES
from tiendo.figure_digits import cut


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    chat: str


def _num(language: str, value: float | None) -> str:
    if value is None:
        return "—"
    text = f"{round(value):,}"
    return text.replace(",", ".") if language == "vi" else text


# Rates per day are shown whole from 10 a day on, with one decimal below: a residential
# group needing 0.4 a day reads "0,4/ngày", not "0/ngày" (a whole number rounded 0.4 to 0,
# and 2.5 to 2, as Python rounds halves to even). Half-up, as people round.
_WHOLE_RATE_FROM = 10


def _rate(language: str, value: float | None) -> str:
    """A rate per day as a chief reads it: whole from 10 on, one decimal below, never 0 for
    a rate that is not: a positive rate under 0.05 reads "<0,1" (less than 0.1 a day)."""
    if value is None:
        return "—"
    exact = Decimal(repr(value))
    if abs(exact) >= _WHOLE_RATE_FROM:
        whole = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        return _num(language, whole)
    shown = exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    if shown == 0 and exact != 0:
        text = "<0.1" if exact > 0 else ">-0.1"
    else:
        text = f"{shown:.1f}" if shown != 0 else "0"
    return text.replace(".", ",") if language == "vi" else text


def _decimal(language: str, value: float | None, digits: int, suffix: str = "") -> str:
    """A pct or a pace, cut to `digits` (`figure_digits.cut`): the figures a status is read
    against never read past their line (0.8996 beside "behind" is 0,89, not 0,90)."""
    if value is None:
        return "—"
    text = f"{cut(value, digits):.{digits}f}"
    return (text.replace(".", ",") if language == "vi" else text) + suffix


def _local(context: Any, value: str | datetime | None) -> str:
    if value is None:
        return "—"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    tz = ZoneInfo(str(context.get("campaign", {}).get("timezone") or "Asia/Ho_Chi_Minh"))
    return at.astimezone(tz).strftime("%H:%M %d/%m/%Y")


class Renderer:
    def __init__(self, templates_dir: str | None = None) -> None:
        folders: list[str] = []
        if templates_dir:
            folders.append(templates_dir)
        folders.append(str(Path(str(resources.files("services.notifier") / "templates"))))
        self._envs = {lang: self._env(lang, folders) for lang in LANGUAGES}

    @staticmethod
    def _env(language: str, folders: list[str]) -> jinja2.Environment:
        # Plain text and JSON-embedded text, never HTML: nothing to escape.
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            trim_blocks=False,
            autoescape=False,  # noqa: S701
        )
        env.filters["num"] = lambda v: _num(language, v)
        env.filters["rate"] = lambda v: _rate(language, v)
        env.filters["pct"] = lambda v: _decimal(language, v, 1, " %" if language == "vi" else "%")
        env.filters["ratio"] = lambda v: _decimal(language, v, 2)
        env.filters["local"] = jinja2.pass_context(_local)
        return env

    def words(self, language: str) -> tuple[dict[str, str], dict[str, str]]:
        """Rule and status names in `language` (templates/<language>/words.j2)."""
        module = self._envs[language].get_template(f"{language}/words.j2").module
        return dict(module.rules), dict(module.statuses)  # type: ignore[attr-defined]

    def _render(self, language: str, name: str, model: dict[str, Any]) -> str:
        template = self._envs[language].get_template(f"{language}/{name}.j2")
        return template.render(**model).strip() + "\n"

    def alert(self, language: str, model: dict[str, Any]) -> Rendered:
        """Subject, email text and chat text of one grouped alert message."""
        return Rendered(
            self._render(language, "alert_subject", model).strip(),
            self._render(language, "alert", model),
            self._render(language, "alert_chat", model),
        )

    def digest(self, language: str, model: dict[str, Any]) -> Rendered:
        return Rendered(
            self._render(language, "digest_subject", model).strip(),
            self._render(language, "digest", model),
            self._render(language, "digest_chat", model),
        )
