"""``msgctl listen``: a user's live WebSocket events, one line each.

It stays connected the way README.md tells a client to: when the gateway
closes the socket (shutting down, too slow, token expired) or the connection
drops, it reconnects after a short back-off with ``since_seq`` set to the
highest ``seq`` it printed, so nothing sent meanwhile is missed or printed
twice. It stops when the gateway refuses the token.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

import aiohttp

CLOSE_UNAUTHORIZED = 4003
CLOSE_ABNORMAL = 1006
# Why a socket closed, for the line printed on reconnect.
CLOSE_MEANINGS = {
    1000: "closed",
    1001: "gateway shutting down",
    1006: "connection lost",
    1011: "gateway error",
    1013: "history unavailable",
    4001: "token expired",
    4008: "too slow",
}
BACKOFF_FIRST = 0.25  # seconds; doubled after each failed attempt
BACKOFF_MAX = 5.0


class Refused(Exception):
    """The gateway will not take this token: reconnecting cannot help."""


class Listener:
    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        since_seq: int | None,
        count: int,
        *,
        out: TextIO = sys.stdout,
        err: TextIO = sys.stderr,
    ) -> None:
        """``token`` signs a fresh token for each connection (one that
        expired is what a 4001 close means)."""
        self.url = base_url.rstrip("/").replace("http", "ws", 1) + "/api/messaging/ws"
        self.token = token
        self.since_seq = since_seq  # the highest seq printed, or as given
        self.count = count
        self.seen = 0
        self.connected = False  # a socket was opened once: worth reconnecting
        self.out = out
        self.err = err

    async def run(self) -> int:
        attempt = 0
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    why, ready = await self._connection(session)
                except Refused as exc:
                    print(f"msgctl listen: {exc}", file=self.err, flush=True)
                    return 1
                if why is None:
                    return 0  # --count reached
                if not self.connected:
                    print(
                        f"msgctl listen: {why}; is the stack running? "
                        "(make run, or give --url)",
                        file=self.err,
                        flush=True,
                    )
                    return 1
                if ready:
                    attempt = 0  # it was up: start the back-off again
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**attempt)
                attempt += 1
                print(
                    f"msgctl listen: {why}; reconnecting in {delay:g} s "
                    f"({self._resume()})",
                    file=self.err,
                    flush=True,
                )
                await asyncio.sleep(delay)

    async def _connection(
        self, session: aiohttp.ClientSession
    ) -> tuple[str | None, bool]:
        """One socket, printed until it closes: (why it closed, or None when
        done; whether live delivery had started)."""
        params = {} if self.since_seq is None else {"since_seq": str(self.since_seq)}
        headers = {"Authorization": f"Bearer {self.token()}"}
        ready = False
        try:
            async with session.ws_connect(
                self.url, params=params, headers=headers, heartbeat=20
            ) as ws:
                self.connected = True
                while True:
                    msg = await ws.receive()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    print(msg.data, file=self.out, flush=True)
                    frame = _frame(msg.data)
                    ready = ready or frame.get("event") == "ready"
                    if frame.get("event") == "messages:new" and self._count(frame):
                        return None, ready
                code = ws.close_code
                reason = msg.extra if msg.type == aiohttp.WSMsgType.CLOSE else ""
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise Refused(
                    f"the gateway refused the token (HTTP {exc.status}); check "
                    "MSG_JWT_SECRET or --root"
                ) from None
            return f"the gateway answered HTTP {exc.status}", False
        except (aiohttp.ClientError, OSError) as exc:
            return f"no connection to {self.url} ({exc.__class__.__name__})", False
        if code == CLOSE_UNAUTHORIZED:
            detail = f": {reason}" if reason else ""
            raise Refused(f"the gateway refused the token (4003{detail})")
        code = code or CLOSE_ABNORMAL  # gone without a close frame
        return f"socket closed {code} ({CLOSE_MEANINGS.get(code, 'closed')})", ready

    def _resume(self) -> str:
        if self.since_seq is None:
            return "live only: nothing printed to resume after"
        return f"since_seq={self.since_seq}"

    def _count(self, frame: dict[str, Any]) -> bool:
        """Note a message's seq; True once --count messages were printed."""
        seq = frame.get("data", {}).get("seq")
        if isinstance(seq, int):
            self.since_seq = max(seq, self.since_seq or 0)
        self.seen += 1
        return bool(self.count) and self.seen >= self.count


def _frame(text: str) -> dict[str, Any]:
    try:
        frame = json.loads(text)
    except ValueError:
        return {}
    return frame if isinstance(frame, dict) else {}
