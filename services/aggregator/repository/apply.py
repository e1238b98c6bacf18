"""Applying events: the live form of the counting rules lives in `tiendo.counting` (one
room with the recount and `as_of`); these are the aggregator's names for it."""

from tiendo.counting import apply_events
from tiendo.counting import prepare as prepare_staging
from tiendo.counting.batch import LOCK_REPLAN
from tiendo.database import Connection

__all__ = ["LOCK_REPLAN", "apply_events", "prepare"]

# A batch of 20,000 events groups and sorts tens of thousands of (key, day) rows; at the
# default 4 MB those sorts spilled to disk. For the applying session only: it runs one
# statement at a time.
APPLY_WORK_MEM = "SET work_mem = '64MB'"


async def prepare(conn: Connection) -> None:
    """Ready a connection that applies batches for its life: its staging tables and its
    sort memory."""
    await prepare_staging(conn)
    await conn.execute(APPLY_WORK_MEM)
