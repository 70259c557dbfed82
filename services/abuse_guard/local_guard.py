"""The same rules in this process's memory, for while Redis is unreachable.

Each replica counts on its own, so N replicas together accept at most N
times a user's limit during an outage, and a duplicate is caught only when
both sends reach the same replica. Sends accepted before the outage are
unknown here. Memory is bounded: past ``capacity`` users or markers, the
least recently used are forgotten.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from libs.schema.api import AbuseCheck, Verdict
from services.abuse_guard.decision import IDEMPOTENCY_SECONDS, Decision, Policy

Clock = Callable[[], float]
_UserKey = tuple[str, str]
_MarkerKey = tuple[str, ...]


class LocalGuard:
    def __init__(self, capacity: int = 100_000, clock: Clock = time.monotonic) -> None:
        self._capacity = capacity
        self._clock = clock
        # per user: (accepted at, message id), oldest first
        self._sends: OrderedDict[_UserKey, deque[tuple[float, str]]] = OrderedDict()
        # duplicate and idempotency markers: key -> (message id, expires at)
        self._markers: OrderedDict[_MarkerKey, tuple[str, float]] = OrderedDict()

    def check(self, request: AbuseCheck, policy: Policy) -> Decision:
        now = self._clock()
        log = self._log(request, policy, now)
        idempotency, duplicate = _marker_keys(request)

        def answer(verdict: Verdict, original: str | None = None) -> Decision:
            return Decision(
                verdict=verdict,
                policy=policy,
                remaining=max(policy.limit - len(log), 0),
                next_slot=_next_slot(log, policy, now),
                original_id=original,
            )

        if request.client_msg_id is not None:
            original = self._marker(idempotency, now)
            if original is not None:
                return answer("retry", original)
        if policy.duplicate_window > 0:
            original = self._marker(duplicate, now)
            if original is not None:
                return answer("duplicate", original)
        if len(log) >= policy.limit:
            return answer("rate_limited")
        log.append((now, request.message_id))
        if policy.duplicate_window > 0:
            self._mark(duplicate, request.message_id, now + policy.duplicate_window)
        if request.client_msg_id is not None:
            self._mark(idempotency, request.message_id, now + IDEMPOTENCY_SECONDS)
        return answer("allow")

    def release(self, request: AbuseCheck) -> bool:
        removed = False
        log = self._sends.get((request.tenant, request.sender_id))
        if log is not None:
            kept = [entry for entry in log if entry[1] != request.message_id]
            removed = len(kept) != len(log)
            log.clear()
            log.extend(kept)
        _, duplicate = _marker_keys(request)
        found = self._markers.get(duplicate)
        if found is not None and found[0] == request.message_id:
            del self._markers[duplicate]
            removed = True
        return removed

    def clear(self) -> None:
        self._sends.clear()
        self._markers.clear()

    def _log(
        self, request: AbuseCheck, policy: Policy, now: float
    ) -> deque[tuple[float, str]]:
        key = (request.tenant, request.sender_id)
        log = self._sends.get(key)
        if log is None:
            log = self._sends[key] = deque()
            if len(self._sends) > self._capacity:
                self._sends.popitem(last=False)
        else:
            self._sends.move_to_end(key)
        while log and log[0][0] <= now - policy.window:
            log.popleft()
        return log

    def _marker(self, key: _MarkerKey, now: float) -> str | None:
        found = self._markers.get(key)
        if found is None:
            return None
        if found[1] <= now:
            del self._markers[key]
            return None
        return found[0]

    def _mark(self, key: _MarkerKey, message_id: str, expires_at: float) -> None:
        self._markers[key] = (message_id, expires_at)
        self._markers.move_to_end(key)
        if len(self._markers) > self._capacity:
            self._markers.popitem(last=False)


def _marker_keys(request: AbuseCheck) -> tuple[_MarkerKey, _MarkerKey]:
    who = (request.tenant, request.sender_id)
    idempotency = ("idem", *who, request.client_msg_id or "")
    duplicate = ("dup", *who, request.conversation_id, request.body_fingerprint)
    return idempotency, duplicate


def _next_slot(log: deque[tuple[float, str]], policy: Policy, now: float) -> float:
    """Seconds until one more send fits (see check.lua for the same rule)."""
    if not log:
        return 0.0
    index = max(len(log) - policy.limit, 0)
    return max(log[index][0] + policy.window - now, 0.0)
