"""The chief's page behind the link in an alert message: the unit's figures and trend,
"Đã nhận", "Hoãn" and the explanation form. Server-rendered, Vietnamese, no script, made
for a phone. Authorised by the signed link alone (services/notifier/links.py); every form
carries a one-time token, so nothing is stored twice and a replayed form is refused.
A withdrawn link (its unit's contact changed, or an administrator revoked it) shows why,
and takes nothing more (services/notifier/repository/links.py).
While a rebuild replays the events the page shows a notice where its figures were, and an
explanation waits for its end (services/notifier/recounting.py)."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.notifier import links
from services.notifier.briefing.formats import commitment_text, shown
from services.notifier.briefing.gather import daily_series
from services.notifier.briefing.words import local, number
from services.notifier.explanations import (
    MAX_DETAIL,
    ExplanationPolicy,
    NotOwnUnit,
    Refused,
    check_author,
    check_explanation,
    local_today,
    snooze_until,
)
from services.notifier.recounting import notice
from services.notifier.repository import alerts as alert_sql
from services.notifier.repository import explanations as sql
from services.notifier.repository import links as link_sql
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.explanations import Explanation, Link
from services.notifier.repository.reference import IndicatorName
from services.notifier.settings import NotifierSettings
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.figures import Verdict, judge_now
from tiendo.board.recount_refusal import BeingRecounted, refuse_while_recounting, retry_after
from tiendo.clock import Clock
from tiendo.database import Connection, one_state
from tiendo.dependencies import Pool
from tiendo.logs import get_logger
from tiendo.nul_guard import FORM
from tiendo.web import problem

log = get_logger(__name__)
# A form is a few hundred bytes; anything far larger (a 10 MB text) is refused unread.
MAX_FORM_BYTES = 16_384
SNOOZE_CHOICES = (1, 4, 8, 24, 48, 72, 168)
# the only body the page's forms send, and the one the NUL guard searches
FORM_MEDIA = FORM.decode("ascii")
TREND_DAYS = 14

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(
        str(Path(str(resources.files("services.notifier.pages") / "templates")))
    ),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)

REFUSALS: dict[str, tuple[int, str, str, str]] = {
    links.Refusal.TAMPERED: (
        403,
        "Đường dẫn không hợp lệ",
        "Đường dẫn đã bị thay đổi hoặc không đầy đủ.",
        "This link was altered or is incomplete.",
    ),
    links.Refusal.EXPIRED: (
        410,
        "Đường dẫn đã hết hạn",
        "Đường dẫn này đã hết hiệu lực.",
        "This link has expired.",
    ),
    links.Refusal.UNKNOWN: (
        404,
        "Không tìm thấy đường dẫn",
        "Đường dẫn này không còn trong hệ thống.",
        "This link is not known.",
    ),
    links.Refusal.REPLAYED: (
        409,
        "Biểu mẫu đã được gửi",
        "Biểu mẫu này đã được gửi một lần; lần gửi lại không được lưu.",
        "This form was already submitted; the repeat was not stored.",
    ),
    # 410, as an expired link: the link existed and is gone for good (a revocation is never
    # undone), which no other credential or a second try changes; 403 is the altered
    # token's, a link the notifier never issued
    links.Refusal.CONTACT_CHANGED: (
        410,
        "Đường dẫn đã bị thu hồi",
        "Đường dẫn này đã bị thu hồi vì thông tin liên lạc của đơn vị đã thay đổi: địa chỉ "
        "nhận tin nhắn có đường dẫn này không còn là địa chỉ liên lạc của đơn vị. Không thể "
        "xác nhận, hoãn hoặc giải trình qua đường dẫn này.",
        "This link was withdrawn because the unit's contact changed: the address it was "
        "sent to is no longer the unit's. Nothing can be acknowledged, snoozed or explained "
        "through it.",
    ),
    links.Refusal.REVOKED: (
        410,
        "Đường dẫn đã bị thu hồi",
        "Đường dẫn này đã bị quản trị viên thu hồi. Không thể xác nhận, hoãn hoặc giải trình "
        "qua đường dẫn này.",
        "This link was withdrawn by an administrator. Nothing can be acknowledged, snoozed "
        "or explained through it.",
    ),
    "too_large": (
        413,
        "Nội dung quá lớn",
        "Nội dung gửi lên quá lớn.",
        "What was sent is too large.",
    ),
}
# what a withdrawn link's page adds: the records made through it are official (the
# briefing shows the explanations), and a revocation takes none of them back; a snooze is
# a hold on the reminders, which the link's holder no longer steers (migration 013)
WITHDRAWN = {
    link_sql.Because.CONTACT_CHANGED: links.Refusal.CONTACT_CHANGED,
    link_sql.Because.ADMIN: links.Refusal.REVOKED,
}
KEPT = (
    "Những gì đã xác nhận hoặc giải trình qua đường dẫn này trước khi thu hồi vẫn được giữ "
    "nguyên; việc hoãn nhắc lại đã chọn qua đường dẫn này (nếu có) kết thúc khi thu hồi.",
    "What was acknowledged or explained through it before it was withdrawn stays recorded; "
    "any snooze chosen through it ended with the withdrawal.",
)
DONE = {
    "acknowledge": "Đã ghi nhận: không nhắc lại cho đến khi có thay đổi.",
    "snooze": "Đã hoãn nhắc lại.",
    "explain": "Đã lưu giải trình.",
}


def refused(reason: str) -> HTMLResponse:
    status, title, text, english = REFUSALS[reason]
    kept = KEPT if reason in WITHDRAWN.values() else None
    page = _env.get_template("refused.html.j2").render(
        title=title, text=text, english=english, reason=reason, kept=kept
    )
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})


def _points(values: list[float], top: float) -> str:
    """SVG polyline points of `values` across a 100 × 30 box."""
    if len(values) < 2 or top <= 0:
        return ""
    step = 100 / (len(values) - 1)
    return " ".join(f"{i * step:.1f},{30 - 28 * v / top:.1f}" for i, v in enumerate(values))


def links_router(settings: NotifierSettings, clock: Clock) -> APIRouter:
    router = APIRouter(tags=["links"], include_in_schema=False)

    async def open_link(pool: Pool, token: str, now: datetime) -> Link | str:
        claim = links.verify(settings.link_key(), token, now)
        if isinstance(claim, links.Refusal):
            return claim.value
        async with pool.acquire() as conn:
            found = await sql.link(conn, claim.link_id)
            if found is None:
                return links.Refusal.UNKNOWN.value
            if now >= found.expires_at:
                return links.Refusal.EXPIRED.value
            because = await link_sql.withdrawn(conn, found.id, now)
        if because is not None:
            return WITHDRAWN[because].value
        return found

    async def render(
        pool: Pool, link: Link, token: str, now: datetime, **extra: Any
    ) -> HTMLResponse:
        # one state: every alert's figures, and the look for a rebuild, of one instant
        async with pool.acquire() as conn, one_state(conn):
            campaign = await board.campaign(conn, link.campaign_id)
            assert campaign is not None  # a link is only issued for a stored campaign
            policy = await sql.policy(conn, link.campaign_id)
            rows = await alert_sql.alerts_by_id(conn, link.alert_ids)
            # what this chief did (it quiets this chief's reminders only), and what each
            # unit's own chief did: a parent's "Đã nhận" is not the ward's
            acked = await sql.acknowledged(conn, link.alert_ids, link.recipient)
            snoozed = await sql.snoozed(conn, link.alert_ids, now, link.recipient)
            by_unit = await sql.acknowledged_by_unit(conn, link.alert_ids)
            said = await sql.latest_explanations(
                conn, link.campaign_id, now, [r["unit"] for r in rows]
            )
            names = await reference_sql.indicator_names(conn)
            recipient = await reference_sql.unit(conn, link.recipient)
            done = _Done(link.recipient, acked, snoozed, by_unit, said)
            alerts = [await _alert(conn, campaign, r, now, names, done, policy) for r in rows]
            # asked once the figures are read (services/notifier/recounting.py): during a
            # rebuild they are short of the events, and the page says so instead
            recounting = await board.recount_in_progress(conn)
            if recounting is not None:
                alerts = [_without_figures(a) for a in alerts]
            nonces = {a: await sql.issue_nonce(conn, link.id, now) for a in DONE}
        # only the link's own unit is explained here (`check_author`)
        keys = sorted(
            {(a["unit"], a["indicator"]): a for a in alerts if a["own"]}.values(), key=_key
        )
        last_days = {a["last_day"] for a in keys}
        campaign_last_day = local_today(campaign.deadline, campaign.timezone)
        page = _env.get_template("link.html.j2").render(
            campaign=campaign,
            recipient=link.recipient,
            recipient_name=recipient.name if recipient else link.recipient,
            now=now,
            expires_at=link.expires_at,
            alerts=alerts,
            nonces=nonces,
            base=links.LINK_PATH + token,
            snooze_hours=[h for h in SNOOZE_CHOICES if timedelta(hours=h) <= policy.snooze_max],
            keys=[
                {
                    "value": f"{a['unit']}|{a['indicator']}",
                    # each key's last day where they differ: the picker offers the latest
                    "label": f"{a['unit_name']} — {a['indicator_name']}"
                    + (f" (hạn {a['last_day']:%d/%m/%Y})" if len(last_days) > 1 else ""),
                }
                for a in keys
            ],
            causes=policy.causes,
            max_detail=MAX_DETAIL,
            today=local_today(now, campaign.timezone).isoformat(),
            last_day=max(last_days, default=campaign_last_day).isoformat(),
            form=extra.pop("form", {"detail": "", "committed_date": "", "committed_rate": ""}),
            num=lambda v, d=0: number("vi", v, d),
            shown=lambda v, d: shown("vi", v, d),
            w_local=lambda v: local(v, campaign.timezone),
            done=extra.pop("done", None),
            error=extra.pop("error", None),
            recounting=notice(recounting) if recounting is not None else None,
        )
        status = extra.pop("status", 200)
        headers = {"Cache-Control": "no-store"}
        if status == 503:
            headers |= retry_after()
        return HTMLResponse(page, status_code=status, headers=headers)

    @router.get("/l/{token}", response_class=HTMLResponse)
    async def link_page(token: str, pool: Pool, done: str | None = None) -> Response:
        now = clock.now()
        found = await open_link(pool, token, now)
        if isinstance(found, str):
            return refused(found)
        return await render(pool, found, token, now, done=DONE.get(done or ""))

    async def form_of(request: Request) -> dict[str, str] | None:
        size = request.headers.get("content-length")
        if size is None or not size.isdigit() or int(size) > MAX_FORM_BYTES:
            return None
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    @router.post("/l/{token}/{action}", response_class=HTMLResponse)
    async def link_action(token: str, action: str, request: Request, pool: Pool) -> Response:
        now = clock.now()
        found = await open_link(pool, token, now)
        if isinstance(found, str):
            return refused(found)
        if action not in DONE:
            return refused(links.Refusal.UNKNOWN.value)
        if not _url_encoded(request):
            return problem(415, f"the form must be sent as {FORM_MEDIA}")
        form = await form_of(request)
        if form is None:
            return refused("too_large")
        remote = request.client.host if request.client else ""
        try:
            async with pool.acquire() as conn, conn.transaction():
                # withdrawn since it was opened above: nothing stored (and a revocation
                # committing meanwhile waits for this transaction: it comes after)
                if because := await link_sql.withdrawn(conn, found.id, now, locked=True):
                    raise _Withdrawn(because)
                # the token first: a replayed form stores nothing; bad input rolls it back,
                # so the chief can correct the form and send it again
                if not await sql.take_nonce(conn, form.get("nonce", ""), found.id, action, now):
                    raise _Replayed
                await _store(conn, found, action, form, now, remote)
        except _Withdrawn as exc:
            return refused(WITHDRAWN[exc.because].value)
        except _Replayed:
            return refused(links.Refusal.REPLAYED.value)
        except BeingRecounted:
            # nothing stored, the form's token not taken: the same form, sent again once
            # the figures are whole, is stored then
            kept = {k: form.get(k, "") for k in ("detail", "committed_date", "committed_rate")}
            return await render(
                pool, found, token, now, error=_RECOUNTING_REFUSAL, form=kept, status=503
            )
        except Refused as exc:
            kept = {k: form.get(k, "") for k in ("detail", "committed_date", "committed_rate")}
            # another unit's explanation: well formed, but not this link's to give
            status = 403 if isinstance(exc, NotOwnUnit) else 422
            return await render(pool, found, token, now, error=str(exc), form=kept, status=status)
        log.info("link_action", action=action, link=found.id, campaign=found.campaign_id)
        return RedirectResponse(f"{links.LINK_PATH}{token}?done={action}", 303)

    return router


def _url_encoded(request: Request) -> bool:
    """Whether the body is a URL-encoded form (its media type read as the NUL guard reads
    it). Anything else is refused unread: the guard searches URL-encoded forms only, and a
    NUL in a multipart field reached PostgreSQL, a 500."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == FORM_MEDIA


class _Replayed(Exception):
    """A form token used before (or not this link's)."""


class _Withdrawn(Exception):
    """The link was withdrawn while its form was on its way."""

    def __init__(self, because: link_sql.Because) -> None:
        super().__init__(because.value)
        self.because = because


_RECOUNTING_REFUSAL = (
    "Số liệu đang được tính lại nên chưa thể lưu giải trình; nội dung vẫn được giữ, xin gửi "
    "lại sau ít phút. / The figures are being recounted, so the explanation cannot be "
    "stored yet; what you wrote is kept, please send it again in a few minutes."
)


def _without_figures(alert: dict[str, Any]) -> dict[str, Any]:
    """An alert of the page with neither figures nor trend (a rebuild in progress)."""
    return {**alert, "progress": None, "trend": None}


RULES = {
    "behind": "chậm tiến độ",
    "at_risk": "có nguy cơ không về đích",
    "stale": "không báo cáo số liệu",
    "bottom_rank": "nhóm cuối bảng xếp hạng",
}


@dataclass(frozen=True, slots=True)
class _Done:
    """What was done about the link's alerts: by its chief (`recipient`: acknowledged,
    snoozed), by each alert's own unit (acknowledged), and the units' explanations."""

    recipient: str
    acknowledged: dict[int, datetime]
    snoozed: dict[int, datetime]
    unit_acknowledged: dict[int, datetime]
    said: dict[tuple[str, str], Explanation]


def _deadline(campaign: Campaign, verdict: Verdict | None) -> datetime:
    """The deadline a key's commitments are bounded by: the unit's own when its target has
    one (the verdict's), else the campaign's."""
    return min(verdict.deadline, campaign.deadline) if verdict else campaign.deadline


async def _alert(
    conn: Connection,
    campaign: Campaign,
    r: asyncpg.Record,
    now: datetime,
    names: dict[str, IndicatorName],
    done: _Done,
    policy: ExplanationPolicy,
) -> dict[str, Any]:
    """One alert of the link as the page shows it: figures now, the last two weeks."""
    unit, indicator = r["unit"], r["indicator"]
    verdict = (await judge_now(conn, campaign, indicator, [unit], now)).get(unit)
    trend = None
    if verdict is not None:
        (series,) = await daily_series(conn, campaign, indicator, [verdict], now)
        actual = [float(v) for v in series.values[-TREND_DAYS:]]
        planned = list(series.planned[-TREND_DAYS:])
        top = max([*actual, *planned, 1.0])
        trend = {"actual": _points(actual, top), "plan": _points(planned, top)}
    explained = done.said.get((unit, indicator))
    cause = policy.cause(explained.cause) if explained else None
    own = unit == done.recipient
    return {
        "id": r["id"],
        "unit": unit,
        "unit_name": verdict.unit_name if verdict else unit,
        "own": own,
        "indicator": indicator,
        "indicator_name": names[indicator].name if indicator in names else indicator,
        "rule_name": RULES.get(r["rule"], r["rule"]),
        "acknowledged": done.acknowledged.get(r["id"]),
        "snoozed": done.snoozed.get(r["id"]),
        # an escalated alert: whether the unit's own chief acknowledged it
        "unit_acknowledged": None if own else done.unit_acknowledged.get(r["id"]),
        "progress": verdict.progress if verdict else None,
        # the last day a commitment for the key may name (`_store` refuses a later one)
        "last_day": local_today(_deadline(campaign, verdict), campaign.timezone),
        "trend": trend,
        "said": {
            "version": explained.version,
            "cause": cause.vi if cause else explained.cause,
            "detail": explained.detail,
            "commitment": commitment_text(explained.commitment, "vi"),
        }
        if explained
        else None,
    }


async def _store(
    conn: Connection, link: Link, action: str, form: dict[str, str], now: datetime, remote: str
) -> None:
    """Store what a form asked for, or `Refused` saying why (nothing stored)."""
    policy = await sql.policy(conn, link.campaign_id)
    if action == "acknowledge":
        await sql.acknowledge(conn, link.alert_ids, link.id, now, remote)
        return
    if action == "snooze":
        try:
            hours = float(form.get("hours", ""))
        except ValueError:
            raise Refused("Thời gian hoãn không hợp lệ.") from None
        ends = snooze_until(policy, now, hours)
        await sql.snooze(conn, link.alert_ids, link.id, now, ends, remote)
        return
    campaign = await board.campaign(conn, link.campaign_id)
    assert campaign is not None
    rows = await alert_sql.alerts_by_id(conn, link.alert_ids)
    unit, _, indicator = form.get("key", "").partition("|")
    mine = frozenset(r["indicator"] for r in rows if r["unit"] == unit)
    if not mine:
        raise Refused("Đơn vị không thuộc cảnh báo của đường dẫn này.")
    check_author(link.recipient, unit)
    # judged only for an indicator of the link's alerts: another is refused just below
    verdict = (
        (await judge_now(conn, campaign, indicator, [unit], now)).get(unit)
        if indicator in mine
        else None
    )
    deadline = _deadline(campaign, verdict)
    given = check_explanation(
        policy,
        mine,
        indicator=indicator,
        cause=form.get("cause", ""),
        detail=form.get("detail", ""),
        committed_date=_date(form.get("committed_date", "")),
        committed_rate=_rate(form.get("committed_rate", "")),
        today=local_today(now, campaign.timezone),
        last_day=local_today(deadline, campaign.timezone),
        deadline_passed=now >= deadline,
    )
    # The value now is stored with the explanation, and a daily rate committed to is
    # checked against it: read during a rebuild it is short of the events, and the check
    # would find the chief gained what was only replayed. Asked after the read: a reset
    # that committed before it is seen then (services/notifier/recounting.py).
    await refuse_while_recounting(conn)
    value = verdict.progress.value if verdict else 0
    await sql.add_explanation(
        conn,
        link.campaign_id,
        unit,
        given,
        value_then=value,
        link_id=link.id,
        at=now,
        remote=remote,
    )


def _date(text: str) -> date | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise Refused("Ngày cam kết không hợp lệ.") from None


def _rate(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        raise Refused("Mức cam kết mỗi ngày không hợp lệ.") from None


def _key(a: dict[str, Any]) -> tuple[str, str]:
    return (str(a["unit"]), str(a["indicator"]))
