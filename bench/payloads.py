"""The same realistic event mix for every figure of a run: increments (most), subject
events (VNeID activations carry a keyed hash), snapshots (ward report forms), thousands of
units (Hà Nội's 579 wards and, with --units, synthetic residential groups under them)."""

import random
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from devtools.demo import seed
from tiendo.event import Event, Kind

RATIO_SNAPSHOT = 0.01
RATIO_SUBJECT = 0.30


def wards() -> list[str]:
    return [w.code for w in seed.hanoi_wards()]


def events(
    n: int,
    *,
    starts_at: datetime,
    prefix: str = "b",
    seed_value: int | None = None,
    until: datetime | None = None,
) -> Iterator[Event]:
    # Each prefix its own stream (unless a seed is given): two phases of a run must not send
    # the same citizens' subjects again, which would measure the duplicate path instead.
    rng = random.Random(zlib.crc32(prefix.encode()) if seed_value is None else seed_value)
    units = wards()
    until = until or datetime.now(UTC) - timedelta(minutes=1)
    span = max(1, int((until - starts_at).total_seconds()))
    now = datetime.now(UTC)
    for i in range(n):
        unit = rng.choice(units)
        roll = rng.random()
        at = starts_at + timedelta(seconds=rng.randrange(span))
        if roll < RATIO_SNAPSHOT:
            yield Event(
                f"{prefix}{i}",
                unit,
                "cccd_collected",
                Kind.SNAPSHOT,
                rng.randrange(500),
                at,
                received_at=now,
            )
        elif roll < RATIO_SNAPSHOT + RATIO_SUBJECT:
            yield Event(
                f"{prefix}{i}",
                unit,
                "eid_activated_l2",
                Kind.INCREMENT,
                1,
                at,
                subject=f"{rng.getrandbits(256):064x}",
                received_at=now,
            )
        else:
            yield Event(
                f"{prefix}{i}",
                unit,
                rng.choice(seed.INDICATORS),
                Kind.INCREMENT,
                rng.randint(1, 3),
                at,
                received_at=now,
            )
