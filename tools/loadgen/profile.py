"""What a load test does: its shape (tenants, sockets, rates) and its bodies."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field, replace

from libs.schema.types import BODY_MAX_CHARS


@dataclass(frozen=True)
class LoadProfile:
    tenants: int = 200
    sockets: int = 1500
    rate: float = 50.0  # sends per second, on schedule
    duration: float = 60.0  # seconds of measured load
    warmup: float = 10.0  # seconds of the same load first, not measured
    get_share: float = 0.2  # GET list requests per send
    churn: float = 1.0  # socket disconnect/reconnect cycles per second
    abusers: int = 10  # users who send bursts above their limit
    abuse_limit: int = 5  # the limit set for abusers during the run
    abuse_window: float = 10.0
    duplicate_share: float = 0.02  # sends resent at once with the same body
    retry_share: float = 0.02  # sends retried with the same client_msg_id
    drain: float = 5.0  # seconds to wait for deliveries after the last send
    connect_concurrency: int = 200
    seed: int = 1
    gateways: list[str] = field(default_factory=lambda: ["http://127.0.0.1:8080"])

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def plain_fanout(self) -> LoadProfile:
        """The same sends, GETs and sockets without churn, abusers or
        resends: what a peer with no presence, resume or abuse checks can
        be measured on."""
        return replace(self, churn=0.0, abusers=0, duplicate_share=0.0, retry_share=0.0)


_WORDS = (
    "meeting",
    "notes",
    "shipped",
    "review",
    "deploy",
    "lunch",
    "tomorrow",
    "invoice",
    "draft",
    "budget",
    "customer",
    "ticket",
    "roadmap",
    "release",
    "design",
    "sprint",
    "question",
    "update",
    "thanks",
    "call",
)
_NON_ASCII = ("café", "naïve", "straße", "日本語", "сообщение", "😀", "👍🏽", "✓", "€")


class Bodies:
    """Message bodies like the seed's: median about 350 bytes, up to 4,000
    characters, one in ten with non-ASCII text."""

    MEDIAN = 350

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def length(self) -> int:
        size = int(self._rng.lognormvariate(math.log(self.MEDIAN), 0.55))
        if self._rng.random() < 0.002:
            size = BODY_MAX_CHARS  # the occasional maximum
        return max(8, min(size, BODY_MAX_CHARS))

    def make(self, marker: str) -> str:
        target = self.length()
        words = [marker]
        size = len(marker)
        fancy = self._rng.random() < 0.1
        while size < target:
            pool = _NON_ASCII if fancy and self._rng.random() < 0.3 else _WORDS
            word = self._rng.choice(pool)
            words.append(word)
            size += len(word) + 1
        return " ".join(words)[:target] if target > len(marker) else marker
