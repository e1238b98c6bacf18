"""Versioned unit trees for the cut-over tests, written with SQL (the loader is not what
these tests are about): versions, the crosswalk, then the hook a loader calls.

`hanoi_2025`: the old tree (in force since always until 1 July 2025) is city 01 → districts
D1, D2; D1 → wards 00004 "Trúc Bạch" (A), 00005 (B), 00006 (C); D2 → ward 00008. From
1 July 2025 the district level is gone: 01 (continued) → 00004@2025-07-01 "Ba Đình" (A and B
whole), X and Y (C split 0.6 / 0.4, or without shares), 00008@2025-07-01 (00008 whole, its
parent changed); D1 is split without shares over Ba Đình, X and Y, D2 goes whole into
00008@2025-07-01.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.aggregator import cutover
from services.aggregator.repository import reference as reference_sql
from tiendo.database import Connection

NEVER = datetime.min.replace(tzinfo=UTC)  # stands for '-infinity'
CUT = datetime(2025, 6, 30, 17, 0, tzinfo=UTC)  # 1 July 2025, 00:00 in Hà Nội
GRACE = CUT + timedelta(days=90)


@dataclass(frozen=True, slots=True)
class Version:
    key: str
    name: str
    level: int
    parent: str | None
    valid_from: datetime | None = None  # None: since always
    valid_to: datetime | None = None
    admin_code: str | None = None  # None: the key
    grace_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    old: str
    new: str
    share: Decimal | None = None
    whole: bool = False


def _old(key: str, name: str, level: int, parent: str) -> Version:
    return Version(key, name, level, parent, valid_to=CUT, grace_until=GRACE)


def _new(key: str, name: str, parent: str, admin_code: str | None = None) -> Version:
    return Version(key, name, 2, parent, valid_from=CUT, admin_code=admin_code)


def hanoi_2025(*, shares: bool = True) -> tuple[list[Version], list[Transfer]]:
    versions = [
        Version("01", "Thành phố Hà Nội", 1, None),
        _old("D1", "Quận Ba Đình", 2, "01"),
        _old("D2", "Quận Tây Hồ", 2, "01"),
        _old("00004", "Phường Trúc Bạch", 3, "D1"),
        _old("00005", "Phường Quán Thánh", 3, "D1"),
        _old("00006", "Phường Ngọc Hà", 3, "D1"),
        _old("00008", "Phường Bưởi", 3, "D2"),
        _new("00004@2025-07-01", "Phường Ba Đình", "01", admin_code="00004"),
        _new("X", "Phường Ngọc Hà", "01"),
        _new("Y", "Phường Giảng Võ", "01"),
        _new("00008@2025-07-01", "Phường Bưởi", "01", admin_code="00008"),
    ]
    transfers = [
        Transfer("00004", "00004@2025-07-01", whole=True),
        Transfer("00005", "00004@2025-07-01", whole=True),
        Transfer("00006", "X", Decimal("0.6") if shares else None),
        Transfer("00006", "Y", Decimal("0.4") if shares else None),
        Transfer("00008", "00008@2025-07-01", whole=True),
        Transfer("D1", "00004@2025-07-01"),
        Transfer("D1", "X"),
        Transfer("D1", "Y"),
        Transfer("D2", "00008@2025-07-01", whole=True),
    ]
    return versions, transfers


INSERT_VERSION = """
INSERT INTO units (code, name, level, parent_code, admin_code, valid_from, valid_to,
                   grace_until)
VALUES ($1, $2, $3, $4, $5, coalesce($6, '-infinity'::timestamptz), $7, $8)
"""

INSERT_TRANSFER = """
INSERT INTO unit_transfers (old_unit, new_unit, transfer, share, at)
SELECT $1, $2, $3, $4, u.valid_to FROM units u WHERE u.code = $1
"""


async def write_tree(conn: Connection, versions: list[Version], transfers: list[Transfer]) -> None:
    """Store the versions and the crosswalk, then run what a loader runs after a change
    (anchors, every campaign re-planned onto its tree). The caller owns the transaction."""
    await conn.executemany(
        INSERT_VERSION,
        [
            (
                v.key,
                v.name,
                v.level,
                v.parent,
                v.admin_code or v.key,
                v.valid_from,
                v.valid_to,
                v.grace_until,
            )
            for v in versions
        ],
    )
    await conn.executemany(
        INSERT_TRANSFER,
        [(t.old, t.new, "whole" if t.whole else "part", t.share) for t in transfers],
    )
    assert await reference_sql.check_tree(conn) == 0
    await cutover.after_tree_change(conn)
