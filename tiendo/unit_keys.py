"""How a version of a unit is keyed (docs/units-over-time.md): the first version of an
official code by the code itself, a later one reusing it by `<code>@<first local day>`.
Stated once here: the aggregator writes keys, ingest reads official codes back from them."""

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

# An official code, and a version's key: the code, or `<code>@<day>` for a later version
# of a reused code. Every API that names a unit takes a key (docs/units-over-time.md).
CODE_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"
KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,32}(@[0-9]{4}-[0-9]{2}-[0-9]{2})?$"
KEY_LENGTH = 32 + len("@2025-07-01")

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
