"""msgctl: run, inspect and try the messaging backend.

msgctl stack up [--scale N]      start everything locally (make run)
msgctl stack down | status       stop it / show where it listens
msgctl bootstrap                 create streams, consumers and schema
msgctl token --tenant T --user U print a token the running stack accepts
msgctl listen --tenant T --user U  print a user's live events (reconnects)
msgctl limits set|get|clear --tenant T [--user U] [--limit N --window S
       --duplicate-window S]    send limits, applied at once without restart
msgctl integrator add --tenant T --name N   NATS credentials for an integrator
msgctl tail --tenant T [--since TIME|SEQ]   follow a tenant's events
msgctl contracts [--check]       regenerate contracts/ from the code
msgctl loadtest [--rate R ...]   open-model load test with an SLO verdict
msgctl bench [--sweep R1,R2..]   baseline vs the socketio peer vs JetStream
msgctl slo [--prometheus URL]    each SLO: target, current value, budget spent
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from libs import auth, logs
from tools.loadgen import arguments as loadgen_args

DEFAULT_ROOT = Path(os.environ.get("MSG_DEV_ROOT", ".data"))


def _secret(root: Path) -> str:
    secret = os.environ.get("MSG_JWT_SECRET")
    if secret:
        return secret
    path = root / "dev-jwt-secret"
    if not path.exists():
        sys.exit(
            "msgctl: MSG_JWT_SECRET is not set and there is no development secret "
            f"at {path} (start the stack with `make run` first)"
        )
    print(f"msgctl: using the development secret in {path}", file=sys.stderr)
    return path.read_text().strip()


def cmd_token(args: argparse.Namespace) -> int:
    token = auth.issue(
        _secret(args.root), tenant=args.tenant, user_id=args.user, ttl=args.ttl
    )
    print(token)
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from tools.msgctl.bootstrap import bootstrap

    logs.configure("msgctl", "bootstrap")
    env = dict(os.environ)
    if not env.get("MSG_NATS_USER"):
        # Against the development stack, bootstrap as its admin.
        from libs.devstack.natsauth import dev_admin_env

        env.update(dev_admin_env(args.root))
    asyncio.run(bootstrap(env))
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    from tools.msgctl import stack

    if args.action == "up":
        return stack.up(args.root, args.scale)
    if args.action == "down":
        return stack.down(args.root)
    return stack.status(args.root)


def cmd_listen(args: argparse.Namespace) -> int:
    from tools.msgctl.listen import Listener
    from tools.msgctl.stack import gateway_url

    secret = _secret(args.root)
    url = args.url or gateway_url(args.root)
    print(f"msgctl listen: {url} as {args.tenant}/{args.user}", file=sys.stderr)

    def token() -> str:
        return auth.issue(secret, tenant=args.tenant, user_id=args.user, ttl=args.ttl)

    listener = Listener(url, token, args.since_seq, args.count)
    try:
        return asyncio.run(listener.run())
    except KeyboardInterrupt:  # Ctrl-C: the way to stop it
        return 130


def cmd_limits(args: argparse.Namespace) -> int:
    from tools.msgctl import limits

    return asyncio.run(limits.run(args))


def cmd_slo(args: argparse.Namespace) -> int:
    from tools.msgctl import slo

    return slo.run(args.root, args.url, args.prometheus, args.window)


def cmd_contracts(args: argparse.Namespace) -> int:
    from libs.schema import export

    targets = ((args.out, export.render()), (args.infra, export.render_infra()))
    if args.check:
        stale = [
            f"{root}/{rel}"
            for root, files in targets
            for rel in export.stale(root, files)
        ]
        for path in stale:
            print(f"stale: {path}")
        return 1 if stale else 0
    for root, files in targets:
        for rel in export.write(root, files):
            print(f"wrote {root}/{rel}")
    return 0


def _need_bench_extra(command: str, modules: tuple[str, ...]) -> None:
    """Stop with how to install the load generator's packages, before a
    run that would fail half-way without them."""
    absent = loadgen_args.missing(modules)
    if absent:
        sys.exit(
            f"msgctl {command}: needs the [bench] extra, which is not installed "
            f"(missing: {', '.join(absent)}); install it with: "
            f"{loadgen_args.INSTALL_HINT}"
        )


def cmd_loadtest(args: argparse.Namespace) -> int:
    _need_bench_extra("loadtest", loadgen_args.LOADTEST_MODULES)
    from tools.loadgen.cli import run_command

    return run_command(args, _secret(args.root))


def cmd_bench(args: argparse.Namespace) -> int:
    peer = () if args.skip_peer else loadgen_args.PEER_MODULES
    _need_bench_extra("bench", (*loadgen_args.LOADTEST_MODULES, *peer))
    from tools.loadgen.bench import run_command

    return run_command(args, _secret(args.root))


def cmd_integrator(args: argparse.Namespace) -> int:
    from tools.msgctl import integrator

    if args.action == "add":
        return integrator.add(args.root, args.tenant, args.name)
    if args.action == "remove":
        return integrator.remove(args.root, args.tenant, args.name)
    return integrator.show(args.root)


def cmd_tail(args: argparse.Namespace) -> int:
    from tools.msgctl.integrator import run_tail

    logs.configure("msgctl", "tail", "WARNING")
    return run_tail(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msgctl", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="dev stack data folder"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    token = sub.add_parser("token", help="print a client token")
    token.add_argument("--tenant", required=True)
    token.add_argument("--user", required=True)
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds")
    token.set_defaults(func=cmd_token)

    boot = sub.add_parser("bootstrap", help="create streams, consumers, schema")
    boot.set_defaults(func=cmd_bootstrap)

    stk = sub.add_parser("stack", help="the local one-machine stack")
    stk.add_argument("action", choices=["up", "down", "status"])
    stk.add_argument("--scale", type=int, default=int(os.environ.get("SCALE", "1")))
    stk.set_defaults(func=cmd_stack)

    contracts = sub.add_parser(
        "contracts", help="regenerate contracts/ and infra/nats/ from code"
    )
    contracts.add_argument("--out", type=Path, default=Path("contracts"))
    contracts.add_argument("--infra", type=Path, default=Path("infra"))
    contracts.add_argument("--check", action="store_true", help="fail if stale")
    contracts.set_defaults(func=cmd_contracts)

    loadgen_args.add_loadtest(sub).set_defaults(func=cmd_loadtest)
    loadgen_args.add_bench(sub).set_defaults(func=cmd_bench)

    integ = sub.add_parser(
        "integrator", help="NATS users of integrators (development stack)"
    )
    integ.add_argument("action", choices=["add", "remove", "list"])
    integ.add_argument("--tenant")
    integ.add_argument("--name", default="default", help="lowercase letters, digits")
    integ.set_defaults(func=cmd_integrator)

    tail = sub.add_parser("tail", help="follow a tenant's events from the streams")
    tail.add_argument("--tenant", required=True)
    tail.add_argument(
        "--since",
        help="a MESSAGES seq, a duration ago (15m, 2h, 1d) or an RFC 3339 time; "
        "default: only new events",
    )
    tail.add_argument(
        "--types", help="comma-separated event types, e.g. message.accepted"
    )
    tail.add_argument("--count", type=int, default=0, help="stop after N events")
    tail.set_defaults(func=cmd_tail)

    listen = sub.add_parser("listen", help="print a user's live events")
    listen.add_argument("--tenant", required=True)
    listen.add_argument("--user", required=True)
    listen.add_argument(
        "--url", help="gateway; default: the running stack's first, else :8080"
    )
    listen.add_argument(
        "--since-seq", type=int, default=None, help="first replay messages after it"
    )
    listen.add_argument("--count", type=int, default=0, help="stop after N messages")
    listen.add_argument(
        "--ttl",
        type=float,
        default=3600.0,
        help="token lifetime, seconds (a new one is signed at each reconnect)",
    )
    listen.set_defaults(func=cmd_listen)

    lim = sub.add_parser(
        "limits", help="per-tenant and per-user send limits (applied at once)"
    )
    lim.add_argument("action", choices=["set", "get", "clear"])
    lim.add_argument("--tenant", required=True)
    lim.add_argument("--user", help="one user of the tenant; default: all of them")
    lim.add_argument("--limit", type=int, help="sends allowed in any window")
    lim.add_argument("--window", type=int, help="window length, whole seconds")
    lim.add_argument(
        "--duplicate-window",
        type=float,
        help="seconds a same-body resend is refused (0 = off)",
    )
    lim.add_argument("--redis-url", help="default: the running stack's Redis")
    lim.set_defaults(func=cmd_limits)

    slo = sub.add_parser(
        "slo",
        help="print each SLO: target, current value, error budget spent",
        description="Without --prometheus, reads /metrics of every service of "
        "the running dev stack (or of each --url) and counts since each "
        "process started. Exits 1 if an SLO fails.",
    )
    slo.add_argument(
        "--url",
        action="append",
        default=[],
        help="a service's base URL (repeatable); default: the dev stack's",
    )
    slo.add_argument("--prometheus", metavar="URL", help="ask this Prometheus")
    slo.add_argument(
        "--window", default="30d", help="PromQL range with --prometheus (30d)"
    )
    slo.set_defaults(func=cmd_slo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
