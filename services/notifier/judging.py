"""The step of a pass between reading the board and writing the alerts: which alerts change
(to be stepped under their row locks, `lifecycle.apply_changes`) and which only get fresh
figures. Pure: the open alerts, the verdicts and the policies in, the work out.

It runs over every judged key of a full pass (88,000 on a national tree of one campaign,
a quarter of a million open alerts when all lag), so it does per key only what the key
needs: a key with no open alert and no rule holding costs its rules and nothing else; the
figures an alert shows (`messages.details`) are made once per key, and compared as they
are, not as JSON (`Written`)."""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.notifier.inputs import Judged
from services.notifier.lifecycle import Todo, alert_of
from services.notifier.messages import details
from services.notifier.policy import Policy
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.alerts import AlertKey
from services.notifier.rules import Change, Rule, held, ranked_alerted, step
from tiendo.board.campaign import Campaign
from tiendo.counting import Key


def closed_because(
    campaign: Campaign | None, version: reference_sql.Version | None, at: datetime
) -> dict[str, Any]:
    """Why an open alert whose key a full pass no longer judges closes, as its details
    say it (messages.alert_model): `replaced` when a cut-over at or before the moment the
    campaign reports on closed its unit's version (docs/units-over-time.md: its successors
    are judged from then on), with the successors and the moment; `untracked` otherwise
    (its target was removed or set to 0, the unit exempted, the campaign deleted)."""
    if campaign is not None and version is not None and version.closed_by(campaign.reports_on(at)):
        assert version.valid_to is not None
        return {
            "closed_because": "replaced",
            "replaced_at": version.valid_to.isoformat(),
            "successors": list(version.successors),
        }
    return {"closed_because": "untracked"}


@dataclass
class Written:
    """The figures this replica last wrote to each open alert, with the row's version then
    (its `xmin`): a pass rewrites an alert only when what its chief would read changed.
    Compared as dictionaries: the JSON of the stored figures is parsed once per alert, the
    first time a pass of this replica meets it (or after another replica wrote it)."""

    _by_id: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def changed(self, current: asyncpg.Record, d: dict[str, Any]) -> bool:
        """Whether the open alert `current` shows figures other than `d`."""
        written = self._by_id.get(current["id"])
        if written is not None and written[0] == current["version"]:
            return written[1] != d
        raw = current["details"]
        stored = json.loads(raw) if isinstance(raw, str) else raw
        if stored != d:
            return True
        self._by_id[current["id"]] = (current["version"], d)
        return False

    def wrote(self, versions: Mapping[int, int], figures: Mapping[int, dict[str, Any]]) -> None:
        """The alerts just written: their new versions (`versions`) and figures."""
        for i, version in versions.items():
            if i in figures:
                self._by_id[i] = (version, figures[i])

    def keep_only(self, ids: set[int]) -> None:
        """Forget the alerts closed since (a full pass knows every open one)."""
        self._by_id = {i: w for i, w in self._by_id.items() if i in ids}


@dataclass(frozen=True, slots=True)
class Touch:
    """Fresh figures for an open alert that does not change state."""

    alert_id: int
    details: dict[str, Any]

    @property
    def payload(self) -> str:
        return json.dumps(self.details)


@dataclass(frozen=True, slots=True)
class Judgement:
    """What a pass does to the alerts: `todo` to step, `touched` to rewrite."""

    todo: list[Todo]
    touched: list[Touch]


def judge_alerts(
    judged: Sequence[Judged],
    campaigns: Mapping[str, Campaign],
    policies: Mapping[str, Policy],
    fallback: Policy,
    open_: Mapping[AlertKey, asyncpg.Record],
    ranks: Mapping[Key, dict[str, Any]],
    at: datetime,
    full: bool,
    written: Written,
    versions: Mapping[str, reference_sql.Version] | None = None,
) -> Judgement:
    """Which alerts change and which only get fresh figures. A full pass also closes open
    alerts whose key is no longer judged (its target was removed, its campaign deleted, a
    cut-over replaced its unit: `versions`, of those alerts' units, tells which). A feed pass
    stamps every alert of its keys; a full pass (stamped as a whole, `mark_evaluated`)
    rewrites only alerts whose figures changed."""
    todo: list[Todo] = []
    touched: list[Touch] = []
    # per campaign, not per key: a policy is a pydantic model (255,000 alerts a pass)
    for_of: dict[tuple[str | None, Rule], timedelta] = {
        (c, r): p.rule(r).for_ for c, p in [*policies.items(), (None, fallback)] for r in Rule
    }
    enabled_of = {c: p.enabled() for c, p in policies.items()}
    # the open alerts by key: one look-up per judged key, not one per rule (by the rule's
    # name, which a `Rule` finds: a StrEnum hashes and compares as its value). Keyed by
    # plain tuples, whose hashing and comparison are the interpreter's own, not a
    # dataclass's generated methods: a third of a second a pass of 100,000 keys.
    open_of: dict[tuple[str, str, str], dict[str, asyncpg.Record]] = {}
    for alert, row in open_.items():
        k = alert.key
        open_of.setdefault((k.campaign_id, k.unit, k.indicator), {})[alert.rule] = row

    def consider(
        key: Key, rule: Rule, holds: bool, current: asyncpg.Record | None, d: dict[str, Any]
    ) -> None:
        if current is None and not holds:
            return
        campaign_id = key.campaign_id
        for_ = for_of[campaign_id if campaign_id in policies else None, rule]
        _, change = step(alert_of(current), holds, at, for_)
        if change is Change.NONE:
            if current is not None and (not full or written.changed(current, d)):
                touched.append(Touch(current["id"], d))
            return
        todo.append(Todo(key, rule, holds, d, change))

    seen: set[tuple[str, str, str]] = set()
    ended: dict[str, bool] = {}  # per campaign, as the policies
    for j in judged:
        v, campaign = j.verdict, j.campaign
        place = (v.campaign_id, v.unit, v.indicator)
        if full:
            seen.add(place)
        enabled = enabled_of[v.campaign_id]
        verdicts = {r: h and r in enabled for r, h in held(v, campaign, at).items()}
        if full:
            # ranked at the briefing, but alerted only while its target runs (past a
            # unit's own deadline its rank alert closes with the rest of its alerts; it
            # kept firing, and escalating, to the campaign's end) and the unit is not
            # done (`rules.ranked_alerted`)
            verdicts[Rule.BOTTOM_RANK] = (
                Rule.BOTTOM_RANK in enabled
                and bool(ranks)
                and v.key in ranks
                and ranked_alerted(v, campaign, at)
            )
        opened = open_of.get(place)
        if opened is None and not any(verdicts.values()):
            continue  # nothing open, nothing holds: no alert to step or show
        key = v.key
        d = details(v, ranks.get(key) if ranks else None)
        over = ended.get(v.campaign_id)
        if over is None:
            over = ended[v.campaign_id] = campaign.ended(at)
        d["campaign_ended"] = over
        # a unit's own deadline may come before the campaign's: past it, its alerts
        # close with the final word too, not as "back on track"
        d["deadline_passed"] = at >= v.deadline
        for rule, holds in verdicts.items():
            consider(key, rule, holds, opened.get(rule) if opened else None, d)
    if full:
        for alert, row in open_.items():
            k = alert.key
            if (k.campaign_id, k.unit, k.indicator) in seen:
                continue
            raw = row["details"]
            d = json.loads(raw) if isinstance(raw, str) else dict(raw)
            closing = campaigns.get(alert.key.campaign_id)
            d["campaign_ended"] = closing is not None and closing.ended(at)
            d["deadline_passed"] = d["campaign_ended"] or (
                "deadline" in d and datetime.fromisoformat(d["deadline"]) <= at
            )
            if not d["deadline_passed"]:
                # nothing cleared: the key is no longer judged. Its old figures are no
                # "back on track"; its chief is told why it closed instead
                d.update(closed_because(closing, (versions or {}).get(alert.key.unit), at))
            consider(alert.key, Rule(alert.rule), False, row, d)
    return Judgement(todo, touched)
