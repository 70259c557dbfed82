"""What a check decides, whichever store answered it."""

from __future__ import annotations

from dataclasses import dataclass

from libs.schema.api import LimitInfo, Verdict

# A client_msg_id is remembered this long; a retry later than that is still
# found by ingest in the store, just not by the guard.
IDEMPOTENCY_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class Policy:
    """The limits in force for one user."""

    limit: int
    window: int  # seconds
    duplicate_window: float  # seconds; 0 = no duplicate suppression


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    policy: Policy
    remaining: int
    next_slot: float  # seconds until one more send fits
    original_id: str | None = None

    @property
    def rejected(self) -> bool:
        return self.verdict in ("rate_limited", "duplicate")

    @property
    def retry_after(self) -> float | None:
        return self.next_slot if self.verdict == "rate_limited" else None

    def limit_info(self) -> LimitInfo:
        return LimitInfo(
            limit=self.policy.limit,
            remaining=self.remaining,
            reset=self.next_slot,
            window=self.policy.window,
        )
