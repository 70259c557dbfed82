"""A simple python-socketio chat service, written the obvious way.

Clients connect with Socket.IO and join a room per conversation; a send is an
HTTP POST that inserts one row and emits to the room through the Redis
manager, so several instances share rooms. No event stream, no batching, no
abuse checks: the baseline the messaging backend is measured against.

Run: ``python -m tools.loadgen.peer --port 8090`` (database and Redis URLs
from ``MSG_DATABASE_URL`` and ``MSG_REDIS_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

import asyncpg
import socketio
import uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from libs import auth, logs
from libs.service import tune_gc

log = logging.getLogger("peer")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_conversations (
    tenant_id text NOT NULL, id bigserial PRIMARY KEY, members text[] NOT NULL);
CREATE TABLE IF NOT EXISTS peer_members (
    tenant_id text NOT NULL, user_id text NOT NULL, conversation_id bigint NOT NULL,
    PRIMARY KEY (tenant_id, user_id, conversation_id));
CREATE TABLE IF NOT EXISTS peer_messages (
    id bigserial PRIMARY KEY, conversation_id bigint NOT NULL, sender_id text NOT NULL,
    body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS peer_messages_conv ON peer_messages (conversation_id, id);
"""

POOL = web.AppKey("pool", asyncpg.Pool)


def build(secret: str, database_url: str, redis_url: str) -> web.Application:
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=socketio.AsyncRedisManager(redis_url),
        cors_allowed_origins=[],
    )
    app = web.Application()
    sio.attach(app)

    def who(request: web.Request) -> auth.Principal:
        header = request.headers.get("Authorization", "")
        try:
            return auth.verify(secret, header.removeprefix("Bearer ").strip())
        except auth.AuthError as exc:
            raise web.HTTPUnauthorized() from exc

    @sio.event
    async def connect(sid: str, environ: dict, data: dict | None) -> bool:
        try:
            user = auth.verify(secret, (data or {}).get("token", ""))
        except auth.AuthError:
            return False
        rows = await app[POOL].fetch(
            "SELECT conversation_id FROM peer_members "
            "WHERE tenant_id=$1 AND user_id=$2",
            user.tenant,
            user.user_id,
        )
        for row in rows:
            await sio.enter_room(sid, str(row["conversation_id"]))
        return True

    async def create_conversation(request: web.Request) -> web.Response:
        user = who(request)
        members = sorted({user.user_id, *(await request.json())["members"]})
        async with app[POOL].acquire() as conn, conn.transaction():
            conv = await conn.fetchval(
                "INSERT INTO peer_conversations (tenant_id, members) "
                "VALUES ($1, $2) RETURNING id",
                user.tenant,
                members,
            )
            await conn.executemany(
                "INSERT INTO peer_members VALUES ($1, $2, $3)",
                [(user.tenant, m, conv) for m in members],
            )
        return web.json_response({"id": str(conv), "members": members}, status=201)

    async def send(request: web.Request) -> web.Response:
        user = who(request)
        data = await request.json()
        conv = int(data["conversation_id"])
        async with app[POOL].acquire() as conn:
            member = await conn.fetchval(
                "SELECT 1 FROM peer_members "
                "WHERE tenant_id=$1 AND user_id=$2 AND conversation_id=$3",
                user.tenant,
                user.user_id,
                conv,
            )
            if not member:
                raise web.HTTPForbidden()
            row = await conn.fetchrow(
                "INSERT INTO peer_messages (conversation_id, sender_id, body) "
                "VALUES ($1, $2, $3) RETURNING id, created_at",
                conv,
                user.user_id,
                data["body"],
            )
        message = {
            "id": str(row["id"]),
            "conversation_id": str(conv),
            "sender_id": user.user_id,
            "body": data["body"],
            "created_at": row["created_at"].isoformat(),
            "seq": row["id"],
        }
        await sio.emit("messages:new", message, room=str(conv))
        return web.json_response(message, status=201)

    async def list_messages(request: web.Request) -> web.Response:
        who(request)
        rows = await app[POOL].fetch(
            "SELECT id, sender_id, body, created_at FROM peer_messages "
            "WHERE conversation_id=$1 ORDER BY id DESC LIMIT 50",
            int(request.query["conversation_id"]),
        )
        return web.json_response(
            {"messages": [{"id": str(r["id"]), "body": r["body"]} for r in rows]}
        )

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # memory per socket, like the gateway

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    async def open_pool(app: web.Application) -> None:
        app[POOL] = await asyncpg.create_pool(database_url, min_size=2, max_size=20)
        async with app[POOL].acquire() as conn:
            await conn.execute(_SCHEMA)

    async def close_pool(app: web.Application) -> None:
        await app[POOL].close()

    app.on_startup.append(open_pool)
    app.on_cleanup.append(close_pool)
    app.add_routes(
        [
            web.post("/peer/conversations", create_conversation),
            web.post("/peer/messages", send),
            web.get("/peer/messages", list_messages),
            web.get("/healthz", health),
            web.get("/metrics", metrics),
        ]
    )
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="peer")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    logs.configure("peer", f"peer:{args.port}")
    # The same GC settings as the messaging services: without them both stop
    # for up to a second at 15,000 sockets, and the comparison would measure
    # the collector rather than the two designs.
    tune_gc()
    app = build(
        os.environ["MSG_JWT_SECRET"],
        os.environ["MSG_DATABASE_URL"],
        os.environ["MSG_REDIS_URL"],
    )

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096).start()
        log.info("peer.listening", extra={"port": args.port})
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    uvloop.run(serve())  # the same event loop as the messaging services


if __name__ == "__main__":
    main()
