"""``msgctl listen``: a WebSocket client that prints each event as a line."""

from __future__ import annotations

import sys

import aiohttp


async def listen(base_url: str, token: str, since_seq: int | None, count: int) -> int:
    url = base_url.rstrip("/").replace("http", "ws", 1) + "/api/messaging/ws"
    params = {} if since_seq is None else {"since_seq": str(since_seq)}
    headers = {"Authorization": f"Bearer {token}"}
    seen = 0
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, params=params, headers=headers, heartbeat=20) as ws,
    ):
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            print(msg.data, flush=True)
            if '"event":"messages:new"' in msg.data:
                seen += 1
                if count and seen >= count:
                    return 0
        print(f"closed: code={ws.close_code}", file=sys.stderr)
    return 0
