"""The demo world of `make dev`: Hà Nội's real unit tree and a campaign modelled on order
"Mệnh lệnh 01" (contract §1), shifted so that it is running today.

Two trees: today's (since 1 July 2025: the city and its 126 communes, what `make dev` runs
on) and 2023's (30 districts, 579 wards: the tree of the historical campaign and of the
tests written before the reorganisation). Commune populations are the 2019 census carried
through the crosswalks (docs/units-over-time.md): whole transfers exactly, a split ward's
people in equal parts over its successors — an estimate, good enough for demo targets."""

import csv
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

from services.aggregator.admin import CampaignIn, TargetIn, UnitIn

CAMPAIGN_ID = "ml01-demo"
INDICATORS = ("cccd_collected", "eid_activated_l2")
HANOI_CCCD_TARGET = 134_329  # first-time CCCD applications to collect (contract §1)
CAMPAIGN_DAYS = 51  # 10 May - 30 Jun
ELAPSED_DAYS = 22  # the demo starts as on 1 Jun
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass(frozen=True, slots=True)
class Ward:
    """A unit at the bottom of a tree (a 2023 ward, a 2025 commune) and its people."""

    code: str
    parent: str
    population: int


def _read(name: str) -> list[dict[str, str]]:
    text = (resources.files("devtools.demo") / "data" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def hanoi_units() -> list[UnitIn]:
    """2023: 1 city, 30 districts, 579 wards, with demo chiefs' contacts."""
    return _units("hanoi_units.csv")


def hanoi_units_2025() -> list[UnitIn]:
    """Since 1 July 2025: the city and its 126 communes, with demo chiefs' contacts."""
    return _units("hanoi_units_2025.csv")


def _units(name: str) -> list[UnitIn]:
    return [
        UnitIn(
            code=r["code"],
            name=r["name"],
            type=r["type"],
            level=int(r["level"]),
            parent_code=r["parent_code"] or None,
            chief_name=f"Trưởng Công an {r['name']}",
            chief_email=f"chief-{r['code']}@demo.tiendo.invalid",
        )
        for r in _read(name)
    ]


def hanoi_wards() -> list[Ward]:
    """2023 wards with their 2019 census population (a district's median where it is
    missing)."""
    population = {r["code"]: int(r["population_2019"]) for r in _read("hanoi_population_2019.csv")}
    units = _read("hanoi_units.csv")
    wards = [u for u in units if u["level"] == "3"]
    by_district: dict[str, list[int]] = {}
    for w in wards:
        if w["code"] in population:
            by_district.setdefault(w["parent_code"], []).append(population[w["code"]])
    out = []
    for w in wards:
        known = sorted(by_district.get(w["parent_code"], [1000]))
        median = known[len(known) // 2]
        out.append(Ward(w["code"], w["parent_code"], population.get(w["code"], median)))
    return out


def hanoi_communes() -> list[Ward]:
    """The 126 communes of 1 July 2025 with the 2019 census carried through the 1 January
    2025 merges and the 1 July 2025 crosswalk."""
    people = {w.code: float(w.population) for w in hanoi_wards()}
    for r in _read("hanoi_crosswalk_2025-01_inferred.csv"):
        people[r["new_code"]] += people.pop(r["old_code"])
    successors: dict[str, list[str]] = {}
    for r in _read("hanoi_crosswalk_2025.csv"):
        successors.setdefault(r["old_code"], []).append(r["new_code"])
    carried: dict[str, float] = {}
    for old, new in successors.items():
        for code in new:
            carried[code] = carried.get(code, 0.0) + people[old] / len(new)
    return [
        Ward(r["code"], r["parent_code"], round(carried[r["code"]]))
        for r in _read("hanoi_units_2025.csv")
        if r["parent_code"]
    ]


def demo_campaign(now: datetime) -> CampaignIn:
    local_midnight = now.astimezone(TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    start = local_midnight - timedelta(days=ELAPSED_DAYS)
    return CampaignIn(
        name="Mệnh lệnh 01 — cao điểm CCCD và định danh điện tử (demo)",
        starts_at=start,
        deadline=start + timedelta(days=CAMPAIGN_DAYS),
        indicators=list(INDICATORS),
    )


def ward_targets(wards: list[Ward]) -> dict[tuple[str, str], int]:
    """CCCD targets proportional to population summing to exactly 134,329; level-2
    activation targets at 40 % of the population aged 14 and over."""
    total = sum(w.population for w in wards)
    raw = {w.code: HANOI_CCCD_TARGET * w.population / total for w in wards}
    floors = {c: math.floor(v) for c, v in raw.items()}
    short = HANOI_CCCD_TARGET - sum(floors.values())
    for code in sorted(raw, key=lambda c: raw[c] - floors[c], reverse=True)[:short]:
        floors[code] += 1
    targets = {(c, "cccd_collected"): max(1, v) for c, v in floors.items()}
    for w in wards:
        targets[w.code, "eid_activated_l2"] = max(1, round(w.population * 0.75 * 0.4))
    return targets


def demo_targets(wards: list[Ward]) -> list[TargetIn]:
    return [TargetIn(unit=u, indicator=i, target=t) for (u, i), t in ward_targets(wards).items()]


def performance(wards: list[Ward], seed: int = 2023) -> dict[str, float]:
    """Each ward's speed relative to plan: most near 1, about one in six clearly lagging."""
    rng = random.Random(seed)
    out = {}
    for w in sorted(wards, key=lambda w: w.code):
        lagging = rng.random() < 0.17
        out[w.code] = rng.uniform(0.35, 0.8) if lagging else rng.uniform(0.95, 1.3)
    return out
