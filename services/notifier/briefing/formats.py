"""The pack as HTML (one self-contained page, charts inline), PDF (WeasyPrint from that same
HTML, A4) and XLSX (one sheet per part, for the officer who edits before the meeting)."""

import base64
import io
from importlib import resources
from pathlib import Path

import jinja2
from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill

from services.notifier.briefing.chart import progress_chart
from services.notifier.briefing.model import MUST_EXPLAIN, Pack
from services.notifier.briefing.words import WORDS, local, number
from services.notifier.explanations import Commitment
from tiendo.figure_digits import cut

_TEMPLATES = Path(str(resources.files("services.notifier.briefing") / "templates"))
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
    # what chiefs typed reaches this page: every value is escaped
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def commitment_text(c: Commitment, language: str) -> str:
    w = WORDS[language]
    parts = []
    if c.by is not None:
        parts.append(f"{w['by']} {c.by:%d/%m/%Y}")
    if c.rate is not None:
        parts.append(f"{number(language, c.rate)} {w['per_day']}")
    return "; ".join(parts)


def shown(language: str, value: float | None, digits: int) -> str:
    """pct or pace as a page writes it: cut to the digits shown, as the leaderboard exports
    write them (`_cut`). Every page that shows either (the pack, the chief's link page)
    writes it through here, so the room and the chief never read two figures."""
    return number(language, _cut(value, digits), digits)


def html(pack: Pack, indicator_names: dict[str, str]) -> str:
    """The pack's page, with a chart per indicator as an inline PNG."""
    w = WORDS[pack.language]
    charts = {
        s.indicator: base64.b64encode(progress_chart(s.series, w, pack.language)).decode("ascii")
        for s in pack.sections
        if s.series
    }
    return _env.get_template("pack.html.j2").render(
        pack=pack,
        w=w,
        names=indicator_names,
        charts=charts,
        num=lambda v, d=0: number(pack.language, v, d),
        shown=lambda v, d: shown(pack.language, v, d),
        local=lambda v: local(v, pack.timezone),
        commitment=lambda c: commitment_text(c, pack.language),
    )


def pdf(page: str) -> bytes:
    """The HTML page printed on A4 by WeasyPrint (imported here: it loads Pango)."""
    from weasyprint import HTML

    rendered: bytes = HTML(string=page).write_pdf()
    return rendered


def xlsx(pack: Pack, indicator_names: dict[str, str]) -> bytes:
    """Ranking, laggards and commitments, one sheet each, every indicator in turn."""
    lang = pack.language
    w = WORDS[lang]
    book = Workbook()
    ranking = book.active
    assert ranking is not None
    ranking.title = w["sheet_ranking"]
    laggards = book.create_sheet(w["sheet_laggards"])
    commitments = book.create_sheet(w["sheet_commitments"])
    highlight = PatternFill("solid", fgColor="FDECEA")
    ranking.append(
        [
            "indicator",
            w["rank"],
            w["previous_rank"],
            w["movement"],
            "code",
            w["unit"],
            w["value"],
            w["target"],
            w["pct"],
            w["pace"],
            w["days_behind"],
            w["status"],
        ]
    )
    laggards.append(
        [
            "indicator",
            *(w[k] for k in ("rank",)),
            "code",
            *(w[k] for k in ("unit", "pct", "days_behind", "cause", "detail", "commitment")),
            w["acknowledged"],
        ]
    )
    commitments.append(["indicator", "code", w["unit"], w["commitment"], w["due"], w["value"], ""])
    for sheet in (ranking, laggards, commitments):
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.freeze_panes = "A2"
    for s in pack.sections:
        name = indicator_names.get(s.indicator, s.indicator)
        for r in s.ranking:
            ranking.append(
                [
                    name,
                    r.rank,
                    r.previous_rank,
                    r.movement,
                    r.unit,
                    r.unit_name,
                    r.progress.value,
                    r.progress.target,
                    _cut(r.progress.pct, 1),
                    _cut(r.progress.pace, 3),
                    r.days_behind,
                    w[r.progress.status.value],
                ]
            )
            if r.progress.status in MUST_EXPLAIN:
                for cell in ranking[ranking.max_row]:
                    cell.fill = highlight
        for lg in s.laggards:
            said = lg.said
            laggards.append(
                [
                    name,
                    lg.row.rank,
                    lg.row.unit,
                    lg.row.unit_name,
                    _cut(lg.row.progress.pct, 1),
                    lg.row.days_behind,
                    said.cause if said else w["not_explained"],
                    said.detail if said else "",
                    commitment_text(said.commitment, lang) if said else "",
                    lg.acknowledged,
                ]
            )
        for c in s.commitments:
            commitments.append(
                [
                    name,
                    c.unit,
                    c.unit_name,
                    commitment_text(c.commitment, lang),
                    local(c.due_at, pack.timezone),
                    c.value,
                    w["met"] if c.met else w["missed"],
                ]
            )
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                # what a chief typed is text, never a formula the spreadsheet would run
                if isinstance(cell.value, str) and cell.value.startswith("="):
                    cell.data_type = "s"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _cut(value: float | None, digits: int) -> float | None:
    """pct and pace to the digits shown, cut down (`tiendo.figure_digits.cut`, the rule of
    the leaderboard exports): a unit one short of a big target reads 99.9, not 100.0 beside
    a status that is not `done`; a pace just under the threshold stays under it."""
    return cut(value, digits) if value is not None else None
