"""How every service process starts, reports its health, and stops.

A service is one ``serve(runtime)`` coroutine: it opens its resources with
``async with`` blocks, registers readiness checks, then awaits
``runtime.stopping``. Shutdown runs in this order:

1. SIGTERM or SIGINT sets ``runtime.stopping`` (the handler does nothing else);
2. ``serve`` stops taking work and waits for in-flight work, up to a deadline;
3. its ``async with`` blocks close in reverse order (bus drained last);
4. the ops server (``/metrics``, ``/healthz``, ``/readyz``) stops.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import resource
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from libs import logs
from libs.bus.subjects import Subjects
from libs.config import ConfigError, Settings
from libs.telemetry import metrics, tracing

Check = Callable[[], bool | Awaitable[bool]]
log = logging.getLogger("service")


@dataclass
class Runtime:
    settings: Settings
    registry: CollectorRegistry
    subjects: Subjects
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    checks: dict[str, Check] = field(default_factory=dict)
    ops_url: str = ""

    def ready_when(self, name: str, check: Check) -> None:
        """Register a readiness condition; ``/readyz`` is 200 only if all hold."""
        self.checks[name] = check

    async def readiness(self) -> dict[str, bool]:
        results = {}
        for name, check in self.checks.items():
            try:
                value = check()
                if inspect.isawaitable(value):
                    value = await asyncio.wait_for(value, timeout=2)
                results[name] = bool(value)
            except (TimeoutError, OSError, ConnectionError) as exc:
                log.warning(
                    "readiness.check_failed", extra={"check": name, "error": repr(exc)}
                )
                results[name] = False
        return results


def ops_routes(runtime: Runtime) -> list[web.RouteDef]:
    async def metrics_view(request: web.Request) -> web.Response:
        body = generate_latest(runtime.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": runtime.settings.service})

    async def readyz(request: web.Request) -> web.Response:
        checks = await runtime.readiness()
        ready = bool(checks) and all(checks.values()) and not runtime.stopping.is_set()
        return web.json_response(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status=200 if ready else 503,
        )

    return [
        web.get("/metrics", metrics_view),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
    ]


async def _start_ops_server(runtime: Runtime) -> web.AppRunner:
    app = web.Application()
    app.add_routes(ops_routes(runtime))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, runtime.settings.ops_host, runtime.settings.ops_port)
    await site.start()
    port = runner.addresses[0][1]
    runtime.ops_url = f"http://{runtime.settings.ops_host}:{port}"
    log.info("ops.listening", extra={"url": runtime.ops_url})
    return runner


async def _main(
    service: str, serve: Callable[[Runtime], Awaitable[None]], own_ops: bool
) -> None:
    settings = Settings.from_env(service)
    logs.configure(service, settings.instance, settings.log_level)
    provider = tracing.setup(service, settings.instance, settings.otlp_endpoint)
    runtime = Runtime(
        settings=settings,
        registry=metrics.new_registry(service, settings.instance),
        subjects=Subjects(settings.subject_prefix),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stopping.set)
    runner = await _start_ops_server(runtime) if own_ops else None
    log.info("service.starting")
    try:
        await serve(runtime)
    finally:
        if runner is not None:
            await runner.cleanup()
        provider.shutdown()
        log.info("service.stopped")


def tune_gc() -> None:
    """Collect young objects less often, and never rescan start-up objects.

    With CPython's default threshold (700 allocations) a busy gateway
    collects every few milliseconds, so every request or frame in flight is
    promoted to the oldest generation; that generation then fills within
    seconds and each full collection walks every object of every open
    socket, stopping the process for up to a second at 15,000 sockets. A
    larger first threshold lets short-lived objects die young, so full
    collections become rare; what exists after start-up is frozen out of
    them altogether.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard one: a gateway holds a
    file descriptor per socket, and 1,024 is a common default."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run(
    service: str, serve: Callable[[Runtime], Awaitable[None]], *, own_ops: bool = True
) -> None:
    """Entry point body of every service's console script."""
    try:
        import uvloop
    except ImportError:  # optional speed-up; asyncio's own loop works too
        runner = asyncio.run
    else:
        runner = uvloop.run
    raise_open_files_limit()
    tune_gc()
    try:
        runner(_main(service, serve, own_ops))
    except ConfigError as exc:
        logging.getLogger("service").critical(
            "config.invalid", extra={"error": str(exc)}
        )
        raise SystemExit(2) from exc
