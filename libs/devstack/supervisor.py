"""The process behind ``make run``: starts the stack, restarts crashed
services, and stops everything on SIGTERM (``make stop``).

Run as ``python -m libs.devstack.supervisor --root .data [--scale N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from libs import logs
from libs.devstack import targets
from libs.devstack.servers import ServerError
from libs.devstack.stack import Ports, Stack

log = logging.getLogger("devstack")

READY_FILE = "run/ready.json"
PID_FILE = "run/supervisor.pid"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack-supervisor")
    parser.add_argument("--root", type=Path, default=Path(".data"))
    parser.add_argument("--scale", type=int, default=1)
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    logs.configure("devstack", f"supervisor:{os.getpid()}")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    (root / "run").mkdir(parents=True, exist_ok=True)
    (root / PID_FILE).write_text(str(os.getpid()))
    (root / READY_FILE).unlink(missing_ok=True)
    external = {
        key: os.environ[key]
        for key in ("MSG_NATS_URL", "MSG_DATABASE_URL", "MSG_REDIS_URL")
        if os.environ.get(key)
    }
    stack = Stack(root, Ports.development(), scale=args.scale, external=external)
    try:
        stack.start_infra()
        stack.bootstrap()
        stack.start_services()
        # The embedded server's monitoring endpoints (/varz, /jsz, /healthz);
        # an external NATS keeps its own.
        monitor = None if "MSG_NATS_URL" in external else stack.nats.monitor_url
        ready = {
            "gateways": stack.gateway_urls,
            "nats": stack.urls["MSG_NATS_URL"],
            "nats_monitor": monitor,
            "postgres": stack.urls["MSG_DATABASE_URL"],
            "redis": stack.urls["MSG_REDIS_URL"],
            "services": {p.name: p.url for p in stack.services},
            "scale": args.scale,
        }
        targets.write(root, stack.services)
        (root / READY_FILE).write_text(json.dumps(ready, indent=2))
        log.info("devstack.ready", extra=ready)
        while not stop.wait(1.0):
            for proc in stack.services:
                if not proc.running:
                    log.error(
                        "devstack.service_exited",
                        extra={"service": proc.name, "code": proc.proc.returncode},
                    )
                    proc.restarts += 1
                    proc.start()
        return 0
    except (ServerError, OSError) as exc:
        log.error("devstack.failed", extra={"error": str(exc)})
        return 1
    except Exception:  # bootstrap or anything else: report, then clean up
        log.exception("devstack.failed")
        return 1
    finally:
        log.info("devstack.stopping")
        stack.stop()
        targets.remove(root)
        (root / READY_FILE).unlink(missing_ok=True)
        (root / PID_FILE).unlink(missing_ok=True)
        log.info("devstack.stopped")


if __name__ == "__main__":
    sys.exit(main())
