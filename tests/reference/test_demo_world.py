"""`make dev` runs on today's Hà Nội: the city and its 126 communes since 1 July 2025, no
district level. Depth is data: the chief above a commune is the city's."""

from importlib import resources
from pathlib import Path

import asyncpg

from devtools.demo import seed
from services.aggregator import admin
from services.aggregator.importing import parse_units, read_rows
from services.notifier.repository import reference as notifier_reference


def test_the_2025_tree_imports_cleanly_as_city_and_126_communes() -> None:
    path = Path(str(resources.files("devtools.demo") / "data" / "hanoi_units_2025.csv"))
    units, errors = parse_units(read_rows(path))
    assert errors == []
    assert [u.level for u in units].count(1) == 1
    communes = [u for u in units if u.level == 2]
    assert len(communes) == 126
    assert {u.parent_code for u in communes} == {"01"}
    assert sum(u.type == "phường" for u in communes) == 51
    assert sum(u.type == "xã" for u in communes) == 75


def test_the_census_is_carried_into_the_communes_without_loss_or_double_counting() -> None:
    wards = seed.hanoi_wards()
    communes = seed.hanoi_communes()
    # each commune's carried population is rounded once: at most half a person each
    assert abs(sum(c.population for c in communes) - sum(w.population for w in wards)) <= 63
    # Phường Ba Đình took Trúc Bạch and Quán Thánh whole and parts of three more wards
    by_code = {c.code: c.population for c in communes}
    ward = {w.code: w.population for w in wards}
    assert by_code["00004"] > ward["00004"] + ward["00013"]
    targets = seed.ward_targets(communes)
    assert sum(t for (_, i), t in targets.items() if i == "cccd_collected") == 134_329
    assert {u for u, _ in targets} == set(by_code)


async def test_a_commune_chief_escalates_to_the_city_chief(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            await admin.upsert_units(conn, seed.hanoi_units_2025(), "test")
        assert await notifier_reference.ancestors(conn, "00004") == ["01"]
        levels = await conn.fetch("SELECT level, count(*) FROM units GROUP BY 1 ORDER BY 1")
        assert [(r[0], r[1]) for r in levels] == [(1, 1), (2, 126)]
    finally:
        await conn.close()
