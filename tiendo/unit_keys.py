"""How a version of a unit is keyed (docs/units-over-time.md): the first version of an
official code by the code itself, a later one reusing it by `<code>@<first local day>`.
Stated once here: the aggregator writes keys, ingest reads official codes back from them."""

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

# Cut-overs are local midnights: the tree is Vietnam's, whatever the server's zone.
TREE_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")


def cut_over(day: date) -> datetime:
    """The moment a tree loaded for `day` comes into force: local midnight in Hà Nội."""
    return datetime.combine(day, time(), tzinfo=TREE_ZONE)


def version_key(code: str, day: date) -> str:
    """The key of a later version reusing `code` (the first version is keyed `code`)."""
    return f"{code}@{day.isoformat()}"


def admin_code_of(key: str) -> str:
    """The official code a version key stands for."""
    return key.split("@", 1)[0]
