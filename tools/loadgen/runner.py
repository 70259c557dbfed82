"""One load test, from set-up to the last delivery.

Phases: create the conversations, connect every socket, then run the load
(sends, GETs, socket churn and abusers, each on its own schedule) for the
profile's duration, then wait for the last deliveries and count what was
lost or repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from tools.loadgen.population import Abuser, Conversation, Population, User
from tools.loadgen.profile import Bodies, LoadProfile
from tools.loadgen.recorder import Recorder
from tools.loadgen.target import Frame, LoadSocket, MessagingTarget

MARK = "lt|"
PRESENCE_GRACE = 8.0  # seconds a churned socket stays away (beyond offline grace)
# A socket whose resume fails (the server closes it 1013 when it cannot read
# the history in time) comes back as a client would: again, after a backoff.
RESUME_ATTEMPTS = 4

LimitSetter = Callable[[list[tuple[str, str]], int, float], Awaitable[None]]


def _marker(run_id: str, n: int, due_wall: float) -> str:
    return f"{MARK}{run_id}|{n}|{int(due_wall * 1_000_000)}"


def _sent_at(body: str) -> float | None:
    """The due time a load-test body carries, in wall-clock seconds."""
    if not body.startswith(MARK):
        return None
    head = body.split(" ", 1)[0]
    try:
        return int(head.rsplit("|", 1)[1]) / 1_000_000
    except (IndexError, ValueError):
        return None


class LoadRun:
    def __init__(
        self,
        profile: LoadProfile,
        target: MessagingTarget,
        *,
        set_limits: LimitSetter | None = None,
        progress: bool = True,
    ) -> None:
        self.profile = profile
        self.target = target
        self.set_limits = set_limits
        self.show_progress = progress
        self.run_id = uuid.uuid4().hex[:6]
        self.rng = random.Random(profile.seed)
        self.bodies = Bodies(self.rng)
        self.recorder = Recorder()
        self.population = Population.plan(profile, self.rng, self.run_id)
        self.sockets: list[LoadSocket] = []
        self._expect_presence: dict[tuple[str, str, str], float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_start = 0.0
        self._step = 0  # which load() of this run, for unique client_msg_ids
        self._presence_frames = 0
        self._wall_start = 0.0
        self.facts: dict[str, Any] = {}

    # ------------------------------------------------------------ set-up

    async def setup(self) -> None:
        self._say(f"creating {len(self.population.conversations)} conversations")
        started = time.monotonic()
        await self.population.create(self.target)
        self.facts["setup_conversations_s"] = round(time.monotonic() - started, 1)
        rss_before = await self._gateway_rss()
        self._say(f"connecting {self.profile.sockets} sockets")
        started = time.monotonic()
        await self._connect_all(self.population.users)
        self.facts["connect_s"] = round(time.monotonic() - started, 1)
        self.facts["settle_s"] = await self._settle()
        rss_after = await self._gateway_rss()
        if rss_before is not None and rss_after is not None and self.sockets:
            per_socket = (rss_after - rss_before) / len(self.sockets)
            self.facts["gateway_rss_bytes"] = int(rss_after)
            self.facts["gateway_rss_per_socket_bytes"] = int(per_socket)
        if self.population.abusers and self.set_limits is not None:
            await self.set_limits(
                [(a.tenant, a.user_id) for a in self.population.abusers],
                self.profile.abuse_limit,
                self.profile.abuse_window,
            )

    async def _settle(self, quiet: int = 100, limit: float = 120.0) -> float:
        """Wait out the presence storm of the connect phase: every user coming
        online is told to every other socket of its tenant (tenant size
        squared frames in all). Load starts once fewer than ``quiet``
        presence frames a second arrive, for two seconds running; returns
        how long that took, which the results report."""
        started = time.monotonic()
        calm = 0
        while calm < 2 and time.monotonic() - started < limit:
            before = self._presence_frames
            await asyncio.sleep(1.0)
            calm = calm + 1 if self._presence_frames - before < quiet else 0
        self._say(f"presence settled after {time.monotonic() - started:.0f}s")
        return round(time.monotonic() - started, 1)

    async def _gateway_rss(self) -> float | None:
        total = 0.0
        for gateway in self.target.gateways:
            try:
                value = await self.target.metric(
                    gateway, "process_resident_memory_bytes"
                )
            except OSError:
                return None
            if value is None:
                return None
            total += value
        return total

    async def _connect_all(self, users: list[User]) -> None:
        slots = asyncio.Semaphore(self.profile.connect_concurrency)

        async def connect(user: User) -> None:
            socket = LoadSocket(
                user.socket_id,
                user.tenant,
                user.user_id,
                self.target.gateway_for(user.socket_id),
                self._on_frame,
            )
            async with slots:
                for attempt in range(5):
                    try:
                        await socket.open(self.target)
                        await asyncio.wait_for(socket.ready.wait(), 30)
                        break
                    except (OSError, TimeoutError):
                        await asyncio.sleep(0.5 * (attempt + 1))
                else:
                    raise RuntimeError(f"socket {user.socket_id} could not connect")
            self.sockets.append(socket)

        await asyncio.gather(*(connect(u) for u in users))
        self.sockets.sort(key=lambda s: s.socket_id)

    # ---------------------------------------------------------- receiving

    def _on_frame(
        self, socket: LoadSocket, frame: Frame, now: float, live: bool
    ) -> None:
        event, data = frame.get("event"), frame.get("data") or {}
        if event == "messages:new":
            seq = data.get("seq", 0)
            if socket.max_seq is None or seq > socket.max_seq:
                socket.max_seq = seq
            sent = _sent_at(data.get("body", ""))
            if sent is not None:
                # A replayed message waited for its socket to come back; that
                # is not delivery latency, but it does count as received.
                latency = now - sent if live else None
                self.recorder.received(socket.socket_id, data["id"], latency)
        elif event == "presence:update":
            self._presence_frames += 1
            key = (socket.tenant, data.get("user_id", ""), data.get("status", ""))
            since = self._expect_presence.get(key)
            if since is not None:
                self.recorder.latency("presence", now - since)

    # -------------------------------------------------------------- load

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _schedule(
        self, rate: float, until: float, action: Callable[[int, float], Awaitable[None]]
    ) -> None:
        """Start ``action(n, due)`` at ``rate`` per second, on time, until
        ``until`` (loop time), whether or not earlier ones have finished."""
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while (due := start + n / rate) < until:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.recorder.latency("lag", max(0.0, loop.time() - due))
            self._spawn(action(n, due))
            n += 1

    def _wall(self, loop_time: float) -> float:
        return self._wall_start + (loop_time - self._loop_start)

    def _pick_sender(self) -> tuple[Conversation, str]:
        while True:
            user = self.rng.choice(self.population.users)
            if user.conversations:
                conv = self.rng.choice(user.conversations)
                if len(conv.members) > 1 or conv.members[0] == user.user_id:
                    return conv, user.user_id

    async def _send(self, n: int, due: float) -> None:
        loop = asyncio.get_running_loop()
        conv, sender = self._pick_sender()
        body = self.bodies.make(_marker(self.run_id, n, self._wall(due)))
        gateway = self.target.gateway_for(n)
        # Unique per rate step too: the same key again would rightly be
        # answered as a retry of the earlier step's message.
        client_msg_id = f"{self.run_id}-{self._step}-{n}"
        status, reply = await self.target.send(
            gateway, conv.tenant, sender, conv.id, body, client_msg_id
        )
        self.recorder.answered("post", status, loop.time() - due)
        if status != 201:
            self.recorder.counts[f"post_{status}"] += 1
            return
        self.recorder.accepted(reply["id"], conv.recipients)
        if self.rng.random() < self.profile.retry_share:
            again, replayed = await self.target.send(
                gateway, conv.tenant, sender, conv.id, body, client_msg_id
            )
            self.recorder.counts["retries"] += 1
            if again == 201 and replayed.get("id") == reply["id"]:
                self.recorder.counts["retries_answered_original"] += 1
        if self.rng.random() < self.profile.duplicate_share:
            resent, answer = await self.target.send(
                self.target.gateway_for(n + 1),
                conv.tenant,
                sender,
                conv.id,
                body,
                f"{client_msg_id}-again",
            )
            self.recorder.counts["duplicates_sent"] += 1
            if resent == 409:
                self.recorder.counts["duplicates_suppressed"] += 1
            elif resent == 201:  # a real second message now; it must arrive too
                self.recorder.accepted(answer["id"], conv.recipients)

    async def _get(self, n: int, due: float) -> None:
        loop = asyncio.get_running_loop()
        conv, user = self._pick_sender()
        status = await self.target.list_messages(
            self.target.gateway_for(n), conv.tenant, user, conv.id
        )
        self.recorder.answered("get", status, loop.time() - due)

    async def _churn(self, n: int, due: float) -> None:
        """Close one socket, stay away long enough to be seen offline, come
        back resuming by seq; peers' presence updates are timed."""
        socket = self.sockets[self.rng.randrange(len(self.sockets))]
        if socket.churning:
            return
        socket.churning = True
        try:
            self._expect_presence[(socket.tenant, socket.user_id, "offline")] = (
                time.time()
            )
            await socket.close()
            await asyncio.sleep(PRESENCE_GRACE * (0.5 + self.rng.random()))
            self._expect_presence[(socket.tenant, socket.user_id, "online")] = (
                time.time()
            )
            for attempt in range(RESUME_ATTEMPTS):
                if attempt:
                    self.recorder.counts["churn_resume_retries"] += 1
                    await socket.close()
                    await asyncio.sleep(0.5 * 2**attempt * (0.5 + self.rng.random()))
                with contextlib.suppress(OSError, aiohttp.ClientError):
                    await socket.open(self.target, resume=True)
                    if await socket.resumed(30):
                        self.recorder.counts["churn_cycles"] += 1
                        return
            self.recorder.counts["churn_failures"] += 1
        finally:
            socket.churning = False

    async def _abuse(self, until: float) -> None:
        """Each abuser sends bursts of limit + 5 at once, one per window."""
        loop = asyncio.get_running_loop()
        extra = 5
        while loop.time() + self.profile.abuse_window < until:
            bursts = [
                self._burst(a, self.profile.abuse_limit + extra)
                for a in self.population.abusers
            ]
            await asyncio.gather(*bursts)
            await asyncio.sleep(self.profile.abuse_window + 0.5)

    async def _burst(self, abuser: Abuser, count: int) -> None:
        conv = abuser.conversation
        started = asyncio.get_running_loop().time()

        async def one(i: int) -> int:
            # A marker of its own keeps each body distinct (not a duplicate).
            marker = _marker(f"{self.run_id}b{i}", -1, self._wall(started))
            body = self.bodies.make(marker)
            status, reply = await self.target.send(
                self.target.gateway_for(i),
                conv.tenant,
                abuser.user_id,
                conv.id,
                body,
                None,
            )
            if status == 201:
                self.recorder.accepted(reply["id"], conv.recipients)
            return status

        statuses = await asyncio.gather(*(one(i) for i in range(count)))
        for status in statuses:
            self.recorder.counts[f"abuse_status_{status}"] += 1
        # Only sends the guard judged (201 or 429) count: one the gateway
        # refused for capacity (503) never reached it, so it is neither
        # within the limit nor over it.
        judged = statuses.count(201) + statuses.count(429)
        over = max(0, judged - self.profile.abuse_limit)
        self.recorder.counts["abuse_over_limit"] += over
        self.recorder.counts["abuse_429"] += min(statuses.count(429), over)
        self.recorder.counts["abuse_accepted"] += statuses.count(201)

    async def _progress(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            await asyncio.sleep(1.0)
            post = Recorder.percentiles(self.recorder.histograms["post"])
            dlv = Recorder.percentiles(self.recorder.histograms["delivery"])
            elapsed = loop.time() - self._loop_start
            sent = len(self.recorder.expected)  # warm-up included
            line = (
                f"\r[{elapsed:5.0f}s] accepted {sent} ({sent / max(elapsed, 1):.0f}/s)"
                f"  POST p95 {post['p95']:.0f} ms  delivered {dlv['count']}"
                f" p95 {dlv['p95']:.0f} ms  in flight {len(self._tasks)}   "
            )
            if self.show_progress:
                print(line, end="", file=sys.stderr, flush=True)

    async def load(self) -> None:
        profile = self.profile
        loop = asyncio.get_running_loop()
        self._loop_start, self._wall_start = loop.time(), time.time()
        self._step += 1
        self.recorder = Recorder()
        measured_from = self._loop_start + profile.warmup
        until = measured_from + profile.duration
        self._say(
            f"load: {profile.rate:g} sends/s for {profile.warmup:g}s of warm-up "
            f"then {profile.duration:g}s measured, {profile.sockets} sockets, "
            f"{profile.tenants} tenants"
        )

        async def measured(coro: Awaitable[None]) -> None:
            await asyncio.sleep(max(0.0, measured_from - loop.time()))
            await coro

        async def start_measuring() -> None:
            await asyncio.sleep(max(0.0, measured_from - loop.time()))
            self.recorder.start_measuring()

        drivers = [
            self._schedule(profile.rate, until, self._send),
            self._schedule(profile.rate * profile.get_share, until, self._get),
            start_measuring(),
            measured(self._schedule(profile.churn, until, self._churn)),
            self._progress(until),
        ]
        if self.population.abusers and self.set_limits is not None:
            drivers.append(measured(self._abuse(until)))
        await asyncio.gather(*drivers)
        if self.show_progress:
            print(file=sys.stderr)
        self._say(f"waiting for {len(self._tasks)} requests in flight")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks), 60)
        await asyncio.sleep(profile.drain)
        self.facts["server_closes"] = sum(len(s.closed_by_server) for s in self.sockets)

    async def teardown(self) -> None:
        await asyncio.gather(*(s.close() for s in self.sockets), return_exceptions=True)

    def _say(self, text: str) -> None:
        if self.show_progress:
            print(f"loadtest: {text}", file=sys.stderr, flush=True)
