"""A rebuild in progress, as every reader of figures sees it (SPEC §5: "a recount in
progress is shown as such, never as a wrong number"). While the rebuild replays the topic
the counters hold part of the events: the read API answers 503 with this, the stored board
figures and the per-unit series are not refreshed, and the notifier judges nothing
(docs/semantics.md "Rebuild")."""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Recounting:
    """Since when, and how far: `replayed` of the `total` records the rebuild replays."""

    started_at: datetime
    replayed: int
    total: int

    @property
    def fraction(self) -> float:
        return self.replayed / self.total if self.total > 0 else 0.0

    def describe(self) -> str:
        return (
            f"the counters are being rebuilt from the events topic since "
            f"{self.started_at.isoformat()}: {self.replayed} of {self.total} records "
            f"replayed ({int(100 * self.fraction)} %); figures return when it ends"
        )
