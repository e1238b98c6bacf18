"""Giải trình: what a chief may write about a lagging unit, and whether a commitment was met.

Plain functions over plain data, time passed in. A chief explains one (unit, indicator) of
the alerts their link names: a cause from the campaign's short list, free text, and a
commitment, a date by which the unit is back on plan or a daily rate from now on."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

MAX_DETAIL = 2000  # characters; the table holds the same bound
MAX_RATE = 1_000_000.0  # per day; the contract's largest increment


@dataclass(frozen=True, slots=True)
class Cause:
    code: str
    vi: str
    en: str

    def label(self, language: str) -> str:
        return self.en if language == "en" else self.vi


DEFAULT_CAUSES = (
    Cause("thieu_may", "Thiếu máy", "Too few machines"),
    Cause("mat_dien", "Mất điện, mất mạng", "Power or network outage"),
    Cause("dan_di_xa", "Dân đi làm ăn xa", "Residents working away"),
    Cause("chua_co_du_lieu", "Chưa có dữ liệu", "Data not available yet"),
    Cause("khac", "Lý do khác", "Other"),
)


@dataclass(frozen=True, slots=True)
class ExplanationPolicy:
    """A campaign's list of causes, its longest snooze and how long a link lives."""

    causes: tuple[Cause, ...] = DEFAULT_CAUSES
    snooze_max: timedelta = timedelta(days=3)
    link_ttl: timedelta = timedelta(days=7)

    def cause(self, code: str) -> Cause | None:
        return next((c for c in self.causes if c.code == code), None)


@dataclass(frozen=True, slots=True)
class Commitment:
    """Back on plan by `by` (local date), or at least `rate` a day from the explanation."""

    by: date | None
    rate: float | None


@dataclass(frozen=True, slots=True)
class ExplanationIn:
    """What the form sent, checked: see `check_explanation`."""

    indicator: str
    cause: str
    detail: str
    commitment: Commitment


class Refused(ValueError):
    """Input the form must refuse; the message is shown to the chief as is."""


class NotOwnUnit(Refused):
    """An explanation of another unit than the link's own: a parent's link lists its
    wards' escalated alerts, but a unit's explanation is its own chief's to give. The
    briefing reads it as the unit's word, and the parent is told "the unit explained", so
    a parent's text would be shown as the ward's (docs/briefing.md)."""


def check_author(recipient: str, unit: str) -> None:
    """`NotOwnUnit` unless the link's chief (`recipient`) is the unit's own."""
    if unit != recipient:
        raise NotOwnUnit(
            "Chỉ lãnh đạo của chính đơn vị được giải trình cho đơn vị đó, qua đường dẫn "
            "trong cảnh báo gửi cho đơn vị. Cảnh báo chuyển lên cấp trên chỉ để theo dõi."
        )


def check_explanation(
    policy: ExplanationPolicy,
    indicators: frozenset[str],
    *,
    indicator: str,
    cause: str,
    detail: str,
    committed_date: date | None,
    committed_rate: float | None,
    today: date,
    last_day: date,
    deadline_passed: bool = False,
) -> ExplanationIn:
    """The explanation, or `Refused` saying why (in Vietnamese, the form's language).
    `today` and `last_day` are the campaign's local dates of now and of the unit's
    deadline (its own, else the campaign's): a committed date lies between them, as
    nothing is checked after it. `deadline_passed`: that deadline's moment has passed.

    Free text is kept as typed (the pages escape it); only its length is bounded."""
    if indicator not in indicators:
        raise Refused("Chỉ tiêu không thuộc cảnh báo của đường dẫn này.")
    if deadline_passed:
        # Past the deadline nothing repeats or escalates, and a commitment could only be
        # judged at a moment before it was written: a rate alone once slipped through and
        # its chief was told at once it was "not met". Every explanation carries a
        # commitment (the table holds the same rule), so none is taken any more.
        raise Refused(
            f"Đã hết thời hạn của chỉ tiêu (đến {last_day:%d/%m/%Y}): không còn nhận cam kết, "
            "nên không nhận giải trình mới. Giải trình gửi trước hạn vẫn được giữ."
        )
    if policy.cause(cause) is None:
        raise Refused("Nguyên nhân không có trong danh sách của đợt.")
    if len(detail) > MAX_DETAIL:
        raise Refused(f"Nội dung dài quá {MAX_DETAIL} ký tự.")
    if committed_date is None and committed_rate is None:
        raise Refused("Cần cam kết một ngày hoàn thành hoặc một mức mỗi ngày.")
    if committed_date is not None and committed_date < today:
        raise Refused("Ngày cam kết đã qua.")
    if committed_date is not None and committed_date > last_day:
        raise Refused(f"Ngày cam kết phải trong thời hạn của đợt (đến {last_day:%d/%m/%Y}).")
    if committed_rate is not None and not 0 < committed_rate <= MAX_RATE:
        raise Refused("Mức cam kết mỗi ngày phải lớn hơn 0.")
    return ExplanationIn(indicator, cause, detail, Commitment(committed_date, committed_rate))


def snooze_until(policy: ExplanationPolicy, at: datetime, hours: float) -> datetime:
    """The end of a snooze of `hours` asked at `at`, or `Refused` beyond the policy."""
    limit = policy.snooze_max / timedelta(hours=1)
    # compared as a number first: a form's `nan`, `inf` or `1e300` is a float that no
    # timedelta holds (a 500 for a bad form), and NaN fails every comparison
    if not 1 <= hours <= limit:
        raise Refused(f"Chỉ được hoãn từ 1 đến {limit:g} giờ.")
    return at + timedelta(hours=hours)


@dataclass(frozen=True, slots=True)
class CommitmentCheck:
    met: bool
    value: int
    wanted: float  # the pace (date) or the per-day rate (rate) it had to reach


def check_commitment(
    commitment: Commitment,
    *,
    value_then: int,
    submitted_at: datetime,
    value_now: int,
    pace_now: float | None,
    threshold: float,
    at: datetime,
) -> CommitmentCheck:
    """Whether a commitment was met at `at` (its date's end, or a briefing for a rate):
    a date is met when the unit is back on plan (pace at or above the campaign's behind
    threshold); a rate when the unit gained at least `rate` a day since it was written.
    A commitment with both must meet both."""
    met = True
    wanted = 0.0
    if commitment.by is not None:
        wanted = threshold
        met = pace_now is not None and pace_now >= threshold
    if commitment.rate is not None:
        days = max((at - submitted_at) / timedelta(days=1), 1 / 24)
        wanted = commitment.rate
        met = met and (value_now - value_then) / days >= commitment.rate
    return CommitmentCheck(met, value_now, wanted)


def local_today(at: datetime, timezone: str) -> date:
    """The campaign's local date at `at` (a committed date is a local date)."""
    return at.astimezone(ZoneInfo(timezone)).date()


RATE_CHECKED_AFTER = timedelta(days=7)  # a daily rate is checked a briefing cycle later


def due_at(
    commitment: Commitment, submitted_at: datetime, timezone: str, deadline: datetime
) -> datetime:
    """When a commitment is checked: the end (local midnight) of its committed date, or
    for a rate alone a week after it was written; at the latest the campaign's `deadline`,
    after which there is nothing left to check. (A date the form refuses now, after the
    campaign's last day, may be stored from before: up to 9999-12-31, whose next day no
    date can hold, and one such row failed every evaluation pass of the notifier.)"""
    if commitment.by is None:
        return min(submitted_at + RATE_CHECKED_AFTER, deadline)
    if commitment.by >= local_today(deadline, timezone):
        return deadline
    zone = ZoneInfo(timezone)
    end = datetime.combine(commitment.by + timedelta(days=1), datetime.min.time(), zone)
    return min(end, deadline)


def came_due(
    commitment: Commitment,
    submitted_at: datetime,
    superseded_at: datetime | None,
    timezone: str,
    deadline: datetime,
) -> datetime | None:
    """When one version's commitment came due (`due_at`), or None when a later version
    replaced it before that: an amendment written before the due moment takes its place,
    one written after does not undo it. So a missed commitment stays missed (and in the
    next briefing's "last week's commitments") whatever the chief writes after it; the
    check and the pack both go by this.

    None too when the due moment is not after it was written: `due_at` stops at the
    deadline, so a commitment stored after it (the form took a rate alone then) would be
    judged at a moment before it existed, and its chief told at once it was not met."""
    due = due_at(commitment, submitted_at, timezone, deadline)
    if due <= submitted_at:
        return None
    if superseded_at is not None and superseded_at < due:
        return None
    return due
